"""WeCom state shared by every worker: the cached access token of the self-built app, and alerts for staff."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow

ALERT_IP_NOT_TRUSTED = "ip_not_trusted"


class WecomAccessToken(Base):
    """One row per app (corp id + agent id). The token is a credential: never log or display it."""

    __tablename__ = "wecom_access_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    app_key: Mapped[str] = mapped_column(String(128), unique=True)
    access_token: Mapped[str] = mapped_column(String(1024))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WecomAlert(Base):
    """A WeCom problem only staff can fix (e.g. 60020: this server's IP is not trusted), shown on the console
    dashboard until the next successful API call clears it. One row per kind."""

    __tablename__ = "wecom_alert"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), unique=True)
    detail: Mapped[str] = mapped_column(String(100), default="")  # e.g. the IP WeCom saw
    message: Mapped[str] = mapped_column(Text)  # Chinese, says what to do
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def raise_alert(s: Session, kind: str, detail: str, message: str, now: datetime) -> None:
    """Record (or refresh) an alert; the first sighting is kept so staff see how long it has lasted."""
    ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(WecomAlert)
    s.execute(
        ins.values(kind=kind, detail=detail[:100], message=message, first_seen_at=now, last_seen_at=now)
        .on_conflict_do_update(
            index_elements=["kind"], set_=dict(detail=detail[:100], message=message, last_seen_at=now)
        )
    )


def clear_alert(s: Session, kind: str) -> bool:
    """Remove an alert; True when there was one."""
    return bool(s.execute(delete(WecomAlert).where(WecomAlert.kind == kind)).rowcount)


def active_alerts(s: Session) -> list[WecomAlert]:
    return list(s.scalars(select(WecomAlert).order_by(WecomAlert.first_seen_at)))
