"""Proposals (职代会提案) and suggestions over the API, read-only, for the roles that see the congress report.

/proposals: list with filters; /proposals/{id}: one with its co-signers, replies, evaluations and timeline;
/proposals/public: the public list (公开) of accepted proposals with their replies.

Anonymity holds here as in the console: an anonymous suggestion carries no proposer, no co-signers, and its
timeline says "匿名" (this module reads Proposal / ProposalEvent only, never AnonymousSender).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from api.core import ApiError, OptionalText, bp, db, query_args, require
from api.openapi import error_responses, json_response, model_schemas, register_paths
from handlers.proposals import actor_name
from models.proposal import (
    KIND_LABELS,
    KINDS,
    RATINGS,
    REPLY_KINDS,
    STATUS_LABELS,
    STATUSES,
    Proposal,
    public_list,
)

PERMISSION = "proposals.report"  # clerk, chair, proposal_reviewer
MAX_ID = 2**63 - 1

Status = Literal[STATUSES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]
ReplyKind = Literal[tuple(REPLY_KINDS)]  # type: ignore[valid-type]
Rating = Literal[tuple(RATINGS)]  # type: ignore[valid-type]


# schemas -----------------------------------------------------------------------------------------------------
class ProposalQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = Field(None, description="状态")
    kind: Kind | None = Field(None, description="proposal = 提案，suggestion = 建议")
    category: OptionalText(20) = Field(None, description="类别，例如 后勤保障")
    congress: int | None = Field(None, ge=1, le=MAX_ID, description="届次 id")
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(50, ge=1, le=200)


class PublicQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    congress: int | None = Field(None, ge=1, le=MAX_ID, description="届次 id；不填 = 全部")


class Person(BaseModel):
    employee_no: str
    name: str


class CoSignerOut(Person):
    role: Literal["cosigner", "proposer"] = Field(description="proposer = 合并进来的提案的提案人")
    status: Literal["invited", "signed", "declined"]


class ReplyOut(BaseModel):
    department: str | None
    kind: ReplyKind
    kind_label: str
    text: str
    plan_date: date | None = Field(description="办理中：计划完成日期")
    round: int = Field(description="1 = 首次答复，2 = 不满意后重新办理的答复")
    at: datetime


class EvaluationOut(BaseModel):
    rating: Rating
    rating_label: str
    comment: str
    round: int
    at: datetime


class EventOut(BaseModel):
    at: datetime
    actor: str = Field(description="操作人姓名；“系统”；匿名建议的提出人为“匿名”")
    actor_employee_no: str | None
    from_status: Status | None
    to_status: Status | None
    note: str


class ProposalSummary(BaseModel):
    id: int
    number: str
    kind: Kind
    kind_label: str
    submitted_as: Kind = Field(description="提交时的类型（提案不予立案后 kind 变为 suggestion）")
    category: str
    title: str
    status: Status
    status_label: str
    anonymous: bool
    proposers: list[Person] = Field(description="提案人（含合并进来的提案的提案人）；匿名建议永远为空")
    congress_id: int | None
    lead_department: str | None
    co_departments: list[str]
    due_date: date | None = Field(description="首次答复期限")
    current_due_date: date | None = Field(description="当前答复期限（重新办理时为重新办理的期限）")
    merged_into: str | None = Field(description="合并到的提案编号")
    created_at: datetime = Field(description="提交时间（匿名建议只精确到日）")
    accepted_at: datetime | None
    closed_at: datetime | None


class ProposalOut(ProposalSummary):
    situation: str
    measures: str
    suggested_department: str
    decline_reason: str
    cosigners: list[CoSignerOut] = Field(description="附议人；匿名建议永远为空")
    replies: list[ReplyOut]
    evaluations: list[EvaluationOut]
    timeline: list[EventOut]


class ProposalList(BaseModel):
    items: list[ProposalSummary]
    total: int
    page: int
    per_page: int


class PublicReply(BaseModel):
    department: str
    kind: str = Field(description="办理结果（中文）")
    text: str
    at: datetime


class PublicProposal(BaseModel):
    number: str
    kind: str
    category: str
    title: str
    status: str = Field(description="状态（中文）")
    department: str = Field(description="牵头承办部门")
    co_departments: list[str]
    replies: list[PublicReply]


class PublicList(BaseModel):
    items: list[PublicProposal]
    total: int


# serialisation ------------------------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def _day(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _person(m) -> dict[str, str]:
    return {"employee_no": m.employee_no, "name": m.name}


def summary_json(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "number": p.number,
        "kind": p.kind,
        "kind_label": KIND_LABELS[p.kind],
        "submitted_as": p.submitted_as,
        "category": p.category,
        "title": p.title,
        "status": p.status,
        "status_label": STATUS_LABELS[p.status],
        "anonymous": p.anonymous,
        "proposers": [] if p.anonymous else [_person(m) for m in p.proposers()],
        "congress_id": p.congress_id,
        "lead_department": p.lead_department.name if p.lead_department else None,
        "co_departments": [d.department.name for d in p.co_departments],
        "due_date": _day(p.due_date),
        "current_due_date": _day(p.current_due),
        "merged_into": p.merged_into.number if p.merged_into else None,
        "created_at": _iso(p.created_at),
        "accepted_at": _iso(p.accepted_at),
        "closed_at": _iso(p.closed_at),
    }


def proposal_json(p: Proposal) -> dict[str, Any]:
    out = summary_json(p)
    out.update(
        situation=p.situation,
        measures=p.measures,
        suggested_department=p.suggested_department,
        decline_reason=p.decline_reason,
        cosigners=[]
        if p.anonymous
        else [{**_person(c.member), "role": c.role, "status": c.status} for c in p.cosigns],
        replies=[
            {
                "department": r.department.name if r.department else None,
                "kind": r.kind,
                "kind_label": r.kind_label,
                "text": r.text,
                "plan_date": _day(r.plan_date),
                "round": r.round,
                "at": _iso(r.at),
            }
            for r in p.replies
        ],
        evaluations=[
            {
                "rating": e.rating,
                "rating_label": RATINGS[e.rating],
                "comment": e.comment,
                "round": e.round,
                "at": _iso(e.at),
            }
            for e in p.evaluations
        ],  # fmt: skip
        timeline=[
            {
                "at": _iso(e.at),
                "actor": actor_name(p, e),
                "actor_employee_no": e.actor.employee_no if e.actor is not None else None,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "note": e.note,
            }
            for e in p.events
        ],
    )
    return out


def _public_json(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "replies": [{**r, "at": _iso(r["at"])} for r in item["replies"]]}


# endpoints -----------------------------------------------------------------------------------------------
@bp.get("/proposals")
@require(PERMISSION)
def list_proposals():
    args = query_args(ProposalQuery)
    stmt = select(Proposal)
    if args.status:
        stmt = stmt.where(Proposal.status == args.status)
    if args.kind:
        stmt = stmt.where(Proposal.kind == args.kind)
    if args.category:
        stmt = stmt.where(Proposal.category == args.category)
    if args.congress:
        stmt = stmt.where(Proposal.congress_id == args.congress)
    with db().Session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(
            stmt.order_by(Proposal.series, Proposal.seq)
            .limit(args.per_page)
            .offset((args.page - 1) * args.per_page)
        ).all()
        items = [summary_json(p) for p in rows]
    return jsonify(items=items, total=total, page=args.page, per_page=args.per_page)


@bp.get("/proposals/public")
@require(PERMISSION)
def public_proposals():
    args = query_args(PublicQuery)
    with db().Session() as s:
        items = [_public_json(item) for item in public_list(s, args.congress)]
    return jsonify(items=items, total=len(items))


@bp.get("/proposals/<int:proposal_id>")
@require(PERMISSION)
def get_proposal(proposal_id: int):
    with db().Session() as s:
        p = s.get(Proposal, proposal_id)
        if p is None:
            raise ApiError(404, "not_found", "未找到该提案或建议，请检查 id")
        return jsonify(proposal_json(p))


# OpenAPI -------------------------------------------------------------------------------------------------
def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_CONGRESS = _q("congress", {"type": "integer", "minimum": 1}, "届次 id")
_ANON = "匿名建议不含提出人和附议人，办理过程中提出人显示为“匿名”。"

register_paths(
    {
        "/proposals": {
            "get": {
                "summary": "提案和建议列表",
                "description": _ANON,
                "operationId": "listProposals",
                "tags": ["proposals"],
                "x-permission": PERMISSION,
                "parameters": [
                    _q("status", {"type": "string", "enum": list(STATUSES)}, "状态"),
                    _q("kind", {"type": "string", "enum": list(KINDS)}, "proposal = 提案，suggestion = 建议"),
                    _q("category", {"type": "string", "maxLength": 20}, "类别"),
                    _CONGRESS,
                    _q("page", {"type": "integer", "minimum": 1, "default": 1}, "页码"),
                    _q(
                        "per_page",
                        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        "每页条数",
                    ),
                ],
                "responses": {"200": json_response("ProposalList"), **error_responses(401, 403, 422)},
            },
        },
        "/proposals/public": {
            "get": {
                "summary": "立案提案公开清单（含答复，不含任何人员姓名）",
                "operationId": "listPublicProposals",
                "tags": ["proposals"],
                "x-permission": PERMISSION,
                "parameters": [_CONGRESS],
                "responses": {"200": json_response("PublicList"), **error_responses(401, 403, 422)},
            },
        },
        "/proposals/{proposal_id}": {
            "get": {
                "summary": "查看提案或建议（含附议人、答复、评价和办理过程）",
                "description": _ANON,
                "operationId": "getProposal",
                "tags": ["proposals"],
                "x-permission": PERMISSION,
                "parameters": [
                    {"name": "proposal_id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": json_response("ProposalOut"), **error_responses(401, 403, 404)},
            },
        },
    },
    model_schemas(ProposalOut, ProposalList, PublicList, mode="serialization"),
)
