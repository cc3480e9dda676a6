"""WeCom commands: `flask --app app wecom menu` creates the app menu; `wecom check` tests the credentials;
`wecom chats` / `wecom webhook` list chats and set a group webhook; `wecom appchat add|create` registers or creates
a group chat of the app (appchat) for broadcasts."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from cli import bot

DB_HINT = "数据库还没有建表或版本过旧：请先运行 flask --app app db upgrade"
wecom_cli = AppGroup("wecom", help="企业微信：应用菜单与连通性检查")


def menu_payload() -> dict:
    from bot.adapters.wecom import MENU

    buttons = []
    for top, subs in MENU:
        if len(subs) == 1:
            key, label, _ = subs[0]
            buttons.append({"type": "click", "name": label, "key": key})
        else:
            buttons.append(
                {
                    "name": top,
                    "sub_button": [{"type": "click", "name": label, "key": key} for key, label, _ in subs],
                }
            )
    return {"button": buttons}


def _client():
    from bot.adapters.wecom_api import WeComClient

    b = bot()
    s = b.settings
    if not s.wecom_enabled:
        raise click.ClickException(
            "企业微信自建应用未配置：请设置 WECOM_CORP_ID、WECOM_AGENT_ID、WECOM_SECRET、WECOM_TOKEN、WECOM_AES_KEY"
        )
    return WeComClient(s, b.db, b.clock), s


@wecom_cli.command("menu")
def menu() -> None:
    """Create the app menu (活动报名 / 我要办: 我要提案, 困难帮扶 / 我的: 我的信息, 我的报名, 帮助)."""
    from bot.adapters.wecom_api import WeComError, ip_alert_text, scrub, untrusted_ip

    client, s = _client()
    try:
        data = client.post(f"/cgi-bin/menu/create?agentid={s.WECOM_AGENT_ID}", menu_payload())
    except WeComError as exc:
        data = {"errcode": exc.code, "errmsg": str(exc)}
    except SQLAlchemyError:
        raise click.ClickException(DB_HINT) from None
    except Exception as exc:
        raise click.ClickException(scrub(f"无法连接企业微信：{type(exc).__name__}: {exc}")) from None
    code = int(data.get("errcode") or 0)
    if code == 60020:
        raise click.ClickException(ip_alert_text(untrusted_ip(str(data.get("errmsg", "")))))
    if code:
        raise click.ClickException(scrub(f"企业微信返回错误 {code}: {data.get('errmsg', '')}"))
    click.echo("应用菜单已创建：活动报名 / 我要办 / 我的。成员重新进入应用即可看到。")


@wecom_cli.command("check")
def check() -> None:
    """Check WECOM_CORP_ID / WECOM_SECRET / WECOM_AGENT_ID and that this server's IP is trusted (60020)."""
    from bot.adapters.wecom_api import WeComError, ip_alert_text, scrub, untrusted_ip

    client, s = _client()
    try:
        client.token(force=True)
        data = client.get("/cgi-bin/agent/get", {"agentid": s.WECOM_AGENT_ID})
    except WeComError as exc:
        if exc.code == 60020:
            raise click.ClickException(ip_alert_text(untrusted_ip(str(exc)))) from None
        raise click.ClickException(
            f"获取 access_token 失败：{scrub(str(exc))}（40001/40013 多为 Secret 或企业ID填错）"
        ) from None
    except SQLAlchemyError:
        raise click.ClickException(DB_HINT) from None
    except Exception as exc:
        raise click.ClickException(scrub(f"无法连接企业微信：{type(exc).__name__}: {exc}")) from None
    code = int(data.get("errcode") or 0)
    if code == 60020:
        raise click.ClickException(ip_alert_text(untrusted_ip(str(data.get("errmsg", "")))))
    if code:
        raise click.ClickException(
            scrub(
                f"企业微信返回错误 {code}: {data.get('errmsg', '')}（请核对 WECOM_AGENT_ID 与应用的 Secret 是否匹配）"
            )
        )
    click.echo(f"企业微信连接正常：应用“{data.get('name', '')}”，凭证有效，本服务器IP已被信任。")


@wecom_cli.command("chats")
def chats() -> None:
    """List the WeCom group chats the bot knows (seen by the AI bot or configured here)."""
    from sqlalchemy import select

    from models.messaging import Chat

    with bot().db.Session() as s:
        rows = list(s.scalars(select(Chat).where(Chat.platform == "wecom").order_by(Chat.id)))
    if not rows:
        click.echo("还没有企业微信群：在群里 @机器人 说一句话，或用 wecom webhook 添加。")
    for c in rows:
        hook = "已配置消息推送" if c.webhook_url else "未配置消息推送"
        click.echo(f"{c.chat_id}\t{c.title or '-'}\t小组ID {c.group_id or '-'}\t{hook}")


def _check_group(s, group_id: int | None) -> None:
    from models.member import Group

    if group_id is not None and (not 0 < group_id < 2**31 or s.get(Group, group_id) is None):
        raise click.ClickException(
            f"没有ID为 {group_id} 的工会小组。可以不填 --group-id，之后在控制台“企业微信群”页按名称选择小组"
        )


@wecom_cli.command("webhook")
@click.argument("chat_id")
@click.argument("url")
@click.option("--title", default="", help="群名称（便于识别）")
@click.option("--group-id", type=int, default=None, help="对应的工会小组ID")
def webhook(chat_id: str, url: str, title: str, group_id: int | None) -> None:
    """Set the 消息推送 (group robot) webhook URL of a group chat, used for broadcasts into that group."""
    from sqlalchemy import select

    from bot.adapters.wecom_api import webhook_url_error
    from models.messaging import Chat

    error = webhook_url_error(url, bot().settings.WECOM_API_BASE)
    if error:
        raise click.ClickException(error)
    url = url.strip()
    with bot().db.transaction() as s:
        _check_group(s, group_id)
        chat = s.scalar(select(Chat).where(Chat.platform == "wecom", Chat.chat_id == chat_id))
        if chat is None:
            chat = Chat(platform="wecom", chat_id=chat_id, title=title)
            s.add(chat)
        chat.webhook_url = url
        chat.unreachable = False
        if title:
            chat.title = title
        if group_id is not None:
            chat.group_id = group_id
    click.echo(f"已为群 {chat_id} 配置消息推送地址（密钥不显示）。")


# --- appchat: groups the app created ------------------------------------------------------------------
APPCHAT_HINT = (
    "appchat 只能用于本应用通过接口创建的群聊，且应用的可见范围须为根部门"
    "（企业微信管理后台 → 应用管理 → 本应用 → 可见范围）。其他群请在控制台“企业微信群”配置消息推送地址。"
)


def _appchat_call(client, method: str, path: str, **kwargs) -> dict:
    """One appchat API call with the CLI's Chinese errors (60020 names the IP to trust)."""
    from bot.adapters.wecom_api import WeComError, ip_alert_text, scrub, untrusted_ip

    try:
        data = client.call(method, path, **kwargs)
    except WeComError as exc:
        data = {"errcode": exc.code, "errmsg": str(exc)}
    except SQLAlchemyError:
        raise click.ClickException(DB_HINT) from None
    except Exception as exc:
        raise click.ClickException(scrub(f"无法连接企业微信：{type(exc).__name__}: {exc}")) from None
    code = int(data.get("errcode") or 0)
    if code == 60020:
        raise click.ClickException(ip_alert_text(untrusted_ip(str(data.get("errmsg", "")))))
    if code:
        raise click.ClickException(
            scrub(f"企业微信返回错误 {code}: {data.get('errmsg', '')}。{APPCHAT_HINT}")
        )
    return data


def _register_chat(chat_id: str, title: str, group_id: int | None) -> None:
    """Remember an app-created chat: broadcasts to it go out through appchat/send (it has no webhook)."""
    from sqlalchemy import select

    from models.messaging import Chat

    with bot().db.transaction() as s:
        _check_group(s, group_id)
        chat = s.scalar(select(Chat).where(Chat.platform == "wecom", Chat.chat_id == chat_id))
        if chat is None:
            chat = Chat(platform="wecom", chat_id=chat_id, title="")
            s.add(chat)
        chat.unreachable = False
        chat.title = (title or chat.title)[:100]
        if group_id is not None:
            chat.group_id = group_id


@wecom_cli.group("appchat")
def appchat() -> None:
    """Group chats the app created (应用群聊): register one, or create one through the API."""


@appchat.command("add")
@click.argument("chat_id")
@click.option("--title", default="", help="群名称（不填则用企业微信里的群名）")
@click.option("--group-id", type=int, default=None, help="对应的工会小组ID")
def appchat_add(chat_id: str, title: str, group_id: int | None) -> None:
    """Register an existing app-created group chat (checked with appchat/get) for broadcasts."""
    chat_id = chat_id.strip()
    if not chat_id or len(chat_id) > 128 or not chat_id.isprintable():
        raise click.ClickException("请给出群聊ID（chatid，128个字符以内）")
    client, _ = _client()
    info = (
        _appchat_call(client, "GET", "/cgi-bin/appchat/get", params={"chatid": chat_id}).get("chat_info")
        or {}
    )
    _register_chat(chat_id, title or str(info.get("name") or ""), group_id)
    members = len(info.get("userlist") or [])
    click.echo(
        f"已登记应用群聊 {chat_id}（{title or info.get('name') or '未命名'}，{members}人），群发通知会通过应用发到这个群。"
    )


@appchat.command("create")
@click.argument("name")
@click.option(
    "--member", "members", multiple=True, required=True, help="成员的企业微信账号（至少2人，可重复此选项）"
)
@click.option("--owner", default="", help="群主的企业微信账号（须是成员之一；不填由企业微信指定）")
@click.option("--chat-id", default="", help="自定义群聊ID（最多32个字母或数字；不填由企业微信生成）")
@click.option("--group-id", type=int, default=None, help="对应的工会小组ID")
def appchat_create(
    name: str, members: tuple[str, ...], owner: str, chat_id: str, group_id: int | None
) -> None:
    """Create a group chat through appchat/create and register it for broadcasts."""
    import re

    users = list(dict.fromkeys(m.strip() for m in members if m.strip()))
    if not 2 <= len(users) <= 2000:
        raise click.ClickException("群成员需要2到2000人：用 --member 账号 列出每一位成员")
    if owner and owner not in users:
        raise click.ClickException("群主必须是群成员之一（也用 --member 列出）")
    if chat_id and not re.fullmatch(r"[0-9A-Za-z]{1,32}", chat_id):
        raise click.ClickException("自定义群聊ID只能是最多32个字母或数字")
    if not name.strip() or len(name) > 50:
        raise click.ClickException("请给出群名称（50个字以内）")
    payload: dict = {"name": name.strip(), "userlist": users}
    if owner:
        payload["owner"] = owner
    if chat_id:
        payload["chatid"] = chat_id
    client, _ = _client()
    created = _appchat_call(client, "POST", "/cgi-bin/appchat/create", payload=payload)
    new_id = str(created.get("chatid") or chat_id)
    _register_chat(new_id, name.strip(), group_id)
    click.echo(
        f"已创建群聊“{name.strip()}”（{len(users)}人），群聊ID {new_id}。群发通知会通过应用发到这个群。"
    )


commands = [wecom_cli]
