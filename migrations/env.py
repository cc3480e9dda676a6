"""Alembic environment: the URL comes from the caller (settings), the metadata from our models."""

from __future__ import annotations

from alembic import context

import models  # noqa: F401  (registers every table)
from models.base import Base, make_engine

config = context.config
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")


def run() -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=Base.metadata,
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()
    engine.dispose()


run()
