"""WeCom adapter: official vectors, hostile requests, every event type, the sender against the fake API."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import func, select
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from bot import outbox
from bot.adapters import wecom
from bot.adapters.wecom_api import CARD_HINT, button_labels, cut_bytes, failure_code, scrub
from bot.message import Button, Card, File, Text
from bot.observability import DELIVERY_FAILURES
from models.member import PlatformIdentity, link_identity
from models.messaging import Chat, InboundMessage, OutboxMessage
from models.wecom import WecomAccessToken
from tests.conftest import POSTGRES_URL, add_member, make_app
from tests.fake_wecom import FakeWeCom
from tests.wecom_helpers import (
    AGENT_ID,
    AIBOT_AES_KEY,
    AIBOT_TOKEN,
    CORP_ID,
    SECRET,
    aibot_request,
    aibot_text,
    app_request,
    decrypt_aibot_reply,
    decrypt_reply,
    event_xml,
    make_activity,
    settings_for,
    staff_client,
    text_xml,
)

VECTOR_A = dict(
    WECOM_TOKEN="hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    WECOM_AES_KEY="6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    WECOM_CORP_ID="ww1436e0e65a779aee",
    WECOM_AGENT_ID="1000002",
    WECOM_SECRET="s",
)
VECTOR_B = dict(
    WECOM_TOKEN="QDG6eK",
    WECOM_AES_KEY="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    WECOM_CORP_ID="wx5823bf96d3bd56c7",
    WECOM_AGENT_ID="218",
    WECOM_SECRET="s",
)
A_GET = dict(
    msg_signature="012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
    timestamp="1476416373",
    nonce="47744683",
    echostr="fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
)
A_POST = dict(
    msg_signature="0c3914025cb4b4d68103f6bfc8db550f79dcf48e", timestamp="1476422779", nonce="1597212914"
)
A_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkY"
    "cD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4"
    "Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082"
    "f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)
B_GET = dict(
    msg_signature="5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    timestamp="1409659589",
    nonce="263014780",
    echostr="P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
)
B_POST = dict(
    msg_signature="477715d11cdb4164915debcba66cb864d751f3e6", timestamp="1409659813", nonce="1372623149"
)
B_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3"
    "TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5g"
    "sijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQ"
    "Uax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uy"
    "PIGHBZZIs2pDBS8R07+qN+E7Q=="
)


@pytest.fixture
def fake():
    server = FakeWeCom().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def wapp(request, tmp_path, fake):
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL")
        url = POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path / 'wecom.db'}"
    app = make_app(url, **settings_for(fake))
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def wbot(wapp):
    return wapp.extensions["bot"]


@pytest.fixture
def wclient(wapp):
    return wapp.test_client()


def post_app(client, inner: str):
    query, body = app_request(inner)
    return client.post(f"/wecom/callback?{query}", data=body, content_type="text/xml")


def post_aibot(client, payload: dict):
    query, body = aibot_request(payload)
    return client.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")


def deliver(bot) -> int:
    return outbox.drain(bot, platform="wecom")


def texts_to(fake, user: str) -> list[str]:
    out = []
    for body in fake.sent():
        if body["touser"] == user:
            if body["msgtype"] == "file":
                out.append(f"[file] {fake.uploads[body['file']['media_id']][0]}")
                continue
            out.append(
                body["text"]["content"]
                if body["msgtype"] == "text"
                else body["template_card"]["main_title"]["title"]
            )
    return out


def inbound_count(bot) -> int:
    with bot.db.Session() as s:
        return s.scalar(select(func.count(InboundMessage.id)))


def vector_app(tmp_path, vector):
    return make_app(f"sqlite:///{tmp_path / 'vec.db'}", **vector)


# --- official test vectors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "vector,get,expected",
    [(VECTOR_A, A_GET, "1288432023552776189"), (VECTOR_B, B_GET, "1616140317555161061")],
)
def test_url_verification_official_vectors(tmp_path, vector, get, expected):
    app = vector_app(tmp_path, vector)
    resp = app.test_client().get("/wecom/callback?" + urlencode(get))
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == expected
    bad = dict(get, msg_signature="0" * 40)
    assert app.test_client().get("/wecom/callback?" + urlencode(bad)).status_code == 403
    app.extensions["db"].dispose()


@pytest.mark.parametrize(
    "vector,post,encrypt,agent,user,text,msg_id",
    [
        (VECTOR_A, A_POST, A_ENCRYPT, "1000002", "ChenJiaShun", "你好", "1456453720"),
        (VECTOR_B, B_POST, B_ENCRYPT, "218", "mycreate", "hello", "4561255354251345929"),
    ],
)
def test_message_official_vectors(tmp_path, vector, post, encrypt, agent, user, text, msg_id):
    app = vector_app(tmp_path, vector)
    body = (
        f"<xml><ToUserName><![CDATA[{vector['WECOM_CORP_ID']}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[{agent}]]></AgentID></xml>"
    )
    client = app.test_client()
    resp = client.post("/wecom/callback?" + urlencode(post), data=body, content_type="text/xml")
    assert resp.status_code == 200 and resp.get_data() == b""
    bot = app.extensions["bot"]
    with bot.db.Session() as s:
        row = s.scalar(select(InboundMessage))
        assert (row.platform, row.dedupe_key, row.user_id, row.chat_type) == (
            "wecom",
            msg_id,
            user,
            "private",
        )
        assert row.envelope["text"] == text
        replies = list(s.scalars(select(OutboxMessage)))
    assert len(replies) == 1 and "工号" in replies[0].payload["text"]  # a stranger is asked who they are
    # The platform retries the same delivery: acknowledged, processed once.
    assert (
        client.post("/wecom/callback?" + urlencode(post), data=body, content_type="text/xml").status_code
        == 200
    )
    assert inbound_count(bot) == 1
    app.extensions["db"].dispose()


def test_wrong_corp_id_is_refused(tmp_path):
    app = vector_app(tmp_path, dict(VECTOR_A, WECOM_CORP_ID="wwSomeoneElse"))
    body = f"<xml><Encrypt><![CDATA[{A_ENCRYPT}]]></Encrypt></xml>"
    resp = app.test_client().post("/wecom/callback?" + urlencode(A_POST), data=body, content_type="text/xml")
    assert resp.status_code == 403
    assert inbound_count(app.extensions["bot"]) == 0
    get = app.test_client().get("/wecom/callback?" + urlencode(A_GET))
    assert get.status_code == 403
    app.extensions["db"].dispose()


# --- hostile and broken requests -----------------------------------------------------------------------
def test_forged_truncated_and_hostile_requests_get_4xx(wclient, wbot):
    query, body = app_request(text_xml("u1", "帮助"))
    forged = query.replace("msg_signature=", "msg_signature=0")
    assert wclient.post(f"/wecom/callback?{forged}", data=body).status_code == 403
    assert wclient.post("/wecom/callback", data=body).status_code == 400  # no signature at all
    assert wclient.post(f"/wecom/callback?{query}", data=body[: len(body) // 2]).status_code == 400
    assert wclient.post(f"/wecom/callback?{query}", data=b"\xff\xfe<xml/>").status_code == 400
    assert wclient.post(f"/wecom/callback?{query}", data="").status_code == 400
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{"&lol" + str(i - 1) + ";" if i else "&lol;"}' * 10 + '">' for i in range(9)
        )
        + "]><xml><Encrypt>&lol8;</Encrypt></xml>"
    )
    started = time.perf_counter()
    assert wclient.post(f"/wecom/callback?{query}", data=laughs).status_code == 400
    assert time.perf_counter() - started < 1
    huge = "<xml><Encrypt>" + "A" * 70_000 + "</Encrypt></xml>"
    assert wclient.post(f"/wecom/callback?{query}", data=huge).status_code == 413
    many_cdata = "<![CDATA[" * 7000
    assert wclient.post(f"/wecom/callback?{query}", data=many_cdata).status_code == 400
    # A genuine signature over garbage that is not AES output.
    from wechatpy.crypto import _get_signature

    ts, nonce, enc = "1", "2", "bm90IGFlcw=="
    sig = _get_signature(wecom_token(), ts, nonce, enc)
    resp = wclient.post(
        "/wecom/callback?" + urlencode({"msg_signature": sig, "timestamp": ts, "nonce": nonce}),
        data=f"<xml><Encrypt>{enc}</Encrypt></xml>",
    )
    assert resp.status_code == 400
    assert wclient.post("/wecom/aibot?" + query, data="not json").status_code == 400
    assert wclient.post("/wecom/aibot?" + query, data='{"encrypt": "x"}').status_code == 403
    assert inbound_count(wbot) == 0


def test_deeply_nested_bodies_get_400_not_500(wclient, wbot):
    """json.loads raises RecursionError (not a ValueError) on deep nesting: still a 4xx, nothing stored."""
    query, _ = aibot_request(aibot_text("u1", "帮助"))
    for body in ("[" * 60000, '{"a":' * 10000, "1" * 5000):
        assert wclient.post(f"/wecom/aibot?{query}", data=body).status_code == 400
    # The same inside a correctly signed and encrypted envelope.
    crypto = WeChatCrypto(AIBOT_TOKEN, AIBOT_AES_KEY, "")
    enc = PrpCrypto(crypto.key).encrypt("[" * 30000, "").decode()
    sig = _get_signature(AIBOT_TOKEN, "1", "n", enc)
    signed = urlencode({"msg_signature": sig, "timestamp": "1", "nonce": "n"})
    resp = wclient.post(f"/wecom/aibot?{signed}", data=json.dumps({"encrypt": enc}))
    assert resp.status_code == 400
    # The XML callback: deep nesting where the ciphertext belongs.
    app_query, _ = app_request(text_xml("u1", "帮助"))
    nested = "<xml><Encrypt>" + "<a>" * 5000 + "</a>" * 5000 + "</Encrypt></xml>"
    assert wclient.post(f"/wecom/callback?{app_query}", data=nested).status_code == 400
    assert wecom.decode_key("0|" + "[" * 1022) is None
    assert inbound_count(wbot) == 0


def wecom_token() -> str:
    from tests.wecom_helpers import TOKEN

    return TOKEN


def test_decrypted_xml_with_doctype_is_refused(wclient, wbot):
    inner = '<!DOCTYPE x [<!ENTITY a "b">]><xml><FromUserName>u1</FromUserName><MsgType>text</MsgType></xml>'
    assert post_app(wclient, inner).status_code == 400
    assert inbound_count(wbot) == 0


def test_user_text_containing_markup_in_cdata_is_fine(wclient, wbot):
    assert post_app(wclient, text_xml("u1", "<!DOCTYPE> 是什么 <?php")).status_code == 200
    assert inbound_count(wbot) == 1


def test_not_configured_means_not_found(client):
    assert client.get("/wecom/callback").status_code == 404
    assert client.post("/wecom/aibot", data="{}").status_code == 404


# --- events --------------------------------------------------------------------------------------------
def test_event_types(wclient, wbot, fake):
    member = add_member(wbot, name="王芳", employee_no="20001")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "wangfang")
    assert post_app(wclient, event_xml("wangfang", "enter_agent")).status_code == 200
    assert post_app(wclient, event_xml("wangfang", "enter_agent", ts=2)).status_code == 200  # once a day
    assert post_app(wclient, event_xml("wangfang", "click", "MENU_HELP")).status_code == 200
    assert post_app(wclient, event_xml("wangfang", "click", "MENU_MY_INFO", ts=1)).status_code == 200
    assert post_app(wclient, event_xml("wangfang", "subscribe")).status_code == 200
    assert post_app(wclient, event_xml("wangfang", "LOCATION")).status_code == 200
    assert post_app(wclient, event_xml("wangfang", "click", "UNKNOWN_KEY")).status_code == 200
    image = text_xml("wangfang", "x").replace("<MsgType><![CDATA[text]]>", "<MsgType><![CDATA[image]]>")
    assert post_app(wclient, image).status_code == 200
    deliver(wbot)
    got = texts_to(fake, "wangfang")
    assert len(got) == 3
    assert "欢迎使用" in got[0]
    assert "王芳您好" in got[1]
    assert "工号：20001" in got[2]


def test_menu_keys_map_to_texts():
    keys = [k for _, subs in wecom.MENU for k, _, _ in subs]
    assert len(wecom.MENU) <= 3 and all(len(subs) <= 5 for _, subs in wecom.MENU)
    labels = {label for _, subs in wecom.MENU for _, label, _ in subs}
    assert {"活动报名", "我要提案", "困难帮扶", "帮助"} <= labels and any(
        top == "我的" for top, _ in wecom.MENU
    )
    assert set(keys) == set(wecom.MENU_TEXT)


def test_string_msgid_is_opaque(wclient, wbot):
    assert (
        post_app(wclient, text_xml("u9", "你好", msg_id="CAIQg/PKxgYY2sC9tpuAgAMg9/zKaw==")).status_code
        == 200
    )
    with wbot.db.Session() as s:
        assert s.scalar(select(InboundMessage.dedupe_key)) == "CAIQg/PKxgYY2sC9tpuAgAMg9/zKaw=="


def test_the_typed_words_travel_beside_the_normal_form(wclient, wbot):
    """What free text is kept from: as written, without our @-mention; the router still sees the normal form."""
    assert post_app(wclient, text_xml("u9", "提案　先写一个说明，三号见！")).status_code == 200
    group = aibot_text("u9", "@工会小助手 先写一个说明，三号见！", chat_id="wrGROUP")
    assert post_aibot(wclient, group).status_code == 200
    with wbot.db.Session() as s:
        app_row, aibot_row = s.scalars(select(InboundMessage).order_by(InboundMessage.id))
    assert (app_row.envelope["text"], app_row.envelope["typed"]) == (
        "提案 先写1个说明,3号见!",
        "提案　先写一个说明，三号见！",
    )
    assert (aibot_row.envelope["text"], aibot_row.envelope["typed"]) == (
        "先写1个说明,3号见!",
        "先写一个说明，三号见！",
    )
    key = next(iter(wecom.MENU_TEXT))
    menu = wecom.app_message({"FromUserName": "u9", "MsgType": "event", "Event": "click", "EventKey": key},
                             ("工会小助手",), wbot.clock.now())  # fmt: skip
    assert menu is not None and menu.typed == wecom.MENU_TEXT[key]


def test_enter_agent_welcome_day_follows_the_configured_zone(tmp_path):
    """Welcomed once a day, and the day is the union's (TIMEZONE), not China's UTC+8."""
    app = make_app(f"sqlite:///{tmp_path / 'ny.db'}", TIMEZONE="America/New_York")
    event = {"FromUserName": "u1", "MsgType": "event", "Event": "enter_agent"}
    with app.app_context():
        msg = wecom.app_message(event, ("工会小助手",), datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    assert msg is not None and msg.message_id == "enter:u1:2026-11-30"  # 21:00 on the 30th in New York
    app.extensions["db"].dispose()


def test_key_encoding_round_trip():
    action = {"do": "signup", "activity": 12, "note": "中文"}
    key = wecom.encode_key(3, action)
    assert len(key.encode()) <= 1024 and wecom.decode_key(key) == action
    assert wecom.encode_key(0, {"do": "x", "blob": "长" * 400}) is None
    assert wecom.decode_key("garbage") is None and wecom.decode_key("1|[1]") is None


# --- card clicks (template_card_event) and update_button -----------------------------------------------
@pytest.fixture
def test_action():
    from handlers import router

    def _signup(ctx):
        if ctx.msg.action.get("full"):
            ctx.reply("抱歉，名额已满。")
            return
        ctx.reply(f"报名成功：活动 {ctx.msg.action['activity']}")

    router.actions["_wecom_test_signup"] = _signup
    yield "_wecom_test_signup"
    router.actions.pop("_wecom_test_signup", None)


def test_card_click_runs_action_flips_button_and_dedupes(wclient, wbot, fake, test_action):
    wecom.DONE_LABELS[test_action] = "已报名"
    member = add_member(wbot, name="李雷", employee_no="20002")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "lilei")
    key = wecom.encode_key(0, {"do": test_action, "activity": 7})
    click = event_xml(
        "lilei", "template_card_event", key, ts=1700000000, TaskId="ub_1_1", CardType="button_interaction"
    )
    resp = post_app(wclient, click)
    assert resp.status_code == 200
    reply = decrypt_reply(resp.get_data())
    assert reply["MsgType"] == "update_button" and reply["Button"]["ReplaceName"] == "已报名"
    assert reply["ToUserName"] == "lilei" and reply["FromUserName"] == CORP_ID
    again = post_app(wclient, click)  # WeCom retries the same click
    assert again.status_code == 200 and again.get_data() == b""
    deliver(wbot)
    assert texts_to(fake, "lilei") == ["报名成功：活动 7"]
    # A refused action leaves the button clickable.
    full = wecom.encode_key(0, {"do": test_action, "activity": 8, "full": True})
    resp = post_app(wclient, event_xml("lilei", "template_card_event", full, TaskId="ub_2_1"))
    assert resp.get_data() == b""
    wecom.DONE_LABELS.pop(test_action)


def test_card_click_from_stranger_asks_to_bind(wclient, wbot, fake, test_action):
    key = wecom.encode_key(0, {"do": test_action, "activity": 7})
    resp = post_app(wclient, event_xml("nobody", "template_card_event", key, TaskId="t1"))
    assert resp.get_data() == b""
    deliver(wbot)
    assert "工号" in texts_to(fake, "nobody")[0]


# --- sender against the fake API -----------------------------------------------------------------------
def enqueue(bot, target: str, message, key: str, kind: str = "user", context=None):
    with bot.db.transaction() as s:
        outbox.enqueue(
            s,
            platform="wecom",
            target_kind=kind,
            target_id=target,
            message=message,
            key=key,
            context=context,
            now=bot.clock.now(),
        )


def statuses(bot) -> list[tuple[str, str | None]]:
    with bot.db.Session() as s:
        return [(r.status, r.last_error) for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


def test_token_cached_in_db_and_shared(wbot, fake, wapp):
    for i in range(3):
        enqueue(wbot, "u1", Text(f"m{i}"), f"k{i}")
    assert deliver(wbot) == 3
    assert fake.count("/cgi-bin/gettoken") == 1
    with wbot.db.Session() as s:
        row = s.scalar(select(WecomAccessToken))
        assert row.access_token == "tok-1" and row.expires_at > wbot.clock.now() + timedelta(hours=1)
    # Another worker (a second sender on the same database) uses the same token.
    from bot.adapters.wecom_api import WeComSender

    other = WeComSender(wbot)
    assert other.client.token() == "tok-1" and fake.count("/cgi-bin/gettoken") == 1
    # Shortly before expiry it is fetched again.
    wbot.clock.offset = timedelta(seconds=7200 - 200)
    enqueue(wbot, "u1", Text("later"), "k-later")
    deliver(wbot)
    assert fake.count("/cgi-bin/gettoken") == 2


@pytest.mark.parametrize("code", [42001, 40014])
def test_expired_token_refreshed_once(wbot, fake, code):
    enqueue(wbot, "u1", Text("one"), "k1")
    deliver(wbot)
    fake.expire_tokens(code)
    enqueue(wbot, "u1", Text("two"), "k2")
    assert deliver(wbot) == 1
    assert fake.count("/cgi-bin/gettoken") == 2
    assert texts_to(fake, "u1") == ["one", "two"]


def test_persistent_token_error_does_not_loop(wbot, fake):
    enqueue(wbot, "u1", Text("one"), "k1")
    for _ in range(5):
        fake.fail_next("/cgi-bin/message/send", 42001)
    # every token handed out is refused: one refresh, then the row waits for a later attempt
    fake.fail_next("/cgi-bin/gettoken", 0, access_token="tok-x", expires_in=7200)
    deliver(wbot)
    assert fake.count("/cgi-bin/gettoken") <= 2
    assert fake.count("/cgi-bin/message/send") == 2
    status, error = statuses(wbot)[0]
    assert status == "pending" and "tok-" not in (error or "")


def test_rate_limit_45009_retried_later_and_delivered_once(wbot, fake):
    enqueue(wbot, "u1", Text("hello"), "k1")
    fake.fail_next("/cgi-bin/message/send", 45009, "api freq out of limit")
    assert deliver(wbot) == 0
    assert statuses(wbot)[0][0] == "pending"
    assert deliver(wbot) == 0  # not due yet
    wbot.clock.offset = timedelta(seconds=61)
    assert deliver(wbot) == 1
    deliver(wbot)
    assert texts_to(fake, "u1") == ["hello"]


def test_app_wide_cap_per_api_holds_rows_without_spending_attempts(tmp_path, fake):
    """WeCom caps each API per company (10,000 a minute): all workers together stay under the configured cap."""
    import time_machine

    app = make_app(f"sqlite:///{tmp_path / 'cap.db'}", **settings_for(fake), WECOM_API_CALLS_PER_MINUTE=3)
    bot = app.extensions["bot"]
    try:
        start = 2_000_000_020.0  # 40 s into a minute window (epoch // 60)
        with time_machine.travel(start, tick=False):
            for i in range(5):  # five members: the per-member limit never applies
                enqueue(bot, f"m{i}", Text("通知"), f"cap{i}")
            assert deliver(bot) == 3
            assert len(fake.sent()) == 3
            with bot.db.Session() as s:
                held = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
            assert [r.attempts for r in held] == [0, 0]  # held, not failed
            assert {r.next_attempt_at.timestamp() for r in held} == {start + 20}  # the next minute
            assert deliver(bot) == 0 and len(fake.sent()) == 3
        with time_machine.travel(start + 20, tick=False):
            assert deliver(bot) == 2
        assert sorted(b["touser"] for b in fake.sent()) == [f"m{i}" for i in range(5)]
    finally:
        app.extensions["db"].dispose()


def test_two_workers_taking_slots_ahead_stay_under_the_cap_together(tmp_path, fake):
    """Each sender takes ten slots at a time from the shared counter: two workers (two apps on one database)
    alternating still send no more than the cap in a minute, and the rest goes out in the next minute."""
    import time_machine

    from bot.adapters.wecom_api import SLOT_CHUNK

    url = f"sqlite:///{tmp_path / 'cap2.db'}"
    apps = [make_app(url, **settings_for(fake), WECOM_API_CALLS_PER_MINUTE=25) for _ in range(2)]
    bots = [a.extensions["bot"] for a in apps]
    try:
        start = 2_000_000_020.0  # 40 s into a minute window
        with time_machine.travel(start, tick=False):
            for i in range(40):
                enqueue(bots[0], f"m{i}", Text("通知"), f"cap{i}")
            for _ in range(6):
                for b in bots:
                    outbox.deliver_due(b, limit=4, platform="wecom")
            assert (
                len(fake.sent()) == 25 > 2 * SLOT_CHUNK
            )  # both took chunks, then single slots up to the cap
        with time_machine.travel(start + 20, tick=False):
            for b in bots:
                deliver(b)
        assert sorted(b["touser"] for b in fake.sent()) == sorted(f"m{i}" for i in range(40))
    finally:
        for a in apps:
            a.extensions["db"].dispose()


def test_invaliduser_marks_identity_unreachable(wbot, fake):
    member = add_member(wbot, name="赵六", employee_no="20003")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "gone")
    fake.invalid_users.add("gone")
    enqueue(wbot, "gone", Text("hi"), "k1")
    deliver(wbot)
    assert statuses(wbot)[0][0] == "dead"
    with wbot.db.Session() as s:
        assert s.scalar(
            select(PlatformIdentity.unreachable).where(PlatformIdentity.platform_user_id == "gone")
        )
    assert fake.count("/cgi-bin/message/send") == 1


def test_unreachable_mark_is_lifted_by_a_private_message(wclient, wbot, fake):
    """invaliduser marked the member; once they write to the app again, notify_member reaches them again."""
    member = add_member(wbot, name="赵六", employee_no="20003")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "back")
    fake.invalid_users.add("back")
    enqueue(wbot, "back", Text("hi"), "k1")
    deliver(wbot)
    fake.invalid_users.discard("back")  # e.g. the member is inside the app's visible range again
    with wbot.db.transaction() as s:
        assert wbot.notify_member(s, s.get(type(member), member.id), Text("通知1"), "n1") is False
    # a group @ through the AI bot does not prove the app can write to them privately
    assert post_aibot(wclient, aibot_text("back", "@工会小助手 帮助", chat_id="wr-g1")).status_code == 200
    with wbot.db.transaction() as s:
        assert wbot.notify_member(s, s.get(type(member), member.id), Text("通知2"), "n2") is False
    assert post_app(wclient, text_xml("back", "我的信息")).status_code == 200
    with wbot.db.transaction() as s:
        assert wbot.notify_member(s, s.get(type(member), member.id), Text("通知3"), "n3") is True
    deliver(wbot)
    assert "通知3" in texts_to(fake, "back")


UNTRUSTED = (
    "not allow to access from your ip, hint: [1787373915609110759172198], from ip: 203.0.113.7, "
    "more info at https://open.work.weixin.qq.com/devtool/query?e=60020"
)


def test_untrusted_ip_alert_on_console_rows_wait_and_go_out_once_trusted(wapp, wbot, fake):
    enqueue(wbot, "u1", Text("hi"), "k1")
    fake.fail_next("/cgi-bin/message/send", 60020, UNTRUSTED)
    deliver(wbot)
    status, error = statuses(wbot)[0]
    assert status == "pending" and "企业可信IP" in error
    console = staff_client(wapp)
    banner = console.get("/admin/").get_data(as_text=True)
    assert "203.0.113.7" in banner and "企业可信IP" in banner and "60020" in banner
    # Nobody fixes it for hours: the row keeps waiting, far beyond OUTBOX_MAX_ATTEMPTS attempts.
    for i in range(1, wbot.settings.OUTBOX_MAX_ATTEMPTS + 4):
        fake.fail_next("/cgi-bin/message/send", 60020, UNTRUSTED)
        wbot.clock.offset = timedelta(seconds=601 * i)
        deliver(wbot)
    assert [s for s, _ in statuses(wbot)] == ["pending"]
    assert fake.count("/cgi-bin/message/send") == wbot.settings.OUTBOX_MAX_ATTEMPTS + 4
    assert "203.0.113.7" in console.get("/admin/").get_data(as_text=True)
    # The IP is trusted now: the next successful send clears the alert and sends the held row at once.
    enqueue(wbot, "u2", Text("again"), "k2")
    deliver(wbot)
    assert texts_to(fake, "u1") == ["hi"] and texts_to(fake, "u2") == ["again"]
    assert [s for s, _ in statuses(wbot)] == ["sent", "sent"]
    assert "203.0.113.7" not in console.get("/admin/").get_data(as_text=True)
    deliver(wbot)
    assert len(fake.sent()) == 2


def failures(code: str) -> float:
    return DELIVERY_FAILURES.labels("wecom", code)._value.get()


def test_failed_sends_carry_the_wecom_errcode_for_metrics(wbot, fake):
    before = {c: failures(c) for c in ("45009", "60020", "http_502", "network")}
    enqueue(wbot, "u1", Text("a"), "k1")
    fake.fail_next("/cgi-bin/message/send", 45009, "api freq out of limit")
    deliver(wbot)
    enqueue(wbot, "u2", Text("b"), "k2")
    fake.fail_http_next("/cgi-bin/message/send", 502)
    deliver(wbot)
    enqueue(wbot, "u3", Text("c"), "k3")
    fake.fail_next("/cgi-bin/message/send", 60020, "not allow to access from your ip")
    deliver(wbot)
    assert failures("45009") == before["45009"] + 1
    assert failures("http_502") == before["http_502"] + 1
    assert failures("60020") == before["60020"] + 1
    fake.stop()
    enqueue(wbot, "u4", Text("d"), "k4")
    deliver(wbot)
    assert failures("network") == before["network"] + 1
    assert [s for s, _ in statuses(wbot)] == ["pending"] * 4
    assert failure_code(requests.ReadTimeout()) == "timeout"
    assert failure_code(requests.ConnectTimeout()) == "timeout"
    assert failure_code(ValueError("not json")) == "bad_response"


def test_a_batch_that_outlives_its_lease_sends_nothing_twice(wbot, fake):
    for i in range(3):
        enqueue(wbot, f"u{i}", Text(f"m{i}"), f"k{i}")
    sender = wbot.senders["wecom"]
    batch = outbox.claim(wbot)  # worker A leases all three ...
    wbot.clock.offset = outbox.LEASE + timedelta(minutes=1)  # ... and is slow: the leases have expired
    assert outbox._still_ours(
        wbot, batch[0]
    )  # A's delivery loop renews row 0's lease right before sending it
    assert sender.send(batch[0]).ok
    taken = outbox.claim(wbot)  # worker B takes over only the rows A has not started
    assert [r.id for r in taken] == [r.id for r in batch[1:]]
    assert not any(outbox._still_ours(wbot, row) for row in batch[1:])  # A's loop leaves them to B ...
    assert [sender.send(row).code for row in batch[1:]] == ["lease_lost"] * 2  # ... and so would the sender
    assert all(sender.send(row).ok for row in taken)
    assert sorted(body["text"]["content"] for body in fake.sent()) == ["m0", "m1", "m2"]


def test_twenty_per_group_webhook_per_minute(wbot, fake):
    with wbot.db.transaction() as s:
        s.add(
            Chat(platform="wecom", chat_id="wrBUSY", title="忙碌的群", webhook_url=fake.webhook_url("busy"))
        )
    for i in range(22):
        enqueue(wbot, "wrBUSY", Text(f"通知{i}"), f"g{i}", kind="chat")
    deliver(wbot)
    assert fake.count("/cgi-bin/webhook/send") == 20
    assert [e for s, e in statuses(wbot) if s == "pending"] == [
        "群消息推送每分钟20条的上限已到，稍后发送"
    ] * 2
    wbot.clock.offset = timedelta(seconds=61)
    deliver(wbot)
    sent = [b["text"]["content"] for b in fake.sent("/cgi-bin/webhook/send")]
    assert sorted(sent) == sorted(f"通知{i}" for i in range(22))


def test_concurrency_limit_45033_backs_off_and_delivers_once(wbot, fake):
    enqueue(wbot, "u1", Text("hello"), "k1")
    fake.fail_next("/cgi-bin/message/send", 45033, "api concurrent out of limit")
    assert deliver(wbot) == 0
    assert statuses(wbot)[0][0] == "pending" and "45033" in statuses(wbot)[0][1]
    wbot.clock.offset = timedelta(seconds=30)
    assert deliver(wbot) == 0 and fake.count("/cgi-bin/message/send") == 1  # still backing off
    wbot.clock.offset = timedelta(seconds=61)
    assert deliver(wbot) == 1
    deliver(wbot)
    assert texts_to(fake, "u1") == ["hello"] and statuses(wbot)[0] == ("sent", None)


def test_access_token_never_logged(wbot, fake, caplog):
    """Over a token fetch, a send and a 42001 refresh, at DEBUG, nothing logs a token or the secret."""
    caplog.set_level(logging.DEBUG)
    enqueue(wbot, "u1", Text("one"), "k1")
    deliver(wbot)  # fetches tok-1
    fake.expire_tokens(42001)
    enqueue(wbot, "u1", Text("two"), "k2")
    deliver(wbot)  # refused, refreshed to tok-2, sent again
    assert fake.count("/cgi-bin/gettoken") == 2 and texts_to(fake, "u1") == ["one", "two"]
    ours = [r for r in caplog.records if not r.name.startswith("werkzeug")]  # the fake server's own log
    text = "\n".join(r.getMessage() for r in ours)
    assert "/cgi-bin/message/send" in text  # urllib3 did log the requests ...
    assert "tok-1" not in text and "tok-2" not in text and SECRET not in text  # ... without credentials


def test_thirty_per_member_per_minute(wbot, fake):
    for i in range(32):
        enqueue(wbot, "busy", Text(f"m{i}"), f"k{i}")
    failures = DELIVERY_FAILURES.labels("wecom", "rate_wait")._value.get()
    deliver(wbot)
    assert len(texts_to(fake, "busy")) == 30
    with wbot.db.Session() as s:
        waiting = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
    # held back by our own limit: no attempt used (so no dead letter however long the queue), no failure counted
    assert [(r.attempts, r.last_error) for r in waiting] == [
        (0, "已达到每位成员每分钟30条的上限，稍后发送")
    ] * 2
    assert DELIVERY_FAILURES.labels("wecom", "rate_wait")._value.get() == failures
    wbot.clock.offset = timedelta(seconds=61)
    deliver(wbot)
    assert len(texts_to(fake, "busy")) == 32


def test_card_rendered_as_template_card_and_long_text_cut(wbot, fake):
    card = Card(
        "一个非常非常非常非常非常非常非常非常非常长的活动标题需要截断",
        ["时间：周六", "地点：礼堂"],
        [Button(f"按钮{i}", {"do": "signup", "activity": i}) for i in range(8)],
    )
    enqueue(wbot, "u1", card, "card")
    enqueue(wbot, "u1", Text("长" * 3000), "long")
    deliver(wbot)
    full, card_body, text_body = fake.sent()
    # the title does not fit the card: the whole text goes first, then the card with the buttons
    assert full["msgtype"] == "text" and full["text"]["content"] == "\n".join([card.title, *card.lines])
    tc = card_body["template_card"]
    assert card_body["msgtype"] == "template_card" and tc["card_type"] == "button_interaction"
    assert card_body["agentid"] == int(AGENT_ID)
    assert len(tc["button_list"]) == 6 and len({b["key"] for b in tc["button_list"]}) == 6
    assert wecom.decode_key(tc["button_list"][2]["key"]) == {"do": "signup", "activity": 2}
    assert len(tc["main_title"]["title"]) <= 26 and tc["main_title"]["title"].endswith("…")
    assert tc["sub_title_text"] == CARD_HINT and tc["task_id"].startswith("ub_")
    short = Card("活动", ["时间：周六", "地点：礼堂"], [Button("报名", {"do": "signup", "activity": 1})])
    enqueue(wbot, "u1", short, "short")
    deliver(wbot)
    (fits,) = fake.sent()[3:]
    assert (
        fits["template_card"]["sub_title_text"] == "时间：周六\n地点：礼堂"
    )  # a card that fits: one message
    content = text_body["text"]["content"]
    assert len(content.encode()) <= 2048 and content.endswith("…")


def test_a_failed_card_after_its_text_is_retried_without_the_text(wbot, fake):
    card = Card(
        "请核对您的提案", ["现状和理由：" + "停车难。" * 40], [Button("确认提交", {"do": "proposal_confirm"})]
    )
    enqueue(wbot, "u1", card, "pc")
    fake.fail_next_of("template_card", 45009, "api freq out of limit")
    assert deliver(wbot) == 0
    assert [b["msgtype"] for b in fake.sent()] == ["text"]
    wbot.clock.offset = timedelta(seconds=61)
    assert deliver(wbot) == 1
    assert [b["msgtype"] for b in fake.sent()] == ["text", "template_card"]  # the text once


def test_labels_cut_alike_keep_the_id_and_respond_to_the_same_action():
    same = [Button(f"报名 职工健康讲座第{i}场", {"do": "signup", "activity": 10 + i}) for i in range(3)]
    assert button_labels(same) == ["报名【10】职工健…", "报名【11】职工健…", "报名【12】职工健…"]
    plain = [Button("确认", {"do": "a"}), Button("确认", {"do": "b"})]
    assert button_labels(plain) == ["【1】确认", "【2】确认"]
    assert button_labels([Button("确认提交", {"do": "x"}), Button("取消", {"do": "y"})]) == [
        "确认提交",
        "取消",
    ]


def test_group_chat_via_webhook_and_appchat(wbot, fake):
    with wbot.db.transaction() as s:
        s.add(Chat(platform="wecom", chat_id="wrHOOK", title="心内科", webhook_url=fake.webhook_url("k1")))
    enqueue(wbot, "wrHOOK", Card("活动", ["周六"], [Button("报名", {"do": "signup"})]), "g1", kind="chat")
    enqueue(wbot, "wrAPP", Text("通知"), "g2", kind="chat")
    deliver(wbot)
    assert fake.sent("/cgi-bin/webhook/send")[0]["text"]["content"] == "活动\n周六\n【报名】"
    assert fake.sent("/cgi-bin/appchat/send")[0] == {
        "chatid": "wrAPP",
        "msgtype": "text",
        "text": {"content": "通知"},
    }
    assert "key=" not in repr(statuses(wbot))


def test_scrub_and_cut():
    assert scrub("GET /cgi-bin/gettoken?corpid=a&corpsecret=XYZ&access_token=T") == (
        "GET /cgi-bin/gettoken?corpid=a&corpsecret=***&access_token=***"
    )
    assert cut_bytes("好" * 10, 9) == "好好…"
    assert cut_bytes("ok", 9) == "ok"


def test_network_error_is_retried_without_leaking_token(wbot, fake):
    enqueue(wbot, "u1", Text("hi"), "k1")
    deliver(wbot)  # token cached
    fake.stop()
    enqueue(wbot, "u1", Text("again"), "k2")
    deliver(wbot)
    status, error = statuses(wbot)[1]
    assert status == "pending" and "tok-1" not in error


# --- AI bot --------------------------------------------------------------------------------------------
def test_aibot_group_message_replies_once_through_response_url(wclient, wbot, fake):
    member = add_member(wbot, name="韩梅梅", employee_no="20004")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "hanmm")
    payload = aibot_text(
        "hanmm", "@工会小助手 帮助", chat_id="wrGROUP", response_url=fake.response_url("rc1")
    )
    assert post_aibot(wclient, payload).status_code == 200
    assert post_aibot(wclient, payload).status_code == 200  # duplicate delivery
    deliver(wbot)
    sent = fake.sent("/cgi-bin/aibot/response")
    assert len(sent) == 1 and "韩梅梅您好" in sent[0]["markdown"]["content"]
    with wbot.db.Session() as s:
        inbound = s.scalar(select(InboundMessage))
        assert (inbound.chat_type, inbound.chat_id, inbound.envelope["text"]) == ("group", "wrGROUP", "帮助")
        assert s.scalar(select(Chat.chat_id).where(Chat.platform == "wecom")) == "wrGROUP"


def test_aibot_merges_several_replies_into_one_use(wbot, fake):
    ctx = {
        "in_reply_to": "aibot:M1",
        "response_url": fake.response_url("rc2"),
        "received": wbot.clock.now().isoformat(),
    }
    for i in range(3):
        enqueue(wbot, "wrG", Text(f"第{i}条"), f"reply:wecom:aibot:M1:{i}", kind="chat", context=ctx)
    deliver(wbot)
    sent = fake.sent("/cgi-bin/aibot/response")
    assert len(sent) == 1 and sent[0]["markdown"]["content"] == "第0条\n\n第1条\n\n第2条"
    assert [s for s, _ in statuses(wbot)] == ["sent"] * 3


def test_aibot_cards_through_response_url_only_in_single_chats(wbot, fake):
    """WeCom: a template card through response_url works in single chats only; a group gets it as text."""
    card = Card("活动 7", ["周六"], [Button("报名", {"do": "signup", "activity": 7})])
    for i, (kind, target) in enumerate((("user", "lilei"), ("chat", "wrG"))):
        ctx = {
            "in_reply_to": f"aibot:M{i}",
            "response_url": fake.response_url(f"rc{i}"),
            "received": wbot.clock.now().isoformat(),
        }
        enqueue(wbot, target, card, f"reply:wecom:aibot:M{i}:0", kind=kind, context=ctx)
    deliver(wbot)
    single, group = fake.sent("/cgi-bin/aibot/response")
    assert (
        single["msgtype"] == "template_card" and single["template_card"]["button_list"][0]["text"] == "报名"
    )
    assert group == {"msgtype": "markdown", "markdown": {"content": "活动 7\n周六\n【报名】"}}


def test_aibot_card_too_long_for_a_card_goes_through_response_url_in_full(wbot, fake):
    """response_url is good for one message: a card whose text does not fit goes as the full text, not cut."""
    lines = [f"【{i}】职工健康讲座第{i}场 · 12月{i}日 14:00（剩10）" for i in range(1, 9)]
    card = Card(
        "可报名的活动",
        lines,
        [Button(f"报名 职工健康讲座第{i}场", {"do": "signup", "activity": i}) for i in (1, 2)],
    )
    ctx = {
        "in_reply_to": "aibot:L1",
        "response_url": fake.response_url("rcL"),
        "received": wbot.clock.now().isoformat(),
    }
    enqueue(wbot, "lilei", card, "reply:wecom:aibot:L1:0", context=ctx)
    deliver(wbot)
    (body,) = fake.sent("/cgi-bin/aibot/response")
    assert body["msgtype"] == "markdown" and all(line in body["markdown"]["content"] for line in lines)


def aibot_click(user: str, key: str, task: str, msgid: str, response_url: str, chat_id: str = "wrG") -> dict:
    return {
        "msgid": msgid,
        "create_time": 1700000000,
        "aibotid": "AIBOTID",
        "chatid": chat_id,
        "chattype": "group",
        "from": {"userid": user},
        "response_url": response_url,
        "msgtype": "event",
        "event": {
            "eventtype": "template_card_event",
            "template_card_event": {"card_type": "button_interaction", "event_key": key, "task_id": task},
        },
    }


def test_aibot_group_card_goes_back_passively_and_a_click_updates_it(wclient, wbot, fake):
    member = add_member(wbot, name="李雷", employee_no="20005")
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(member), member.id), "wecom", "lilei")
    first, second = make_activity(wbot, "乒乓球赛"), make_activity(wbot, "羽毛球赛")
    query, body = aibot_request(aibot_text("lilei", "@工会小助手 活动", chat_id="wrG", msgid="ASK1"))
    resp = wclient.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
    reply = decrypt_aibot_reply(resp, query)
    assert reply["msgtype"] == "template_card"
    card = reply["template_card"]
    assert card["card_type"] == "button_interaction" and wecom.CARD_TASK.fullmatch(card["task_id"])
    keys = {wecom.decode_key(b["key"])["activity"]: b["key"] for b in card["button_list"]}
    assert set(keys) == {first, second}
    deliver(wbot)
    assert fake.count("/cgi-bin/aibot/response") == 0  # the card was the whole answer
    assert statuses(wbot) == [("sent", "passive reply")]

    # A click signs up and answers with the same card, the clicked button now 已报名, for the clicker only.
    click = aibot_click("lilei", keys[second], card["task_id"], "CLICK1", fake.response_url("rcC"))
    query, body = aibot_request(click)
    resp = wclient.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
    update = decrypt_aibot_reply(resp, query)
    assert update["response_type"] == "update_template_card" and update["userids"] == ["lilei"]
    new = update["template_card"]
    assert new["task_id"] == card["task_id"] and new["main_title"] == card["main_title"]
    labels = {wecom.decode_key(b["key"])["activity"]: b["text"] for b in new["button_list"]}
    old = {wecom.decode_key(b["key"])["activity"]: b["text"] for b in card["button_list"]}
    assert labels == {first: old[first], second: "已报名"}
    deliver(wbot)
    (answer,) = fake.sent("/cgi-bin/aibot/response")
    assert "羽毛球赛" in answer["markdown"]["content"] and "李雷" in answer["markdown"]["content"]

    # Clicks on cards we cannot find (or ids beyond the id column) are acknowledged without an update.
    for i, task in enumerate(("ub_999999_0", "ub_99999999999999999999_1", "someone-elses")):
        query, body = aibot_request(
            aibot_click("lilei", keys[first], task, f"CLICK-X{i}", fake.response_url(f"x{i}"))
        )
        resp = wclient.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
        assert resp.status_code == 200 and resp.get_data() == b""


def test_aibot_expired_response_url_falls_back(wbot, fake):
    old = (wbot.clock.now() - timedelta(hours=2)).isoformat()
    ctx = {"in_reply_to": "aibot:M3", "response_url": fake.response_url("rc5"), "received": old}
    enqueue(wbot, "u1", Text("迟到的回复"), "reply:wecom:aibot:M3:0", context=ctx)
    deliver(wbot)
    assert fake.count("/cgi-bin/aibot/response") == 0 and texts_to(fake, "u1") == ["迟到的回复"]


def test_aibot_events_and_verification(wclient, wbot, fake):
    from wechatpy.enterprise.crypto import WeChatCrypto

    from tests.wecom_helpers import AIBOT_AES_KEY, AIBOT_TOKEN

    crypto = WeChatCrypto(AIBOT_TOKEN, AIBOT_AES_KEY, "")
    env = wecom.encrypt_json(crypto, {"x": 1}, "n1", "1")
    # URL check: echostr is the encrypted plaintext with receive id ""
    from wechatpy.crypto import _get_signature
    from wechatpy.enterprise.crypto import PrpCrypto

    echo = PrpCrypto(crypto.key).encrypt("echo-123", "").decode()
    sig = _get_signature(AIBOT_TOKEN, "1", "n", echo)
    resp = wclient.get(
        "/wecom/aibot?" + urlencode({"msg_signature": sig, "timestamp": "1", "nonce": "n", "echostr": echo})
    )
    assert resp.get_data(as_text=True) == "echo-123"
    assert env["encrypt"]
    # The official enter_chat event: no chatid, no response_url. The welcome is the passive reply.
    enter = {
        "msgid": "E1",
        "create_time": 1700000000,
        "aibotid": "A",
        "from": {"corpid": "wpxxxx", "userid": "stranger"},
        "msgtype": "event",
        "event": {"eventtype": "enter_chat"},
    }
    query, body = aibot_request(enter)
    resp = wclient.post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    welcome = decrypt_aibot_reply(resp, query)
    assert welcome["msgtype"] == "text" and "欢迎使用" in welcome["text"]["content"]
    assert len(welcome["text"]["content"].encode()) <= 2048
    stream = {"msgid": "S1", "from": {"userid": "x"}, "msgtype": "stream", "stream": {"id": "1"}}
    assert post_aibot(wclient, stream).status_code == 200
    deliver(wbot)
    # Nothing else went out: not through a response_url, not into the app's chat with message/send.
    assert fake.calls == []
    assert [s for s, _ in statuses(wbot)] == ["sent"] and inbound_count(wbot) == 1


def test_aibot_welcome_the_callback_did_not_take_is_never_pushed_elsewhere(wbot, fake):
    """Say the callback died after the commit: the welcome waits for it briefly, then is given up."""
    ctx = {"in_reply_to": "aibot:E2", "channel": "aibot", "passive": True}
    enqueue(wbot, "stranger", Text("欢迎使用"), "reply:wecom:aibot:E2:0", context=ctx)
    deliver(wbot)
    assert statuses(wbot)[0][0] == "pending"
    wbot.clock.offset = timedelta(seconds=11)
    deliver(wbot)
    assert statuses(wbot)[0][0] == "dead" and fake.calls == []


def test_batch_greeting_row_goes_out_in_one_call_and_marks_leavers(wbot, fake):
    for no, uid in (("30001", "a1"), ("30002", "a2"), ("30003", "left")):
        m = add_member(wbot, name="会员", employee_no=no)
        with wbot.db.transaction() as s:
            link_identity(s, s.get(type(m), m.id), "wecom", uid)
    fake.invalid_users.add("left")
    enqueue(wbot, "batch:3", {"type": "text", "text": "节日快乐", "batch": ["a1", "a2", "left"]}, "fest")
    deliver(wbot)
    (body,) = fake.sent()
    assert body["touser"] == "a1|a2|left" and body["text"]["content"] == "节日快乐"
    assert statuses(wbot)[0][0] == "sent"
    with wbot.db.Session() as s:
        flags = dict(s.execute(select(PlatformIdentity.platform_user_id, PlatformIdentity.unreachable)).all())
    assert flags == {"a1": False, "a2": False, "left": True}


@pytest.mark.parametrize(
    "payload",
    [
        {"msgid": "O1", "from": "x", "msgtype": "text", "text": "hi"},
        {"msgid": "O2", "from": {"userid": "u"}, "msgtype": "text", "text": "hi"},
        {"msgid": "O3", "from": {"userid": "u"}, "msgtype": "mixed", "mixed": {"msg_item": "x"}},
        {
            "msgid": "O4",
            "from": {"userid": "u"},
            "msgtype": "event",
            "event": {"eventtype": "template_card_event"},
        },
        {
            "msgid": "O5",
            "from": {"userid": "u"},
            "chattype": "group",
            "msgtype": "text",
            "text": {"content": "x"},
        },
        {"from": {"userid": "u"}, "msgtype": "text", "text": {"content": "x"}},
        [1, 2, 3],
    ],
)
def test_odd_aibot_payloads_never_500(wclient, payload):
    from wechatpy.enterprise.crypto import WeChatCrypto

    from tests.wecom_helpers import AIBOT_AES_KEY, AIBOT_TOKEN

    crypto = WeChatCrypto(AIBOT_TOKEN, AIBOT_AES_KEY, "")
    env = wecom.encrypt_json(crypto, payload, "n", "1")
    query = urlencode({"msg_signature": env["msgsignature"], "timestamp": "1", "nonce": "n"})
    resp = wclient.post(f"/wecom/aibot?{query}", data=f'{{"encrypt": "{env["encrypt"]}"}}')
    assert resp.status_code in (200, 400)


def test_used_response_url_falls_back_to_message_send(wbot, fake):
    fake.used_response_codes.add("rcUSED")
    ctx = {
        "in_reply_to": "aibot:M9",
        "response_url": fake.response_url("rcUSED"),
        "received": wbot.clock.now().isoformat(),
    }
    enqueue(wbot, "u7", Text("私聊回复"), "reply:wecom:aibot:M9:0", context=ctx)
    deliver(wbot)
    assert texts_to(fake, "u7") == ["私聊回复"] and statuses(wbot)[0][0] == "sent"


# --- files ----------------------------------------------------------------------------------------------------
def xlsx_names(data: bytes) -> set[str]:
    """The names (third column) in an .xlsx the fake received."""
    import io

    from openpyxl import load_workbook

    return {r[2] for r in list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))[1:]}


def test_clerk_receives_the_monthly_birthday_list_as_a_real_xlsx(wbot, fake):
    import time_machine

    from handlers.greetings import run_greetings

    clerk = add_member(wbot, name="干事", roles=["clerk"])
    add_member(wbot, name="八月甲", birthday=datetime(1990, 8, 3).date())
    add_member(
        wbot, name="八月乙", birthday=datetime(1986, 8, 20).date(), branch="外科分会", group="骨科小组"
    )
    add_member(wbot, name="七月", birthday=datetime(1990, 7, 30).date())
    with wbot.db.transaction() as s:
        link_identity(s, s.get(type(clerk), clerk.id), "wecom", "clerk1")
    with time_machine.travel(datetime(2026, 7, 25, 1, 0, tzinfo=UTC), tick=False):  # 09:00 in Shanghai
        run_greetings(wbot, wbot.clock.now())
        deliver(wbot)
    text, file = texts_to(fake, "clerk1")
    assert (
        "8月生日名单" in text and "随后" in text.splitlines()[-1] and file == "[file] 2026年8月生日名单.xlsx"
    )
    ((name, data),) = fake.files_to("clerk1")
    assert xlsx_names(data) == {"八月甲", "八月乙"}  # every branch
    (upload,) = [c for c in fake.calls if c["path"] == "/cgi-bin/media/upload"]
    assert upload["args"]["type"] == "file" and upload["json"]["media"][0] == name
    assert [s for s, _ in statuses(wbot)] == ["sent", "sent"]


def test_a_failed_file_send_uploads_again_and_arrives_once(wbot, fake):
    enqueue(wbot, "u1", File("名单.xlsx", b"PK-not-really-a-workbook"), "f1")
    fake.fail_next("/cgi-bin/media/upload", 45009, "api freq out of limit")
    deliver(wbot)
    assert statuses(wbot)[0][0] == "pending" and fake.files_to("u1") == []
    fake.fail_next_of("file", 45009)
    wbot.clock.offset = timedelta(seconds=61)
    deliver(wbot)
    assert fake.files_to("u1") == []
    wbot.clock.offset = timedelta(seconds=122)
    deliver(wbot)
    assert fake.files_to("u1") == [("名单.xlsx", b"PK-not-really-a-workbook")]
    assert fake.count("/cgi-bin/media/upload") == 3 and statuses(wbot)[0][0] == "sent"


def test_files_to_group_chats_go_as_their_text(wbot, fake):
    with wbot.db.transaction() as s:
        s.add(Chat(platform="wecom", chat_id="wrHOOK", title="群", webhook_url=fake.webhook_url("h")))
    enqueue(wbot, "wrHOOK", File("名单.xlsx", b"x" * 10), "f1", kind="chat")
    enqueue(wbot, "wrAPP", File("名单.xlsx", b"x" * 10), "f2", kind="chat")
    deliver(wbot)
    fallback = "（文件：名单.xlsx，请到管理后台下载）"
    assert [b["text"]["content"] for b in fake.sent("/cgi-bin/webhook/send")] == [fallback]
    assert [b["text"]["content"] for b in fake.sent("/cgi-bin/appchat/send")] == [fallback]
    assert fake.count("/cgi-bin/media/upload") == 0
