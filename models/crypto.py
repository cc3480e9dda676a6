"""Encryption at rest for sensitive free text and amounts (PIPL: health, money, family).

`EncryptedText` / `EncryptedDecimal` are SQLAlchemy column types that store a Fernet token (AES-128-CBC +
HMAC-SHA256, from the `cryptography` package) instead of the value. Keys come from the settings:

- `DATA_KEY` encrypts (and decrypts); `DATA_KEY_OLD`, when set, still decrypts — a `MultiFernet`, so a key can be
  rotated without downtime: set the new key as DATA_KEY and the old one as DATA_KEY_OLD, run
  `flask --app app care rotate-key` (`rotate(session)`: re-encrypts every encrypted column with the new key), then
  drop DATA_KEY_OLD.
- Production refuses to start without DATA_KEY (config). In development and test without DATA_KEY a key is derived
  from SECRET_KEY (HKDF-like SHA-256 with a fixed label) and a warning is logged once.

The column types cannot see the app, so the keys are process-wide: `configure(settings)` installs them; every
entry point that touches encrypted columns calls it (cheap when unchanged). Values never appear in exceptions
or logs: a token that no key opens raises `DataKeyError` naming only the table-independent problem.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import JSON, Table, Text, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, Any] = {"sig": None, "fernet": None, "primary": None}


class DataKeyError(RuntimeError):
    """Encrypted data cannot be read or written: the data key is missing or does not match."""


def derive_dev_key(secret_key: str) -> str:
    digest = hashlib.sha256(b"union-bot/data-key/v1:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def keys_from_settings(settings) -> list[str]:
    primary = settings.DATA_KEY
    if not primary:
        if settings.APP_ENV == "production":
            raise DataKeyError("DATA_KEY is required in production")
        primary = derive_dev_key(settings.SECRET_KEY)
    return [k for k in (primary, settings.DATA_KEY_OLD) if k]


def configure(settings) -> None:
    """Install the keys of `settings` for this process (no-op when they are already installed)."""
    keys = keys_from_settings(settings)
    sig = hashlib.sha256("|".join(keys).encode()).hexdigest()
    if _state["sig"] == sig:
        return
    with _lock:
        if not settings.DATA_KEY and _state.get("warned") != sig:
            log.warning(
                "DATA_KEY is not set: sensitive data is encrypted with a key derived from SECRET_KEY "
                "(development/test only)"
            )
            _state["warned"] = sig
        _install(keys)
        _state["sig"] = sig


def use_keys(*keys: str) -> None:
    """Install explicit keys (first encrypts). For tools and tests."""
    keys = tuple(k for k in keys if k)
    _install(keys)
    _state["sig"] = hashlib.sha256("|".join(keys).encode()).hexdigest()


def _install(keys) -> None:
    fernets = [Fernet(k.encode()) for k in keys]
    _state["fernet"], _state["primary"] = MultiFernet(fernets), fernets[0]


def _fernet() -> MultiFernet:
    f = _state["fernet"]
    if f is None:
        raise DataKeyError("data keys not configured (call models.crypto.configure(settings))")
    return f


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise DataKeyError("encrypted value cannot be opened with DATA_KEY / DATA_KEY_OLD") from None


def reencrypt(token: str) -> str:
    """The token under the current DATA_KEY: unchanged when it already is (so rotation can be re-run)."""
    try:
        _state["primary"].decrypt(token.encode("ascii"))
        return token
    except InvalidToken:
        pass
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise DataKeyError("encrypted value cannot be opened with DATA_KEY / DATA_KEY_OLD") from None


class EncryptedText(TypeDecorator):
    """A text column stored as a Fernet token; None stays NULL (so 'empty' is visible, the content is not)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return encrypt(str(value))

    def process_result_value(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return decrypt(value)


class EncryptedDecimal(TypeDecorator):
    """An amount (yuan) stored encrypted as its decimal text; hands back `Decimal`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | str | None, dialect) -> str | None:
        if value is None:
            return None
        try:
            dec = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("amount must be a number") from None
        return encrypt(format(dec, "f"))

    def process_result_value(self, value: str | None, dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(decrypt(value))


def encrypted_columns(metadata) -> list[tuple[Table, str]]:
    out = []
    for table in metadata.sorted_tables:
        for col in table.columns:
            if isinstance(col.type, EncryptedText | EncryptedDecimal):
                out.append((table, col.name))
    return out


def rotate(session: Session, metadata=None, batch: int = 500) -> dict[str, tuple[int, int]]:
    """Re-encrypt every encrypted column with the current DATA_KEY (`flask --app app care rotate-key`).

    Returns {"table.column": (rewritten, values)}. Run after moving the old key to DATA_KEY_OLD; afterwards
    DATA_KEY_OLD can be removed. Values already under DATA_KEY are left alone, so a re-run rewrites nothing.
    A value no key opens raises DataKeyError (the caller's transaction then rolls everything back).
    """
    if metadata is None:
        from models.base import Base

        metadata = Base.metadata
    _fernet()
    counts: dict[str, tuple[int, int]] = {}
    for table, name in encrypted_columns(metadata):
        pk = list(table.primary_key.columns)[0]
        raw = type_coerce(table.c[name], Text)
        last = None
        changed = seen = 0
        while True:
            q = select(pk, raw).where(table.c[name].is_not(None)).order_by(pk).limit(batch)
            if last is not None:
                q = q.where(pk > last)
            rows = session.execute(q).all()
            if not rows:
                break
            for ident, token in rows:
                seen += 1
                new = reencrypt(token)
                if new != token:
                    session.execute(update(table).where(pk == ident).values({name: type_coerce(new, Text)}))
                    changed += 1
            last = rows[-1][0]
        counts[f"{table.name}.{name}"] = (changed, seen)
    counts["outbox_message.payload"] = _reseal_outbox(session)
    return counts


def _reseal_outbox(session: Session) -> tuple[int, int]:
    """Sensitive messages still waiting in the outbox are sealed too (models.messaging.seal)."""
    from models.messaging import OutboxMessage, is_sealed

    raw = type_coerce(OutboxMessage.payload, JSON)
    changed = seen = 0
    rows = session.execute(
        select(OutboxMessage.id, raw).where(
            OutboxMessage.sensitive.is_(True), OutboxMessage.status.in_(("pending", "sending"))
        )
    ).all()
    for ident, payload in rows:
        if not is_sealed(payload):
            continue
        seen += 1
        new = reencrypt(payload["sealed"])
        if new != payload["sealed"]:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == ident)
                .values(payload=type_coerce({"sealed": new}, JSON))
            )
            changed += 1
    return changed, seen
