"""Declarative base, the UTC datetime column type and the database handle."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite has no zones) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def make_engine(url: str) -> Engine:
    """SQLite gets WAL, a busy timeout and IMMEDIATE transactions so concurrent writers queue instead of failing.

    Both hide statement parameters from errors: a failed insert would otherwise log a member's name or phone."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url and "mode=memory" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        turns = WriterTurns()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            if not conn.info.get("turn") and turns.take():
                conn.info["turn"] = True
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine.pool, "checkin")
        def _sqlite_checkin(_dbapi_conn, record):
            if record.info.pop("turn", False):
                turns.give_back()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True)

    @event.listens_for(engine, "handle_error")
    def _terse(ctx):
        """PostgreSQL's DETAIL line quotes the row ("Key (phone)=(139…) already exists"): errors keep only
        the primary message and the constraint's name, like SQLite's."""
        for err in (ctx.original_exception, ctx.sqlalchemy_exception):
            if err is not None and err.args and isinstance(err.args[0], str):
                err.args = (_SERVER_DETAIL.sub("", err.args[0]), *err.args[1:])

    return engine


_SERVER_DETAIL = re.compile(r"\n(DETAIL|HINT|CONTEXT): .*?(?=\n\[SQL|\Z)", re.S)


class WriterTurns:
    """First come, first served turns at SQLite's single write lock for the threads of this process.

    Every SQLite transaction here starts with BEGIN IMMEDIATE. Left to SQLite, writers that find the lock taken
    poll it with growing sleeps, and a newcomer often wins over one that has waited for seconds: under a burst
    of webhooks some waited 10 s, past the platforms' 5 s deadline. Waiting in line here instead keeps the wait
    close to the work queued ahead. A thread's nested connection takes no second turn (SQLite itself then makes
    it wait, as before); other processes still meet SQLite's own waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0
        self._holder: int | None = None

    def take(self) -> bool:
        """Wait for this thread's turn; False (no turn taken) if the thread holds the turn already."""
        me = threading.get_ident()
        with self._cond:
            if self._holder == me:
                return False
            ticket = self._issued
            self._issued += 1
            while self._serving != ticket:
                self._cond.wait()
            self._holder = me
            return True

    @property
    def queued(self) -> int:
        """Turns taken or waited for and not given back yet."""
        with self._cond:
            return self._issued - self._serving

    def give_back(self) -> None:
        with self._cond:
            self._holder = None
            self._serving += 1
            self._cond.notify_all()


class Database:
    """The engine and session factory; `transaction()` is the unit of work every entry point uses."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.Session() as session, session.begin():
            yield session

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def utcnow() -> datetime:
    return datetime.now(UTC)
