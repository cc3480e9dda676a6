"""Anonymous suggestions: nothing the console, the export or the API shows links the sender to the suggestion —
not even when the answer to them cannot be delivered and lands in the dashboard's failed-messages list."""

from __future__ import annotations

import io
import json

from openpyxl import load_workbook
from sqlalchemy import select

from bot import outbox
from bot.outbox import SCRUBBED_PAYLOAD, SendResult
from models.messaging import OutboxMessage
from models.proposal import Proposal
from tests.conftest import add_member
from tests.test_activities_api import token
from tests.test_admin import add_staff, login
from tests.test_proposals import make_congress, make_department


class Unreachable:
    """The platform refuses every message to one user for good (left the company), naming them in the error."""

    def __init__(self, real, user_id: str):
        self.real, self.user_id = real, user_id

    def send(self, row):
        if row.target_id == self.user_id:
            return SendResult(False, f"invalid touser {row.target_id}", permanent=True, code="81013")
        return self.real.send(row)


def _submit_anonymous(chat) -> None:
    chat.ask("匿名反映个问题")
    for t in ("4", "夜班防护不足", "发热门诊防护服经常断货，护士只能重复使用。", "增加库存", "总务处"):
        chat.ask(t)
    assert "已匿名收到" in chat.ask("确认")


def test_no_console_page_export_or_api_links_the_sender_to_the_suggestion(app, client, bot, chat_with):
    make_congress(bot)
    sender = add_member(bot, name="冯匿名", employee_no="ANON7")
    reviewer = add_member(bot, name="孙委员", roles=("proposal_reviewer",))
    contact = add_member(bot, name="吴总务")
    make_department(bot, "总务处", contact)
    c, rc = chat_with(sender), chat_with(reviewer)
    _submit_anonymous(c)
    with bot.db.Session() as s:
        p = s.scalar(select(Proposal).where(Proposal.anonymous.is_(True)))
        pid, number, title = p.id, p.number, p.title
    # from now on nothing reaches the sender: the answer and their own look-ups end up "dead"
    bot.senders["sandbox"] = Unreachable(bot.senders["sandbox"], c.user_id)
    assert "已答复" in rc.ask(f"答复 {number} 已给发热门诊增加防护服库存")
    c.say(f"提案 {number}")
    c.say("我的提案")
    outbox.drain(bot)
    with bot.db.Session() as s:
        dead = list(s.scalars(select(OutboxMessage).where(OutboxMessage.status == "dead")))
        assert len(dead) == 3 and all(r.sensitive for r in dead)
        for r in dead:
            assert (
                r.target_id == ""
                and r.payload == SCRUBBED_PAYLOAD
                and r.context == {}
                and r.member_id is None
            )
            assert c.user_id not in (r.last_error or "") and "81013" in r.last_error
        leftovers = s.scalars(select(OutboxMessage).where(OutboxMessage.target_id == c.user_id)).all()
        assert not any(number in json.dumps(r.payload, ensure_ascii=False) for r in leftovers)

    identity = (sender.name, sender.employee_no, c.user_id)
    suggestion = (number, title, "重复使用")

    def check(where: str, text: str) -> None:
        who = [x for x in identity if x in text]
        what = [x for x in suggestion if x in text]
        assert not (who and what), (where, who, what)

    add_staff(bot, username="root", role="admin")
    login(client, username="root")
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "涉及隐私，内容已隐去" in dashboard
    pages = ["/admin/", "/admin/members?status=all", f"/admin/members/{sender.id}", "/admin/proposals/",
             f"/admin/proposals/{pid}", "/admin/proposals/report", "/admin/proposals/setup",
             "/admin/proposals/?kind=suggestion&category=劳动保护"]  # fmt: skip
    for url in pages:
        resp = client.get(url)
        assert resp.status_code == 200, url
        check(url, resp.get_data(as_text=True))
    assert number in client.get(f"/admin/proposals/{pid}").get_data(as_text=True)  # the check has teeth
    assert c.user_id in client.get(f"/admin/members/{sender.id}").get_data(as_text=True)
    wb = load_workbook(io.BytesIO(client.get("/admin/proposals/export.xlsx").data))
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            check(f"export {ws.title}", " ".join(str(v) for v in row if v is not None))

    add_staff(bot, username="zongwu", role="department", member_id=contact.id)  # the department's own page
    dept = app.test_client()
    login(dept, username="zongwu")
    html = dept.get("/admin/proposals/department").get_data(as_text=True)
    assert number in html
    check("department page", html)

    headers = token(app, "admin")
    for path in ("/proposals", f"/proposals/{pid}", "/proposals/public", "/proposals?kind=suggestion",
                 "/members?per_page=200", f"/members/{sender.employee_no}"):  # fmt: skip
        resp = client.get(f"/api/v1{path}", headers=headers)
        assert resp.status_code == 200, path
        check(path, resp.get_data(as_text=True))


def test_failed_ordinary_messages_still_show_their_recipient(app, client, bot, chat_with):
    """Only sensitive rows are hidden: the dashboard keeps telling staff who missed an ordinary message."""
    member = add_member(bot, name="钱会员", employee_no="E55")
    c = chat_with(member)
    bot.senders["sandbox"] = Unreachable(bot.senders["sandbox"], c.user_id)
    c.say("帮助")
    outbox.drain(bot)
    add_staff(bot, username="clerk1", role="clerk")
    login(client, username="clerk1")
    html = client.get("/admin/").get_data(as_text=True)
    assert f"私聊：{c.user_id}" in html and "涉及隐私" not in html


def test_sensitive_rows_marked_sent_by_a_sender_are_scrubbed_too(bot):
    """WeCom sends several replies to one message in one request and marks the others sent itself."""
    now = bot.clock.now()
    with bot.db.transaction() as s:
        for i in range(2):
            outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="sb-X", message={"type": "text",
                           "text": f"建2027-00{i}"}, key=f"k{i}", sensitive=True, now=now)  # fmt: skip
        outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="sb-X",
                       message={"type": "text", "text": "普通消息"}, key="plain", now=now)  # fmt: skip

    class Merging:
        def send(self, row):
            with bot.db.transaction() as s:
                s.execute(
                    OutboxMessage.__table__.update()
                    .where(OutboxMessage.idempotency_key == "k1")
                    .values(status="sent")
                )
            return SendResult(True)

    bot.senders["sandbox"] = Merging()
    assert outbox.deliver_due(bot, limit=1) == 1  # k0, which takes k1 along
    with bot.db.Session() as s:
        rows = {r.idempotency_key: r for r in s.scalars(select(OutboxMessage))}
    assert rows["k0"].target_id == rows["k1"].target_id == ""
    assert rows["k0"].payload == rows["k1"].payload == SCRUBBED_PAYLOAD
    assert rows["plain"].target_id == "sb-X" and rows["plain"].status == "pending"
