"""`flask --app app schedule run` for the fault tests, with a short lease from the environment.

- FAULTS_LEASE_SECONDS: the scheduler lease (production: 3 minutes) and FAULTS_RENEW_SECONDS: how often the holder
  renews it and a standby tries to take it (production: 30 s), so a killed scheduler is replaced in seconds.

Everything else is the real command: `python tests/faults_scheduler.py [schedule run options]`.
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

    from bot import scheduler

    scheduler.LEASE_TTL = timedelta(seconds=float(os.environ.get("FAULTS_LEASE_SECONDS", "180")))
    scheduler.RENEW_EVERY = float(os.environ.get("FAULTS_RENEW_SECONDS", "30"))
    sys.argv = ["flask", "--app", "app", "schedule", "run", *sys.argv[1:]]
    flask_main()


if __name__ == "__main__":
    main()
