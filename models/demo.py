"""The demo union 示例人民医院工会: branches, groups, ~200 invented members, roles and console logins.

Everything is drawn from `random.Random(seed)`, so the same seed gives the same union (names are random
combinations of common characters, not real people). Safe to run twice: branches, groups, members (by 工号)
and console accounts (by username) that already exist are left as they are; only what is missing is added.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.member import ROLE_LABELS, Branch, Group, Member
from models.roster import solar_to_lunar
from models.staff import StaffAccount

UNION_NAME = "示例人民医院工会"
DEMO_PASSWORD = "demo12345"
FIRST_EMPLOYEE_NO = 10001

# branch -> (share of members, groups, job titles with weights)
BRANCHES: dict[str, tuple[float, tuple[str, ...], dict[str, int]]] = {
    "内科分会": (
        0.22,
        ("心内科小组", "呼吸科小组", "消化科小组", "神经内科小组", "肾内科小组"),
        {"医师": 3, "主治医师": 4, "副主任医师": 2, "主任医师": 1, "护士": 3, "护师": 4, "主管护师": 3},
    ),
    "外科分会": (
        0.19,
        ("普外科小组", "骨科小组", "神经外科小组", "泌尿外科小组"),
        {"医师": 3, "主治医师": 4, "副主任医师": 2, "主任医师": 1, "护士": 3, "护师": 3, "主管护师": 2},
    ),
    "护理分会": (
        0.20,
        ("急诊科小组", "手术室小组", "重症医学科小组", "门诊护理小组"),
        {"护士": 5, "护师": 5, "主管护师": 4, "副主任护师": 1},
    ),
    "医技分会": (
        0.15,
        ("检验科小组", "影像科小组", "药剂科小组", "超声科小组"),
        {"检验师": 3, "主管检验师": 1, "药师": 3, "主管药师": 1, "技师": 3, "医师": 1},
    ),
    "机关后勤分会": (
        0.12,
        ("行政办公小组", "后勤保障小组", "信息中心小组"),
        {"行政": 5, "工勤": 4},
    ),
    "离退休分会": (0.12, ("离退休第一小组", "离退休第二小组"), {"退休": 1}),
}
# groups whose work fixes the job titles (otherwise the branch's titles apply)
GROUP_TITLES: dict[str, dict[str, int]] = {
    "检验科小组": {"检验师": 3, "主管检验师": 1},
    "影像科小组": {"技师": 3, "医师": 1},
    "药剂科小组": {"药师": 3, "主管药师": 1},
    "超声科小组": {"医师": 2, "技师": 1},
    "行政办公小组": {"行政": 1},
    "后勤保障小组": {"工勤": 1},
    "信息中心小组": {"行政": 1},
}
BIRTH_YEARS = {
    "护士": (1995, 2002), "护师": (1988, 1997), "主管护师": (1975, 1990), "副主任护师": (1966, 1978),
    "医师": (1992, 2000), "主治医师": (1982, 1993), "副主任医师": (1972, 1985), "主任医师": (1964, 1975),
    "检验师": (1985, 2000), "主管检验师": (1972, 1988), "药师": (1985, 2000), "主管药师": (1972, 1988),
    "技师": (1982, 2000), "行政": (1970, 1998), "工勤": (1968, 1995), "退休": (1962, 1970),
}  # fmt: skip
NURSING = {"护士", "护师", "主管护师", "副主任护师"}
SENIOR = {"主任医师", "副主任医师", "副主任护师", "主管护师", "主治医师", "主管药师", "主管检验师"}

SURNAMES = (
    "王王王李李李张张张刘刘陈陈杨杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
    "杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万严"
)
GIVEN_F = "秀丽静敏燕艳娟霞芳婷玲慧雪琳颖倩佳欣怡璐梅兰红萍晶洁丹莉琴瑶晓婉思雅悦桂英淑珍凤春月彩云"
GIVEN_M = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆旭宁龙林洋建国志文德福海峰成荣庆东新永"


@dataclass
class DemoSummary:
    union: str = UNION_NAME
    members: int = 0  # demo members in the database after seeding
    created_members: int = 0
    branches: int = 0
    groups: int = 0
    delegates: int = 0
    retired: int = 0
    lunar: int = 0
    women: int = 0
    roles: dict[str, int] = field(default_factory=dict)
    staff: list[tuple[str, str, str]] = field(default_factory=list)  # (username, password, role) created

    def lines(self) -> list[str]:
        roles = "、".join(f"{ROLE_LABELS[r]}{n}" for r, n in sorted(self.roles.items()))
        out = [
            f"{self.union}：{self.branches}个分会、{self.groups}个小组、{self.members}名会员"
            f"（本次新增{self.created_members}名）",
            f"其中女职工{self.women}名、离退休{self.retired}名、职工代表{self.delegates}名、农历生日{self.lunar}名",
            f"角色：{roles or '无'}",
        ]
        if self.staff:
            out.append(
                "后台登录（/admin/）："
                + "；".join(f"{u} / {p}（{ROLE_LABELS[r]}）" for u, p, r in self.staff)
            )
        else:
            out.append("后台账号已存在，未改动。")
        return out


@dataclass
class _Person:
    name: str
    employee_no: str
    branch: str
    group: str
    title: str
    gender: str
    birthday: date
    lunar: bool
    phone: str
    roles: set[str] = field(default_factory=set)
    delegate: bool = False


def _shares(total: int) -> dict[str, int]:
    """Members per branch (largest remainders), every branch getting at least one when total allows."""
    raw = {b: total * spec[0] / sum(s[0] for s in BRANCHES.values()) for b, spec in BRANCHES.items()}
    counts = {b: int(x) for b, x in raw.items()}
    for b in sorted(raw, key=lambda b: raw[b] - counts[b], reverse=True)[: total - sum(counts.values())]:
        counts[b] += 1
    return counts


def _people(members: int, rng: random.Random) -> list[_Person]:
    phones = rng.sample(range(10**8), members)
    used_names: set[str] = set()
    people: list[_Person] = []
    for branch, n in _shares(members).items():
        _share, groups, titles = BRANCHES[branch]
        for i in range(n):
            group = groups[i % len(groups)]
            choices = GROUP_TITLES.get(group, titles)
            title = rng.choices(list(choices), weights=list(choices.values()))[0]
            women = 0.95 if title in NURSING else 0.45 if "医师" in title else 0.6
            gender = "女" if rng.random() < women else "男"
            lo, hi = BIRTH_YEARS[title]
            birthday = date(rng.randint(lo, hi), 1, 1) + timedelta(days=rng.randrange(365))
            name = _name(rng, gender, used_names)
            people.append(
                _Person(
                    name=name,
                    employee_no=str(FIRST_EMPLOYEE_NO + len(people)),
                    branch=branch,
                    group=group,
                    title=title,
                    gender=gender,
                    birthday=birthday,
                    lunar=rng.random() < 0.15,
                    phone=f"139{phones[len(people)]:08d}",
                )
            )
    _assign_roles(people, rng)
    return people


def _name(rng: random.Random, gender: str, used: set[str]) -> str:
    chars = GIVEN_F if gender == "女" else GIVEN_M
    for _ in range(100):
        given = "".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2, 2))))
        name = rng.choice(SURNAMES) + given
        if name not in used:
            used.add(name)
            return name
    name = rng.choice(SURNAMES) + "".join(rng.choice(chars) for _ in range(3))
    used.add(name)
    return name


def _assign_roles(people: list[_Person], rng: random.Random) -> None:
    def free(pool: list[_Person]) -> list[_Person]:
        return [p for p in pool if not p.roles]

    def take(pool: list[_Person], role: str, k: int = 1, key=None) -> None:
        def order(items: list[_Person]) -> list[_Person]:
            return sorted(items, key=key) if key is not None else rng.sample(items, len(items))

        candidates = order(free(pool))
        if len(candidates) < k:  # a small union: anyone still without a role will do
            candidates += order([p for p in free(people) if p not in candidates])
        for p in candidates[:k]:
            p.roles.add(role)

    active = [p for p in people if p.title != "退休"]
    office = [p for p in people if p.branch == "机关后勤分会" and p.title == "行政"]
    take(office, "chair", key=lambda p: p.birthday)  # the oldest administrator chairs the union
    take([p for p in office if p.group == "行政办公小组"] or office, "clerk", 2)
    take([p for p in office if p.group == "信息中心小组"] or office, "admin")
    for branch in BRANCHES:
        members = [p for p in people if p.branch == branch]
        seniors = [p for p in members if p.title in SENIOR or p.title == "行政"] or members
        if members:
            take(seniors, "branch_chair", key=lambda p: (p.birthday, p.employee_no))
    for branch, (_s, groups, _t) in BRANCHES.items():
        for group in groups:
            take([p for p in people if p.branch == branch and p.group == group], "group_leader")
    take([p for p in active if p.title in SENIOR] or active, "proposal_reviewer", 3)
    take([p for p in active if p.branch in ("机关后勤分会", "护理分会")] or active, "hardship_reviewer", 2)

    # delegates (~15%): the chair and branch chairs of working branches, then a fair draw of working members
    target = round(len(people) * 0.15)
    for p in active:
        if p.roles & {"chair", "branch_chair", "proposal_reviewer"}:
            p.delegate = True
    rest = [p for p in active if not p.delegate]
    for p in rng.sample(rest, max(0, min(len(rest), target - sum(p.delegate for p in people)))):
        p.delegate = True


def _add_login(session: Session, summary: DemoSummary, username: str, role: str, display: str,
               member: Member | None) -> None:  # fmt: skip
    if session.scalar(select(StaffAccount).where(StaffAccount.username == username)) is None:
        account = StaffAccount(username=username, role=role, display_name=display, member=member)
        account.set_password(DEMO_PASSWORD)
        session.add(account)
        summary.staff.append((username, DEMO_PASSWORD, role))


def seed_department_login(session: Session, summary: DemoSummary) -> None:
    """The login `dept` of a handling department's contact (the 承办答复 page), once models.proposal's seed_demo
    has made the departments: the first contact with no union role, so it shows what a department alone sees."""
    from models.proposal import Department, DepartmentContact

    rows = session.execute(
        select(Department.name, DepartmentContact.member_id)
        .join(DepartmentContact, DepartmentContact.department_id == Department.id)
        .order_by(Department.id, DepartmentContact.id)
    ).all()
    contacts = [(name, session.get(Member, member_id)) for name, member_id in rows]
    name, member = next(((n, m) for n, m in contacts if m.roles == {"member"}), contacts[0] if contacts else (None, None))
    if member is not None:
        _add_login(session, summary, "dept", "department", name, member)
        session.flush()


def seed_demo(session: Session, *, members: int = 200, seed: int = 42) -> DemoSummary:
    """Create (or complete) the demo union; returns what the database holds afterwards."""
    rng = random.Random(seed)
    people = _people(members, rng)
    summary = DemoSummary()

    branches = {b.name: b for b in session.scalars(select(Branch))}
    groups = {(g.branch.name, g.name): g for g in session.scalars(select(Group))}
    for name, (_s, group_names, _t) in BRANCHES.items():
        if name not in branches:
            branches[name] = Branch(name=name)
            session.add(branches[name])
        for g in group_names:
            if (name, g) not in groups:
                groups[(name, g)] = Group(name=g, branch=branches[name])
                session.add(groups[(name, g)])

    nos = [p.employee_no for p in people]
    existing = {m.employee_no: m for m in session.scalars(select(Member).where(Member.employee_no.in_(nos)))}
    by_no: dict[str, Member] = {}
    for p in people:
        m = existing.get(p.employee_no)
        if m is None:
            m = Member(
                name=p.name,
                employee_no=p.employee_no,
                branch=branches[p.branch],
                group=groups[(p.branch, p.group)],
                phone=p.phone,
                gender=p.gender,
                job_title=p.title,
                birthday=p.birthday,
                retired=p.title == "退休",
                is_delegate=p.delegate,
            )
            if p.lunar:
                month, day, leap = solar_to_lunar(p.birthday)
                m.birthday_is_lunar, m.lunar_birth_month, m.lunar_birth_day = True, month, day
                m.lunar_birth_leap = leap
            m.set_roles(p.roles)
            session.add(m)
            summary.created_members += 1
        by_no[p.employee_no] = m
    session.flush()

    # one login per kind of console user, so a newcomer sees every page: the admin manages accounts but does not
    # read hardship cases; the chair does (and proposals, reports); a group leader sees only their own group
    def holder(role: str) -> Member | None:
        return next((by_no[p.employee_no] for p in people if role in p.roles), None)

    for username, role, fallback in (("admin", "admin", "系统管理员"), ("chair", "chair", "工会主席"),
                                     ("clerk", "clerk", "干事"), ("leader", "group_leader", "小组长")):  # fmt: skip
        member = holder(role) if role != "admin" else None
        _add_login(session, summary, username, role, member.name if member else fallback, member)
    session.flush()

    demo = list(by_no.values())
    summary.members = len(demo)
    summary.branches = len(BRANCHES)
    summary.groups = sum(len(spec[1]) for spec in BRANCHES.values())
    summary.delegates = sum(m.is_delegate for m in demo)
    summary.retired = sum(m.retired for m in demo)
    summary.lunar = sum(m.birthday_is_lunar for m in demo)
    summary.women = sum(m.gender == "女" for m in demo)
    summary.roles = dict(Counter(r for m in demo for r in m.roles if r != "member"))
    return summary
