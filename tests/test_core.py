"""The core: routing, fallback, ambiguity, dialogs (expiry, 取消), dedupe, group rules, crashes, the outbox."""

from datetime import timedelta

import pytest
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select

from bot import outbox
from bot.adapters import sandbox
from bot.clock import Clock
from bot.core import LEFT_DIALOG
from bot.message import Button, Card, ChatType, IncomingMessage
from bot.outbox import SendResult
from bot.router import Router
from models.messaging import Dialog, InboundMessage, OutboxMessage, SandboxMessage
from tests.conftest import add_member


def test_router_prefers_longer_triggers_and_passes_args():
    r = Router()

    @r.handler("报名")
    def signup(ctx):
        """报名活动"""

    @r.handler("取消报名")
    def cancel(ctx):
        """取消报名"""

    best = r.matches("帮我 取消报名 3")[0]
    assert best.route.name == "cancel" and best.args == "帮我 3"
    assert r.matches("我要报名羽毛球赛")[0].args == "我要 羽毛球赛"
    assert r.matches("今天天气不错") == []


def test_words_together_in_any_order_outscore_each_word_alone():
    r = Router()

    @r.handler("报名")
    def signup(ctx):
        """报名活动"""

    @r.handler("取消", together=(("取消", "报名"),))
    def cancel(ctx):
        """取消报名"""

    for text in ("帮我把羽毛球的报名取消了", "羽毛球报名取消", "取消羽毛球报名"):
        first, second = r.matches(text)
        assert first.route.name == "cancel" and first.score > second.score, text
    assert r.matches("帮我把羽毛球的报名取消了")[0].args == "帮我把羽毛球的 了"
    assert r.matches("报名羽毛球")[0].route.name == "signup"  # one word alone: no combination
    assert r.matches("取消")[0].route.name == "cancel"


def test_real_router_reads_cancel_plus_signup_as_cancelling(bot):
    for text in ("帮我把羽毛球的报名取消了", "羽毛球报名取消", "羽毛球的报名帮我取消"):
        first, *rest = bot.router.matches(text)
        assert first.route.name == "cancel" and all(m.score < first.score for m in rest), text


def test_fallback_menu_lists_what_can_be_typed(bot, chat_with):
    chat = chat_with(add_member(bot))
    reply = chat.ask("今天天气不错")
    assert "没太明白" in reply and "帮助" in reply and "我的信息" in reply


def test_small_talk_gets_no_answer(bot, chat_with):
    chat = chat_with(add_member(bot))
    for text in ["好的", "谢谢", "收到", "👍", "哈哈"]:
        assert chat.say(text) == []


def test_ambiguous_sentence_is_asked_back(bot, chat_with):
    @bot.router.handler("测试甲")
    def first(ctx):
        """甲事项"""
        ctx.reply("甲")

    @bot.router.handler("测试乙")
    def second(ctx):
        """乙事项"""
        ctx.reply("乙")

    try:
        reply = chat_with(add_member(bot)).ask("测试甲 还是 测试乙")
        assert "哪一件" in reply and "甲事项" in reply and "乙事项" in reply
    finally:
        bot.router.routes = [r for r in bot.router.routes if r.name not in {"first", "second"}]


@pytest.fixture
def own_routes(bot):
    """The router is shared by every app: what a test registers is gone afterwards."""
    r = bot.router
    saved = list(r.routes), dict(r.dialogs), dict(r.actions)
    yield r
    r.routes, r.dialogs, r.actions = saved


def test_free_text_is_kept_as_typed_while_matching_uses_the_normal_form(bot, chat_with, own_routes):
    @own_routes.handler("测试原话")
    def echo(ctx):
        ctx.reply(f"{ctx.args}|{ctx.raw_args}|{ctx.words}")

    m = add_member(bot)
    said = "@工会小助手 测试原话：先写一个说明，三号见！"
    assert chat_with(m, group_id=m.group_id).ask(said) == (
        "先写1个说明,3号见|先写一个说明，三号见！|测试原话：先写一个说明，三号见！"
    )
    assert chat_with(m).ask("我们（二组）测试原话　第二个　") == (
        "我们(二组) 2个|我们（二组） 第二个|我们（二组）测试原话　第二个"
    )


def test_deferred_message_keeps_the_typed_words(bot, chat_with, own_routes):
    @own_routes.handler("测试原话")
    def echo(ctx):
        ctx.reply(ctx.raw_args)

    chat = chat_with(add_member(bot))
    msg = sandbox.incoming(bot, user_id=chat.user_id, chat_id=chat.chat_id, text="测试原话 三号，见！")
    assert bot.handle(msg, defer=True).deferred
    assert bot.process_pending() == 1
    assert chat.inbox()[0]["text"] == "三号，见！"


def test_a_deferred_message_whose_database_error_would_repeat_is_failed_not_retried(any_app, own_routes):
    """A constraint violation is not an outage: the worker marks the row failed and apologises, instead of
    picking it again on every pass (which would also hold up the outbox behind it)."""
    from sqlalchemy import text

    bot = any_app.extensions["bot"]

    @own_routes.handler("测试约束")
    def clash(ctx):
        ctx.session.execute(text("INSERT INTO inbound_message (id, platform, dedupe_key) VALUES (1, 'x', 'y')"))

    from models.member import Member, link_identity

    m = add_member(bot)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "sandbox", "u-clash")
    msg = sandbox.incoming(bot, user_id="u-clash", chat_id="u-clash", text="测试约束")
    assert bot.handle(msg, defer=True).deferred
    assert bot.process_pending() == 1
    assert bot.process_pending() == 0
    with bot.db.Session() as s:
        assert s.scalar(select(InboundMessage.status)) == "failed"
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1  # the apology


def test_dispatch_handles_a_message_afresh_in_the_same_transaction(bot, chat_with, own_routes):
    @own_routes.handler("测试问题")
    def question(ctx):
        ctx.start_dialog("t_pick", "pick")
        ctx.reply("请回复 1")

    @own_routes.dialog("t_pick")
    def pick(ctx):
        ctx.end_dialog()
        if ctx.text == "1":
            ctx.reply("选了 1")
            return
        ctx.bot.dispatch(ctx)  # the member moved on

    chat = chat_with(add_member(bot))
    chat.ask("测试问题")
    assert "工号" in chat.ask("我的信息")  # answered as a fresh message, the question closed
    assert "选了" not in chat.ask("1")
    chat.ask("测试问题")
    assert chat.ask("1") == "选了 1"
    with bot.db.Session() as s:
        handlers = list(s.scalars(select(InboundMessage.handler).order_by(InboundMessage.id)))
        assert s.scalar(select(func.count(Dialog.id))) == 0
    assert handlers[1] == "my_info"


def test_rehearse_renders_a_reply_again_and_keeps_nothing(bot, chat_with, own_routes):
    @own_routes.handler("测试演练")
    def rehearsed(ctx):
        ctx.start_dialog("t_any", "one")  # an effect that must not stay
        count = ctx.session.scalar(select(func.count(Dialog.id)))
        ctx.reply(f"第{count}次：{ctx.raw_args}")

    chat = chat_with(add_member(bot))
    assert chat.ask("测试演练 三号") == "第1次：三号"
    with bot.db.Session() as s:
        row = s.scalar(select(InboundMessage).where(InboundMessage.handler == "rehearsed"))
        s.execute(sa_delete(Dialog))
        s.commit()
    msg = IncomingMessage.from_envelope(row.envelope)
    assert [r.text for r in bot.rehearse(msg, "rehearsed")] == ["第1次：三号"]
    assert bot.rehearse(msg, "my_info") == []  # only the handler that answered it is run again
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(Dialog.id))) == 0


def _dialog_router(bot):
    @bot.router.handler("测试对话")
    def start(ctx):
        ctx.start_dialog("t", "one")
        ctx.reply("第一步")

    @bot.router.dialog("t")
    def step(ctx):
        ctx.advance("two", last=ctx.text)
        ctx.reply(f"收到 {ctx.text}")


def test_dialog_state_lives_in_the_database_and_cancel_leaves_it(bot, chat_with):
    _dialog_router(bot)
    chat = chat_with(add_member(bot))
    assert chat.ask("测试对话") == "第一步"
    assert chat.ask("帮助") == "收到 帮助"  # inside a dialog every message goes to its step
    with bot.db.Session() as s:
        d = s.scalar(select(Dialog))
        assert (d.name, d.step, d.data) == ("t", "two", {"last": "帮助"})
    assert chat.ask("取消") == LEFT_DIALOG
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(Dialog.id))) == 0


def test_dialog_expires_after_thirty_minutes(bot, chat_with):
    _dialog_router(bot)
    chat = chat_with(add_member(bot))
    chat.ask("测试对话")
    bot.clock.offset = timedelta(minutes=31)
    reply = chat.ask("我的信息")
    assert "超时" in reply and "工号" in reply  # told, and the message is handled normally


def test_duplicate_delivery_is_processed_once(bot):
    m = add_member(bot)
    chat_id = sandbox.user_id_for(m)
    from models.member import link_identity

    with bot.db.transaction() as s:
        link_identity(s, s.get(type(m), m.id), "sandbox", chat_id)
    msg = sandbox.incoming(bot, user_id=chat_id, chat_id=chat_id, text="我的信息", message_id="same-id")
    first, second = bot.handle(msg), bot.handle(msg)
    assert first.inbound_id and not first.duplicate
    assert second.duplicate and second.replies == []
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(InboundMessage.id))) == 1
        assert s.scalar(select(func.count(OutboxMessage.id))) == 1


def test_group_messages_need_a_mention(bot):
    base = dict(platform="sandbox", chat_type=ChatType.GROUP, chat_id="g1", user_id="u1", text="帮助")
    assert bot.handle(IncomingMessage(message_id="a", mentioned=False, **base)).ignored
    assert not bot.handle(IncomingMessage(message_id="b", mentioned=True, **base)).ignored
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(InboundMessage.id))) == 1


def test_group_chat_refuses_private_matters(bot, chat_with):
    m = add_member(bot)
    chat = chat_with(m, group_id=m.group_id)
    assert "私聊" in chat.ask("我的信息")


def test_handler_crash_rolls_back_keeps_message_and_apologises(bot, chat_with):
    @bot.router.handler("测试崩溃")
    def boom(ctx):
        ctx.session.add(
            Dialog(
                platform="x",
                chat_id="x",
                user_id="x",
                name="x",
                step="x",
                data={},
                expires_at=ctx.clock.now(),
            )
        )
        raise RuntimeError("bug")

    chat = chat_with(add_member(bot))
    assert "出了点问题" in chat.ask("测试崩溃")
    with bot.db.Session() as s:
        row = s.scalar(select(InboundMessage))
        assert row.status == "failed" and row.envelope["text"] == "测试崩溃"
        assert s.scalar(select(func.count(Dialog.id))) == 0  # its half-done effects were rolled back


def test_deferred_message_is_processed_by_the_worker(bot, chat_with):
    m = add_member(bot)
    chat = chat_with(m)
    msg = sandbox.incoming(bot, user_id=chat.user_id, chat_id=chat.chat_id, text="我的信息")
    assert bot.handle(msg, defer=True).deferred
    assert chat.inbox() == []
    assert bot.process_pending() == 1
    assert "工号" in chat.inbox()[0]["text"]
    assert bot.process_pending() == 0


class FlakySender:
    """A platform that fails the first `failures` calls (network down), then works."""

    def __init__(self, real, failures):
        self.real, self.failures, self.calls = real, failures, 0

    def send(self, row):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("platform unreachable")
        return self.real.send(row)


def test_outbox_retries_with_backoff_and_delivers_exactly_once(bot):
    flaky = FlakySender(bot.senders["sandbox"], failures=2)
    bot.senders["sandbox"] = flaky
    with bot.db.transaction() as s:
        assert outbox.enqueue(
            s,
            platform="sandbox",
            target_kind="user",
            target_id="u",
            message=Card("t", ["x"], [Button("报名", {"do": "signup", "activity": 1})]),
            key="k1",
            now=bot.clock.now(),
        )
        assert not outbox.enqueue(
            s,
            platform="sandbox",
            target_kind="user",
            target_id="u",
            message=Card("t", []),
            key="k1",
            now=bot.clock.now(),
        )  # same key: no second row
    assert outbox.deliver_due(bot) == 0
    assert outbox.deliver_due(bot) == 0  # not due yet: backing off
    for minutes in (1, 2, 3):
        bot.clock.offset = timedelta(minutes=minutes)
        outbox.deliver_due(bot)
    with bot.db.Session() as s:
        row = s.scalar(select(OutboxMessage))
        assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
        assert s.scalar(select(func.count(SandboxMessage.id))) == 1
    bot.clock.offset = timedelta(hours=1)
    assert outbox.deliver_due(bot) == 0 and flaky.calls == 3


def test_outbox_gives_up_into_dead_letters(bot):
    class Gone:
        def send(self, row):
            return SendResult(False, "user left", permanent=True)

    bot.senders["sandbox"] = Gone()
    with bot.db.transaction() as s:
        outbox.enqueue(
            s,
            platform="sandbox",
            target_kind="user",
            target_id="u",
            message=Card("t"),
            key="k",
            now=bot.clock.now(),
        )
    outbox.deliver_due(bot)
    with bot.db.Session() as s:
        row = s.scalar(select(OutboxMessage))
        assert (row.status, row.last_error) == ("dead", "user left")


def test_outbox_lease_recovers_rows_of_a_crashed_worker(bot):
    with bot.db.transaction() as s:
        outbox.enqueue(
            s,
            platform="sandbox",
            target_kind="user",
            target_id="u",
            message=Card("t"),
            key="k",
            now=bot.clock.now(),
        )
    claimed = outbox.claim(bot)  # a worker claims and dies before sending
    assert len(claimed) == 1 and outbox.claim(bot) == []
    bot.clock.offset = outbox.LEASE + timedelta(seconds=1)
    assert outbox.deliver_due(bot) == 1


def test_clock_today_is_in_the_union_zone():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    import time_machine

    with time_machine.travel(datetime(2026, 11, 25, 17, 30, tzinfo=UTC), tick=False):
        clock = Clock(ZoneInfo("Asia/Shanghai"))
        assert str(clock.today()) == "2026-11-26"  # 01:30 next day in Shanghai


def test_config_errors_name_the_variable():
    from config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="TIMEZONE"):
        load_settings({"TIMEZONE": "Mars/Base"})
    with pytest.raises(ConfigError, match="SANDBOX_ENABLED"):
        load_settings(
            {
                "APP_ENV": "production",
                "SANDBOX_ENABLED": True,
                "SECRET_KEY": "x" * 40,
                "DATA_KEY": "a" * 43 + "=",
            }
        )
    with pytest.raises(ConfigError, match="DATA_KEY"):
        load_settings({"DATA_KEY": "short"})
    with pytest.raises(ConfigError, match="WECOM_AES_KEY"):
        load_settings({"WECOM_AES_KEY": "abc"})
    prod = load_settings({"APP_ENV": "production", "SECRET_KEY": "x" * 40, "DATA_KEY": "a" * 43 + "="})
    assert prod.SANDBOX_ENABLED is False and not prod.wecom_enabled and not prod.feishu_enabled
    assert load_settings({}).SANDBOX_ENABLED is True


def test_run_route_keeps_the_core_checks(bot):
    """A handler that hands a message to another route (“去不了” for a meeting) goes through Bot.run_route, which
    keeps private-only routes out of group chats and strangers out of member routes."""
    from bot.context import Context
    from models import Member

    member = add_member(bot, "甲")
    match = next(m for m in bot.router.matches("我的会议") if not m.route.group_ok)
    in_group = sandbox.incoming(bot, user_id="u1", chat_id=sandbox.group_chat_id(1), text="我的会议")
    private = sandbox.incoming(bot, user_id="u1", chat_id="u1", text="我的会议")
    with bot.db.transaction() as s:
        ctx = Context(bot=bot, session=s, msg=in_group, member=s.get(Member, member.id))
        bot.run_route(ctx, match)
        stranger = Context(bot=bot, session=s, msg=private, member=None)
        bot.run_route(stranger, match)
        own = Context(bot=bot, session=s, msg=private, member=s.get(Member, member.id))
        bot.run_route(own, match)
    assert "请私聊我办理" in ctx.replies[0].text and ctx.handler_name == match.route.name
    assert "工号" in stranger.replies[0].text  # asked to bind first
    assert "请私聊" not in own.replies[0].text and "工号" not in own.replies[0].text
