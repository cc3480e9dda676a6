"""`flask --app app schedule run|preview|status`: the scheduler process and what it will send."""

from __future__ import annotations

import signal
from datetime import date, datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from cli import bot

schedule_cli = AppGroup("schedule", help="定时任务：生日/节日祝福、会议与活动提醒")


@schedule_cli.command("run")
@click.option("--holder", default=None, help="Lease holder name (default host:pid).")
def run(holder: str | None) -> None:
    """Run the scheduler (one process; extra copies wait for the lease)."""
    from bot.scheduler import build_scheduler

    sched = build_scheduler(current_app._get_current_object(), holder=holder, blocking=True)
    click.echo(
        f"scheduler started as {sched.runner.lease.holder}; jobs: {', '.join(j.id for j in sched.get_jobs())}"
    )
    previous = signal.signal(signal.SIGTERM, _stop)  # systemd, honcho and `serve` stop processes with SIGTERM
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        # let running jobs finish first: a job's lease check after release() would take the lease back, and the
        # next scheduler would wait for it to expire
        if sched.running:
            sched.shutdown(wait=True)
        sched.runner.lease.release()
        signal.signal(signal.SIGTERM, previous)


def _stop(*_) -> None:
    """SIGTERM ends `schedule run` like Ctrl-C: running jobs finish, then the lease is released for the next one."""
    raise SystemExit(0)


@schedule_cli.command("once")
def once() -> None:
    """Run the catch-up pass once (if this process gets the lease) and exit."""
    from bot.scheduler import JobRunner

    runner = JobRunner(bot())
    ok = runner.catch_up()
    runner.lease.release()
    click.echo(
        f"ran: {', '.join(runner.runs) or '-'}" if ok else "another scheduler holds the lease; nothing run"
    )


def preview_activities(b, start: date, end: date) -> list[tuple[datetime, str, str, int]]:
    """(local time, kind, what, recipients) of the activity reminders and deadline nudges between two dates, at
    the moments handlers.activities.send_activity_reminders uses (tests/test_scheduler.py runs the real job at
    the previewed times)."""
    from sqlalchemy import select

    from handlers.activities import (
        NUDGE_BEFORE_DEADLINE,
        REMIND_DAY_BEFORE,
        REMIND_HOURS_BEFORE,
        audience_members,
        signups_of,
    )
    from models.activity import Activity, Signup

    hours = int(REMIND_HOURS_BEFORE.total_seconds() // 3600)
    reminders = (("活动前一天", REMIND_DAY_BEFORE), (f"活动前{hours}小时", REMIND_HOURS_BEFORE))
    out = []
    first, after = b.clock.at(start), b.clock.at(end + timedelta(days=1))
    with b.db.Session() as s:
        acts = s.scalars(select(Activity).where(Activity.status == "open", Activity.starts_at > first)).all()
        for a in acts:
            signups = signups_of(s, a.id, ("confirmed",))
            for label, before in reminders:
                at = a.starts_at - before
                n = sum(1 for su in signups if su.created_at <= at)
                if first <= at < after and n:
                    out.append((b.clock.local(at), "活动提醒", f"{a.title}（{label}，已报名的会员）", n))
            at = a.deadline - NUDGE_BEFORE_DEADLINE
            if a.remind_unanswered and a.created_at <= at and first <= at < after:
                answered = set(s.scalars(select(Signup.member_id).where(Signup.activity_id == a.id)))
                n = sum(1 for m in audience_members(s, a) if m.id not in answered)
                if n:
                    out.append((b.clock.local(at), "报名截止提醒", f"{a.title}（还没报名的会员）", n))
    return sorted(out)


def preview_daily(b, start: date, end: date) -> list[tuple[datetime, str, str, int]]:
    """(local time, kind, what, recipients) of the daily jobs (bot.scheduler DAILY_AT) between two dates, from
    today on, if nothing changes meanwhile (a task stays open, a proposal unanswered): care-task reminders (every
    day while open), 回访 reminders and yearly re-verification (once each), the warmth list (once a year) and
    proposal chasing (before the due date, every few days after it, the chair past the escalation). No names:
    case numbers and ids only."""
    from sqlalchemy import select

    from bot.scheduler import DAILY_AT
    from handlers import care, proposals
    from models.care import CareEvent, HardshipCase, HardshipRecord, members_with_role
    from models.messaging import OutboxMessage
    from models.proposal import AWAITING_REPLY, Proposal

    first = max(start, b.clock.today())
    days = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    out: list[tuple[datetime, str, str, int]] = []

    def at(day: date) -> datetime:
        return datetime.combine(day, DAILY_AT)

    def chairs_or_reviewers(s, branch_id, skip) -> int:
        targets = members_with_role(s, "branch_chair", branch_id=branch_id) or care._reviewers(s)
        return sum(1 for t in targets if t.id != skip)

    with b.db.Session() as s:
        tasks = [
            e for e in s.scalars(select(CareEvent).where(CareEvent.status == "open")) if e.member is not None
        ]
        clerks = {c.id for c in members_with_role(s, "clerk")}
        for day in days:
            due = [e for e in tasks if e.due_on <= day + timedelta(days=1) and e.last_reminded_on != day]
            n = 0
            for e in due:
                leaders = {m.id for m in care._care_leaders(s, e.member)}
                n += len(leaders | clerks) if e.due_on <= day - timedelta(days=2) else len(leaders)
            if n:
                out.append((at(day), "关怀提醒", f"{len(due)} 件关怀探望任务（小组长、分会主席）", n))
        for case in s.scalars(
            select(HardshipCase).where(
                HardshipCase.status == "delivered", HardshipCase.follow_up_reminded_on.is_(None)
            )
        ):
            day = max(case.follow_up_due or first, first)
            if case.follow_up_due is not None and day in days:
                n = chairs_or_reviewers(s, case.branch_id, case.member_id)
                out.append((at(day), "回访提醒", f"帮扶 {case.number} 回访", n))
        for rec in s.scalars(select(HardshipRecord).where(HardshipRecord.active.is_(True))):
            if rec.member is None or rec.next_review is None or rec.review_asked_for == rec.next_review:
                continue
            day = max(rec.next_review, first)
            if day in days:
                n = chairs_or_reviewers(s, rec.branch_id, rec.member_id)
                out.append((at(day), "年度复核", f"困难职工档案 {rec.id} 年度复核", n))
        sent_years = set()
        for day in days:
            spring = care.warmth_festival(day)
            if spring is None or spring.year in sent_years:
                continue
            sent_years.add(spring.year)
            marker = f"warmth list {spring.year} sent"
            done = s.scalar(
                select(care.AuditLog.id).where(
                    care.AuditLog.subject == "record", care.AuditLog.detail.startswith(marker)
                )
            )
            if not done:
                out.append(
                    (
                        at(day),
                        "送温暖名单",
                        f"{spring.year}年春节走访名单（帮扶审核、主席）",
                        len(care._reviewers(s)),
                    )
                )
        chairs = len(proposals.chairs(s))
        for p in s.scalars(select(Proposal).where(Proposal.status.in_(AWAITING_REPLY))):
            due = p.current_due
            if due is None:
                continue
            c = p.congress
            before = c.chase_before_days if c else proposals.CHASE_BEFORE_DAYS
            every = max(1, c.chase_every_days if c else proposals.CHASE_EVERY_DAYS)
            escalate = c.escalate_after_days if c else proposals.ESCALATE_AFTER_DAYS
            lead = p.lead_department
            contacts = sum(1 for m in lead.contact_members if m.active) if lead else 0
            base = f"chase:{p.id}:r{proposals.current_round(p)}:"
            chased = {  # what an earlier run already sent
                k[len(base) :].split(":")[0]
                for k in s.scalars(
                    select(OutboxMessage.idempotency_key).where(
                        OutboxMessage.idempotency_key.startswith(base)
                    )
                )
            }
            for day in days:  # the keys the job uses: before once, late once per `every` days, the chair once
                late = (day - due).days
                key = "before" if -before <= late < 0 else (f"late{late // every}" if late >= every else "")
                if key and key not in chased and contacts:
                    chased.add(key)
                    what = f"提案 {p.number} " + ("到期前" if key == "before" else f"逾期 {late} 天")
                    out.append((at(day), "提案督办", what + "（承办部门）", contacts))
                if late > escalate and "chair" not in chased and chairs:
                    chased.add("chair")
                    out.append((at(day), "提案督办", f"提案 {p.number} 逾期 {late} 天（工会主席）", chairs))
    return sorted(out)


def _parse(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2027-01-01") from None


@schedule_cli.command("preview")
@click.option("--from", "start", required=True, help="First day, e.g. 2027-01-01")
@click.option("--to", "end", required=True, help="Last day, e.g. 2027-12-31")
def preview(start: str, end: str) -> None:
    """List every greeting and reminder that would go out between two dates, when, to how many members: greetings,
    meeting and activity reminders, care tasks, 回访, yearly re-verification, the warmth list, proposal chasing."""
    from bot import calendar as cal
    from handlers.greetings import preview_greetings
    from handlers.meetings import preview_meetings

    b = bot()
    first, last = _parse(start), _parse(end)
    if last < first:
        raise click.BadParameter("--to is before --from")
    rows: list[tuple[datetime, str, str, int]] = [
        (p.when, p.kind, p.what, p.recipients) for p in preview_greetings(b, first, last)
    ]
    rows += [(at.replace(tzinfo=None), k, w, n) for at, k, w, n in preview_meetings(b, first, last)]
    rows += [(at.replace(tzinfo=None), k, w, n) for at, k, w, n in preview_activities(b, first, last)]
    rows += preview_daily(b, first, last)
    rows.sort(key=lambda r: r[0])
    total = 0
    for when, kind, what, n in rows:
        total += n
        click.echo(f"{when:%Y-%m-%d %a %H:%M}  {kind:<8}  {n:>6}人  {what}")
    click.echo(f"共 {len(rows)} 次发送，合计 {total} 人次（{b.settings.TIMEZONE} 时间）。")
    for year in range(first.year, last.year + 1):
        if not cal.holiday_data_known(year):
            click.echo(
                f"注意：节假日数据缺少 {year} 年，调到工作日的祝福按周一至周五推算（chinesecalendar 未收录）。"
            )


@schedule_cli.command("status")
def status() -> None:
    """Who holds the scheduler lease, and the holiday-data warning if any."""
    from bot import calendar as cal
    from bot.scheduler import Lease

    b = bot()
    cur = Lease(b.db).current()
    if cur is None or not cur[0]:
        click.echo("no scheduler has run yet")
    else:
        state = "active" if cur[1] > b.clock.now() else "expired"
        click.echo(f"lease: {cur[0]} until {b.clock.fmt(cur[1])} ({state})")
    warning = cal.holiday_data_warning(b.clock.today())
    if warning:
        click.echo(warning)


commands = [schedule_cli]
