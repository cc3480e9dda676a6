"""WeCom (企业微信) inbound: the self-built app callback (private chats) and the AI bot callback (group chats).

- `/wecom/callback` — 自建应用 "接收消息": GET URL check, encrypted XML POSTs (text, enter_agent, click,
  template_card_event). Crypto through wechatpy's `WeChatCrypto`; the XML is parsed here (string MsgIds,
  template_card_event) with DOCTYPE/ENTITY refused and a 64 KB cap.
- `/wecom/aibot` — 智能机器人 API mode: JSON `{"encrypt": ...}`, receive id "", group messages already @-scoped.

Both answer once `Bot.handle` committed (commit, then acknowledge); replies are outbox rows delivered by
`bot.adapters.wecom_api.WeComSender`. Passive replies only where WeCom offers no other way, always built from
the committed outbox rows (taken out of the outbox by compare-and-set, so nothing goes out twice):
- app card click: `update_button` (已报名);
- AI bot card click: `update_template_card` for the clicking member, the clicked button relabelled;
- AI bot enter_chat: the welcome (text or card) — that event has no response_url;
- AI bot message answered with a card: the card (response_url cannot carry cards into group chats).
Refused before the database is touched: forged signatures, a wrong corp id, undecryptable or hostile bodies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot import outbox
from bot.message import Card, ChatType, IncomingMessage, Text, payload_to_outgoing
from bot.normalize import normalize, typed_words
from models.member import member_for_identity
from models.messaging import Chat, OutboxMessage

log = logging.getLogger(__name__)

PLATFORM = "wecom"
MAX_BODY = 64 * 1024

# App menu: key -> (label, the text the member would have typed). Top level ≤ 3 buttons, ≤ 5 sub-buttons each.
MENU: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("活动报名", [("MENU_ACTIVITIES", "活动报名", "活动")]),
    ("我要办", [("MENU_PROPOSAL", "我要提案", "我要提案"), ("MENU_HARDSHIP", "困难帮扶", "困难帮扶")]),
    (
        "我的",
        [
            ("MENU_MY_INFO", "我的信息", "我的信息"),
            ("MENU_MY_SIGNUPS", "我的报名", "我的报名"),
            ("MENU_HELP", "帮助", "帮助"),
        ],
    ),
]
MENU_TEXT = {key: text for _, subs in MENU for key, _, text in subs}

# Button label after a click (update_button). Actions with known outcomes flip only on a positive answer;
# navigation buttons never flip; any other action flips unless its reply reads like a refusal.
OUTCOME_LABELS: dict[str, list[tuple[str, str]]] = {
    "signup": [
        ("报名成功", "已报名"),
        ("已报名 ✅", "已报名"),
        ("候补第", "已候补"),
        ("已经报名过", "已报名"),
    ],
    "cancel_signup": [("已取消您的", "已取消"), ("已取消报名", "已取消")],
}
NAVIGATION = {"activity"}
DONE_LABELS = {"cosign": "已附议", "confirm": "已确认"}
REFUSAL_WORDS = (
    "抱歉",
    "失败",
    "不能",
    "无法",
    "已满",
    "截止",
    "失效",
    "没有找到",
    "没找到",
    "请先",
    "不在",
    "需要先",
)


class Rejected(Exception):
    """A request refused before anything touches the database; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


# --- crypto and safe parsing ---------------------------------------------------------------------------
def _outside_cdata(text: str) -> str:
    """The markup with CDATA sections removed, in one linear pass (no regex backtracking on hostile input)."""
    parts, i = [], 0
    while True:
        j = text.find("<![CDATA[", i)
        if j < 0:
            parts.append(text[i:])
            return "".join(parts)
        parts.append(text[i:j])
        k = text.find("]]>", j + 9)
        if k < 0:
            raise Rejected(400, "unterminated CDATA")
        i = k + 3


def safe_xml(data: bytes | str) -> dict[str, Any]:
    """Parse a flat WeCom XML document into {tag: text}; nested elements are kept as Element objects.

    Refuses anything with a DOCTYPE, an ENTITY, comments or processing instructions other than the
    declaration (entity expansion can't happen), non-UTF-8 bytes and documents over the size cap.
    """
    if len(data) > MAX_BODY:
        raise Rejected(413, "body too large")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise Rejected(400, "not utf-8") from exc
    text = text.lstrip("\ufeff \t\r\n")
    if text.startswith("<?xml"):
        end = text.find("?>")
        if end < 0:
            raise Rejected(400, "malformed XML declaration")
        text = text[end + 2 :]
    markup = _outside_cdata(text)
    if "<!" in markup or "<?" in markup:
        raise Rejected(400, "DOCTYPE, ENTITY, comment or processing instruction in XML")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise Rejected(400, "malformed XML") from exc
    if root.tag != "xml":
        raise Rejected(400, "not a WeCom document")
    out: dict[str, Any] = {}
    for child in root:
        out[child.tag] = child if len(child) else (child.text or "")
    return out


def decrypt(crypto: WeChatCrypto, encrypt: str, signature: str, timestamp: str, nonce: str) -> str:
    """Verify the signature and decrypt; forged → 403, undecryptable → 400."""
    if not encrypt or not signature or not timestamp or not nonce:
        raise Rejected(400, "missing signature parameters")
    try:
        plain = crypto.decrypt_message({"Encrypt": encrypt}, signature, timestamp, nonce)
    except (InvalidSignatureException, InvalidCorpIdException) as exc:
        raise Rejected(403, type(exc).__name__) from exc
    except Exception as exc:  # bad base64, padding, length or unicode: not from WeCom with our key
        raise Rejected(400, f"undecryptable: {type(exc).__name__}") from exc
    return plain.decode("utf-8") if isinstance(plain, bytes) else plain


def check_echo(crypto: WeChatCrypto, args) -> str:
    try:
        plain = crypto.check_signature(
            args.get("msg_signature", ""),
            args.get("timestamp", ""),
            args.get("nonce", ""),
            args.get("echostr", ""),
        )
    except (InvalidSignatureException, InvalidCorpIdException) as exc:
        raise Rejected(403, type(exc).__name__) from exc
    except Exception as exc:
        raise Rejected(400, f"undecryptable echostr: {type(exc).__name__}") from exc
    return plain.decode("utf-8") if isinstance(plain, bytes) else plain


def encrypt_json(crypto: WeChatCrypto, payload: dict[str, Any], nonce: str, timestamp: str) -> dict[str, str]:
    """The AI bot's encrypted JSON envelope (also used by tests to forge deliveries)."""
    text = json.dumps(payload, ensure_ascii=False)
    enc = PrpCrypto(crypto.key).encrypt(text, crypto._id)
    enc = enc.decode() if isinstance(enc, bytes) else enc
    sig = _get_signature(crypto.token, timestamp, nonce, enc)
    return {"encrypt": enc, "msgsignature": sig, "timestamp": timestamp, "nonce": nonce}


def load_json(data: bytes | str, what: str) -> Any:
    """json.loads that refuses hostile input with a 400: a deeply nested body raises RecursionError, which is
    not a ValueError, and would otherwise become a 500."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, f"{what} is not JSON: {type(exc).__name__}") from exc


def read_body() -> bytes:
    if (request.content_length or 0) > MAX_BODY:
        raise Rejected(413, "body too large")
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise Rejected(413, "body too large")
    return data


# --- button keys ---------------------------------------------------------------------------------------
def encode_key(index: int, action: dict[str, Any]) -> str | None:
    """A template-card button key: unique within the card, ≤ 1024 bytes, carrying the action JSON."""
    key = f"{index}|" + json.dumps(action, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return key if len(key.encode("utf-8")) <= 1024 else None


def decode_key(key: str) -> dict[str, Any] | None:
    _, sep, body = key.partition("|")
    if not sep:
        return None
    try:
        action = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return action if isinstance(action, dict) else None


def done_label(action: dict[str, Any] | None, result) -> str | None:
    """The label a clicked button turns into, or None to leave it clickable (refused, failed, duplicate)."""
    if action is None or result is None or result.failed or result.duplicate or result.ignored:
        return None
    name = str(action.get("do", ""))
    if name in NAVIGATION:
        return None
    texts = []
    for r in result.replies:
        texts.extend([r.text] if hasattr(r, "text") else [r.title, *r.lines])
    joined = "\n".join(texts)
    if name in OUTCOME_LABELS:
        return next((label for needle, label in OUTCOME_LABELS[name] if needle in joined), None)
    if any(w in joined for w in REFUSAL_WORDS):
        return None
    if name == "rsvp":
        return "已请假" if action.get("answer") == "excused" else "将参加"
    return DONE_LABELS.get(name, "已处理")


# --- the self-built app --------------------------------------------------------------------------------
def _dedupe(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def app_message(data: dict[str, Any], bot_names: tuple[str, ...], now: datetime) -> IncomingMessage | None:
    """The neutral message for one decrypted app callback, or None for what we only acknowledge."""
    user = str(data.get("FromUserName") or "").strip()
    if not user:
        return None
    kind = str(data.get("MsgType") or "")
    created = str(data.get("CreateTime") or "")
    base = dict(
        platform=PLATFORM,
        chat_type=ChatType.PRIVATE,
        chat_id=user,
        user_id=user,
        received_at=now,
    )
    if kind == "text":
        msg_id = str(data.get("MsgId") or "") or "t:" + _dedupe(user, created, str(data.get("Content") or ""))
        content = str(data.get("Content") or "")
        return IncomingMessage(
            message_id=msg_id,
            text=normalize(content, bot_names),
            typed=typed_words(content, bot_names),
            raw={"channel": "app"},
            **base,
        )
    if kind != "event":
        return None  # image, voice, video, location, link: acknowledged, not understood yet
    event = str(data.get("Event") or "")
    key = str(data.get("EventKey") or "")
    if event == "enter_agent":
        # WeCom sends this every time the member opens the app: welcome them once a day, not every time.
        day = _bot().clock.local(now).date().isoformat()  # the day in the union's zone (TIMEZONE)
        return IncomingMessage(
            message_id=f"enter:{user}:{day}", event="enter", raw={"channel": "app"}, **base
        )
    if event == "click" and key in MENU_TEXT:
        return IncomingMessage(
            message_id="c:" + _dedupe(user, created, event, key),
            text=normalize(MENU_TEXT[key], bot_names),
            typed=MENU_TEXT[key],
            raw={"channel": "app", "menu": key},
            **base,
        )
    if event == "template_card_event":
        action = decode_key(key)
        if action is None:
            return None
        task = str(data.get("TaskId") or "")
        return IncomingMessage(
            message_id="k:" + _dedupe(user, created, task, key),
            action=action,
            raw={"channel": "app", "task_id": task, "response_code": str(data.get("ResponseCode") or "")},
            **base,
        )
    return None  # subscribe, LOCATION, view, ...: acknowledged


def _is_bound(bot, user_id: str) -> bool:
    with bot.db.Session() as s:
        return member_for_identity(s, PLATFORM, user_id) is not None


def update_button_reply(crypto: WeChatCrypto, corp_id: str, user: str, label: str) -> str:
    now = str(int(time.time()))
    xml = (
        f"<xml><ToUserName><![CDATA[{user}]]></ToUserName><FromUserName><![CDATA[{corp_id}]]></FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[update_button]]></MsgType>"
        f"<Button><ReplaceName><![CDATA[{label}]]></ReplaceName></Button></xml>"
    )
    return crypto.encrypt_message(xml, secrets.token_hex(8), now)


bp = Blueprint("wecom", __name__, url_prefix="/wecom")


def _bot():
    return current_app.extensions["bot"]


def _app_crypto() -> WeChatCrypto | None:
    s = _bot().settings
    if not s.wecom_enabled:
        return None
    return current_app.extensions["wecom_crypto"]


def _aibot_crypto() -> WeChatCrypto | None:
    s = _bot().settings
    if not s.wecom_aibot_enabled:
        return None
    return current_app.extensions["wecom_aibot_crypto"]


@bp.errorhandler(Rejected)
def _rejected(exc: Rejected):
    log.info("wecom: refused %s (%s)", request.path, exc)
    return Response("", status=exc.status)


@bp.get("/callback")
def app_verify():
    crypto = _app_crypto()
    if crypto is None:
        return Response("", status=404)
    return Response(check_echo(crypto, request.args), mimetype="text/plain")


@bp.post("/callback")
def app_callback():
    crypto = _app_crypto()
    if crypto is None:
        return Response("", status=404)
    outer = safe_xml(read_body())
    encrypt = outer.get("Encrypt")
    if not isinstance(encrypt, str):  # missing, or markup where the ciphertext belongs
        raise Rejected(400, "no Encrypt text")
    args = request.args
    plain = decrypt(
        crypto,
        encrypt,
        args.get("msg_signature", ""),
        args.get("timestamp", ""),
        args.get("nonce", ""),
    )
    data = safe_xml(plain)
    bot = _bot()
    msg = app_message(data, (bot.settings.BOT_NAME,), bot.clock.now())
    if msg is None:
        return Response("", status=200)
    result = bot.handle(msg)
    label = done_label(msg.action, result) if msg.action is not None else None
    if label and not _is_bound(bot, msg.user_id):
        label = None  # the click only started the binding dialog
    if label:
        body = update_button_reply(crypto, bot.settings.WECOM_CORP_ID, msg.user_id, label)
        return Response(body, mimetype="application/xml")
    return Response("", status=200)


# --- the AI bot ----------------------------------------------------------------------------------------
def _obj(value: Any) -> dict[str, Any]:
    """A JSON object field, or {} when it is missing or of another type (never a 500 on odd payloads)."""
    return value if isinstance(value, dict) else {}


def aibot_message(data: dict[str, Any], bot_names: tuple[str, ...], now: datetime) -> IncomingMessage | None:
    sender = _obj(data.get("from"))
    user = str(sender.get("userid") or "").strip()
    msgid = str(data.get("msgid") or "")
    if not user or not msgid:
        return None
    group = data.get("chattype") == "group"
    chat_id = str(data.get("chatid") or "") if group else user
    if group and not chat_id:
        return None
    kind = data.get("msgtype")
    event = _obj(data.get("event")) if kind == "event" else {}
    reply: dict[str, Any] = {"channel": "aibot", "received": now.astimezone(UTC).isoformat()}
    if event.get("eventtype") == "enter_chat":
        # The welcome has no response_url: it can only be the passive reply (see aibot_callback); the
        # sender must never push it elsewhere (message/send would land in the app's chat, not this one).
        reply["passive"] = True
    elif isinstance(data.get("response_url"), str) and data["response_url"]:
        reply["response_url"] = data["response_url"]
    base = dict(
        platform=PLATFORM,
        message_id="aibot:" + msgid,
        chat_type=ChatType.GROUP if group else ChatType.PRIVATE,
        chat_id=chat_id,
        user_id=user,
        mentioned=group,  # the AI bot only hears group messages that @-mention it
        received_at=now,
        raw={"channel": "aibot", "reply": reply},
    )
    if kind == "text":
        content = str(_obj(data.get("text")).get("content") or "")
        return IncomingMessage(
            text=normalize(content, bot_names), typed=typed_words(content, bot_names), **base
        )
    if kind == "mixed":
        items = _obj(data.get("mixed")).get("msg_item")
        parts = [
            str(_obj(i.get("text")).get("content") or "")
            for i in (items if isinstance(items, list) else [])
            if isinstance(i, dict) and i.get("msgtype") == "text"
        ]
        content = " ".join(parts)
        return IncomingMessage(
            text=normalize(content, bot_names), typed=typed_words(content, bot_names), **base
        )
    if kind == "event":
        etype = event.get("eventtype")
        if etype == "enter_chat":
            return IncomingMessage(event="enter", **base)
        if etype == "template_card_event":
            detail = _obj(event.get("template_card_event"))
            key = str(detail.get("event_key") or "")
            action = decode_key(key)
            if action is None:
                return None
            base["raw"] = {**base["raw"], "task_id": str(detail.get("task_id") or ""), "event_key": key}
            return IncomingMessage(action=action, **base)
    return None  # stream refreshes, images, files, feedback: acknowledged


# Our task ids: "ub_<outbox row id>_<attempt>" (≤ 9 digits, so never beyond the id column's range).
CARD_TASK = re.compile(r"ub_(\d{1,9})_\d{1,9}")


def task_id(row_id: int, attempt: int) -> str:
    return f"ub_{row_id}_{attempt}"


def queued_replies(message_id: str, statuses: tuple[str, ...]) -> Select:
    """The replies to `message_id` still in the outbox with one of `statuses`, in reply order."""
    return (
        select(OutboxMessage)
        .where(
            OutboxMessage.platform == PLATFORM,
            OutboxMessage.idempotency_key.startswith(f"reply:{PLATFORM}:{message_id}:", autoescape=True),
            OutboxMessage.status.in_(statuses),
        )
        .order_by(OutboxMessage.id)
    )


def take_replies(
    bot, message_id: str, want: Callable[[dict[str, Any]], bool], limit: int = 50
) -> list[tuple[int, dict]]:
    """Take this message's queued replies (up to `limit` that `want` accepts) out of the outbox for the
    passive reply.

    Compare-and-set on the status: a row the delivery loop already holds stays with it, so nothing goes out
    twice. Rows marked passive (the welcome) are never sent by the loop, so they are taken even then.
    Returns (row id, payload) in reply order.
    """
    now = bot.clock.now()
    taken: list[tuple[int, dict]] = []
    with bot.db.transaction() as s:
        rows = s.scalars(queued_replies(message_id, ("pending", "sending"))).all()
        for row in rows:
            if not want(row.payload):
                continue
            allowed = ("pending", "sending") if (row.context or {}).get("passive") else ("pending",)
            done = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, OutboxMessage.status.in_(allowed))
                .values(status="sent", sent_at=now, lease_until=None, last_error="passive reply")
                .execution_options(synchronize_session=False)
            ).rowcount
            if done:
                taken.append((row.id, dict(row.payload)))
            if len(taken) >= limit:
                break
    return taken


def _has_card(payload: dict[str, Any]) -> bool:
    from bot.adapters.wecom_api import card_json

    out = payload_to_outgoing(payload)
    return isinstance(out, Card) and card_json(out, "probe") is not None


def welcome_reply(bot, msg: IncomingMessage) -> dict[str, Any] | None:
    """The enter_chat welcome as the passive reply: a template card when it is one card, else text."""
    from bot.adapters.wecom_api import TEXT_BYTES, card_fits, card_json, cut_bytes

    taken = take_replies(bot, msg.message_id, lambda p: True)
    outs = [(rid, payload_to_outgoing(p)) for rid, p in taken]
    if len(outs) == 1 and isinstance(outs[0][1], Card) and card_fits(outs[0][1]):  # else the full text
        card = card_json(outs[0][1], task_id(outs[0][0], 0))
        if card is not None:
            return {"msgtype": "template_card", "template_card": card}
    text = "\n\n".join(o.text if isinstance(o, Text) else o.as_text() for _, o in outs)
    return {"msgtype": "text", "text": {"content": cut_bytes(text, TEXT_BYTES)}} if text else None


def card_reply(bot, msg: IncomingMessage) -> dict[str, Any] | None:
    """A card answering a message goes back passively: response_url cannot carry cards into group chats.
    Texts stay in the outbox and go out through response_url; so does the full text of a card too long for
    the card (queued before the card is taken: a crash in between repeats the text, never loses it)."""
    from bot.adapters.wecom_api import card_json

    _queue_card_text(bot, msg.message_id)
    taken = take_replies(bot, msg.message_id, _has_card, limit=1)
    if not taken:
        return None
    rid, payload = taken[0]
    card = card_json(payload_to_outgoing(payload), task_id(rid, 0))
    return {"msgtype": "template_card", "template_card": card}


def _queue_card_text(bot, message_id: str) -> None:
    """The first card among this message's replies, when its text does not fit the card, gets that text queued
    beside it as a reply of its own (idempotent by key), to go out through response_url."""
    from bot.adapters.wecom_api import card_fits, card_text

    with bot.db.transaction() as s:
        rows = s.scalars(queued_replies(message_id, ("pending",)))
        row = next((r for r in rows if _has_card(r.payload)), None)
        out = payload_to_outgoing(row.payload) if row is not None else None
        if row is None or not isinstance(out, Card) or card_fits(out):
            return
        outbox.enqueue(
            s,
            platform=PLATFORM,
            target_kind=row.target_kind,
            target_id=row.target_id,
            message=Text(card_text(out)),
            key=f"{row.idempotency_key}:text",
            member_id=row.member_id,
            context=dict(row.context or {}),
            sensitive=row.sensitive,
            now=bot.clock.now(),
        )


def card_update_reply(bot, msg: IncomingMessage, result) -> dict[str, Any] | None:
    """The clicked card again with the clicked button relabelled (已报名), for the clicking member only."""
    from bot.adapters.wecom_api import BUTTON_CHARS, card_json, cut_chars

    label = done_label(msg.action, result)
    task = str(msg.raw.get("task_id") or "")
    m = CARD_TASK.fullmatch(task)
    if not label or m is None or not _is_bound(bot, msg.user_id):
        return None
    with bot.db.Session() as s:
        row = s.get(OutboxMessage, int(m.group(1)))
        payload = dict(row.payload) if row is not None and row.platform == PLATFORM else {}
    out = payload_to_outgoing(payload) if payload.get("type") == "card" else None
    card = card_json(out, task) if out is not None else None
    clicked = [b for b in (card or {}).get("button_list", []) if b["key"] == msg.raw.get("event_key")]
    if not clicked:
        return None
    clicked[0]["text"] = cut_chars(label, BUTTON_CHARS)
    return {"response_type": "update_template_card", "userids": [msg.user_id], "template_card": card}


def _remember_chat(bot, chat_id: str) -> None:
    """Group chats the AI bot has seen appear in the console, where staff tie them to a union group."""
    with bot.db.transaction() as s:
        ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(Chat)
        s.execute(
            ins.values(
                platform=PLATFORM, chat_id=chat_id[:128], title="", unreachable=False
            ).on_conflict_do_nothing(index_elements=["platform", "chat_id"])
        )


@bp.get("/aibot")
def aibot_verify():
    crypto = _aibot_crypto()
    if crypto is None:
        return Response("", status=404)
    return Response(check_echo(crypto, request.args), mimetype="text/plain")


@bp.post("/aibot")
def aibot_callback():
    crypto = _aibot_crypto()
    if crypto is None:
        return Response("", status=404)
    outer = load_json(read_body(), "body")
    if not isinstance(outer, dict) or not isinstance(outer.get("encrypt"), str):
        raise Rejected(400, "no encrypt field")
    args = request.args
    plain = decrypt(
        crypto,
        outer["encrypt"],
        args.get("msg_signature", ""),
        args.get("timestamp", ""),
        args.get("nonce", ""),
    )
    data = load_json(plain, "decrypted body")
    if not isinstance(data, dict):
        raise Rejected(400, "decrypted body is not an object")
    bot = _bot()
    msg = aibot_message(data, (bot.settings.BOT_NAME,), bot.clock.now())
    if msg is None:
        return Response("", status=200)
    if msg.is_group:
        _remember_chat(bot, msg.chat_id)
    result = bot.handle(msg)
    if msg.event == "enter":
        body = welcome_reply(bot, msg)
    elif msg.action is not None:
        body = card_update_reply(bot, msg, result)
    else:
        body = card_reply(bot, msg)
    if body is None:
        return Response("", status=200)
    # Encrypted like the callback; WeCom asks for the callback's own nonce in the reply.
    stamp = str(int(bot.clock.now().timestamp()))
    envelope = encrypt_json(crypto, body, args.get("nonce", ""), stamp)
    return Response(json.dumps(envelope), mimetype="application/json")


# --- wiring --------------------------------------------------------------------------------------------
def init_app(app: Flask, bot) -> None:
    """Register the callbacks and the outbox sender when WeCom settings are present (else nothing)."""
    s = bot.settings
    if not (s.wecom_enabled or s.wecom_aibot_enabled):
        return
    from bot.adapters.wecom_api import WeComSender

    if s.wecom_enabled:
        app.extensions["wecom_crypto"] = WeChatCrypto(s.WECOM_TOKEN, s.WECOM_AES_KEY, s.WECOM_CORP_ID)
    if s.wecom_aibot_enabled:
        app.extensions["wecom_aibot_crypto"] = WeChatCrypto(s.WECOM_AIBOT_TOKEN, s.WECOM_AIBOT_AES_KEY, "")
    app.register_blueprint(bp)
    bot.senders[PLATFORM] = WeComSender(bot)
