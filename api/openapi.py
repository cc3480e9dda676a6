"""The OpenAPI 3.1 document served at GET /api/v1/openapi.json, assembled from what each feature registers.

A feature module (api/<feature>.py) describes its endpoints next to their code:

    from api.openapi import error_responses, json_request, json_response, model_schemas, ref, register_paths

    register_paths(
        {
            "/activities": {
                "get": {
                    "summary": "活动列表",
                    "tags": ["activities"],
                    "x-permission": "activities.create",
                    "responses": {"200": json_response("ActivityList"), **error_responses(401, 403, 422)},
                },
            },
        },
        model_schemas(ActivityOut, ActivityList),
    )

Paths are relative to the server URL /api/v1 (write "/activities", not "/api/v1/activities").
"""

from __future__ import annotations

import copy
from typing import Any

from flask import jsonify
from pydantic import BaseModel

from api.core import MESSAGES, PREFIX, bp

INFO = {
    "title": "union-bot 集成接口",
    "version": "1.0.0",
    "description": (
        "供工会办公室的其他系统（OA、人事系统等）调用的 JSON 接口。\n\n"
        "认证：在请求头中带上 `Authorization: Bearer <令牌>`，令牌由管理员用 "
        "`flask --app app tokens create --name 名称 --role 角色` 生成；令牌的角色决定可调用的接口。\n\n"
        '错误：所有错误都返回 JSON `{"error": {"code": ..., "message": ...}}`，`code` 稳定不变，'
        "`message` 为中文说明；参数错误另有 `fields`（字段 → 说明）。"
    ),
}

_PATHS: dict[str, dict[str, Any]] = {}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "稳定的错误代码（见 x-error-codes）"},
                    "message": {"type": "string", "description": "中文说明"},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "validation_error 时：字段名 → 中文说明",
                    },
                },
                "additionalProperties": True,
            }
        },
    }
}
_RESPONSES = {
    400: ("BadRequest", "请求体不是有效的 JSON 对象（invalid_json）"),
    401: ("Unauthorized", "缺少令牌、令牌无效或已吊销（unauthorized）"),
    403: ("Forbidden", "令牌的角色没有该权限（forbidden）"),
    404: ("NotFound", "资源不存在（not_found）"),
    405: ("MethodNotAllowed", "不支持的请求方法（method_not_allowed）"),
    409: ("Conflict", "数据冲突，例如工号已存在（conflict）"),
    413: ("PayloadTooLarge", "请求体过大（payload_too_large）"),
    415: ("UnsupportedMediaType", "Content-Type 不对（unsupported_media_type）"),
    422: ("ValidationError", "参数校验失败（validation_error，见 fields）"),
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def register_paths(paths: dict[str, dict[str, Any]], schemas: dict[str, Any] | None = None) -> None:
    """Add path items (relative to /api/v1) and component schemas. Re-registering a method is an error."""
    for path, item in paths.items():
        if not path.startswith("/") or path.startswith(PREFIX):
            raise ValueError(f"OpenAPI paths are relative to {PREFIX}: got {path!r}")
        existing = _PATHS.setdefault(path, {})
        for method, operation in item.items():
            if method in HTTP_METHODS and method in existing and existing[method] != operation:
                raise ValueError(f"OpenAPI operation {method.upper()} {path} registered twice")
            existing[method] = operation
    for name, schema in (schemas or {}).items():
        if name in _SCHEMAS and _SCHEMAS[name] != schema:
            raise ValueError(f"OpenAPI schema {name!r} registered twice with different content")
        _SCHEMAS[name] = schema


def model_schemas(*models: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
    """JSON Schemas (2020-12, as OpenAPI 3.1 uses) of pydantic models, nested models hoisted to components."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_request(schema: str | dict[str, Any], description: str = "") -> dict[str, Any]:
    body = {"required": True, "content": {"application/json": {"schema": _schema(schema)}}}
    if description:
        body["description"] = description
    return body


def json_response(schema: str | dict[str, Any], description: str = "成功") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _schema(schema)}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    """Standard error responses, e.g. `**error_responses(401, 403, 404)`."""
    return {str(s): {"$ref": f"#/components/responses/{_RESPONSES[s][0]}"} for s in statuses}


def _schema(schema: str | dict[str, Any]) -> dict[str, Any]:
    return ref(schema) if isinstance(schema, str) else schema


def build_spec() -> dict[str, Any]:
    """The whole document (a fresh copy, safe to modify)."""
    responses = {
        name: {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
        for name, description in _RESPONSES.values()
    }
    schemas = copy.deepcopy(_SCHEMAS)
    schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"] = sorted(MESSAGES)
    spec = {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": PREFIX}],
        "security": [{"bearerAuth": []}],
        "paths": dict(sorted(_PATHS.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "由 `flask --app app tokens create` 生成的令牌（只显示一次）",
                }
            },
            "schemas": dict(sorted(schemas.items())),
            "responses": responses,
        },
        "x-error-codes": {code: MESSAGES[code] for code in sorted(MESSAGES)},
    }
    return copy.deepcopy(spec)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())


register_paths(
    {
        "/openapi.json": {
            "get": {
                "summary": "本接口的 OpenAPI 3.1 描述",
                "operationId": "getOpenApi",
                "tags": ["meta"],
                "security": [],
                "responses": {"200": {"description": "OpenAPI 文档", "content": {"application/json": {}}}},
            }
        }
    }
)
