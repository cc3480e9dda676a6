"""SQLAlchemy 2.0 typed models. Importing this package registers every table on Base.metadata."""

# Importing a feature's module registers its tables.
from models import care, feishu, greeting, meeting, proposal, rate, wecom  # noqa: F401
from models.activity import Activity, Signup  # noqa: F401
from models.base import Base, Database, UTCDateTime, utcnow
from models.member import Branch, Group, Member, MemberRole, PlatformIdentity
from models.messaging import Chat, Dialog, InboundMessage, OutboxMessage, SandboxMessage
from models.staff import ApiToken, StaffAccount

__all__ = [
    "ApiToken",
    "Base",
    "Branch",
    "Chat",
    "Database",
    "Dialog",
    "Group",
    "InboundMessage",
    "Member",
    "MemberRole",
    "OutboxMessage",
    "PlatformIdentity",
    "SandboxMessage",
    "StaffAccount",
    "UTCDateTime",
    "utcnow",
]
import admin.models  # noqa: E402, F401  (console login throttle table; plain import: admin.models imports models)
