"""Feishu adapter state shared by every worker through the database: the tenant token and the bot's open_id
(send rates: `models.rate`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow


class FeishuState(Base):
    """Small key/value cache: the tenant access token (with its expiry) and the bot's own open_id."""

    __tablename__ = "feishu_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def get_state(s: Session, key: str) -> FeishuState | None:
    return s.get(FeishuState, key)


def put_state(s: Session, key: str, value: str, expires_at: datetime | None, now: datetime) -> None:
    ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(FeishuState)
    stmt = ins.values(key=key, value=value, expires_at=expires_at, updated_at=now)
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["key"], set_={"value": value, "expires_at": expires_at, "updated_at": now}
        )
    )
