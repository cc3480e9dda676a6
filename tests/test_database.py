"""The database handle: SQLite writers take turns first come, first served, and always give their turn back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.base import Database, WriterTurns
from tests.conftest import POSTGRES_URL


def test_writer_turns_are_first_come_first_served():
    turns = WriterTurns()
    assert turns.take()
    order: list[int] = []
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (turns.take(), order.append(i), turns.give_back()))
        t.start()
        threads.append(t)
        while turns.queued < i + 2:  # this thread holds a ticket before the next one arrives
            threading.Event().wait(0.001)
    turns.give_back()
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 1, 2, 3, 4] and turns.queued == 0


def test_the_holder_takes_no_second_turn():
    turns = WriterTurns()
    assert turns.take() and not turns.take()  # a nested connection of the same thread does not wait on itself
    turns.give_back()
    assert turns.queued == 0


def test_sessions_and_connections_give_their_turn_back(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    with db.Session() as s:  # a read: BEGIN IMMEDIATE takes a turn, closing the session gives it back
        s.execute(text("select 1"))
    with db.engine.connect() as conn:  # several transactions on one connection: one turn, given back once
        for _ in range(3):
            conn.execute(text("select 1"))
            conn.commit()
    with db.transaction() as s:
        s.execute(text("create table t (x int)"))
    done = threading.Event()

    def other_thread():
        with db.transaction() as s:
            s.execute(text("insert into t values (1)"))
        done.set()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(timeout=10)
    assert done.is_set()  # nobody kept a turn
    db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_database_errors_do_not_carry_personal_data(kind, tmp_path):
    """A failed statement's error (logged by Flask, the worker, the handler's crash log) names no parameters."""
    if kind == "postgres" and not POSTGRES_URL:
        pytest.skip("needs TEST_POSTGRES_URL")
    db = Database(f"sqlite:///{tmp_path / 'e.db'}" if kind == "sqlite" else POSTGRES_URL)
    try:
        with pytest.raises(DBAPIError) as err, db.transaction() as s:
            s.execute(text("INSERT INTO no_such_table (phone) VALUES (:phone)"), {"phone": "13912345678"})
        assert "13912345678" not in str(err.value) and "no_such_table" in str(err.value)
        # a unique key: PostgreSQL's DETAIL line would quote the row's value
        with db.transaction() as s:
            s.execute(text("CREATE TABLE phone_book (phone VARCHAR(20) UNIQUE)"))
            s.execute(text("INSERT INTO phone_book (phone) VALUES (:phone)"), {"phone": "13912345678"})
        try:
            with pytest.raises(DBAPIError) as err, db.transaction() as s:
                s.execute(text("INSERT INTO phone_book (phone) VALUES (:phone)"), {"phone": "13912345678"})
            assert "13912345678" not in str(err.value) and "13912345678" not in str(err.value.orig)
            assert "phone" in str(err.value)  # the constraint is still named
        finally:
            with db.transaction() as s:
                s.execute(text("DROP TABLE phone_book"))
    finally:
        db.dispose()
