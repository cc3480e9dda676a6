"""Numbering counters shared by features (case numbers, proposal numbers).

`next_value` is one atomic step per call: INSERT ... ON CONFLICT DO NOTHING creates the key's row on first use
(a concurrent first use waits for the other insert instead of failing on the primary key), then
UPDATE ... RETURNING bumps it under the row lock. A rolled-back transaction gives its number back, so numbers
have no gaps and no duplicates on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def next_value(session: Session, model, **key) -> int:
    """The next value of the counter row of `model` (columns: the key columns and an int `value`)."""
    dialect = session.get_bind().dialect.name
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(model)
    session.execute(ins.values(**key, value=0).on_conflict_do_nothing(index_elements=list(key)))
    value = session.execute(
        update(model)
        .where(*[getattr(model, name) == v for name, v in key.items()])
        .values(value=model.value + 1)
        .returning(model.value)
    ).scalar_one()
    return int(value)
