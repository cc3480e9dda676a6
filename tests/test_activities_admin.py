"""Console pages for activities: create, list, detail with filters and counts, add/remove, check-in, export,
cancel, and who may see what."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from models import StaffAccount
from models.activity import Activity, Signup, sign_up
from models.member import Branch, Group, Member
from tests.conftest import add_member

PASSWORD = "correct horse 42"


def add_staff(bot, username, role="clerk", member_id=None):
    with bot.db.transaction() as s:
        acc = StaffAccount(username=username, display_name=username, role=role, member_id=member_id)
        acc.set_password(PASSWORD)
        s.add(acc)


def csrf(client, path="/admin/login") -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert m
    return m.group(1)


def login(client, username):
    resp = client.post(
        "/admin/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf(client)}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)


def post(client, path, data=None):
    data = dict(data or {})
    data.setdefault("csrf_token", csrf(client, "/admin/"))
    return client.post(path, data=data)


@pytest.fixture
def clerk(client, bot):
    add_staff(bot, "clerk1")
    login(client, "clerk1")
    return client


def local(days: int, hour: int = 9) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).astimezone().strftime(f"%Y-%m-%dT{hour:02d}:00")


def test_create_list_detail_add_remove_checkin_export(clerk, bot):
    for no, name in (("E1", "甲"), ("E2", "乙"), ("E3", "=cmd")):
        add_member(bot, name, employee_no=no)
    resp = post(
        clerk,
        "/admin/activities/new",
        {
            "title": "乒乓球比赛",
            "place": "活动中心",
            "starts_at": local(5),
            "signup_deadline": local(4, 18),
            "capacity": "1",
            "companions_max": "0",
            "audience_kind": "all",
            "waitlist_enabled": "1",
            "q0_label": "项目",
            "q0_options": "单打、双打",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    with bot.db.Session() as s:
        a = s.scalar(select(Activity))
        assert a.capacity == 1 and a.questions == [
            {"key": "q1", "label": "项目", "options": ["单打", "双打"]}
        ]
        aid = a.id
    assert "乒乓球比赛" in clerk.get("/admin/activities/").get_data(as_text=True)
    assert clerk.get("/admin/activities/new").status_code == 200
    edit = clerk.get(f"/admin/activities/{aid}/edit").get_data(as_text=True)
    assert 'value="乒乓球比赛"' in edit and "单打、双打" in edit

    post(clerk, f"/admin/activities/{aid}/signups", {"employee_no": "E1", "companions": "0"})
    post(clerk, f"/admin/activities/{aid}/signups", {"employee_no": "E3", "companions": "0"})
    page = clerk.get(f"/admin/activities/{aid}").get_data(as_text=True)
    assert "甲" in page and "候补" in page and "按分会" in page
    page = clerk.get(f"/admin/activities/{aid}?status=waitlisted").get_data(as_text=True)
    assert "=cmd" in page and ">甲<" not in page

    with bot.db.Session() as s:
        first = s.scalar(select(Signup).where(Signup.status == "confirmed"))
    post(clerk, f"/admin/activities/{aid}/signups/{first.id}/checkin")
    with bot.db.Session() as s:
        assert s.get(Signup, first.id).checked_in_at is not None

    resp = clerk.get(f"/admin/activities/{aid}/export")
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(resp.data)).active
    values = [[c.value for c in row] for row in ws.iter_rows(min_row=2)]
    assert [v[1] for v in values] == ["甲", "'=cmd"]

    post(clerk, f"/admin/activities/{aid}/signups/{first.id}/remove")
    with bot.db.Session() as s:
        statuses = {r.member.name: r.status for r in s.scalars(select(Signup))}
    assert statuses == {"甲": "cancelled", "=cmd": "confirmed"}  # the waitlist moved up

    resp = post(clerk, f"/admin/activities/{aid}/cancel", {"confirm": "乒乓球比赛"})
    with bot.db.Session() as s:
        assert s.get(Activity, aid).status == "cancelled"


def test_form_errors(clerk):
    resp = post(clerk, "/admin/activities/new", {"title": "", "starts_at": "bad", "capacity": "x"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "请填写活动名称" in html and "时间格式不对" in html and "整数" in html


def test_branch_chair_sees_own_branch_only(client, bot):
    chair = add_member(bot, "内科主席", roles=("branch_chair",))
    add_member(bot, "内科甲", employee_no="N1")
    add_member(bot, "外科甲", employee_no="W1", branch="外科分会", group="外科小组")
    add_staff(bot, "chair1", role="branch_chair", member_id=chair.id)
    with bot.db.transaction() as s:
        now = datetime.now(UTC)
        a = Activity(
            title="秋游",
            starts_at=now + timedelta(days=5),
            capacity=10,
            taken=0,
            seq=0,
            waitlist_enabled=True,
            companions_max=0,
            questions=[],
            audience_kind="all",
            audience_ids=[],
            status="open",
        )
        s.add(a)
        s.flush()
        for no in ("N1", "W1"):
            sign_up(s, a, s.scalar(select(Member).where(Member.employee_no == no)), now)
        aid = a.id
    login(client, "chair1")
    page = client.get(f"/admin/activities/{aid}").get_data(as_text=True)
    assert "内科甲" in page and "外科甲" not in page and "仅显示您负责范围内" in page
    ws = load_workbook(io.BytesIO(client.get(f"/admin/activities/{aid}/export").data)).active
    assert [r[1].value for r in ws.iter_rows(min_row=2)] == ["内科甲"]
    assert post(client, f"/admin/activities/{aid}/cancel", {"confirm": "秋游"}).status_code == 403


def test_needs_login(client):
    assert client.get("/admin/activities/").status_code == 302


# ---- helpers: what a browser submits, activities in the past ------------------------------------------------


class _FormReader(HTMLParser):
    """The fields a browser would submit for the page's main form (class grid-form): selects without a selected
    option submit their first option, unchecked boxes submit nothing."""

    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = self._done = False
        self._select: dict | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and "grid-form" in (a.get("class") or "") and not self._done:
            self._in_form = True
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select = {"name": a["name"], "multiple": "multiple" in a, "options": [], "chosen": []}
        elif tag == "option" and self._select is not None:
            self._select["options"].append(a["value"])
            if "selected" in a:
                self._select["chosen"].append(a["value"])
        elif tag == "textarea":
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if not self._in_form:
            return
        if tag == "select" and self._select is not None:
            sel, self._select = self._select, None
            chosen = sel["chosen"] or ([] if sel["multiple"] else sel["options"][:1])
            self.fields += [(sel["name"], v) for v in chosen]
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text))
            self._textarea = None
        elif tag == "form":
            self._in_form, self._done = False, True


def browser_form(client, path: str) -> MultiDict:
    reader = _FormReader()
    reader.feed(client.get(path).get_data(as_text=True))
    return MultiDict(reader.fields)


def past_activity(bot, starts_at, **kw) -> int:
    with bot.db.transaction() as s:
        a = Activity(
            title=kw.pop("title", "健步走"),
            starts_at=starts_at,
            capacity=None,
            taken=0,
            seq=0,
            waitlist_enabled=True,
            companions_max=0,
            questions=[],
            audience_kind=kw.pop("audience_kind", "all"),
            audience_ids=kw.pop("audience_ids", []),
            status=kw.pop("status", "open"),
            **kw,
        )
        s.add(a)
        s.flush()
        return a.id


def sign(bot, aid, employee_no, at, checked_in=False):
    """A confirmed sign-up made at `at` (before the start), optionally checked in."""
    with bot.db.transaction() as s:
        a = s.get(Activity, aid)
        m = s.scalar(select(Member).where(Member.employee_no == employee_no))
        saved = a.starts_at, a.status
        a.starts_at, a.status = at + timedelta(days=1), "open"  # as it was when the member signed up
        s.flush()
        res = sign_up(s, a, m, at)
        assert res.ok, res.outcome
        s.refresh(a)
        a.starts_at, a.status = saved
        if checked_in:
            res.signup.checked_in_at = a.starts_at
        return res.signup.id


def stat(html: str, label: str) -> int:
    m = re.search(r'<span class="num">(\d+)</span><span class="label">' + re.escape(label), html)
    assert m, label
    return int(m[1])


# ---- list audience --------------------------------------------------------------------------------------


def test_list_audience_is_created_validated_and_kept_on_edit(clerk, bot, chat_with):
    for no, name in (("L1", "王秀珍"), ("L2", "刘桂英"), ("L3", "张三"), ("L4", "张三"), ("L5", "外人")):
        add_member(bot, name, employee_no=no)
    form = {
        "title": "职工读书会",
        "starts_at": local(5),
        "capacity": "10",
        "companions_max": "0",
        "audience_kind": "list",
    }
    resp = post(
        clerk, "/admin/activities/new", {**form, "audience_people": "L1，刘桂英 无名氏\nE999 张三 李四（L2）"}
    )
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "找不到这些会员：无名氏、E999" in html
    assert "同名的会员请写工号：张三（L3、L4）" in html
    assert "工号和姓名对不上：L2 是刘桂英，不是李四" in html
    resp = post(clerk, "/admin/activities/new", {**form, "audience_people": "L1\n刘桂英，张三（L4）"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    with bot.db.Session() as s:
        a = s.scalar(select(Activity))
        ids = {m.employee_no: m.id for m in s.scalars(select(Member))}
        assert a.audience_kind == "list" and sorted(a.audience_ids) == sorted(
            [ids["L1"], ids["L2"], ids["L4"]]
        )
        aid = a.id
    assert "指定人员（3 人）" in clerk.get(f"/admin/activities/{aid}").get_data(as_text=True)

    # the edit page submitted as a browser would: the list audience and its people survive unchanged
    fields = browser_form(clerk, f"/admin/activities/{aid}/edit")
    assert fields.get("audience_kind") == "list"
    fields["place"] = "图书馆"
    assert clerk.post(f"/admin/activities/{aid}/edit", data=fields).status_code == 302
    with bot.db.Session() as s:
        a = s.get(Activity, aid)
        assert a.place == "图书馆" and a.audience_kind == "list"
        assert sorted(a.audience_ids) == sorted([ids["L1"], ids["L2"], ids["L4"]])
    assert "面向指定人员" in chat_with(add_member(bot, "路人", employee_no="L9")).ask(f"报名 {aid}")
    assert "报名成功" in chat_with(_member(bot, "L4")).ask(f"报名 {aid}")


def _member(bot, employee_no):
    with bot.db.Session() as s:
        m = s.scalar(select(Member).where(Member.employee_no == employee_no))
        s.expunge(m)
        return m


def test_group_and_branch_audiences_round_trip(clerk, bot):
    add_member(bot, "内科甲", employee_no="N1")
    add_member(bot, "外科甲", employee_no="W1", branch="外科分会", group="外科小组")
    with bot.db.Session() as s:
        groups = {g.name: g.id for g in s.scalars(select(Group))}
        branches = {b.name: b.id for b in s.scalars(select(Branch))}
    resp = post(
        clerk,
        "/admin/activities/new",
        {
            "title": "外科聚餐",
            "starts_at": local(5),
            "audience_kind": "groups",
            "audience_group_ids": [str(groups["外科小组"])],
            "audience_branch_ids": [str(branches["内科分会"])],  # ignored: the kind is groups
        },
    )
    assert resp.status_code == 302
    with bot.db.Session() as s:
        a = s.scalar(select(Activity))
        assert (a.audience_kind, a.audience_ids) == ("groups", [groups["外科小组"]])
    fields = browser_form(clerk, f"/admin/activities/{a.id}/edit")
    assert fields.getlist("audience_group_ids") == [str(groups["外科小组"])]
    assert fields.getlist("audience_branch_ids") == []  # a group id never shows up as a branch
    assert clerk.post(f"/admin/activities/{a.id}/edit", data=fields).status_code == 302
    with bot.db.Session() as s:
        assert s.get(Activity, a.id).audience_ids == [groups["外科小组"]]


# ---- change notices ---------------------------------------------------------------------------------------


def test_console_edit_tells_signed_up_members_what_changed(clerk, bot, chat_with):
    m = add_member(bot, "甲", employee_no="E1")
    c = chat_with(m)
    resp = post(
        clerk,
        "/admin/activities/new",
        {
            "title": "乒乓球比赛",
            "place": "活动中心",
            "starts_at": local(5),
            "capacity": "10",
            "audience_kind": "all",
        },
    )
    aid = int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
    c.ask(f"报名 {aid}")
    fields = browser_form(clerk, f"/admin/activities/{aid}/edit")

    fields["title"], fields["description"], fields["ends_at"] = "乒乓球友谊赛", "自带球拍", local(5, 11)
    resp = clerk.post(f"/admin/activities/{aid}/edit", data=fields, follow_redirects=True)
    assert "已私信通知 1 位报名的会员：名称、结束时间、说明有变更" in resp.get_data(as_text=True)
    notes = [p["text"] for p in c.inbox() if "有变更" in p.get("text", "")]
    assert len(notes) == 1
    assert "名称：乒乓球比赛 → 乒乓球友谊赛" in notes[0] and "说明已更新：自带球拍" in notes[0]
    assert "结束时间：未定 → " in notes[0] and "时间：" not in notes[0].replace("结束时间", "")

    fields = browser_form(clerk, f"/admin/activities/{aid}/edit")
    fields["capacity"], fields["remind_unanswered"] = "30", "1"  # organisers' settings: no notice
    resp = clerk.post(f"/admin/activities/{aid}/edit", data=fields, follow_redirects=True)
    assert "已私信通知" not in resp.get_data(as_text=True)
    assert clerk.post(f"/admin/activities/{aid}/edit", data=fields).status_code == 302  # nothing changed
    fields["signup_deadline"] = local(4, 18)
    clerk.post(f"/admin/activities/{aid}/edit", data=fields)
    notes = [p["text"] for p in c.inbox() if "有变更" in p.get("text", "")]
    assert len(notes) == 1 and "报名截止：" in notes[0] and "名称" not in notes[0]


# ---- attendance, counts by group ------------------------------------------------------------------------------


@time_machine.travel(datetime(2027, 3, 1, 2, 0, tzinfo=UTC), tick=False)
def test_attendance_per_activity_and_per_year_in_the_unions_zone(client, bot):
    add_staff(bot, "clerk1")
    login(client, "clerk1")
    clerk = client
    for i in range(4):
        add_member(bot, f"会员{i}", employee_no=f"A{i}")
    # 2026-12-31 20:00 UTC is 2027-01-01 04:00 in Shanghai: a 2027 activity
    new_year = datetime(2026, 12, 31, 20, 0, tzinfo=UTC)
    june = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    a27 = past_activity(bot, new_year, title="元旦长跑")
    a26 = past_activity(bot, june, title="端午健步走")
    dropped = past_activity(bot, june, title="取消了的活动", status="cancelled")
    for no, came in (("A0", True), ("A1", True), ("A2", False)):
        sign(bot, a27, no, new_year - timedelta(days=3), checked_in=came)
    sign(bot, a26, "A0", june - timedelta(days=3), checked_in=True)
    sign(bot, a26, "A3", june - timedelta(days=3))
    sign(bot, dropped, "A1", june - timedelta(days=3), checked_in=True)

    html = clerk.get("/admin/activities/?year=2027").get_data(as_text=True)
    assert stat(html, "2027 年活动") == 1
    assert stat(html, "报名人次（已确认）") == 3 and stat(html, "签到人次") == 2
    assert stat(html, "参加过活动的会员") == 2
    row = re.search(r"元旦长跑.*?</tr>", html, re.S)[0]
    assert "<td>2 / 3</td>" in row  # came / confirmed
    html = clerk.get("/admin/activities/?year=2026").get_data(as_text=True)
    assert stat(html, "2026 年活动") == 1  # the cancelled one does not count
    assert stat(html, "报名人次（已确认）") == 2 and stat(html, "签到人次") == 1
    assert stat(html, "参加过活动的会员") == 1
    assert clerk.get("/admin/activities/?year=99999").status_code == 200


def test_detail_counts_by_branch_and_group(clerk, bot):
    for no, name, branch, group in (
        ("G1", "心内甲", "内科分会", "心内科小组"),
        ("G2", "心内乙", "内科分会", "心内科小组"),
        ("G3", "消化甲", "内科分会", "消化科小组"),
        ("G4", "外科甲", "外科分会", "外科小组"),
        ("G5", "外科乙", "外科分会", "外科小组"),
    ):
        add_member(bot, name, employee_no=no, branch=branch, group=group)
    aid = past_activity(bot, datetime.now(UTC) + timedelta(days=5), title="秋游")
    for no in ("G1", "G2", "G3", "G4"):
        sign(bot, aid, no, datetime.now(UTC))
    html = clerk.get(f"/admin/activities/{aid}").get_data(as_text=True)
    cells = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td></tr>", html)
    assert ("内科分会", "3") in cells and ("外科分会", "1") in cells
    assert ("心内科小组", "2") in cells and ("消化科小组", "1") in cells and ("外科小组", "1") in cells


# ---- a group leader's console -------------------------------------------------------------------------------


def test_group_leader_console_sees_only_their_group(client, bot):
    leader = add_member(bot, "心内组长", employee_no="K0", roles=("group_leader",))
    add_member(bot, "心内甲", employee_no="K1")
    add_member(bot, "外科甲", employee_no="K2", branch="外科分会", group="外科小组")
    add_staff(bot, "leader1", role="group_leader", member_id=leader.id)
    with bot.db.Session() as s:
        surgery = s.scalar(select(Group).where(Group.name == "外科小组")).id
        cardio = s.scalar(select(Group).where(Group.name == "心内科小组")).id
    soon = datetime.now(UTC) + timedelta(days=5)
    everyone = past_activity(bot, soon, title="全院秋游")
    theirs = past_activity(bot, soon, title="外科聚餐", audience_kind="groups", audience_ids=[surgery])
    s1 = sign(bot, everyone, "K1", datetime.now(UTC))
    s2 = sign(bot, everyone, "K2", datetime.now(UTC))
    sign(bot, theirs, "K2", datetime.now(UTC))
    login(client, "leader1")

    index = client.get("/admin/activities/").get_data(as_text=True)
    assert "全院秋游" in index and "外科聚餐" not in index
    row = re.search(r"全院秋游.*?</tr>", index, re.S)[0]
    assert "<td>1</td>" in row  # only their own group's sign-up is counted
    page = client.get(f"/admin/activities/{everyone}").get_data(as_text=True)
    assert "心内甲" in page and "外科甲" not in page and "仅显示您负责范围内" in page
    ws = load_workbook(io.BytesIO(client.get(f"/admin/activities/{everyone}/export").data)).active
    assert [r[1].value for r in ws.iter_rows(min_row=2)] == ["心内甲"]
    assert client.get(f"/admin/activities/{theirs}").status_code == 403
    assert client.get(f"/admin/activities/{theirs}/export").status_code == 403
    assert client.get(f"/admin/activities/{everyone}/edit").status_code == 403
    assert post(client, f"/admin/activities/{everyone}/cancel", {"confirm": "全院秋游"}).status_code == 403
    assert post(client, f"/admin/activities/{everyone}/signups", {"employee_no": "K1"}).status_code == 403
    assert post(client, f"/admin/activities/{everyone}/signups/{s2}/checkin").status_code == 404
    assert post(client, f"/admin/activities/{everyone}/signups/{s1}/checkin").status_code == 302
    with bot.db.Session() as s:
        assert s.get(Signup, s1).checked_in_at is not None and s.get(Signup, s2).checked_in_at is None

    # publishing: for their own group (or a list of their own people) only
    form = client.get("/admin/activities/new").get_data(as_text=True)
    assert 'value="all"' not in form and 'value="groups"' in form and "外科小组" not in form
    fields = browser_form(client, "/admin/activities/new")
    assert fields.get("audience_kind") == "groups" and fields.getlist("audience_group_ids") == [str(cardio)]
    base = {"title": "组内聚餐", "starts_at": local(5)}
    resp = post(client, "/admin/activities/new", {**base, "audience_kind": "all"})
    assert resp.status_code == 422 and "只能发布面向本分会或本小组" in resp.get_data(as_text=True)
    resp = post(
        client, "/admin/activities/new", {**base, "audience_kind": "list", "audience_people": "K1 K2"}
    )
    assert resp.status_code == 422 and "不在您负责的范围内：外科甲" in resp.get_data(as_text=True)
    resp = post(
        client,
        "/admin/activities/new",
        {**base, "audience_kind": "groups", "audience_group_ids": [str(surgery), str(cardio)]},
    )
    assert resp.status_code == 302
    with bot.db.Session() as s:
        mine = s.scalar(select(Activity).where(Activity.title == "组内聚餐"))
        assert (mine.audience_ids, mine.created_by_id) == ([cardio], leader.id)
    assert client.get(f"/admin/activities/{mine.id}/edit").status_code == 200  # the creator manages it
