"""A local fake of the WeCom API (qyapi) for tests: werkzeug on 127.0.0.1:<free port> in a thread.

It hands out tokens, checks them, records every call (`calls`, `sent(path)`), and can be scripted:
`fail_next(path, errcode, **extra)` answers the next call on `path` with that error (e.g. 45009, 60020),
`expire_tokens(code)` makes every token handed out so far answer `code` (42001 or 40014),
`fail_next_of(msgtype, errcode)` only the next message/send of that msgtype,
`fail_http_next(path, status)` answers the next call on `path` with a bare HTTP error (e.g. 502),
`invalid_users` answers 81013 + invaliduser for those userids, response_url codes work once,
`appchats` holds the groups created through `appchat/create` (chatid -> chat_info) for `appchat/get`.
`media/upload?type=file` takes a multipart "media" part (≤ 20 MB) and answers a media_id; `uploads` keeps
(filename, bytes) per media_id, and `files_to(user)` gives the files message/send delivered (msgtype "file").
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict, deque
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class FakeWeCom:
    def __init__(self, corp_id: str = "wwcorp", secret: str = "app-secret"):
        self.corp_id = corp_id
        self.secret = secret
        self.calls: list[dict[str, Any]] = []
        self.valid_tokens: set[str] = set()
        self.expired: dict[str, int] = {}
        self.invalid_users: set[str] = set()
        self.used_response_codes: set[str] = set()
        self.appchats: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, tuple[str, bytes]] = {}
        self.scripted: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.http_errors: dict[str, deque[int]] = defaultdict(deque)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    # control ---------------------------------------------------------------------------------------------
    def start(self) -> FakeWeCom:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, path: str, errcode: int, errmsg: str = "scripted", **extra: Any) -> None:
        self.scripted[path].append({"errcode": errcode, "errmsg": errmsg, **extra})

    def fail_next_of(self, msgtype: str, errcode: int, errmsg: str = "scripted") -> None:
        """Answer the next message/send of this msgtype ("text", "template_card") with `errcode`."""
        self.scripted[f"message/send:{msgtype}"].append({"errcode": errcode, "errmsg": errmsg})

    def fail_http_next(self, path: str, status: int) -> None:
        self.http_errors[path].append(status)

    def expire_tokens(self, code: int = 42001) -> None:
        with self._lock:
            for t in self.valid_tokens:
                self.expired[t] = code
            self.valid_tokens.clear()

    def sent(self, path: str = "/cgi-bin/message/send") -> list[dict[str, Any]]:
        """Bodies of successful calls on `path`."""
        return [c["json"] for c in self.calls if c["path"] == path and c["ok"]]

    def count(self, path: str) -> int:
        return sum(1 for c in self.calls if c["path"] == path)

    def files_to(self, user: str) -> list[tuple[str, bytes]]:
        """(filename, bytes) of every file message/send delivered to this user."""
        return [
            self.uploads[b["file"]["media_id"]]
            for b in self.sent()
            if b.get("msgtype") == "file" and user in str(b.get("touser", "")).split("|")
        ]

    def webhook_url(self, key: str = "hook") -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={key}"

    def response_url(self, code: str) -> str:
        return f"{self.base}/cgi-bin/aibot/response?response_code={code}"

    # server ----------------------------------------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        req = Request(environ)
        if req.mimetype == "multipart/form-data":  # media/upload
            media = req.files.get("media")
            data = {"media": (media.filename, media.read())} if media is not None else {}
        else:
            body = req.get_data()
            data = json.loads(body) if body else None
        with self._lock:
            status = self.http_errors[req.path].popleft() if self.http_errors[req.path] else None
        if status is not None:
            with self._lock:
                self.calls.append({"path": req.path, "args": dict(req.args), "json": data, "ok": False})
            return Response("bad gateway", status=status)(environ, start_response)
        answer = self._answer(req.path, dict(req.args), data)
        with self._lock:
            self.calls.append(
                {"path": req.path, "args": dict(req.args), "json": data, "ok": answer.get("errcode", 0) == 0}
            )
        resp = Response(json.dumps(answer, ensure_ascii=False), mimetype="application/json")
        return resp(environ, start_response)

    def _answer(self, path: str, args: dict[str, str], data: Any) -> dict[str, Any]:
        with self._lock:
            if path == "/cgi-bin/gettoken":
                if self.scripted[path]:
                    return self.scripted[path].popleft()
                if args.get("corpid") != self.corp_id or args.get("corpsecret") != self.secret:
                    return {"errcode": 40001, "errmsg": "invalid credential"}
                token = f"tok-{next(self._counter)}"
                self.valid_tokens.add(token)
                return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
            if path == "/cgi-bin/webhook/send":
                if self.scripted[path]:
                    return self.scripted[path].popleft()
                return {"errcode": 0, "errmsg": "ok"}
            if path == "/cgi-bin/aibot/response":
                code = args.get("response_code", "")
                if self.scripted[path]:
                    return self.scripted[path].popleft()
                if code in self.used_response_codes:
                    return {"errcode": 40029, "errmsg": "response_code already used"}
                self.used_response_codes.add(code)
                return {"errcode": 0, "errmsg": "ok"}
            token = args.get("access_token", "")
            if token in self.expired:
                return {"errcode": self.expired[token], "errmsg": "access_token expired"}
            if token not in self.valid_tokens:
                return {"errcode": 40014, "errmsg": "invalid access_token"}
            if self.scripted[path]:
                return self.scripted[path].popleft()
            if path == "/cgi-bin/media/upload":
                if args.get("type") != "file" or "media" not in data:
                    return {"errcode": 40004, "errmsg": "invalid media type"}
                name, blob = data["media"]
                if not name or not 5 < len(blob) <= 20 * 1024 * 1024:
                    return {"errcode": 40006, "errmsg": "invalid media size"}
                media_id = f"media{next(self._counter)}"
                self.uploads[media_id] = (name, blob)
                return {"errcode": 0, "errmsg": "", "type": "file", "media_id": media_id, "created_at": "1"}
            if path == "/cgi-bin/message/send":
                if data.get("msgtype") == "file" and data.get("file", {}).get("media_id") not in self.uploads:
                    return {"errcode": 40007, "errmsg": "invalid media_id"}
                if self.scripted[f"message/send:{data.get('msgtype')}"]:
                    return self.scripted[f"message/send:{data.get('msgtype')}"].popleft()
                users = set(str(data.get("touser", "")).split("|"))
                bad = users & self.invalid_users
                if bad and bad == users:
                    return {
                        "errcode": 81013,
                        "errmsg": "user & party & tag all invalid",
                        "invaliduser": "|".join(bad),
                    }
                return {
                    "errcode": 0,
                    "errmsg": "ok",
                    "invaliduser": "|".join(bad),
                    "msgid": f"m{next(self._counter)}",
                    "response_code": f"rc{next(self._counter)}",
                }
            if path == "/cgi-bin/agent/get":
                return {
                    "errcode": 0,
                    "errmsg": "ok",
                    "agentid": int(args.get("agentid", 0)),
                    "name": "工会小助手",
                }
            if path == "/cgi-bin/appchat/create":
                users = data.get("userlist") or []
                if not 2 <= len(users) <= 2000:
                    return {"errcode": 40050, "errmsg": "chat member count must be 2-2000"}
                chatid = data.get("chatid") or f"wrAPP{next(self._counter)}"
                if chatid in self.appchats:
                    return {"errcode": 86215, "errmsg": "chatid already exists"}
                owner = data.get("owner") or users[0]
                self.appchats[chatid] = {
                    "chatid": chatid,
                    "name": data.get("name", ""),
                    "owner": owner,
                    "userlist": users,
                }
                return {"errcode": 0, "errmsg": "ok", "chatid": chatid}
            if path == "/cgi-bin/appchat/get":
                info = self.appchats.get(args.get("chatid", ""))
                if info is None:
                    return {"errcode": 86003, "errmsg": "chat not found"}
                return {"errcode": 0, "errmsg": "ok", "chat_info": {**info, "chat_type": 0}}
            if path in (
                "/cgi-bin/appchat/send",
                "/cgi-bin/menu/create",
                "/cgi-bin/message/update_template_card",
            ):
                return {"errcode": 0, "errmsg": "ok"}
            return {"errcode": 404, "errmsg": f"fake has no {path}"}
