"""WeCom state shared by every worker: the cached access token of the self-built app."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class WecomAccessToken(Base):
    """One row per app (corp id + agent id). The token is a credential: never log or display it."""

    __tablename__ = "wecom_access_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    app_key: Mapped[str] = mapped_column(String(128), unique=True)
    access_token: Mapped[str] = mapped_column(String(1024))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
