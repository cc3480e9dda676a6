"""Hardship cases (困难帮扶), hardship records (困难职工档案), care events (五必访) and the case audit log.

Privacy: every free text a member or reviewer writes (story, household, help details, contact, notes, reasons)
and every amount is an `EncryptedText` / `EncryptedDecimal` column (models/crypto.py). Plain columns hold only
what statistics and workflow need: numbers, types, statuses, dates, branch.

Who may see a case is decided in ONE place: `can_see_case(viewer, case)` (levels below). Every view, change and
export of a case writes an `AuditLog` row (`audit(...)`).

Workflow (`transition`): submitted → verifying (branch chair's verification) → decided (approved | declined) →
delivered → followed_up → closed. A declined case is closed right after the decision. There are no shortcuts for
an approved case (issue 7: followed through to help delivered, then a follow-up visit): it closes only after
delivery and follow-up; a follow-up that finds nobody is recorded as such (回访 … 联系不上).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import IntEnum

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from bot.permissions import can
from models.base import Base, UTCDateTime, utcnow
from models.counters import next_value
from models.crypto import EncryptedDecimal, EncryptedText
from models.member import Branch, Group, Member, MemberRole

CASE_TYPES = ("大病", "意外伤害", "家庭变故", "子女就学", "生活困难", "其他")
HELP_KINDS = ("资金补助", "物资帮助", "医疗互助理赔协助", "其他")
AID_KINDS = ("慰问金", "帮扶金", "助学金", "医疗救助金", "物资")
STATUSES = ("submitted", "verifying", "decided", "delivered", "followed_up", "closed")
STATUS_LABELS = {
    "submitted": "已提交，等待核实",
    "verifying": "已核实，等待审批",
    "decided": "已审批",
    "delivered": "帮扶已发放",
    "followed_up": "已回访",
    "closed": "已办结",
}
TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"verifying"}),
    "verifying": frozenset({"decided"}),
    "decided": frozenset({"delivered", "closed"}),  # closed: a declined case only
    "delivered": frozenset({"followed_up"}),
    "followed_up": frozenset({"closed"}),
    "closed": frozenset(),
}
NEXT_STEP = {  # what to type next, in refusals of an out-of-order step
    "submitted": "分会核实（核实 {n} 家访 日期 情况）",
    "verifying": "审批（审批 {n} 同意 慰问金 2000 / 审批 {n} 不同意 理由）",
    "decided": "记录发放（发放 {n} 金额）",
    "delivered": "回访（回访 {n} 情况）",
    "followed_up": "结案（结案 {n}）",
}
CARE_TYPES = ("hospital", "illness", "marriage", "childbirth", "bereavement", "accident", "other")
CARE_LABELS = {
    "hospital": "住院",
    "illness": "生病",
    "marriage": "结婚",
    "childbirth": "生育",
    "bereavement": "丧事",
    "accident": "意外",
    "other": "其他",
}
CARE_DUE_DAYS = {"marriage": 7, "childbirth": 7, "other": 7}  # all others: 3 days
DEFAULT_CARE_DUE_DAYS = 3
NUMBER_RE = re.compile(r"KN\s*(\d{4})\s*-\s*(\d{1,4})", re.IGNORECASE)


class TransitionError(ValueError):
    """A workflow step that is not allowed now; the message is Chinese and safe to show."""


# ============================================================================================== tables
class HardshipCounter(Base):
    __tablename__ = "hardship_counter"
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(Integer, default=0)


class HardshipCase(Base):
    __tablename__ = "hardship_case"
    __table_args__ = (UniqueConstraint("year", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"), index=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("union_group.id"))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    proxy: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[str] = mapped_column(String(16))
    story: Mapped[str | None] = mapped_column(EncryptedText)
    household: Mapped[str | None] = mapped_column(EncryptedText)
    help_kinds: Mapped[str] = mapped_column(String(100), default="")  # "资金补助,物资帮助"
    help_details: Mapped[str | None] = mapped_column(EncryptedText)
    contact: Mapped[str | None] = mapped_column(EncryptedText)
    status: Mapped[str] = mapped_column(String(16), default="submitted", index=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # verification (核实 / 家访)
    visit_date: Mapped[date | None] = mapped_column(Date)
    verify_notes: Mapped[str | None] = mapped_column(EncryptedText)
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # decision (审批)
    decision: Mapped[str | None] = mapped_column(String(10))  # approved | declined
    aid_kind: Mapped[str | None] = mapped_column(String(20))
    aid_amount: Mapped[Decimal | None] = mapped_column(EncryptedDecimal)
    decision_reason: Mapped[str | None] = mapped_column(EncryptedText)  # told to the member
    decision_note: Mapped[str | None] = mapped_column(EncryptedText)  # internal
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # delivery (发放)
    delivered_on: Mapped[date | None] = mapped_column(Date)
    delivered_amount: Mapped[Decimal | None] = mapped_column(EncryptedDecimal)
    delivered_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # follow-up (回访)
    follow_up_due: Mapped[date | None] = mapped_column(Date)
    followed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    follow_up_notes: Mapped[str | None] = mapped_column(EncryptedText)
    follow_up_reminded_on: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    member: Mapped[Member | None] = relationship(foreign_keys=[member_id])
    reported_by: Mapped[Member | None] = relationship(foreign_keys=[reported_by_id])
    branch: Mapped[Branch | None] = relationship()
    group: Mapped[Group | None] = relationship()
    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan"
    )

    @property
    def number(self) -> str:
        return f"KN{self.year}-{self.seq:03d}"

    @property
    def status_label(self) -> str:
        if self.status == "decided" or (self.status == "closed" and self.decision == "declined"):
            return {"approved": "已审批同意", "declined": "未获批准"}.get(self.decision or "", "已审批")
        return STATUS_LABELS.get(self.status, self.status)


class CaseEvent(Base):
    """The case timeline. `message` is what the member was told (plain wording); `note` may be internal."""

    __tablename__ = "hardship_case_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(EncryptedText)
    internal: Mapped[bool] = mapped_column(Boolean, default=True)  # the note is for reviewers only
    message: Mapped[str | None] = mapped_column(EncryptedText)  # what the member was told
    case: Mapped[HardshipCase] = relationship(back_populates="events")
    actor: Mapped[Member | None] = relationship()


class HardshipRecord(Base):
    """困难职工档案: one per member while in hardship; re-verified every year (动态管理)."""

    __tablename__ = "hardship_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"), index=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("hardship_case.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(16))
    since: Mapped[date] = mapped_column(Date)
    last_verified: Mapped[date] = mapped_column(Date)
    next_review: Mapped[date] = mapped_column(Date, index=True)
    review_asked_for: Mapped[date | None] = mapped_column(Date)  # the next_review a reminder went out for
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    ended_on: Mapped[date | None] = mapped_column(Date)
    end_reason: Mapped[str | None] = mapped_column(EncryptedText)
    member: Mapped[Member | None] = relationship()
    case: Mapped[HardshipCase | None] = relationship()


class CareEvent(Base):
    """A care event (五必访) and its visit task: due date, reminders until done, the visit record."""

    __tablename__ = "care_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"), index=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("union_group.id"))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    details: Mapped[str | None] = mapped_column(EncryptedText)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_on: Mapped[date] = mapped_column(Date, index=True)
    # open | done (visit recorded) | expired (still open when the retention limit passed: never visited)
    status: Mapped[str] = mapped_column(String(8), default="open", index=True)
    last_reminded_on: Mapped[date | None] = mapped_column(Date)
    visited_on: Mapped[date | None] = mapped_column(Date)
    visitors: Mapped[str | None] = mapped_column(String(200))
    gift: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[Decimal | None] = mapped_column(EncryptedDecimal)  # care payment (慰问金)
    visit_note: Mapped[str | None] = mapped_column(EncryptedText)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    member: Mapped[Member | None] = relationship(foreign_keys=[member_id])
    reported_by: Mapped[Member | None] = relationship(foreign_keys=[reported_by_id])
    branch: Mapped[Branch | None] = relationship()
    group: Mapped[Group | None] = relationship()

    @property
    def label(self) -> str:
        return CARE_LABELS.get(self.type, self.type)


class AuditLog(Base):
    """Who viewed, changed or exported case data, and when. No case content, only references."""

    __tablename__ = "care_audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)  # member id (no FK: the log outlives members)
    actor_label: Mapped[str] = mapped_column(String(100), default="")  # name, or "console:<username>"
    action: Mapped[str] = mapped_column(String(10))  # view | change | export
    subject: Mapped[str] = mapped_column(String(16), default="case")  # case | care | record | stats
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[str] = mapped_column(String(200), default="")


# ============================================================================================== access
class Access(IntEnum):
    """How much of a case a viewer may see. OWN: the member's own case — status and the plain messages they
    were sent, never reviewers' notes. EXISTS: that the case exists (number, member, open/closed)."""

    NONE = 0
    EXISTS = 1
    OWN = 2
    FULL = 3


OPEN_FOR_BRANCH = ("submitted", "verifying")


def can_see_case(viewer: Member | None, case: HardshipCase) -> Access:
    """THE permission table for case data (tested cell by cell in tests/test_care_permissions.py).

    | viewer                                        | level  |
    |-----------------------------------------------|--------|
    | nobody / inactive member                      | NONE   |
    | the case's own member (whatever their roles)  | OWN    |
    | hardship_reviewer, chair (cases.review)       | FULL   |
    | branch chair of the case's branch, while      | FULL   |
    |   submitted / verifying                       |        |
    | branch chair of the case's branch, later      | EXISTS |
    | group leader of the member's group            | EXISTS |
    | clerk (arranges visits and payments)          | EXISTS |
    | admin (manages accounts, not health data)     | EXISTS |
    | the proxy reporter (代报)                      | EXISTS |
    | anyone else (incl. other branches' chairs)    | NONE   |
    An anonymised case: FULL roles keep FULL (the data is gone anyway), everybody else NONE.
    """
    if viewer is None or not viewer.active:
        return Access.NONE
    roles = viewer.roles
    if case.anonymised_at is not None:
        return Access.FULL if can(roles, "cases.review") else Access.NONE
    if case.member_id is not None and case.member_id == viewer.id:
        return Access.OWN
    if can(roles, "cases.review"):
        return Access.FULL
    same_branch = case.branch_id is not None and viewer.branch_id == case.branch_id
    if can(roles, "cases.verify") and same_branch:
        return Access.FULL if case.status in OPEN_FOR_BRANCH else Access.EXISTS
    if can(roles, "cases.overview_group") and case.group_id is not None and viewer.group_id == case.group_id:
        return Access.EXISTS
    if can(roles, "cases.overview"):
        return Access.EXISTS
    if case.reported_by_id is not None and case.reported_by_id == viewer.id:
        return Access.EXISTS
    return Access.NONE


def may_act(viewer: Member | None, case: HardshipCase, step: str) -> bool:
    """Who may take a workflow step (never on their own case)."""
    if viewer is None or not viewer.active or case.anonymised_at is not None:
        return False
    if case.member_id == viewer.id:
        return False
    roles = viewer.roles
    reviewer = can(roles, "cases.review")
    branch_chair = can(roles, "cases.verify") and case.branch_id is not None and viewer.branch_id == case.branch_id
    if step == "verify":
        return reviewer or branch_chair
    if step == "follow_up":
        return reviewer or branch_chair
    return reviewer  # decide, deliver, close


# ============================================================================================== repository
def parse_number(text: str) -> tuple[int, int] | None:
    m = NUMBER_RE.search(text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_case(session: Session, text: str) -> HardshipCase | None:
    parsed = parse_number(text)
    if parsed is None:
        return None
    return session.scalar(select(HardshipCase).where(HardshipCase.year == parsed[0], HardshipCase.seq == parsed[1]))


def allocate_seq(session: Session, year: int) -> int:
    """The next case number of `year` (models.counters: atomic, gapless, no duplicates under concurrency)."""
    return next_value(session, HardshipCounter, year=year)


def audit(
    session: Session,
    actor: Member | None,
    action: str,
    *,
    case: HardshipCase | None = None,
    subject: str = "case",
    detail: str = "",
    at: datetime | None = None,
    actor_label: str | None = None,
) -> AuditLog:
    row = AuditLog(
        at=at or utcnow(),
        actor_id=actor.id if isinstance(actor, Member) else None,
        actor_label=(actor_label or (actor.name if actor is not None else "system"))[:100],
        action=action,
        subject=subject,
        case_id=case.id if case is not None else None,
        detail=detail[:200],
    )
    session.add(row)
    return row


def submit_case(
    session: Session,
    *,
    member: Member,
    reported_by: Member,
    type: str,
    story: str,
    household: str | None,
    help_kinds: list[str],
    help_details: str | None,
    contact: str | None,
    now: datetime,
    year: int,
) -> HardshipCase:
    if type not in CASE_TYPES:
        raise TransitionError("困难类型不对。")
    case = HardshipCase(
        year=year,
        seq=allocate_seq(session, year),
        member_id=member.id,
        branch_id=member.branch_id,
        group_id=member.group_id,
        reported_by_id=reported_by.id,
        proxy=reported_by.id != member.id,
        type=type,
        story=story,
        household=household or None,
        help_kinds=",".join(k for k in help_kinds if k in HELP_KINDS),
        help_details=help_details or None,
        contact=contact or None,
        status="submitted",
        submitted_at=now,
    )
    session.add(case)
    session.flush()
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=reported_by.id,
            from_status=None,
            to_status="submitted",
            internal=False,
            message=f"已收到您的困难帮扶申请 {case.number}。",
            note="代报" if case.proxy else None,
        )
    )
    audit(session, reported_by, "change", case=case, detail="submitted" + (" (proxy)" if case.proxy else ""), at=now)
    return case


def transition(
    session: Session,
    case: HardshipCase,
    to: str,
    actor: Member | None,
    *,
    now: datetime,
    note: str | None = None,
    message: str | None = None,
) -> CaseEvent:
    frm = case.status
    allowed = to in TRANSITIONS.get(frm, frozenset())
    if frm == "decided" and to == "closed" and case.decision != "declined":
        allowed = False
    if not allowed:
        hint = NEXT_STEP.get(frm)
        raise TransitionError(
            f"{case.number} 当前是“{case.status_label}”，现在不能做这一步。"
            + (f"下一步是：{hint.format(n=case.number)}" if hint else "")
        )
    case.status = to
    if to == "closed":
        case.closed_at = now
    ev = CaseEvent(
        case_id=case.id,
        at=now,
        actor_id=actor.id if isinstance(actor, Member) else None,
        from_status=frm,
        to_status=to,
        note=note or None,
        internal=True,
        message=message,
    )
    session.add(ev)
    audit(session, actor, "change", case=case, detail=f"{frm}->{to}", at=now)
    session.flush()
    return ev


def members_with_role(session: Session, role: str, *, branch_id=None, group_id=None) -> list[Member]:
    q = select(Member).join(MemberRole).where(MemberRole.role == role, Member.active.is_(True))
    if branch_id is not None:
        q = q.where(Member.branch_id == branch_id)
    if group_id is not None:
        q = q.where(Member.group_id == group_id)
    return list(session.scalars(q.distinct().order_by(Member.id)))


def ensure_record(session: Session, case: HardshipCase, today: date) -> HardshipRecord | None:
    """An approved case puts the member on (or refreshes) the hardship record (困难职工档案)."""
    if case.member_id is None:
        return None
    rec = session.scalar(
        select(HardshipRecord).where(HardshipRecord.member_id == case.member_id, HardshipRecord.active.is_(True))
    )
    if rec is None:
        rec = HardshipRecord(member_id=case.member_id, branch_id=case.branch_id, since=today, type=case.type)
        session.add(rec)
    rec.case_id = case.id
    rec.type = case.type
    rec.last_verified = today
    rec.next_review = _plus_year(today)
    rec.review_asked_for = None
    session.flush()
    return rec


def _plus_year(d: date) -> date:
    try:
        return d.replace(year=d.year + 1)
    except ValueError:  # 2-29
        return d.replace(year=d.year + 1, day=28)


def plus_year(d: date) -> date:
    return _plus_year(d)


def care_due(type: str, today: date, when: date | None = None) -> date:
    days = CARE_DUE_DAYS.get(type, DEFAULT_CARE_DUE_DAYS)
    due = today + timedelta(days=days)
    if when is not None and when >= today:  # 下周结婚: visit by the day itself
        due = max(when, today + timedelta(days=1))
    return due


@dataclass
class WarmthEntry:
    """One member to visit in the warmth campaign (送温暖): on the hardship record, retired, or both."""

    member_id: int
    name: str
    branch: str
    group: str
    type: str | None  # the hardship type when on the record
    since: date | None  # on the record since
    retired: bool

    @property
    def reason(self) -> str:
        parts = [f"困难职工（{self.type}）"] if self.type else []
        return "、".join(parts + (["退休职工"] if self.retired else []))


def warmth_campaign_list(session: Session, year: int) -> list[WarmthEntry]:
    """送温暖 before 春节 of `year`: active members on the hardship record (active records started before that
    year's end) and retired members, each once, by branch, group and name."""
    found: dict[int, WarmthEntry] = {}
    for r in session.scalars(
        select(HardshipRecord)
        .where(HardshipRecord.active.is_(True), HardshipRecord.member_id.is_not(None))
        .where(HardshipRecord.since <= date(year, 12, 31))
    ):
        m = r.member
        if m is not None and m.active:
            found[m.id] = _warmth_entry(m, r)
    for m in session.scalars(select(Member).where(Member.active.is_(True), Member.retired.is_(True))):
        found.setdefault(m.id, _warmth_entry(m, None))
    return sorted(found.values(), key=lambda e: (e.branch, e.group, e.name, e.member_id))


def _warmth_entry(m: Member, rec: HardshipRecord | None) -> WarmthEntry:
    return WarmthEntry(
        member_id=m.id,
        name=m.name,
        branch=m.branch.name if m.branch else "",
        group=m.group.name if m.group else "",
        type=rec.type if rec else None,
        since=rec.since if rec else None,
        retired=bool(m.retired),
    )


ANON_MEMBER = "会员本人（已匿名）"
ANON_DETAIL = "（已匿名）"


def retention_cutoff(now: datetime, years: int) -> datetime:
    """The same moment `years` calendar years before `now` (29 February becomes the 28th)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def _unlink_audit(session: Session, rows, member: Member | None) -> None:
    """Audit rows stay (the counts of views and changes), but no longer name the member: their own actions lose
    the actor and the detail; staff rows keep their actor, and any mention of the member's name goes."""
    for row in rows:
        if member is not None and row.actor_id == member.id:
            row.actor_id, row.actor_label, row.detail = None, ANON_MEMBER, ANON_DETAIL
        elif member is not None and member.name and member.name in row.detail:
            row.detail = ANON_DETAIL


def anonymise_case(session: Session, case: HardshipCase, now: datetime) -> None:
    """Wipe everything personal; keep year, type, branch, status, dates and amounts for the statistics. The audit
    log keeps its rows (who of the staff viewed or changed the case, when) but loses the member's identity."""
    member = case.member
    _unlink_audit(session, session.scalars(select(AuditLog).where(AuditLog.case_id == case.id)), member)
    for name in ("story", "household", "help_details", "contact", "verify_notes", "decision_reason",
                 "decision_note", "follow_up_notes"):  # fmt: skip
        setattr(case, name, None)
    case.member_id = None
    case.reported_by_id = None
    case.group_id = None
    case.verified_by_id = case.decided_by_id = case.delivered_by_id = None
    for ev in case.events:
        ev.note = None
        ev.message = None
        ev.actor_id = None
    case.anonymised_at = now


def anonymise_care_event(session: Session, ev: CareEvent, now: datetime) -> None:
    """Wipe the personal fields of a care event (the amount, type, branch and dates stay for the statistics) and
    the member's identity from its audit rows."""
    rows = session.scalars(
        select(AuditLog).where(AuditLog.subject == "care", AuditLog.detail.startswith(f"care {ev.id} "))
    )
    _unlink_audit(session, rows, ev.member)
    ev.details = None
    ev.visit_note = None
    ev.visitors = None
    ev.gift = None
    ev.member_id = None
    ev.reported_by_id = None
    ev.done_by_id = None
    ev.group_id = None
    ev.anonymised_at = now
