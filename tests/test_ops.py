"""Backups restore every row; health, readiness and metrics endpoints."""

import shutil

import pytest
from sqlalchemy import func, select

from bot import outbox
from migrations import upgrade_head
from models import Member, OutboxMessage
from tests.conftest import POSTGRES_URL, add_member, make_app


def _populate(bot, n=25):
    for i in range(n):
        add_member(bot, name=f"会员{i}", employee_no=f"B{i:04d}", roles=["group_leader"] if i % 5 == 0 else [])
    with bot.db.transaction() as s:
        outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="u", message={"type": "text", "text": "x"},
                       key="k", now=bot.clock.now())


def _counts(bot):
    with bot.db.Session() as s:
        return (s.scalar(select(func.count(Member.id))), s.scalar(select(func.count(OutboxMessage.id))),
                sorted(s.scalars(select(Member.employee_no))))


def test_sqlite_backup_and_restore_into_an_empty_database(tmp_path):
    src = make_app(f"sqlite:///{tmp_path / 'src.db'}")
    _populate(src.extensions["bot"])
    before = _counts(src.extensions["bot"])
    result = src.test_cli_runner().invoke(args=["backup", str(tmp_path / "b.sqlite")])
    assert result.exit_code == 0, result.output

    empty = make_app(f"sqlite:///{tmp_path / 'new.db'}")
    result = empty.test_cli_runner().invoke(args=["restore", str(tmp_path / "b.sqlite")])
    assert result.exit_code == 0, result.output
    assert _counts(empty.extensions["bot"]) == before
    # a populated database is not overwritten without --yes
    result = empty.test_cli_runner().invoke(args=["restore", str(tmp_path / "b.sqlite")])
    assert result.exit_code != 0 and "--yes" in result.output


@pytest.mark.skipif(not POSTGRES_URL or not shutil.which("pg_dump"), reason="needs TEST_POSTGRES_URL and pg_dump")
def test_postgres_backup_and_restore(tmp_path):
    app = make_app(POSTGRES_URL)
    b = app.extensions["bot"]
    _populate(b)
    before = _counts(b)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["backup", str(tmp_path / "b.dump")]).exit_code == 0
    with b.db.transaction() as s:
        s.execute(Member.__table__.delete().where(Member.employee_no.like("B%")))
    result = runner.invoke(args=["restore", "--yes", str(tmp_path / "b.dump")])
    assert result.exit_code == 0, result.output
    assert _counts(b) == before


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
    assert 'unionbot_outbox_depth{status="sent"}' in body
    assert "秘密姓名" not in body and "S0001" not in body and "sb-" not in body


def test_request_id_is_echoed(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc123"}).headers["X-Request-Id"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 32
