"""What a handler gets: the message, the member, the open transaction, and ways to answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.message import Card, IncomingMessage, Outgoing, Text
from bot.normalize import Aligned, align
from bot.permissions import can
from models.member import Member
from models.messaging import Dialog

if TYPE_CHECKING:
    from bot.core import Bot


@dataclass
class Context:
    bot: Bot
    session: Session
    msg: IncomingMessage
    member: Member | None
    args: str = ""
    cut: tuple[tuple[int, int], ...] = ()  # where the matched trigger stood in `text` (see `raw_args`)
    dialog: Dialog | None = None
    replies: list[Outgoing] = field(default_factory=list)
    handler_name: str | None = None
    sensitive: bool = False  # True: the replies are scrubbed from the outbox once sent (anonymous senders)
    _aligned: tuple[IncomingMessage, Aligned] | None = field(default=None, init=False, repr=False)

    @property
    def text(self) -> str:
        """The message in its normal form (full-width folded, 三号 -> 3号): match on this, never store it."""
        return self.msg.text

    @property
    def words(self) -> str:
        """The message as the member typed it (without our @-mention): what a dialog step keeps."""
        return self.aligned.typed()

    @property
    def raw_args(self) -> str:
        """`args` as the member typed them: the message without the trigger words the router matched."""
        return self.aligned.typed_without(self.cut)

    def words_for(self, part: str) -> str:
        """The typed words behind `part`, a piece of `text` a handler cut out (the reason after a number): its
        last place in `text`, with the closing punctuation the handler trimmed (the member's final 。 stays).
        A part that is not one piece of `text` (words cut from its middle) stays as it is."""
        pos = self.text.rfind(part) if part else -1
        if pos < 0:
            return part
        end = pos + len(part)
        return self.aligned.typed(pos, end if self.text[end:].strip(" ,.!?:;") else None)

    @property
    def aligned(self) -> Aligned:
        """`text` aligned with what was typed; a message without typed words is its own typed form."""
        if self._aligned is None or self._aligned[0] is not self.msg:
            found = align(self.msg.typed, (self.settings.BOT_NAME,)) if self.msg.typed else None
            if found is None or found.text != self.msg.text:
                found = Aligned.identity(self.msg.text)
            self._aligned = (self.msg, found)
        return self._aligned[1]

    @property
    def clock(self):
        return self.bot.clock

    @property
    def settings(self):
        return self.bot.settings

    def reply(self, message: Outgoing | str) -> None:
        self.replies.append(Text(message) if isinstance(message, str) else message)

    def card(self, title: str, lines: list[str], buttons=()) -> None:
        self.replies.append(Card(title, list(lines), list(buttons)))

    def can(self, permission: str) -> bool:
        return self.member is not None and can(self.member.roles, permission)

    def notify(self, member: Member, message: Outgoing | str, key: str) -> bool:
        """Push a private message to another member through the outbox (once per key)."""
        out = Text(message) if isinstance(message, str) else message
        return self.bot.notify_member(self.session, member, out, key)

    def invite_private(self, group_text: str, private_text: str, key: str) -> None:
        """A personal matter raised in a group: answer there only with `group_text` (never the member's words)
        and open the private chat with `private_text`, where the member carries on (once per key)."""
        self.reply(group_text)
        if self.member is not None:
            self.notify(self.member, private_text, key)

    # dialogs ---------------------------------------------------------------------------------------------
    def start_dialog(self, name: str, step: str, data: dict[str, Any] | None = None) -> Dialog:
        self.end_dialog()
        self.dialog = Dialog(
            platform=self.msg.platform,
            chat_id=self.msg.chat_id,
            user_id=self.msg.user_id,
            name=name,
            step=step,
            data=data or {},
            expires_at=self._expiry(),
            updated_at=self.clock.now(),
        )
        self.session.add(self.dialog)
        self.session.flush()
        return self.dialog

    def advance(self, step: str, **data: Any) -> None:
        """Move the active dialog to `step`, merging `data` into its state and renewing the timeout."""
        assert self.dialog is not None, "no active dialog"
        self.dialog.step = step
        self.dialog.data = {**self.dialog.data, **data}
        self.dialog.expires_at = self._expiry()
        self.dialog.updated_at = self.clock.now()

    def hand_on(self, question: str) -> bool:
        """A known command typed at a step that asked something else (我的报名 while choosing 尺码) is answered as
        usual and the step stays open: `question` is asked again after the answer. False: not a command."""
        if self.dialog is None or self.bot.router.command(self.msg.text) is None:
            return False
        name, step, data = self.dialog.name, self.dialog.step, dict(self.dialog.data)
        self.end_dialog()
        self.bot.dispatch(self)
        if active_dialog(self.session, self.msg) is None:  # the command did not start a dialog of its own
            self.start_dialog(name, step, data)
            self.reply("刚才的问题还等着您回答（发送“取消”可退出）：\n" + question)
        return True

    def end_dialog(self) -> None:
        self.session.execute(
            delete(Dialog).where(
                Dialog.platform == self.msg.platform,
                Dialog.chat_id == self.msg.chat_id,
                Dialog.user_id == self.msg.user_id,
            )
        )
        self.dialog = None

    def _expiry(self):
        return self.clock.now() + timedelta(minutes=self.settings.DIALOG_TIMEOUT_MINUTES)


def active_dialog(session: Session, msg: IncomingMessage) -> Dialog | None:
    return session.scalar(
        select(Dialog).where(
            Dialog.platform == msg.platform, Dialog.chat_id == msg.chat_id, Dialog.user_id == msg.user_id
        )
    )
