"""Members over the API: list / get / create / update, and the roster import (会员名册导入)."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from flask import g, jsonify, request, url_for
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.core import (
    MESSAGES,
    ApiError,
    IsoDate,
    OptionalText,
    Text,
    bp,
    clock,
    db,
    json_body,
    query_args,
    require,
    token_can,
    transaction,
    validation_error,
)
from api.openapi import error_responses, json_request, json_response, model_schemas, ref, register_paths
from models.member import ROLES, Branch, Group, Member

log = logging.getLogger(__name__)
MEMBER_NOT_FOUND = "未找到该会员，请检查工号"

Role = Literal[ROLES]  # type: ignore[valid-type]


def _no_spaces(v: str) -> str:
    if re.search(r"\s", v):
        raise ValueError("工号不能包含空格")
    return v


def _phone_chars(v: str | None) -> str | None:
    if v is not None and not re.fullmatch(r"[0-9+\-() ]+", v):
        raise ValueError("电话只能包含数字、+、-、括号和空格")
    return v


EmployeeNo = Annotated[Text(32), AfterValidator(_no_spaces)]
Phone = Annotated[OptionalText(20), AfterValidator(_phone_chars)]
LunarMonth = Annotated[StrictInt, Field(ge=1, le=12)]
LunarDay = Annotated[StrictInt, Field(ge=1, le=30)]
CHILDREN = "有子女（六一儿童节祝福的对象）；null = 不清楚（不发）"


def normalize_employee_no(value: str) -> str:
    """As the roster import stores it: trimmed, ASCII letters upper-cased."""
    value = value.strip()
    return value.upper() if value.isascii() else value


# schemas -----------------------------------------------------------------------------------------------------
class MemberCreate(BaseModel):
    """A new member. Only employee_no and name are required."""

    model_config = ConfigDict(extra="forbid")

    employee_no: EmployeeNo = Field(description="工号（唯一；英文字母存为大写）")
    name: Text(50) = Field(description="姓名")
    branch: OptionalText(100) = Field(None, description="分会名称（不存在时自动创建）")
    group: OptionalText(100) = Field(None, description="小组名称（属于 branch；不存在时自动创建）")
    phone: Phone = Field(None, description="手机或电话")
    gender: Literal["男", "女"] | None = Field(None, description="性别")
    job_title: OptionalText(50) = Field(None, description="岗位")
    birthday: IsoDate | None = Field(None, description="公历出生日期 YYYY-MM-DD")
    birthday_is_lunar: StrictBool = Field(False, description="是否过农历生日")
    lunar_birth_month: LunarMonth | None = Field(None, description="农历生日月（1–12）")
    lunar_birth_day: LunarDay | None = Field(None, description="农历生日日（1–30）")
    lunar_birth_leap: StrictBool = Field(False, description="农历生日是否在闰月")
    retired: StrictBool = Field(False, description="离退休")
    is_delegate: StrictBool = Field(False, description="职工代表")
    greeting_opt_out: StrictBool = Field(False, description="不接收生日/节日祝福")
    has_children: StrictBool | None = Field(None, description=CHILDREN)
    active: StrictBool = Field(True, description="在册（false = 已停用）")
    roles: list[Role] = Field(default_factory=list, max_length=len(ROLES), description="角色代码")


class MemberUpdate(BaseModel):
    """Fields to change; absent fields stay as they are. null clears an optional field."""

    model_config = ConfigDict(extra="forbid")

    # Non-nullable fields default to None only to mean "absent": an explicit null is refused by their type.
    employee_no: EmployeeNo = Field(None, description="新工号")
    name: Text(50) = Field(None, description="姓名")
    branch: OptionalText(100) = Field(None, description="分会名称；null = 无分会（同时清空小组）")
    group: OptionalText(100) = Field(None, description="小组名称；null = 无小组")
    phone: Phone = None
    gender: Literal["男", "女"] | None = None
    job_title: OptionalText(50) = None
    birthday: IsoDate | None = None
    birthday_is_lunar: StrictBool = Field(None, description="false 同时清空农历月日")
    lunar_birth_month: LunarMonth | None = None
    lunar_birth_day: LunarDay | None = None
    lunar_birth_leap: StrictBool = None
    retired: StrictBool = None
    is_delegate: StrictBool = None
    greeting_opt_out: StrictBool = None
    has_children: StrictBool | None = Field(None, description=CHILDREN)
    active: StrictBool = None
    roles: list[Role] = Field(None, max_length=len(ROLES), description="完整的角色列表（替换原有角色）")


class MemberOut(BaseModel):
    """A member as the API returns it."""

    model_config = ConfigDict(extra="forbid")

    employee_no: str
    name: str
    branch: str | None
    group: str | None
    phone: str | None
    gender: Literal["男", "女"] | None
    job_title: str | None
    birthday: date | None
    birthday_is_lunar: bool
    lunar_birth_month: int | None
    lunar_birth_day: int | None
    lunar_birth_leap: bool
    retired: bool
    is_delegate: bool
    greeting_opt_out: bool
    has_children: bool | None = Field(description=CHILDREN)
    active: bool
    roles: list[Role] = Field(description="角色代码，总是包含 member")
    updated_at: datetime | None = Field(description="最后修改时间（UTC）")


class MemberList(BaseModel):
    items: list[MemberOut]
    total: int = Field(description="符合条件的总数")
    page: int
    per_page: int


class MemberQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: OptionalText(50) = None
    branch: OptionalText(100) = None
    group: OptionalText(100) = None
    active: bool | None = None
    retired: bool | None = None
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(50, ge=1, le=200)


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    partial: bool = False


class RowErrorOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row: int = Field(description="表格中的行号（表头为第1行；0 = 整个文件）")
    column: str = Field(description="列名（中文表头）")
    message: str


class ImportReportOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    summary: str = Field(description="中文摘要")
    rows: int
    created: int
    updated: int
    unchanged: int
    skipped_rows: int = 0
    dry_run: bool
    partial: bool
    written: bool = False
    branches_created: list[str] = Field(default_factory=list)
    groups_created: list[str] = Field(default_factory=list)
    accounts_linked: int = 0
    errors: list[RowErrorOut]
    warnings: list[RowErrorOut] = Field(
        default_factory=list, description="已导入但值得核对的问题（如改了姓名）"
    )


# serialisation ----------------------------------------------------------------------------------------------
def member_json(m: Member) -> dict[str, Any]:
    return {
        "employee_no": m.employee_no,
        "name": m.name,
        "branch": m.branch.name if m.branch else None,
        "group": m.group.name if m.group else None,
        "phone": m.phone,
        "gender": m.gender,
        "job_title": m.job_title,
        "birthday": m.birthday.isoformat() if m.birthday else None,
        "birthday_is_lunar": bool(m.birthday_is_lunar),
        "lunar_birth_month": m.lunar_birth_month,
        "lunar_birth_day": m.lunar_birth_day,
        "lunar_birth_leap": bool(m.lunar_birth_leap),
        "retired": bool(m.retired),
        "is_delegate": bool(m.is_delegate),
        "greeting_opt_out": bool(m.greeting_opt_out),
        "has_children": m.has_children,
        "active": bool(m.active),
        "roles": sorted(m.roles, key=ROLES.index),
        "updated_at": m.updated_at.isoformat().replace("+00:00", "Z") if m.updated_at else None,
    }


def _row_error(e: Any) -> dict[str, Any]:
    return {"row": e.row, "column": e.column, "message": e.message}


def report_json(report: Any) -> dict[str, Any]:
    """The documented fields of models.roster.ImportReport (fields added there later are not leaked)."""
    data: dict[str, Any] = {}
    for name, info in ImportReportOut.model_fields.items():
        if name in ("errors", "warnings"):
            data[name] = [_row_error(e) for e in getattr(report, name, [])]
        elif name == "summary":
            summary = getattr(report, "summary", None)
            data[name] = summary() if callable(summary) else ""
        elif name == "ok":
            data[name] = bool(report.ok)
        else:
            value = getattr(report, name, info.default)
            data[name] = list(value) if isinstance(value, (list, tuple)) else value
    return data


# helpers ----------------------------------------------------------------------------------------------------
_LOOKUP_OK = re.compile(r"^[^\x00-\x1f\x7f]{1,32}$")


def find_member(s: Session, employee_no: str) -> Member:
    if not _LOOKUP_OK.match(employee_no):
        raise ApiError(404, "not_found", MEMBER_NOT_FOUND)
    member = s.scalar(
        select(Member)
        .options(selectinload(Member.branch), selectinload(Member.group))
        .where(Member.employee_no.in_({employee_no, normalize_employee_no(employee_no)}))
        .order_by(Member.employee_no != employee_no)
    )
    if member is None:
        raise ApiError(404, "not_found", MEMBER_NOT_FOUND)
    return member


def _branch(s: Session, name: str) -> Branch:
    branch = s.scalar(select(Branch).where(Branch.name == name))
    if branch is None:
        branch = Branch(name=name)
        s.add(branch)
        s.flush()
    return branch


def _group(s: Session, branch: Branch, name: str) -> Group:
    group = s.scalar(select(Group).where(Group.branch_id == branch.id, Group.name == name))
    if group is None:
        group = Group(name=name, branch=branch)
        s.add(group)
        s.flush()
    return group


def _conflict(employee_no: str) -> ApiError:
    return ApiError(409, "conflict", f"工号 {employee_no} 已存在", field="employee_no")


def _check_roles_change(member: Member | None, roles: list[str]) -> None:
    wanted = set(roles) - {"member"}
    have = (member.roles - {"member"}) if member is not None else set()
    if wanted == have:
        return
    if not token_can("members.roles"):
        raise ApiError(403, "forbidden", "该令牌没有修改会员角色的权限")
    if "admin" in wanted ^ have and not token_can("members.grant_admin"):
        raise ApiError(403, "forbidden", "只有管理员令牌才能授予或取消管理员角色")


def _apply(s: Session, member: Member, data: dict[str, Any]) -> None:
    """Apply validated fields (only those present in `data`) and check the result as a whole."""
    fields: dict[str, str] = {}
    simple = (
        "name", "phone", "gender", "job_title", "birthday", "retired", "is_delegate",
        "greeting_opt_out", "has_children", "active", "birthday_is_lunar", "lunar_birth_month", "lunar_birth_day",
        "lunar_birth_leap",
    )  # fmt: skip
    for key in simple:
        if key in data:
            setattr(member, key, data[key])
    if "employee_no" in data:
        member.employee_no = normalize_employee_no(data["employee_no"])

    # organisation: a group always belongs to the member's branch
    if "branch" in data:
        new_branch = _branch(s, data["branch"]) if data["branch"] else None
        if new_branch is None:
            member.branch, member.group = None, None
        else:
            if member.group is not None and member.group.branch_id != new_branch.id:
                member.group = None
            member.branch = new_branch
    if data.get("group"):
        if member.branch is None:
            fields["group"] = "填写小组时请同时填写所属分会（branch）"
        else:
            member.group = _group(s, member.branch, data["group"])
    elif "group" in data:
        member.group = None

    # birthdays
    birthday = data.get("birthday")
    if birthday is not None and not (date(1900, 1, 1) <= birthday <= clock().today()):
        fields["birthday"] = "出生日期不合理，请检查年份"
    if member.birthday_is_lunar:
        if member.lunar_birth_month is None or member.lunar_birth_day is None:
            fields["lunar_birth_month"] = (
                "过农历生日时请填写农历月（lunar_birth_month）和日（lunar_birth_day）"
            )
    else:
        given = [k for k in ("lunar_birth_month", "lunar_birth_day") if data.get(k) is not None]
        if given or data.get("lunar_birth_leap"):
            fields[given[0] if given else "lunar_birth_leap"] = (
                "填写农历生日时请同时设 birthday_is_lunar 为 true"
            )
        member.lunar_birth_month = member.lunar_birth_day = None
        member.lunar_birth_leap = False

    if "roles" in data:
        member.set_roles(data["roles"])
    if fields:
        raise validation_error(fields)


class _Rollback(Exception):
    pass


# endpoints --------------------------------------------------------------------------------------------------
@bp.get("/members")
@require("members.view")
def list_members():
    args = query_args(MemberQuery)
    stmt = select(Member)
    if args.q:
        like = "%" + args.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(Member.name.ilike(like, escape="\\"), Member.employee_no.ilike(like, escape="\\"))
        )
    if args.branch:
        stmt = stmt.where(Member.branch_id.in_(select(Branch.id).where(Branch.name == args.branch)))
    if args.group:
        stmt = stmt.where(Member.group_id.in_(select(Group.id).where(Group.name == args.group)))
    if args.active is not None:
        stmt = stmt.where(Member.active.is_(args.active))
    if args.retired is not None:
        stmt = stmt.where(Member.retired.is_(args.retired))
    with db().Session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(
            stmt.options(selectinload(Member.branch), selectinload(Member.group))
            .order_by(Member.employee_no, Member.id)
            .limit(args.per_page)
            .offset((args.page - 1) * args.per_page)
        ).all()
        items = [member_json(m) for m in rows]
    return jsonify(items=items, total=total, page=args.page, per_page=args.per_page)


@bp.get("/members/<path:employee_no>")
@require("members.view")
def get_member(employee_no: str):
    with db().Session() as s:
        return jsonify(member_json(find_member(s, employee_no)))


@bp.post("/members")
@require("members.edit")
def create_member():
    body = json_body(MemberCreate)
    data = body.model_dump()
    employee_no = normalize_employee_no(body.employee_no)
    try:
        with transaction() as s:
            if s.scalar(select(Member.id).where(Member.employee_no == employee_no)) is not None:
                raise _conflict(employee_no)
            _check_roles_change(None, body.roles)
            member = Member(employee_no=employee_no, name=body.name)
            s.add(member)
            _apply(s, member, {k: v for k, v in data.items() if k != "employee_no"})
            s.flush()
            out = member_json(member)
    except IntegrityError:
        raise _conflict(employee_no) from None
    log.info("api: token %s created member #%s", g.api_token.name, member.id)  # the row id: no 工号 in logs
    resp = jsonify(out)
    resp.status_code = 201
    resp.headers["Location"] = url_for("api.get_member", employee_no=out["employee_no"])
    return resp


@bp.patch("/members/<path:employee_no>")
@require("members.edit")
def update_member(employee_no: str):
    body = json_body(MemberUpdate)
    data = {k: getattr(body, k) for k in body.model_fields_set}
    new_no = normalize_employee_no(data["employee_no"]) if "employee_no" in data else None
    try:
        with transaction() as s:
            member = find_member(s, employee_no)
            if (
                new_no is not None
                and new_no != member.employee_no
                and s.scalar(select(Member.id).where(Member.employee_no == new_no)) is not None
            ):
                raise _conflict(new_no)
            if "roles" in data:
                _check_roles_change(member, data["roles"])
            _apply(s, member, data)
            s.flush()
            out = member_json(member)
    except IntegrityError:
        raise _conflict(new_no or employee_no) from None
    log.info("api: token %s updated member #%s (%s)", g.api_token.name, member.id, ", ".join(sorted(data)))
    return jsonify(out)


@bp.post("/members/import")
@require("members.import")
def import_members():
    from models.roster import import_roster

    args = query_args(ImportQuery)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "请用 multipart/form-data 上传，文件字段名为 file")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise validation_error({"file": "请上传名册文件（.xlsx 或 .csv），字段名为 file"})
    data = upload.read()
    if not data:
        raise validation_error({"file": "文件是空的"})
    try:
        with transaction() as s:
            report = import_roster(s, data, upload.filename, dry_run=args.dry_run, partial=args.partial)
            applied = report.created + report.updated + getattr(report, "unchanged", 0)
            refused = bool(report.errors) and (not args.partial or applied == 0)
            if args.dry_run or refused:
                raise _Rollback
    except _Rollback:
        pass
    body = report_json(report)
    # not the file's name: it may name people
    log.info("api: token %s imported a roster: %s", g.api_token.name, body["summary"])
    if refused:
        resp = jsonify(
            error={
                "code": "import_invalid",
                "message": body["summary"] or MESSAGES["import_invalid"],
                "errors": body["errors"],
            },
            report=body,
        )
        resp.status_code = 422
        return resp
    return jsonify(body)


# OpenAPI ----------------------------------------------------------------------------------------------------
_MEMBER_PATH = {"name": "employee_no", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


register_paths(
    {
        "/members": {
            "get": {
                "summary": "会员列表（可筛选、分页）",
                "operationId": "listMembers",
                "tags": ["members"],
                "x-permission": "members.view",
                "parameters": [
                    _query("q", {"type": "string", "maxLength": 50}, "按姓名或工号模糊查找"),
                    _query("branch", {"type": "string"}, "分会名称"),
                    _query("group", {"type": "string"}, "小组名称"),
                    _query("active", {"type": "boolean"}, "true = 在册，false = 已停用；不填 = 全部"),
                    _query("retired", {"type": "boolean"}, "true = 离退休"),
                    _query("page", {"type": "integer", "minimum": 1, "default": 1}, "页码，从 1 开始"),
                    _query(
                        "per_page",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "每页条数",
                    ),
                ],
                "responses": {"200": json_response("MemberList"), **error_responses(401, 403, 422)},
            },
            "post": {
                "summary": "新增会员",
                "description": "设置 roles 需要 members.roles 权限；授予或取消 admin 需要管理员令牌。",
                "operationId": "createMember",
                "tags": ["members"],
                "x-permission": "members.edit",
                "requestBody": json_request("MemberCreate"),
                "responses": {
                    "201": json_response("MemberOut", "已创建"),
                    **error_responses(400, 401, 403, 409, 413, 415, 422),
                },
            },
        },
        "/members/{employee_no}": {
            "get": {
                "summary": "按工号查看会员",
                "operationId": "getMember",
                "tags": ["members"],
                "x-permission": "members.view",
                "parameters": [_MEMBER_PATH],
                "responses": {"200": json_response("MemberOut"), **error_responses(401, 403, 404)},
            },
            "patch": {
                "summary": "修改会员（只改提交的字段）",
                "description": (
                    "branch / group 按名称，不存在时自动创建；换分会而不填 group 时清空小组。"
                    "roles 为完整列表（替换原有角色），需要 members.roles 权限。"
                ),
                "operationId": "updateMember",
                "tags": ["members"],
                "x-permission": "members.edit",
                "parameters": [_MEMBER_PATH],
                "requestBody": json_request("MemberUpdate"),
                "responses": {
                    "200": json_response("MemberOut"),
                    **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
                },
            },
        },
        "/members/import": {
            "post": {
                "summary": "导入会员名册（.xlsx / .csv）",
                "description": (
                    "表头：姓名*、工号*、分会、小组、手机、性别、岗位、生日、农历生日、退休、角色、企业微信账号、飞书账号。"
                    "按工号新增或更新；空单元格不改动原值。默认全部成功才写入；partial=1 时只写入没有错误的行；"
                    "dry_run=1 只检查不写入。"
                ),
                "operationId": "importMembers",
                "tags": ["members"],
                "x-permission": "members.import",
                "parameters": [
                    _query("dry_run", {"type": "boolean", "default": False}, "只检查，不写入"),
                    _query("partial", {"type": "boolean", "default": False}, "跳过有错误的行，导入其余行"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "contentMediaType": "application/octet-stream"}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(
                        "ImportReportOut", "导入（或试导入）结果；partial 时可能带有被跳过行的 errors"
                    ),
                    "422": {
                        "description": "名册有错误，未写入（import_invalid），或参数错误（validation_error）",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["error", "report"],
                                            "properties": {
                                                "error": {
                                                    "type": "object",
                                                    "properties": {
                                                        "code": {"const": "import_invalid"},
                                                        "message": {"type": "string"},
                                                        "errors": {
                                                            "type": "array",
                                                            "items": ref("RowErrorOut"),
                                                        },
                                                    },
                                                },
                                                "report": ref("ImportReportOut"),
                                            },
                                        },
                                        ref("Error"),
                                    ]
                                }
                            }
                        },
                    },
                    **error_responses(401, 403, 413, 415),
                },
            }
        },
    },
    {
        **model_schemas(MemberCreate, MemberUpdate),
        **model_schemas(MemberOut, MemberList, ImportReportOut, mode="serialization"),
    },
)
