"""Meetings: invitations, RSVP by button and text, reminders and their catch-up, cancellation, congress quorum."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from bot.core import LEFT_DIALOG
from handlers.meetings import cancel_meeting, change_meeting, create_meeting, send_meeting_reminders
from models.meeting import Meeting, MeetingInvite, quorum
from models.member import Member, link_identity
from models.messaging import OutboxMessage
from tests.conftest import add_member

SH = ZoneInfo("Asia/Shanghai")


def at(y, m, d, h=9, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SH)


NOW = at(2026, 12, 1, 10)  # a Tuesday
START = at(2026, 12, 4, 14, 30)  # Friday 14:30
STAMP = "202612040630"  # START in UTC: reminder keys carry the start time


@pytest.fixture(autouse=True)
def _clock():
    """Every test starts on NOW; inner `time_machine.travel` blocks move on from there."""
    with time_machine.travel(NOW, tick=False):
        yield


def make(bot, kind="工会委员会", attendees=None, starts_at=START, created=NOW, **kw) -> int:
    with time_machine.travel(created, tick=False), bot.db.transaction() as s:
        m = create_meeting(
            s,
            bot,
            title=kw.pop("title", "十二月工会委员会会议"),
            kind=kind,
            starts_at=starts_at,
            place="行政楼三楼会议室",
            agenda="年终总结",
            attendees=attendees or {"roles": ["clerk", "branch_chair"]},
            **kw,
        )
        return m.id


def rsvp_of(bot, meeting_id, member):
    with bot.db.Session() as s:
        inv = s.scalar(
            select(MeetingInvite).where(
                MeetingInvite.meeting_id == meeting_id, MeetingInvite.member_id == member.id
            )
        )
        return inv.rsvp, inv.reason


def keys(bot, prefix):
    with bot.db.Session() as s:
        return sorted(
            s.scalars(
                select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.like(prefix + "%"))
            )
        )


def test_invitation_card_with_buttons_and_rsvp_by_button(bot, chat_with):
    chair = add_member(bot, name="分会主席", roles=["branch_chair"])
    outsider = add_member(bot, name="普通会员")
    chat = chat_with(chair)
    chat_with(outsider)
    mid = make(bot)
    (card,) = chat.inbox()
    assert card["type"] == "card" and "十二月工会委员会会议" in card["title"]
    labels = [b["label"] for b in card["buttons"]]
    assert labels == ["参加", "请假"]
    assert card["buttons"][0]["action"] == {"do": "rsvp", "meeting": mid, "answer": "attend"}
    with time_machine.travel(NOW, tick=False):
        assert "已登记" in chat.ask(action=card["buttons"][0]["action"])
        assert rsvp_of(bot, mid, chair) == ("attend", None)
        reply = chat.ask(action=card["buttons"][1]["action"])
        assert "已为您请假" in reply and "原因" in reply
        assert "值夜班" in chat.ask("值夜班")
    assert rsvp_of(bot, mid, chair) == ("excused", "值夜班")
    with bot.db.Session() as s:
        assert len(s.get(Meeting, mid).invites) == 1  # the outsider was not invited


def test_rsvp_by_text(bot, chat_with):
    clerk = add_member(bot, name="干事", roles=["clerk"])
    chat = chat_with(clerk)
    mid = make(bot)
    other = make(bot, kind="小组长会议", title="小组长例会", starts_at=at(2026, 12, 3, 16))
    chat.inbox()
    with time_machine.travel(NOW, tick=False):
        assert "已登记" in chat.ask(f"参加 {mid}")
        assert rsvp_of(bot, mid, clerk)[0] == "attend"
        assert "已为您请假" in chat.ask(f"请假 {mid} 值班")
        assert rsvp_of(bot, mid, clerk) == ("excused", "值班")
        assert "已登记" in chat.ask("周五的委员会会议我到")
        assert rsvp_of(bot, mid, clerk)[0] == "attend"
        reply = chat.ask("请假，那天值夜班")  # two meetings: which one?
        assert "哪一个" in reply and str(mid) in reply and str(other) in reply
        assert "已为您请假" in chat.ask("例会去不了")
        assert rsvp_of(bot, other, clerk)[0] == "excused"
        assert "已登记" in chat.ask(f"参加会议 {other}")


def test_no_invitation_and_started_meeting(bot, chat_with):
    member = add_member(bot, name="路人")
    chat = chat_with(member)
    with time_machine.travel(NOW, tick=False):
        assert "没有需要回复" in chat.ask("请假 99")
        assert "活动" in chat.ask("参加 99")  # no meeting to answer: "参加 N" means activity N
    clerk = add_member(bot, name="干事", roles=["clerk"])
    chat = chat_with(clerk)
    mid = make(bot)
    with time_machine.travel(at(2026, 12, 4, 15), tick=False):
        assert "已经开始" in chat.ask(f"参加 {mid}")


def test_reminders_one_day_and_one_hour_before_to_attending_and_unanswered(bot):
    a = add_member(bot, name="参加的", roles=["clerk"])
    b = add_member(bot, name="没回的", roles=["clerk"])
    c = add_member(bot, name="请假的", roles=["clerk"])
    with bot.db.transaction() as s:
        for m in (a, b, c):
            link_identity(s, s.get(Member, m.id), "sandbox", f"sb-{m.id}")
    mid = make(bot)
    with bot.db.transaction() as s:
        for inv in s.get(Meeting, mid).invites:
            inv.rsvp = {a.id: "attend", b.id: "none", c.id: "excused"}[inv.member_id]
    for when in (at(2026, 12, 3, 14, 29), at(2026, 12, 3, 14, 30), at(2026, 12, 3, 18)):
        with time_machine.travel(when, tick=False):
            send_meeting_reminders(bot, bot.clock.now())
    assert keys(bot, f"meeting:{mid}:remind:") == [
        f"meeting:{mid}:remind:1440:{STAMP}:{a.id}",
        f"meeting:{mid}:remind:1440:{STAMP}:{b.id}",
    ]
    with time_machine.travel(at(2026, 12, 4, 13, 30), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
    assert len(keys(bot, f"meeting:{mid}:remind:60:")) == 2
    with bot.db.Session() as s:
        texts = [
            r.payload.get("text", "")
            for r in s.scalars(select(OutboxMessage).where(OutboxMessage.member_id == b.id))
        ]
    assert any("还没有回复" in t for t in texts)


def test_reminder_catch_up_after_downtime(bot):
    a = add_member(bot, name="甲", roles=["clerk"])
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, a.id), "sandbox", "sb-a")
    mid = make(bot)
    # down from the day before until 40 minutes before the start: only the 1-hour reminder goes out
    with time_machine.travel(at(2026, 12, 4, 13, 50), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
    assert keys(bot, f"meeting:{mid}:remind:") == [f"meeting:{mid}:remind:60:{STAMP}:{a.id}"]
    # a second meeting whose start passed during the outage gets nothing
    late = make(bot, title="错过的会", starts_at=at(2026, 12, 5, 9))
    with time_machine.travel(at(2026, 12, 5, 9, 5), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
    assert keys(bot, f"meeting:{late}:remind:") == []


def test_cancellation_and_change_notify_everyone_invited(bot, chat_with):
    a = add_member(bot, name="甲", roles=["clerk"])
    b = add_member(bot, name="乙", roles=["branch_chair"])
    ca, cb = chat_with(a), chat_with(b)
    mid = make(bot)
    ca.inbox(), cb.inbox()
    with time_machine.travel(NOW, tick=False), bot.db.transaction() as s:
        change_meeting(s, bot, s.get(Meeting, mid), place="门诊楼会议室")
    (changed,) = ca.inbox()
    assert "会议变更" in changed["title"] and any("门诊楼" in line for line in changed["lines"])
    cb.inbox()
    with time_machine.travel(NOW, tick=False), bot.db.transaction() as s:
        cancel_meeting(s, bot, s.get(Meeting, mid), "与上级会议冲突")
        cancel_meeting(s, bot, s.get(Meeting, mid), "与上级会议冲突")  # repeated: still one notice each
    for chat in (ca, cb):
        (notice,) = chat.inbox()
        assert "已取消" in notice["text"] and "冲突" in notice["text"]
    with time_machine.travel(at(2026, 12, 3, 14, 30), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
        assert "已取消" in ca.ask(action={"do": "rsvp", "meeting": mid, "answer": "attend"})
    assert keys(bot, f"meeting:{mid}:remind:") == []


def test_congress_quorum_live_count_and_warning(bot, chat_with):
    clerk = add_member(bot, name="会务干事", roles=["clerk"])
    clerk_chat = chat_with(clerk)
    delegates = [add_member(bot, name=f"代表{i}", is_delegate=True) for i in range(6)]
    chats = [chat_with(d) for d in delegates]
    mid = make(bot, kind="职代会", title="第三届第二次职代会", attendees={"delegates": True})
    clerk_chat.inbox()
    with time_machine.travel(NOW, tick=False):
        for c in chats[:4]:
            c.ask(f"参加 {mid}")
        summary = clerk_chat.ask(f"会议回执 {mid}")
    assert "4/6" in summary and "5 人" in summary and "还差 1 人" in summary
    assert "只有会务干事" in chats[5].ask(f"会议回执 {mid}")
    with time_machine.travel(at(2026, 12, 3, 10), tick=False):  # more than a day ahead: no warning yet
        send_meeting_reminders(bot, bot.clock.now())
    assert keys(bot, f"meeting:{mid}:quorum:") == []
    with time_machine.travel(at(2026, 12, 3, 14, 30), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
        send_meeting_reminders(bot, bot.clock.now())
        inbox = clerk_chat.inbox()
    assert keys(bot, f"meeting:{mid}:quorum:") == [f"meeting:{mid}:quorum:{STAMP}:{clerk.id}"]
    warning = [p for p in inbox if p.get("type") == "text" and "法定人数" in p["text"]]
    assert warning and "4/6" in warning[0]["text"]


def test_congress_with_quorum_gets_no_warning(bot, chat_with):
    clerk = add_member(bot, name="会务干事", roles=["clerk"])
    chat_with(clerk)
    delegates = [add_member(bot, name=f"代表{i}", is_delegate=True) for i in range(3)]
    mid = make(bot, kind="职代会", title="职代会", attendees={"delegates": True})
    with bot.db.transaction() as s:
        for inv in s.get(Meeting, mid).invites:
            inv.rsvp = "attend"
    assert len(delegates) == 3
    with time_machine.travel(at(2026, 12, 3, 15), tick=False):
        send_meeting_reminders(bot, bot.clock.now())
    assert keys(bot, f"meeting:{mid}:quorum:") == []


def test_quorum_counts_every_active_delegate_not_only_the_invited(bot):
    """职代会: more than two thirds of ALL delegates; inviting only some must not lower the bar."""
    delegates = [add_member(bot, name=f"代表{i}", is_delegate=True) for i in range(6)]
    add_member(bot, name="离职代表", is_delegate=True, active=False)
    invited = [d.id for d in delegates[:3]]
    mid = make(bot, kind="职代会", title="职代会", attendees={"members": invited})
    with bot.db.transaction() as s:
        meeting = s.get(Meeting, mid)
        assert len(meeting.invites) == 3
        for inv in meeting.invites:
            inv.rsvp = "attend"
        s.flush()
        assert quorum(meeting) == (3, 6, 5)  # 3 of 6 delegates: short of the 5 needed


def test_rsvp_list_xlsx(bot, chat_with):
    import io

    from openpyxl import load_workbook

    from handlers.meetings import meeting_xlsx

    a = add_member(bot, name="代表甲", is_delegate=True)
    chat = chat_with(a)
    mid = make(bot, kind="职代会", title="职代会", attendees={"delegates": True})
    chat.ask(f"请假 {mid} 出差")
    with bot.db.Session() as s:
        data = meeting_xlsx(bot, s.get(Meeting, mid))
    rows = list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    assert rows[1][:2] == ("姓名", "工号")
    assert rows[2][0] == "代表甲" and rows[2][5] == "请假" and rows[2][6] == "出差"
    assert "0/1" in rows[-1][0]


def test_clerk_publishes_a_meeting_in_chat(bot, chat_with):
    clerk = add_member(bot, name="会务干事", roles=["clerk"])
    leader = add_member(bot, name="小组长甲", roles=["group_leader"])
    member = add_member(bot, name="会员")
    chat, leader_chat = chat_with(clerk), chat_with(leader)
    assert "权限" in chat_with(member).ask("发布会议")
    assert "会议名称" in chat.ask("发布会议")
    assert "类型" in chat.ask("小组长例会")
    assert "时间" in chat.ask("3")
    assert "没看懂" in chat.ask("改天吧")
    assert "地点" in chat.ask("12月3日下午3点半")
    assert "议程" in chat.ask("护理部会议室")
    assert "回复" in chat.ask("跳过")
    assert "请谁参加" in chat.ask("跳过")
    confirm = chat.ask("3")
    assert "12月3日（周四）15:30" in confirm and "共 1 人" in confirm
    reply = chat.ask("确认")
    assert "已发布会议" in reply and "1 人" in reply
    (card,) = leader_chat.inbox()
    assert card["title"] == "会议通知：小组长例会"
    with bot.db.Session() as s:
        m = s.scalar(select(Meeting).where(Meeting.title == "小组长例会"))
        assert m.kind == "小组长会议" and m.created_by_id == clerk.id


def texts_to(bot, member) -> list[str]:
    with bot.db.Session() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.member_id == member.id).order_by(OutboxMessage.id)
        )
        return [r.payload.get("text", "") for r in rows]


def scan(bot, when):
    with time_machine.travel(when, tick=False):
        return send_meeting_reminders(bot, bot.clock.now())


def test_same_day_meeting_gets_no_tomorrow_reminder_right_after_the_invitation(bot, chat_with):
    """Created 08:00 for 18:00: the invitation says it all; the 1-hour reminder says 今天, never 明天."""
    a = add_member(bot, name="甲", roles=["clerk"])
    chat_with(a)
    mid = make(bot, title="例会", starts_at=at(2026, 12, 1, 18), created=at(2026, 12, 1, 8))
    assert scan(bot, at(2026, 12, 1, 8, 1)) == 0
    assert scan(bot, at(2026, 12, 1, 12)) == 0
    assert scan(bot, at(2026, 12, 1, 17)) == 1
    assert keys(bot, f"meeting:{mid}:remind:") == [f"meeting:{mid}:remind:60:202612011000:{a.id}"]
    (reminder,) = [t for t in texts_to(bot, a) if t.startswith("会议提醒")]
    assert "今天 18:00" in reminder and "明天" not in reminder


def test_reminder_words_come_from_the_dates(bot, chat_with):
    a = add_member(bot, name="甲", roles=["clerk"])
    chat_with(a)
    make(bot, title="周五的会")  # Friday 14:30, created Tuesday
    make(bot, title="午夜的会", starts_at=at(2026, 12, 3, 0, 30))  # Thursday 00:30
    scan(bot, at(2026, 12, 2, 0, 30))  # 1 day before the midnight meeting: 明天 (Wednesday -> Thursday)
    scan(bot, at(2026, 12, 2, 23, 30))  # 1 hour before it, still Wednesday evening: 明天 too
    scan(bot, at(2026, 12, 3, 14, 30))  # 1 day before Friday's
    scan(bot, at(2026, 12, 4, 13, 30))
    reminders = [t.split("，")[0] for t in texts_to(bot, a) if t.startswith("会议提醒")]
    assert reminders == [
        "会议提醒：“午夜的会”将于明天 00:30开始",
        "会议提醒：“午夜的会”将于明天 00:30开始",
        "会议提醒：“周五的会”将于明天 14:30开始",
        "会议提醒：“周五的会”将于今天 14:30开始",
    ]
    # a reminder two days or more ahead names the date
    make(bot, title="下周的会", starts_at=at(2026, 12, 9, 9), reminder_minutes=[3 * 1440])
    scan(bot, at(2026, 12, 6, 9))
    assert "将于12月9日（周三）09:00开始" in texts_to(bot, a)[-1]


def test_evening_invitation_for_next_morning_skips_the_day_before_reminder(bot, chat_with):
    a = add_member(bot, name="甲", roles=["clerk"])
    chat_with(a)
    mid = make(bot, starts_at=at(2026, 12, 2, 9), created=at(2026, 12, 1, 20))
    assert scan(bot, at(2026, 12, 1, 20, 1)) == 0
    assert scan(bot, at(2026, 12, 2, 8)) == 1
    assert [k.split(":")[3] for k in keys(bot, f"meeting:{mid}:remind:")] == ["60"]
    assert "今天 09:00" in texts_to(bot, a)[-1]


def test_moved_meeting_is_reminded_again_for_its_new_time(bot, chat_with):
    a = add_member(bot, name="甲", roles=["clerk"])
    chat_with(a)
    mid = make(bot)
    scan(bot, at(2026, 12, 3, 14, 30))  # the 1-day reminder for Friday
    with time_machine.travel(at(2026, 12, 3, 15), tick=False), bot.db.transaction() as s:
        change_meeting(s, bot, s.get(Meeting, mid), starts_at=at(2026, 12, 8, 9))
    assert scan(bot, at(2026, 12, 3, 15, 1)) == 0  # the change notice just went out
    assert scan(bot, at(2026, 12, 7, 9)) == 1
    assert "明天 09:00" in texts_to(bot, a)[-1]
    assert len(keys(bot, f"meeting:{mid}:remind:1440:")) == 2


def test_reminder_offsets_global_setting_and_per_meeting(bot, chat_with):
    from models.greeting import config

    a = add_member(bot, name="甲", roles=["clerk"])
    chat_with(a)
    with bot.db.transaction() as s:
        config(s).meeting_reminder_minutes = "120，30"
    default = make(bot, title="按全局设置")
    own = make(bot, title="单独设置", reminder_minutes=[3 * 1440])
    scan(bot, at(2026, 12, 1, 14, 30))  # 3 days before: only the meeting with its own offset
    scan(bot, at(2026, 12, 3, 14, 30))  # 1 day before: the global setting has no 1-day reminder
    assert keys(bot, f"meeting:{default}:remind:") == []
    scan(bot, at(2026, 12, 4, 12, 30))
    scan(bot, at(2026, 12, 4, 14))
    assert [k.split(":")[3] for k in keys(bot, f"meeting:{default}:remind:")] == ["120", "30"]
    assert [k.split(":")[3] for k in keys(bot, f"meeting:{own}:remind:")] == ["4320"]


def test_parse_offsets():
    from handlers.meetings import offsets_text, parse_offsets

    assert parse_offsets("1天、2小时，30分钟") == [1440, 120, 30]
    assert parse_offsets("提前１天 60") == [1440, 60]
    assert parse_offsets("") == []
    assert offsets_text([1440, 120, 90]) == "1天、2小时、90分钟"
    for bad in ("明早", "1周", "1天 2天 3天 4天 5天 6天", "31天"):
        with pytest.raises(ValueError):
            parse_offsets(bad)


def test_rsvp_deadline_refuses_changes_and_says_what_to_do(bot, chat_with):
    a, b = add_member(bot, name="甲", roles=["clerk"]), add_member(bot, name="乙", roles=["clerk"])
    ca, cb = chat_with(a), chat_with(b)
    mid = make(bot, rsvp_deadline=at(2026, 12, 2, 18))
    assert "请于12月2日（周三）18:00前回复" in "\n".join(ca.inbox()[0]["lines"])
    assert "已登记" in ca.ask(f"参加 {mid}")
    with time_machine.travel(at(2026, 12, 3, 9), tick=False):
        reply = ca.ask(f"请假 {mid} 临时手术")
        assert "回执已于12月2日（周三）18:00截止" in reply and "联系会务干事" in reply and "参加" in reply
        assert rsvp_of(bot, mid, a) == ("attend", None)
        assert "回执已于" in ca.ask(action={"do": "rsvp", "meeting": mid, "answer": "excused"})
        assert "已登记" in cb.ask(f"参加 {mid}")  # not answered yet: a late answer is still welcome
    assert rsvp_of(bot, mid, b)[0] == "attend"


def test_change_and_cancel_reach_every_invitee_through_the_outbox(bot):
    people = [add_member(bot, name=n, roles=["clerk"]) for n in ("参加的", "请假的", "没回的")]
    with bot.db.transaction() as s:
        for m in people:
            link_identity(s, s.get(Member, m.id), "sandbox", f"sb-{m.id}")
    mid = make(bot)
    with bot.db.transaction() as s:
        for inv, answer in zip(s.get(Meeting, mid).invites, ("attend", "excused", "none"), strict=True):
            inv.rsvp = answer
    with bot.db.transaction() as s:
        assert change_meeting(s, bot, s.get(Meeting, mid), starts_at=at(2026, 12, 5, 9)) == 3
    with bot.db.transaction() as s:
        assert cancel_meeting(s, bot, s.get(Meeting, mid), "") == 3
    assert keys(bot, f"meeting:{mid}:v2:") == [f"meeting:{mid}:v2:{m.id}" for m in people]
    assert keys(bot, f"meeting:{mid}:cancel:") == [f"meeting:{mid}:cancel:{m.id}" for m in people]
    for m in people:
        texts = texts_to(bot, m)
        assert texts[-1] == "会议取消通知：原定12月5日（周六）09:00的“十二月工会委员会会议”已取消。"


def test_publish_in_chat_with_agenda_deadline_and_branches(bot, chat_with):
    clerk = add_member(bot, name="会务干事", roles=["clerk"], branch="工会办公室", group="办公室小组")
    inner = [add_member(bot, name=f"内科{i}") for i in range(2)]
    surgeon = add_member(bot, name="外科甲", branch="外科分会", group="普外小组")
    add_member(bot, name="药剂科甲", branch="药剂科分会", group="药房小组")
    chat = chat_with(clerk)
    inner_chat, surgeon_chat = chat_with(inner[0]), chat_with(surgeon)
    chat.ask("发布会议")
    chat.ask("分会工作会")
    chat.ask("4")
    chat.ask("12月4日 14:30")
    chat.ask("行政楼三楼")
    assert "跳过" in chat.ask("1. 年终总结 2. 明年计划")
    assert "之间" in chat.ask("12月5日 18:00")  # after the start: refused, says what to do
    assert "请谁参加" in chat.ask("12月3日 18:00")
    assert "请回复 1–7" in chat.ask("随便")
    pick = chat.ask("6")
    assert "内科分会" in pick and "外科分会" in pick
    numbers = {line.split(". ")[1]: line.split(". ")[0] for line in pick.splitlines() if ". " in line}
    confirm = chat.ask(f"{numbers['内科分会']} {numbers['外科分会']}")
    assert "参加：内科分会、外科分会，共 3 人" in confirm
    assert "议程：1. 年终总结 2. 明年计划" in confirm and "回执截止：12月3日（周四）18:00" in confirm
    assert "已发布会议" in chat.ask("确认")
    (card,) = inner_chat.inbox()
    assert (
        "议程：1. 年终总结 2. 明年计划" in card["lines"]
        and "请于12月3日（周四）18:00前回复。" in card["lines"]
    )
    assert surgeon_chat.inbox()
    with bot.db.Session() as s:
        m = s.scalar(select(Meeting).where(Meeting.title == "分会工作会"))
        assert m.kind == "其他" and m.rsvp_deadline == at(2026, 12, 3, 18) and len(m.invites) == 3
    # groups by name, straight at the "who" step
    chat.ask("发布会议")
    for answer in ("普外小组碰头会", "3", "12月4日 9:00", "示教室", "跳过", "跳过"):
        chat.ask(answer)
    assert "参加：普外小组，共 1 人" in chat.ask("普外小组")
    chat.ask("确认")
    assert [c["title"] for c in surgeon_chat.inbox()] == ["会议通知：普外小组碰头会"]


def test_change_a_meeting_in_chat(bot, chat_with):
    clerk = add_member(bot, name="干事", roles=["clerk"])
    chair = add_member(bot, name="分会主席", roles=["branch_chair"])
    chat, chair_chat = chat_with(clerk), chat_with(chair)
    mid = make(bot)
    chat.inbox(), chair_chat.inbox()
    assert "权限" in chair_chat.ask(f"会议改期 {mid} 12月5日 9:00")
    assert "要修改哪个会议" in chat.ask("会议改期") and str(mid) in chat.ask("会议改期")
    assert "没有找到会议 999" in chat.ask("会议改期 999 12月5日 9:00")
    assert "应在将来" in chat.ask(f"会议改期 {mid} 11月30日 9:00")
    with bot.db.transaction() as s:
        s.get(Meeting, mid).rsvp_deadline = at(2026, 12, 3, 18)
    assert "新时间早于回执截止（12月3日（周四）18:00）" in chat.ask(f"会议改期 {mid} 12月2日 9:00")
    chat.ask("取消")
    confirm = chat.ask(f"会议改期 {mid} 12月5日 9:00")
    assert "改为：12月5日（周六）09:00" in confirm and "2 人" in confirm
    assert chair_chat.inbox() == []  # nothing is sent before 确认
    assert "变更通知已发给受邀的 2 人" in chat.ask("确认")
    (notice,) = chair_chat.inbox()
    assert (
        notice["title"] == "会议变更：十二月工会委员会会议"
        and "时间：12月5日（周六）09:00" in notice["lines"]
    )
    # the place, step by step
    assert "1. 时间" in chat.ask(f"修改会议 {mid}")
    assert "现在是：行政楼三楼会议室" in chat.ask("2")
    assert "改为：门诊楼五楼会议室" in chat.ask("门诊楼五楼会议室")
    chat.ask("确认")
    (notice,) = chair_chat.inbox()
    assert "地点：门诊楼五楼会议室" in notice["lines"]
    with bot.db.Session() as s:
        m = s.get(Meeting, mid)
        assert m.starts_at == at(2026, 12, 5, 9) and m.place == "门诊楼五楼会议室" and m.version == 3
    # "5号会议改地点到…" in one go; 取消 leaves it as it was
    assert "改为：礼堂" in chat.ask(f"{mid}号会议改地点到礼堂")
    chat.ask("取消")
    with bot.db.Session() as s:
        assert s.get(Meeting, mid).place == "门诊楼五楼会议室"


def test_cancel_a_meeting_in_chat(bot, chat_with):
    clerk = add_member(bot, name="干事", roles=["clerk"])
    chair = add_member(bot, name="分会主席", roles=["branch_chair"])
    chat, chair_chat = chat_with(clerk), chat_with(chair)
    mid = make(bot)
    chat.inbox(), chair_chat.inbox()
    assert "权限" in chair_chat.ask(f"取消会议 {mid}")
    confirm = chat.ask(f"取消会议 {mid} 与上级会议冲突")
    assert "确定取消会议" in confirm and "原因：与上级会议冲突" in confirm and "不能撤回" in confirm
    assert "照常举行" in chat.ask("保留")
    with bot.db.Session() as s:
        assert s.get(Meeting, mid).status == "scheduled"
    assert chair_chat.inbox() == []
    assert "确认 与上级会议冲突" in chat.ask(f"会议取消 {mid}")
    assert "取消通知已发给受邀的 2 人" in chat.ask("确认 临时有上级检查")
    (notice,) = chair_chat.inbox()
    assert "已取消" in notice["text"] and "临时有上级检查" in notice["text"]
    assert "已经取消" in chat.ask(f"取消会议 {mid}")
    with bot.db.Session() as s:
        m = s.get(Meeting, mid)
        assert m.status == "cancelled" and m.cancel_reason == "临时有上级检查"


def test_leaving_the_cancel_confirmation_says_nothing_was_cancelled(bot, chat_with):
    chat = chat_with(add_member(bot, name="干事", roles=["clerk"]))
    mid = make(bot)
    assert "确定取消会议" in chat.ask(f"取消会议 {mid}")
    assert chat.ask("取消") == LEFT_DIALOG  # not "已取消": the meeting was not cancelled
    with bot.db.Session() as s:
        assert s.get(Meeting, mid).status == "scheduled"


def test_meeting_words_are_kept_as_typed(bot, chat_with):
    """The router sees 三号 as 3号 and ， as ,: titles, places, agendas and reasons stay as typed."""
    clerk = add_member(bot, name="会务干事", roles=["clerk"])
    chair = add_member(bot, name="分会主席", roles=["branch_chair"])
    chat, chair_chat = chat_with(clerk), chat_with(chair)
    title, place = "第三届一次工会委员会（扩大）会议", "三号楼二层会议室"
    agenda = "一、年终总结；二、明年一个重点项目，三项措施。"
    chat.ask("发布会议")
    for answer in (title, "2", "12月4日 14:30", place, agenda, "跳过"):
        chat.ask(answer)
    confirm = chat.ask("4")  # the branch chairs
    assert f"{title}（" in confirm and f"地点：{place}" in confirm and f"议程：{agenda}" in confirm
    assert "已发布会议" in chat.ask("确认")
    with bot.db.Session() as s:
        m = s.scalar(select(Meeting).where(Meeting.title == title))
        assert (m.place, m.agenda) == (place, agenda)
        mid = m.id
    chair_chat.inbox()
    chair_chat.ask(f"请假 {mid}")
    chair_chat.ask("三号楼值夜班，走不开。")
    assert rsvp_of(bot, mid, chair) == ("excused", "三号楼值夜班，走不开。")
    chat.ask(f"会议改地点 {mid} 改到五号楼一层大厅（东侧）")
    chat.ask("确认")
    chat.ask(f"取消会议 {mid} 与上级第一次检查冲突，改期再议。")
    chat.ask("确认")
    with bot.db.Session() as s:
        m = s.get(Meeting, mid)
        assert (m.place, m.cancel_reason) == ("五号楼一层大厅（东侧）", "与上级第一次检查冲突，改期再议。")
