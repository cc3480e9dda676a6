"""Operations: backup and restore, and `serve` — web, delivery worker and scheduler on one machine."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cli import bot


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    return Path(u.database) if u.get_backend_name() == "sqlite" and u.database else None


def _pg_target(url: str) -> tuple[str, dict[str, str]]:
    """pg_dump wants a libpq URL, without SQLAlchemy's +driver; the password goes in PGPASSWORD, not on the
    command line where `ps` would show it."""
    u = make_url(url).set(drivername="postgresql")
    env = {**os.environ, "PGPASSWORD": u.password} if u.password else dict(os.environ)
    return u._replace(password=None).render_as_string(hide_password=False), env


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Write a consistent copy of the database to PATH while the bot keeps running."""
    db = bot().db
    path.parent.mkdir(parents=True, exist_ok=True)
    src = _sqlite_path(db.url)
    if src is not None:
        with sqlite3.connect(src) as source, sqlite3.connect(path) as target:
            source.backup(target)  # SQLite's online backup API: safe during writes
    else:
        target, env = _pg_target(db.url)
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={path}", target], env)
    click.echo(f"已备份到 {path}（{path.stat().st_size // 1024} KB）")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Overwrite a database that already holds members.")
def restore(path: Path, yes: bool) -> None:
    """Replace the database with the backup at PATH (stop the web, worker and scheduler first)."""
    from models.member import Member

    b = bot()
    db = b.db
    try:
        with db.Session() as s:
            existing = s.scalar(select(func.count(Member.id)))
    except Exception:
        existing = 0
    if existing and not yes:
        raise click.ClickException(f"数据库里已有 {existing} 名会员；确认覆盖请加 --yes")
    db.dispose()
    dst = _sqlite_path(db.url)
    if dst is not None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as source, sqlite3.connect(dst) as target:
            source.backup(target)
    else:
        target, env = _pg_target(db.url)
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={target}", str(path)], env)
    click.echo("已恢复。")


def _run(cmd: list[str], env: dict[str, str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise click.ClickException(f"需要 {cmd[0]}（PostgreSQL 客户端工具），请先安装")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise click.ClickException(done.stderr.strip()[-500:] or f"{cmd[0]} failed")


@click.command("serve")
@click.option("--bind", default=None, help="Address of the web server [default: BIND or 127.0.0.1:8000]")
@click.option("--workers", type=int, default=None, help="gunicorn web workers [default: WEB_WORKERS]")
def serve(bind: str | None, workers: int | None) -> None:
    """Run web (gunicorn), the delivery worker and the scheduler together; restart any that dies; stop all three
    on SIGTERM or Ctrl-C. Their counters meet in one PROMETHEUS_MULTIPROC_DIR, emptied here at start."""
    from config import INSTANCE, ROOT

    web = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    web += ["--bind", bind] if bind else []
    web += ["--workers", str(workers)] if workers else []
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    procs = {"web": [*web, "app:create_app()"], "worker": [*flask, "worker", "run"], "scheduler": [*flask, "schedule", "run"]}
    env = dict(os.environ)
    metrics = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(INSTANCE / "metrics")))
    shutil.rmtree(metrics, ignore_errors=True)  # counters of an earlier run would be summed with this one's
    metrics.mkdir(parents=True)
    running: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        for name, cmd in procs.items():
            p = running.get(name)
            if p is None or p.poll() is not None:
                if p is not None:
                    click.echo(f"{name} exited with {p.returncode}; restarting", err=True)
                    time.sleep(1)
                running[name] = subprocess.Popen(cmd, env=env, cwd=ROOT)
        time.sleep(0.5)
    for p in running.values():
        p.send_signal(signal.SIGTERM)
    for p in running.values():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


commands = [backup, restore, serve]
