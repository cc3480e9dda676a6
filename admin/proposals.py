"""Console pages for proposals (职代会提案) and suggestions: list, detail with timeline, review actions (accept,
decline, merge), replies on a department's behalf, the congress report with the .xlsx export, the set-up of
congress sessions and handling departments — and a handling department's own page (承办答复) where a console
account of role `department`, linked to a member who is the department's contact, answers what it was assigned.

Anonymity: these pages read Proposal / ProposalEvent only and show "匿名" for an anonymous suggestion; nothing here
touches AnonymousSender (see models/proposal.py).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from admin import console_blueprint, current_staff, nav, require
from handlers.proposals import actor_name, do_accept, do_decline, do_merge, record_reply, replying_department
from models.member import Member
from models.proposal import (
    AWAITING_REPLY,
    DEFAULT_CATEGORIES,
    KIND_LABELS,
    RATINGS,
    REPLY_KINDS,
    STATUS_LABELS,
    Congress,
    Department,
    DepartmentContact,
    Proposal,
    ProposalDepartment,
    TransitionError,
    current_round,
    departments_of_contact,
    export_xlsx,
    find_by_number,
    report,
)
from models.staff import StaffAccount

bp = console_blueprint("proposals_admin", __name__, url_prefix="/admin/proposals")
nav.register("提案管理", "proposals_admin.index", "proposals.report", order=40)
nav.register("承办答复", "proposals_admin.department", "proposals.department", order=41)


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
    congress = _congress_id()
    with _bot().db.Session() as s:
        q = select(Proposal).order_by(Proposal.series, Proposal.seq)
        if congress is not None:
            q = q.where(Proposal.congress_id == congress)
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
        congresses = list(s.scalars(select(Congress).order_by(Congress.collect_start.desc())))
        return render_template(
            "proposals_admin/index.html",
            rows=rows,
            status=status,
            kind=kind,
            category=category,
            dept=dept,
            status_labels=STATUS_LABELS,
            kind_labels=KIND_LABELS,
            categories=_categories(s, congresses, congress),
            congresses=congresses,
            congress=congress,
            departments=list(s.scalars(select(Department).order_by(Department.name))),
            who=_who,
        )


def _categories(s, congresses: list[Congress], congress_id: int | None) -> list[str]:
    """The category filter: the congresses' own categories (of the chosen one, else all), then any other
    category proposals actually carry (one removed from the settings later, say)."""
    cats: list[str] = []
    for c in congresses:
        if congress_id is None or c.id == congress_id:
            cats += [x for x in c.categories or DEFAULT_CATEGORIES if x not in cats]
    used = select(Proposal.category).distinct().order_by(Proposal.category)
    if congress_id is not None:
        used = used.where(Proposal.congress_id == congress_id)
    cats += [x for x in s.scalars(used) if x not in cats]
    return cats or list(DEFAULT_CATEGORIES)


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


def _reply_form(today: date) -> tuple[str, str, date | None]:
    """The reply form (committee or department): (kind, text, plan date); ValueError says what is missing."""
    kind = request.form.get("kind", "")
    text = request.form.get("text", "").strip()
    if kind not in REPLY_KINDS or len(text) < 2:
        raise ValueError("请选择办理结果并填写答复内容（办理中写计划，暂不能办写原因）。")
    plan = _date(request.form.get("plan", "")) if kind == "in_progress" else None
    if kind == "in_progress" and (plan is None or plan < today):
        raise ValueError("“办理中”请填写计划完成日期（不早于今天）。")
    return kind, text[:4000], plan


@bp.post("/<int:proposal_id>/reply")
@require("proposals.review")
def reply(proposal_id: int):
    def fn(bot, s, p, actor, now):
        kind, text, plan = _reply_form(bot.clock.today())
        dept_id = request.form.get("dept", "")
        dept = s.get(Department, int(dept_id)) if dept_id.isdigit() and len(dept_id) < 19 else None
        return record_reply(bot, s, p, dept or p.lead_department, kind, text, plan, actor, now)

    return _act(proposal_id, fn)


# ---------------------------------------------------------------------------------------------- departments
def _department_work(s, member: Member | None) -> tuple[list, list, list[Department]]:
    """For a department contact: (to answer, answered) as (proposal, department, 牵头/协办/建议) rows, and
    their departments. Proposals assigned to their departments, suggestions that name them (as in chat)."""
    depts = departments_of_contact(s, member) if member is not None else []
    if not depts:
        return [], [], []
    ids = [d.id for d in depts]
    assigned = (
        select(Proposal.id)
        .outerjoin(ProposalDepartment)
        .where(or_(Proposal.lead_department_id.in_(ids), ProposalDepartment.department_id.in_(ids)))
    )
    named = select(Proposal.id).where(Proposal.kind == "suggestion", Proposal.suggested_department != "")
    rows = s.scalars(
        select(Proposal).where(Proposal.id.in_(assigned.union(named))).order_by(Proposal.series, Proposal.seq)
    )
    todo, done = [], []
    for p in rows:
        dept = replying_department(s, p, member)
        if dept is None:
            continue
        if p.kind == "suggestion":
            role, waiting = "建议", p.status in ("received", "declined")
        else:
            role = "牵头" if dept.id == p.lead_department_id else "协办"
            replied = any(r.department_id == dept.id and r.round == current_round(p) for r in p.replies)
            waiting = p.status in AWAITING_REPLY and not replied
        (todo if waiting else done).append((p, dept, role))
    return todo, done, depts


@bp.get("/department")
@require("proposals.department")
def department():
    """A handling department's own page: what it has to answer (with the reply form) and what it answered.
    Shows no names of proposers or co-signers: the department needs the matter, not the people."""
    bot = _bot()
    with bot.db.Session() as s:
        todo, done, depts = _department_work(s, _actor(s))
        for p, _d, _r in todo + done:
            _ = (p.replies, p.evaluations, p.lead_department)
        return render_template(
            "proposals_admin/department.html",
            todo=todo,
            done=done[-50:],
            departments=depts,
            reply_kinds=REPLY_KINDS,
            today=bot.clock.today(),
        )


@bp.post("/department/<int:proposal_id>/reply")
@require("proposals.department")
def department_reply(proposal_id: int):
    bot = _bot()
    try:
        with bot.db.transaction() as s:
            p = s.get(Proposal, proposal_id)
            if p is None:
                abort(404)
            me = _actor(s)
            dept = replying_department(s, p, me)
            if dept is None:
                abort(403)  # not one of this account's departments
            kind, text, plan = _reply_form(bot.clock.today())
            flash(record_reply(bot, s, p, dept, kind, text, plan, me, bot.clock.now()), "ok")
    except (TransitionError, ValueError) as e:
        flash(str(e), "error")
    return redirect(url_for("proposals_admin.department") + f"#p{proposal_id}")


@bp.get("/report")
@require("proposals.report")
def report_page():
    bot = _bot()
    with bot.db.Session() as s:
        r = report(s, bot.clock.today(), _congress_id(), tz=bot.clock.tz)
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
        blob = export_xlsx(s, bot.clock.today(), _congress_id(), tz=bot.clock.tz)
    return Response(
        blob,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=proposals-report.xlsx"},
    )


# ---------------------------------------------------------------------------------------------- set-up
# the congress settings edited as whole numbers: form field = Congress attribute -> (label, min, max)
CONGRESS_NUMBERS = {
    "cosigners_required": ("附议人数", 0, 20),
    "reply_days": ("立案后答复期限（天）", 1, 365),
    "rehandle_days": ("重新办理期限（天）", 1, 365),
    "chase_before_days": ("到期前几天提醒部门", 0, 60),
    "chase_every_days": ("逾期后每隔几天督办", 1, 60),
    "escalate_after_days": ("逾期超过几天报告主席", 0, 365),
    "close_after_days": ("答复后几天未评价自动办结", 1, 365),
}
MAX_CATEGORIES = 20


def _congress_form(c: Congress | None) -> dict[str, str]:
    """The congress form's fields as text: a congress's settings, or a new congress's defaults."""
    if c is None:
        numbers = {k: str(Congress.__table__.c[k].default.arg) for k in CONGRESS_NUMBERS}
        return {"name": "", "start": "", "end": "", "numbering": "year", "code": "", "delegates_only": "1",
                "categories": "，".join(DEFAULT_CATEGORIES), **numbers}  # fmt: skip
    tz = _bot().clock.tz
    return {
        "name": c.name,
        "start": c.collect_start.astimezone(tz).date().isoformat(),
        "end": c.collect_end.astimezone(tz).date().isoformat(),
        "numbering": c.numbering,
        "code": c.code,
        "delegates_only": "1" if c.delegates_only else "0",
        "categories": "，".join(c.categories or DEFAULT_CATEGORIES),
        **{k: str(getattr(c, k)) for k in CONGRESS_NUMBERS},
    }


def _parse_congress(current: Congress | None, numbered: bool) -> tuple[dict[str, str], dict[str, str], dict]:
    """(form to re-show, errors by field, Congress attributes). `numbered`: proposals already carry numbers of
    this congress, so its number series (numbering, prefix, year) can no longer change."""
    f = request.form
    form = {k: (f.get(k) or "").strip() for k in _congress_form(None)}
    errors: dict[str, str] = {}
    clean: dict = {}
    if not form["name"] or len(form["name"]) > 50:
        errors["name"] = "请填写届次名称（不超过50字），例如：第三届第二次。"
    start, end = _date(form["start"]), _date(form["end"])
    if start is None:
        errors["start"] = "请填写征集开始日期。"
    if end is None:
        errors["end"] = "请填写征集截止日期。"
    elif start is not None and end < start:
        errors["end"] = "征集截止不能早于开始。"
    for key, (label, lo, hi) in CONGRESS_NUMBERS.items():
        value = form[key]
        if not value.isdigit() or not lo <= int(value) <= hi:
            errors[key] = f"{label}请填 {lo} 到 {hi} 的整数。"
        else:
            clean[key] = int(value)
    code = form["code"].upper()
    if code and (not code.isascii() or not code.isalnum() or len(code) > 16):
        errors["code"] = "编号前缀只能用字母和数字（不超过16个）。"
    numbering = "session" if form["numbering"] == "session" else "year"
    if numbering == "session" and not code:
        errors["code"] = "按届次编号请填写编号前缀，例如 S32。"
    cats: list[str] = []
    for c in re.split(r"[,，、;；\s]+", form["categories"]):
        if c and c not in cats:
            cats.append(c)
    bad = [c for c in cats if len(c) > 20 or c.isdigit()]
    if bad:
        errors["categories"] = f"类别名称不超过20字，且不能只是数字：{'、'.join(bad)}。"
    elif len(cats) > MAX_CATEGORIES:
        errors["categories"] = f"类别最多 {MAX_CATEGORIES} 个。"
    if start is not None and end is not None and "end" not in errors:
        tz = _bot().clock.tz
        clean.update(
            name=form["name"],
            year=start.year,
            code=code,
            numbering=numbering,
            delegates_only=form["delegates_only"] != "0",
            categories=cats or list(DEFAULT_CATEGORIES),
            collect_start=datetime.combine(start, time(0, 0), tz).astimezone(UTC),
            collect_end=datetime.combine(end, time(23, 59), tz).astimezone(UTC),
        )
        if current is not None and numbered:
            probe = Congress(year=clean["year"], code=code, numbering=numbering)
            if probe.series() != current.series():
                errors["numbering"] = (
                    f"已有提案使用编号 {current.series()}-…，不能再改编号方式、前缀或征集开始的年度。"
                )
    return form, errors, clean


def _render_setup(s, form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status=200):
    congresses = list(s.scalars(select(Congress).order_by(Congress.collect_start.desc())))
    departments = list(s.scalars(select(Department).order_by(Department.name)))
    for d in departments:
        _ = [c.member.name for c in d.contacts]
    page = render_template(
        "proposals_admin/setup.html",
        congresses=congresses,
        departments=departments,
        form=form or _congress_form(None),
        errors=errors or {},
        numbers=CONGRESS_NUMBERS,
    )
    return page, status


@bp.get("/setup")
@require("proposals.review")
def setup():
    with _bot().db.Session() as s:
        return _render_setup(s)


@bp.post("/setup/congress")
@require("proposals.review")
def add_congress():
    form, errors, clean = _parse_congress(None, False)
    if errors:
        with _bot().db.Session() as s:
            return _render_setup(s, form, errors, 400)
    with _bot().db.transaction() as s:
        s.add(Congress(**clean))
    flash(f"已添加届次“{clean['name']}”。", "ok")
    return redirect(url_for("proposals_admin.setup"))


@bp.route("/setup/congress/<int:congress_id>", methods=["GET", "POST"])
@require("proposals.review")
def edit_congress(congress_id: int):
    """Every congress setting stays editable; the number series only until the first proposal is numbered."""
    with _bot().db.transaction() as s:
        c = s.get(Congress, congress_id)
        if c is None:
            abort(404)
        numbered = s.scalar(select(Proposal.id).where(Proposal.congress_id == c.id).limit(1)) is not None
        if request.method == "GET":
            form, errors, status = _congress_form(c), {}, 200
        else:
            form, errors, clean = _parse_congress(c, numbered)
            status = 400
            if not errors:
                for key, value in clean.items():
                    setattr(c, key, value)
                flash(f"已保存届次“{c.name}”的设置。", "ok")
                return redirect(url_for("proposals_admin.setup"))
        return render_template(
            "proposals_admin/congress.html", c=c, form=form, errors=errors, numbers=CONGRESS_NUMBERS,
            numbered=numbered,
        ), status  # fmt: skip


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
