"""Webhook benchmark: signed, encrypted platform deliveries through the real stack, next to a bare endpoint.

For each platform, N pre-built deliveries (distinct message ids, members already bound) are POSTed by T client
threads to the full app on a threaded werkzeug server (Flask -> adapter: size cap, safe XML, signature check,
AES decrypt -> Bot.handle: dedupe, identity, router, handler, replies into the outbox, one transaction), and
the same payloads to a bare Flask app that only verifies and decrypts. Prints messages per second and
p50 / p99 latency for both. One function per platform (`bench_wecom`, ...).

    .venv/bin/python bench/webhook.py                          # WeCom, 1,000 messages, 8 threads, SQLite file
    .venv/bin/python bench/webhook.py --messages 3000 --threads 16 --db postgresql://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import http.client
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response, request  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from app import create_app  # noqa: E402
from models import Base, Branch, Group, Member  # noqa: E402
from models.member import link_identity  # noqa: E402
from models.messaging import InboundMessage  # noqa: E402

Request = tuple[str, str, bytes, str]  # method, path?query, body, content type


# --- shared machinery ----------------------------------------------------------------------------------
class Server:
    def __init__(self, app: Flask):
        self.srv = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.srv.server_port
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def run_load(port: int, requests: list[Request], threads: int) -> dict[str, float]:
    """POST every request once from `threads` keep-alive connections; latency per request in ms."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    chunks = [requests[i::threads] for i in range(threads)]

    def worker(chunk: list[Request]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], []
        for method, path, body, ctype in chunk:
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                bad.append(resp.status)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, chunks))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "n": len(latencies),
        "errors": len(errors),
        "rate": len(latencies) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def report(platform: str, label: str, r: dict[str, float]) -> None:
    print(
        f"{platform:7} {label:28} {r['n']:6.0f} msgs  {r['rate']:8.1f} msg/s  "
        f"p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  non-200: {r['errors']:.0f}"
    )


def fresh_app(args, overrides: dict[str, str]):
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    app = create_app(
        {"DATABASE_URL": url, "APP_ENV": "test", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING", **overrides}
    )
    db = app.extensions["db"]
    if db.engine.dialect.name == "postgresql":
        Base.metadata.drop_all(db.engine)
    db.create_all()
    app.extensions["bench_tmp"] = tmp  # keep the directory alive with the app
    return app


def seed_members(app, platform: str, count: int, user_id: Callable[[int], str]) -> None:
    db = app.extensions["db"]
    with db.transaction() as s:
        b = Branch(name="内科分会")
        g = Group(name="心内科小组", branch=b)
        members = [
            Member(name=f"会员{i:04d}", employee_no=f"W{i:05d}", branch=b, group=g) for i in range(count)
        ]
        s.add_all(members)
        s.flush()
        for i, m in enumerate(members):
            link_identity(s, m, platform, user_id(i))


# --- WeCom ---------------------------------------------------------------------------------------------
def add_bare_wecom(bare: Flask, token: str, aes_key: str, corp_id: str) -> None:
    """/wecom/callback that only does what the adapter does first: safe XML, signature check, AES decrypt."""
    from wechatpy.enterprise.crypto import WeChatCrypto

    from bot.adapters.wecom import Rejected, decrypt, safe_xml

    crypto = WeChatCrypto(token, aes_key, corp_id)

    @bare.post("/wecom/callback")
    def verify_and_decrypt():
        try:
            outer = safe_xml(request.get_data())
            a = request.args
            plain = decrypt(crypto, outer.get("Encrypt", ""), a["msg_signature"], a["timestamp"], a["nonce"])
            safe_xml(plain)
        except Rejected as exc:
            return Response("", status=exc.status)
        return Response("")


def bench_wecom(args) -> None:
    from tests.wecom_helpers import AES_KEY, CORP_ID, SECRET, TOKEN, app_request, text_xml

    settings = {
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_TOKEN": TOKEN,
        "WECOM_AES_KEY": AES_KEY,
        "WECOM_AGENT_ID": "1000002",
        "WECOM_API_BASE": "http://127.0.0.1:9",  # never called: replies stay in the outbox
    }
    app = fresh_app(args, settings)
    members = min(args.messages, 500)
    seed_members(app, "wecom", members, lambda i: f"user{i}")
    texts = ["我的信息", "帮助", "谢谢"]
    payloads: list[Request] = []
    for i in range(args.messages):
        inner = text_xml(f"user{i % members}", texts[i % len(texts)], msg_id=f"{10_000_000 + i}")
        query, body = app_request(inner)
        payloads.append(("POST", f"/wecom/callback?{query}", body.encode(), "text/xml"))

    bare = Flask("bare")
    add_bare_wecom(bare, TOKEN, AES_KEY, CORP_ID)
    with Server(bare) as srv:
        report("wecom", "bare verify+decrypt", run_load(srv.port, payloads, args.threads))
    with Server(app) as srv:
        report("wecom", "full stack (handle+outbox)", run_load(srv.port, payloads, args.threads))
        dup = run_load(srv.port, payloads[: min(200, len(payloads))], args.threads)
        report("wecom", "retries (duplicates)", dup)
    db = app.extensions["db"]
    with db.Session() as s:
        n = s.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.platform == "wecom"))
    print(
        f"wecom   inbound rows recorded: {n} (expected {args.messages}); database: {db.engine.dialect.name}"
    )
    db.dispose()


PLATFORMS: dict[str, Callable] = {"wecom": bench_wecom}


def bench_feishu(args) -> None:  # Feishu part (issue 9): bench/webhook_feishu.py
    from bench.webhook_feishu import bench_feishu as run

    run(args)


PLATFORMS["feishu"] = bench_feishu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", choices=[*PLATFORMS, "all"], default="all")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file in a temp dir)")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(
        logging.WARNING
    )  # one access-log line per request would skew timings
    for name, func_ in PLATFORMS.items():
        if args.platform in (name, "all"):
            func_(args)


if __name__ == "__main__":
    main()
