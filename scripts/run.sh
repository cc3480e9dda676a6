#!/usr/bin/env bash
# Install everything into .venv, create the SQLite database with demo data, and start the bot with the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
export FLASK_APP=app
.venv/bin/flask --app app db upgrade
.venv/bin/flask --app app demo --if-empty
echo
echo "union-bot 已启动：试用沙盒 http://127.0.0.1:5000/sandbox/ ，管理控制台 http://127.0.0.1:5000/admin/ （账号 admin、chair、clerk、leader、dept，密码都是 demo12345）"
exec .venv/bin/python app.py  # web + delivery loop + scheduler (threads), so scheduled pushes reach the sandbox
