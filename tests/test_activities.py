"""Activity sign-up: rules, refusals, companions, questions, waitlist, cut-offs, relay list, export, permissions."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.core import LEFT_DIALOG
from handlers.activities import match_title, parse_companions, parse_when, send_activity_reminders
from models.activity import Activity, Signup, export_xlsx, safe_cell, sign_up
from models.member import Member
from models.messaging import OutboxMessage
from tests.conftest import add_member

# 2026-12-01 10:00 Asia/Shanghai
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as t:
        yield t


def make_activity(bot, **kw) -> int:
    starts = kw.pop("starts_at", NOW + timedelta(days=5))
    with bot.db.transaction() as s:
        a = Activity(
            title=kw.pop("title", "乒乓球比赛"),
            place=kw.pop("place", "职工活动中心"),
            starts_at=starts,
            signup_deadline=kw.pop("signup_deadline", starts - timedelta(days=1)),
            capacity=kw.pop("capacity", 3),
            taken=0,
            seq=0,
            waitlist_enabled=kw.pop("waitlist_enabled", True),
            companions_max=kw.pop("companions_max", 0),
            questions=kw.pop("questions", []),
            audience_kind=kw.pop("audience_kind", "all"),
            audience_ids=kw.pop("audience_ids", []),
            status=kw.pop("status", "open"),
            **kw,
        )
        s.add(a)
        s.flush()
        return a.id


def signups(bot, aid):
    with bot.db.Session() as s:
        return [
            (r.member.name, r.status, r.companions)
            for r in s.scalars(select(Signup).where(Signup.activity_id == aid).order_by(Signup.seq))
        ]


def taken(bot, aid):
    with bot.db.Session() as s:
        return s.get(Activity, aid).taken


# ---- parsing ----------------------------------------------------------------------------------------------


def test_parse_companions():
    assert parse_companions("报名3 带2人")[0] == 2
    assert parse_companions("秋游带1个家属")[0] == 1
    assert parse_companions("秋游报名,我和爱人,女儿")[0] == 2
    assert parse_companions("秋游我一个人去")[0] == 0
    assert parse_companions("乒乓球 +1")[0] == 0
    assert parse_companions("乒乓球 +3")[0] == 2
    assert parse_companions("报名 3")[0] is None


def test_title_matching_is_loose():
    class A:
        def __init__(self, i, t):
            self.id, self.title = i, t

    pool = [A(1, "2026年羽毛球比赛"), A(2, "乒乓球比赛"), A(3, "秋游·千岛湖")]
    assert [a.id for a in match_title("我要报名羽毛球赛", pool)] == [1]
    assert [a.id for a in match_title("乒乓球 +1", pool)] == [2]
    assert [a.id for a in match_title("退掉秋游", pool)] == [3]
    assert {a.id for a in match_title("球", pool)} == {1, 2}
    assert match_title("报名", pool) == []


def test_parse_when():
    from datetime import date

    today = date(2026, 12, 1)
    assert parse_when("12月5日 14:30", today)[:3] == (date(2026, 12, 5), 14, 30)
    assert parse_when("明天下午3点半", today)[:3] == (date(2026, 12, 2), 15, 30)
    assert parse_when("下周六 9点", today)[:3] == (date(2026, 12, 12), 9, 0)


# ---- members ----------------------------------------------------------------------------------------------


def test_list_and_details_show_only_my_audience(bot, chat_with):
    me = add_member(bot, "王秀珍", gender="女")
    add_member(bot, "赵强", gender="男", group="外科小组", branch="外科分会")
    a1 = make_activity(bot, title="乒乓球比赛")
    make_activity(bot, title="三八节插花", audience_kind="women")
    make_activity(bot, title="外科聚餐", audience_kind="branches", audience_ids=[999])
    c = chat_with(me)
    out = c.ask("有什么活动")
    assert "乒乓球比赛" in out and "三八节插花" in out and "外科聚餐" not in out
    payloads = c.say("活动")
    card = payloads[-1]
    assert card["type"] == "card"
    assert {"do": "signup", "activity": a1} in [b["action"] for b in card["buttons"]]
    detail = c.ask(f"活动 {a1}")
    assert "已报名 0/3 人" in detail and "职工活动中心" in detail and "[报名]" in detail


def test_signup_by_text_forms(bot, chat_with):
    a = make_activity(bot, title="2026年羽毛球比赛", capacity=10, companions_max=2)
    b = make_activity(bot, title="乒乓球比赛", capacity=10)
    names = ["甲一", "乙二", "丙三", "丁四", "戊五", "己六", "庚七"]
    members = [add_member(bot, n) for n in names]
    assert "报名成功" in chat_with(members[0]).ask(f"报名 {a}")
    assert "报名成功" in chat_with(members[1]).ask("我要报名羽毛球赛")
    assert "本人+2位家属" in chat_with(members[2]).ask(f"报名{a} 带2人")
    assert "报名成功" in chat_with(members[3]).ask("乒乓球 +1")
    assert "报名成功" in chat_with(members[4]).ask("算我一个 乒乓球")
    assert b == 2 and "报名成功" in chat_with(members[5]).ask("报名第二个")
    assert "报名成功" in chat_with(members[6]).ask(f"报名 {b}")
    assert taken(bot, a) == 1 + 1 + 3


def test_button_signup_and_duplicate(bot, chat_with):
    aid = make_activity(bot)
    me = add_member(bot, "刘桂英")
    c = chat_with(me)
    assert "报名成功" in c.ask(action={"do": "signup", "activity": aid})
    again = c.ask(f"报名 {aid}")
    assert "已经报名过" in again and "不用重复报名" in again
    assert len(signups(bot, aid)) == 1


def test_full_goes_to_waitlist_and_cancel_promotes_first_that_fits(bot, chat_with):
    aid = make_activity(bot, capacity=3, companions_max=2)
    a, b, c, d = (add_member(bot, n) for n in ("甲", "乙", "丙", "丁"))
    assert "报名成功" in chat_with(a).ask(f"报名 {aid} 带1人")  # 2 places
    assert "报名成功" in chat_with(b).ask(f"报名 {aid}")  # 3 places: full
    out = chat_with(c).ask(f"报名 {aid} 带1人")  # needs 2
    assert "名额已满" in out and "候补第 1 位" in out
    out = chat_with(d).ask(f"报名 {aid}")  # needs 1
    assert "候补第 2 位" in out
    cb = chat_with(b)
    assert "已取消" in cb.ask(f"取消报名 {aid}")  # frees 1: 丙 (needs 2) does not fit, 丁 is promoted
    assert signups(bot, aid) == [
        ("甲", "confirmed", 1),
        ("乙", "cancelled", 0),
        ("丙", "waitlisted", 1),
        ("丁", "confirmed", 0),
    ]
    assert taken(bot, aid) == 3
    told = chat_with(d).inbox()
    assert any("有名额了" in p.get("text", "") for p in told)
    assert "已取消" in chat_with(a).ask(f"取消报名 {aid}")  # frees 2: 丙 fits now
    assert ("丙", "confirmed", 1) in signups(bot, aid)
    assert taken(bot, aid) == 3


def test_no_waitlist_refuses_when_full(bot, chat_with):
    aid = make_activity(bot, capacity=1, waitlist_enabled=False)
    chat_with(add_member(bot, "甲")).ask(f"报名 {aid}")
    out = chat_with(add_member(bot, "乙")).ask(f"报名 {aid}")
    assert "名额已满" in out and "不设候补" in out


def test_refusals(bot, chat_with):
    me = add_member(bot, "赵强", gender="男")
    c = chat_with(me)
    women = make_activity(bot, title="三八节插花", audience_kind="women")
    assert "不在这次的报名范围内" in c.ask(f"报名 {women}")
    cancelled = make_activity(bot, title="春游", status="cancelled")
    assert "已取消" in c.ask(f"报名 {cancelled}")
    late = make_activity(bot, title="秋游", signup_deadline=NOW - timedelta(minutes=1))
    assert "截止" in c.ask(f"报名 {late}")
    solo = make_activity(bot, title="讲座", companions_max=0)
    assert "不能携带家属" in c.ask(f"报名 {solo} 带1人")
    two = make_activity(bot, title="亲子游", companions_max=2)
    assert "最多带 2 位家属" in c.ask(f"报名 {two} 带3人")
    out = c.ask("报名 游泳比赛")
    assert "没找到这个活动" in out and "目前可报名的活动" in out and "讲座" in out
    assert "没找到这个活动" in c.ask("报名 9999")


def test_ambiguous_title_asks(bot, chat_with):
    make_activity(bot, title="乒乓球比赛")
    make_activity(bot, title="乒乓球培训")
    c = chat_with(add_member(bot, "甲"))
    out = c.ask("报名 乒乓球")
    assert "您想报名哪一个" in out
    assert signups(bot, 1) == [] and signups(bot, 2) == []


def test_cancel_phrasings_and_my_signups(bot, chat_with):
    pp = make_activity(bot, title="乒乓球比赛")
    qy = make_activity(bot, title="秋游")
    me = add_member(bot, "甲")
    c = chat_with(me)
    c.ask(f"报名 {pp}")
    c.ask("报名 秋游")
    mine = c.ask("我报了啥")
    assert "乒乓球比赛" in mine and "秋游" in mine and "已报名" in mine
    assert "已取消" in c.ask("乒乓球去不了了")
    assert "已取消" in c.ask("退掉秋游")
    assert "没有报名任何活动" in c.ask("帮我取消乒乓球")
    assert "已取消" in c.ask("我的报名")
    c.ask(f"报名 {pp}")
    assert "已取消" in c.ask(f"取消报名 {pp}")
    c.ask(f"报名 {pp}")
    c.ask(f"报名 {qy}")
    out = c.ask("取消")
    assert "您想取消哪一个" in out  # two sign-ups and no name: ask, never guess


def test_cancel_cutoff(bot, chat_with):
    aid = make_activity(
        bot,
        starts_at=NOW + timedelta(hours=10),
        cancel_cutoff_hours=12,
        signup_deadline=NOW + timedelta(hours=1),
    )
    c = chat_with(add_member(bot, "甲"))
    assert "报名成功" in c.ask(f"报名 {aid}")
    assert "小时内不能在线取消" in c.ask(f"取消报名 {aid}")


def test_deadline_around_midnight_shanghai(bot, chat_with):
    # Deadline 2026-12-03 23:59:59 Shanghai = 15:59:59 UTC; the host runs UTC.
    deadline = datetime(2026, 12, 3, 15, 59, 59, tzinfo=UTC)
    aid = make_activity(bot, signup_deadline=deadline, starts_at=NOW + timedelta(days=5))
    c1, c2 = chat_with(add_member(bot, "甲")), chat_with(add_member(bot, "乙"))
    with time_machine.travel(datetime(2026, 12, 3, 15, 59, 0, tzinfo=UTC), tick=False):
        assert "报名成功" in c1.ask(f"报名 {aid}")  # 23:59 in Shanghai, still 3 Dec
    with time_machine.travel(datetime(2026, 12, 3, 16, 0, 30, tzinfo=UTC), tick=False):
        out = c2.ask(f"报名 {aid}")  # 00:00:30 on 4 Dec in Shanghai (still 3 Dec in UTC)
        assert "截止" in out and "12月03日 23:59" in out


def test_questions_dialog(bot, chat_with):
    qs = [
        {"key": "item", "label": "项目", "options": ["单打", "双打"]},
        {"key": "size", "label": "尺码", "options": ["M", "L", "XL"]},
    ]
    aid = make_activity(bot, questions=qs)
    c = chat_with(add_member(bot, "甲"))
    out = c.ask(f"报名 {aid}")
    assert "项目" in out and "1. 单打" in out
    assert "没看懂" in c.ask("三打")
    assert "尺码" in c.ask("2")
    assert "报名成功" in c.ask("XL")
    with bot.db.Session() as s:
        row = s.scalar(select(Signup))
        assert row.answers == {"item": "双打", "size": "XL"}
    # cancelling mid-way leaves nothing
    c2 = chat_with(add_member(bot, "乙"))
    c2.ask(f"报名 {aid}")
    assert c2.ask("取消") == LEFT_DIALOG
    assert len(signups(bot, aid)) == 1


def test_group_relay_list(bot, chat_with):
    aid = make_activity(bot, capacity=2, companions_max=2)
    people = [add_member(bot, n) for n in ("张三", "李四", "王五")]
    group_id = None
    with bot.db.Session() as s:
        group_id = s.get(Member, people[0].id).group_id
    chats = [chat_with(p, group_id=group_id) for p in people]
    out = chats[0].ask(f"@工会小助手 报名 {aid}")
    assert "【接龙】乒乓球比赛" in out and "1. 张三" in out and "已报名 1/2 人" in out
    chats[1].ask(f"报名 {aid}")
    out = chats[2].ask(f"报名 {aid}")
    assert "2. 李四" in out and "候补 1 人" in out and "候补1. 王五" in out and "已报名 2/2 人" in out


def test_relay_list_is_shortened(bot, chat_with):
    aid = make_activity(bot, capacity=None)
    with bot.db.transaction() as s:
        a = s.get(Activity, aid)
        for i in range(40):
            m = Member(name=f"会员{i:02d}", employee_no=f"R{i:04d}")
            s.add(m)
            s.flush()
            sign_up(s, a, m, NOW, companions=0)
    me = add_member(bot, "组长")
    with bot.db.Session() as s:
        gid = s.get(Member, me.id).group_id
    out = chat_with(me, group_id=gid).ask(f"报名 {aid}")
    assert "30. 会员29" in out and "31. " not in out and "另有 11 人未列出" in out


def test_proxy_signup_own_group_only(bot, chat_with):
    aid = make_activity(bot, capacity=10)
    leader = add_member(bot, "组长", roles=("group_leader",))
    add_member(bot, "刘桂英")
    add_member(bot, "王秀珍")
    add_member(bot, "外人", group="外科小组", branch="外科分会")
    c = chat_with(leader)
    out = c.ask(f"代报名 {aid} 刘桂英 王秀珍 外人")
    assert "✓ 刘桂英：已报名" in out and "✓ 王秀珍：已报名" in out and "✗ 外人" in out
    with bot.db.Session() as s:
        rows = list(s.scalars(select(Signup)))
        assert {r.signed_by_id for r in rows} == {leader.id}
    plain = chat_with(add_member(bot, "普通会员"))
    assert "只有小组长" in plain.ask(f"代报名 {aid} 刘桂英")


def test_roster_and_not_answered_permissions(bot, chat_with):
    aid = make_activity(bot, capacity=10)
    leader = add_member(bot, "心内组长", roles=("group_leader",))
    mine = add_member(bot, "组员甲")
    add_member(bot, "组员乙")
    other = add_member(bot, "外科甲", group="外科小组", branch="外科分会")
    clerk = add_member(bot, "干事", roles=("clerk",), group="工会办公室", branch="机关分会")
    chat_with(mine).ask(f"报名 {aid}")
    chat_with(other).ask(f"报名 {aid}")
    cl = chat_with(leader)
    out = cl.ask(f"报名名单 {aid}")
    assert "组员甲" in out and "外科甲" not in out
    out = chat_with(clerk).ask(f"报名名单 {aid}")
    assert "组员甲" in out and "外科甲" in out
    assert "只有活动发布人" in chat_with(other).ask(f"报名名单 {aid}")
    out = cl.ask(f"未报名 {aid}")
    assert "组员乙" in out and "外科" not in out and "组员甲" not in out
    assert "只有活动发布人" in chat_with(add_member(bot, "路人")).ask(f"未报名 {aid}")


def test_check_in_window(bot, chat_with, frozen):
    aid = make_activity(bot, starts_at=NOW + timedelta(hours=3), signup_deadline=NOW + timedelta(hours=2))
    c = chat_with(add_member(bot, "甲"))
    c.ask(f"报名 {aid}")
    assert "开始前 1 小时开放" in c.ask(f"签到 {aid}")
    with time_machine.travel(NOW + timedelta(hours=2, minutes=30), tick=False):
        assert "签到成功" in c.ask(f"签到 {aid}")
        assert "已经签到过" in c.ask(f"签到 {aid}")
        assert "没有报名" in chat_with(add_member(bot, "乙")).ask(f"签到 {aid}")


def test_create_activity_dialog(bot, chat_with):
    leader = add_member(bot, "组长", roles=("group_leader",))
    c = chat_with(leader)
    assert "活动名称" in c.ask("发布活动")
    assert "什么时候开始" in c.ask("跳绳比赛")
    assert "在哪里" in c.ask("12月10日 下午3点")
    assert "限多少人" in c.ask("操场")
    assert "截止" in c.ask("20 每人带1人")
    out = c.ask("默认")  # a group leader publishes for their own group: no audience question
    assert "就快发布好了" in out and "对象：本小组（心内科小组）" in out and "回复“好”发布" in out
    out = c.ask("好")
    assert "活动已发布" in out and "本小组" in out
    with bot.db.Session() as s:
        a = s.scalar(select(Activity))
        assert a.title == "跳绳比赛" and a.capacity == 20 and a.companions_max == 1
        assert bot.clock.fmt(a.starts_at) == "12月10日 15:00"
        assert bot.clock.fmt(a.signup_deadline) == "12月09日 18:00"
        assert a.audience_kind == "groups" and a.created_by_id == leader.id
    assert "需要小组长" in chat_with(add_member(bot, "会员")).ask("发布活动")
    c.ask("发布活动")
    assert c.ask("取消") == LEFT_DIALOG


def test_cancel_whole_activity_notifies(bot, chat_with):
    clerk = add_member(bot, "干事", roles=("clerk",))
    aid = make_activity(bot)
    m = add_member(bot, "甲")
    cm = chat_with(m)
    cm.ask(f"报名 {aid}")
    cc = chat_with(clerk)
    assert "确定取消整个活动" in cc.ask(f"取消活动 {aid}")
    assert "已通知 1 位" in cc.ask(f"取消活动 {aid} 确认")
    assert any("已取消" in p.get("text", "") for p in cm.inbox())
    assert "只有活动发布人" in cm.ask(f"取消活动 {aid}")


def test_reminders_once_each(bot, chat_with):
    aid = make_activity(bot, starts_at=NOW + timedelta(hours=30), signup_deadline=NOW + timedelta(hours=20))
    c = chat_with(add_member(bot, "甲"))
    c.ask(f"报名 {aid}")
    assert send_activity_reminders(bot, NOW) == 0
    day_before = NOW + timedelta(hours=7)
    assert send_activity_reminders(bot, day_before) == 1
    assert send_activity_reminders(bot, day_before + timedelta(minutes=1)) == 0
    two_h = NOW + timedelta(hours=28, minutes=1)
    assert send_activity_reminders(bot, two_h) == 1
    assert send_activity_reminders(bot, two_h) == 0
    with bot.db.Session() as s:
        keys = list(
            s.scalars(
                select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.like("activity:%"))
            )
        )
    assert len(keys) == 2


def test_export_xlsx(bot, chat_with):
    qs = [{"key": "size", "label": "尺码", "options": ["=1+1", "L"]}]
    aid = make_activity(bot, questions=qs, companions_max=1)
    m = add_member(bot, '=HYPERLINK("x")', employee_no="E001")
    with bot.db.transaction() as s:
        a = s.get(Activity, aid)
        sign_up(s, a, s.get(Member, m.id), NOW, companions=1, answers={"size": "=1+1"})
        data = export_xlsx(s, a, bot.clock)
    ws = load_workbook(io.BytesIO(data)).active
    header = [c.value for c in ws[1]]
    assert header[:7] == ["序号", "姓名", "工号", "分会", "小组", "携带家属", "尺码"]
    row = [c.value for c in ws[2]]
    assert row[1] == '\'=HYPERLINK("x")' and row[2] == "E001" and row[3] == "内科分会" and row[5] == 1
    assert row[6] == "'=1+1"
    assert row[7] == datetime(2026, 12, 1, 10, 0)  # local time
    assert row[8] == "已报名"
    assert all(not str(c.value).startswith(("=", "+", "-", "@")) for c in ws[2] if c.value is not None)
    assert (
        safe_cell("+86") == "'+86"
        and safe_cell("-1") == "'-1"
        and safe_cell("@x") == "'@x"
        and safe_cell(3) == 3
    )


def test_export_header_cannot_run_as_formula(bot):
    """A question label such as =HYPERLINK(...) is written as text in the header row too."""
    qs = [{"key": "q", "label": '=HYPERLINK("http://x","点我")', "options": ["是", "否"]}]
    aid = make_activity(bot, questions=qs)
    m = add_member(bot, "甲")
    with bot.db.transaction() as s:
        a = s.get(Activity, aid)
        sign_up(s, a, s.get(Member, m.id), NOW, answers={"q": "是"})
        data = export_xlsx(s, a, bot.clock)
    ws = load_workbook(io.BytesIO(data)).active
    assert ws.cell(1, 7).value == '\'=HYPERLINK("http://x","点我")'
    assert [c.coordinate for row in ws.iter_rows() for c in row if c.data_type == "f"] == []


def test_unique_index_blocks_second_active_signup(bot):
    """The database itself refuses a second active sign-up; a cancelled one does not count."""
    aid = make_activity(bot, capacity=5)
    m = add_member(bot, "甲")
    with bot.db.Session() as s:
        a, mm = s.get(Activity, aid), s.get(Member, m.id)
        assert sign_up(s, a, mm, NOW).outcome == "confirmed"
        s.add(Signup(activity_id=aid, member_id=m.id, status="waitlisted", seq=99, companions=0, answers={}))
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
    with bot.db.transaction() as s:
        s.add(Signup(activity_id=aid, member_id=m.id, status="cancelled", seq=1, companions=0, answers={}))
        s.add(Signup(activity_id=aid, member_id=m.id, status="cancelled", seq=2, companions=0, answers={}))
        s.add(Signup(activity_id=aid, member_id=m.id, status="confirmed", seq=3, companions=0, answers={}))
    assert len(signups(bot, aid)) == 3


def test_loose_proxy_and_signup_without_activity_asks(bot, chat_with):
    aid = make_activity(bot, title="秋游", capacity=10)
    make_activity(bot, title="乒乓球比赛")
    leader = add_member(bot, "组长", roles=("group_leader",))
    add_member(bot, "刘桂英")
    c = chat_with(leader)
    out = c.ask("帮组里的老刘报个秋游")
    assert "✓ 刘桂英：已报名" in out
    assert signups(bot, aid) == [("刘桂英", "confirmed", 0)]
    m = chat_with(add_member(bot, "甲"))
    out = m.ask("报名")
    assert "请问您要报名哪个活动" in out and "秋游" in out and "乒乓球比赛" in out
    out = m.ask("报名 二号活动")  # 报名 beats 活动: a sign-up, not a "which one did you mean" question
    assert "您是想办哪一件事" not in out and "报名成功" in out


def test_cancel_words_for_meetings_are_handed_over(bot, chat_with):
    make_activity(bot, title="乒乓球比赛")
    c = chat_with(add_member(bot, "甲"))
    out = c.ask("例会去不了")
    assert "没有报名任何活动" not in out
    assert "没有报名任何活动" in c.ask("乒乓球去不了了")  # an activity's name: answered here


def test_nudge_unanswered_day_before_deadline(bot, chat_with):
    deadline = NOW + timedelta(days=3)
    aid = make_activity(bot, signup_deadline=deadline, remind_unanswered=True, audience_kind="women")
    make_activity(bot, title="不提醒的活动", signup_deadline=deadline)
    yes = chat_with(add_member(bot, "已报名", gender="女"))
    no = chat_with(add_member(bot, "未报名", gender="女"))
    chat_with(add_member(bot, "男同事", gender="男"))
    yes.ask(f"报名 {aid}")
    assert send_activity_reminders(bot, NOW) == 0  # too early
    assert send_activity_reminders(bot, deadline - timedelta(hours=20)) == 1
    assert send_activity_reminders(bot, deadline - timedelta(hours=19)) == 0
    texts = [p.get("text", "") for p in no.inbox()]
    assert any("报名将于" in t and f"报名 {aid}" in t for t in texts)
    assert not any("报名将于" in p.get("text", "") for p in yes.inbox())


def test_waitlisted_may_leave_inside_the_cutoff(bot, chat_with):
    aid = make_activity(
        bot,
        capacity=1,
        starts_at=NOW + timedelta(hours=10),
        cancel_cutoff_hours=12,
        signup_deadline=NOW + timedelta(hours=1),
    )
    first, second = chat_with(add_member(bot, "甲")), chat_with(add_member(bot, "乙"))
    first.ask(f"报名 {aid}")
    assert "候补第 1 位" in second.ask(f"报名 {aid}")
    assert "已取消" in second.ask(f"取消报名 {aid}")
    assert "不能在线取消" in first.ask(f"取消报名 {aid}")


def test_roster_stays_private_in_group_chats(bot, chat_with):
    aid = make_activity(bot)
    clerk = add_member(bot, "干事", roles=("clerk",))
    with bot.db.Session() as s:
        gid = s.get(Member, clerk.id).group_id
    assert "请私聊我" in chat_with(clerk, group_id=gid).ask(f"报名名单 {aid}")


def test_created_activity_posted_to_group_chat_with_one_tap(bot, chat_with):
    from models.messaging import Chat as GroupChat

    leader = add_member(bot, "组长", roles=("group_leader",))
    with bot.db.transaction() as s:
        gid = s.get(Member, leader.id).group_id
        s.add(GroupChat(platform="sandbox", chat_id=f"sb-group-{gid}", title="心内科群", group_id=gid))
    c = chat_with(leader)
    for text in ("发布活动", "跳绳比赛", "12月10日 下午3点", "操场", "20", "默认"):
        c.ask(text)
    payloads = c.say("好")
    card = payloads[-1]
    post = [b for b in card["buttons"] if b["action"]["do"] == "post_activity"]
    assert post and post[0]["label"] == "发到 1 个小组群"
    assert "已把“跳绳比赛”发到 1 个小组群" in c.ask(action=post[0]["action"])
    group = chat_with(leader, group_id=gid)
    posted = [p for p in group.inbox() if p.get("type") == "card"]
    assert posted and "跳绳比赛" in posted[0]["title"]
    assert {"do": "signup", "activity": post[0]["action"]["activity"]} in [
        b["action"] for b in posted[0]["buttons"]
    ]
    assert "只有活动发布人" in chat_with(add_member(bot, "会员")).ask(action=post[0]["action"])


def test_check_in_closes_an_hour_after_the_end(bot, chat_with):
    aid = make_activity(bot, starts_at=NOW + timedelta(hours=2), signup_deadline=NOW + timedelta(hours=1))
    with bot.db.transaction() as s:
        s.get(Activity, aid).ends_at = NOW + timedelta(hours=4)
    c, late = chat_with(add_member(bot, "甲")), chat_with(add_member(bot, "乙"))
    c.ask(f"报名 {aid}")
    late.ask(f"报名 {aid}")
    with time_machine.travel(NOW + timedelta(hours=4, minutes=59), tick=False):
        assert "签到成功" in c.ask(f"签到 {aid}")
    with time_machine.travel(NOW + timedelta(hours=5, minutes=1), tick=False):
        assert "签到已经结束了" in late.ask(f"签到 {aid}")
    with bot.db.Session() as s:
        came = {r.member.name: r.checked_in_at is not None for r in s.scalars(select(Signup))}
    assert came == {"甲": True, "乙": False}


def test_check_in_without_an_end_closes_four_hours_after_the_start(bot, chat_with):
    aid = make_activity(bot, starts_at=NOW + timedelta(hours=2), signup_deadline=NOW + timedelta(hours=1))
    c = chat_with(add_member(bot, "甲"))
    c.ask(f"报名 {aid}")
    with time_machine.travel(NOW + timedelta(hours=6, minutes=1), tick=False):
        assert "签到已经结束了" in c.ask(f"签到 {aid}")


def test_an_activity_that_has_started_refuses_sign_up_and_cancel(bot, chat_with):
    aid = make_activity(bot, title="健步走", starts_at=NOW + timedelta(hours=1), signup_deadline=None)
    make_activity(bot, title="秋游")
    early = chat_with(add_member(bot, "甲"))
    early.ask(f"报名 {aid}")
    with time_machine.travel(NOW + timedelta(hours=1, minutes=5), tick=False):
        out = chat_with(add_member(bot, "乙")).ask(f"报名 {aid}")
        assert "“健步走”已经开始或结束了，不能再报名" in out and "秋游" in out  # with what is still open
        assert "已经开始了，不能再取消" in early.ask(f"取消报名 {aid}")
    assert signups(bot, aid) == [("甲", "confirmed", 0)]


def test_ordinal_is_a_position_and_asks_when_the_number_reads_otherwise(bot, chat_with):
    """活动 lists 【2】【1】【3】 (by start time): 第二个 is not activity 2; with two readings the bot asks."""
    first = make_activity(bot, title="羽毛球赛", starts_at=NOW + timedelta(days=5))
    second = make_activity(bot, title="乒乓球赛", starts_at=NOW + timedelta(days=3))
    third = make_activity(bot, title="健康讲座", starts_at=NOW + timedelta(days=7))
    c = chat_with(add_member(bot, "甲"))
    listing = c.ask("活动")
    assert listing.index(f"【{second}】") < listing.index(f"【{first}】") < listing.index(f"【{third}】")
    out = c.ask("报名第二个")
    assert "“第2个”是列表里的第2个" in out and "报名成功" not in out
    assert signups(bot, first) == signups(bot, second) == []
    assert "报名成功" in c.ask("1") and "羽毛球赛" in c.ask("我的报名")  # the listed second one
    assert signups(bot, first) == [("甲", "confirmed", 0)] and signups(bot, second) == []
    assert "报名成功" in c.ask("报名第三个")  # position 3 is also number 3: nothing to ask
    assert signups(bot, third) == [("甲", "confirmed", 0)]
    out = c.ask("取消第一个")  # giving a place up is always confirmed
    assert "回复 1" in out and signups(bot, first) == [("甲", "confirmed", 0)]


def test_proxy_signup_asks_the_questions_for_each_colleague(bot, chat_with):
    qs = [
        {"key": "item", "label": "项目", "options": ["单打", "双打"]},
        {"key": "size", "label": "尺码", "options": ["M", "L"]},
    ]
    aid = make_activity(bot, questions=qs, capacity=10)
    leader = add_member(bot, "组长", roles=("group_leader",))
    add_member(bot, "刘桂英")
    add_member(bot, "王秀珍")
    add_member(bot, "外人", group="外科小组", branch="外科分会")
    c = chat_with(leader)
    out = c.ask(f"代报名 {aid} 刘桂英 王秀珍 外人")
    assert "✗ 外人" in out and "代刘桂英填写" in out and "项目" in out
    assert signups(bot, aid) == []  # nobody is signed up with blank answers
    assert "没看懂" in c.ask("三打")
    assert "尺码" in c.ask("1")
    out = c.ask("L")
    assert "代王秀珍填写" in out and "同上" in out
    c.ask("同上")
    out = c.ask("M")
    assert "✓ 刘桂英：已报名" in out and "✓ 王秀珍：已报名" in out and "✗ 外人" in out
    with bot.db.Session() as s:
        got = {r.member.name: r.answers for r in s.scalars(select(Signup))}
    assert got == {"刘桂英": {"item": "单打", "size": "L"}, "王秀珍": {"item": "单打", "size": "M"}}
    # leaving the questions signs nobody up
    add_member(bot, "张桂兰")
    c.ask(f"代报名 {aid} 张桂兰")
    assert c.ask("取消") == LEFT_DIALOG
    assert len(signups(bot, aid)) == 2


def test_export_marks_answers_nobody_gave(bot):
    """A sign-up added without the questions (the console's manual add) says so in the export."""
    aid = make_activity(bot, questions=[{"key": "size", "label": "尺码", "options": ["M", "L"]}])
    clerk, m = add_member(bot, "干事", roles=("clerk",)), add_member(bot, "甲")
    with bot.db.transaction() as s:
        a = s.get(Activity, aid)
        sign_up(s, a, s.get(Member, m.id), NOW, signed_by=s.get(Member, clerk.id), require_answers=False)
        data = export_xlsx(s, a, bot.clock)
    assert load_workbook(io.BytesIO(data)).active.cell(2, 7).value == "代报名，未填写"


def test_a_command_during_the_questions_is_answered_and_the_question_stays(bot, chat_with):
    qs = [{"key": "size", "label": "尺码", "options": ["M", "L"]}]
    aid = make_activity(bot, questions=qs)
    c = chat_with(add_member(bot, "甲"))
    c.ask(f"报名 {aid}")
    out = c.ask("我的报名")
    assert (
        "没看懂" not in out
        and "您还没有报名任何活动" in out
        and "刚才的问题还等着您回答" in out
        and "尺码" in out
    )
    assert "报名成功" in c.ask("L")
