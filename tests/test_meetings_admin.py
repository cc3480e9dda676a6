"""Console pages for meetings: list, create / edit (change notices), cancel, RSVP list with attendance ticks,
the congress quorum, the .xlsx export, and who may do what."""

from __future__ import annotations

import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import select

from handlers.meetings import create_meeting
from models import StaffAccount
from models.meeting import Meeting, MeetingInvite
from models.member import Branch
from tests.conftest import add_member

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 10, tzinfo=SH)
PASSWORD = "correct horse 42"


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


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


def form(**fields):
    return {
        "title": "十二月工会委员会会议",
        "kind": "工会委员会",
        "starts_at": "2026-12-04T14:30",
        "place": "行政楼三楼会议室",
        "agenda": "年终总结",
        "rsvp_deadline": "2026-12-03T18:00",
        "reminders": "",
        **fields,
    }


def the_meeting(bot) -> Meeting:
    with bot.db.Session() as s:
        m = s.scalar(select(Meeting).order_by(Meeting.id.desc()))
        m.invites  # noqa: B018 - load before the session closes
        return m


def test_needs_login_and_permission(client, bot):
    assert client.get("/admin/meetings/").status_code == 302
    add_staff(bot, "chair1", role="branch_chair")
    login(client, "chair1")
    assert client.get("/admin/meetings/").status_code == 403
    assert "/admin/meetings/" not in client.get("/admin/").get_data(as_text=True)
    assert post(client, "/admin/meetings/new", form(roles="clerk")).status_code == 403


def test_create_sends_invitations_to_roles_branches_and_listed_members(clerk, bot, chat_with):
    chair = add_member(bot, "分会主席", roles=["branch_chair"])
    surgeon = add_member(bot, "外科甲", employee_no="W1", branch="外科分会", group="普外小组")
    listed = add_member(bot, "药剂甲", employee_no="Y1", branch="药剂科分会", group="药房小组")
    outsider = add_member(bot, "路人", branch="药剂科分会", group="药房小组")
    chats = {m.name: chat_with(m) for m in (chair, surgeon, listed, outsider)}
    assert "会议" in clerk.get("/admin/").get_data(as_text=True)  # the nav entry
    page = clerk.get("/admin/meetings/new").get_data(as_text=True)
    assert "1天、1小时" in page and "外科分会" in page and "职代会" in page
    with bot.db.Session() as s:
        surgery = s.scalar(select(Branch.id).where(Branch.name == "外科分会"))
    data = form(roles="branch_chair", branches=str(surgery), members="Y1", reminders="2小时，30分钟")
    resp = post(clerk, "/admin/meetings/new", data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    m = the_meeting(bot)
    assert m.kind == "工会委员会" and m.place == "行政楼三楼会议室" and m.agenda == "年终总结"
    assert m.starts_at == datetime(2026, 12, 4, 14, 30, tzinfo=SH)
    assert m.rsvp_deadline == datetime(2026, 12, 3, 18, tzinfo=SH) and m.reminder_minutes == [120, 30]
    assert m.attendees == {"roles": ["branch_chair"], "branches": [surgery], "members": [listed.id]}
    assert sorted(i.member_id for i in m.invites) == sorted([chair.id, surgeon.id, listed.id])
    for name in ("分会主席", "外科甲", "药剂甲"):
        (card,) = chats[name].inbox()
        assert card["title"] == "会议通知：十二月工会委员会会议"
    assert chats["路人"].inbox() == []
    listing = clerk.get("/admin/meetings/").get_data(as_text=True)
    assert "十二月工会委员会会议" in listing and "待召开" in listing
    detail = clerk.get(f"/admin/meetings/{m.id}").get_data(as_text=True)
    assert "2小时、30分钟" in detail and "分会主席、外科分会、指定会员 1 人" in detail


def test_form_errors_are_shown_and_nothing_is_sent(clerk, bot):
    resp = post(
        clerk,
        "/admin/meetings/new",
        form(
            title="",
            kind="茶话会",
            starts_at="2026-11-30T09:00",
            rsvp_deadline="bad",
            reminders="明早",
            members="NOPE1",
        ),
    )
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    for text in (
        "请填写会议名称",
        "会议类型应为",
        "会议时间应在将来",
        "时间格式不对",
        "提醒时间写成",
        "NOPE1",
    ):
        assert text in html, text
    resp = post(clerk, "/admin/meetings/new", form(rsvp_deadline="2026-12-05T09:00"))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "回执截止不能晚于会议开始" in html and "请选择参会人员" in html
    with bot.db.Session() as s:
        assert s.scalar(select(Meeting)) is None


def test_edit_notifies_everyone_invited_and_reconciles_the_list(clerk, bot, chat_with):
    a = add_member(bot, "甲", roles=["clerk"], employee_no="A1")
    b = add_member(bot, "乙", roles=["clerk"], employee_no="B1")
    c = add_member(bot, "丙", employee_no="C1")
    ca, cb, cc = chat_with(a), chat_with(b), chat_with(c)
    post(clerk, "/admin/meetings/new", form(roles="clerk"))
    mid = the_meeting(bot).id
    ca.inbox(), cb.inbox()
    ca.ask(f"请假 {mid} 值班")
    page = clerk.get(f"/admin/meetings/{mid}/edit").get_data(as_text=True)
    assert 'value="十二月工会委员会会议"' in page and "2026-12-04T14:30" in page
    # same details, other attendees: B and C instead of A and B
    resp = post(clerk, f"/admin/meetings/{mid}/edit", form(members="B1 C1"))
    assert resp.status_code == 302
    flashed = clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
    assert "新邀请 1 人" in flashed and "1 人不再参会" in flashed and "变更通知" not in flashed
    assert any("不用参加了" in p.get("text", "") for p in ca.inbox())
    assert [p["title"] for p in cc.inbox()] == ["会议通知：十二月工会委员会会议"]
    assert cb.inbox() == []
    # new time and place: everyone invited now is told
    post(
        clerk,
        f"/admin/meetings/{mid}/edit",
        form(members="B1 C1", starts_at="2026-12-05T09:00", place="礼堂"),
    )
    for chat in (cb, cc):
        (notice,) = chat.inbox()
        assert notice["title"] == "会议变更：十二月工会委员会会议"
        assert "时间：12月5日（周六）09:00" in notice["lines"] and "地点：礼堂" in notice["lines"]
    assert ca.inbox() == []
    assert "变更通知已发给受邀的 2 人" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)


def test_rsvp_list_attendance_ticks_and_quorum(clerk, bot, chat_with):
    delegates = [add_member(bot, f"代表{i}", is_delegate=True) for i in range(6)]
    chats = [chat_with(d) for d in delegates]
    post(clerk, "/admin/meetings/new", form(title="第三届第二次职代会", kind="职代会", delegates="1"))
    mid = the_meeting(bot).id
    for chat in chats[:4]:
        chat.ask(f"参加 {mid}")
    chats[4].ask(f"请假 {mid} 出差")
    page = clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
    assert "4/6" in page and "至少 5 人" in page and "还差 1 人" in page and "出差" in page
    assert "4/6（需 5）" in clerk.get("/admin/meetings/").get_data(as_text=True)
    filtered = clerk.get(f"/admin/meetings/{mid}?rsvp=excused").get_data(as_text=True)
    assert "代表4" in filtered and "代表0" not in filtered
    chats[5].ask(f"参加 {mid}")
    assert "已达到" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)

    with bot.db.Session() as s:
        invites = {i.member.name: i.id for i in s.scalars(select(MeetingInvite))}
    url = f"/admin/meetings/{mid}/invites/{{}}/attendance"
    assert post(clerk, url.format(invites["代表0"]), {"attended": "yes"}).status_code == 302
    post(clerk, url.format(invites["代表4"]), {"attended": "no"})
    post(clerk, url.format(invites["代表1"]), {"attended": "yes"})
    post(clerk, url.format(invites["代表1"]), {"attended": "clear"})
    assert post(clerk, url.format(invites["代表2"]), {"attended": "maybe"}).status_code == 400
    assert clerk.post(url.format(invites["代表2"]), data={"attended": "yes"}).status_code == 400  # no CSRF
    with bot.db.Session() as s:
        ticks = {i.member.name: i.attended for i in s.scalars(select(MeetingInvite))}
    assert ticks == {
        "代表0": True,
        "代表1": None,
        "代表2": None,
        "代表3": None,
        "代表4": False,
        "代表5": None,
    }
    assert "已签到代表 1 人" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)

    resp = clerk.get(f"/admin/meetings/{mid}/export")
    assert resp.status_code == 200 and "meeting-" in resp.headers["Content-Disposition"]
    rows = list(load_workbook(io.BytesIO(resp.data)).active.iter_rows(values_only=True))
    assert rows[1][0] == "姓名"
    by_name = {r[0]: r for r in rows[2:8]}
    assert by_name["代表0"][5:] == ("参加", None, by_name["代表0"][7], "已到")
    assert by_name["代表4"][5:7] == ("请假", "出差") and by_name["代表4"][8] == "缺席"
    assert "签到 1" in rows[-2][0] and "5/6" in rows[-1][0]


def test_export_cells_are_formula_safe(clerk, bot):
    evil = add_member(bot, '=HYPERLINK("http://x")', employee_no="+1", roles=["clerk"])
    with bot.db.transaction() as s:
        m = create_meeting(
            s,
            bot,
            title="@SUM(A1)",
            starts_at=datetime(2026, 12, 4, 9, tzinfo=SH),
            attendees={"members": [evil.id]},
        )
        mid = m.id
        m.invites[0].rsvp, m.invites[0].reason = "excused", "-1+2"
    rows = list(load_workbook(io.BytesIO(clerk.get(f"/admin/meetings/{mid}/export").data)).active.values)
    assert rows[0][0] == "'@SUM(A1)"
    assert rows[2][:2] == ('\'=HYPERLINK("http://x")', "'+1") and rows[2][6] == "'-1+2"


def test_cancel_needs_the_title_and_notifies_everyone(clerk, bot, chat_with):
    a, b = add_member(bot, "甲", roles=["clerk"]), add_member(bot, "乙", roles=["clerk"])
    ca, cb = chat_with(a), chat_with(b)
    post(clerk, "/admin/meetings/new", form(roles="clerk"))
    mid = the_meeting(bot).id
    ca.inbox(), cb.inbox()
    ca.ask(f"请假 {mid} 出差")
    post(clerk, f"/admin/meetings/{mid}/cancel", {"confirm": "别的会", "reason": "冲突"})
    assert the_meeting(bot).status == "scheduled"
    assert "请输入会议名称确认取消" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
    post(
        clerk,
        f"/admin/meetings/{mid}/cancel",
        {"confirm": "十二月工会委员会会议", "reason": "与上级会议冲突"},
    )
    m = the_meeting(bot)
    assert m.status == "cancelled" and m.cancel_reason == "与上级会议冲突"
    for chat in (ca, cb):
        texts = [p.get("text", "") for p in chat.inbox()]
        assert any("已取消" in t and "与上级会议冲突" in t for t in texts)
    page = clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
    assert "此会议已取消" in page and "修改会议" not in page
    resp = clerk.get(f"/admin/meetings/{mid}/edit")
    assert resp.status_code == 302
    assert "已取消，不能再修改" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
    post(clerk, f"/admin/meetings/{mid}/cancel", {"confirm": "十二月工会委员会会议"})
    assert "已取消" in clerk.get("/admin/meetings/?status=cancelled").get_data(as_text=True)
    assert clerk.get("/admin/meetings/999").status_code == 404


def test_started_meeting_cannot_be_edited(clerk, bot):
    add_member(bot, "甲", roles=["clerk"])
    post(clerk, "/admin/meetings/new", form(roles="clerk", starts_at="2026-12-01T11:00", rsvp_deadline=""))
    mid = the_meeting(bot).id
    with time_machine.travel(datetime(2026, 12, 1, 11, 30, tzinfo=SH), tick=False):
        resp = post(clerk, f"/admin/meetings/{mid}/edit", form(roles="clerk", place="别处"))
        assert resp.status_code == 302
        assert "已经开始或结束" in clerk.get(f"/admin/meetings/{mid}").get_data(as_text=True)
        post(clerk, f"/admin/meetings/{mid}/cancel", {"confirm": "十二月工会委员会会议"})
    m = the_meeting(bot)
    assert m.place == "行政楼三楼会议室" and m.status == "scheduled"
