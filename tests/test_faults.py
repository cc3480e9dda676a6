"""Fault tests (issue 10): killed workers, a misbehaving platform, a database restart, two schedulers at once, a
killed scheduler replaced by its standby.

Everything runs on 127.0.0.1: fake WeCom / Feishu servers from tests/, real subprocesses for the delivery worker
and the scheduler, and (for the restart) a throwaway PostgreSQL cluster of the test's own — never the shared
server. Waiting is polling with a deadline, never a fixed sleep.

SLOW parts (subprocesses, a 10,000-row fan-out): `test_kill_9_*` (Feishu and WeCom, on each database; ≈15-25 s
each at the default 500 rows, more on a busy machine) and `test_database_restart_*` (initdb + three server starts,
≈10 s). FAULTS_FANOUT=10000 runs the issue's full size (README, Performance: passed, 8-10 minutes per platform on
a busy 2-core machine); it is not the CI default because a worker delivers some 60 messages a second there (a few
short transactions and an HTTP call per message), so 10,000 take minutes.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from bot import outbox
from models import Member
from models.member import link_identity
from models.messaging import InboundMessage, OutboxMessage
from tests import fake_feishu as ff
from tests import wecom_helpers as wh
from tests.conftest import POSTGRES_URL, add_member, make_app
from tests.faults_helpers import (
    ROOT,
    FlakyWeCom,
    HoldingFeishu,
    HoldingWeCom,
    PrivateCluster,
    flask_cmd,
    private_cluster_unavailable,
    start_worker,
    stop,
    subprocess_env,
    wait_for,
)

FANOUT = int(os.environ.get("FAULTS_FANOUT", "500"))
LEASE_SECONDS = 4.0  # the outbox lease of the test workers (production: 2 minutes)


@pytest.fixture(autouse=True)
def _quiet_fakes():
    """The fakes run werkzeug in-process: one access-log line per call would drown the output."""
    logger = logging.getLogger("werkzeug")
    logger.setLevel(logging.ERROR)  # left so: a hung fake thread may log after the test


def status_counts(db) -> dict[str, int]:
    with db.Session() as s:
        return dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())


def seed_fanout(db, n: int, platform: str = "feishu") -> list[str]:
    """A festival-like fan-out: one private text per member, each with its own idempotency key; the recipients."""
    now = datetime.now(UTC)
    targets = [f"ou_fan{i:06d}" if platform == "feishu" else f"fan{i:06d}" for i in range(n)]
    rows = [
        dict(
            idempotency_key=f"festival:fault:{i}",
            platform=platform,
            target_kind="user",
            target_id=target,
            payload={"type": "text", "text": f"会员{i:06d}，节日快乐！"},
            context={},
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for i, target in enumerate(targets)
    ]
    with db.transaction() as s:
        for start in range(0, n, 5000):
            s.execute(insert(OutboxMessage), rows[start : start + 5000])
    return targets


def fake_platform(platform: str, hold_at: int):
    """The fake server that keeps its answers back after `hold_at` messages, and the settings pointing at it."""
    if platform == "feishu":
        fake = HoldingFeishu(hold_at=hold_at).start()
        return fake, {"FEISHU_APP_ID": ff.APP_ID, "FEISHU_APP_SECRET": ff.APP_SECRET, "FEISHU_API_BASE": fake.url}
    fake = HoldingWeCom(hold_at=hold_at).start()
    return fake, wh.settings_for(fake)


def delivered(fake) -> list[str]:
    """Recipients of the messages the platform really showed (Feishu drops a repeated uuid, WeCom cannot)."""
    if isinstance(fake, HoldingFeishu):
        return [m["receive_id"] for m in fake.delivered]
    return fake.delivered()


# --- 1. kill -9 a delivery worker in the middle of a fan-out ------------------------------------------------
@pytest.mark.parametrize("platform", ["feishu", "wecom"])
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_worker_mid_fanout_every_message_delivered(database, platform, tmp_path):
    """SLOW. Real worker processes (`flask --app app worker run`) against the fake platform server.

    The fake keeps its answers back once it has delivered a third of the fan-out, so every killed worker is
    caught between "the platform accepted the message" and "the outbox row is marked sent" — the at-least-once
    window. After SIGKILL and a restart the lease expires and those rows are sent again.
    Feishu: the repeat carries the same `uuid`, and Feishu (the fake, like the real one: same uuid within an hour =
    one message) shows nothing new: every message exactly once.
    WeCom has no idempotency key: the repeat is a second message. So: every message at least once, and the only
    duplicates are the calls held in flight when the workers died — at most one per killed worker.
    SQLite: one worker; PostgreSQL: two at once, before and after (rows claimed with SKIP LOCKED).
    """
    if database == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    url = POSTGRES_URL if database == "postgres" else f"sqlite:///{tmp_path / 'fault.db'}"
    workers = 2 if database == "postgres" else 1
    fake, settings = fake_platform(platform, hold_at=FANOUT // 3)
    app = make_app(url, **settings)
    db = app.extensions["db"]
    procs: list[subprocess.Popen] = []
    try:
        targets = seed_fanout(db, FANOUT, platform)
        env = subprocess_env(
            DATABASE_URL=url,
            FAULTS_LEASE_SECONDS=str(LEASE_SECONDS),
            FAULTS_FEISHU_UNLIMITED="1",
            **settings,
        )
        log = tmp_path / "worker.log"
        procs = [start_worker(env, log) for _ in range(workers)]
        held = fake.holding.wait(timeout=max(120, FANOUT / 15))
        assert held, f"workers did not reach a third of the fan-out; log:\n{log.read_text()[-2000:]}"
        time.sleep(0.2)  # let every worker reach its held call (they are blocked on it, not working)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)
        fake.release()
        before = len(delivered(fake))
        stuck = status_counts(db).get("sending", 0)
        assert 0 < before < FANOUT and stuck >= 1  # killed mid-way, with rows leased to a dead worker

        fake.hold_at = None
        procs = [start_worker(env, log) for _ in range(workers)]
        wait_for(
            lambda: status_counts(db).get("sent", 0) == FANOUT,
            timeout=max(120, FANOUT / 15),
            what=f"{FANOUT} rows sent (now {status_counts(db)})",
            interval=0.25,
        )
    finally:
        fake.release()
        for p in procs:
            stop(p)
        fake.stop()

    got = Counter(delivered(fake))
    assert set(got) == set(targets)  # nothing lost
    assert status_counts(db) == {"sent": FANOUT}
    if platform == "feishu":
        uuids = [m["uuid"] for m in fake.delivered]
        assert len(fake.delivered) == FANOUT and len(set(uuids)) == FANOUT  # nothing twice ...
        assert fake.duplicate_uuids() >= 1  # ... though the held sends were really sent again (same uuid)
    else:
        twice = {user: n for user, n in got.items() if n > 1}
        assert set(twice.values()) == {2} and 1 <= len(twice) <= workers  # at most one duplicate per kill ...
        assert set(twice) <= set(fake.held)  # ... and only the message that was in flight at the kill
    db.dispose()


def test_a_batch_that_outlasts_its_lease_never_sends_a_row_another_worker_took_over(bot):
    """Fast companion of the kill test: worker A leases a batch of three; its first send hangs until the lease has
    run out, and worker B takes all three over and sends them (the hung one again: at-least-once, unavoidable).
    A must then skip the two rows it has not sent yet, not send them a second time."""
    sends: list[int] = []

    class SlowThenNormal:
        def send(self, row):
            sends.append(row.id)
            if len(sends) == 1:  # A's first send hangs past the lease; meanwhile B runs
                bot.clock.offset += outbox.LEASE + timedelta(seconds=1)
                assert outbox.deliver_due(bot) == 3  # B
            return outbox.SendResult(True)

    bot.senders["wecom"] = SlowThenNormal()
    with bot.db.transaction() as s:
        for i in range(3):
            outbox.enqueue(s, platform="wecom", target_kind="user", target_id=f"u{i}", key=f"slow:{i}",
                           message={"type": "text", "text": "通知"}, now=bot.clock.now())  # fmt: skip
    assert outbox.deliver_due(bot) == 1  # A: only the row it was already sending
    first, *others = sends
    assert others == [first, *sorted(set(others) - {first})] and len(others) == 3  # B's three, then nothing
    assert status_counts(bot.db) == {"sent": 3}


# --- 2. the platform misbehaves: 5xx, timeouts, rate limits, expired tokens -----------------------------------
PASSWORD = "correct horse 42"


def add_staff(bot, username="clerk1", role="clerk") -> None:
    from models import StaffAccount

    with bot.db.transaction() as s:
        acc = StaffAccount(username=username, display_name="值班干事", role=role, active=True)
        acc.set_password(PASSWORD)
        s.add(acc)


def console_login(client, username="clerk1") -> None:
    html = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    resp = client.post("/admin/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]


def test_platform_errors_retried_with_backoff_token_refreshed_dead_letters_in_console(tmp_path):
    """WeCom answers a timeout, 502, 503, 45009 (rate limit), then refuses the token (42001); one member always
    gets HTTP 500 and one has left the company (81013). Every deliverable message arrives exactly once, the
    backoff and the rate-limit wait are the documented ones, the token is fetched again once, and the two dead
    letters are on the console's dashboard with their reasons."""
    fake = FlakyWeCom().start()
    app = make_app(f"sqlite:///{tmp_path / 'flaky.db'}", **wh.settings_for(fake), OUTBOX_MAX_ATTEMPTS=3)
    bot = app.extensions["bot"]
    sender = bot.senders["wecom"]
    sender.client.timeout = 1.5  # production: 10 s; the fake hangs 4 s (a busy machine answers in < 1.5 s)
    try:
        users = [f"u{i}" for i in range(1, 8)]
        members = [add_member(bot, name=f"会员{i}") for i in range(1, 8)]
        with bot.db.transaction() as s:
            for i, (user, m) in enumerate(zip(users, members, strict=True), 1):
                link_identity(s, s.get(Member, m.id), "wecom", user)
                outbox.enqueue(s, platform="wecom", target_kind="user", target_id=user, member_id=m.id,
                               message={"type": "text", "text": f"通知{i}"}, key=f"notice:{i}",
                               now=bot.clock.now())  # fmt: skip
        send = "/cgi-bin/message/send"
        fake.hang(send, 4.0)  # u1: no answer in time
        fake.http_error(send, 502)  # u2
        fake.http_error(send, 503)  # u3
        fake.fail_next(send, 45009, "api freq out of limit")  # u4
        fake.always_500 = {"u5"}
        fake.invalid_users = {"u6"}

        now = bot.clock.now()
        assert outbox.deliver_due(bot) == 1  # only u7 got through
        after = bot.clock.now()
        with bot.db.Session() as s:
            rows = {r.target_id: r for r in s.scalars(select(OutboxMessage))}
        assert [rows[u].status for u in users] == ["pending"] * 5 + ["dead", "sent"]
        assert "Timeout" in rows["u1"].last_error
        assert "502" in rows["u2"].last_error and "503" in rows["u3"].last_error
        assert "45009" in rows["u4"].last_error and "500" in rows["u5"].last_error
        for u, wait in [("u1", 10), ("u2", 10), ("u3", 10), ("u5", 10), ("u4", 60)]:  # backoff; rate-limit wait
            assert now + timedelta(seconds=wait) <= rows[u].next_attempt_at <= after + timedelta(seconds=wait)
        assert "access_token" not in rows["u2"].last_error or "access_token=***" in rows["u2"].last_error

        bot.clock.offset += timedelta(seconds=30)
        assert outbox.deliver_due(bot) == 3  # u1-u3 again; u4 waits for its minute, u5 fails a second time
        fake.expire_tokens(42001)  # WeCom drops the token (e.g. the secret was reset)
        bot.clock.offset += timedelta(seconds=40)
        assert outbox.deliver_due(bot) == 1  # u4, after one token refresh; u5's third failure: dead
        assert fake.count("/cgi-bin/gettoken") == 2
        assert status_counts(bot.db) == {"sent": 5, "dead": 2}
        delivered = [b["touser"] for b in fake.sent(send)]
        assert sorted(delivered) == ["u1", "u2", "u3", "u4", "u7"]  # each once, nothing lost

        client = app.test_client()
        add_staff(bot)
        console_login(client)
        html = client.get("/admin/").get_data(as_text=True)
        assert "会员5" in html and "会员6" in html
        assert "invaliduser" in html  # the reason for u6 (left the company)
        assert "500 Server Error" in html  # the reason for u5, after 3 attempts
        assert "access_token=" not in html or "access_token=***" in html
    finally:
        fake.stop()
        bot.db.dispose()


# --- 3. the database restarts during traffic ------------------------------------------------------------------
@pytest.fixture
def cluster():
    why = private_cluster_unavailable()
    if why:
        pytest.skip(f"database restart test needs a private PostgreSQL cluster: {why}")
    c = PrivateCluster()
    c.start()
    yield c
    c.destroy()


class Web:
    """The app on a threaded werkzeug server on a free loopback port (what the platform talks to)."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.srv = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.srv.server_port}"
        threading.Thread(target=self.srv.serve_forever, args=(0.01,), daemon=True).start()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
        import requests

        t0 = time.monotonic()
        resp = requests.post(self.base + path, data=body, headers=headers, timeout=15)
        return resp.status_code, time.monotonic() - t0

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def test_database_restart_webhooks_answer_5xx_then_recover_without_restart(cluster, tmp_path):
    """SLOW (initdb + restarts). A private PostgreSQL cluster is stopped during traffic: signed Feishu events get a
    5xx at once (not a hang, not a 200 that would lose them), /healthz says 503; once it is back the very same
    deliveries (the platform's retries) succeed on the same web process, the event is processed once, its reply
    is delivered once, and the delivery worker process has survived the outage."""
    fake = HoldingFeishu().start()
    settings = {
        "FEISHU_APP_ID": ff.APP_ID,
        "FEISHU_APP_SECRET": ff.APP_SECRET,
        "FEISHU_VERIFICATION_TOKEN": ff.VERIFICATION_TOKEN,
        "FEISHU_ENCRYPT_KEY": ff.ENCRYPT_KEY,
        "FEISHU_API_BASE": fake.url,
    }
    app = make_app(cluster.url, **settings)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer 500 like production, not raise into the server
    bot = app.extensions["bot"]
    m = add_member(bot, name="王芳")
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "feishu", "ou_wangfang")
    web = Web(app)
    worker = start_worker(
        subprocess_env(DATABASE_URL=cluster.url, FAULTS_LEASE_SECONDS=str(LEASE_SECONDS), **settings),
        tmp_path / "worker.log",
    )
    try:
        first = ff.signed_request(ff.text_message("ou_wangfang", "帮助"))
        assert web.post("/feishu/events", *first)[0] == 200
        wait_for(lambda: len(fake.delivered) == 1, 30, "the first reply")

        cluster.stop()
        event = ff.text_message("ou_wangfang", "我的信息")
        retry = ff.signed_request(event)
        for _ in range(2):  # the platform's first delivery and its retry while the database is down
            status, took = web.post("/feishu/events", *retry)
            assert 500 <= status < 600 and took < 10
        health = __import__("requests").get(web.base + "/healthz", timeout=10)
        assert health.status_code == 503
        time.sleep(0.5)  # the worker meets the outage too (it polls every 50 ms)

        cluster.start()
        for _ in range(2):  # the platform retries again: processed once, acknowledged twice
            assert web.post("/feishu/events", *retry)[0] == 200
        with bot.db.Session() as s:
            n = s.scalar(
                select(func.count())
                .select_from(InboundMessage)
                .where(InboundMessage.dedupe_key == event["event"]["message"]["message_id"])
            )
        assert n == 1
        wait_for(lambda: len(fake.delivered) == 2, 30, "the reply to the retried event")
        time.sleep(0.3)
        assert len(fake.delivered) == 2  # once
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert __import__("requests").get(web.base + "/healthz", timeout=10).status_code == 200
    finally:
        stop(worker)
        web.stop()
        fake.stop()
        bot.db.dispose()


def birthdays_today(bot, n: int) -> None:
    """`n` members with a sandbox account whose birthday is today, and the greeting window open now."""
    from models.greeting import GreetingConfig

    local = bot.clock.local_now()
    if local.strftime("%H:%M") >= "23:58" or (local.month, local.day) == (2, 29):
        pytest.skip("too close to midnight (or 29 Feb) for a same-day greeting window")
    born = [add_member(bot, name=f"寿星{i}", birthday=date(1980 + i, local.month, local.day)) for i in range(n)]
    with bot.db.transaction() as s:
        s.add(GreetingConfig(id=1, send_time="00:00", catchup_until="23:59"))
        for m in born:
            link_identity(s, s.get(Member, m.id), "sandbox", f"sb-{m.id}")


# --- 4. two scheduler processes started at once ----------------------------------------------------------------
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_scheduler_processes_started_at_once_run_each_job_once(database, tmp_path):
    """Two real `flask --app app schedule run` processes on one database (fresh: the built-in festivals are
    seeded by whichever starts first). One takes the lease and runs the start-up catch-up; the other skips;
    today's birthday greetings are queued once (the day's GreetingRun shows no second pass). The threaded
    version of this race is in test_scheduler.py; this one has separate processes, engines and connections."""
    if database == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    from models.greeting import GreetingRun

    url = POSTGRES_URL if database == "postgres" else f"sqlite:///{tmp_path / 'sched.db'}"
    app = make_app(url)
    bot = app.extensions["bot"]
    birthdays_today(bot, 5)
    env = subprocess_env(DATABASE_URL=url, LOG_LEVEL="INFO")
    logs = [tmp_path / f"sched-{name}.log" for name in "AB"]
    procs = [
        subprocess.Popen(flask_cmd("schedule", "run", "--holder", name), cwd=ROOT, env=env,
                         stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        for name, log in zip("AB", logs, strict=True)
    ]  # fmt: skip
    skipped, leading = "another scheduler holds the lease, standing by", "holds the lease, running jobs"
    try:
        wait_for(lambda: outbox_keys(bot.db, "birthday:") == 5, 60, "five birthday greetings")
        wait_for(lambda: any(skipped in log.read_text() for log in logs), 60, "the second scheduler to skip")
        time.sleep(0.5)  # a second (wrong) pass would show now
        assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs]
    finally:
        for p in procs:
            stop(p)
    texts = [log.read_text() for log in logs]
    assert sorted((leading in t, skipped in t) for t in texts) == [(False, True), (True, False)], texts
    assert outbox_keys(bot.db, "birthday:") == 5
    with bot.db.Session() as s:
        runs = list(s.scalars(select(GreetingRun).where(GreetingRun.kind == "birthday")))
    assert [(r.queued, r.already) for r in runs] == [(5, 0)]  # one pass: nothing found already queued
    assert "Traceback" not in "".join(texts), texts
    bot.db.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_scheduler_is_replaced_by_the_standby(database, tmp_path):
    """kill -9 of the scheduler holding the lease: the standby takes the lease over once it has expired (3 s here,
    3 minutes in production) and runs the jobs; what the first one queued is not queued again."""
    if database == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")

    url = POSTGRES_URL if database == "postgres" else f"sqlite:///{tmp_path / 'takeover.db'}"
    app = make_app(url)
    bot = app.extensions["bot"]
    birthdays_today(bot, 3)
    env = subprocess_env(DATABASE_URL=url, LOG_LEVEL="INFO", FAULTS_LEASE_SECONDS="3", FAULTS_RENEW_SECONDS="0.5")
    logs = {name: tmp_path / f"sched-{name}.log" for name in "AB"}

    def start(name: str) -> subprocess.Popen:
        cmd = [sys.executable, str(ROOT / "tests" / "faults_scheduler.py"), "--holder", name]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(logs[name], "wb"),  # noqa: SIM115
                                stderr=subprocess.STDOUT)  # fmt: skip

    leading, standing = "holds the lease, running jobs", "another scheduler holds the lease, standing by"
    a = start("A")
    procs = [a]
    try:
        wait_for(lambda: outbox_keys(bot.db, "birthday:") == 3, 60, "A to queue the birthday greetings")
        procs.append(start("B"))
        wait_for(lambda: standing in logs["B"].read_text(), 60, "B to stand by")
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        wait_for(lambda: leading in logs["B"].read_text(), 60, "B to take the lease over")
        assert procs[1].poll() is None, logs["B"].read_text()[-2000:]
    finally:
        for p in procs:
            stop(p)
    assert outbox_keys(bot.db, "birthday:") == 3  # nothing queued twice
    assert "Traceback" not in logs["B"].read_text()
    bot.db.dispose()


def outbox_keys(db, prefix: str) -> int:
    with db.Session() as s:
        return s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.idempotency_key.like(prefix + "%"))
        )
