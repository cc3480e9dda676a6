"""Flask CLI commands (`flask --app app ...`)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext


def register_cli(app: Flask) -> None:
    from cli import worker

    for group in (worker.db_cli, worker.worker_cli):
        app.cli.add_command(group)
    for extra in _extra_commands():
        if not isinstance(extra, click.Group) and not getattr(extra.callback, "_unionbot_ctx", False):
            extra.callback = with_appcontext(extra.callback)  # plain commands need the app too
            extra.callback._unionbot_ctx = True  # type: ignore[attr-defined]
        app.cli.add_command(extra)


def _extra_commands() -> list[click.Command | AppGroup]:
    """Commands contributed by feature packages; each module exposes `commands`."""
    import importlib
    import pkgutil

    import cli as pkg

    found: list[click.Command | AppGroup] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name == "worker":
            continue
        mod = importlib.import_module(f"cli.{info.name}")
        found.extend(getattr(mod, "commands", []))
    return found


def bot():
    return current_app.extensions["bot"]
