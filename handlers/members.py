"""Binding a chat account to a member of the roster, and 我的信息."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from bot.context import Context
from handlers import router
from models.member import ROLE_LABELS, BindAttempt, Member, PlatformIdentity, link_identity

ASK = (
    "您好！第一次使用需要确认您的身份。\n请发送您的工号和姓名，例如：10086 张三\n"
    "（也可以用手机号后4位代替姓名，例如：10086 1234；发送“取消”退出）"
)
WINDOW = timedelta(hours=24)
_LABELS = re.compile(r"工号|姓名|名字|手机号?码?|电话|后\d位|尾号|我是|我叫")
_TOKEN = re.compile(r"[A-Za-z]*\d[A-Za-z0-9-]*|[\u4e00-\u9fa5·]{2,10}")


@router.event("unbound")
def unbound(ctx: Context) -> None:
    """A chat account the roster does not know yet: ask who they are (privately only)."""
    if ctx.msg.is_group:
        ctx.reply("您还没有绑定会员身份，请先私聊我完成绑定（点我的头像发消息即可）。")
        return
    ctx.start_dialog("bind", "ask")
    ctx.reply(ASK)


@router.dialog("bind")
def bind_step(ctx: Context) -> None:
    attempt = _attempt_row(ctx)
    limit = ctx.settings.BIND_MAX_ATTEMPTS
    if attempt.failures >= limit:
        ctx.end_dialog()
        ctx.reply("尝试次数过多，请24小时后再试，或联系工会干事帮您绑定。")
        return
    tokens = _TOKEN.findall(_LABELS.sub(" ", ctx.text))
    numbers = [t for t in tokens if any(c.isdigit() for c in t)]
    names = [t for t in tokens if not any(c.isdigit() for c in t)]
    if not numbers or (not names and len(numbers) < 2):
        ctx.reply("请按“工号 姓名”的格式发送，例如：10086 张三")
        return
    tails = [n for n in numbers[1:] if len(n) == 4 and n.isdigit()]
    proofs = set(names[:1] + tails[:1])  # one guess of each kind per attempt: no spraying names in one message
    employee_no = numbers[0]
    member = ctx.session.scalar(select(Member).where(Member.employee_no == employee_no, Member.active.is_(True)))
    ok = member is not None and bool(proofs & {member.name, member.phone_tail} - {""})
    if ok and _taken_by_other(ctx, member):
        ctx.end_dialog()
        ctx.reply("这个工号已经绑定了另一个账号。如需更换，请联系工会干事。")
        return
    if not ok:
        attempt.failures += 1
        left = limit - attempt.failures
        if left <= 0:
            ctx.end_dialog()
            ctx.reply("信息仍未核对上，尝试次数已用完。请24小时后再试，或联系工会干事帮您绑定。")
        else:
            ctx.reply(f"没有核对上，请检查工号和姓名后重新发送（还可以试 {left} 次）。")
        return
    link_identity(ctx.session, member, ctx.msg.platform, ctx.msg.user_id)
    ctx.session.delete(attempt)
    ctx.end_dialog()
    ctx.member = member
    ctx.reply(f"绑定成功！{member.name}您好，以后直接发消息就能办事。发送“帮助”看看我能做什么。")


def _attempt_row(ctx: Context) -> BindAttempt:
    now = ctx.clock.now()
    row = ctx.session.scalar(
        select(BindAttempt).where(
            BindAttempt.platform == ctx.msg.platform, BindAttempt.platform_user_id == ctx.msg.user_id
        )
    )
    if row is None:
        row = BindAttempt(
            platform=ctx.msg.platform, platform_user_id=ctx.msg.user_id, failures=0, window_start=now
        )
        ctx.session.add(row)
    elif now - row.window_start > WINDOW:
        row.failures, row.window_start = 0, now
    return row


def _taken_by_other(ctx: Context, member: Member) -> bool:
    other = ctx.session.scalar(
        select(PlatformIdentity).where(
            PlatformIdentity.member_id == member.id,
            PlatformIdentity.platform == ctx.msg.platform,
            PlatformIdentity.platform_user_id != ctx.msg.user_id,
        )
    )
    return other is not None


@router.handler(
    "我的信息",
    "我的资料",
    "我绑定的是谁",
    "我是谁",
    "个人信息",
    menu="我的信息 — 查看我的会员资料",
    group_ok=False,
)
def my_info(ctx: Context) -> None:
    """我的信息：查看我的会员资料"""
    m = ctx.member
    assert m is not None
    roles = "、".join(ROLE_LABELS[r] for r in sorted(m.roles) if r != "member") or "会员"
    platforms = {"wecom": "企业微信", "feishu": "飞书", "sandbox": "试用沙盒"}
    linked = "、".join(sorted({platforms.get(i.platform, i.platform) for i in m.identities}))
    birthday = ""
    if m.birthday_is_lunar and m.lunar_birth_month:
        birthday = f"农历{'闰' if m.lunar_birth_leap else ''}{m.lunar_birth_month}月{m.lunar_birth_day}日"
    elif m.birthday:
        birthday = f"{m.birthday.month}月{m.birthday.day}日"
    lines = [
        f"姓名：{m.name}",
        f"工号：{m.employee_no}",
        f"分会：{m.branch.name if m.branch else '—'}",
        f"小组：{m.group.name if m.group else '—'}",
        f"身份：{roles}",
        f"生日：{birthday or '未登记'}（生日祝福{'已关闭' if m.greeting_opt_out else '已开启'}）",
        f"已绑定：{linked}",
    ]
    ctx.reply("\n".join(lines) + "\n信息有误请联系工会干事更正。")
