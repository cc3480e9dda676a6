"""Members, their organisation (branch, group), roles and platform identities."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, UTCDateTime, utcnow

ROLES = (
    "member",
    "group_leader",
    "branch_chair",
    "clerk",
    "proposal_reviewer",
    "hardship_reviewer",
    "chair",
    "admin",
)
ROLE_LABELS = {
    "member": "会员",
    "group_leader": "小组长",
    "branch_chair": "分会主席",
    "clerk": "干事",
    "proposal_reviewer": "提案委员",
    "hardship_reviewer": "帮扶审核",
    "chair": "工会主席",
    "admin": "管理员",
    "department": "承办部门",  # console accounts only (not in ROLES): a handling department's contact
}
PLATFORMS = ("wecom", "feishu", "sandbox")


class Branch(Base):
    __tablename__ = "branch"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    groups: Mapped[list[Group]] = relationship(back_populates="branch", order_by="Group.name")


class Group(Base):
    __tablename__ = "union_group"
    __table_args__ = (UniqueConstraint("branch_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    name: Mapped[str] = mapped_column(String(100))
    branch: Mapped[Branch] = relationship(back_populates="groups")


class Member(Base):
    __tablename__ = "member"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), index=True)
    employee_no: Mapped[str] = mapped_column(String(32), unique=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("union_group.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    gender: Mapped[str | None] = mapped_column(String(1))  # "男" / "女"
    job_title: Mapped[str | None] = mapped_column(String(50))
    birthday: Mapped[date | None] = mapped_column(Date)
    # A lunar birthday keeps the lunar month/day the member celebrates; birthday holds the solar birth date.
    birthday_is_lunar: Mapped[bool] = mapped_column(Boolean, default=False)
    lunar_birth_month: Mapped[int | None] = mapped_column(Integer)
    lunar_birth_day: Mapped[int | None] = mapped_column(Integer)
    lunar_birth_leap: Mapped[bool] = mapped_column(Boolean, default=False)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    is_delegate: Mapped[bool] = mapped_column(Boolean, default=False)
    greeting_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)  # birthday greetings only
    has_children: Mapped[bool | None] = mapped_column(Boolean)  # roster 有子女; None = not known (六一)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    branch: Mapped[Branch | None] = relationship()
    group: Mapped[Group | None] = relationship()
    role_rows: Mapped[list[MemberRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="MemberRole.role"
    )
    identities: Mapped[list[PlatformIdentity]] = relationship(back_populates="member", lazy="selectin")

    @property
    def roles(self) -> set[str]:
        return {"member"} | {r.role for r in self.role_rows}

    def set_roles(self, roles: set[str] | list[str]) -> None:
        wanted = {r for r in roles if r != "member"}
        unknown = wanted - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")
        self.role_rows = [r for r in self.role_rows if r.role in wanted]
        have = {r.role for r in self.role_rows}
        self.role_rows.extend(MemberRole(role=r) for r in sorted(wanted - have))

    @property
    def phone_tail(self) -> str:
        return (self.phone or "")[-4:]


class MemberRole(Base):
    __tablename__ = "member_role"
    __table_args__ = (UniqueConstraint("member_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32), index=True)


class PlatformIdentity(Base):
    """One chat account (WeCom userid, Feishu open_id, sandbox user) linked to one member."""

    __tablename__ = "platform_identity"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    member: Mapped[Member] = relationship(back_populates="identities")


class BindAttempt(Base):
    """Failed binding answers per platform user; caps guessing so the roster cannot be enumerated."""

    __tablename__ = "bind_attempt"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)


def member_for_identity(session: Session, platform: str, user_id: str) -> Member | None:
    return session.scalar(
        select(Member)
        .join(PlatformIdentity)
        .where(PlatformIdentity.platform == platform, PlatformIdentity.platform_user_id == user_id)
    )


def link_identity(session: Session, member: Member, platform: str, user_id: str) -> PlatformIdentity:
    ident = session.scalar(
        select(PlatformIdentity).where(
            PlatformIdentity.platform == platform, PlatformIdentity.platform_user_id == user_id
        )
    )
    if ident is None:
        ident = PlatformIdentity(platform=platform, platform_user_id=user_id, member=member)
        session.add(ident)
    else:
        ident.member = member
        ident.unreachable = False
    return ident


def identities_of(session: Session, member_id: int, platform: str | None = None) -> list[PlatformIdentity]:
    q = select(PlatformIdentity).where(PlatformIdentity.member_id == member_id)
    if platform:
        q = q.where(PlatformIdentity.platform == platform)
    return list(session.scalars(q.order_by(PlatformIdentity.id)))
