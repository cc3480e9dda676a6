"""The staff web console (server-rendered, Chinese)."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
