"""Greetings: festivals (seeded from bot.calendar's built-in table, editable by staff), templates, settings,
a delivery log per greeting run, and the scheduler lease (exactly one scheduler runs the jobs).

Idempotency is NOT here: every greeting is an outbox row whose key names the occasion, e.g.
``birthday:{member_id}:{date}``; a run repeated, late or concurrent adds nothing twice.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow
from models.messaging import OutboxMessage

# Template kinds besides one per festival ("festival:<code>" lives on the Festival row itself).
TEMPLATE_DEFAULTS = {
    "birthday": "{name}，生日快乐！工会全体同仁祝您身体健康、工作顺利、阖家幸福！🎂",
    "birthday_milestone": "{name}，生日快乐！在这个特别的生日里，工会为您送上最诚挚的祝福，愿您福乐绵长、幸福安康！🎂",
    "milestone_notice": "提醒：{date}是{name}（{branch}）的逢十生日，请提前准备生日慰问。",
}
TEMPLATE_LABELS = {
    "birthday": "生日祝福",
    "birthday_milestone": "逢十生日祝福",
    "milestone_notice": "逢十生日提醒（发给分会主席，提前一天）",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
ALLOWED_PLACEHOLDERS = {"birthday": {"name"}, "birthday_milestone": {"name"},
                        "milestone_notice": {"name", "date", "branch"}, "festival": {"name"}}  # fmt: skip


class Festival(Base):
    __tablename__ = "festival"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    rule: Mapped[str] = mapped_column(String(32))  # solar:M-D | lunar:M-D | term:清明 | spring:N
    audience: Mapped[str] = mapped_column(String(16), default="all")
    delivery: Mapped[str] = mapped_column(String(8), default="private")  # private | group | both
    template: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    shift_to_workday: Mapped[bool] = mapped_column(Boolean, default=False)
    send_time: Mapped[str | None] = mapped_column(String(5))  # local HH:MM; None = the general send time
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GreetingTemplate(Base):
    __tablename__ = "greeting_template"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(32), unique=True
    )  # birthday | birthday_milestone | milestone_notice
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GreetingConfig(Base):
    """One row (id=1) of settings staff change in the console."""

    __tablename__ = "greeting_config"
    id: Mapped[int] = mapped_column(primary_key=True)
    send_time: Mapped[str] = mapped_column(String(5), default="09:00")  # local HH:MM
    catchup_until: Mapped[str] = mapped_column(
        String(5), default="20:00"
    )  # a missed run is made up until then
    birthday_shift_to_workday: Mapped[bool] = mapped_column(Boolean, default=False)
    milestone_notice: Mapped[bool] = mapped_column(Boolean, default=True)
    batch_private: Mapped[bool] = mapped_column(Boolean, default=True)  # identical festival text: batch rows
    meeting_reminder_minutes: Mapped[str] = mapped_column(String(64), default="1440,60")
    leader_note: Mapped[bool] = mapped_column(Boolean, default=False)  # morning list of today's birthdays
    leader_note_groups: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty: every group
    monthly_list_day: Mapped[int] = mapped_column(Integer, default=25)  # next month's list to clerks; 0 = off


class GreetingRun(Base):
    """Delivery log: what one kind of greeting on one day did (accumulated over the runs of that day)."""

    __tablename__ = "greeting_run"
    __table_args__ = (UniqueConstraint("kind", "occasion", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # birthday | festival | milestone_notice
    occasion: Mapped[str] = mapped_column(String(32))  # festival code, or "birthday"
    day: Mapped[date] = mapped_column(Date)  # the occasion's date (a shifted greeting keeps its real date)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    already: Mapped[int] = mapped_column(Integer, default=0)  # key existed: sent by an earlier run
    skipped_opt_out: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)  # no chat account on a connected platform
    runs: Mapped[int] = mapped_column(Integer, default=0)
    first_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # later runs that day skip at once
    note: Mapped[str | None] = mapped_column(String(200))  # why nothing went out, for the console


class SchedulerLease(Base):
    """Who runs the scheduled jobs. Taken by a conditional UPDATE, renewed by a job, taken over when expired."""

    __tablename__ = "scheduler_lease"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# repository helpers ----------------------------------------------------------------------------------------
def template_errors(text: str, kind: str = "birthday") -> list[str]:
    """Problems with a staff-edited template: unknown placeholders (the age is never offered)."""
    allowed = ALLOWED_PLACEHOLDERS.get(kind.split(":")[0], {"name"})
    bad = sorted({p for p in _PLACEHOLDER.findall(text) if p not in allowed})
    return [
        f"不支持的占位符 {{{p}}}（可用：{'、'.join('{' + a + '}' for a in sorted(allowed))}）" for p in bad
    ]


def render(text: str, **values: str) -> str:
    """Fill {name} (and the other allowed fields); unknown braces are left as they are, never an error."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


def ensure_seeded(session: Session) -> None:
    """Insert the built-in festivals, default templates and the config row where missing (never overwrites)."""
    from bot.calendar import FESTIVALS

    have = set(session.scalars(select(Festival.code)))
    for f in FESTIVALS:
        if f.code not in have:
            session.add(
                Festival(
                    code=f.code,
                    name=f.name,
                    rule=f.rule,
                    audience=f.audience,
                    delivery=f.delivery,
                    template=f.template,
                    shift_to_workday=f.shift_to_workday,
                    builtin=True,
                )
            )
    kinds = set(session.scalars(select(GreetingTemplate.kind)))
    for kind, text in TEMPLATE_DEFAULTS.items():
        if kind not in kinds:
            session.add(GreetingTemplate(kind=kind, text=text))
    if session.get(GreetingConfig, 1) is None:
        session.add(GreetingConfig(id=1))
    session.flush()


def config(session: Session) -> GreetingConfig:
    row = session.get(GreetingConfig, 1)
    if row is None:
        ensure_seeded(session)
        row = session.get(GreetingConfig, 1)
    assert row is not None
    return row


def template_text(session: Session, kind: str) -> str:
    text = session.scalar(select(GreetingTemplate.text).where(GreetingTemplate.kind == kind))
    return text or TEMPLATE_DEFAULTS[kind]


def run_row(session: Session, kind: str, occasion: str, day: date, now: datetime) -> GreetingRun:
    row = session.scalar(
        select(GreetingRun).where(
            GreetingRun.kind == kind, GreetingRun.occasion == occasion, GreetingRun.day == day
        )
    )
    if row is None:
        row = GreetingRun(kind=kind, occasion=occasion, day=day, queued=0, already=0, skipped_opt_out=0,
                          unreachable=0, runs=0, first_run_at=now, last_run_at=now)  # fmt: skip
        session.add(row)
    return row


RUN_KINDS = {
    "birthday": "生日祝福",
    "festival": "节日祝福",
    "milestone_notice": "逢十生日提醒",
    "leader_note": "组长生日提醒",
    "monthly_list": "下月生日名单",
}


def run_key_pattern(run: GreetingRun) -> str:
    """LIKE pattern of the outbox keys a run wrote (see the key formats in handlers/greetings.py)."""
    return {
        "festival": f"festival:{run.occasion}:{run.day}:%",
        "birthday": f"birthday:%:{run.day}",
        "monthly_list": f"monthly_list:{run.day:%Y-%m}:%",
    }.get(run.kind, f"{run.kind}:%:{run.day}:%")  # milestone_notice, leader_note: ...:{day}:{recipient}


def delivery_report(session: Session, run: GreetingRun) -> dict[str, int]:
    """The run's counters plus the outbox outcome of its messages: sent, pending (incl. retrying), failed (dead),
    counted per recipient (a WeCom batch row, target ``batch:N``, counts N)."""
    of_run = OutboxMessage.idempotency_key.like(run_key_pattern(run))
    batch = OutboxMessage.target_id.like("batch:%")
    counts = dict(
        session.execute(
            select(OutboxMessage.status, func.count()).where(of_run, ~batch).group_by(OutboxMessage.status)
        ).all()
    )
    for status, target in session.execute(select(OutboxMessage.status, OutboxMessage.target_id).where(of_run, batch)):
        counts[status] = counts.get(status, 0) + int(target.partition(":")[2] or 0)
    return {
        "queued": run.queued,
        "skipped_opt_out": run.skipped_opt_out,
        "unreachable": run.unreachable,
        "sent": counts.get("sent", 0),
        "pending": counts.get("pending", 0) + counts.get("sending", 0),
        "failed": counts.get("dead", 0),
    }
