"""The API blueprint and what every endpoint shares: bearer-token auth, JSON errors, body and query parsing.

A feature adds endpoints in its own module `api/<feature>.py` (imported automatically by `api.init_app`):

    from api.core import bp, json_body, query_args, require, transaction, ApiError

    @bp.get("/activities")
    @require("activities.create")
    def list_activities(): ...

Errors are always JSON: {"error": {"code": "<stable code>", "message": "<中文说明>", ...extra}}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import wraps
from typing import Annotated, Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import AfterValidator, BaseModel, BeforeValidator, StrictStr, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from bot.permissions import can
from models.staff import ApiToken

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

MAX_JSON_BYTES = 256 * 1024
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most once a minute per token

# code -> default Chinese message. Codes are part of the API contract: never rename one.
MESSAGES: dict[str, str] = {
    "bad_request": "请求有误",
    "unauthorized": "缺少或无效的访问令牌，请在请求头中带上 Authorization: Bearer <令牌>",
    "forbidden": "该令牌没有权限执行此操作",
    "not_found": "接口不存在，请检查地址",
    "method_not_allowed": "该地址不支持这种请求方法",
    "invalid_json": "请求体不是有效的 JSON 对象",
    "unsupported_media_type": "请求体格式不支持，请使用 Content-Type: application/json",
    "validation_error": "请求参数有误，请按 fields 中的说明修改",
    "conflict": "数据冲突",
    "payload_too_large": "请求体过大",
    "import_invalid": "名册有错误，未导入任何数据，请按 errors 修改后重新导入",
    "internal_error": "服务器内部错误，请稍后再试",
}
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
}


def register_error_code(code: str, message: str) -> None:
    """Add a feature's error code (e.g. "activity_full") with its default Chinese message."""
    if MESSAGES.get(code, message) != message:
        raise ValueError(f"error code {code!r} already registered with another message")
    MESSAGES[code] = message


class ApiError(Exception):
    """Raise anywhere inside an API view to answer with a JSON error."""

    def __init__(self, status: int, code: str, message: str | None = None, **extra: Any):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.extra = extra

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, **self.extra)


def error_response(status: int, code: str, message: str | None = None, **extra: Any) -> Response:
    resp = jsonify(error={"code": code, "message": message or MESSAGES.get(code, code), **extra})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="union-bot"'
    return resp


def validation_error(fields: dict[str, str], message: str | None = None) -> ApiError:
    return ApiError(422, "validation_error", message, fields=fields)


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers.setdefault("Cache-Control", "no-store")  # member data must not sit in shared caches
    return resp


# errors ------------------------------------------------------------------------------------------------------
@bp.errorhandler(ApiError)
def _api_error(e: ApiError):
    return e.response()


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException):
    if e.code is not None and e.code < 400:
        return e  # redirects pass through
    status = e.code or 500
    return error_response(
        status, STATUS_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    )


@bp.errorhandler(500)
def _server_error(e):
    # Only reached when exceptions do not propagate (not in tests): an unexpected bug, answered as JSON.
    return error_response(500, "internal_error")


def json_routing_errors() -> Response | None:
    """App-wide before_request hook: 404/405 for unknown addresses under /api/ answer in JSON.

    Routing failures have no blueprint, so blueprint error handlers never see them; an app-level hook that
    only looks at /api/ leaves the console's and other pages' own error pages alone.
    """
    exc = request.routing_exception
    if exc is None or not request.path.startswith("/api/"):
        return None
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code >= 400:
        resp = error_response(exc.code, STATUS_CODES.get(exc.code, "bad_request"))
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                resp.headers["Allow"] = value
        return resp
    return None


# database ----------------------------------------------------------------------------------------------------
def db():
    return current_app.extensions["db"]


def clock():
    return current_app.extensions["bot"].clock


@contextmanager
def transaction() -> Iterator[Session]:
    """The request's unit of work: commits on success, rolls back on any exception (ApiError included)."""
    with db().transaction() as session:
        yield session


# authentication ----------------------------------------------------------------------------------------------
_BEARER = re.compile(r"^Bearer[ ]+([A-Za-z0-9._~+/=-]{16,512})[ ]*$", re.IGNORECASE)

F = TypeVar("F", bound=Callable[..., Any])


def authenticate() -> ApiToken:
    """The active token named by the Authorization header (looked up by its sha256), or 401."""
    match = _BEARER.match(request.headers.get("Authorization", ""))
    if not match:
        raise ApiError(401, "unauthorized")
    digest = ApiToken.hash(match.group(1))
    now = clock().now()
    with transaction() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if token is None or not token.active:
            raise ApiError(401, "unauthorized")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            token.last_used_at = now
    return token


def require(*permissions: str) -> Callable[[F], F]:
    """Decorator: a valid bearer token whose role holds every one of `permissions` (401 / 403 otherwise).

    The token is available as `g.api_token` (and `g.api_roles`, the set of its roles).
    """

    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args, **kwargs):
            token = authenticate()
            g.api_token = token
            g.api_roles = {token.role}
            for permission in permissions:
                if not can(g.api_roles, permission):
                    raise ApiError(403, "forbidden")
            return fn(*args, **kwargs)

        wrapper.api_permissions = permissions  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def token_can(permission: str) -> bool:
    return can(g.get("api_roles", ()), permission)


# parsing -----------------------------------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _no_control(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("不能包含控制字符")
    return v


def _empty_to_none(v: str | None) -> str | None:
    return v or None


def Text(max_length: int, *, min_length: int = 1, pattern: str | None = None) -> Any:  # noqa: N802
    """A required string: must be a JSON string, stripped, no control characters, length-limited."""
    return Annotated[
        StrictStr,
        StringConstraints(
            strip_whitespace=True, min_length=min_length, max_length=max_length, pattern=pattern
        ),
        AfterValidator(_no_control),
    ]


def OptionalText(max_length: int, *, pattern: str | None = None) -> Any:  # noqa: N802
    """An optional string: like `Text`, but "" and null both mean "none"."""
    return Annotated[Text(max_length, min_length=0, pattern=pattern) | None, AfterValidator(_empty_to_none)]


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(v: Any) -> Any:
    if isinstance(v, date):
        return v
    if not isinstance(v, str) or not _ISO_DATE.match(v):
        raise ValueError("日期格式应为 YYYY-MM-DD，例如 1985-03-08")
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise ValueError("日期不存在，请检查年月日") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

_TYPE_MESSAGES = {
    "missing": "必填",
    "extra_forbidden": "不支持的字段",
    "string_type": "应为字符串",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "date_type": "日期格式应为 YYYY-MM-DD",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD",
    "none_required": "应为 null",
    "string_pattern_mismatch": "格式不正确",
    "string_unicode": "包含无效字符",
}


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind.endswith("_type") and "input" in err and err["input"] is None:
        return "不能为 null"
    if kind == "value_error":
        return str(ctx.get("error", "格式不正确"))
    if kind == "string_too_short":
        return "不能为空" if ctx.get("min_length") == 1 else f"至少 {ctx.get('min_length')} 个字符"
    if kind == "string_too_long":
        return f"不能超过 {ctx.get('max_length')} 个字符"
    if kind == "too_long":
        return f"最多 {ctx.get('max_length')} 项"
    if kind in ("greater_than_equal", "greater_than"):
        return f"应不小于 {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"应不大于 {ctx.get('le', ctx.get('lt'))}"
    if kind == "literal_error":
        return f"可选值：{ctx.get('expected', '')}"
    return _TYPE_MESSAGES.get(kind, "格式不正确")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {"field": "中文说明"}; nested locations are reported on their top-level field."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        # Drop union/function branch names pydantic inserts into locations (e.g. "str", "function-after[...]").
        key = next((p for p in loc if not p.startswith(("function-", "union[")) and p not in ("str",)), "")
        fields.setdefault(key or "body", _message(err))
    return fields


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(field_errors(exc)) from None
    except RecursionError:
        raise ApiError(400, "invalid_json") from None


def json_body(model: type[M]) -> M:
    """The request body validated against `model` (415 / 413 / 400 / 422 as JSON on bad input)."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "payload_too_large")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, "payload_too_large")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", '请求体应为 JSON 对象，例如 {"name": "张三"}')
    return validate(model, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def query_args(model: type[M]) -> M:
    """Query-string parameters validated against `model` (unknown parameters are refused)."""
    data = {key: request.args.get(key) for key in request.args}
    return validate(model, data)
