"""Feishu part of the webhook benchmark (`bench/webhook.py --platform feishu`, or run this file directly).

N pre-built events (distinct message ids, members already bound; encrypted with the Encrypt Key and signed with
X-Lark-Signature exactly as Feishu sends them) are POSTed by T client threads to the full app on a threaded
werkzeug server (adapter: signature, timestamp window, AES decrypt, token -> dispatch_event -> Bot.handle: dedupe,
identity, router, handler, replies into the outbox, one transaction), and the same requests to a bare Flask app
that only verifies and decrypts (`verify_request`). A tenth of the events are group messages that @ the bot.

    .venv/bin/python bench/webhook_feishu.py --messages 1000 --threads 8
    .venv/bin/python bench/webhook.py --platform feishu --messages 1000 --threads 8
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Request = tuple[str, bytes, dict[str, str]]  # path, body, headers


def run_load(port: int, requests: list[Request], threads: int) -> dict[str, float]:
    """Like bench/webhook.py's run_load, with per-request headers (Feishu signs in headers)."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    chunks = [requests[i::threads] for i in range(threads)]

    def worker(chunk: list[Request]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], []
        for path, body, headers in chunk:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
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


def bench_feishu(args) -> None:
    from flask import Flask, jsonify, request
    from sqlalchemy import func, select

    from bench import webhook as wh  # shared machinery: Server, report, fresh_app, seed_members
    from bot.adapters.feishu import Rejected, verify_request
    from models.feishu import put_state
    from models.messaging import InboundMessage
    from tests.fake_feishu import (
        APP_ID,
        APP_SECRET,
        BOT_OPEN_ID,
        ENCRYPT_KEY,
        VERIFICATION_TOKEN,
        mention,
        signed_request,
        text_message,
    )

    settings = {
        "FEISHU_APP_ID": APP_ID,
        "FEISHU_APP_SECRET": APP_SECRET,
        "FEISHU_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
        "FEISHU_ENCRYPT_KEY": ENCRYPT_KEY,
        "FEISHU_API_BASE": "http://127.0.0.1:9",  # never called: bot open_id primed, replies stay in the outbox
    }
    app = wh.fresh_app(args, settings)
    bot = app.extensions["bot"]
    with bot.db.transaction() as s:
        put_state(s, "bot_open_id", BOT_OPEN_ID, None, bot.clock.now())
    members = min(args.messages, 500)
    wh.seed_members(app, "feishu", members, lambda i: f"ou_member{i:05d}")
    texts = ["我的信息", "帮助", "谢谢"]
    at_bot = [mention("@_user_1", BOT_OPEN_ID, "工会小助手")]
    payloads: list[Request] = []
    for i in range(args.messages):
        user, text = f"ou_member{i % members:05d}", texts[i % len(texts)]
        if i % 10 == 9:
            ev = text_message(
                user, f"@_user_1 {text}", chat_type="group", chat_id="oc_bench", mentions=at_bot
            )
        else:
            ev = text_message(user, text)
        body, headers = signed_request(ev)
        payloads.append(("/feishu/events", body, headers))

    bare = Flask("bare")

    @bare.post("/feishu/events")
    def verify_and_decrypt():
        try:
            verify_request(bot.settings, request.headers, request.get_data(), time.time())
        except Rejected as exc:
            return jsonify(error=exc.reason), exc.status
        return jsonify({})

    with wh.Server(bare) as srv:
        wh.report("feishu", "bare verify+decrypt", run_load(srv.port, payloads, args.threads))
    with wh.Server(app) as srv:
        wh.report("feishu", "full stack (handle+outbox)", run_load(srv.port, payloads, args.threads))
        dup = run_load(srv.port, payloads[: min(200, len(payloads))], args.threads)
        wh.report("feishu", "retries (duplicates)", dup)
    db = app.extensions["db"]
    with db.Session() as s:
        n = s.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.platform == "feishu"))
    print(
        f"feishu  inbound rows recorded: {n} (expected {args.messages}); database: {db.engine.dialect.name}"
    )
    db.dispose()


def main() -> None:
    import logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file in a temp dir)")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    bench_feishu(args)


if __name__ == "__main__":
    main()
