"""The platform-neutral bot: dedupe, identity, dialog or route, handler, outbox — in one transaction.

Commit, then acknowledge: `Bot.handle` returns only after the inbound row, the handler's effects and its
replies (as outbox rows) are committed together. A crash before that leaves nothing, so the platform's retry
is processed afresh; a retry after it hits the unique key and is acknowledged without running again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from bot import outbox
from bot.clock import Clock
from bot.context import Context, active_dialog
from bot.message import IncomingMessage, Outgoing, Text
from bot.observability import HANDLER_SECONDS, MESSAGES
from bot.router import Match, Router, is_cancel
from config import Settings
from models import crypto
from models.base import Database
from models.member import Member, PlatformIdentity, member_for_identity
from models.messaging import InboundMessage

log = logging.getLogger(__name__)

SORRY = "抱歉，系统出了点问题，您的消息已记录，工作人员会尽快处理。可以稍后再试一次。"
# 取消/退出 inside a dialog: it only leaves the dialog. "已取消" alone read as if the meeting or sign-up the
# dialog was about had been cancelled.
LEFT_DIALOG = "好的，已退出，刚才的内容没有保存，也没有做任何改动。需要时再找我。"
REDACTED = "[已隐去]"  # what a failed message to a redacting handler keeps of the text


@dataclass
class HandleResult:
    duplicate: bool = False
    ignored: bool = False
    deferred: bool = False
    failed: bool = False
    inbound_id: int | None = None
    handler: str | None = None
    replies: list[Outgoing] = field(default_factory=list)


def _blanked(msg: IncomingMessage) -> dict[str, Any]:
    """The envelope of a failed message to a redacting handler: everything but what was typed."""
    return {**msg.envelope(), "text": REDACTED, "typed": REDACTED, "raw": {"redacted": True}}


class Bot:
    def __init__(self, settings: Settings, db: Database, router: Router, clock: Clock | None = None):
        self.settings = settings
        self.db = db
        self.router = router
        self.clock = clock or Clock(settings.tz)
        self.senders: dict[str, outbox.Sender] = {}
        crypto.configure(settings)  # sensitive outbox rows are sealed with DATA_KEY in every process

    # inbound -----------------------------------------------------------------------------------------------
    def handle(self, msg: IncomingMessage, defer: bool = False) -> HandleResult:
        """Process one delivery. `defer=True` only records it for the worker (work too slow for the deadline)."""
        if msg.is_group and not msg.mentioned and msg.action is None and msg.event is None:
            return HandleResult(ignored=True)  # members talk among themselves; we act only when addressed
        started = time.perf_counter()
        try:
            with self.db.transaction() as s:
                inbound_id = self._record(s, msg, "received" if defer else "processing")
                if inbound_id is None:
                    return HandleResult(duplicate=True)
                if defer:
                    return HandleResult(deferred=True, inbound_id=inbound_id)
                result = self._run(s, msg, inbound_id)
        except DBAPIError:
            raise  # the database is unreachable: answer 5xx so the platform retries later
        except Exception as exc:
            result = self._record_failure(msg, type(exc).__name__)
            # the number the console's 消息发送 page shows for it
            log.exception("handler failed for inbound #%s (%s)", result.inbound_id, msg.platform)
        MESSAGES.labels(msg.platform, result.handler or "-").inc()
        HANDLER_SECONDS.labels(msg.platform).observe(time.perf_counter() - started)
        return result

    def process_pending(self, limit: int = 50) -> int:
        """Run deferred inbound rows (status 'received'), oldest first; each in its own transaction."""
        done = 0
        for _ in range(limit):
            with self.db.transaction() as s:
                q = (
                    select(InboundMessage)
                    .where(InboundMessage.status == "received")
                    .order_by(InboundMessage.id)
                )
                if not self.db.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                row = s.scalar(q.limit(1))
                if row is None:
                    break
                msg = IncomingMessage.from_envelope(row.envelope)
                try:
                    with s.begin_nested():
                        self._run(s, msg, row.id)
                except (OperationalError, InterfaceError):
                    raise  # the database is away: the row stays 'received' for the next pass
                except Exception as exc:  # a bug, or an error that would repeat (a constraint, a too-long value)
                    log.exception("handler failed for inbound #%s (%s, deferred)", row.id, msg.platform)
                    row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"[:1000]
                    if self._input_is_sensitive(s, msg):  # the handler's own redaction was rolled back
                        row.envelope = _blanked(msg)
                    self._enqueue_replies(s, msg, [Text(SORRY)])
            done += 1
        return done

    def _record(self, s: Session, msg: IncomingMessage, status: str) -> int | None:
        values: dict[str, Any] = dict(
            platform=msg.platform,
            dedupe_key=msg.message_id[:255],
            chat_type=str(msg.chat_type),
            chat_id=msg.chat_id,
            user_id=msg.user_id,
            status=status,
            envelope=msg.envelope(),
            received_at=self.clock.now(),
        )
        ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(InboundMessage)
        stmt = ins.values(**values).on_conflict_do_nothing(index_elements=["platform", "dedupe_key"])
        return s.execute(stmt.returning(InboundMessage.id)).scalar()

    def _record_failure(self, msg: IncomingMessage, error: str) -> HandleResult:
        """The handler crashed: its effects are rolled back, but the message is kept and the member told. What was
        typed for a route, dialog or button registered with `redact` (a hardship story) is kept blanked: the
        handler's own redaction was rolled back with everything else."""
        with self.db.transaction() as s:
            redact = self._input_is_sensitive(s, msg)
            inbound_id = self._record(s, msg, "failed")
            if inbound_id is None:
                return HandleResult(duplicate=True)
            values: dict[str, Any] = {"error": f"{error} (handler raised)"}
            if redact:
                values["envelope"] = _blanked(msg)
            s.execute(update(InboundMessage).where(InboundMessage.id == inbound_id).values(**values))
            replies: list[Outgoing] = [Text(SORRY)]
            self._enqueue_replies(s, msg, replies)
        return HandleResult(failed=True, inbound_id=inbound_id, replies=replies)

    def _input_is_sensitive(self, s: Session, msg: IncomingMessage) -> bool:
        """Whether `msg` went to a redacting handler: the open dialog, the button, or the best routes."""
        dialog = active_dialog(s, msg)
        if dialog is not None and dialog.expires_at > self.clock.now() and msg.action is None:
            return f"dialog:{dialog.name}" in self.router.redacted
        if msg.action is not None:
            return f"action:{msg.action.get('do', '')}" in self.router.redacted
        matches = self.router.matches(msg.text) if msg.text and msg.event is None else []
        return any(m.route.redact for m in matches if m.score == matches[0].score)

    def _run(self, s: Session, msg: IncomingMessage, inbound_id: int) -> HandleResult:
        if not msg.is_group:
            # A private message, click or event from an account marked unreachable (WeCom invaliduser, Feishu
            # 230013) proves the app reaches it again; a group message does not (a group bot hears people the
            # app cannot write to), so only private traffic lifts the mark.
            s.execute(
                update(PlatformIdentity)
                .where(
                    PlatformIdentity.platform == msg.platform,
                    PlatformIdentity.platform_user_id == msg.user_id,
                    PlatformIdentity.unreachable.is_(True),
                )
                .values(unreachable=False)
            )
        member = member_for_identity(s, msg.platform, msg.user_id)
        if member is not None and not member.active:
            member = None
        ctx = Context(bot=self, session=s, msg=msg, member=member)
        self.dispatch(ctx)
        s.execute(
            update(InboundMessage)
            .where(InboundMessage.id == inbound_id)
            .values(status="done", handler=ctx.handler_name, processed_at=self.clock.now())
        )
        self._enqueue_replies(s, msg, ctx.replies, sensitive=ctx.sensitive)
        return HandleResult(inbound_id=inbound_id, handler=ctx.handler_name, replies=list(ctx.replies))

    def dispatch(self, ctx: Context, msg: IncomingMessage | None = None) -> None:
        """Handle `msg` (default: ctx.msg) as a fresh message in `ctx`: the open dialog, the button, the event or
        the best route, with the replies added to ctx and the effects in ctx's transaction. For a dialog step
        that hands on a message it was not waiting for, and an adapter that learns late what a message is."""
        if msg is not None:
            ctx.msg = msg
        ctx.args, ctx.cut, ctx.dialog = "", (), None
        msg, router = ctx.msg, self.router
        dialog = active_dialog(ctx.session, msg)
        if dialog is not None and dialog.expires_at <= self.clock.now():
            ctx.session.delete(dialog)
            ctx.session.flush()
            dialog = None
            if msg.action is None and msg.event is None:
                ctx.reply("上一次的操作已超时结束，请重新开始。")
                if is_cancel(msg.text):
                    ctx.handler_name = "dialog_expired"
                    return
        if msg.event is not None:
            func = router.events.get(msg.event)
            ctx.handler_name = f"event:{msg.event}"
            if func:
                func(ctx)
            return
        if msg.action is not None:
            name = str(msg.action.get("do", ""))
            func = router.actions.get(name)
            ctx.handler_name = f"action:{name}" if func else "action:unknown"  # payloads are user-controlled
            if func is None:
                ctx.reply("这个按钮已失效，请发送“帮助”查看可以做什么。")
            elif ctx.member is None:
                router.events["unbound"](ctx)
            else:
                func(ctx)
            return
        if dialog is not None:
            ctx.dialog = dialog
            ctx.handler_name = f"dialog:{dialog.name}"
            if is_cancel(msg.text):
                ctx.end_dialog()
                ctx.reply(LEFT_DIALOG)
                return
            router.dialogs[dialog.name](ctx)
            return
        if not msg.text:
            return
        matches = router.matches(msg.text)
        if not matches:
            ctx.handler_name = "fallback"
            router.events["fallback"](ctx)
            return
        top = matches[0]
        rivals = [m for m in matches[1:] if m.score == top.score and m.route.name != top.route.name]
        if rivals:
            ctx.handler_name = "ambiguous"
            options = [top, *rivals]
            lines = [f"{i}. {m.route.help or m.route.name}" for i, m in enumerate(options, 1)]
            ctx.reply(
                "您是想办哪一件事？\n" + "\n".join(lines) + "\n请说得具体一点，例如“报名 3”或“我的报名”。"
            )
            return
        self.run_route(ctx, top)

    def run_route(self, ctx: Context, match: Match) -> None:
        """Run a matched route with the core's checks (bound member, private-only routes); also for a handler that
        finds the message was meant for another route."""
        route = match.route
        ctx.handler_name = route.name
        ctx.args, ctx.cut = match.args, match.cut
        if ctx.member is None and not route.public:
            self.router.events["unbound"](ctx)
            return
        if ctx.msg.is_group and not route.group_ok:
            ctx.reply("这件事涉及个人信息，请私聊我办理（点我的头像发消息即可）。")
            return
        route.func(ctx)

    def rehearse(self, msg: IncomingMessage, handler: str) -> list[Outgoing]:
        """What `handler` (the route or button action that answered `msg` before) would reply to it now, with
        nothing kept: its transaction is rolled back. Dialog steps, events and fallbacks are not re-run ([]).
        Feishu shows a clicked card as it reads now ("（剩4）", 您的状态：已报名) this way."""
        with self.db.Session() as s:
            try:
                member = member_for_identity(s, msg.platform, msg.user_id)
                if member is None or not member.active:
                    return []
                ctx = Context(bot=self, session=s, msg=msg, member=member, handler_name=handler)
                if msg.action is not None:
                    func = self.router.actions.get(str(msg.action.get("do", "")))
                    if func is None or handler != f"action:{msg.action.get('do')}":
                        return []
                else:
                    match = next((m for m in self.router.matches(msg.text) if m.route.name == handler), None)
                    if match is None:
                        return []
                    ctx.args, ctx.cut, func = match.args, match.cut, match.route.func
                func(ctx)
                return list(ctx.replies)
            finally:
                s.rollback()

    def _enqueue_replies(
        self, s: Session, msg: IncomingMessage, replies: list[Outgoing], sensitive: bool = False
    ) -> None:
        kind, target = ("chat", msg.chat_id) if msg.is_group else ("user", msg.user_id)
        context = {"in_reply_to": msg.message_id, **(msg.raw.get("reply") or {})}
        for i, out in enumerate(replies):
            outbox.enqueue(
                s,
                platform=msg.platform,
                target_kind=kind,
                target_id=target,
                message=out,
                key=f"reply:{msg.platform}:{msg.message_id}:{i}",
                context=context,
                sensitive=sensitive,
                now=self.clock.now(),
            )

    # outbound ----------------------------------------------------------------------------------------------
    def notify_member(
        self, s: Session, member: Member, message: Outgoing, key: str, sensitive: bool = False
    ) -> bool:
        """Queue a private message to a member's preferred account (`preferred_identity`); False if unreachable.
        `sensitive` (health, money, family, anonymity): the outbox scrubs the row once it is sent or given up."""
        idents = [i for i in member.identities if not i.unreachable and i.platform in self.senders]
        if not idents:
            idents = list(
                s.scalars(
                    select(PlatformIdentity).where(
                        PlatformIdentity.member_id == member.id, PlatformIdentity.unreachable.is_(False)
                    )
                )
            )
            idents = [i for i in idents if i.platform in self.senders]
        if not idents:
            return False
        ident = preferred_identity(idents)
        outbox.enqueue(
            s,
            platform=ident.platform,
            target_kind="user",
            target_id=ident.platform_user_id,
            message=message,
            key=key,
            member_id=member.id,
            sensitive=sensitive,
            now=self.clock.now(),
        )
        return True

    def notify_chat(self, s: Session, platform: str, chat_id: str, message: Outgoing, key: str) -> bool:
        return outbox.enqueue(
            s,
            platform=platform,
            target_kind="chat",
            target_id=chat_id,
            message=message,
            key=key,
            now=self.clock.now(),
        )


def preferred_identity(idents: list[PlatformIdentity]) -> PlatformIdentity:
    """A real platform account (WeCom, Feishu) before a sandbox one, then the most recently linked: a member who
    once tried the sandbox still gets their pushes where they really are."""
    return max(idents, key=lambda i: (i.platform != "sandbox", i.id))


def member_by_id(s: Session, member_id: int) -> Member | None:
    return s.get(Member, member_id)
