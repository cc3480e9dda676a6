"""Integration JSON API under /api/v1 for the union's other systems (OA, HR).

Every module of this package is imported by `init_app`, so a feature adds its endpoints simply by creating
`api/<feature>.py` that uses `api.core.bp` and calls `api.openapi.register_paths` (see api/openapi.py).
"""

from __future__ import annotations

import importlib
import pkgutil

from flask import Flask


def load_modules() -> None:
    """Import every module of the package (each adds its routes to the blueprint and its OpenAPI entries)."""
    import api as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        importlib.import_module(f"api.{info.name}")


def init_app(app: Flask) -> None:
    load_modules()
    from api.core import bp, json_routing_errors

    app.register_blueprint(bp)
    app.before_request(json_routing_errors)
