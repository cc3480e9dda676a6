#!/usr/bin/env bash
# Install what the tests need into .venv and run the whole suite (PostgreSQL tests run when TEST_POSTGRES_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 2 -rs "$@"
