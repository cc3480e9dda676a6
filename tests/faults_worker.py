"""`flask --app app worker run` for the fault tests, with two test-only knobs from the environment.

- FAULTS_LEASE_SECONDS: the outbox lease (production: 2 minutes), so a killed worker's rows are taken over in
  seconds, not minutes.
- FAULTS_FEISHU_UNLIMITED=1: lifts the app-wide Feishu quota (1,000 sends a minute) the sender keeps on its own
  side, so a 10,000-message fan-out to the fake server does not take ten minutes. Per-recipient limits stay.

Everything else is the real command: `python tests/faults_worker.py [worker run options]`.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from flask.cli import main as flask_main

    from bot import outbox
    from bot.adapters import feishu_api

    lease = os.environ.get("FAULTS_LEASE_SECONDS")
    if lease:
        outbox.LEASE = timedelta(seconds=float(lease))
    if os.environ.get("FAULTS_FEISHU_UNLIMITED") == "1":
        feishu_api.LIMITS = (("app:s", 10**9, 1), ("app:m", 10**9, 60))
    sys.argv = ["flask", "--app", "app", "worker", "run", *sys.argv[1:]]
    flask_main()


if __name__ == "__main__":
    main()
