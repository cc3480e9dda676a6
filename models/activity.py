"""Activities (活动) and sign-ups (报名): models and the repository functions that enforce the rules.

The rules live in the database, not in a read-then-write in Python:
- capacity: `activity.taken` counts confirmed people (members + companions); a place is taken only by the
  conditional `UPDATE activity SET taken = taken + n WHERE ... AND taken + n <= capacity` and its rowcount;
- one active sign-up per member and activity: a partial unique index (status != 'cancelled');
- first come, first served: `activity.seq` hands out sequence numbers in the same atomic UPDATE.
On PostgreSQL, cancellation and promotion lock the activity row first (SELECT ... FOR UPDATE) so every writer of one
activity takes its locks in the same order; on SQLite every transaction is BEGIN IMMEDIATE (writers serialised).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from models.base import Base, UTCDateTime, utcnow
from models.member import Member

AUDIENCE_KINDS = ("all", "branches", "groups", "women", "retirees", "list")
AUDIENCE_LABELS = {
    "all": "全体会员",
    "branches": "指定分会",
    "groups": "指定小组",
    "women": "女职工",
    "retirees": "离退休职工",
    "list": "指定人员",
}
ACTIVE = ("confirmed", "waitlisted")
STATUS_LABELS = {"confirmed": "已报名", "waitlisted": "候补", "cancelled": "已取消"}
MAX_QUESTIONS = 3


class Activity(Base):
    __tablename__ = "activity"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    place: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signup_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capacity: Mapped[int | None] = mapped_column(Integer)  # people, companions included; None = unlimited
    taken: Mapped[int] = mapped_column(Integer, default=0)  # confirmed people (members + companions)
    seq: Mapped[int] = mapped_column(Integer, default=0)  # last sequence number handed out (FCFS)
    waitlist_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    companions_max: Mapped[int] = mapped_column(Integer, default=0)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{key, label, options}]
    cancel_cutoff_hours: Mapped[int | None] = mapped_column(Integer)  # no cancelling within N h of the start
    audience_kind: Mapped[str] = mapped_column(String(12), default="all")
    audience_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    post_to_groups: Mapped[bool] = mapped_column(Boolean, default=False)
    # the day before the deadline, remind the audience members who have not answered yet
    remind_unanswered: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)  # open | cancelled
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    created_by: Mapped[Member | None] = relationship(foreign_keys=[created_by_id])

    @property
    def deadline(self) -> datetime:
        return self.signup_deadline or self.starts_at

    @property
    def places_left(self) -> int | None:
        return None if self.capacity is None else max(self.capacity - self.taken, 0)


class Signup(Base):
    __tablename__ = "signup"
    __table_args__ = (
        # One active sign-up per member and activity; cancelled rows stay as history.
        Index(
            "uq_signup_active_member",
            "activity_id",
            "member_id",
            unique=True,
            sqlite_where=text("status != 'cancelled'"),
            postgresql_where=text("status != 'cancelled'"),
        ),
        Index("ix_signup_activity_status_seq", "activity_id", "status", "seq"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    companions: Mapped[int] = mapped_column(Integer, default=0)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10))  # confirmed | waitlisted | cancelled
    seq: Mapped[int] = mapped_column(Integer)  # first come, first served
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    activity: Mapped[Activity] = relationship()
    member: Mapped[Member] = relationship(foreign_keys=[member_id])
    signed_by: Mapped[Member | None] = relationship(foreign_keys=[signed_by_id])

    @property
    def people(self) -> int:
        return 1 + self.companions


# ---- audience -------------------------------------------------------------------------------------------


def in_audience(activity: Activity, member: Member) -> bool:
    kind, ids = activity.audience_kind, set(activity.audience_ids or [])
    if kind == "all":
        return True
    if kind == "branches":
        return member.branch_id in ids
    if kind == "groups":
        return member.group_id in ids
    if kind == "women":
        return member.gender == "女"
    if kind == "retirees":
        return bool(member.retired)
    if kind == "list":
        return member.id in ids
    return False


def audience_members(s: Session, activity: Activity) -> list[Member]:
    q = select(Member).where(Member.active.is_(True))
    ids = list(activity.audience_ids or [])
    kind = activity.audience_kind
    if kind == "branches":
        q = q.where(Member.branch_id.in_(ids))
    elif kind == "groups":
        q = q.where(Member.group_id.in_(ids))
    elif kind == "women":
        q = q.where(Member.gender == "女")
    elif kind == "retirees":
        q = q.where(Member.retired.is_(True))
    elif kind == "list":
        q = q.where(Member.id.in_(ids))
    return list(s.scalars(q.order_by(Member.branch_id, Member.group_id, Member.employee_no)))


def open_activities(s: Session, now: datetime, member: Member | None = None) -> list[Activity]:
    """Open activities that have not started yet (and, given a member, that are meant for them)."""
    rows = s.scalars(
        select(Activity)
        .where(Activity.status == "open", Activity.starts_at > now)
        .order_by(Activity.starts_at, Activity.id)
    )
    return [a for a in rows if member is None or in_audience(a, member)]


# ---- sign-up ----------------------------------------------------------------------------------------------


@dataclass
class SignupResult:
    outcome: str  # confirmed | waitlisted | full | deadline | audience | duplicate | cancelled | companions
    #               | started | answers
    signup: Signup | None = None
    position: int | None = None  # place on the waitlist

    @property
    def ok(self) -> bool:
        return self.outcome in ("confirmed", "waitlisted")


def _lock_activity(s: Session, activity_id: int) -> None:
    """PostgreSQL: lock the activity row so writers of one activity queue in one order. SQLite: already serial."""
    if s.get_bind().dialect.name != "sqlite":
        s.execute(select(Activity.id).where(Activity.id == activity_id).with_for_update())


def active_signup(s: Session, activity_id: int, member_id: int) -> Signup | None:
    return s.scalar(
        select(Signup).where(
            Signup.activity_id == activity_id, Signup.member_id == member_id, Signup.status.in_(ACTIVE)
        )
    )


def check_signup(activity: Activity, member: Member, companions: int, now: datetime) -> str | None:
    """The refusals that need no write; None when the sign-up may be attempted."""
    if activity.status != "open":
        return "cancelled"
    if now >= activity.starts_at:
        return "started"
    if now >= activity.deadline:
        return "deadline"
    if not in_audience(activity, member):
        return "audience"
    if companions < 0 or companions > (activity.companions_max or 0):
        return "companions"
    return None


def validate_answers(activity: Activity, answers: dict[str, Any]) -> bool:
    for q in activity.questions or []:
        value = answers.get(q["key"])
        if value in (None, ""):
            return False
        if q.get("options") and value not in q["options"]:
            return False
    return True


def sign_up(
    s: Session,
    activity: Activity,
    member: Member,
    now: datetime,
    companions: int = 0,
    answers: dict[str, Any] | None = None,
    signed_by: Member | None = None,
    require_answers: bool = True,
) -> SignupResult:
    """Take a place (or a waitlist position) for `member`, atomically. Never overbooks, never duplicates."""
    refusal = check_signup(activity, member, companions, now)
    if refusal:
        return SignupResult(refusal)
    answers = answers or {}
    if require_answers and not validate_answers(activity, answers):
        return SignupResult("answers")
    existing = active_signup(s, activity.id, member.id)
    if existing is not None:
        return SignupResult("duplicate", existing)
    need = 1 + companions
    open_now = (
        (Activity.id == activity.id)
        & (Activity.status == "open")
        & (func.coalesce(Activity.signup_deadline, Activity.starts_at) > now)
    )
    try:
        with s.begin_nested():
            seq = s.execute(
                update(Activity)
                .where(
                    open_now,
                    (Activity.capacity.is_(None)) | (Activity.taken + need <= Activity.capacity),
                )
                .values(taken=Activity.taken + need, seq=Activity.seq + 1)
                .returning(Activity.seq)
                .execution_options(synchronize_session=False)
            ).scalar()
            status = "confirmed"
            if seq is None:
                if not activity.waitlist_enabled:
                    return SignupResult("full")
                seq = s.execute(
                    update(Activity)
                    .where(open_now)
                    .values(seq=Activity.seq + 1)
                    .returning(Activity.seq)
                    .execution_options(synchronize_session=False)
                ).scalar()
                if seq is None:  # cancelled or deadline moved meanwhile: say which
                    s.refresh(activity)
                    return SignupResult(check_signup(activity, member, companions, now) or "cancelled")
                status = "waitlisted"
            row = Signup(
                activity_id=activity.id,
                member_id=member.id,
                companions=companions,
                answers=answers,
                status=status,
                seq=seq,
                signed_by_id=signed_by.id if signed_by is not None and signed_by.id != member.id else None,
                created_at=now,
            )
            s.add(row)
            s.flush()
    except IntegrityError:  # a concurrent request of the same member won the unique index
        return SignupResult("duplicate", active_signup(s, activity.id, member.id))
    s.expire(activity)
    position = waitlist_position(s, row) if status == "waitlisted" else None
    return SignupResult(status, row, position)


def waitlist_position(s: Session, signup: Signup) -> int:
    return 1 + (
        s.scalar(
            select(func.count())
            .select_from(Signup)
            .where(
                Signup.activity_id == signup.activity_id,
                Signup.status == "waitlisted",
                Signup.seq < signup.seq,
            )
        )
        or 0
    )


@dataclass
class CancelResult:
    outcome: str  # cancelled | not_signed | cutoff | started
    signup: Signup | None = None
    promoted: list[Signup] | None = None


def cancel_signup(
    s: Session, activity: Activity, member: Member, now: datetime, force: bool = False
) -> CancelResult:
    """Cancel the member's active sign-up, free its places and promote from the waitlist.

    `force` (organisers) ignores the cancellation cut-off. A waiting member may always leave the waitlist.
    """
    _lock_activity(s, activity.id)
    row = active_signup(s, activity.id, member.id)
    if row is None:
        return CancelResult("not_signed")
    was = row.status
    if not force and activity.status == "open" and was == "confirmed":
        if now >= activity.starts_at:
            return CancelResult("started")
        cutoff = activity.cancel_cutoff_hours
        if cutoff and now >= activity.starts_at - timedelta(hours=cutoff):
            return CancelResult("cutoff")
    done = s.execute(
        update(Signup)
        .where(Signup.id == row.id, Signup.status == was)
        .values(status="cancelled", cancelled_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        return CancelResult("not_signed")
    s.expire(row)
    promoted: list[Signup] = []
    if was == "confirmed":
        s.execute(
            update(Activity)
            .where(Activity.id == activity.id)
            .values(taken=Activity.taken - row.people)
            .execution_options(synchronize_session=False)
        )
        promoted = promote_waitlist(s, activity, now)
    s.expire(activity)
    return CancelResult("cancelled", row, promoted)


def promote_waitlist(s: Session, activity: Activity, now: datetime) -> list[Signup]:
    """Fill free places with waiting members in order; one whose companions do not fit is skipped (stays first)."""
    if activity.status != "open" or now >= activity.starts_at:
        return []
    _lock_activity(s, activity.id)
    promoted: list[Signup] = []
    waiting = s.scalars(
        select(Signup)
        .where(Signup.activity_id == activity.id, Signup.status == "waitlisted")
        .order_by(Signup.seq)
    ).all()
    for cand in waiting:
        need = cand.people
        took = s.execute(
            update(Activity)
            .where(
                Activity.id == activity.id,
                (Activity.capacity.is_(None)) | (Activity.taken + need <= Activity.capacity),
            )
            .values(taken=Activity.taken + need)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not took:
            continue
        moved = s.execute(
            update(Signup)
            .where(Signup.id == cand.id, Signup.status == "waitlisted")
            .values(status="confirmed", promoted_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:  # cancelled meanwhile: give the places back
            s.execute(
                update(Activity)
                .where(Activity.id == activity.id)
                .values(taken=Activity.taken - need)
                .execution_options(synchronize_session=False)
            )
            continue
        s.expire(cand)
        promoted.append(cand)
    s.expire(activity)
    return promoted


def check_in(s: Session, activity: Activity, member: Member, now: datetime) -> str:
    """签到: ok | already | not_signed | waitlisted | too_early | too_late."""
    opens = activity.starts_at - timedelta(hours=1)
    closes = (activity.ends_at or activity.starts_at + timedelta(hours=3)) + timedelta(hours=1)
    if now < opens:
        return "too_early"
    if now > closes:
        return "too_late"
    row = active_signup(s, activity.id, member.id)
    if row is None:
        return "not_signed"
    if row.status != "confirmed":
        return "waitlisted"
    done = s.execute(
        update(Signup)
        .where(Signup.id == row.id, Signup.checked_in_at.is_(None))
        .values(checked_in_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    s.expire(row)
    return "ok" if done else "already"


def signups_of(s: Session, activity_id: int, statuses=ACTIVE) -> list[Signup]:
    """Sign-ups in first-come order, with their members (and branch, group) loaded in a few queries."""
    member = selectinload(Signup.member)
    return list(
        s.scalars(
            select(Signup)
            .options(
                member.selectinload(Member.branch),
                member.selectinload(Member.group),
                selectinload(Signup.signed_by),
            )
            .where(Signup.activity_id == activity_id, Signup.status.in_(statuses))
            .order_by(Signup.seq)
        )
    )


def counts(s: Session, activity_id: int) -> dict[str, int]:
    rows = s.execute(
        select(Signup.status, func.count(), func.coalesce(func.sum(Signup.companions), 0))
        .where(Signup.activity_id == activity_id)
        .group_by(Signup.status)
    ).all()
    out = {"confirmed": 0, "waitlisted": 0, "cancelled": 0, "confirmed_people": 0, "waitlisted_people": 0}
    for status, n, comp in rows:
        out[status] = n
        if status in ACTIVE:
            out[f"{status}_people"] = n + int(comp)
    return out


def cancel_activity(s: Session, activity: Activity, now: datetime) -> list[Signup]:
    """Cancel the whole activity; returns the active sign-ups (to be told)."""
    _lock_activity(s, activity.id)
    s.execute(
        update(Activity)
        .where(Activity.id == activity.id)
        .values(status="cancelled", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    s.expire(activity)
    return signups_of(s, activity.id)


# ---- export -----------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is prefixed with an apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _answer_cell(row: Signup, q: dict[str, Any]) -> str:
    """An answer, or why there is none (a sign-up added in the console is not asked the questions)."""
    value = (row.answers or {}).get(q["key"])
    if value not in (None, ""):
        return str(value)
    return "代报名，未填写" if row.signed_by_id else "未填写"


def export_xlsx(s: Session, activity: Activity, clock, members: set[int] | None = None) -> bytes:
    """The sign-up list as .xlsx bytes: 姓名, 工号, 分会, 小组, 携带家属, answers, 报名时间, 状态, 签到."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "报名名单"
    questions = activity.questions or []
    header = ["序号", "姓名", "工号", "分会", "小组", "携带家属", *[q["label"] for q in questions]]
    ws.append([safe_cell(v) for v in [*header, "报名时间", "状态", "代报人", "签到时间"]])
    rows = signups_of(s, activity.id, ("confirmed", "waitlisted", "cancelled"))
    n = 0
    for row in rows:
        m = row.member
        if members is not None and m.id not in members:
            continue
        n += 1
        local = clock.local(row.created_at).replace(tzinfo=None)
        checked = clock.local(row.checked_in_at).replace(tzinfo=None) if row.checked_in_at else ""
        values = [
            n,
            m.name,
            m.employee_no,
            m.branch.name if m.branch else "",
            m.group.name if m.group else "",
            row.companions,
            *[_answer_cell(row, q) for q in questions],
            local,
            STATUS_LABELS.get(row.status, row.status),
            row.signed_by.name if row.signed_by else "",
            checked,
        ]
        ws.append([safe_cell(v) for v in values])
    time_col = 7 + len(questions)
    for cell in ws.iter_cols(min_col=time_col, max_col=time_col, min_row=2):
        for c in cell:
            c.number_format = "yyyy-mm-dd hh:mm"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


DEMO_ACTIVITIES = (
    # title, days from today, local hour, audience, capacity, companions, questions, description, place
    ("职工羽毛球赛", 12, 14, "all", 32, 0, [{"key": "项目", "label": "项目", "options": ["单打", "双打"]}],
     "自带球拍，穿运动鞋。", "职工活动中心羽毛球馆"),
    ("冬季健步走", 9, 9, "all", None, 2, [], "沿滨江步道5公里，可带家属。", "滨江公园东门"),
    ("女职工手工编织沙龙", 16, 15, "women", 20, 0, [], "材料由工会准备。", "工会活动室"),
    ("退休职工迎新茶话会", 25, 10, "retirees", 60, 1, [], "欢迎老同志回家看看，可带老伴。", "行政楼三楼会议室"),
)  # fmt: skip


def seed_demo(session: Session, now: datetime, tz) -> int:
    """Open activities for the demo union (sign-ups open now, starting in one to four weeks), with a few members
    signed up for the first, so lists and relay lists have something to show. Safe to repeat."""
    existing = set(session.scalars(select(Activity.title)))
    today = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    added = 0
    for title, days, hour, audience, capacity, companions, questions, description, place in DEMO_ACTIVITIES:
        if title in existing:
            continue
        starts = (today + timedelta(days=days, hours=hour)).astimezone(now.tzinfo)
        activity = Activity(
            title=title, description=description, place=place, starts_at=starts,
            ends_at=starts + timedelta(hours=3), signup_deadline=starts - timedelta(days=2),
            capacity=capacity, companions_max=companions, questions=questions, audience_kind=audience,
            audience_ids=[], waitlist_enabled=True, taken=0, seq=0, created_at=now,
        )  # fmt: skip
        session.add(activity)
        session.flush()
        added += 1
        if added == 1:
            members = session.scalars(
                select(Member).where(Member.active.is_(True)).order_by(Member.id).offset(10).limit(12)
            )
            for i, member in enumerate(members):
                sign_up(session, activity, member, now, answers={"项目": "双打" if i % 3 else "单打"})
    return added
