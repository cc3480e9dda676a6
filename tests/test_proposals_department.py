"""A handling department answers in the console: a console account of role `department`, linked to a member who
is the department's contact, sees only what its department was given and replies there."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models.proposal import Department, find_by_number
from models.roster import CellError, _parse_roles
from tests.test_admin import add_staff, login, post
from tests.test_proposals import _to_review, cast, load, pushes  # noqa: F401  (cast is a fixture)


def _assigned(bot, chats):
    """2027-001 to 总务处 (lead) with 保卫处 (co); 2027-002 to 保卫处 only; a suggestion naming 总务处."""
    a = _to_review(bot, chats)
    b = _to_review(bot, chats, title="夜间巡逻")
    chats["reviewer"].ask(f"立案 {a} 总务处 协办 保卫处 期限 2099-12-31")
    chats["reviewer"].ask(f"立案 {b} 保卫处")
    c = chats["plain"]
    c.ask("提个建议")
    for t in ("2", "门诊增加座椅", "门诊候诊区座位不够，老人要站很久。", "增加30把座椅", "总务处"):
        c.ask(t)
    s = c.ask("确认").split("编号 ")[1].split("，")[0]
    return a, b, s


def _ids(bot, *numbers):
    with bot.db.Session() as s:
        return [find_by_number(s, n).id for n in numbers]


def test_a_department_account_sees_only_its_work_and_replies(client, bot, cast):  # noqa: F811
    ppl, chats = cast
    a, b, sug = _assigned(bot, chats)
    ida, idb, ids = _ids(bot, a, b, sug)
    add_staff(bot, username="zongwu", role="department", member_id=ppl["zongwu"].id)
    login(client, username="zongwu")
    home = client.get("/admin/").get_data(as_text=True)
    assert "承办答复" in home and "提案管理" not in home
    for url in ("/admin/proposals/", f"/admin/proposals/{ida}", "/admin/proposals/setup", "/admin/members"):
        assert client.get(url).status_code == 403, url
    html = client.get("/admin/proposals/department").get_data(as_text=True)
    assert a in html and sug in html and b not in html and "待答复（2 件）" in html
    assert not any(m.name in html for k, m in ppl.items() if k != "zongwu")  # no proposers, no co-signers
    # another department's proposal: refused
    assert (
        post(client, f"/admin/proposals/department/{idb}/reply", {"kind": "done", "text": "好了"}).status_code
        == 403
    )
    # in progress needs a plan date
    resp = post(client, f"/admin/proposals/department/{ida}/reply", {"kind": "in_progress", "text": "已立项"},
                follow_redirects=True)  # fmt: skip
    assert "计划完成日期" in resp.get_data(as_text=True) and load(bot, a).status == "accepted"
    resp = post(client, f"/admin/proposals/department/{ida}/reply",
                {"kind": "in_progress", "text": "已完成选址，正在施工", "plan": "2099-06-30"}, follow_redirects=True)  # fmt: skip
    assert "已答复" in resp.get_data(as_text=True)
    p = load(bot, a)
    assert p.status == "replied" and p.replies[-1].plan_date.isoformat() == "2099-06-30"
    assert p.replies[-1].department.name == "总务处" and p.events[-1].actor.name == "吴总务"
    assert any("有答复了" in t and "正在施工" in t for t in pushes(bot, ppl["proposer"]))
    resp = post(client, f"/admin/proposals/department/{ids}/reply",
                {"kind": "cannot_now", "text": "候诊区面积有限，明年改造时统筹"}, follow_redirects=True)  # fmt: skip
    assert load(bot, sug).status == "answered"
    html = resp.get_data(as_text=True)
    assert "待答复（0 件）" in html and "明年改造时统筹" in html
    # the committee still sees the department's reply in its own pages
    chats["proposer"].ask(f"满意 {a}")
    assert load(bot, a).status == "closed"


def test_a_co_handling_department_replies_without_moving_the_proposal(client, bot, cast):  # noqa: F811
    ppl, chats = cast
    a, b, _ = _assigned(bot, chats)
    ida, idb = _ids(bot, a, b)
    add_staff(bot, username="baowei", role="department", member_id=ppl["baowei"].id)
    login(client, username="baowei")
    html = client.get("/admin/proposals/department").get_data(as_text=True)
    assert "（协办）" in html and "（牵头）" in html and "待答复（2 件）" in html
    resp = post(client, f"/admin/proposals/department/{ida}/reply", {"kind": "done", "text": "已配合划线"},
                follow_redirects=True)  # fmt: skip
    assert "协办答复" in resp.get_data(as_text=True) and load(bot, a).status == "accepted"
    assert "待答复（1 件）" in resp.get_data(as_text=True)


def test_a_department_account_without_a_linked_contact_sees_nothing(app, bot, cast):  # noqa: F811
    ppl, chats = cast
    a, _, _ = _assigned(bot, chats)
    (ida,) = _ids(bot, a)
    add_staff(bot, username="nobody", role="department")
    add_staff(bot, username="plain", role="department", member_id=ppl["plain"].id)  # a member, not a contact
    for user in ("nobody", "plain"):
        client = app.test_client()
        login(client, username=user)
        html = client.get("/admin/proposals/department").get_data(as_text=True)
        assert "还没有关联承办部门" in html and a not in html, user
        resp = post(client, f"/admin/proposals/department/{ida}/reply", {"kind": "done", "text": "好了"})
        assert resp.status_code == 403, user
    add_staff(bot, username="helper", role="hardship_reviewer")
    client = app.test_client()
    login(client, username="helper")
    assert client.get("/admin/proposals/department").status_code == 403


def test_staff_cli_creates_a_department_account(app, bot, cast):  # noqa: F811
    ppl, _ = cast
    r = app.test_cli_runner().invoke(
        args=["staff", "create", "zw", "--role", "承办部门", "--password", "secret123", "--member",
              ppl["zongwu"].employee_no]
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "承办部门" in r.output and "吴总务" in r.output
    with bot.db.Session() as s:
        assert s.scalar(select(Department).where(Department.name == "总务处")) is not None
    # a roster cannot give members this console-only role
    with pytest.raises(CellError, match="未知角色") as e:
        _parse_roles("承办部门")
    assert "承办部门" not in str(e.value).split("可填写：")[1]
