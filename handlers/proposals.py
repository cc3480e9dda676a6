"""Proposals (职代会提案) and suggestions in chat: submit, co-sign, review, assign, reply, evaluate, the public
list (提案公开) — and the jobs that close the co-sign window, chase late departments and close replies nobody
evaluated (and answered suggestions) after Congress.close_after_days.

Everything that changes a status goes through `models.proposal.transition`; every step tells the proposer(s) and
signed co-signers through the outbox with keys `proposal:<id>:<event id>:<member id>`. Anonymous suggestions are
answered through `anonymous_sender` only, with opaque keys (see models/proposal.py for the guarantee).
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import date, datetime, timedelta

from sqlalchemy import select

from bot import outbox
from bot.context import Context, active_dialog
from bot.message import Button, Card, Outgoing, Text
from bot.normalize import parse_date
from bot.permissions import can
from handlers import router
from models.member import Member, MemberRole
from models.messaging import InboundMessage
from models.proposal import (
    AWAITING_REPLY,
    RATINGS,
    REPLY_KINDS,
    STATUS_LABELS,
    Congress,
    CoSign,
    Evaluation,
    Proposal,
    ProposalDepartment,
    ProposalEvent,
    Reply,
    TransitionError,
    add_note,
    anonymous_ids_of,
    anonymous_sender,
    categories,
    close_after_days,
    current_congress,
    current_round,
    department_by_name,
    departments_of_contact,
    find_by_number,
    public_list,
    report,
    signed_count,
    status_since,
    submit,
    transition,
)

NUM = r"建?[A-Za-z0-9]+\s*-\s*\d{1,4}"
SKIP = {"跳过", "无", "没有", "不知道", "不清楚", "略", "skip", "-"}
ANON_WORDS = ("匿名", "不想留名", "不留名", "意见箱")
SUGGESTION_WORDS = ("建议", "金点子", "意见", "反映")
DIALOG = "proposal"
LONG_KIND = {"proposal": "职代会提案", "suggestion": "合理化建议"}
GROUP_INVITE = "提案和建议请私聊我提交（点我的头像发消息即可），我已私信您。"
PRIVATE_INVITE = (
    "您好，我是{bot}。提案和建议请在这里私聊提交：\n"
    "· 职代会提案：发送“提案”\n· 合理化建议：发送“提个建议”\n· 匿名意见：发送“匿名反映问题”"
)
FIELDS = [("category", "类别"), ("title", "标题"), ("situation", "现状和理由"), ("measures", "建议措施"),
          ("department", "建议承办部门"), ("cosigners", "附议人")]  # fmt: skip


# ============================================================================================== helpers
def refusals(func):
    """Run the handler in a savepoint; an illegal transition rolls its effects back and is told as is."""

    @functools.wraps(func)
    def wrapper(ctx: Context) -> None:
        try:
            with ctx.session.begin_nested():
                func(ctx)
        except TransitionError as e:
            ctx.reply(str(e))

    return wrapper


def _now(bot) -> datetime:
    return bot.clock.now()


def _anon_key(bot, p: Proposal, event_id: int | str) -> str:
    raw = f"{bot.settings.SECRET_KEY}:anon-notify:{p.id}:{event_id}"
    return "proposal:anon:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def notify_people(
    bot, s, p: Proposal, event: ProposalEvent, message: Outgoing | str, skip: Member | None = None
) -> int:
    """Tell the proposer(s) and signed co-signers (or the anonymous sender) about `event`; once per key."""
    out = Text(message) if isinstance(message, str) else message
    sent = 0
    if p.anonymous:
        sender = anonymous_sender(s, bot.settings.SECRET_KEY, p)
        if sender is not None and sender.active and (skip is None or sender.id != skip.id):
            sent += _push_unlinked(bot, s, sender, out, _anon_key(bot, p, event.id))
        return sent
    for m in p.people():
        if skip is not None and m.id == skip.id:
            continue
        if m.active:
            sent += bot.notify_member(s, m, out, f"proposal:{p.id}:{event.id}:{m.id}")
    return sent


def _push_unlinked(bot, s, member: Member, out: Outgoing, key: str) -> bool:
    """Like Bot.notify_member but the outbox row carries no member id (answers to anonymous senders)."""
    idents = [i for i in member.identities if not i.unreachable and i.platform in bot.senders]
    if not idents:
        return False
    ident = max(idents, key=lambda i: i.id)
    return outbox.enqueue(
        s,
        platform=ident.platform,
        target_kind="user",
        target_id=ident.platform_user_id,
        message=out,
        key=key,
        sensitive=True,
        now=bot.clock.now(),
    )


def notify_departments(bot, s, p: Proposal, key: str, message: Outgoing | str, lead_only=False) -> int:
    out = Text(message) if isinstance(message, str) else message
    depts = [p.lead_department] if lead_only else p.departments
    sent = 0
    for d in depts:
        if d is None:
            continue
        for m in d.contact_members:
            if m.active:
                sent += bot.notify_member(s, m, out, f"{key}:d{d.id}:m{m.id}")
    return sent


def reviewers(s) -> list[Member]:
    return list(
        s.scalars(
            select(Member)
            .join(MemberRole)
            .where(MemberRole.role.in_(("proposal_reviewer",)), Member.active.is_(True))
            .distinct()
        )
    )


def chairs(s) -> list[Member]:
    return list(
        s.scalars(select(Member).join(MemberRole).where(MemberRole.role == "chair", Member.active.is_(True)))
    )


def _notify_reviewers(bot, s, p: Proposal, event: ProposalEvent, text: str) -> None:
    for m in reviewers(s):
        bot.notify_member(s, m, Text(text), f"proposal:{p.id}:{event.id}:rev{m.id}")


def _get(ctx: Context, text: str | None = None) -> Proposal | None:
    p = find_by_number(ctx.session, text if text is not None else ctx.text)
    if p is None:
        ctx.reply("没有找到这个编号的提案或建议，请检查后再发，例如：提案 2027-012")
    return p


def _proposal_by_id(ctx: Context) -> Proposal | None:
    try:
        pid = int((ctx.msg.action or {}).get("id", 0))
    except (TypeError, ValueError):
        pid = 0
    p = ctx.session.get(Proposal, pid) if pid else None
    if p is None:
        ctx.reply("没有找到这件提案，请发送“我的提案”查看。")
    return p


def _fmt_day(d: date | None) -> str:
    return f"{d.year}年{d.month}月{d.day}日" if d else "—"


def is_proposer(p: Proposal, m: Member | None) -> bool:
    return m is not None and any(x.id == m.id for x in p.proposers())


def is_contact(ctx: Context, p: Proposal) -> bool:
    mine = {d.id for d in departments_of_contact(ctx.session, ctx.member)} if ctx.member else set()
    return bool(mine & {d.id for d in p.departments})


def _is_anon_sender(ctx: Context, p: Proposal) -> bool:
    return (
        p.anonymous
        and ctx.member is not None
        and p.id in anonymous_ids_of(ctx.session, ctx.settings.SECRET_KEY, ctx.member)
    )


UNLINKED = "anonymous"


def _unlink_anonymous_dialog(ctx: Context, since: datetime | None = None) -> None:
    """After an anonymous suggestion (or when its sender asks about it), nothing in the message logs may tie
    its text or timing to the sender: the inbound rows since `since` (None: this message) lose their user and
    chat ids and their text (the dedupe key stays, so platform retries are still recognised). The bot's
    replies are marked sensitive (`ctx.sensitive`), so the outbox scrubs them once delivered."""
    ctx.sensitive = True
    q = select(InboundMessage).where(
        InboundMessage.platform == ctx.msg.platform, InboundMessage.user_id == ctx.msg.user_id
    )
    if since is None:  # this message, even while the worker runs it as deferred work
        q = q.where(InboundMessage.dedupe_key == ctx.msg.message_id[:255])
    else:  # rows still waiting for the worker keep what it needs to run them
        q = q.where(
            InboundMessage.received_at >= since - timedelta(seconds=1), InboundMessage.status != "received"
        )
    for row in ctx.session.scalars(q):
        env = dict(row.envelope or {})
        env.update(text="[已删除]", typed="[已删除]", raw={}, user_id=UNLINKED, chat_id=UNLINKED)
        row.envelope, row.user_id, row.chat_id = env, UNLINKED, UNLINKED


# ============================================================================================== submitting
@router.handler(
    "提案",
    "我要提案",
    "写个提案",
    "提交提案",
    "提提案",
    "提个建议",
    "有个小建议",
    "小建议",
    "提建议",
    "合理化建议",
    "金点子",
    "提点意见",
    "提个意见",
    "提意见",
    "匿名",
    "不想留名",
    "意见箱",
    "反映个问题",
    "反映问题",
    menu="提案 / 提个建议 — 职代会提案、合理化建议、匿名意见",
)
def start(ctx: Context) -> None:
    """提案：提交职代会提案或合理化建议"""
    if ctx.msg.is_group:  # the same way as hardship reports: a neutral answer, the private chat opened
        ctx.invite_private(GROUP_INVITE, PRIVATE_INVITE.format(bot=ctx.settings.BOT_NAME),
                           f"proposal:invite:{ctx.msg.platform}:{ctx.msg.message_id}")  # fmt: skip
        return
    text = ctx.text
    now = ctx.clock.now()
    anonymous = any(w in text for w in ANON_WORDS)
    ctx.sensitive = anonymous
    mode = (
        "suggestion"
        if anonymous or (any(w in text for w in SUGGESTION_WORDS) and "提案" not in text)
        else "proposal"
    )
    note = ""
    congress = current_congress(ctx.session, now)
    if mode == "proposal":
        if congress is None or not congress.window_open(now):
            mode = "suggestion"
            when = ""
            if congress is not None:
                when = (
                    f"（{congress.name}的征集期为 {ctx.clock.fmt(congress.collect_start, False)} 至 "
                    f"{ctx.clock.fmt(congress.collect_end, False)}）"
                )
            note = f"现在不在职代会提案征集期{when}，您的内容将作为合理化建议提交，同样会转交相关部门答复。\n"
        elif congress.delegates_only and not ctx.member.is_delegate:
            mode = "suggestion"
            note = "正式提案需由职工代表提出，您的内容将作为合理化建议提交，同样会转交相关部门答复。\n"
    ctx.start_dialog(
        DIALOG,
        "category",
        {"mode": mode, "anonymous": anonymous, "congress_id": congress.id if congress else None,
         "need": congress.cosigners_required if congress else 0, "started_at": now.isoformat()},
    )  # fmt: skip
    what = "匿名意见" if anonymous else LONG_KIND[mode]
    intro = f"好的，我们来写一份{what}（随时发送“取消”退出）。\n"
    if anonymous:
        intro += "匿名提交后，工会和部门都看不到您是谁，答复会私信发给您。\n"
    ctx.reply(note + intro + _category_question(ctx))


def _category_question(ctx: Context) -> str:
    cats = categories(ctx.session, ctx.clock.now())
    return "第1步：请选择类别，回复序号：\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(cats, 1))


_QUESTIONS = {
    "title": "第2步：请用一句话写个标题（不超过30字），例如：增设职工停车位",
    "situation": "第3步：请说说现状和理由（遇到了什么问题、影响了谁）",
    "measures": "第4步：您建议怎么解决？请写出具体措施",
    "department": "第5步：建议由哪个部门承办？不清楚请回复“跳过”",
    "cosigners": (
        "第6步：请写出附议人（职工代表）的姓名或工号，多人用逗号分开，例如：李四，王五；"
        "也可以回复“跳过”，提交后请代表们发送“附议 编号”"
    ),
}


def _next_step(ctx: Context, current: str) -> None:
    d = ctx.dialog.data
    if d.get("editing"):
        ctx.advance("preview", editing=False)
        _preview(ctx)
        return
    order = ["category", "title", "situation", "measures", "department"]
    if d.get("mode") == "proposal" and d.get("need", 1) > 0:
        order.append("cosigners")
    i = order.index(current)
    if i + 1 < len(order):
        ctx.advance(order[i + 1])
        ctx.reply(_QUESTIONS[order[i + 1]])
    else:
        ctx.advance("preview")
        _preview(ctx)


@router.dialog(DIALOG)
@refusals
def dialog_step(ctx: Context) -> None:
    ctx.sensitive = bool(ctx.dialog.data.get("anonymous"))
    step = ctx.dialog.step
    text = ctx.text.strip()  # for choosing and matching
    words = ctx.words  # what is kept: the member's own words, as typed
    if step in _QUESTIONS and ctx.hand_on(_QUESTIONS[step]):
        return  # free text or names: a bare command word (我的提案) is not an answer
    if step == "category":
        cats = categories(ctx.session, ctx.clock.now())
        choice = None
        m = re.fullmatch(r"第?(\d+)[.、个项]?", text)
        if m and 1 <= int(m.group(1)) <= len(cats):
            choice = cats[int(m.group(1)) - 1]
        else:
            hits = [c for c in cats if c in text or text in c] if text else []
            choice = hits[0] if len(hits) == 1 else None
        if choice is None and ctx.hand_on(_category_question(ctx)):
            return
        if choice is None:
            ctx.reply("没看懂选的是哪一类，请回复序号，例如：1\n" + _category_question(ctx))
            return
        ctx.advance(step, category=choice)
        _next_step(ctx, step)
    elif step == "title":
        if len(words) < 2 or len(words) > 40:
            ctx.reply("标题请写2到40个字，一句话说清是什么事，例如：增设职工停车位")
            return
        ctx.advance(step, title=words)
        _next_step(ctx, step)
    elif step == "situation":
        if len(words) < 5:
            ctx.reply("请再多写几句现状和理由（至少5个字），这样部门才好办理。")
            return
        ctx.advance(step, situation=words[:4000])
        _next_step(ctx, step)
    elif step == "measures":
        if len(words) < 2:
            ctx.reply("请写出您建议的具体措施，例如：在北门空地划设50个停车位")
            return
        ctx.advance(step, measures=words[:4000])
        _next_step(ctx, step)
    elif step == "department":
        ctx.advance(step, department="" if text.lower() in SKIP else words[:50])
        _next_step(ctx, step)
    elif step == "cosigners":
        if text.lower() in SKIP:
            ctx.advance(step, cosigners=[], cosigner_names=[])
            _next_step(ctx, step)
            return
        ids, names, problems = _resolve_cosigners(ctx, text)
        if problems:
            ctx.reply("；".join(problems) + "。\n请重新写附议人（姓名或工号，逗号分开），或回复“跳过”。")
            return
        ctx.advance(step, cosigners=ids, cosigner_names=names)
        _next_step(ctx, step)
    elif step == "preview":
        if text in ("确认", "确定", "提交", "确认提交", "是", "好", "好的", "对"):
            _confirm(ctx)
        elif text.startswith("修改") or text in ("改", "重写"):
            _ask_edit(ctx)
        elif not ctx.hand_on("请回复“确认”提交，“修改”更改内容，或“取消”放弃。"):
            ctx.reply("请回复“确认”提交，“修改”更改内容，或“取消”放弃。")
    elif step == "edit":
        n = re.search(r"\d", text)
        count = _field_count(ctx)
        if not n or not 1 <= int(n.group()) <= count:
            _ask_edit(ctx)
            return
        field = FIELDS[int(n.group()) - 1][0]
        ctx.advance(field, editing=True)
        ctx.reply(_category_question(ctx) if field == "category" else _QUESTIONS[field].split("：", 1)[-1])


def _field_count(ctx: Context) -> int:
    d = ctx.dialog.data
    return len(FIELDS) if d.get("mode") == "proposal" and d.get("need", 1) > 0 else len(FIELDS) - 1


def _ask_edit(ctx: Context) -> None:
    count = _field_count(ctx)
    ctx.advance("edit")
    ctx.reply(
        "要修改哪一项？回复序号：\n" + "\n".join(f"{i}. {FIELDS[i - 1][1]}" for i in range(1, count + 1))
    )


def _resolve_cosigners(ctx: Context, text: str) -> tuple[list[int], list[str], list[str]]:
    tokens = [t for t in re.split(r"[,;，、\s]+", text) if t]
    ids: list[int] = []
    names: list[str] = []
    problems: list[str] = []
    for tok in tokens:
        found = list(
            ctx.session.scalars(
                select(Member).where(
                    Member.active.is_(True), (Member.name == tok) | (Member.employee_no == tok)
                )
            )
        )
        if not found:
            problems.append(f"没有找到“{tok}”")
        elif len(found) > 1:
            problems.append(f"有{len(found)}位叫“{tok}”的会员，请改写工号")
        elif found[0].id == ctx.member.id:
            problems.append("提案人不能附议自己的提案")
        elif not found[0].is_delegate:  # co-signers are delegates, whoever may submit
            problems.append(f"{found[0].name}不是职工代表，不能附议")
        elif found[0].id not in ids:
            ids.append(found[0].id)
            names.append(found[0].name)
    return ids, names, problems


def _preview(ctx: Context) -> None:
    d = ctx.dialog.data
    what = "匿名意见" if d.get("anonymous") else LONG_KIND[d["mode"]]
    lines = [
        f"类别：{d['category']}",
        f"标题：{d['title']}",
        f"现状和理由：{d['situation']}",
        f"建议措施：{d['measures']}",
        f"建议承办部门：{d.get('department') or '未指定'}",
    ]
    if d["mode"] == "proposal" and d.get("need", 1) > 0:
        lines.append(f"附议人：{'、'.join(d.get('cosigner_names') or []) or '提交后再征集'}")
    if d.get("anonymous"):
        lines.append("（匿名提交，不会显示您的姓名）")
    lines.append("回复“确认”提交，“修改”更改，“取消”放弃。")
    ctx.card(
        f"请核对您的{what}",
        lines,
        [
            Button("确认提交", {"do": "proposal_confirm"}),
            Button("修改", {"do": "proposal_edit"}, "default"),
            Button("取消", {"do": "proposal_cancel"}, "danger"),
        ],
    )


def _load_dialog(ctx: Context) -> bool:
    dialog = active_dialog(ctx.session, ctx.msg)
    if dialog is None or dialog.name != DIALOG or dialog.step != "preview":
        ctx.reply("这份内容已经处理过或已超时，请重新发送“提案”或“提个建议”。")
        return False
    ctx.dialog = dialog
    ctx.sensitive = bool(dialog.data.get("anonymous"))
    return True


@router.action("proposal_confirm")
@refusals
def confirm_button(ctx: Context) -> None:
    if _load_dialog(ctx):
        _confirm(ctx)


@router.action("proposal_edit")
def edit_button(ctx: Context) -> None:
    if _load_dialog(ctx):
        _ask_edit(ctx)


@router.action("proposal_cancel")
def cancel_button(ctx: Context) -> None:
    if _load_dialog(ctx):
        ctx.end_dialog()
        ctx.reply("好的，已取消，内容没有提交。")


def _confirm(ctx: Context) -> None:
    d = dict(ctx.dialog.data)
    bot, s, now = ctx.bot, ctx.session, ctx.clock.now()
    congress = s.get(Congress, d.get("congress_id") or 0)
    mode = d["mode"]
    if mode == "proposal" and (congress is None or not congress.window_open(now)):
        mode = "suggestion"  # the window closed while they were writing
    p = submit(
        s,
        member=ctx.member,
        kind=mode,
        category=d["category"],
        title=d["title"],
        situation=d["situation"],
        measures=d["measures"],
        suggested_department=d.get("department") or "",
        anonymous=bool(d.get("anonymous")),
        congress=congress,
        secret=ctx.settings.SECRET_KEY,
        now=now,
        tz=ctx.clock.tz,
    )
    ctx.end_dialog()
    if p.anonymous:
        _notify_reviewers(
            bot,
            s,
            p,
            p.events[-1],
            f"新的匿名意见：{p.number}《{p.title}》。答复请发送：答复 {p.number} 内容",
        )
        _unlink_anonymous_dialog(ctx, datetime.fromisoformat(d["started_at"]))
        ctx.reply(
            "已匿名收到您的意见，谢谢！工会和部门都看不到提交人；答复出来后我会私信告诉您。\n"
            "想查看进度可以发送“我的提案”。"
        )
        return
    if p.kind == "suggestion":
        ev = p.events[-1]
        _notify_reviewers(
            bot, s, p, ev, f"新的合理化建议：{p.number}《{p.title}》。答复请发送：答复 {p.number} 内容"
        )
        ctx.reply(
            f"已收到您的合理化建议，编号 {p.number}，标题“{p.title}”。\n"
            f"工会将转交相关部门，答复后会通知您。随时发送“提案 {p.number}”查看进度。"
        )
        return
    need = congress.cosigners_required
    for mid in d.get("cosigners") or []:
        member = s.get(Member, mid)
        if member is None:
            continue
        row = CoSign(proposal_id=p.id, member_id=mid, role="cosigner", status="invited", at=now)
        p.cosigns.append(row)
        s.flush()
        ctx.notify(
            member,
            Card(
                f"{ctx.member.name}请您附议提案 {p.number}",
                [
                    f"标题：{p.title}",
                    f"类别：{p.category}",
                    f"建议措施：{p.measures[:200]}",
                    f"同意请回复“附议 {p.number}”，不同意请回复“不附议 {p.number}”。",
                    f"征集截止：{ctx.clock.fmt(congress.collect_end)}",
                ],
                [
                    Button("附议", {"do": "proposal_cosign", "id": p.id}),
                    Button("不附议", {"do": "proposal_uncosign", "id": p.id}, "default"),
                ],
            ),
            f"proposal:{p.id}:invite:{mid}",
        )
    if need <= 0:
        ev = transition(s, p, "under_review", ctx.member, "无需附议，进入审查", at=now)
        _notify_reviewers(bot, s, p, ev, f"新提案待审查：{p.number}《{p.title}》。发送“待审提案”查看。")
        ctx.reply(f"提案已提交，编号 {p.number}，已进入提案委员会审查。发送“提案 {p.number}”查看进度。")
        return
    transition(s, p, "cosigning", None, f"征集附议，需{need}位职工代表", at=now)
    invited = "、".join(d.get("cosigner_names") or [])
    ctx.reply(
        f"提案已提交，编号 {p.number}，标题“{p.title}”。\n"
        f"还需要 {need} 位职工代表附议，征集截止 {ctx.clock.fmt(congress.collect_end)}。"
        + (f"\n已请 {invited} 附议，他们确认后我会告诉您。" if invited else "")
        + f"\n其他代表可以发送“附议 {p.number}”。截止时附议不足将转为合理化建议。"
    )


# ============================================================================================== co-signing
@router.handler(patterns=(rf"^附议\s*{NUM}",), group_ok=False)
@refusals
def cosign(ctx: Context) -> None:
    """附议 2027-012：附议一件提案"""
    p = _get(ctx)
    if p is not None:
        do_cosign(ctx, p)


@router.action("proposal_cosign")
@refusals
def cosign_button(ctx: Context) -> None:
    p = _proposal_by_id(ctx)
    if p is not None:
        do_cosign(ctx, p)


@router.handler("附议", "我支持", "我附议", group_ok=False)
def cosign_list(ctx: Context) -> None:
    """附议：查看正在征集附议的提案"""
    now = ctx.clock.now()
    rows = list(
        ctx.session.scalars(
            select(Proposal)
            .join(Congress, Proposal.congress_id == Congress.id)
            .where(
                Proposal.kind == "proposal",
                Proposal.status.in_(("cosigning", "under_review")),
                Congress.collect_end >= now,
            )
            .order_by(Proposal.seq)
        )
    )
    if not rows:
        ctx.reply("现在没有正在征集附议的提案。")
        return
    # "我支持小李那个停车场的提案": put the ones whose title or proposer shares words with the sentence first
    words = re.sub(r"提案|那个|这个|的|我|支持|附议|一下", " ", ctx.args)
    grams = {w[i : i + 2] for w in words.split() for i in range(len(w) - 1)}

    def score(p: Proposal) -> int:
        hay = p.title + (p.proposer.name if p.proposer else "")
        return sum(g in hay for g in grams)

    best = max((score(p) for p in rows), default=0)
    if best:
        rows = [p for p in rows if score(p) == best]
    lines = [f"{p.number} {p.title}（{p.proposer.name if p.proposer else ''}提，已附议{signed_count(ctx.session, p)}人）"
             for p in rows[:30]]  # fmt: skip
    ctx.reply(
        ("您说的可能是：\n" if best else "正在征集附议的提案：\n")
        + "\n".join(lines)
        + "\n要附议请发送“附议 编号”，例如：附议 "
        + rows[0].number
    )


def do_cosign(ctx: Context, p: Proposal) -> None:
    s, now, me = ctx.session, ctx.clock.now(), ctx.member
    congress = p.congress
    if p.kind != "proposal" or congress is None:
        ctx.reply(f"{p.number} 是合理化建议，不需要附议。")
        return
    if p.status not in ("submitted", "cosigning", "under_review"):
        ctx.reply(f"{p.number} 当前是“{p.status_label}”，已不能附议。")
        return
    if not congress.window_open(now):
        ctx.reply(f"{congress.name}提案征集已于 {ctx.clock.fmt(congress.collect_end)} 截止，不能再附议了。")
        return
    if not me.is_delegate:  # even when everyone may submit, co-signers are delegates
        ctx.reply("只有职工代表可以附议提案。如果您也关心这件事，可以发送“提个建议”提交合理化建议。")
        return
    if is_proposer(p, me):
        ctx.reply("您是这件提案的提案人，不需要附议。")
        return
    row = next((c for c in p.cosigns if c.member_id == me.id), None)
    if row is not None and row.status == "signed":
        ctx.reply(f"您已经附议过 {p.number} 了。")
        return
    if row is None:
        row = CoSign(proposal_id=p.id, member_id=me.id, role="cosigner", status="signed", at=now)
        p.cosigns.append(row)
    else:
        row.status, row.at = "signed", now
    s.flush()
    count = signed_count(s, p)
    ev = add_note(s, p, me, f"{me.name}附议（{count}/{congress.cosigners_required}）", now)
    notify_people(
        ctx.bot, s, p, ev, f"{me.name}附议了您的提案 {p.number}《{p.title}》，目前{count}人附议。", skip=me
    )
    ctx.reply(f"已附议 {p.number}《{p.title}》，谢谢！目前{count}人附议。如需撤回请发送“不附议 {p.number}”。")
    to_review_if_enough(ctx.bot, s, p, now)


def to_review_if_enough(bot, s, p: Proposal, now: datetime) -> bool:
    """A collecting proposal with enough co-signers moves on to review (after a co-sign or a merge)."""
    count = signed_count(s, p)
    if (
        p.status not in ("submitted", "cosigning")
        or p.congress is None
        or count < p.congress.cosigners_required
    ):
        return False
    try:
        with s.begin_nested():
            if p.status == "submitted":
                transition(s, p, "cosigning", None, "征集附议", at=now)
            ev = transition(s, p, "under_review", None, f"附议人数已满{count}人，进入审查", at=now)
            notify_people(bot, s, p, ev, f"您的提案 {p.number} 附议人数已够，已进入提案委员会审查。")
            _notify_reviewers(bot, s, p, ev, f"新提案待审查：{p.number}《{p.title}》。发送“待审提案”查看。")
    except TransitionError:
        return False  # a co-signer writing at the same moment moved it first; the co-sign itself stands
    return True


@router.handler(patterns=(rf"^(不附议|不同意附议|撤回附议)\s*{NUM}",), group_ok=False)
@refusals
def uncosign(ctx: Context) -> None:
    """不附议 2027-012：不附议或撤回附议"""
    p = _get(ctx)
    if p is not None:
        do_uncosign(ctx, p)


@router.action("proposal_uncosign")
@refusals
def uncosign_button(ctx: Context) -> None:
    p = _proposal_by_id(ctx)
    if p is not None:
        do_uncosign(ctx, p)


def do_uncosign(ctx: Context, p: Proposal) -> None:
    s, now, me = ctx.session, ctx.clock.now(), ctx.member
    row = next((c for c in p.cosigns if c.member_id == me.id and c.role == "cosigner"), None)
    if row is None:
        ctx.reply(f"您没有被邀请附议 {p.number}，也没有附议过，不需要操作。")
        return
    if row.status == "declined":
        ctx.reply(f"您已经表示不附议 {p.number} 了。")
        return
    if row.status == "signed" and p.status not in ("submitted", "cosigning"):
        ctx.reply(f"{p.number} 已进入“{p.status_label}”，附议不能撤回了。有意见可以联系提案委员会。")
        return
    was = row.status
    row.status, row.at = "declined", now
    s.flush()
    ev = add_note(s, p, me, f"{me.name}{'撤回附议' if was == 'signed' else '不附议'}", now)
    notify_people(
        ctx.bot, s, p, ev, f"{me.name}{'撤回了对' if was == 'signed' else '不附议'}您的提案 {p.number}"
        f"{'的附议' if was == 'signed' else ''}。目前{signed_count(s, p)}人附议。", skip=me,
    )  # fmt: skip
    ctx.reply(f"好的，已记录您不附议 {p.number}，并告知提案人。")


def close_cosign_window(bot, now: datetime | None = None) -> int:
    """Job: proposals whose congress window has ended move to review, or become suggestions if short of
    co-signers (the proposer is told why). Returns how many were converted."""
    now = now or bot.clock.now()
    converted = 0
    with bot.db.transaction() as s:
        rows = list(
            s.scalars(
                select(Proposal)
                .join(Congress, Proposal.congress_id == Congress.id)
                .where(Proposal.status.in_(("submitted", "cosigning")), Congress.collect_end < now)
                .order_by(Proposal.id)
            )
        )
        for p in rows:
            need, count = p.congress.cosigners_required, signed_count(s, p)
            if count >= need:
                if p.status == "submitted":
                    transition(s, p, "cosigning", None, "征集附议", at=now)
                ev = transition(s, p, "under_review", None, f"征集截止，附议{count}人，进入审查", at=now)
                notify_people(bot, s, p, ev, f"您的提案 {p.number} 已进入提案委员会审查。")
                _notify_reviewers(bot, s, p, ev, f"新提案待审查：{p.number}《{p.title}》。")
                continue
            reason = f"征集截止时附议人数{count}人，不足{need}人"
            ev = transition(s, p, "received", None, f"{reason}，转为合理化建议", at=now)
            converted += 1
            notify_people(
                bot, s, p, ev,
                f"您的提案 {p.number}《{p.title}》{reason}，按规定不能作为正式提案，已转为合理化建议，"
                "工会仍会转交相关部门答复。",
            )  # fmt: skip
    return converted


# ============================================================================================== viewing
def _mine(ctx: Context) -> list[Proposal]:
    s, me = ctx.session, ctx.member
    ids = set(s.scalars(select(Proposal.id).where(Proposal.proposer_id == me.id)))
    ids |= set(
        s.scalars(
            select(CoSign.proposal_id).where(
                CoSign.member_id == me.id, CoSign.status.in_(("signed", "invited"))
            )
        )
    )
    ids |= set(anonymous_ids_of(s, ctx.settings.SECRET_KEY, me))
    if not ids:
        return []
    return list(s.scalars(select(Proposal).where(Proposal.id.in_(ids)).order_by(Proposal.id)))


@router.handler(
    "我的提案", "我的建议", "我提的", "我的意见", "提案进度", "提案到哪", menu="我的提案 — 查看提案和建议的进度",
    group_ok=False,
)  # fmt: skip
def my_proposals(ctx: Context) -> None:
    """我的提案：查看我提交和附议的提案"""
    rows = _mine(ctx)
    if not rows:
        ctx.reply("您还没有提交或附议过提案和建议。发送“提案”或“提个建议”可以开始写。")
        return
    ctx.sensitive = any(p.anonymous for p in rows)
    lines = []
    for p in rows[-20:]:
        role = "匿名" if p.anonymous else ("提案人" if is_proposer(p, ctx.member) else "附议")
        lines.append(f"{p.number} {p.title} — {p.status_label}（{p.kind_label}，{role}）")
    ctx.reply(
        "您的提案和建议：\n" + "\n".join(lines) + f"\n查看详情请发送“提案 编号”，例如：提案 {rows[-1].number}"
    )


def can_view(ctx: Context, p: Proposal) -> bool:
    me = ctx.member
    if me is None:
        return False
    if ctx.can("proposals.review") or ctx.can("proposals.report"):
        return True
    if is_proposer(p, me) or any(c.member_id == me.id for c in p.cosigns):
        return True
    return is_contact(ctx, p) or _is_anon_sender(ctx, p)


def actor_name(p: Proposal, ev: ProposalEvent) -> str:
    if ev.actor is not None:
        return ev.actor.name
    return "匿名" if p.anonymous and ev.from_status is None else "系统"


def timeline_lines(clock, p: Proposal) -> list[str]:
    """The timeline as shown to anyone allowed to see it (anonymous senders are never named)."""
    lines = []
    for ev in p.events:
        change = ""
        if ev.to_status and ev.from_status != ev.to_status:
            change = f"{STATUS_LABELS.get(ev.to_status, ev.to_status)}"
        parts = [x for x in (change, ev.note) if x]
        lines.append(f"· {clock.fmt(ev.at)} {actor_name(p, ev)}：{'，'.join(parts)}")
    return lines


@router.handler(
    patterns=(rf"^(提案|建议|查看|查询)?\s*{NUM}\s*(进度|情况|详情|到哪.*|怎么样.*)?$",), group_ok=False
)
def show(ctx: Context) -> None:
    """提案 2027-012：查看一件提案的进度"""
    p = _get(ctx)
    if p is None:
        return
    if not can_view(ctx, p):
        ctx.reply(f"{p.number} 只有提案人、附议人、承办部门和提案委员会可以查看。")
        return
    if _is_anon_sender(ctx, p):
        _unlink_anonymous_dialog(ctx)
    ctx.sensitive = p.anonymous
    who = "匿名" if p.anonymous else "、".join(m.name for m in p.proposers())
    lines = [
        f"类别：{p.category}　状态：{p.status_label}",
        f"提出人：{who}",
    ]
    if p.kind == "proposal" or p.submitted_as == "proposal":
        signed = "、".join(m.name for m in p.signed_cosigners()) or "暂无"
        lines.append(f"附议人：{signed}")
    if p.lead_department:
        co = "、".join(d.department.name for d in p.co_departments)
        lines.append(f"承办：{p.lead_department.name}" + (f"（协办：{co}）" if co else ""))
        lines.append(f"答复期限：{_fmt_day(p.current_due)}")
    if p.decline_reason:
        lines.append(f"不立案理由：{p.decline_reason}")
    for r in p.replies:
        plan = f"（计划{_fmt_day(r.plan_date)}完成）" if r.plan_date else ""
        dept = r.department.name if r.department else "工会"
        lines.append(f"答复（{dept}，{r.kind_label}{plan}）：{r.text}")
    for e in p.evaluations:
        lines.append(f"评价：{RATINGS[e.rating]}" + (f"，{e.comment}" if e.comment else ""))
    lines.append("进度：")
    lines += timeline_lines(ctx.clock, p)
    buttons = []
    if p.status == "replied" and is_proposer(p, ctx.member):
        buttons = _eval_buttons(p)
        lines.append(f"请评价答复：回复“满意 {p.number}”“基本满意 {p.number}”或“不满意 {p.number} 原因”。")
    ctx.card(f"{p.kind_label} {p.number}《{p.title}》", lines, buttons)


# ============================================================================================== review
@router.handler("待审提案", "待审查提案", "提案审查", "审查提案", group_ok=False)
def pending_review(ctx: Context) -> None:
    """待审提案：提案委员会查看待审查的提案"""
    if not ctx.can("proposals.review"):
        ctx.reply("只有提案委员会委员可以审查提案。查看自己的提案请发送“我的提案”。")
        return
    rows = list(
        ctx.session.scalars(select(Proposal).where(Proposal.status == "under_review").order_by(Proposal.seq))
    )
    cos = list(
        ctx.session.scalars(select(Proposal).where(Proposal.status == "cosigning").order_by(Proposal.seq))
    )
    if not rows:
        ctx.reply("目前没有待审查的提案。" + (f"还有{len(cos)}件在征集附议。" if cos else ""))
        return
    lines = [
        f"{p.number} [{p.category}] {p.title}（建议承办：{p.suggested_department or '未指定'}）" for p in rows
    ]
    ctx.reply(
        f"待审查提案 {len(rows)} 件：\n" + "\n".join(lines[:40]) + "\n"
        "立案：立案 编号 承办部门 [协办 部门] [期限 日期]\n不立案：不立案 编号 理由\n合并：合并 编号 到 编号"
    )


def _need_review(ctx: Context) -> bool:
    if not ctx.can("proposals.review"):
        ctx.reply("只有提案委员会委员可以审查提案。查看自己的提案请发送“我的提案”。")
        return False
    return True


@router.handler(patterns=(rf"^立案\s*{NUM}",), group_ok=False)
@refusals
def accept(ctx: Context) -> None:
    """立案 2027-012 总务处 [协办 保卫处] [期限 12月31日]：立案并交办"""
    if not _need_review(ctx):
        return
    p = _get(ctx)
    if p is None:
        return
    rest = re.sub(rf"^立案\s*{NUM}", "", ctx.text).strip()
    due_text = ""
    m = re.search(r"(期限|截止|限期)\s*(.+)$", rest)
    if m:
        due_text, rest = m.group(2), rest[: m.start()].strip()
    co_names: list[str] = []
    m = re.search(r"协办\s*(.*)$", rest)
    if m:
        co_names = [x for x in re.split(r"[,;，、\s]+", m.group(1)) if x]
        rest = rest[: m.start()].strip()
    lead_name = re.sub(r"^(牵头|承办|主办)[:：]?\s*", "", rest).strip(" ,")
    if not lead_name and p.suggested_department:
        lead_name = p.suggested_department  # 立案 2027-012 alone: the department the proposer suggested
    lead = department_by_name(ctx.session, lead_name)
    if lead is None:
        ctx.reply(
            f"没有找到承办部门“{lead_name or '（未填写）'}”。请写部门全称，例如：立案 {p.number} 总务处 协办 保卫处 期限 12月31日"
        )
        return
    co = []
    for name in co_names:
        d = department_by_name(ctx.session, name)
        if d is None:
            ctx.reply(f"没有找到协办部门“{name}”，请检查部门名称后重新发送。")
            return
        if d.id != lead.id and d not in co:
            co.append(d)
    today = ctx.clock.today()
    if due_text:
        due = parse_date(due_text, today)
        if due is None or due < today:
            ctx.reply("没看懂期限，请写成“期限 12月31日”或“期限 2027-12-31”（不能早于今天）。")
            return
    else:
        due = today + timedelta(days=p.congress.reply_days if p.congress else 30)
    do_accept(ctx.bot, ctx.session, p, lead, co, due, ctx.member, ctx.clock.now())
    ctx.reply(
        f"{p.number} 已立案，牵头承办：{lead.name}"
        + (f"，协办：{'、'.join(d.name for d in co)}" if co else "")
        + f"，答复期限 {_fmt_day(due)}。已通知提案人和承办部门。"
    )


def do_accept(bot, s, p: Proposal, lead, co, due: date, actor: Member | None, now: datetime) -> ProposalEvent:
    if p.status != "under_review":
        transition(s, p, "accepted", actor)  # raises with the clear message
    p.lead_department_id = lead.id
    p.lead_department = lead
    p.co_departments = [ProposalDepartment(department_id=d.id, department=d) for d in co]
    p.due_date = due
    s.flush()
    depts = lead.name + (f"（协办：{'、'.join(d.name for d in co)}）" if co else "")
    ev = transition(s, p, "accepted", actor, f"立案，交{depts}办理，期限{_fmt_day(due)}", at=now)
    notify_people(
        bot, s, p, ev, f"您的提案 {p.number}《{p.title}》已立案，由{depts}承办，答复期限 {_fmt_day(due)}。",
        skip=actor,
    )  # fmt: skip
    notify_departments(
        bot, s, p, f"proposal:{p.id}:{ev.id}",
        Card(
            f"请承办提案 {p.number}《{p.title}》",
            [
                f"牵头承办：{depts}",
                f"类别：{p.category}",
                f"现状和理由：{p.situation[:500]}",
                f"建议措施：{p.measures[:500]}",
                f"答复期限：{_fmt_day(due)}",
                f"答复请发送：答复 {p.number} 已办结/办理中/暂不能办 + 内容",
            ],
        ),
    )  # fmt: skip
    return ev


@router.handler(patterns=(rf"^不立案\s*{NUM}",), group_ok=False)
@refusals
def decline(ctx: Context) -> None:
    """不立案 2027-012 理由：不予立案，转为建议"""
    if not _need_review(ctx):
        return
    p = _get(ctx)
    if p is None:
        return
    reason = re.sub(rf"^不立案\s*{NUM}", "", ctx.text).strip(" ,:;")
    reason = ctx.words_for(re.sub(r"^(理由|原因)[:：]?\s*", "", reason))
    if len(reason) < 2:
        ctx.reply(f"请写明不立案的理由，例如：不立案 {p.number} 属于个人诉求，已转相关科室处理")
        return
    try:
        do_decline(ctx.bot, ctx.session, p, reason, ctx.member, ctx.clock.now())
    except TransitionError as e:
        ctx.reply(str(e))
        return
    ctx.reply(f"{p.number} 不予立案，已转为合理化建议，并告知提案人理由。")


def do_decline(bot, s, p: Proposal, reason: str, actor, now) -> ProposalEvent:
    ev = transition(s, p, "declined", actor, f"不予立案：{reason}", at=now)
    p.decline_reason = reason
    notify_people(
        bot, s, p, ev,
        f"您的提案 {p.number}《{p.title}》经提案委员会审查不予立案，理由：{reason}。"
        "该内容已转为合理化建议，工会会转交相关部门参考答复。", skip=actor,
    )  # fmt: skip
    return ev


@router.handler(patterns=(rf"^合并\s*{NUM}",), group_ok=False)
@refusals
def merge(ctx: Context) -> None:
    """合并 2027-013 到 2027-012：合并重复提案"""
    if not _need_review(ctx):
        return
    nums = re.findall(NUM, ctx.text)
    if len(nums) != 2:
        ctx.reply("请写成：合并 2027-013 到 2027-012（把前一件合并到后一件）")
        return
    src, dst = find_by_number(ctx.session, nums[0]), find_by_number(ctx.session, nums[1])
    if src is None or dst is None:
        ctx.reply("没有找到这两个编号中的某一个，请检查后重新发送。")
        return
    try:
        do_merge(ctx.bot, ctx.session, src, dst, ctx.member, ctx.clock.now())
    except TransitionError as e:
        ctx.reply(str(e))
        return
    ctx.reply(f"已把 {src.number} 合并到 {dst.number}，两件的提案人都会收到后续进展。")


def do_merge(bot, s, src: Proposal, dst: Proposal, actor, now) -> ProposalEvent:
    if src.id == dst.id:
        raise TransitionError("不能把提案合并到它自己。")
    if dst.kind != "proposal" or dst.status not in ("under_review", "accepted", "cosigning"):
        raise TransitionError(f"{dst.number} 当前是“{dst.status_label}”，不能接收合并。")
    if src.status != "under_review":
        transition(s, src, "merged", actor)  # raises the clear message
    src.merged_into_id = dst.id
    for m in src.people():
        if any(c.member_id == m.id for c in dst.cosigns) or (dst.proposer_id == m.id):
            continue
        if is_proposer(src, m):  # every proposer is kept
            role = "proposer"
        elif m.is_delegate and m.active:  # a co-signer counts for the target only if they could co-sign it
            role = "cosigner"
        else:
            continue
        dst.cosigns.append(
            CoSign(proposal_id=dst.id, member_id=m.id, member=m, role=role, status="signed", at=now)
        )
    s.flush()
    ev = transition(s, src, "merged", actor, f"合并到 {dst.number}", at=now)
    add_note(s, dst, actor, f"合并了 {src.number}《{src.title}》", now)
    to_review_if_enough(bot, s, dst, now)
    notify_people(
        bot, s, src, ev, f"您的提案 {src.number} 与 {dst.number}《{dst.title}》内容相近，已合并办理，"
        f"您仍是提案人，后续进展会通知您。", skip=actor,
    )  # fmt: skip
    return ev


# ============================================================================================== replies
_REPLY_KIND = [
    ("cannot_now", ("暂不能办", "暂时不能办", "暂不能", "暂时无法", "无法办理", "不能办")),
    ("in_progress", ("办理中", "正在办理", "在办", "推进中")),
    ("done", ("已办结", "办结", "已完成", "已解决", "已落实", "完成")),
]


@router.handler(patterns=(rf"^答复\s*{NUM}",), group_ok=False)
@refusals
def reply_cmd(ctx: Context) -> None:
    """答复 2027-012 已办结 内容：承办部门答复提案"""
    p = _get(ctx)
    if p is None:
        return
    rest = re.sub(rf"^答复\s*{NUM}", "", ctx.text).strip(" ,:;")
    kind = None
    for k, words in _REPLY_KIND:
        for w in words:
            if rest.startswith(w) or (kind is None and w in rest[:10]):
                kind = k
                rest = rest.replace(w, "", 1).strip(" ,:;")
                break
        if kind:
            break
    if p.kind == "suggestion" and kind is None:
        kind = "done"
    if kind is None:
        ctx.reply(
            f"请写明办理结果：答复 {p.number} 已办结 / 办理中 / 暂不能办，后面写答复内容。\n"
            f"例如：答复 {p.number} 办理中 已完成选址，预计 2027-12-31 前完工"
        )
        return
    plan = None
    if kind == "in_progress":
        plan = parse_date(rest, ctx.clock.today())
        if plan is None:
            ctx.reply(
                f"“办理中”请写明计划和完成日期，例如：答复 {p.number} 办理中 已立项，预计 12月31日 前完成"
            )
            return
    if len(rest) < 2:
        ctx.reply(f"请写上答复内容，例如：答复 {p.number} 已办结 已在北门增设停车位50个")
        return
    try:
        do_reply(ctx, p, kind, ctx.words_for(rest), plan)
    except TransitionError as e:
        ctx.reply(str(e))


def replying_department(s, p: Proposal, member: Member | None):
    """The department `member` answers `p` for, as one of its contacts (chat and console alike): the lead
    department, else a co-handling one; for a suggestion, the department it named. None: not theirs."""
    mine = {d.id: d for d in departments_of_contact(s, member)} if member is not None else {}
    if p.kind == "suggestion":
        named = department_by_name(s, p.suggested_department) if p.suggested_department else None
        return named if named is not None and named.id in mine else None
    lead = p.lead_department
    if lead is not None and lead.id in mine:
        return lead
    return next((d for d in p.departments if d.id in mine), None)


def do_reply(ctx: Context, p: Proposal, kind: str, text: str, plan: date | None) -> None:
    s, me = ctx.session, ctx.member
    reviewer = ctx.can("proposals.review")
    dept = replying_department(s, p, me)
    if p.kind == "suggestion":
        if not reviewer and dept is None:
            ctx.reply("只有提案委员会和建议中指定的承办部门联系人可以答复这条建议。")
            return
    else:
        if dept is None and reviewer:
            dept = p.lead_department  # the committee records a reply on the department's behalf
        if dept is None:
            ctx.reply(f"{p.number} 不是交给您部门承办的，只有承办部门联系人可以答复。")
            return
    ctx.reply(record_reply(ctx.bot, s, p, dept, kind, text, plan, me, ctx.clock.now()))


def record_reply(bot, s, p: Proposal, dept, kind: str, text: str, plan: date | None, me, now) -> str:
    """Record a department's reply (chat or console) and tell the people; returns the confirmation text."""
    author_id = me.id if me is not None else None
    if p.kind == "suggestion":
        ev = transition(s, p, "answered", me, f"答复（{REPLY_KINDS[kind]}）", at=now)
        s.add(Reply(proposal_id=p.id, department_id=dept.id if dept else None, author_id=author_id, kind=kind,
                    text=text[:4000], plan_date=plan, round=1, at=now))  # fmt: skip
        notify_people(
            bot, s, p, ev, f"您的建议 {p.number}《{p.title}》有答复了（{REPLY_KINDS[kind]}）：{text}\n"
            f"满意请回复“满意 {p.number}”或“谢谢”；{close_after_days(p)}天后自动办结。",
        )  # fmt: skip
        return f"已答复 {p.number}，并通知了提出人。"
    lead = p.lead_department
    if dept is None:
        raise TransitionError(f"{p.number} 还没有承办部门，不能答复。")
    if p.status not in AWAITING_REPLY:
        transition(s, p, "replied", me)  # raises with the clear message
    rnd = current_round(p)
    s.add(Reply(proposal_id=p.id, department_id=dept.id, author_id=author_id, kind=kind, text=text[:4000],
                plan_date=plan, round=rnd, at=now))  # fmt: skip
    if lead is not None and dept.id != lead.id:
        ev = add_note(s, p, me, f"协办部门{dept.name}答复（{REPLY_KINDS[kind]}）", now)
        notify_people(bot, s, p, ev, f"提案 {p.number} 协办部门{dept.name}的答复：{text}", skip=me)
        return f"已记录{dept.name}的协办答复。提案状态以牵头部门{lead.name}的答复为准。"
    plan_txt = f"（计划{_fmt_day(plan)}完成）" if plan else ""
    ev = transition(s, p, "replied", me, f"{dept.name}答复：{REPLY_KINDS[kind]}{plan_txt}", at=now)
    s.flush()
    notify_people(
        bot, s, p, ev,
        Card(
            f"您的提案 {p.number} 有答复了",
            [
                f"《{p.title}》",
                f"承办部门：{dept.name}",
                f"办理结果：{REPLY_KINDS[kind]}{plan_txt}",
                f"答复：{text}",
                f"请在{close_after_days(p)}天内评价（逾期按办结处理）：回复“满意 {p.number}”"
                f"“基本满意 {p.number}”或“不满意 {p.number} 原因”。",
            ],
            _eval_buttons(p),
        ),
        skip=me,
    )  # fmt: skip
    return f"已答复 {p.number}（{REPLY_KINDS[kind]}），并通知了提案人。"


def _eval_buttons(p: Proposal) -> list[Button]:
    return [
        Button("满意", {"do": "proposal_eval", "id": p.id, "rating": "satisfied"}),
        Button("基本满意", {"do": "proposal_eval", "id": p.id, "rating": "partly"}, "default"),
        Button("不满意", {"do": "proposal_eval", "id": p.id, "rating": "unsatisfied"}, "danger"),
    ]


# ============================================================================================== evaluation
_RATING_WORDS = [("partly", "基本满意"), ("unsatisfied", "不满意"), ("satisfied", "满意")]


@router.handler(
    "对答复满意", "答复满意", "答复不满意", "答复基本满意", "不满意", "基本满意",
    exact=("满意",),
    patterns=(rf"^(基本满意|不满意|满意)\s*{NUM}", rf"{NUM}\s*(基本满意|不满意|满意)"),
    group_ok=False,
)  # fmt: skip
@refusals
def evaluate(ctx: Context) -> None:
    """满意 2027-012：评价答复（满意 / 基本满意 / 不满意）"""
    text = ctx.text
    word = re.search(r"基本满意|不满意|满意", text)
    if word is None:  # a button-less "评价" never gets here, but be safe
        ctx.reply("请回复“满意 编号”“基本满意 编号”或“不满意 编号 原因”。")
        return
    rating = {w: r for r, w in _RATING_WORDS}[word.group()]
    p = find_by_number(ctx.session, text) if re.search(NUM, text) else None
    if p is None and re.search(NUM, text):
        ctx.reply("没有找到这个编号的提案，请检查后再发，例如：满意 2027-012")
        return
    if p is None:
        waiting = _awaiting_feedback(ctx)
        if len(waiting) != 1:
            if not waiting:
                ctx.reply("您目前没有等待评价的提案答复。发送“我的提案”查看进度。")
            else:
                ctx.sensitive = any(x.anonymous for x in waiting)
                nums = "、".join(x.number for x in waiting)
                ctx.reply(
                    f"您有{len(waiting)}件提案或建议等待评价（{nums}），请带上编号，例如：满意 {waiting[0].number}"
                )
            return
        p = waiting[0]
    comment = re.sub(NUM, "", text[: word.start()] + text[word.end() :], count=1)
    comment = re.sub(r"^\s*(对答复|答复|对)", "", comment).strip(" ,:;.")
    do_evaluate(ctx, p, rating, ctx.words_for(comment))


@router.action("proposal_eval")
@refusals
def evaluate_button(ctx: Context) -> None:
    p = _proposal_by_id(ctx)
    rating = str((ctx.msg.action or {}).get("rating", ""))
    if p is not None and rating in RATINGS:
        do_evaluate(ctx, p, rating, "")


def _sent_by_me(ctx: Context, p: Proposal) -> bool:
    return is_proposer(p, ctx.member) or _is_anon_sender(ctx, p)


def _awaiting_feedback(ctx: Context) -> list[Proposal]:
    """My replied proposals and my answered suggestions (anonymous ones included)."""
    return [
        x
        for x in _mine(ctx)
        if (x.status == "replied" and is_proposer(x, ctx.member))
        or (x.status == "answered" and _sent_by_me(ctx, x))
    ]


def close_answered(ctx: Context, p: Proposal) -> None:
    """The sender is content with the answer to their suggestion (满意 / 谢谢): it is closed."""
    if not _sent_by_me(ctx, p):
        ctx.reply(f"只有提出人可以确认 {p.number} 的答复。")
        return
    if p.anonymous:  # the closing event names nobody, and the message log forgets the number
        _unlink_anonymous_dialog(ctx)
    ev = transition(ctx.session, p, "closed", None if p.anonymous else ctx.member, "提出人对答复满意，办结",
                    at=ctx.clock.now())  # fmt: skip
    notify_people(ctx.bot, ctx.session, p, ev, f"建议 {p.number}《{p.title}》的提出人对答复满意，已办结。",
                  skip=ctx.member)  # fmt: skip
    ctx.reply(f"谢谢您的反馈！建议 {p.number} 已办结。")


def do_evaluate(ctx: Context, p: Proposal, rating: str, comment: str) -> None:
    s, bot, now, me = ctx.session, ctx.bot, ctx.clock.now(), ctx.member
    if p.kind == "suggestion" and p.status == "answered":
        if rating == "unsatisfied":
            if _is_anon_sender(ctx, p):
                _unlink_anonymous_dialog(ctx)
            ctx.reply(
                f"建议的答复不再退回重办。如仍有意见，可以发送“提个建议”再提一条，或联系工会办公室。{p.number} 保持“已答复”。"
            )
        else:
            close_answered(ctx, p)
        return
    if not is_proposer(p, me):
        ctx.reply(f"只有提案人可以评价 {p.number} 的答复。")
        return
    if p.status != "replied":
        ctx.reply(f"{p.number} 当前是“{p.status_label}”，现在不能评价。")
        return
    rnd = current_round(p)
    s.add(
        Evaluation(
            proposal_id=p.id, member_id=me.id, rating=rating, comment=comment[:2000], round=rnd, at=now
        )
    )
    label = RATINGS[rating] + (f"：{comment}" if comment else "")
    transition(s, p, "evaluated", me, f"评价{label}", at=now)  # told together with what follows
    if rating == "unsatisfied" and not p.rehandled:
        days = p.congress.rehandle_days if p.congress else 15
        p.rehandle_due_date = ctx.clock.today() + timedelta(days=days)
        ev2 = transition(
            s,
            p,
            "rehandling",
            me,
            f"不满意，退回承办部门重新办理，期限{_fmt_day(p.rehandle_due_date)}",
            at=now,
        )
        notify_departments(
            bot, s, p, f"proposal:{p.id}:{ev2.id}",
            f"提案 {p.number}《{p.title}》的提案人对答复不满意" + (f"（{comment}）" if comment else "")
            + f"，请重新办理并于 {_fmt_day(p.rehandle_due_date)} 前再次答复：答复 {p.number} 已办结/办理中/暂不能办 + 内容。",
            lead_only=True,
        )  # fmt: skip
        notify_people(
            bot, s, p, ev2, f"提案 {p.number} 的答复被评价为“{label}”，已退回承办部门重新办理。", skip=me
        )
        ctx.reply(
            f"已记录您的评价“{label}”。{p.number} 已退回{p.lead_department.name}重新办理"
            f"（只能退回一次），期限 {_fmt_day(p.rehandle_due_date)}，再次答复后会通知您。"
        )
        return
    ev3 = transition(s, p, "closed", None, "评价后办结", at=now)
    notify_people(bot, s, p, ev3, f"提案 {p.number} 的答复被评价为“{label}”，已办结。", skip=me)
    notify_departments(bot, s, p, f"proposal:{p.id}:{ev3.id}", f"提案 {p.number} 已办结，提案人评价：{label}。",
                       lead_only=True)  # fmt: skip
    extra = "（已重新办理过一次，按规定办结）" if rating == "unsatisfied" else ""
    ctx.reply(f"谢谢您的评价“{label}”！提案 {p.number} 已办结{extra}。")


THANKS = ("谢谢", "谢谢你", "谢谢了", "多谢", "感谢", "非常感谢", "好的谢谢", "收到谢谢")


@router.handler(exact=THANKS, public=True, priority=6)  # above small talk: a thank-you may close a suggestion
@refusals
def thanks(ctx: Context) -> None:
    """谢谢：对建议的答复表示满意（别的时候不用回答）"""
    if ctx.member is None or ctx.msg.is_group:
        return
    waiting = [x for x in _awaiting_feedback(ctx) if x.status == "answered"]
    if len(waiting) == 1:
        close_answered(ctx, waiting[0])
    elif waiting:
        ctx.sensitive = any(x.anonymous for x in waiting)
        nums = "、".join(x.number for x in waiting)
        ctx.reply(
            f"不客气！您有{len(waiting)}条建议已答复（{nums}），满意请回复“满意 编号”，例如：满意 {waiting[0].number}"
        )


def close_unevaluated(bot, now: datetime | None = None) -> int:
    """Nightly job: a reply the proposer has not evaluated, and an answered suggestion, are closed N days later
    (Congress.close_after_days) and the proposer (or anonymous sender) is told. Returns how many closed."""
    now = now or bot.clock.now()
    today = now.astimezone(bot.clock.tz).date()
    closed = 0
    with bot.db.transaction() as s:
        rows = list(
            s.scalars(
                select(Proposal).where(Proposal.status.in_(("replied", "answered"))).order_by(Proposal.id)
            )
        )
        for p in rows:
            days, since = close_after_days(p), status_since(p)
            if since is None or (today - since.astimezone(bot.clock.tz).date()).days < days:
                continue
            try:
                with s.begin_nested():
                    if p.status == "replied":
                        ev = transition(s, p, "closed", None, f"答复后{days}天未评价，按规定办结", at=now)
                        notify_people(bot, s, p, ev, f"您的提案 {p.number}《{p.title}》答复已满{days}天未评价，"
                                      "按规定办结。如有意见请联系提案委员会。")  # fmt: skip
                        notify_departments(bot, s, p, f"proposal:{p.id}:{ev.id}",
                                           f"提案 {p.number} 答复后{days}天提案人未评价，已按规定办结。",
                                           lead_only=True)  # fmt: skip
                    else:
                        ev = transition(s, p, "closed", None, f"答复{days}天后办结", at=now)
                        notify_people(bot, s, p, ev, f"您的建议 {p.number}《{p.title}》已答复满{days}天，"
                                      "已办结。谢谢您的建议！")  # fmt: skip
            except TransitionError:
                continue  # someone evaluated it this very moment
            closed += 1
    return closed


# ============================================================================================== chasing
CHASE_BEFORE_DAYS = 3
CHASE_EVERY_DAYS = 3
ESCALATE_AFTER_DAYS = 14


def chase_proposals(bot, now: datetime | None = None) -> int:
    """Job (督办): remind the lead department's contacts N days before the due date and every M days after it;
    tell the chair about proposals more than K days late. Keys make a second run the same day send nothing."""
    now = now or bot.clock.now()
    today = now.astimezone(bot.clock.tz).date()
    sent = 0
    with bot.db.transaction() as s:
        rows = list(
            s.scalars(
                select(Proposal)
                .where(Proposal.status.in_(AWAITING_REPLY), Proposal.due_date.is_not(None))
                .order_by(Proposal.id)
            )
        )
        for p in rows:
            c = p.congress
            before = c.chase_before_days if c else CHASE_BEFORE_DAYS
            every = max(1, c.chase_every_days if c else CHASE_EVERY_DAYS)
            escalate = c.escalate_after_days if c else ESCALATE_AFTER_DAYS
            rnd = current_round(p)
            due = p.current_due
            if due is None:
                continue
            late = (today - due).days
            base = f"chase:{p.id}:r{rnd}"
            if -before <= late < 0:
                sent += notify_departments(
                    bot, s, p, f"{base}:before",
                    f"【督办提醒】提案 {p.number}《{p.title}》将于 {_fmt_day(due)} 到期，"
                    f"请按时答复：答复 {p.number} 已办结/办理中/暂不能办 + 内容。", lead_only=True,
                )  # fmt: skip
            elif late >= every:
                k = late // every
                sent += notify_departments(
                    bot, s, p, f"{base}:late{k}",
                    f"【督办】提案 {p.number}《{p.title}》已超过答复期限 {late} 天（期限 {_fmt_day(due)}），"
                    f"请尽快答复：答复 {p.number} 已办结/办理中/暂不能办 + 内容。", lead_only=True,
                )  # fmt: skip
            if late > escalate:
                dept = p.lead_department.name if p.lead_department else "承办部门"
                for m in chairs(s):
                    sent += bot.notify_member(
                        s, m,
                        Text(f"【督办】提案 {p.number}《{p.title}》由{dept}承办，已逾期 {late} 天未答复，请督办。"),
                        f"{base}:chair:{m.id}",
                    )  # fmt: skip
    return sent


# ============================================================================================== reporting in chat
PUBLIC_PAGE = 10


@router.handler(
    "提案公开", "公开提案", "提案公示", "立案提案", "提案办理情况", "提案答复情况", exact=("提案答复",),
    menu="提案公开 — 立案提案和部门答复",
)  # fmt: skip
def public(ctx: Context) -> None:
    """提案公开：立案提案和部门答复（可分享给全体会员）"""
    congress = current_congress(ctx.session, ctx.clock.now())
    items = public_list(ctx.session, congress.id if congress else None)
    if not items:
        ctx.reply("目前还没有立案的提案。提案立案、部门答复后会在这里公开，发送“提案公开”查看。")
        return
    pages = (len(items) + PUBLIC_PAGE - 1) // PUBLIC_PAGE
    m = re.search(r"\d+", ctx.args)
    page = min(max(int(m.group()), 1), pages) if m else 1
    head = f"{congress.name if congress else ''}立案提案共 {len(items)} 件"
    if pages > 1:
        head += f"（第{page}/{pages}页）"
    lines = []
    for it in items[(page - 1) * PUBLIC_PAGE : page * PUBLIC_PAGE]:
        state = "尚未答复"
        if it["replies"]:
            last = it["replies"][-1]
            state = f"{last['kind']}：{last['text'][:30]}" + ("…" if len(last["text"]) > 30 else "")
        lines.append(f"{it['number']} {it['title']}｜{it['department']}｜{state}")
    more = f"\n发送“提案公开 {page + 1}”看下一页。" if page < pages else ""
    ctx.reply(head + "：\n" + "\n".join(lines) + more)


@router.handler("提案统计", "提案报表", "提案汇总", group_ok=False)
def stats(ctx: Context) -> None:
    """提案统计：提案数量、按时答复率、满意率"""
    if not ctx.can("proposals.report"):
        ctx.reply("提案统计只对提案委员会和工会办公室开放。查看自己的提案请发送“我的提案”。")
        return
    r = report(ctx.session, ctx.clock.today(), tz=ctx.clock.tz)
    lines = [
        f"提案 {r['totals']['proposal']} 件，建议 {r['totals']['suggestion']} 件",
        "按状态：" + "，".join(f"{k} {v}" for k, v in r["by_status"].items()),
        "按类别：" + "，".join(f"{k} {v}" for k, v in r["by_category"].items()),
        f"按时答复率：{_pct(r['on_time_rate'])}",
        f"满意率（满意+基本满意）：{_pct(r['satisfaction_rate'])}",
    ]
    ctx.reply("\n".join(lines))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def can_report(member: Member) -> bool:
    return can(member.roles, "proposals.report")
