"""The development server's background work: the delivery loop and the scheduler, in threads of `python app.py`.

Production runs them as their own processes (`flask --app app worker run`, `flask --app app schedule run`, or all
three with `serve`). For a newcomer trying the sandbox, `python app.py` (what scripts/run.sh starts) runs them
beside the web server, so scheduled pushes (greetings, reminders) arrive on the page. The scheduler takes the same
database lease as the scheduler process, so one started beside it never runs a job twice.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from bot import outbox

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)


class DevRunner:
    """`start()` / `stop()` the threads; `deliver_step()` and `schedule_step()` are one pass of each."""

    def __init__(self, app: Flask, interval: float = 1.0):
        from bot.scheduler import build_scheduler

        self.bot = app.extensions["bot"]
        self.interval = interval
        self.scheduler = build_scheduler(app, blocking=False)  # the production jobs, triggers and lease
        self.jobs = self.scheduler.runner
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._deliver_loop, name="delivery", daemon=True)

    def deliver_step(self) -> int:
        """What the worker process does in one pass: deferred inbound work, then the due outbox rows."""
        return self.bot.process_pending() + outbox.deliver_due(self.bot)

    def schedule_step(self) -> bool:
        """The scheduler's minute scan (greetings, reminders); False when another scheduler holds the lease."""
        return self.jobs.scan()

    def start(self) -> None:
        self.scheduler.start()
        self._thread.start()
        log.info("development server: delivery loop and scheduler running in the background")

    def stop(self) -> None:
        self._stopping.set()
        self.scheduler.shutdown(wait=False)
        self._thread.join(timeout=10)
        self.jobs.lease.release()

    def _deliver_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.deliver_step()
            except DBAPIError as exc:  # the database is away for a moment: try again later
                log.warning("delivery loop: database unavailable (%s)", type(exc).__name__)
                worked = 0
            if not worked:
                self._stopping.wait(self.interval)
