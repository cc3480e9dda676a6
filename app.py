"""union-bot web application: `create_app()` wires settings, database, bot core, adapters and pages.

`python app.py` starts a development server on http://127.0.0.1:5000 (the sandbox chat is at /sandbox), with the
delivery loop and the scheduler in background threads, so scheduled pushes reach the sandbox too.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from flask import Flask, redirect, url_for
from werkzeug.routing import IntegerConverter

from bot import observability
from bot.adapters import sandbox
from bot.clock import Clock
from bot.core import Bot
from config import INSTANCE, ConfigError, load_settings
from handlers import router
from models import Database


def create_app(overrides: dict[str, Any] | None = None, clock: Clock | None = None) -> Flask:
    settings = load_settings(overrides)
    observability.configure_logging(settings.LOG_LEVEL, json_logs=settings.APP_ENV == "production")
    app = Flask(__name__, instance_path=str(INSTANCE))
    app.url_map.converters["int"] = RowIdConverter
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.APP_ENV == "production",
        MAX_CONTENT_LENGTH=5 * 1024 * 1024,
        TESTING=settings.APP_ENV == "test",
    )
    app.json.ensure_ascii = False  # Chinese stays readable in JSON answers
    if settings.DATABASE_URL.startswith("sqlite:///"):
        INSTANCE.mkdir(exist_ok=True)
    db = Database(settings.DATABASE_URL)
    bot = Bot(settings, db, router, clock or Clock(settings.tz))
    app.extensions["bot"] = bot
    app.extensions["db"] = db

    observability.init_app(app, db)
    if settings.SANDBOX_ENABLED:  # off in production: no page, and no member's push can land in the sandbox
        bot.senders["sandbox"] = sandbox.SandboxSender(db)
        app.register_blueprint(sandbox.bp)
    _register_optional(app)

    @app.get("/")
    def index():
        return redirect(url_for("sandbox.page") if settings.SANDBOX_ENABLED else "/admin/")

    from cli import register_cli

    register_cli(app)
    return app


class RowIdConverter(IntegerConverter):
    """`<int:id>` in every route: an id the database cannot hold (≥ 2^63) is a 404, not a driver OverflowError."""

    def __init__(self, map, *args, **kwargs):  # noqa: A002  (werkzeug's signature)
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def _register_optional(app: Flask) -> None:
    """Blueprints of the console, the API and the platforms (each registers itself if configured)."""
    from admin import init_app as init_admin
    from api import init_app as init_api

    init_admin(app)
    init_api(app)
    from bot.adapters import wecom  # WeCom: /wecom/callback, /wecom/aibot, sender (only when configured)

    wecom.init_app(app, app.extensions["bot"])
    from bot.adapters import feishu  # Feishu: /feishu/events and the sender (only when configured)

    feishu.init_app(app, app.extensions["bot"])


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def warn_if_exposed(app: Flask, host: str) -> bool:
    """The sandbox lets whoever reaches it act as any member: a log line when it listens beyond this machine."""
    if not app.extensions["bot"].settings.SANDBOX_ENABLED or host in LOOPBACK:
        return False
    logging.getLogger("union_bot").warning(
        "the sandbox is enabled and the server listens on %s: anyone who can reach it can act as any member "
        "(listen on 127.0.0.1, or set SANDBOX_ENABLED=false)",
        host,
    )
    return True


def main() -> None:
    """The development server (scripts/run.sh); a bad setting is one line on stderr, not a traceback.
    HOST (default 127.0.0.1) is where it listens."""
    from bot.background import DevRunner

    try:
        app = create_app()
    except ConfigError as exc:
        sys.exit(f"union-bot: {exc.message}")
    host = os.environ.get("HOST", "127.0.0.1")
    warn_if_exposed(app, host)
    runner = DevRunner(app)
    runner.start()
    try:
        app.run(host=host, port=5000, debug=False)
    finally:
        runner.stop()


if __name__ == "__main__":
    main()
