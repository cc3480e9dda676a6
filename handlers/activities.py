"""活动报名 in chat: list, details, sign up (text, button, group relay list), cancel, mine, organiser lists,
proxy sign-up by group leaders, check-in, creating an activity through a short dialog, and reminders.

The rules (capacity, duplicates, waitlist order) are enforced by models.activity; this module only talks.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.context import Context, active_dialog
from bot.message import Button, Card, Text
from bot.normalize import cn_to_int, find_date, normalize, parse_date
from handlers import router
from models.activity import (
    AUDIENCE_LABELS,
    MAX_QUESTIONS,
    STATUS_LABELS,
    Activity,
    Signup,
    active_signup,
    audience_members,
    cancel_activity,
    cancel_signup,
    check_in,
    check_signup,
    in_audience,
    open_activities,
    sign_up,
    signups_of,
    waitlist_position,
)
from models.member import Member
from models.messaging import Dialog, OutboxMessage

RELAY_SHOWN = 30  # relay lists longer than this are shortened with a count
WAIT_SHOWN = 10

# ---- parsing --------------------------------------------------------------------------------------------

_RELATIVES = {"父母": 2, "爸妈": 2}
_RELATIVE = (
    r"(爱人|老公|老婆|媳妇|丈夫|妻子|孩子|小孩|儿子|女儿|闺女|家属|家人|妈妈|爸爸|父亲|母亲|父母|爸妈|老伴)"
)
_COMPANION_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (
        re.compile(r"(?:带|加|携带|外加)\s*(\d+)\s*(?:个|位|名)?\s*(?:人|家属|家人|亲属|孩子|小孩)?"),
        lambda m: int(m[1]),
    ),
    (re.compile(r"(?<![\d])\+\s*(\d+)"), lambda m: max(int(m[1]) - 1, 0)),  # 接龙 "+2" = two people
    (re.compile(r"(\d+)\s*(?:个人|人)(?:去|参加|报名)"), lambda m: max(int(m[1]) - 1, 0)),
    (re.compile(r"我?(?:一|1)个人(?:去|参加)?"), lambda m: 0),
    (re.compile(r"我?(?:和|跟|带|带上)\s*((?:" + _RELATIVE[1:-1] + r"|[,和及与\s])+)"), None),
]


def parse_companions(text: str) -> tuple[int | None, str]:
    """How many companions the member brings (None: not said) and the text without that phrase."""
    for pat, count in _COMPANION_PATTERNS:
        m = pat.search(text)
        if not m:
            continue
        if count is None:
            items = [x for x in re.split(r"[,和及与\s]+", m[1]) if x]
            n = sum(_RELATIVES.get(x, 1) for x in items)
        else:
            n = count(m)
        return n, (text[: m.start()] + " " + text[m.end() :]).strip()
    return None, text


_FILLER = re.compile(
    r"我要报名|我想报名|我要参加|我想参加|报名名单|取消报名|未报名|代报名|帮我报名|帮我报|帮我取消|"
    r"还有位置吗?|还有名额吗?|还有位子吗?|几号出发|什么时候出发|截止到什么时候|什么时候截止|几点开始|"
    r"去不了了?|不去了|不参加了?|退掉|退报|不报了|报名情况|谁还没报|还有谁没报|签到|名单|导出|"
    r"算我一个|算我1个|我参加|取消|报名|参加|我报|报|活动|详情|比赛|谢谢|麻烦|请|一下|吧|了|呢|吗|啊|呀|哦|"
    r"有什么|有啥|搞啥|什么|帮我把|帮我|给我|1个|"
    r"临时排班|排班|有事|我们|我|的|[,.!?:;~'\"()\[\]<>]|\s+"
)


def _clean(text: str) -> str:
    text = _FILLER.sub(" ", text)
    text = re.sub(r"(?<=[\u4e00-\u9fa5])赛\b", "", text)
    return re.sub(r"\s+", "", text)


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def match_title(query: str, pool: list[Activity]) -> list[Activity]:
    """Activities whose title matches `query` loosely (羽毛球 ~ 2026年羽毛球比赛); the best ones only."""
    q = _clean(query)
    if not q:
        return []
    grams = _bigrams(q)
    scored: list[tuple[float, Activity]] = []
    for a in pool:
        title = re.sub(r"\s+", "", a.title)
        if q in title or (len(title) >= 2 and title in q):
            score = 1.0
        elif grams:
            score = len(grams & _bigrams(title)) / len(grams)
        else:
            score = 0.5 if q in title else 0.0
        if score >= 0.5:
            scored.append((score, a))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    return [a for score, a in scored if score == best]


_ID = re.compile(r"(?<![\d.:\-/+])(\d{1,7})(?![\d年月日:点.\-/]|个人|人|位|名)(?:\s*号)?")


# "我报1个" / "算我1个" / "1个人" count people (一个 -> 1个 after normalising); they never name activity 1.
_COUNT_PHRASE = re.compile(r"(?:我|也|就)?(?:报|算|来|加)\s*我?\s*1\s*个|1个人")


def parse_id(text: str) -> int | None:
    m = _ID.search(_COUNT_PHRASE.sub(" ", text))
    return int(m[1]) if m else None


# 第2个 / 第二个 is a position in a list; 2 / 2号 / 编号2 an activity's number. Normalising turns 第二个 into 2个,
# so the position is read from the message as typed. 第三届运动会 (no 个) is a title, not a position.
_ORDINAL = re.compile(r"第\s*([零〇一二两三四五六七八九十\d]{1,3})\s*(?:个|$)")


def ordinal(ctx: Context) -> int | None:
    m = _ORDINAL.search(unicodedata.normalize("NFKC", ctx.msg.typed))
    return cn_to_int(m[1]) if m else None


def by_position(ctx: Context, shown: list[Activity]) -> list[Activity] | None:
    """The readings of “第N个” (None: the message has none): the Nth of `shown` (the list the member is shown
    for this word, in its order) and activity number N. One reading is taken; two are asked about."""
    n = ordinal(ctx)
    if n is None:
        return None
    readings = [shown[n - 1]] if 1 <= n <= len(shown) else []
    by_id = ctx.session.get(Activity, n)
    if by_id is not None and by_id not in readings:
        readings.append(by_id)
    return readings


def _day_of(ctx: Context, text: str, pool: list[Activity]) -> tuple[date | None, str]:
    """The date a message names (周六, 下周三, 12月5日) and the text without it. A date that is part of a title
    (3.8 in “3.8节插花”) is not a date."""
    found = find_date(text, ctx.clock.today())
    if found.day is None or any(found.words in a.title for a in pool):
        return None, text
    return found.day, found.rest


def on_day(ctx: Context, pool: list[Activity], day: date) -> list[Activity]:
    return [a for a in pool if ctx.clock.local(a.starts_at).date() == day]


def resolve(ctx: Context, text: str, pool: list[Activity]) -> tuple[Activity | None, list[Activity]]:
    """The activity a message refers to: by number (any activity) or by title and date (within `pool`).

    Returns (activity, []) when clear, (None, candidates) when several match, (None, []) when none does.
    A date narrows the titles to that day (我想报名周六的羽毛球赛); when that day has none, the other days'
    matches come back as candidates to ask about, never as a guess.
    """
    day, rest = _day_of(ctx, text, pool)
    readings = by_position(ctx, pool) if day is None else None
    if readings is not None:
        return (readings[0], []) if len(readings) == 1 else (None, readings)
    n = parse_id(rest)
    if n is not None:
        a = ctx.session.get(Activity, n)
        if a is not None:
            return a, []
    if day is not None:
        that_day = on_day(ctx, pool, day)
        if not _clean(rest):
            return None, that_day
        found = match_title(rest, that_day)
        if len(found) == 1:
            return found[0], []
        return None, found or match_title(rest, pool)
    found = match_title(rest, pool)
    if len(found) == 1:
        return found[0], []
    return None, found


# ---- rendering --------------------------------------------------------------------------------------------


def _when(ctx: Context, a: Activity) -> str:
    text = ctx.clock.fmt(a.starts_at)
    if a.ends_at:
        same_day = ctx.clock.local(a.ends_at).date() == ctx.clock.local(a.starts_at).date()
        text += "–" + (ctx.clock.local(a.ends_at).strftime("%H:%M") if same_day else ctx.clock.fmt(a.ends_at))
    return text


def _count_line(a: Activity) -> str:
    if a.capacity is None:
        return f"已报名 {a.taken} 人（不限名额）"
    left = a.capacity - a.taken
    return f"已报名 {a.taken}/{a.capacity} 人，" + (f"还剩 {left} 个名额" if left > 0 else "名额已满")


def _audience_text(ctx: Context, a: Activity) -> str:
    return AUDIENCE_LABELS.get(a.audience_kind, a.audience_kind)


def detail_card(ctx: Context, a: Activity) -> Card:
    s = ctx.session
    waiting = len(signups_of(s, a.id, ("waitlisted",)))
    lines = [f"时间：{_when(ctx, a)}"]
    if a.place:
        lines.append(f"地点：{a.place}")
    lines.append(_count_line(a) + (f"，候补 {waiting} 人" if waiting else ""))
    lines.append(f"报名截止：{ctx.clock.fmt(a.deadline)}")
    if a.companions_max:
        lines.append(f"每人可带 {a.companions_max} 位家属（计入名额）")
    if a.cancel_cutoff_hours:
        lines.append(f"开始前 {a.cancel_cutoff_hours} 小时内不能取消")
    lines.append(f"对象：{_audience_text(ctx, a)}")
    if a.description:
        lines.append(a.description)
    buttons: list[Button] = []
    mine = active_signup(s, a.id, ctx.member.id) if ctx.member else None
    if a.status == "cancelled":
        lines.insert(0, "⚠️ 此活动已取消")
    elif mine is not None:
        label = STATUS_LABELS[mine.status]
        if mine.status == "waitlisted":
            label += f"第 {waitlist_position(s, mine)} 位"
        lines.append(f"您的状态：{label}" + (f"（带 {mine.companions} 人）" if mine.companions else ""))
        buttons.append(Button("取消报名", {"do": "cancel_signup", "activity": a.id}, "danger"))
    elif ctx.member is not None and not in_audience(a, ctx.member):
        lines.append(f"本活动面向{_audience_text(ctx, a)}，您不在报名范围内。")
    elif ctx.clock.now() < a.deadline:
        full = a.capacity is not None and a.taken >= a.capacity
        buttons.append(Button("报名候补" if full else "报名", {"do": "signup", "activity": a.id}))
        lines.append(
            f"报名请点按钮，或发送“报名 {a.id}”"
            + (f"（带家属：报名 {a.id} 带1人）" if a.companions_max else "")
        )
    return Card(f"【{a.id}】{a.title}", lines, buttons)


def relay_text(ctx: Context, a: Activity, headline: str = "") -> str:
    """The group-chat relay list (接龙): numbered names with companions, confirmed/capacity, the waitlist."""
    rows = signups_of(ctx.session, a.id)
    confirmed = [r for r in rows if r.status == "confirmed"]
    waiting = [r for r in rows if r.status == "waitlisted"]
    cap = f"/{a.capacity}" if a.capacity is not None else ""
    out = [headline] if headline else []
    out.append(f"【接龙】{a.title}（编号 {a.id}）")
    out.append(f"已报名 {a.taken}{cap} 人")

    def name(r: Signup) -> str:
        return r.member.name + (f" +{r.companions}" if r.companions else "")

    for i, r in enumerate(confirmed[:RELAY_SHOWN], 1):
        out.append(f"{i}. {name(r)}")
    if len(confirmed) > RELAY_SHOWN:
        out.append(f"……等共 {len(confirmed)} 人（另有 {len(confirmed) - RELAY_SHOWN} 人未列出）")
    if waiting:
        out.append(f"候补 {len(waiting)} 人：")
        for i, r in enumerate(waiting[:WAIT_SHOWN], 1):
            out.append(f"候补{i}. {name(r)}")
        if len(waiting) > WAIT_SHOWN:
            out.append(f"……另有 {len(waiting) - WAIT_SHOWN} 人候补")
    if a.status == "open" and ctx.clock.now() < a.deadline:
        out.append(f"接龙请 @我 发送“报名 {a.id}”，截止 {ctx.clock.fmt(a.deadline)}")
    return "\n".join(out)


def _open_list_text(ctx: Context, limit: int = 8) -> str:
    acts = open_activities(ctx.session, ctx.clock.now(), ctx.member)
    if not acts:
        return "目前没有可报名的活动。"
    lines = [f"【{a.id}】{a.title}（{ctx.clock.fmt(a.starts_at)}）" for a in acts[:limit]]
    return "目前可报名的活动：\n" + "\n".join(lines)


def refusal(ctx: Context, a: Activity, outcome: str) -> str:
    if outcome == "cancelled":
        return f"“{a.title}”已取消，不能报名了。\n" + _open_list_text(ctx)
    if outcome == "started":
        return f"“{a.title}”已经开始或结束了，不能再报名。\n" + _open_list_text(ctx)
    if outcome == "deadline":
        return (
            f"“{a.title}”的报名已于 {ctx.clock.fmt(a.deadline)} 截止，不能再报名了。"
            "如有特殊情况请联系活动负责人。"
        )
    if outcome == "audience":
        return (
            f"“{a.title}”面向{_audience_text(ctx, a)}，您不在这次的报名范围内。"
            "发送“活动”看看您可以报名的活动。"
        )
    if outcome == "companions":
        if not a.companions_max:
            return f"“{a.title}”不能携带家属，只能本人报名。请发送“报名 {a.id}”。"
        return f"“{a.title}”每人最多带 {a.companions_max} 位家属。请重新发送，例如“报名 {a.id} 带{a.companions_max}人”。"
    if outcome == "full":
        return (
            f"很抱歉，“{a.title}”名额已满（{a.taken}/{a.capacity}），本活动不设候补。发送“活动”看看其他活动。"
        )
    if outcome == "answers":
        return f"“{a.title}”需要先回答报名问题，请发送“报名 {a.id}”按提示回答。"
    return "没能报名，请稍后再试。"


def _signed_text(ctx: Context, a: Activity, signup: Signup, position: int | None, who: str = "您") -> str:
    extra = f"（本人+{signup.companions}位家属）" if signup.companions else ""
    if signup.status == "waitlisted":
        return (
            f"“{a.title}”名额已满，已为{who}登记候补第 {position} 位{extra}。"
            f"有人取消时按先后顺序递补，递补成功会私信通知。不想候补可发送“取消报名 {a.id}”。"
        )
    return (
        f"报名成功！{who}已报名“{a.title}”{extra}。\n时间：{_when(ctx, a)}"
        + (f"\n地点：{a.place}" if a.place else "")
        + f"\n{_count_line(a)}。去不了请发送“取消报名 {a.id}”。"
    )


def _unknown(ctx: Context, verb: str = "报名") -> None:
    ctx.reply(f"没找到这个活动。{_open_list_text(ctx)}\n请发送“{verb} 编号”，例如“{verb} 3”。")


_PICK_PROMPTS = {
    "报名": "您想报名哪一个？",
    "活动": "您想看哪一个？",
    "取消报名": "您想取消哪一个活动的报名？",
}
_PICK_BUTTONS = {"报名": "signup", "活动": "activity", "取消报名": "cancel_signup"}


def _choose(ctx: Context, verb: str, candidates: list[Activity], companions: int = 0, head: str = "") -> None:
    """Several activities fit: a numbered question (reply 1, 2 …, or tap), never a guess."""
    shown = candidates[:8]
    n = ordinal(ctx)
    if not head and n is not None and len(candidates) == 2:
        head = f"您说的“第{n}个”是列表里的第{n}个（【{candidates[0].id}】），还是编号 {n} 的活动？"
    lines = [f"{i}. 【{a.id}】{a.title}（{_when(ctx, a)}）" for i, a in enumerate(shown, 1)]
    lines.append(f"请回复序号 1–{len(shown)}" if len(shown) > 1 else "是这个吗？请回复 1")
    lines[-1] += f"，或发送“{verb} 编号”，例如“{verb} {shown[0].id}”。"
    head = head or f"找到 {len(candidates)} 个相近的活动，{_PICK_PROMPTS[verb]}"
    action = {
        "do": _PICK_BUTTONS[verb],
        **({"companions": companions} if companions and verb == "报名" else {}),
    }
    buttons = [
        Button(f"{i}. {a.title}"[:20], {**action, "activity": a.id}) for i, a in enumerate(shown[:4], 1)
    ]
    ctx.reply(Card(head, lines, buttons))
    ctx.start_dialog(
        "activity_pick", "pick", {"verb": verb, "ids": [a.id for a in shown], "companions": companions}
    )


def _close_question(ctx: Context) -> None:
    """A tap on a button answers an open numbered question too: a later “1” must not pick again."""
    open_ = active_dialog(ctx.session, ctx.msg)
    if open_ is not None and open_.name == "activity_pick":
        ctx.session.delete(open_)


@router.dialog("activity_pick")
def pick_step(ctx: Context) -> None:
    """The answer to a numbered question: 1 / 第2个 / 2号 picks; anything else is handled as a new message."""
    assert ctx.dialog is not None
    data = dict(ctx.dialog.data)
    m = re.fullmatch(r"第?(\d+)\s*(?:个|号)?", ctx.text.strip())
    ids = list(data.get("ids") or [])
    if m is None or not 1 <= int(m[1]) <= len(ids):
        ctx.end_dialog()
        ctx.bot.dispatch(ctx)  # the member moved on: route the message as if nothing was asked
        return
    ctx.end_dialog()
    a = ctx.session.get(Activity, ids[int(m[1]) - 1])
    if a is None:
        _unknown(ctx, data["verb"])
    elif data["verb"] == "报名":
        _do_signup(ctx, a, int(data.get("companions") or 0))
    elif data["verb"] == "取消报名":
        _do_cancel(ctx, a)
    else:
        ctx.reply(detail_card(ctx, a))


# ---- members: list, details, sign up, cancel, mine ------------------------------------------------------


@router.handler(
    "活动",
    "有什么活动",
    "看看活动",
    "搞啥活动",
    "活动列表",
    "近期活动",
    "活动报名入口",
    "还有位置",
    "还有名额",
    "还有位子",
    "几号出发",
    "什么时候出发",
    "截止到什么时候",
    "什么时候截止",
    menu="活动 — 查看可报名的活动，“报名 3”报名",
)
def activities(ctx: Context) -> None:
    """活动：查看可报名的活动和详情"""
    now = ctx.clock.now()
    pool = open_activities(ctx.session, now, ctx.member)
    day, rest = _day_of(ctx, ctx.text, pool)
    if day is not None and not _clean(rest) and parse_id(rest) is None:  # 下周三有什么活动
        that_day = on_day(ctx, pool, day)
        if that_day:
            ctx.reply(_list_card(ctx, that_day, f"{_day_label(day)}的活动"))
            return
        head = f"{_day_label(day)}没有可报名的活动。"
        ctx.reply(_list_card(ctx, pool, head + "其他可报名的活动") if pool else head)
        return
    a, cands = resolve(ctx, ctx.text, pool) if _clean(ctx.text) or parse_id(ctx.text) else (None, [])
    if a is not None:
        ctx.reply(detail_card(ctx, a))
        return
    if cands:
        _choose(ctx, "活动", cands)
        return
    if not pool:
        ctx.reply("目前没有可报名的活动。有新活动时会通知大家。发送“我的报名”查看已报名的活动。")
        return
    ctx.reply(_list_card(ctx, pool, "可报名的活动"))


_WEEKDAY_NAMES = "一二三四五六日"


def _day_label(day: date) -> str:
    return f"{day.month}月{day.day}日（周{_WEEKDAY_NAMES[day.weekday()]}）"


def _list_card(ctx: Context, pool: list[Activity], title: str) -> Card:
    lines, buttons = [], []
    for x in pool[:10]:
        left = (
            ""
            if x.capacity is None
            else ("（已满，可候补）" if x.taken >= x.capacity else f"（剩{x.capacity - x.taken}）")
        )
        lines.append(f"【{x.id}】{x.title} · {ctx.clock.fmt(x.starts_at)}{left}")
        if len(buttons) < 5:
            buttons.append(Button(f"报名 {x.title}"[:20], {"do": "signup", "activity": x.id}))
    if len(pool) > 10:
        lines.append(f"……共 {len(pool)} 个活动")
    lines.append(f"发送“活动 编号”看详情，“报名 编号”报名，例如“报名 {pool[0].id}”。")
    return Card(title, lines, buttons)


@router.action("activity")
def activity_action(ctx: Context) -> None:
    _close_question(ctx)
    a = ctx.session.get(Activity, _action_id(ctx))
    if a is None:
        _unknown(ctx)
        return
    ctx.reply(detail_card(ctx, a))


def _action_id(ctx: Context) -> int:
    try:
        return int((ctx.msg.action or {}).get("activity", 0))
    except (TypeError, ValueError):
        return 0


@router.handler(
    "报名",
    "我要报名",
    "我想报名",
    "我要参加",
    "我想参加",
    "算我一个",
    "算我1个",
    "我参加",
    "我报",
    patterns=(
        r"^报\s*\d+",
        r"^\S+?\s*\+\s*\d+$",
        r"(?:带|携带)\s*\d+\s*(?:个|位|名)?\s*(?:人|家属|家人|孩子)",
        r"我?(?:一|1)个人去",
    ),
    priority=1,
)
def signup(ctx: Context) -> None:
    """报名：报名参加活动"""
    companions, rest = parse_companions(ctx.text)
    pool = open_activities(ctx.session, ctx.clock.now(), ctx.member)
    a, cands = resolve(ctx, rest, pool)
    if a is None:
        if not cands and not _clean(rest) and parse_id(rest) is None:
            # "报名" with no activity named: show what is open and ask; never guess, even with only one.
            if pool:
                ctx.reply(_list_card(ctx, pool, "请问您要报名哪个活动？"))
            else:
                ctx.reply("目前没有可报名的活动。有新活动时会通知大家。")
            return
        if cands:
            _choose(ctx, "报名", cands, companions or 0)
        else:
            _unknown(ctx)
        return
    _do_signup(ctx, a, companions or 0)


@router.action("signup")
def signup_action(ctx: Context) -> None:
    _close_question(ctx)
    a = ctx.session.get(Activity, _action_id(ctx))
    if a is None:
        _unknown(ctx)
        return
    companions = (ctx.msg.action or {}).get("companions", 0)
    _do_signup(ctx, a, int(companions) if str(companions).isdigit() else 0)


def _do_signup(ctx: Context, a: Activity, companions: int, answers: dict[str, Any] | None = None) -> None:
    member = ctx.member
    assert member is not None
    now = ctx.clock.now()
    existing = active_signup(ctx.session, a.id, member.id)
    if existing is not None:
        _already(ctx, a, existing)
        return
    if answers is None and a.questions:
        refused = check_signup(a, member, companions, now)
        if refused:
            ctx.reply(refusal(ctx, a, refused))
            return
        _ask_questions(ctx, a, companions)
        return
    result = sign_up(ctx.session, a, member, now, companions=companions, answers=answers)
    if result.outcome == "duplicate" and result.signup is not None:
        _already(ctx, a, result.signup)
        return
    if not result.ok:
        ctx.reply(refusal(ctx, a, result.outcome))
        return
    assert result.signup is not None
    ctx.session.refresh(a)
    text = _signed_text(ctx, a, result.signup, result.position)
    if ctx.msg.is_group:
        ctx.reply(
            relay_text(
                ctx,
                a,
                f"{member.name}："
                + ("已报名 ✅" if result.outcome == "confirmed" else f"候补第 {result.position} 位"),
            )
        )
    else:
        ctx.reply(text)


def _already(ctx: Context, a: Activity, existing: Signup) -> None:
    status = STATUS_LABELS[existing.status]
    if existing.status == "waitlisted":
        status += f"第 {waitlist_position(ctx.session, existing)} 位"
    msg = (
        f"您已经报名过“{a.title}”了（{status}"
        + (f"，带 {existing.companions} 人" if existing.companions else "")
        + f"），不用重复报名。要改人数请先发送“取消报名 {a.id}”再重新报名。"
    )
    if ctx.msg.is_group:
        ctx.reply(relay_text(ctx, a, f"{ctx.member.name}：{msg}" if ctx.member else msg))
    else:
        ctx.reply(msg)


# questions ---------------------------------------------------------------------------------------------


def _question_text(a: Activity, idx: int, for_whom: str = "", leave: str = "发送“取消”放弃报名") -> str:
    q = a.questions[idx]
    head = f"“{a.title}”报名问题{for_whom} {idx + 1}/{len(a.questions)}：{q['label']}"
    if q.get("options"):
        opts = "\n".join(f"{i}. {o}" for i, o in enumerate(q["options"], 1))
        return f"{head}\n{opts}\n请回复序号或选项（{leave}）。"
    return f"{head}\n请直接回复（{leave}）。"


def _ask_questions(ctx: Context, a: Activity, companions: int) -> None:
    data = {"activity": a.id, "companions": companions, "answers": {}, "idx": 0}
    if not ctx.msg.is_group:
        ctx.start_dialog("activity_signup", "question", data)
        ctx.reply(_question_text(a, 0))
        return
    # In a group: the questions go to the member's private chat (answers are personal; no @ needed there).
    s, msg = ctx.session, ctx.msg
    s.query(Dialog).filter_by(platform=msg.platform, chat_id=msg.user_id, user_id=msg.user_id).delete()
    s.add(
        Dialog(
            platform=msg.platform,
            chat_id=msg.user_id,
            user_id=msg.user_id,
            name="activity_signup",
            step="question",
            data=data,
            expires_at=ctx.clock.now() + timedelta(minutes=ctx.settings.DIALOG_TIMEOUT_MINUTES),
            updated_at=ctx.clock.now(),
        )
    )
    assert ctx.member is not None
    ctx.notify(ctx.member, _question_text(a, 0), key=f"activity:{a.id}:questions:{msg.message_id}")
    ctx.reply(
        f"{ctx.member.name}，“{a.title}”报名需要回答 {len(a.questions)} 个问题，我已私聊您，请在私聊里回复。"
    )


def _answer(ctx: Context, q: dict[str, Any]) -> str | None:
    """The answer to question `q`: one of its options (by number or wording; None when none fits) or free text
    as typed ("" when empty)."""
    answer = ctx.text.strip()
    if not q.get("options"):
        return ctx.words
    # options are kept as typed: an answer is matched against their normal form
    forms = {o: normalize(o) for o in q["options"]}
    if answer.isdigit() and 1 <= int(answer) <= len(q["options"]):
        return q["options"][int(answer) - 1]
    hits = [o for o, f in forms.items() if f == answer] or [
        o for o, f in forms.items() if answer and (answer in f or f in answer)
    ]
    return hits[0] if len(hits) == 1 else None


@router.dialog("activity_signup")
def signup_dialog(ctx: Context) -> None:
    assert ctx.dialog is not None
    data = dict(ctx.dialog.data)
    a = ctx.session.get(Activity, data["activity"])
    if a is None or a.status != "open":
        ctx.end_dialog()
        ctx.reply("这个活动已取消或不存在了。发送“活动”看看其他活动。")
        return
    idx = int(data["idx"])
    q = a.questions[idx]
    answer = _answer(ctx, q)
    if (answer is None or not q.get("options")) and ctx.hand_on(_question_text(a, idx)):
        return  # 我的报名 typed mid-way: answered, and the question stays open
    if answer is None:
        ctx.reply("没看懂您的选择。\n" + _question_text(a, idx))
        return
    if not answer:
        ctx.reply(_question_text(a, idx))
        return
    answers = {**data["answers"], q["key"]: answer}
    if idx + 1 < len(a.questions):
        ctx.advance("question", answers=answers, idx=idx + 1)
        ctx.reply(_question_text(a, idx + 1))
        return
    ctx.end_dialog()
    _do_signup(ctx, a, int(data.get("companions") or 0), answers)


# cancel ------------------------------------------------------------------------------------------------


def _my_active(ctx: Context) -> list[tuple[Signup, Activity]]:
    assert ctx.member is not None
    rows = ctx.session.execute(
        select(Signup, Activity)
        .join(Activity, Signup.activity_id == Activity.id)
        .where(Signup.member_id == ctx.member.id, Signup.status.in_(("confirmed", "waitlisted")))
        .order_by(Activity.starts_at)
    ).all()
    return [(r[0], r[1]) for r in rows]


@router.handler(
    "取消报名",
    "帮我取消",
    "去不了",
    "不去了",
    "不参加",
    "退掉",
    "退报",
    "不报了",
    "取消",
    together=(("取消", "报名"),),  # 帮我把羽毛球的报名取消了: cancelling a sign-up, not signing up
    menu="取消报名 3 — 取消活动报名",
    priority=1,
)
def cancel(ctx: Context) -> None:
    """取消报名：取消我的活动报名"""
    mine = _my_active(ctx)
    if _not_about_activities(ctx, [a for _, a in mine]):
        return
    if not mine:
        ctx.reply("您目前没有报名任何活动，不需要取消。发送“活动”看看可报名的活动。")
        return
    acts = [a for _, a in mine]
    day, rest = _day_of(ctx, ctx.text, acts)
    readings = by_position(ctx, acts) if day is None else None
    if readings is not None:  # 取消第2个: a place given up is lost, so the reading is always confirmed
        readings = [a for a in readings if a in acts]
        head = "" if readings else f"您报名了 {len(acts)} 个活动，您想取消哪一个的报名？"
        _choose(ctx, "取消报名", readings or acts, head=head)
        return
    n = parse_id(rest)
    if n is not None:
        target = next((a for a in acts if a.id == n), None)
        if target is None:
            ctx.reply(f"您没有报名编号 {n} 的活动。\n" + _mine_lines(ctx, mine))
            return
        _do_cancel(ctx, target)
        return
    pool = on_day(ctx, acts, day) if day is not None else acts
    found = match_title(rest, pool) if _clean(rest) else []
    if len(found) == 1:
        _do_cancel(ctx, found[0])
        return
    if found:  # 羽毛球 on two days: which one
        _choose(ctx, "取消报名", found)
        return
    # nothing named (or nothing of mine matches): show mine and ask, even when there is only one
    _choose(ctx, "取消报名", acts, head=f"您报名了 {len(acts)} 个活动，您想取消哪一个的报名？")


def _not_about_activities(ctx: Context, mine: list[Activity]) -> bool:
    """“去不了” also answers meetings: when nothing points at an activity, hand over to the other handler."""
    if parse_id(ctx.text) is not None or re.search("报名|活动", ctx.text):
        return False
    if match_title(ctx.text, mine) or match_title(ctx.text, open_activities(ctx.session, ctx.clock.now())):
        return False
    rivals = [m for m in router.matches(ctx.text) if m.route.func is not cancel]
    if not rivals:
        return False
    ctx.bot.run_route(ctx, rivals[0])
    return True


@router.action("cancel_signup")
def cancel_action(ctx: Context) -> None:
    _close_question(ctx)
    a = ctx.session.get(Activity, _action_id(ctx))
    if a is None:
        _unknown(ctx, "取消报名")
        return
    _do_cancel(ctx, a)


def _do_cancel(ctx: Context, a: Activity) -> None:
    assert ctx.member is not None
    now = ctx.clock.now()
    res = cancel_signup(ctx.session, a, ctx.member, now)
    if res.outcome == "not_signed":
        ctx.reply(f"您没有报名“{a.title}”，不需要取消。")
        return
    if res.outcome == "started":
        ctx.reply(f"“{a.title}”已经开始了，不能再取消。如有问题请联系活动负责人。")
        return
    if res.outcome == "cutoff":
        ctx.reply(
            f"“{a.title}”开始前 {a.cancel_cutoff_hours} 小时内不能在线取消了"
            f"（活动 {ctx.clock.fmt(a.starts_at)} 开始）。确实去不了请直接联系活动负责人。"
        )
        return
    notify_promoted(ctx.bot, ctx.session, a, res.promoted or [])
    ctx.session.refresh(a)
    text = f"已取消您的“{a.title}”报名。想重新报名可发送“报名 {a.id}”（名额可能已被候补的同事递补）。"
    if ctx.msg.is_group:
        ctx.reply(relay_text(ctx, a, f"{ctx.member.name}：已取消报名"))
    else:
        ctx.reply(text)


def notify_added(bot, s, a: Activity, signup: Signup, by: str) -> bool:
    """An organiser (console, API) or a group leader signed the member up: tell them privately."""
    status = "已报名" if signup.status == "confirmed" else f"候补第 {waitlist_position(s, signup)} 位"
    return bot.notify_member(
        s,
        signup.member,
        Text(
            f"{by}帮您报名了“{a.title}”（{status}），时间 {bot.clock.fmt(a.starts_at)}"
            + (f"，地点：{a.place}" if a.place else "")
            + f"。去不了请发送“取消报名 {a.id}”。"
        ),
        key=f"activity:{a.id}:added:{signup.id}",
    )


def notify_promoted(bot, s, a: Activity, promoted: list[Signup]) -> None:
    for su in promoted:
        bot.notify_member(
            s,
            su.member,
            Text(
                f"好消息！您候补的活动“{a.title}”有名额了，已为您转为正式报名。\n"
                f"时间：{bot.clock.fmt(a.starts_at)}"
                + (f"\n地点：{a.place}" if a.place else "")
                + f"\n去不了请发送“取消报名 {a.id}”，把名额让给其他同事。"
            ),
            key=f"activity:{a.id}:promoted:{su.id}",
        )


# mine --------------------------------------------------------------------------------------------------


def _mine_lines(ctx: Context, mine: list[tuple[Signup, Activity]]) -> str:
    lines = []
    for su, a in mine:
        status = STATUS_LABELS[su.status]
        if su.status == "waitlisted":
            status += f"第{waitlist_position(ctx.session, su)}位"
        extra = f"，带{su.companions}人" if su.companions else ""
        lines.append(f"【{a.id}】{a.title} · {ctx.clock.fmt(a.starts_at)} · {status}{extra}")
    return "您报名的活动：\n" + "\n".join(lines)


@router.handler(
    "我的报名",
    "我报了啥",
    "我报了什么",
    "我的活动",
    "报名情况",
    "我报名了吗",
    "查下我报名",
    menu="我的报名 — 查看我报名的活动",
)
def my_signups(ctx: Context) -> None:
    """我的报名：查看我报名的活动"""
    assert ctx.member is not None
    now = ctx.clock.now()
    rows = ctx.session.execute(
        select(Signup, Activity)
        .join(Activity, Signup.activity_id == Activity.id)
        .where(Signup.member_id == ctx.member.id, Activity.starts_at > now - timedelta(days=30))
        .order_by(Activity.starts_at, Signup.id)
    ).all()
    if not rows:
        ctx.reply("您还没有报名任何活动。发送“活动”看看可报名的活动。")
        return
    lines = []
    for su, a in rows:
        status = STATUS_LABELS[su.status]
        if a.status == "cancelled":
            status = "活动已取消"
        elif su.status == "waitlisted":
            status += f"第{waitlist_position(ctx.session, su)}位"
        elif su.checked_in_at:
            status = "已签到"
        elif a.starts_at <= now:
            status = "已结束" if su.status == "confirmed" else status
        extra = f"，带{su.companions}人" if su.companions else ""
        lines.append(f"【{a.id}】{a.title} · {ctx.clock.fmt(a.starts_at)} · {status}{extra}")
    lines.append("取消请发送“取消报名 编号”。")
    ctx.reply(Card("我的报名", lines))


# ---- organisers: list, not answered, proxy sign-up, check-in ---------------------------------------------


def scope_of(ctx: Context, a: Activity) -> set[int] | None | bool:
    """Whose sign-ups this member may see for `a`: None = everyone, a set of member ids, False = nobody."""
    m = ctx.member
    if m is None:
        return False
    if ctx.can("activities.manage_all") or a.created_by_id == m.id:
        return None
    q = None
    if ctx.can("activities.own_branch") and m.branch_id:
        q = select(Member.id).where(Member.branch_id == m.branch_id)
    elif ctx.can("activities.own_group") and m.group_id:
        q = select(Member.id).where(Member.group_id == m.group_id)
    if q is None:
        return False
    return set(ctx.session.scalars(q))


def _find_for_organiser(ctx: Context, verb: str) -> Activity | None:
    pool = list(
        ctx.session.scalars(
            select(Activity)
            .where(Activity.starts_at > ctx.clock.now() - timedelta(days=60))
            .order_by(Activity.starts_at)
        )
    )
    a, cands = resolve(ctx, ctx.text, pool)
    if a is None:
        if cands:
            lines = [f"【{x.id}】{x.title}" for x in cands[:8]]
            ctx.reply(f"找到几个相近的活动，请发送“{verb} 编号”：\n" + "\n".join(lines))
        else:
            ctx.reply(f"请告诉我是哪个活动，例如“{verb} 3”。\n" + _open_list_text(ctx))
    return a


_DENIED = "只有活动发布人、工会干事和相关小组长/分会主席可以查看名单。发送“我的报名”查看您自己的报名。"


@router.handler("报名名单", "名单", "导出", "报名表", menu=None, group_ok=False)
def roster(ctx: Context) -> None:
    """报名名单 3：组织者查看报名名单"""
    a = _find_for_organiser(ctx, "报名名单")
    if a is None:
        return
    scope = scope_of(ctx, a)
    if scope is False:
        ctx.reply(_DENIED)
        return
    rows = [r for r in signups_of(ctx.session, a.id) if scope is None or r.member_id in scope]
    head = "" if scope is None else "（仅显示您负责范围内的会员）"
    confirmed = [r for r in rows if r.status == "confirmed"]
    waiting = [r for r in rows if r.status == "waitlisted"]
    lines = [f"{_count_line(a)}{head}"]
    for i, r in enumerate(confirmed[:50], 1):
        m = r.member
        extra = f" +{r.companions}" if r.companions else ""
        answers = " ".join(str(v) for v in (r.answers or {}).values())
        checked = " ✔签到" if r.checked_in_at else ""
        proxy = f"（{r.signed_by.name}代报）" if r.signed_by else ""
        lines.append(
            f"{i}. {m.name}{extra} {m.group.name if m.group else ''} {answers}{proxy}{checked}".rstrip()
        )
    if len(confirmed) > 50:
        lines.append(f"……另有 {len(confirmed) - 50} 人，完整名单请在管理后台导出 Excel。")
    if waiting:
        lines.append(f"候补 {len(waiting)} 人：" + "、".join(r.member.name for r in waiting[:20]))
    if "导出" in ctx.text or "报名表" in ctx.text:
        lines.append(f"Excel 报名表请在管理后台“活动”页面导出（/admin/activities/{a.id}/export）。")
    ctx.reply(Card(f"【{a.id}】{a.title} 报名名单", lines))


@router.handler("未报名", "谁还没报", "还有谁没报", "没报名", "谁没报")
def not_answered(ctx: Context) -> None:
    """未报名 3：组织者查看还没报名的会员"""
    a = _find_for_organiser(ctx, "未报名")
    if a is None:
        return
    scope = scope_of(ctx, a)
    if scope is False:
        ctx.reply("只有活动发布人、工会干事和小组长/分会主席可以查看谁还没报名。")
        return
    answered = set(ctx.session.scalars(select(Signup.member_id).where(Signup.activity_id == a.id)))
    people = [
        m
        for m in audience_members(ctx.session, a)
        if m.id not in answered and (scope is None or m.id in scope)
    ]
    if not people:
        ctx.reply(f"“{a.title}”：您范围内的会员都已报名或答复过了。")
        return
    names = "、".join(m.name for m in people[:60])
    more = f" 等共 {len(people)} 人" if len(people) > 60 else f"，共 {len(people)} 人"
    ctx.reply(
        f"“{a.title}”还没报名的会员：{names}{more}。\n可以发送“代报名 {a.id} 姓名”帮没有手机的同事报名。"
    )


@router.handler("代报名", "代报", "帮组里", menu=None)
def proxy_signup(ctx: Context) -> None:
    """代报名 3 张三 李四：小组长帮组员报名"""
    m = ctx.member
    assert m is not None
    if not ctx.can("activities.proxy_signup"):
        ctx.reply("代报名只有小组长、分会主席和工会干事可以使用。自己报名请发送“报名 编号”。")
        return
    n = parse_id(ctx.text)
    a = ctx.session.get(Activity, n) if n is not None else None
    tokens: list[str] = []
    loose = re.search(
        r"帮(?:组里|我们组|本组|组内)?的?([\u4e00-\u9fa5]{2,4}?)(?:报个|报名|报)(.+)$", ctx.text
    )
    if a is None and loose:  # 帮组里的老刘报个秋游
        a, _ = resolve(ctx, loose[2], open_activities(ctx.session, ctx.clock.now()))
        tokens = [loose[1]]
    if a is None:
        ctx.reply("请按格式发送：代报名 活动编号 姓名，例如“代报名 3 张三 李四”。\n" + _open_list_text(ctx))
        return
    if not tokens:
        names_part = re.sub(r"代报名|代报|帮组里|报名", " ", ctx.text)
        names_part = _ID.sub(" ", names_part, count=1)
        tokens = [t for t in re.split(r"[\s,和]+", names_part) if t and t not in ("的", "给", "帮", "个")]
    if not tokens:
        ctx.reply(f"请写上要代报的同事姓名，例如“代报名 {a.id} 张三 李四”。")
        return
    if ctx.can("activities.manage_all"):
        scope_q = select(Member).where(Member.active.is_(True))
    elif ctx.can("activities.own_branch") and m.branch_id:
        scope_q = select(Member).where(Member.active.is_(True), Member.branch_id == m.branch_id)
    else:
        scope_q = select(Member).where(Member.active.is_(True), Member.group_id == m.group_id)
    now = ctx.clock.now()
    lines: list[str] = []
    people: list[Member] = []
    for tok in tokens[:30]:
        found = list(ctx.session.scalars(scope_q.where((Member.name == tok) | (Member.employee_no == tok))))
        if not found and len(tok) == 2 and tok[0] in "老小":  # 老刘 / 小王: the only one with that surname
            found = list(ctx.session.scalars(scope_q.where(Member.name.startswith(tok[1]))))
            if len(found) > 1:
                names = "、".join(f.name for f in found[:8])
                lines.append(f"? {tok}：姓{tok[1]}的有 {names}，请写全名")
                continue
        if not found:
            lines.append(f"✗ {tok}：不是您负责范围内的会员（小组长只能代报本组同事）")
            continue
        if len(found) > 1:
            nos = "、".join(f.employee_no for f in found)
            lines.append(f"? {tok}：有 {len(found)} 位同名（工号 {nos}），请改用工号代报")
            continue
        who = found[0]
        refused = check_signup(a, who, 0, now)
        if active_signup(ctx.session, a.id, who.id) is not None:
            lines.append(f"· {who.name}：已经报过名了")
        elif refused:
            lines.append(f"✗ {who.name}：" + refusal(ctx, a, refused).split("\n")[0])
        elif who not in people:
            people.append(who)
    if a.questions and people:
        # The leader answers for each colleague, as the member would: nobody is signed up blank.
        data = {
            "activity": a.id,
            "people": [p.id for p in people],
            "lines": lines,
            "answers": {},
            "p": 0,
            "q": 0,
        }
        ctx.start_dialog("activity_proxy", "question", data)
        head = f"代报名“{a.title}”：\n" + "\n".join(lines) + "\n" if lines else ""
        ctx.reply(head + _proxy_question(a, people[0], 0, 0))
        return
    _proxy_finish(ctx, a, people, {}, lines)


def _proxy_finish(
    ctx: Context, a: Activity, people: list[Member], answers: dict[str, dict[str, Any]], lines: list[str]
) -> None:
    m = ctx.member
    assert m is not None
    for who in people:
        res = sign_up(ctx.session, a, who, ctx.clock.now(), signed_by=m, answers=answers.get(str(who.id)))
        if res.outcome == "confirmed":
            lines.append(f"✓ {who.name}：已报名")
        elif res.outcome == "waitlisted":
            lines.append(f"✓ {who.name}：名额已满，候补第 {res.position} 位")
        elif res.outcome == "duplicate":
            lines.append(f"· {who.name}：已经报过名了")
        else:
            lines.append(f"✗ {who.name}：" + refusal(ctx, a, res.outcome).split("\n")[0])
            continue
        if res.signup is not None and res.ok:
            notify_added(ctx.bot, ctx.session, a, res.signup, m.name)
    ctx.session.refresh(a)
    ctx.reply(f"代报名“{a.title}”：\n" + "\n".join(lines) + f"\n{_count_line(a)}")


def _proxy_question(a: Activity, who: Member, p: int, idx: int) -> str:
    same = "；与上一位相同请回复“同上”" if p > 0 else ""
    return _question_text(a, idx, f"（代{who.name}填写）", f"发送“取消”放弃这次代报名{same}")


@router.dialog("activity_proxy")
def proxy_dialog(ctx: Context) -> None:
    """代报名 for an activity with questions: the leader answers them for each colleague, then all are signed up."""
    assert ctx.dialog is not None
    data = dict(ctx.dialog.data)
    a = ctx.session.get(Activity, data["activity"])
    people = [ctx.session.get(Member, i) for i in data["people"]]
    if a is None or a.status != "open" or None in people:
        ctx.end_dialog()
        ctx.reply("这个活动已取消或不存在了，代报名没有完成。发送“活动”看看其他活动。")
        return
    p, idx = int(data["p"]), int(data["q"])
    q, who = a.questions[idx], people[p]
    answers = {k: dict(v) for k, v in data["answers"].items()}
    if p > 0 and ctx.text.strip() == "同上":
        answer: str | None = answers[str(people[p - 1].id)][q["key"]]
    else:
        answer = _answer(ctx, q)
        if (answer is None or not q.get("options")) and ctx.hand_on(_proxy_question(a, who, p, idx)):
            return
    if not answer:
        ctx.reply(("没看懂您的选择。\n" if answer is None else "") + _proxy_question(a, who, p, idx))
        return
    answers.setdefault(str(who.id), {})[q["key"]] = answer
    if idx + 1 < len(a.questions) or p + 1 < len(people):
        p, idx = (p, idx + 1) if idx + 1 < len(a.questions) else (p + 1, 0)
        ctx.advance("question", answers=answers, p=p, q=idx)
        ctx.reply(_proxy_question(a, people[p], p, idx))
        return
    ctx.end_dialog()
    _proxy_finish(ctx, a, people, answers, list(data["lines"]))


@router.handler("签到", menu=None)
def checkin(ctx: Context) -> None:
    """签到 3：活动现场签到"""
    assert ctx.member is not None
    now = ctx.clock.now()
    n = parse_id(ctx.text)
    if n is not None:
        a = ctx.session.get(Activity, n)
    else:
        mine = [a for su, a in _my_active(ctx) if su.status == "confirmed"]
        near = [x for x in mine if abs((x.starts_at - now).total_seconds()) < 6 * 3600]
        a = near[0] if len(near) == 1 else None
    if a is None:
        ctx.reply("请发送“签到 活动编号”，例如“签到 3”。")
        return
    outcome = check_in(ctx.session, a, ctx.member, now)
    ctx.reply(
        {
            "ok": f"签到成功！欢迎参加“{a.title}”。",
            "already": f"您已经签到过“{a.title}”了。",
            "not_signed": f"您没有报名“{a.title}”，无法签到。请联系现场工作人员。",
            "waitlisted": f"您在“{a.title}”的候补名单上，还没有正式名额，请联系现场工作人员。",
            "too_early": f"“{a.title}”的签到在开始前 1 小时开放（{ctx.clock.fmt(a.starts_at - timedelta(hours=1))}）。",
            "too_late": f"“{a.title}”的签到已经结束了。",
        }[outcome]
    )


@router.handler("取消活动", "撤销活动", menu=None)
def cancel_whole_activity(ctx: Context) -> None:
    """取消活动 3：发布人取消整个活动"""
    n = parse_id(ctx.text)
    a = ctx.session.get(Activity, n) if n is not None else None
    if a is None:
        ctx.reply("请发送“取消活动 编号”，例如“取消活动 3”。")
        return
    if not (ctx.can("activities.manage_all") or a.created_by_id == (ctx.member.id if ctx.member else None)):
        ctx.reply("只有活动发布人或工会干事可以取消活动。要取消自己的报名请发送“取消报名 编号”。")
        return
    if a.status == "cancelled":
        ctx.reply(f"“{a.title}”已经是取消状态了。")
        return
    if (ctx.dialog is None) and "确认" not in ctx.text:
        ctx.reply(
            Card(
                f"确定取消整个活动“{a.title}”吗？",
                [
                    f"已报名 {a.taken} 人，会私信通知所有报名的同事。此操作不能撤回。",
                    f"确认请发送“取消活动 {a.id} 确认”。",
                ],
            )
        )
        return
    told = announce_cancelled(ctx.bot, ctx.session, a, ctx.clock.now())
    ctx.reply(f"已取消活动“{a.title}”，已通知 {told} 位报名的同事。")


def announce_cancelled(bot, s, a: Activity, now: datetime) -> int:
    rows = cancel_activity(s, a, now)
    told = 0
    for su in rows:
        told += bot.notify_member(
            s,
            su.member,
            Text(
                f"通知：您报名的活动“{a.title}”（{bot.clock.fmt(a.starts_at)}）已取消。给您带来不便，敬请谅解。"
            ),
            key=f"activity:{a.id}:cancelled:{su.member_id}",
        )
    return told


def member_view(bot, a: Activity) -> dict[str, str]:
    """What members see of an activity, as they see it. A change notice is due exactly when this changes;
    capacity, audience, questions, waitlist and posting options are the organisers' business."""
    hours = a.cancel_cutoff_hours
    return {
        "名称": a.title,
        "时间": bot.clock.fmt(a.starts_at),
        "结束时间": bot.clock.fmt(a.ends_at) if a.ends_at else "未定",
        "地点": a.place or "未定",
        "报名截止": bot.clock.fmt(a.deadline),
        "取消规则": f"开始前 {hours} 小时内不能取消" if hours else "开始前随时可以取消",
        "说明": a.description or "（无）",
    }


def notify_changed(bot, s, a: Activity, before: dict[str, str]) -> tuple[int, list[str]]:
    """After an edit (console or API): one message to everyone signed up listing what changed, old → new.

    `before` is member_view() taken before the edit. Returns (members told, changed labels)."""
    after = member_view(bot, a)
    changed = [k for k in after if after[k] != before.get(k)]
    if not changed:
        return 0, []
    lines = [
        f"· 说明已更新：{after[k][:100]}" if k == "说明" else f"· {k}：{before.get(k, '')} → {after[k]}"
        for k in changed
    ]
    text = (
        f"通知：您报名的活动“{a.title}”有变更：\n"
        + "\n".join(lines)
        + f"\n发送“活动 {a.id}”查看详情；去不了请发送“取消报名 {a.id}”。"
    )
    stamp = hashlib.sha1(repr(sorted(after.items())).encode()).hexdigest()[:10]
    moment = f"{a.updated_at:%Y%m%d%H%M%S%f}" if a.updated_at else ""
    told = 0
    for su in signups_of(s, a.id):
        told += bot.notify_member(
            s, su.member, Text(text), key=f"activity:{a.id}:changed:{moment}:{stamp}:{su.member_id}"
        )
    return told, changed


def audience_chats(s, a: Activity) -> list:
    """The group chats (linked to a union group) where the activity's audience is."""
    from models.member import Group
    from models.messaging import Chat

    if a.audience_kind == "list":
        return []
    q = select(Chat).where(Chat.unreachable.is_(False), Chat.group_id.is_not(None))
    if a.audience_kind == "groups":
        q = q.where(Chat.group_id.in_(a.audience_ids or []))
    elif a.audience_kind == "branches":
        q = q.where(Chat.group_id.in_(select(Group.id).where(Group.branch_id.in_(a.audience_ids or []))))
    return list(s.scalars(q))


@router.action("post_activity")
def post_activity_action(ctx: Context) -> None:
    """The creator's one tap after publishing: post the activity card into the audience's group chats."""
    a = ctx.session.get(Activity, _action_id(ctx))
    if a is None or a.status != "open":
        ctx.reply("这个活动不存在或已取消。")
        return
    if not (ctx.can("activities.manage_all") or (ctx.member and a.created_by_id == ctx.member.id)):
        ctx.reply("只有活动发布人或工会干事可以把活动发到群里。")
        return
    n = post_to_group_chats(ctx.bot, ctx.session, a)
    a.post_to_groups = True
    ctx.reply(
        f"已把“{a.title}”发到 {n} 个小组群。" if n else "没有找到可以发送的小组群（需要先把我拉进小组群）。"
    )


def post_to_group_chats(bot, s, a: Activity) -> int:
    """Post the new activity as a card into the group chats of its audience (chats linked to a union group)."""
    chats = audience_chats(s, a)
    card = Card(
        f"📣 新活动【{a.id}】{a.title}",
        [
            f"时间：{bot.clock.fmt(a.starts_at)}",
            *([f"地点：{a.place}"] if a.place else []),
            f"名额：{a.capacity} 人" if a.capacity else "名额：不限",
            f"报名截止：{bot.clock.fmt(a.deadline)}",
            f"点按钮报名，或 @我 发送“报名 {a.id}”",
        ],
        [Button("报名", {"do": "signup", "activity": a.id})],
    )
    posted = 0
    for chat in chats:
        posted += bot.notify_chat(
            s, chat.platform, chat.chat_id, card, key=f"activity:{a.id}:posted:{chat.id}"
        )
    return posted


# ---- creating an activity through a short dialog -----------------------------------------------------
# Six short questions (name, start, place, capacity, deadline, audience), then one menu of optional settings
# that “好” skips: the common case stays short, and everything the console can set is one number away.

Audience = tuple[str, str, list[int]]  # (label, kind, ids); kind pick_branches / pick_groups asks which ones


def _audience_options(ctx: Context) -> list[Audience]:
    m = ctx.member
    assert m is not None
    opts: list[Audience] = []
    every = ctx.can("activities.manage_all")
    if every:
        opts += [("全体会员", "all", []), ("女职工", "women", []), ("离退休职工", "retirees", [])]
    if m.branch_id and (every or ctx.can("activities.own_branch")):
        opts.append((f"本分会（{m.branch.name if m.branch else ''}）", "branches", [m.branch_id]))
    if m.group_id:
        opts.append((f"本小组（{m.group.name if m.group else ''}）", "groups", [m.group_id]))
    if every:
        opts += [("指定几个分会", "pick_branches", []), ("指定几个小组", "pick_groups", [])]
    elif m.branch_id and ctx.can("activities.own_branch"):
        opts.append(("本分会的几个小组", "pick_groups", []))
    return opts


def _pickable(ctx: Context, kind: str) -> list[tuple[int, str]]:
    """The branches or groups this organiser may choose from, numbered in this order."""
    from models.member import Branch, Group

    m = ctx.member
    assert m is not None
    if kind == "pick_branches":
        return [(b.id, b.name) for b in ctx.session.scalars(select(Branch).order_by(Branch.id))]
    q = select(Group).order_by(Group.branch_id, Group.id)
    if not ctx.can("activities.manage_all"):
        q = q.where(Group.branch_id == m.branch_id)
    return [(g.id, g.name) for g in ctx.session.scalars(q)]


_TIME = re.compile(r"(上午|早上|中午|下午|晚上)?\s*(\d{1,2})\s*(?:[:点时])\s*(\d{1,2}|半)?")


def parse_when(text: str, today: date) -> tuple[date | None, int, int, bool]:
    """A local date and time from 12月5日 14:30 / 下周六 9点 / 明天下午3点半; time defaults to 09:00."""
    day = parse_date(text, today)
    rest = re.sub(r"\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}[日号]?|\d{1,2}[月/\-.]\d{1,2}[日号]?", " ", text)
    m = _TIME.search(rest)
    if not m:
        return day, 9, 0, False
    hour = int(m[2])
    minute = 30 if m[3] == "半" else int(m[3] or 0)
    if m[1] in ("下午", "晚上") and hour < 12:
        hour += 12
    if m[1] == "中午" and hour < 6:
        hour += 12
    if hour > 23 or minute > 59:
        return day, 9, 0, False
    return day, hour, minute, True


_SKIP = ("跳过", "无", "没有", "不用", "不填", "不设", "不需要")
_PUBLISH = ("好", "好的", "发布", "确定", "确认", "可以", "就这样", "没有了", "不用了", "跳过", "ok")
# the optional settings: number -> (dialog step, words that also choose it)
_MORE = {
    1: ("description", ("说明", "描述", "介绍")),
    2: ("ends", ("结束",)),
    3: ("question", ("问题", "报名问题")),
    4: ("waitlist", ("候补",)),
    5: ("cutoff", ("不能取消", "取消截止", "取消时间")),
    6: ("remind", ("提醒",)),
}


def _prompt(step: str, ctx: Context) -> str:
    total = 6 if len(_audience_options(ctx)) > 1 else 5
    if step == "title":
        return f"好的，我们来发布一个活动（随时发送“取消”退出）。\n1/{total} 活动名称是？例如：乒乓球比赛"
    if step == "time":
        return f"2/{total} 什么时候开始？例如：12月5日 14:30、下周六 9点、明天下午3点"
    if step == "place":
        return f"3/{total} 在哪里？（没有固定地点发“跳过”）"
    if step == "capacity":
        return (
            f"4/{total} 限多少人？发数字，例如 30；不限人数发“不限”。"
            "可带家属就加上，例如“30 每人带1人”（家属计入名额）。"
        )
    if step == "deadline":
        return f"5/{total} 报名截止时间？例如：12月3日 18点；发“默认”为开始前一天 18:00。"
    if step == "audience":
        opts = _audience_options(ctx)
        lines = "\n".join(f"{i}. {label}" for i, (label, _, _) in enumerate(opts, 1))
        return f"6/{total} 哪些人可以报名？\n{lines}\n请回复序号。"
    if step in ("pick_branches", "pick_groups"):
        what = "分会" if step == "pick_branches" else "小组"
        lines = "\n".join(f"{i}. {name}" for i, (_, name) in enumerate(_pickable(ctx, step), 1))
        return f"请选择{what}，可多选，序号或名称用空格分开，例如“1 3”：\n{lines}"
    if step == "description":
        return "请写活动说明（例如：自带球拍，穿运动鞋）。不写发“跳过”。"
    if step == "ends":
        return "什么时候结束？例如：17:00、12月10日 17点。不设发“跳过”。"
    if step == "question":
        return (
            "报名时要问大家什么？写成“问题：选项/选项”，例如“项目：单打/双打”；"
            "不设选项就只写问题，例如“衣服尺码”。不加发“跳过”。"
        )
    if step == "cutoff":
        return "开始前几小时内不能取消报名？发数字，例如 24；发 0 表示开始前随时可以取消。"
    return _more_menu(ctx)


def _more_menu(ctx: Context) -> str:
    assert ctx.dialog is not None
    d = ctx.dialog.data
    starts = datetime.fromisoformat(d["starts_at"])
    cap = "不限" if d.get("capacity") is None else f"{d['capacity']} 人"
    if d.get("companions_max"):
        cap += f"（每人可带 {d['companions_max']} 位家属）"
    ends = f"–{ctx.clock.fmt(datetime.fromisoformat(d['ends_at']))}" if d.get("ends_at") else ""
    questions = d.get("questions") or []
    summary = [
        f"“{d['title']}”就快发布好了：",
        f"时间：{ctx.clock.fmt(starts)}{ends}　地点：{d.get('place') or '未定'}",
        f"名额：{cap}　报名截止：{ctx.clock.fmt(datetime.fromisoformat(d['deadline']))}",
        f"对象：{d['audience'][0]}",
        *([f"说明：{d['description']}"] if d.get("description") else []),
        *(
            f"问题：{q['label']}" + (f"（{'/'.join(q['options'])}）" if q["options"] else "")
            for q in questions
        ),
    ]
    waitlist = "开" if d.get("waitlist", True) else "关"
    cutoff = f"开始前 {d['cutoff']} 小时" if d.get("cutoff") else "未设"
    remind = "开" if d.get("remind") else "关"
    options = (
        f"1 说明　2 结束时间　3 报名问题（{len(questions)}/{MAX_QUESTIONS}）\n"
        f"4 满员后候补：{waitlist}　5 不能取消的时间：{cutoff}　6 截止前一天提醒未报名的人：{remind}"
    )
    return "\n".join(summary) + f"\n其他设置？回复“好”发布，或回复序号：\n{options}"


@router.handler("发布活动", "创建活动", "新建活动", "发起活动", "组织活动", "发个活动", group_ok=False)
def create_start(ctx: Context) -> None:
    """发布活动：发布一个新活动"""
    if not ctx.can("activities.create"):
        ctx.reply("发布活动需要小组长、分会主席或工会干事的权限。想参加活动请发送“活动”。")
        return
    if not _audience_options(ctx):
        ctx.reply("您的会员资料里没有分会或小组，暂时不能在聊天里发布活动，请联系工会办公室。")
        return
    ctx.start_dialog("activity_create", "title", {})
    ctx.reply(_prompt("title", ctx))


@router.dialog("activity_create")
def create_step(ctx: Context) -> None:
    assert ctx.dialog is not None and ctx.member is not None
    step, text = ctx.dialog.step, ctx.text.strip()
    if step in ("title", "place", "description") and ctx.hand_on(_prompt(step, ctx)):
        return  # free text: a bare command word (我的报名) is not a title
    error = _CREATE_STEPS[step](ctx, text)
    if ctx.dialog is None:  # published
        return
    ctx.reply((error + "\n" if error else "") + _prompt(ctx.dialog.step, ctx))


def _title_step(ctx: Context, text: str) -> str:
    title = ctx.words_for(text)  # kept as typed; `text` is the normal form the steps match on
    if not (2 <= len(title) <= 60):
        return "活动名称请写 2 到 60 个字。"
    ctx.advance("time", title=title)
    return ""


def _time_step(ctx: Context, text: str) -> str:
    day, h, mi, _ = parse_when(text, ctx.clock.today())
    if day is None:
        return "没看懂时间。"
    starts = ctx.clock.at(day, h, mi)
    if starts <= ctx.clock.now():
        return "这个时间已经过去了，请发一个将来的时间。"
    ctx.advance("place", starts_at=starts.isoformat())
    return ""


def _place_step(ctx: Context, text: str) -> str:
    ctx.advance("capacity", place="" if text in _SKIP else ctx.words_for(text)[:200])
    return ""


def _capacity_step(ctx: Context, text: str) -> str:
    comp, rest = parse_companions(text)
    rest = re.sub(r"每人|可以|可", "", rest)
    if "不限" in rest or "无" in rest or rest.strip() in _SKIP:
        cap = None
    else:
        m = re.search(r"\d+", rest)
        if not m or not 0 < int(m.group()) <= 100_000:
            return "请发一个人数，或“不限”。"
        cap = int(m.group())
    ctx.advance("deadline", capacity=cap, companions_max=min(comp or 0, 20))
    return ""


def _deadline_step(ctx: Context, text: str) -> str:
    assert ctx.dialog is not None
    starts = datetime.fromisoformat(ctx.dialog.data["starts_at"])
    if text in ("默认", "好", "可以", "跳过", "开始前一天"):
        local_day = ctx.clock.local(starts).date() - timedelta(days=1)
        deadline = ctx.clock.at(local_day, 18, 0)
        if deadline <= ctx.clock.now():
            deadline = starts
    else:
        day, h, mi, has_time = parse_when(text, ctx.clock.today())
        if day is None:
            return "没看懂截止时间。"
        deadline = ctx.clock.at(day, h, mi) if has_time else ctx.clock.at(day, 23, 59)
        if deadline > starts:
            return "截止时间不能晚于活动开始时间。"
        if deadline <= ctx.clock.now():
            return "截止时间已经过去了。"
    opts = _audience_options(ctx)
    if len(opts) == 1:  # a group leader publishes for their own group
        ctx.advance("more", deadline=deadline.isoformat(), audience=list(opts[0]))
    else:
        ctx.advance("audience", deadline=deadline.isoformat())
    return ""


def _audience_step(ctx: Context, text: str) -> str:
    opts = _audience_options(ctx)
    if text.isdigit() and 1 <= int(text) <= len(opts):
        choice = opts[int(text) - 1]
    else:
        hits = [o for o in opts if text and text in o[0]]
        if len(hits) != 1:
            return "请回复序号。"
        choice = hits[0]
    if choice[1] in ("pick_branches", "pick_groups"):
        ctx.advance(choice[1])
    else:
        ctx.advance("more", audience=list(choice))
    return ""


def _pick_step(ctx: Context, text: str) -> str:
    """Several branches or groups, by number or (part of the) name: 1 3 / 内科 外科."""
    assert ctx.dialog is not None
    kind = ctx.dialog.step
    items = _pickable(ctx, kind)
    chosen: list[tuple[int, str]] = []
    for token in re.split(r"[\s,;]+", text):
        if not token:
            continue
        if token.isdigit() and 1 <= int(token) <= len(items):
            hits = [items[int(token) - 1]]
        else:
            hits = [it for it in items if it[1] == token] or [it for it in items if token in it[1]]
        if len(hits) != 1:
            return f"没找到“{token}”，或者它对应不止一个，请用序号。"
        if hits[0] not in chosen:
            chosen.append(hits[0])
    if not chosen:
        return "请至少选一个。"
    what, kind_ = ("指定分会", "branches") if kind == "pick_branches" else ("指定小组", "groups")
    label = f"{what}（{'、'.join(name for _, name in chosen)}）"
    ctx.advance("more", audience=[label, kind_, [i for i, _ in chosen]])
    return ""


def _more_step(ctx: Context, text: str) -> str:
    assert ctx.dialog is not None
    if text.lower() in _PUBLISH:
        _finish_create(ctx)
        return ""
    m = re.fullmatch(r"(\d)(?:\s+(.*))?", text, re.S)
    number = int(m[1]) if m else next((n for n, (_, words) in _MORE.items() if text in words), None)
    if number not in _MORE:
        return "没看懂。"
    step, content = _MORE[number][0], (m[2] or "").strip() if m else ""
    if step == "waitlist":
        ctx.advance("more", waitlist=not ctx.dialog.data.get("waitlist", True))
    elif step == "remind":
        ctx.advance("more", remind=not ctx.dialog.data.get("remind", False))
    elif step == "question" and len(ctx.dialog.data.get("questions") or []) >= MAX_QUESTIONS:
        return f"最多 {MAX_QUESTIONS} 个报名问题。"
    elif content:  # “1 自带球拍”: the setting and its value in one message
        return _CREATE_STEPS[step](ctx, content)
    else:
        ctx.advance(step)
    return ""


def _description_step(ctx: Context, text: str) -> str:
    if text not in _SKIP:
        ctx.advance("more", description=ctx.words_for(text)[:2000])
    else:
        ctx.advance("more")
    return ""


def _ends_step(ctx: Context, text: str) -> str:
    assert ctx.dialog is not None
    if text in _SKIP:
        ctx.advance("more", ends_at=None)
        return ""
    starts = datetime.fromisoformat(ctx.dialog.data["starts_at"])
    day, h, mi, has_time = parse_when(text, ctx.clock.today())
    if not has_time:
        return "没看懂结束时间。"
    ends = ctx.clock.at(day or ctx.clock.local(starts).date(), h, mi)  # 17:00 = the same day
    if ends <= starts:
        return f"结束时间要晚于开始时间（{ctx.clock.fmt(starts)}）。"
    ctx.advance("more", ends_at=ends.isoformat())
    return ""


def _question_step(ctx: Context, text: str) -> str:
    """项目：单打/双打 -> {label: 项目, options: [单打, 双打]}; 衣服尺码 -> a free answer."""
    assert ctx.dialog is not None
    if text in _SKIP:
        ctx.advance("more")
        return ""
    label, _, rest = text.partition(":")
    options = [ctx.words_for(o) for o in re.split(r"[/,;\s]+", rest) if o][:20]
    label = ctx.words_for(label.strip())
    if not label or len(label) > 50 or (rest and len(options) < 2):
        return "请写成“问题：选项/选项”，例如“项目：单打/双打”。"
    questions = list(ctx.dialog.data.get("questions") or [])
    questions.append({"key": f"q{len(questions) + 1}", "label": label, "options": [o[:50] for o in options]})
    ctx.advance("more", questions=questions)
    return ""


def _cutoff_step(ctx: Context, text: str) -> str:
    if text in _SKIP:
        ctx.advance("more", cutoff=None)
        return ""
    m = re.fullmatch(r"(?:开始前)?\s*(\d{1,3})\s*(?:个)?(?:小时|h)?", text)
    if not m or int(m[1]) > 720:
        return "请发 0 到 720 之间的小时数，例如 24。"
    ctx.advance("more", cutoff=int(m[1]) or None)
    return ""


_CREATE_STEPS = {
    "title": _title_step,
    "time": _time_step,
    "place": _place_step,
    "capacity": _capacity_step,
    "deadline": _deadline_step,
    "audience": _audience_step,
    "pick_branches": _pick_step,
    "pick_groups": _pick_step,
    "more": _more_step,
    "description": _description_step,
    "ends": _ends_step,
    "question": _question_step,
    "cutoff": _cutoff_step,
}


def _finish_create(ctx: Context) -> None:
    assert ctx.dialog is not None and ctx.member is not None
    d = ctx.dialog.data
    label, kind, ids = d["audience"]
    a = Activity(
        title=d["title"],
        description=d.get("description") or "",
        place=d.get("place", ""),
        starts_at=datetime.fromisoformat(d["starts_at"]),
        ends_at=datetime.fromisoformat(d["ends_at"]) if d.get("ends_at") else None,
        signup_deadline=datetime.fromisoformat(d["deadline"]),
        capacity=d.get("capacity"),
        taken=0,
        seq=0,
        waitlist_enabled=bool(d.get("waitlist", True)),
        companions_max=int(d.get("companions_max") or 0),
        questions=list(d.get("questions") or []),
        cancel_cutoff_hours=d.get("cutoff"),
        remind_unanswered=bool(d.get("remind", False)),
        audience_kind=kind,
        audience_ids=list(ids),
        status="open",
        created_by_id=ctx.member.id,
        created_at=ctx.clock.now(),
        updated_at=ctx.clock.now(),
    )
    ctx.session.add(a)
    ctx.session.flush()
    ctx.end_dialog()
    ctx.reply(
        f"活动已发布，编号 {a.id}，面向{label}。会员发送“报名 {a.id}”即可报名；您可以发送“报名名单 {a.id}”查看名单。"
    )
    card = detail_card(ctx, a)
    chats = audience_chats(ctx.session, a)
    if chats:
        button = Button(f"发到 {len(chats)} 个小组群", {"do": "post_activity", "activity": a.id}, "default")
        card = Card(card.title, card.lines, [*card.buttons, button])
    ctx.reply(card)


# ---- reminders (called by the scheduler every minute) ---------------------------------------------------
# When they go out (cli/schedule.py's preview lists them from these): to confirmed sign-ups made before the
# moment, a day and two hours before the start; one nudge, a day before the deadline, to the audience who have
# not answered (only for activities published at least that long before the deadline).
REMIND_DAY_BEFORE = timedelta(hours=24)
REMIND_HOURS_BEFORE = timedelta(hours=2)
NUDGE_BEFORE_DEADLINE = timedelta(hours=24)


def send_activity_reminders(bot, now: datetime | None = None) -> int:
    """The day before and two hours before the start, a private reminder to each confirmed member (once each)."""
    now = now or bot.clock.now()
    queued = 0
    with bot.db.transaction() as s:
        acts = s.scalars(
            select(Activity).where(
                Activity.status == "open",
                Activity.starts_at > now,
                Activity.starts_at <= now + REMIND_DAY_BEFORE,
            )
        ).all()
        for a in acts:
            left = a.starts_at - now
            kind = "2h" if left <= REMIND_HOURS_BEFORE else "day"
            for su in signups_of(s, a.id, ("confirmed",)):
                if kind == "2h" and su.created_at > a.starts_at - REMIND_HOURS_BEFORE:
                    continue  # signed up inside the window: they know
                if kind == "day" and su.created_at > a.starts_at - REMIND_DAY_BEFORE:
                    continue
                when = "明天" if bot.clock.local(a.starts_at).date() > bot.clock.local(now).date() else "今天"
                text = (
                    f"活动提醒：您报名的“{a.title}”将于{when} {bot.clock.local(a.starts_at):%H:%M} 开始"
                    + (f"，地点：{a.place}" if a.place else "")
                    + f"。到场后可发送“签到 {a.id}”签到；去不了请发送“取消报名 {a.id}”。"
                )
                key = f"activity:{a.id}:remind:{kind}:{su.member_id}"
                if s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
                    continue  # already queued by an earlier run
                queued += bot.notify_member(s, su.member, Text(text), key=key)
        queued += _nudge_unanswered(bot, s, now)
    return queued


def _nudge_unanswered(bot, s, now: datetime) -> int:
    """Activities with remind_unanswered: within 24 h of the deadline, one nudge to who has not answered."""
    acts = s.scalars(
        select(Activity).where(
            Activity.status == "open",
            Activity.remind_unanswered.is_(True),
            func.coalesce(Activity.signup_deadline, Activity.starts_at) > now,
            func.coalesce(Activity.signup_deadline, Activity.starts_at) <= now + NUDGE_BEFORE_DEADLINE,
        )
    ).all()
    queued = 0
    for a in acts:
        if a.created_at and a.deadline - a.created_at < NUDGE_BEFORE_DEADLINE:
            continue  # published less than a day before the deadline: everyone just heard of it
        answered = set(s.scalars(select(Signup.member_id).where(Signup.activity_id == a.id)))
        for m in audience_members(s, a):
            if m.id in answered:
                continue
            key = f"activity:{a.id}:nudge:{m.id}"
            if s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
                continue
            left = "" if a.capacity is None else f"，还剩 {max(a.capacity - a.taken, 0)} 个名额"
            queued += bot.notify_member(
                s,
                m,
                Text(
                    f"提醒：活动“{a.title}”（{bot.clock.fmt(a.starts_at)}）的报名将于 {bot.clock.fmt(a.deadline)} 截止{left}。"
                    f"想参加请发送“报名 {a.id}”；不参加可以忽略这条消息。"
                ),
                key=key,
            )
    return queued


def in_audience_of(a: Activity, m: Member) -> bool:  # re-exported for the console and the API
    return in_audience(a, m)
