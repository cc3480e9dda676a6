"""Feishu (飞书 / Lark) inbound: event subscription 2.0 over HTTP (`POST /feishu/events`) and the long connection.

Both paths end in `dispatch_event(bot, payload)`, which turns one decrypted event into the neutral
`IncomingMessage`, runs `Bot.handle` (commit, then acknowledge) and returns the response body ({} for events,
toast + updated card for card clicks). Replies go out through the outbox (`bot.adapters.feishu_api`).

HTTP checks, all before the database is touched (`verify_request`):
- a body over `MAX_BODY` → 413 (never read in full); malformed JSON, JSON nested deeper than `MAX_DEPTH`
  (`"[" * 60000` would otherwise raise RecursionError) or an undecryptable `encrypt` body → 400;
- with an Encrypt Key: `X-Lark-Signature` = sha256(timestamp + nonce + encrypt_key + raw body), lowercase hex,
  compared in constant time; missing headers, a forged signature or a timestamp more than `MAX_SKEW` (8 hours,
  see there) away from our clock → 401. The url_verification challenge is the one request Feishu sends unsigned:
  it is accepted when it decrypts with the Encrypt Key (proof enough) or carries the Verification Token;
- the Verification Token (challenge, and every event when set) → 401 on mismatch;
- neither an Encrypt Key nor a Verification Token configured → 403 (we never accept unauthenticated events).

Dedupe: messages on `message.message_id` (Feishu: do not rely on event_id for that event), every other event on
`header.event_id` (the p2p-chat-entered welcome on open_id + day); the core's inbound table keeps the keys, far
longer than Feishu's ~7-hour retry window.

Groups: we act only when `mentions[].id.open_id` is the bot's own open_id (GET /open-apis/bot/v3/info, kept in
`feishu_state`, fetched ahead of need and never inside the event deadline: until it is known, group messages with
@s are deferred to the worker, see `_mention_check`); `@_user_N` placeholders are removed (ours) or replaced by the
person's name (others').
Card clicks: the button value is an object {our action..., "_k": "user"|"chat", "_ob": outbox id}; the answer
carries a toast (first text reply) and, in private chats, the handler's first card or else the clicked card as its
handler renders it now (`current_card`) with that button turned into 已报名 / 已处理 etc. (a group's card is shared
by everyone: toast only, replies as messages).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import re
from dataclasses import replace
from typing import Any

from Crypto.Cipher import AES
from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import RequestEntityTooLarge

from bot.message import ChatType, IncomingMessage, Text
from bot.normalize import normalize, typed_words
from models.member import link_identity, member_for_identity
from models.messaging import Chat, InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

PLATFORM = "feishu"
MAX_BODY = 256 * 1024  # Feishu events are a few KB (a card or post is at most 30 KB)
MAX_DEPTH = 32  # JSON nesting; real events stay under 10, hostile ones ("[" * 60000) would exhaust the stack
# Seconds between X-Lark-Request-Timestamp and our clock before a request counts as stale. Feishu retries a failed
# push after 15 s, 5 min, 1 h and 6 h (~7.1 h in all); feishu.md leaves open whether a retry is re-signed with a new
# timestamp or carries the first one, so the window must cover the last retry (7 h 05 min plus clock drift), or
# the retries meant to save an event after an outage would be refused. A wider window does not help an attacker:
# the signature covers timestamp + nonce + key + the raw body, so a captured request can only be replayed as it
# is, with the same message_id / event_id, which the inbound table (kept far longer than this, never purge it
# sooner) answers as a duplicate. Chat membership events go through that dedupe too (`_chat_event`).
MAX_SKEW = 8 * 3600
TOAST_MAX = 60
UNSUPPORTED = "我暂时只能看懂文字消息，请直接发送文字，例如“帮助”。"

# Button label after a successful click when the handler sent no new card; unknown actions get the generic one.
DONE_LABELS = {
    "signup": "已报名",
    "cancel_signup": "已取消报名",
    "cosign": "已附议",
    "rsvp": "已回复",
    "confirm": "已确认",
}
REFUSAL_WORDS = (
    "抱歉",
    "失败",
    "不能",
    "无法",
    "已满",
    "已截止",
    "失效",
    "没有找到",
    "请先",
    "未开放",
    "还没有",
)

MESSAGE_EVENT = "im.message.receive_v1"
CARD_EVENT = "card.action.trigger"
# The adapter's own core events (`register_events`).
CHAT_JOINED, CHAT_LEFT = "feishu_chat_joined", "feishu_chat_left"
MENTION_CHECK = "feishu_mention_check"  # a group message with @s, deferred until the bot's open_id is known
# Subscribed events we only acknowledge (an unhandled event answered with 5xx is retried for hours).
NOOP_EVENTS = {
    "im.message.message_read_v1",
    "im.message.recalled_v1",
    "im.message.reaction.created_v1",
    "im.message.reaction.deleted_v1",
    "im.chat.access_event.bot_p2p_chat_exited_v1",
    "im.chat.member.user.added_v1",
    "im.chat.member.user.deleted_v1",
    "im.chat.updated_v1",
    "im.chat.disbanded_v1",
}


class FeishuUnavailable(Exception):
    """The Feishu API could not be reached or refused us (never carries a token).

    `code` is for delivery metrics: Feishu's error code, "timeout" or "network".
    """

    def __init__(self, message: str, code: str = "network"):
        super().__init__(message)
        self.code = code


class Rejected(Exception):
    """A request refused before anything touches the database; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- crypto ---------------------------------------------------------------------------------------------------
def decrypt(encrypt_key: str, data: str) -> str:
    """AES-256-CBC, key = sha256(Encrypt Key), IV = the first 16 bytes, strict PKCS7 (as lark-oapi's AESCipher).

    Done here with pycryptodome rather than through lark-oapi, whose package import takes seconds.
    """
    try:
        raw = base64.b64decode(data, validate=True)
        if len(raw) < 32 or len(raw) % 16:
            raise ValueError("invalid ciphertext length")
        key = hashlib.sha256(encrypt_key.encode("utf-8")).digest()
        plain = AES.new(key, AES.MODE_CBC, raw[:16]).decrypt(raw[16:])
        pad = plain[-1]
        if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
            raise ValueError("invalid PKCS7 padding")
        return plain[:-pad].decode("utf-8")
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise Rejected(400, "undecryptable body") from exc


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _check_token(settings, payload: dict[str, Any]) -> None:
    expected = settings.FEISHU_VERIFICATION_TOKEN
    if not expected:
        return
    header = payload.get("header")
    got = header.get("token") if isinstance(header, dict) else payload.get("token")
    if not isinstance(got, str) or not _same(got, expected):
        raise Rejected(401, "wrong verification token")


def verify_request(settings, headers, body: bytes, now_ts: float) -> dict[str, Any]:
    """The decrypted, authenticated event; raises Rejected. Pure: no database, no network."""
    key, token = settings.FEISHU_ENCRYPT_KEY, settings.FEISHU_VERIFICATION_TOKEN
    if not key and not token:
        raise Rejected(403, "set FEISHU_ENCRYPT_KEY or FEISHU_VERIFICATION_TOKEN to receive events")
    if len(body) > MAX_BODY:
        raise Rejected(413, "body too large")
    outer = _loads(body)
    ts = headers.get("X-Lark-Request-Timestamp")
    nonce = headers.get("X-Lark-Request-Nonce")
    sig = headers.get("X-Lark-Signature")
    signed = False
    if key and (ts or nonce or sig):
        if not (ts and nonce and sig):
            raise Rejected(401, "missing signature headers")
        _check_signature(key, ts, nonce, sig, body, now_ts)
        signed = True
    decrypted = "encrypt" in outer
    if decrypted:
        if not key:
            raise Rejected(400, "encrypted body but no FEISHU_ENCRYPT_KEY configured")
        if not isinstance(outer["encrypt"], str):
            raise Rejected(400, "malformed encrypt field")
        try:
            payload = _loads(decrypt(key, outer["encrypt"]).encode("utf-8"))
        except Rejected:
            if signed:
                raise
            # Unsigned: only a challenge may come this way, and every failure answers alike (no padding oracle).
            raise Rejected(401, "missing signature headers") from None
    else:
        payload = outer
    if payload.get("type") == "url_verification":
        # The one request Feishu sends without signature headers (§1.1 of feishu.md). With an Encrypt Key it
        # comes encrypted, and decrypting to a url_verification object proves the sender has the key; a plain
        # one is proved only by the token (checked below when set).
        if not (token or signed or decrypted):
            raise Rejected(401, "url_verification needs FEISHU_VERIFICATION_TOKEN or an encrypted challenge")
        _check_token(settings, payload)
        return payload
    if key and not signed:
        raise Rejected(401, "missing signature headers")
    _check_token(settings, payload)
    return payload


def _check_signature(key: str, ts: str, nonce: str, sig: str, body: bytes, now_ts: float) -> None:
    try:
        when = float(ts)
    except ValueError:
        raise Rejected(401, "bad timestamp") from None
    if not math.isfinite(when) or abs(now_ts - when) > MAX_SKEW:  # NaN would compare as fresh
        raise Rejected(401, "stale timestamp")
    if not _same(signature(ts, nonce, key, body), sig.strip().lower()):
        raise Rejected(401, "bad signature")


def _loads(raw: bytes | str) -> dict[str, Any]:
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise Rejected(400, "JSON object expected")
    return data


def parse_json(raw: bytes | str) -> Any:
    """json.loads for untrusted input: malformed, hostile (RecursionError) or too deeply nested → Rejected(400)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Rejected(400, "malformed JSON") from None
    stack = [(data, 1)]
    while stack:  # iterative: the depth check itself must not recurse
        obj, depth = stack.pop()
        if isinstance(obj, dict | list):
            if depth > MAX_DEPTH:
                raise Rejected(400, "JSON nested too deeply")
            stack.extend((v, depth + 1) for v in (obj.values() if isinstance(obj, dict) else obj))
    return data


# --- events -> neutral messages -------------------------------------------------------------------------------
def dispatch_event(bot, payload: dict[str, Any]) -> dict[str, Any]:
    """Handle one authenticated event (HTTP or long connection); returns the response body.

    Raises Rejected(400) for a payload that is not an event at all; database errors propagate (the platform
    retries). Anything else that goes wrong in a handler is the core's business (it answers SORRY).
    """
    register_events(bot)
    if payload.get("type") == "url_verification":
        return {"challenge": payload.get("challenge", "")}
    header = payload.get("header")
    event = payload.get("event")
    if payload.get("type") == "event_callback" and "uuid" in payload:
        # A schema 1.0 event (old subscriptions): acknowledged, or Feishu would retry it for hours.
        kind = event.get("type") if isinstance(event, dict) else "?"
        log.info("feishu: acknowledged a schema 1.0 event (%s); subscribe to the 2.0 events", str(kind)[:60])
        return {}
    if not isinstance(header, dict) or not isinstance(event, dict):
        raise Rejected(400, "not a schema 2.0 event")
    etype = str(header.get("event_type", ""))
    event_id = str(header.get("event_id", "") or "")
    if etype == MESSAGE_EVENT:
        msg = message_event(bot, event, header)
        if msg is not None:
            bot.handle(msg, defer=msg.event == MENTION_CHECK)
        return {}
    if not event_id:
        raise Rejected(400, "event without event_id")
    if etype == CARD_EVENT:
        return card_action(bot, event, event_id, header)
    if etype == "im.chat.member.bot.added_v1":
        _chat_event(bot, event, event_id, header, CHAT_JOINED)
        return {}
    if etype == "im.chat.member.bot.deleted_v1":
        _chat_event(bot, event, event_id, header, CHAT_LEFT)
        return {}
    if etype == "im.chat.access_event.bot_p2p_chat_entered_v1":
        user = _open_id(event.get("operator_id"))
        if user:
            # Fired every time the member opens the chat: welcome at most once a day (dedupe key per day).
            key = f"enter:{user}:{bot.clock.today().isoformat()}"
            bot.handle(_event_msg(bot, key, ChatType.PRIVATE, user, user, "enter", header))
        return {}
    if etype == "application.bot.menu_v6":
        # A bot menu item: its event_key is what the member would have typed (e.g. 活动, 我的信息, 帮助).
        operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
        user = _open_id(operator.get("operator_id"))
        key, names = str(event.get("event_key", "")), (bot.settings.BOT_NAME,)
        text = normalize(key, names)
        if user and text:
            bot.handle(
                IncomingMessage(
                    platform=PLATFORM,
                    message_id=event_id,
                    chat_type=ChatType.PRIVATE,
                    chat_id=user,
                    user_id=user,
                    text=text,
                    typed=typed_words(key, names),
                    received_at=bot.clock.now(),
                    raw={"event_type": etype},
                )
            )
        return {}
    if etype not in NOOP_EVENTS:
        log.info("feishu: acknowledged unhandled event type %s", etype[:80])
    return {}


def _open_id(ids: Any) -> str:
    return str(ids.get("open_id") or "") if isinstance(ids, dict) else ""


def _event_msg(bot, event_id, chat_type, chat_id, user, name, header) -> IncomingMessage:
    return IncomingMessage(
        platform=PLATFORM,
        message_id=event_id,
        chat_type=chat_type,
        chat_id=chat_id,
        user_id=user or chat_id,
        received_at=bot.clock.now(),
        raw={"event_type": header.get("event_type")},
        event=name,
    )


def _unsupported(ctx) -> None:
    ctx.reply(UNSUPPORTED)


def message_event(bot, event: dict[str, Any], header: dict[str, Any]) -> IncomingMessage | None:
    """The neutral message for im.message.receive_v1, or None for what we only acknowledge.

    A group message with @-mentions while the bot's own open_id is not known yet becomes a MENTION_CHECK event,
    deferred to the worker (`_mention_check`): fetching the id here could overrun the 3-second deadline.
    """
    from bot.adapters.feishu_api import cached_bot_open_id

    sender = event.get("sender") if isinstance(event.get("sender"), dict) else {}
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    if sender.get("sender_type") != "user":
        return None  # other bots, and our own messages
    user = _open_id(sender.get("sender_id"))
    message_id = str(message.get("message_id") or "")
    if not user or not message_id:
        return None
    ids = sender.get("sender_id")
    user_id = ids.get("user_id") if isinstance(ids, dict) else None
    if isinstance(user_id, str) and user_id:
        link_by_user_id(bot, user, user_id)
    group = message.get("chat_type") != "p2p"
    mentions = [m for m in message.get("mentions") or [] if isinstance(m, dict)]
    me = (cached_bot_open_id(bot) or "") if group and mentions else ""
    mentioned = any(_open_id(m.get("id")) == me for m in mentions) if me else False
    undecided = group and bool(mentions) and not me
    if group and not mentioned and not undecided:
        return None  # members @ each other all day; we act only when addressed
    mtype = str(message.get("message_type", ""))
    raw_text = _content_text(mtype, message.get("content"))
    received = bot.clock.now()
    chat_id = str(message.get("chat_id") or "") if group else user
    base = dict(
        platform=PLATFORM,
        message_id=message_id,
        chat_type=ChatType.GROUP if group else ChatType.PRIVATE,
        chat_id=chat_id,
        user_id=user,
        mentioned=mentioned,
        received_at=received,
    )
    raw = {
        "message_type": mtype,
        "chat_id": message.get("chat_id"),
        "create_time": message.get("create_time"),
    }
    if undecided:
        raw["mentions"] = [
            {
                "key": str(m.get("key", "")),
                "id": {"open_id": _open_id(m.get("id"))},
                "name": str(m.get("name", "")),
            }
            for m in mentions
        ]
        raw["unsupported"] = raw_text is None
        return IncomingMessage(**base, text=raw_text or "", raw=raw, event=MENTION_CHECK)  # text as typed
    if raw_text is None:
        return IncomingMessage(**base, raw=raw, event="unsupported")
    text, names = _strip_mentions(raw_text, mentions, me), (bot.settings.BOT_NAME,)
    return IncomingMessage(**base, text=normalize(text, names), typed=typed_words(text, names), raw=raw)


def _content_text(mtype: str, content: Any) -> str | None:
    """Plain text of a text or post (rich text) message; None for other types."""
    if mtype not in ("text", "post"):
        return None
    try:
        data = parse_json(content) if isinstance(content, str) else content
    except Rejected:
        return ""
    if not isinstance(data, dict):
        return ""
    if mtype == "text":
        return str(data.get("text", ""))
    if "content" not in data:  # a locale-keyed post: {"zh_cn": {"title":..., "content": [...]}}
        data = next((v for v in data.values() if isinstance(v, dict)), {})
    parts = [str(data.get("title") or "")]
    for para in data.get("content") or []:
        line = []
        for el in para if isinstance(para, list) else []:
            if not isinstance(el, dict):
                continue
            tag = el.get("tag")
            if tag in ("text", "a", "md"):
                line.append(str(el.get("text", "")))
            elif tag == "at":
                line.append(str(el.get("user_id", "")))  # "@_user_N", resolved like a text mention
        parts.append("".join(line))
    return "\n".join(p for p in parts if p)


def _mention_check(ctx) -> None:
    """A deferred group message (the worker runs it): was the bot @-mentioned? If so, handle it as usual.

    The bot's open_id is fetched here if need be, in the worker's transaction. If Feishu cannot tell us, a mention
    whose display name is BOT_NAME counts, so the message is answered rather than dropped.
    """
    from bot.adapters.feishu_api import bot_open_id

    msg = ctx.msg
    mentions = [m for m in msg.raw.get("mentions") or [] if isinstance(m, dict)]
    try:
        me = bot_open_id(ctx.bot, ctx.session)
    except FeishuUnavailable as exc:
        by_name = [m for m in mentions if m.get("name") == ctx.settings.BOT_NAME]
        me = _open_id(by_name[0].get("id")) if by_name else ""
        log.warning(
            "feishu: bot open_id unavailable (%s); @%s decided by name", exc, "bot" if me else "someone"
        )
    if not me or not any(_open_id(m.get("id")) == me for m in mentions):
        ctx.handler_name = "feishu:not_addressed"
        row = ctx.session.scalar(
            select(InboundMessage).where(
                InboundMessage.platform == PLATFORM, InboundMessage.dedupe_key == msg.message_id[:255]
            )
        )
        if row is not None:  # colleagues talking among themselves: keep the dedupe key, not their words
            row.envelope = {**row.envelope, "text": "", "typed": "", "raw": {}}
        return
    if msg.raw.get("unsupported"):
        real = replace(msg, mentioned=True, event="unsupported")
    else:
        said, names = _strip_mentions(msg.text, mentions, me), (ctx.settings.BOT_NAME,)
        real = replace(
            msg, mentioned=True, event=None, text=normalize(said, names), typed=typed_words(said, names)
        )
    ctx.bot.dispatch(ctx, real)  # the core's routing (dialog, trigger words), now with the real message


_PLACEHOLDER = re.compile(r"@_user_\d+|@_all")


def _strip_mentions(text: str, mentions: list[dict[str, Any]], me: str) -> str:
    """Our own @ disappears; other people's @_user_N become their names (代报名 3 @张三 → 代报名 3 张三)."""
    names = {}
    for m in mentions:
        key = str(m.get("key", ""))
        names[key] = "" if me and _open_id(m.get("id")) == me else str(m.get("name", ""))
    return _PLACEHOLDER.sub(lambda mt: f" {names.get(mt.group(0), '')} ", text)


def link_by_user_id(bot, open_id: str, user_id: str) -> None:
    """A roster may give the Feishu user_id (工号-like) instead of the per-app open_id: link the open_id too.

    Only with the contact:user.employee_id:readonly scope does the event carry user_id. Checked once per open_id
    per process.
    """
    known: set[str] = bot.__dict__.setdefault("_feishu_linked", set())
    if open_id in known:
        return
    with bot.db.transaction() as s:
        if member_for_identity(s, PLATFORM, open_id) is None:
            member = member_for_identity(s, PLATFORM, user_id)
            if member is not None and member.active:
                link_identity(s, member, PLATFORM, open_id)
                log.info("feishu: linked an open_id to member %s through the roster's user_id", member.id)
    if len(known) > 100_000:
        known.clear()
    known.add(open_id)


def _chat_event(bot, event: dict[str, Any], event_id: str, header: dict[str, Any], name: str) -> None:
    """The bot was added to or removed from a group: one deduplicated core event, so a redelivered or replayed
    old event cannot flip the chat's reachability again."""
    chat_id = str(event.get("chat_id", "") or "")
    if not chat_id:
        return
    msg = _event_msg(bot, event_id, ChatType.GROUP, chat_id, _open_id(event.get("operator_id")), name, header)
    bot.handle(replace(msg, raw={**msg.raw, "chat_title": str(event.get("name", "") or "")[:100]}))


def _chat_joined(ctx) -> None:
    _remember_chat(ctx, reachable=True)
    welcome = ctx.bot.router.events.get("bot_added")
    if welcome is not None:
        welcome(ctx)


def _chat_left(ctx) -> None:
    _remember_chat(ctx, reachable=False)


def _remember_chat(ctx, reachable: bool) -> None:
    s, chat_id, title = ctx.session, ctx.msg.chat_id, str(ctx.msg.raw.get("chat_title") or "")
    chat = s.scalar(select(Chat).where(Chat.platform == PLATFORM, Chat.chat_id == chat_id))
    if chat is None:
        chat = Chat(platform=PLATFORM, chat_id=chat_id, title=title)
        s.add(chat)
    elif title:
        chat.title = title
    chat.unreachable = not reachable


def register_events(bot) -> None:
    """The adapter's own core events (idempotent: called at start-up and by every dispatch)."""
    events = bot.router.events
    events.setdefault("unsupported", _unsupported)
    events.setdefault(CHAT_JOINED, _chat_joined)
    events.setdefault(CHAT_LEFT, _chat_left)
    events.setdefault(MENTION_CHECK, _mention_check)


# --- card clicks ----------------------------------------------------------------------------------------------
def card_action(bot, event: dict[str, Any], event_id: str, header: dict[str, Any]) -> dict[str, Any]:
    """card.action.trigger: run the button's action, answer with a toast and (where it changed) the card."""
    from bot.adapters.feishu_api import render_card, strip_private

    operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
    action = event.get("action") if isinstance(event.get("action"), dict) else {}
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    value = action.get("value")
    user = str(operator.get("open_id") or "")
    if not isinstance(value, dict) or not user:
        return {"toast": {"type": "error", "content": "这个按钮已失效，请发送“帮助”查看可以做什么。"}}
    payload, meta = strip_private(value)
    group = meta.get("kind") == "chat"
    open_chat = str(context.get("open_chat_id") or "")
    chat_id = open_chat if group and open_chat else user
    msg = IncomingMessage(
        platform=PLATFORM,
        message_id=event_id,
        chat_type=ChatType.GROUP if group else ChatType.PRIVATE,
        chat_id=chat_id,
        user_id=user,
        action=payload,
        received_at=bot.clock.now(),
        raw={
            "event_type": CARD_EVENT,
            "reply": {"card_action": event_id, "in_reply_to": context.get("open_message_id")},
        },
    )
    result = bot.handle(msg)
    if result.duplicate:
        return {"toast": {"type": "info", "content": "已收到，正在处理。"}}
    answer: dict[str, Any] = {}
    card_reply, toast = inline_plan([r.to_payload() for r in result.replies])
    texts = [r.text for r in result.replies if isinstance(r, Text)]
    joined = "\n".join(texts)
    refused = result.failed or any(w in joined for w in REFUSAL_WORDS)
    content = toast or ("已处理" if not refused else "没有办成，请查看消息。")
    answer["toast"] = {"type": "error" if refused else "success", "content": content}
    if card_reply is not None and not group:
        index = next(i for i, r in enumerate(result.replies) if r.to_payload() == card_reply)
        new_meta = {
            "kind": meta.get("kind", "user"),
            "ob": _outbox_id(bot, f"reply:{PLATFORM}:{event_id}:{index}"),
        }
        answer["card"] = {"type": "raw", "data": render_card(card_reply, new_meta)}
    elif card_reply is None and not group and meta.get("ob"):
        # No new card from the handler: the clicked card as it reads now (counts, the member's status), with the
        # clicked button turned into 已报名 etc. while it is still there. Private chats only: a group's card is
        # shared, and 已报名 for one member would be wrong for everyone else (toast + messages there).
        card, fresh = current_card(bot, meta["ob"], user)
        if card is not None and (fresh or not refused):
            label = "已候补" if "候补" in joined else DONE_LABELS.get(str(payload.get("do", "")), "已处理")
            done = None if refused else (payload, label)
            answer["card"] = {"type": "raw", "data": render_card(card, meta, done=done)}
    return answer


def current_card(bot, outbox_id: Any, user: str) -> tuple[dict[str, Any] | None, bool]:
    """(card payload, fresh) for the card we sent `user` in outbox row `outbox_id`.

    Fresh: the message that produced the card (say 活动, or an 活动详情 button) is run again through its handler in
    a transaction that is rolled back, and its reply at the same position is taken if it is still a card with the
    same title — so the click answers with the card as the handler renders it now ("（剩4）", 您的状态：已报名).
    Otherwise (a push, a dialog step, the handler now answering differently) the card as it was sent.
    """
    if not isinstance(outbox_id, int):
        return None, False
    with bot.db.Session() as s:
        row = s.get(OutboxMessage, outbox_id)
        if row is None or row.platform != PLATFORM or row.target_kind != "user" or row.target_id != user:
            return None, False  # also refuses a forged `_ob` pointing at someone else's card
        stored = dict(row.payload or {})
        if stored.get("type") != "card":
            return None, False
        source, _, index = row.idempotency_key.removeprefix(f"reply:{PLATFORM}:").rpartition(":")
        if not row.idempotency_key.startswith(f"reply:{PLATFORM}:") or not index.isdigit():
            return stored, False
        inbound = s.scalar(
            select(InboundMessage).where(
                InboundMessage.platform == PLATFORM, InboundMessage.dedupe_key == source
            )
        )
        if inbound is None or inbound.status != "done" or not inbound.handler:
            return stored, False
        envelope, handler = inbound.envelope, inbound.handler
    try:
        replies = bot.rehearse(IncomingMessage.from_envelope(envelope), handler)
    except DBAPIError:
        raise
    except Exception as exc:  # the click itself succeeded; only its picture falls back
        log.warning("feishu: could not re-render a clicked card (%s)", type(exc).__name__)
        replies = []
    fresh = replies[int(index)].to_payload() if int(index) < len(replies) else {}
    if fresh.get("type") == "card" and fresh.get("title") == stored.get("title"):
        return fresh, True
    return stored, False


def _outbox_id(bot, key: str) -> int | None:
    with bot.db.Session() as s:
        return s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))


def inline_plan(payloads: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """What a card click shows inline: the first card (replaces the clicked one) and a short toast text.

    The sender applies the same rule to the outbox rows of a click, so what is shown inline is not sent again.
    Only in private chats: a group's card is shared, so a new card there is sent as a message instead.
    """
    card = next((p for p in payloads if p.get("type") == "card"), None)
    text = next((p["text"] for p in payloads if p.get("type") == "text"), None)
    return card, (cut(text, TOAST_MAX) if text is not None else None)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a cut text ends in … so nobody mistakes it for the whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- HTTP -----------------------------------------------------------------------------------------------------
bp = Blueprint("feishu", __name__, url_prefix="/feishu")


@bp.post("/events")
def events():
    bot = current_app.extensions["bot"]
    # werkzeug refuses a larger Content-Length (413) and stops a chunked body one byte past the limit, so an
    # oversized request is never read in full; verify_request answers 413 for that extra byte.
    request.max_content_length = MAX_BODY + 1
    try:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise Rejected(413, "body too large") from None
        payload = verify_request(bot.settings, request.headers, body, _now_ts(bot))
        return jsonify(dispatch_event(bot, payload))
    except Rejected as exc:
        log.warning("feishu: refused event (%s) from %s", exc.reason, request.remote_addr)
        return jsonify(error=exc.reason), exc.status
    except DBAPIError:
        raise  # the database is unreachable: 5xx, Feishu delivers the event again later
    except Exception:  # an adapter bug on an odd payload: a retry for hours would not fix it
        log.exception("feishu: event dropped")
        return jsonify({})


def _now_ts(bot) -> float:
    return bot.clock.now().timestamp()


def init_app(app: Flask, bot) -> None:
    """Register `/feishu/events` and the Feishu sender when FEISHU_APP_ID and FEISHU_APP_SECRET are set."""
    if not bot.settings.feishu_enabled:
        return
    from bot.adapters.feishu_api import FeishuSender

    register_events(bot)
    bot.senders[PLATFORM] = FeishuSender(bot)
    app.register_blueprint(bp)


# --- long connection ------------------------------------------------------------------------------------------
def longconn_handler(bot):
    """An EventDispatcherHandler whose every frame goes to `dispatch_event` (the SDK never parses our events).

    This overrides a private method: lark-oapi 1.7.5's ws client calls `_do_without_validation(payload)` for
    every EVENT frame and offers no public hook that sees them all (the register_* processors cover one event type
    each, and an unregistered type is answered 500 and retried for hours; the public `do_without_validation` is
    deprecated and not what the client calls). tests/test_feishu.py pins the SDK's call so an upgrade that drops
    it fails loudly. Card clicks (new-style card.action.trigger) arrive as EVENT frames and are answered in the
    ACK like over HTTP; frames of type CARD are dropped by the SDK itself before any handler (1.7.5).
    """
    import lark_oapi as lark

    handler = lark.EventDispatcherHandler.builder("", "").build()

    def _do_without_validation(pl: bytes) -> Any:
        return handle_frame(bot, pl)

    handler._do_without_validation = _do_without_validation  # what lark.ws.Client calls for EVENT frames
    return handler


def handle_frame(bot, pl: bytes) -> dict[str, Any] | None:
    """One EVENT frame of the long connection: same dispatch as HTTP. Returns the callback answer (or None).

    Junk is acknowledged (a retry would not help); database errors raise, so the SDK answers 500 and Feishu
    delivers the event again later.
    """
    try:
        payload = _loads(pl)
        answer = dispatch_event(bot, payload)
    except Rejected as exc:
        log.warning("feishu long connection: dropped frame (%s)", exc.reason)
        return None
    except DBAPIError:
        raise
    except Exception:
        log.exception("feishu long connection: event dropped")
        return None
    return answer or None


def longconn_client(bot):
    import asyncio

    import lark_oapi as lark
    import lark_oapi.ws.client as ws_client

    # lark-oapi keeps a module-level event loop; give this process a fresh one (issues #119/#133).
    ws_client.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(ws_client.loop)
    s = bot.settings
    return lark.ws.Client(
        s.FEISHU_APP_ID,
        s.FEISHU_APP_SECRET,
        event_handler=longconn_handler(bot),
        domain=s.FEISHU_API_BASE.rstrip("/"),
        log_level=lark.LogLevel.INFO,
    )
