"""SQLAlchemy 2.0 typed models. Importing this package registers every table on Base.metadata."""

from models import greeting, meeting  # noqa: F401  (greetings, scheduler lease, meetings)
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
from models.wecom import WecomAccessToken  # noqa: E402, F401  (WeCom access-token cache shared by workers)
from models.feishu import FeishuRate, FeishuState  # noqa: E402, F401  (Feishu token / bot id / send-rate state)
from models import proposal  # noqa: E402, F401  (congress proposals and suggestions)
from models import care  # noqa: E402, F401  (issue 7: hardship cases, care events, case audit log)
