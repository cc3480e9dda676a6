"""Console pages for proposals (职代会提案) and suggestions: list, detail with timeline, review actions (accept,
decline, merge), replies on a department's behalf, the congress report with the .xlsx export, and the set-up of
congress sessions and handling departments.

Anonymity: these pages read Proposal / ProposalEvent only and show "匿名" for an anonymous suggestion; nothing here
touches AnonymousSender (see models/proposal.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from admin import console_blueprint, current_staff, nav, require
from handlers.proposals import actor_name, do_accept, do_decline, do_merge, record_reply
from models.member import Member
from models.proposal import (
    DEFAULT_CATEGORIES,
    KIND_LABELS,
    RATINGS,
    REPLY_KINDS,
    STATUS_LABELS,
    Congress,
    Department,
    DepartmentContact,
    Proposal,
    TransitionError,
    export_xlsx,
    find_by_number,
    report,
)
from models.staff import StaffAccount

bp = console_blueprint("proposals_admin", __name__, url_prefix="/admin/proposals")
nav.register("提案管理", "proposals_admin.index", "proposals.report", order=40)


def init_app(app) -> None:
    if "proposals_admin" not in app.blueprints:
        app.register_blueprint(bp)


def _bot():
    return current_app.extensions["bot"]


def _actor(s) -> Member | None:
    staff = current_staff()
    acc = s.get(StaffAccount, staff.id) if staff else None
    return acc.member if acc else None


def _congress_id() -> int | None:
    v = request.args.get("congress", "")
    return int(v) if v.isdigit() else None


@bp.get("/")
@require("proposals.report")
def index():
    status, kind, category = (request.args.get(k, "") for k in ("status", "kind", "category"))
    dept = request.args.get("dept", "")
    with _bot().db.Session() as s:
        q = select(Proposal).order_by(Proposal.series, Proposal.seq)
        if status in STATUS_LABELS:
            q = q.where(Proposal.status == status)
        if kind in KIND_LABELS:
            q = q.where(Proposal.kind == kind)
        if category:
            q = q.where(Proposal.category == category)
        if dept.isdigit():
            q = q.where(Proposal.lead_department_id == int(dept))
        rows = list(s.scalars(q))
        for p in rows:
            _ = (p.proposer, p.lead_department, p.cosigns)
        return render_template(
            "proposals_admin/index.html",
            rows=rows,
            status=status,
            kind=kind,
            category=category,
            dept=dept,
            status_labels=STATUS_LABELS,
            kind_labels=KIND_LABELS,
            categories=DEFAULT_CATEGORIES,
            departments=list(s.scalars(select(Department).order_by(Department.name))),
            who=_who,
        )


def _who(p: Proposal) -> str:
    return "匿名" if p.anonymous else "、".join(m.name for m in p.proposers())


@bp.get("/<int:proposal_id>")
@require("proposals.report")
def detail(proposal_id: int):
    with _bot().db.Session() as s:
        p = s.get(Proposal, proposal_id)
        if p is None:
            abort(404)
        events = [(e, actor_name(p, e)) for e in p.events]
        _ = (p.replies, p.evaluations, p.merged_into, p.lead_department, p.co_departments)
        return render_template(
            "proposals_admin/detail.html",
            p=p,
            who=_who(p),
            cosigners=[] if p.anonymous else p.cosigns,
            events=events,
            status_labels=STATUS_LABELS,
            ratings=RATINGS,
            reply_kinds=REPLY_KINDS,
            departments=list(s.scalars(select(Department).where(Department.active.is_(True)))),
            can_review=current_staff().can("proposals.review"),
        )


def _act(proposal_id: int, fn) -> Response:
    bot = _bot()
    try:
        with bot.db.transaction() as s:
            p = s.get(Proposal, proposal_id)
            if p is None:
                abort(404)
            flash(fn(bot, s, p, _actor(s), bot.clock.now()), "ok")
    except (TransitionError, ValueError) as e:
        flash(str(e), "error")
    return redirect(url_for("proposals_admin.detail", proposal_id=proposal_id))


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


@bp.post("/<int:proposal_id>/accept")
@require("proposals.review")
def accept(proposal_id: int):
    def fn(bot, s, p, actor, now):
        lead = s.get(Department, int(request.form.get("lead") or 0))
        if lead is None:
            raise ValueError("请选择牵头承办部门。")
        co = [
            d
            for d in (s.get(Department, int(x)) for x in request.form.getlist("co") if x.isdigit())
            if d is not None and d.id != lead.id
        ]
        due = _date(request.form.get("due", ""))
        if due is None or due < bot.clock.today():
            raise ValueError("请填写不早于今天的答复期限。")
        do_accept(bot, s, p, lead, co, due, actor, now)
        return f"{p.number} 已立案，交{lead.name}承办。"

    return _act(proposal_id, fn)


@bp.post("/<int:proposal_id>/decline")
@require("proposals.review")
def decline(proposal_id: int):
    def fn(bot, s, p, actor, now):
        reason = request.form.get("reason", "").strip()
        if len(reason) < 2:
            raise ValueError("请填写不立案的理由。")
        do_decline(bot, s, p, reason[:1000], actor, now)
        return f"{p.number} 不予立案，已转为合理化建议。"

    return _act(proposal_id, fn)


@bp.post("/<int:proposal_id>/merge")
@require("proposals.review")
def merge(proposal_id: int):
    def fn(bot, s, p, actor, now):
        dst = find_by_number(s, request.form.get("into", ""))
        if dst is None:
            raise ValueError("没有找到要合并到的提案编号。")
        do_merge(bot, s, p, dst, actor, now)
        return f"{p.number} 已合并到 {dst.number}。"

    return _act(proposal_id, fn)


@bp.post("/<int:proposal_id>/reply")
@require("proposals.review")
def reply(proposal_id: int):
    def fn(bot, s, p, actor, now):
        kind = request.form.get("kind", "")
        text = request.form.get("text", "").strip()
        if kind not in REPLY_KINDS or len(text) < 2:
            raise ValueError("请选择办理结果并填写答复内容。")
        plan = _date(request.form.get("plan", "")) if kind == "in_progress" else None
        if kind == "in_progress" and plan is None:
            raise ValueError("“办理中”请填写计划完成日期。")
        dept = s.get(Department, int(request.form.get("dept") or 0)) or p.lead_department
        return record_reply(bot, s, p, dept, kind, text[:4000], plan, actor, now)

    return _act(proposal_id, fn)


@bp.get("/report")
@require("proposals.report")
def report_page():
    bot = _bot()
    with bot.db.Session() as s:
        r = report(s, bot.clock.today(), _congress_id())
        congresses = list(s.scalars(select(Congress).order_by(Congress.collect_start.desc())))
        return render_template(
            "proposals_admin/report.html", r=r, congresses=congresses, congress=_congress_id(), pct=_pct
        )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


@bp.get("/export.xlsx")
@require("proposals.report")
def export():
    bot = _bot()
    with bot.db.Session() as s:
        blob = export_xlsx(s, bot.clock.today(), _congress_id())
    return Response(
        blob,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=proposals-report.xlsx"},
    )


# ---------------------------------------------------------------------------------------------- set-up
@bp.get("/setup")
@require("proposals.review")
def setup():
    with _bot().db.Session() as s:
        congresses = list(s.scalars(select(Congress).order_by(Congress.collect_start.desc())))
        departments = list(s.scalars(select(Department).order_by(Department.name)))
        for d in departments:
            _ = [c.member.name for c in d.contacts]
        return render_template("proposals_admin/setup.html", congresses=congresses, departments=departments)


@bp.post("/setup/congress")
@require("proposals.review")
def add_congress():
    bot = _bot()
    f = request.form
    start, end = _date(f.get("start", "")), _date(f.get("end", ""))
    name = f.get("name", "").strip()
    try:
        n = int(f.get("cosigners", "2") or 2)
    except ValueError:
        n = -1
    code = f.get("code", "").strip().upper()
    if (
        not name
        or start is None
        or end is None
        or end < start
        or not 0 <= n <= 20
        or not code.isalnum()
        and code
    ):
        flash(
            "请填写届次名称、征集开始和截止日期（截止不早于开始）、附议人数（0–20）；编号前缀只能用字母和数字。",
            "error",
        )
        return redirect(url_for("proposals_admin.setup"))
    cats = [c.strip() for c in f.get("categories", "").replace("，", ",").split(",") if c.strip()]
    with bot.db.transaction() as s:
        s.add(
            Congress(
                name=name[:50],
                year=start.year,
                code=code[:16],
                collect_start=bot.clock.at(start, 0, 0),
                collect_end=datetime.combine(end, time(23, 59), bot.clock.tz).astimezone(UTC),
                cosigners_required=n,
                numbering="session" if f.get("numbering") == "session" and code else "year",
                delegates_only=f.get("delegates_only") == "1",
                categories=cats or list(DEFAULT_CATEGORIES),
            )
        )
    flash(f"已添加届次“{name}”。", "ok")
    return redirect(url_for("proposals_admin.setup"))


@bp.post("/setup/department")
@require("proposals.review")
def add_department():
    bot = _bot()
    name = request.form.get("name", "").strip()
    nos = [x for x in request.form.get("contacts", "").replace("，", ",").replace(" ", ",").split(",") if x]
    if not name:
        flash("请填写部门名称。", "error")
        return redirect(url_for("proposals_admin.setup"))
    with bot.db.transaction() as s:
        d = s.scalar(select(Department).where(Department.name == name))
        if d is None:
            d = Department(name=name[:50])
            s.add(d)
            s.flush()
        missing = []
        for no in nos:
            m = s.scalar(select(Member).where(Member.employee_no == no, Member.active.is_(True)))
            if m is None:
                missing.append(no)
            elif not any(c.member_id == m.id for c in d.contacts):
                d.contacts.append(DepartmentContact(department_id=d.id, member_id=m.id, member=m))
    flash(f"已保存部门“{name}”。" + (f" 未找到工号：{'、'.join(missing)}" if missing else ""), "ok")
    return redirect(url_for("proposals_admin.setup"))
