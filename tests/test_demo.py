"""The demo union: size, roles, determinism, idempotence, console logins and the CLI commands."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from models import Branch, Group, Member, StaffAccount
from models.demo import DEMO_PASSWORD, seed_demo
from tests.conftest import add_member


def seed(bot, **kw):
    with bot.db.transaction() as s:
        return seed_demo(s, **kw)


def snapshot(bot) -> list[tuple]:
    with bot.db.Session() as s:
        return [
            (
                m.employee_no,
                m.name,
                m.branch.name,
                m.group.name,
                m.phone,
                m.gender,
                m.job_title,
                m.birthday,
                m.birthday_is_lunar,
                m.lunar_birth_month,
                m.lunar_birth_day,
                m.retired,
                m.is_delegate,
                tuple(sorted(m.roles)),
            )
            for m in s.scalars(select(Member).order_by(Member.employee_no))
        ]


def test_demo_union_shape(bot):
    summary = seed(bot)
    assert summary.members == summary.created_members == 200
    people = snapshot(bot)
    assert len(people) == 200 and len({p[1] for p in people}) == 200  # unique names
    assert [p[0] for p in people][:2] == ["10001", "10002"]
    assert all(p[4].startswith("139") and len(p[4]) == 11 for p in people)
    assert len({p[4] for p in people}) == 200

    with bot.db.Session() as s:
        branches = {b.name: [g.name for g in b.groups] for b in s.scalars(select(Branch))}
    assert {"内科分会", "外科分会", "护理分会", "医技分会", "机关后勤分会", "离退休分会"} == set(branches)
    assert "心内科小组" in branches["内科分会"] and "手术室小组" in branches["护理分会"]

    women = sum(p[5] == "女" for p in people)
    assert 120 <= women <= 170
    nurses = [p for p in people if p[6] in ("护士", "护师", "主管护师")]
    assert len(nurses) >= 40 and sum(p[5] == "女" for p in nurses) >= 0.85 * len(nurses)
    assert {"护士", "医师", "主治医师", "药师", "检验师", "行政", "工勤", "退休"} <= {p[6] for p in people}
    assert all(1962 <= p[7].year <= 2002 for p in people)
    lunar = [p for p in people if p[8]]
    assert 15 <= len(lunar) <= 45 and all(p[9] and p[10] for p in lunar)
    retirees = [p for p in people if p[11]]
    assert retirees and all(p[2] == "离退休分会" and p[6] == "退休" for p in retirees)
    assert all(p[11] for p in people if p[2] == "离退休分会")
    delegates = [p for p in people if p[12]]
    assert 25 <= len(delegates) <= 35 and not any(p[11] for p in delegates)

    roles = Counter(r for p in people for r in p[13] if r != "member")
    with bot.db.Session() as s:
        n_groups = s.scalar(select(func.count()).select_from(Group))
    assert roles["chair"] == 1 and roles["clerk"] == 2 and roles["admin"] == 1
    assert roles["branch_chair"] == 6 and roles["group_leader"] == n_groups
    assert roles["proposal_reviewer"] == 3 and roles["hardship_reviewer"] == 2
    assert summary.roles == dict(roles)
    # every branch has its own chair, every group its own leader
    assert {p[2] for p in people if "branch_chair" in p[13]} == set(branches)
    assert len({(p[2], p[3]) for p in people if "group_leader" in p[13]}) == n_groups


def test_demo_console_accounts(bot):
    seed(bot)
    with bot.db.Session() as s:
        admin = s.scalar(select(StaffAccount).where(StaffAccount.username == "admin"))
        clerk = s.scalar(select(StaffAccount).where(StaffAccount.username == "clerk"))
        assert admin.role == "admin" and admin.check_password(DEMO_PASSWORD) and DEMO_PASSWORD == "demo12345"
        assert admin.password_hash != DEMO_PASSWORD
        assert clerk.role == "clerk" and clerk.check_password("demo12345")
        assert clerk.member is not None and "clerk" in clerk.member.roles


def test_demo_is_deterministic(app, tmp_path):
    from tests.conftest import make_app

    seed(app.extensions["bot"], seed=7)
    other = make_app(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        seed(other.extensions["bot"], seed=7)
        assert snapshot(app.extensions["bot"]) == snapshot(other.extensions["bot"])
    finally:
        other.extensions["db"].dispose()


def test_demo_twice_adds_nothing(bot):
    first = seed(bot)
    before = snapshot(bot)
    second = seed(bot)
    assert second.created_members == 0 and second.staff == [] and first.staff
    assert snapshot(bot) == before


def test_demo_small_union(bot):
    summary = seed(bot, members=30, seed=1)
    assert summary.members == 30 and summary.roles["chair"] == 1 and summary.roles["clerk"] == 2


def test_cli_demo_and_if_empty(app, bot):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["demo", "--if-empty"])
    assert r.exit_code == 0, r.output
    assert "示例人民医院工会" in r.output and "200名会员" in r.output and "admin / demo12345" in r.output
    before = snapshot(bot)
    r = runner.invoke(args=["demo", "--if-empty"])
    assert r.exit_code == 0 and "跳过" in r.output
    assert snapshot(bot) == before


def test_cli_demo_if_empty_skips_real_rosters(app, bot):
    add_member(bot, name="真会员", employee_no="1")
    r = app.test_cli_runner().invoke(args=["demo", "--if-empty"])
    assert r.exit_code == 0 and "跳过" in r.output
    with bot.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(Member)) == 1


def test_cli_staff_create(app, bot):
    clerk = add_member(bot, name="钱干事", employee_no="30001", roles=["clerk"])
    runner = app.test_cli_runner()
    r = runner.invoke(
        args=["staff", "create", "qian", "--role", "干事", "--password", "s3cret-pass", "--member", "30001"]
    )
    assert r.exit_code == 0, r.output
    assert "已创建" in r.output and "钱干事" in r.output
    with bot.db.Session() as s:
        acct = s.scalar(select(StaffAccount).where(StaffAccount.username == "qian"))
        assert acct.role == "clerk" and acct.member_id == clerk.id and acct.display_name == "钱干事"
        assert acct.password_hash != "s3cret-pass" and acct.check_password("s3cret-pass")

    r = runner.invoke(args=["staff", "create", "qian", "--role", "clerk", "--password", "another-pass"])
    assert r.exit_code != 0 and "已存在" in r.output
    r = runner.invoke(args=["staff", "create", "x", "--role", "boss", "--password", "another-pass"])
    assert r.exit_code != 0 and "未知" in r.output
    r = runner.invoke(args=["staff", "create", "x", "--role", "member", "--password", "another-pass"])
    assert r.exit_code != 0
    r = runner.invoke(args=["staff", "create", "x", "--role", "chair", "--password", "short"])
    assert r.exit_code != 0 and "至少" in r.output
    r = runner.invoke(
        args=["staff", "create", "x", "--role", "chair", "--password", "long-enough", "--member", "404"]
    )
    assert r.exit_code != 0 and "404" in r.output

    # the password prompt asks twice and hides the input
    r = runner.invoke(
        args=["staff", "create", "zhou", "--role", "admin", "--name", "周管理"],
        input="pass-word-1\npass-word-1\n",
    )
    assert r.exit_code == 0, r.output
    assert "pass-word-1" not in r.output
    r = runner.invoke(args=["staff", "list"])
    assert "qian" in r.output and "zhou" in r.output and "周管理" in r.output
    with bot.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(StaffAccount)) == 2


def test_demo_logins_each_see_their_pages(app, bot, chat_with):
    """admin, chair, clerk, leader and dept (demo password) log in; each sees its pages and is refused the rest.
    The chair reads a hardship case, which the admin (by design) and the clerk only see exists."""
    from models.care import HardshipCase
    from tests.test_admin import login
    from tests.test_care import STORY, submit_case

    r = app.test_cli_runner().invoke(args=["demo", "--members", "60"])
    assert r.exit_code == 0, r.output
    for username in ("admin", "chair", "clerk", "leader", "dept"):
        assert f"{username} / {DEMO_PASSWORD}" in r.output
    with bot.db.Session() as s:
        accounts = {a.username: a for a in s.scalars(select(StaffAccount))}
        assert {u: (a.role, a.member is not None) for u, a in accounts.items()} == {
            "admin": ("admin", False), "chair": ("chair", True), "clerk": ("clerk", True),
            "leader": ("group_leader", True), "dept": ("department", True),
        }  # fmt: skip
        assert "chair" in accounts["chair"].member.roles and "group_leader" in accounts["leader"].member.roles
        # the case's member: a working member of another group than the leader's, with no role
        member = next(m for m in s.scalars(select(Member).where(Member.retired.is_(False))) if m.roles == {"member"}
                      and m.group_id != accounts["leader"].member.group_id)  # fmt: skip
        s.expunge(member)
    submit_case(chat_with(member))
    with bot.db.Session() as s:
        case_id = s.scalar(select(HardshipCase.id))

    pages = {
        "members": "/admin/members",
        "activities": "/admin/activities/",
        "proposals": "/admin/proposals/",
        "proposal report": "/admin/proposals/report",
        "department": "/admin/proposals/department",
        "care": "/admin/care/",
        "care stats": "/admin/care/stats",
        "meetings": "/admin/meetings/",
        "greetings": "/admin/greetings/",
        "chats": "/admin/chats/",
    }
    office = {"members", "activities", "proposals", "proposal report", "care", "care stats", "meetings", "greetings"}
    sees = {
        "admin": set(pages) - {"care stats"},
        "chair": office,
        "clerk": office | {"chats"},
        "leader": {"activities"},
        "dept": {"department"},
    }
    for username, allowed in sees.items():
        client = app.test_client()
        assert login(client, username, DEMO_PASSWORD).status_code == 302, username
        assert client.get("/admin/").status_code == 200
        got = {name for name, path in pages.items() if client.get(path).status_code == 200}
        refused = {name for name, path in pages.items() if client.get(path).status_code == 403}
        assert (got, refused) == (allowed, set(pages) - allowed), username
        case_page = client.get(f"/admin/care/case/{case_id}")
        assert (STORY in case_page.get_data(as_text=True)) == (username == "chair"), username


def test_cli_demo_opens_activities_and_a_meeting_to_try(app, bot, chat_with):
    from models.activity import Activity, Signup
    from models.meeting import Meeting

    runner = app.test_cli_runner()
    r = runner.invoke(args=["demo"])
    assert r.exit_code == 0 and "新增 4 个可报名的活动；会议：新增 1 个" in r.output, r.output
    assert "新增 0 个可报名的活动；会议：新增 0 个" in runner.invoke(args=["demo"]).output  # repeatable
    with bot.db.Session() as s:
        activities = {a.title: a for a in s.scalars(select(Activity))}
        assert len(activities) == 4 and all(a.starts_at > bot.clock.now() for a in activities.values())
        assert activities["女职工手工编织沙龙"].audience_kind == "women"
        assert s.scalar(select(func.count()).select_from(Signup)) == 12  # a relay list to look at
        meeting = s.scalar(select(Meeting))
        assert meeting.kind == "工会委员会" and meeting.invites
        member = s.scalar(select(Member).where(Member.employee_no == "10002"))
    reply = chat_with(member).ask("活动")
    assert "职工羽毛球赛" in reply and "冬季健步走" in reply and "退休职工迎新茶话会" not in reply
