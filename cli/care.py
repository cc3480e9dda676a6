"""Hardship and care data: `flask --app app care rotate-key`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from cli import bot
from models import crypto

care_cli = AppGroup("care", help="困难帮扶与关怀（加密数据）")


@care_cli.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every sensitive field with DATA_KEY; DATA_KEY_OLD (the previous key) still opens old values.

    Safe to run again: values already under DATA_KEY are left alone. Afterwards DATA_KEY_OLD can be removed.
    """
    b = bot()
    try:
        crypto.configure(b.settings)
        with b.db.transaction() as s:
            counts = crypto.rotate(s)
    except crypto.DataKeyError:
        raise click.ClickException(
            "有加密数据用 DATA_KEY 和 DATA_KEY_OLD 都打不开，什么也没有改动。"
            "请把原来的密钥设为 DATA_KEY_OLD（新密钥设为 DATA_KEY）后再运行。"
        ) from None
    changed = sum(c for c, _ in counts.values())
    values = sum(n for _, n in counts.values())
    for name, (c, n) in counts.items():
        if n:
            click.echo(f"{name}: 重新加密 {c} / {n}")
    click.echo(f"共 {values} 个加密字段，重新加密 {changed} 个，其余已是当前密钥。")
    if changed == 0 and b.settings.DATA_KEY_OLD:
        click.echo("全部数据已使用 DATA_KEY 加密：可以移除 DATA_KEY_OLD（请等进行中的困难申报对话过期，约30分钟）。")


commands = [care_cli]
