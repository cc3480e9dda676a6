"""Meetings over the API, with the same rules and notices as the console and the chat.

/meetings: list, create (invitations go out); /meetings/{id}: get, update (changes go to everyone invited);
/meetings/{id}/cancel (everyone invited is told); /meetings/{id}/rsvps: the RSVP and attendance list.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import current_app, g, jsonify, request, url_for
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.core import (
    ApiError,
    OptionalText,
    Text,
    bp,
    clock,
    db,
    json_body,
    query_args,
    register_error_code,
    require,
    transaction,
    validation_error,
)
from api.members import find_member, normalize_employee_no
from api.openapi import error_responses, json_request, json_response, model_schemas, register_paths
from handlers.meetings import (
    MAX_REMINDERS,
    cancel_meeting,
    create_meeting,
    lock_meeting,
    meeting_errors,
    update_meeting,
)
from models.meeting import INVITE_ROLES, KINDS, RSVP_LABELS, Meeting, MeetingInvite, quorum, resolve_attendees
from models.member import Branch, Group, Member

log = logging.getLogger(__name__)

register_error_code("meeting_cancelled", "会议已取消，不能再修改")
register_error_code("meeting_started", "会议已经开始或结束，不能再修改或取消")

Kind = Literal[KINDS]  # type: ignore[valid-type]
Role = Literal[INVITE_ROLES]  # type: ignore[valid-type]
Rsvp = Literal[tuple(RSVP_LABELS)]  # type: ignore[valid-type]
Id = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]
Minutes = Annotated[StrictInt, Field(ge=1, le=30 * 1440)]


class Attendees(BaseModel):
    """Who is invited: every active member matching any of these."""

    model_config = ConfigDict(extra="forbid")

    roles: list[Role] = Field(
        default_factory=list, description="角色，例如 clerk、branch_chair、group_leader"
    )
    branches: list[Id] = Field(default_factory=list, max_length=1000, description="分会 id")
    groups: list[Id] = Field(default_factory=list, max_length=5000, description="小组 id")
    members: list[Text(32)] = Field(default_factory=list, max_length=5000, description="会员工号")
    delegates: StrictBool = Field(False, description="全体职工代表")
    all: StrictBool = Field(False, description="全体会员")


class MeetingFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Text(200) = Field(None, description="会议名称")
    kind: Kind = Field(None, description="会议类型：" + "、".join(KINDS))
    starts_at: AwareDatetime = Field(
        None, description="开始时间（ISO 8601，须带时区，例如 2027-03-08T14:00:00+08:00）"
    )
    place: OptionalText(200) = Field(None, description="地点")
    agenda: OptionalText(2000) = Field(None, description="议程")
    rsvp_deadline: AwareDatetime | None = Field(None, description="回执截止；null = 会议开始前都可回复")
    reminder_minutes: list[Minutes] | None = Field(
        None, max_length=MAX_REMINDERS, description="会前提醒（开始前多少分钟）；null 或 [] = 全局设置"
    )
    attendees: Attendees = Field(None, description="参会人员")


class MeetingCreate(MeetingFields):
    """A new meeting. title, starts_at and attendees are required; the invitations go out at once."""

    title: Text(200) = Field(description="会议名称")
    kind: Kind = Field("其他", description="会议类型：" + "、".join(KINDS))
    starts_at: AwareDatetime = Field(description="开始时间（ISO 8601，须带时区）")
    attendees: Attendees = Field(description="参会人员")
    created_by: OptionalText(32) = Field(None, description="发布人工号（可选）")


class MeetingUpdate(MeetingFields):
    """Fields to change; absent fields stay. Everyone invited is told about a change."""


class Counts(BaseModel):
    invited: int
    attend: int
    excused: int
    none: int
    attended: int = Field(description="已签到")


class Quorum(BaseModel):
    confirmed: int = Field(description="确认参加的代表")
    total: int = Field(description="受邀代表")
    needed: int = Field(description="法定人数（超过三分之二）")
    reached: bool


class MeetingOut(BaseModel):
    id: int
    title: str
    kind: Kind
    starts_at: datetime
    place: str
    agenda: str
    rsvp_deadline: datetime | None
    reminder_minutes: list[int] | None = Field(description="null = 全局设置")
    attendees: Attendees
    status: Literal["scheduled", "cancelled"]
    cancel_reason: str | None
    created_by: str | None = Field(description="发布人工号")
    created_at: datetime
    version: int = Field(description="每次变更加 1")
    counts: Counts
    quorum: Quorum | None = Field(description="职代会的法定人数；其他会议为 null")


class MeetingList(BaseModel):
    items: list[MeetingOut]
    total: int
    page: int
    per_page: int


class MeetingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["scheduled", "cancelled"] | None = None
    upcoming: bool | None = Field(None, description="true = 只看未开始的")
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(50, ge=1, le=200)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: OptionalText(200) = Field(None, description="原因（写进取消通知）")


class RsvpOut(BaseModel):
    employee_no: str
    name: str
    branch: str | None
    group: str | None
    delegate: bool
    rsvp: Rsvp = Field(description="attend 参加 / excused 请假 / none 未回复")
    reason: str | None = Field(description="请假原因")
    answered_at: datetime | None
    attended: bool | None = Field(description="签到：true 已到 / false 缺席 / null 未登记")


class RsvpList(BaseModel):
    items: list[RsvpOut]
    total: int


class RsvpQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rsvp: Rsvp | None = None


# serialisation ------------------------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


def meeting_json(s: Session, m: Meeting) -> dict[str, Any]:
    spec = m.attendees or {}
    numbers = (
        list(s.scalars(select(Member.employee_no).where(Member.id.in_(spec["members"])).order_by(Member.id)))
        if spec.get("members")
        else []
    )
    confirmed, total, needed = quorum(m)
    creator = s.get(Member, m.created_by_id) if m.created_by_id else None
    return {
        "id": m.id,
        "title": m.title,
        "kind": m.kind,
        "starts_at": _iso(m.starts_at),
        "place": m.place or "",
        "agenda": m.agenda or "",
        "rsvp_deadline": _iso(m.rsvp_deadline),
        "reminder_minutes": list(m.reminder_minutes) if m.reminder_minutes else None,
        "attendees": {
            "roles": list(spec.get("roles") or []),
            "branches": list(spec.get("branches") or []),
            "groups": list(spec.get("groups") or []),
            "members": numbers,
            "delegates": bool(spec.get("delegates")),
            "all": bool(spec.get("all")),
        },
        "status": m.status,
        "cancel_reason": m.cancel_reason,
        "created_by": creator.employee_no if creator else None,
        "created_at": _iso(m.created_at),
        "version": m.version,
        "counts": {
            "invited": len(m.invites),
            **{k: sum(1 for i in m.invites if i.rsvp == k) for k in RSVP_LABELS},
            "attended": sum(1 for i in m.invites if i.attended),
        },
        "quorum": (
            {"confirmed": confirmed, "total": total, "needed": needed, "reached": confirmed >= needed}
            if m.is_congress
            else None
        ),
    }


def rsvp_json(inv: MeetingInvite) -> dict[str, Any]:
    m = inv.member
    return {
        "employee_no": m.employee_no,
        "name": m.name,
        "branch": m.branch.name if m.branch else None,
        "group": m.group.name if m.group else None,
        "delegate": bool(m.is_delegate),
        "rsvp": inv.rsvp,
        "reason": inv.reason,
        "answered_at": _iso(inv.answered_at),
        "attended": inv.attended,
    }


# rules ---------------------------------------------------------------------------------------------------
def _get(s: Session, meeting_id: int, lock: bool = False) -> Meeting:
    m = lock_meeting(s, meeting_id) if lock else s.get(Meeting, meeting_id)
    if m is None:
        raise ApiError(404, "not_found", "未找到该会议，请检查编号")
    return m


def _spec(s: Session, a: Attendees) -> dict[str, Any]:
    """The stored attendee spec (member ids); unknown branches, groups or employee numbers are a 422."""
    problems = []
    for model, ids, label in ((Branch, a.branches, "分会"), (Group, a.groups, "小组")):
        known = set(s.scalars(select(model.id).where(model.id.in_(ids)))) if ids else set()
        if unknown := [str(i) for i in ids if i not in known]:
            problems.append(f"没有这些{label} id：{'、'.join(unknown[:20])}")
    numbers = list(dict.fromkeys(a.members))
    by_no = (
        dict(
            s.execute(
                select(Member.employee_no, Member.id).where(
                    Member.employee_no.in_({*numbers, *map(normalize_employee_no, numbers)}),
                    Member.active.is_(True),
                )
            ).all()
        )
        if numbers
        else {}
    )
    member_ids = [by_no.get(no) or by_no.get(normalize_employee_no(no)) for no in numbers]
    missing = [no for no, mid in zip(numbers, member_ids, strict=True) if mid is None]
    if missing:
        problems.append(f"没有找到这些工号的在册会员：{'、'.join(missing[:20])}")
    if problems:
        raise validation_error({"attendees": "；".join(problems)})
    spec: dict[str, Any] = {}
    for key, value in (("roles", a.roles), ("branches", a.branches), ("groups", a.groups)):
        if value:
            spec[key] = list(dict.fromkeys(value))
    if numbers:
        spec["members"] = sorted({mid for mid in member_ids if mid is not None})
    if a.delegates:
        spec["delegates"] = True
    if a.all:
        spec["all"] = True
    if not resolve_attendees(s, spec):
        raise validation_error(
            {"attendees": "参会人员里没有在册会员，请填写 roles、branches、groups、members 等"}
        )
    return spec


def _check(fields: dict[str, str]) -> None:
    if fields:
        raise validation_error(fields)


def _bot():
    return current_app.extensions["bot"]


# endpoints -----------------------------------------------------------------------------------------------
@bp.get("/meetings")
@require("meetings.manage")
def list_meetings():
    args = query_args(MeetingQuery)
    stmt = select(Meeting)
    if args.status:
        stmt = stmt.where(Meeting.status == args.status)
    if args.upcoming:
        stmt = stmt.where(Meeting.starts_at > clock().now())
    with db().Session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(
            stmt.order_by(Meeting.starts_at.desc(), Meeting.id.desc())
            .limit(args.per_page)
            .offset((args.page - 1) * args.per_page)
        ).all()
        items = [meeting_json(s, m) for m in rows]
    return jsonify(items=items, total=total, page=args.page, per_page=args.per_page)


@bp.post("/meetings")
@require("meetings.manage")
def create_meeting_endpoint():
    body = json_body(MeetingCreate)
    with transaction() as s:
        _check(
            meeting_errors(
                title=body.title,
                kind=body.kind,
                starts_at=body.starts_at,
                rsvp_deadline=body.rsvp_deadline,
                now=clock().now(),
            )
        )
        creator = find_member(s, body.created_by) if body.created_by else None
        m = create_meeting(
            s,
            _bot(),
            title=body.title,
            kind=body.kind,
            starts_at=body.starts_at,
            place=body.place or "",
            agenda=body.agenda or "",
            rsvp_deadline=body.rsvp_deadline,
            reminder_minutes=body.reminder_minutes or None,
            attendees=_spec(s, body.attendees),
            created_by=creator,
        )
        out = meeting_json(s, m)
    log.info("api: token %s created meeting %s", g.api_token.name, out["id"])
    resp = jsonify(out)
    resp.status_code = 201
    resp.headers["Location"] = url_for("api.get_meeting", meeting_id=out["id"])
    return resp


@bp.get("/meetings/<int:meeting_id>")
@require("meetings.manage")
def get_meeting(meeting_id: int):
    with db().Session() as s:
        return jsonify(meeting_json(s, _get(s, meeting_id)))


def _open(m: Meeting) -> None:
    if m.status == "cancelled":
        raise ApiError(409, "meeting_cancelled")
    if m.starts_at <= clock().now():
        raise ApiError(409, "meeting_started")


@bp.patch("/meetings/<int:meeting_id>")
@require("meetings.manage")
def update_meeting_endpoint(meeting_id: int):
    body = json_body(MeetingUpdate)
    data = {k: getattr(body, k) for k in body.model_fields_set}
    for key in ("title", "kind", "starts_at", "attendees"):
        if key in data and data[key] is None:
            raise validation_error({key: "不能为 null"})
    with transaction() as s:
        m = _get(s, meeting_id, lock=True)
        _open(m)
        starts_at = data.get("starts_at", m.starts_at)
        deadline = data.get("rsvp_deadline", m.rsvp_deadline)
        _check(
            meeting_errors(
                title=data.get("title", m.title),
                kind=data.get("kind", m.kind),
                starts_at=starts_at,
                rsvp_deadline=deadline,
                now=clock().now(),
                new_time=starts_at != m.starts_at,
                new_deadline=deadline != m.rsvp_deadline,
            )
        )
        changes: dict[str, Any] = {}
        for key in ("title", "kind", "starts_at", "rsvp_deadline", "reminder_minutes"):
            if key in data:
                changes[key] = data[key]
        for key in ("place", "agenda"):
            if key in data:
                changes[key] = data[key] or ""
        attendees = _spec(s, body.attendees) if "attendees" in data else None
        update_meeting(s, _bot(), m, attendees=attendees, **changes)
        out = meeting_json(s, m)
    return jsonify(out)


@bp.post("/meetings/<int:meeting_id>/cancel")
@require("meetings.manage")
def cancel_meeting_endpoint(meeting_id: int):
    """Cancel and tell everyone invited; cancelling a cancelled meeting again changes nothing."""
    body = json_body(CancelBody) if request.get_data(cache=True) else CancelBody()
    with transaction() as s:
        m = _get(s, meeting_id, lock=True)
        if m.status != "cancelled":
            _open(m)
            cancel_meeting(s, _bot(), m, body.reason or "")
        out = meeting_json(s, m)
    return jsonify(out)


@bp.get("/meetings/<int:meeting_id>/rsvps")
@require("meetings.manage")
def list_rsvps(meeting_id: int):
    args = query_args(RsvpQuery)
    with db().Session() as s:
        m = _get(s, meeting_id)
        items = [rsvp_json(inv) for inv in m.invites if not args.rsvp or inv.rsvp == args.rsvp]
    return jsonify(items=items, total=len(items))


# OpenAPI -------------------------------------------------------------------------------------------------
_ID = {"name": "meeting_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_TAG = ["meetings"]
_PERM = "meetings.manage"

register_paths(
    {
        "/meetings": {
            "get": {
                "summary": "会议列表（含回执人数和职代会法定人数）",
                "operationId": "listMeetings",
                "tags": _TAG,
                "x-permission": _PERM,
                "parameters": [
                    _q("status", {"type": "string", "enum": ["scheduled", "cancelled"]}, "状态"),
                    _q("upcoming", {"type": "boolean"}, "true = 只看未开始的"),
                    _q("page", {"type": "integer", "minimum": 1, "default": 1}, "页码"),
                    _q(
                        "per_page",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "每页条数",
                    ),
                ],
                "responses": {"200": json_response("MeetingList"), **error_responses(401, 403, 422)},
            },
            "post": {
                "summary": "发布会议（立即私信发出会议通知，带参加 / 请假按钮）",
                "operationId": "createMeeting",
                "tags": _TAG,
                "x-permission": _PERM,
                "requestBody": json_request("MeetingCreate"),
                "responses": {
                    "201": json_response("MeetingOut", "已创建"),
                    **error_responses(400, 401, 403, 404, 413, 415, 422),
                },
            },
        },
        "/meetings/{meeting_id}": {
            "get": {
                "summary": "查看会议（含实时回执人数和法定人数）",
                "operationId": "getMeeting",
                "tags": _TAG,
                "x-permission": _PERM,
                "parameters": [_ID],
                "responses": {"200": json_response("MeetingOut"), **error_responses(401, 403, 404)},
            },
            "patch": {
                "summary": "修改会议（只改提交的字段；名称、时间、地点、议程或回执截止有变时通知所有受邀的人；"
                "参会人员变化时新加入的人收到会议通知，移出的人收到告知）",
                "description": "错误代码：meeting_cancelled（409）会议已取消；meeting_started（409）会议已开始。",
                "operationId": "updateMeeting",
                "tags": _TAG,
                "x-permission": _PERM,
                "parameters": [_ID],
                "requestBody": json_request("MeetingUpdate"),
                "responses": {
                    "200": json_response("MeetingOut"),
                    **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/meetings/{meeting_id}/cancel": {
            "post": {
                "summary": "取消会议（私信通知所有受邀的人；请求体可选，可带 reason）",
                "description": "已取消的会议再次取消不做任何事；已开始的会议返回 meeting_started（409）。",
                "operationId": "cancelMeeting",
                "tags": _TAG,
                "x-permission": _PERM,
                "parameters": [_ID],
                "requestBody": {**json_request("CancelBody"), "required": False},
                "responses": {
                    "200": json_response("MeetingOut"),
                    **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/meetings/{meeting_id}/rsvps": {
            "get": {
                "summary": "回执与签到名单",
                "operationId": "listMeetingRsvps",
                "tags": _TAG,
                "x-permission": _PERM,
                "parameters": [_ID, _q("rsvp", {"type": "string", "enum": list(RSVP_LABELS)}, "回执")],
                "responses": {"200": json_response("RsvpList"), **error_responses(401, 403, 404, 422)},
            },
        },
    },
    model_schemas(MeetingCreate, MeetingUpdate, CancelBody)
    | model_schemas(MeetingOut, MeetingList, RsvpOut, RsvpList, mode="serialization"),
)
