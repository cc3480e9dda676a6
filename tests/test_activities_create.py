"""发布活动 in chat: six short questions, then one menu of optional settings (说明, 结束时间, 报名问题, 候补,
不能取消的时间, 提醒未报名) that “好” skips; audiences of several branches or groups, women, retirees."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import select

from bot.core import LEFT_DIALOG
from models.activity import Activity, Signup
from models.member import Branch, Group
from tests.conftest import add_member

# Tuesday 2026-12-01 10:00 Asia/Shanghai
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as t:
        yield t


def the_activity(bot) -> Activity:
    with bot.db.Session() as s:
        a = s.scalar(select(Activity))
        assert a is not None
        s.expunge(a)
        return a


def start(c, answers=("乒乓球比赛", "12月12日 9点", "体育馆", "16 每人带1人", "12月10日 18点")) -> str:
    out = c.ask("发布活动")
    for text in answers:
        out = c.ask(text)
    return out


def test_the_short_path_is_six_answers_and_好(bot, chat_with):
    c = chat_with(add_member(bot, "组长", roles=("group_leader",)))
    assert "1/5 活动名称" in c.ask("发布活动")  # a group leader has no audience question: five steps
    for text in ("跳绳比赛", "12月10日 下午3点", "跳过", "不限"):
        c.ask(text)
    menu = c.ask("默认")
    assert "“跳绳比赛”就快发布好了" in menu and "地点：未定" in menu and "名额：不限" in menu
    assert "1 说明" in menu and "6 截止前一天提醒未报名的人：关" in menu
    assert "活动已发布" in c.ask("好")
    a = the_activity(bot)
    assert (a.place, a.capacity, a.description, a.ends_at, a.questions) == ("", None, "", None, [])
    assert a.waitlist_enabled and not a.remind_unanswered and a.cancel_cutoff_hours is None


def test_every_optional_setting(bot, chat_with):
    clerk = add_member(bot, "干事", roles=("clerk",), group="工会办公室", branch="机关分会")
    add_member(bot, "内科甲")
    add_member(bot, "外科甲", branch="外科分会", group="外科小组")
    c = chat_with(clerk)
    out = start(c)
    assert "6/6 哪些人可以报名" in out and "6. 指定几个分会" in out and "7. 指定几个小组" in out
    out = c.ask("6")
    assert "请选择分会" in out and "内科分会" in out and "外科分会" in out
    assert "没找到“骨科”" in c.ask("骨科")
    out = c.ask("内科 外科")
    assert "对象：指定分会（内科分会、外科分会）" in out

    assert "请写活动说明" in c.ask("1")
    assert "说明：自带球拍" in c.ask("自带球拍")
    assert "结束时间要晚于开始时间" in c.ask("2 8:00")
    assert "12月12日 09:00–12月12日 17:00" in c.ask("2 17:00")  # a time alone: the same day
    assert "问题：选项/选项" in c.ask("3")
    assert "问题：项目（单打/双打）" in c.ask("项目：单打/双打")
    assert "请写成“问题：选项/选项”" in c.ask("3 组别：甲")  # one option is no choice
    out = c.ask("3 衣服尺码")
    assert "问题：衣服尺码" in out and "报名问题（2/3）" in out
    assert "满员后候补：关" in c.ask("4")
    assert "几小时内不能取消" in c.ask("5")
    assert "不能取消的时间：开始前 24 小时" in c.ask("24")
    assert "提醒未报名的人：开" in c.ask("6")
    assert "没看懂" in c.ask("9")
    assert "活动已发布" in c.ask("发布")

    a = the_activity(bot)
    with bot.db.Session() as s:
        branches = {b.name: b.id for b in s.scalars(select(Branch))}
    assert a.title == "乒乓球比赛" and a.place == "体育馆" and a.capacity == 16 and a.companions_max == 1
    assert bot.clock.fmt(a.starts_at) == "12月12日 09:00" and bot.clock.fmt(a.ends_at) == "12月12日 17:00"
    assert bot.clock.fmt(a.signup_deadline) == "12月10日 18:00"
    assert a.description == "自带球拍"
    assert a.questions == [
        {"key": "q1", "label": "项目", "options": ["单打", "双打"]},
        {"key": "q2", "label": "衣服尺码", "options": []},
    ]
    assert not a.waitlist_enabled and a.cancel_cutoff_hours == 24 and a.remind_unanswered
    assert a.audience_kind == "branches" and a.audience_ids == [branches["内科分会"], branches["外科分会"]]
    assert a.created_by_id == clerk.id

    # the questions are asked when members sign up
    out = chat_with(add_member(bot, "会员")).ask(f"报名 {a.id}")
    assert "项目" in out and "1. 单打" in out


def test_names_descriptions_and_questions_are_kept_as_typed(bot, chat_with):
    """The router sees 一个 as 1个 and ， as ,: the activity keeps what the organiser wrote."""
    c = chat_with(add_member(bot, "组长", roles=("group_leader",)))
    title, place = "三号楼第一届乒乓球赛（友谊赛）", "三号楼二层活动室"
    description = "先写一个说明：自带球拍，穿运动鞋！"
    start(c, (title, "12月12日 9点", place, "不限", "默认"))
    assert f"说明：{description}" in c.ask(f"1 {description}")
    assert "问题：项目（单打（一人）/双打（两人））" in c.ask("3 项目：单打（一人）/双打（两人）")
    c.ask("3 备注")
    assert "活动已发布" in c.ask("好")
    a = the_activity(bot)
    assert (a.title, a.place, a.description) == (title, place, description)
    assert a.questions[0] == {"key": "q1", "label": "项目", "options": ["单打（一人）", "双打（两人）"]}
    member = chat_with(add_member(bot, "会员"))
    assert "1. 单打（一人）" in member.ask(f"报名 {a.id}")
    member.ask("双打")  # matched against the option's normal form
    assert "报名成功" in member.ask("第一次参加，三号到")
    with bot.db.Session() as s:
        (answers,) = s.scalars(select(Signup.answers))
    assert answers == {"q1": "双打（两人）", "q2": "第一次参加，三号到"}


def test_skip_undo_limits_and_cancel(bot, chat_with):
    c = chat_with(add_member(bot, "组长", roles=("group_leader",)))
    start(c)
    c.ask("1 记得带水杯")
    assert "请写活动说明" in c.ask("1")
    assert "说明：记得带水杯" in c.ask("跳过")  # 跳过 leaves the setting as it was
    assert "不能取消的时间：开始前 12 小时" in c.ask("5 12")
    assert "不能取消的时间：未设" in c.ask("5 0")
    for q in ("甲", "乙", "丙"):
        c.ask(f"3 {q}")
    assert "最多 3 个报名问题" in c.ask("3")
    assert c.ask("取消") == LEFT_DIALOG  # 取消 leaves the dialog at any step; nothing is published
    with bot.db.Session() as s:
        assert s.scalar(select(Activity)) is None
    start(c)
    c.ask("2")
    assert c.ask("取消") == LEFT_DIALOG
    assert "需要小组长" in chat_with(add_member(bot, "会员")).ask("发布活动")


@pytest.mark.parametrize(("choice", "kind"), [("2", "women"), ("3", "retirees"), ("1", "all")])
def test_clerk_audiences(bot, chat_with, choice, kind):
    c = chat_with(add_member(bot, "干事", roles=("clerk",), group="工会办公室", branch="机关分会"))
    out = start(c)
    assert "1. 全体会员" in out and "2. 女职工" in out and "3. 离退休职工" in out
    c.ask(choice)
    assert "活动已发布" in c.ask("好")
    assert the_activity(bot).audience_kind == kind


def test_branch_chair_picks_groups_of_their_own_branch(bot, chat_with):
    chair = add_member(bot, "内科主席", roles=("branch_chair",))
    add_member(bot, "消化甲", group="消化科小组")
    add_member(bot, "外科甲", branch="外科分会", group="外科小组")
    c = chat_with(chair)
    out = start(c)
    assert "本分会（内科分会）" in out and "本分会的几个小组" in out and "全体会员" not in out
    out = c.ask("3")
    assert "心内科小组" in out and "消化科小组" in out and "外科小组" not in out
    assert "没找到“外科小组”" in c.ask("外科小组")
    assert "对象：指定小组（心内科小组、消化科小组）" in c.ask("1 2")
    c.ask("好")
    with bot.db.Session() as s:
        groups = {g.name: g.id for g in s.scalars(select(Group))}
    a = the_activity(bot)
    assert a.audience_kind == "groups" and a.audience_ids == [groups["心内科小组"], groups["消化科小组"]]
