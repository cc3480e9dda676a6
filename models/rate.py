"""Fixed-window send counters shared by every worker through the database (Feishu's and WeCom's app-wide
limits, Feishu's per-recipient one)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Integer, String, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base


class SendRate(Base):
    """A send counter per scope ("app:m", "wecom:message/send:m", "to:user:ou_…") for its current window.

    The table keeps the name it got when only Feishu used it, so that sharing it needs no migration."""

    __tablename__ = "feishu_rate"
    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    win: Mapped[int] = mapped_column(Integer)  # window number = epoch seconds // window size
    count: Mapped[int] = mapped_column(Integer, default=0)


def take_slot(s: Session, scope: str, win: int, n: int = 1) -> int:
    """Count `n` sends in `scope`'s window `win` atomically; returns the count including these."""
    ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(SendRate)
    stmt = ins.values(scope=scope[:160], win=win, count=n)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope"],
        set_={"win": win, "count": case((SendRate.win == win, SendRate.count + n), else_=n)},
    ).returning(SendRate.count)
    return int(s.execute(stmt).scalar_one())


def take_slots(s: Session, now: float, windows: Sequence[tuple[str, float, int]], n: int = 1) -> float:
    """Take `n` slots in each (scope, window seconds, limit) at epoch time `now`, all or none: 0.0 when taken,
    else the seconds until the fullest window ends. A refused try takes no slot, or waiting rows would eat the
    window's budget."""
    slots = s.begin_nested()
    over = [
        size - now % size
        for scope, size, limit in windows
        if take_slot(s, scope, int(now // size), n) > limit
    ]
    if over:
        slots.rollback()
        return max(over)
    slots.commit()
    return 0.0
