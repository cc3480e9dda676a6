"""Console pages for activities: list with attendance figures, create / edit, sign-up list with filters, counts
by branch and group, waitlist, manual add and remove, check-in ticks, cancel, and the .xlsx export.

Who sees what: clerks and the chair (activities.manage_all) and an activity's creator see and manage all of it;
a branch chair sees the activities open to their branch and only their branch's sign-ups, a group leader the same
for their group (lists, counts, export and attendance figures alike). They publish for their own branch or group.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select, update

from admin import console_blueprint, current_staff, nav, require
from bot.permissions import can
from models.activity import (
    AUDIENCE_LABELS,
    MAX_QUESTIONS,
    STATUS_LABELS,
    Activity,
    Signup,
    cancel_signup,
    export_xlsx,
    promote_waitlist,
    sign_up,
    signups_of,
)
from models.member import Branch, Group, Member
from models.staff import StaffAccount

bp = console_blueprint("activities_admin", __name__, url_prefix="/admin/activities")
nav.register("活动报名", "activities_admin.index", "activities.create", order=30)

REFUSALS = {
    "full": "名额已满，且本活动不设候补",
    "deadline": "报名已截止",
    "started": "活动已经开始或结束",
    "audience": "该会员不在报名范围内",
    "duplicate": "该会员已经报名",
    "cancelled": "活动已取消",
    "companions": "携带家属人数超过上限",
    "answers": "请填写报名问题",
}


def init_app(app) -> None:
    if "activities_admin" not in app.blueprints:
        app.register_blueprint(bp)


def _db():
    return current_app.extensions["db"]


def _bot():
    return current_app.extensions["bot"]


def _staff_member(s) -> Member | None:
    staff = current_staff()
    acc = s.get(StaffAccount, staff.id) if staff else None
    return acc.member if acc else None


@dataclass
class Viewer:
    """The logged-in account's reach: the whole union (clerks, chair), one branch, one group, or nothing."""

    manage_all: bool
    me: Member | None
    reach: str  # all | branch | group | none
    members: set[int] | None = None  # whose sign-ups may be seen; None = everyone
    branch_ids: set[int] = field(default_factory=set)  # audiences this account may publish for
    group_ids: set[int] = field(default_factory=set)

    def owns(self, a: Activity) -> bool:
        return self.manage_all or (self.me is not None and a.created_by_id == self.me.id)

    def sees(self, a: Activity) -> bool:
        """An activity is this account's business when it created it or the audience reaches its people."""
        if self.owns(a) or self.reach == "all":
            return True
        ids = set(a.audience_ids or [])
        if self.reach == "none":
            return False
        if a.audience_kind in ("all", "women", "retirees"):
            return True
        if a.audience_kind == "branches":
            return self.me is not None and self.me.branch_id in ids
        if a.audience_kind == "groups":
            return bool(ids & self.group_ids)
        if a.audience_kind == "list":
            return bool(ids & (self.members or set()))
        return False

    def audience_kinds(self) -> list[str]:
        """The audiences this account may publish for."""
        if self.reach == "all":
            return list(AUDIENCE_LABELS)
        return {"branch": ["branches", "groups", "list"], "group": ["groups", "list"]}.get(self.reach, [])

    def may_publish(self, kind: str, ids: list[int]) -> bool:
        """Whether this account may publish an activity for audience `kind` with `ids` (branch, group or
        member ids): anything for the whole union, else only its own branch or group and their people."""
        if kind not in self.audience_kinds():
            return False
        if self.reach == "all":
            return True
        within = {"branches": self.branch_ids, "groups": self.group_ids, "list": self.members or set()}[kind]
        return set(ids) <= within


def viewer_for(s, roles, me: Member | None) -> Viewer:
    """The reach of an account holding `roles` and acting as member `me`: the console's rule, which the API's
    tokens share."""
    if can(roles, "activities.manage_all"):
        branches = set(s.scalars(select(Branch.id)))
        return Viewer(True, me, "all", None, branches, set(s.scalars(select(Group.id))))
    if me is not None and me.branch_id and can(roles, "activities.own_branch"):
        groups = set(s.scalars(select(Group.id).where(Group.branch_id == me.branch_id)))
        people = set(s.scalars(select(Member.id).where(Member.branch_id == me.branch_id)))
        return Viewer(False, me, "branch", people, {me.branch_id}, groups)
    if me is not None and me.group_id:
        people = set(s.scalars(select(Member.id).where(Member.group_id == me.group_id)))
        return Viewer(False, me, "group", people, set(), {me.group_id})
    return Viewer(False, me, "none", set())


def _viewer(s) -> Viewer:
    staff = current_staff()
    assert staff is not None
    return viewer_for(s, staff.roles, _staff_member(s))


def _access(s, a: Activity) -> tuple[bool, set[int] | None]:
    """(may manage, whose sign-ups may be seen: None = everyone); 403 when the activity is not this account's."""
    v = _viewer(s)
    if not v.sees(a):
        abort(403)
    return (True, None) if v.owns(a) else (False, v.members)


def _local_input(dt: datetime | None) -> str:
    return _bot().clock.local(dt).strftime("%Y-%m-%dT%H:%M") if dt else ""


def _parse_local(value: str) -> datetime | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return None
    clock = _bot().clock
    return clock.at(naive.date(), naive.hour, naive.minute)


# ------------------------------------------------------------------------------------------------ list
@bp.get("/")
@require("activities.create")
def index():
    clock = _bot().clock
    year = request.args.get("year", "")
    year = int(year) if year.isdigit() and 2000 <= int(year) <= 2999 else clock.today().year
    status = request.args.get("status", "")
    with _db().Session() as s:
        v = _viewer(s)
        q = select(Activity).order_by(Activity.starts_at.desc())
        if status in ("open", "cancelled"):
            q = q.where(Activity.status == status)
        rows = []
        now = clock.now()
        for a in s.scalars(q.limit(300)):
            if not v.sees(a):
                continue
            scope = None if v.owns(a) else v.members
            mine = [
                r
                for r in s.execute(
                    select(Signup.member_id, Signup.status, Signup.checked_in_at).where(
                        Signup.activity_id == a.id
                    )
                )
                if scope is None or r.member_id in scope
            ]
            counts = Counter(r.status for r in mine)
            rows.append(
                {
                    "a": a,
                    "confirmed": counts["confirmed"],
                    "waitlisted": counts["waitlisted"],
                    "came": sum(1 for r in mine if r.checked_in_at is not None),
                    "past": a.starts_at <= now,
                }
            )
        year_stats = _year_stats(s, v, year)
    return render_template(
        "activities_admin/index.html", rows=rows, year=year, status=status, year_stats=year_stats
    )


def _year_stats(s, v: Viewer, year: int) -> dict[str, int]:
    """Attendance in a calendar year of the union's zone: activities held (not cancelled), confirmed sign-ups,
    check-ins and how many different members came — within what this account may see."""
    clock = _bot().clock
    start, end = clock.at(datetime(year, 1, 1).date()), clock.at(datetime(year + 1, 1, 1).date())
    acts = [
        a
        for a in s.scalars(
            select(Activity).where(
                Activity.starts_at >= start, Activity.starts_at < end, Activity.status == "open"
            )
        )
        if v.sees(a)
    ]
    rows = [
        r
        for a in acts
        for r in s.execute(
            select(Signup.member_id, Signup.status, Signup.checked_in_at).where(Signup.activity_id == a.id)
        )
        if v.owns(a) or v.members is None or r.member_id in v.members
    ]
    came = [r.member_id for r in rows if r.checked_in_at is not None]
    return {
        "activities": len(acts),
        "confirmed": sum(1 for r in rows if r.status == "confirmed"),
        "came": len(came),
        "people": len(set(came)),
    }


# ------------------------------------------------------------------------------------------------ form
def _form_from(s, a: Activity | None) -> dict[str, Any]:
    if a is None:
        return {
            "title": "",
            "description": "",
            "place": "",
            "starts_at": "",
            "ends_at": "",
            "signup_deadline": "",
            "capacity": "",
            "waitlist_enabled": True,
            "companions_max": "0",
            "cancel_cutoff_hours": "",
            "audience_kind": "all",
            "audience_branch_ids": [],
            "audience_group_ids": [],
            "audience_people": "",
            "post_to_groups": False,
            "remind_unanswered": False,
            "questions": [{"label": "", "options": ""} for _ in range(MAX_QUESTIONS)],
        }
    qs = [{"label": q["label"], "options": "、".join(q.get("options") or [])} for q in a.questions or []]
    qs += [{"label": "", "options": ""} for _ in range(MAX_QUESTIONS - len(qs))]
    ids = list(a.audience_ids or [])
    people = (
        s.scalars(select(Member).where(Member.id.in_(ids)).order_by(Member.employee_no))
        if a.audience_kind == "list"
        else []
    )
    return {
        "title": a.title,
        "description": a.description or "",
        "place": a.place or "",
        "starts_at": _local_input(a.starts_at),
        "ends_at": _local_input(a.ends_at),
        "signup_deadline": _local_input(a.signup_deadline),
        "capacity": "" if a.capacity is None else str(a.capacity),
        "waitlist_enabled": a.waitlist_enabled,
        "companions_max": str(a.companions_max or 0),
        "cancel_cutoff_hours": "" if a.cancel_cutoff_hours is None else str(a.cancel_cutoff_hours),
        "audience_kind": a.audience_kind,
        "audience_branch_ids": ids if a.audience_kind == "branches" else [],
        "audience_group_ids": ids if a.audience_kind == "groups" else [],
        "audience_people": "\n".join(f"{m.name}（{m.employee_no}）" for m in people),
        "post_to_groups": a.post_to_groups,
        "remind_unanswered": a.remind_unanswered,
        "questions": qs,
    }


_PERSON = re.compile(r"(.+?)[(（]\s*([^()（）\s]+)\s*[)）]")


def resolve_people(s, text: str, within: set[int] | None) -> tuple[list[int], list[str]]:
    """The members a “指定人员” list names: 工号, 姓名 or 姓名（工号）, separated by spaces, commas or lines.

    Returns (member ids, problems): unknown names or numbers, a name several members share (write the 工号),
    a 工号 whose name differs, and anyone outside `within` (a branch chair's or group leader's people).
    """
    ids: list[int] = []
    unknown, twins, mismatched, outside = [], [], [], []
    for token in re.split(r"[\s,，、;；]+", text.strip()):
        if not token:
            continue
        m = _PERSON.fullmatch(token)
        name, number = (m[1], m[2]) if m else (None, token)
        active = select(Member).where(Member.active.is_(True))
        found = list(s.scalars(active.where(Member.employee_no == number)))
        if found and name and found[0].name != name:
            mismatched.append(f"{number} 是{found[0].name}，不是{name}")
            continue
        if not found and name is None:
            found = list(s.scalars(active.where(Member.name == token)))
        if not found:
            unknown.append(token)
        elif len(found) > 1:
            twins.append(f"{token}（{'、'.join(f.employee_no for f in found)}）")
        elif within is not None and found[0].id not in within:
            outside.append(found[0].name)
        elif found[0].id not in ids:
            ids.append(found[0].id)
    problems = []
    if unknown:
        problems.append("找不到这些会员：" + "、".join(unknown))
    if twins:
        problems.append("同名的会员请写工号：" + "；".join(twins))
    if mismatched:
        problems.append("工号和姓名对不上：" + "；".join(mismatched))
    if outside:
        problems.append("不在您负责的范围内：" + "、".join(outside))
    return ids, problems


def _int_list(values: list[str]) -> list[int]:
    return [int(x) for x in values if x.isdigit() and len(x) < 10]


def _read_form(s, v: Viewer) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(raw form for re-display, clean values, errors)."""
    f = request.form
    raw: dict[str, Any] = {
        k: f.get(k, "").strip()
        for k in _form_from(s, None)
        if k not in ("questions", "audience_branch_ids", "audience_group_ids")
    }
    raw["waitlist_enabled"] = bool(f.get("waitlist_enabled"))
    raw["post_to_groups"] = bool(f.get("post_to_groups"))
    raw["remind_unanswered"] = bool(f.get("remind_unanswered"))
    raw["audience_branch_ids"] = _int_list(f.getlist("audience_branch_ids"))
    raw["audience_group_ids"] = _int_list(f.getlist("audience_group_ids"))
    raw["questions"] = [
        {"label": f.get(f"q{i}_label", "").strip(), "options": f.get(f"q{i}_options", "").strip()}
        for i in range(MAX_QUESTIONS)
    ]
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if not 1 <= len(raw["title"]) <= 100:
        errors["title"] = "请填写活动名称（100 字以内）"
    clean["title"] = raw["title"]
    clean["description"] = raw["description"][:2000]
    clean["place"] = raw["place"][:200]
    for key in ("starts_at", "ends_at", "signup_deadline"):
        clean[key] = _parse_local(raw[key])
        if raw[key] and clean[key] is None:
            errors[key] = "时间格式不对"
    if clean["starts_at"] is None and "starts_at" not in errors:
        errors["starts_at"] = "请填写开始时间"
    if clean["starts_at"] and clean["ends_at"] and clean["ends_at"] <= clean["starts_at"]:
        errors["ends_at"] = "结束时间应晚于开始时间"
    if clean["starts_at"] and clean["signup_deadline"] and clean["signup_deadline"] > clean["starts_at"]:
        errors["signup_deadline"] = "报名截止不能晚于开始时间"
    for key, low, high in (
        ("capacity", 1, 100_000),
        ("companions_max", 0, 20),
        ("cancel_cutoff_hours", 0, 720),
    ):
        value = raw[key]
        if not value:
            clean[key] = None if key != "companions_max" else 0
        elif value.isdigit() and low <= int(value) <= high:
            clean[key] = int(value)
        else:
            errors[key] = f"请填写 {low}–{high} 的整数"
    clean["waitlist_enabled"] = raw["waitlist_enabled"]
    clean["post_to_groups"] = raw["post_to_groups"]
    clean["remind_unanswered"] = raw["remind_unanswered"]
    kind = raw["audience_kind"]
    clean["audience_kind"], clean["audience_ids"] = kind, []
    if kind not in v.audience_kinds():
        errors["audience_kind"] = (
            "请选择报名范围" if kind not in AUDIENCE_LABELS else "您只能发布面向本分会或本小组的活动"
        )
    elif kind == "branches":
        clean["audience_ids"] = [i for i in raw["audience_branch_ids"] if i in v.branch_ids]
        if not clean["audience_ids"]:
            errors["audience_branch_ids"] = "请选择分会"
    elif kind == "groups":
        clean["audience_ids"] = [i for i in raw["audience_group_ids"] if i in v.group_ids]
        if not clean["audience_ids"]:
            errors["audience_group_ids"] = "请选择小组"
    elif kind == "list":
        ids, problems = resolve_people(s, raw["audience_people"], v.members)
        clean["audience_ids"] = ids
        if problems or not ids:
            errors["audience_people"] = "；".join(problems) or "请填写报名人员（工号或姓名）"
    questions = []
    for i, q in enumerate(raw["questions"]):
        if q["label"]:
            options = [
                o.strip()
                for o in q["options"].replace(",", "、").replace("，", "、").split("、")
                if o.strip()
            ]
            questions.append({"key": f"q{i + 1}", "label": q["label"][:50], "options": options[:20]})
    clean["questions"] = questions
    return raw, clean, errors


def _audience_text(s, a: Activity) -> str:
    ids = list(a.audience_ids or [])
    if a.audience_kind == "branches":
        names = s.scalars(select(Branch.name).where(Branch.id.in_(ids)).order_by(Branch.name))
    elif a.audience_kind == "groups":
        names = s.scalars(select(Group.name).where(Group.id.in_(ids)).order_by(Group.name))
    elif a.audience_kind == "list":
        return f"指定人员（{len(ids)} 人）"
    else:
        return AUDIENCE_LABELS.get(a.audience_kind, a.audience_kind)
    return f"{AUDIENCE_LABELS[a.audience_kind]}：" + "、".join(names)


def _choices(s, v: Viewer) -> dict[str, Any]:
    branches = [b for b in s.scalars(select(Branch).order_by(Branch.name)) if b.id in v.branch_ids]
    groups = [
        (g.id, f"{g.branch.name} · {g.name}")
        for g in s.scalars(select(Group).order_by(Group.branch_id, Group.name))
        if g.id in v.group_ids
    ]
    kinds = {k: AUDIENCE_LABELS[k] for k in v.audience_kinds()}
    return {"branches": branches, "groups": groups, "audience_labels": kinds}


@bp.route("/new", methods=["GET", "POST"])
@require("activities.create")
def new():
    with _db().transaction() as s:
        v = _viewer(s)
        if request.method == "GET":
            form = _form_from(s, None)
            if not v.manage_all:  # a branch chair or group leader: their own branch / group, ready to go
                form["audience_kind"] = v.audience_kinds()[0] if v.audience_kinds() else "all"
                form["audience_branch_ids"] = sorted(v.branch_ids)
                form["audience_group_ids"] = sorted(v.group_ids) if v.reach == "group" else []
            return render_template(
                "activities_admin/form.html", form=form, errors={}, a=None, **_choices(s, v)
            )
        raw, clean, errors = _read_form(s, v)
        if clean.get("starts_at") and clean["starts_at"] <= _bot().clock.now():
            errors["starts_at"] = "开始时间应在将来"
        if errors:
            return render_template(
                "activities_admin/form.html", form=raw, errors=errors, a=None, **_choices(s, v)
            ), 422
        me = _staff_member(s)
        now = _bot().clock.now()
        a = Activity(
            **clean,
            taken=0,
            seq=0,
            status="open",
            created_by_id=me.id if me else None,
            created_at=now,
            updated_at=now,
        )
        s.add(a)
        s.flush()
        if a.post_to_groups:
            from handlers.activities import post_to_group_chats

            post_to_group_chats(_bot(), s, a)
        aid = a.id
    flash(f"已发布活动“{clean['title']}”。会员在聊天里发送“报名 {aid}”即可报名。", "ok")
    return redirect(url_for("activities_admin.detail", activity_id=aid))


@bp.route("/<int:activity_id>/edit", methods=["GET", "POST"])
@require("activities.create")
def edit(activity_id: int):
    from handlers.activities import member_view, notify_changed, notify_promoted

    with _db().transaction() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, _ = _access(s, a)
        if not manage:
            abort(403)
        v = _viewer(s)
        if request.method == "GET":
            return render_template(
                "activities_admin/form.html", form=_form_from(s, a), errors={}, a=a, **_choices(s, v)
            )
        raw, clean, errors = _read_form(s, v)
        if clean.get("capacity") is not None and clean["capacity"] < a.taken:
            errors["capacity"] = f"名额不能少于已确认的 {a.taken} 人"
        if errors:
            return render_template(
                "activities_admin/form.html", form=raw, errors=errors, a=a, **_choices(s, v)
            ), 422
        before = member_view(_bot(), a)
        for key, value in clean.items():
            setattr(a, key, value)
        a.updated_at = _bot().clock.now()
        s.flush()
        notify_promoted(_bot(), s, a, promote_waitlist(s, a, _bot().clock.now()))
        s.refresh(a)
        told, changed = notify_changed(_bot(), s, a, before)
    flash(
        "已保存。" + (f"已私信通知 {told} 位报名的会员：{'、'.join(changed)}有变更。" if told else ""), "ok"
    )
    return redirect(url_for("activities_admin.detail", activity_id=activity_id))


# ---------------------------------------------------------------------------------------------- detail
@bp.get("/<int:activity_id>")
@require("activities.create")
def detail(activity_id: int):
    status = request.args.get("status", "")
    branch = request.args.get("branch", "")
    group = request.args.get("group", "")
    with _db().Session() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, scope = _access(s, a)
        rows = [
            r
            for r in signups_of(s, a.id, ("confirmed", "waitlisted", "cancelled"))
            if scope is None or r.member_id in scope
        ]
        active = [r for r in rows if r.status != "cancelled"]
        by_branch = Counter(
            r.member.branch.name if r.member.branch else "（无分会）"
            for r in active
            if r.status == "confirmed"
        )
        by_group = Counter(
            r.member.group.name if r.member.group else "（无小组）" for r in active if r.status == "confirmed"
        )
        shown = [
            r
            for r in rows
            if (not status or r.status == status)
            and (not branch or (r.member.branch and str(r.member.branch_id) == branch))
            and (not group or (r.member.group and str(r.member.group_id) == group))
        ]
        return render_template(
            "activities_admin/detail.html",
            a=a,
            manage=manage,
            limited=scope is not None,
            rows=shown,
            total=len(rows),
            confirmed=sum(1 for r in rows if r.status == "confirmed"),
            waitlisted=sum(1 for r in rows if r.status == "waitlisted"),
            came=sum(1 for r in rows if r.checked_in_at),
            by_branch=sorted(by_branch.items(), key=lambda kv: -kv[1]),
            by_group=sorted(by_group.items(), key=lambda kv: -kv[1]),
            status=status,
            branch=branch,
            group=group,
            status_labels=STATUS_LABELS,
            audience=_audience_text(s, a),
            **_choices(s, _viewer(s)),
        )


@bp.post("/<int:activity_id>/signups")
@require("activities.create")
def add_signup(activity_id: int):
    no = (request.form.get("employee_no") or "").strip()
    companions = request.form.get("companions", "0").strip()
    with _db().transaction() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, _ = _access(s, a)
        if not manage:
            abort(403)
        member = (
            s.scalar(select(Member).where(Member.employee_no == no, Member.active.is_(True))) if no else None
        )
        if member is None:
            flash(f"没有找到工号为“{no}”的在册会员。", "error")
        elif not companions.isdigit():
            flash("携带家属请填写整数。", "error")
        else:
            me = _staff_member(s)
            res = sign_up(
                s,
                a,
                member,
                _bot().clock.now(),
                companions=int(companions),
                signed_by=me,
                require_answers=False,
            )
            if res.ok:
                from handlers.activities import notify_added

                assert res.signup is not None
                notify_added(_bot(), s, a, res.signup, "工会")
                label = "已报名" if res.outcome == "confirmed" else f"已登记候补第 {res.position} 位"
                flash(f"{member.name}：{label}。", "ok")
            else:
                flash(f"{member.name}：{REFUSALS.get(res.outcome, res.outcome)}。", "error")
    return redirect(url_for("activities_admin.detail", activity_id=activity_id))


@bp.post("/<int:activity_id>/signups/<int:signup_id>/remove")
@require("activities.create")
def remove_signup(activity_id: int, signup_id: int):
    from handlers.activities import notify_promoted

    with _db().transaction() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, _ = _access(s, a)
        row = s.get(Signup, signup_id)
        if not manage or row is None or row.activity_id != a.id:
            abort(403 if not manage else 404)
        res = cancel_signup(s, a, row.member, _bot().clock.now(), force=True)
        notify_promoted(_bot(), s, a, res.promoted or [])
        name = row.member.name
        promoted = [p.member.name for p in res.promoted or []]
    flash(
        f"已取消 {name} 的报名。" + (f"已递补：{'、'.join(promoted)}（已私信通知）。" if promoted else ""),
        "ok",
    )
    return redirect(url_for("activities_admin.detail", activity_id=activity_id))


@bp.post("/<int:activity_id>/signups/<int:signup_id>/checkin")
@require("activities.create")
def tick_checkin(activity_id: int, signup_id: int):
    with _db().transaction() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, scope = _access(s, a)
        row = s.get(Signup, signup_id)
        if (
            row is None
            or row.activity_id != a.id
            or (not manage and (scope is None or row.member_id not in scope))
        ):
            abort(404)
        undo = request.form.get("undo") == "1"
        s.execute(
            update(Signup)
            .where(Signup.id == row.id, Signup.status == "confirmed")
            .values(checked_in_at=None if undo else _bot().clock.now())
        )
    return redirect(url_for("activities_admin.detail", activity_id=activity_id, _anchor="list"))


@bp.post("/<int:activity_id>/cancel")
@require("activities.create")
def cancel(activity_id: int):
    from handlers.activities import announce_cancelled

    with _db().transaction() as s:
        a = s.get(Activity, activity_id) or abort(404)
        manage, _ = _access(s, a)
        if not manage:
            abort(403)
        if request.form.get("confirm") != a.title:
            flash("请输入活动名称确认取消。", "error")
            return redirect(url_for("activities_admin.detail", activity_id=activity_id))
        told = announce_cancelled(_bot(), s, a, _bot().clock.now()) if a.status == "open" else 0
    flash(f"活动已取消，已私信通知 {told} 位报名的会员。", "ok")
    return redirect(url_for("activities_admin.detail", activity_id=activity_id))


@bp.get("/<int:activity_id>/export")
@require("activities.create")
def export(activity_id: int):
    with _db().Session() as s:
        a = s.get(Activity, activity_id) or abort(404)
        _, scope = _access(s, a)
        data = export_xlsx(s, a, _bot().clock, members=scope)
        title = a.title
    name = f"报名名单-{activity_id}.xlsx"
    resp = Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    from urllib.parse import quote

    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"signups-{activity_id}.xlsx\"; filename*=UTF-8''{quote(name)}"
    )
    resp.headers["X-Activity-Title"] = quote(title)
    return resp
