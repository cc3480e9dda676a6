"""End to end through the Flask app and the fake WeCom API: binding, 我的信息, help, activities by text and by
card click (button flipped), the same in a group chat through the AI bot, duplicates, token refresh, 45009."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot import outbox
from bot.adapters import wecom
from bot.adapters.wecom_api import CARD_HINT
from bot.message import Text
from models.messaging import Chat
from models.wecom import active_alerts
from tests.conftest import add_member, make_app
from tests.fake_wecom import FakeWeCom
from tests.wecom_helpers import (
    aibot_request,
    aibot_text,
    app_request,
    decrypt_aibot_reply,
    decrypt_reply,
    event_xml,
    make_activity,
    settings_for,
    text_xml,
)


@pytest.fixture
def fake():
    server = FakeWeCom().start()
    yield server
    server.stop()


@pytest.fixture
def wapp(tmp_path, fake):
    app = make_app(f"sqlite:///{tmp_path / 'wecom.db'}", **settings_for(fake))
    yield app
    app.extensions["db"].dispose()


class Phone:
    """One WeCom member's private chat with the app, seen from the fake API."""

    def __init__(self, app, fake, userid: str):
        self.app, self.fake, self.userid = app, fake, userid
        self.client = app.test_client()
        self.bot = app.extensions["bot"]
        self.seen = 0

    def send(self, text: str, msg_id: str | None = None):
        query, body = app_request(text_xml(self.userid, text, msg_id=msg_id))
        resp = self.client.post(f"/wecom/callback?{query}", data=body, content_type="text/xml")
        assert resp.status_code == 200 and resp.get_data() == b""
        return resp

    def click(self, key: str, task_id: str, ts: int = 1700000000):
        inner = event_xml(
            self.userid, "template_card_event", key, ts=ts, TaskId=task_id, CardType="button_interaction"
        )
        query, body = app_request(inner)
        resp = self.client.post(f"/wecom/callback?{query}", data=body, content_type="text/xml")
        assert resp.status_code == 200
        return decrypt_reply(resp.get_data()) if resp.get_data() else None

    def inbox(self) -> list[dict]:
        outbox.drain(self.bot, platform="wecom")
        mine = [b for b in self.fake.sent() if b["touser"] == self.userid]
        new, self.seen = mine[self.seen :], len(mine)
        return new

    def ask(self, text: str) -> str:
        self.send(text)
        return "\n".join(render(b) for b in self.inbox())


def render(body: dict) -> str:
    if body["msgtype"] == "text":
        return body["text"]["content"]
    card = body["template_card"]
    buttons = " ".join(f"[{b['text']}]" for b in card["button_list"])
    return "\n".join([card["main_title"]["title"], card.get("sub_title_text", ""), buttons])


def test_member_binds_asks_and_signs_up_in_private_chat(wapp, fake):
    bot = wapp.extensions["bot"]
    add_member(bot, name="张三", employee_no="10086")
    table = make_activity(bot, "乒乓球比赛")
    hike = make_activity(bot, "秋季登山")
    phone = Phone(wapp, fake, "zhangsan")

    assert "工号" in phone.ask("你好")
    assert "绑定成功" in phone.ask("10086 张三")
    info = phone.ask("我的信息")
    assert "姓名：张三" in info and "工号：10086" in info and "企业微信" in info
    assert "张三您好" in phone.ask("帮助")

    # The list arrives as a template card with sign-up buttons.
    phone.send("活动")
    (listing,) = phone.inbox()
    assert listing["msgtype"] == "template_card"
    card = listing["template_card"]
    assert card["card_type"] == "button_interaction" and "乒乓球比赛" in render(listing)

    # Sign up by text.
    assert "报名成功" in phone.ask(f"报名 {table}")

    # Sign up by clicking the card's button: the click answers with update_button, the reply comes via the outbox.
    key = next(b["key"] for b in card["button_list"] if wecom.decode_key(b["key"]).get("activity") == hike)
    flip = phone.click(key, card["task_id"])
    assert (
        flip is not None and flip["MsgType"] == "update_button" and flip["Button"]["ReplaceName"] == "已报名"
    )
    replies = phone.inbox()
    assert len(replies) == 1 and "报名成功" in render(replies[0]) and "秋季登山" in render(replies[0])

    # WeCom delivers the same click again (retry): no second sign-up, no second reply.
    assert phone.click(key, card["task_id"]) is None
    assert phone.inbox() == []
    # Clicking again later (a new event) is answered, and the button stays 已报名.
    again = phone.click(key, card["task_id"], ts=1700000100)
    assert again["Button"]["ReplaceName"] == "已报名" and "已经报名过" in render(phone.inbox()[0])

    # A duplicate text delivery yields one reply.
    phone.send("我的信息", msg_id="DUP-1")
    phone.send("我的信息", msg_id="DUP-1")
    assert len(phone.inbox()) == 1


def test_group_chat_through_the_ai_bot(wapp, fake):
    bot = wapp.extensions["bot"]
    client = wapp.test_client()
    add_member(bot, name="李四", employee_no="10087")
    add_member(bot, name="王五", employee_no="10088")
    aid = make_activity(bot, "羽毛球友谊赛")
    hoops = make_activity(bot, "篮球友谊赛")
    for user, line in (("lisi", "10087 李四"), ("wangwu", "10088 王五")):
        phone = Phone(wapp, fake, user)
        phone.ask("你好")
        assert "绑定成功" in phone.ask(line)
    private = len(fake.sent())

    def deliver_to_group(payload: dict):
        query, body = aibot_request(payload)
        resp = client.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
        assert resp.status_code == 200
        return decrypt_aibot_reply(resp, query) if resp.get_data() else None

    def group_say(user: str, text: str, msgid: str):
        payload = aibot_text(
            user, text, chat_id="wrWARD3", msgid=msgid, response_url=fake.response_url(msgid)
        )
        return payload, deliver_to_group(payload)

    # The list comes back as the passive reply: a card with sign-up buttons, right in the group.
    _, listing = group_say("lisi", "@工会小助手 活动", "G1")
    assert listing["msgtype"] == "template_card"
    card = listing["template_card"]
    buttons = {wecom.decode_key(b["key"])["activity"]: b for b in card["button_list"]}
    assert set(buttons) == {aid, hoops}
    group_say("lisi", f"@工会小助手 报名 {aid}", "G2")
    payload, _ = group_say("wangwu", f"@工会小助手 报名{aid}", "G3")
    assert deliver_to_group(payload) is None  # the same delivery again: acknowledged, nothing new

    # 李四 taps 篮球友谊赛 on the card: signed up, and the card he sees now says 已报名 on that button.
    click = {
        "msgid": "C1",
        "create_time": 1700000000,
        "aibotid": "AIBOTID",
        "chatid": "wrWARD3",
        "chattype": "group",
        "from": {"userid": "lisi"},
        "response_url": fake.response_url("C1"),
        "msgtype": "event",
        "event": {
            "eventtype": "template_card_event",
            "template_card_event": {
                "card_type": "button_interaction",
                "event_key": buttons[hoops]["key"],
                "task_id": card["task_id"],
            },
        },
    }
    update = deliver_to_group(click)
    assert update["response_type"] == "update_template_card" and update["userids"] == ["lisi"]
    flipped = {
        wecom.decode_key(b["key"])["activity"]: b["text"] for b in update["template_card"]["button_list"]
    }
    assert flipped == {aid: buttons[aid]["text"], hoops: "已报名"}
    outbox.drain(bot, platform="wecom")

    answers = {
        c["args"]["response_code"]: c["json"] for c in fake.calls if c["path"] == "/cgi-bin/aibot/response"
    }
    assert set(answers) == {"G2", "G3", "C1"}  # one answer per message, the duplicate gave none
    relay = answers["G3"]["markdown"]["content"]
    assert "羽毛球友谊赛" in relay and "李四" in relay and "王五" in relay
    hoops_relay = answers["C1"]["markdown"]["content"]
    assert "篮球友谊赛" in hoops_relay and "李四" in hoops_relay and "王五" not in hoops_relay
    assert len(fake.sent()) == private  # nothing meant for the group went out as a private message


def test_expired_token_and_rate_limit_end_to_end(wapp, fake):
    bot = wapp.extensions["bot"]
    add_member(bot, name="赵六", employee_no="10089")
    phone = Phone(wapp, fake, "zhaoliu")
    phone.ask("你好")
    phone.ask("10089 赵六")
    fake.expire_tokens(42001)
    assert "赵六您好" in phone.ask("帮助")
    assert fake.count("/cgi-bin/gettoken") == 2

    fake.fail_next("/cgi-bin/message/send", 45009, "api freq out of limit")
    assert phone.ask("我的信息") == ""
    bot.clock.offset = timedelta(seconds=61)
    got = phone.inbox()
    assert len(got) == 1 and "工号：10089" in got[0]["text"]["content"]
    assert phone.inbox() == []


def test_cli_creates_the_menu(wapp, fake):
    runner = CliRunner()
    from cli.wecom import wecom_cli

    with wapp.app_context():
        result = runner.invoke(wecom_cli, ["menu"], obj=None)
    assert result.exit_code == 0, result.output
    (body,) = fake.sent("/cgi-bin/menu/create")
    names = [b["name"] for b in body["button"]]
    assert names == ["活动报名", "我要办", "我的"]
    subs = {s["name"]: s["key"] for b in body["button"] for s in b.get("sub_button", [])}
    assert {"我要提案", "困难帮扶", "我的信息", "帮助"} <= set(subs)
    assert all(
        c["args"].get("agentid") == "1000002" for c in fake.calls if c["path"] == "/cgi-bin/menu/create"
    )

    fake.fail_next("/cgi-bin/menu/create", 60020, "not allow to access from your ip")
    with wapp.app_context():
        result = runner.invoke(wecom_cli, ["menu"])
    assert result.exit_code != 0 and "企业可信IP" in result.output
    with wapp.app_context():
        result = runner.invoke(wecom_cli, ["check"])
    assert result.exit_code == 0 and "工会小助手" in result.output and "tok-" not in result.output
    fake.fail_next("/cgi-bin/agent/get", 60020, "not allow to access from your ip, from ip: 198.51.100.9")
    with wapp.app_context():
        result = runner.invoke(wecom_cli, ["check"])
    assert result.exit_code != 0 and "企业可信IP" in result.output and "198.51.100.9" in result.output
    bot = wapp.extensions["bot"]
    with bot.db.Session() as s:
        assert [a.detail for a in active_alerts(s)] == ["198.51.100.9"]
    with wapp.app_context():  # the IP was added: a successful check clears the console's alert
        assert runner.invoke(wecom_cli, ["check"]).exit_code == 0
    with bot.db.Session() as s:
        assert active_alerts(s) == []


def test_cli_sets_a_group_webhook_and_broadcasts_go_there(wapp, fake):
    from cli.wecom import wecom_cli

    runner = CliRunner()
    with wapp.app_context():
        bad = runner.invoke(wecom_cli, ["webhook", "wrX", "ftp://nope"])
        ok = runner.invoke(
            wecom_cli, ["webhook", "wrX", fake.webhook_url("secretkey"), "--title", "心内科群"]
        )
        listing = runner.invoke(wecom_cli, ["chats"])
    assert bad.exit_code != 0 and ok.exit_code == 0 and "secretkey" not in ok.output
    assert "wrX" in listing.output and "心内科群" in listing.output and "secretkey" not in listing.output
    bot = wapp.extensions["bot"]
    with bot.db.transaction() as s:
        bot.notify_chat(s, "wecom", "wrX", Text("周六活动提醒"), "bc1")
    outbox.drain(bot, platform="wecom")
    assert fake.sent("/cgi-bin/webhook/send") == [{"msgtype": "text", "text": {"content": "周六活动提醒"}}]


def test_cli_registers_or_creates_app_group_chats_for_broadcasts(wapp, fake):
    from cli.wecom import wecom_cli

    bot = wapp.extensions["bot"]
    runner = CliRunner()

    def run(*args):
        with wapp.app_context():
            return runner.invoke(wecom_cli, ["appchat", *args])

    # Create a group through appchat/create: registered, broadcasts go out through appchat/send.
    made = run("create", "心内科工会群", "--member", "zhangsan", "--member", "lisi", "--owner", "lisi")
    assert made.exit_code == 0, made.output
    (created,) = fake.sent("/cgi-bin/appchat/create")
    assert created == {"name": "心内科工会群", "userlist": ["zhangsan", "lisi"], "owner": "lisi"}
    chat_id = next(iter(fake.appchats))
    assert chat_id in made.output
    with bot.db.transaction() as s:
        bot.notify_chat(s, "wecom", chat_id, Text("周五开会"), "bc-appchat")
    outbox.drain(bot, platform="wecom")
    assert fake.sent("/cgi-bin/appchat/send") == [
        {"chatid": chat_id, "msgtype": "text", "text": {"content": "周五开会"}}
    ]

    # Register a group the app created earlier: checked with appchat/get, its name taken from WeCom.
    fake.appchats["wrOLD42"] = {
        "chatid": "wrOLD42",
        "name": "老群",
        "owner": "a",
        "userlist": ["a", "b", "c"],
    }
    added = run("add", "wrOLD42")
    assert added.exit_code == 0 and "老群" in added.output and "3人" in added.output
    with bot.db.Session() as s:
        titles = dict(s.execute(select(Chat.chat_id, Chat.title).where(Chat.platform == "wecom")).all())
    assert titles == {chat_id: "心内科工会群", "wrOLD42": "老群"}

    # Refusals say what to do; nothing is registered.
    unknown = run("add", "wrNOPE")
    assert unknown.exit_code != 0 and "本应用通过接口创建" in unknown.output
    alone = run("create", "一个人的群", "--member", "zhangsan")
    assert alone.exit_code != 0 and "2到2000人" in alone.output
    stranger_owner = run("create", "群", "--member", "a", "--member", "b", "--owner", "c")
    assert stranger_owner.exit_code != 0 and "群主必须是群成员" in stranger_owner.output
    bad_group = run("add", "wrOLD42", "--group-id", "999")
    assert bad_group.exit_code != 0 and "没有ID为 999 的工会小组" in bad_group.output
    assert fake.count("/cgi-bin/appchat/create") == 1
    with bot.db.Session() as s:
        assert set(s.scalars(select(Chat.chat_id))) == {chat_id, "wrOLD42"}


def test_eight_activities_arrive_in_full_with_distinct_buttons(wapp, fake):
    """The list does not fit a card (112 characters): the full text first, then the card with the buttons,
    whose labels stay apart once cut to 10 characters (all would read 报名 职工健康讲…)."""
    bot = wapp.extensions["bot"]
    add_member(bot, name="张三", employee_no="10086")
    ids = [make_activity(bot, f"职工健康讲座第{i}场") for i in range(8)]
    phone = Phone(wapp, fake, "zhangsan")
    phone.ask("你好")
    assert "绑定成功" in phone.ask("10086 张三")

    phone.send("活动")
    full, card = phone.inbox()
    assert full["msgtype"] == "text" and card["msgtype"] == "template_card"
    for i, aid in enumerate(ids):
        assert f"【{aid}】职工健康讲座第{i}场" in full["text"]["content"]
    tc = card["template_card"]
    labels = [b["text"] for b in tc["button_list"]]
    assert len(labels) == len(set(labels)) >= 5 and all(len(x) <= 10 for x in labels)
    for b in tc["button_list"]:
        assert f"【{wecom.decode_key(b['key'])['activity']}】" in b["text"]  # the id the text list shows
    assert tc["sub_title_text"] == CARD_HINT and "第" not in tc.get("sub_title_text", "")

    # The buttons still work: the click signs up for the activity it names, and nothing is sent twice.
    button = tc["button_list"][3]
    flip = phone.click(button["key"], tc["task_id"])
    assert flip["Button"]["ReplaceName"] == "已报名"
    (reply,) = phone.inbox()
    assert "报名成功" in render(reply) and "职工健康讲座第3场" in render(reply)


def test_long_proposal_preview_arrives_in_full_with_its_buttons(wapp, fake):
    from tests.test_proposals import make_congress

    bot = wapp.extensions["bot"]
    make_congress(bot, n=1)
    add_member(bot, name="张代表", employee_no="10086", is_delegate=True)
    add_member(bot, name="李代表", employee_no="10087", is_delegate=True)
    phone = Phone(wapp, fake, "zhangdaibiao")
    phone.ask("你好")
    assert "绑定成功" in phone.ask("10086 张代表")
    situation = "北门停车位太少，夜班职工下班后找不到车位，只能停在院外路边，" * 3 + "存在安全隐患。"
    measures = "在北门空地划设50个职工车位，并安排保安夜间巡查，" * 2 + "同时开放地下车库给夜班职工。"
    for text in ("我要提案", "3", "增设职工停车位", situation, measures, "跳过"):
        phone.ask(text)
    phone.send("李代表")
    full, card = phone.inbox()
    assert "请核对" in full["text"]["content"]
    assert situation in full["text"]["content"] and measures in full["text"]["content"]
    assert "回复“确认”提交" in full["text"]["content"]  # the last line, never cut
    tc = card["template_card"]
    assert [b["text"] for b in tc["button_list"]] == ["确认提交", "修改", "取消"]
    assert tc["main_title"]["title"].startswith("请核对")
    confirm = tc["button_list"][0]
    phone.click(confirm["key"], tc["task_id"])
    assert any("编号" in render(b) for b in phone.inbox())


def test_ai_bot_group_gets_the_compact_card_and_the_full_list(wapp, fake):
    """In a group the card goes back passively (response_url cannot carry cards there): the compact card with
    the buttons, and the whole list through response_url, never cut at the card's 112 characters."""
    bot = wapp.extensions["bot"]
    add_member(bot, name="李四", employee_no="10087")
    ids = [make_activity(bot, f"职工健康讲座第{i}场") for i in range(8)]
    phone = Phone(wapp, fake, "lisi")
    phone.ask("你好")
    assert "绑定成功" in phone.ask("10087 李四")
    payload = aibot_text(
        "lisi", "@工会小助手 活动", chat_id="wrWARD3", msgid="L1", response_url=fake.response_url("L1")
    )
    query, body = aibot_request(payload)
    resp = wapp.test_client().post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
    card = decrypt_aibot_reply(resp, query)["template_card"]
    assert card["sub_title_text"] == CARD_HINT
    labels = [b["text"] for b in card["button_list"]]
    assert len(labels) == len(set(labels))
    outbox.drain(bot, platform="wecom")
    (answer,) = [c["json"] for c in fake.calls if c["path"] == "/cgi-bin/aibot/response"]
    for i, aid in enumerate(ids):
        assert f"【{aid}】职工健康讲座第{i}场" in answer["markdown"]["content"]
