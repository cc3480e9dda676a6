"""/api/v1/activities: list, create, get, update, cancel; sign-ups list, add, remove — same rules as the chat."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from models.activity import Signup
from tests.conftest import add_member

API = "/api/v1"


def token(app, role: str) -> dict[str, str]:
    name = f"{role}-{random.randrange(10**9)}"
    result = app.test_cli_runner().invoke(args=["tokens", "create", "--name", name, "--role", role])
    assert result.exit_code == 0, result.output
    return {"Authorization": f"Bearer {result.output.strip().splitlines()[-1]}"}


@pytest.fixture
def clerk(app):
    return token(app, "clerk")


def future(days=5, hours=0) -> str:
    return (datetime.now(UTC) + timedelta(days=days, hours=hours)).isoformat()


def create(client, headers, **fields):
    body = {"title": "乒乓球比赛", "starts_at": future(), "capacity": 2, **fields}
    resp = client.post(f"{API}/activities", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_create_get_list(client, clerk, bot):
    a = create(
        client,
        clerk,
        place="活动中心",
        companions_max=1,
        questions=[{"key": "item", "label": "项目", "options": ["单打", "双打"]}],
    )
    assert a["taken"] == 0 and a["status"] == "open" and a["signup_deadline"] == a["starts_at"]
    got = client.get(f"{API}/activities/{a['id']}", headers=clerk).get_json()
    assert got["title"] == "乒乓球比赛" and got["questions"][0]["options"] == ["单打", "双打"]
    listed = client.get(f"{API}/activities?status=open", headers=clerk).get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == a["id"]
    assert client.get(f"{API}/activities/999", headers=clerk).status_code == 404


def test_create_validation(client, clerk):
    bad = [
        ({"title": "x", "starts_at": "2027-01-01T10:00:00"}, "starts_at"),  # no time zone
        ({"title": "x", "starts_at": future(), "capacity": 0}, "capacity"),
        ({"title": "x", "starts_at": future(), "signup_deadline": future(days=9)}, "signup_deadline"),
        ({"title": "x", "starts_at": future(), "audience_kind": "groups"}, "audience_ids"),
        ({"title": "x", "starts_at": future(), "questions": [{"key": "a", "label": "b"}] * 4}, "questions"),
        ({"title": "x", "starts_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, "starts_at"),
    ]
    for body, field in bad:
        resp = client.post(f"{API}/activities", json=body, headers=clerk)
        assert resp.status_code == 422, (body, resp.get_json())
        assert field in resp.get_json()["error"]["fields"], (body, resp.get_json())


def test_signups_same_rules_as_chat(client, clerk, bot, chat_with):
    a = create(client, clerk, capacity=2, companions_max=1)
    chats = [
        chat_with(add_member(bot, name, employee_no=no))
        for no, name in (("A1", "甲"), ("A2", "乙"), ("A3", "丙"))
    ]
    url = f"{API}/activities/{a['id']}/signups"
    r = client.post(url, json={"employee_no": "A1", "companions": 1}, headers=clerk)
    assert r.status_code == 201 and r.get_json()["status"] == "confirmed"
    r = client.post(url, json={"employee_no": "A2"}, headers=clerk)
    assert r.status_code == 201 and r.get_json()["status"] == "waitlisted"
    assert any(
        "工会帮您报名了" in p.get("text", "") and "候补第 1 位" in p.get("text", "") for p in chats[1].inbox()
    )
    r = client.post(url, json={"employee_no": "A2"}, headers=clerk)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "already_signed_up"
    r = client.post(url, json={"employee_no": "A3", "companions": 2}, headers=clerk)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "companions_exceeded"
    r = client.post(url, json={"employee_no": "NOPE"}, headers=clerk)
    assert r.status_code == 404
    listed = client.get(url, headers=clerk).get_json()
    assert [(i["employee_no"], i["status"]) for i in listed["items"]] == [
        ("A1", "confirmed"),
        ("A2", "waitlisted"),
    ]
    # removing A1 frees 2 places: A2 is promoted and told
    r = client.delete(f"{url}/A1", headers=clerk)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    listed = client.get(url + "?status=confirmed", headers=clerk).get_json()
    assert [i["employee_no"] for i in listed["items"]] == ["A2"]
    assert client.delete(f"{url}/A1", headers=clerk).get_json()["error"]["code"] == "not_signed_up"
    assert any("有名额了" in p.get("text", "") for p in chats[1].inbox())


def test_update_capacity_promotes_and_cancel_notifies(client, clerk, bot, chat_with):
    a = create(client, clerk, capacity=1)
    m1, m2 = add_member(bot, "甲", employee_no="B1"), add_member(bot, "乙", employee_no="B2")
    c1, c2 = chat_with(m1), chat_with(m2)
    c1.ask(f"报名 {a['id']}")
    assert "候补第 1 位" in c2.ask(f"报名 {a['id']}")
    r = client.patch(f"{API}/activities/{a['id']}", json={"capacity": 0}, headers=clerk)
    assert r.status_code == 422
    r = client.patch(f"{API}/activities/{a['id']}", json={"capacity": 2, "place": "新场馆"}, headers=clerk)
    assert r.status_code == 200 and r.get_json()["taken"] == 2 and r.get_json()["waitlisted"] == 0
    assert any("有名额了" in p.get("text", "") for p in c2.inbox())
    assert any("新场馆" in p.get("text", "") for p in c1.inbox())
    r = client.patch(f"{API}/activities/{a['id']}", json={"capacity": 1}, headers=clerk)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "capacity_below_taken"
    r = client.post(f"{API}/activities/{a['id']}/cancel", headers=clerk)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert any("已取消" in p.get("text", "") for p in c1.inbox())
    r = client.post(f"{API}/activities/{a['id']}/signups", json={"employee_no": "B1"}, headers=clerk)
    assert r.status_code == 409


def test_permissions(app, client, clerk, bot):
    leader = token(app, "group_leader")
    me = add_member(bot, "组长", roles=["group_leader"])
    a = create(client, leader, created_by=me.employee_no, audience_kind="groups", audience_ids=[me.group_id])
    assert client.get(f"{API}/activities/{a['id']}/signups", headers=leader).status_code == 403
    assert client.post(f"{API}/activities/{a['id']}/cancel", headers=leader).status_code == 403
    assert client.get(f"{API}/activities").status_code == 401


def test_group_leader_and_branch_chair_tokens_publish_for_their_own_group_or_branch(app, client, clerk, bot):
    """The console's rule: a token without activities.manage_all publishes as created_by, for that organiser's own
    group (a branch chair: own branch); both the token's role and the organiser's roles must reach."""
    leader_t, chair_t = token(app, "group_leader"), token(app, "branch_chair")
    leader = add_member(bot, "组长", roles=["group_leader"])
    mate = add_member(bot, "组员")
    other = add_member(bot, "外组组长", roles=["group_leader"], group="消化科小组")
    chair = add_member(bot, "主席", roles=["branch_chair"], group="呼吸科小组")
    far = add_member(bot, "外分会", roles=["group_leader"], branch="外科分会", group="骨科小组")
    plain = add_member(bot, "会员")

    def post(headers, by, kind="all", ids=()):
        body = {"title": "羽毛球", "starts_at": future(), "audience_kind": kind, "audience_ids": list(ids)}
        if by is not None:
            body["created_by"] = by.employee_no
        return client.post(f"{API}/activities", json=body, headers=headers).status_code

    assert post(leader_t, None) == 403
    assert post(leader_t, None, "groups", [leader.group_id]) == 403  # no organiser named
    assert post(leader_t, plain, "groups", [plain.group_id]) == 403  # the organiser must be one
    assert post(leader_t, leader, "all") == 403
    assert post(leader_t, leader, "women") == 403
    assert post(leader_t, leader, "branches", [leader.branch_id]) == 403
    assert post(leader_t, leader, "groups", [other.group_id]) == 403
    assert post(leader_t, leader, "groups", [leader.group_id, other.group_id]) == 403
    assert post(leader_t, leader, "list", [mate.id, other.id]) == 403
    assert post(leader_t, leader, "groups", [leader.group_id]) == 201
    assert post(leader_t, leader, "list", [mate.id, leader.id]) == 201
    assert post(leader_t, chair, "branches", [chair.branch_id]) == 403  # a leader's token reaches one group
    assert post(leader_t, chair, "groups", [chair.group_id]) == 201

    assert post(chair_t, chair, "all") == 403
    assert post(chair_t, chair, "branches", [far.branch_id]) == 403
    assert post(chair_t, chair, "groups", [far.group_id]) == 403
    assert post(chair_t, chair, "list", [far.id]) == 403
    assert post(chair_t, leader, "branches", [leader.branch_id]) == 403  # the organiser leads one group only
    assert post(chair_t, chair, "branches", [chair.branch_id]) == 201
    assert post(chair_t, chair, "groups", [leader.group_id, other.group_id]) == 201
    assert post(chair_t, chair, "list", [mate.id, other.id]) == 201

    assert post(clerk, None, "all") == 201  # the union's office publishes for anyone
    assert post(clerk, None, "branches", [far.branch_id]) == 201
    r = client.post(f"{API}/activities", json={"title": "x", "starts_at": future()}, headers=leader_t)
    assert "created_by" in r.get_json()["error"]["message"]


def test_openapi_lists_activity_paths(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    assert {"/activities", "/activities/{activity_id}", "/activities/{activity_id}/signups"} <= set(
        spec["paths"]
    )
    assert (
        "activity_full"
        in spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    )


def test_signup_rows_are_unique_after_api_and_chat(client, clerk, bot, chat_with):
    a = create(client, clerk, capacity=5)
    m = add_member(bot, "甲", employee_no="C1")
    chat_with(m).ask(f"报名 {a['id']}")
    r = client.post(f"{API}/activities/{a['id']}/signups", json={"employee_no": "C1"}, headers=clerk)
    assert r.status_code == 409
    with bot.db.Session() as s:
        assert len(s.scalars(select(Signup)).all()) == 1


def test_update_notifies_any_member_visible_change_once(client, clerk, bot, chat_with):
    a = create(client, clerk, capacity=5, place="活动中心")
    c = chat_with(add_member(bot, "甲", employee_no="D1"))
    c.ask(f"报名 {a['id']}")
    c.inbox()
    url = f"{API}/activities/{a['id']}"

    def notices():
        return [p["text"] for p in c.inbox() if "有变更" in p.get("text", "")]

    r = client.patch(url, json={"title": "乒乓球友谊赛", "description": "自带球拍"}, headers=clerk)
    assert r.status_code == 200
    [note] = notices()
    assert "名称：乒乓球比赛 → 乒乓球友谊赛" in note and "说明已更新：自带球拍" in note and "地点" not in note
    r = client.patch(
        url, json={"capacity": 9, "remind_unanswered": True, "post_to_groups": True}, headers=clerk
    )
    assert r.status_code == 200 and notices() == []  # organisers' settings are not news for members
    assert client.patch(url, json={"title": "乒乓球友谊赛"}, headers=clerk).status_code == 200
    assert notices() == []  # nothing actually changed
    deadline = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    r = client.patch(
        url, json={"signup_deadline": deadline.isoformat(), "cancel_cutoff_hours": 24}, headers=clerk
    )
    assert r.status_code == 200
    [note] = notices()
    assert "报名截止：" in note and "取消规则：开始前随时可以取消 → 开始前 24 小时内不能取消" in note


def test_adding_a_signup_after_the_start_is_refused(client, clerk, bot):
    a = create(client, clerk, starts_at=future(days=0, hours=1))
    add_member(bot, "甲", employee_no="S1")
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        r = client.post(f"{API}/activities/{a['id']}/signups", json={"employee_no": "S1"}, headers=clerk)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "activity_started"
