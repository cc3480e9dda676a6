"""Integration JSON API under /api/v1 for the union's other systems."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
