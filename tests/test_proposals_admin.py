"""Console pages for proposals: permissions, review and reply forms, report figures, export, set-up — and that an
anonymous sender's name appears nowhere."""

from __future__ import annotations

import io
from datetime import timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from models.proposal import Congress, Department, Proposal, find_by_number
from tests.conftest import add_member
from tests.test_admin import add_staff, login, post
from tests.test_proposals import make_congress, make_department, pushes, write_proposal


def _proposal_in_review(bot, chat_with):
    make_congress(bot)
    make_department(bot, "总务处", add_member(bot, name="吴总务"))
    proposer = add_member(bot, name="刘提案", is_delegate=True)
    c1, c2 = (chat_with(add_member(bot, name=n, is_delegate=True)) for n in ("李代表", "王代表"))
    num, _ = write_proposal(chat_with(proposer))
    c1.ask(f"附议 {num}")
    c2.ask(f"附议 {num}")
    with bot.db.Session() as s:
        p = find_by_number(s, num)
        return p.id, num, proposer


def test_console_needs_the_permission(client, bot):
    add_staff(bot, username="staff1", role="hardship_reviewer")
    login(client, username="staff1")
    assert client.get("/admin/proposals/").status_code == 403
    assert client.get("/admin/proposals/report").status_code == 403
    assert client.get("/admin/proposals/export.xlsx").status_code == 403


def test_clerk_sees_but_cannot_review(client, bot, chat_with):
    pid, num, _ = _proposal_in_review(bot, chat_with)
    add_staff(bot, username="clerk1", role="clerk")
    login(client, username="clerk1")
    html = client.get("/admin/proposals/").get_data(as_text=True)
    assert num in html and "刘提案" in html
    assert "立案交办" not in client.get(f"/admin/proposals/{pid}").get_data(as_text=True)
    with bot.db.Session() as s:
        dept = s.scalar(select(Department))
    resp = post(client, f"/admin/proposals/{pid}/accept", {"lead": dept.id, "due": "2099-01-01"})
    assert resp.status_code == 403


def test_review_and_reply_in_the_console(client, bot, chat_with):
    pid, num, proposer = _proposal_in_review(bot, chat_with)
    reviewer = add_member(bot, name="孙委员", roles=("proposal_reviewer",))
    add_staff(bot, username="rev", role="proposal_reviewer", member_id=reviewer.id)
    login(client, username="rev")
    assert "立案交办" in client.get(f"/admin/proposals/{pid}").get_data(as_text=True)
    with bot.db.Session() as s:
        dept = s.scalar(select(Department))
    due = (bot.clock.today() + timedelta(days=20)).isoformat()
    resp = post(
        client, f"/admin/proposals/{pid}/accept", {"lead": dept.id, "due": due}, follow_redirects=True
    )
    assert "已立案" in resp.get_data(as_text=True)
    # an illegal step is refused with the message
    resp = post(client, f"/admin/proposals/{pid}/decline", {"reason": "重复"}, follow_redirects=True)
    assert "不能改为" in resp.get_data(as_text=True)
    resp = post(
        client, f"/admin/proposals/{pid}/reply", {"dept": dept.id, "kind": "done", "text": "已增设车位"},
        follow_redirects=True,
    )  # fmt: skip
    html = resp.get_data(as_text=True)
    assert "已答复" in html and "孙委员" in html
    with bot.db.Session() as s:
        assert find_by_number(s, num).status == "replied"
    assert any("有答复了" in t for t in pushes(bot, proposer))
    report = client.get("/admin/proposals/report").get_data(as_text=True)
    assert 'id="n-accepted">1<' in report and "已增设车位" in report
    assert 'id="on-time">100.0%<' in report


def test_setup_pages_create_congress_and_department(client, bot):
    add_member(bot, name="吴总务", employee_no="E100")
    add_staff(bot, username="rev", role="proposal_reviewer")
    login(client, username="rev")
    assert client.get("/admin/proposals/setup").status_code == 200
    resp = post(
        client, "/admin/proposals/setup/congress",
        {"name": "第三届第二次", "start": "2027-03-01", "end": "2027-03-20", "cosigners": "3",
         "numbering": "session", "code": "s32", "delegates_only": "1"},
        follow_redirects=True,
    )  # fmt: skip
    assert "已添加届次" in resp.get_data(as_text=True)
    resp = post(
        client, "/admin/proposals/setup/department", {"name": "总务处", "contacts": "E100, E999"},
        follow_redirects=True,
    )  # fmt: skip
    assert "E999" in resp.get_data(as_text=True)
    with bot.db.Session() as s:
        c = s.scalar(select(Congress))
        d = s.scalar(select(Department))
        assert (c.cosigners_required, c.series(), c.delegates_only) == (3, "S32", True)
        assert [x.member.name for x in d.contacts] == ["吴总务"]


def test_anonymous_sender_never_appears_in_the_console(client, bot, chat_with):
    make_congress(bot)
    sender = add_member(bot, name="钱匿名")
    c = chat_with(sender)
    c.ask("匿名反映个问题")
    for t in ("4", "防护用品不够", "发热门诊防护服经常断货，护士只能重复使用。", "增加库存", "跳过"):
        c.ask(t)
    assert "已匿名收到" in c.ask("确认")
    with bot.db.Session() as s:
        num = s.scalar(select(Proposal.number).where(Proposal.anonymous.is_(True)))
    add_staff(bot, username="chair1", role="chair")
    login(client, username="chair1")
    with bot.db.Session() as s:
        pid = find_by_number(s, num).id
    pages = [
        client.get(u).get_data(as_text=True)
        for u in ("/admin/proposals/", f"/admin/proposals/{pid}", "/admin/proposals/report")
    ]
    assert num in pages[0] and "匿名" in pages[1]
    assert not any("钱匿名" in html for html in pages)
    post(client, f"/admin/proposals/{pid}/reply", {"kind": "done", "text": "已补充防护服库存"})
    with bot.db.Session() as s:
        assert find_by_number(s, num).status == "answered"
    assert any("有答复了" in x.get("text", "") for x in c.inbox())
    wb = load_workbook(io.BytesIO(client.get("/admin/proposals/export.xlsx").data))
    cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v]
    assert num in cells and not any("钱匿名" in v for v in cells)
