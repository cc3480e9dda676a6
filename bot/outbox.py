"""The persistent outbox: every reply and push is a row first, delivered later by the delivery loop.

Enqueueing happens in the caller's transaction (so a reply exists exactly when the work that caused it was
committed). Delivery claims due rows with a lease, sends them through the platform's sender, and records the
outcome; a failure is retried with backoff and never loses the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.message import Outgoing
from bot.observability import DELIVERY_FAILURES
from models.messaging import UNREADABLE, OutboxMessage, seal

if TYPE_CHECKING:
    from bot.core import Bot

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(hours=1)
# What a sensitive row (an anonymous suggestion, a hardship case, a care event) keeps once sent or given up.
SCRUBBED_PAYLOAD = {"type": "text", "text": "（此消息涉及个人隐私，内容已隐去）"}
SCRUBBED_ERROR = "（涉及个人隐私，错误详情已隐去）"


@dataclass
class SendResult:
    ok: bool
    error: str | None = None
    retry_after: float | None = None  # seconds the platform asked us to wait (rate limits)
    permanent: bool = False  # the target can never receive it (left the company, bot removed ...)
    code: str | None = None  # the platform's error code, for metrics
    # our own rate limit kept it back: nothing reached the platform, so no failure, no attempt
    held: bool = False


class Sender(Protocol):
    """One per platform. Raises or returns a failed SendResult; must be safe to call twice for the same row."""

    def send(self, row: OutboxMessage) -> SendResult: ...


def enqueue(
    session: Session,
    *,
    platform: str,
    target_kind: str,
    target_id: str,
    message: Outgoing | dict[str, Any],
    key: str,
    member_id: int | None = None,
    context: dict[str, Any] | None = None,
    not_before: datetime | None = None,
    sensitive: bool = False,
    now: datetime,
) -> bool:
    """Add a row unless one with the same idempotency key exists; returns whether it was added.

    `sensitive`: the content is stored sealed with DATA_KEY, and the row is scrubbed (recipient and content) as
    soon as it is sent or given up."""
    payload = message if isinstance(message, dict) else message.to_payload()
    if sensitive:
        payload = seal(payload)
    values = dict(
        idempotency_key=key[:255],
        platform=platform,
        target_kind=target_kind,
        target_id=target_id,
        member_id=member_id,
        payload=payload,
        context=context or {},
        sensitive=sensitive,
        status="pending",
        attempts=0,
        next_attempt_at=not_before or now,
        created_at=now,
    )
    dialect = session.get_bind().dialect.name
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(OutboxMessage).values(**values)
    result = session.execute(ins.on_conflict_do_nothing(index_elements=["idempotency_key"]))
    return bool(result.rowcount)


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=10 * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def claim(bot: Bot, limit: int = 50, platform: str | None = None) -> list[OutboxMessage]:
    """Lease due rows. PostgreSQL skips rows another worker holds; SQLite serialises writers anyway."""
    now = bot.clock.now()
    with bot.db.transaction() as s:
        q = (
            select(OutboxMessage)
            .where(
                or_(
                    (OutboxMessage.status == "pending") & (OutboxMessage.next_attempt_at <= now),
                    (OutboxMessage.status == "sending") & (OutboxMessage.lease_until < now),
                )
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
        )
        if platform:
            q = q.where(OutboxMessage.platform == platform)
        if not bot.db.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        rows = list(s.scalars(q))
        for row in rows:
            row.status = "sending"
            row.lease_until = now + LEASE
            row.attempts += 1
    return rows


def deliver_due(bot: Bot, limit: int = 50, platform: str | None = None) -> int:
    """One pass of the delivery loop; returns how many rows were sent."""
    sent = 0
    for row in claim(bot, limit, platform):
        if not _still_ours(bot, row):
            continue
        sender = bot.senders.get(row.platform)
        try:
            if row.payload == UNREADABLE:
                result = SendResult(
                    False, "加密内容无法解密：DATA_KEY 与加密时不同", permanent=True, code="data_key"
                )
            elif sender is None:
                result = SendResult(False, f"no sender for {row.platform}", code="no_sender")
            else:
                result = sender.send(row)
        except Exception as exc:  # a sender bug or network error must not lose the row
            log.warning("outbox %s: send raised %s", row.id, type(exc).__name__)
            result = SendResult(False, f"{type(exc).__name__}: {exc}"[:500], code="exception")
        if not result.ok and not result.held:
            DELIVERY_FAILURES.labels(row.platform, result.code or "error").inc()
        _record(bot, row, result)
        sent += result.ok
    return sent


def _still_ours(bot: Bot, row: OutboxMessage) -> bool:
    """Rows are leased by the batch but sent one by one: past half its lease (a slow platform), a row's lease is
    renewed before sending, and a row another worker has taken over since is skipped — otherwise both would send
    it, and a platform without an idempotency key (WeCom) would show it twice."""
    now = bot.clock.now()
    if row.lease_until is not None and row.lease_until - now > LEASE / 2:
        return True
    with bot.db.transaction() as s:
        renewed = s.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == row.id,
                OutboxMessage.status == "sending",
                OutboxMessage.attempts == row.attempts,
            )
            .values(lease_until=now + LEASE)
        ).rowcount
    row.lease_until = now + LEASE
    return renewed == 1


def _record(bot: Bot, row: OutboxMessage, result: SendResult) -> None:
    now = bot.clock.now()
    values: dict[str, Any]
    if result.ok:
        values = dict(status="sent", sent_at=now, lease_until=None, last_error=None)
    elif result.held:  # back in the queue for the next window, with the attempt it did not use
        wait = timedelta(seconds=result.retry_after or 1)
        values = dict(
            status="pending", next_attempt_at=now + wait, lease_until=None, attempts=row.attempts - 1,
            last_error=result.error,  # why it waits, for the console
        )  # fmt: skip
    elif result.permanent or row.attempts >= bot.settings.OUTBOX_MAX_ATTEMPTS:
        values = dict(status="dead", lease_until=None, last_error=result.error)
    else:
        wait = timedelta(seconds=result.retry_after) if result.retry_after else backoff(row.attempts)
        values = dict(status="pending", next_attempt_at=now + wait, lease_until=None, last_error=result.error)
    if row.sensitive and not result.ok:  # a platform's error text may name the recipient
        code = f"错误代码 {result.code}" if result.code else ""
        values["last_error"] = f"{SCRUBBED_ERROR}{code}"
    with bot.db.transaction() as s:
        # Only the holder of the lease writes the outcome (a lease taken over by another worker wins).
        s.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == row.id,
                OutboxMessage.status == "sending",
                OutboxMessage.attempts == row.attempts,
            )
            .values(**values)
        )
        if row.sensitive and values["status"] in ("sent", "dead"):
            scrub_sensitive(s)


def scrub_sensitive(s: Session) -> int:
    """Sensitive rows that were sent or given up lose recipient (chat id and member), content and context, so no
    table (and no console page) links an anonymous sender, or a member in hardship, to what they were told. Also catches rows a sender marked sent
    on its own (WeCom merges replies to one message)."""
    return s.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.sensitive.is_(True),
            OutboxMessage.status.in_(("sent", "dead")),
            OutboxMessage.target_id != "",
        )
        .values(target_id="", member_id=None, payload=SCRUBBED_PAYLOAD, context={})
    ).rowcount


def drain(bot: Bot, platform: str | None = None, max_rounds: int = 100) -> int:
    """Deliver until nothing is due now (used by the sandbox and the CLI worker)."""
    total = 0
    for _ in range(max_rounds):
        n = len(claim_preview(bot, platform))
        if not n:
            break
        total += deliver_due(bot, platform=platform)
    return total


def claim_preview(bot: Bot, platform: str | None) -> list[int]:
    now = bot.clock.now()
    with bot.db.Session() as s:
        q = select(OutboxMessage.id).where(
            OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now
        )
        if platform:
            q = q.where(OutboxMessage.platform == platform)
        return list(s.scalars(q.limit(1)))
