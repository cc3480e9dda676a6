"""The injected clock: everything asks it for 'now', so tests can travel in time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class Clock:
    def __init__(self, tz: ZoneInfo, offset: timedelta = timedelta()):
        self.tz = tz
        self.offset = offset  # the sandbox can move its clock forward to show scheduled pushes

    def now(self) -> datetime:
        """Aware UTC time (what we store)."""
        return datetime.now(UTC) + self.offset

    def local_now(self) -> datetime:
        return self.now().astimezone(self.tz)

    def today(self) -> date:
        """Today in the union's time zone, never the host's (a UTC host is a day behind before 08:00)."""
        return self.local_now().date()

    def local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.tz)

    def at(self, day: date, hour: int = 0, minute: int = 0) -> datetime:
        """A local wall-clock time on `day`, as aware UTC."""
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz).astimezone(UTC)

    def fmt(self, dt: datetime | None, with_time: bool = True) -> str:
        if dt is None:
            return ""
        loc = self.local(dt)
        return loc.strftime("%m月%d日 %H:%M" if with_time else "%Y年%m月%d日")
