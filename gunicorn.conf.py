"""gunicorn settings for the web processes: `gunicorn -c gunicorn.conf.py "app:create_app()"`.

Workers share nothing but the database: access tokens, dedupe, dialogs and rate limits all live there.
The scheduler and the delivery worker are separate processes (see `flask --app app serve`).
Settings are checked here, in the master: a bad one stops gunicorn with one line naming it, before any worker boots.
In production (APP_ENV=production) gunicorn's own error and access logs are JSON lines like the app's.
"""

import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this project's packages, whatever the current folder

from config import ConfigError, load_settings  # noqa: E402

try:
    settings = load_settings()
except ConfigError as exc:
    raise SystemExit(f"union-bot: {exc.message}") from None

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "gthread"
timeout = 30  # platforms give us 3-5 s; a request stuck for 30 s is a bug, not load
graceful_timeout = 20
max_requests = 5000
max_requests_jitter = 500
control_socket_disable = True  # gunicornc is not used; one fixed socket path would be shared by every instance
loglevel = settings.LOG_LEVEL.lower()
accesslog = "-"
# The access log records paths and status only, never message bodies or query strings with user data.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'

if settings.APP_ENV == "production":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": settings.LOG_LEVEL, "handlers": []},  # the app puts its own JSON handler there
        "formatters": {
            "json": {"()": "bot.observability.JsonFormatter"},
            "access_json": {"()": "bot.observability.AccessJsonFormatter"},
        },
        "handlers": {
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "console": {"class": "logging.StreamHandler", "formatter": "access_json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "gunicorn.error": {"level": settings.LOG_LEVEL, "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }


def child_exit(server, worker):
    """Metrics of a dead worker are removed in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
