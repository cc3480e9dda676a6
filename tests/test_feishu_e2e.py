"""End to end: signed, encrypted Feishu events through the Flask app, replies through the fake Feishu API; and the
same conversation through the long-connection entry point (lark-oapi's own frame handling, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot import outbox
from bot.adapters import feishu
from models.activity import Signup
from tests.conftest import POSTGRES_URL, add_member, make_app
from tests.fake_feishu import (
    BOT_OPEN_ID,
    FakeFeishu,
    card_buttons,
    card_click,
    mention,
    signed_request,
    text_message,
)
from tests.test_feishu import SETTINGS


@pytest.fixture
def fake():
    with FakeFeishu() as f:
        yield f


@pytest.fixture(params=["sqlite", "postgres"])
def fapp(request, tmp_path, fake):
    """The app with Feishu configured against the fake API; on PostgreSQL too when TEST_POSTGRES_URL is set."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL")
    url = POSTGRES_URL if request.param == "postgres" else f"sqlite:///{tmp_path / 'feishu.db'}"
    app = make_app(url, FEISHU_API_BASE=fake.url, **SETTINGS)
    yield app
    app.extensions["db"].dispose()


def make_activity(bot, title="羽毛球比赛", capacity=10) -> int:
    from models.activity import Activity

    starts = datetime.now(UTC) + timedelta(days=5)
    with bot.db.transaction() as s:
        a = Activity(
            title=title,
            place="职工活动中心",
            starts_at=starts,
            signup_deadline=starts - timedelta(days=1),
            capacity=capacity,
            taken=0,
            seq=0,
            waitlist_enabled=True,
            companions_max=0,
            questions=[],
            audience_kind="all",
            audience_ids=[],
            status="open",
        )
        s.add(a)
        s.flush()
        return a.id


class HttpTransport:
    """Feishu pushing events to POST /feishu/events (encrypted and signed)."""

    def __init__(self, app):
        self.client = app.test_client()

    def send(self, payload):
        body, headers = signed_request(payload)
        r = self.client.post("/feishu/events", data=body, headers=headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()


class LongConnTransport:
    """Feishu pushing events down the long connection: the real lark-oapi ws.Client frame handler."""

    def __init__(self, app):
        from lark_oapi.ws.client import Client

        bot = app.extensions["bot"]
        self.client = Client("cli_x", "secret", event_handler=feishu.longconn_handler(bot))
        self.acks: list[bytes] = []

        async def write(data):
            self.acks.append(data)

        self.client._write_message = write
        self.seq = 0

    def close(self):
        cron = self.client._cache._cron  # lark-oapi's cache timer task, never started here
        cron.cancel()
        loop = cron.get_loop()
        if not loop.is_closed():
            loop.run_until_complete(asyncio.sleep(0))

    def send(self, payload):
        import lark_oapi.ws.client as ws_client
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame

        self.seq += 1
        frame = Frame(SeqID=self.seq, LogID=0, service=1, method=1)  # method 1 = data frame
        for key, value in (("type", "event"), ("message_id", f"m{self.seq}"), ("sum", "1"), ("seq", "0")):
            h = frame.headers.add()
            h.key, h.value = key, value
        h = frame.headers.add()
        h.key, h.value = "trace_id", "t"
        frame.payload = json.dumps(payload, ensure_ascii=False).encode()
        ws_client.loop.run_until_complete(self.client._handle_data_frame(frame))  # the SDK's own loop
        ack = Frame()
        ack.ParseFromString(self.acks[-1])
        resp = json.loads(ack.payload)
        assert resp["code"] == 200, resp
        return json.loads(base64.b64decode(resp["data"])) if resp.get("data") else {}


@pytest.fixture(params=["http", "longconn"])
def transport(request, fapp):
    if request.param == "http":
        yield HttpTransport(fapp)
        return
    t = LongConnTransport(fapp)
    yield t
    t.close()


def test_conversation(fapp, fake, transport):
    bot = fapp.extensions["bot"]
    add_member(bot, name="李娜", employee_no="40001", phone="13900001111")
    add_member(bot, name="周杰", employee_no="40002")
    aid = make_activity(bot)
    me = "ou_lina"

    def say(text, **kw):
        bot.clock.offset += timedelta(seconds=1)  # people type slower than 5 messages a second
        before = len(fake.texts(me))
        answer = transport.send(text_message(me, text, **kw))
        assert answer == {}
        outbox.drain(bot, platform="feishu")
        new = fake.texts(me)[before:]
        assert len(new) == 1, new
        return new[0]

    assert "工号" in say("你好")
    assert "绑定成功" in say("４０００１ 李娜")
    assert "李娜您好" in say("帮助")
    info = say("我的信息")
    assert "工号：40001" in info and "飞书" in info

    # a duplicate delivery (same message_id, new event_id) yields one reply
    bot.clock.offset += timedelta(seconds=1)
    n = len(fake.delivered)
    transport.send(text_message(me, "帮助", message_id="om_twice"))
    transport.send(text_message(me, "帮助", message_id="om_twice"))
    outbox.drain(bot, platform="feishu")
    assert len(fake.delivered) == n + 1

    # an expired token is refreshed once, transparently
    fake.expire_tokens()
    assert "李娜您好" in say("帮助")
    assert len(fake.calls_to("tenant_access_token")) == 2

    # activities as a card; sign up by clicking its button: the card comes back updated
    listing = say("活动")
    assert "羽毛球比赛" in listing
    card = fake.delivered[-1]["content"]
    button = next(b for b in card_buttons(card) if "报名" in b["text"]["content"])
    value = button["behaviors"][0]["value"]
    assert value["do"] == "signup" and value["activity"] == aid
    bot.clock.offset += timedelta(seconds=1)
    answer = transport.send(card_click(me, value, message_id=fake.delivered[-1]["message_id"]))
    assert answer["toast"]["type"] == "success" and "报名成功" in answer["toast"]["content"]
    updated = answer["card"]["data"]
    flipped = next(b for b in card_buttons(updated) if b["behaviors"][0]["value"].get("activity") == aid)
    assert flipped["text"]["content"] == "已报名" and flipped["disabled"] is True
    outbox.drain(bot, platform="feishu")
    assert "报名成功" in fake.texts(me)[-1]  # the full confirmation also arrives as a message
    # clicking again: already signed up, said so, card untouched
    answer = transport.send(card_click(me, value, message_id="om_card2"))
    assert "card" not in answer or "已报名" in json.dumps(answer, ensure_ascii=False)

    # in a group: talk among members is ignored, an @ of the bot signs up (reply in the group)
    zhou = "ou_zhou"
    transport.send(text_message(zhou, "你好"))
    transport.send(text_message(zhou, "40002 周杰"))
    at_bot = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    at_colleague = mention("@_user_1", "ou_lina", "李娜")
    transport.send(
        text_message(
            zhou, f"@_user_1 报名 {aid}", chat_type="group", chat_id="oc_team", mentions=[at_colleague]
        )
    )
    outbox.drain(bot, platform="feishu")
    assert not [d for d in fake.delivered if d["receive_id"].startswith("reply:om_grp")]
    transport.send(
        text_message(
            zhou,
            f"@_user_1 报名 {aid}",
            chat_type="group",
            chat_id="oc_team",
            mentions=[at_bot],
            message_id="om_grp_signup",
        )
    )
    outbox.drain(bot, platform="feishu")
    group_reply = fake.texts("reply:om_grp_signup")
    assert len(group_reply) == 1 and "周杰" in group_reply[0] and "李娜" in group_reply[0]
    with bot.db.Session() as s:
        assert len(list(s.scalars(select(Signup).where(Signup.activity_id == aid)))) == 2

    bot.clock.offset += timedelta(seconds=1)
    # a rate-limited send waits for x-ogw-ratelimit-reset and is delivered once
    fake.rate_limit(1, reset=5)
    transport.send(text_message(me, "帮助", message_id="om_limited"))
    outbox.drain(bot, platform="feishu")
    before = len(fake.delivered)
    bot.clock.offset += timedelta(seconds=6)
    outbox.drain(bot, platform="feishu")
    outbox.drain(bot, platform="feishu")
    assert len(fake.delivered) == before + 1 and "李娜您好" in fake.texts(me)[-1]
    assert len(fake.calls_to("/bot/v3/info")) == 1


def _bound(bot, name, no, open_id):
    from models.member import Member, link_identity

    m = add_member(bot, name=name, employee_no=no)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", open_id)
    return m


def _lines(card):
    return next(el["text"]["content"] for el in card["body"]["elements"] if el.get("tag") == "div")


def test_click_answers_with_the_card_as_it_reads_now(fapp, fake):
    """The sign-up button turns into 已报名 and the card's counts are the new ones, not the stored original's."""
    bot = fapp.extensions["bot"]
    http = HttpTransport(fapp)
    _bound(bot, "李娜", "40011", "ou_a")
    _bound(bot, "周杰", "40012", "ou_b")
    aid = make_activity(bot, capacity=10)

    http.send(text_message("ou_a", "活动"))  # the list card: 【1】羽毛球比赛 …（剩10）
    outbox.drain(bot, platform="feishu")
    listing = fake.delivered[-1]["content"]
    assert "（剩10）" in _lines(listing)
    value = card_buttons(listing)[0]["behaviors"][0]["value"]
    http.send(text_message("ou_b", f"报名 {aid}"))  # someone else signs up meanwhile
    bot.clock.offset += timedelta(seconds=1)
    answer = http.send(card_click("ou_a", value))
    card = answer["card"]["data"]
    assert "（剩8）" in _lines(card) and "（剩10）" not in _lines(card)
    (button,) = card_buttons(card)
    assert button["text"]["content"] == "已报名" and button["disabled"] is True
    assert (
        button["behaviors"][0]["value"]["_ob"] == value["_ob"]
    )  # later clicks re-render from the same source

    # the detail card (from a button) comes back with the member's status and a cancel button
    http.send(text_message("ou_b", f"活动 {aid}"))
    outbox.drain(bot, platform="feishu")
    detail = fake.delivered[-1]["content"]
    assert "已报名 2/10 人" in _lines(detail)
    http.send(text_message("ou_a", f"取消报名 {aid}"))
    bot.clock.offset += timedelta(seconds=1)
    cancel = next(b for b in card_buttons(detail) if b["behaviors"][0]["value"]["do"] == "cancel_signup")
    answer = http.send(card_click("ou_b", cancel["behaviors"][0]["value"]))
    card = answer["card"]["data"]
    assert "已报名 0/10 人" in _lines(card) and "您的状态" not in _lines(card)
    assert [b["text"]["content"] for b in card_buttons(card)] == ["报名"]

    # someone else's card (a forged `_ob`) is never shown
    forged = dict(value, _ob=fake_ob(bot, "ou_b"))
    answer = http.send(card_click("ou_a", forged))
    assert "card" not in answer


def fake_ob(bot, target):
    from models.messaging import OutboxMessage

    with bot.db.Session() as s:
        return s.scalar(
            select(OutboxMessage.id)
            .where(OutboxMessage.target_id == target, OutboxMessage.payload["type"].as_string() == "card")
            .limit(1)
        )


def test_pushed_card_click_flips_the_button_on_the_card_as_sent(fapp, fake):
    from bot.message import Button, Card

    bot = fapp.extensions["bot"]
    http = HttpTransport(fapp)
    m = _bound(bot, "吴九", "40013", "ou_c")
    aid = make_activity(bot)
    card = Card("新活动", ["点按钮报名"], [Button("报名", {"do": "signup", "activity": aid})])
    with bot.db.transaction() as s:
        from models.member import Member

        bot.notify_member(s, s.get(Member, m.id), card, key="push:1")
    outbox.drain(bot, platform="feishu")
    value = card_buttons(fake.delivered[-1]["content"])[0]["behaviors"][0]["value"]
    answer = http.send(card_click("ou_c", value))
    data = answer["card"]["data"]
    assert _lines(data) == "点按钮报名" and card_buttons(data)[0]["text"]["content"] == "已报名"
