"""Meetings: invitations with 参加 / 请假 (buttons and text), reminders, changes, cancellation, congress quorum.

Catch-up rules:
* invitation: queued in the transaction that creates the meeting (no scheduler involved).
* reminders (default 1 day and 1 hour before, `GreetingConfig.meeting_reminder_minutes` or per meeting): sent by
  the minute scan while the meeting has not started; after downtime only the most recent due reminder goes out
  (never the 1-day one an hour before the meeting, never any once the meeting has started). A reminder that fell
  due before the invitation (or the last change notice) went out is skipped: the notice already said it all.
  Recipients: invitees who said 参加 or have not answered. Keyed by the start time, so a moved meeting is
  reminded again for its new time.
* quorum warning (职代会: confirmed delegates not more than two thirds): to the clerks from 24 hours before until
  the start, once per start time.
* change / cancellation notices: queued in the transaction that makes the change, once per version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot.context import Context
from bot.message import Button, Card, Text
from handlers import router
from models.greeting import config
from models.meeting import KINDS, RSVP_LABELS, Meeting, MeetingInvite, quorum, resolve_attendees
from models.member import Branch, Group, Member, MemberRole

if TYPE_CHECKING:
    from bot.core import Bot

DEFAULT_REMINDERS = (1440, 60)
MAX_REMINDERS = 5
EXCUSE_WORDS = ("请假", "去不了", "来不了", "不能参加", "参加不了", "到不了", "不参加", "没法参加", "不去")
WEEKDAY_NAMES = "一二三四五六日"
CHANGE_FIELDS = ("title", "starts_at", "place", "agenda", "rsvp_deadline")


# building blocks ----------------------------------------------------------------------------------------------
def _fmt(bot: Bot, dt: datetime) -> str:
    loc = bot.clock.local(dt)
    return f"{loc.month}月{loc.day}日（周{WEEKDAY_NAMES[loc.weekday()]}）{loc:%H:%M}"


def when_words(bot: Bot, dt: datetime, now: datetime) -> str:
    """今天 18:00 / 明天 09:00 / 后天 … / 12月4日（周五）14:30 — from the local calendar dates, never an offset."""
    loc = bot.clock.local(dt)
    days = (loc.date() - bot.clock.local(now).date()).days
    word = {0: "今天", 1: "明天", 2: "后天"}.get(days)
    return f"{word} {loc:%H:%M}" if word else _fmt(bot, dt)


def invitation_card(bot: Bot, meeting: Meeting) -> Card:
    lines = [f"时间：{_fmt(bot, meeting.starts_at)}", f"地点：{meeting.place or '另行通知'}"]
    if meeting.agenda:
        lines.append(f"议程：{meeting.agenda}")
    if meeting.rsvp_deadline:
        lines.append(f"请于{_fmt(bot, meeting.rsvp_deadline)}前回复。")
    lines.append(f"也可以直接回复“参加 {meeting.id}”或“请假 {meeting.id} 原因”。")
    return Card(
        f"会议通知：{meeting.title}",
        lines,
        [
            Button("参加", {"do": "rsvp", "meeting": meeting.id, "answer": "attend"}),
            Button("请假", {"do": "rsvp", "meeting": meeting.id, "answer": "excused"}, style="default"),
        ],
    )


def parse_offsets(text: str) -> list[int]:
    """'1天, 2小时, 30分钟' or '1440 60' (minutes) -> [1440, 120, 30]; ValueError with a Chinese message."""
    units = {"天": 1440, "日": 1440, "小时": 60, "时": 60, "分钟": 1, "分": 1, "": 1}
    tokens = re.findall(r"(\d+)\s*(天|日|小时|时|分钟|分)?", text.translate(_FULL_WIDTH))
    leftover = re.sub(
        r"(\d+)\s*(天|日|小时|时|分钟|分)?|[\s,，、;；]|前|提前", "", text.translate(_FULL_WIDTH)
    )
    if leftover:
        raise ValueError("提醒时间写成“1天、2小时、30分钟”这样，或分钟数，用逗号分隔")
    values = sorted({int(n) * units[u or ""] for n, u in tokens if int(n) > 0}, reverse=True)
    if len(values) > MAX_REMINDERS or any(v > 30 * 1440 for v in values):
        raise ValueError(f"最多 {MAX_REMINDERS} 个提醒，每个不超过提前 30 天")
    return values


_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


def offsets_text(minutes: list[int] | None) -> str:
    """[1440, 90] -> '1天、90分钟' (for forms and pages)."""
    out = []
    for m in minutes or []:
        out.append(f"{m // 1440}天" if m % 1440 == 0 else f"{m // 60}小时" if m % 60 == 0 else f"{m}分钟")
    return "、".join(out)


def meeting_errors(
    *,
    title: str | None,
    kind: str | None,
    starts_at: datetime | None,
    rsvp_deadline: datetime | None,
    now: datetime,
    new_time: bool = True,
    new_deadline: bool = True,
) -> dict[str, str]:
    """Field -> Chinese message for a meeting's details (the same rules in the console, chat and API)."""
    errors: dict[str, str] = {}
    if not title or len(title) > 200:
        errors["title"] = "请填写会议名称（200 字以内）"
    if kind not in KINDS:
        errors["kind"] = f"会议类型应为：{'、'.join(KINDS)}"
    if starts_at is None:
        errors["starts_at"] = "请填写会议时间"
    elif new_time and starts_at <= now:
        errors["starts_at"] = "会议时间应在将来"
    if rsvp_deadline is not None:
        if starts_at is not None and rsvp_deadline > starts_at:
            errors["rsvp_deadline"] = "回执截止不能晚于会议开始"
        elif new_deadline and rsvp_deadline <= now:
            errors["rsvp_deadline"] = "回执截止应在将来"
    return errors


def create_meeting(
    session: Session,
    bot: Bot,
    *,
    title: str,
    starts_at: datetime,
    attendees: dict[str, Any],
    kind: str = "其他",
    place: str = "",
    agenda: str = "",
    rsvp_deadline: datetime | None = None,
    reminder_minutes: list[int] | None = None,
    created_by: Member | None = None,
) -> Meeting:
    """Create a meeting, invite the members `attendees` resolves to, and queue the invitation cards."""
    if kind not in KINDS:
        raise ValueError(f"会议类型应为：{'、'.join(KINDS)}")
    meeting = Meeting(
        title=title,
        kind=kind,
        starts_at=starts_at,
        place=place,
        agenda=agenda,
        attendees=attendees,
        rsvp_deadline=rsvp_deadline,
        reminder_minutes=reminder_minutes or None,
        created_by_id=created_by.id if created_by else None,
        created_at=bot.clock.now(),
        status="scheduled",
        version=1,
    )
    session.add(meeting)
    for m in resolve_attendees(session, attendees):
        meeting.invites.append(MeetingInvite(member=m, rsvp="none"))
    session.flush()
    send_invitations(session, bot, meeting)
    return meeting


def send_invitations(session: Session, bot: Bot, meeting: Meeting) -> int:
    card = invitation_card(bot, meeting)
    meeting.notified_at = bot.clock.now()
    return sum(
        bot.notify_member(session, inv.member, card, f"meeting:{meeting.id}:invite:{inv.member_id}")
        for inv in meeting.invites
    )


def change_meeting(session: Session, bot: Bot, meeting: Meeting, **changes: Any) -> int:
    """Change time/place/agenda; everyone invited is told (once per version)."""
    for k, v in changes.items():
        if k not in CHANGE_FIELDS:
            raise ValueError(f"cannot change {k}")
        setattr(meeting, k, v)
    meeting.version += 1
    meeting.notified_at = bot.clock.now()
    card = invitation_card(bot, meeting)
    card = Card(f"会议变更：{meeting.title}", ["会议信息有变化，请以此为准：", *card.lines], card.buttons)
    return sum(
        bot.notify_member(
            session, inv.member, card, f"meeting:{meeting.id}:v{meeting.version}:{inv.member_id}"
        )
        for inv in meeting.invites
    )


@dataclass
class Update:
    told: int = 0  # invitees sent the change notice
    added: int = 0  # new invitees (sent the invitation)
    removed: int = 0  # invitees no longer on the list (told so)


def update_meeting(
    session: Session, bot: Bot, meeting: Meeting, *, attendees: dict[str, Any] | None = None, **fields: Any
) -> Update:
    """Apply an edit from the console, chat or API (already validated).

    A changed title, time, place, agenda or deadline goes to everyone who was invited; members the new
    attendee list adds get the invitation, members it drops are told they need not come.
    """
    result = Update()
    if "kind" in fields:
        meeting.kind = fields.pop("kind")
    if "reminder_minutes" in fields:
        meeting.reminder_minutes = fields.pop("reminder_minutes") or None
    wanted: dict[int, Member] | None = None
    if attendees is not None and attendees != meeting.attendees:
        meeting.attendees = attendees
        wanted = {m.id: m for m in resolve_attendees(session, attendees)}
        meeting.version += 1
        text = Text(f"“{meeting.title}”（{_fmt(bot, meeting.starts_at)}）的参会名单有调整，您不用参加了。")
        for inv in [i for i in meeting.invites if i.member_id not in wanted]:
            key = f"meeting:{meeting.id}:v{meeting.version}:out:{inv.member_id}"
            bot.notify_member(session, inv.member, text, key)
            meeting.invites.remove(inv)
            result.removed += 1
    changed = {k: v for k, v in fields.items() if getattr(meeting, k) != v}
    if changed:
        result.told = change_meeting(session, bot, meeting, **changed)
    if wanted is not None:
        current = {inv.member_id for inv in meeting.invites}
        card = invitation_card(bot, meeting)
        for member_id, m in wanted.items():
            if member_id not in current:
                meeting.invites.append(MeetingInvite(member=m, rsvp="none"))
                bot.notify_member(session, m, card, f"meeting:{meeting.id}:v{meeting.version}:in:{member_id}")
                result.added += 1
        session.flush()
    return result


def lock_meeting(session: Session, meeting_id: int) -> Meeting | None:
    """The meeting, row-locked for an edit: two clerks saving at once cannot both become version n+1."""
    return session.get(Meeting, meeting_id, with_for_update=True, populate_existing=True)


def cancel_meeting(session: Session, bot: Bot, meeting: Meeting, reason: str = "") -> int:
    meeting.status, meeting.cancel_reason = "cancelled", (reason or "").strip()[:200] or None
    text = f"会议取消通知：原定{_fmt(bot, meeting.starts_at)}的“{meeting.title}”已取消。"
    if meeting.cancel_reason:
        text += f"原因：{meeting.cancel_reason}。"
    return sum(
        bot.notify_member(session, inv.member, Text(text), f"meeting:{meeting.id}:cancel:{inv.member_id}")
        for inv in meeting.invites
    )


def record_rsvp(bot: Bot, invite: MeetingInvite, answer: str, reason: str | None = None) -> str:
    """Apply an answer; returns the reply text (refusals say what to do instead)."""
    meeting, now = invite.meeting, bot.clock.now()
    if meeting.status == "cancelled":
        return f"“{meeting.title}”已取消，不用回复了。"
    if meeting.starts_at <= now:
        return f"“{meeting.title}”已经开始或结束，回执不能再改了。"
    if meeting.rsvp_deadline and meeting.rsvp_deadline < now and invite.rsvp != "none":
        return (
            f"“{meeting.title}”的回执已于{_fmt(bot, meeting.rsvp_deadline)}截止，您登记的是"
            f"“{RSVP_LABELS[invite.rsvp]}”。如需变更请直接联系会务干事。"
        )
    invite.rsvp, invite.answered_at = answer, now
    invite.reason = ((reason or "").strip()[:200] or None) if answer == "excused" else None
    when = _fmt(bot, meeting.starts_at)
    if answer == "attend":
        return f"已登记：您参加“{meeting.title}”，{when}，{meeting.place or '地点另行通知'}。会前会提醒您。"
    tail = f"（原因：{invite.reason}）" if invite.reason else ""
    return f"已为您请假：“{meeting.title}”{tail}。如果又能参加了，回复“参加 {meeting.id}”。"


# scheduled: reminders and quorum warnings ----------------------------------------------------------------------
def reminder_offsets(session: Session, meeting: Meeting) -> list[int]:
    if meeting.reminder_minutes:
        return sorted({int(x) for x in meeting.reminder_minutes if int(x) > 0}, reverse=True)
    return default_offsets(session)


def default_offsets(session: Session) -> list[int]:
    """The union-wide setting (minutes before the start), or 1 day and 1 hour."""
    raw = config(session).meeting_reminder_minutes or ""
    vals = sorted({int(x) for x in re.findall(r"\d+", raw) if int(x) > 0}, reverse=True)
    return vals or list(DEFAULT_REMINDERS)


def due_offsets(session: Session, meeting: Meeting) -> list[int]:
    """The meeting's reminder offsets that fall due after its invitation (or last change notice) went out."""
    since = meeting.notified_at or meeting.created_at
    return [o for o in reminder_offsets(session, meeting) if meeting.starts_at - timedelta(minutes=o) > since]


def _stamp(meeting: Meeting) -> str:
    return f"{meeting.starts_at.astimezone(UTC):%Y%m%d%H%M}"


def send_meeting_reminders(bot: Bot, now: datetime) -> int:
    """Reminders and quorum warnings that are due now (called by the minute scan)."""
    queued = 0
    with bot.db.transaction() as s:
        horizon = now + timedelta(days=31)
        meetings = s.scalars(
            select(Meeting)
            .where(Meeting.status == "scheduled", Meeting.starts_at > now, Meeting.starts_at <= horizon)
            .options(selectinload(Meeting.invites).selectinload(MeetingInvite.member))
        ).all()
        for meeting in meetings:
            due = [o for o in due_offsets(s, meeting) if now >= meeting.starts_at - timedelta(minutes=o)]
            if due:
                o = min(due)  # only the most recent reminder that is due (no stale "tomorrow" an hour before)
                text = (
                    f"会议提醒：“{meeting.title}”将于{when_words(bot, meeting.starts_at, now)}开始，"
                    f"地点：{meeting.place or '另行通知'}。"
                )
                for inv in meeting.invites:
                    if inv.rsvp == "excused" or not inv.member.active:
                        continue
                    extra = "" if inv.rsvp == "attend" else f"您还没有回复，能来请回复“参加 {meeting.id}”。"
                    queued += bot.notify_member(
                        s,
                        inv.member,
                        Text(text + extra),
                        f"meeting:{meeting.id}:remind:{o}:{_stamp(meeting)}:{inv.member_id}",
                    )
            if meeting.is_congress and now >= meeting.starts_at - timedelta(days=1):
                queued += _quorum_warning(s, bot, meeting)
    return queued


def _quorum_warning(s: Session, bot: Bot, meeting: Meeting) -> int:
    confirmed, total, needed = quorum(meeting)
    if not total or confirmed >= needed:
        return 0
    text = (
        f"法定人数预警：“{meeting.title}”将于{_fmt(bot, meeting.starts_at)}召开，"
        f"目前确认参加的代表 {confirmed}/{total} 人，需超过三分之二（至少 {needed} 人），还差 {needed - confirmed} 人。"
        f"发送“会议回执 {meeting.id}”查看名单。"
    )
    return sum(
        bot.notify_member(s, clerk, Text(text), f"meeting:{meeting.id}:quorum:{_stamp(meeting)}:{clerk.id}")
        for clerk in _clerks(s, meeting)
    )


def _clerks(s: Session, meeting: Meeting) -> list[Member]:
    q = select(Member).join(MemberRole).where(MemberRole.role == "clerk", Member.active.is_(True))
    people = {m.id: m for m in s.scalars(q)}
    if meeting.created_by_id and meeting.created_by_id not in people:
        creator = s.get(Member, meeting.created_by_id)
        if creator is not None:
            people[creator.id] = creator
    return list(people.values())


def preview_meetings(bot: Bot, start, end) -> list[tuple[datetime, str, str, int]]:
    """(local time, kind, what, recipients) for every reminder between start and end dates (for the CLI)."""
    out = []
    with bot.db.Session() as s:
        for meeting in s.scalars(select(Meeting).where(Meeting.status == "scheduled")):
            for o in due_offsets(s, meeting):
                at = bot.clock.local(meeting.starts_at - timedelta(minutes=o))
                if start <= at.date() <= end:
                    n = sum(1 for i in meeting.invites if i.rsvp != "excused")
                    out.append((at, "会议提醒", f"{meeting.title}（提前{offsets_text([o])}）", n))
            if meeting.is_congress:
                at = bot.clock.local(meeting.starts_at - timedelta(days=1))
                if start <= at.date() <= end:
                    out.append(
                        (at, "法定人数检查", f"{meeting.title}（不足时提醒干事）", len(_clerks(s, meeting)))
                    )
    return out


# chat ---------------------------------------------------------------------------------------------------------
def _upcoming_invites(ctx: Context) -> list[MeetingInvite]:
    assert ctx.member is not None
    return list(
        ctx.session.scalars(
            select(MeetingInvite)
            .join(Meeting)
            .where(
                MeetingInvite.member_id == ctx.member.id,
                Meeting.status == "scheduled",
                Meeting.starts_at > ctx.clock.now(),
            )
            .order_by(Meeting.starts_at)
        )
    )


_KIND_WORDS = {
    "职代会": ("职代会", "代表大会", "职工代表"),
    "工会委员会": ("委员会",),
    "小组长会议": ("小组长", "组长会", "例会"),
}


def _pick(ctx: Context, invites: list[MeetingInvite], text: str) -> list[MeetingInvite]:
    """Narrow the member's invitations by a meeting number, kind words or a weekday in the text."""
    num = re.search(r"(?<![周期])\b(\d{1,6})\b", text) or re.search(r"(\d{1,6})", text)
    if num:
        mid = int(num.group(1))
        return [i for i in invites if i.meeting_id == mid]
    picked = invites
    for kind, words in _KIND_WORDS.items():
        if any(w in text for w in words):
            picked = [i for i in picked if i.meeting.kind == kind or any(w in i.meeting.title for w in words)]
    wd = re.search(r"(?:周|星期|礼拜)([一二三四五六日天])", text)
    if wd:
        want = WEEKDAY_NAMES.index(wd.group(1).replace("天", "日"))
        picked = [i for i in picked if ctx.clock.local(i.meeting.starts_at).weekday() == want]
    return picked


def _reason(text: str) -> str:
    text = re.sub(r"\d+", " ", text)
    for w in (*EXCUSE_WORDS, "会议", "那天", "因为", "要", "，", ",", "。"):
        text = text.replace(w, " ")
    return re.sub(r"\s+", " ", text).strip(" ：:;；")


@router.handler(
    "参加会议",
    "会议请假",
    "请假",
    "我到",
    "能到",
    "出席",
    "去不了",
    "来不了",
    "参加不了",
    "不能参加",
    "到不了",
    patterns=(
        r"^参加\s*\d+",
        r"^参加$",
        r"(?:会议|开会|例会|职代会|代表大会|委员会|组长会).{0,8}(?:去不了|来不了|到不了|参加不了|不能参加|不参加|请假|我到|能到|参加)",
        r"(?:请假|参加|出席).{0,6}(?:会议|例会|职代会|委员会)",
    ),
    group_ok=True,
)
def meeting_rsvp(ctx: Context) -> None:
    """参加 5 / 请假 5 原因：回复会议通知"""
    text = ctx.text
    assert ctx.member is not None
    excused = any(w in text for w in EXCUSE_WORDS)
    invites = _upcoming_invites(ctx)
    num = re.search(r"\d+", text)
    if not invites and num:
        past = ctx.session.scalar(
            select(MeetingInvite).where(
                MeetingInvite.meeting_id == int(num.group()), MeetingInvite.member_id == ctx.member.id
            )
        )
        if past is not None:  # started, finished or cancelled: say so
            ctx.reply(record_rsvp(ctx.bot, past, "excused" if excused else "attend"))
            return
    if not invites:
        signup = _activity_signup() if not excused and re.match(r"^参加\s*\d+$", text) else None
        if signup is not None:
            signup(ctx)  # "参加 3" with no meeting to answer: the member means activity 3
            return
        ctx.reply("您目前没有需要回复的会议通知。报名活动请发送“报名 编号”，查看会议请发送“我的会议”。")
        return
    picked = _pick(ctx, invites, ctx.args if ctx.args else text)
    if not picked:
        picked = _pick(ctx, invites, text)
    if len(picked) != 1:
        lines = [f"{i.meeting_id}. {i.meeting.title} {_fmt(ctx.bot, i.meeting.starts_at)}（{RSVP_LABELS[i.rsvp]}）"
                 for i in (picked or invites)]  # fmt: skip
        ctx.reply(
            "您是指哪一个会议？\n"
            + "\n".join(lines)
            + "\n请回复“参加 编号”或“请假 编号 原因”，例如“请假 5 值班”。"
        )
        return
    inv = picked[0]
    if excused:
        reason = _reason(ctx.raw_args if ctx.args else ctx.words)  # kept as typed
        ctx.reply(record_rsvp(ctx.bot, inv, "excused", reason))
        if not reason and inv.rsvp == "excused":
            ctx.start_dialog("meeting_excuse", "reason", {"invite": inv.id})
            ctx.reply("方便的话请说一下请假原因（如“值班”），或回复“跳过”。")
    else:
        ctx.reply(record_rsvp(ctx.bot, inv, "attend"))


def _activity_signup():
    try:
        from handlers import activities
    except ImportError:
        return None
    return getattr(activities, "signup", None)


@router.action("rsvp")
def rsvp_button(ctx: Context) -> None:
    assert ctx.member is not None and ctx.msg.action is not None
    action = ctx.msg.action
    inv = ctx.session.scalar(
        select(MeetingInvite).where(
            MeetingInvite.meeting_id == int(action.get("meeting", 0)),
            MeetingInvite.member_id == ctx.member.id,
        )
    )
    if inv is None:
        ctx.reply("您不在这个会议的邀请名单里。如有疑问请联系会务干事。")
        return
    answer = "excused" if action.get("answer") == "excused" else "attend"
    ctx.reply(record_rsvp(ctx.bot, inv, answer))
    if answer == "excused" and inv.rsvp == "excused" and not inv.reason:
        ctx.start_dialog("meeting_excuse", "reason", {"invite": inv.id})
        ctx.reply("方便的话请说一下请假原因（如“值班”），或回复“跳过”。")


@router.dialog("meeting_excuse")
def excuse_reason(ctx: Context) -> None:
    assert ctx.dialog is not None
    inv = ctx.session.get(MeetingInvite, ctx.dialog.data.get("invite"))
    ctx.end_dialog()
    text = ctx.text.strip()
    if inv is None or text in ("跳过", "不用", "没有", "无"):
        ctx.reply("好的。")
        return
    inv.reason = ctx.words[:200]
    ctx.reply(f"已记下请假原因：{inv.reason}。")


@router.handler("我的会议", "会议通知", "有什么会", "开会", group_ok=False)
def my_meetings(ctx: Context) -> None:
    """我的会议：查看要参加的会议和回执"""
    invites = _upcoming_invites(ctx)
    if not invites:
        ctx.reply("近期没有邀请您参加的会议。")
        return
    lines = [
        f"{i.meeting_id}. {i.meeting.title} {_fmt(ctx.bot, i.meeting.starts_at)} {i.meeting.place}（{RSVP_LABELS[i.rsvp]}）"
        for i in invites
    ]
    ctx.reply("您的会议：\n" + "\n".join(lines) + "\n回复“参加 编号”或“请假 编号 原因”。")


@router.handler("会议回执", "会议人数", "法定人数", "到会人数", group_ok=False)
def meeting_count(ctx: Context) -> None:
    """会议回执 5：查看回执和职代会法定人数（干事）"""
    if not ctx.can("meetings.manage"):
        ctx.reply("会议回执只有会务干事可以查看。想看自己的会议请发送“我的会议”。")
        return
    num = re.search(r"\d+", ctx.args)
    q = select(Meeting).where(Meeting.status == "scheduled", Meeting.starts_at > ctx.clock.now())
    meeting = (
        ctx.session.get(Meeting, int(num.group()))
        if num
        else ctx.session.scalar(q.order_by(Meeting.starts_at).limit(1))
    )
    if meeting is None:
        ctx.reply("没有找到这个会议，请发送“会议回执 编号”，例如“会议回执 5”。")
        return
    ctx.reply(meeting_summary(ctx.bot, meeting))


def meeting_summary(bot: Bot, meeting: Meeting) -> str:
    counts = {k: 0 for k in RSVP_LABELS}
    excused = []
    for inv in meeting.invites:
        counts[inv.rsvp] += 1
        if inv.rsvp == "excused":
            excused.append(f"{inv.member.name}{'（' + inv.reason + '）' if inv.reason else ''}")
    lines = [
        f"{meeting.title}（{meeting.kind}）{_fmt(bot, meeting.starts_at)}",
        f"邀请 {len(meeting.invites)} 人：参加 {counts['attend']}，请假 {counts['excused']}，未回复 {counts['none']}",
    ]
    if meeting.is_congress:
        confirmed, total, needed = quorum(meeting)
        ok = "已达到" if confirmed >= needed else f"还差 {needed - confirmed} 人"
        lines.append(f"代表确认参加 {confirmed}/{total}，法定人数需超过三分之二（{needed} 人）：{ok}")
    if excused:
        lines.append("请假：" + "、".join(excused))
    return "\n".join(lines)


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (= + - @, tab, CR first) is prefixed with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def meeting_xlsx(bot: Bot, meeting: Meeting) -> bytes:
    """RSVP and attendance list as .xlsx for the console (name, branch, group, delegate, RSVP, reason, attended)."""
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "回执"
    status = "（已取消）" if meeting.status == "cancelled" else ""
    ws.append(
        [
            _cell(meeting.title + status),
            _cell(meeting.kind),
            _fmt(bot, meeting.starts_at),
            _cell(meeting.place),
        ]
    )
    ws.append(["姓名", "工号", "分会", "小组", "职工代表", "回执", "请假原因", "回复时间", "签到"])
    for inv in meeting.invites:
        m = inv.member
        row = [
            m.name,
            m.employee_no,
            m.branch.name if m.branch else "",
            m.group.name if m.group else "",
            "是" if m.is_delegate else "",
            RSVP_LABELS[inv.rsvp],
            inv.reason or "",
            bot.clock.fmt(inv.answered_at) if inv.answered_at else "",
            {True: "已到", False: "缺席", None: ""}[inv.attended],
        ]
        ws.append([_cell(v) for v in row])
    counts = {k: sum(1 for i in meeting.invites if i.rsvp == k) for k in RSVP_LABELS}
    came = sum(1 for i in meeting.invites if i.attended)
    ws.append([])
    ws.append(
        [
            f"邀请 {len(meeting.invites)} 人：参加 {counts['attend']}，请假 {counts['excused']}，"
            f"未回复 {counts['none']}，签到 {came}"
        ]
    )
    if meeting.is_congress:
        confirmed, total, needed = quorum(meeting)
        ws.append([f"代表确认参加 {confirmed}/{total}，法定人数需超过三分之二（{needed} 人）"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# chat: 发布会议 / 修改会议 / 取消会议 (clerks) ------------------------------------------------------------------
AUDIENCE_CHOICES = (
    ("职工代表", {"delegates": True}),
    ("工会委员（主席、分会主席、干事）", {"roles": ["chair", "branch_chair", "clerk"]}),
    ("小组长", {"roles": ["group_leader"]}),
    ("分会主席", {"roles": ["branch_chair"]}),
    ("全体会员", {"all": True}),
)
PICK_BRANCHES, PICK_GROUPS = len(AUDIENCE_CHOICES) + 1, len(AUDIENCE_CHOICES) + 2
SKIP_WORDS = ("跳过", "没有", "无", "不用", "不设", "不需要")
YES_WORDS = ("确认", "确定", "发", "发吧", "好", "是", "对")
_TIME = re.compile(r"(上午|早上|中午|下午|晚上)?\s*(\d{1,2})\s*(?:[:：点时])\s*(\d{1,2}|半)?")


def parse_when(text: str, bot: Bot) -> datetime | None:
    """'12月5日 14:30' / '周五下午2点半' / '明天9点' -> aware UTC; None when the day or the hour is missing."""
    from bot.normalize import parse_date

    today = bot.clock.today()
    day = parse_date(text, today)
    rest = re.sub(r"\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}[日号]?|\d{1,2}(?:月|-|/)\d{1,2}(?:日|号)?", " ", text)
    m = _TIME.search(rest)
    if day is None or m is None:
        return None
    hour, minute = int(m.group(2)), 30 if m.group(3) == "半" else int(m.group(3) or 0)
    if m.group(1) in ("下午", "晚上") and hour < 12:
        hour += 12
    if not (0 <= hour < 24 and 0 <= minute < 60):
        return None
    return bot.clock.at(day, hour, minute)


def _skip(text: str) -> bool:
    return text.strip(" .!") in SKIP_WORDS


def _audience_from_names(session: Session, text: str) -> tuple[str, dict[str, Any]] | None:
    """Branch and group names written out ("内科分会、外科小组") -> (label, attendee spec), or None."""
    branches = [b for b in session.scalars(select(Branch).order_by(Branch.id)) if b.name in text]
    groups = [g for g in session.scalars(select(Group).order_by(Group.id)) if g.name in text]
    if not branches and not groups:
        return None
    spec: dict[str, Any] = {}
    if branches:
        spec["branches"] = [b.id for b in branches]
    if groups:
        spec["groups"] = [g.id for g in groups]
    return "、".join(x.name for x in [*branches, *groups]), spec


def _audience_options(session: Session, kind: str) -> list[tuple[int, str]]:
    if kind == "branches":
        return [(b.id, b.name) for b in session.scalars(select(Branch).order_by(Branch.name))]
    return [
        (g.id, f"{g.branch.name} · {g.name}")
        for g in session.scalars(select(Group).order_by(Group.branch_id, Group.name))
    ]


def _confirm_new(ctx: Context, label: str, spec: dict[str, Any]) -> None:
    data = ctx.dialog.data if ctx.dialog else {}
    count = len(resolve_attendees(ctx.session, spec))
    if not count:
        ctx.reply(f"“{label}”里没有在册会员，请换一个范围：回复编号，或写出分会、小组的名称。")
        return
    ctx.advance("confirm", label=label, spec=spec)
    lines = [
        "请确认：",
        f"{data['title']}（{data['kind']}）",
        f"时间：{_fmt(ctx.bot, datetime.fromisoformat(data['starts_at']))}",
        f"地点：{data['place']}",
    ]
    if data.get("agenda"):
        lines.append(f"议程：{data['agenda']}")
    if data.get("deadline"):
        lines.append(f"回执截止：{_fmt(ctx.bot, datetime.fromisoformat(data['deadline']))}")
    lines += [f"参加：{label}，共 {count} 人", "回复“确认”发出通知，回复“取消”放弃。"]
    ctx.reply("\n".join(lines))


def _ask_audience(ctx: Context) -> None:
    choices = [k for k, _ in AUDIENCE_CHOICES] + ["指定分会", "指定小组"]
    ctx.reply(
        "请谁参加？回复编号：\n"
        + "\n".join(f"{i}. {k}" for i, k in enumerate(choices, 1))
        + "\n也可以直接写分会或小组的名称，例如“内科分会、外科分会”。"
    )


@router.handler("发布会议", "新建会议", "安排会议", "发会议通知", group_ok=False)
def new_meeting(ctx: Context) -> None:
    """发布会议：发会议通知并收集回执（干事）"""
    if not ctx.can("meetings.manage"):
        ctx.reply("发布会议需要工会干事的权限。查看您的会议请发送“我的会议”。")
        return
    ctx.start_dialog("meeting_new", "title", {})
    ctx.reply("好的，来发布会议。请发送会议名称，例如：十二月工会委员会会议（发送“取消”退出）")


@router.dialog("meeting_new")
def new_meeting_step(ctx: Context) -> None:
    assert ctx.dialog is not None and ctx.member is not None
    step, data, text = ctx.dialog.step, ctx.dialog.data, ctx.text.strip()
    words = ctx.words  # what is kept: the clerk's own words, as typed
    if step == "title":
        ctx.advance("kind", title=words[:200])
        ctx.reply("会议类型？回复编号：\n" + "\n".join(f"{i}. {k}" for i, k in enumerate(KINDS, 1)))
    elif step == "kind":
        n = re.search(r"\d", text)
        kind = KINDS[int(n.group()) - 1] if n and 1 <= int(n.group()) <= len(KINDS) else None
        kind = kind or next((k for k in KINDS if k in text), None)
        if kind is None:
            ctx.reply(f"请回复 1–{len(KINDS)} 的编号。")
            return
        ctx.advance("when", kind=kind)
        ctx.reply("什么时间开？例如：12月5日 14:30、周五下午2点半")
    elif step == "when":
        when = parse_when(text, ctx.bot)
        if when is None or when <= ctx.clock.now():
            ctx.reply("没看懂时间（或已经过去了），请写成“12月5日 14:30”这样的格式。")
            return
        ctx.advance("place", starts_at=when.isoformat())
        ctx.reply("地点在哪里？")
    elif step == "place":
        ctx.advance("agenda", place=words[:200])
        ctx.reply("议程是什么？一条消息写完即可，例如“1. 年终总结 2. 明年计划”。没有请回复“跳过”。")
    elif step == "agenda":
        ctx.advance("deadline", agenda="" if _skip(text) else words[:2000])
        ctx.reply("请大家在什么时间前回复参加或请假？例如“12月4日 18:00”。不设截止请回复“跳过”。")
    elif step == "deadline":
        deadline = None
        if not _skip(text):
            deadline = parse_when(text, ctx.bot)
            starts = datetime.fromisoformat(data["starts_at"])
            if deadline is None or not ctx.clock.now() < deadline <= starts:
                ctx.reply(
                    f"回执截止要在现在和会议开始（{_fmt(ctx.bot, starts)}）之间，"
                    "请写成“12月4日 18:00”这样的格式，或回复“跳过”。"
                )
                return
        ctx.advance("who", deadline=deadline.isoformat() if deadline else None)
        _ask_audience(ctx)
    elif step == "who":
        n = re.fullmatch(r"(\d+)\s*[.号]?", text)
        if n and 1 <= int(n.group(1)) <= len(AUDIENCE_CHOICES):
            _confirm_new(ctx, *AUDIENCE_CHOICES[int(n.group(1)) - 1])
        elif n and int(n.group(1)) in (PICK_BRANCHES, PICK_GROUPS):
            kind = "branches" if int(n.group(1)) == PICK_BRANCHES else "groups"
            options = _audience_options(ctx.session, kind)
            if not options:
                ctx.reply("名册里还没有分会或小组。请换一个编号。")
                return
            ctx.advance("pick", pick=kind, options=[i for i, _ in options])
            ctx.reply(
                f"请选择{'分会' if kind == 'branches' else '小组'}，回复编号，可以多选（如“1 3”）：\n"
                + "\n".join(f"{i}. {name}" for i, (_, name) in enumerate(options, 1))
            )
        elif (named := _audience_from_names(ctx.session, text)) is not None:
            _confirm_new(ctx, *named)
        else:
            ctx.reply(f"请回复 1–{PICK_GROUPS} 的编号，或写出分会、小组的名称（例如“内科分会”）。")
    elif step == "pick":
        options: list[int] = data["options"]
        picked = sorted({int(x) for x in re.findall(r"\d+", text) if 1 <= int(x) <= len(options)})
        if not picked:
            named = _audience_from_names(ctx.session, text)
            if named is None:
                ctx.reply(f"请回复 1–{len(options)} 的编号，多个用空格隔开，例如“1 3”。")
                return
            _confirm_new(ctx, *named)
            return
        ids = [options[i - 1] for i in picked]
        model = Branch if data["pick"] == "branches" else Group
        names = "、".join(ctx.session.get(model, i).name for i in ids)
        _confirm_new(ctx, names, {data["pick"]: ids})
    elif step == "confirm":
        if text not in YES_WORDS:
            ctx.reply("回复“确认”发出通知，或回复“取消”放弃。")
            return
        meeting = create_meeting(
            ctx.session,
            ctx.bot,
            title=data["title"],
            kind=data["kind"],
            starts_at=datetime.fromisoformat(data["starts_at"]),
            place=data["place"],
            agenda=data.get("agenda") or "",
            rsvp_deadline=datetime.fromisoformat(data["deadline"]) if data.get("deadline") else None,
            attendees=data["spec"],
            created_by=ctx.member,
        )
        ctx.end_dialog()
        ctx.reply(
            f"已发布会议 {meeting.id}，通知已发给{data['label']} {len(meeting.invites)} 人。"
            f"发送“会议回执 {meeting.id}”查看回执。"
        )


# a meeting's number in a clerk's command: a standalone number, not part of a date or time ("改期 5 12月6日 9:00")
_MEETING_NO = re.compile(r"(?<![\d月/.:\-])(\d{1,6})(?![\d月日点时:/.\-])(?:号会议|号)?")


def _managed_meeting(ctx: Context, verb: str, how: str) -> tuple[Meeting, str] | None:
    """The scheduled, not yet started meeting a clerk's command names, and the rest of the text; else replies."""
    m = _MEETING_NO.search(ctx.args)
    meeting = ctx.session.get(Meeting, int(m.group(1))) if m else None
    if meeting is None:
        upcoming = ctx.session.scalars(
            select(Meeting)
            .where(Meeting.status == "scheduled", Meeting.starts_at > ctx.clock.now())
            .order_by(Meeting.starts_at)
            .limit(10)
        ).all()
        lines = [f"{x.id}. {x.title} {_fmt(ctx.bot, x.starts_at)}" for x in upcoming]
        head = f"没有找到会议 {m.group(1)}。" if m else f"要{verb}哪个会议？"
        ctx.reply(head + ("\n" + "\n".join(lines) if lines else "\n近期没有待开的会议。") + f"\n{how}")
        return None
    if meeting.status == "cancelled":
        ctx.reply(f"“{meeting.title}”已经取消了，不能再{verb}。要重新开请发送“发布会议”。")
        return None
    if meeting.starts_at <= ctx.clock.now():
        ctx.reply(f"“{meeting.title}”已经开始或结束，不能再{verb}。")
        return None
    rest = (ctx.args[: m.start()] + " " + ctx.args[m.end() :]).strip() if m else ctx.args
    return meeting, rest


CHANGEABLE = (("starts_at", "时间"), ("place", "地点"), ("agenda", "议程"), ("rsvp_deadline", "回执截止"))
_FIELD_WORDS = {"starts_at": ("改期", "改时间", "延期", "提前"), "place": ("地点", "换地方", "会场")}
_VALUE_PREFIX = re.compile(r"^(?:改到|改为|改成|换到|换成|延期到|推迟到|提前到|到|为|成)\s*")


@router.handler(
    "修改会议",
    "会议改期",
    "会议延期",
    "会议改时间",
    "会议改地点",
    "会议换地方",
    "会议变更",
    "更改会议",
    "改会议",
    "改期",
    group_ok=False,
)
def change_meeting_chat(ctx: Context) -> None:
    """会议改期 5 12月6日 14:00 / 修改会议 5：改时间、地点、议程（干事）"""
    if not ctx.can("meetings.manage"):
        ctx.reply("修改会议需要工会干事的权限。去不了可以发送“请假 编号 原因”，查看会议请发送“我的会议”。")
        return
    how = "请发送“会议改期 编号 新时间”，例如“会议改期 5 12月6日 14:00”；改地点、议程请发送“修改会议 编号”。"
    found = _managed_meeting(ctx, "修改", how)
    if found is None:
        return
    meeting, rest = found
    field = next((f for f, words in _FIELD_WORDS.items() if any(w in ctx.text for w in words)), None)
    ctx.start_dialog("meeting_change", "field", {"meeting": meeting.id})
    if field is None:
        ctx.reply(
            f"要修改“{meeting.title}”的什么？回复编号：\n"
            + "\n".join(f"{i}. {label}" for i, (_, label) in enumerate(CHANGEABLE, 1))
        )
        return
    ctx.advance("value", field=field)
    value = _VALUE_PREFIX.sub("", rest).strip()
    if value:
        _change_value(ctx, meeting, field, value)
    else:
        _ask_value(ctx, meeting, field)


def _ask_value(ctx: Context, meeting: Meeting, field: str) -> None:
    now = {
        "starts_at": _fmt(ctx.bot, meeting.starts_at),
        "place": meeting.place or "未定",
        "agenda": meeting.agenda or "无",
        "rsvp_deadline": _fmt(ctx.bot, meeting.rsvp_deadline) if meeting.rsvp_deadline else "不设",
    }[field]
    hint = {
        "starts_at": "请发送新的时间，例如“12月6日 14:00”。",
        "place": "请发送新的地点。",
        "agenda": "请发送新的议程，一条消息写完。",
        "rsvp_deadline": "请发送新的回执截止时间，例如“12月5日 18:00”，不设截止请回复“跳过”。",
    }[field]
    ctx.reply(f"现在是：{now}\n{hint}")


def _change_value(ctx: Context, meeting: Meeting, field: str, text: str) -> None:
    """Check the new value and ask for confirmation (nothing is sent before 确认)."""
    value: Any = ctx.words_for(text)[: 2000 if field == "agenda" else 200]  # a place or agenda, as typed
    if field in ("starts_at", "rsvp_deadline"):
        value = None if field == "rsvp_deadline" and _skip(text) else parse_when(text, ctx.bot)
        if value is None and not (field == "rsvp_deadline" and _skip(text)):
            ctx.reply("没看懂时间，请写成“12月6日 14:00”这样的格式（发送“取消”退出）。")
            return
        starts = value if field == "starts_at" else meeting.starts_at
        deadline = value if field == "rsvp_deadline" else meeting.rsvp_deadline
        errors = meeting_errors(
            title=meeting.title,
            kind=meeting.kind,
            starts_at=starts,
            rsvp_deadline=deadline,
            now=ctx.clock.now(),
            new_deadline=field == "rsvp_deadline",
        )
        if field == "starts_at" and list(errors) == ["rsvp_deadline"] and meeting.rsvp_deadline:
            ctx.reply(
                f"新时间早于回执截止（{_fmt(ctx.bot, meeting.rsvp_deadline)}）。请换个时间，"
                f"或先发送“取消”，再用“修改会议 {meeting.id}”改回执截止。"
            )
            return
        if errors:
            ctx.reply(f"{next(iter(errors.values()))}，请重新发送（发送“取消”退出）。")
            return
    if value == getattr(meeting, field):
        ctx.reply("和原来一样，不用改。请发送新的内容，或发送“取消”退出。")
        return
    shown = _fmt(ctx.bot, value) if isinstance(value, datetime) else (value or "不设")
    label = dict(CHANGEABLE)[field]
    stored = value.isoformat() if isinstance(value, datetime) else value
    ctx.advance("confirm", field=field, value=stored)
    ctx.reply(
        f"请确认：“{meeting.title}”的{label}改为：{shown}\n"
        f"受邀的 {len(meeting.invites)} 人都会收到变更通知。回复“确认”发出，回复“取消”放弃。"
    )


@router.dialog("meeting_change")
def change_meeting_step(ctx: Context) -> None:
    assert ctx.dialog is not None
    step, data, text = ctx.dialog.step, ctx.dialog.data, ctx.text.strip()
    meeting = lock_meeting(ctx.session, data["meeting"])
    if meeting is None or meeting.status != "scheduled" or meeting.starts_at <= ctx.clock.now():
        ctx.end_dialog()
        ctx.reply("这个会议已经取消或开始了，不能再修改。")
        return
    if step == "field":
        n = re.fullmatch(r"(\d)\.?", text)
        field = CHANGEABLE[int(n.group(1)) - 1][0] if n and 1 <= int(n.group(1)) <= len(CHANGEABLE) else None
        field = field or next((f for f, label in CHANGEABLE if label in text), None)
        if field is None:
            ctx.reply(f"请回复 1–{len(CHANGEABLE)} 的编号（发送“取消”退出）。")
            return
        ctx.advance("value", field=field)
        _ask_value(ctx, meeting, field)
    elif step == "value":
        _change_value(ctx, meeting, data["field"], text)
    elif step == "confirm":
        if text not in YES_WORDS:
            ctx.reply("回复“确认”发出变更通知，或回复“取消”放弃。")
            return
        field, value = data["field"], data["value"]
        if field in ("starts_at", "rsvp_deadline") and value:
            value = datetime.fromisoformat(value)
        result = update_meeting(ctx.session, ctx.bot, meeting, **{field: value})
        ctx.end_dialog()
        ctx.reply(f"已修改“{meeting.title}”，变更通知已发给受邀的 {result.told} 人。")


@router.handler("取消会议", "会议取消", "撤销会议", "会议不开了", group_ok=False)
def cancel_meeting_chat(ctx: Context) -> None:
    """取消会议 5 原因：取消会议并通知受邀的人（干事）"""
    if not ctx.can("meetings.manage"):
        ctx.reply("取消会议需要工会干事的权限。去不了可以发送“请假 编号 原因”，查看会议请发送“我的会议”。")
        return
    found = _managed_meeting(ctx, "取消", "请发送“取消会议 编号 原因”，例如“取消会议 5 与上级会议冲突”。")
    if found is None:
        return
    meeting, reason = found
    reason = ctx.words_for(reason.strip(" ,:;："))[:200]
    ctx.start_dialog("meeting_cancel", "confirm", {"meeting": meeting.id, "reason": reason})
    ctx.reply(
        Card(
            f"确定取消会议“{meeting.title}”吗？",
            [
                f"时间：{_fmt(ctx.bot, meeting.starts_at)}",
                f"受邀的 {len(meeting.invites)} 人都会收到取消通知，此操作不能撤回。",
                f"原因：{reason}" if reason else "可以在“确认”后写原因，例如“确认 与上级会议冲突”。",
                "回复“确认”取消会议；回复“保留”不取消。",
            ],
        )
    )


@router.dialog("meeting_cancel")
def cancel_meeting_step(ctx: Context) -> None:
    assert ctx.dialog is not None
    data, text = ctx.dialog.data, ctx.text.strip()
    meeting = lock_meeting(ctx.session, data["meeting"])
    ctx.end_dialog()
    m = re.match(r"^(确认|确定)\s*(?:取消)?[,:;：\s]*(.*)$", text)
    if meeting is None or m is None:
        ctx.reply(f"好的，会议{'“' + meeting.title + '”' if meeting else ''}照常举行，没有取消。")
        return
    if meeting.status != "scheduled" or meeting.starts_at <= ctx.clock.now():
        ctx.reply(f"“{meeting.title}”已经取消或开始了。")
        return
    told = cancel_meeting(
        ctx.session, ctx.bot, meeting, ctx.words_for(m.group(2)) or data.get("reason") or ""
    )
    ctx.reply(f"已取消会议“{meeting.title}”，取消通知已发给受邀的 {told} 人。")


def seed_demo(session: Session, bot: Bot) -> int:
    """A union committee meeting next week for the demo union (invitations go out to those who can be reached).
    Safe to repeat."""
    title = "工会委员会会议（示例）"
    if session.scalar(select(Meeting.id).where(Meeting.title == title)):
        return 0
    today = bot.clock.today()
    starts = bot.clock.at(today + timedelta(days=7), 15, 0)
    create_meeting(
        session, bot, title=title, kind="工会委员会", starts_at=starts, place="行政楼三楼会议室",
        agenda="1. 年度工作总结\n2. 春节送温暖安排", rsvp_deadline=starts - timedelta(days=2),
        attendees={"roles": ["chair", "clerk", "branch_chair"]},
    )  # fmt: skip
    return 1
