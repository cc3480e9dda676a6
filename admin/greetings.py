"""Console pages for greetings (生日与节日祝福): the festival calendar (list with next dates, edit, add, disable),
birthday settings and templates, the delivery log per greeting run, next month's birthday list as .xlsx, and the
holiday-calendar warning (also on the dashboard, through the `holiday_warning()` template global).

Everything here needs `greetings.manage` (clerks and the chair). Templates are checked with
`models.greeting.template_errors` on save; the preview fills them for a sample member of the audience (server-side
on every page, live in the browser through static/greetings.js).
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, time, timedelta
from typing import Any
from urllib.parse import quote

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin import console_blueprint, nav, require
from bot import calendar as cal
from handlers.greetings import (
    audience_rows,
    audience_unknown,
    birthday_list_xlsx,
    festival_chats,
    holiday_warning,
    month_birthdays,
    next_month,
    next_occurrence,
)
from models.greeting import (
    RUN_KINDS,
    TEMPLATE_DEFAULTS,
    TEMPLATE_LABELS,
    Festival,
    GreetingRun,
    GreetingTemplate,
    config,
    delivery_report,
    ensure_seeded,
    render,
    run_key_pattern,
    template_errors,
)
from models.member import Branch, Member
from models.messaging import OutboxMessage

bp = console_blueprint("greetings_admin", __name__, url_prefix="/admin/greetings")
nav.register("生日与节日祝福", "greetings_admin.index", "greetings.manage", order=55)

DELIVERY_LABELS = {"private": "私聊每位会员", "group": "发到群聊", "both": "私聊 + 群聊"}
RULE_KINDS = {"solar": "公历日期", "lunar": "农历日期", "term": "节气", "spring": "春节前后"}
WEEKDAYS = "一二三四五六日"
SAMPLE_NAME = "张三"
_HM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def init_app(app) -> None:
    if "greetings_admin" not in app.blueprints:
        app.register_blueprint(bp)
        app.add_template_global(holiday_banner, "holiday_warning")


def _bot():
    return current_app.extensions["bot"]


def holiday_banner() -> str | None:
    """The chinesecalendar gap (a year it does not know yet: Monday–Friday is assumed), for the banner."""
    return holiday_warning(_bot())


def _day(d: date | None) -> str:
    return f"{d:%Y-%m-%d}（周{WEEKDAYS[d.weekday()]}）" if d else "—"


def _hm(value: str) -> time | None:
    m = _HM.match(value.strip())
    return time(int(m[1]), int(m[2])) if m else None


# ------------------------------------------------------------------------------------------------ festivals
@bp.get("/")
@require("greetings.manage")
def index():
    bot = _bot()
    today = bot.clock.today()
    with bot.db.transaction() as s:
        ensure_seeded(s)
        cfg = config(s)
        rows = []
        for f in s.scalars(select(Festival).order_by(Festival.id)):
            nxt = next_occurrence(f, today)
            rows.append(
                {
                    "f": f,
                    "rule": cal.rule_label(f.rule),
                    "next": _day(nxt[0]) if nxt else "规则无效",
                    "send": _day(nxt[1]) if nxt and nxt[1] != nxt[0] else "",
                    "audience": cal.AUDIENCES.get(f.audience, f.audience),
                    "unknown": audience_unknown(s, f.audience),
                    "delivery": DELIVERY_LABELS.get(f.delivery, f.delivery),
                    "time": f.send_time or cfg.send_time,
                }
            )
        rows.sort(key=lambda r: (not r["f"].enabled, r["next"]))
        return render_template("greetings_admin/index.html", rows=rows, cfg=cfg, today=today)


def _festival_form(f: Festival | None) -> dict[str, Any]:
    if f is None:
        return {"name": "", "rule_kind": "solar", "month": "", "day": "", "term": "", "offset": "0",
                "audience": "all", "delivery": "private", "template": "{name}，节日快乐！", "send_time": "",
                "shift_to_workday": False, "enabled": True}  # fmt: skip
    kind, args = "solar", ("", "")  # a broken rule (edited in the database) is shown empty to fix
    with contextlib.suppress(cal.RuleError):
        kind, args = cal.parse_rule(f.rule)
    return {
        "name": f.name,
        "rule_kind": kind,
        "month": str(args[0]) if kind in ("solar", "lunar") else "",
        "day": str(args[1]) if kind in ("solar", "lunar") else "",
        "term": args[0] if kind == "term" else "",
        "offset": str(args[0]) if kind == "spring" else "0",
        "audience": f.audience,
        "delivery": f.delivery,
        "template": f.template,
        "send_time": f.send_time or "",
        "shift_to_workday": f.shift_to_workday,
        "enabled": f.enabled,
    }


def _read_festival() -> tuple[dict[str, Any], dict[str, str], str]:
    """(raw form, errors by field, the rule string)."""
    fm = request.form
    raw: dict[str, Any] = {k: (fm.get(k) or "").strip() for k in
                           ("name", "rule_kind", "month", "day", "term", "offset", "audience", "delivery",
                            "template", "send_time")}  # fmt: skip
    raw["shift_to_workday"] = fm.get("shift_to_workday") == "1"
    raw["enabled"] = fm.get("enabled") == "1"
    errors: dict[str, str] = {}
    if not raw["name"] or len(raw["name"]) > 50:
        errors["name"] = "请填写节日名称（最多50个字）。"
    kind = raw["rule_kind"]
    if kind in ("solar", "lunar"):
        rule = f"{kind}:{raw['month']}-{raw['day']}"
    elif kind == "term":
        rule = f"term:{raw['term']}"
    elif kind == "spring":
        rule = f"spring:{raw['offset']}"
        if not re.fullmatch(r"-?\d{1,2}", raw["offset"]):
            errors["rule"] = "春节前后的天数请填 -30 到 60 之间的整数（前一天填 -1）。"
    else:
        rule = ""
        errors["rule"] = "请选择日期规则。"
    if "rule" not in errors:
        try:
            cal.parse_rule(rule)
            if kind == "spring" and not -30 <= int(raw["offset"]) <= 60:
                raise cal.RuleError("春节前后的天数请填 -30 到 60 之间的整数（前一天填 -1）。")
        except cal.RuleError as e:
            errors["rule"] = (
                str(e) if kind == "spring" else f"日期不对：{e}。公历如 5 月 12 日，农历如 8 月 15 日。"
            )
    if raw["audience"] not in cal.AUDIENCES:
        errors["audience"] = "请选择发送对象。"
    if raw["delivery"] not in DELIVERY_LABELS:
        errors["delivery"] = "请选择发送方式。"
    if not raw["template"]:
        errors["template"] = "请填写祝福语。"
    elif len(raw["template"]) > 500:
        errors["template"] = "祝福语最多500个字。"
    elif problems := template_errors(raw["template"], "festival"):
        errors["template"] = "；".join(problems)
    if raw["send_time"] and _hm(raw["send_time"]) is None:
        errors["send_time"] = "发送时间请写成 08:30 这样的格式；留空则用生日祝福的发送时间。"
    return raw, errors, rule


def _sample(s: Session, audience: str) -> str:
    """A real member of the audience for the preview (the first by id), else a placeholder name."""
    row = next(iter(audience_rows(s, audience, _bot().clock.today())), None)
    return row.name if row is not None else SAMPLE_NAME


def _festival_page(s: Session, f: Festival | None, form: dict[str, Any], errors: dict[str, str], status=200):
    sample = _sample(s, form["audience"] if form["audience"] in cal.AUDIENCES else "all")
    today = _bot().clock.today()
    audience = form["audience"] if form["audience"] in cal.AUDIENCES else "all"
    reach = sum(1 for _ in audience_rows(s, audience, today))
    chats = len(festival_chats(s, audience, today))
    return (
        render_template(
            "greetings_admin/festival.html",
            f=f,
            form=form,
            errors=errors,
            sample=sample,
            preview=render(form["template"], name=sample),
            group_preview=render(form["template"], name="各位会员"),
            reach=reach,
            chats=chats,
            unknown=audience_unknown(s, audience),
            audiences=cal.AUDIENCES,
            deliveries=DELIVERY_LABELS,
            rule_kinds=RULE_KINDS,
            terms=cal.SOLAR_TERMS,
        ),
        status,
    )


def _save_festival(f: Festival | None):
    bot = _bot()
    form, errors, rule = _read_festival()
    with bot.db.transaction() as s:
        if f is not None:
            f = s.merge(f)
        at, until = _hm(form["send_time"]), _hm(config(s).catchup_until)
        if at is not None and until is not None and at >= until:
            errors["send_time"] = f"发送时间要早于补发截止时间 {until:%H:%M}（在“生日祝福设置”里修改）。"
        if errors or "preview" in request.form:
            return _festival_page(s, f, form, errors, 422 if errors else 200)
        if f is None:
            n = (s.scalar(select(func.max(Festival.id))) or 0) + 1
            while s.scalar(select(Festival.id).where(Festival.code == f"custom{n}")):
                n += 1
            f = Festival(code=f"custom{n}", builtin=False)
            s.add(f)
        f.name, f.rule, f.audience, f.delivery = form["name"], rule, form["audience"], form["delivery"]
        f.template, f.send_time = form["template"], f"{at:%H:%M}" if at else None
        f.shift_to_workday, f.enabled = form["shift_to_workday"], form["enabled"]
        s.flush()
        flash(f"已保存“{f.name}”。", "ok")
    return redirect(url_for("greetings_admin.index"))


@bp.route("/festivals/new", methods=["GET", "POST"])
@require("greetings.manage")
def new_festival():
    if request.method == "POST":
        return _save_festival(None)
    with _bot().db.Session() as s:
        return _festival_page(s, None, _festival_form(None), {})


@bp.route("/festivals/<int:festival_id>", methods=["GET", "POST"])
@require("greetings.manage")
def edit_festival(festival_id: int):
    with _bot().db.Session() as s:
        f = s.get(Festival, festival_id)
        if f is None:
            abort(404)
        if request.method == "GET":
            return _festival_page(s, f, _festival_form(f), {})
        s.expunge(f)
    return _save_festival(f)


@bp.post("/festivals/<int:festival_id>/toggle")
@require("greetings.manage")
def toggle_festival(festival_id: int):
    with _bot().db.transaction() as s:
        f = s.get(Festival, festival_id)
        if f is None:
            abort(404)
        f.enabled = not f.enabled
        flash(f"“{f.name}”已{'启用' if f.enabled else '停用'}。", "ok")
    return redirect(url_for("greetings_admin.index"))


# ------------------------------------------------------------------------------------------------ birthdays
def _birthday_sample(s: Session) -> dict[str, str]:
    m = s.scalar(select(Member).where(Member.active.is_(True)).order_by(Member.id).limit(1))
    branch = m.branch.name if m is not None and m.branch else "内科分会"
    return {"name": m.name if m else SAMPLE_NAME, "date": "6月1日", "branch": branch}


def _birthday_page(s: Session, form: dict[str, Any], errors: dict[str, str], status=200):
    values = _birthday_sample(s)
    previews = {k: render(form["tpl_" + k], **values) for k in TEMPLATE_DEFAULTS}
    return (
        render_template(
            "greetings_admin/birthdays.html",
            form=form,
            errors=errors,
            values=values,
            previews=previews,
            labels=TEMPLATE_LABELS,
        ),
        status,
    )


@bp.route("/birthdays", methods=["GET", "POST"])
@require("greetings.manage")
def birthdays():
    bot = _bot()
    with bot.db.transaction() as s:
        ensure_seeded(s)
        cfg = config(s)
        tpls = {t.kind: t for t in s.scalars(select(GreetingTemplate))}
        if request.method == "GET":
            form = {
                "send_time": cfg.send_time,
                "catchup_until": cfg.catchup_until,
                "birthday_shift_to_workday": cfg.birthday_shift_to_workday,
                "milestone_notice": cfg.milestone_notice,
                "batch_private": cfg.batch_private,
                "leader_note": cfg.leader_note,
                "monthly_list_day": str(cfg.monthly_list_day),
                **{"tpl_" + k: tpls[k].text for k in TEMPLATE_DEFAULTS},
            }
            return _birthday_page(s, form, {})
        fm = request.form
        form = {k: (fm.get(k) or "").strip() for k in ("send_time", "catchup_until", "monthly_list_day")}
        for k in ("birthday_shift_to_workday", "milestone_notice", "batch_private", "leader_note"):
            form[k] = fm.get(k) == "1"
        errors: dict[str, str] = {}
        for k in TEMPLATE_DEFAULTS:
            text = form["tpl_" + k] = (fm.get("tpl_" + k) or "").strip()
            if not text:
                errors["tpl_" + k] = "祝福语不能为空。"
            elif len(text) > 500:
                errors["tpl_" + k] = "最多500个字。"
            elif problems := template_errors(text, k):
                errors["tpl_" + k] = "；".join(problems)
        send, until = _hm(form["send_time"]), _hm(form["catchup_until"])
        if send is None:
            errors["send_time"] = "请写成 09:00 这样的格式。"
        if until is None:
            errors["catchup_until"] = "请写成 20:00 这样的格式。"
        elif send is not None and until <= send:
            errors["catchup_until"] = "补发截止时间要晚于发送时间。"
        day = form["monthly_list_day"]
        if not day.isdigit() or not 0 <= int(day) <= 28:
            errors["monthly_list_day"] = "请填 1 到 28 之间的日期；填 0 不发。"
        if errors or "preview" in fm:
            return _birthday_page(s, form, errors, 422 if errors else 200)
        cfg.send_time, cfg.catchup_until = f"{send:%H:%M}", f"{until:%H:%M}"
        cfg.monthly_list_day = int(day)
        for k in ("birthday_shift_to_workday", "milestone_notice", "batch_private", "leader_note"):
            setattr(cfg, k, form[k])
        for k in TEMPLATE_DEFAULTS:
            tpls[k].text = form["tpl_" + k]
        flash("生日祝福设置已保存，下一次发送起生效。", "ok")
    return redirect(url_for("greetings_admin.birthdays"))


# ------------------------------------------------------------------------------------------------ delivery log
RUN_TITLES = {
    "birthday": "当天过生日的会员",
    "milestone_notice": "逢十生日（提前通知分会主席）",
    "leader_note": "今天的寿星（告诉小组长）",
}


def _run_title(run: GreetingRun, names: dict[str, str]) -> str:
    if run.kind == "festival":
        return names.get(run.occasion, run.occasion)
    if run.kind == "monthly_list":
        return f"{run.day.month}月生日名单（发给干事）"
    return RUN_TITLES.get(run.kind, run.kind)


@bp.get("/runs")
@require("greetings.manage")
def runs():
    with _bot().db.Session() as s:
        names = dict(s.execute(select(Festival.code, Festival.name)).all())
        rows = [
            {
                "run": r,
                "title": _run_title(r, names),
                "kind": RUN_KINDS.get(r.kind, r.kind),
                "report": delivery_report(s, r),
            }  # fmt: skip
            for r in s.scalars(
                select(GreetingRun).order_by(GreetingRun.day.desc(), GreetingRun.id.desc()).limit(200)
            )
        ]
        return render_template("greetings_admin/runs.html", rows=rows)


@bp.get("/runs/<int:run_id>")
@require("greetings.manage")
def run_detail(run_id: int):
    with _bot().db.Session() as s:
        run = s.get(GreetingRun, run_id)
        if run is None:
            abort(404)
        names = dict(s.execute(select(Festival.code, Festival.name)).all())
        problems = list(
            s.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.idempotency_key.like(run_key_pattern(run)),
                    OutboxMessage.status.in_(("dead", "pending", "sending")),
                )
                .order_by(OutboxMessage.status, OutboxMessage.id)
                .limit(500)
            )
        )
        who = dict(
            s.execute(
                select(Member.id, Member.name).where(
                    Member.id.in_({m.member_id for m in problems if m.member_id})
                )
            ).all()
        )
        return render_template(
            "greetings_admin/run.html",
            run=run,
            title=_run_title(run, names),
            report=delivery_report(s, run),
            problems=problems,
            who=who,
        )


# ------------------------------------------------------------------------------------------------ birthday list
def _month() -> date:
    value = request.args.get("month", "")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", value)
    if m and 2000 <= int(m[1]) <= 2100 and 1 <= int(m[2]) <= 12:
        return date(int(m[1]), int(m[2]), 1)
    return next_month(_bot().clock.today())[0]


@bp.get("/birthday-list")
@require("greetings.manage")
def birthday_list():
    first = _month()
    last = next_month(first)[0] - timedelta(days=1)
    with _bot().db.Session() as s:
        people = month_birthdays(s, first, last)
        per_branch: dict[tuple[int | None, str], list] = {}
        for m, d in people:
            key = (m.branch_id, m.branch.name if m.branch else "未分配分会")
            per_branch.setdefault(key, []).append((m, d, cal.is_milestone(cal.age_on(m, d))))
        return render_template(
            "greetings_admin/birthday_list.html",
            first=first,
            per_branch=per_branch,
            total=len(people),
            branches=list(s.scalars(select(Branch).order_by(Branch.name))),
        )


@bp.get("/birthday-list.xlsx")
@require("greetings.manage")
def birthday_list_download():
    first = _month()
    branch = request.args.get("branch", "")
    branch_id = int(branch) if branch.isdigit() and len(branch) < 12 else None
    with _bot().db.Session() as s:
        label = "全部分会"
        if branch_id is not None:
            b = s.get(Branch, branch_id)
            if b is None:
                abort(404)
            label = b.name
        data = birthday_list_xlsx(s, first.year, first.month, branch_id)
    name = f"{first.year}年{first.month}月生日名单-{label}.xlsx"
    resp = Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"birthdays-{first:%Y-%m}.xlsx\"; filename*=UTF-8''{quote(name)}"
    )
    return resp
