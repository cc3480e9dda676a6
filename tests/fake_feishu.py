"""A local fake of the Feishu open API (tenant token, bot info, send and reply) and event-building helpers.

`FakeFeishu()` serves on 127.0.0.1:<free port> in a thread (werkzeug `make_server`); point `FEISHU_API_BASE` at
`fake.url`. It records every call, delivers each `uuid` at most once (like Feishu, within the hour), and can be
scripted: `expire_tokens()` (next call answers 99991663), `rate_limit(n, reset)` (HTTP 429 / 99991400 with
`x-ogw-ratelimit-reset`), `unreachable` (receive ids answered 230013 / 230002), `down` (bot info fails).
A receive_id that is not of its receive_id_type (open_id `ou_`, union_id `on_`, chat_id `oc_`, user_id none of
these) gets 99992402, as Feishu refuses it. `im/v1/files` takes a multipart upload (file_type, file_name, file;
≤ 30 MB) and answers a file_key; `files` keeps (file_name, bytes) per key, `files_to(receive_id)` gives the
files delivered as msg_type "file".
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from typing import Any

from Crypto.Cipher import AES
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

APP_ID = "cli_test_app"
APP_SECRET = "test-app-secret"
VERIFICATION_TOKEN = "vtoken-123"
ENCRYPT_KEY = "test encrypt key"
BOT_OPEN_ID = "ou_bot_0001"


class FakeFeishu:
    def __init__(self, app_id: str = APP_ID, app_secret: str = APP_SECRET, bot_open_id: str = BOT_OPEN_ID):
        self.app_id, self.app_secret, self.bot_open_id = app_id, app_secret, bot_open_id
        self.calls: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []  # messages that really "arrived" (deduplicated by uuid)
        self.valid_tokens: set[str] = set()
        self.unreachable: set[str] = set()
        self.down = False
        self._rate_limits: list[tuple[float, bool]] = []
        self._uuids: dict[str, str] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    # lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> FakeFeishu:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeFeishu:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # scripting -----------------------------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def rate_limit(self, times: int = 1, reset: float = 2, http429: bool = True) -> None:
        with self._lock:
            self._rate_limits.extend([(reset, http429)] * times)

    def calls_to(self, fragment: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if fragment in c["path"]]

    def texts(self, receive_id: str | None = None) -> list[str]:
        """Delivered message bodies as text (cards: title + lines + button labels)."""
        out = []
        for m in self.delivered:
            if receive_id is not None and m["receive_id"] != receive_id:
                continue
            if m["msg_type"] == "file":
                out.append(f"[file] {self.files[m['content']['file_key']][0]}")
            else:
                out.append(
                    card_text(m["content"]) if m["msg_type"] == "interactive" else m["content"]["text"]
                )
        return out

    def files_to(self, receive_id: str) -> list[tuple[str, bytes]]:
        """(file_name, bytes) of every file message delivered to this receive_id."""
        return [
            self.files[m["content"]["file_key"]]
            for m in self.delivered
            if m["msg_type"] == "file" and m["receive_id"] == receive_id
        ]

    # the WSGI app --------------------------------------------------------------------------------------------
    def _app(self, environ, start_response):
        req = Request(environ)
        if req.mimetype == "multipart/form-data":  # im/v1/files
            upload = req.files.get("file")
            body = {**req.form.to_dict(), "file": upload.read() if upload is not None else None}
        else:
            try:
                body = json.loads(req.get_data() or b"{}")
            except ValueError:
                body = {}
        call = {
            "method": req.method,
            "path": req.path,
            "query": dict(req.args),
            "json": body,
            "auth": req.headers.get("Authorization", ""),
        }
        with self._lock:
            self.calls.append(call)
            status, data, headers = self._route(req, call)
        return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")(
            environ, start_response
        )

    def _route(self, req, call) -> tuple[int, dict[str, Any], dict[str, str]]:
        path, body = req.path, call["json"]
        if path == "/open-apis/auth/v3/tenant_access_token/internal":
            if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
                return 200, {"code": 10014, "msg": "app secret invalid"}, {}
            token = f"t-{uuid.uuid4().hex}"
            self.valid_tokens.add(token)
            return 200, {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}, {}
        token = call["auth"].removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization."}, {}
        if path == "/open-apis/bot/v3/info":
            if self.down:
                return 500, {"code": 1, "msg": "internal error"}, {}
            bot = {"open_id": self.bot_open_id, "app_name": "工会小助手", "activate_status": 2}
            return 200, {"code": 0, "msg": "ok", "bot": bot}, {}
        if path == "/open-apis/im/v1/files":
            blob, name = body.get("file"), body.get("file_name")
            kinds = ("opus", "mp4", "pdf", "doc", "xls", "ppt", "stream")
            if body.get("file_type") not in kinds or not name or not blob or len(blob) > 30 * 1024 * 1024:
                return 400, {"code": 234001, "msg": "Invalid request param."}, {}
            key = f"file_v3_fake{next(self._ids):06d}"
            self.files[key] = (name, blob)
            return 200, {"code": 0, "msg": "success", "data": {"file_key": key}}, {}
        if not path.startswith("/open-apis/im/v1/messages"):
            return 404, {"code": 404, "msg": "not found"}, {}
        if self._rate_limits:
            reset, http429 = self._rate_limits.pop(0)
            headers = {"x-ogw-ratelimit-limit": "5", "x-ogw-ratelimit-reset": str(reset)}
            return (
                (429 if http429 else 400),
                {"code": 99991400, "msg": "request trigger frequency limit"},
                headers,
            )
        if path.endswith("/reply"):
            parent = path.split("/")[-2]
            receive_id, kind = f"reply:{parent}", "reply"
        else:
            receive_id, kind = body.get("receive_id", ""), req.args.get("receive_id_type", "")
            if not id_matches(kind, receive_id):
                return 400, {"code": 99992402, "msg": "field validation failed: receive_id"}, {}
            if receive_id in self.unreachable:
                code = 230002 if kind == "chat_id" else 230013
                return 400, {"code": code, "msg": "Bot can NOT be out of the chat / no availability"}, {}
        for name in ("msg_type", "content"):
            if not isinstance(body.get(name), str):
                return 400, {"code": 230001, "msg": f"invalid {name}"}, {}
        if body["msg_type"] == "file" and json.loads(body["content"]).get("file_key") not in self.files:
            return 400, {"code": 234003, "msg": "file_key not found"}, {}
        uid = body.get("uuid")
        if uid and uid in self._uuids:  # Feishu: at most one message per uuid within an hour
            return 200, {"code": 0, "msg": "success", "data": {"message_id": self._uuids[uid]}}, {}
        message_id = f"om_fake{next(self._ids):06d}"
        if uid:
            self._uuids[uid] = message_id
        self.delivered.append(
            {
                "message_id": message_id,
                "receive_id": receive_id,
                "receive_id_type": kind,
                "msg_type": body["msg_type"],
                "content": json.loads(body["content"]),
                "uuid": uid,
            }
        )
        return 200, {"code": 0, "msg": "success", "data": {"message_id": message_id}}, {}


ID_PREFIXES = {"open_id": "ou_", "union_id": "on_", "chat_id": "oc_"}


def id_matches(kind: str, receive_id: str) -> bool:
    """Like Feishu: an open_id, union_id or chat_id has its prefix; a user_id (the tenant's own id) has none."""
    if kind in ID_PREFIXES:
        return receive_id.startswith(ID_PREFIXES[kind])
    return kind == "user_id" and bool(receive_id) and not receive_id.startswith(tuple(ID_PREFIXES.values()))


def card_text(card: dict[str, Any]) -> str:
    parts = [card.get("header", {}).get("title", {}).get("content", "")]
    for el in card.get("body", {}).get("elements", []):
        if el.get("tag") == "div":
            parts.append(el["text"]["content"])
        elif el.get("tag") == "button":
            parts.append(f"[{el['text']['content']}]")
    return "\n".join(parts)


def card_buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [el for el in card.get("body", {}).get("elements", []) if el.get("tag") == "button"]


# --- building what Feishu sends us ------------------------------------------------------------------------------
def encrypt(key: str, plaintext: str, iv: bytes | None = None) -> str:
    """Feishu's scheme: base64(iv + AES-256-CBC(sha256(key), PKCS7(plaintext)))."""
    iv = iv or os.urandom(16)
    data = plaintext.encode("utf-8")
    pad = 16 - len(data) % 16
    cipher = AES.new(hashlib.sha256(key.encode("utf-8")).digest(), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(data + bytes([pad]) * pad)).decode()


def sign(ts: str, nonce: str, key: str, body: bytes) -> str:
    return hashlib.sha256((ts + nonce + key).encode("utf-8") + body).hexdigest()


def signed_request(
    payload: dict[str, Any], key: str = ENCRYPT_KEY, ts: float | None = None, nonce: str = "n1"
):
    """(body bytes, headers) as Feishu posts an event when an Encrypt Key is set."""
    body = json.dumps({"encrypt": encrypt(key, json.dumps(payload, ensure_ascii=False))}).encode()
    stamp = str(int(ts if ts is not None else time.time()))
    headers = {
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sign(stamp, nonce, key, body),
        "Content-Type": "application/json",
    }
    return body, headers


_events = itertools.count(1)


def envelope(event_type: str, event: dict[str, Any], token: str = VERIFICATION_TOKEN, event_id=None):
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or f"ev{next(_events):08d}{uuid.uuid4().hex[:8]}",
            "event_type": event_type,
            "create_time": str(int(time.time() * 1000)),
            "token": token,
            "app_id": APP_ID,
            "tenant_key": "2ca1d211f64f6438",
        },
        "event": event,
    }


def text_message(
    open_id: str,
    text: str,
    chat_type: str = "p2p",
    chat_id: str = "oc_p2pchat",
    mentions: list[dict[str, Any]] | None = None,
    message_id: str | None = None,
    sender_type: str = "user",
    message_type: str = "text",
    content: Any = None,
    **kw,
) -> dict[str, Any]:
    message = {
        "message_id": message_id or f"om_{uuid.uuid4().hex}",
        "create_time": str(int(time.time() * 1000)),
        "chat_id": chat_id,
        "chat_type": chat_type,
        "message_type": message_type,
        "content": content if content is not None else json.dumps({"text": text}, ensure_ascii=False),
    }
    if mentions:
        message["mentions"] = mentions
    sender = {
        "sender_id": {"open_id": open_id, "union_id": "on_x", "user_id": None},
        "sender_type": sender_type,
        "tenant_key": "2ca1d211f64f6438",
    }
    return envelope("im.message.receive_v1", {"sender": sender, "message": message}, **kw)


def mention(key: str, open_id: str, name: str) -> dict[str, Any]:
    return {"key": key, "id": {"open_id": open_id, "union_id": "on_y", "user_id": ""}, "name": name}


def card_click(open_id: str, value: Any, chat_id: str = "oc_p2pchat", message_id: str = "om_card", **kw):
    event = {
        "operator": {"tenant_key": "2ca1d211f64f6438", "open_id": open_id, "union_id": "on_z"},
        "token": "c-abc",
        "action": {"value": value, "tag": "button", "timezone": "Asia/Shanghai"},
        "host": "im_message",
        "context": {"open_message_id": message_id, "open_chat_id": chat_id},
    }
    return envelope("card.action.trigger", event, **kw)
