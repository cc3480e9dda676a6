"""Console pages for meetings (会议): list, create / edit (notifying everyone invited of a change), cancel, the
meeting page with the RSVP list, attendance ticks and the congress quorum, and the .xlsx export.

Clerks and the chair (meetings.manage) see and manage every meeting; the chat (发布会议, 会议改期, 取消会议) and
the API apply the same rules through the same functions in handlers/meetings.py.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin import console_blueprint, current_staff, nav, require
from handlers.meetings import (
    cancel_meeting,
    create_meeting,
    default_offsets,
    lock_meeting,
    meeting_errors,
    meeting_xlsx,
    offsets_text,
    parse_offsets,
    reminder_offsets,
    update_meeting,
)
from models.meeting import INVITE_ROLES, KINDS, RSVP_LABELS, Meeting, MeetingInvite, quorum, resolve_attendees
from models.member import ROLE_LABELS, Branch, Group, Member
from models.staff import StaffAccount

bp = console_blueprint("meetings_admin", __name__, url_prefix="/admin/meetings")
nav.register("会议", "meetings_admin.index", "meetings.manage", order=35)

STATUS_LABELS = {"scheduled": "待召开", "cancelled": "已取消"}
ATTENDED_VALUES = {"yes": True, "no": False, "clear": None}


def init_app(app) -> None:
    if "meetings_admin" not in app.blueprints:
        app.register_blueprint(bp)


def _db():
    return current_app.extensions["db"]


def _bot():
    return current_app.extensions["bot"]


def _staff_member(s) -> Member | None:
    staff = current_staff()
    acc = s.get(StaffAccount, staff.id) if staff else None
    return acc.member if acc else None


def _local_input(dt: datetime | None) -> str:
    return _bot().clock.local(dt).strftime("%Y-%m-%dT%H:%M") if dt else ""


def _parse_local(value: str) -> datetime | None:
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _bot().clock.at(naive.date(), naive.hour, naive.minute)


def _get(s, meeting_id: int, lock: bool = False) -> Meeting:
    return (lock_meeting(s, meeting_id) if lock else s.get(Meeting, meeting_id)) or abort(404)


def _counts(m: Meeting) -> dict[str, int]:
    c = Counter(inv.rsvp for inv in m.invites)
    return {
        "invited": len(m.invites),
        "attend": c["attend"],
        "excused": c["excused"],
        "none": c["none"],
        "came": sum(1 for inv in m.invites if inv.attended),
    }


def _quorum(m: Meeting) -> dict[str, Any] | None:
    """Confirmed (and, once ticked, present) delegates against "more than two thirds" for a congress."""
    if not m.is_congress:
        return None
    confirmed, total, needed = quorum(m)
    present = sum(1 for inv in m.invites if inv.member.is_delegate and inv.attended)
    return {"confirmed": confirmed, "total": total, "needed": needed, "present": present}


# ------------------------------------------------------------------------------------------------ list
@bp.get("/")
@require("meetings.manage")
def index():
    status = request.args.get("status", "")
    when = request.args.get("when", "")
    now = _bot().clock.now()
    with _db().Session() as s:
        q = select(Meeting).options(selectinload(Meeting.invites).selectinload(MeetingInvite.member))
        if status in STATUS_LABELS:
            q = q.where(Meeting.status == status)
        if when == "upcoming":
            q = q.where(Meeting.starts_at > now).order_by(Meeting.starts_at)
        elif when == "past":
            q = q.where(Meeting.starts_at <= now).order_by(Meeting.starts_at.desc())
        else:
            q = q.order_by(Meeting.starts_at.desc())
        rows = [
            {"m": m, "c": _counts(m), "q": _quorum(m), "past": m.starts_at <= now}
            for m in s.scalars(q.limit(300))
        ]
        return render_template(
            "meetings_admin/index.html", rows=rows, status=status, when=when, status_labels=STATUS_LABELS
        )


# ------------------------------------------------------------------------------------------------ form
def _form_from(s, m: Meeting | None) -> dict[str, Any]:
    spec = (m.attendees if m else None) or {}
    member_ids = spec.get("members") or []
    numbers = (
        s.scalars(select(Member.employee_no).where(Member.id.in_(member_ids))).all() if member_ids else []
    )
    return {
        "title": m.title if m else "",
        "kind": m.kind if m else KINDS[0],
        "starts_at": _local_input(m.starts_at) if m else "",
        "place": m.place if m else "",
        "agenda": m.agenda if m else "",
        "rsvp_deadline": _local_input(m.rsvp_deadline) if m else "",
        "reminders": offsets_text(m.reminder_minutes) if m else "",
        "roles": list(spec.get("roles") or []),
        "branches": list(spec.get("branches") or []),
        "groups": list(spec.get("groups") or []),
        "members": " ".join(numbers),
        "delegates": bool(spec.get("delegates")),
        "all": bool(spec.get("all")),
    }


def _read_form(s, m: Meeting | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(raw form for re-display, clean values, errors) — the rules of meeting_errors plus the attendee list."""
    f = request.form
    raw: dict[str, Any] = {
        k: f.get(k, "").strip()
        for k in ("title", "kind", "starts_at", "place", "agenda", "rsvp_deadline", "reminders", "members")
    }
    raw["roles"] = [r for r in f.getlist("roles") if r in INVITE_ROLES]
    raw["branches"] = [int(x) for x in f.getlist("branches") if x.isdigit()]
    raw["groups"] = [int(x) for x in f.getlist("groups") if x.isdigit()]
    raw["delegates"] = bool(f.get("delegates"))
    raw["all"] = bool(f.get("all"))
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {
        "title": raw["title"],
        "kind": raw["kind"],
        "place": raw["place"][:200],
        "agenda": raw["agenda"][:2000],
    }
    for key in ("starts_at", "rsvp_deadline"):
        clean[key] = _parse_local(raw[key]) if raw[key] else None
        if raw[key] and clean[key] is None:
            errors[key] = "时间格式不对"
    try:
        clean["reminder_minutes"] = parse_offsets(raw["reminders"]) or None
    except ValueError as e:
        errors["reminders"] = str(e)
    now = _bot().clock.now()
    for key, message in meeting_errors(
        title=clean["title"],
        kind=clean["kind"],
        starts_at=clean["starts_at"],
        rsvp_deadline=clean["rsvp_deadline"],
        now=now,
        new_time=m is None or clean["starts_at"] != m.starts_at,
        new_deadline=m is None or clean["rsvp_deadline"] != m.rsvp_deadline,
    ).items():
        errors.setdefault(key, message)
    numbers = [n for n in re.split(r"[\s,，、;；]+", raw["members"]) if n]
    found = (
        dict(
            s.execute(
                select(Member.employee_no, Member.id).where(
                    Member.employee_no.in_(numbers), Member.active.is_(True)
                )
            ).all()
        )
        if numbers
        else {}
    )
    missing = [n for n in numbers if n not in found]
    if missing:
        errors["members"] = f"没有找到这些工号的在册会员：{'、'.join(missing[:20])}"
    spec: dict[str, Any] = {}
    for key, value in (
        ("roles", raw["roles"]),
        ("branches", raw["branches"]),
        ("groups", raw["groups"]),
        ("members", sorted(set(found.values()))),
    ):
        if value:
            spec[key] = value
    if raw["delegates"]:
        spec["delegates"] = True
    if raw["all"]:
        spec["all"] = True
    clean["attendees"] = spec
    if "members" not in errors and not resolve_attendees(s, spec):
        errors["attendees"] = "请选择参会人员（角色、分会、小组或工号），且至少包含一位在册会员"
    return raw, clean, errors


def _choices(s) -> dict[str, Any]:
    return {
        "kinds": KINDS,
        "roles": [(r, ROLE_LABELS[r]) for r in INVITE_ROLES],
        "branch_options": list(s.scalars(select(Branch).order_by(Branch.name))),
        "group_options": [
            (g.id, f"{g.branch.name} · {g.name}")
            for g in s.scalars(select(Group).order_by(Group.branch_id, Group.name))
        ],
        "default_reminders": offsets_text(default_offsets(s)),
    }


@bp.route("/new", methods=["GET", "POST"])
@require("meetings.manage")
def new():
    with _db().transaction() as s:
        if request.method == "GET":
            return render_template(
                "meetings_admin/form.html", form=_form_from(s, None), errors={}, m=None, **_choices(s)
            )
        raw, clean, errors = _read_form(s, None)
        if errors:
            return render_template(
                "meetings_admin/form.html", form=raw, errors=errors, m=None, **_choices(s)
            ), 422
        m = create_meeting(s, _bot(), created_by=_staff_member(s), **clean)
        mid, invited = m.id, len(m.invites)
    flash(f"已发布会议“{clean['title']}”，会议通知已发给 {invited} 人。", "ok")
    return redirect(url_for("meetings_admin.detail", meeting_id=mid))


def _editable(m: Meeting) -> str | None:
    """Why this meeting can no longer be changed, or None."""
    if m.status == "cancelled":
        return "会议已取消，不能再修改。"
    if m.starts_at <= _bot().clock.now():
        return "会议已经开始或结束，不能再修改。"
    return None


@bp.route("/<int:meeting_id>/edit", methods=["GET", "POST"])
@require("meetings.manage")
def edit(meeting_id: int):
    with _db().transaction() as s:
        m = _get(s, meeting_id, lock=request.method == "POST")
        if (why := _editable(m)) is not None:
            flash(why, "error")
            return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id))
        if request.method == "GET":
            return render_template(
                "meetings_admin/form.html", form=_form_from(s, m), errors={}, m=m, **_choices(s)
            )
        raw, clean, errors = _read_form(s, m)
        if errors:
            return render_template(
                "meetings_admin/form.html", form=raw, errors=errors, m=m, **_choices(s)
            ), 422
        result = update_meeting(s, _bot(), m, **clean)
    parts = ["已保存。"]
    if result.told:
        parts.append(f"变更通知已发给受邀的 {result.told} 人。")
    if result.added:
        parts.append(f"新邀请 {result.added} 人（已发会议通知）。")
    if result.removed:
        parts.append(f"{result.removed} 人不再参会（已告知）。")
    flash("".join(parts), "ok")
    return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id))


# ---------------------------------------------------------------------------------------------- detail
@bp.get("/<int:meeting_id>")
@require("meetings.manage")
def detail(meeting_id: int):
    rsvp = request.args.get("rsvp", "")
    with _db().Session() as s:
        m = _get(s, meeting_id)
        rows = [inv for inv in m.invites if not rsvp or inv.rsvp == rsvp]
        creator = s.get(Member, m.created_by_id) if m.created_by_id else None
        return render_template(
            "meetings_admin/detail.html",
            m=m,
            rows=rows,
            rsvp=rsvp,
            c=_counts(m),
            q=_quorum(m),
            creator=creator,
            rsvp_labels=RSVP_LABELS,
            reminders=offsets_text(reminder_offsets(s, m)),
            editable=_editable(m) is None,
            role_labels=ROLE_LABELS,
            audience=_audience_text(s, m.attendees or {}),
        )


def _audience_text(s, spec: dict[str, Any]) -> str:
    parts = []
    if spec.get("all"):
        parts.append("全体会员")
    if spec.get("delegates"):
        parts.append("职工代表")
    parts += [ROLE_LABELS.get(r, r) for r in spec.get("roles") or []]
    for model, key in ((Branch, "branches"), (Group, "groups")):
        if spec.get(key):
            parts += list(s.scalars(select(model.name).where(model.id.in_(spec[key]))))
    if spec.get("members"):
        parts.append(f"指定会员 {len(spec['members'])} 人")
    return "、".join(parts) or "—"


@bp.post("/<int:meeting_id>/invites/<int:invite_id>/attendance")
@require("meetings.manage")
def attendance(meeting_id: int, invite_id: int):
    value = request.form.get("attended", "")
    if value not in ATTENDED_VALUES:
        abort(400, description="签到状态无效：请从页面上的按钮操作。")
    with _db().transaction() as s:
        m = _get(s, meeting_id)
        inv = s.get(MeetingInvite, invite_id)
        if inv is None or inv.meeting_id != m.id:
            abort(404)
        if m.status == "cancelled":
            flash("会议已取消，不能签到。", "error")
        else:
            inv.attended = ATTENDED_VALUES[value]
    return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id, _anchor="list"))


@bp.post("/<int:meeting_id>/cancel")
@require("meetings.manage")
def cancel(meeting_id: int):
    with _db().transaction() as s:
        m = _get(s, meeting_id, lock=True)
        if (why := _editable(m)) is not None:
            flash(why, "error")
            return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id))
        if request.form.get("confirm", "").strip() != m.title:
            flash("请输入会议名称确认取消。", "error")
            return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id))
        told = cancel_meeting(s, _bot(), m, request.form.get("reason", ""))
    flash(f"会议已取消，取消通知已发给受邀的 {told} 人。", "ok")
    return redirect(url_for("meetings_admin.detail", meeting_id=meeting_id))


@bp.get("/<int:meeting_id>/export")
@require("meetings.manage")
def export(meeting_id: int):
    with _db().Session() as s:
        data = meeting_xlsx(_bot(), _get(s, meeting_id))
    resp = Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    name = quote(f"会议回执-{meeting_id}.xlsx")
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"meeting-{meeting_id}.xlsx\"; filename*=UTF-8''{name}"
    )
    return resp
