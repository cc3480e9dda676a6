"""Prometheus metrics, JSON logs with a request id, and the health/readiness endpoints.

Labels are platform, handler name and platform error code only: never a member, a chat or message text.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

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


class DatabaseCollector:
    """Gauges read from the database at scrape time, so every process reports the same truth."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        from models.messaging import OutboxMessage

        depth = GaugeMetricFamily("unionbot_outbox_depth", "Outbox rows by status", labels=["status"])
        with self.db.Session() as s:
            for status, n in s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)):
                depth.add_metric([status], n)
            yield depth
            last = GaugeMetricFamily("unionbot_scheduler_last_run_timestamp", "Last scheduler heartbeat (unix time)")
            try:
                value = s.execute(text("SELECT max(renewed_at) FROM scheduler_lease")).scalar()
            except Exception:
                value = None
            if value is not None:
                last.add_metric([], value.timestamp() if hasattr(value, "timestamp") else 0)
            yield last


class JsonFormatter(logging.Formatter):
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


def configure_logging(level: str, json_logs: bool) -> None:
    root = logging.getLogger()
    if getattr(root, "_unionbot", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(level)
    root._unionbot = True  # type: ignore[attr-defined]


def init_app(app: Flask, db) -> None:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
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
