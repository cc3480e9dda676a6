"""WeCom outbound: the access token shared through the database, the API client and the outbox sender.

- Token: `gettoken`, cached in `wecom_access_token` (one row per app, shared by every worker) until 5 minutes
  before `expires_in`; on 40014 / 42001 / 41001 the token is dropped and fetched again ONCE, then the call is
  retried once. The token and the secret never appear in logs or in stored errors (`scrub`, and a filter on
  urllib3's logger, which would print request URLs at DEBUG).
- Sender: private replies through `message/send` (text, or `template_card` button_interaction for cards; a
  file is uploaded with `media/upload?type=file` (≤ 20 MB) and sent as msgtype "file"; a retry uploads again),
  AI-bot replies through the message's `response_url` (once, within the hour; several replies to one message
  are merged into that one use; cards only into single chats), group chats through the chat's webhook
  (消息推送) or `appchat/send` (files as their text: `File.as_text`). The enter_chat welcome is never sent from here (passive reply only).
- Limits: 30 messages per member per minute and 20 per webhook per minute (counted from the outbox's sent
  rows); per API (message/send, appchat/send) `WECOM_API_CALLS_PER_MINUTE` / `_PER_HOUR` for the whole app,
  counted in `models.rate` windows shared by every worker; 45009 / 45033 retried after a minute, `invaliduser` marks the identity unreachable (permanent).
- 60020 (server IP not trusted): an alert with the IP to trust is shown on the console dashboard; the rows
  wait (no attempt spent, so they never die of it) until a successful call clears the alert and sends them.
- Failed results carry the WeCom errcode (or "timeout", "http_502", ...) as `code` for the metrics.

Duplicates: WeCom has no idempotency key, so delivery is at-least-once. The sender renews a row's lease right
before sending it (a slow batch cannot let another worker take over a row this one is sending) and skips rows
another worker took over. What remains: a send that reached WeCom but whose answer was lost (timeout, reset,
crash before the outcome is recorded) is sent again on the next attempt; WeCom's own
`enable_duplicate_check` is not used because it would also drop deliberate repeats of the same text.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.adapters.wecom import PLATFORM, encode_key, queued_replies, task_id
from bot.message import Button, Card, File, Text, payload_to_outgoing
from bot.outbox import SendResult
from models.member import PlatformIdentity
from models.messaging import Chat, OutboxMessage
from models.rate import take_slots
from models.wecom import ALERT_IP_NOT_TRUSTED, WecomAccessToken, WecomAlert, clear_alert, raise_alert

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(minutes=5)
TOKEN_ERRORS = {40014, 42001, 41001}
RATE_ERRORS = {45009, 45033}
PER_MEMBER_PER_MINUTE = 30
PER_WEBHOOK_PER_MINUTE = 20
PASSIVE_WAIT = timedelta(seconds=10)  # WeCom waits 5 s for a passive reply; the callback takes it sooner
RESPONSE_URL_TTL = timedelta(minutes=55)  # WeCom says one hour; keep a margin for clocks and queues
TEXT_BYTES = 2048
FILE_BYTES = 20 * 1024 * 1024  # media/upload type=file: at most 20 MB
MARKDOWN_BYTES = 4096
TITLE_CHARS = 26
SUBTITLE_CHARS = 112
BUTTON_CHARS = 10
TEXT_SENT = "wecom_text_sent"  # outbox context: the text of a card that does not fit went out already
CARD_HINT = "详细内容已另发一条消息，请点下方按钮办理。"  # the compact card of a card whose text does not fit
IP_NOT_TRUSTED = (
    "企业微信拒绝了本服务器的IP（错误60020）。请管理员登录企业微信管理后台 → 应用管理 → 本应用 → "
    "“企业可信IP”，加入本服务器的出口IP后消息会自动补发。"
)
IP_RETRY = 600  # seconds between attempts of a row held back by 60020
_WEBHOOK_KEY = re.compile(r"[0-9A-Za-z-]{8,100}")
_FROM_IP = re.compile(r"from ip:\s*([0-9A-Fa-f.:]{3,45})")
SLOT_CHUNK = 10  # app-wide send slots a sender takes from the shared counter at once
RATE_WAIT = "rate_wait"  # our own per-minute limit made the row wait; nothing was sent to WeCom
_SECRET_PARAMS = re.compile(r"(access_token|corpsecret|key|response_code)=[^&\s'\"]+")


def untrusted_ip(errmsg: str) -> str:
    """The server IP WeCom names in a 60020 errmsg ("..., from ip: 1.2.3.4, more info at ..."), or ""."""
    m = _FROM_IP.search(errmsg or "")
    return m.group(1).rstrip(".:") if m else ""


def ip_alert_text(ip: str) -> str:
    """What staff must do about 60020, naming the IP when WeCom told us."""
    which = f"本服务器的出口IP {ip}" if ip else "本服务器的出口IP（可在服务器上运行 curl ifconfig.me 查看）"
    return (
        f"企业微信拒绝了{which}（错误60020），私聊消息和应用群消息暂时发不出去。"
        f"请管理员登录企业微信管理后台 → 应用管理 → 本应用 → 页面下方“企业可信IP” → 配置，加入 {ip or '该IP'}"
        "（需先在同一页面设置可信域名或接收消息服务器URL）。加入后待发送的消息会自动补发，"
        "也可运行 flask --app app wecom check 立即检查。"
    )


def failure_code(exc: Exception) -> str:
    """A metrics label for a transport failure: "timeout", "http_502", "network" or "bad_response"."""
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"http_{exc.response.status_code}"
    if isinstance(exc, requests.RequestException):
        return "network"
    return "bad_response"  # not JSON


class WeComError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def scrub(text: str) -> str:
    """Remove credentials (token, secret, webhook key, response code) from a text bound for logs or the DB."""
    return _SECRET_PARAMS.sub(r"\1=***", text)


class ScrubFilter(logging.Filter):
    """Scrubs credentials from records: urllib3 logs each request URL (with access_token=) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_pool_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, ScrubFilter) for f in _pool_log.filters):
    _pool_log.addFilter(ScrubFilter())


def webhook_url_error(url: str, api_base: str) -> str | None:
    """Why `url` is not a group webhook (消息推送) address of this WeCom API, in Chinese; None when it is.

    The address must be `<WECOM_API_BASE>/cgi-bin/webhook/send?key=<key>` and nothing else: the key is the only
    credential, and the host must be WeCom's so broadcasts cannot be sent anywhere else.
    """
    base = urlsplit(api_base.rstrip("/"))
    example = f"{base.scheme}://{base.netloc}/cgi-bin/webhook/send?key=…"
    hint = f"地址应形如 {example}（在群聊设置 → 消息推送 → 添加或打开机器人，复制 Webhook 地址）"
    parts = urlsplit(url.strip())
    if (parts.scheme, parts.netloc, parts.path) != (base.scheme, base.netloc, "/cgi-bin/webhook/send"):
        return hint
    query = parse_qs(parts.query, keep_blank_values=True)
    keys = query.get("key", [])
    if set(query) != {"key"} or len(keys) != 1 or not _WEBHOOK_KEY.fullmatch(keys[0]) or parts.fragment:
        return "地址里的 key 不完整或有多余内容。" + hint
    return None


def mask_webhook(url: str | None) -> str:
    """A webhook for display: only the key's last 4 characters (the key is a credential)."""
    if not url:
        return ""
    key = parse_qs(urlsplit(url).query).get("key", [""])[0]
    return f"key=…{key[-4:]}" if len(key) > 8 else "key=…"


def cut_bytes(text: str, limit: int) -> str:
    """Cut to `limit` UTF-8 bytes, ending with "…" when something was removed."""
    if len(text.encode("utf-8")) <= limit:
        return text
    room = limit - len("…".encode())
    out = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return out + "…"


def cut_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WeComClient:
    """Calls the WeCom API of the self-built app with the shared token; one refresh on an expired token."""

    def __init__(self, settings, db, clock, http: requests.Session | None = None, timeout: float = 10.0):
        self.settings = settings
        self.db = db
        self.clock = clock
        self.http = http or requests.Session()
        self.timeout = timeout
        self.base = settings.WECOM_API_BASE.rstrip("/")
        self.app_key = f"{settings.WECOM_CORP_ID}:{settings.WECOM_AGENT_ID}"
        # The shared token as this process last read it: WeCom hands out the same token until it expires, so a
        # copy saves a database read per call; a refused token is dropped here and in the database.
        self._mem: tuple[str, datetime] | None = None

    # token -----------------------------------------------------------------------------------------------
    def token(self, force: bool = False) -> str:
        now = self.clock.now()
        if not force:
            mem = self._mem
            if mem is not None and mem[1] - TOKEN_MARGIN > now:
                return mem[0]
            with self.db.Session() as s:
                row = s.scalar(select(WecomAccessToken).where(WecomAccessToken.app_key == self.app_key))
                if row is not None and row.expires_at - TOKEN_MARGIN > now:
                    self._mem = (row.access_token, row.expires_at)
                    return row.access_token
        data = self._get(
            "/cgi-bin/gettoken",
            {"corpid": self.settings.WECOM_CORP_ID, "corpsecret": self.settings.WECOM_SECRET},
        )
        if data.get("errcode"):
            if int(data["errcode"]) == 60020:
                self.note_untrusted(str(data.get("errmsg", "")))
            raise WeComError(int(data["errcode"]), str(data.get("errmsg", "")))
        token = str(data["access_token"])
        expires = now + timedelta(seconds=int(data.get("expires_in", 7200)))
        with self.db.transaction() as s:
            ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(
                WecomAccessToken
            )
            values = dict(app_key=self.app_key, access_token=token, expires_at=expires, updated_at=now)
            s.execute(
                ins.values(**values).on_conflict_do_update(
                    index_elements=["app_key"],
                    set_=dict(access_token=token, expires_at=expires, updated_at=now),
                )
            )
        self._mem = (token, expires)
        log.info("wecom: fetched a new access token (valid %ss)", data.get("expires_in", 7200))
        return token

    def _drop(self, token: str) -> None:
        """Forget a token WeCom refused, unless another worker already replaced it."""
        if self._mem is not None and self._mem[0] == token:
            self._mem = None
        with self.db.transaction() as s:
            s.execute(
                update(WecomAccessToken)
                .where(WecomAccessToken.app_key == self.app_key, WecomAccessToken.access_token == token)
                .values(expires_at=self.clock.now() - timedelta(seconds=1))
            )

    # calls -----------------------------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        resp = self.http.get(self.base + path, params=params, timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, payload=payload)

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """`media/upload?type=file` (multipart field "media"): the answer carries the media_id (valid 3 days)."""
        return self.call(
            "POST", "/cgi-bin/media/upload", params={"type": "file"}, files={"media": (name, data)}
        )

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self.call("GET", path, params=params)

    def call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """Call with the token; refreshed and retried exactly once when WeCom says it expired."""
        token = self.token()
        for attempt in range(2):
            resp = self.http.request(
                method,
                self.base + path,
                params={**(params or {}), "access_token": token},
                json=payload,
                files=files,
                timeout=self.timeout,
            )
            resp.raise_for_status()
            data = resp.json()
            code = int(data.get("errcode") or 0)
            if code in TOKEN_ERRORS and attempt == 0:
                self._drop(token)
                token = self.token(force=True)
                continue
            break
        if code == 60020:
            self.note_untrusted(str(data.get("errmsg", "")))
        elif code == 0:
            self.note_trusted()
        return data

    # the 60020 alert -------------------------------------------------------------------------------------
    def note_untrusted(self, errmsg: str) -> None:
        """Show staff the IP to trust (console dashboard); rows keep waiting instead of dying."""
        ip = untrusted_ip(errmsg)
        with self.db.transaction() as s:
            raise_alert(s, ALERT_IP_NOT_TRUSTED, ip, ip_alert_text(ip), self.clock.now())

    def note_trusted(self) -> None:
        """A call went through: clear the 60020 alert and send the rows it held back now.

        A read first: the alert is rare, and a write transaction per sent message would halve delivery."""
        with self.db.Session() as s:
            if (
                s.scalar(select(WecomAlert.id).where(WecomAlert.kind == ALERT_IP_NOT_TRUSTED).limit(1))
                is None
            ):
                return
        with self.db.transaction() as s:
            if clear_alert(s, ALERT_IP_NOT_TRUSTED):
                released = s.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.platform == PLATFORM,
                        OutboxMessage.status == "pending",
                        OutboxMessage.last_error == IP_NOT_TRUSTED,
                    )
                    .values(next_attempt_at=self.clock.now())
                ).rowcount
                log.info("wecom: the server IP is trusted again; %s held messages released", released)

    def post_url(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to a full URL that carries its own credential (webhook key, response_url)."""
        resp = self.http.post(url, json=payload, timeout=self.timeout)
        resp.raise_for_status()
        try:
            return resp.json()
        except ValueError:
            return {"errcode": 0}


def card_fits(card: Card) -> bool:
    """Whether the card's title and lines show in full on a template card (WeCom cuts what is longer)."""
    return len(card.title) <= TITLE_CHARS and len("\n".join(card.lines)) <= SUBTITLE_CHARS


def card_text(card: Card) -> str:
    """A card that does not fit, as the text message sent beside its compact card (the buttons are on the card)."""
    return cut_bytes("\n".join([card.title, *card.lines]), TEXT_BYTES)


def _ref(action: dict[str, Any]) -> Any:
    """The id a button acts on (activity 5, proposal 12 ...), to tell apart labels that cutting made alike."""
    return next(
        (v for k, v in action.items() if k != "do" and isinstance(v, int) and not isinstance(v, bool)), None
    )


def button_labels(buttons: list[Button]) -> list[str]:
    """Labels cut to BUTTON_CHARS and kept distinct: where cutting makes two alike ("报名 第0场职工健…" nine
    times), the id goes before the title ("报名【5】第0场…", the 【5】 of the card's lines), else the number."""
    labels = [cut_chars(b.label, BUTTON_CHARS) for b in buttons]
    if len(set(labels)) == len(labels):
        return labels
    out = []
    for i, (b, label) in enumerate(zip(buttons, labels, strict=True), 1):
        if labels.count(label) > 1:
            verb, _, rest = b.label.partition(" ")
            if not rest:
                verb, rest = "", b.label
            ref = _ref(b.action)
            label = cut_chars(f"{verb}【{ref if ref is not None else i}】{rest}", BUTTON_CHARS)
        out.append(label)
    if len(set(out)) < len(out):  # the same id twice: number them
        out = [cut_chars(f"{i}.{label}", BUTTON_CHARS) for i, label in enumerate(out, 1)]
    return out


def card_json(card: Card, task_id: str) -> dict[str, Any] | None:
    """A `button_interaction` template card, or None when the card has no usable buttons.

    A card whose text does not fit (`card_fits`) becomes a compact card, title + CARD_HINT + buttons: its full
    text goes out as a message of its own (`card_text`), never cut at the card's 112 characters."""
    kept = []
    for i, b in enumerate(card.buttons[:6]):
        key = encode_key(i, b.action)
        if key is None:
            log.warning("wecom: button %r dropped, its action does not fit in 1024 bytes", b.label)
            continue
        kept.append((b, key))
    if not kept:
        return None
    labels = button_labels([b for b, _ in kept])
    buttons = [
        {"text": label, "style": {"primary": 1, "default": 2, "danger": 3}.get(b.style, 1), "key": key}
        for (b, key), label in zip(kept, labels, strict=True)
    ]
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": cut_chars(card.title, TITLE_CHARS)},
        "task_id": task_id,
        "button_list": buttons,
    }
    if not card_fits(card):
        body["sub_title_text"] = CARD_HINT
    elif card.lines:
        body["sub_title_text"] = "\n".join(card.lines)
    return body


def as_text(payload: dict[str, Any]) -> str:
    out = payload_to_outgoing(payload)
    return out.text if isinstance(out, Text) else out.as_text()


class WeComSender:
    """`Sender` for the outbox (platform "wecom")."""

    def __init__(self, bot, http: requests.Session | None = None):
        self.bot = bot
        self.settings = bot.settings
        self.db = bot.db
        self.client = WeComClient(bot.settings, bot.db, bot.clock, http=http)
        # app-wide slots this sender took ahead and has not used yet: api -> (windows, how many)
        self._slots: dict[str, tuple[tuple[int, ...], int]] = {}
        self._slot_lock = threading.Lock()

    def send(self, row: OutboxMessage) -> SendResult:
        lost = self._check_still_ours(row)
        if lost is not None:
            return lost
        try:
            result = self._send(row)
        except WeComError as exc:
            result = self._from_code(exc.code, scrub(str(exc)), row)
        except (requests.RequestException, ValueError) as exc:
            return SendResult(False, scrub(f"{type(exc).__name__}: {exc}")[:500], code=failure_code(exc))
        if result.code == "60020":
            self._hold(row, IP_RETRY)
        return result

    def _hold(self, row: OutboxMessage, wait: float) -> None:
        """Put the row back without spending an attempt: while staff fix the trusted IP, rows must not die.

        Written here because the outbox would count the attempt and give up after OUTBOX_MAX_ATTEMPTS; the
        outbox's own record of this attempt then finds the row no longer 'sending' and leaves it alone.
        """
        with self.db.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row.id,
                    OutboxMessage.status == "sending",
                    OutboxMessage.attempts == row.attempts,
                )
                .values(
                    status="pending",
                    attempts=max(row.attempts - 1, 0),
                    next_attempt_at=self.bot.clock.now() + timedelta(seconds=wait),
                    lease_until=None,
                    last_error=IP_NOT_TRUSTED,
                )
            )

    def _check_still_ours(self, row: OutboxMessage) -> SendResult | None:
        """Check this row is still ours right before sending it, or say why not to send it (None: go ahead).

        WeCom has no idempotency key, so a row must never be sent by two workers: the outbox leases a whole
        batch at once and renews a row's lease before its send once half of it has passed (`_still_ours`), so
        the lease outlasts the send (≤ 5 HTTP calls of ≤ 10 s each). What can still have happened meanwhile is
        read here: the row was merged into an earlier reply or taken as a passive reply (sent), or another
        worker took it over after a long stall (its attempt count moved on)."""
        with self.db.Session() as s:
            status, attempts = s.execute(
                select(OutboxMessage.status, OutboxMessage.attempts).where(OutboxMessage.id == row.id)
            ).one()
        if status == "sending" and attempts == row.attempts:
            return None
        if status == "sent":
            return SendResult(True)  # merged into an earlier reply, or taken as a passive reply
        log.info("wecom: outbox %s was taken over by another worker; not sending it again", row.id)
        return SendResult(False, "已由另一个发送进程接手", code="lease_lost")

    def _send(self, row: OutboxMessage) -> SendResult:
        ctx = row.context or {}
        if ctx.get("passive"):
            return self._passive_only(row)
        url = ctx.get("response_url")
        if url and self._fresh(ctx):
            return self._send_response_url(row, url)
        if row.target_kind == "chat":
            return self._send_chat(row)
        return self._send_user(row)

    # private chats ---------------------------------------------------------------------------------------
    def _send_user(self, row: OutboxMessage) -> SendResult:
        if not self.settings.wecom_enabled:
            return SendResult(
                False,
                "未配置企业微信自建应用（WECOM_CORP_ID / WECOM_SECRET），无法私聊发送",
                permanent=True,
                code="not_configured",
            )
        batch = row.payload.get("batch")
        if isinstance(batch, list) and batch:  # one identical text for up to 1,000 members (greetings)
            users = [str(u) for u in batch[:1000]]
        else:
            users = [row.target_id]
            wait = self._rate_wait(row, PER_MEMBER_PER_MINUTE)
            if wait:
                return SendResult(
                    False,
                    "已达到每位成员每分钟30条的上限，稍后发送",
                    retry_after=wait,
                    code=RATE_WAIT,
                    held=True,
                )
        base: dict[str, Any] = {"touser": "|".join(users), "agentid": int(self.settings.WECOM_AGENT_ID or 0)}
        out = payload_to_outgoing(row.payload)
        if isinstance(out, File):
            return self._send_file(row, users, base, out)
        card = card_json(out, task_id(row.id, row.attempts)) if isinstance(out, Card) else None
        if card is not None and not card_fits(out) and not (row.context or {}).get(TEXT_SENT):
            # The full text first, then the compact card with the buttons; a retry sends only what is missing.
            first = self._message_send(
                row, users, {**base, "msgtype": "text", "text": {"content": card_text(out)}}
            )
            if not first.ok:
                return first
            self._note_text_sent(row)
        if card is not None:
            return self._message_send(row, users, {**base, "msgtype": "template_card", "template_card": card})
        text = out.as_text() if isinstance(out, Card) else out.text
        return self._message_send(
            row, users, {**base, "msgtype": "text", "text": {"content": cut_bytes(text, TEXT_BYTES)}}
        )

    def _send_file(
        self, row: OutboxMessage, users: list[str], base: dict[str, Any], file: File
    ) -> SendResult:
        """Upload, then send the media_id; a retry uploads again (media ids are cheap, and one may have expired)."""
        if not 5 < len(file.data) <= FILE_BYTES:
            return SendResult(
                False,
                f"文件大小不符合企业微信要求（5字节到20MB）：{file.name}",
                permanent=True,
                code="file_size",
            )
        held = self._app_wait("media/upload")
        if held is not None:
            return held
        data = self.client.upload(file.name, file.data)
        code = int(data.get("errcode") or 0)
        if code or not data.get("media_id"):
            return self._from_code(code or -1, scrub(str(data.get("errmsg", "no media_id"))), row)
        return self._message_send(
            row, users, {**base, "msgtype": "file", "file": {"media_id": data["media_id"]}}
        )

    def _message_send(self, row: OutboxMessage, users: list[str], msg: dict[str, Any]) -> SendResult:
        held = self._app_wait("message/send")
        if held is not None:
            return held
        data = self.client.post("/cgi-bin/message/send", msg)
        code = int(data.get("errcode") or 0)
        invalid = set(str(data.get("invaliduser") or "").split("|")) & set(users)
        if code == 81013 and not invalid:
            invalid = set(users)
        if invalid:
            self._mark_unreachable(invalid)
        if invalid and invalid >= set(users):
            return SendResult(
                False,
                "该成员不在应用可见范围内或已离职（invaliduser），已标记为无法送达",
                permanent=True,
                code=str(code) if code else "invaliduser",
            )
        return self._from_code(code, scrub(str(data.get("errmsg", ""))), row)

    def _note_text_sent(self, row: OutboxMessage) -> None:
        """Remember on the row that its card's text went out, so a retry of the card does not repeat it."""
        row.context = {**(row.context or {}), TEXT_SENT: True}
        with self.db.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, OutboxMessage.attempts == row.attempts)
                .values(context=row.context)
            )

    def _mark_unreachable(self, user_ids: set[str]) -> None:
        with self.db.transaction() as s:
            s.execute(
                update(PlatformIdentity)
                .where(PlatformIdentity.platform == PLATFORM, PlatformIdentity.platform_user_id.in_(user_ids))
                .values(unreachable=True)
            )

    # group chats -----------------------------------------------------------------------------------------
    def _send_chat(self, row: OutboxMessage) -> SendResult:
        with self.db.Session() as s:
            chat = s.scalar(select(Chat).where(Chat.platform == PLATFORM, Chat.chat_id == row.target_id))
            webhook = chat.webhook_url if chat is not None else None
        text = as_text(row.payload)
        if webhook:
            wait = self._rate_wait(row, PER_WEBHOOK_PER_MINUTE)
            if wait:
                return SendResult(
                    False,
                    "群消息推送每分钟20条的上限已到，稍后发送",
                    retry_after=wait,
                    code=RATE_WAIT,
                    held=True,
                )
            data = self.client.post_url(
                webhook, {"msgtype": "text", "text": {"content": cut_bytes(text, TEXT_BYTES)}}
            )
            return self._from_code(int(data.get("errcode") or 0), scrub(str(data.get("errmsg", ""))), row)
        if not self.settings.wecom_enabled:
            return SendResult(
                False,
                "该群没有配置消息推送地址（webhook），也没有自建应用，无法发到群里",
                permanent=True,
                code="not_configured",
            )
        held = self._app_wait("appchat/send")
        if held is not None:
            return held
        data = self.client.post(
            "/cgi-bin/appchat/send",
            {"chatid": row.target_id, "msgtype": "text", "text": {"content": cut_bytes(text, TEXT_BYTES)}},
        )
        return self._from_code(int(data.get("errcode") or 0), scrub(str(data.get("errmsg", ""))), row)

    # AI bot replies --------------------------------------------------------------------------------------
    def _passive_only(self, row: OutboxMessage) -> SendResult:
        """The enter_chat welcome exists only as the passive reply, which its callback takes within WeCom's
        5 s; no other channel reaches that chat, so the loop never sends it (see wecom.take_replies)."""
        if self.bot.clock.now() - row.created_at < PASSIVE_WAIT:
            return SendResult(
                False,
                "等待回调被动回复",
                retry_after=PASSIVE_WAIT.total_seconds(),
                code="passive_wait",
                held=True,
            )
        return SendResult(
            False,
            "进入会话的欢迎语只能随回调被动回复，已错过（不影响使用）",
            permanent=True,
            code="passive_missed",
        )

    def _fresh(self, ctx: dict[str, Any]) -> bool:
        try:
            received = datetime.fromisoformat(str(ctx.get("received")))
        except ValueError:
            return False
        return self.bot.clock.now() - received < RESPONSE_URL_TTL

    def _send_response_url(self, row: OutboxMessage, url: str) -> SendResult:
        """One use of the response_url carries every reply queued for the same message (merged)."""
        in_reply_to = (row.context or {}).get("in_reply_to")
        siblings: list[OutboxMessage] = []
        if in_reply_to:
            siblings_q = queued_replies(in_reply_to, ("pending", "sending")).where(OutboxMessage.id != row.id)
            with self.db.Session() as s:
                siblings = list(s.scalars(siblings_q))
        out = payload_to_outgoing(row.payload)
        # response_url is good for one message and carries template cards into single chats only: a group, or a
        # card whose text does not fit the card (`card_fits`), gets the full text as markdown.
        single = row.target_kind != "chat"
        card = (
            card_json(out, task_id(row.id, row.attempts))
            if isinstance(out, Card) and card_fits(out) and not siblings and single
            else None
        )
        if card is not None:
            body: dict[str, Any] = {"msgtype": "template_card", "template_card": card}
        else:
            texts = [as_text(r.payload) for r in sorted([row, *siblings], key=lambda r: r.id)]
            body = {
                "msgtype": "markdown",
                "markdown": {"content": cut_bytes("\n\n".join(texts), MARKDOWN_BYTES)},
            }
        data = self.client.post_url(url, body)
        code = int(data.get("errcode") or 0)
        if code and code not in RATE_ERRORS:
            # used up or expired (e.g. our first attempt reached WeCom but its answer was lost): other channel
            log.info("wecom: response_url refused (%s), falling back", code)
            return self._send_chat(row) if row.target_kind == "chat" else self._send_user(row)
        result = self._from_code(code, scrub(str(data.get("errmsg", ""))), row)
        if result.ok and siblings:
            now = self.bot.clock.now()
            with self.db.transaction() as s:
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([r.id for r in siblings]))
                    .values(status="sent", sent_at=now, lease_until=None, last_error=f"merged into #{row.id}")
                )
        return result

    # shared ----------------------------------------------------------------------------------------------
    def _app_wait(self, api: str) -> SendResult | None:
        """Take a slot in this API's company-wide windows (WeCom caps each API per company: 10,000 calls a
        minute, 150,000 an hour), shared by every worker through the database; None: call now. Over a limit,
        the row is held (no attempt spent) until the window ends, and the refused try takes no slot.

        Slots are taken SLOT_CHUNK at a time (one write per ten sends, not per send) and used up by this
        sender while their windows last; near the cap, one at a time. Slots left when a window ends are
        simply not used: all workers together still stay under the cap."""
        now = self.bot.clock.now().timestamp()
        windows = (
            (f"wecom:{api}:m", 60, self.settings.WECOM_API_CALLS_PER_MINUTE),
            (f"wecom:{api}:h", 3600, self.settings.WECOM_API_CALLS_PER_HOUR),
        )
        wins = tuple(int(now // size) for _, size, _ in windows)
        with self._slot_lock:
            taken_wins, left = self._slots.get(api, ((), 0))
            if taken_wins == wins and left > 0:
                self._slots[api] = (wins, left - 1)
                return None
            for n in (SLOT_CHUNK, 1):
                with self.db.transaction() as s:
                    wait = take_slots(s, now, windows, n)
                if not wait:
                    self._slots[api] = (wins, n - 1)
                    return None
        return SendResult(
            False,
            "企业微信每分钟/每小时调用上限将到，稍后发送",
            retry_after=max(wait, 0.5),
            code=RATE_WAIT,
            held=True,
        )

    def _rate_wait(self, row: OutboxMessage, limit: int) -> float:
        """Seconds to wait so this target stays under `limit` messages per minute (0: send now)."""
        now = self.bot.clock.now()
        with self.db.Session() as s:
            recent = s.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.platform == PLATFORM,
                    OutboxMessage.target_kind == row.target_kind,
                    OutboxMessage.target_id == row.target_id,
                    OutboxMessage.status == "sent",
                    OutboxMessage.sent_at > now - timedelta(minutes=1),
                )
            )
        return 60.0 if (recent or 0) >= limit else 0.0

    def _from_code(self, code: int, errmsg: str, row: OutboxMessage) -> SendResult:
        """The outcome for a WeCom errcode; failures carry the errcode as `code` for the metrics."""
        if code == 0:
            return SendResult(True)
        label = str(code)
        if code in RATE_ERRORS:
            return SendResult(False, f"企业微信限流（{code}），一分钟后重试", retry_after=60, code=label)
        if code == 60020:
            log.warning("wecom: 60020 — the server IP is not in the app's 企业可信IP")
            return SendResult(False, IP_NOT_TRUSTED, retry_after=600, code=label)
        if code in TOKEN_ERRORS:
            return SendResult(False, f"企业微信凭证无效（{code}），请检查 WECOM_SECRET", code=label)
        if code in (40001, 40013):
            return SendResult(
                False,
                f"企业微信企业ID或Secret错误（{code}），请检查 WECOM_CORP_ID / WECOM_SECRET",
                code=label,
            )
        return SendResult(False, f"企业微信返回错误 {code}: {errmsg}"[:500], code=label)


__all__ = ["WeComClient", "WeComError", "WeComSender", "card_json", "cut_bytes", "scrub", "Text"]
