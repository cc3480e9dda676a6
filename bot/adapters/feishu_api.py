"""Feishu outbound: the tenant access token shared by all workers, the IM API, cards, and the outbox sender.

- The tenant access token lives in the `feishu_state` table (and a per-process copy); it is refetched ten
  minutes before it expires and once when the API answers 99991663. It is never logged or put in errors.
- `FeishuSender.send(row)` creates a message (or, in a group, replies to the message in context) with
  `uuid` = a hash of the outbox row's idempotency key, so a retried send is delivered at most once.
- A file (`bot.message.File`) to a user is uploaded first (`im/v1/files`, file_type "xls", ≤ 30 MB) and sent
  as msg_type "file" with the same `uuid`; a retry uploads again. In a group chat it is sent as its text.
- Rate limits: a DB-backed fixed-window count per scope (app 50/s and 1000/min, one user or chat 5/s) answers
  `retry_after` before calling Feishu; HTTP 429 / 99991400 / IM throttling codes wait `x-ogw-ratelimit-reset`.
- Users are addressed by open_id (`ou_…`), union_id (`on_…`) or else user_id (a roster's 飞书账号), chats by chat_id.
- A user or chat the bot can no longer reach (230013, 230002, 232009, 99992361) is marked unreachable
  (`PlatformIdentity.unreachable` / `Chat.unreachable`) and the row is dead at once (permanent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.adapters.feishu import PLATFORM, FeishuUnavailable, cut, inline_plan
from bot.message import File, payload_to_outgoing
from bot.outbox import SendResult
from models.feishu import FeishuState, get_state, put_state
from models.member import PlatformIdentity
from models.messaging import Chat, OutboxMessage
from models.rate import take_slots

log = logging.getLogger(__name__)

TIMEOUT = 5.0
TOKEN_MARGIN = timedelta(minutes=10)
PREFETCH_EVERY = timedelta(minutes=1)
TOKEN_KEY = "tenant_token"
BOT_ID_KEY = "bot_open_id"
EXPIRED_TOKEN = 99991663
RATE_CODES = {99991400, 230020, 11232, 11233, 11247}
UNREACHABLE = {230002, 230013, 232009, 99992361}  # bot not in chat, user outside the app's range, ...
# bad request, sensitive, too long, DLP, bad card, an id that is not of its receive_id_type
PERMANENT = {230001, 230022, 230025, 230028, 230099, 99992402}
REPLY_GONE = {230011, 231003}  # the message replied to was recalled or deleted: send a new one instead
LIMITS = (("app:s", 50, 1), ("app:m", 1000, 60))  # (scope, count, window seconds)
PER_TARGET = 5  # per second, to one user or one group
PRIVATE_KEYS = {"_k": "kind", "_ob": "ob"}
LABEL_MAX = 40  # characters on a button; longer labels end in …
FILE_BYTES = 30 * 1024 * 1024  # im/v1/files: at most 30 MB, not empty


@dataclass
class ApiResult:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: Any = None

    @property
    def code(self) -> int:
        try:
            return int(self.body.get("code", -1))
        except (TypeError, ValueError):
            return -1

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.code == 0

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or self.code in RATE_CODES

    @property
    def reset(self) -> float:
        try:
            return max(float((self.headers or {}).get("x-ogw-ratelimit-reset", 1)), 0.5)
        except (TypeError, ValueError):
            return 1.0

    @property
    def error_code(self) -> str:
        """For delivery metrics: Feishu's code ("230020", "99991400"), else the HTTP status ("http_429")."""
        return str(self.code) if self.code > 0 else f"http_{self.status}"

    def describe(self) -> str:
        return f"feishu {self.status}/{self.code}: {str(self.body.get('msg', ''))[:200]}"


class FeishuApi:
    """Calls the open API with the tenant token; thread-safe enough for one process's workers."""

    def __init__(self, bot, http: requests.Session | None = None):
        self.bot = bot
        self.http = http or requests.Session()
        self._lock = threading.Lock()
        self._mem: tuple[str, datetime] | None = None
        self._bot_open_id: str | None = None
        self._prefetched_at: datetime | None = None

    @property
    def base(self) -> str:
        return self.bot.settings.FEISHU_API_BASE.rstrip("/")

    # token ---------------------------------------------------------------------------------------------------
    def _state(self, session: Session | None):
        """The caller's open transaction (a handler in the worker: a second writer would wait for it forever on
        SQLite), or a short one of our own."""
        return nullcontext(session) if session is not None else self.bot.db.transaction()

    def token(self, session: Session | None = None) -> str:
        now = self.bot.clock.now()
        with self._lock:
            if self._mem and self._mem[1] > now + TOKEN_MARGIN:
                return self._mem[0]
            with self._state(session) as s:
                row = get_state(s, TOKEN_KEY)
                if row is not None and row.expires_at and row.expires_at > now + TOKEN_MARGIN:
                    self._mem = (row.value, row.expires_at)
                    return row.value
            s_ = self.bot.settings
            try:
                r = self.http.post(
                    self.base + "/open-apis/auth/v3/tenant_access_token/internal",
                    json={"app_id": s_.FEISHU_APP_ID, "app_secret": s_.FEISHU_APP_SECRET},
                    timeout=TIMEOUT,
                )
                data = r.json()
            except (requests.RequestException, ValueError) as exc:
                raise FeishuUnavailable(
                    f"tenant token request failed: {type(exc).__name__}", _failure_code(exc)
                ) from None
            token = data.get("tenant_access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or data.get("code") != 0:
                code = data.get("code") if isinstance(data, dict) else None
                raise FeishuUnavailable(
                    f"tenant token refused: code {code}", str(code or f"http_{r.status_code}")
                )
            expires = now + timedelta(seconds=int(data.get("expire") or 7200))
            with self._state(session) as s:
                put_state(s, TOKEN_KEY, token, expires, now)
            self._mem = (token, expires)
            log.info("feishu: new tenant access token, valid until %s", expires.isoformat(timespec="seconds"))
            return token

    def invalidate(self, token: str, session: Session | None = None) -> None:
        """Forget a token Feishu refused (only if no other worker has replaced it meanwhile)."""
        with self._lock:
            if self._mem and self._mem[0] == token:
                self._mem = None
            with self._state(session) as s:
                s.execute(delete(FeishuState).where(FeishuState.key == TOKEN_KEY, FeishuState.value == token))

    # calls ---------------------------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        params=None,
        body=None,
        timeout: float = TIMEOUT,
        session=None,
        form=None,
        files=None,
    ) -> ApiResult:
        """`body` goes as JSON, or `form` + `files` as multipart (uploads)."""
        token = self.token(session)
        res = self._raw(method, path, token, params, body, timeout, form, files)
        if res.code == EXPIRED_TOKEN:
            self.invalidate(token, session)
            res = self._raw(method, path, self.token(session), params, body, timeout, form, files)
        return res

    def _raw(self, method, path, token, params, body, timeout, form=None, files=None) -> ApiResult:
        try:
            r = self.http.request(
                method,
                self.base + path,
                params=params,
                json=body,
                data=form,
                files=files,
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise FeishuUnavailable(
                f"{method} {path.split('?')[0]}: {type(exc).__name__}", _failure_code(exc)
            ) from None
        try:
            data = r.json()
        except ValueError:
            data = {}
        return ApiResult(r.status_code, data if isinstance(data, dict) else {}, r.headers)


def _failure_code(exc: Exception) -> str:
    return "timeout" if isinstance(exc, requests.Timeout) else "network"


def api_for(bot) -> FeishuApi:
    sender = bot.senders.get(PLATFORM)
    if isinstance(sender, FeishuSender):
        return sender.api
    api = getattr(bot, "_feishu_api", None)
    if api is None:
        api = FeishuApi(bot)
        bot._feishu_api = api
    return api


def cached_bot_open_id(bot, session: Session | None = None) -> str | None:
    """The bot's own open_id if this process or the database knows it; never calls Feishu."""
    api = api_for(bot)
    if not api._bot_open_id:
        with nullcontext(session) if session is not None else bot.db.Session() as s:
            row = s.get(FeishuState, BOT_ID_KEY)
            api._bot_open_id = row.value if row is not None and row.value else None
    return api._bot_open_id


def bot_open_id(bot, session: Session | None = None) -> str:
    """The bot's own open_id (to tell an @ of the bot from an @ of a colleague): cached, else fetched once from
    GET /open-apis/bot/v3/info and kept in the database (it never changes for an app). Raises FeishuUnavailable.

    Never called inside the 3-second event deadline: `prefetch_bot_open_id` fetches it ahead (the sender before
    its first send, `feishu check`, `feishu longconn`), and a group message that arrives before that is deferred.
    """
    known = cached_bot_open_id(bot, session)
    if known:
        return known
    api = api_for(bot)
    res = api.call("GET", "/open-apis/bot/v3/info", session=session)
    info = res.body.get("bot") if isinstance(res.body.get("bot"), dict) else {}
    open_id = info.get("open_id")
    if not res.ok or not isinstance(open_id, str) or not open_id:
        raise FeishuUnavailable(f"bot info unavailable ({res.describe()})", res.error_code)
    with api._state(session) as s:
        put_state(s, BOT_ID_KEY, open_id, None, bot.clock.now())
    api._bot_open_id = open_id
    log.info("feishu: the bot's open_id is known now")
    return open_id


def prefetch_bot_open_id(bot) -> bool:
    """Best effort, outside any transaction: whether the bot's open_id is known afterwards (tried once a minute)."""
    api = api_for(bot)
    if api._bot_open_id:
        return True
    now = bot.clock.now()
    if api._prefetched_at and now - api._prefetched_at < PREFETCH_EVERY:
        return False
    api._prefetched_at = now
    try:
        bot_open_id(bot)
    except FeishuUnavailable as exc:
        log.warning("feishu: the bot's open_id is not known yet: %s", exc)
        return False
    return True


# --- rendering ------------------------------------------------------------------------------------------------
def uuid_for(key: str) -> str:
    """Feishu's `uuid` (≤ 50 chars): at most one message per uuid within an hour."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def strip_private(value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a clicked button's value into the handler's action and our own bookkeeping (chat kind, outbox id)."""
    action = {k: v for k, v in value.items() if k not in PRIVATE_KEYS}
    meta = {PRIVATE_KEYS[k]: v for k, v in value.items() if k in PRIVATE_KEYS}
    return action, meta


_STYLES = {"primary": "primary", "danger": "danger", "default": "default"}


def render_card(
    payload: dict[str, Any], meta: dict[str, Any], done: tuple[dict[str, Any], str] | None = None
) -> dict[str, Any]:
    """The neutral card as interactive card JSON 2.0; `done` = (clicked action, label) disables that button."""
    elements: list[dict[str, Any]] = []
    lines = [str(x) for x in payload.get("lines", [])]
    if lines:
        elements.append({"tag": "div", "text": {"tag": "plain_text", "content": "\n".join(lines)}})
    private = {k: meta[v] for k, v in PRIVATE_KEYS.items() if meta.get(v) is not None}
    for b in payload.get("buttons", []):
        action = dict(b.get("action") or {})
        button: dict[str, Any] = {
            "tag": "button",
            "text": {"tag": "plain_text", "content": cut(str(b.get("label", "")), LABEL_MAX)},
            "type": _STYLES.get(str(b.get("style", "primary")), "primary"),
            "behaviors": [{"type": "callback", "value": {**action, **private}}],
        }
        if done is not None and action == done[0]:
            button["text"]["content"] = done[1]
            button["type"] = "default"
            button["disabled"] = True
        elements.append(button)
    return {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {
            "title": {"tag": "plain_text", "content": str(payload.get("title", ""))},
            "template": "blue",
        },
        "body": {"elements": elements},
    }


def render(row: OutboxMessage) -> tuple[str, dict[str, Any]]:
    """msg_type and content; a file as its text (a file to a user is uploaded first: `FeishuSender.send`)."""
    payload = row.payload or {}
    if payload.get("type") == "file":
        return "text", {"text": safe_text(payload_to_outgoing(payload).as_text())}
    if payload.get("type") == "card":
        return "interactive", render_card(payload, {"kind": row.target_kind, "ob": row.id})
    return "text", {"text": safe_text(str(payload.get("text", "")))}


def safe_text(text: str) -> str:
    """Feishu text turns <at user_id="all"></at> into a real @所有人: names and titles must not do that."""
    return text.replace("<at", "＜at").replace("</at>", "＜/at＞")


def receive_id_type(target_kind: str, target_id: str) -> str:
    """Feishu checks the id against the named type. Events give open_ids (`ou_`), but a roster's 飞书账号 may hold
    a user_id (the tenant-wide employee id, no fixed prefix) or a union_id (`on_`)."""
    if target_kind == "chat":
        return "chat_id"
    if target_id.startswith("ou_"):
        return "open_id"
    return "union_id" if target_id.startswith("on_") else "user_id"


# --- the sender -----------------------------------------------------------------------------------------------
class FeishuSender:
    def __init__(self, bot, http: requests.Session | None = None):
        self.bot = bot
        self.api = FeishuApi(bot, http)

    def send(self, row: OutboxMessage) -> SendResult:
        prefetch_bot_open_id(self.bot)  # once, so group @-mentions are recognised inside the event deadline
        ctx = row.context or {}
        if ctx.get("card_action") and self._shown_inline(row):
            return SendResult(True)  # already shown as the updated card in the click's answer
        wait = self._rate_wait(row)
        if wait:
            # not a failure: nothing was sent, so the outbox keeps the row's attempt and counts no failure
            return SendResult(False, "local rate limit", retry_after=wait, code="local_rate_limit", held=True)
        msg_type, content = render(row)
        try:
            if (row.payload or {}).get("type") == "file" and row.target_kind == "user":
                uploaded = self._upload(payload_to_outgoing(row.payload))
                if isinstance(uploaded, SendResult):
                    return uploaded
                msg_type, content = "file", {"file_key": uploaded}
        except FeishuUnavailable as exc:
            return SendResult(False, str(exc), code=exc.code)
        body = {
            "msg_type": msg_type,
            "content": json.dumps(content, ensure_ascii=False),
            "uuid": uuid_for(row.idempotency_key),
        }
        try:
            reply_to = ctx.get("in_reply_to")
            if row.target_kind == "chat" and isinstance(reply_to, str) and reply_to.startswith("om_"):
                res = self.api.call("POST", f"/open-apis/im/v1/messages/{reply_to}/reply", body=body)
                if res.code not in REPLY_GONE:
                    return self._result(row, res)
            res = self.api.call(
                "POST",
                "/open-apis/im/v1/messages",
                params={"receive_id_type": receive_id_type(row.target_kind, row.target_id)},
                body={**body, "receive_id": row.target_id},
            )
        except FeishuUnavailable as exc:
            return SendResult(False, str(exc), code=exc.code)
        return self._result(row, res)

    def _upload(self, file: File) -> str | SendResult:
        """The file_key of the uploaded file, or why it could not be uploaded."""
        if not 0 < len(file.data) <= FILE_BYTES:
            reason = f"文件大小不符合飞书要求（不能为空，最大30MB）：{file.name}"
            return SendResult(False, reason, permanent=True, code="file_size")
        res = self.api.call(
            "POST",
            "/open-apis/im/v1/files",
            form={
                "file_type": "xls" if file.name.endswith((".xls", ".xlsx")) else "stream",
                "file_name": file.name,
            },
            files={"file": (file.name, file.data)},
            timeout=30.0,
        )
        key = (res.body.get("data") or {}).get("file_key") if res.ok else None
        if isinstance(key, str) and key:
            return key
        failed = SendResult(False, res.describe(), code=res.error_code)
        if res.rate_limited:
            failed.retry_after = res.reset
        return failed

    def _result(self, row: OutboxMessage, res: ApiResult) -> SendResult:
        if res.ok:
            return SendResult(True)
        failed = SendResult(False, res.describe(), code=res.error_code)
        if res.rate_limited:
            failed.retry_after = res.reset
        elif res.code in UNREACHABLE:
            self._mark_unreachable(row)
            failed.permanent = True
        elif res.code in PERMANENT:
            failed.permanent = True
        return failed

    def _mark_unreachable(self, row: OutboxMessage) -> None:
        with self.bot.db.transaction() as s:
            if row.target_kind == "chat":
                chat = s.scalar(select(Chat).where(Chat.platform == PLATFORM, Chat.chat_id == row.target_id))
                if chat is None:
                    s.add(Chat(platform=PLATFORM, chat_id=row.target_id, unreachable=True))
                else:
                    chat.unreachable = True
            else:
                s.execute(
                    update(PlatformIdentity)
                    .where(
                        PlatformIdentity.platform == PLATFORM,
                        PlatformIdentity.platform_user_id == row.target_id,
                    )
                    .values(unreachable=True)
                )
        log.warning("feishu: %s %s… is unreachable; marked", row.target_kind, row.target_id[:8])

    def _rate_wait(self, row: OutboxMessage) -> float:
        """Count this send in the app's and the recipient's windows; seconds to wait if over a limit."""
        windows = [(scope, size, limit) for scope, limit, size in LIMITS]
        windows.append((f"to:{row.target_kind}:{row.target_id}", 1, PER_TARGET))
        with self.bot.db.transaction() as s:
            wait = take_slots(s, self.bot.clock.now().timestamp(), windows)
        return max(wait, 0.5) if wait else 0.0

    def _shown_inline(self, row: OutboxMessage) -> bool:
        """The click's answer showed the first card of its replies; the same rule as `inline_plan`."""
        if (row.payload or {}).get("type") != "card" or row.target_kind != "user":
            return False
        prefix = row.idempotency_key.rsplit(":", 1)[0] + ":"
        with self.bot.db.Session() as s:
            rows = list(
                s.execute(
                    select(OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.payload).where(
                        OutboxMessage.idempotency_key.startswith(prefix, autoescape=True)
                    )
                )
            )
        rows.sort(key=lambda r: int(r[1].rsplit(":", 1)[1]) if r[1].rsplit(":", 1)[1].isdigit() else 0)
        card, _ = inline_plan([r[2] for r in rows])
        first = next((r[0] for r in rows if r[2] is card), None)
        return first == row.id
