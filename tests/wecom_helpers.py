"""Building signed, encrypted WeCom deliveries the way WeCom does (official algorithm via wechatpy)."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.adapters.wecom import encrypt_json
from models.activity import Activity

CORP_ID = "wwcorp"
SECRET = "app-secret"
TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
AIBOT_TOKEN = "aibotToken123"
AIBOT_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
AGENT_ID = "1000002"
_n = itertools.count(1000)


def settings_for(fake) -> dict[str, str]:
    return {
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_TOKEN": TOKEN,
        "WECOM_AES_KEY": AES_KEY,
        "WECOM_AGENT_ID": AGENT_ID,
        "WECOM_API_BASE": fake.base,
        "WECOM_AIBOT_TOKEN": AIBOT_TOKEN,
        "WECOM_AIBOT_AES_KEY": AIBOT_AES_KEY,
    }


def text_xml(user: str, content: str, msg_id: str | None = None, ts: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{ts or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(_n)}</MsgId>"
        f"<AgentID>{AGENT_ID}</AgentID></xml>"
    )


def event_xml(user: str, event: str, key: str = "", ts: int | None = None, **extra: str) -> str:
    more = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in extra.items())
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{ts or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey>{more}"
        f"<AgentID>{AGENT_ID}</AgentID></xml>"
    )


def app_request(inner_xml: str, token: str = TOKEN, key: str = AES_KEY, corp: str = CORP_ID):
    """(query string, body) of an encrypted app callback POST."""
    crypto = WeChatCrypto(token, key, corp)
    ts, nonce = str(int(time.time())), str(next(_n))
    wrapped = xmltodict.parse(crypto.encrypt_message(inner_xml, nonce, ts))["xml"]
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{wrapped['Encrypt']}]]></Encrypt>"
        f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>"
    )
    query = urlencode({"msg_signature": wrapped["MsgSignature"], "timestamp": ts, "nonce": nonce})
    return query, body


def aibot_request(payload: dict, token: str = AIBOT_TOKEN, key: str = AIBOT_AES_KEY):
    crypto = WeChatCrypto(token, key, "")
    env = encrypt_json(crypto, payload, str(next(_n)), str(int(time.time())))
    query = urlencode(
        {"msg_signature": env["msgsignature"], "timestamp": env["timestamp"], "nonce": env["nonce"]}
    )
    return query, json.dumps({"encrypt": env["encrypt"]})


def aibot_text(
    user: str, content: str, chat_id: str | None = None, msgid: str | None = None, response_url=""
) -> dict:
    return {
        "msgid": msgid or f"CAIQ{next(_n)}==",
        "aibotid": "AIBOTID",
        "chatid": chat_id or "",
        "chattype": "group" if chat_id else "single",
        "from": {"userid": user},
        "response_url": response_url,
        "msgtype": "text",
        "text": {"content": content},
    }


def decrypt_reply(body: bytes | str, token: str = TOKEN, key: str = AES_KEY, corp: str = CORP_ID) -> dict:
    """Decrypt a passive reply the way WeCom would and return the inner XML as a dict."""
    crypto = WeChatCrypto(token, key, corp)
    outer = xmltodict.parse(body)["xml"]
    plain = crypto.decrypt_message(body, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
    return xmltodict.parse(plain)["xml"]


def staff_client(app, role: str = "clerk", username: str | None = None):
    """A Flask test client logged in to the console as a new staff account with `role`."""
    import re

    from models.staff import StaffAccount

    bot = app.extensions["bot"]
    username = username or f"{role}-{next(_n)}"
    with bot.db.transaction() as s:
        acc = StaffAccount(username=username, display_name=username, role=role, active=True)
        acc.set_password("console pass 42")
        s.add(acc)
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post(
        "/admin/login", data={"username": username, "password": "console pass 42", "csrf_token": token}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    page = client.get("/admin/").get_data(as_text=True)  # logging in starts a new session (new token)
    client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client


def decrypt_aibot_reply(resp, query: str) -> dict:
    """Check an AI-bot passive reply the way WeCom would (signature, the callback's nonce) and decrypt it."""
    from urllib.parse import parse_qs

    env = json.loads(resp.get_data())
    assert set(env) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert env["nonce"] == parse_qs(query)["nonce"][0]  # WeCom asks for the callback's own nonce
    crypto = WeChatCrypto(AIBOT_TOKEN, AIBOT_AES_KEY, "")
    plain = crypto.decrypt_message(
        {"Encrypt": env["encrypt"]}, env["msgsignature"], env["timestamp"], env["nonce"]
    )
    return json.loads(plain)


def make_activity(bot, title: str, capacity: int = 10) -> int:
    now = bot.clock.now()
    with bot.db.transaction() as s:
        a = Activity(
            title=title,
            place="职工活动中心",
            starts_at=now + timedelta(days=5),
            signup_deadline=now + timedelta(days=4),
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
