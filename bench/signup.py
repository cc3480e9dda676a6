"""Sign-up benchmark: N different members sign up for one activity as fast as they can.

Three ways in (prints sign-ups per second, p50 / p99 latency and the overbooking / duplicate counts, both must be 0):
- default: HTTP POST /sandbox/send, the stack the sandbox page uses: werkzeug (threaded) -> Flask -> sandbox adapter
  -> Bot.handle (dedupe, identity, router, handler, sign-up rules, replies into the outbox, one transaction) ->
  outbox delivery to the sandbox.
- --webhook: issue 5's benchmark, through the webhook stack. Each of N bound WeCom members POSTs a signed, AES-
  encrypted app callback (tests/wecom_helpers.py) to /wecom/callback; delivery workers (the `worker run` loop,
  --workers threads) push every reply through the real WeCom sender to a local fake WeCom API (tests/fake_wecom.py)
  while the load runs. Also prints the time to drain: from the first POST until every sign-up is committed AND
  every reply has been delivered to the fake server (and that no reply went out twice).
- --direct: Bot.handle in-process (no HTTP, replies left queued): the core alone.

    .venv/bin/python bench/signup.py                       # 1,000 members, 100 places, 16 threads, SQLite file
    .venv/bin/python bench/signup.py --webhook             # the same through signed WeCom callbacks + delivery
    .venv/bin/python bench/signup.py --webhook --db postgresql://postgres@127.0.0.1:5432/bench --threads 32
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from app import create_app  # noqa: E402
from bot import outbox  # noqa: E402
from bot.adapters import sandbox  # noqa: E402
from models import Base, Branch, Group, Member  # noqa: E402
from models.activity import Activity, Signup  # noqa: E402
from models.member import link_identity  # noqa: E402
from models.messaging import OutboxMessage  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--capacity", type=int, default=100)
    ap.add_argument("--threads", type=int, default=16)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--direct", action="store_true", help="call Bot.handle in-process instead of over HTTP")
    mode.add_argument(
        "--webhook", action="store_true", help="signed WeCom callbacks + delivery to a fake WeCom"
    )
    ap.add_argument("--workers", type=int, default=2, help="--webhook: outbox delivery threads")
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file in a temp dir)")
    args = ap.parse_args()

    fake = None
    overrides = {}
    if args.webhook:
        from tests.fake_wecom import FakeWeCom
        from tests.wecom_helpers import settings_for

        fake = FakeWeCom().start()
        overrides = settings_for(fake)
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    app = create_app(
        {"DATABASE_URL": url, "APP_ENV": "test", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING", **overrides}
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    db = app.extensions["db"]
    if db.engine.dialect.name == "postgresql":
        Base.metadata.drop_all(db.engine)
    db.create_all()

    now = datetime.now(UTC)
    with db.transaction() as s:
        b = Branch(name="内科分会")
        g = Group(name="心内科小组", branch=b)
        s.add_all(
            Member(name=f"会员{i:04d}", employee_no=f"B{i:05d}", branch=b, group=g)
            for i in range(args.members)
        )
        a = Activity(
            title="职工运动会",
            starts_at=now + timedelta(days=7),
            signup_deadline=now + timedelta(days=6),
            capacity=args.capacity,
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
        aid = a.id

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = threading.local()

    def post(no: str) -> tuple[float, int]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        body = json.dumps({"member": no, "text": f"报名 {aid}"})
        t0 = time.perf_counter()
        conn.request("POST", "/sandbox/send", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - t0, resp.status

    bot = app.extensions["bot"]

    def direct(no: str) -> tuple[float, int]:
        """--direct: Bot.handle in-process (no HTTP, no sandbox page bookkeeping, replies left queued)."""
        msg = sandbox.incoming(bot, user_id=f"sb-{no}", chat_id=None, text=f"报名 {aid}")
        t0 = time.perf_counter()
        result = bot.handle(msg)
        return time.perf_counter() - t0, 500 if result.failed else 200

    numbers = [f"B{i:05d}" for i in range(args.members)]
    if args.direct or args.webhook:
        platform, prefix = ("wecom", "wx-") if args.webhook else ("sandbox", "sb-")
        with db.transaction() as s:
            for m in s.scalars(select(Member)):
                link_identity(s, m, platform, f"{prefix}{m.employee_no}")
    if args.webhook:
        from tests.wecom_helpers import app_request, text_xml

        callbacks = {}
        for i, no in enumerate(numbers):  # signed and encrypted up front: the load is only the POSTs
            query, body = app_request(text_xml(f"wx-{no}", f"报名 {aid}", msg_id=str(30_000_000 + i)))
            callbacks[no] = (f"/wecom/callback?{query}", body.encode())

    def webhook(no: str) -> tuple[float, int]:
        """--webhook: one signed, encrypted WeCom app callback per member."""
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        path, body = callbacks[no]
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml"})
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - t0, resp.status

    stop = threading.Event()
    delivered: list[int] = []

    def deliver() -> None:
        """The delivery worker's loop (cli/worker.py): deliver what is due, nap briefly when nothing is."""
        while not stop.is_set():
            sent = outbox.deliver_due(bot)
            delivered.append(sent)
            if not sent:
                time.sleep(0.01)

    workers = [
        threading.Thread(target=deliver, daemon=True) for _ in range(args.workers if args.webhook else 0)
    ]
    started = time.perf_counter()
    for w in workers:
        w.start()
    with ThreadPoolExecutor(args.threads) as pool:
        results = list(pool.map(direct if args.direct else webhook if args.webhook else post, numbers))
    elapsed = time.perf_counter() - started
    drain = None
    if args.webhook:
        drain = wait_for_drain(db, fake, started, signed=sum(1 for r in results if r[1] == 200))
        stop.set()
        for w in workers:
            w.join()
    server.shutdown()

    lat = sorted(r[0] for r in results)
    errors = sum(1 for r in results if r[1] != 200)
    with db.Session() as s:
        rows = dict(
            s.execute(
                select(Signup.status, func.count()).where(Signup.activity_id == aid).group_by(Signup.status)
            ).all()
        )
        dupes = s.scalar(
            select(func.count()).select_from(
                select(Signup.member_id)
                .where(Signup.activity_id == aid, Signup.status != "cancelled")
                .group_by(Signup.member_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
        taken = s.get(Activity, aid).taken
    confirmed = rows.get("confirmed", 0)
    via = (
        "Bot.handle in-process"
        if args.direct
        else "signed, encrypted WeCom callbacks POST /wecom/callback (werkzeug, threaded)"
        if args.webhook
        else "HTTP POST /sandbox/send (werkzeug, threaded)"
    )
    print(f"database      {db.engine.dialect.name}   threads {args.threads}   via {via}")
    print(f"sign-ups      {len(results)} in {elapsed:.2f} s = {len(results) / elapsed:.1f} sign-ups/s")
    print(
        f"latency       p50 {statistics.median(lat) * 1000:.1f} ms   p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms"
        f"   max {lat[-1] * 1000:.1f} ms"
    )
    print(
        f"outcome       confirmed {confirmed}   waitlisted {rows.get('waitlisted', 0)}   HTTP errors {errors}"
    )
    print(
        f"overbooking   {max(confirmed - args.capacity, 0) + max(taken - args.capacity, 0)}   duplicates {dupes}"
    )
    if drain is not None:
        seconds, rows_sent, rows_total, sends, twice = drain
        print(
            f"drain         {seconds:.2f} s until every sign-up was committed and every reply delivered "
            f"({args.workers} delivery threads)"
        )
        print(
            f"replies       {rows_sent}/{rows_total} outbox rows sent, {sends} received by the fake WeCom, "
            f"sent twice {twice}"
        )
        fake.stop()
    db.dispose()
    tmp.cleanup()


def wait_for_drain(
    db, fake, started: float, signed: int, timeout: float = 600.0
) -> tuple[float, int, int, int, int]:
    """Poll until `signed` sign-ups are committed, the outbox holds nothing pending and the fake WeCom has
    received every reply row.

    Returns (seconds since `started`, rows sent, rows in the outbox, messages the fake received, replies the
    fake received more than once for the same message id)."""
    deadline = time.perf_counter() + timeout
    while True:
        with db.Session() as s:
            committed = s.scalar(select(func.count()).where(Signup.status != "cancelled"))
            counts = dict(
                s.execute(
                    select(OutboxMessage.status, func.count())
                    .where(OutboxMessage.platform == "wecom")
                    .group_by(OutboxMessage.status)
                ).all()
            )
        total, sent = sum(counts.values()), counts.get("sent", 0)
        received = fake.sent()
        done = (
            committed >= signed and total and sent + counts.get("dead", 0) == total and len(received) >= sent
        )
        if done or time.perf_counter() > deadline:
            seconds = time.perf_counter() - started
            break
        time.sleep(0.02)
    per_user: dict[str, int] = {}
    for body in received:
        per_user[body["touser"]] = per_user.get(body["touser"], 0) + 1
    twice = sum(n - 1 for n in per_user.values() if n > 1)
    return seconds, sent, total, len(received), twice


if __name__ == "__main__":
    main()
