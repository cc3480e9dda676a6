"""The sandbox 'platform': a local chat page that goes through the same router, handlers and outbox.

A person picks a demo member (private chat) or a union group's chat, types, clicks card buttons and sees
the bot's answers and scheduled pushes, with no WeCom or Feishu account. A file the bot sends is kept in its
sandbox message and offered as a download link (`/sandbox/file/<id>`).
"""

from __future__ import annotations

import io
import uuid
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, render_template, request, send_file
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot import outbox
from bot.message import ChatType, File, IncomingMessage, payload_to_outgoing
from bot.normalize import normalize, typed_words
from bot.outbox import SendResult
from models.member import Group, Member, link_identity
from models.messaging import OutboxMessage, SandboxMessage

PLATFORM = "sandbox"


def user_id_for(member: Member) -> str:
    return f"sb-{member.employee_no}"


def group_chat_id(group_id: int) -> str:
    return f"sb-group-{group_id}"


class SandboxSender:
    """Delivers outbox rows into the sandbox_message table (idempotent on the outbox id)."""

    def __init__(self, db):
        self.db = db

    def send(self, row: OutboxMessage) -> SendResult:
        chat_id = row.target_id
        with self.db.transaction() as s:
            ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(SandboxMessage)
            s.execute(
                ins.values(
                    outbox_id=row.id,
                    chat_id=chat_id,
                    direction="out",
                    sender="bot",
                    payload=row.payload,
                    created_at=row.created_at,
                ).on_conflict_do_nothing(index_elements=["outbox_id"])
            )
        return SendResult(True)


def incoming(
    bot,
    *,
    user_id: str,
    chat_id: str | None,
    text: str = "",
    action: dict[str, Any] | None = None,
    message_id: str | None = None,
    mentioned: bool = True,
) -> IncomingMessage:
    """Build the neutral message the way a real adapter would. A group message @-mentions the bot when the page's
    “@机器人” box is ticked (the default) or the text itself says @<bot name>; otherwise the bot ignores it."""
    group = chat_id is not None and chat_id != user_id
    names = (bot.settings.BOT_NAME,)
    mentioned = mentioned or f"@{bot.settings.BOT_NAME}" in text
    return IncomingMessage(
        platform=PLATFORM,
        message_id=message_id or uuid.uuid4().hex,
        chat_type=ChatType.GROUP if group else ChatType.PRIVATE,
        chat_id=chat_id if group else user_id,
        user_id=user_id,
        text=normalize(text, names),
        typed=typed_words(text, names),
        mentioned=group and mentioned,
        action=action,
        received_at=bot.clock.now(),
        raw={"text": text},
    )


def send_and_deliver(bot, msg: IncomingMessage, shown_text: str) -> None:
    """Record what the person typed for the page, run it through the bot, deliver sandbox replies at once."""
    with bot.db.transaction() as s:
        s.add(
            SandboxMessage(
                chat_id=msg.chat_id,
                direction="in",
                sender=msg.user_id,
                payload={"type": "text", "text": shown_text},
                created_at=bot.clock.now(),
            )
        )
    bot.handle(msg)
    outbox.drain(bot, platform=PLATFORM)


def messages_since(bot, chat_id: str, since: int) -> list[dict[str, Any]]:
    with bot.db.Session() as s:
        rows = s.scalars(
            select(SandboxMessage)
            .where(SandboxMessage.chat_id == chat_id, SandboxMessage.id > since)
            .order_by(SandboxMessage.id)
        )
        return [
            {
                "id": r.id,
                "direction": r.direction,
                "sender": r.sender,
                "payload": _shown(r),
                "time": bot.clock.fmt(r.created_at),
            }
            for r in rows
        ]


def _shown(r: SandboxMessage) -> dict[str, Any]:
    """The payload for the page and the CLI: a file as its name and download link, without its bytes."""
    if (r.payload or {}).get("type") != "file":
        return r.payload
    return {"type": "file", "name": r.payload.get("name", ""), "url": f"{bp.url_prefix}/file/{r.id}"}


bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


@bp.before_request
def _enabled():
    if not current_app.extensions["bot"].settings.SANDBOX_ENABLED:
        abort(404)


@bp.get("/")
def page():
    bot = current_app.extensions["bot"]
    with bot.db.Session() as s:
        members = list(
            s.scalars(select(Member).where(Member.active.is_(True)).order_by(Member.employee_no).limit(400))
        )
        groups = list(s.scalars(select(Group).order_by(Group.branch_id, Group.name)))
        people = [
            {
                "no": m.employee_no,
                "name": m.name,
                "roles": sorted(m.roles - {"member"}),
                "group": m.group.name if m.group else "",
            }
            for m in members
        ]
        chats = [{"id": g.id, "name": f"{g.branch.name}·{g.name}"} for g in groups]
    return render_template("sandbox.html", people=people, chats=chats, bot_name=bot.settings.BOT_NAME)


def _member_user(bot, employee_no: str) -> str:
    """The sandbox account of a demo member; linked on first use (a stranger's account is not: '新用户')."""
    if employee_no == "stranger":
        return "sb-stranger"
    with bot.db.transaction() as s:
        member = s.scalar(select(Member).where(Member.employee_no == employee_no))
        if member is None:
            abort(400, "unknown member")
        uid = user_id_for(member)
        link_identity(s, member, PLATFORM, uid)
    return uid


@bp.post("/send")
def send():
    bot = current_app.extensions["bot"]
    data = request.get_json(silent=True) or {}
    text = str(data.get("text", ""))[:2000]
    action = data.get("action") if isinstance(data.get("action"), dict) else None
    if not text.strip() and action is None:
        return jsonify(error="empty"), 400
    user = _member_user(bot, str(data.get("member", "")))
    group_id = data.get("group")
    chat_id = group_chat_id(int(group_id)) if str(group_id or "").isdigit() else user
    mention = data.get("mention", True) is not False  # the page's “@机器人” box (group chats)
    msg = incoming(bot, user_id=user, chat_id=chat_id, text=text, action=action, mentioned=mention)
    shown = text if action is None else f"[点击] {data.get('label', '按钮')}"
    if msg.is_group and action is None and mention and f"@{bot.settings.BOT_NAME}" not in text:
        shown = f"@{bot.settings.BOT_NAME} {text}"  # what the group sees
    send_and_deliver(bot, msg, shown)
    return jsonify(chat_id=chat_id, messages=messages_since(bot, chat_id, int(data.get("since", 0) or 0)))


@bp.get("/messages")
def poll():
    bot = current_app.extensions["bot"]
    outbox.drain(bot, platform=PLATFORM)  # pushes queued by the scheduler appear while the page is open
    chat_id = request.args.get("chat_id", "")
    since = request.args.get("since", "0")
    return jsonify(messages=messages_since(bot, chat_id, int(since) if since.isdigit() else 0))


@bp.get("/file/<int:message_id>")
def file(message_id: int):
    """A file the bot sent in the sandbox, for download (only while the sandbox is enabled: `_enabled`)."""
    bot = current_app.extensions["bot"]
    with bot.db.Session() as s:
        row = s.get(SandboxMessage, message_id)
        out = (
            payload_to_outgoing(row.payload)
            if row is not None and row.payload.get("type") == "file"
            else None
        )
    if not isinstance(out, File):
        abort(404)
    return send_file(io.BytesIO(out.data), download_name=out.name, as_attachment=True)
