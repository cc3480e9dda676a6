"""Activities and their sign-ups over the API, with the same rules and refusals as the chat.

/activities: list, create; /activities/{id}: get, update; /activities/{id}/cancel;
/activities/{id}/signups: list, add; /activities/{id}/signups/{employee_no}: remove.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from flask import current_app, g, jsonify, url_for
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import func, select

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
    token_can,
    transaction,
    validation_error,
)
from api.members import find_member
from api.openapi import error_responses, json_request, json_response, model_schemas, register_paths
from bot.permissions import can
from models.activity import (
    AUDIENCE_KINDS,
    MAX_QUESTIONS,
    Activity,
    Signup,
    _lock_activity,
    cancel_signup,
    counts,
    promote_waitlist,
    sign_up,
)
from models.member import Member

log = logging.getLogger(__name__)

REFUSALS = {
    "full": (409, "activity_full", "名额已满，且本活动不设候补"),
    "deadline": (409, "signup_deadline_passed", "报名已截止"),
    "started": (409, "activity_started", "活动已经开始或结束"),
    "audience": (409, "not_in_audience", "该会员不在本活动的报名范围内"),
    "duplicate": (409, "already_signed_up", "该会员已经报名（或在候补名单上）"),
    "cancelled": (409, "activity_cancelled", "活动已取消"),
    "companions": (422, "companions_exceeded", "携带家属人数超过本活动的上限"),
    "answers": (422, "answers_required", "请按活动的问题填写 answers（选项须为 options 之一）"),
}
for _status, _code, _msg in REFUSALS.values():
    register_error_code(_code, _msg)
register_error_code("capacity_below_taken", "名额不能少于已确认报名的人数")
register_error_code("not_signed_up", "该会员没有报名这个活动")

AudienceKind = Literal[AUDIENCE_KINDS]  # type: ignore[valid-type]


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Text(32, pattern=r"^[A-Za-z0-9_]+$") = Field(description="字段名（英文字母、数字、下划线）")
    label: Text(50) = Field(description="问题，例如“项目”")
    options: list[Text(50)] = Field(default_factory=list, max_length=20, description="选项；空 = 自由填写")


class ActivityFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Text(100) = Field(None, description="活动名称")
    description: OptionalText(2000) = Field(None, description="说明")
    place: OptionalText(200) = Field(None, description="地点")
    starts_at: AwareDatetime = Field(
        None, description="开始时间（ISO 8601，须带时区，例如 2027-03-08T14:00:00+08:00）"
    )
    ends_at: AwareDatetime | None = Field(None, description="结束时间")
    signup_deadline: AwareDatetime | None = Field(None, description="报名截止；不填 = 开始时间")
    capacity: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = Field(
        None, description="名额（人数，含家属）；null = 不限"
    )
    waitlist_enabled: StrictBool = Field(None, description="满员后是否登记候补（默认 true）")
    companions_max: Annotated[StrictInt, Field(ge=0, le=20)] = Field(None, description="每人最多携带家属数")
    questions: list[Question] = Field(None, max_length=MAX_QUESTIONS, description="报名问题（最多 3 个）")
    cancel_cutoff_hours: Annotated[StrictInt, Field(ge=0, le=24 * 30)] | None = Field(
        None, description="开始前多少小时内不能取消"
    )
    audience_kind: AudienceKind = Field(None, description="报名范围：all/branches/groups/women/retirees/list")
    audience_ids: list[StrictInt] = Field(
        None, max_length=5000, description="branches/groups 时为分会/小组 id；list 时为会员 id"
    )
    post_to_groups: StrictBool = Field(None, description="是否发到工会小组群")
    remind_unanswered: StrictBool = Field(None, description="截止前一天提醒范围内还没报名的会员")


class ActivityCreate(ActivityFields):
    """A new activity. title and starts_at are required."""

    title: Text(100) = Field(description="活动名称")
    starts_at: AwareDatetime = Field(description="开始时间（ISO 8601，须带时区）")
    created_by: OptionalText(32) = Field(
        None,
        description="发布人工号（可选）；小组长、分会主席的令牌必填，且只能发布面向发布人本小组（本分会）的活动",
    )


class ActivityUpdate(ActivityFields):
    """Fields to change; absent fields stay. Signed-up members are told of any change they can see (title, time,
    end, place, deadline, cancellation rule, description) in one message; capacity, audience and options not."""


class ActivityOut(BaseModel):
    id: int
    title: str
    description: str
    place: str
    starts_at: datetime
    ends_at: datetime | None
    signup_deadline: datetime
    capacity: int | None
    taken: int = Field(description="已确认人数（含家属）")
    confirmed: int = Field(description="已确认报名的会员数")
    waitlisted: int = Field(description="候补的会员数")
    waitlist_enabled: bool
    companions_max: int
    questions: list[Question]
    cancel_cutoff_hours: int | None
    audience_kind: AudienceKind
    audience_ids: list[int]
    post_to_groups: bool
    remind_unanswered: bool
    status: Literal["open", "cancelled"]
    created_by: str | None = Field(description="发布人工号")
    created_at: datetime


class ActivityList(BaseModel):
    items: list[ActivityOut]
    total: int
    page: int
    per_page: int


class ActivityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "cancelled"] | None = None
    upcoming: bool | None = Field(None, description="true = 只看未开始的")
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(50, ge=1, le=200)


class SignupCreate(BaseModel):
    """Sign a member up (same rules as the chat: capacity, waitlist, deadline, audience, duplicates)."""

    model_config = ConfigDict(extra="forbid")

    employee_no: Text(32) = Field(description="会员工号")
    companions: Annotated[StrictInt, Field(ge=0, le=20)] = Field(0, description="携带家属数")
    answers: dict[str, Text(100)] = Field(default_factory=dict, description="问题 key → 回答")


class SignupOut(BaseModel):
    id: int
    employee_no: str
    name: str
    branch: str | None
    group: str | None
    companions: int
    answers: dict[str, Any]
    status: Literal["confirmed", "waitlisted", "cancelled"]
    position: int = Field(description="先后顺序号")
    signed_by: str | None = Field(description="代报人工号")
    checked_in_at: datetime | None
    created_at: datetime


class SignupList(BaseModel):
    items: list[SignupOut]
    total: int


class SignupQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["confirmed", "waitlisted", "cancelled"] | None = None


# serialisation ------------------------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def activity_json(s, a: Activity) -> dict[str, Any]:
    c = counts(s, a.id)
    return {
        "id": a.id,
        "title": a.title,
        "description": a.description or "",
        "place": a.place or "",
        "starts_at": _iso(a.starts_at),
        "ends_at": _iso(a.ends_at),
        "signup_deadline": _iso(a.deadline),
        "capacity": a.capacity,
        "taken": a.taken,
        "confirmed": c["confirmed"],
        "waitlisted": c["waitlisted"],
        "waitlist_enabled": bool(a.waitlist_enabled),
        "companions_max": a.companions_max or 0,
        "questions": list(a.questions or []),
        "cancel_cutoff_hours": a.cancel_cutoff_hours,
        "audience_kind": a.audience_kind,
        "audience_ids": list(a.audience_ids or []),
        "post_to_groups": bool(a.post_to_groups),
        "remind_unanswered": bool(a.remind_unanswered),
        "status": a.status,
        "created_by": a.created_by.employee_no if a.created_by else None,
        "created_at": _iso(a.created_at),
    }


def signup_json(r: Signup) -> dict[str, Any]:
    m = r.member
    return {
        "id": r.id,
        "employee_no": m.employee_no,
        "name": m.name,
        "branch": m.branch.name if m.branch else None,
        "group": m.group.name if m.group else None,
        "companions": r.companions,
        "answers": dict(r.answers or {}),
        "status": r.status,
        "position": r.seq,
        "signed_by": r.signed_by.employee_no if r.signed_by else None,
        "checked_in_at": _iso(r.checked_in_at),
        "created_at": _iso(r.created_at),
    }


def _get(s, activity_id: int) -> Activity:
    a = s.get(Activity, activity_id)
    if a is None:
        raise ApiError(404, "not_found", "未找到该活动，请检查编号")
    return a


def _check(a: Activity) -> None:
    fields: dict[str, str] = {}
    if a.ends_at and a.ends_at <= a.starts_at:
        fields["ends_at"] = "结束时间应晚于开始时间"
    if a.signup_deadline and a.signup_deadline > a.starts_at:
        fields["signup_deadline"] = "报名截止不能晚于开始时间"
    if a.audience_kind in ("branches", "groups", "list") and not a.audience_ids:
        fields["audience_ids"] = "按分会、小组或名单报名时请填写 audience_ids"
    if len({q["key"] for q in a.questions or []}) != len(a.questions or []):
        fields["questions"] = "问题的 key 不能重复"
    if fields:
        raise validation_error(fields)


def _check_reach(s, creator: Member | None, kind: str, ids: list[int]) -> None:
    """A token without activities.manage_all (a group leader's or branch chair's) publishes as `created_by` and,
    by the console's rule, only for that organiser's own group or branch: the token's role and the creator's own
    roles must both reach the audience."""
    if token_can("activities.manage_all"):
        return
    from admin.activities import viewer_for

    if creator is None or not creator.active or not can(creator.roles, "activities.create"):
        raise ApiError(403, "forbidden", "该令牌发布活动须用 created_by 写明发布人（小组长或分会主席）的工号")
    for roles in (g.api_roles, creator.roles):
        if not viewer_for(s, roles, creator).may_publish(kind, ids):
            raise ApiError(403, "forbidden", "该令牌只能发布面向发布人本小组（分会主席：本分会）的活动")


def _bot():
    return current_app.extensions["bot"]


# endpoints -----------------------------------------------------------------------------------------------
@bp.get("/activities")
@require("activities.create")
def list_activities():
    args = query_args(ActivityQuery)
    stmt = select(Activity)
    if args.status:
        stmt = stmt.where(Activity.status == args.status)
    if args.upcoming:
        stmt = stmt.where(Activity.starts_at > clock().now())
    with db().Session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(
            stmt.order_by(Activity.starts_at.desc(), Activity.id.desc())
            .limit(args.per_page)
            .offset((args.page - 1) * args.per_page)
        ).all()
        items = [activity_json(s, a) for a in rows]
    return jsonify(items=items, total=total, page=args.page, per_page=args.per_page)


@bp.post("/activities")
@require("activities.create")
def create_activity():
    body = json_body(ActivityCreate)
    data = body.model_dump(exclude={"created_by"})
    now = clock().now()
    with transaction() as s:
        creator = find_member(s, body.created_by) if body.created_by else None
        a = Activity(
            title=data["title"],
            description=data["description"] or "",
            place=data["place"] or "",
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            signup_deadline=data["signup_deadline"],
            capacity=data["capacity"],
            taken=0,
            seq=0,
            waitlist_enabled=True if data["waitlist_enabled"] is None else data["waitlist_enabled"],
            companions_max=data["companions_max"] or 0,
            questions=data["questions"] or [],
            cancel_cutoff_hours=data["cancel_cutoff_hours"],
            audience_kind=data["audience_kind"] or "all",
            audience_ids=data["audience_ids"] or [],
            post_to_groups=bool(data["post_to_groups"]),
            remind_unanswered=bool(data["remind_unanswered"]),
            status="open",
            created_by_id=creator.id if creator else None,
            created_at=now,
            updated_at=now,
        )
        if a.starts_at <= now:
            raise validation_error({"starts_at": "开始时间应在将来"})
        _check(a)
        _check_reach(s, creator, a.audience_kind, a.audience_ids)
        s.add(a)
        s.flush()
        if a.post_to_groups:
            from handlers.activities import post_to_group_chats

            post_to_group_chats(_bot(), s, a)
        out = activity_json(s, a)
    log.info("api: token %s created activity %s", g.api_token.name, out["id"])
    resp = jsonify(out)
    resp.status_code = 201
    resp.headers["Location"] = url_for("api.get_activity", activity_id=out["id"])
    return resp


@bp.get("/activities/<int:activity_id>")
@require("activities.create")
def get_activity(activity_id: int):
    with db().Session() as s:
        return jsonify(activity_json(s, _get(s, activity_id)))


@bp.patch("/activities/<int:activity_id>")
@require("activities.manage_all")
def update_activity(activity_id: int):
    body = json_body(ActivityUpdate)
    data = {k: getattr(body, k) for k in body.model_fields_set}
    for key in (
        "title",
        "starts_at",
        "waitlist_enabled",
        "companions_max",
        "audience_kind",
        "post_to_groups",
    ):
        if key in data and data[key] is None:
            raise validation_error({key: "不能为 null"})
    bot = _bot()
    with transaction() as s:
        a = _get(s, activity_id)
        if a.status == "cancelled":
            raise ApiError(409, "activity_cancelled")
        _lock_activity(s, a.id)
        s.refresh(a)
        from handlers.activities import member_view, notify_changed, notify_promoted

        before = member_view(bot, a)
        for key, value in data.items():
            if key == "questions":
                value = [q.model_dump() if hasattr(q, "model_dump") else q for q in value or []]
            if key in ("description", "place"):
                value = value or ""
            if key == "audience_ids":
                value = value or []
            setattr(a, key, value)
        if a.capacity is not None and a.capacity < a.taken:
            raise ApiError(409, "capacity_below_taken", f"名额不能少于已确认的 {a.taken} 人")
        _check(a)
        a.updated_at = clock().now()
        s.flush()
        notify_promoted(bot, s, a, promote_waitlist(s, a, clock().now()))
        s.refresh(a)
        notify_changed(bot, s, a, before)
        out = activity_json(s, a)
    return jsonify(out)


@bp.post("/activities/<int:activity_id>/cancel")
@require("activities.manage_all")
def cancel_activity_endpoint(activity_id: int):
    from handlers.activities import announce_cancelled

    with transaction() as s:
        a = _get(s, activity_id)
        if a.status != "cancelled":
            announce_cancelled(_bot(), s, a, clock().now())
            s.refresh(a)
        out = activity_json(s, a)
    return jsonify(out)


@bp.get("/activities/<int:activity_id>/signups")
@require("activities.manage_all")
def list_signups(activity_id: int):
    args = query_args(SignupQuery)
    with db().Session() as s:
        _get(s, activity_id)
        stmt = select(Signup).where(Signup.activity_id == activity_id)
        if args.status:
            stmt = stmt.where(Signup.status == args.status)
        rows = s.scalars(stmt.order_by(Signup.seq)).all()
        items = [signup_json(r) for r in rows]
    return jsonify(items=items, total=len(items))


@bp.post("/activities/<int:activity_id>/signups")
@require("activities.manage_all")
def add_signup(activity_id: int):
    body = json_body(SignupCreate)
    with transaction() as s:
        a = _get(s, activity_id)
        member = find_member(s, body.employee_no)
        result = sign_up(s, a, member, clock().now(), companions=body.companions, answers=dict(body.answers))
        if not result.ok:
            status, code, message = REFUSALS[result.outcome]
            raise ApiError(status, code, message)
        assert result.signup is not None
        from handlers.activities import notify_added

        notify_added(_bot(), s, a, result.signup, "工会")
        out = signup_json(result.signup)
    resp = jsonify(out)
    resp.status_code = 201
    return resp


@bp.delete("/activities/<int:activity_id>/signups/<path:employee_no>")
@require("activities.manage_all")
def remove_signup(activity_id: int, employee_no: str):
    """Organisers remove a sign-up (the cancellation cut-off does not apply); the waitlist moves up."""
    from handlers.activities import notify_promoted

    with transaction() as s:
        a = _get(s, activity_id)
        member = find_member(s, employee_no)
        res = cancel_signup(s, a, member, clock().now(), force=True)
        if res.outcome != "cancelled":
            raise ApiError(404, "not_signed_up")
        notify_promoted(_bot(), s, a, res.promoted or [])
        assert res.signup is not None
        s.refresh(res.signup)
        out = signup_json(res.signup)
    return jsonify(out)


# OpenAPI -------------------------------------------------------------------------------------------------
_ID = {"name": "activity_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_NO = {"name": "employee_no", "in": "path", "required": True, "schema": {"type": "string"}}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_REFUSAL_TEXT = "；".join(f"{code}（{status}）：{msg}" for status, code, msg in REFUSALS.values())

register_paths(
    {
        "/activities": {
            "get": {
                "summary": "活动列表",
                "operationId": "listActivities",
                "tags": ["activities"],
                "x-permission": "activities.create",
                "parameters": [
                    _q("status", {"type": "string", "enum": ["open", "cancelled"]}, "状态"),
                    _q("upcoming", {"type": "boolean"}, "true = 只看未开始的"),
                    _q("page", {"type": "integer", "minimum": 1, "default": 1}, "页码"),
                    _q(
                        "per_page",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "每页条数",
                    ),
                ],
                "responses": {"200": json_response("ActivityList"), **error_responses(401, 403, 422)},
            },
            "post": {
                "summary": "发布活动",
                "description": "没有 activities.manage_all 权限的令牌（小组长、分会主席）须写 created_by，"
                "只能发布面向发布人本小组（分会主席：本分会）的活动，否则 403。",
                "operationId": "createActivity",
                "tags": ["activities"],
                "x-permission": "activities.create",
                "requestBody": json_request("ActivityCreate"),
                "responses": {
                    "201": json_response("ActivityOut", "已创建"),
                    **error_responses(400, 401, 403, 404, 413, 415, 422),
                },
            },
        },
        "/activities/{activity_id}": {
            "get": {
                "summary": "查看活动（含实时人数）",
                "operationId": "getActivity",
                "tags": ["activities"],
                "x-permission": "activities.create",
                "parameters": [_ID],
                "responses": {"200": json_response("ActivityOut"), **error_responses(401, 403, 404)},
            },
            "patch": {
                "summary": "修改活动（只改提交的字段；名称、时间、地点、截止、说明等会员看得到的内容有变更时，私信通知已报名的会员；扩容会按顺序递补候补）",
                "operationId": "updateActivity",
                "tags": ["activities"],
                "x-permission": "activities.manage_all",
                "parameters": [_ID],
                "requestBody": json_request("ActivityUpdate"),
                "responses": {
                    "200": json_response("ActivityOut"),
                    **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/activities/{activity_id}/cancel": {
            "post": {
                "summary": "取消活动（私信通知所有报名的会员）",
                "operationId": "cancelActivity",
                "tags": ["activities"],
                "x-permission": "activities.manage_all",
                "parameters": [_ID],
                "responses": {"200": json_response("ActivityOut"), **error_responses(401, 403, 404)},
            },
        },
        "/activities/{activity_id}/signups": {
            "get": {
                "summary": "报名名单（按先后顺序）",
                "operationId": "listSignups",
                "tags": ["activities"],
                "x-permission": "activities.manage_all",
                "parameters": [
                    _ID,
                    _q(
                        "status", {"type": "string", "enum": ["confirmed", "waitlisted", "cancelled"]}, "状态"
                    ),
                ],
                "responses": {"200": json_response("SignupList"), **error_responses(401, 403, 404, 422)},
            },
            "post": {
                "summary": "为会员报名（与聊天中的规则相同）",
                "description": "满员且开启候补时登记为候补（status=waitlisted）。拒绝时的错误代码："
                + _REFUSAL_TEXT,
                "operationId": "addSignup",
                "tags": ["activities"],
                "x-permission": "activities.manage_all",
                "parameters": [_ID],
                "requestBody": json_request("SignupCreate"),
                "responses": {
                    "201": json_response("SignupOut", "已报名或已登记候补"),
                    **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/activities/{activity_id}/signups/{employee_no}": {
            "delete": {
                "summary": "取消会员的报名（不受取消截止限制；候补按顺序递补并私信通知）",
                "operationId": "removeSignup",
                "tags": ["activities"],
                "x-permission": "activities.manage_all",
                "parameters": [_ID, _NO],
                "responses": {"200": json_response("SignupOut"), **error_responses(401, 403, 404)},
            },
        },
    },
    model_schemas(ActivityCreate, ActivityUpdate, SignupCreate)
    | model_schemas(ActivityOut, ActivityList, SignupOut, SignupList, mode="serialization"),
)
