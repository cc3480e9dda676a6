"""Help, the fallback menu, greetings on entering a chat, and small talk that needs no answer."""

from __future__ import annotations

from bot.context import Context
from handlers import router

SMALL_TALK = (
    "好的",
    "好",
    "谢谢",
    "谢谢你",
    "多谢",
    "收到",
    "嗯",
    "嗯嗯",
    "哈哈",
    "哈哈哈",
    "ok",
    "👍",
    "好的谢谢",
    "知道了",
)


def menu_text(ctx: Context, intro: str) -> str:
    lines = router.menu_lines()
    return intro + "\n" + "\n".join(lines) + "\n随时发送“取消”可退出正在办理的事项。"


@router.handler(
    "帮助",
    "菜单",
    "你会干嘛",
    "你能做什么",
    "怎么用",
    "功能",
    exact=("?", "help", "在吗", "你好", "hi", "hello", "您好"),
    menu="帮助 — 看看我能做什么",
    public=True,
)
def help_(ctx: Context) -> None:
    """帮助：查看我能做什么"""
    if ctx.member is None:
        router.events["unbound"](ctx)  # first things first: who is this?
        return
    ctx.reply(menu_text(ctx, f"{ctx.member.name}您好！我是{ctx.settings.BOT_NAME}，可以帮您："))


@router.handler(exact=SMALL_TALK, public=True, priority=5)
def small_talk(ctx: Context) -> None:
    """好的 / 谢谢 / 收到：不需要回答"""


@router.event("fallback")
def fallback(ctx: Context) -> None:
    if ctx.member is None:
        router.events["unbound"](ctx)  # nothing can be done for a stranger before binding
        return
    if ctx.msg.is_group:
        ctx.reply("没太明白。@我 发送“帮助”可以看看我能做什么。")
        return
    ctx.reply(menu_text(ctx, "抱歉，我没太明白。您可以这样说："))


@router.event("enter")
def entered(ctx: Context) -> None:
    """The member opened the private chat (WeCom enter_agent, Feishu p2p chat entered)."""
    ctx.reply(menu_text(ctx, f"欢迎使用{ctx.settings.BOT_NAME}！您可以这样说："))


@router.event("bot_added")
def added_to_group(ctx: Context) -> None:
    ctx.reply(
        f"大家好，我是{ctx.settings.BOT_NAME}。在群里 @我 并说“活动”“报名 3”“报名名单 3”即可使用；"
        "提案、帮扶等个人事项请私聊我。"
    )
