"""How members actually ask (issue 3, ../shared/notes/phrasings.md): dates, loose titles, any word order, and a
numbered question whenever two activities fit — never a guessed sign-up or cancellation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import select

from bot.core import LEFT_DIALOG
from models.activity import Activity, Signup
from tests.conftest import add_member
from tests.test_activities import make_activity, signups

# Tuesday 2026-12-01 10:00 Asia/Shanghai: 周六 = 12-05, 下周三 = 12-09
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def local(day: int, hour: int = 9) -> datetime:
    """December `day`, `hour`:00 in Shanghai, as aware UTC."""
    return datetime(2026, 12, day, hour - 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as t:
        yield t


@pytest.fixture
def badminton(bot):
    """A Saturday badminton match and a later badminton training."""
    sat = make_activity(bot, title="羽毛球赛", starts_at=local(5), capacity=10)
    later = make_activity(bot, title="羽毛球培训", starts_at=local(12), capacity=10)
    return sat, later


def mine(bot, member) -> list[tuple[int, str]]:
    with bot.db.Session() as s:
        rows = s.scalars(select(Signup).where(Signup.member_id == member.id).order_by(Signup.id))
        return [(r.activity_id, r.status) for r in rows]


def test_the_saturday_is_used_to_pick_the_activity(bot, chat_with, badminton):
    sat, later = badminton
    me = add_member(bot, "甲")
    out = chat_with(me).ask("我想报名周六的羽毛球赛")
    assert "报名成功" in out and "羽毛球赛" in out
    assert mine(bot, me) == [(sat, "confirmed")]
    other = add_member(bot, "乙")
    assert "报名成功" in chat_with(other).ask("报名12月12号的羽毛球")  # a date never reads as activity 12
    assert mine(bot, other) == [(later, "confirmed")]


def test_a_day_without_that_title_asks_instead_of_taking_another_day(bot, chat_with, badminton):
    me = add_member(bot, "甲")
    out = chat_with(me).ask("报名周日的羽毛球")
    assert "您想报名哪一个" in out and "1. " in out and "2. " in out
    assert mine(bot, me) == []


def test_two_matches_ask_with_numbers_and_the_number_picks(bot, chat_with, badminton):
    sat, later = badminton
    me = add_member(bot, "甲")
    c = chat_with(me)
    out = c.ask("羽毛球我报一个")
    assert "您想报名哪一个" in out and f"1. 【{sat}】羽毛球赛" in out and f"2. 【{later}】羽毛球培训" in out
    assert mine(bot, me) == []  # asked, not guessed
    assert "报名成功" in c.ask("2")
    assert mine(bot, me) == [(later, "confirmed")]
    assert "已经报名过" in c.ask(f"报名 {later}")  # the question is over: numbers are activity numbers again


def test_a_tap_answers_the_numbered_question_and_keeps_the_companions(bot, chat_with, badminton):
    sat, later = badminton
    with bot.db.transaction() as s:
        for aid in (sat, later):
            s.get(Activity, aid).companions_max = 2
    me = add_member(bot, "甲")
    c = chat_with(me)
    card = c.say("羽毛球 带1人")[-1]
    tap = next(b["action"] for b in card["buttons"] if b["action"]["activity"] == later)
    assert tap == {"do": "signup", "activity": later, "companions": 1}
    assert "本人+1位家属" in c.ask(action=tap)
    out = c.ask("1")  # the question was answered by the tap: 1 is not a pick any more
    assert "报名成功" not in out
    with bot.db.Session() as s:
        assert [(r.activity_id, r.companions) for r in s.scalars(select(Signup))] == [(later, 1)]


def test_one_match_signs_up_and_count_words_are_not_activity_numbers(bot, chat_with):
    make_activity(bot, title="秋游", capacity=10)
    pp = make_activity(bot, title="乒乓球比赛", capacity=10)
    me = add_member(bot, "甲")
    assert "报名成功" in chat_with(me).ask("乒乓球我报一个")  # 一个 is one person, not activity 1
    assert mine(bot, me) == [(pp, "confirmed")]


def test_a_new_message_leaves_the_numbered_question(bot, chat_with, badminton):
    me = add_member(bot, "甲")
    c = chat_with(me)
    c.ask("报名 羽毛球")
    out = c.ask("我的报名")
    assert "您还没有报名任何活动" in out
    assert "没看懂" not in c.ask("1") and mine(bot, me) == []  # no question open any more: not a pick
    c.ask("报名 羽毛球")
    assert c.ask("取消") == LEFT_DIALOG
    assert mine(bot, me) == []


@pytest.mark.parametrize(
    "text", ["帮我把羽毛球的报名取消了", "羽毛球报名取消", "羽毛球的报名帮我取消", "取消羽毛球报名"]
)
def test_cancel_and_signup_words_in_any_order_mean_cancel(bot, chat_with, text):
    aid = make_activity(bot, title="羽毛球赛", starts_at=local(5))
    make_activity(bot, title="秋游", starts_at=local(6))
    me = add_member(bot, "甲")
    c = chat_with(me)
    c.ask(f"报名 {aid}")
    c.ask("报名 秋游")
    out = c.ask(text)
    assert "您是想办哪一件事" not in out
    assert "已取消您的“羽毛球赛”报名" in out
    assert sorted(mine(bot, me)) == sorted([(aid, "cancelled"), (aid + 1, "confirmed")])


def test_cancel_with_two_of_the_same_title_asks_which(bot, chat_with, badminton):
    sat, later = badminton
    me = add_member(bot, "甲")
    c = chat_with(me)
    c.ask(f"报名 {sat}")
    c.ask(f"报名 {later}")
    out = c.ask("帮我把羽毛球的报名取消了")
    assert "您想取消哪一个活动的报名" in out and "羽毛球赛" in out and "羽毛球培训" in out
    assert mine(bot, me) == [(sat, "confirmed"), (later, "confirmed")]
    assert "已取消您的“羽毛球赛”报名" in c.ask("1")
    c.ask(f"报名 {sat}")
    assert "已取消您的“羽毛球培训”报名" in c.ask("下周六的羽毛球不去了")  # the date decides


def test_cancel_with_one_signup_and_no_name_still_asks(bot, chat_with):
    aid = make_activity(bot, title="秋游")
    me = add_member(bot, "甲")
    c = chat_with(me)
    c.ask(f"报名 {aid}")
    out = c.ask("报名取消")
    assert "想取消哪一个" in out and "回复 1" in out
    assert mine(bot, me) == [(aid, "confirmed")]
    assert "已取消" in c.ask("1")


def test_a_date_lists_that_days_activities(bot, chat_with):
    make_activity(bot, title="健步走", starts_at=local(9, 8))
    make_activity(bot, title="插花讲座", starts_at=local(9, 14))
    make_activity(bot, title="羽毛球赛", starts_at=local(5))
    c = chat_with(add_member(bot, "甲"))
    out = c.ask("下周三有什么活动")
    assert "12月9日（周三）的活动" in out and "健步走" in out and "插花讲座" in out
    assert "羽毛球赛" not in out
    out = c.ask("明天有啥活动")
    assert "12月2日（周三）没有可报名的活动" in out and "羽毛球赛" in out


def test_a_date_inside_a_title_is_part_of_the_title(bot, chat_with):
    aid = make_activity(bot, title="3.8节插花", starts_at=local(20))
    c = chat_with(add_member(bot, "甲"))
    assert "报名成功" in c.ask("报名3.8节插花")
    assert signups(bot, aid) == [("甲", "confirmed", 0)]


# ---- the corpus in ../shared/notes/phrasings.md (activities) ----------------------------------------------


@pytest.fixture
def corpus(bot):
    """Activities 1-4 as the notes use them: 乒乓球, 秋游 (with family), 羽毛球, 健步走."""
    ids = {
        "乒乓球": make_activity(bot, title="乒乓球比赛", capacity=20),
        "秋游": make_activity(bot, title="秋游·千岛湖", capacity=20, companions_max=3),
        "羽毛球": make_activity(bot, title="羽毛球赛", capacity=20, starts_at=local(5)),
        "健步走": make_activity(bot, title="健步走", capacity=20),
    }
    assert ids["健步走"] == 4
    return ids


@pytest.mark.parametrize("text", ["有什么活动", "这个月工会搞啥活动", "活动报名入口在哪", "看看活动"])
def test_corpus_list(bot, chat_with, corpus, text):
    out = chat_with(add_member(bot, "甲")).ask(text)
    assert "可报名的活动" in out and "乒乓球比赛" in out and "秋游" in out


@pytest.mark.parametrize(
    ("text", "what", "companions"),
    [
        ("报名乒乓球", "乒乓球", 0),
        ("乒乓球比赛我参加", "乒乓球", 0),
        ("算我一个，乒乓球", "乒乓球", 0),
        ("乒乓球 +1", "乒乓球", 0),
        ("我报乒乓球，谢谢！", "乒乓球", 0),
        ("报名４", "健步走", 0),
        ("报名第四个", "健步走", 0),
        ("报名 四号活动", "健步走", 0),
        ("报4", "健步走", 0),
        ("秋游报名，我和爱人、女儿", "秋游", 2),
        ("秋游带1个家属", "秋游", 1),
        ("秋游我一个人去", "秋游", 0),
        ("我想报名周六的羽毛球赛", "羽毛球", 0),
        ("羽毛球我报一个", "羽毛球", 0),
    ],
)
def test_corpus_signup(bot, chat_with, corpus, text, what, companions):
    me = add_member(bot, "甲")
    out = chat_with(me).ask(text)
    assert "报名成功" in out, out
    with bot.db.Session() as s:
        rows = [(r.activity_id, r.companions) for r in s.scalars(select(Signup))]
    assert rows == [(corpus[what], companions)]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("帮我取消乒乓球", "乒乓球"),
        ("乒乓球去不了了", "乒乓球"),
        ("不参加乒乓球了，临时排班", "乒乓球"),
        ("退掉秋游", "秋游"),
        ("帮我把羽毛球的报名取消了", "羽毛球"),
    ],
)
def test_corpus_cancel(bot, chat_with, corpus, text, what):
    me = add_member(bot, "甲")
    c = chat_with(me)
    for aid in corpus.values():
        c.ask(f"报名 {aid}")
    out = c.ask(text)
    assert "已取消您的" in out, out
    assert [aid for aid, status in mine(bot, me) if status == "cancelled"] == [corpus[what]]


@pytest.mark.parametrize("text", ["我报了啥", "我的活动", "查下我报名情况"])
def test_corpus_mine(bot, chat_with, corpus, text):
    c = chat_with(add_member(bot, "甲"))
    c.ask("报名乒乓球")
    out = c.ask(text)
    assert "我的报名" in out and "乒乓球比赛" in out


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("乒乓球还有位置吗", "还剩 19 个名额"),
        ("秋游几号出发", "时间："),
        ("秋游截止到什么时候", "报名截止："),
    ],
)
def test_corpus_questions_about_one_activity(bot, chat_with, corpus, text, expect):
    c = chat_with(add_member(bot, "甲"))
    chat_with(add_member(bot, "乙")).ask("报名乒乓球")
    out = c.ask(text)
    assert expect in out, out
    assert ("乒乓球比赛" if "乒乓球" in text else "秋游") in out


def test_corpus_group_leader_and_organiser(bot, chat_with, corpus):
    leader = add_member(bot, "组长", roles=("group_leader",))
    add_member(bot, "刘桂英")
    add_member(bot, "王秀珍")
    add_member(bot, "李建国")
    c = chat_with(leader)
    assert "✓ 刘桂英：已报名" in c.ask("帮组里的老刘报个秋游")
    out = c.ask(f"代报 {corpus['健步走']} 刘桂英 王秀珍")
    assert "✓ 刘桂英：已报名" in out and "✓ 王秀珍：已报名" in out
    out = c.ask("我们组谁还没报秋游")
    assert "王秀珍" in out and "李建国" in out and "刘桂英" not in out
    clerk = chat_with(add_member(bot, "干事", roles=("clerk",), group="工会办公室", branch="机关分会"))
    out = clerk.ask("秋游名单")
    assert "秋游·千岛湖 报名名单" in out and "刘桂英" in out
    out = clerk.ask("导出秋游报名表")
    assert "刘桂英" in out and "/admin/activities/2/export" in out
    out = clerk.ask("秋游还有谁没报")
    assert "王秀珍" in out and "刘桂英" not in out
