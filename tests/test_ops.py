"""Backups restore every row; health, readiness and metrics endpoints."""

import shutil
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select, text

from app import create_app
from migrations import upgrade_head
from models import Base, Member, OutboxMessage
from tests.conftest import POSTGRES_URL, add_member, make_app

# 2026-12-01 10:00 Asia/Shanghai, a Tuesday: the whole union is populated at this moment.
POPULATED_AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def populate(app) -> dict[str, int]:
    """Every feature's tables: the demo union (`flask demo`), the proposals' congress and departments, a proposal, an
    activity with sign-ups and a waitlist, a hardship case, a meeting with invitations, a greeting run, a sandbox
    conversation (inbound, replies, outbox) and an API token. Returns the row count of each table."""
    from handlers.greetings import run_greetings
    from handlers.meetings import create_meeting
    from models import crypto, proposal
    from models.activity import Activity, sign_up
    from models.care import submit_case
    from tests.conftest import Chat

    bot = app.extensions["bot"]
    crypto.configure(bot.settings)
    with time_machine.travel(POPULATED_AT, tick=False):
        result = app.test_cli_runner().invoke(args=["demo", "--members", "60"])
        assert result.exit_code == 0, result.output
        result = app.test_cli_runner().invoke(args=["tokens", "create", "--name", "oa", "--role", "clerk"])
        assert result.exit_code == 0, result.output
        now = bot.clock.now()
        with bot.db.transaction() as s:
            members = list(s.scalars(select(Member).order_by(Member.id)))
            proposal.seed_demo(s, now, bot.clock.tz)
            proposal.submit(s, member=members[0], kind="suggestion", category=proposal.categories(s, now)[0],
                            title="食堂延长晚餐供应时间", situation="夜班职工下班后食堂已关门",
                            measures="晚餐供应延长到20:00", congress=None, secret=bot.settings.SECRET_KEY,
                            now=now, tz=bot.clock.tz)  # fmt: skip
            activity = Activity(title="羽毛球赛", place="职工活动中心", starts_at=now + timedelta(days=5),
                                signup_deadline=now + timedelta(days=4), capacity=2, taken=0, seq=0,
                                waitlist_enabled=True, companions_max=1, questions=[], audience_kind="all",
                                audience_ids=[], status="open")  # fmt: skip
            s.add(activity)
            s.flush()
            for m in members[1:4]:  # two places and one on the waitlist
                assert sign_up(s, activity, m, now).ok
            submit_case(s, member=members[4], reported_by=members[4], type="大病", story="母亲住院手术费不够",
                        household="4口人", help_kinds=["资金补助"], help_details="手术费缺口", contact="晚上",
                        now=now, year=2026)  # fmt: skip
            create_meeting(s, bot, title="十二月工会委员会会议", starts_at=now + timedelta(days=3),
                           attendees={"roles": ["clerk", "branch_chair"]}, kind="工会委员会")  # fmt: skip
        chat = Chat(bot, members[5])
        chat.ask("帮助")
        chat.ask("我的信息")
        run_greetings(bot, now)
    counts = {}
    with bot.db.Session() as s:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = s.scalar(select(func.count()).select_from(table))
    return counts


def every_row(db) -> dict[str, list[tuple]]:
    """Each table's rows as the database holds them (no type conversion), in primary-key order."""
    rows = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            rows[table.name] = [tuple(r) for r in conn.execute(text(f'SELECT * FROM "{table.name}" ORDER BY {order}'))]
    return rows


FEATURE_TABLES = {
    "member", "branch", "union_group", "member_role", "platform_identity", "staff_account", "api_token",
    "congress", "department", "department_contact", "proposal", "proposal_counter", "activity", "signup",
    "hardship_case", "hardship_case_event", "care_audit_log", "meeting", "meeting_invite", "festival",
    "greeting_config", "greeting_run", "inbound_message", "outbox_message", "sandbox_message",
}  # fmt: skip


def test_sqlite_backup_and_restore_into_an_empty_database_keeps_every_row(tmp_path):
    src = make_app(f"sqlite:///{tmp_path / 'src.db'}")
    counts = populate(src)
    assert not [t for t in FEATURE_TABLES if not counts[t]], counts  # every feature really wrote rows
    before = every_row(src.extensions["db"])
    result = src.test_cli_runner().invoke(args=["backup", str(tmp_path / "b.sqlite")])
    assert result.exit_code == 0, result.output

    target = tmp_path / "new.db"
    assert not target.exists()
    empty = create_app({"DATABASE_URL": f"sqlite:///{target}", "APP_ENV": "test", "SECRET_KEY": "test-secret"})
    result = empty.test_cli_runner().invoke(args=["restore", str(tmp_path / "b.sqlite")])
    assert result.exit_code == 0, result.output
    assert every_row(empty.extensions["db"]) == before
    # a populated database is not overwritten without --yes
    result = empty.test_cli_runner().invoke(args=["restore", str(tmp_path / "b.sqlite")])
    assert result.exit_code != 0 and "--yes" in result.output
    for app in (src, empty):
        app.extensions["db"].dispose()


@pytest.fixture
def fresh_postgres_database():
    """A brand-new, empty database on the test server (not the one the backup came from)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    name = f"{url.database}_restore"
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL or not shutil.which("pg_dump"), reason="needs TEST_POSTGRES_URL and pg_dump")
def test_postgres_backup_and_restore_into_a_fresh_database_keeps_every_row(tmp_path, fresh_postgres_database):
    src = make_app(POSTGRES_URL)
    counts = populate(src)
    assert not [t for t in FEATURE_TABLES if not counts[t]], counts
    before = every_row(src.extensions["db"])
    assert src.test_cli_runner().invoke(args=["backup", str(tmp_path / "b.dump")]).exit_code == 0

    empty = create_app({"DATABASE_URL": fresh_postgres_database, "APP_ENV": "test", "SECRET_KEY": "test-secret"})
    result = empty.test_cli_runner().invoke(args=["restore", str(tmp_path / "b.dump")])
    assert result.exit_code == 0, result.output
    assert every_row(empty.extensions["db"]) == before
    add_member(empty.extensions["bot"], name="恢复后新会员")  # the id sequences came back too
    for app in (src, empty):
        app.extensions["db"].dispose()


def test_readyz_reports_pending_migrations(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'r.db'}")  # tables made by create_all: no Alembic revision
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and "db upgrade" in r.get_json()["migrations"]
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade_head(url)
    r = make_app(url).test_client().get("/readyz")
    assert r.get_json() == {"status": "ok", "migrations": "current"}


def test_metrics_have_no_personal_labels(client, bot, chat_with):
    chat_with(add_member(bot, name="秘密姓名", employee_no="S0001")).ask("我的信息")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'unionbot_messages_received_total{handler="my_info",platform="sandbox"}' in body
    assert 'unionbot_outbox_depth{status="pending"} 0.0' in body and 'status="sent"' not in body
    assert "秘密姓名" not in body and "S0001" not in body and "sb-" not in body


def test_request_id_is_echoed(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc123"}).headers["X-Request-Id"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 32


# --- metrics ---------------------------------------------------------------------------------------------------
def sample(client, name: str, **labels: str) -> float | None:
    """One sample of /metrics as Prometheus would read it (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


class ScriptedSender:
    """A platform answering with a fixed SendResult (what the WeCom / Feishu senders return)."""

    def __init__(self, result):
        self.result = result

    def send(self, row):
        return self.result


def test_metrics_scheduler_last_run_failures_by_code_and_handler_latency(client, bot, chat_with):
    from bot import outbox
    from bot.scheduler import JobRunner

    assert sample(client, "unionbot_scheduler_last_run_timestamp") is None  # no scheduler has run yet
    with time_machine.travel(POPULATED_AT, tick=False):
        runner = JobRunner(bot, "metrics-test")
        assert runner.run("noop", lambda b, now: None)
    assert sample(client, "unionbot_scheduler_last_run_timestamp") == POPULATED_AT.timestamp()
    runner.lease.release()  # a stopped scheduler: no "last run" that looks current
    assert sample(client, "unionbot_scheduler_last_run_timestamp") is None

    bot.senders["wecom"] = ScriptedSender(outbox.SendResult(False, "invaliduser", permanent=True, code="81013"))
    bot.senders["feishu"] = ScriptedSender(outbox.SendResult(False, "local rate limit", retry_after=5, held=True))
    failed = {"platform": "wecom", "code": "81013"}
    before = sample(client, "unionbot_delivery_failures_total", **failed) or 0
    held_before = sample(client, "unionbot_delivery_failures_total", platform="feishu", code="error")
    with bot.db.transaction() as s:
        for platform in ("wecom", "feishu"):
            outbox.enqueue(s, platform=platform, target_kind="user", target_id="u1", key=f"m:{platform}",
                           message={"type": "text", "text": "通知"}, now=bot.clock.now())  # fmt: skip
    assert outbox.deliver_due(bot) == 0
    assert sample(client, "unionbot_delivery_failures_total", **failed) == before + 1
    assert sample(client, "unionbot_delivery_failures_total", platform="feishu", code="error") == held_before
    with bot.db.Session() as s:
        held = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "m:feishu"))
    assert (held.status, held.attempts) == ("pending", 0)  # our own wait used no attempt either

    count = {"platform": "sandbox"}
    seen = sample(client, "unionbot_handler_seconds_count", **count) or 0
    chat_with(add_member(bot, name="计时")).ask("帮助")
    assert sample(client, "unionbot_handler_seconds_count", **count) == seen + 1
    assert sample(client, "unionbot_handler_seconds_sum", **count) > 0


# --- JSON logs with the request id -----------------------------------------------------------------------------
def test_production_logs_are_json_lines_with_the_request_id(tmp_path):
    import io
    import json
    import logging

    from cryptography.fernet import Fernet

    from bot.observability import JsonFormatter

    app = make_app(f"sqlite:///{tmp_path / 'prod.db'}", APP_ENV="production", SECRET_KEY="s" * 40,
                   DATA_KEY=Fernet.generate_key().decode())  # fmt: skip
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer 500 and log it, as in production

    @app.get("/boom")
    def boom():
        raise RuntimeError("something broke")

    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_unionbot", False))
    assert isinstance(handler.formatter, JsonFormatter)
    out = io.StringIO()
    old = handler.setStream(out)
    try:
        client = app.test_client()
        given = client.get("/boom", headers={"X-Request-Id": "req-42"})
        made = client.get("/boom")
    finally:
        handler.setStream(old)
    assert given.status_code == 500 and given.headers["X-Request-Id"] == "req-42"
    generated = made.headers["X-Request-Id"]
    assert len(generated) == 32 and generated != "req-42"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["req-42", generated]
    assert all(line["level"] == "ERROR" and "RuntimeError" in line["exc"] for line in lines)
    assert app.test_client().get("/healthz", headers={"X-Request-Id": "x" * 65}).headers["X-Request-Id"] != "x" * 65
    app.extensions["db"].dispose()


# --- processes -------------------------------------------------------------------------------------------------
def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (gunicorn's workers are grandchildren of `serve`)."""
    from pathlib import Path

    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":  # a zombie has exited already
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_serve_runs_web_worker_and_scheduler_with_shared_metrics_and_stops_all_on_sigterm(tmp_path):
    """SLOW (≈10 s): `flask --app app serve` in production mode. The web answers /healthz, the scheduler takes the
    lease, the delivery worker's failure counter shows on the web's /metrics (multiprocess mode), gunicorn's access
    log is JSON with the request id, and SIGTERM stops every process it started."""
    import json
    import os
    import signal
    import subprocess
    import sys

    import requests
    from cryptography.fernet import Fernet

    from bot import outbox
    from bot.scheduler import Lease
    from models.base import Database
    from tests.faults_helpers import ROOT, free_port, wait_for

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade_head(url)
    db = Database(url)
    with db.transaction() as s:  # no sender for this platform: the worker records a failure with code no_sender
        outbox.enqueue(s, platform="nowhere", target_kind="user", target_id="u", key="serve:1",
                       message={"type": "text", "text": "x"}, now=datetime.now(UTC))  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "FEISHU_", "DATABASE_URL"))}
    env.update(APP_ENV="production", SECRET_KEY="s" * 40, DATA_KEY=Fernet.generate_key().decode(),
               DATABASE_URL=url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), PYTHONUNBUFFERED="1")  # fmt: skip
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_999999.db").write_bytes(b"stale")  # from an earlier run: emptied at start
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve", "--bind", f"127.0.0.1:{port}",
                             "--workers", "2"], cwd=ROOT, env=env, stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def get(path, **headers):
        try:
            return requests.get(base + path, headers=headers, timeout=10)
        except requests.RequestException:  # not listening yet, or a worker still booting
            return None

    try:
        wait_for(lambda: (r := get("/healthz")) is not None and r.ok, 90, f"/healthz; log:\n{log.read_text()[-3000:]}")
        wait_for(lambda: (Lease(db).current() or ("",))[0], 60, "the scheduler to take its lease")
        failures = 'unionbot_delivery_failures_total{code="no_sender",platform="nowhere"} 1.0'
        wait_for(lambda: failures in get("/metrics").text, 60, "the worker's failure on the web's /metrics")
        assert "unionbot_scheduler_last_run_timestamp " in get("/metrics").text
        assert get("/healthz", **{"X-Request-Id": "serve-test"}).headers["X-Request-Id"] == "serve-test"
        started = descendants(proc.pid)
        assert len(started) >= 5  # gunicorn master + 2 workers, the delivery worker, the scheduler

        def access_line():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"serve-test"' in line:
                    return json.loads(line)

        entry = wait_for(access_line, 30, "the JSON access log line")
        assert (entry["logger"], entry["path"], entry["status"], entry["request_id"]) == (
            "gunicorn.access", "/healthz", "200", "serve-test")  # fmt: skip
        assert not (tmp_path / "metrics" / "counter_999999.db").exists()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        wait_for(lambda: not (descendants(proc.pid) | {p for p in started if os.path.exists(f"/proc/{p}")}), 30,
                 "every process started by serve to exit")  # fmt: skip
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        db.dispose()


def test_gunicorn_conf_reads_its_settings_from_the_environment(monkeypatch):
    import runpy

    from tests.faults_helpers import ROOT

    monkeypatch.setenv("BIND", "0.0.0.0:9000")
    monkeypatch.setenv("WEB_WORKERS", "3")
    monkeypatch.setenv("WEB_THREADS", "2")
    monkeypatch.setenv("APP_ENV", "test")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["bind"], conf["workers"], conf["threads"], conf["worker_class"]) == ("0.0.0.0:9000", 3, 2, "gthread")
    assert "logconfig_dict" not in conf  # plain logs outside production


def test_pg_dump_gets_the_password_in_its_environment_not_on_the_command_line():
    from cli.ops import _pg_target

    target, env = _pg_target("postgresql+psycopg://unionbot:s3cret@db.example:5432/unionbot")
    assert target == "postgresql://unionbot@db.example:5432/unionbot" and env["PGPASSWORD"] == "s3cret"
    assert _pg_target("postgresql://postgres@127.0.0.1:5432/test")[0] == "postgresql://postgres@127.0.0.1:5432/test"
