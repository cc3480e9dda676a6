"""Inbound messages (deduplicated), dialog state, known chats and the persistent outbox."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from models import crypto
from models.base import Base, UTCDateTime, utcnow

UNREADABLE = {"unreadable": True}  # a sealed payload no configured key opens (the outbox gives the row up)


def seal(payload: dict[str, Any]) -> dict[str, Any]:
    """A sensitive row's payload as stored: one Fernet token (DATA_KEY), so a queued hardship story or an
    answer to an anonymous suggestion is not plaintext in the database while it waits to be sent."""
    return {"sealed": crypto.encrypt(json.dumps(payload, ensure_ascii=False))}


def is_sealed(payload: Any) -> bool:
    return isinstance(payload, dict) and set(payload) == {"sealed"}


class SealableJSON(TypeDecorator):
    """JSON that hands back sealed payloads opened: every reader (senders, adapters) sees the message itself."""

    impl = JSON
    cache_ok = True

    def process_result_value(self, value: Any, dialect) -> Any:
        if is_sealed(value):
            try:
                return json.loads(crypto.decrypt(value["sealed"]))
            except crypto.DataKeyError:
                return dict(UNREADABLE)
        return value


class InboundMessage(Base):
    """Every message or event a platform delivered, recorded once: the unique key makes retries harmless."""

    __tablename__ = "inbound_message"
    __table_args__ = (UniqueConstraint("platform", "dedupe_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    chat_type: Mapped[str] = mapped_column(String(8))
    chat_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    # received -> done | failed; "received" rows are waiting for the worker (deferred work).
    status: Mapped[str] = mapped_column(String(12), default="received", index=True)
    handler: Mapped[str | None] = mapped_column(String(64))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dialog(Base):
    """State of a multi-step conversation, one per (platform, chat, user); expires after a timeout."""

    __tablename__ = "dialog"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chat(Base):
    """A group chat the bot has seen or can post into, optionally tied to a union group."""

    __tablename__ = "chat"
    __table_args__ = (UniqueConstraint("platform", "chat_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(100), default="")
    group_id: Mapped[int | None] = mapped_column(ForeignKey("union_group.id"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)


class OutboxMessage(Base):
    """One outgoing message. Delivered by the delivery loop; the idempotency key makes enqueueing safe to repeat."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        # the per-recipient rate windows count what a target was sent in the last minute, once per send
        Index("ix_outbox_message_target_sent", "target_id", "sent_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    platform: Mapped[str] = mapped_column(String(16), index=True)
    target_kind: Mapped[str] = mapped_column(String(8))  # user | chat
    target_id: Mapped[str] = mapped_column(String(255))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(SealableJSON)  # sealed (encrypted) when sensitive
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. the inbound message replied to
    # True: stored sealed; once sent or given up, the row keeps neither recipient nor content
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending -> sending -> sent | dead ; sending rows whose lease expired go back to delivery.
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SandboxMessage(Base):
    """What the sandbox 'platform' received from the outbox: the sandbox chat page shows these."""

    __tablename__ = "sandbox_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    chat_id: Mapped[str] = mapped_column(String(128), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    sender: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
