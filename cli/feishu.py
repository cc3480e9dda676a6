"""Feishu commands: the long-connection receiver and a settings check (`flask --app app feishu ...`)."""

from __future__ import annotations

import threading
import time

import click
from flask.cli import AppGroup

from cli import bot

feishu_cli = AppGroup("feishu", help="飞书：长连接接收事件、检查配置")


def _configured():
    b = bot()
    if not b.settings.feishu_enabled:
        raise click.ClickException("请先设置 FEISHU_APP_ID 和 FEISHU_APP_SECRET。")
    return b


@feishu_cli.command("longconn")
@click.option(
    "--deliver/--no-deliver",
    default=False,
    help="Also run the worker's job (outbox, deferred messages) here.",
)
def longconn(deliver: bool) -> None:
    """Receive events over Feishu's long connection (no public URL needed); blocks until stopped.

    Events take the same path as POST /feishu/events (dispatch_event). Replies leave through the outbox:
    run `flask --app app worker run` next to it, or pass --deliver.
    """
    from bot.adapters.feishu import longconn_client
    from bot.adapters.feishu_api import prefetch_bot_open_id

    b = _configured()
    if not prefetch_bot_open_id(b):  # known before the first group @-mention arrives
        click.echo("暂时取不到机器人 open_id，群里 @我 的消息会先交给后台处理。", err=True)
    if deliver:
        threading.Thread(target=_deliver_loop, args=(b,), daemon=True, name="feishu-outbox").start()
    client = longconn_client(b)
    click.echo(f"飞书长连接启动：{b.settings.FEISHU_API_BASE}（Ctrl+C 退出）")
    client.start()  # lark-oapi: blocks forever, reconnects by itself


def _deliver_loop(b) -> None:
    from bot import outbox

    while True:
        try:
            if not b.process_pending() + outbox.deliver_due(b, platform="feishu"):
                time.sleep(1.0)
        except Exception as exc:  # keep delivering; the next pass retries
            click.echo(f"outbox delivery failed: {type(exc).__name__}", err=True)
            time.sleep(5.0)


@feishu_cli.command("check")
def check() -> None:
    """Fetch a tenant token and the bot's own open_id (cached in the database) to check the settings."""
    from bot.adapters.feishu import FeishuUnavailable
    from bot.adapters.feishu_api import api_for, bot_open_id

    b = _configured()
    try:
        api_for(b).token()
        open_id = bot_open_id(b)
    except FeishuUnavailable as exc:
        raise click.ClickException(f"飞书接口不可用：{exc}") from None
    s = b.settings
    click.echo(f"应用凭证有效；机器人 open_id：{open_id}")
    mode = (
        "Encrypt Key + 签名校验"
        if s.FEISHU_ENCRYPT_KEY
        else ("Verification Token" if s.FEISHU_VERIFICATION_TOKEN else "未配置")
    )
    click.echo(f"事件回调校验方式：{mode}")


commands = [feishu_cli]
