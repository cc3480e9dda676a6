"""Webhook benchmark against gunicorn, the production web server (issue 10), with the peak memory of each process.

On loopback it starts the fake WeCom and Feishu API servers (so replies really leave), one delivery worker
(`flask --app app worker run`), and for each worker count N gunicorn twice with gunicorn.conf.py and `--workers N`:
once with a bare app that only verifies and decrypts (`bench.serve:bare_app()`), once with the full app
(`app:create_app()`). Signed, encrypted WeCom and Feishu text messages from bound members (报名 <id> on a seeded
activity with 100 places, 活动, 帮助) are POSTed by T keep-alive client threads. It prints, per platform: messages
per second and p50 / p99 latency of both servers and the full / bare ratio; then the peak RSS (VmHWM) of the web
workers and of the delivery worker, and how long the worker took to send every reply.

    .venv/bin/python bench/serve.py                                    # 2 workers, 1,000 messages per platform
    .venv/bin/python bench/serve.py --workers 1,2,4 --messages 2000 --threads 16
    .venv/bin/python bench/serve.py --db postgresql://postgres@127.0.0.1:5432/bench   # an empty database
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask, jsonify, request  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench import webhook as wh  # noqa: E402  (run_load, report, fresh_app, seed_members, add_bare_wecom)
from bench import webhook_feishu as wf  # noqa: E402  (run_load with per-request headers)

_ids = itertools.count(1)


def bare_app() -> Flask:
    """The bare server for gunicorn: the adapters' first step for both platforms (verify, decrypt), nothing more."""
    from bot.adapters.feishu import Rejected, verify_request
    from config import load_settings

    settings = load_settings()
    bare = Flask("bare")
    wh.add_bare_wecom(bare, settings.WECOM_TOKEN, settings.WECOM_AES_KEY, settings.WECOM_CORP_ID)

    @bare.post("/feishu/events")
    def feishu_verify_and_decrypt():
        try:
            verify_request(settings, request.headers, request.get_data(), time.time())
        except Rejected as exc:
            return jsonify(error=exc.reason), exc.status
        return jsonify({})

    @bare.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return bare


# --- processes -----------------------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Gunicorn:
    def __init__(self, target: str, workers: int, env: dict[str, str], log: Path):
        from tests.faults_helpers import free_port

        self.port = free_port()
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(workers), target]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.workers = workers

    def wait_ready(self) -> None:
        import requests

        from tests.faults_helpers import wait_for

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).ok
            except requests.RequestException:
                return False

        wait_for(up, 120, "gunicorn to answer /healthz", interval=0.2)
        wait_for(lambda: len(children(self.proc.pid)) >= self.workers, 60, "every web worker", interval=0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


# --- the union and the requests ------------------------------------------------------------------------------
def seed(app, members: int) -> int:
    """Members bound on both platforms, the Feishu bot's open_id, one open activity with 100 places; its id."""
    from models import Member
    from models.activity import Activity
    from models.feishu import put_state
    from models.member import link_identity
    from tests.fake_feishu import BOT_OPEN_ID

    bot = app.extensions["bot"]
    wh.seed_members(app, "wecom", members, lambda i: f"user{i}")
    now = bot.clock.now()
    with bot.db.transaction() as s:
        for i, m in enumerate(s.scalars(select(Member).order_by(Member.id))):
            link_identity(s, m, "feishu", f"ou_member{i:05d}")
        put_state(s, "bot_open_id", BOT_OPEN_ID, None, now)
        activity = Activity(title="职工羽毛球赛", place="职工活动中心", starts_at=now + timedelta(days=7),
                            signup_deadline=now + timedelta(days=6), capacity=100, taken=0, seq=0,
                            waitlist_enabled=True, companions_max=0, questions=[], audience_kind="all",
                            audience_ids=[], status="open")  # fmt: skip
        s.add(activity)
        s.flush()
        return activity.id


def texts(activity_id: int) -> list[str]:
    return [f"报名 {activity_id}", "活动", "帮助"]


def wecom_requests(n: int, members: int, activity_id: int) -> list[wh.Request]:
    from tests.wecom_helpers import app_request, text_xml

    out = []
    for i in range(n):
        inner = text_xml(f"user{i % members}", texts(activity_id)[i % 3], msg_id=str(10**9 + next(_ids)))
        query, body = app_request(inner)
        out.append(("POST", f"/wecom/callback?{query}", body.encode(), "text/xml"))
    return out


def feishu_requests(n: int, members: int, activity_id: int) -> list[wf.Request]:
    from tests.fake_feishu import signed_request, text_message

    out = []
    for i in range(n):
        ev = text_message(f"ou_member{i % members:05d}", texts(activity_id)[i % 3], message_id=f"om_b{next(_ids)}")
        body, headers = signed_request(ev)
        out.append(("/feishu/events", body, headers))
    return out


def run_platforms(port: int, label: str, args, members: int, activity_id: int) -> dict[str, dict[str, float]]:
    """Requests are signed just before they are sent (Feishu checks the timestamp's age)."""
    results = {}
    r = wh.run_load(port, wecom_requests(args.messages, members, activity_id), args.threads)
    wh.report("wecom", label, r)
    results["wecom"] = r
    r = wf.run_load(port, feishu_requests(args.messages, members, activity_id), args.threads)
    wh.report("feishu", label, r)
    results["feishu"] = r
    return results


def outbox_waiting(db) -> int:
    from models.messaging import OutboxMessage

    with db.Session() as s:
        return s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending")))
        )


# --- the benchmark -------------------------------------------------------------------------------------------
def main() -> None:
    from tests import fake_feishu as ff
    from tests import wecom_helpers as wch
    from tests.fake_wecom import FakeWeCom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="2", help="gunicorn web workers; several as 1,2,4")
    ap.add_argument("--messages", type=int, default=1000, help="messages per platform and server")
    ap.add_argument("--threads", type=int, default=16, help="client threads (keep-alive connections)")
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file in a temp dir)")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fakes' access lines

    wecom, feishu = FakeWeCom().start(), ff.FakeFeishu().start()
    settings = {**wch.settings_for(wecom), "FEISHU_APP_ID": ff.APP_ID, "FEISHU_APP_SECRET": ff.APP_SECRET,
                "FEISHU_VERIFICATION_TOKEN": ff.VERIFICATION_TOKEN, "FEISHU_ENCRYPT_KEY": ff.ENCRYPT_KEY,
                "FEISHU_API_BASE": feishu.url}  # fmt: skip
    app = wh.fresh_app(args, settings)
    db = app.extensions["db"]
    members = min(args.messages, 500)
    activity_id = seed(app, members)
    tmp = Path(tempfile.mkdtemp(prefix="ub-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "FEISHU_"))}
    env.update(settings, DATABASE_URL=db.url, APP_ENV="test", SECRET_KEY="bench", LOG_LEVEL="WARNING",
               PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"))  # fmt: skip
    (tmp / "metrics").mkdir()
    log = tmp / "processes.log"
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker", "run"], cwd=ROOT, env=env,
                              stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    print(f"database: {db.engine.dialect.name}; {args.messages} messages per platform and server; "
          f"{args.threads} client threads; web workers × {os.environ.get('WEB_THREADS', 4)} threads; "
          f"logs in {log}")  # fmt: skip
    web_peaks: list[float] = []
    last_webhook = time.monotonic()
    try:
        for n in (int(w) for w in args.workers.split(",")):
            print(f"--- gunicorn --workers {n}")
            results = {}
            for label, target in (("bare verify+decrypt", "bench.serve:bare_app()"),
                                  ("full stack (handle+outbox)", "app:create_app()")):  # fmt: skip
                server = Gunicorn(target, n, env, log)
                try:
                    server.wait_ready()
                    results[label] = run_platforms(server.port, label, args, members, activity_id)
                    if target.startswith("app:"):
                        web_peaks += [peak_rss_mb(pid) for pid in children(server.proc.pid)]
                        last_webhook = time.monotonic()
                finally:
                    server.stop()
            for platform in ("wecom", "feishu"):
                full, bare = results["full stack (handle+outbox)"][platform], results["bare verify+decrypt"][platform]
                print(f"{platform:7} full / bare: {full['rate'] / bare['rate']:.2f} of the bare rate, "
                      f"p50 {full['p50'] / bare['p50']:.1f}× the bare latency")  # fmt: skip
        deadline = time.monotonic() + 600
        while outbox_waiting(db) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        drained = time.monotonic() - last_webhook
        left = outbox_waiting(db)
        print(f"peak RSS: web worker {max(web_peaks):.1f} MB (max of {len(web_peaks)}), "
              f"delivery worker {peak_rss_mb(worker.pid):.1f} MB")  # fmt: skip
        sent = len(wecom.sent()) + len(feishu.delivered)
        print(f"delivery worker: {sent} messages sent to the fake platforms; "
              + (f"outbox empty {drained:.1f} s after the last webhook" if not left else f"{left} still waiting"))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        wecom.stop()
        feishu.stop()
        db.dispose()


if __name__ == "__main__":
    main()
