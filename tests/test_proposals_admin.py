"""Console pages for proposals: permissions, review and reply forms, report figures, export, set-up — and that an
anonymous sender's name appears nowhere."""

from __future__ import annotations

import io
from datetime import timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from handlers.proposals import chase_proposals
from models.messaging import OutboxMessage
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


def congress_form(**over) -> dict[str, str]:
    """The set-up page's congress form as a browser sends it (defaults unless overridden)."""
    form = {"name": "第三届第二次", "start": "2027-03-01", "end": "2027-03-20", "numbering": "year", "code": "",
            "delegates_only": "1", "categories": "工资福利，医疗卫生，后勤保障，劳动保护，民主管理，其他",
            "cosigners_required": "2", "reply_days": "30", "rehandle_days": "15", "chase_before_days": "3",
            "chase_every_days": "3", "escalate_after_days": "14", "close_after_days": "15"}  # fmt: skip
    form.update({k: str(v) for k, v in over.items()})
    return form


def test_setup_pages_create_congress_and_department(client, bot):
    add_member(bot, name="吴总务", employee_no="E100")
    add_staff(bot, username="rev", role="proposal_reviewer")
    login(client, username="rev")
    html = client.get("/admin/proposals/setup").get_data(as_text=True)
    assert 'name="chase_every_days" value="3"' in html and 'name="close_after_days" value="15"' in html
    resp = post(client, "/admin/proposals/setup/congress", congress_form(numbering="session", code=""))
    assert resp.status_code == 400 and "编号前缀" in resp.get_data(as_text=True)
    resp = post(
        client, "/admin/proposals/setup/congress",
        congress_form(cosigners_required=3, numbering="session", code="s32"), follow_redirects=True,
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


def test_congress_settings_are_editable_with_validation(client, bot, chat_with):
    cid = make_congress(bot)
    add_staff(bot, username="rev", role="proposal_reviewer")
    login(client, username="rev")
    url = f"/admin/proposals/setup/congress/{cid}"
    assert "修改设置" in client.get("/admin/proposals/setup").get_data(as_text=True)
    html = client.get(url).get_data(as_text=True)
    assert 'name="cosigners_required" value="2"' in html and "工资福利，医疗卫生" in html
    today = bot.clock.today()
    good = dict(start=(today - timedelta(days=1)).isoformat(), end=(today + timedelta(days=7)).isoformat())
    bad = [
        ({"end": (today - timedelta(days=2)).isoformat()}, "不能早于开始"),
        ({"chase_every_days": "0"}, "逾期后每隔几天督办请填 1 到 60"),
        ({"escalate_after_days": "-1"}, "逾期超过几天报告主席请填 0 到 365"),
        ({"close_after_days": "abc"}, "答复后几天未评价自动办结请填 1 到 365"),
        ({"categories": "食堂,3"}, "不能只是数字：3"),
        ({"code": "第三届"}, "字母和数字"),
    ]
    for over, message in bad:
        resp = post(client, url, congress_form(**{**good, **over}))
        assert resp.status_code == 400 and message in resp.get_data(as_text=True), over
    with bot.db.Session() as s:
        assert s.get(Congress, cid).chase_every_days == 3  # nothing saved
    resp = post(
        client, url,
        congress_form(**good, name="第三届第三次", categories="食堂餐饮，交通出行、其他", cosigners_required=1,
                      chase_before_days=5, chase_every_days=2, escalate_after_days=4, close_after_days=7,
                      reply_days=20, rehandle_days=10, delegates_only=0),
        follow_redirects=True,
    )  # fmt: skip
    assert "已保存届次“第三届第三次”的设置" in resp.get_data(as_text=True)
    with bot.db.Session() as s:
        c = s.get(Congress, cid)
        got = (c.name, c.categories, c.cosigners_required, c.chase_before_days, c.chase_every_days,
               c.escalate_after_days, c.close_after_days, c.reply_days, c.rehandle_days, c.delegates_only)  # fmt: skip
        assert got == ("第三届第三次", ["食堂餐饮", "交通出行", "其他"], 1, 5, 2, 4, 7, 20, 10, False)
        assert c.window_open(bot.clock.now())
    # once a proposal is numbered, the number series cannot change (the rest still can)
    write_proposal(
        chat_with(add_member(bot, name="刘提案", is_delegate=True)), category="2", cosigners="跳过"
    )
    resp = post(client, url, congress_form(**good, numbering="session", code="S33"))
    assert resp.status_code == 400 and "不能再改编号方式" in resp.get_data(as_text=True)
    resp = post(client, url, congress_form(**good, categories="食堂餐饮，其他"), follow_redirects=True)
    assert "已保存" in resp.get_data(as_text=True)


def test_custom_categories_through_chat_and_in_the_list_filter(client, bot, chat_with):
    cid = make_congress(bot)
    with bot.db.transaction() as s:
        s.get(Congress, cid).categories = ["食堂餐饮", "交通出行", "其他"]
    c = chat_with(add_member(bot, name="刘提案", is_delegate=True))
    question = c.ask("我要提案")
    assert "1. 食堂餐饮\n2. 交通出行\n3. 其他" in question and "工资福利" not in question
    c.ask("取消")
    num, _ = write_proposal(c, category="2")
    with bot.db.Session() as s:
        assert find_by_number(s, num).category == "交通出行"
    add_staff(bot, username="clerk1", role="clerk")
    login(client, username="clerk1")
    html = client.get("/admin/proposals/").get_data(as_text=True)
    assert '<option value="食堂餐饮"' in html and '<option value="工资福利"' not in html
    assert num in client.get("/admin/proposals/?category=交通出行").get_data(as_text=True)
    assert num not in client.get("/admin/proposals/?category=食堂餐饮").get_data(as_text=True)
    assert num in client.get(f"/admin/proposals/?congress={cid}").get_data(as_text=True)
    assert num not in client.get(f"/admin/proposals/?congress={cid + 1}").get_data(as_text=True)


def test_non_default_chase_settings_on_a_travelled_clock(client, bot, chat_with):
    cid = make_congress(bot)
    zongwu = add_member(bot, name="吴总务")
    make_department(bot, "总务处", zongwu)
    chat_with(add_member(bot, name="周主席", roles=("chair",)))
    add_staff(bot, username="rev", role="proposal_reviewer")
    login(client, username="rev")
    today = bot.clock.today()
    window = dict(start=(today - timedelta(days=1)).isoformat(), end=(today + timedelta(days=7)).isoformat())
    resp = post(client, f"/admin/proposals/setup/congress/{cid}",
                congress_form(**window, cosigners_required=0, chase_before_days=5, chase_every_days=2,
                              escalate_after_days=4))  # fmt: skip
    assert resp.status_code == 302
    num, _ = write_proposal(chat_with(add_member(bot, name="刘提案", is_delegate=True)))
    with bot.db.Session() as s:
        pid, dept = find_by_number(s, num).id, s.scalar(select(Department))
    due = today + timedelta(days=10)
    post(client, f"/admin/proposals/{pid}/accept", {"lead": dept.id, "due": due.isoformat()})
    inbox = chat_with(zongwu)

    def run(day: int) -> tuple[int, int]:
        """(reminders to the department, reports to the chair) sent by the daily job on `day`."""
        bot.clock.offset = timedelta(days=day)
        with bot.db.Session() as s:
            before = s.scalars(
                select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.like("chase:%"))
            ).all()
        chase_proposals(bot)
        with bot.db.Session() as s:
            keys = set(
                s.scalars(
                    select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.like("chase:%"))
                )
            ) - set(before)
        return (sum(":chair:" not in k for k in keys), sum(":chair:" in k for k in keys))

    assert run(4) == (0, 0)  # 6 days before
    assert run(5) == (1, 0) and run(5) == (0, 0)  # 5 days before, once
    assert run(10) == (0, 0) and run(11) == (0, 0)  # due, 1 day late
    assert run(12) == (1, 0)  # 2 days late: every 2 days
    assert run(14) == (1, 0)  # 4 days late: not yet more than 4
    assert run(15) == (0, 1)  # 5 days late: the chair
    assert run(16) == (1, 0)
    texts = [p.get("text", "") for p in inbox.inbox()]
    assert any("将于" in t for t in texts) and any("已超过答复期限 6 天" in t for t in texts)


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
