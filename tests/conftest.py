"""Shared fixtures: a fresh app on a temporary SQLite file (or PostgreSQL), members, and chat helpers."""

from __future__ import annotations

import atexit
import itertools
import os
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.exc import ProgrammingError

from app import create_app
from bot import outbox
from bot.adapters import sandbox
from models import Base, Branch, Group, Member, staff
from models.member import link_identity
from models.messaging import SandboxMessage

_ids = itertools.count(1)


def _private_postgres_database(base_url: str | None) -> str | None:
    """A database of this test process's own on the server, so parallel workers never share tables."""
    if not base_url:
        return None
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"{url.database}_ub_{os.getpid()}"
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()

    def drop():
        eng = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        eng.dispose()

    atexit.register(drop)
    return url.set(database=name).render_as_string(hide_password=False)


POSTGRES_URL = _private_postgres_database(os.environ.get("TEST_POSTGRES_URL"))

# Console passwords: a cheap hash in tests (scrypt costs ~0.2 s per account and per login).
staff.PASSWORD_METHOD = "pbkdf2:sha256:1000"


def make_app(url: str, **overrides):
    app = create_app({"DATABASE_URL": url, "APP_ENV": "test", "SECRET_KEY": "test-secret", **overrides})
    db = app.extensions["db"]
    if db.engine.dialect.name == "postgresql":
        _empty_postgres(db.engine)
    else:
        db.create_all()
    return app


def _empty_postgres(engine) -> None:
    """Empty every table of this process's database and restart its id sequences: ~15x faster than dropping and
    creating the schema for each test (small tables: DELETE beats TRUNCATE). A database without the schema (the
    process's first test, or one after a test dropped tables) gets it built afresh."""
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.exec_driver_sql(f'DELETE FROM "{table.name}"')
            sequences = conn.exec_driver_sql("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
            for (name,) in sequences.all():
                conn.exec_driver_sql(f'ALTER SEQUENCE "{name}" RESTART')
    except ProgrammingError:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)


@pytest.fixture
def app(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'test.db'}")
    yield app
    app.extensions["db"].dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_app(request, tmp_path):
    """The app on SQLite and, when TEST_POSTGRES_URL is set, on PostgreSQL too (database-sensitive tests)."""
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip(
                "PostgreSQL tests need TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
            )
        app = make_app(POSTGRES_URL)
    else:
        app = make_app(f"sqlite:///{tmp_path / 'test.db'}")
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def bot(app):
    return app.extensions["bot"]


def add_member(
    bot, name="张三", employee_no=None, roles=(), branch="内科分会", group="心内科小组", **fields
) -> Member:
    """Create a member (and their branch and group) and return it detached with its id."""
    with bot.db.transaction() as s:
        b = s.scalar(select(Branch).where(Branch.name == branch)) or Branch(name=branch)
        g = s.scalar(select(Group).where(Group.name == group, Group.branch == b)) if b.id else None
        g = g or Group(name=group, branch=b)
        m = Member(
            name=name,
            employee_no=employee_no or f"T{next(_ids):05d}",
            branch=b,
            group=g,
            phone=fields.pop("phone", "13800001234"),
            gender=fields.pop("gender", "女"),
            birthday=fields.pop("birthday", date(1980, 5, 1)),
            **fields,
        )
        m.set_roles(list(roles))
        s.add(m)
        s.flush()
        return m


class Chat:
    """Talks to the bot through the sandbox platform, exactly as the sandbox page does."""

    def __init__(
        self, bot, member: Member | None = None, user_id: str | None = None, group_id: int | None = None
    ):
        self.bot = bot
        self.user_id = user_id or (sandbox.user_id_for(member) if member else "sb-stranger")
        if member is not None:
            with bot.db.transaction() as s:
                link_identity(s, s.get(Member, member.id), "sandbox", self.user_id)
        self.chat_id = sandbox.group_chat_id(group_id) if group_id else self.user_id
        self.seen = 0

    def say(self, text: str = "", action=None, message_id=None) -> list[dict]:
        msg = sandbox.incoming(
            self.bot,
            user_id=self.user_id,
            chat_id=self.chat_id,
            text=text,
            action=action,
            message_id=message_id,
        )
        self.bot.handle(msg)
        return self.inbox()

    def inbox(self) -> list[dict]:
        """Deliver the outbox and return the payloads that arrived in this chat since the last look."""
        outbox.drain(self.bot, platform="sandbox")
        with self.bot.db.Session() as s:
            rows = list(
                s.scalars(
                    select(SandboxMessage)
                    .where(
                        SandboxMessage.chat_id == self.chat_id,
                        SandboxMessage.direction == "out",
                        SandboxMessage.id > self.seen,
                    )
                    .order_by(SandboxMessage.id)
                )
            )
        if rows:
            self.seen = rows[-1].id
        return [r.payload for r in rows]

    def ask(self, text: str = "", action=None) -> str:
        """Say something and return all reply text joined (cards rendered as text)."""
        return "\n".join(render(p) for p in self.say(text, action))


def render(payload: dict) -> str:
    if payload.get("type") == "card":
        return "\n".join(
            [payload["title"], *payload["lines"], *(f"[{b['label']}]" for b in payload["buttons"])]
        )
    return payload["text"]


@pytest.fixture
def chat_with(bot):
    return lambda member=None, **kw: Chat(bot, member, **kw)
