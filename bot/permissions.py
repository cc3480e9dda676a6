"""Who may do what: one table, checked in one place for chat handlers, the console and the API."""

from __future__ import annotations

from collections.abc import Iterable

# permission -> roles that hold it. "admin" holds everything but NOT_FOR_ADMIN (below).
PERMISSIONS: dict[str, frozenset[str]] = {
    "console.login": frozenset(
        {
            "clerk",
            "branch_chair",
            "chair",
            "proposal_reviewer",
            "hardship_reviewer",
            "admin",
            "group_leader",
            "department",
        }
    ),
    "members.view": frozenset({"clerk", "chair", "branch_chair"}),
    "members.edit": frozenset({"clerk", "chair"}),
    "members.roles": frozenset({"clerk", "chair"}),
    "members.import": frozenset({"clerk", "chair"}),
    "members.grant_admin": frozenset(),  # granting or taking away the admin role: admins only
    "activities.create": frozenset({"clerk", "chair", "branch_chair", "group_leader"}),
    "activities.manage_all": frozenset({"clerk", "chair"}),
    "activities.proxy_signup": frozenset({"group_leader", "branch_chair", "clerk", "chair"}),
    # without manage_all: publish for, and see the sign-ups of, their own branch / their own group
    "activities.own_branch": frozenset({"branch_chair"}),
    "activities.own_group": frozenset({"group_leader"}),
    "proposals.review": frozenset({"proposal_reviewer", "chair"}),
    "proposals.report": frozenset({"proposal_reviewer", "chair", "clerk"}),
    # a handling department's console account (staff role only, linked to a member who is its contact)
    "proposals.department": frozenset({"department"}),
    "cases.review": frozenset({"hardship_reviewer", "chair"}),
    "cases.verify": frozenset({"branch_chair"}),
    "cases.audit": frozenset({"chair"}),
    "cases.proxy_report": frozenset({"group_leader", "branch_chair", "hardship_reviewer", "chair"}),  # 代报困难
    "cases.proxy_branch": frozenset({"branch_chair"}),  # 代报 for their whole branch (others: their own group)
    "cases.overview": frozenset({"clerk"}),  # that a case exists and its status, union-wide (admin too)
    "cases.overview_group": frozenset({"group_leader"}),  # the same, for cases of their own group
    "cases.stats": frozenset({"hardship_reviewer", "chair", "clerk"}),  # yearly care and hardship figures
    "care.manage": frozenset({"clerk", "chair", "branch_chair", "group_leader"}),
    # which care tasks: all of them, their own branch's, their own group's
    "care.manage_all": frozenset({"clerk", "chair"}),
    "care.manage_branch": frozenset({"branch_chair"}),
    "care.manage_group": frozenset({"group_leader"}),
    "cases.console": frozenset({"hardship_reviewer", "chair", "branch_chair", "clerk"}),  # 帮扶与关怀 pages
    "greetings.manage": frozenset({"clerk", "chair"}),
    "meetings.manage": frozenset({"clerk", "chair"}),
    "outbox.view": frozenset({"clerk", "chair"}),
    "outbox.manage": frozenset({"clerk"}),  # 重新发送 a message given up (admin holds everything)
    "chats.manage": frozenset({"clerk"}),  # WeCom group chats and their webhooks (admin holds everything)
    "staff.manage": frozenset(),
    "api.tokens": frozenset(),
}


# Health, money and family data (hardship cases, care events): the system admin manages accounts and does not get
# these through its bypass (it sees only that a case exists); an admin who also needs them holds the care role.
NOT_FOR_ADMIN = frozenset(
    {
        "cases.review",
        "cases.verify",
        "cases.audit",
        "cases.proxy_report",
        "cases.proxy_branch",
        "cases.stats",
        "care.manage",
        "care.manage_all",
        "care.manage_branch",
        "care.manage_group",
    }
)


# Permissions limited to the holder's own branch or group: the holder's unit comes from their member record.
UNIT_SCOPED = frozenset(
    {
        "activities.own_branch",
        "activities.own_group",
        "cases.verify",
        "cases.proxy_branch",
        "cases.overview_group",
        "care.manage_branch",
        "care.manage_group",
    }
)


def needs_unit(role: str) -> bool:
    """Whether `role` works only within its own branch or group (branch chair, group leader): a console account
    with it must be linked to a member, or it has no unit and its pages show nothing of that kind."""
    return any(role in PERMISSIONS[p] for p in UNIT_SCOPED)


def can(roles: Iterable[str], permission: str) -> bool:
    roles = set(roles)
    if "admin" in roles and permission not in NOT_FOR_ADMIN:
        return True
    try:
        return bool(roles & PERMISSIONS[permission])
    except KeyError:
        raise KeyError(f"unknown permission {permission!r}") from None


def roles_with(permission: str) -> frozenset[str]:
    """The roles that hold `permission` (admin included unless NOT_FOR_ADMIN): whom to notify about its work."""
    holders = PERMISSIONS[permission]
    return holders if permission in NOT_FOR_ADMIN else holders | {"admin"}
