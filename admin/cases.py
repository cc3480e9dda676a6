"""Console pages for hardship cases and care events (帮扶与关怀): case list, case page with timeline and actions,
the care task board (due, overdue, done), the annual statistics with the .xlsx export, and the audit log.

Every case shown is filtered through `models.care.can_see_case` (the one permission table) with the staff account's
roles and, when the account is linked to a member, that member's branch and group. Every case page view, action
and export writes an AuditLog row labelled `console:<username>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from admin import console_blueprint, current_staff, nav, require
from bot.calendar import festival_date
from bot.permissions import can
from handlers.care import (
    StepError,
    care_statistics,
    do_approve,
    do_close,
    do_decline,
    do_deliver,
    do_follow_up,
    do_verify,
    export_xlsx,
    full_lines,
    warmth_xlsx,
    warmth_year,
)
from models import crypto
from models.care import (
    AID_KINDS,
    CARE_LABELS,
    STATUS_LABELS,
    Access,
    AuditLog,
    CareEvent,
    HardshipCase,
    audit,
    can_see_case,
    may_act,
    warmth_campaign_list,
)
from models.member import Member
from models.staff import StaffAccount

bp = console_blueprint("cases_admin", __name__, url_prefix="/admin/care")
nav.register("帮扶与关怀", "cases_admin.index", "cases.console", order=45)


def init_app(app) -> None:
    if "cases_admin" not in app.blueprints:
        app.register_blueprint(bp)


@dataclass
class Viewer:
    """The staff account seen through the case permission table (duck-types the Member fields it reads)."""

    id: int
    name: str
    roles: set[str]
    branch_id: int | None
    group_id: int | None
    member: Member | None
    label: str
    active: bool = True


def _bot():
    bot = current_app.extensions["bot"]
    crypto.configure(bot.settings)
    return bot


def _viewer(s) -> Viewer:
    staff = current_staff()
    assert staff is not None
    acc = s.get(StaffAccount, staff.id)
    m = acc.member if acc is not None and acc.member is not None and acc.member.active else None
    return Viewer(
        id=m.id if m else -staff.id,  # an unlinked account never matches a member id
        name=staff.name,
        roles=set(staff.roles),
        branch_id=m.branch_id if m else None,
        group_id=m.group_id if m else None,
        member=m,
        label=f"console:{staff.username}",
    )


def _audit(s, v: Viewer, action: str, **kw) -> None:
    row = audit(s, v.member, action, actor_label=v.label, at=_bot().clock.now(), **kw)
    row.actor_label = v.label


LIST_FILTERS = {"": "全部", "open": "办理中", "closed": "已办结"}


@bp.get("/")
@require("cases.console")
def index():
    """Case list and care task board. Names and case numbers are case data: each page view writes ONE audit row
    (who, when, which filter, how many cases and tasks were shown), never one per case."""
    bot = _bot()
    today = bot.clock.today()
    status = request.args.get("status", "")
    status = status if status in LIST_FILTERS else ""
    with bot.db.transaction() as s:
        v = _viewer(s)
        q = select(HardshipCase).order_by(HardshipCase.id.desc()).limit(500)
        if status == "open":
            q = q.where(HardshipCase.status != "closed")
        elif status == "closed":
            q = q.where(HardshipCase.status == "closed")
        cases = []
        for c in s.scalars(q):
            lvl = can_see_case(v, c)
            if lvl >= Access.EXISTS:
                cases.append((c, lvl, c.member.name if c.member else "（已匿名）", c.branch.name if c.branch else ""))
        tasks = []
        if can(v.roles, "care.manage") or can(v.roles, "cases.review"):
            for ev in s.scalars(select(CareEvent).order_by(CareEvent.status.desc(), CareEvent.due_on).limit(500)):
                if not _sees_task(v, ev):
                    continue
                state = ev.status if ev.status != "open" else ("overdue" if ev.due_on < today else "due")
                tasks.append((ev, state, ev.member.name if ev.member else "（已匿名）", ev.branch.name if ev.branch else ""))
        _audit(s, v, "view", detail=f"console list: filter={status or 'all'}, {len(cases)} cases, {len(tasks)} care tasks")
        return render_template(
            "cases_admin/index.html",
            cases=cases,
            tasks=tasks,
            status=status,
            filters=LIST_FILTERS,
            status_labels=STATUS_LABELS,
            care_labels=CARE_LABELS,
            full=Access.FULL,
            can_stats=can(v.roles, "cases.stats"),
            can_audit=can(v.roles, "cases.audit"),
            can_warmth=can(v.roles, "cases.review"),
        )  # fmt: skip


def _sees_task(v: Viewer, ev: CareEvent) -> bool:
    """Union-wide roles see every care task; a branch chair or group leader only their own unit's, so an account
    of theirs without a linked member (hence no branch or group) sees none."""
    if can(v.roles, "care.manage_all") or can(v.roles, "cases.review"):
        return True
    if can(v.roles, "care.manage_branch") and v.branch_id is not None and ev.branch_id == v.branch_id:
        return True
    return can(v.roles, "care.manage_group") and v.group_id is not None and ev.group_id == v.group_id


@bp.get("/case/<int:case_id>")
@require("cases.console")
def case_detail(case_id: int):
    bot = _bot()
    with bot.db.transaction() as s:
        case = s.get(HardshipCase, case_id)
        if case is None:
            abort(404)
        v = _viewer(s)
        lvl = can_see_case(v, case)
        if lvl == Access.NONE:
            _audit(s, v, "view", case=case, detail="denied: console")
            s.commit()
            abort(403)
        _audit(s, v, "view", case=case, detail=f"console: {lvl.name.lower()}")
        if lvl == Access.FULL:
            lines = full_lines(bot.clock, case)
        elif lvl == Access.OWN:
            lines = [case.number, case.status_label] + [f"{bot.clock.fmt(e.at)} {e.message}" for e in case.events if e.message]
        else:
            lines = [f"{case.number}：{case.member.name if case.member else '（已匿名）'}有一件困难帮扶申请，"
                     + ("已办结" if case.status == "closed" else "办理中") + "。"]  # fmt: skip
        steps = {st: may_act(v, case, st) for st in ("verify", "decide", "deliver", "follow_up", "close")}
        return render_template(
            "cases_admin/case.html",
            case=case,
            lines=lines,
            steps=steps if lvl == Access.FULL else {},
            aid_kinds=AID_KINDS,
            today=bot.clock.today().isoformat(),
        )


def _amount(value: str) -> Decimal | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise StepError("金额请填数字。") from None


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


@bp.post("/case/<int:case_id>/<step>")
@require("cases.console")
def case_action(case_id: int, step: str):
    if step not in ("verify", "approve", "decline", "deliver", "follow_up", "close"):
        abort(404)
    bot = _bot()
    f = request.form
    with bot.db.transaction() as s:
        case = s.get(HardshipCase, case_id)
        if case is None:
            abort(404)
        v = _viewer(s)
        perm_step = {"approve": "decide", "decline": "decide"}.get(step, step)
        if not may_act(v, case, perm_step):
            _audit(s, v, "change", case=case, detail=f"denied: {step}")
            s.commit()
            abort(403)
        actor = v.member or v
        label = v.label
        try:
            with s.begin_nested():
                if step == "verify":
                    do_verify(bot, s, actor, case, _day(f.get("visit", "")), f.get("notes", "").strip(), label)
                elif step == "approve":
                    do_approve(bot, s, actor, case, f.get("kind", ""), _amount(f.get("amount", "")),
                               f.get("note", "").strip() or None, label)  # fmt: skip
                elif step == "decline":
                    do_decline(bot, s, actor, case, f.get("reason", "").strip(), label)
                elif step == "deliver":
                    day = _day(f.get("day", "")) or bot.clock.today()
                    amount = _amount(f.get("amount", "")) or case.aid_amount
                    do_deliver(bot, s, actor, case, day, amount, f.get("note", "").strip() or None, label)
                elif step == "follow_up":
                    do_follow_up(bot, s, actor, case, f.get("notes", "").strip() or None, label)
                else:
                    do_close(bot, s, actor, case, f.get("note", "").strip() or None, label)
            flash("已保存，并已私信告知申请人。", "ok")
        except StepError as exc:
            flash(str(exc), "error")
    return redirect(url_for("cases_admin.case_detail", case_id=case_id))


@bp.get("/stats")
@require("cases.console")
def stats():
    bot = _bot()
    year = request.args.get("year", "")
    year_i = int(year) if year.isdigit() and 2000 <= int(year) <= 2100 else bot.clock.today().year
    with bot.db.transaction() as s:
        v = _viewer(s)
        if not can(v.roles, "cases.stats"):
            abort(403)
        st = care_statistics(s, year_i)
        _audit(s, v, "view", subject="stats", detail=f"console stats {year_i}")
        return render_template(
            "cases_admin/stats.html", st=st, year=year_i, care_labels=CARE_LABELS,
            can_export=can(v.roles, "cases.review"),
        )  # fmt: skip


@bp.get("/export.xlsx")
@require("cases.review")
def export():
    bot = _bot()
    year = request.args.get("year", "")
    year_i = int(year) if year.isdigit() and 2000 <= int(year) <= 2100 else bot.clock.today().year
    with bot.db.transaction() as s:
        v = _viewer(s)
        blob = export_xlsx(bot, s, v, year_i, actor_label=f"{v.name}（{v.label}）")
    return Response(
        blob,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename=care-report-{year_i}.xlsx"},
    )


def _warmth_year(bot) -> int:
    year = request.args.get("year", "")
    return int(year) if year.isdigit() and 2000 <= int(year) <= 2100 else warmth_year(bot.clock.today())


@bp.get("/warmth")
@require("cases.review")
def warmth():
    """送温暖名单: members on the hardship record and retirees to visit before 春节 (reviewers and the chair)."""
    bot = _bot()
    year = _warmth_year(bot)
    with bot.db.transaction() as s:
        v = _viewer(s)
        entries = warmth_campaign_list(s, year)
        _audit(s, v, "view", subject="record", detail=f"warmth list {year}: {len(entries)} members")
        return render_template(
            "cases_admin/warmth.html", entries=entries, year=year, spring=festival_date("chunjie", year)
        )


@bp.get("/warmth.xlsx")
@require("cases.review")
def warmth_export():
    bot = _bot()
    year = _warmth_year(bot)
    with bot.db.transaction() as s:
        v = _viewer(s)
        entries = warmth_campaign_list(s, year)
        blob = warmth_xlsx(bot, entries, year, f"{v.name}（{v.label}）")
        _audit(s, v, "export", subject="record", detail=f"warmth xlsx {year}: {len(entries)} members")
    return Response(
        blob,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename=warmth-{year}.xlsx"},
    )


@bp.get("/audit")
@require("cases.audit")
def audit_log():
    bot = _bot()
    with bot.db.Session() as s:
        rows = list(s.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(500)))
        numbers = {
            c.id: c.number
            for c in s.scalars(select(HardshipCase).where(HardshipCase.id.in_({r.case_id for r in rows if r.case_id})))
        }
        return render_template("cases_admin/audit.html", rows=rows, numbers=numbers)
