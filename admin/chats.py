"""Console page for WeCom group chats: the chats the bot knows (seen by the AI bot, registered with the CLI or
added here), their union group, and the group webhook (消息推送) that carries broadcasts into each chat.

The webhook address is a credential (its key is all it takes to post into the chat): it is validated on the
way in (only `<WECOM_API_BASE>/cgi-bin/webhook/send?key=…`) and never shown again, only the key's last 4
characters.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from admin import console_blueprint, nav, require
from bot.adapters.wecom_api import mask_webhook, webhook_url_error
from models.member import Branch, Group
from models.messaging import Chat

bp = console_blueprint("chats_admin", __name__, url_prefix="/admin/chats")
nav.register("企业微信群", "chats_admin.index", "chats.manage", order=80)

PLATFORM = "wecom"


def init_app(app) -> None:
    if "chats_admin" not in app.blueprints:
        app.register_blueprint(bp)


def _db():
    return current_app.extensions["db"]


def _api_base() -> str:
    return current_app.extensions["bot"].settings.WECOM_API_BASE


def _groups(s) -> list[tuple[int, str]]:
    rows = s.execute(select(Group.id, Branch.name, Group.name).join(Branch).order_by(Branch.name, Group.name))
    return [(gid, f"{branch} · {name}") for gid, branch, name in rows]


def _render(errors: dict[str, str] | None = None, form: dict[str, str] | None = None, status: int = 200):
    with _db().Session() as s:
        chats = list(s.scalars(select(Chat).where(Chat.platform == PLATFORM).order_by(Chat.id)))
        rows = [
            {
                "id": c.id,
                "chat_id": c.chat_id,
                "title": c.title,
                "group_id": c.group_id,
                "webhook": mask_webhook(c.webhook_url),
                "unreachable": c.unreachable,
            }
            for c in chats
        ]
        groups = _groups(s)
    example = f"{_api_base().rstrip('/')}/cgi-bin/webhook/send?key=…"
    return (
        render_template(
            "chats_admin/index.html",
            rows=rows,
            groups=groups,
            errors=errors or {},
            form=form or {},
            example=example,
        ),
        status,
    )


@bp.get("/")
@require("chats.manage")
def index():
    return _render()


def _group_id(s, raw: str) -> tuple[int | None, str | None]:
    """The chosen union group (None: none), or an error when the choice is not a group."""
    raw = (raw or "").strip()
    if not raw:
        return None, None
    if not raw.isdigit() or len(raw) > 9 or s.get(Group, int(raw)) is None:
        return None, "请选择列表中的小组"
    return int(raw), None


@bp.post("/<int:chat_pk>")
@require("chats.manage")
def update(chat_pk: int):
    f = request.form
    url = f.get("webhook_url", "").strip()
    title = f.get("title", "").strip()
    errors: dict[str, str] = {}
    with _db().Session() as s:
        chat = s.get(Chat, chat_pk)
        if chat is None or chat.platform != PLATFORM:
            abort(404)
        group_id, group_error = _group_id(s, f.get("group_id", ""))
    if group_error:
        errors["group_id"] = group_error
    url_error = webhook_url_error(url, _api_base()) if url else None
    if url_error:
        errors["webhook_url"] = url_error
    if len(title) > 100:
        errors["title"] = "群名称最多100个字"
    if errors:
        return _render({f"{chat_pk}.{k}": v for k, v in errors.items()}, status=400)
    with _db().transaction() as s:
        chat = s.get(Chat, chat_pk)
        chat.title = title
        chat.group_id = group_id
        if url:
            chat.webhook_url = url
            chat.unreachable = False
        elif f.get("clear_webhook"):
            chat.webhook_url = None
        label = title or chat.chat_id
    flash(f"已保存群聊“{label}”的设置。", "ok")
    return redirect(url_for("chats_admin.index"))


@bp.post("/new")
@require("chats.manage")
def create():
    """A chat the AI bot has not seen yet (e.g. a group that only gets broadcasts): its id and webhook."""
    f = request.form
    chat_id = f.get("chat_id", "").strip()
    title = f.get("title", "").strip()
    url = f.get("webhook_url", "").strip()
    errors: dict[str, str] = {}
    if not chat_id or len(chat_id) > 128 or not chat_id.isprintable():
        errors["new.chat_id"] = "请填写群聊ID（128个字符以内）"
    if len(title) > 100:
        errors["new.title"] = "群名称最多100个字"
    url_error = webhook_url_error(url, _api_base())
    if url_error:
        errors["new.webhook_url"] = url_error
    if not errors:
        try:
            with _db().transaction() as s:
                s.add(Chat(platform=PLATFORM, chat_id=chat_id, title=title, webhook_url=url, unreachable=False))
        except IntegrityError:
            errors["new.chat_id"] = "这个群聊已在列表中，请在上面直接修改"
    if errors:
        return _render(errors, {"chat_id": chat_id, "title": title}, status=400)
    flash(f"已添加群聊“{title or chat_id}”，群发通知会通过消息推送发到这个群。", "ok")
    return redirect(url_for("chats_admin.index"))
