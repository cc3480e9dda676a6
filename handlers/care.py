"""Hardship reports (困难帮扶) and care events (五必访) in chat — private, encrypted, followed through.

- Hardship reports only in a private chat. In a group the bot answers only with an invitation to talk privately
  (never repeating what was written) and sends the member a private message to start from.
- What members type for a case is redacted from the inbound log (also when the handler fails, or the member is
  not bound yet: the routes are registered with `redact=True`), kept encrypted in the dialog state; every reply and
  push is marked sensitive, so the outbox scrubs it once delivered or given up (`scrub_sensitive_replies` also
  blanks the sandbox page's copies).
- Every step tells the member in plain, respectful wording through the outbox (keys `hardship:<case>:<event>:m<id>`),
  never reviewers' notes. Who sees what: `models.care.can_see_case`; every view/change/export is audited.

Jobs for the scheduler (bot/scheduler.py's OPTIONAL_JOBS wires them): `remind_care_tasks`,
`reverify_hardship_records`, `remind_follow_ups`, `send_warmth_campaign`, `anonymise_closed_cases`,
`scrub_sensitive_replies`.
"""

from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from bot.calendar import festival_date
from bot.context import Context, active_dialog
from bot.message import Button, Text
from bot.normalize import parse_date
from bot.permissions import can, roles_with
from handlers import router
from models import crypto
from models.care import (
    AID_KINDS,
    CARE_LABELS,
    CASE_TYPES,
    HELP_KINDS,
    NUMBER_RE,
    Access,
    AuditLog,
    CareEvent,
    CaseEvent,
    HardshipCase,
    HardshipRecord,
    TransitionError,
    anonymise_care_event,
    anonymise_case,
    audit,
    can_see_case,
    care_due,
    ensure_record,
    find_case,
    may_act,
    members_with_role,
    plus_year,
    retention_cutoff,
    submit_case,
    transition,
    warmth_campaign_list,
)
from models.member import ROLES, Member
from models.messaging import InboundMessage, OutboxMessage, SandboxMessage

DIALOG = "hardship"
PICK = "care_pick"
SKIP = {"跳过", "无", "没有", "不填", "略", "skip", "-"}
YES = {"确认", "确定", "提交", "确认提交", "是", "对", "好", "好的", "可以", "没问题", "ok"}
REDACTED = "[已加密保存]"
SCRUBBED = {"type": "text", "text": "（此消息含个人信息，已隐去）"}
GROUP_INVITE = (
    "这类事情涉及个人隐私，请私聊我办理（点我的头像发消息即可），我已私信您。"
    "您的信息只有工会帮扶负责人能看到。"
)
PRIVATE_INVITE = (
    "您好，我是{bot}。困难帮扶申请请在这里私聊办理，内容只有工会帮扶负责人能看到。\n"
    "准备好了请回复“困难申报”开始。"
)
PROXY_PRIVATE_INVITE = (
    "您好，我是{bot}。代报困难帮扶请在这里私聊办理，内容只有工会帮扶负责人能看到。\n"
    "请回复“代报 困难 姓名”开始，例如：代报 困难 张三"
)
CARE_GROUP_INVITE = "谢谢您的关心！为保护同事隐私，请私聊我报告（例如：报告 住院 姓名 科室床号），我会转告负责探望的同志。"
NUM = r"(?i:KN)\s*\d{4}\s*-\s*\d{1,4}"
HARDSHIP_SESSION_HANDLERS = ("dialog:hardship", "hardship_start", "hardship_proxy", "care_report",
                             "care_report_explicit", "dialog:care_pick", "hardship_verify", "hardship_decide",
                             "hardship_deliver", "hardship_follow_up", "hardship_close", "case_view", "my_cases",
                             "case_todo", "care_tasks", "care_visit", "hardship_reverify",
                             "action:hardship_confirm")  # fmt: skip
PUSH_PREFIXES = ("hardship:", "care:", "record:")


# ============================================================================================== helpers
def _private(ctx: Context) -> None:
    """Every care handler starts here: the data keys installed, and its replies (stories, amounts, reasons)
    marked sensitive, so the outbox keeps no copy once they are delivered or given up."""
    crypto.configure(ctx.settings)
    ctx.sensitive = True


def _enc(text: str | None) -> str | None:
    return crypto.encrypt(text) if text else None


def _dec(token: str | None) -> str | None:
    return crypto.decrypt(token) if token else None


def _fmt_day(d: date | None) -> str:
    return f"{d.year}年{d.month}月{d.day}日" if d else "—"


def _money(amount: Decimal | None) -> str:
    if amount is None:
        return "—"
    q = amount.quantize(Decimal("0.01"))
    return f"{q:.0f}" if q == q.to_integral_value() else f"{q:.2f}"


def _unit(m: Member | None) -> str:
    if m is None:
        return "—"
    parts = [p for p in ((m.branch.name if m.branch else ""), (m.group.name if m.group else "")) if p]
    return " ".join(parts) or "—"


def _secure_delete(s: Session) -> None:
    """SQLite keeps overwritten bytes in free page space unless secure_delete is on (many builds default it on)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("PRAGMA secure_delete=ON"))


def _bound(ctx: Context) -> bool:
    """The routes where members type sensitive details are `public`, so that a stranger's words are blanked too
    before they are asked to bind (the core would keep them in the inbound log); False: the stranger was asked."""
    if ctx.member is not None:
        return True
    redact_inbound(ctx)
    router.events["unbound"](ctx)
    return False


def redact_inbound(ctx: Context) -> None:
    """Blank what the member typed in the inbound log (and the sandbox page's copy): it is kept encrypted only."""
    s, msg = ctx.session, ctx.msg
    _secure_delete(s)
    row = s.scalar(
        select(InboundMessage).where(
            InboundMessage.platform == msg.platform, InboundMessage.dedupe_key == msg.message_id[:255]
        )
    )
    if row is not None:
        env = dict(row.envelope or {})
        env["text"] = env["typed"] = REDACTED
        env["raw"] = {"redacted": True}
        row.envelope = env
    if msg.platform == "sandbox":
        raw_text = (msg.raw or {}).get("text")
        since = ctx.clock.now() - timedelta(minutes=2)
        for sm in s.scalars(
            select(SandboxMessage).where(
                SandboxMessage.chat_id == msg.chat_id,
                SandboxMessage.direction == "in",
                SandboxMessage.created_at >= since,
            )
        ):
            if (sm.payload or {}).get("text") in (raw_text, msg.text):
                sm.payload = {"type": "text", "text": REDACTED}


def scrub_replies(s: Session, platform: str, dedupe_keys: list[str]) -> int:
    """Blank delivered replies to the given inbound messages (the preview echoed the story)."""
    _secure_delete(s)
    n = 0
    for key in dedupe_keys:
        rows = list(
            s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.idempotency_key.like(f"reply:{platform}:{key}:%"),
                    OutboxMessage.status.in_(("sent", "dead")),
                )
            )
        )
        for row in rows:
            if row.payload != SCRUBBED:
                row.payload = dict(SCRUBBED)
                n += 1
        ids = [r.id for r in rows]
        if ids:
            s.execute(update(SandboxMessage).where(SandboxMessage.outbox_id.in_(ids)).values(payload=dict(SCRUBBED)))
    return n


def scrub_sensitive_replies(bot, now: datetime | None = None, days: int = 7) -> int:
    """Job: blank delivered replies to hardship dialogs and care reports of the last `days` (idempotent)."""
    now = now or bot.clock.now()
    with bot.db.transaction() as s:
        rows = s.execute(
            select(InboundMessage.platform, InboundMessage.dedupe_key).where(
                InboundMessage.handler.in_(HARDSHIP_SESSION_HANDLERS),
                InboundMessage.received_at >= now - timedelta(days=days),
            )
        ).all()
        by_platform: dict[str, list[str]] = {}
        for platform, key in rows:
            by_platform.setdefault(platform, []).append(key)
        n = sum(scrub_replies(s, p, keys) for p, keys in by_platform.items())
        pushes = list(
            s.scalars(
                select(OutboxMessage).where(
                    or_(*[OutboxMessage.idempotency_key.like(f"{p}%") for p in PUSH_PREFIXES]),
                    OutboxMessage.status.in_(("sent", "dead")),
                )
            )
        )
        ids = []
        for row in pushes:
            if row.payload != SCRUBBED:
                row.payload = dict(SCRUBBED)
                ids.append(row.id)
        if ids:
            s.execute(update(SandboxMessage).where(SandboxMessage.outbox_id.in_(ids)).values(payload=dict(SCRUBBED)))
        return n + len(ids)


def _notify(ctx_or_bot, s: Session, member: Member | None, text: str, key: str) -> bool:
    if member is None or not member.active:
        return False
    bot = ctx_or_bot.bot if isinstance(ctx_or_bot, Context) else ctx_or_bot
    return bot.notify_member(s, member, Text(text), key, sensitive=True)


def _reviewers(s: Session) -> list[Member]:
    seen: dict[int, Member] = {}
    for role in (r for r in ROLES if r in roles_with("cases.review")):
        for m in members_with_role(s, role):
            seen.setdefault(m.id, m)
    return list(seen.values())


def _case_or_reply(ctx: Context) -> HardshipCase | None:
    case = find_case(ctx.session, ctx.text)
    if case is None:
        ctx.reply("没有找到这个编号的帮扶申请，请检查编号，例如：查看 KN2027-003")
    return case


def _deny(ctx: Context, case: HardshipCase, what: str) -> None:
    audit(ctx.session, ctx.member, "view", case=case, detail=f"denied: {what}", at=ctx.clock.now())
    ctx.reply("您没有办理这件帮扶申请的权限。查看自己的申请请发送“我的申请”。")


# ============================================================================================== reporting
@router.handler(
    "困难申报",
    "申请困难帮扶",
    "困难帮扶",
    "帮扶申请",
    "申请帮扶",
    "申请补助",
    "想申请补助",
    "遇到难处",
    "家里出事",
    "出事了",
    "学费交不上",
    "交不上",
    "交不起",
    "钱不够",
    "看不起病",
    "生活困难",
    menu="困难申报 — 私下申请困难帮扶（仅私聊）",
    priority=50,
    public=True,
    redact=True,
)
def hardship_start(ctx: Context) -> None:
    """困难申报：申请困难帮扶（仅私聊）"""
    if not _bound(ctx):
        return
    _private(ctx)
    redact_inbound(ctx)
    m = ctx.member
    assert m is not None
    if ctx.msg.is_group:
        ctx.invite_private(GROUP_INVITE, PRIVATE_INVITE.format(bot=ctx.settings.BOT_NAME),
                           f"hardship:invite:{ctx.msg.platform}:{ctx.msg.message_id}")  # fmt: skip
        return
    _start_dialog(ctx, m, m)


def _start_dialog(ctx: Context, member: Member, reporter: Member) -> None:
    ctx.start_dialog(DIALOG, "type", {"member_id": member.id, "proxy": member.id != reporter.id,
                                      "mids": [ctx.msg.message_id[:255]]})  # fmt: skip
    options = "\n".join(f"{i}. {t}" for i, t in enumerate(CASE_TYPES, 1))
    who = "您" if member.id == reporter.id else f"{member.name}"
    ctx.reply(
        f"好的，我来帮{who}登记困难帮扶申请。内容会加密保存，只有工会帮扶负责人能看到。\n"
        f"第1步：遇到的是哪类困难？请回复编号：\n{options}\n（随时发送“取消”可退出）"
    )


@router.handler(patterns=[r"^代报\s*(困难|帮扶)"], priority=50, public=True, redact=True)
def hardship_proxy(ctx: Context) -> None:
    """代报 困难 张三：小组长/分会主席替本单位会员申报困难帮扶"""
    if not _bound(ctx):
        return
    _private(ctx)
    m = ctx.member
    assert m is not None
    if ctx.msg.is_group:
        redact_inbound(ctx)
        ctx.invite_private(GROUP_INVITE, PROXY_PRIVATE_INVITE.format(bot=ctx.settings.BOT_NAME),
                           f"hardship:invite:{ctx.msg.platform}:{ctx.msg.message_id}")  # fmt: skip
        return
    if not can(m.roles, "cases.proxy_report"):
        ctx.reply("代报困难只有小组长和分会主席可以使用。自己申请请发送“困难申报”。")
        return
    name = re.sub(r"^代报\s*(困难|帮扶)\s*", "", ctx.text).strip()
    if not name:
        ctx.reply("请写上要代报的会员姓名或工号，例如：代报 困难 张三")
        return
    pool = _unit_pool(ctx.session, m)
    found = [x for x in pool if x.name == name or x.employee_no == name]
    if not found:
        ctx.reply(f"在您负责的范围内没有找到“{name}”。请写全名或工号，例如：代报 困难 张三")
        return
    if len(found) > 1:
        lines = [f"· {x.name} 工号 {x.employee_no}（{_unit(x)}）" for x in found]
        ctx.reply("有几位同名的会员，请用工号代报，例如“代报 困难 工号”：\n" + "\n".join(lines))
        return
    target = found[0]
    if target.id == m.id:
        _start_dialog(ctx, m, m)
        return
    _start_dialog(ctx, target, m)


def _unit_pool(s: Session, m: Member) -> list[Member]:
    q = select(Member).where(Member.active.is_(True))
    if can(m.roles, "cases.review"):
        pass
    elif can(m.roles, "cases.proxy_branch") and m.branch_id is not None:
        q = q.where(Member.branch_id == m.branch_id)
    elif m.group_id is not None:
        q = q.where(Member.group_id == m.group_id)
    else:
        return []
    return list(s.scalars(q.order_by(Member.id)))


def _parse_type(text: str) -> str | None:
    t = text.strip().rstrip(".。")
    if t.isdigit() and 1 <= int(t) <= len(CASE_TYPES):
        return CASE_TYPES[int(t) - 1]
    for name in CASE_TYPES:
        if name in t:
            return name
    aliases = {"生病": "大病", "重病": "大病", "手术": "大病", "意外": "意外伤害", "受伤": "意外伤害",
               "变故": "家庭变故", "上学": "子女就学", "学费": "子女就学", "生活": "生活困难"}  # fmt: skip
    for k, v in aliases.items():
        if k in t:
            return v
    return None


def _parse_help(text: str) -> tuple[list[str], str]:
    kinds: list[str] = []
    m = re.match(r"^\s*((?:[1-4]\s*[,、 ]?\s*)+)(?=\D|$)", text)
    rest = text
    if m:
        for ch in re.findall(r"[1-4]", m.group(1)):
            k = HELP_KINDS[int(ch) - 1]
            if k not in kinds:
                kinds.append(k)
        rest = text[m.end():]
    words = {"资金补助": ("钱", "资金", "补助", "费用", "经济"), "物资帮助": ("物资", "米", "油", "衣物"),
             "医疗互助理赔协助": ("理赔", "互助", "医保", "报销")}  # fmt: skip
    if not kinds:
        for k, ws in words.items():
            if any(w in text for w in ws):
                kinds.append(k)
    return kinds, rest.strip(" ,.;:")


@router.dialog(DIALOG, redact=True)
def hardship_step(ctx: Context) -> None:
    _private(ctx)
    redact_inbound(ctx)
    d = ctx.dialog
    assert d is not None and ctx.member is not None
    mids = list(d.data.get("mids", [])) + [ctx.msg.message_id[:255]]
    scrub_replies(ctx.session, ctx.msg.platform, mids[:-1])
    text = ctx.text.strip()  # for choosing and matching
    words = ctx.words  # what is kept (encrypted): the member's own words, as typed
    step = d.step
    if step == "type":
        t = _parse_type(text)
        if t is None:
            ctx.reply("请回复1到6的编号，例如“1”（大病）。")
            ctx.advance("type", mids=mids)
            return
        ctx.advance("story", type=t, mids=mids)
        ctx.reply(f"第2步（{t}）：请简单说说发生了什么，例如什么时候、什么情况、目前怎样。")
    elif step == "story":
        if len(words) < 4:
            ctx.reply("请多写几句，让核实的同志了解情况。")
            ctx.advance("story", mids=mids)
            return
        ctx.advance("household", story=_enc(words), mids=mids)
        ctx.reply("第3步：家庭情况（几口人、收入来源、其他负担，可选）。不想填请回复“跳过”。")
    elif step == "household":
        ctx.advance("help", household=None if text in SKIP else _enc(words), mids=mids)
        kinds = "\n".join(f"{i}. {k}" for i, k in enumerate(HELP_KINDS, 1))
        ctx.reply(
            f"第4步：希望得到哪些帮助？回复编号（可多选），后面可以补充说明：\n{kinds}\n例如：1 3 手术费还差3万元"
        )
    elif step == "help":
        kinds, details = _parse_help(text)
        details = ctx.words_for(details)
        if not kinds:
            ctx.reply("请回复编号，例如“1”或“1 3 手术费还差3万元”。")
            ctx.advance("help", mids=mids)
            return
        ctx.advance("contact", help_kinds=kinds, help_details=_enc(details) if details else None, mids=mids)
        member = ctx.session.get(Member, d.data["member_id"])
        tail = member.phone_tail if member else ""
        ctx.reply(
            "第5步：怎么联系您比较方便？例如电话和方便的时间。"
            + (f"回复“跳过”则用登记的手机（尾号{tail}）。" if tail else "")
        )
    elif step == "contact":
        member = ctx.session.get(Member, d.data["member_id"])
        if text in SKIP:
            contact = f"登记手机尾号{member.phone_tail}" if member and member.phone_tail else "登记的联系方式"
        else:
            contact = words
        ctx.advance("confirm", contact=_enc(contact), mids=mids)
        _preview(ctx, member)
    elif step == "confirm":
        if text.lower().rstrip("!.。") in YES:
            _submit(ctx)
        else:
            ctx.advance("confirm", mids=mids)
            ctx.reply("请回复“确认”提交，或发送“取消”放弃。")


def _preview(ctx: Context, member: Member | None) -> None:
    d = ctx.dialog
    assert d is not None
    data = d.data
    lines = [
        f"申请人：{member.name if member else '—'}" + ("（代报）" if data.get("proxy") else ""),
        f"类型：{data.get('type')}",
        f"情况：{_dec(data.get('story'))}",
        f"家庭：{_dec(data.get('household')) or '未填写'}",
        f"需要：{'、'.join(data.get('help_kinds') or [])}"
        + (f"（{_dec(data.get('help_details'))}）" if data.get("help_details") else ""),
        f"联系：{_dec(data.get('contact'))}",
        "确认无误请回复“确认”，放弃请回复“取消”。",
    ]
    ctx.card(
        "请确认困难帮扶申请",
        lines,
        [Button("确认提交", {"do": "hardship_confirm"}), Button("取消", {"do": "hardship_cancel"}, "default")],
    )


@router.action("hardship_confirm")
def hardship_confirm_action(ctx: Context) -> None:
    _private(ctx)
    d = active_dialog(ctx.session, ctx.msg)
    if d is None or d.name != DIALOG or d.step != "confirm" or d.expires_at <= ctx.clock.now():
        ctx.reply("这份申请已超时或已处理。需要时请重新发送“困难申报”。")
        return
    ctx.dialog = d
    _submit(ctx)


@router.action("hardship_cancel")
def hardship_cancel_action(ctx: Context) -> None:
    d = active_dialog(ctx.session, ctx.msg)
    if d is not None and d.name == DIALOG:
        scrub_replies(ctx.session, ctx.msg.platform, list(d.data.get("mids", [])))
        ctx.end_dialog()
    ctx.reply("好的，已取消，内容没有保存。需要时再找我。")


def _submit(ctx: Context) -> None:
    d = ctx.dialog
    assert d is not None and ctx.member is not None
    data = d.data
    s = ctx.session
    member = s.get(Member, data["member_id"])
    if member is None or not member.active:
        ctx.end_dialog()
        ctx.reply("没有找到申请人的会员信息，请联系工会办公室。")
        return
    now = ctx.clock.now()
    case = submit_case(
        s,
        member=member,
        reported_by=ctx.member,
        type=data["type"],
        story=_dec(data.get("story")) or "",
        household=_dec(data.get("household")),
        help_kinds=list(data.get("help_kinds") or []),
        help_details=_dec(data.get("help_details")),
        contact=_dec(data.get("contact")),
        now=now,
        year=ctx.clock.today().year,
    )
    scrub_replies(s, ctx.msg.platform, list(data.get("mids", [])))
    ctx.end_dialog()
    ctx.reply(
        f"已提交，申请编号 {case.number}。\n分会会尽快联系核实（可能会家访），之后由工会审批。"
        "每一步都会私信告诉您，也可以随时发送“我的申请”查看进度。"
    )
    if case.proxy:
        first = case.events[0] if case.events else None
        text = (
            f"您好，{ctx.member.name}已代您向工会提交了困难帮扶申请（编号 {case.number}）。"
            "工会会尽快与您联系核实。您可以随时私聊我发送“我的申请”查看进度；如有疑问也可以直接告诉我。"
        )
        _notify(ctx, s, member, text, f"hardship:{case.id}:{first.id if first else 0}:m{member.id}:proxy")
    chairs = [c for c in members_with_role(s, "branch_chair", branch_id=case.branch_id) if c.id != member.id]
    targets = chairs or [r for r in _reviewers(s) if r.id != member.id]
    for c in targets:
        _notify(
            ctx, s, c,
            f"新的困难帮扶申请 {case.number}（{case.branch.name if case.branch else '未分会'}）需要核实。\n"
            f"发送“查看 {case.number}”查看详情；核实后发送“核实 {case.number} 家访 日期 情况说明”。",
            f"hardship:{case.id}:new:c{c.id}",
        )  # fmt: skip


# ============================================================================================== viewing
@router.handler(
    "我的申请",
    "我的帮扶申请",
    "帮扶申请怎么样",
    "申请怎么样了",
    "帮扶进度",
    menu="我的申请 — 查看困难帮扶申请的进度",
    priority=60,
    group_ok=False,
)
def my_cases(ctx: Context) -> None:
    """我的申请：查看我的困难帮扶申请进度"""
    _private(ctx)
    m = ctx.member
    assert m is not None
    cases = list(
        ctx.session.scalars(
            select(HardshipCase).where(HardshipCase.member_id == m.id).order_by(HardshipCase.id.desc()).limit(5)
        )
    )
    if not cases:
        ctx.reply("您还没有困难帮扶申请。需要时请私聊发送“困难申报”。")
        return
    now = ctx.clock.now()
    blocks = []
    for c in cases:
        audit(ctx.session, m, "view", case=c, detail="own: 我的申请", at=now)
        blocks.append("\n".join(_own_lines(ctx, c)))
    ctx.reply("\n\n".join(blocks))


def _own_lines(ctx: Context, c: HardshipCase) -> list[str]:
    lines = [f"{c.number}（{c.type}）：{c.status_label}", f"提交：{ctx.clock.fmt(c.submitted_at, False)}"]
    for ev in c.events:
        if ev.message:
            lines.append(f"· {ctx.clock.fmt(ev.at)} {ev.message}")
    return lines


@router.handler(patterns=[rf"^(查看|查询|打开)?\s*{NUM}\s*$", rf"^(查看|查询)\s*{NUM}"], group_ok=False, priority=5)
def case_view(ctx: Context) -> None:
    """查看 KN2027-003：查看一件帮扶申请"""
    _private(ctx)
    case = _case_or_reply(ctx)
    if case is None:
        return
    level = can_see_case(ctx.member, case)
    now = ctx.clock.now()
    if level == Access.NONE:
        _deny(ctx, case, "view")
        return
    audit(ctx.session, ctx.member, "view", case=case, detail=f"chat: {level.name.lower()}", at=now)
    if level == Access.OWN:
        ctx.reply("\n".join(_own_lines(ctx, case)))
        return
    m = case.member
    if level == Access.EXISTS:
        state = "已办结" if case.status == "closed" else "办理中"
        ctx.reply(
            f"{case.number}：{m.name if m else '（已匿名）'}（{_unit(m)}）有一件困难帮扶申请，{state}。\n"
            "具体内容只有帮扶负责人可以查看；如需安排探望请联系分会或工会办公室。"
        )
        return
    ctx.reply("\n".join(full_lines(ctx.clock, case)))


def full_lines(clock, case: HardshipCase) -> list[str]:
    m = case.member
    lines = [
        f"{case.number}  {case.type}  {case.status_label}",
        f"会员：{m.name if m else '（已匿名）'}（{_unit(m)}）" + (f"，由{case.reported_by.name}代报" if case.proxy and case.reported_by else ""),
        f"提交：{clock.fmt(case.submitted_at)}",
        f"情况：{case.story or '—'}",
        f"家庭：{case.household or '未填写'}",
        f"需要：{case.help_kinds.replace(',', '、') or '—'}" + (f"（{case.help_details}）" if case.help_details else ""),
        f"联系：{case.contact or '—'}",
    ]  # fmt: skip
    if case.verified_at:
        lines.append(f"核实：家访 {_fmt_day(case.visit_date)}；{case.verify_notes or ''}")
    if case.decision:
        if case.decision == "approved":
            lines.append(f"审批：同意，{case.aid_kind} {_money(case.aid_amount)} 元" + (f"；备注：{case.decision_note}" if case.decision_note else ""))
        else:
            lines.append(f"审批：不同意；理由：{case.decision_reason or '—'}")
    if case.delivered_on:
        lines.append(f"发放：{_fmt_day(case.delivered_on)} {_money(case.delivered_amount)} 元；回访期限 {_fmt_day(case.follow_up_due)}")
    if case.followed_up_at:
        lines.append(f"回访：{clock.fmt(case.followed_up_at)} {case.follow_up_notes or ''}")
    lines.append("时间线：")
    for ev in case.events:
        who = ev.actor.name if ev.actor else "系统"
        extra = f"（内部：{ev.note}）" if ev.note and ev.internal else ""
        lines.append(f"· {clock.fmt(ev.at)} {who} {ev.from_status or '—'}→{ev.to_status}{extra}")
    return lines  # fmt: skip


@router.handler("帮扶待办", "待核实", "待审批", "待发放", "待回访", group_ok=False, priority=60)
def case_todo(ctx: Context) -> None:
    """帮扶待办：帮扶负责人查看待处理的申请"""
    _private(ctx)
    m = ctx.member
    assert m is not None
    roles = m.roles
    q = select(HardshipCase).where(HardshipCase.status != "closed", HardshipCase.anonymised_at.is_(None))
    if can(roles, "cases.review"):
        pass
    elif can(roles, "cases.verify") and m.branch_id is not None:
        q = q.where(HardshipCase.branch_id == m.branch_id, HardshipCase.status.in_(("submitted", "verifying")))
    else:
        ctx.reply("帮扶待办只对分会主席和帮扶审核人员开放。查看自己的申请请发送“我的申请”。")
        return
    cases = [c for c in ctx.session.scalars(q.order_by(HardshipCase.id)) if can_see_case(m, c) == Access.FULL]
    if not cases:
        ctx.reply("目前没有待处理的帮扶申请。")
        return
    audit(ctx.session, m, "view", detail=f"chat list: 帮扶待办, {len(cases)} cases", at=ctx.clock.now())
    nxt = {"submitted": "待核实", "verifying": "待审批", "decided": "待发放", "delivered": "待回访",
           "followed_up": "待结案"}  # fmt: skip
    lines = [f"· {c.number} {c.member.name if c.member else '—'} {c.type} {nxt.get(c.status, '')}" for c in cases]
    ctx.reply("待处理的帮扶申请：\n" + "\n".join(lines) + "\n发送“查看 编号”查看详情。")


# ============================================================================================== workflow
def _amount(text: str) -> Decimal | None:
    m = re.search(r"(\d+(?:\.\d{1,2})?)\s*(万|千)?\s*元?", text)
    if not m:
        return None
    try:
        v = Decimal(m.group(1))
    except InvalidOperation:
        return None
    return v * {"万": 10000, "千": 1000}.get(m.group(2) or "", 1)


_DATE_RE = re.compile(r"(\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}[日号]?|\d{1,2}月\d{1,2}[日号]?|\d{1,2}[-/]\d{1,2}|今天|昨天|前天)")


def _take_date(text: str, today: date) -> tuple[date | None, str]:
    m = _DATE_RE.search(text)
    if not m:
        return None, text
    word = m.group(0)
    d = {"昨天": today - timedelta(days=1), "前天": today - timedelta(days=2)}.get(word) or parse_date(word, today)
    if d and d > today + timedelta(days=1) and not re.match(r"\d{4}", word):
        d = d.replace(year=d.year - 1) if d.replace(year=d.year - 1) <= today else d  # 12月3日 in January
    return d, (text[: m.start()] + " " + text[m.end():]).strip()


class StepError(ValueError):
    """A workflow step cannot be taken as asked; the message is Chinese and safe to show to staff."""


def _actor_id(actor) -> int | None:
    return actor.id if isinstance(actor, Member) else getattr(actor, "member_id", None)


def tell_member(bot, s: Session, case: HardshipCase, ev: CaseEvent, text: str) -> None:
    """Record what the member is told on the event and push it privately (once per event)."""
    ev.message = text
    _notify(bot, s, case.member, text, f"hardship:{case.id}:{ev.id}:m{case.member_id}")


def _move(s, case, to, actor, now, note=None, label=None) -> CaseEvent:
    try:
        ev = transition(s, case, to, actor if isinstance(actor, Member) else None, now=now, note=note)
    except TransitionError as exc:
        raise StepError(str(exc)) from None
    if label and not isinstance(actor, Member):
        last = s.scalars(select(AuditLog).where(AuditLog.case_id == case.id).order_by(AuditLog.id.desc())).first()
        if last is not None:
            last.actor_label, last.actor_id = label, _actor_id(actor)
    return ev


def do_verify(bot, s: Session, actor, case: HardshipCase, visit: date | None, notes: str, label=None) -> CaseEvent:
    if not notes:
        raise StepError(f"请写上核实情况，例如：核实 {case.number} 家访 12月3日 情况属实，建议补助")
    now = bot.clock.now()
    ev = _move(s, case, "verifying", actor, now, note=notes, label=label)
    case.visit_date, case.verify_notes = visit, notes
    case.verified_by_id, case.verified_at = _actor_id(actor), now
    tell_member(bot, s, case, ev, f"您的困难帮扶申请 {case.number} 已由分会完成核实，现在等待工会审批，请耐心等候。")
    for r in _reviewers(s):
        if r.id not in (_actor_id(actor), case.member_id):
            _notify(bot, s, r,
                    f"困难帮扶申请 {case.number} 已核实，请审批。发送“查看 {case.number}”查看详情，然后"
                    f"“审批 {case.number} 同意 慰问金 2000”或“审批 {case.number} 不同意 理由”。",
                    f"hardship:{case.id}:{ev.id}:r{r.id}")  # fmt: skip
    return ev


def do_decline(bot, s: Session, actor, case: HardshipCase, reason: str, label=None) -> CaseEvent:
    if not reason:
        raise StepError(f"请写上不同意的理由（会告诉申请人），例如：审批 {case.number} 不同意 家庭收入高于帮扶标准")
    now = bot.clock.now()
    ev = _move(s, case, "decided", actor, now, note="不同意", label=label)
    case.decision, case.decision_reason = "declined", reason
    case.decided_by_id, case.decided_at = _actor_id(actor), now
    tell_member(bot, s, case, ev,
                f"您的困难帮扶申请 {case.number} 经工会研究，这次暂未获批准。原因：{reason}\n"
                "如有疑问或情况有变化，可以随时私聊我或联系工会办公室。")  # fmt: skip
    _move(s, case, "closed", actor, now, label=label)
    return ev


def do_approve(bot, s: Session, actor, case: HardshipCase, kind: str, amount: Decimal | None, note: str | None,
               label=None) -> CaseEvent:  # fmt: skip
    if kind not in AID_KINDS:
        raise StepError("帮扶方式请选：" + "、".join(AID_KINDS))
    if amount is None and kind != "物资":
        raise StepError(f"请写上金额，例如：审批 {case.number} 同意 慰问金 2000")
    if amount is not None and amount <= 0:
        raise StepError("金额要大于0。")
    now = bot.clock.now()
    ev = _move(s, case, "decided", actor, now, note=note, label=label)
    case.decision, case.aid_kind, case.aid_amount, case.decision_note = "approved", kind, amount, note
    case.decided_by_id, case.decided_at = _actor_id(actor), now
    ensure_record(s, case, bot.clock.today())
    what = f"{kind} {_money(amount)} 元" if amount is not None else kind
    tell_member(bot, s, case, ev, f"您的困难帮扶申请 {case.number} 已审批同意：{what}。工会会尽快发放，发放后会再通知您。")
    return ev


def do_deliver(bot, s: Session, actor, case: HardshipCase, day: date, amount: Decimal | None, note: str | None,
               label=None) -> CaseEvent:  # fmt: skip
    if case.decision != "approved":
        raise StepError(f"{case.number} 还没有审批同意，不能记录发放。")
    ev = _move(s, case, "delivered", actor, bot.clock.now(), note=note, label=label)
    case.delivered_on, case.delivered_amount, case.delivered_by_id = day, amount, _actor_id(actor)
    case.follow_up_due = day + timedelta(days=bot.settings.HARDSHIP_FOLLOW_UP_DAYS)
    what = f"{case.aid_kind} {_money(amount)} 元" if amount is not None else (case.aid_kind or "帮扶")
    tell_member(bot, s, case, ev, f"您的{what}已于{_fmt_day(day)}发放，请注意查收。如未收到请联系工会办公室。")
    return ev


def do_follow_up(bot, s: Session, actor, case: HardshipCase, notes: str | None, label=None) -> CaseEvent:
    now = bot.clock.now()
    ev = _move(s, case, "followed_up", actor, now, note=notes, label=label)
    case.followed_up_at, case.follow_up_notes = now, notes or None
    tell_member(bot, s, case, ev, "感谢您接受工会的回访。以后遇到困难，随时可以私聊我，工会一直在您身边。")
    return ev


def do_close(bot, s: Session, actor, case: HardshipCase, note: str | None, label=None) -> CaseEvent:
    ev = _move(s, case, "closed", actor, bot.clock.now(), note=note, label=label)
    tell_member(bot, s, case, ev, f"您的困难帮扶申请 {case.number} 已办结。感谢您的信任，祝您和家人一切顺利。")
    return ev


def _step_case(ctx: Context, verb: str, step: str) -> tuple[HardshipCase, str] | None:
    if not _bound(ctx):
        return None
    _private(ctx)
    redact_inbound(ctx)
    case = find_case(ctx.session, ctx.text)
    if case is None:
        ctx.reply(f"请写上申请编号，例如：{verb} KN2027-003 …")
        return None
    if not may_act(ctx.member, case, step):
        _deny(ctx, case, step)
        return None
    rest = NUMBER_RE.sub(" ", ctx.text, count=1)
    rest = re.sub(rf"^\s*{verb}\s*", "", rest.strip()).strip(" ,.:;")
    return case, rest


@router.handler(patterns=[rf"^核实\s*{NUM}"], group_ok=False, priority=5, public=True, redact=True)
def hardship_verify(ctx: Context) -> None:
    """核实 KN2027-003 家访 12月3日 情况属实：分会主席记录核实结果"""
    got = _step_case(ctx, "核实", "verify")
    if got is None:
        return
    case, rest = got
    visit, notes = _take_date(rest, ctx.clock.today())
    notes = ctx.words_for(re.sub(r"^(家访|上门|电话核实)\s*", "", notes).strip(" ,.;:"))
    try:
        do_verify(ctx.bot, ctx.session, ctx.member, case, visit, notes)
    except StepError as exc:
        ctx.reply(str(exc))
        return
    ctx.reply(f"已记录 {case.number} 的核实情况，已通知工会审批。")


@router.handler(patterns=[rf"^审批\s*{NUM}"], group_ok=False, priority=5, public=True, redact=True)
def hardship_decide(ctx: Context) -> None:
    """审批 KN2027-003 同意 慰问金 2000 / 不同意 理由：帮扶审核人员审批"""
    got = _step_case(ctx, "审批", "decide")
    if got is None:
        return
    case, rest = got
    neg = re.match(r"^(不同意|不批准|不予批准|驳回|拒绝)\s*(理由|原因)?[:：]?\s*", rest)
    pos = re.match(r"^(同意|批准|通过)\s*", rest)
    try:
        if neg:
            do_decline(ctx.bot, ctx.session, ctx.member, case, ctx.words_for(rest[neg.end():].strip()))
            ctx.reply(f"已记录：{case.number} 不同意，已告知申请人并结案。")
            return
        if not pos:
            ctx.reply(f"请写明同意还是不同意，例如：审批 {case.number} 同意 慰问金 2000，或：审批 {case.number} 不同意 理由")
            return
        body, note = rest[pos.end():], None
        nm = re.search(r"(备注|内部)[:：]?\s*(.+)$", body)
        if nm:
            note, body = ctx.words_for(nm.group(2).strip()), body[: nm.start()]
        kind = next((k for k in AID_KINDS if k in body), "慰问金")
        amount = _amount(body)
        do_approve(ctx.bot, ctx.session, ctx.member, case, kind, amount, note)
    except StepError as exc:
        ctx.reply(str(exc))
        return
    what = f"{kind} {_money(amount)} 元" if amount is not None else kind
    ctx.reply(f"已记录：{case.number} 同意，{what}。已告知申请人，并列入困难职工档案。发放后请发送“发放 {case.number} 金额”。")


@router.handler(patterns=[rf"^发放\s*{NUM}"], group_ok=False, priority=5, public=True, redact=True)
def hardship_deliver(ctx: Context) -> None:
    """发放 KN2027-003 2000：记录帮扶发放"""
    got = _step_case(ctx, "发放", "deliver")
    if got is None:
        return
    case, rest = got
    day, rest = _take_date(rest, ctx.clock.today())
    day = day or ctx.clock.today()
    amount = _amount(rest) if re.search(r"\d", rest) else case.aid_amount
    try:
        do_deliver(ctx.bot, ctx.session, ctx.member, case, day, amount, ctx.words_for(rest) or None)
    except StepError as exc:
        ctx.reply(str(exc))
        return
    what = f"{case.aid_kind} {_money(amount)} 元" if amount is not None else (case.aid_kind or "帮扶")
    ctx.reply(f"已记录 {case.number} 发放 {what}（{_fmt_day(day)}），回访期限 {_fmt_day(case.follow_up_due)}。")


@router.handler(patterns=[rf"^回访\s*{NUM}"], group_ok=False, priority=5, public=True, redact=True)
def hardship_follow_up(ctx: Context) -> None:
    """回访 KN2027-003 情况：记录回访"""
    got = _step_case(ctx, "回访", "follow_up")
    if got is None:
        return
    case, rest = got
    try:
        do_follow_up(ctx.bot, ctx.session, ctx.member, case, ctx.words_for(rest) or None)
    except StepError as exc:
        ctx.reply(str(exc))
        return
    ctx.reply(f"已记录 {case.number} 的回访。办结请发送“结案 {case.number}”。")


@router.handler(patterns=[rf"^结案\s*{NUM}"], group_ok=False, priority=5, public=True, redact=True)
def hardship_close(ctx: Context) -> None:
    """结案 KN2027-003：办结帮扶申请"""
    got = _step_case(ctx, "结案", "close")
    if got is None:
        return
    case, rest = got
    try:
        do_close(ctx.bot, ctx.session, ctx.member, case, ctx.words_for(rest) or None)
    except StepError as exc:
        ctx.reply(str(exc))
        return
    ctx.reply(f"{case.number} 已结案。")


@router.handler(patterns=[r"^复核\s*#?\d+"], group_ok=False, public=True, redact=True)
def hardship_reverify(ctx: Context) -> None:
    """复核 12 继续 / 复核 12 退出 理由：困难职工档案年度复核"""
    if not _bound(ctx):
        return
    _private(ctx)
    redact_inbound(ctx)
    m = ctx.member
    assert m is not None
    rid = int(re.search(r"\d+", ctx.text).group())
    rec = ctx.session.get(HardshipRecord, rid)
    ok = rec is not None and (
        can(m.roles, "cases.review") or (can(m.roles, "cases.verify") and rec.branch_id == m.branch_id)
    ) and rec.member_id != m.id
    if not ok or rec is None:
        ctx.reply("没有找到这份困难职工档案，或您没有复核权限。")
        return
    today = ctx.clock.today()
    rest = re.sub(r"^复核\s*#?\d+\s*", "", ctx.text)
    if re.match(r"^(退出|解除|脱困|移出)", rest):
        reason = ctx.words_for(re.sub(r"^(退出|解除|脱困|移出)\s*(理由|原因)?[:：]?\s*", "", rest))
        rec.active, rec.ended_on, rec.end_reason = False, today, reason or None
        ctx.reply(f"已将档案 {rid} 移出困难职工档案。")
    elif re.match(r"^(继续|保留|仍然困难|属实)", rest):
        rec.last_verified, rec.next_review, rec.review_asked_for = today, plus_year(today), None
        ctx.reply(f"已复核档案 {rid}，继续保留，下次复核 {_fmt_day(rec.next_review)}。")
    else:
        ctx.reply(f"请回复“复核 {rid} 继续”或“复核 {rid} 退出 理由”。")
        return
    audit(ctx.session, m, "change", subject="record", detail=f"record {rid} reverified", at=ctx.clock.now())


# ============================================================================================== care events
CARE_WORDS: list[tuple[str, str]] = [
    ("住院", "hospital"), ("做手术", "hospital"), ("动手术", "hospital"), ("手术了", "hospital"),
    ("生病", "illness"), ("病了", "illness"), ("病倒", "illness"),
    ("结婚", "marriage"), ("办喜事", "marriage"),
    ("生了", "childbirth"), ("生孩子", "childbirth"), ("生宝宝", "childbirth"), ("生育", "childbirth"),
    ("去世", "bereavement"), ("过世", "bereavement"), ("离世", "bereavement"), ("病故", "bereavement"),
    ("丧事", "bereavement"), ("走了", "bereavement"),
    ("意外", "accident"), ("受伤", "accident"), ("车祸", "accident"), ("骨折", "accident"),
]  # fmt: skip
EXPLICIT_TYPES = {"住院": "hospital", "生病": "illness", "结婚": "marriage", "生育": "childbirth",
                  "生孩子": "childbirth", "丧事": "bereavement", "去世": "bereavement", "意外": "accident",
                  "受伤": "accident", "其他": "other"}  # fmt: skip
RELATIVES = ("父亲", "母亲", "爸爸", "妈妈", "老爸", "老妈", "爸", "妈", "爷爷", "奶奶", "外公", "外婆", "公公",
             "婆婆", "岳父", "岳母", "丈人", "老人", "老伴", "爱人", "丈夫", "妻子", "老公", "老婆", "媳妇",
             "儿子", "女儿", "孩子")  # fmt: skip
_EXPLICIT = re.compile(r"^报告\s*(" + "|".join(sorted(EXPLICIT_TYPES, key=len, reverse=True)) + r")\s*(.*)$")
_NICK = re.compile(r"^(?:老|小|大|阿)([\u4e00-\u9fa5])$|^([\u4e00-\u9fa5])(?:姐|哥|师傅|老师|大夫|医生|护士长|主任)$")


_TRIGGER_SKIP = {"生了", "走了"}  # too common alone (发生了, 先走了): only through the patterns below
_CARE_PATTERNS = [
    _EXPLICIT.pattern,
    r"(" + "|".join(RELATIVES) + r")\S{0,2}(走了|没了)",
    r"(?<!发)生了(个|一个|对|一对)?(闺女|儿子|女儿|男孩|女孩|宝宝|孩子|双胞胎|娃|千金)",
]


@router.handler(patterns=_CARE_PATTERNS, priority=0, public=True, redact=True)
def care_report_explicit(ctx: Context) -> None:
    """报告 住院 张三 心内科 12床：报告需要探望的同事（五必访）"""
    care_report(ctx)


@router.handler(
    *[w for w, _ in CARE_WORDS if w not in _TRIGGER_SKIP],
    priority=-1,
    name="care_report",
    public=True,
    redact=True,
)
def care_report(ctx: Context) -> None:
    """报告 住院 张三 心内科 12床：报告需要探望的同事"""
    if not _bound(ctx):
        return
    _private(ctx)
    redact_inbound(ctx)
    m = ctx.member
    assert m is not None
    if ctx.msg.is_group:
        ctx.reply(CARE_GROUP_INVITE)
        return
    text = ctx.text.strip()
    ex = _EXPLICIT.match(text)
    self_report = False
    relation = ""
    if ex:
        ctype = EXPLICIT_TYPES[ex.group(1)]
        parts = ex.group(2).split(maxsplit=1)
        name = parts[0] if parts else ""
        details = ctx.words_for(parts[1]) if len(parts) > 1 else ""
        if name in ("我", "本人", "自己"):
            self_report = True
    else:
        pos, word, ctype = min(
            ((text.find(w), w, t) for w, t in CARE_WORDS if w in text), key=lambda x: (x[0], -len(x[1]))
        )
        prefix, suffix = text[:pos], text[pos + len(word):]
        prefix = re.sub(r"[,.!?;:\s]+", "", prefix)
        suffix = re.sub(r"^(了|的)?\s*[,.;:]?\s*(在|住在)?", "", suffix).strip(" ,.!?;:")
        prefix = re.sub(r"(下周|下个月|明天|今天|昨天|前天|刚刚|刚|已经|突然|这周|周末|上周|\d+号|\d+月\d+[日号]?)$", "", prefix)
        if prefix.startswith("我们") or prefix.startswith("我组") or prefix.startswith("小组"):
            prefix = re.sub(r"^(我们(组|科|小组|科室|病区)?|我组|小组|组里)的?", "", prefix)
            name = prefix
        elif prefix.startswith(("我", "家里", "家中")) or prefix == "" or prefix.startswith(RELATIVES):
            self_report = True
            rel = re.sub(r"^(我的?|家里的?|家中的?|我家的?)", "", prefix)
            relation = next((r for r in RELATIVES if rel.startswith(r)), rel)
            name = ""
        else:
            name = re.sub(r"^(组里|科里|我们组)的?", "", prefix)
        details = " ".join(x for x in (relation, ctx.words_for(suffix)) if x)
    when = parse_date(text, ctx.clock.today()) if ctype == "marriage" else None
    if self_report:
        _create_care(ctx, m, ctype, details, when)
        return
    if not name:
        ctx.reply("请写上同事的姓名，例如：报告 住院 张三 心内科 12床")
        return
    cands = _find_colleagues(ctx.session, m, name)
    nick = bool(_NICK.match(name)) and not any(c.name == name for c in cands)
    if len(cands) == 1 and not nick:
        _create_care(ctx, cands[0], ctype, details, when)
        return
    if not cands:
        ctx.reply(f"没有找到“{name}”。请写同事的全名，例如：报告 住院 张三 心内科 12床")
        return
    cands = cands[:8]
    ctx.start_dialog(PICK, "pick", {"ids": [c.id for c in cands], "type": ctype, "details": _enc(details),
                                    "when": when.isoformat() if when else None})  # fmt: skip
    lines = [f"{i}. {c.name}（{_unit(c)}）" for i, c in enumerate(cands, 1)]
    head = "您说的是哪一位？请回复编号：" if len(cands) > 1 else "请确认是这位同事吗？是的话回复“1”："
    ctx.reply(head + "\n" + "\n".join(lines))


def _find_colleagues(s: Session, reporter: Member, name: str) -> list[Member]:
    exact = list(s.scalars(select(Member).where(Member.active.is_(True), Member.name == name).order_by(Member.id)))
    if exact:
        return exact
    nm = _NICK.match(name)
    if not nm:
        return []
    surname = nm.group(1) or nm.group(2)
    base = select(Member).where(Member.active.is_(True), Member.name.like(f"{surname}%"), Member.id != reporter.id)
    for scope in ("group", "branch"):
        col, val = (Member.group_id, reporter.group_id) if scope == "group" else (Member.branch_id, reporter.branch_id)
        if val is None:
            continue
        found = list(s.scalars(base.where(col == val).order_by(Member.id)))
        if found:
            return found
    return []


@router.dialog(PICK)
def care_pick(ctx: Context) -> None:
    _private(ctx)
    d = ctx.dialog
    assert d is not None and ctx.member is not None
    ids = list(d.data.get("ids", []))
    t = ctx.text.strip()
    if not (t.isdigit() and 1 <= int(t) <= len(ids)):
        ctx.reply(f"请回复1到{len(ids)}的编号，或发送“取消”。")
        return
    member = ctx.session.get(Member, ids[int(t) - 1])
    data = d.data
    ctx.end_dialog()
    if member is None:
        ctx.reply("没有找到这位同事，请重新报告。")
        return
    when = date.fromisoformat(data["when"]) if data.get("when") else None
    _create_care(ctx, member, data["type"], _dec(data.get("details")) or "", when)


def _care_leaders(s: Session, member: Member) -> list[Member]:
    out: dict[int, Member] = {}
    if member.group_id is not None:
        for x in members_with_role(s, "group_leader", group_id=member.group_id):
            out.setdefault(x.id, x)
    if member.branch_id is not None:
        for x in members_with_role(s, "branch_chair", branch_id=member.branch_id):
            out.setdefault(x.id, x)
    out.pop(member.id, None)
    if not out:
        for x in members_with_role(s, "clerk"):
            out.setdefault(x.id, x)
    return list(out.values())


def _create_care(ctx: Context, member: Member, ctype: str, details: str, when: date | None) -> None:
    s = ctx.session
    today = ctx.clock.today()
    dup = s.scalar(
        select(CareEvent).where(
            CareEvent.member_id == member.id,
            CareEvent.type == ctype,
            CareEvent.status == "open",
        )
    )
    if dup is not None:
        ctx.reply(f"{member.name}的{CARE_LABELS[ctype]}已经登记过了（任务 {dup.id}），负责的同志会安排探望，谢谢您！")
        return
    ev = CareEvent(
        type=ctype,
        member_id=member.id,
        branch_id=member.branch_id,
        group_id=member.group_id,
        reported_by_id=ctx.member.id,
        details=details or None,
        reported_at=ctx.clock.now(),
        due_on=care_due(ctype, today, when),
        status="open",
    )
    s.add(ev)
    s.flush()
    audit(s, ctx.member, "change", subject="care", detail=f"care {ev.id} reported ({ctype})", at=ctx.clock.now())
    leaders = _care_leaders(s, member)
    for x in leaders:
        _notify(ctx, s, x, _care_task_text(ev, member, first=True), f"care:{ev.id}:new:m{x.id}")
    self_report = member.id == ctx.member.id
    wish = {"hospital": "祝您早日康复！", "illness": "祝您早日康复！", "marriage": "恭喜恭喜，祝新婚幸福！",
            "childbirth": "恭喜添丁之喜！", "bereavement": "请节哀，保重身体。", "accident": "请多保重，祝早日康复！"}  # fmt: skip
    if self_report:
        ctx.reply(f"收到。{wish.get(ctype, '')}已转告您的小组长和分会主席，工会会来看望您。")
    else:
        ctx.reply(f"收到，谢谢您告诉我们。已转告{member.name}的小组长和分会主席安排{'慰问' if ctype in ('marriage', 'childbirth') else '探望'}。")


def _care_task_text(ev: CareEvent, member: Member, first: bool = False, overdue: bool = False) -> str:
    head = "新的关怀任务" if first else ("关怀任务已逾期" if overdue else "关怀任务提醒")
    det = f"，{ev.details}" if ev.details else ""
    return (
        f"{head} {ev.id}：{member.name}（{_unit(member)}）{ev.label}{det}。请在{_fmt_day(ev.due_on)}前"
        f"{'慰问' if ev.type in ('marriage', 'childbirth') else '探望'}。\n"
        f"完成后回复“探望 {ev.id} 日期 人员 金额”，例如：探望 {ev.id} 今天 李四 王五 500"
    )


GIFT_WORDS = ("鲜花", "花篮", "果篮", "水果", "牛奶", "礼品", "慰问品", "营养品", "蛋糕", "红包")


@router.handler(patterns=[r"^(探望|慰问)\s*#?\d+"], group_ok=False, public=True, redact=True)
def care_visit(ctx: Context) -> None:
    """探望 12 12月4日 李四 王五 500：记录关怀探望"""
    if not _bound(ctx):
        return
    _private(ctx)
    redact_inbound(ctx)
    m = ctx.member
    assert m is not None
    tid = int(re.search(r"\d+", ctx.text).group())
    ev = ctx.session.get(CareEvent, tid)
    if ev is None or not _may_manage_care(m, ev):
        ctx.reply("没有找到这个关怀任务，或您不负责这项探望。发送“关怀任务”查看您负责的任务。")
        return
    if ev.status == "done":
        ctx.reply(f"关怀任务 {tid} 已经记录过探望了。")
        return
    rest = re.sub(r"^(探望|慰问)\s*#?\d+\s*", "", ctx.text)
    day, rest = _take_date(rest, ctx.clock.today())
    amount = None
    visitors, gifts, notes = [], [], []
    for tok in re.split(r"[\s,]+", rest):
        if not tok:
            continue
        if re.fullmatch(r"\d+(\.\d{1,2})?元?", tok):
            amount = Decimal(tok.rstrip("元"))
        elif any(g in tok for g in GIFT_WORDS):
            gifts.append(ctx.words_for(tok))
        elif re.fullmatch(r"[\u4e00-\u9fa5·]{2,4}", tok):
            visitors.append(tok)
        else:
            notes.append(ctx.words_for(tok))
    ev.status = "done"
    ev.visited_on = day or ctx.clock.today()
    ev.visitors = "、".join(visitors) or m.name
    ev.gift = "、".join(gifts) or None
    ev.amount = amount
    ev.visit_note = " ".join(notes) or None
    ev.done_by_id = m.id
    audit(ctx.session, m, "change", subject="care", detail=f"care {ev.id} visited", at=ctx.clock.now())
    extra = f"，慰问金 {_money(amount)} 元" if amount is not None else ""
    ctx.reply(f"已记录关怀任务 {tid}：{_fmt_day(ev.visited_on)} {ev.visitors} 探望{extra}。谢谢！")


def _may_manage_care(m: Member, ev: CareEvent) -> bool:
    roles = m.roles
    if not can(roles, "care.manage"):
        return False
    if ev.member_id == m.id:
        return False
    if can(roles, "care.manage_all"):
        return True
    if can(roles, "care.manage_branch") and ev.branch_id is not None and ev.branch_id == m.branch_id:
        return True
    return can(roles, "care.manage_group") and ev.group_id is not None and ev.group_id == m.group_id


@router.handler("关怀任务", "探望任务", "五必访", "待探望", group_ok=False, priority=60)
def care_tasks(ctx: Context) -> None:
    """关怀任务：查看我负责的探望任务"""
    _private(ctx)
    m = ctx.member
    assert m is not None
    if not can(m.roles, "care.manage"):
        ctx.reply("关怀任务只对小组长、分会主席和工会干事开放。同事住院等情况请发送“报告 住院 姓名”。")
        return
    rows = [
        ev
        for ev in ctx.session.scalars(
            select(CareEvent).where(CareEvent.status == "open").order_by(CareEvent.due_on, CareEvent.id)
        )
        if _may_manage_care(m, ev)
    ]
    if not rows:
        ctx.reply("目前没有待办的关怀任务。")
        return
    audit(ctx.session, m, "view", subject="care", detail=f"chat list: 关怀任务, {min(len(rows), 30)} tasks",
          at=ctx.clock.now())  # fmt: skip
    today = ctx.clock.today()
    lines = []
    for ev in rows[:30]:
        late = "（已逾期）" if ev.due_on < today else ""
        name = ev.member.name if ev.member else "—"
        lines.append(f"· {ev.id} {name} {ev.label} {ev.details or ''} 期限{_fmt_day(ev.due_on)}{late}")
    ctx.reply("待办关怀任务：\n" + "\n".join(lines) + "\n完成后回复“探望 编号 日期 人员 金额”。")


@router.handler("帮扶统计", "关怀统计", "探望统计", group_ok=False, priority=60)
def care_stats(ctx: Context) -> None:
    """帮扶统计 2027：全年探望和帮扶统计"""
    _private(ctx)
    m = ctx.member
    assert m is not None
    if not can(m.roles, "cases.stats"):
        ctx.reply("统计只对工会办公室和帮扶审核人员开放。")
        return
    y = re.search(r"\d{4}", ctx.text)
    year = int(y.group()) if y else ctx.clock.today().year
    st = care_statistics(ctx.session, year)
    audit(ctx.session, m, "view", subject="stats", detail=f"stats {year}", at=ctx.clock.now())
    by_type = "、".join(f"{CARE_LABELS[k]}{v}" for k, v in st["visits_by_type"].items()) or "无"
    by_branch = "、".join(f"{k}{v}" for k, v in st["visits_by_branch"].items()) or "无"
    ctx.reply(
        f"{year}年关怀与帮扶统计：\n探望 {st['visits']} 次（{by_type}）\n按分会：{by_branch}\n"
        f"慰问金 {_money(st['care_paid'])} 元；帮扶申请 {st['cases']} 件，同意 {st['approved']} 件，"
        f"发放 {_money(st['aid_paid'])} 元；困难职工档案 {st['records']} 人"
    )


# ============================================================================================== statistics / export
def care_statistics(s: Session, year: int) -> dict:
    start, end = date(year, 1, 1), date(year, 12, 31)
    visits = list(
        s.scalars(select(CareEvent).where(CareEvent.status == "done", CareEvent.visited_on.between(start, end)))
    )
    by_type: dict[str, int] = {}
    by_branch: dict[str, int] = {}
    care_paid = Decimal(0)
    amounts_by_type: dict[str, Decimal] = {}
    for ev in visits:
        by_type[ev.type] = by_type.get(ev.type, 0) + 1
        b = ev.branch.name if ev.branch else "未分会"
        by_branch[b] = by_branch.get(b, 0) + 1
        if ev.amount is not None:
            care_paid += ev.amount
            amounts_by_type[ev.type] = amounts_by_type.get(ev.type, Decimal(0)) + ev.amount
    cases = list(s.scalars(select(HardshipCase).where(HardshipCase.year == year)))
    delivered = list(
        s.scalars(select(HardshipCase).where(HardshipCase.delivered_on.between(start, end)))
    )
    aid_paid = sum((c.delivered_amount or Decimal(0) for c in delivered), Decimal(0))
    records = s.scalar(
        select(func.count(HardshipRecord.id)).where(
            HardshipRecord.since <= end, or_(HardshipRecord.active.is_(True), HardshipRecord.ended_on >= start)
        )
    )
    cases_by_type: dict[str, int] = {}
    for c in cases:
        cases_by_type[c.type] = cases_by_type.get(c.type, 0) + 1
    return {
        "year": year,
        "visits": len(visits),
        "visits_by_type": {k: by_type[k] for k in sorted(by_type, key=lambda t: list(CARE_LABELS).index(t))},
        "visits_by_branch": dict(sorted(by_branch.items())),
        "care_paid": care_paid,
        "care_paid_by_type": amounts_by_type,
        "cases": len(cases),
        "cases_by_type": cases_by_type,
        "approved": sum(1 for c in cases if c.decision == "approved"),
        "declined": sum(1 for c in cases if c.decision == "declined"),
        "aid_paid": aid_paid,
        "records": int(records or 0),
    }


def safe_cell(value):
    """Formula-safe spreadsheet text: a leading = + - @ (or tab/CR) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_xlsx(bot, s: Session, viewer, year: int, *, actor_label: str | None = None) -> bytes:
    """The yearly care and hardship report as .xlsx (cases.review only). Writes an export audit row."""
    from openpyxl import Workbook

    crypto.configure(bot.settings)
    label = actor_label or (viewer.name if viewer else "")
    allowed = viewer is not None and viewer.active and can(viewer.roles, "cases.review")
    viewer_member = viewer if isinstance(viewer, Member) else getattr(viewer, "member", None)
    if not allowed:
        audit(s, viewer_member, "export", subject="stats", detail=f"denied export {year}", at=bot.clock.now(),
              actor_label=label or None)  # fmt: skip
        raise PermissionError("export needs cases.review")
    now = bot.clock.now()
    st = care_statistics(s, year)
    wb = Workbook()
    ws = wb.active
    ws.title = "统计"
    ws.append([safe_cell(f"{year}年关怀与帮扶统计")])
    ws.append(["导出人", safe_cell(label)])
    ws.append(["导出时间", bot.clock.fmt(now) + f" {now.astimezone(bot.clock.tz).year}"])
    ws.append([])
    ws.append(["探望次数", st["visits"]])
    for k, v in st["visits_by_type"].items():
        ws.append([f"探望-{CARE_LABELS[k]}", v])
    for k, v in st["visits_by_branch"].items():
        ws.append([safe_cell(f"分会-{k}"), v])
    ws.append(["慰问金合计（元）", float(st["care_paid"])])
    ws.append(["帮扶申请（件）", st["cases"]])
    ws.append(["同意（件）", st["approved"]])
    ws.append(["帮扶发放合计（元）", float(st["aid_paid"])])
    ws.append(["困难职工档案（人）", st["records"]])
    v = wb.create_sheet("探望记录")
    v.append(["任务", "类型", "会员", "分会", "探望日期", "探望人", "慰问品", "慰问金（元）"])
    for ev in s.scalars(
        select(CareEvent)
        .where(CareEvent.status == "done", CareEvent.visited_on.between(date(year, 1, 1), date(year, 12, 31)))
        .order_by(CareEvent.visited_on, CareEvent.id)
    ):
        v.append([ev.id, ev.label, safe_cell(ev.member.name if ev.member else "（已匿名）"),
                  safe_cell(ev.branch.name if ev.branch else ""), ev.visited_on.isoformat(),
                  safe_cell(ev.visitors or ""), safe_cell(ev.gift or ""),
                  float(ev.amount) if ev.amount is not None else None])  # fmt: skip
    c = wb.create_sheet("帮扶申请")
    c.append(["编号", "类型", "会员", "分会", "状态", "帮扶方式", "批准金额（元）", "发放日期", "发放金额（元）"])
    for case in s.scalars(select(HardshipCase).where(HardshipCase.year == year).order_by(HardshipCase.seq)):
        c.append([case.number, case.type, safe_cell(case.member.name if case.member else "（已匿名）"),
                  safe_cell(case.branch.name if case.branch else ""), case.status_label, safe_cell(case.aid_kind or ""),
                  float(case.aid_amount) if case.aid_amount is not None else None,
                  case.delivered_on.isoformat() if case.delivered_on else "",
                  float(case.delivered_amount) if case.delivered_amount is not None else None])  # fmt: skip
    for sheet in (ws, v, c):
        sheet.append([])
        sheet.append([safe_cell(f"导出人：{label}"), bot.clock.fmt(now)])
    audit(s, viewer_member, "export", subject="stats", detail=f"xlsx {year}", at=now, actor_label=label or None)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# ============================================================================================== jobs
def remind_care_tasks(bot, now: datetime | None = None) -> int:
    """Daily: remind the group leader and branch chair of open care tasks due tomorrow or overdue (once per
    task per local day); overdue by 2+ days also goes to the clerks. Returns messages queued."""
    crypto.configure(bot.settings)
    now = now or bot.clock.now()
    today = now.astimezone(bot.clock.tz).date()
    sent = 0
    with bot.db.transaction() as s:
        rows = list(
            s.scalars(
                select(CareEvent).where(CareEvent.status == "open", CareEvent.due_on <= today + timedelta(days=1))
            )
        )
        for ev in rows:
            if ev.last_reminded_on == today or ev.member is None:
                continue
            overdue = ev.due_on < today
            targets = _care_leaders(s, ev.member)
            if ev.due_on <= today - timedelta(days=2):
                targets += [c for c in members_with_role(s, "clerk") if c.id not in {t.id for t in targets}]
            text = _care_task_text(ev, ev.member, overdue=overdue)
            for t in targets:
                sent += bot.notify_member(
                    s, t, Text(text), f"care:{ev.id}:remind:{today.isoformat()}:m{t.id}", sensitive=True
                )
            ev.last_reminded_on = today
    return sent


def remind_follow_ups(bot, now: datetime | None = None) -> int:
    """Daily: delivered cases whose follow-up (回访) is due — remind, once, those who may see the whole case (the
    reviewers: whom to visit, how to reach them, what was given). The branch chair sees only that the case exists
    once it is verified (`can_see_case`), so a reminder to them could not say whom to call or what was given."""
    crypto.configure(bot.settings)
    now = now or bot.clock.now()
    today = now.astimezone(bot.clock.tz).date()
    sent = 0
    with bot.db.transaction() as s:
        for case in s.scalars(
            select(HardshipCase).where(HardshipCase.status == "delivered", HardshipCase.follow_up_due <= today)
        ):
            if case.follow_up_reminded_on is not None:
                continue
            m = case.member
            amount = case.delivered_amount
            what = f"{case.aid_kind} {_money(amount)} 元" if amount is not None else case.aid_kind
            text = (
                f"困难帮扶 {case.number} 到了回访时间：{m.name if m else '—'}（{_unit(m)}），"
                f"联系：{case.contact or '—'}；{_fmt_day(case.delivered_on)}已发放{what or '帮扶'}。\n"
                f"回访后请发送“回访 {case.number} 情况”。"
            )
            for t in _reviewers(s):
                if can_see_case(t, case) == Access.FULL and may_act(t, case, "follow_up"):
                    key = f"hardship:{case.id}:followup:m{t.id}"
                    sent += bot.notify_member(s, t, Text(text), key, sensitive=True)
            case.follow_up_reminded_on = today
    return sent


def reverify_hardship_records(bot, now: datetime | None = None) -> int:
    """Yearly 动态管理: active hardship records due for review → ask the branch chair (or reviewers), once per
    due date. Returns records asked about."""
    now = now or bot.clock.now()
    today = now.astimezone(bot.clock.tz).date()
    asked = 0
    with bot.db.transaction() as s:
        for rec in s.scalars(
            select(HardshipRecord).where(HardshipRecord.active.is_(True), HardshipRecord.next_review <= today)
        ):
            if rec.review_asked_for == rec.next_review or rec.member is None:
                continue
            targets = members_with_role(s, "branch_chair", branch_id=rec.branch_id) or _reviewers(s)
            text = (
                f"困难职工档案年度复核：{rec.member.name}（{_unit(rec.member)}）已登记满一年，请了解现在的情况。\n"
                f"仍需帮扶请回复“复核 {rec.id} 继续”，情况好转请回复“复核 {rec.id} 退出 原因”。"
            )
            for t in targets:
                if t.id != rec.member_id:
                    bot.notify_member(
                        s, t, Text(text), f"record:{rec.id}:review:{rec.next_review}:m{t.id}", sensitive=True
                    )
            rec.review_asked_for = rec.next_review
            audit(s, None, "change", subject="record", detail=f"record {rec.id} review asked", at=now)
            asked += 1
    return asked


def anonymise_closed_cases(bot, now: datetime | None = None, years: int | None = None) -> int:
    """Retention (HARDSHIP_RETENTION_YEARS): closed cases closed before the cut-off, and care events reported
    before it (a task still open that long is finished as `expired`), lose every personal field, the link to the
    member and the member's name in the audit log; type, branch, dates and amounts stay for the statistics.
    Finished outbox copies of the case's pushes go too. Returns cases plus care events anonymised."""
    crypto.configure(bot.settings)
    now = now or bot.clock.now()
    cutoff = retention_cutoff(now, years or bot.settings.HARDSHIP_RETENTION_YEARS)
    n = 0
    with bot.db.transaction() as s:
        for case in s.scalars(
            select(HardshipCase).where(
                HardshipCase.status == "closed",
                HardshipCase.closed_at < cutoff,
                HardshipCase.anonymised_at.is_(None),
            )
        ):
            anonymise_case(s, case, now)
            for rec in s.scalars(
                select(HardshipRecord).where(HardshipRecord.case_id == case.id, HardshipRecord.active.is_(False))
            ):
                rec.member_id, rec.end_reason = None, None
            _drop_pushes(s, f"hardship:{case.id}:")
            audit(s, None, "change", case=case, detail="anonymised (retention)", at=now)
            n += 1
        cutoff_day = cutoff.astimezone(bot.clock.tz).date()
        for ev in s.scalars(
            select(CareEvent).where(CareEvent.reported_at < cutoff, CareEvent.anonymised_at.is_(None))
        ):
            if ev.visited_on is not None and ev.visited_on >= cutoff_day:
                continue  # visited late: the visit itself is not yet past the limit
            if ev.status == "open":
                ev.status = "expired"
            anonymise_care_event(s, ev, now)
            _drop_pushes(s, f"care:{ev.id}:")
            audit(s, None, "change", subject="care", detail=f"care {ev.id} anonymised (retention)", at=now)
            n += 1
    return n


def _drop_pushes(s: Session, prefix: str) -> None:
    """Delivered (or dead) pushes of an anonymised case or care event: their keys and recipients link it."""
    ids = list(
        s.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.idempotency_key.startswith(prefix), OutboxMessage.status.in_(("sent", "dead"))
            )
        )
    )
    if ids:
        s.execute(delete(SandboxMessage).where(SandboxMessage.outbox_id.in_(ids)))
        s.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))


WARMTH_DAYS_BEFORE = 30  # the warmth campaign list goes out this many days before 春节
WARMTH_PUSH_LINES = 40  # names in the push; the console page and its .xlsx hold the whole list


def warmth_festival(today: date) -> date | None:
    """The 春节 whose warmth campaign (送温暖) is on: from WARMTH_DAYS_BEFORE days before it to the day itself."""
    for year in (today.year, today.year + 1):
        day = festival_date("chunjie", year)
        if day is not None and 0 <= (day - today).days <= WARMTH_DAYS_BEFORE:
            return day
    return None


def warmth_year(today: date) -> int:
    """The year of the next 春节 (today's year until 春节 has passed)."""
    day = festival_date("chunjie", today.year)
    return today.year if day is None or today <= day else today.year + 1


def send_warmth_campaign(bot, now: datetime | None = None) -> int:
    """Daily: from WARMTH_DAYS_BEFORE days before 春节, send the hardship reviewers and the chair the list of
    members to visit (hardship record, retirees), privately and once per year: the audit row marks it sent, the
    outbox keys make a repeated run harmless, and the pushes are blanked after delivery (`record:` prefix).
    Returns messages queued."""
    now = now or bot.clock.now()
    spring = warmth_festival(now.astimezone(bot.clock.tz).date())
    if spring is None:
        return 0
    marker = f"warmth list {spring.year} sent"
    with bot.db.transaction() as s:
        if s.scalar(select(AuditLog.id).where(AuditLog.subject == "record", AuditLog.detail.startswith(marker))):
            return 0
        entries = warmth_campaign_list(s, spring.year)
        text = _warmth_text(spring, entries)
        sent = 0
        for r in _reviewers(s):
            key = f"record:warmth:{spring.year}:m{r.id}"
            sent += bot.notify_member(s, r, Text(text), key, sensitive=True)
        if sent:
            audit(s, None, "export", subject="record", detail=f"{marker} to {sent} ({len(entries)} members)", at=now)
    return sent


def _warmth_text(spring: date, entries) -> str:
    recorded = sum(1 for e in entries if e.type)
    retired = sum(1 for e in entries if e.retired)
    head = (
        f"送温暖：{spring.year}年春节（{spring.month}月{spring.day}日）前走访慰问名单，"
        f"共 {len(entries)} 人（困难职工 {recorded} 人，退休职工 {retired} 人）。"
    )
    if not entries:
        return head + "\n目前名单为空。"
    lines = [f"· {e.branch} {e.group} {e.name}：{e.reason}" for e in entries[:WARMTH_PUSH_LINES]]
    more = f"\n……共 {len(entries)} 人，" if len(entries) > WARMTH_PUSH_LINES else "\n"
    return (
        head + "\n" + "\n".join(lines) + more
        + "完整名单和 Excel 在控制台“帮扶与关怀 › 送温暖名单”。名单涉及个人隐私，请勿转发到群里。"
    )  # fmt: skip


def warmth_xlsx(bot, entries, year: int, exporter: str) -> bytes:
    """The warmth campaign list as .xlsx: formula-safe cells, who exported it and when."""
    from openpyxl import Workbook

    now = bot.clock.now()
    when = bot.clock.local(now).strftime("%Y-%m-%d %H:%M")
    wb = Workbook()
    ws = wb.active
    ws.title = "送温暖名单"
    ws.append([safe_cell(f"{year}年春节送温暖走访名单")])
    ws.append(["导出人", safe_cell(exporter)])
    ws.append(["导出时间", when])
    ws.append([])
    ws.append(["分会", "小组", "姓名", "类别", "困难类型", "列入档案", "退休"])
    for e in entries:
        ws.append([safe_cell(e.branch), safe_cell(e.group), safe_cell(e.name), e.reason, safe_cell(e.type or ""),
                   e.since.isoformat() if e.since else "", "是" if e.retired else ""])  # fmt: skip
    ws.append([])
    ws.append([safe_cell(f"导出人：{exporter}"), when])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


__all__ = [
    "AuditLog",
    "anonymise_closed_cases",
    "care_statistics",
    "export_xlsx",
    "remind_care_tasks",
    "remind_follow_ups",
    "reverify_hardship_records",
    "scrub_sensitive_replies",
    "send_warmth_campaign",
]
