"""Console pages for hardship cases and care events: lists by permission, case page and actions, stats, export,
audit log."""

from __future__ import annotations

import io
import re

from openpyxl import load_workbook
from sqlalchemy import select

from models.care import AuditLog, CareEvent, HardshipCase
from models.messaging import OutboxMessage
from models.staff import StaffAccount
from tests.conftest import add_member
from tests.test_admin import add_staff, csrf, login
from tests.test_care import STORY, member_pushes, submit_case


def setup_case(bot, chat_with):
    member = add_member(bot, "王芳")
    chat_with(member)
    chat_with(add_member(bot, "陈主席", roles=["branch_chair"]))
    submit_case(chat_with(member))
    with bot.db.Session() as s:
        c = s.scalar(select(HardshipCase))
        return member, c.id, c.number


def test_reviewer_sees_full_case_and_takes_every_step(bot, client, chat_with):
    member, case_id, number = setup_case(bot, chat_with)
    add_staff(bot, "rev", role="hardship_reviewer")
    login(client, "rev")
    html = client.get("/admin/care/").get_data(as_text=True)
    assert number in html and "王芳" in html
    page = client.get(f"/admin/care/case/{case_id}").get_data(as_text=True)
    assert STORY in page and "记录核实" in page
    token = csrf(client, f"/admin/care/case/{case_id}")
    steps = [
        ("verify", {"visit": "2026-11-20", "notes": "家访属实内部"}),
        ("approve", {"kind": "帮扶金", "amount": "3000", "note": ""}),
        ("deliver", {"day": "", "amount": "", "note": ""}),
        ("follow_up", {"notes": "情况好转"}),
        ("close", {"note": ""}),
    ]
    for step, data in steps:
        r = client.post(f"/admin/care/case/{case_id}/{step}", data={"csrf_token": token, **data})
        assert r.status_code == 302, step
    with bot.db.Session() as s:
        c = s.get(HardshipCase, case_id)
        assert c.status == "closed" and c.aid_kind == "帮扶金"
    told = member_pushes(bot, member)
    assert "帮扶金 3000 元" in told and "已办结" in told and "家访属实内部" not in told
    with bot.db.Session() as s:
        labels = {r.actor_label for r in s.scalars(select(AuditLog).where(AuditLog.case_id == case_id))}
    assert "console:rev" in labels


def test_clerk_sees_only_that_a_case_exists(bot, client, chat_with):
    _, case_id, number = setup_case(bot, chat_with)
    add_staff(bot, "clerk1", role="clerk")
    login(client, "clerk1")
    html = client.get("/admin/care/").get_data(as_text=True)
    assert number in html and "大病" not in html
    page = client.get(f"/admin/care/case/{case_id}").get_data(as_text=True)
    assert "办理中" in page and STORY not in page and "记录核实" not in page
    token = csrf(client, "/admin/care/")
    r = client.post(f"/admin/care/case/{case_id}/verify", data={"csrf_token": token, "notes": "x"})
    assert r.status_code == 403
    assert client.get("/admin/care/export.xlsx").status_code == 403
    assert client.get("/admin/care/audit").status_code == 403


def test_other_branch_chair_gets_403(bot, client, chat_with):
    _, case_id, number = setup_case(bot, chat_with)
    other = add_member(bot, "周主席", roles=["branch_chair"], branch="外科分会", group="骨科")
    add_staff(bot, "bc2", role="branch_chair", member_id=other.id)
    login(client, "bc2")
    assert number not in client.get("/admin/care/").get_data(as_text=True)
    assert client.get(f"/admin/care/case/{case_id}").status_code == 403
    with bot.db.Session() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.detail == "denied: console")) is not None


def test_stats_export_and_audit_for_the_chair(bot, client, chat_with):
    setup_case(bot, chat_with)
    add_staff(bot, "boss", role="chair")
    login(client, "boss")
    assert "年度统计" in client.get("/admin/care/").get_data(as_text=True)
    assert "申请 1 件" in client.get("/admin/care/stats").get_data(as_text=True)
    r = client.get("/admin/care/export.xlsx")
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.data))
    cells = [c.value for row in wb["统计"].iter_rows() for c in row]
    assert "boss干事（console:boss）" in cells
    audit_page = client.get("/admin/care/audit").get_data(as_text=True)
    assert "导出" in audit_page and "console:boss" in audit_page


def test_system_admin_sees_only_that_a_case_exists(bot, client, chat_with):
    from bot.permissions import can

    _, case_id, number = setup_case(bot, chat_with)
    chat_with(add_member(bot, "刘组长", roles=["group_leader"])).ask("报告 住院 王芳 心内科 12床")
    assert can({"admin"}, "members.view") and can({"admin"}, "staff.manage")  # accounts: yes
    assert not any(can({"admin"}, p) for p in ("cases.review", "cases.verify", "cases.audit", "care.manage"))
    add_staff(bot, "root", role="admin")
    login(client, "root")
    html = client.get("/admin/care/").get_data(as_text=True)
    assert number in html and "王芳" in html and "大病" not in html
    assert "12床" not in html and "年度统计" not in html and "查阅记录" not in html  # no care tasks, no stats
    page = client.get(f"/admin/care/case/{case_id}").get_data(as_text=True)
    assert "办理中" in page and STORY not in page and "记录核实" not in page
    token = csrf(client, "/admin/care/")
    assert client.post(f"/admin/care/case/{case_id}/verify", data={"csrf_token": token, "notes": "x"}).status_code == 403
    for path in ("/admin/care/stats", "/admin/care/export.xlsx", "/admin/care/audit"):
        assert client.get(path).status_code == 403, path
    admin_member = add_member(bot, "管理员", roles=["admin"], branch="办公室", group="办")
    chat = chat_with(admin_member)
    reply = chat.ask(f"查看 {number}")
    assert "王芳" in reply and "办理中" in reply and STORY not in reply
    assert "只对" in chat.ask("帮扶统计") and "只对" in chat.ask("关怀任务")
    assert "没有办理" in chat.ask(f"核实 {number} 家访 今天 属实")


def test_each_list_view_writes_one_audit_row(bot, client, chat_with):
    member, case_id, number = setup_case(bot, chat_with)
    leader = add_member(bot, "刘组长", roles=["group_leader"])
    chat_with(leader).ask("报告 住院 王芳 心内科 12床")
    add_staff(bot, "rev", role="hardship_reviewer")
    login(client, "rev")

    def list_rows():
        with bot.db.Session() as s:
            return [
                (r.actor_label, r.action, r.subject, r.case_id, r.detail)
                for r in s.scalars(select(AuditLog).where(AuditLog.detail.like("%list%")).order_by(AuditLog.id))
            ]

    assert list_rows() == []
    assert number in client.get("/admin/care/").get_data(as_text=True)
    assert number not in client.get("/admin/care/?status=closed").get_data(as_text=True)
    assert number in client.get("/admin/care/?status=open").get_data(as_text=True)
    with bot.db.Session() as s:
        per_case = s.scalars(select(AuditLog).where(AuditLog.case_id == case_id, AuditLog.action == "view")).all()
    assert per_case == []  # one row per page, not one per case shown
    assert list_rows() == [
        ("console:rev", "view", "case", None, "console list: filter=all, 1 cases, 1 care tasks"),
        ("console:rev", "view", "case", None, "console list: filter=closed, 0 cases, 1 care tasks"),
        ("console:rev", "view", "case", None, "console list: filter=open, 1 cases, 1 care tasks"),
    ]
    with bot.db.Session() as s:
        at = s.scalars(select(AuditLog.at).where(AuditLog.detail.like("console list%"))).all()
    assert all(a is not None and abs((a - bot.clock.now()).total_seconds()) < 60 for a in at)
    # the chat lists too: once per list shown
    assert number in chat_with(add_member(bot, "陈二主席", roles=["branch_chair"])).ask("帮扶待办")
    assert "王芳" in chat_with(leader).ask("关怀任务")
    assert list_rows()[3:] == [
        ("陈二主席", "view", "case", None, "chat list: 帮扶待办, 1 cases"),
        ("刘组长", "view", "care", None, "chat list: 关怀任务, 1 tasks"),
    ]


def board_rows(html: str) -> dict[str, str]:
    """Care task board rows by member name (the board table is the second table on the page)."""
    board = html.split("关怀任务（五必访）", 1)[1]
    rows = {}
    for tr in board.split("<tr>")[2:]:
        name = re.search(r"</td><td>([^<]+)</td>", tr).group(1)
        rows[name] = tr
    return rows


def test_care_task_board_due_overdue_done(bot, client, chat_with):
    from datetime import timedelta

    setup_case(bot, chat_with)
    zhang = add_member(bot, "张三")
    add_member(bot, "李四")
    add_member(bot, "钱外科", branch="外科分会", group="骨科小组")
    reporter = chat_with(add_member(bot, "报告人"))
    bot.clock.offset = -timedelta(days=5)
    try:
        reporter.ask("报告 住院 李四 心内科 3床")  # due 3 days after a report 5 days ago: overdue
    finally:
        bot.clock.offset = timedelta()
    reporter.ask("报告 结婚 钱外科")  # due in 7 days, another branch
    reporter.ask("报告 住院 张三 骨科 8床")
    with bot.db.Session() as s:
        zhang_task = s.scalar(select(CareEvent.id).where(CareEvent.member_id == zhang.id))
    bchair = chat_with(member_by_name(bot, "陈主席"))
    assert "300" in bchair.ask(f"探望 {zhang_task} 今天 陈主席 果篮 300")

    add_staff(bot, "clerk1", role="clerk")
    login(client, "clerk1")
    rows = board_rows(client.get("/admin/care/").get_data(as_text=True))
    assert set(rows) == {"李四", "钱外科", "张三"}
    assert "已逾期" in rows["李四"] and "心内科 3床" in rows["李四"]
    assert "待探望" in rows["钱外科"] and "已逾期" not in rows["钱外科"]
    assert "已探望" in rows["张三"] and "陈主席" in rows["张三"] and "果篮" in rows["张三"] and "300" in rows["张三"]

    # a branch chair's board holds their own branch only
    other = client.application.test_client()
    add_staff(bot, "bc1", role="branch_chair", member_id=member_by_name(bot, "陈主席").id)
    login(other, "bc1")
    assert set(board_rows(other.get("/admin/care/").get_data(as_text=True))) == {"李四", "张三"}


def member_by_name(bot, name):
    from models.member import Member

    with bot.db.Session() as s:
        return s.scalar(select(Member).where(Member.name == name))


def test_console_offers_and_allows_close_only_after_follow_up(bot, client, chat_with):
    member, case_id, number = setup_case(bot, chat_with)
    add_staff(bot, "rev", role="hardship_reviewer")
    login(client, "rev")
    token = csrf(client, f"/admin/care/case/{case_id}")
    post = lambda step, **data: client.post(f"/admin/care/case/{case_id}/{step}", data={"csrf_token": token, **data})  # noqa: E731
    post("verify", visit="2026-11-20", notes="属实")
    post("approve", kind="帮扶金", amount="3000", note="")

    def close_is_refused(status):
        assert "结案" not in client.get(f"/admin/care/case/{case_id}").get_data(as_text=True).split("</section>", 1)[1]
        post("close", note="")
        page = client.get(f"/admin/care/case/{case_id}").get_data(as_text=True)
        assert "现在不能做这一步" in page and "下一步是" in page
        with bot.db.Session() as s:
            assert s.get(HardshipCase, case_id).status == status

    close_is_refused("decided")
    post("deliver", day="", amount="", note="")
    close_is_refused("delivered")
    assert "已办结" not in member_pushes(bot, member)
    post("follow_up", notes="好转")
    assert "结案" in client.get(f"/admin/care/case/{case_id}").get_data(as_text=True)
    post("close", note="")
    with bot.db.Session() as s:
        assert s.get(HardshipCase, case_id).status == "closed"


def test_unit_scoped_account_without_member_sees_no_care_tasks(bot, client, chat_with):
    setup_case(bot, chat_with)
    add_member(bot, "钱外科", branch="外科分会", group="骨科小组")
    reporter = chat_with(add_member(bot, "报告人"))
    reporter.ask("报告 住院 钱外科 骨科 8床 肺部感染")
    add_staff(bot, "bc0", role="branch_chair")  # no linked member: no branch
    login(client, "bc0")
    html = client.get("/admin/care/").get_data(as_text=True)
    assert "钱外科" not in html and "肺部感染" not in html


def test_cli_refuses_a_unit_scoped_account_without_member(app):
    runner = app.test_cli_runner()
    for role in ("branch_chair", "group_leader", "分会主席"):
        r = runner.invoke(args=["staff", "create", "bc", "--role", role, "--password", "s3cret-pass"])
        assert r.exit_code != 0 and "--member" in r.output, r.output
    with app.extensions["bot"].db.Session() as s:
        assert s.scalar(select(StaffAccount).where(StaffAccount.username == "bc")) is None
    r = runner.invoke(args=["staff", "create", "c1", "--role", "clerk", "--password", "s3cret-pass"])
    assert r.exit_code == 0, r.output


class Refusing:
    """The platform refuses the applicant for good and fails the branch chair for now, naming them in the error."""

    def __init__(self, real, dead_user: str, flaky_user: str):
        self.real, self.dead_user, self.flaky_user = real, dead_user, flaky_user

    def send(self, row):
        from bot.outbox import SendResult

        if row.target_id == self.dead_user:
            return SendResult(False, f"invalid touser {row.target_id}", permanent=True, code="81013")
        if row.target_id == self.flaky_user:
            return SendResult(False, f"timeout sending to {row.target_id}", code="timeout")
        return self.real.send(row)


def test_a_clerk_never_sees_hardship_text_on_any_console_page(bot, client, chat_with):
    from bot.adapters import sandbox
    from tests.test_care import run_to

    people = {
        "member": add_member(bot, "王芳"),
        "bchair": add_member(bot, "陈主席", roles=["branch_chair"]),
        "reviewer": add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="工会办公室", group="办公室"),
    }
    for m in people.values():
        chat_with(m)
    dead_user, flaky_user = sandbox.user_id_for(people["member"]), sandbox.user_id_for(people["bchair"])
    bot.senders["sandbox"] = Refusing(bot.senders["sandbox"], dead_user, flaky_user)
    n, _ = run_to(bot, chat_with, people, until="decided")
    with bot.db.Session() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.status.in_(("dead", "pending")))))
        case_id = s.scalar(select(HardshipCase.id))
    assert {r.status for r in rows} == {"dead", "pending"} and all(r.sensitive for r in rows)
    add_staff(bot, "clerk1", role="clerk")
    login(client, "clerk1")
    secrets = (STORY[:8], "脑梗", "手术费", "慰问金", "邻居反映有债务", "家访", "爱人务农")
    secrets += (dead_user, flaky_user)
    pages = ["/admin/", "/admin/outbox/", "/admin/outbox/?status=dead", "/admin/outbox/?status=retrying",
             "/admin/care/", f"/admin/care/case/{case_id}", "/admin/members?status=all",
             f"/admin/members/{people['member'].id}"]  # fmt: skip
    for url in pages:
        resp = client.get(url)
        assert resp.status_code == 200, url
        html = resp.get_data(as_text=True)
        shown = [x for x in secrets if x in html]
        assert not shown or (url.startswith("/admin/members/") and shown == [dead_user]), (url, shown)
    outbox_page = client.get("/admin/outbox/").get_data(as_text=True)
    assert outbox_page.count("涉及隐私，内容已隐去") == len(rows) and "81013" in outbox_page  # has teeth
    assert "涉及隐私，内容已隐去" in client.get("/admin/").get_data(as_text=True)
