"""Prometheus metrics, JSON logs with a request id, and the health/readiness endpoints.

Labels are platform, handler name and platform error code only: never a member, a chat or message text.

Several processes (gunicorn workers, the delivery worker) count into one /metrics through prometheus_client's
multiprocess mode: every process of one machine gets the same PROMETHEUS_MULTIPROC_DIR (set by `serve`, the Procfile
and the systemd units), writes its counters there, and /metrics sums them. The folder must be emptied when the
whole service starts (`serve` and systemd's RuntimeDirectory do it). Gauges are read from the database at scrape
time instead, so every process reports the same truth.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping

from flask import Flask, Response, g, has_request_context, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text

MESSAGES = Counter("unionbot_messages_received_total", "Inbound messages processed", ["platform", "handler"])
HANDLER_SECONDS = Histogram(
    "unionbot_handler_seconds", "Time to handle one inbound message (commit included)", ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DELIVERY_FAILURES = Counter("unionbot_delivery_failures_total", "Failed delivery attempts", ["platform", "code"])
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)  # before the first labelled value opens its file there


class DatabaseCollector:
    """Gauges read from the database at scrape time, so every process reports the same truth."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        from models.messaging import OutboxMessage

        depth = GaugeMetricFamily("unionbot_outbox_depth", "Outbox rows by status", labels=["status"])
        with self.db.Session() as s:
            shown = ("pending", "sending", "dead")  # not the years of sent rows: a scrape stays cheap
            counts = dict(
                s.execute(
                    select(OutboxMessage.status, func.count())
                    .where(OutboxMessage.status.in_(shown))
                    .group_by(OutboxMessage.status)
                ).all()
            )
            for status in shown:
                depth.add_metric([status], counts.get(status, 0))
            yield depth
            yield self._scheduler_last_run(s)

    @staticmethod
    def _scheduler_last_run(s) -> GaugeMetricFamily:
        """Every job run and the 30-second renewal push the lease's expiry to now + LEASE_TTL, so expiry - TTL is
        the active scheduler's last run. No sample when no scheduler holds the lease (never ran, or stopped)."""
        from bot.scheduler import EPOCH, LEASE_NAME, LEASE_TTL
        from models.greeting import SchedulerLease

        last = GaugeMetricFamily(
            "unionbot_scheduler_last_run_timestamp", "When the active scheduler last ran a job (unix time)"
        )
        expires = s.scalar(
            select(SchedulerLease.expires_at).where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder != "")
        )
        if expires is not None and expires > EPOCH:
            last.add_metric([], (expires - LEASE_TTL).timestamp())
        return last


class JsonFormatter(logging.Formatter):
    """One JSON object per line; inside a request it carries the request id (X-Request-Id)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context():
            data["request_id"] = getattr(g, "request_id", None)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access log as JSON (gunicorn.conf.py in production). The path is logged without its query string,
    which may carry user data."""

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        duration = atoms.get("L")
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": atoms.get("s"),
            "bytes": atoms.get("B"),
            "seconds": float(duration) if duration else None,
            "remote": atoms.get("h"),
            "request_id": atoms.get("{x-request-id}o"),
        }
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str, json_logs: bool) -> None:
    """One handler on the root logger; a later call (another app in the same process) sets its format again."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_unionbot", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._unionbot = True  # type: ignore[attr-defined]
        root.handlers[:] = [handler]
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if json_logs else plain)
    root.setLevel(level)


def init_app(app: Flask, db) -> None:
    registry = CollectorRegistry()
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in (MESSAGES, HANDLER_SECONDS, DELIVERY_FAILURES):
            registry.register(metric)
    registry.register(DatabaseCollector(db))

    @app.before_request
    def _request_id():
        rid = request.headers.get("X-Request-Id", "")
        g.request_id = rid if 0 < len(rid) <= 64 and rid.isprintable() else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(resp):
        resp.headers["X-Request-Id"] = getattr(g, "request_id", "")
        return resp

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz():
        """Liveness, with a database round trip."""
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return jsonify(status="error", database="unreachable"), 503
        return jsonify(status="ok", database="ok")

    @app.get("/readyz")
    def readyz():
        """Ready to take traffic: the database answers and its schema is at the newest migration."""
        from migrations import current_matches_head

        try:
            current = current_matches_head(db.engine)
        except Exception:
            return jsonify(status="error", database="unreachable"), 503
        if not current:
            return jsonify(status="error", migrations="pending: run flask --app app db upgrade"), 503
        return jsonify(status="ok", migrations="current")
