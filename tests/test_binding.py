"""Binding a chat account to a roster member; limited guessing, no roster enumeration."""

from sqlalchemy import select

from bot.core import LEFT_DIALOG
from models.member import PlatformIdentity
from tests.conftest import add_member


def test_bind_with_name_then_recognised(bot, chat_with):
    add_member(bot, name="王秀珍", employee_no="20001", phone="13900005678")
    chat = chat_with(user_id="wx-new-user")
    assert "工号和姓名" in chat.ask("活动")  # any request from a stranger starts binding
    assert "绑定成功" in chat.ask("20001 王秀珍")
    assert "工号：20001" in chat.ask("我的信息")


def test_bind_with_phone_tail_and_full_width_input(bot, chat_with):
    add_member(bot, name="刘桂英", employee_no="20002", phone="13900005678")
    chat = chat_with(user_id="wx-2")
    chat.ask("你好")
    assert "绑定成功" in chat.ask("工号：２０００２，手机后四位５６７８")


def test_wrong_answers_are_limited_and_do_not_reveal_which_part_was_wrong(bot, chat_with):
    add_member(bot, name="李娜", employee_no="20003")
    chat = chat_with(user_id="wx-3")
    chat.ask("你好")
    unknown_number = chat.ask("99999 李娜")
    wrong_name = chat.ask("20003 张三")
    assert unknown_number.replace("4", "N") == wrong_name.replace("3", "N")  # same words whatever was wrong
    for _ in range(2):
        chat.ask("20003 张三")
    assert "次数已用完" in chat.ask("20003 张三")
    chat.ask("你好")
    assert "次数过多" in chat.ask("20003 李娜")  # even the right answer is refused for 24 h
    bot.clock.offset = __import__("datetime").timedelta(hours=25)
    chat.ask("你好")
    assert "绑定成功" in chat.ask("20003 李娜")


def test_member_already_bound_elsewhere_is_refused(bot, chat_with):
    m = add_member(bot, name="陈静", employee_no="20004")
    chat_with(m)  # bound to the sandbox account sb-20004
    other = chat_with(user_id="sb-impostor")
    other.ask("你好")
    assert "另一个账号" in other.ask("20004 陈静")
    with bot.db.Session() as s:
        assert s.scalar(select(PlatformIdentity).where(PlatformIdentity.platform_user_id == "sb-impostor")) is None


def test_binding_asks_for_the_right_format_and_can_be_cancelled(bot, chat_with):
    chat = chat_with(user_id="wx-5")
    chat.ask("你好")
    assert "格式" in chat.ask("我不知道")
    assert chat.ask("取消") == LEFT_DIALOG
    assert "工号和姓名" in chat.ask("我的信息")


def test_unbound_member_in_a_group_is_sent_to_a_private_chat(bot, chat_with):
    chat = chat_with(user_id="wx-6", group_id=1)
    assert "私聊" in chat.ask("活动")
