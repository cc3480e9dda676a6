"""Meetings (会议) and their invitations with RSVP (回执: 参加 / 请假) and attendance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship

from models.base import Base, UTCDateTime, utcnow
from models.member import Member, MemberRole

KINDS = ("职代会", "工会委员会", "小组长会议", "其他")
RSVP_LABELS = {"attend": "参加", "excused": "请假", "none": "未回复"}
# roles a meeting can invite by (the console's checkboxes, the API's attendees.roles)
INVITE_ROLES = ("chair", "branch_chair", "clerk", "group_leader", "proposal_reviewer", "hardship_reviewer")


class Meeting(Base):
    __tablename__ = "meeting"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="其他")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    place: Mapped[str] = mapped_column(String(200), default="")
    agenda: Mapped[str] = mapped_column(Text, default="")
    # {"roles": [...], "branches": [ids], "groups": [ids], "members": [ids], "delegates": bool}
    attendees: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rsvp_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(
        String(12), default="scheduled", index=True
    )  # scheduled|cancelled|done
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    reminder_minutes: Mapped[list[int] | None] = mapped_column(
        JSON
    )  # None: the configured default (1 day, 1 h)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when everyone invited was last sent the full details (invitation or change notice): a reminder due
    # before then would only repeat it ("明天开始" right after an invitation for tonight), so it is skipped
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(
        Integer, default=1
    )  # bumped by a change: change notices are keyed by it

    invites: Mapped[list[MeetingInvite]] = relationship(
        back_populates="meeting", cascade="all, delete-orphan", order_by="MeetingInvite.id"
    )

    @property
    def is_congress(self) -> bool:
        return self.kind == "职代会"


class MeetingInvite(Base):
    __tablename__ = "meeting_invite"
    __table_args__ = (UniqueConstraint("meeting_id", "member_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meeting.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    rsvp: Mapped[str] = mapped_column(String(8), default="none")  # attend | excused | none
    reason: Mapped[str | None] = mapped_column(String(200))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attended: Mapped[bool | None] = mapped_column(Boolean)

    meeting: Mapped[Meeting] = relationship(back_populates="invites")
    member: Mapped[Member] = relationship()


def resolve_attendees(session: Session, spec: dict[str, Any]) -> list[Member]:
    """Active members matching any of the spec's roles, branches, groups, member ids, or delegates."""
    conds = []
    if spec.get("roles"):
        conds.append(Member.id.in_(select(MemberRole.member_id).where(MemberRole.role.in_(spec["roles"]))))
    if spec.get("branches"):
        conds.append(Member.branch_id.in_(spec["branches"]))
    if spec.get("groups"):
        conds.append(Member.group_id.in_(spec["groups"]))
    if spec.get("members"):
        conds.append(Member.id.in_(spec["members"]))
    if spec.get("delegates"):
        conds.append(Member.is_delegate.is_(True))
    if spec.get("all"):
        conds.append(Member.id.is_not(None))
    if not conds:
        return []
    return list(
        session.scalars(select(Member).where(Member.active.is_(True), or_(*conds)).order_by(Member.id))
    )


def quorum(meeting: Meeting) -> tuple[int, int, int]:
    """(confirmed delegates, all active delegates, needed): a congress needs MORE than two thirds of its
    delegates, so a delegate left off the invitation list still counts in the denominator."""
    confirmed = sum(
        1 for i in meeting.invites if i.member.is_delegate and i.member.active and i.rsvp == "attend"
    )
    session = object_session(meeting)
    assert session is not None, "quorum needs a meeting loaded in a session"
    total = session.scalar(
        select(func.count(Member.id)).where(Member.is_delegate.is_(True), Member.active.is_(True))
    )
    total = int(total or 0)
    needed = total * 2 // 3 + 1 if total else 0
    return confirmed, total, needed
