"""`flask --app app sandbox chat`: the sandbox chat in a terminal (same router, handlers and outbox)."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from bot import outbox
from bot.adapters import sandbox
from cli import bot
from models.member import Member, link_identity

sandbox_cli = AppGroup("sandbox", help="本地试用：在终端里和机器人聊天")


def _render(payload: dict) -> str:
    if payload.get("type") == "card":
        lines = [f"┌ {payload['title']}", *(f"│ {line}" for line in payload["lines"])]
        lines += [f"│ [{i}] {b['label']}" for i, b in enumerate(payload["buttons"], 1)]
        return "\n".join(lines)
    if payload.get("type") == "file":
        return f"[文件] {payload['name']}（在试用页面 {payload['url']} 下载）"
    return payload["text"]


@sandbox_cli.command("chat")
@click.option("--member", "employee_no", help="演示会员的工号（不填则是未绑定的新用户）")
@click.option("--group", "group_id", type=int, help="在这个小组的群聊里说话（视为 @机器人）")
def chat(employee_no: str | None, group_id: int | None) -> None:
    """Type messages; '/按钮 N' clicks button N of the last card; Ctrl-D quits."""
    b = bot()
    if not b.settings.SANDBOX_ENABLED:  # it would link a sandbox account to a real member
        raise click.ClickException(
            "试用沙盒已关闭（SANDBOX_ENABLED=off，生产环境必须关闭）。请在开发环境里试用：bash scripts/run.sh"
        )
    user = "sb-stranger"
    if employee_no:
        with b.db.transaction() as s:
            member = s.scalar(select(Member).where(Member.employee_no == employee_no))
            if member is None:
                raise click.BadParameter(f"没有工号为 {employee_no} 的会员", param_hint="--member")
            user = sandbox.user_id_for(member)
            link_identity(s, member, sandbox.PLATFORM, user)
    chat_id = sandbox.group_chat_id(group_id) if group_id else user
    seen = max((m["id"] for m in sandbox.messages_since(b, chat_id, 0)), default=0)
    buttons: list[dict] = []
    click.echo("输入消息后回车；“/按钮 1”点击最近一张卡片的第1个按钮；Ctrl-D 退出。")
    while True:
        try:
            text = input("我> ").strip()
        except EOFError:
            return
        if not text:
            continue
        action = None
        if text.startswith("/按钮"):
            idx = text.removeprefix("/按钮").strip()
            if not idx.isdigit() or not 0 < int(idx) <= len(buttons):
                click.echo("没有这个按钮。")
                continue
            action, text = buttons[int(idx) - 1]["action"], ""
        msg = sandbox.incoming(b, user_id=user, chat_id=chat_id, text=text, action=action)
        sandbox.send_and_deliver(b, msg, text or "[点击按钮]")
        outbox.drain(b, platform=sandbox.PLATFORM)
        for m in sandbox.messages_since(b, chat_id, seen):
            seen = m["id"]
            if m["direction"] == "out":
                if m["payload"].get("type") == "card":
                    buttons = m["payload"]["buttons"]
                click.echo(f"{b.settings.BOT_NAME}> {_render(m['payload'])}")


commands = [sandbox_cli]
