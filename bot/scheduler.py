"""The scheduler process: APScheduler 3.11 in ONE dedicated process (`flask --app app schedule run`).

* Exactly one scheduler does the work however many processes start: every job first takes or renews a lease row
  (`SchedulerLease`, conditional UPDATE: "mine, or expired") and skips when another holder has it. A crashed
  holder's lease expires after `LEASE_TTL` and the next process takes over.
* Jobs live in code (MemoryJobStore), never in a shared job store (two schedulers sharing one run jobs twice).
* Every trigger is given the union's time zone explicitly (a trigger built without one fires in the host's zone).
* misfire_grace_time of hours with coalesce=True and max_instances=1: a late run happens once, not N times.
* A catch-up pass runs at start-up (re-adding a job with replace_existing silently drops a missed run), and the
  minute scan calls the same idempotent functions, so nothing depends on APScheduler's misfire handling.
* Sending is idempotent anyway: each job enqueues outbox rows with occasion keys.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models.greeting import SchedulerLease

if TYPE_CHECKING:
    from flask import Flask

    from bot.core import Bot
    from models.base import Database

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(minutes=3)
RENEW_EVERY = 30  # seconds: the holder renews its lease, a standby tries to take an expired one
GREETING_GRACE = 4 * 3600  # seconds: a 09:00 run may still start at 13:00 (the job itself stops at 20:00)
SCAN_GRACE = 10 * 60
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    """A named lease row: `acquire(now)` takes it if free/expired or renews it if ours; atomically."""

    def __init__(
        self, db: Database, holder: str | None = None, name: str = LEASE_NAME, ttl: timedelta | None = None
    ):
        self.db, self.holder, self.name, self.ttl = db, holder or default_holder(), name, ttl or LEASE_TTL

    def acquire(self, now: datetime) -> bool:
        with self.db.transaction() as s:
            ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(SchedulerLease)
            s.execute(
                ins.values(name=self.name, holder="", expires_at=EPOCH).on_conflict_do_nothing(
                    index_elements=["name"]
                )
            )
            res = s.execute(
                update(SchedulerLease)
                .where(
                    SchedulerLease.name == self.name,
                    or_(SchedulerLease.holder == self.holder, SchedulerLease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            )
            got = res.rowcount == 1
        return got

    def release(self) -> None:
        with self.db.transaction() as s:
            s.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
                .values(expires_at=EPOCH)
            )

    def current(self) -> tuple[str, datetime] | None:
        with self.db.Session() as s:
            row = s.scalar(select(SchedulerLease).where(SchedulerLease.name == self.name))
            return (row.holder, row.expires_at) if row else None


def _optional(module: str, name: str) -> Callable[[Bot, datetime], Any] | None:
    """A job another feature provides (e.g. handlers.activities.send_activity_reminders), if it exists."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(mod, name, None) if hasattr(mod, name) else None


# Jobs other features provide, wired here when their module has them; each is f(bot, now) and idempotent
# (outbox keys per occasion and day), so a repeated or late run sends nothing twice.
OPTIONAL_JOBS: dict[str, tuple[tuple[str, str], ...]] = {
    "scan": (("handlers.activities", "send_activity_reminders"),),
    "hourly": (("handlers.proposals", "close_cosign_window"), ("handlers.care", "scrub_sensitive_replies")),
    "daily": (
        ("handlers.care", "remind_care_tasks"),
        ("handlers.care", "remind_follow_ups"),
        ("handlers.care", "reverify_hardship_records"),
        ("handlers.care", "send_warmth_campaign"),
        ("handlers.proposals", "chase_proposals"),
    ),
    "nightly": (("handlers.care", "anonymise_closed_cases"), ("handlers.proposals", "close_unevaluated")),
}
DAILY_AT = time(8, 30)  # local: reminders for care tasks and proposals (made up at start-up until 20:00)
DAILY_UNTIL = time(20, 0)
NIGHTLY_AT = time(3, 15)


def optional_jobs(group: str) -> list[tuple[str, Callable[[Bot, datetime], Any]]]:
    jobs = []
    for module, name in OPTIONAL_JOBS[group]:
        func = _optional(module, name)
        if func is not None:
            jobs.append((name, func))
    return jobs


def scan_jobs() -> list[tuple[str, Callable[[Bot, datetime], Any]]]:
    """What the minute scan runs: each is f(bot, now), idempotent through outbox keys."""
    from handlers.greetings import run_greetings
    from handlers.meetings import send_meeting_reminders

    return [
        ("greetings", run_greetings),
        ("meeting_reminders", send_meeting_reminders),
        *optional_jobs("scan"),
    ]


class JobRunner:
    """The job bodies the scheduler calls; each checks the lease first."""

    def __init__(self, bot: Bot, holder: str | None = None):
        self.bot = bot
        self.lease = Lease(bot.db, holder)
        self.leading: bool | None = None
        self._guard = threading.Lock()
        self._busy: set[str] = set()
        self.runs: list[str] = []  # names of the jobs that ran (tests, the CLI's status line)

    def _leader(self, now: datetime) -> bool:
        try:
            ok = self.lease.acquire(now)
        except Exception:
            log.exception("scheduler lease check failed")
            return False
        if ok != self.leading:
            self.leading = ok
            log.info("scheduler %s: %s", self.lease.holder, "holds the lease, running jobs" if ok else
                     "another scheduler holds the lease, standing by")  # fmt: skip
        return ok

    def run(self, name: str, func: Callable[[Bot, datetime], Any], now: datetime | None = None) -> bool:
        now = now or self.bot.clock.now()
        if not self._leader(now):
            return False
        with self._guard:  # the 09:00 job and the minute scan may both reach run_greetings: one at a time
            if name in self._busy:
                log.info("job %s is still running; skipped this time", name)
                return True
            self._busy.add(name)
        try:
            func(self.bot, now)
            self.runs.append(name)
        except Exception:
            log.exception("scheduled job %s failed", name)
        finally:
            with self._guard:
                self._busy.discard(name)
        return True

    def scan(self) -> bool:
        """Every minute: greetings (no-op outside their window / once queued), reminders of every kind."""
        now = self.bot.clock.now()
        if not self._leader(now):
            return False
        for name, func in scan_jobs():
            self.run(name, func, now)
        return True

    def greetings(self) -> bool:
        from bot.calendar import holiday_data_warning
        from handlers.greetings import run_greetings

        warning = holiday_data_warning(self.bot.clock.today())
        if warning:  # the console shows it too; the log makes the scheduler's operators see it every morning
            log.warning(warning)
        return self.run("greetings", run_greetings)

    def group(self, name: str) -> bool:
        """Run one group of OPTIONAL_JOBS (hourly, daily, nightly)."""
        now = self.bot.clock.now()
        if not self._leader(now):
            return False
        for job_name, func in optional_jobs(name):
            self.run(job_name, func, now)
        return True

    def catch_up(self) -> bool:
        """At start-up: whatever is due and still meaningful now (each job applies its own catch-up rule):
        the minute scan, the hourly jobs, and the daily reminders when started between 08:30 and 20:00."""
        log.info("scheduler catch-up pass")
        if not self.scan():
            return False
        self.group("hourly")
        if DAILY_AT <= self.bot.clock.local_now().time() < DAILY_UNTIL:
            self.group("daily")
        return True

    def renew(self) -> bool:
        return self._leader(self.bot.clock.now())


def build_scheduler(app: Flask, holder: str | None = None, blocking: bool = True):
    """The scheduler with its jobs; `start()` it in the dedicated process (`flask --app app schedule run`)."""
    from handlers.greetings import Window
    from models.greeting import config, ensure_seeded

    bot: Bot = app.extensions["bot"]
    tz = ZoneInfo(bot.settings.TIMEZONE)
    with bot.db.transaction() as s:
        ensure_seeded(s)
        send = Window.of(config(s)).send
    runner = JobRunner(bot, holder)
    cls = BlockingScheduler if blocking else BackgroundScheduler
    sched = cls(
        timezone=tz,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": GREETING_GRACE},
    )
    sched.add_job(
        runner.greetings,
        CronTrigger(hour=send.hour, minute=send.minute, timezone=tz),
        id="greetings",
        name="daily greetings",
        misfire_grace_time=GREETING_GRACE,
        coalesce=True,
        max_instances=1,
    )
    sched.add_job(
        runner.scan,
        IntervalTrigger(minutes=1, timezone=tz),
        id="scan",
        name="reminder scan",
        misfire_grace_time=SCAN_GRACE,
        coalesce=True,
        max_instances=1,
    )
    for group, trigger, grace in (
        ("hourly", IntervalTrigger(hours=1, timezone=tz), 1800),
        ("daily", CronTrigger(hour=DAILY_AT.hour, minute=DAILY_AT.minute, timezone=tz), GREETING_GRACE),
        ("nightly", CronTrigger(hour=NIGHTLY_AT.hour, minute=NIGHTLY_AT.minute, timezone=tz), GREETING_GRACE),
    ):
        sched.add_job(
            runner.group,
            trigger,
            args=[group],
            id=group,
            name=f"{group} jobs",
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )
    sched.add_job(
        runner.renew,
        IntervalTrigger(seconds=RENEW_EVERY, timezone=tz),
        id="lease",
        name="lease renewal",
        misfire_grace_time=60,
        coalesce=True,
        max_instances=1,
    )
    sched.add_job(
        runner.catch_up,
        DateTrigger(run_date=datetime.now(tz), timezone=tz),
        id="catch_up",
        name="start-up catch-up",
        misfire_grace_time=GREETING_GRACE,
    )
    sched.runner = runner  # type: ignore[attr-defined]
    return sched
