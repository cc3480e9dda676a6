"""The Alembic migrations build the schema from empty, and agree with the models (no pending autogenerate diff)."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from migrations import upgrade_head
from models import Base
from models.base import make_engine
from tests.conftest import POSTGRES_URL

URLS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


@pytest.mark.parametrize("kind", URLS)
def test_migrations_match_models(kind, tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}" if kind == "sqlite" else POSTGRES_URL
    engine = make_engine(url)
    if kind == "postgres":
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade_head(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []
