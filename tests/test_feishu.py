"""Feishu adapter: official test vectors, request verification, every event, and the sender against a fake API."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.adapters import feishu, feishu_api
from bot.adapters.feishu import Rejected, decrypt, signature, verify_request
from bot.adapters.feishu_api import FeishuSender, prefetch_bot_open_id, render_card, uuid_for
from bot.message import Button, Card, File, Text
from models.feishu import FeishuState
from models.member import Member, PlatformIdentity, link_identity
from models.messaging import Chat, InboundMessage, OutboxMessage
from tests.conftest import POSTGRES_URL, add_member, make_app
from tests.fake_feishu import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FakeFeishu,
    card_click,
    encrypt,
    envelope,
    mention,
    sign,
    signed_request,
    text_message,
)

SETTINGS = dict(
    FEISHU_APP_ID=APP_ID,
    FEISHU_APP_SECRET=APP_SECRET,
    FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN,
    FEISHU_ENCRYPT_KEY=ENCRYPT_KEY,
)


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


@pytest.fixture
def fbot(fapp):
    return fapp.extensions["bot"]


@pytest.fixture
def fclient(fapp):
    return fapp.test_client()


def post(client, payload, **kw):
    body, headers = signed_request(payload, **kw)
    return client.post("/feishu/events", data=body, headers=headers)


class S:  # minimal settings for the pure verification function
    def __init__(self, key="", token=""):
        self.FEISHU_ENCRYPT_KEY, self.FEISHU_VERIFICATION_TOKEN = key, token


# --- official vectors --------------------------------------------------------------------------------------
def test_official_decrypt_vector():
    assert decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == "hello world"


def test_signature_vector():
    body = b'{"encrypt":"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}'
    expected = "0c09d96c2aef2ad08179b3967ea410bbc91dab24ce3aec05af962cf1935844af"
    assert signature("1700000000", "abc", "test key", body) == expected
    headers = {
        "X-Lark-Request-Timestamp": "1700000000",
        "X-Lark-Request-Nonce": "abc",
        "X-Lark-Signature": expected,
    }
    # the vector's body decrypts to "hello world", which is not JSON: refused as malformed, after the signature
    with pytest.raises(Rejected) as exc:
        verify_request(S("test key"), headers, body, 1700000100)
    assert exc.value.status == 400
    headers["X-Lark-Signature"] = expected[:-1] + ("0" if expected[-1] != "0" else "1")
    with pytest.raises(Rejected) as exc:
        verify_request(S("test key"), headers, body, 1700000100)
    assert exc.value.status == 401


def test_encrypt_roundtrip_matches_vector_iv():
    raw = __import__("base64").b64decode("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=")
    assert encrypt("test key", "hello world", iv=raw[:16]) == "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


def test_decrypt_agrees_with_lark_oapi():
    import base64
    import os
    import random

    from lark_oapi.core.utils.decryptor import AESCipher

    rng = random.Random(3)
    for _ in range(60):
        key = "".join(rng.choice("abc xyz中文") for _ in range(rng.randint(1, 20)))
        text = "".join(rng.choice('ab{}"中文 ') for _ in range(rng.randint(0, 50)))
        data = encrypt(key, text)
        assert decrypt(key, data) == AESCipher(key).decrypt_str(data) == text
        garbage = base64.b64encode(os.urandom(rng.choice([16, 32, 48, 33]))).decode()
        try:
            expected = AESCipher(key).decrypt_str(garbage)
        except (ValueError, UnicodeDecodeError):
            expected = None
        try:
            got = decrypt(key, garbage)
        except Rejected:
            got = None
        assert got == expected


@pytest.mark.parametrize("bad", ["", "bm90IGJhc2U2NA", "AAAA", encrypt("other key", '{"a":1}', iv=bytes(16))])
def test_undecryptable(bad):
    with pytest.raises(Rejected) as exc:
        decrypt(ENCRYPT_KEY, bad)
    assert exc.value.status == 400


# --- challenge ---------------------------------------------------------------------------------------------
def test_challenge_plain_and_encrypted(fclient):
    r = fclient.post(
        "/feishu/events", json={"challenge": "c-1", "token": VERIFICATION_TOKEN, "type": "url_verification"}
    )
    assert r.status_code == 200 and r.get_json() == {"challenge": "c-1"}
    inner = json.dumps({"challenge": "c-2", "token": VERIFICATION_TOKEN, "type": "url_verification"})
    started = time.perf_counter()
    r = fclient.post("/feishu/events", json={"encrypt": encrypt(ENCRYPT_KEY, inner)})  # no signature headers
    assert r.status_code == 200 and r.get_json() == {"challenge": "c-2"}
    assert time.perf_counter() - started < 1.0
    r = fclient.post(
        "/feishu/events", json={"challenge": "c-3", "token": "wrong", "type": "url_verification"}
    )
    assert r.status_code == 401


def test_challenge_with_token_only_app(tmp_path):
    app = make_app(
        f"sqlite:///{tmp_path / 't.db'}",
        FEISHU_APP_ID=APP_ID,
        FEISHU_APP_SECRET=APP_SECRET,
        FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN,
    )
    c = app.test_client()
    ok = c.post(
        "/feishu/events", json={"challenge": "x", "token": VERIFICATION_TOKEN, "type": "url_verification"}
    )
    assert ok.get_json() == {"challenge": "x"}
    # without an Encrypt Key every event carries the token
    ev = text_message("ou_a", "帮助", token="forged")
    assert c.post("/feishu/events", json=ev).status_code == 401
    assert c.post("/feishu/events", json=text_message("ou_a", "帮助")).status_code == 200
    app.extensions["db"].dispose()


def test_challenge_with_encrypt_key_only_app(tmp_path):
    """Feishu sends the challenge encrypted and unsigned; decrypting it with the Encrypt Key is the proof."""
    app = make_app(
        f"sqlite:///{tmp_path / 'k.db'}",
        FEISHU_APP_ID=APP_ID,
        FEISHU_APP_SECRET=APP_SECRET,
        FEISHU_ENCRYPT_KEY=ENCRYPT_KEY,
    )
    c = app.test_client()
    inner = json.dumps({"challenge": "k-1", "token": "any", "type": "url_verification"})
    ok = c.post("/feishu/events", json={"encrypt": encrypt(ENCRYPT_KEY, inner)})
    assert ok.status_code == 200 and ok.get_json() == {"challenge": "k-1"}
    wrong_key = c.post("/feishu/events", json={"encrypt": encrypt("another key", inner)})
    assert wrong_key.status_code == 401
    plain = c.post("/feishu/events", json={"challenge": "k-2", "type": "url_verification"})
    assert plain.status_code == 401  # neither encrypted nor carrying a token: no proof
    # events still need the signature: an encrypted event without headers is refused
    ev = {"encrypt": encrypt(ENCRYPT_KEY, json.dumps(text_message("ou_a", "帮助")))}
    assert c.post("/feishu/events", json=ev).status_code == 401
    assert post(c, text_message("ou_a", "帮助")).status_code == 200
    app.extensions["db"].dispose()


def test_not_registered_without_credentials(client):
    assert client.post("/feishu/events", json={"type": "url_verification"}).status_code == 404


def test_refuses_everything_without_key_or_token():
    with pytest.raises(Rejected) as exc:
        verify_request(S(), {}, b'{"type":"url_verification","challenge":"x"}', time.time())
    assert exc.value.status == 403


# --- forged, stale, malformed: refused before the database ------------------------------------------------
def _inbound_count(bot):
    with bot.db.Session() as s:
        return s.scalar(select(func.count()).select_from(InboundMessage))


def test_forged_stale_missing_and_malformed(fclient, fbot):
    ev = text_message("ou_a", "帮助")
    body, headers = signed_request(ev)
    forged = dict(headers, **{"X-Lark-Signature": "0" * 64})
    assert fclient.post("/feishu/events", data=body, headers=forged).status_code == 401
    tampered = body.replace(b'"}', b'x"}')
    assert fclient.post("/feishu/events", data=tampered, headers=headers).status_code == 401
    for missing in ("X-Lark-Signature", "X-Lark-Request-Nonce", "X-Lark-Request-Timestamp"):
        h = {k: v for k, v in headers.items() if k != missing}
        assert fclient.post("/feishu/events", data=body, headers=h).status_code == 401
    no_headers = fclient.post("/feishu/events", data=body, headers={"Content-Type": "application/json"})
    assert no_headers.status_code == 401  # an encrypted event without any signature is not a challenge
    stale_body, stale = signed_request(ev, ts=time.time() - 9 * 3600)
    assert fclient.post("/feishu/events", data=stale_body, headers=stale).status_code == 401
    future_body, future = signed_request(ev, ts=time.time() + 9 * 3600)
    assert fclient.post("/feishu/events", data=future_body, headers=future).status_code == 401
    wrong_key_body, wrong_key = signed_request(ev, key="another key")
    assert fclient.post("/feishu/events", data=wrong_key_body, headers=wrong_key).status_code == 401
    upper = dict(headers, **{"X-Lark-Signature": headers["X-Lark-Signature"].upper()})
    assert fclient.post("/feishu/events", data=body, headers=upper).status_code == 200  # case-insensitive hex
    # malformed: not JSON, not an object, junk inside a valid signature/encryption
    for raw in (b"{not json", b"[1,2]", b"\xff\xfe"):
        ts, nonce = str(int(time.time())), "n"
        h = {
            "X-Lark-Request-Timestamp": ts,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": sign(ts, nonce, ENCRYPT_KEY, raw),
        }
        assert fclient.post("/feishu/events", data=raw, headers=h).status_code == 400
    junk = json.dumps({"encrypt": encrypt(ENCRYPT_KEY, "not json")}).encode()
    ts = str(int(time.time()))
    h = {
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": "n",
        "X-Lark-Signature": sign(ts, "n", ENCRYPT_KEY, junk),
    }
    assert fclient.post("/feishu/events", data=junk, headers=h).status_code == 400
    assert post(fclient, {"schema": "2.0", "header": {"token": VERIFICATION_TOKEN}}).status_code == 400
    assert post(fclient, text_message("ou_a", "帮助", token="wrong-token")).status_code == 401
    assert _inbound_count(fbot) == 1  # only the one genuine (upper-case signature) request got in


# --- messages ----------------------------------------------------------------------------------------------
def _replies(fake, fbot, receive_id=None):
    outbox.drain(fbot, platform="feishu")
    return fake.texts(receive_id)


def test_p2p_text_and_duplicate(fclient, fbot, fake):
    add_member(fbot, name="李娜", employee_no="30001")
    ev = text_message("ou_li", "帮助", message_id="om_dup1")
    assert post(fclient, ev).get_json() == {}
    again = text_message("ou_li", "帮助", message_id="om_dup1")  # redelivered with a new event_id
    assert post(fclient, again).status_code == 200
    texts = _replies(fake, fbot, "ou_li")
    assert len(texts) == 1 and "工号" in texts[0]  # a stranger is asked to bind, once
    assert fake.delivered[0]["receive_id_type"] == "open_id"


def test_group_mentions(fclient, fbot, fake):
    m = add_member(fbot, name="王强", employee_no="30002")
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "ou_wang")
    other = mention("@_user_1", "ou_colleague", "张三")
    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    post(
        fclient, text_message("ou_wang", "@_user_1 帮助", chat_type="group", chat_id="oc_g", mentions=[other])
    )
    post(fclient, text_message("ou_wang", "大家好", chat_type="group", chat_id="oc_g"))
    assert fake.calls_to("/bot/v3/info") == []  # never fetched inside the event deadline
    assert fbot.process_pending() == 1  # the worker: fetches the bot's open_id, the @ was someone else's
    assert _replies(fake, fbot) == []
    with fbot.db.Session() as s:  # what colleagues said to each other is not kept
        (env,) = s.scalars(select(InboundMessage.envelope))
        assert env["text"] == "" and env["raw"] == {}
    assert len(fake.calls_to("/bot/v3/info")) == 1
    mid = "om_grp_help"
    post(
        fclient,
        text_message(
            "ou_wang", "@_user_1 帮助", chat_type="group", chat_id="oc_g", mentions=[me], message_id=mid
        ),
    )
    texts = _replies(fake, fbot)
    assert len(texts) == 1 and "王强您好" in texts[0]
    assert fake.delivered[0]["receive_id"] == f"reply:{mid}"  # answered as a reply in the group
    post(
        fclient,
        text_message("ou_wang", "@_user_1 我的信息", chat_type="group", chat_id="oc_g", mentions=[me]),
    )
    assert "私聊" in _replies(fake, fbot)[-1]
    assert len(fake.calls_to("/bot/v3/info")) == 1
    with fbot.db.Session() as s:
        assert s.get(FeishuState, "bot_open_id").value == BOT_OPEN_ID


def test_mention_placeholders_stripped(fbot, fake):
    assert prefetch_bot_open_id(fbot)
    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    zs = mention("@_user_2", "ou_zs", "张三")
    ev = text_message(
        "ou_x", "@_user_1 代报名 3 @_user_2", chat_type="group", chat_id="oc_g", mentions=[me, zs]
    )
    msg = feishu.message_event(fbot, ev["event"], ev["header"])
    assert msg.mentioned and msg.text == "代报名 3 张三" and msg.chat_id == "oc_g"


def test_bots_ignored_and_other_types(fclient, fbot, fake):
    post(fclient, text_message("ou_bot_other", "帮助", sender_type="app"))
    post(fclient, text_message(BOT_OPEN_ID, "帮助", sender_type="bot"))
    assert _replies(fake, fbot) == []
    post(
        fclient, text_message("ou_pic", "", message_type="image", content=json.dumps({"image_key": "img_1"}))
    )
    assert _replies(fake, fbot, "ou_pic") == [feishu.UNSUPPORTED]
    # a picture in a group that does not @ the bot is none of our business
    post(
        fclient,
        text_message("ou_pic", "", chat_type="group", chat_id="oc_g", message_type="image", content="{}"),
    )
    assert _replies(fake, fbot, "oc_g") == []


def test_post_rich_text(fbot):
    content = {
        "title": "",
        "content": [[{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": " 报名 三号"}]],
    }
    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    ev = text_message(
        "ou_x",
        "",
        chat_type="group",
        chat_id="oc_g",
        mentions=[me],
        message_type="post",
        content=json.dumps(content),
    )
    assert prefetch_bot_open_id(fbot)
    msg = feishu.message_event(fbot, ev["event"], ev["header"])
    assert msg.mentioned and msg.text == "报名 3号" and msg.typed == "报名 三号"
    localized = {"zh_cn": {"title": "标题", "content": [[{"tag": "text", "text": "帮助"}]]}}
    assert feishu._content_text("post", json.dumps(localized)) == "标题\n帮助"


def _status(bot, message_id):
    with bot.db.Session() as s:
        return s.scalar(select(InboundMessage.status).where(InboundMessage.dedupe_key == message_id))


def test_first_group_mention_is_deferred_then_answered(fclient, fbot, fake):
    """Before the bot's open_id is known, a group @ is answered at once (200, no Feishu call) and kept for the
    worker, which fetches the id and answers it; over the long connection alike."""
    _bound(fbot, "王五", "30010", "ou_w5")
    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    started = time.perf_counter()
    ev = text_message(
        "ou_w5", "@_user_1 帮助", chat_type="group", chat_id="oc_g", mentions=[me], message_id="om_d1"
    )
    assert post(fclient, ev).get_json() == {}
    assert time.perf_counter() - started < 1.0 and fake.calls_to("/bot/v3/info") == []
    frame = text_message("ou_w5", "@_user_1 活动", chat_type="group", chat_id="oc_g", mentions=[me], token="")
    frame["event"]["message"]["message_id"] = "om_d2"
    assert feishu.handle_frame(fbot, json.dumps(frame).encode()) is None  # acknowledged, not refused
    assert _status(fbot, "om_d1") == _status(fbot, "om_d2") == "received"
    assert fbot.process_pending() == 2
    assert len(fake.calls_to("/bot/v3/info")) == 1
    assert _status(fbot, "om_d1") == "done"
    texts = _replies(fake, fbot)
    assert "王五您好" in texts[0] and fake.delivered[0]["receive_id"] == "reply:om_d1"
    assert len(texts) == 2


def test_a_deferred_group_mention_keeps_the_typed_words(fclient, fbot, fake):
    @fbot.router.handler("测试原话")
    def echo(ctx):
        ctx.reply(ctx.raw_args)

    try:
        _bound(fbot, "王五", "30010", "ou_w5")
        me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
        ev = text_message("ou_w5", "@_user_1 测试原话：先写一个说明，三号见！", chat_type="group",
                          chat_id="oc_g", mentions=[me], message_id="om_t1")  # fmt: skip
        post(fclient, ev)
        assert _status(fbot, "om_t1") == "received" and fbot.process_pending() == 1
        assert _replies(fake, fbot) == ["先写一个说明，三号见！"]
    finally:
        fbot.router.routes = [r for r in fbot.router.routes if r.name != "echo"]


def test_bot_info_down_the_worker_decides_by_name(fclient, fbot, fake):
    fake.down = True
    _bound(fbot, "赵六", "30011", "ou_z6")
    me = mention("@_user_1", "ou_unknown_yet", "工会小助手")  # shown under its name, BOT_NAME
    other = mention("@_user_1", "ou_colleague", "张三")
    for mid, who in (("om_n1", me), ("om_n2", other)):
        ev = text_message(
            "ou_z6", "@_user_1 帮助", chat_type="group", chat_id="oc_g", mentions=[who], message_id=mid
        )
        assert post(fclient, ev).status_code == 200
    assert fbot.process_pending() == 2
    texts = _replies(fake, fbot)
    assert len(texts) == 1 and "赵六您好" in texts[0]  # not dropped; the colleague's @ is left alone
    with fbot.db.Session() as s:
        assert s.get(FeishuState, "bot_open_id") is None  # nothing wrong was cached


def test_the_sender_prefetches_the_bot_open_id(fclient, fbot, fake):
    _bound(fbot, "孙七", "30012", "ou_s7")
    post(fclient, text_message("ou_s7", "帮助"))
    _replies(fake, fbot)  # the worker's first send also learns the bot's open_id
    assert len(fake.calls_to("/bot/v3/info")) == 1
    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    ev = text_message(
        "ou_s7", "@_user_1 帮助", chat_type="group", chat_id="oc_g", mentions=[me], message_id="om_p"
    )
    post(fclient, ev)
    assert _status(fbot, "om_p") == "done"  # decided inside the deadline, no deferral
    feishu_api.api_for(fbot)._bot_open_id = None  # another process knows it from the database
    assert feishu_api.cached_bot_open_id(fbot) == BOT_OPEN_ID


# --- other events ------------------------------------------------------------------------------------------
def test_bot_added_enter_menu_and_unknown(fclient, fbot, fake):
    add_member(fbot, name="赵敏", employee_no="30003")
    added = envelope(
        "im.chat.member.bot.added_v1",
        {"chat_id": "oc_new", "operator_id": {"open_id": "ou_op"}, "name": "内科群", "external": False},
    )
    assert post(fclient, added).get_json() == {}
    assert post(fclient, added).status_code == 200  # same event_id: once
    texts = _replies(fake, fbot, "oc_new")
    assert len(texts) == 1 and "大家好" in texts[0]
    with fbot.db.Session() as s:
        chat = s.scalar(select(Chat).where(Chat.chat_id == "oc_new"))
        assert chat.title == "内科群" and not chat.unreachable
    entered = envelope(
        "im.chat.access_event.bot_p2p_chat_entered_v1",
        {"chat_id": "oc_p", "operator_id": {"open_id": "ou_e"}},
    )
    post(fclient, entered)
    post(fclient, dict(entered, header=dict(entered["header"], event_id="ev-enter-again")))
    assert len(_replies(fake, fbot, "ou_e")) == 1  # opening the chat again the same day: no second welcome
    assert "欢迎使用" in _replies(fake, fbot, "ou_e")[0]
    menu = envelope(
        "application.bot.menu_v6", {"operator": {"operator_id": {"open_id": "ou_e"}}, "event_key": "帮助"}
    )
    post(fclient, menu)
    assert "工号" in _replies(fake, fbot, "ou_e")[-1]
    v1 = {
        "uuid": "u1",
        "token": VERIFICATION_TOKEN,
        "ts": "1",
        "type": "event_callback",
        "event": {"type": "x"},
    }
    assert post(fclient, v1).get_json() == {}
    for etype in ("im.message.message_read_v1", "im.message.recalled_v1", "some.future.event_v9"):
        r = post(fclient, envelope(etype, {"anything": 1}))
        assert r.status_code == 200 and r.get_json() == {}
    deleted = envelope(
        "im.chat.member.bot.deleted_v1", {"chat_id": "oc_new", "operator_id": {"open_id": "ou_op"}}
    )
    post(fclient, deleted)
    with fbot.db.Session() as s:
        assert s.scalar(select(Chat).where(Chat.chat_id == "oc_new")).unreachable


def test_card_click_string_value_and_unknown_action(fclient, fbot, fake):
    r = post(fclient, card_click("ou_a", "just a string"))
    assert r.status_code == 200 and r.get_json()["toast"]["type"] == "error"
    m = add_member(fbot, name="钱七", employee_no="30004")
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "ou_q")
    r = post(fclient, card_click("ou_q", {"do": "no_such_action", "_k": "user"}))
    assert r.status_code == 200 and "失效" in r.get_json()["toast"]["content"]


# --- sender ------------------------------------------------------------------------------------------------
def _enqueue(bot, message, target="ou_s", kind="user", key=None, context=None):
    with bot.db.transaction() as s:
        outbox.enqueue(
            s,
            platform="feishu",
            target_kind=kind,
            target_id=target,
            message=message,
            key=key or f"k-{time.time_ns()}",
            context=context,
            now=bot.clock.now(),
        )


def _row(bot, key):
    with bot.db.Session() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))


def test_sender_text_card_uuid_and_token_cache(fbot, fake):
    _enqueue(fbot, Text("你好"), key="t1")
    card = Card("活动", ["【1】羽毛球"], [Button("报名", {"do": "signup", "activity": 1})])
    _enqueue(fbot, card, target="oc_g", kind="chat", key="t2")
    assert outbox.drain(fbot, platform="feishu") == 2
    assert len(fake.calls_to("tenant_access_token")) == 1  # fetched once, then shared through the DB
    text, sent_card = fake.delivered
    assert text["content"] == {"text": "你好"} and text["uuid"] == uuid_for("t1") and len(text["uuid"]) <= 50
    assert sent_card["msg_type"] == "interactive" and sent_card["receive_id_type"] == "chat_id"
    data = sent_card["content"]
    assert data["schema"] == "2.0" and data["config"]["update_multi"] is True
    button = data["body"]["elements"][1]
    value = button["behaviors"][0]["value"]
    assert (
        isinstance(value, dict)
        and value["do"] == "signup"
        and value["activity"] == 1
        and value["_k"] == "chat"
    )
    # another worker (a second sender on the same DB) reuses the stored token
    other = FeishuSender(fbot)
    assert other.api.token() == fbot.senders["feishu"].api.token()
    assert len(fake.calls_to("tenant_access_token")) == 1


def test_sender_refreshes_expired_token_once(fbot, fake):
    _enqueue(fbot, Text("一"), key="e1")
    outbox.drain(fbot, platform="feishu")
    fake.expire_tokens()
    _enqueue(fbot, Text("二"), key="e2")
    outbox.drain(fbot, platform="feishu")
    assert [d["content"]["text"] for d in fake.delivered] == ["一", "二"]
    assert len(fake.calls_to("tenant_access_token")) == 2
    assert _row(fbot, "e2").status == "sent"
    # a token Feishu keeps refusing is retried once per send, not in a loop
    fbot.senders["feishu"].api.token = lambda session=None: "t-always-bad"  # type: ignore[method-assign]
    _enqueue(fbot, Text("三"), key="e3")
    before = len(fake.calls_to("/im/v1/messages"))
    outbox.deliver_due(fbot, platform="feishu")
    assert len(fake.calls_to("/im/v1/messages")) == before + 2
    row = _row(fbot, "e3")
    assert row.status == "pending" and "99991663" in row.last_error and "t-always-bad" not in row.last_error


def test_sender_rate_limited_then_delivered_once(fbot, fake):
    fake.rate_limit(1, reset=3)
    _enqueue(fbot, Text("限流"), key="r1")
    outbox.drain(fbot, platform="feishu")
    row = _row(fbot, "r1")
    assert row.status == "pending" and row.next_attempt_at > fbot.clock.now() + timedelta(seconds=2)
    assert fake.delivered == []
    fbot.clock.offset += timedelta(seconds=4)
    outbox.drain(fbot, platform="feishu")
    assert [d["content"]["text"] for d in fake.delivered] == ["限流"]
    sends = fake.calls_to("/im/v1/messages")
    assert len(sends) == 2 and sends[0]["json"]["uuid"] == sends[1]["json"]["uuid"]
    # HTTP 400 with 99991400 (older APIs) is a rate limit too
    fake.rate_limit(1, reset=1, http429=False)
    _enqueue(fbot, Text("再来"), key="r2")
    outbox.deliver_due(fbot, platform="feishu")
    assert _row(fbot, "r2").status == "pending"


def test_sender_retry_after_lost_answer_is_delivered_once(fbot, fake):
    _enqueue(fbot, Text("只一次"), key="u1")
    row = _row(fbot, "u1")
    sender = fbot.senders["feishu"]
    assert sender.send(row).ok and sender.send(row).ok  # e.g. the worker crashed before recording success
    assert [d["content"]["text"] for d in fake.delivered] == ["只一次"]


def test_local_rate_limit_per_recipient(fbot, fake):
    import time_machine

    sender = fbot.senders["feishu"]
    results = []
    with time_machine.travel(2_000_000_000.25, tick=False):  # six sends inside one second, however slow
        for i in range(6):
            _enqueue(fbot, Text(f"第{i}条"), key=f"p{i}")
            results.append(sender.send(_row(fbot, f"p{i}")))
        assert results[-1].retry_after and results[-1].retry_after <= 1
        assert results[-1].code == "local_rate_limit"  # a wait, told apart from Feishu's refusals
        assert results[-1].held  # neither a failure nor an attempt for the outbox
        _enqueue(fbot, Text("别人"), target="ou_other", key="p-other")
        assert sender.send(_row(fbot, "p-other")).ok  # another recipient is not held up
    assert [r.ok for r in results] == [True] * 5 + [False]


def test_unreachable_user_and_chat(fbot, fake):
    m = add_member(fbot, name="孙八", employee_no="30005")
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "ou_gone")
    fake.unreachable |= {"ou_gone", "oc_gone"}
    _enqueue(fbot, Text("你好"), target="ou_gone", key="g1")
    _enqueue(fbot, Text("大家好"), target="oc_gone", kind="chat", key="g2")
    outbox.drain(fbot, platform="feishu")
    assert _row(fbot, "g1").status == "dead" and _row(fbot, "g2").status == "dead"
    with fbot.db.Session() as s:
        assert s.scalar(
            select(PlatformIdentity).where(PlatformIdentity.platform_user_id == "ou_gone")
        ).unreachable
        assert s.scalar(select(Chat).where(Chat.chat_id == "oc_gone")).unreachable
    with fbot.db.transaction() as s:
        assert fbot.notify_member(s, s.get(Member, m.id), Text("x"), "n1") is False


def test_unreachable_mark_is_lifted_by_a_private_message(fbot, fclient, fake):
    m = add_member(fbot, name="孙八", employee_no="30005")
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "ou_back")
    fake.unreachable.add("ou_back")
    _enqueue(fbot, Text("你好"), target="ou_back", key="b1")
    outbox.drain(fbot, platform="feishu")
    fake.unreachable.discard("ou_back")  # e.g. back inside the app's availability range
    with fbot.db.transaction() as s:
        assert fbot.notify_member(s, s.get(Member, m.id), Text("通知1"), "bn1") is False
    at_bot = [mention("@_user_1", BOT_OPEN_ID, "工会小助手")]
    group = text_message("ou_back", "@_user_1 帮助", chat_type="group", chat_id="oc_g1", mentions=at_bot)
    assert post(fclient, group).status_code == 200
    fbot.process_pending()  # in case the mention check was deferred to the worker
    with fbot.db.Session() as s:
        assert s.scalar(select(InboundMessage.status).where(InboundMessage.chat_id == "oc_g1")) == "done"
    with fbot.db.transaction() as s:
        assert fbot.notify_member(s, s.get(Member, m.id), Text("通知2"), "bn2") is False
    assert post(fclient, text_message("ou_back", "我的信息")).status_code == 200
    with fbot.db.transaction() as s:
        assert fbot.notify_member(s, s.get(Member, m.id), Text("通知3"), "bn3") is True
    outbox.drain(fbot, platform="feishu")
    assert "通知3" in fake.texts("ou_back")


def test_roster_user_id_and_union_id_are_sent_with_their_id_type(fbot, fake):
    """A roster's 飞书账号 may be a user_id: Feishu refuses it as an open_id (the fake checks like Feishu)."""
    m = add_member(fbot, name="周九", employee_no="30006")
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "e33ggbyz")
        assert fbot.notify_member(s, s.get(Member, m.id), Text("你好"), "uid1")
    _enqueue(fbot, Text("联合"), target="on_8ed6aa67", key="uid2")
    _enqueue(fbot, Text("开放"), target="ou_84aad35d", key="uid3")
    outbox.drain(fbot, platform="feishu")
    got = {d["receive_id"]: d["receive_id_type"] for d in fake.delivered}
    assert got == {"e33ggbyz": "user_id", "on_8ed6aa67": "union_id", "ou_84aad35d": "open_id"}
    with fbot.db.Session() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.platform == "feishu")).all()
        assert {r.status for r in rows} == {"sent"}


def test_fake_refuses_an_id_of_another_type(fake):
    assert feishu_api.receive_id_type("user", "e33ggbyz") == "user_id"
    import requests

    auth = {"app_id": APP_ID, "app_secret": APP_SECRET}
    token = requests.post(
        fake.url + "/open-apis/auth/v3/tenant_access_token/internal", json=auth, timeout=5
    ).json()["tenant_access_token"]
    r = requests.post(
        fake.url + "/open-apis/im/v1/messages",
        params={"receive_id_type": "open_id"},
        json={"receive_id": "e33ggbyz", "msg_type": "text", "content": '{"text":"x"}'},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert r.json()["code"] == 99992402 and not fake.delivered


def test_reply_falls_back_to_create_when_recalled(fbot, fake, monkeypatch):
    _enqueue(
        fbot, Text("回复"), target="oc_g", kind="chat", key="rc1", context={"in_reply_to": "om_recalled"}
    )
    real = fake._route

    def route(req, call):
        if req.path.endswith("/reply"):
            return 400, {"code": 230011, "msg": "message recalled"}, {}
        return real(req, call)

    monkeypatch.setattr(fake, "_route", route)
    outbox.drain(fbot, platform="feishu")
    assert fake.delivered[0]["receive_id"] == "oc_g"


def test_network_error_is_a_temporary_failure(fbot, fake):
    fbot.settings.FEISHU_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    _enqueue(fbot, Text("x"), key="n1")
    outbox.deliver_due(fbot, platform="feishu")
    row = _row(fbot, "n1")
    assert row.status == "pending" and "tenant token request failed" in row.last_error


def test_render_card_flips_clicked_button():
    payload = Card(
        "活动", ["x"], [Button("报名", {"do": "signup", "activity": 2}), Button("详情", {"do": "a"})]
    )
    card = render_card(
        payload.to_payload(), {"kind": "user", "ob": 7}, done=({"do": "signup", "activity": 2}, "已报名")
    )
    b1, b2 = [e for e in card["body"]["elements"] if e["tag"] == "button"]
    assert b1["disabled"] and b1["text"]["content"] == "已报名"
    assert b1["behaviors"][0]["value"] == {"do": "signup", "activity": 2, "_k": "user", "_ob": 7}
    assert "disabled" not in b2


# --- long connection ---------------------------------------------------------------------------------------
def test_longconn_frames_share_the_dispatch(fbot, fake):
    add_member(fbot, name="吴九", employee_no="30006")
    ev = text_message("ou_wu", "你好", token="")  # over the long connection the token is empty
    assert feishu.handle_frame(fbot, json.dumps(ev).encode()) is None
    assert feishu.handle_frame(fbot, json.dumps(ev).encode()) is None  # redelivered: one reply
    assert feishu.handle_frame(fbot, b"{junk") is None
    assert feishu.handle_frame(fbot, b'{"schema":"2.0"}') is None
    assert len(_replies(fake, fbot, "ou_wu")) == 1
    answer = feishu.handle_frame(fbot, json.dumps(card_click("ou_wu", "string value")).encode())
    assert answer["toast"]["type"] == "error"


def test_longconn_command_starts_the_sdk_client(fapp, fake, monkeypatch):
    import lark_oapi.ws.client as ws_client

    started = []

    def fake_start(self):
        started.append(self)
        self._cache._cron.cancel()

    monkeypatch.setattr(ws_client.Client, "start", fake_start)
    monkeypatch.setattr(
        ws_client, "loop", ws_client.loop
    )  # the command swaps in a fresh loop: restore it after
    result = fapp.test_cli_runner().invoke(args=["feishu", "longconn"])
    assert result.exit_code == 0, result.output
    assert "长连接" in result.output
    (client,) = started
    assert client._domain == fake.url and client._app_id == APP_ID
    assert client._event_handler._do_without_validation(b"{junk") is None
    assert len(fake.calls_to("/bot/v3/info")) == 1  # prefetched at start-up
    ws_client.loop.run_until_complete(__import__("asyncio").sleep(0))


def test_check_command(fapp, fake):
    result = fapp.test_cli_runner().invoke(args=["feishu", "check"])
    assert result.exit_code == 0 and BOT_OPEN_ID in result.output
    fake.app_secret = "rotated"
    with fapp.app_context():
        fapp.extensions["bot"].senders["feishu"].api._mem = None
    with fapp.extensions["db"].transaction() as s:
        s.query(FeishuState).delete()
    result = fapp.test_cli_runner().invoke(args=["feishu", "check"])
    assert result.exit_code != 0 and "10014" in result.output and APP_SECRET not in result.output


# --- card clicks in detail, roster user_id ------------------------------------------------------------------
def _bound(bot, name, no, open_id):
    m = add_member(bot, name=name, employee_no=no)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", open_id)
    return m


def test_card_reply_replaces_the_card_and_is_not_sent_again(fclient, fbot, fake):
    _bound(fbot, "郑十", "30007", "ou_zheng")

    def show(ctx):
        ctx.reply(Card("投票结果", ["赞成 3 票"], [Button("再投一次", {"do": "vote_again", "n": 2})]))
        ctx.reply("已记录您的投票。")

    fbot.router.actions["vote_again"] = show
    try:
        answer = post(fclient, card_click("ou_zheng", {"do": "vote_again", "n": 1, "_k": "user"})).get_json()
    finally:
        del fbot.router.actions["vote_again"]
    assert answer["toast"] == {"type": "success", "content": "已记录您的投票。"}
    data = answer["card"]["data"]
    assert data["schema"] == "2.0" and data["header"]["title"]["content"] == "投票结果"
    value = data["body"]["elements"][1]["behaviors"][0]["value"]
    assert value["do"] == "vote_again" and value["_k"] == "user" and isinstance(value["_ob"], int)
    outbox.drain(fbot, platform="feishu")
    assert fake.texts("ou_zheng") == ["已记录您的投票。"]  # the card was shown inline, not sent twice
    with fbot.db.Session() as s:
        assert {r.status for r in s.scalars(select(OutboxMessage))} == {"sent"}


def test_group_card_click_toasts_and_replies_in_the_group(fclient, fbot, fake):
    _bound(fbot, "冯一", "30008", "ou_feng")

    def ok(ctx):
        ctx.reply("冯一：已确认 ✅")
        ctx.reply(Card("确认名单", ["冯一"], [Button("我也确认", {"do": "confirm"})]))

    fbot.router.actions["confirm"] = ok
    try:
        click = card_click(
            "ou_feng", {"do": "confirm", "_k": "chat", "_ob": 1}, chat_id="oc_team", message_id="om_c"
        )
        answer = post(fclient, click).get_json()
    finally:
        del fbot.router.actions["confirm"]
    assert answer["toast"]["type"] == "success" and "card" not in answer  # a shared card is not flipped
    outbox.drain(fbot, platform="feishu")
    assert fake.texts("reply:om_c") == [
        "冯一：已确认 ✅",
        "确认名单\n冯一\n[我也确认]",
    ]  # the card as a message


def test_unbound_click_asks_to_bind(fclient, fbot, fake):
    answer = post(fclient, card_click("ou_nobody", {"do": "signup", "activity": 1, "_k": "user"})).get_json()
    assert answer["toast"]["type"] == "success" or answer["toast"]["type"] == "error"
    outbox.drain(fbot, platform="feishu")
    assert "工号" in fake.texts("ou_nobody")[-1]


def test_roster_user_id_links_the_open_id(fclient, fbot, fake):
    _bound(fbot, "陈二", "30009", "e33ggbyz")  # the roster gave the Feishu user_id
    ev = text_message("ou_chen", "我的信息")
    ev["event"]["sender"]["sender_id"]["user_id"] = "e33ggbyz"
    post(fclient, ev)
    outbox.drain(fbot, platform="feishu")
    assert "工号：30009" in fake.texts("ou_chen")[-1]


def test_unsigned_bodies_are_no_padding_oracle(fclient):
    for inner in ("not json", '{"type": "event_callback"}'):
        r = fclient.post("/feishu/events", json={"encrypt": encrypt(ENCRYPT_KEY, inner)})
        assert r.status_code == 401
    r = fclient.post("/feishu/events", json={"encrypt": encrypt("wrong key", "{}")})
    assert r.status_code == 401


def test_text_cannot_at_everyone(fbot, fake):
    _enqueue(fbot, Text('活动：<at user_id="all"></at>'), key="inj")
    outbox.drain(fbot, platform="feishu")
    assert "<at" not in fake.delivered[0]["content"]["text"]


def test_fuzzed_payloads_never_crash_the_adapter(fbot, fake):
    """Type-confused events reach dispatch_event: refused (Rejected) or acknowledged, never an exception."""
    import copy
    import random

    from bot.adapters.feishu import FeishuUnavailable, dispatch_event

    me = mention("@_user_1", BOT_OPEN_ID, "工会小助手")
    samples = [
        text_message("ou_f", "@_user_1 帮助", chat_type="group", chat_id="oc_f", mentions=[me]),
        text_message("ou_f", "帮助"),
        text_message("ou_f", "", message_type="post", content=json.dumps({"content": [[{"tag": "at"}]]})),
        card_click("ou_f", {"do": "signup", "activity": 1, "_k": "user", "_ob": 1}),
        envelope("im.chat.member.bot.added_v1", {"chat_id": "oc_f", "operator_id": {"open_id": "ou_f"}}),
        envelope("im.chat.access_event.bot_p2p_chat_entered_v1", {"operator_id": {"open_id": "ou_f"}}),
        envelope(
            "application.bot.menu_v6", {"operator": {"operator_id": {"open_id": "ou_f"}}, "event_key": "x"}
        ),
    ]
    junk = [None, "", "x", 0, 1.5, True, [], {}, [1, "a"], {"a": None}]
    rng = random.Random(9)

    def paths(obj, prefix=()):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield prefix + (k,)
                yield from paths(v, prefix + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield prefix + (i,)
                yield from paths(v, prefix + (i,))

    for n in range(400):
        ev = copy.deepcopy(rng.choice(samples))
        ev["header"]["event_id"] = f"fuzz{n}"
        if "message" in ev["event"] and isinstance(ev["event"]["message"], dict):
            ev["event"]["message"]["message_id"] = f"om_fuzz{n}"
        for _ in range(rng.randint(1, 3)):
            target = rng.choice(list(paths(ev)))
            parent = ev
            for k in target[:-1]:
                parent = parent[k]
            if isinstance(parent, dict | list):
                parent[target[-1]] = copy.deepcopy(rng.choice(junk))
        try:
            answer = dispatch_event(fbot, ev)
        except (Rejected, FeishuUnavailable):
            continue
        assert isinstance(answer, dict)


def test_tenant_token_never_logged(fbot, fake, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    _enqueue(fbot, Text("一"), key="log1")
    outbox.drain(fbot, platform="feishu")
    fake.expire_tokens()
    _enqueue(fbot, Text("二"), key="log2")
    outbox.drain(fbot, platform="feishu")
    tokens = {c["auth"].removeprefix("Bearer ") for c in fake.calls if c["auth"]}
    assert len(tokens) == 2
    text = caplog.text + json.dumps([(r.msg, r.args) for r in caplog.records], default=str)
    assert not any(t in text for t in tokens) and "new tenant access token" in caplog.text


# --- hostile bodies ----------------------------------------------------------------------------------------
def _signed_raw(raw: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": "n",
        "X-Lark-Signature": sign(ts, "n", ENCRYPT_KEY, raw),
    }


def test_hostile_and_oversized_bodies_get_4xx_without_traceback(fclient, fbot, caplog):
    import io
    import logging

    caplog.set_level(logging.DEBUG)
    deep = b"[" * 60000
    for raw in (deep, b'{"a":' * 50000, b'{"encrypt":' + deep, b"[" * 40 + b"]" * 40):
        assert fclient.post("/feishu/events", data=raw).status_code == 400  # unsigned
        assert fclient.post("/feishu/events", data=raw, headers=_signed_raw(raw)).status_code == 400
    nested = json.dumps({"encrypt": encrypt(ENCRYPT_KEY, '{"a":' * 5000)}).encode()
    assert fclient.post("/feishu/events", data=nested, headers=_signed_raw(nested)).status_code == 400
    too_deep = text_message("ou_deep", "帮助")
    too_deep["event"]["message"]["extra"] = json.loads("[" * 40 + "]" * 40)
    assert post(fclient, too_deep).status_code == 400  # genuine signature, hostile shape
    big = b'{"a":"' + b"x" * feishu.MAX_BODY + b'"}'
    assert fclient.post("/feishu/events", data=big, headers=_signed_raw(big)).status_code == 413
    chunked = fclient.post(  # no Content-Length: cut off one byte past the limit, never read in full
        "/feishu/events",
        input_stream=io.BytesIO(big),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413
    assert feishu.handle_frame(fbot, deep) is None  # the long connection refuses it alike
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert _inbound_count(fbot) == 0


def test_json_depth_limit():
    limit = feishu.MAX_DEPTH
    assert feishu.parse_json("[" * limit + "]" * limit) is not None
    with pytest.raises(Rejected):
        feishu.parse_json("[" * (limit + 1) + "]" * (limit + 1))
    assert feishu._content_text("text", "[" * 60000) == ""


def test_non_finite_timestamp_is_stale(fclient):
    ev = text_message("ou_a", "帮助")
    body, headers = signed_request(ev)
    for ts in ("nan", "inf", "-inf"):
        h = dict(
            headers, **{"X-Lark-Request-Timestamp": ts, "X-Lark-Signature": sign(ts, "n1", ENCRYPT_KEY, body)}
        )
        assert fclient.post("/feishu/events", data=body, headers=h).status_code == 401


def test_long_button_label_ends_in_ellipsis():
    long = "报名 " + "很长的活动名称" * 10
    card = render_card(
        Card("活动", [], [Button(long, {"do": "signup"}), Button("详情", {"do": "a"})]).to_payload(), {}
    )
    first, second = (e["text"]["content"] for e in card["body"]["elements"] if e["tag"] == "button")
    assert len(first) == 40 and first.endswith("…") and first[:-1] == long[:39]
    assert second == "详情"


# --- the stale-request window ------------------------------------------------------------------------------
def test_window_lets_feishus_last_retry_in_and_replays_are_duplicates(fclient, fbot, fake):
    t0 = fbot.clock.now().timestamp()
    body, headers = signed_request(text_message("ou_late", "帮助", message_id="om_late"), ts=t0)
    removed = envelope(
        "im.chat.member.bot.deleted_v1", {"chat_id": "oc_r", "operator_id": {"open_id": "ou_op"}}
    )
    r_body, r_headers = signed_request(removed, ts=t0)
    assert fclient.post("/feishu/events", data=r_body, headers=r_headers).status_code == 200
    added = envelope("im.chat.member.bot.added_v1", {"chat_id": "oc_r", "operator_id": {"open_id": "ou_op"}})
    assert post(fclient, added).status_code == 200  # re-added to the group afterwards

    # Feishu's last retry comes 15 s + 5 min + 1 h + 6 h after the first push, perhaps with the first timestamp
    fbot.clock.offset += timedelta(hours=7, minutes=10)
    assert fclient.post("/feishu/events", data=body, headers=headers).status_code == 200
    assert (
        fclient.post("/feishu/events", data=body, headers=headers).status_code == 200
    )  # replayed: a duplicate
    assert len(_replies(fake, fbot, "ou_late")) == 1
    # a replay of the old removal does not cut the group off again
    assert fclient.post("/feishu/events", data=r_body, headers=r_headers).status_code == 200
    with fbot.db.Session() as s:
        assert not s.scalar(select(Chat).where(Chat.chat_id == "oc_r")).unreachable
    assert len(_replies(fake, fbot, "oc_r")) == 1  # one welcome

    fbot.clock.offset += timedelta(minutes=55)  # 8 h 05 min: outside the window
    assert fclient.post("/feishu/events", data=body, headers=headers).status_code == 401
    assert fclient.post("/feishu/events", data=r_body, headers=r_headers).status_code == 401


# --- delivery-failure codes ----------------------------------------------------------------------------------
def test_failed_sends_carry_feishus_code_for_metrics(fbot, fake, monkeypatch):
    import requests

    from bot.observability import DELIVERY_FAILURES

    def failures(code):
        return DELIVERY_FAILURES.labels("feishu", code)._value.get()

    real = fake._route
    answers = {
        "r99991400": (429, {"code": 99991400, "msg": "request trigger frequency limit"}, {}),
        "c230020": (400, {"code": 230020, "msg": "This operation triggers the frequency limit"}, {}),
        "c429": (429, {}, {"x-ogw-ratelimit-reset": "2"}),  # throttled by the gateway, no body code
        "c230013": (400, {"code": 230013, "msg": "no availability"}, {}),
    }

    def route(req, call):
        return answers.get(call["json"].get("receive_id")) or real(req, call)

    monkeypatch.setattr(fake, "_route", route)
    expected = {"r99991400": "99991400", "c230020": "230020", "c429": "http_429", "c230013": "230013"}
    before = {code: failures(code) for code in expected.values()}
    for target in expected:
        _enqueue(fbot, Text("x"), target=target, key=f"code-{target}")
    outbox.deliver_due(fbot, platform="feishu")
    for code in expected.values():
        assert failures(code) == before[code] + 1, code
    assert _row(fbot, "code-c230013").status == "dead" and _row(fbot, "code-c429").status == "pending"

    sender = fbot.senders["feishu"]

    def timeout(*a, **kw):
        raise requests.ConnectTimeout("no answer")

    monkeypatch.setattr(sender.api.http, "request", timeout)
    _enqueue(fbot, Text("x"), target="ou_t", key="code-timeout")
    result = sender.send(_row(fbot, "code-timeout"))
    assert not result.ok and result.code == "timeout" and "ConnectTimeout" in result.error


def test_the_sdk_still_calls_the_long_connection_hook():
    """longconn_handler overrides lark-oapi's private `_do_without_validation`: fail loudly if an SDK upgrade
    renames it or stops calling it for EVENT frames (then every long-connection event would be lost)."""
    import inspect

    from lark_oapi.event.dispatcher_handler import EventDispatcherHandler
    from lark_oapi.ws.client import Client

    assert callable(getattr(EventDispatcherHandler, "_do_without_validation", None)), "lark-oapi changed"
    source = inspect.getsource(Client._handle_data_frame)
    assert "self._event_handler._do_without_validation(pl)" in source, "lark-oapi's ws client changed"
    # CARD frames never reach a handler in this SDK version; if that changes, handle them in longconn_handler
    card_branch = source.split("MessageType.CARD:", 1)[1].split("else:", 1)[0]
    assert card_branch.strip() == "return", "lark-oapi now delivers CARD frames: route them to dispatch_event"


# --- app-wide send limits, dedupe beyond the retry window ----------------------------------------------------
def test_app_limits_50_a_second_and_1000_a_minute(fbot, fake):
    import time_machine

    from models.rate import take_slot

    sender = fbot.senders["feishu"]
    assert prefetch_bot_open_id(fbot)
    start = 2_000_000_020.0  # 40 s into a minute window (epoch // 60), at the start of a second
    with time_machine.travel(start, tick=False):
        results = []
        for i in range(51):  # 51 recipients inside one second: the per-recipient limit never applies
            _enqueue(fbot, Text("通知"), target=f"ou_r{i}", key=f"s{i}")
            results.append(sender.send(_row(fbot, f"s{i}")))
        assert [r.ok for r in results] == [True] * 50 + [False]
        assert results[-1].retry_after == 1 and results[-1].code == "local_rate_limit"
        assert len(fake.delivered) == 50
    with time_machine.travel(start + 1, tick=False):
        assert sender.send(_row(fbot, "s50")).ok  # the next second has room; the refused try took no slot
        with fbot.db.transaction() as s:  # 948 more sends in this minute (50 a second over the next 19 s)
            for _ in range(948):
                take_slot(s, "app:m", int((start + 1) // 60))
        _enqueue(fbot, Text("通知"), target="ou_m1", key="m1")
        _enqueue(fbot, Text("通知"), target="ou_m2", key="m2")
        assert sender.send(_row(fbot, "m1")).ok  # the 1,000th of the minute
        over = sender.send(_row(fbot, "m2"))
        assert not over.ok and over.retry_after == 19  # until the minute is over (second 41 → 60)
    with time_machine.travel(start + 20, tick=False):
        assert sender.send(_row(fbot, "m2")).ok
    assert len(fake.delivered) == 53


def test_dedupe_holds_far_beyond_feishus_retry_window(fclient, fbot, fake):
    _bound(fbot, "何八", "30013", "ou_he")
    ev = text_message("ou_he", "帮助", message_id="om_old")
    assert post(fclient, ev, ts=fbot.clock.now().timestamp()).status_code == 200
    click = card_click("ou_he", {"do": "no_such_action", "_k": "user"}, event_id="ev_click_old")
    post(fclient, click, ts=fbot.clock.now().timestamp())
    assert len(_replies(fake, fbot, "ou_he")) == 2
    for hours in (7, 8, 30, 24 * 8):  # Feishu's last retry (~7.1 h) and long after, re-signed each time
        fbot.clock.offset = timedelta(hours=hours, minutes=10)
        again = text_message("ou_he", "帮助", message_id="om_old")  # a new event_id, the same message_id
        assert post(fclient, again, ts=fbot.clock.now().timestamp()).status_code == 200
        answer = post(fclient, click, ts=fbot.clock.now().timestamp()).get_json()
        assert answer["toast"]["type"] == "info"  # the click again: already handled
    assert len(_replies(fake, fbot, "ou_he")) == 2


# --- Feishu's official sample payloads (feishu.md §2.1 and §2.3), verbatim -----------------------------------
GROUP_SAMPLE = {
    "schema": "2.0",
    "header": {
        "event_id": "5e3702a84e847582be8db7fb73283c02",
        "event_type": "im.message.receive_v1",
        "create_time": "1608725989000",
        "token": "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV",
        "app_id": "cli_9f5343c580712544",
        "tenant_key": "2ca1d211f64f6438",
    },
    "event": {
        "sender": {
            "sender_id": {
                "union_id": "on_8ed6aa67826108097d9ee143816345",
                "user_id": "e33ggbyz",
                "open_id": "ou_84aad35d084aa403a838cf73ee18467",
            },
            "sender_type": "user",
            "tenant_key": "736588c9260f175e",
        },
        "message": {
            "message_id": "om_5ce6d572455d361153b7cb51da133945",
            "root_id": "om_5ce6d572455d361153b7cb5xxfsdfsdfdsf",
            "parent_id": "om_5ce6d572455d361153b7cb5xxfsdfsdfdsf",
            "create_time": "1609073151345",
            "update_time": "1687343654666",
            "chat_id": "oc_5ce6d572455d361153b7xx51da133945",
            "thread_id": "omt_d4be107c616",
            "chat_type": "group",
            "message_type": "text",
            "content": '{"text":"@_user_1 hello"}',
            "mentions": [
                {
                    "key": "@_user_1",
                    "id": {
                        "union_id": "on_8ed6aa67826108097d9ee143816345",
                        "user_id": "e33ggbyz",
                        "open_id": "ou_84aad35d084aa403a838cf73ee18467",
                    },
                    "name": "Tom",
                    "tenant_key": "736588c9260f175e",
                }
            ],
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 13_2_1) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/101.0.4951.53 Safari/537.36 Lark/6.7.5 LarkLocale/en_US ttnet SDK-Version/6.7.8",
        },
    },
}

CARD_SAMPLE = {
    "schema": "2.0",
    "header": {
        "event_id": "f7984f25108f8137722bb63c*****",
        "token": "066zT6pS4QCbgj5Do145GfDbbag*****",
        "create_time": "1603977298000000",
        "event_type": "card.action.trigger",
        "tenant_key": "2df73991750*****",
        "app_id": "cli_a5fb0ae6a4******",
    },
    "event": {
        "operator": {
            "tenant_key": "2df73991750*****",
            "user_id": "867*****",
            "open_id": "ou_3c14f3a59eaf2825dbe25359f15*****",
            "union_id": "on_cad4860e7af114fb4ff6c5d496d*****",
        },
        "token": "c-295ee57216a5dc9de90fefd0aadb4b1d7d******",
        "action": {
            "value": {"key": "value"},
            "tag": "button",
            "timezone": "Asia/Shanghai",
            "form_value": {
                "field name1": ["selectDemo1", "selectDemo2"],
                "field name2": "value2",
                "Input_lf4fmxwfrd9": "1234",
            },
            "name": "Button_lvkepfu3",
        },
        "host": "im_message",
        "delivery_type": "url_preview",
        "context": {
            "url": "xxx",
            "preview_token": "xxx",
            "open_message_id": "om_574d639e4a44e4dd646eaf628e2*****",
            "open_chat_id": "oc_e4d2605ca917e695f54f11aaf56*****",
        },
    },
}


@pytest.fixture
def sample_app(tmp_path):
    """An app whose Verification Token is the samples' and whose bot is the group sample's @-mentioned Tom."""
    with FakeFeishu(bot_open_id="ou_84aad35d084aa403a838cf73ee18467") as f:

        def make(token):
            settings = dict(SETTINGS, FEISHU_VERIFICATION_TOKEN=token, FEISHU_API_BASE=f.url)
            return make_app(f"sqlite:///{tmp_path / (token[:8] + '.db')}", **settings), f

        yield make


def test_official_group_message_sample(sample_app):
    app, fake = sample_app(GROUP_SAMPLE["header"]["token"])
    bot, client = app.extensions["bot"], app.test_client()
    assert prefetch_bot_open_id(bot)
    assert post(client, GROUP_SAMPLE).get_json() == {}  # encrypted and signed, as Feishu sends it
    assert client.post("/feishu/events", json=GROUP_SAMPLE).status_code == 401  # unsigned: refused
    assert post(client, GROUP_SAMPLE).status_code == 200  # redelivered: one answer
    texts = _replies(fake, bot)
    assert len(texts) == 1 and "私聊" in texts[0]  # Tom is no bound member: asked to bind, in the group
    assert fake.delivered[0]["receive_id"] == "reply:om_5ce6d572455d361153b7cb51da133945"
    with bot.db.Session() as s:
        row = s.scalar(select(InboundMessage))
        assert row.chat_id == "oc_5ce6d572455d361153b7xx51da133945" and row.envelope["text"] == "hello"
    app.extensions["db"].dispose()


def test_official_card_action_sample(sample_app):
    app, fake = sample_app(CARD_SAMPLE["header"]["token"])
    bot, client = app.extensions["bot"], app.test_client()
    answer = post(client, CARD_SAMPLE).get_json()
    assert (
        answer["toast"]["type"] == "error" and "失效" in answer["toast"]["content"] and "card" not in answer
    )
    assert post(client, CARD_SAMPLE).get_json()["toast"]["type"] == "info"  # same event_id: handled once
    assert "发送“帮助”" in _replies(fake, bot, "ou_3c14f3a59eaf2825dbe25359f15*****")[0]
    app.extensions["db"].dispose()


# --- files ----------------------------------------------------------------------------------------------------
def test_clerk_receives_the_monthly_birthday_list_as_a_real_xlsx(fbot, fake):
    import io
    from datetime import UTC, date, datetime

    import time_machine
    from openpyxl import load_workbook

    from handlers.greetings import run_greetings

    clerk = add_member(fbot, name="干事", roles=["clerk"])
    add_member(fbot, name="八月甲", birthday=date(1990, 8, 3))
    add_member(fbot, name="八月乙", birthday=date(1986, 8, 20), branch="外科分会", group="骨科小组")
    add_member(fbot, name="七月", birthday=date(1990, 7, 30))
    with fbot.db.transaction() as s:
        link_identity(s, s.get(Member, clerk.id), "feishu", "ou_clerk")
    with time_machine.travel(datetime(2026, 7, 25, 1, 0, tzinfo=UTC), tick=False):  # 09:00 in Shanghai
        run_greetings(fbot, fbot.clock.now())
        outbox.drain(fbot, platform="feishu")
    text, file = fake.texts("ou_clerk")
    assert "8月生日名单" in text and file == "[file] 2026年8月生日名单.xlsx"
    ((name, data),) = fake.files_to("ou_clerk")
    rows = list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    assert {r[2] for r in rows[1:]} == {"八月甲", "八月乙"}
    (upload,) = fake.calls_to("/im/v1/files")
    assert upload["json"]["file_type"] == "xls" and upload["json"]["file_name"] == name
    assert fake.delivered[-1]["uuid"] == uuid_for(f"monthly_list:2026-08:{clerk.id}:xlsx")


def test_a_file_retried_after_a_lost_answer_uploads_again_and_arrives_once(fbot, fake):
    _enqueue(fbot, File("名单.xlsx", b"PK-data"), key="f1")
    row = _row(fbot, "f1")
    sender = fbot.senders["feishu"]
    assert sender.send(row).ok and sender.send(row).ok  # the same uuid: Feishu delivers it once
    assert len(fake.calls_to("/im/v1/files")) == 2 and fake.files_to("ou_s") == [("名单.xlsx", b"PK-data")]


def test_a_file_to_a_group_chat_goes_as_its_text(fbot, fake):
    _enqueue(fbot, File("名单.xlsx", b"PK-data"), target="oc_g", kind="chat", key="f2")
    outbox.drain(fbot, platform="feishu")
    assert fake.texts("oc_g") == ["（文件：名单.xlsx，请到管理后台下载）"] and not fake.calls_to(
        "/im/v1/files"
    )
