"""Congress proposals (职代会提案) and suggestions (合理化建议): models, numbering and the state machine.

The cycle (glossary names): a delegate submits a proposal, co-signers co-sign it within the congress's collection
window, the proposal committee reviews it (accept = 立案 with a lead handling department, decline = it becomes a
suggestion, or merge into another proposal), the departments reply, the proposer evaluates the reply, and an
unsatisfied evaluation sends it back to the department once. Suggestions follow a lighter path.

Numbering: `allocate_number` takes the next value of a per-series counter row with one atomic
`UPDATE proposal_counter SET value = value + 1 ... RETURNING value` (row-locked on PostgreSQL, serialised by
BEGIN IMMEDIATE on SQLite), so concurrent submissions never get duplicate numbers and a rolled-back submission
rolls its number back too (no gaps).

Anonymity: an anonymous suggestion has `proposer_id = NULL` and no event names its sender. The only link to the
sender is an `AnonymousSender` row holding `HMAC-SHA256(SECRET_KEY, "anon:<proposal id>:<member id>")` — no member
id, no foreign key. Console pages, exports, the API and the timeline all read `Proposal`/`ProposalEvent` and can
only show "匿名". The notification code (`anonymous_sender`) finds the recipient by recomputing the HMAC for the
members who have a chat identity; nothing else calls it. Without the secret key even a database dump does not
link the row to a member. The chat side also cuts the trail in the message logs (handlers/proposals.py): the
dialog's inbound rows lose user id, chat id and text, the receipt names no number, answers to the sender go out
with an opaque key and no member id, and only the day of submission is stored. Every outbox row of an anonymous
flow (the dialog's replies, the sender's own look-ups, the answers pushed to them) is marked `sensitive`: once sent
or given up it keeps neither recipient nor content (bot/outbox.py), and the console lists a failed one without
either ("涉及隐私，内容已隐去"). Residual: while being delivered such a row holds the sender's chat id; rotating
SECRET_KEY makes old anonymous suggestions unanswerable in chat.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, UTCDateTime, utcnow
from models.counters import next_value
from models.member import Member, PlatformIdentity

DEFAULT_CATEGORIES = ["工资福利", "医疗卫生", "后勤保障", "劳动保护", "民主管理", "其他"]
KINDS = ("proposal", "suggestion")
KIND_LABELS = {"proposal": "提案", "suggestion": "建议"}
SUGGESTION_PREFIX = "建"  # suggestion numbers read 建2027-003

STATUS_LABELS = {
    "submitted": "已提交",
    "cosigning": "征集附议中",
    "under_review": "待审查",
    "accepted": "已立案，承办中",
    "declined": "不予立案（转为建议）",
    "merged": "已合并",
    "replied": "已答复，待评价",
    "evaluated": "已评价",
    "rehandling": "重新办理中",
    "closed": "已办结",
    "received": "已收到",
    "answered": "已答复",
}

# The state machine: status -> statuses it may move to. Nothing else changes Proposal.status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"cosigning", "under_review", "received"}),
    "cosigning": frozenset({"under_review", "received"}),
    "under_review": frozenset({"accepted", "declined", "merged"}),
    "accepted": frozenset({"replied"}),
    "replied": frozenset({"evaluated", "closed"}),
    "evaluated": frozenset({"rehandling", "closed"}),
    "rehandling": frozenset({"replied"}),
    "merged": frozenset(),
    "closed": frozenset(),
    # suggestions (and proposals turned into suggestions)
    "received": frozenset({"answered"}),
    "declined": frozenset({"answered"}),
    "answered": frozenset({"closed"}),
}
STATUSES = tuple(TRANSITIONS)
AWAITING_REPLY = ("accepted", "rehandling")
OPEN_PROPOSAL = ("submitted", "cosigning", "under_review", "accepted", "replied", "evaluated", "rehandling")

REPLY_KINDS = {"done": "已办结", "in_progress": "办理中", "cannot_now": "暂不能办"}
_NUMBER = re.compile(r"(建?[A-Za-z0-9]+)\s*-\s*(\d{1,4})(?!\d)")
RATINGS = {"satisfied": "满意", "partly": "基本满意", "unsatisfied": "不满意"}
CLOSE_AFTER_DAYS = 15


class TransitionError(ValueError):
    """An illegal move; the message is Chinese and can be shown to the member as is."""


class Congress(Base):
    """A congress session (届次) with its proposal rules."""

    __tablename__ = "congress"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))  # 第三届第二次
    year: Mapped[int] = mapped_column(Integer)
    # number prefix when numbering is per session (letters and digits, e.g. "S32"); per year uses `year`
    code: Mapped[str] = mapped_column(String(16), default="")
    collect_start: Mapped[datetime] = mapped_column(UTCDateTime)
    collect_end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    cosigners_required: Mapped[int] = mapped_column(Integer, default=2)
    numbering: Mapped[str] = mapped_column(String(8), default="year")  # year | session
    delegates_only: Mapped[bool] = mapped_column(Boolean, default=True)
    categories: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(DEFAULT_CATEGORIES))
    reply_days: Mapped[int] = mapped_column(Integer, default=30)  # default due date after acceptance
    rehandle_days: Mapped[int] = mapped_column(Integer, default=15)
    chase_before_days: Mapped[int] = mapped_column(Integer, default=3)
    chase_every_days: Mapped[int] = mapped_column(Integer, default=3)
    escalate_after_days: Mapped[int] = mapped_column(Integer, default=14)
    # a reply the proposer does not evaluate, and an answered suggestion, close after this many days
    close_after_days: Mapped[int] = mapped_column(Integer, default=CLOSE_AFTER_DAYS)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def series(self) -> str:
        return (self.code or str(self.year)) if self.numbering == "session" else str(self.year)

    def window_open(self, now: datetime) -> bool:
        return self.collect_start <= now <= self.collect_end


class Department(Base):
    """A handling department (承办部门); its contacts are members who receive and answer assignments."""

    __tablename__ = "department"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    contacts: Mapped[list[DepartmentContact]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="DepartmentContact.id"
    )

    @property
    def contact_members(self) -> list[Member]:
        return [c.member for c in self.contacts]


class DepartmentContact(Base):
    __tablename__ = "department_contact"
    __table_args__ = (UniqueConstraint("department_id", "member_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    member: Mapped[Member] = relationship(lazy="joined")


class ProposalCounter(Base):
    """One row per number series ("2027", "建2027", a session code): the last number handed out."""

    __tablename__ = "proposal_counter"
    series: Mapped[str] = mapped_column(String(24), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Proposal(Base):
    __tablename__ = "proposal"
    __table_args__ = (UniqueConstraint("series", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    congress_id: Mapped[int | None] = mapped_column(ForeignKey("congress.id"), index=True)
    series: Mapped[str] = mapped_column(String(24))
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(12), default="proposal")
    submitted_as: Mapped[str] = mapped_column(String(12), default="proposal")
    category: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(100))
    situation: Mapped[str] = mapped_column(Text, default="")
    measures: Mapped[str] = mapped_column(Text, default="")
    suggested_department: Mapped[str] = mapped_column(String(50), default="")
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    proposer_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"), index=True)  # NULL if anonymous
    status: Mapped[str] = mapped_column(String(16), index=True)
    lead_department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)
    due_date: Mapped[date | None] = mapped_column(Date)  # the first reply's due date (on-time rate uses it)
    rehandle_due_date: Mapped[date | None] = mapped_column(Date)  # after an unsatisfied evaluation
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("proposal.id"))
    rehandled: Mapped[bool] = mapped_column(Boolean, default=False)
    decline_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    congress: Mapped[Congress | None] = relationship()
    proposer: Mapped[Member | None] = relationship(foreign_keys=[proposer_id])
    lead_department: Mapped[Department | None] = relationship(foreign_keys=[lead_department_id])
    co_departments: Mapped[list[ProposalDepartment]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProposalDepartment.id"
    )
    cosigns: Mapped[list[CoSign]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="CoSign.id"
    )
    replies: Mapped[list[Reply]] = relationship(cascade="all, delete-orphan", order_by="Reply.id")
    evaluations: Mapped[list[Evaluation]] = relationship(
        cascade="all, delete-orphan", order_by="Evaluation.id"
    )
    events: Mapped[list[ProposalEvent]] = relationship(
        cascade="all, delete-orphan", order_by="ProposalEvent.id"
    )
    merged_into: Mapped[Proposal | None] = relationship(remote_side=[id])

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def current_due(self) -> date | None:
        return self.rehandle_due_date if self.rehandled else self.due_date

    @property
    def departments(self) -> list[Department]:
        lead = [self.lead_department] if self.lead_department else []
        return lead + [d.department for d in self.co_departments]

    def signed_cosigners(self) -> list[Member]:
        return [c.member for c in self.cosigns if c.role == "cosigner" and c.status == "signed"]

    def proposers(self) -> list[Member]:
        """The proposer plus the proposers of merged proposals (never anyone for an anonymous suggestion)."""
        extra = [c.member for c in self.cosigns if c.role == "proposer"]
        return ([self.proposer] if self.proposer else []) + extra

    def people(self) -> list[Member]:
        """Everyone told about progress: proposers and signed co-signers, once each."""
        seen: dict[int, Member] = {}
        for m in self.proposers() + self.signed_cosigners():
            seen.setdefault(m.id, m)
        return list(seen.values())


class ProposalDepartment(Base):
    """A co-handling department (协办) of an accepted proposal (the lead is Proposal.lead_department_id)."""

    __tablename__ = "proposal_department"
    __table_args__ = (UniqueConstraint("proposal_id", "department_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
    department: Mapped[Department] = relationship(lazy="joined")


class CoSign(Base):
    """A co-signer (附议人) — or, role 'proposer', a proposer of a proposal merged into this one."""

    __tablename__ = "proposal_cosign"
    __table_args__ = (UniqueConstraint("proposal_id", "member_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    role: Mapped[str] = mapped_column(String(10), default="cosigner")  # cosigner | proposer
    status: Mapped[str] = mapped_column(String(10), default="signed")  # invited | signed | declined
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    member: Mapped[Member] = relationship(lazy="joined")


class Reply(Base):
    __tablename__ = "proposal_reply"
    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    kind: Mapped[str] = mapped_column(String(12))  # done | in_progress | cannot_now
    text: Mapped[str] = mapped_column(Text)
    plan_date: Mapped[date | None] = mapped_column(Date)  # in_progress: when it will be done
    round: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    department: Mapped[Department | None] = relationship(lazy="joined")

    @property
    def kind_label(self) -> str:
        return REPLY_KINDS.get(self.kind, self.kind)


class Evaluation(Base):
    __tablename__ = "proposal_evaluation"
    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    rating: Mapped[str] = mapped_column(String(12))  # satisfied | partly | unsatisfied
    comment: Mapped[str] = mapped_column(Text, default="")
    round: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProposalEvent(Base):
    """The timeline: every transition (and notes such as co-signs), with who and when. actor NULL = system
    or an anonymous sender."""

    __tablename__ = "proposal_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[Member | None] = relationship(lazy="joined")


class AnonymousSender(Base):
    """The only link from an anonymous suggestion to its sender: a keyed hash, never a member id."""

    __tablename__ = "proposal_anonymous_sender"
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposal.id", ondelete="CASCADE"), primary_key=True)
    sender_hash: Mapped[str] = mapped_column(String(64))


# --------------------------------------------------------------------------------------------- state machine
def transition(
    session: Session,
    proposal: Proposal,
    to: str,
    actor: Member | None,
    note: str = "",
    *,
    at: datetime | None = None,
) -> ProposalEvent:
    """Move `proposal` to `to` if the table allows it; record the event. Raises TransitionError otherwise."""
    at = at or utcnow()
    frm = proposal.status
    if to not in TRANSITIONS:
        raise TransitionError(f"没有“{to}”这种状态。")
    if to not in TRANSITIONS.get(frm, frozenset()):
        allowed = "、".join(STATUS_LABELS[s] for s in sorted(TRANSITIONS.get(frm, ()))) or "无（流程已结束）"
        raise TransitionError(
            f"{proposal.number} 当前是“{STATUS_LABELS.get(frm, frm)}”，不能改为“{STATUS_LABELS[to]}”。"
            f"现在可以进行的下一步：{allowed}。"
        )
    if to == "accepted" and proposal.lead_department_id is None:
        raise TransitionError(f"{proposal.number} 立案需要指定牵头承办部门。")
    if to == "merged" and proposal.merged_into_id is None:
        raise TransitionError(f"{proposal.number} 合并需要指定合并到哪一件提案。")
    if to == "rehandling" and proposal.rehandled:
        raise TransitionError(f"{proposal.number} 已经重新办理过一次，不能再退回，只能办结。")
    # compare-and-set: of two people moving the same proposal at once, only the first wins (the second
    # waits for the first's row lock on PostgreSQL, then finds the status changed)
    moved = session.execute(
        update(Proposal)
        .where(Proposal.id == proposal.id, Proposal.status == frm)
        .values(status=to)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        session.refresh(proposal)
        raise TransitionError(
            f"{proposal.number} 刚刚已被其他人处理，现在是“{STATUS_LABELS.get(proposal.status, proposal.status)}”。"
            "请发送“提案 编号”查看最新进度。"
        )
    if to in ("declined", "received"):
        proposal.kind = "suggestion"
    if to == "accepted":
        proposal.accepted_at = at
    if to == "rehandling":
        proposal.rehandled = True
    if to == "closed":
        proposal.closed_at = at
    proposal.status = to
    event = ProposalEvent(
        proposal_id=proposal.id,
        actor_id=actor.id if actor is not None else None,
        at=at,
        from_status=frm,
        to_status=to,
        note=note,
    )
    proposal.events.append(event)
    session.flush()
    return event


def add_note(
    session: Session, proposal: Proposal, actor: Member | None, note: str, at: datetime
) -> ProposalEvent:
    """A timeline entry that is not a status change (co-signs, reminders)."""
    event = ProposalEvent(
        proposal_id=proposal.id,
        actor_id=actor.id if actor else None,
        at=at,
        from_status=proposal.status,
        to_status=proposal.status,
        note=note,
    )
    proposal.events.append(event)
    session.flush()
    return event


# --------------------------------------------------------------------------------------------- numbering
def allocate_number(session: Session, series: str) -> int:
    """The next number of `series` (models.counters: atomic, gapless, no duplicates under concurrency)."""
    return next_value(session, ProposalCounter, series=series)


def format_number(series: str, seq: int) -> str:
    return f"{series}-{seq:03d}"


def parse_number(text: str) -> tuple[str, int] | None:
    """'2027-12', '提案2027-012', '建2027-003' -> (series, seq)."""
    m = _NUMBER.search(text or "")
    return (m.group(1).upper(), int(m.group(2))) if m else None


def find_by_number(session: Session, text: str) -> Proposal | None:
    parsed = parse_number(text)
    if parsed is None:
        return None
    return session.scalar(select(Proposal).where(Proposal.series == parsed[0], Proposal.seq == parsed[1]))


# --------------------------------------------------------------------------------------------- repository
def current_congress(session: Session, now: datetime) -> Congress | None:
    """The congress whose collection window is open, else the most recent one that has started."""
    open_ = session.scalar(
        select(Congress)
        .where(Congress.collect_start <= now, Congress.collect_end >= now)
        .order_by(Congress.collect_start.desc())
    )
    if open_ is not None:
        return open_
    return session.scalar(
        select(Congress).where(Congress.collect_start <= now).order_by(Congress.collect_start.desc())
    )


def categories(session: Session, now: datetime) -> list[str]:
    c = current_congress(session, now)
    return list(c.categories) if c is not None and c.categories else list(DEFAULT_CATEGORIES)


def sender_hash(secret: str, proposal_id: int, member_id: int) -> str:
    return hmac.new(secret.encode(), f"anon:{proposal_id}:{member_id}".encode(), hashlib.sha256).hexdigest()


def anonymous_sender(session: Session, secret: str, proposal: Proposal) -> Member | None:
    """For the notification code only: the member who sent an anonymous suggestion (None if unknown)."""
    row = session.get(AnonymousSender, proposal.id)
    if row is None:
        return None
    for mid in session.scalars(select(PlatformIdentity.member_id).distinct()):
        if hmac.compare_digest(sender_hash(secret, proposal.id, mid), row.sender_hash):
            return session.get(Member, mid)
    return None


def anonymous_ids_of(session: Session, secret: str, member: Member) -> list[int]:
    """Ids of the anonymous suggestions `member` sent (for their own 我的提案 list only)."""
    rows = session.execute(select(AnonymousSender.proposal_id, AnonymousSender.sender_hash)).all()
    return [pid for pid, h in rows if hmac.compare_digest(sender_hash(secret, pid, member.id), h)]


def submit(
    session: Session,
    *,
    member: Member,
    kind: str,
    category: str,
    title: str,
    situation: str,
    measures: str,
    suggested_department: str = "",
    anonymous: bool = False,
    congress: Congress | None,
    secret: str,
    now: datetime,
    tz: tzinfo,
) -> Proposal:
    """Create a proposal or suggestion with the next number; the caller then starts co-signing if needed.
    `tz` is the union's zone (settings.TIMEZONE): suggestion numbers follow the local year."""
    if anonymous:
        kind = "suggestion"
    if kind == "proposal" and congress is None:
        raise TransitionError("当前没有职代会届次，不能提交正式提案。")
    local = now.astimezone(tz)
    year = congress.year if congress is not None and kind == "proposal" else local.year
    series = congress.series() if kind == "proposal" and congress is not None else str(year)
    if kind == "suggestion":
        series = f"{SUGGESTION_PREFIX}{local.year}"
    seq = allocate_number(session, series)
    if anonymous:  # only the day is kept, so the time cannot be matched against message logs
        now = datetime(local.year, local.month, local.day, tzinfo=tz).astimezone(now.tzinfo)
    p = Proposal(
        congress_id=congress.id if congress is not None else None,
        series=series,
        seq=seq,
        number=format_number(series, seq),
        kind=kind,
        submitted_as=kind,
        category=category,
        title=title,
        situation=situation,
        measures=measures,
        suggested_department=suggested_department,
        anonymous=anonymous,
        proposer_id=None if anonymous else member.id,
        status="submitted" if kind == "proposal" else "received",
        created_at=now,
    )
    session.add(p)
    session.flush()
    if anonymous:
        session.add(AnonymousSender(proposal_id=p.id, sender_hash=sender_hash(secret, p.id, member.id)))
    p.events.append(
        ProposalEvent(
            proposal_id=p.id,
            actor_id=None if anonymous else member.id,
            at=now,
            from_status=None,
            to_status=p.status,
            note="匿名提交" if anonymous else f"提交{KIND_LABELS[kind]}",
        )
    )
    session.flush()
    return p


def department_by_name(session: Session, name: str) -> Department | None:
    name = name.strip()
    if not name:
        return None
    exact = session.scalar(select(Department).where(Department.name == name, Department.active.is_(True)))
    if exact is not None:
        return exact
    found = list(
        session.scalars(select(Department).where(Department.active.is_(True), Department.name.contains(name)))
    )
    return found[0] if len(found) == 1 else None


def departments_of_contact(session: Session, member: Member) -> list[Department]:
    return list(
        session.scalars(
            select(Department).join(DepartmentContact).where(DepartmentContact.member_id == member.id)
        )
    )


def close_after_days(p: Proposal) -> int:
    return p.congress.close_after_days if p.congress is not None else CLOSE_AFTER_DAYS


def status_since(p: Proposal) -> datetime | None:
    """When the proposal entered its current status (the last transition event)."""
    moves = [e for e in p.events if e.to_status == p.status and e.from_status != e.to_status]
    return moves[-1].at if moves else None


def current_round(proposal: Proposal) -> int:
    return 2 if proposal.rehandled else 1


def signed_count(session: Session, proposal: Proposal) -> int:
    """Co-signers who count: signed, and delegates (职工代表) now."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(CoSign)
            .join(Member, Member.id == CoSign.member_id)
            .where(
                CoSign.proposal_id == proposal.id,
                CoSign.role == "cosigner",
                CoSign.status == "signed",
                Member.is_delegate.is_(True),
            )
        )
        or 0
    )


def public_dict(p: Proposal) -> dict[str, Any]:
    """What may be shown to everyone about a proposal: no names of anybody."""
    return {
        "number": p.number,
        "kind": p.kind_label,
        "category": p.category,
        "title": p.title,
        "status": p.status_label,
        "department": p.lead_department.name if p.lead_department else "",
        "co_departments": [d.department.name for d in p.co_departments],
        "replies": [
            {
                "kind": r.kind_label,
                "text": r.text,
                "at": r.at,
                "department": r.department.name if r.department else "",
            }
            for r in p.replies
        ],
    }


def is_public(p: Proposal) -> bool:
    """Accepted proposals (立案) belong on the public list (公开), whatever happened to them since."""
    return p.lead_department_id is not None and p.accepted_at is not None


def public_list(session: Session, congress_id: int | None = None) -> list[dict[str, Any]]:
    """The public list (公开) of accepted proposals with their replies, in number order; no names."""
    q = select(Proposal).where(Proposal.accepted_at.is_not(None), Proposal.lead_department_id.is_not(None))
    if congress_id is not None:
        q = q.where(Proposal.congress_id == congress_id)
    return [public_dict(p) for p in session.scalars(q.order_by(Proposal.series, Proposal.seq))]


# --------------------------------------------------------------------------------------------- reporting
def _scope(session: Session, congress_id: int | None) -> list[Proposal]:
    q = select(Proposal).order_by(Proposal.series, Proposal.seq)
    if congress_id is not None:
        q = q.where(Proposal.congress_id == congress_id)
    return list(session.scalars(q))


def on_time(p: Proposal, today: date, tz: tzinfo) -> bool | None:
    """Whether the first reply came by the first due date; None while it is not due yet (or never assigned)."""
    if p.due_date is None or p.accepted_at is None:
        return None
    first = [
        r
        for r in p.replies
        if r.round == 1 and (p.lead_department_id is None or r.department_id == p.lead_department_id)
    ]
    if first:
        return first[0].at.astimezone(tz).date() <= p.due_date
    return False if today > p.due_date else None


def final_rating(p: Proposal) -> str | None:
    return p.evaluations[-1].rating if p.evaluations else None


def report(session: Session, today: date, congress_id: int | None = None, *, tz: tzinfo) -> dict[str, Any]:
    """The congress report's figures. Names of people never appear here (only numbers and departments).

    - by_category / by_status / by_kind count every proposal and suggestion in scope;
    - by_department counts proposals accepted for each lead department: assigned, replied, on time, late,
      satisfied (满意 or 基本满意 on the final evaluation);
    - on_time_rate = first replies made by the due date / accepted proposals that are replied or past due;
    - satisfaction_rate = final evaluations 满意 or 基本满意 / evaluated proposals
      (satisfied_rate counts 满意 only).
    """
    rows = _scope(session, congress_id)
    by_kind = {KIND_LABELS[k]: 0 for k in KINDS}
    totals = {k: 0 for k in KINDS}
    by_status: dict[str, int] = {}
    by_category: dict[str, int] = {}
    by_department: dict[str, dict[str, int]] = {}
    on_time_yes = on_time_all = 0
    rated = satisfied = satisfied_or_partly = 0
    public = []
    for p in rows:
        totals[p.kind] += 1
        by_kind[KIND_LABELS[p.kind]] += 1
        by_status[p.status_label] = by_status.get(p.status_label, 0) + 1
        by_category[p.category] = by_category.get(p.category, 0) + 1
        ot = on_time(p, today, tz)
        if ot is not None:
            on_time_all += 1
            on_time_yes += int(ot)
        rating = final_rating(p)
        if rating is not None:
            rated += 1
            satisfied += rating == "satisfied"
            satisfied_or_partly += rating in ("satisfied", "partly")
        if is_public(p):
            d = by_department.setdefault(
                p.lead_department.name,
                {"assigned": 0, "replied": 0, "on_time": 0, "late": 0, "evaluated": 0, "satisfied": 0},
            )
            d["assigned"] += 1
            d["replied"] += bool(p.replies)
            d["on_time"] += ot is True
            d["late"] += ot is False
            d["evaluated"] += rating is not None
            d["satisfied"] += rating in ("satisfied", "partly")
            public.append(public_dict(p))
    return {
        "totals": totals,
        "by_kind": by_kind,
        "by_status": by_status,
        "by_category": by_category,
        "by_department": by_department,
        "accepted": len(public),
        "on_time": on_time_yes,
        "on_time_counted": on_time_all,
        "on_time_rate": on_time_yes / on_time_all if on_time_all else None,
        "evaluated": rated,
        "satisfied_rate": satisfied / rated if rated else None,
        "satisfaction_rate": satisfied_or_partly / rated if rated else None,
        "public_list": public,
    }


def safe_cell(value: Any) -> Any:
    """Spreadsheet formula injection: text starting with = + - @ (or a tab/CR) is prefixed with '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_xlsx(session: Session, today: date, congress_id: int | None = None, *, tz: tzinfo) -> bytes:
    """The congress report workbook: 汇总, 按部门, 公开清单 (no names), 明细 (anonymous shown as 匿名)."""
    import io

    from openpyxl import Workbook
    from openpyxl.styles import Font

    r = report(session, today, congress_id, tz=tz)
    wb = Workbook()
    ws = wb.active
    ws.title = "汇总"

    def put(sheet, row: list[Any]) -> None:
        sheet.append([safe_cell(v) for v in row])

    put(ws, ["项目", "数量"])
    for label, n in r["by_kind"].items():
        put(ws, [label, n])
    put(ws, ["立案提案", r["accepted"]])
    put(ws, ["按时答复率", _rate(r["on_time_rate"])])
    put(ws, ["满意率（满意+基本满意）", _rate(r["satisfaction_rate"])])
    put(ws, ["满意率（仅满意）", _rate(r["satisfied_rate"])])
    put(ws, [])
    put(ws, ["按类别", "数量"])
    for k, v in r["by_category"].items():
        put(ws, [k, v])
    put(ws, [])
    put(ws, ["按状态", "数量"])
    for k, v in r["by_status"].items():
        put(ws, [k, v])

    wd = wb.create_sheet("按部门")
    put(wd, ["承办部门", "立案交办", "已答复", "按时答复", "逾期答复", "已评价", "满意及基本满意"])
    for name, d in r["by_department"].items():
        put(wd, [name, d["assigned"], d["replied"], d["on_time"], d["late"], d["evaluated"], d["satisfied"]])

    wp = wb.create_sheet("公开清单")
    put(wp, ["编号", "类别", "标题", "承办部门", "协办部门", "状态", "办理结果", "答复内容"])
    for item in r["public_list"]:
        last = item["replies"][-1] if item["replies"] else {"kind": "", "text": ""}
        put(wp, [item["number"], item["category"], item["title"], item["department"],
                 "、".join(item["co_departments"]), item["status"], last["kind"], last["text"]])  # fmt: skip

    wx = wb.create_sheet("明细")
    put(wx, ["编号", "类型", "类别", "标题", "提出人", "附议人", "状态", "承办部门", "期限", "评价"])
    for p in _scope(session, congress_id):
        who = "匿名" if p.anonymous else "、".join(m.name for m in p.proposers())
        cos = "" if p.anonymous else "、".join(m.name for m in p.signed_cosigners())
        rating = final_rating(p)
        put(wx, [p.number, p.kind_label, p.category, p.title, who, cos, p.status_label,
                 p.lead_department.name if p.lead_department else "", p.due_date.isoformat() if p.due_date else "",
                 RATINGS.get(rating, "") if rating else ""])  # fmt: skip
    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _rate(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


# --------------------------------------------------------------------------------------------- demo data
DEMO_DEPARTMENTS = ("总务处", "人事处", "财务处", "保卫处", "医务处", "护理部", "信息中心")


def seed_demo(session: Session, now: datetime, tz: tzinfo) -> dict[str, int]:
    """A congress session collecting proposals now (two weeks) and handling departments, each with one contact
    taken from the roster (members who are not delegates, in id order). Safe to repeat: adds only what is missing.
    """
    added = {"congress": 0, "departments": 0, "contacts": 0}
    if session.scalar(select(func.count()).select_from(Congress)) == 0:
        local = now.astimezone(tz)
        start = datetime(local.year, local.month, local.day, tzinfo=tz) - timedelta(days=1)
        session.add(
            Congress(
                name="第三届第二次",
                year=local.year,
                code="",
                collect_start=start.astimezone(now.tzinfo),
                collect_end=(start + timedelta(days=15, minutes=-1)).astimezone(now.tzinfo),
                cosigners_required=2,
                numbering="year",
                delegates_only=True,
                categories=list(DEFAULT_CATEGORIES),
            )
        )
        added["congress"] = 1
    candidates = list(
        session.scalars(
            select(Member)
            .where(Member.active.is_(True), Member.is_delegate.is_(False))
            .order_by(Member.id)
            .limit(len(DEMO_DEPARTMENTS))
        )
    )
    for i, name in enumerate(DEMO_DEPARTMENTS):
        dept = session.scalar(select(Department).where(Department.name == name))
        if dept is None:
            dept = Department(name=name)
            session.add(dept)
            session.flush()
            added["departments"] += 1
        if not dept.contacts and i < len(candidates):
            dept.contacts.append(DepartmentContact(department_id=dept.id, member_id=candidates[i].id))
            added["contacts"] += 1
    session.flush()
    return added
