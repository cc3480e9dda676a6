"""The case permission table (models.care.can_see_case / may_act), cell by cell, and what each level shows."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import crypto
from models.care import Access, AuditLog, HardshipCase, can_see_case, may_act, submit_case
from models.member import Member
from tests.conftest import add_member

STATUSES = ("submitted", "verifying", "decided", "delivered", "followed_up", "closed")

# viewer -> expected level per status (submitted, verifying, decided, delivered, followed_up, closed)
N, E, W, F = Access.NONE, Access.EXISTS, Access.OWN, Access.FULL  # W: own
TABLE = {
    "own_member": (W, W, W, W, W, W),
    "own_member_who_is_reviewer": (W, W, W, W, W, W),
    "hardship_reviewer": (F, F, F, F, F, F),
    "chair": (F, F, F, F, F, F),
    "admin": (E, E, E, E, E, E),  # manages accounts, does not read health data
    "branch_chair_same_branch": (F, F, E, E, E, E),
    "branch_chair_other_branch": (N, N, N, N, N, N),
    "group_leader_same_group": (E, E, E, E, E, E),
    "group_leader_other_group": (N, N, N, N, N, N),
    "clerk": (E, E, E, E, E, E),
    "proxy_reporter": (E, E, E, E, E, E),
    "colleague_same_group": (N, N, N, N, N, N),
    "proposal_reviewer": (N, N, N, N, N, N),
    "inactive_reviewer": (N, N, N, N, N, N),
    "nobody": (N, N, N, N, N, N),
}
# after anonymisation
ANON = {"hardship_reviewer": F, "chair": F, "admin": N, "own_member": N, "branch_chair_same_branch": N,
        "clerk": N, "group_leader_same_group": N, "proxy_reporter": N, "nobody": N}  # fmt: skip


@pytest.fixture
def world(bot):
    crypto.configure(bot.settings)
    people = {
        "own_member": add_member(bot, "王芳"),
        "own_member_who_is_reviewer": add_member(bot, "审核本人", roles=["hardship_reviewer"]),
        "hardship_reviewer": add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="办公室", group="办"),
        "chair": add_member(bot, "主席", roles=["chair"], branch="办公室", group="办"),
        "admin": add_member(bot, "管理员", roles=["admin"], branch="办公室", group="办"),
        "branch_chair_same_branch": add_member(bot, "陈主席", roles=["branch_chair"]),
        "branch_chair_other_branch": add_member(bot, "周主席", roles=["branch_chair"], branch="外科分会", group="骨科"),
        "group_leader_same_group": add_member(bot, "刘组长", roles=["group_leader"]),
        "group_leader_other_group": add_member(bot, "吴组长", roles=["group_leader"], group="呼吸科小组"),
        "clerk": add_member(bot, "孙干事", roles=["clerk"], branch="办公室", group="办"),
        "proxy_reporter": add_member(bot, "代报人", group="呼吸科小组"),
        "colleague_same_group": add_member(bot, "李同事"),
        "proposal_reviewer": add_member(bot, "提案委员", roles=["proposal_reviewer"]),
        "inactive_reviewer": add_member(bot, "离职审核", roles=["hardship_reviewer"], active=False),
    }  # fmt: skip
    return people


def make_case(bot, member, reporter, status) -> int:
    with bot.db.transaction() as s:
        c = submit_case(
            s, member=s.get(Member, member.id), reported_by=s.get(Member, reporter.id), type="大病",
            story="机密情况", household=None, help_kinds=["资金补助"], help_details=None, contact="电话",
            now=bot.clock.now(), year=2027,
        )  # fmt: skip
        c.status = status
        return c.id


def level(bot, viewer_key, world, case_id):
    with bot.db.Session() as s:
        case = s.get(HardshipCase, case_id)
        viewer = s.get(Member, world[viewer_key].id) if viewer_key != "nobody" else None
        return can_see_case(viewer, case)


@pytest.mark.parametrize("viewer", list(TABLE))
def test_permission_table_row(bot, world, viewer):
    """One row of the table: this viewer's level on a case in each status (every cell compared)."""
    owner = world["own_member_who_is_reviewer"] if viewer == "own_member_who_is_reviewer" else world["own_member"]
    got = {}
    for status in STATUSES:
        case_id = make_case(bot, owner, world["proxy_reporter"], status)
        got[status] = level(bot, viewer, world, case_id)
    assert got == dict(zip(STATUSES, TABLE[viewer], strict=True))


@pytest.mark.parametrize("viewer", list(ANON))
def test_anonymised_case_cells(bot, world, viewer):
    from models.care import anonymise_case

    case_id = make_case(bot, world["own_member"], world["proxy_reporter"], "closed")
    with bot.db.transaction() as s:
        anonymise_case(s, s.get(HardshipCase, case_id), bot.clock.now())
    assert level(bot, viewer, world, case_id) == ANON[viewer]


ACT = {  # step -> viewers allowed (on a case of 王芳, 内科分会)
    "verify": {"hardship_reviewer", "chair", "branch_chair_same_branch"},
    "decide": {"hardship_reviewer", "chair"},
    "deliver": {"hardship_reviewer", "chair"},
    "follow_up": {"hardship_reviewer", "chair", "branch_chair_same_branch"},
    "close": {"hardship_reviewer", "chair"},
}


@pytest.mark.parametrize("viewer", [v for v in TABLE if v != "own_member_who_is_reviewer"])
def test_who_may_act(bot, world, viewer):
    """Each workflow step, for this viewer, on a case of 王芳 (内科分会)."""
    case_id = make_case(bot, world["own_member"], world["proxy_reporter"], "submitted")
    with bot.db.Session() as s:
        case = s.get(HardshipCase, case_id)
        v = s.get(Member, world[viewer].id) if viewer != "nobody" else None
        got = {step: may_act(v, case, step) for step in ACT}
    assert got == {step: viewer in allowed for step, allowed in ACT.items()}


def test_reviewer_cannot_act_on_own_case(bot, world):
    case_id = make_case(bot, world["own_member_who_is_reviewer"], world["own_member_who_is_reviewer"], "verifying")
    with bot.db.Session() as s:
        case = s.get(HardshipCase, case_id)
        me = s.get(Member, world["own_member_who_is_reviewer"].id)
        assert not any(may_act(me, case, step) for step in ACT)


def test_what_each_level_shows_in_chat(bot, chat_with, world):
    from tests.test_care import submit_case as chat_submit

    chat_submit(chat_with(world["own_member"]), story="家中突发变故急需帮助说明")
    with bot.db.Session() as s:
        n = s.scalar(select(HardshipCase)).number
    chat_with(world["branch_chair_same_branch"]).ask(f"核实 {n} 家访 今天 内部备注不要外传")
    full = chat_with(world["hardship_reviewer"]).ask(f"查看 {n}")
    assert "家中突发变故急需帮助说明" in full and "内部备注不要外传" in full and "13800001234" in full
    own = chat_with(world["own_member"]).ask(f"查看 {n}")
    assert n in own and "等待工会审批" in own and "内部备注" not in own
    exists = chat_with(world["group_leader_same_group"]).ask(f"查看 {n}")
    assert "王芳" in exists and "办理中" in exists
    assert "突发变故" not in exists and "内部备注" not in exists and "大病" not in exists
    # the branch chair lost full access once verification is over? still verifying -> full
    assert "突发变故" in chat_with(world["branch_chair_same_branch"]).ask(f"查看 {n}")
    none = chat_with(world["branch_chair_other_branch"]).ask(f"查看 {n}")
    assert "没有办理" in none and "王芳" not in none
    with bot.db.Session() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "view").order_by(AuditLog.id)).all()
    details = [(r.actor_label, r.detail) for r in rows]
    assert ("赵审核", "chat: full") in details
    assert ("王芳", "chat: own") in details
    assert ("刘组长", "chat: exists") in details
    assert ("周主席", "denied: view") in details


def test_audit_log_records_changes_views_and_exports(bot, chat_with, world):
    from tests.test_care import submit_case as chat_submit

    chat_submit(chat_with(world["own_member"]))
    with bot.db.Session() as s:
        case = s.scalar(select(HardshipCase))
    n = case.number
    chat_with(world["branch_chair_same_branch"]).ask(f"核实 {n} 家访 今天 属实")
    chat_with(world["hardship_reviewer"]).ask(f"查看 {n}")
    chat_with(world["hardship_reviewer"]).ask(f"审批 {n} 同意 帮扶金 3000")
    chat_with(world["own_member"]).ask("我的申请")
    with bot.db.Session() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.case_id == case.id).order_by(AuditLog.id)).all()
    got = [(r.action, r.actor_label, r.detail) for r in rows]
    assert got == [
        ("change", "王芳", "submitted"),
        ("change", "陈主席", "submitted->verifying"),
        ("view", "赵审核", "chat: full"),
        ("change", "赵审核", "verifying->decided"),
        ("view", "王芳", "own: 我的申请"),
    ]
    assert all(r.at is not None for r in rows)
    # the audit log holds references only, never case content
    assert not any("属实" in r.detail or "3000" in r.detail for r in rows)
