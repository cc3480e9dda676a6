"""gunicorn settings for the web processes: `gunicorn -c gunicorn.conf.py "app:create_app()"`.

Workers share nothing but the database: access tokens, dedupe, dialogs and rate limits all live there.
The scheduler and the delivery worker are separate processes (see `flask --app app serve`).
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "gthread"
timeout = 30  # platforms give us 3-5 s; a request stuck for 30 s is a bug, not load
graceful_timeout = 20
max_requests = 5000
max_requests_jitter = 500
accesslog = "-"
# The access log records paths and status only, never message bodies or query strings with user data.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'


def child_exit(server, worker):
    """Metrics of a dead worker are removed in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
