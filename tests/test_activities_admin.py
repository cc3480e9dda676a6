"""Console pages for activities: create, list, detail with filters and counts, add/remove, check-in, export,
cancel, and who may see what."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from models import StaffAccount
from models.activity import Activity, Signup, sign_up
from models.member import Member
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
