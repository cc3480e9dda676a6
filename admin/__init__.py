"""The staff web console (server-rendered, Chinese) under /admin.

Other features add console pages with their own blueprint and a nav entry::

    from admin import console_blueprint, nav, require

    bp = console_blueprint("activities_admin", __name__, url_prefix="/admin/activities")
    nav.register("活动管理", "activities_admin.index", "activities.create", order=30)

    @bp.get("/")
    @require("activities.create")
    def index():
        return render_template("activities_admin/index.html")   # {% extends "admin/base.html" %}

    def init_app(app):
        app.register_blueprint(bp)

`console_blueprint` makes every view need a logged-in staff account and checks the CSRF token on every POST
(forms include `<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">`); `require(permission)`
checks `bot.permissions.can`. `current_staff()` is the logged-in account (id, username, display_name, roles).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from bot.permissions import PERMISSIONS, can

CSRF_FIELD = "csrf_token"
SESSION_STAFF = "staff_id"
SESSION_CSRF = "csrf_token"
SESSION_MAX_AGE = 12 * 3600


# ---------------------------------------------------------------------------------------------- navigation
@dataclass(frozen=True)
class NavEntry:
    label: str
    endpoint: str
    permission: str
    order: int = 100
    # extra endpoints (exact, or a prefix ending in ".") for which this entry is highlighted
    match: tuple[str, ...] = ()


@dataclass
class Nav:
    """The console's left navigation. Entries are shown when their endpoint exists in the app and the
    logged-in account holds the permission. Registering the same endpoint twice replaces the entry."""

    entries: dict[str, NavEntry] = field(default_factory=dict)

    def register(
        self, label: str, endpoint: str, permission: str, *, order: int = 100, match: tuple[str, ...] = ()
    ) -> NavEntry:
        if permission not in PERMISSIONS:
            raise KeyError(f"unknown permission {permission!r} (add it to bot/permissions.py)")
        entry = NavEntry(label, endpoint, permission, order, tuple(match))
        self.entries[endpoint] = entry
        return entry

    def visible(self, roles: set[str], app: Flask | None = None) -> list[NavEntry]:
        app = app or current_app
        return sorted(
            (
                e
                for e in self.entries.values()
                if e.endpoint in app.view_functions and can(roles, e.permission)
            ),
            key=lambda e: (e.order, e.label),
        )

    @staticmethod
    def is_active(entry: NavEntry, endpoint: str | None) -> bool:
        if not endpoint:
            return False
        if endpoint == entry.endpoint:
            return True
        for m in entry.match:
            if endpoint == m or (m.endswith(".") and endpoint.startswith(m)):
                return True
        # a page of another feature's blueprint highlights that blueprint's entry
        bp_name = entry.endpoint.rpartition(".")[0]
        return bp_name not in ("", "admin") and endpoint.startswith(bp_name + ".")


nav = Nav()


# ----------------------------------------------------------------------------------------- the staff user
@dataclass(frozen=True)
class Staff:
    id: int
    username: str
    display_name: str
    roles: frozenset[str]

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def can(self, permission: str) -> bool:
        return can(self.roles, permission)


def current_staff() -> Staff | None:
    """The logged-in staff account of this request (loaded once per request), or None."""
    if "admin_staff" not in g:
        g.admin_staff = _load_staff()
    return g.admin_staff


def _load_staff() -> Staff | None:
    staff_id = session.get(SESSION_STAFF)
    if not isinstance(staff_id, int):
        return None
    logged_in_at = session.get("staff_at")
    now = current_app.extensions["bot"].clock.now().timestamp()
    if not isinstance(logged_in_at, (int, float)) or not 0 <= now - logged_in_at < SESSION_MAX_AGE:
        return None  # log in again every working day
    from models.staff import StaffAccount

    with current_app.extensions["db"].Session() as s:
        acc = s.get(StaffAccount, staff_id)
        if acc is None or not acc.active or password_stamp(acc.password_hash) != session.get("staff_pw"):
            return None
        roles = frozenset(acc.roles)
        if not can(roles, "console.login"):
            return None
        return Staff(acc.id, acc.username, acc.display_name, roles)


def password_stamp(password_hash: str) -> str:
    """Kept in the session: changing the password logs out every other session of the account."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- CSRF
def csrf_token() -> str:
    token = session.get(SESSION_CSRF)
    if not token:
        token = session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Abort with 400 unless the POST carries this session's token (form field or X-CSRF-Token header)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(SESSION_CSRF)
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    if not expected or not hmac.compare_digest(str(expected), str(sent)):
        abort(400, description="安全校验失败：页面可能已过期。请刷新页面后重新提交。")


# ------------------------------------------------------------------------------------------ access guards
def _guard() -> Any:
    """before_request of every console blueprint: CSRF on POST, then a logged-in staff account."""
    check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS or (request.endpoint or "").endswith(".static"):
        return None
    if current_staff() is None:
        session.pop(SESSION_STAFF, None)
        nxt = request.full_path if request.method == "GET" else None
        return redirect(url_for("admin.login", next=nxt.rstrip("?") if nxt else None))
    return None


PUBLIC_ENDPOINTS = {"admin.login"}


def protect(bp: Blueprint) -> Blueprint:
    """Make every view of `bp` need a logged-in staff account and a CSRF token on POST."""
    bp.before_request(_guard)
    bp.after_request(_security_headers)
    for code in (400, 403, 404, 405, 413):
        bp.register_error_handler(code, _console_error)
    return bp


def console_blueprint(name: str, import_name: str, **kwargs: Any) -> Blueprint:
    """A Blueprint for console pages (templates in `templates/` beside the module), already protected."""
    kwargs.setdefault("template_folder", "templates")
    return protect(Blueprint(name, import_name, **kwargs))


def require(permission: str) -> Callable:
    """View decorator: 403 page unless the logged-in account holds `permission`."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def deco(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            staff = current_staff()
            if staff is None:
                return redirect(url_for("admin.login"))
            if not staff.can(permission):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return deco


def _security_headers(resp):
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


# ----------------------------------------------------------------------------------------- template helpers
def local_time(dt: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Jinja filter `local`: an aware UTC datetime shown in the union's zone (Asia/Shanghai)."""
    if dt is None or dt == "":
        return ""
    if not hasattr(dt, "astimezone"):
        return str(dt)
    return current_app.extensions["bot"].clock.local(dt).strftime(fmt)


def _template_context() -> dict[str, Any]:
    staff = current_staff() if SESSION_STAFF in session else None
    entries = nav.visible(set(staff.roles)) if staff else []
    return {
        "csrf_token": csrf_token,
        "current_staff": staff,
        "nav_entries": entries,
        "nav_active": Nav.is_active,
        "union_name": current_app.extensions["bot"].settings.UNION_NAME,
        "bot_name": current_app.extensions["bot"].settings.BOT_NAME,
    }


def init_app(app: Flask) -> None:
    from admin.views import bp

    if "admin" in app.blueprints:
        return
    app.register_blueprint(bp)
    app.add_template_filter(local_time, "local")
    app.context_processor(_template_context)
    from admin.activities import init_app as init_activities  # issue 5: 活动报名 pages

    init_activities(app)
    from admin.proposals import init_app as init_proposals  # issue 6: 提案 pages

    init_proposals(app)
    from admin.cases import init_app as init_cases  # issue 7: 帮扶与关怀 pages

    init_cases(app)
    from admin.meetings import init_app as init_meetings  # issue 8: 会议 pages

    init_meetings(app)
    from admin.chats import init_app as init_chats  # issue 4: 企业微信群 and their webhooks

    init_chats(app)
    from admin.greetings import init_app as init_greetings  # issue 8: 生日与节日祝福 pages

    init_greetings(app)
    from admin.outbox import init_app as init_outbox  # dead letters and retries (消息发送)

    init_outbox(app)


def _console_error(err: HTTPException):
    """Error pages of console blueprints, in Chinese and inside the console layout."""
    titles = {400: "请求无效", 403: "没有权限", 404: "页面不存在", 405: "请求无效", 413: "文件太大"}
    messages = {
        403: "你的账号没有权限查看或修改这里的内容。如需开通，请联系工会办公室管理员。",
        404: "没有找到这个页面或记录。请从左侧菜单重新进入。",
        405: "请求方式不对。请从页面上的按钮操作。",
        413: "上传的文件太大（上限 5 MB）。请拆分名单后分批导入。",
    }
    message = messages.get(err.code)
    if message is None:
        # our own abort(400, description="…") carries a Chinese message; werkzeug's default is English
        custom = err.description != type(err).description
        message = err.description if custom else "请求无效，请返回上一页后重试。"
    return render_template("admin/error.html", title=titles[err.code], message=message), err.code
