"""Database set-up and the delivery worker."""

from __future__ import annotations

import logging
import time

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from cli import bot

db_cli = AppGroup("db", help="数据库：建表与升级")
worker_cli = AppGroup("worker", help="后台投递")
log = logging.getLogger(__name__)
MAX_DB_PAUSE = 10.0  # seconds between attempts while the database is down


@db_cli.command("upgrade")
def upgrade() -> None:
    """Apply the Alembic migrations up to head."""
    from migrations import upgrade_head

    upgrade_head(bot().db.url)
    click.echo("数据库已升级到最新版本。")


@worker_cli.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now and exit.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds to wait when nothing is due.")
def run(once: bool, interval: float) -> None:
    """Deliver the outbox and run deferred inbound work until stopped."""
    from bot import outbox

    b = bot()
    pause = 0.0
    while True:
        try:
            worked = b.process_pending() + outbox.deliver_due(b)
        except DBAPIError as exc:  # the database restarts or is unreachable: wait for it, do not die
            if once:
                raise
            pause = min(max(pause * 2, interval, 0.5), MAX_DB_PAUSE)
            log.warning("worker: database unavailable (%s); retrying in %.1fs", type(exc).__name__, pause)
            time.sleep(pause)
            continue
        pause = 0.0
        if once:
            click.echo(f"done: {worked}")
            return
        if not worked:
            time.sleep(interval)
