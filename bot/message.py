"""Platform-neutral message types: adapters translate to and from these; handlers see nothing else."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ChatType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


@dataclass(frozen=True)
class IncomingMessage:
    platform: str
    message_id: str  # the platform's dedupe key (MsgId, event key, message_id ...)
    chat_type: ChatType
    chat_id: str  # for private chats the user id itself
    user_id: str
    text: str = ""  # already normalised by the adapter through bot.normalize: what the router matches
    typed: str = ""  # as the member wrote it (bot.normalize.typed_words): the source of kept free text
    mentioned: bool = False
    action: dict[str, Any] | None = None  # a button click's payload
    received_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    event: str | None = None  # non-message events: "enter", "bot_added", ...

    @property
    def is_group(self) -> bool:
        return self.chat_type == ChatType.GROUP

    def envelope(self) -> dict[str, Any]:
        data = asdict(self)
        data["chat_type"] = str(self.chat_type)
        data["received_at"] = self.received_at.isoformat() if self.received_at else None
        return data

    @classmethod
    def from_envelope(cls, data: dict[str, Any]) -> IncomingMessage:
        data = dict(data)
        data["chat_type"] = ChatType(data["chat_type"])
        if data.get("received_at"):
            data["received_at"] = datetime.fromisoformat(data["received_at"])
        return cls(**data)


@dataclass(frozen=True)
class Button:
    label: str
    action: dict[str, Any]  # e.g. {"do": "signup", "activity": 3}
    style: str = "primary"  # primary | default | danger


@dataclass(frozen=True)
class Text:
    text: str

    def to_payload(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class Card:
    title: str
    lines: list[str] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        return {
            "type": "card",
            "title": self.title,
            "lines": list(self.lines),
            "buttons": [{"label": b.label, "action": b.action, "style": b.style} for b in self.buttons],
        }

    def as_text(self) -> str:
        """Text fallback for channels that cannot show cards (webhooks, appchat)."""
        hints = [f"【{b.label}】" for b in self.buttons]
        return "\n".join([self.title, *self.lines, *([" ".join(hints)] if hints else [])])


@dataclass(frozen=True)
class File:
    """A file for the member to keep (the monthly birthday list as .xlsx). Stored base64 in the outbox payload;
    channels that cannot carry files (group webhooks, response_url, Feishu groups) send `as_text()` instead."""

    name: str
    data: bytes

    def to_payload(self) -> dict[str, Any]:
        return {"type": "file", "name": self.name, "data": base64.b64encode(self.data).decode("ascii")}

    def as_text(self) -> str:
        return f"（文件：{self.name}，请到管理后台下载）"


Outgoing = Text | Card | File


def payload_to_outgoing(payload: dict[str, Any]) -> Outgoing:
    if payload.get("type") == "file":
        return File(name=str(payload["name"]), data=base64.b64decode(payload["data"]))
    if payload.get("type") == "card":
        return Card(
            title=payload["title"],
            lines=list(payload.get("lines", [])),
            buttons=[
                Button(b["label"], b["action"], b.get("style", "primary")) for b in payload.get("buttons", [])
            ],
        )
    return Text(payload["text"])
