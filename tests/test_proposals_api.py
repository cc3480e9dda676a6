"""/api/v1/proposals: list with filters, one with its timeline, the public list — read-only, for the roles that
see the congress report, and never naming an anonymous sender."""

from __future__ import annotations

import json

import pytest

from tests.test_activities_api import token
from tests.test_proposals import _to_review, add, cast, load, write_proposal  # noqa: F401  (cast is a fixture)

API = "/api/v1"


@pytest.fixture
def clerk(app):
    return token(app, "clerk")


@pytest.fixture
def cycle(bot, cast, chat_with):  # noqa: F811
    """One replied proposal (2027-001), one suggestion, one anonymous suggestion, one proposal still cosigning."""
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处 协办 保卫处 期限 2099-12-31")
    chats["zongwu"].ask(f"答复 {num} 办理中 已完成选址，预计 2099-06-30 前完工")
    c = chats["plain"]
    c.ask("提个建议")
    for t in ("2", "门诊增加座椅", "门诊候诊区座位不够，老人要站很久。", "增加30把座椅", "总务处"):
        c.ask(t)
    sug = c.ask("确认").split("编号 ")[1].split("，")[0]
    ppl["anon"] = add(bot, "冯匿名", employee_no="ANON1")
    chats["anon"] = c = chat_with(ppl["anon"])
    c.ask("不想留名，提个意见")
    for t in ("5", "科室排班不公平", "某科室长期让新人连续值夜班，身体吃不消。", "排班公开透明", "跳过"):
        c.ask(t)
    assert "已匿名收到" in c.ask("确认")
    other, _ = write_proposal(chats["d3"], title="增加护士休息室")
    return ppl, chats, {"replied": num, "suggestion": sug, "cosigning": other}


def get(client, headers, path):
    resp = client.get(f"{API}{path}", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_list_filters_and_pages(client, clerk, bot, cycle):
    ppl, chats, nums = cycle
    everything = get(client, clerk, "/proposals")
    assert everything["total"] == 4 and [i["number"] for i in everything["items"]][:2] == [
        "2027-001",
        "2027-002",
    ]
    numbers = lambda q: [i["number"] for i in get(client, clerk, f"/proposals?{q}")["items"]]  # noqa: E731
    assert numbers("status=replied") == [nums["replied"]]
    assert numbers("status=cosigning") == [nums["cosigning"]]
    sugs = numbers("kind=suggestion")
    assert len(sugs) == 2 and nums["suggestion"] in sugs and all(n.startswith("建") for n in sugs)
    assert numbers("category=后勤保障&kind=proposal") == [nums["replied"], nums["cosigning"]]
    assert numbers("category=医疗卫生") == [nums["suggestion"]]
    congress_id = load(bot, nums["replied"]).congress_id
    assert len(numbers(f"congress={congress_id}")) == 4 and numbers("congress=999") == []
    page = get(client, clerk, "/proposals?per_page=1&page=2")
    assert page["total"] == 4 and [i["number"] for i in page["items"]] == [nums["cosigning"]]
    item = everything["items"][0]
    assert item["lead_department"] == "总务处" and item["co_departments"] == ["保卫处"]
    assert item["proposers"] == [{"employee_no": ppl["proposer"].employee_no, "name": "刘提案"}]
    assert item["status_label"] == "已答复，待评价" and item["due_date"] == "2099-12-31"


def test_get_with_timeline_cosigners_and_replies(client, clerk, bot, cycle):
    ppl, chats, nums = cycle
    p = load(bot, nums["replied"])
    got = get(client, clerk, f"/proposals/{p.id}")
    assert got["number"] == nums["replied"] and got["situation"].startswith("北门停车位太少")
    assert [(c["name"], c["status"]) for c in got["cosigners"]] == [
        ("李代表", "signed"),
        ("王代表", "signed"),
    ]
    assert got["replies"][0]["department"] == "总务处" and got["replies"][0]["plan_date"] == "2099-06-30"
    steps = [e["to_status"] for e in got["timeline"] if e["from_status"] != e["to_status"]]
    assert steps == ["submitted", "cosigning", "under_review", "accepted", "replied"]
    actors = {e["to_status"]: e["actor"] for e in got["timeline"]}
    assert actors["accepted"] == "孙委员" and actors["replied"] == "吴总务"
    assert got["timeline"][0]["actor_employee_no"] == ppl["proposer"].employee_no
    resp = client.get(f"{API}/proposals/99999", headers=clerk)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_public_list_has_replies_and_no_names(client, clerk, bot, cycle):
    ppl, chats, nums = cycle
    public = get(client, clerk, "/proposals/public")
    assert public["total"] == 1
    item = public["items"][0]
    assert (item["number"], item["department"], item["co_departments"]) == (
        nums["replied"],
        "总务处",
        ["保卫处"],
    )
    assert item["replies"][0]["kind"] == "办理中" and "选址" in item["replies"][0]["text"]
    blob = json.dumps(public, ensure_ascii=False)
    assert not any(m.name in blob or m.employee_no in blob for m in ppl.values())
    assert get(client, clerk, "/proposals/public?congress=999")["total"] == 0


def test_anonymous_suggestion_never_carries_its_sender(client, clerk, bot, cycle):
    ppl, chats, nums = cycle
    anon = get(client, clerk, "/proposals?kind=suggestion")["items"]
    anon = [i for i in anon if i["anonymous"]]
    assert len(anon) == 1 and anon[0]["proposers"] == []
    chats["reviewer"].ask(f"答复 {anon[0]['number']} 已调整排班规则")
    got = get(client, clerk, f"/proposals/{anon[0]['id']}")
    assert got["cosigners"] == [] and got["proposers"] == [] and got["status"] == "answered"
    assert got["timeline"][0]["actor"] == "匿名" and got["timeline"][0]["actor_employee_no"] is None
    sender = ppl["anon"]
    for path in (
        "/proposals",
        f"/proposals/{anon[0]['id']}",
        "/proposals/public",
        "/proposals?kind=suggestion",
    ):
        blob = json.dumps(get(client, clerk, path), ensure_ascii=False)
        assert (
            sender.name not in blob and sender.employee_no not in blob and chats["anon"].user_id not in blob
        )


def test_only_the_report_roles_may_read(app, client, cycle):
    ppl, chats, nums = cycle
    for role in ("clerk", "chair", "proposal_reviewer", "admin"):
        assert client.get(f"{API}/proposals", headers=token(app, role)).status_code == 200, role
    for role in ("group_leader", "branch_chair", "hardship_reviewer", "member"):
        headers = token(app, role)
        for path in ("/proposals", "/proposals/1", "/proposals/public"):
            resp = client.get(f"{API}{path}", headers=headers)
            assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden", (role, path)
    assert client.get(f"{API}/proposals").status_code == 401


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=bogus", "status"),
        ("kind=motion", "kind"),
        ("congress=abc", "congress"),
        ("congress=0", "congress"),
        (f"congress={2**70}", "congress"),
        ("page=0", "page"),
        ("per_page=500", "per_page"),
        ("category=" + "长" * 21, "category"),
        ("category=%00", "category"),
        ("colour=red", "colour"),
    ],
)
def test_bad_filters_are_422_never_500(client, clerk, query, field):
    resp = client.get(f"{API}/proposals?{query}", headers=clerk)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert field in resp.get_json()["error"]["fields"]


def test_bad_ids_and_public_filters(client, clerk):
    assert client.get(f"{API}/proposals/{2**63}", headers=clerk).status_code == 404
    assert client.get(f"{API}/proposals/abc", headers=clerk).status_code == 404
    assert client.get(f"{API}/proposals/public?congress=x", headers=clerk).status_code == 422
    assert client.post(f"{API}/proposals", headers=clerk, json={}).status_code == 405


def test_openapi_documents_the_proposal_paths(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    assert {"/proposals", "/proposals/{proposal_id}", "/proposals/public"} <= set(spec["paths"])
    assert spec["paths"]["/proposals"]["get"]["x-permission"] == "proposals.report"
    assert {"ProposalOut", "ProposalList", "PublicList"} <= set(spec["components"]["schemas"])
