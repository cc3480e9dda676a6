"""Console page for the outbox: messages given up (dead letters) and those waiting to be retried after an error,
with the reason, and 重新发送 for staff who manage the outbox.

Sensitive rows (anonymous suggestions, hardship cases, care events) never show their recipient or content here
(and once given up they no longer hold them: bot/outbox.py scrubs them), only that they were hidden and the
reason code; they cannot be resent once scrubbed.
"""

from __future__ import annotations

import re

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin import console_blueprint, current_staff, nav, require
from models.member import Member
from models.messaging import InboundMessage, OutboxMessage

bp = console_blueprint("outbox_admin", __name__, url_prefix="/admin/outbox")
nav.register("消息发送", "outbox_admin.index", "outbox.view", order=90)

PAGE_SIZE = 50
FAILED_SHOWN = 20  # newest messages the bot failed to handle, under the outbox table
PLATFORM_LABELS = {"wecom": "企业微信", "feishu": "飞书", "sandbox": "沙盒"}
HIDDEN = "涉及隐私，内容已隐去"
# "": everything with a problem; then the outbox statuses staff can tell apart
FILTERS = {"": "全部问题消息", "dead": "已放弃（发送失败）", "retrying": "等待重试（出过错）"}
STATUS_LABELS = {"dead": "已放弃", "pending": "等待重试", "sending": "发送中", "sent": "已发送"}
KIND_LABELS = {
    "reply": "回复",
    "activity": "活动",
    "meeting": "会议",
    "proposal": "提案",
    "hardship": "困难帮扶",
    "care": "关怀",
    "record": "困难职工档案",
    "birthday": "生日祝福",
    "festival": "节日祝福",
    "milestone_notice": "逢十生日提醒",
    "leader_note": "小组生日提醒",
    "monthly_list": "生日名单",
}


def init_app(app) -> None:
    if "outbox_admin" not in app.blueprints:
        app.register_blueprint(bp)


def _db():
    return current_app.extensions["db"]


def problem_rows(status: str = ""):
    """Rows given up, or waiting for another try after an error (held by a rate limit included)."""
    retrying = OutboxMessage.status.in_(("pending", "sending")) & OutboxMessage.last_error.is_not(None)
    if status == "dead":
        cond = OutboxMessage.status == "dead"
    elif status == "retrying":
        cond = retrying
    else:
        cond = (OutboxMessage.status == "dead") | retrying
    return select(OutboxMessage).where(cond)


def describe(s: Session, rows: list[OutboxMessage]) -> list[dict]:
    """Rows as the console shows them: a sensitive row names neither recipient nor content."""
    ids = {r.member_id for r in rows if r.member_id and not r.sensitive}
    names = dict(s.execute(select(Member.id, Member.name).where(Member.id.in_(ids))).all()) if ids else {}
    out = []
    for r in rows:
        prefix = r.idempotency_key.split(":", 1)[0]
        out.append(
            {
                "id": r.id,
                "platform_label": PLATFORM_LABELS.get(r.platform, r.platform),
                "chat": "群聊" if r.target_kind == "chat" else "私聊",
                "kind": KIND_LABELS.get(prefix, "其他"),
                "hidden": r.sensitive,
                "target": "" if r.sensitive else names.get(r.member_id) or r.target_id,
                "preview": HIDDEN if r.sensitive else _preview(r.payload),
                "status": r.status,
                "status_label": STATUS_LABELS.get(r.status, r.status),
                "attempts": r.attempts,
                "error": r.last_error or "",
                "at": r.created_at,
                "next_at": r.next_attempt_at if r.status == "pending" else None,
                "can_retry": r.status in ("dead", "pending") and bool(r.target_id),
            }
        )
    return out


def failed_inbound(s: Session) -> list[dict]:
    """Messages whose handler crashed: the member was told "系统出了点问题…工作人员会尽快处理", so staff must see
    that it happened. Never what was typed (it may be a hardship story), only when, where and the error's kind."""
    rows = s.execute(
        select(InboundMessage.id, InboundMessage.platform, InboundMessage.chat_type, InboundMessage.error,
               InboundMessage.received_at)
        .where(InboundMessage.status == "failed")
        .order_by(InboundMessage.id.desc())
        .limit(FAILED_SHOWN)
    ).all()  # fmt: skip
    return [
        {
            "id": r.id,
            "platform_label": PLATFORM_LABELS.get(r.platform, r.platform),
            "chat": "群聊" if r.chat_type == "group" else "私聊",
            "error": error_kind(r.error),
            "at": r.received_at,
        }
        for r in rows
    ]


def error_kind(error: str | None) -> str:
    """"ValueError: …" or "ValueError (handler raised)" -> "ValueError": an exception's message may quote data."""
    return re.split(r"[:\s]", error or "", maxsplit=1)[0]


def _preview(payload: dict) -> str:
    if payload.get("type") == "file":
        return f"[文件] {payload.get('name', '')}"
    text = payload.get("text") or payload.get("title") or ""
    return text if len(text) <= 40 else text[:40] + "…"


@bp.get("/")
@require("outbox.view")
def index():
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    page = request.args.get("page", "1")
    page = max(int(page), 1) if page.isdigit() else 1
    q = problem_rows(status)
    with _db().Session() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(page, pages)
        rows = list(
            s.scalars(q.order_by(OutboxMessage.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
        )
        items = describe(s, rows)
        failed = failed_inbound(s)
    return render_template(
        "outbox_admin/index.html",
        items=items,
        status=status,
        filters=FILTERS,
        total=total,
        page=page,
        pages=pages,
        can_retry=current_staff().can("outbox.manage"),
        failed=failed,
    )


@bp.post("/<int:row_id>/retry")
@require("outbox.manage")
def retry(row_id: int):
    """重新发送: back to pending now, with its attempts reset (after staff fixed the cause, e.g. a member's
    account or the bot's place in a group)."""
    bot = current_app.extensions["bot"]
    with _db().transaction() as s:
        row = s.get(OutboxMessage, row_id)
        if row is None or row.status not in ("dead", "pending"):
            abort(404)
        if not row.target_id:
            flash(
                "这条消息涉及个人隐私，放弃发送时内容已清除，无法重新发送。请联系相关同志另行告知。", "error"
            )
        else:
            row.status, row.attempts, row.last_error = "pending", 0, None
            row.next_attempt_at, row.lease_until = bot.clock.now(), None
            flash("已重新排队发送，稍后会再试一次。", "ok")
    return redirect(url_for("outbox_admin.index", status=request.form.get("status", "")))
