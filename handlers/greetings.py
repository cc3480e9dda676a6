"""Birthday and festival greetings: the scheduled run, its preview, and the members' opt-out by chat.

Catch-up rules (what a run after downtime still sends) — one per kind:
* birthday greeting: on the birthday (or the working day it was moved to), from the send time (default 09:00)
  until `catchup_until` (default 20:00) local time. Missed the whole day: not sent later (no belated wishes).
* milestone-birthday notice to the branch chair: from the send time of the day before the greeting goes out
  (the birthday, or the working day it was moved to; with `birthday_shift_to_workday` the notice itself goes on
  the last working day before that, when the chair is at work) until `catchup_until` on the greeting's day
  (a late notice still lets the chair bring a gift).
* festival greeting: like birthdays — its day (or the working day before when `shift_to_workday`), from the
  festival's own send time (default: the general one) until `catchup_until`.
* group leader's morning note (today's birthdays in the group, optional): like birthdays.
* next month's birthday list to the clerks: from the set day (default the 25th) on; a missed day is made up on
  any later day of the same month, once.
Each greeting is an outbox row keyed by the occasion (``birthday:{member}:{date}``, ``festival:{code}:{date}:
{member}``, ``milestone_notice:{member}:{date}``), so a run repeated every minute, twice, or by two schedulers
sends it once. The key holds the occasion's real date, so moving it to a working day never sends it twice.

Opt-out (不要生日祝福) applies to birthday greetings and milestone notices; festival greetings go to their
audience. Inactive members (left the union) get nothing; retirees are included.

Festival delivery: `private` = a message to each member of the audience; `group` = one post in each group chat
whose union group (or, for a chat tied only to a branch, whose branch) has a member of the audience — every chat
for an everyone-festival, and a chat tied to no group or branch gets only everyone-festivals; `both` = the two.
With `batch_private` (on by default), identical festival text (a template without {name}: the built-in 元旦, 春节,
劳动节, 端午, 中秋 and 国庆 texts) is batched only where the platform takes a list of recipients (WeCom
message/send, 1,000 ids a call); elsewhere (Feishu, sandbox) every member gets their own row.
六一 (audience "parents") goes to members whose roster says 有子女 = 是; when nobody's roster entry says either
way, nothing is sent and the run's note tells the console why (never everyone by default).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, extract, false, not_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from bot import calendar as cal
from bot.context import Context
from bot.message import File
from handlers import router
from models.activity import safe_cell
from models.greeting import (
    Festival,
    GreetingConfig,
    GreetingRun,
    config,
    ensure_seeded,
    render,
    run_row,
    template_text,
)
from models.member import Member, MemberRole, PlatformIdentity
from models.messaging import Chat, OutboxMessage

if TYPE_CHECKING:
    from bot.core import Bot

log = logging.getLogger(__name__)
BATCH_MAX = 1000  # WeCom message/send: touser takes up to 1,000 ids
BATCH_PLATFORMS = frozenset({"wecom"})  # senders that understand payload["batch"] (a list of user ids)


def _hm(text: str, default: time) -> time:
    try:
        h, m = (int(x) for x in text.split(":"))
        return time(h, m)
    except (ValueError, AttributeError):
        return default


@dataclass
class Window:
    send: time
    until: time

    @classmethod
    def of(cls, cfg: GreetingConfig) -> Window:
        return cls(_hm(cfg.send_time, time(9)), _hm(cfg.catchup_until, time(20)))

    def open(self, local: datetime) -> bool:
        return self.send <= local.time() < self.until


# which occasions are due on a day ---------------------------------------------------------------------------
def occasion_days(send_day: date, shift: bool) -> list[date]:
    """Occasion dates whose greeting goes out on `send_day`: the day itself, and — when greetings move to the
    last working day before — the non-working days that follow it."""
    if not shift:
        return [send_day]
    if not cal.is_workday(send_day):
        return []
    days, d = [send_day], send_day + timedelta(days=1)
    while not cal.is_workday(d) and len(days) < 20:
        days.append(d)
        d += timedelta(days=1)
    return days


def birthday_members(session: Session, days: list[date]) -> Iterator[tuple[Member, date]]:
    """Active members whose celebrated birthday is one of `days` (lunar ones through the day's lunar year)."""
    if not days:
        return
    solar_md = {(d.month, d.day) for d in days}
    if any(d.month == 2 and d.day == 28 for d in days):
        solar_md.add((2, 29))
    lunar_md: dict[tuple[int, int], date] = {}
    for d in days:
        ly, lm, ld, leap = cal.lunar_of(d)
        if leap:
            continue  # leap-month birthdays are celebrated in the ordinary month
        lunar_md[(lm, ld)] = d
        if ld == 29 and cal.lunar_month_days(ly, lm) == 29:
            lunar_md[(lm, 30)] = d  # day 30 in a 29-day month falls on day 29
    # Narrow in SQL (extract() works on SQLite and PostgreSQL); the exact rule is applied below in Python.
    is_lunar = and_(
        Member.birthday_is_lunar.is_(True),
        Member.lunar_birth_month.is_not(None),
        Member.lunar_birth_day.is_not(None),
    )
    solar = [
        and_(extract("month", Member.birthday) == m, extract("day", Member.birthday) == d)
        for m, d in solar_md
    ]
    lunar = [and_(Member.lunar_birth_month == m, Member.lunar_birth_day == d) for m, d in lunar_md]
    rows = session.scalars(
        select(Member)
        .where(Member.active.is_(True))
        .where(
            or_(
                and_(not_(is_lunar), Member.birthday.is_not(None), or_(*solar)),
                and_(is_lunar, or_(false(), *lunar)),
            )
        )
        .options(selectinload(Member.identities))
        .order_by(Member.id)
    )
    for m in rows:
        lunar = cal.lunar_birth(m)
        if lunar is not None:
            hit = lunar_md.get((lunar[0], lunar[1]))
            if hit is not None:
                yield m, hit
        elif m.birthday is not None and (m.birthday.month, m.birthday.day) in solar_md:
            for day in days:
                if cal.solar_birthday_in(day.year, m.birthday) == day:
                    yield m, day
                    break


def festivals_on(session: Session, days: list[date]) -> list[tuple[Festival, date]]:
    out = []
    for f in session.scalars(select(Festival).where(Festival.enabled.is_(True)).order_by(Festival.id)):
        for day in days:
            try:
                if cal.date_for_rule(f.rule, day.year) == day:
                    out.append((f, day))
            except (cal.RuleError, ValueError):
                log.warning("festival %s has a bad rule %r", f.code, f.rule)
    return out


def festival_send_day(f: Festival, day: date) -> date:
    return cal.last_workday_on_or_before(day) if f.shift_to_workday else day


def next_occurrence(f: Festival, today: date) -> tuple[date, date] | None:
    """(the festival's next date on or after today, the day its greeting goes out), None for a bad rule."""
    for year in (today.year, today.year + 1, today.year + 2):
        try:
            day = cal.date_for_rule(f.rule, year)
        except (cal.RuleError, ValueError):
            return None
        if day is not None and festival_send_day(f, day) >= today:
            return day, festival_send_day(f, day)
    return None


def festival_window(f: Festival, window: Window) -> Window:
    """A festival's own send time (when staff set one) until the day's catch-up limit."""
    return Window(_hm(f.send_time or "", window.send), window.until)


def birthday_send_day(bday: date, shift: bool) -> date:
    return cal.last_workday_on_or_before(bday) if shift else bday


def milestone_notice_day(bday: date, shift: bool) -> date:
    """The branch chair hears of a milestone birthday the day before its greeting goes out; when greetings move
    to working days, on the last working day before that (the chair is at work to prepare the gift)."""
    before = birthday_send_day(bday, shift) - timedelta(days=1)
    return cal.last_workday_on_or_before(before) if shift else before


# the run ------------------------------------------------------------------------------------------------------
@dataclass
class RunStats:
    birthdays: int = 0
    milestone_notices: int = 0
    festival_private: int = 0
    festival_chats: int = 0
    leader_notes: int = 0
    monthly_lists: int = 0
    skipped_opt_out: int = 0
    unreachable: int = 0
    already: int = 0


def run_greetings(bot: Bot, now: datetime) -> RunStats:
    """Queue today's birthday and festival greetings that are due and not yet queued. Safe to call every minute:
    an occasion whose run completed is skipped at once, and the outbox keys stop any duplicate."""
    stats = RunStats()
    local = now.astimezone(bot.clock.tz)
    today = local.date()
    with bot.db.transaction() as s:
        ensure_seeded(s)
        cfg = config(s)
        window = Window.of(cfg)
        q = Queue(bot, s, now, stats)
        if window.open(local):
            _birthdays(q, cfg, today)
            if cfg.leader_note:
                _leader_notes(q, cfg, today)
            month_end = next_month(today)[0] - timedelta(days=1)
            if cfg.monthly_list_day and today.day >= min(cfg.monthly_list_day, month_end.day):
                _monthly_list(q, today)  # on the set day, or made up on any later day of the month
        _festivals(q, cfg, today, local, window)  # each festival checks its own send time
        if cfg.milestone_notice:
            _milestone_notices(q, cfg, today, local, window)
        q.flush()
    return stats


class Queue:
    """Buffers outbox rows and writes them 500 at a time, INSERT ... ON CONFLICT (idempotency_key) DO NOTHING — the same
    row and key rule as `bot.outbox.enqueue`, without one round trip per member. Counts outcomes per run."""

    CHUNK = 500

    def __init__(self, bot: Bot, s: Session, now: datetime, stats: RunStats):
        self.bot, self.s, self.now, self.stats = bot, s, now, stats
        self.rows: list[dict] = []
        self.owner: tuple[GreetingRun, str] | None = None
        self.dialect = s.get_bind().dialect.name

    def to_member(
        self,
        member: Member,
        text: str,
        key: str,
        run: GreetingRun,
        field_name: str,
        payload: dict | None = None,
    ) -> bool:
        """Queue `text` (or `payload`, e.g. a file) to the member's newest reachable account; False: none."""
        idents = [i for i in member.identities if not i.unreachable and i.platform in self.bot.senders]
        if not idents:
            run.unreachable += 1
            self.stats.unreachable += 1
            return False
        ident = max(idents, key=lambda i: i.id)
        self.add(ident.platform, "user", ident.platform_user_id, payload or {"type": "text", "text": text}, key,
                 run, field_name, member.id)  # fmt: skip
        return True

    def add(self, platform, kind, target, payload, key, run, field_name, member_id=None) -> None:
        if self.owner is not None and self.owner != (run, field_name):
            self.flush()
        self.owner = (run, field_name)
        self.rows.append(
            dict(
                idempotency_key=key[:255],
                platform=platform,
                target_kind=kind,
                target_id=target,
                member_id=member_id,
                payload=payload,
                context={},
                status="pending",
                attempts=0,
                next_attempt_at=self.now,
                created_at=self.now,
            )
        )
        if len(self.rows) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.rows or self.owner is None:
            return
        table = OutboxMessage.__table__
        ins = (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)
        stmt = ins.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
            table.c.idempotency_key
        )
        # Core "insertmanyvalues" on the session's connection (same transaction). RETURNING gives the rows really
        # inserted (psycopg reports rowcount -1 for executemany, so the rowcount cannot be used). Counts are per
        # recipient: a WeCom batch row counts its ids.
        inserted = set(self.s.connection().execute(stmt, self.rows).scalars())
        weight = {r["idempotency_key"]: len(r["payload"].get("batch") or [1]) for r in self.rows}
        added = sum(n for key, n in weight.items() if key in inserted)
        already = sum(weight.values()) - added
        run, field_name = self.owner
        run.queued += added
        run.already += already
        setattr(self.stats, field_name, getattr(self.stats, field_name) + added)
        self.stats.already += already
        self.rows = []


def _open_runs(q: Queue, kind: str, occasion: str, days: list[date]) -> dict[date, GreetingRun]:
    """The runs of these days that have not completed yet (completed ones are skipped)."""
    runs = {d: run_row(q.s, kind, occasion, d, q.now) for d in days}
    return {d: r for d, r in runs.items() if r.completed_at is None}


def _done(q: Queue, runs: dict[date, GreetingRun]) -> None:
    q.flush()
    for r in runs.values():
        r.runs += 1
        r.last_run_at = r.completed_at = q.now


def _birthdays(q: Queue, cfg: GreetingConfig, today: date) -> None:
    runs = _open_runs(q, "birthday", "birthday", occasion_days(today, cfg.birthday_shift_to_workday))
    if not runs:
        return
    plain, milestone = template_text(q.s, "birthday"), template_text(q.s, "birthday_milestone")
    for member, day in birthday_members(q.s, list(runs)):
        run = runs[day]
        if member.greeting_opt_out:
            run.skipped_opt_out += 1
            q.stats.skipped_opt_out += 1
            continue
        text = render(milestone if cal.is_milestone(cal.age_on(member, day)) else plain, name=member.name)
        q.to_member(member, text, f"birthday:{member.id}:{day}", run, "birthdays")
    _done(q, runs)


def _milestone_notices(q: Queue, cfg: GreetingConfig, today: date, local: datetime, window: Window) -> None:
    """Tell the member's branch chair(s) about a milestone birthday: due from the send time of its notice day
    (`milestone_notice_day`), made up late until the window closes on the day its greeting goes out."""
    shift = cfg.birthday_shift_to_workday
    due = []
    for i in range(0, 25 if shift else 2):  # a birthday after a long holiday is greeted (and noticed) early
        bday = today + timedelta(days=i)
        notice, send = milestone_notice_day(bday, shift), birthday_send_day(bday, shift)
        on_time = notice == today and local.time() >= window.send
        if on_time or (notice < today <= send and window.open(local)):
            due.append(bday)
    runs = _open_runs(q, "milestone_notice", "birthday", due)
    if not runs:
        return
    tpl = template_text(q.s, "milestone_notice")
    chairs_of: dict[int | None, list[Member]] = {}
    for member, bday in birthday_members(q.s, list(runs)):
        run = runs[bday]
        if member.greeting_opt_out or not cal.is_milestone(cal.age_on(member, bday)):
            continue
        if member.branch_id not in chairs_of:
            chairs_of[member.branch_id] = list(
                q.s.scalars(
                    select(Member)
                    .join(MemberRole)
                    .where(
                        MemberRole.role == "branch_chair",
                        Member.active.is_(True),
                        Member.branch_id == member.branch_id,
                    )
                    .options(selectinload(Member.identities))
                )
            )
        text = render(
            tpl,
            name=member.name,
            date=f"{bday.month}月{bday.day}日",
            branch=member.branch.name if member.branch else "未分配分会",
        )
        for chair in chairs_of[member.branch_id]:
            if chair.id != member.id:
                key = f"milestone_notice:{member.id}:{bday}:{chair.id}"
                q.to_member(chair, text, key, run, "milestone_notices")
    _done(q, runs)


def _leader_notes(q: Queue, cfg: GreetingConfig, today: date) -> None:
    """A morning note to each group leader: today's birthdays in the group, names only."""
    runs = _open_runs(q, "leader_note", "birthday", [today])
    if not runs:
        return
    by_group: dict[int, list[str]] = defaultdict(list)
    for member, _day in birthday_members(q.s, [today]):
        if member.group_id and not member.greeting_opt_out:
            by_group[member.group_id].append(member.name)
    wanted = set(cfg.leader_note_groups or [])
    for gid, names in sorted(by_group.items()):
        if wanted and gid not in wanted:
            continue
        leaders = q.s.scalars(
            select(Member)
            .join(MemberRole)
            .where(MemberRole.role == "group_leader", Member.active.is_(True), Member.group_id == gid)
            .options(selectinload(Member.identities))
        )
        text = f"今天过生日的组员：{'、'.join(names)}。别忘了送上一句祝福！"
        for leader in leaders:
            q.to_member(leader, text, f"leader_note:{gid}:{today}:{leader.id}", runs[today], "leader_notes")
    _done(q, runs)


def next_month(today: date) -> tuple[date, date]:
    first = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    last = date(first.year + (first.month == 12), first.month % 12 + 1, 1) - timedelta(days=1)
    return first, last


def month_birthdays(
    s: Session, first: date, last: date, branch_id: int | None = None
) -> list[tuple[Member, date]]:
    """Every active member's celebrated birthday between first and last (cake vouchers: opted-out included),
    of one branch when `branch_id` is given."""
    out = []
    q = (
        select(Member)
        .where(Member.active.is_(True))
        .options(selectinload(Member.branch), selectinload(Member.group))
    )
    if branch_id is not None:
        q = q.where(Member.branch_id == branch_id)
    for m in s.scalars(q.order_by(Member.branch_id, Member.id)):
        for d in cal.birthdays_in_range(m, first, last):
            out.append((m, d))
    out.sort(key=lambda x: ((x[0].branch.name if x[0].branch else "~"), x[1], x[0].id))
    return out


def _monthly_list(q: Queue, today: date) -> None:
    """On the set day: next month's birthdays per branch to the clerks, then the .xlsx of all branches as a file
    (its own key: a retry of one never repeats the other); the console keeps per-branch downloads."""
    first, last = next_month(today)
    runs = _open_runs(q, "monthly_list", "birthday", [first])
    if not runs:
        return
    per_branch: dict[str, list[str]] = defaultdict(list)
    for m, d in month_birthdays(q.s, first, last):
        per_branch[m.branch.name if m.branch else "未分配分会"].append(f"{m.name}（{d.day}日）")
    lines = [f"{first.month}月生日名单（发蛋糕券用），共 {sum(len(v) for v in per_branch.values())} 人："]
    for branch, names in per_branch.items():
        shown = "、".join(names[:30]) + (f" 等{len(names)}人" if len(names) > 30 else "")
        lines.append(f"{branch}（{len(names)}人）：{shown}")
    lines.append("完整名单的Excel文件随后发到这里；按分会下载：管理后台 → 生日与节日祝福 → 生日名单。")
    clerks = q.s.scalars(
        select(Member)
        .join(MemberRole)
        .where(MemberRole.role == "clerk", Member.active.is_(True))
        .options(selectinload(Member.identities))
    )
    name = f"{first.year}年{first.month}月生日名单.xlsx"
    xlsx = File(name, birthday_list_xlsx(q.s, first.year, first.month)).to_payload()
    for clerk in clerks:
        key = f"monthly_list:{first:%Y-%m}:{clerk.id}"
        if q.to_member(clerk, "\n".join(lines), key, runs[first], "monthly_lists"):
            q.to_member(clerk, name, f"{key}:xlsx", runs[first], "monthly_lists", payload=xlsx)
    _done(q, runs)


def birthday_list_xlsx(s: Session, year: int, month: int, branch_id: int | None = None) -> bytes:
    """The month's birthday list as .xlsx (branch, group, name, employee no., date, lunar/solar, milestone),
    of every branch or of one."""
    import io

    from openpyxl import Workbook

    first = date(year, month, 1)
    _, last = next_month(date(year, month, 1) - timedelta(days=1))
    wb = Workbook()
    ws = wb.active
    ws.title = f"{month}月生日"
    ws.append(["分会", "小组", "姓名", "工号", "生日（公历）", "历法", "逢十", "不要祝福"])
    for m, d in month_birthdays(s, first, last, branch_id):
        row = [
            m.branch.name if m.branch else "",
            m.group.name if m.group else "",
            m.name,
            m.employee_no,
            d.isoformat(),
            "农历" if cal.lunar_birth(m) else "公历",
            "是" if cal.is_milestone(cal.age_on(m, d)) else "",
            "是" if m.greeting_opt_out else "",
        ]
        ws.append([safe_cell(v) for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _festivals(q: Queue, cfg: GreetingConfig, today: date, local: datetime, window: Window) -> None:
    horizon = [today + timedelta(days=i) for i in range(0, 20)]
    for f, day in festivals_on(q.s, horizon):
        if festival_send_day(f, day) != today or not festival_window(f, window).open(local):
            continue
        runs = _open_runs(q, "festival", f.code, [day])
        if not runs:
            continue
        run = runs[day]
        run.note = audience_unknown(q.s, f.audience)
        if run.note:
            log.warning("festival %s on %s not sent: %s", f.code, day, run.note)
        else:
            if f.delivery in ("private", "both"):
                _festival_private(q, cfg, f, day, run)
            if f.delivery in ("group", "both"):
                payload = {"type": "text", "text": render(f.template, name="各位会员")}
                for chat in festival_chats(q.s, f.audience, day):
                    if chat.platform in q.bot.senders:
                        key = f"festival:{f.code}:{day}:chat:{chat.id}"
                        q.add(chat.platform, "chat", chat.chat_id, payload, key, run, "festival_chats")
        _done(q, runs)


def audience_unknown(s: Session, audience: str) -> str | None:
    """Why an audience cannot be told apart yet (the console shows it), or None. 六一 goes to members with
    children: when no active member's roster entry says 有子女 either way, it is not sent to everyone instead."""
    if audience != "parents":
        return None
    known = s.scalar(
        select(Member.id).where(Member.active.is_(True), Member.has_children.is_not(None)).limit(1)
    )
    if known:
        return None
    return "花名册未登记“有子女”（是/否），不知道该发给谁，本次未发送。请在花名册加“有子女”列后重新导入。"


def audience_rows(s: Session, audience: str, day: date) -> Iterator[Any]:
    """The active members of an audience as plain rows (not ORM objects), so 100,000 members stay fast and small."""
    q = select(
        Member.id,
        Member.name,
        Member.gender,
        Member.job_title,
        Member.retired,
        Member.is_delegate,
        Member.birthday,
        Member.has_children,
        Member.group_id,
        Member.branch_id,
    ).where(Member.active.is_(True))
    if audience == "women":
        q = q.where(Member.gender == "女")
    elif audience == "retirees":
        q = q.where(Member.retired.is_(True))
    elif audience == "delegates":
        q = q.where(Member.is_delegate.is_(True))
    elif audience == "parents":
        q = q.where(Member.has_children.is_(True))
    for row in s.execute(q.order_by(Member.id)):
        if cal.in_audience(row, audience, day):
            yield row


def festival_chats(s: Session, audience: str, day: date) -> list[Chat]:
    chats = list(s.scalars(select(Chat).where(Chat.unreachable.is_(False)).order_by(Chat.id)))
    return chats if audience == "all" else chats_of_audience(chats, audience_rows(s, audience, day))


def chats_of_audience(chats: list[Chat], members) -> list[Chat]:
    """The group chats a targeted festival's post goes to: the chats of the union groups (or, for a chat tied
    only to a branch, the branches) that hold a member of the audience. (Everyone-festivals: every chat.)"""
    groups, branches = set(), set()
    for m in members:
        groups.add(m.group_id)
        branches.add(m.branch_id)
    return [
        c
        for c in chats
        if (c.group_id is not None and c.group_id in groups)
        or (c.group_id is None and c.branch_id is not None and c.branch_id in branches)
    ]


def audience_members(
    s: Session, audience: str, day: date, senders
) -> Iterator[tuple[Any, tuple[str, str] | None]]:
    """(member row, (platform, user id) or None) for the active members of an audience."""
    idents: dict[int, tuple[str, str]] = {}
    for member_id, platform, user_id in s.execute(
        select(PlatformIdentity.member_id, PlatformIdentity.platform, PlatformIdentity.platform_user_id)
        .where(PlatformIdentity.unreachable.is_(False), PlatformIdentity.platform.in_(list(senders)))
        .order_by(PlatformIdentity.id)
    ):
        idents[member_id] = (platform, user_id)  # the newest account wins, as in Bot.notify_member
    for row in audience_rows(s, audience, day):
        yield row, idents.get(row.id)


def _festival_private(q: Queue, cfg: GreetingConfig, f: Festival, day: date, run: GreetingRun) -> None:
    personal = "{name}" in f.template
    by_platform: dict[str, list[str]] = defaultdict(list)
    for m, ident in audience_members(q.s, f.audience, day, q.bot.senders):
        if ident is None:
            run.unreachable += 1
            q.stats.unreachable += 1
        elif personal or not cfg.batch_private or ident[0] not in BATCH_PLATFORMS:
            payload = {"type": "text", "text": render(f.template, name=m.name)}
            q.add(
                ident[0],
                "user",
                ident[1],
                payload,
                f"festival:{f.code}:{day}:{m.id}",
                run,
                "festival_private",
                m.id,
            )
        else:
            by_platform[ident[0]].append(ident[1])
    # Identical text on WeCom: one outbox row per 1,000 recipients, payload {"batch": [ids]}.
    for platform, ids in by_platform.items():
        for n, start in enumerate(range(0, len(ids), BATCH_MAX)):
            chunk = ids[start : start + BATCH_MAX]
            payload = {"type": "text", "text": f.template, "batch": chunk}
            key = f"festival:{f.code}:{day}:batch:{platform}:{n}"
            q.add(platform, "user", f"batch:{len(chunk)}", payload, key, run, "festival_private")


# preview -------------------------------------------------------------------------------------------------------
@dataclass
class Planned:
    when: datetime  # local
    kind: str
    what: str
    recipients: int


def preview_greetings(bot: Bot, start: date, end: date) -> list[Planned]:
    """Every greeting that would go out between start and end (inclusive), with its recipient count."""
    out: list[Planned] = []
    with bot.db.transaction() as s:
        ensure_seeded(s)
    with bot.db.Session() as s:
        cfg = config(s)
        send = Window.of(cfg).send
        shift, notices = cfg.birthday_shift_to_workday, cfg.milestone_notice
        leader_note, note_groups, monthly_day = (
            cfg.leader_note,
            set(cfg.leader_note_groups or []),
            cfg.monthly_list_day,
        )
        members = list(
            s.scalars(select(Member).where(Member.active.is_(True)).options(selectinload(Member.identities)))
        )
        chats = s.scalars(select(Chat).where(Chat.unreachable.is_(False))).all()
        festivals = list(s.scalars(select(Festival).where(Festival.enabled.is_(True))))
        s.expunge_all()
    per_day: dict[date, list[Member]] = defaultdict(list)
    milestones: dict[date, int] = defaultdict(int)
    for m in members:
        if m.greeting_opt_out:
            continue
        for bday in cal.birthdays_in_range(m, start, end + timedelta(days=30 if shift else 1)):
            send_day = birthday_send_day(bday, shift)
            if start <= send_day <= end:
                per_day[send_day].append(m)
            notice_day = milestone_notice_day(bday, shift)
            if cal.is_milestone(cal.age_on(m, bday)) and start <= notice_day <= end:
                milestones[notice_day] += 1
    if leader_note:
        groups_on: dict[date, set[int]] = defaultdict(set)
        for m in members:
            if m.greeting_opt_out or not m.group_id or (note_groups and m.group_id not in note_groups):
                continue
            for bday in cal.birthdays_in_range(m, start, end):
                groups_on[bday].add(m.group_id)
        for day, gids in groups_on.items():
            out.append(
                Planned(datetime.combine(day, send), "组长生日提醒", f"{len(gids)}个小组的组长", len(gids))
            )
    if monthly_day:
        clerks = sum(1 for m in members if "clerk" in m.roles)
        first = date(start.year, start.month, 1)
        while first <= end:
            nxt_first, nxt_last = next_month(first)
            send_day = first.replace(day=min(monthly_day, (nxt_first - timedelta(days=1)).day))
            if start <= send_day <= end:
                n = sum(len(cal.birthdays_in_range(m, nxt_first, nxt_last)) for m in members)
                what = f"{nxt_first.month}月生日名单（{n}位会员，发给干事）"
                out.append(Planned(datetime.combine(send_day, send), "生日名单", what, clerks))
            first = nxt_first
    for day, ms in per_day.items():
        out.append(Planned(datetime.combine(day, send), "生日祝福", "、".join(x.name for x in ms[:5]) + (
            f" 等{len(ms)}人" if len(ms) > 5 else ""), len(ms)))  # fmt: skip
    for day, n in milestones.items():
        if notices:
            out.append(
                Planned(
                    datetime.combine(day, send), "逢十生日提醒", f"{n}位会员逢十生日将至（通知分会主席）", n
                )
            )
    parents_unknown = not any(m.has_children is not None for m in members)
    for f in festivals:
        at = festival_window(f, Window(send, send)).send
        for year in range(start.year, end.year + 2):
            try:
                day = cal.date_for_rule(f.rule, year)
            except (cal.RuleError, ValueError):
                continue
            if day is None:
                continue
            send_day = festival_send_day(f, day)
            if not start <= send_day <= end:
                continue
            audience = [m for m in members if cal.in_audience(m, f.audience, day)]
            n = len(audience) if f.delivery != "group" else 0
            label = {"private": "私聊", "group": "群发", "both": "私聊+群发"}.get(f.delivery, f.delivery)
            what = f"{f.name}（{cal.AUDIENCES.get(f.audience, f.audience)}，{label}"
            if f.delivery != "private":
                posts = chats if f.audience == "all" else chats_of_audience(chats, audience)
                what += f"，{len(posts)}个群"
            what += "）"
            if f.audience == "parents" and parents_unknown:
                n, what = 0, what + "：花名册未登记“有子女”，不会发送"
            out.append(Planned(datetime.combine(send_day, at), "节日祝福", what, n))
    out.sort(key=lambda p: (p.when, p.kind))
    return out


# chat: opt-out / opt-in / lunar birthday ------------------------------------------------------------------
@router.handler(
    "不要生日祝福",
    "别发生日祝福",
    "关掉生日提醒",
    "关闭生日祝福",
    "取消生日祝福",
    "不用发生日祝福",
    "不要发生日祝福",
    group_ok=False,
)
def opt_out(ctx: Context) -> None:
    """不要生日祝福：不再收到生日祝福"""
    m = ctx.member
    assert m is not None
    m.greeting_opt_out = True
    ctx.reply("好的，以后不再给您发生日祝福。想恢复时发送“开启生日祝福”即可。")


@router.handler(
    "开启生日祝福",
    "打开生日祝福",
    "恢复生日祝福",
    "生日祝福还是发吧",
    "还是发生日祝福",
    "要生日祝福",
    group_ok=False,
)
def opt_in(ctx: Context) -> None:
    """开启生日祝福：恢复生日祝福"""
    m = ctx.member
    assert m is not None
    m.greeting_opt_out = False
    ctx.reply(f"好的，生日祝福已开启。{_birthday_line(m)}")


def _birthday_line(m: Member) -> str:
    if m.birthday_is_lunar and m.lunar_birth_month:
        return f"您登记的是农历{'闰' if m.lunar_birth_leap else ''}{m.lunar_birth_month}月{m.lunar_birth_day}日。"
    if m.birthday:
        return f"您登记的生日是{m.birthday.month}月{m.birthday.day}日。"
    return "花名册里还没有您的生日，请联系工会干事登记。"


_LUNAR = re.compile(
    r"(闰)?\s*(正|冬|腊|十一|十二|十|[一二三四五六七八九]|1[0-2]|[1-9])\s*月\s*(初[一二三四五六七八九十]|[二三]十|廿[一二三四五六七八九]|二十[一二三四五六七八九]|十[一二三四五六七八九]|[1-9]\d?)\s*[日号]?"
)
_CN = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_MONTHS = {"正": 1, "冬": 11, "腊": 12, "十一": 11, "十二": 12, "十": 10}


def parse_lunar(text: str) -> tuple[int, int, bool] | None:
    """'腊月三十' / '闰二月十五' / '8月15' -> (month, day, leap)."""
    m = _LUNAR.search(text)
    if not m:
        return None
    leap, mon, day = bool(m.group(1)), m.group(2), m.group(3)
    month = _MONTHS.get(mon) or _CN.get(mon) or int(mon)
    if day.isdigit():
        d = int(day)
    elif day.startswith("初"):
        d = _CN[day[1]]
    elif day in ("二十", "三十"):
        d = 20 if day == "二十" else 30
    elif day.startswith("廿"):
        d = 20 + _CN[day[1]]
    elif day.startswith("二十"):
        d = 20 + _CN[day[2]]
    else:  # 十X
        d = 10 + _CN[day[1]]
    if not (1 <= month <= 12 and 1 <= d <= 30):
        return None
    return month, d, leap


@router.handler("我按农历过生日", "按农历过生日", "农历生日", "过农历生日", group_ok=False)
def lunar_birthday(ctx: Context) -> None:
    """我按农历过生日：把生日祝福改按农历发送"""
    m = ctx.member
    assert m is not None
    given = parse_lunar(ctx.args)
    if given:
        _set_lunar(ctx, m, given)
        return
    hint = ""
    if m.birthday:
        _, lm, ld, leap = cal.lunar_of(m.birthday)
        hint = f"\n按花名册的出生日期推算是农历{'闰' if leap else ''}{lm}月{ld}日，对的话回复“对”。"
        ctx.start_dialog("lunar_birthday", "ask", {"guess": [lm, ld, leap]})
    else:
        ctx.start_dialog("lunar_birthday", "ask", {})
    ctx.reply(
        "好的，请告诉我您的农历生日，例如：腊月初八、八月十五、闰二月十五。" + hint + "\n（发送“取消”退出）"
    )


@router.handler("我按公历过生日", "按公历过生日", "按阳历过生日", "我按阳历过生日", group_ok=False)
def solar_birthday(ctx: Context) -> None:
    """我按公历过生日：生日祝福按公历日期发送"""
    m = ctx.member
    assert m is not None
    m.birthday_is_lunar = False
    ctx.reply("好的，生日祝福改按公历发送。" + _birthday_line(m))


@router.dialog("lunar_birthday")
def lunar_birthday_step(ctx: Context) -> None:
    m = ctx.member
    assert m is not None and ctx.dialog is not None
    guess = ctx.dialog.data.get("guess")
    text = ctx.text.strip()
    if guess and text in ("对", "是", "是的", "对的", "没错", "好", "确认"):
        _set_lunar(ctx, m, (guess[0], guess[1], bool(guess[2])))
        ctx.end_dialog()
        return
    given = parse_lunar(text)
    if given is None:
        ctx.reply("没看懂这个日期，请写成“腊月初八”或“8月15”这样的格式；发送“取消”退出。")
        return
    _set_lunar(ctx, m, given)
    ctx.end_dialog()


def _set_lunar(ctx: Context, m: Member, given: tuple[int, int, bool]) -> None:
    month, day, leap = given
    m.birthday_is_lunar, m.lunar_birth_month, m.lunar_birth_day, m.lunar_birth_leap = True, month, day, leap
    today = ctx.clock.today()
    ly = cal.lunar_of(today)[0]
    nxt = cal.birthday_on(m, ly)
    if nxt is not None and nxt < today:
        nxt = cal.birthday_on(m, ly + 1)
    note = ""
    if leap:
        note = "闰月生日按当年的正常月份过（每年一次）。"
    elif day == 30:
        note = "当月只有29天的年份，在廿九发祝福。"
    when = f"今年的农历生日在公历{nxt.month}月{nxt.day}日。" if nxt else ""
    ctx.reply(f"已记下：农历{'闰' if leap else ''}{month}月{day}日。{note}{when}到时给您送上祝福！")


def holiday_warning(bot: Bot) -> str | None:
    """For the console: the holiday calendar's gap, if any (chinesecalendar does not know the year yet)."""
    return cal.holiday_data_warning(bot.clock.today())
