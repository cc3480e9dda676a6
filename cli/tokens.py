"""Integration-API tokens: `flask --app app tokens create|list|revoke`.

A token is shown once, when it is created; only its sha256 is stored (ApiToken.token_hash).
"""

from __future__ import annotations

import secrets

import click
from flask.cli import AppGroup
from sqlalchemy import select

from cli import bot
from models.member import ROLE_LABELS, ROLES
from models.staff import ApiToken

tokens_cli = AppGroup("tokens", help="集成接口（/api/v1）的访问令牌")


@tokens_cli.command("create")
@click.option("--name", required=True, help="令牌名称，例如调用方系统：oa、hr")
@click.option("--role", required=True, help=f"令牌的角色，决定可调用的接口：{', '.join(ROLES)}")
def create(name: str, role: str) -> None:
    """Create a token and print it once."""
    name = name.strip()
    if not name or len(name) > 64:
        raise click.ClickException("名称不能为空，最多64个字符。")
    if role not in ROLES:
        choices = "、".join(f"{r}（{ROLE_LABELS[r]}）" for r in ROLES)
        raise click.ClickException(f"未知角色“{role}”，可选：{choices}")
    token = secrets.token_urlsafe(32)
    b = bot()
    with b.db.transaction() as s:
        if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
            raise click.ClickException(f"已有名为“{name}”的令牌，请换一个名称（或先吊销旧令牌后另起名称）。")
        s.add(ApiToken(name=name, role=role, token_hash=ApiToken.hash(token), created_at=b.clock.now()))
    click.echo(f"已创建令牌“{name}”（角色 {role}）。令牌只显示这一次，请妥善保存：")
    click.echo(token)


@tokens_cli.command("list")
def list_tokens() -> None:
    """List tokens (name, role, created, last used); the tokens themselves are never shown."""
    b = bot()
    with b.db.Session() as s:
        rows = list(s.scalars(select(ApiToken).order_by(ApiToken.name)))
    if not rows:
        click.echo("还没有令牌。用 flask --app app tokens create --name 名称 --role 角色 创建。")
        return
    click.echo(f"{'名称':<20}{'角色':<20}{'状态':<8}{'创建时间':<18}最近使用")
    for t in rows:
        state = "有效" if t.active else "已吊销"
        used = _when(b, t.last_used_at) if t.last_used_at else "从未使用"
        click.echo(f"{t.name:<20}{t.role:<20}{state:<8}{_when(b, t.created_at):<18}{used}")


def _when(b, dt) -> str:
    return b.clock.local(dt).strftime("%Y-%m-%d %H:%M")


@tokens_cli.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a token by name: it stops working at once (the record stays for the audit trail)."""
    b = bot()
    with b.db.transaction() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
        if token is None:
            raise click.ClickException(f"没有名为“{name}”的令牌。用 flask --app app tokens list 查看。")
        if not token.active:
            click.echo(f"令牌“{token.name}”早已吊销。")
            return
        token.active = False
    click.echo(f"已吊销令牌“{name.strip()}”，使用它的请求将被拒绝。")


commands = [tokens_cli]
