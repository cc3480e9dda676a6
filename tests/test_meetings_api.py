"""/api/v1/meetings: list, create, get, update, cancel, RSVP list — the same rules and notices as the console."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from models.meeting import Meeting
from models.member import Branch
from tests.conftest import add_member

API = "/api/v1"
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 10, tzinfo=SH)
START = "2026-12-04T14:30:00+08:00"


@pytest.fixture
def app(any_app):
    """SQLite and, with TEST_POSTGRES_URL, PostgreSQL too (row locks, JSON attendee specs)."""
    return any_app


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def token(app, role: str) -> dict[str, str]:
    name = f"{role}-{random.randrange(10**9)}"
    result = app.test_cli_runner().invoke(args=["tokens", "create", "--name", name, "--role", role])
    assert result.exit_code == 0, result.output
    return {"Authorization": f"Bearer {result.output.strip().splitlines()[-1]}"}


@pytest.fixture
def clerk(app):
    return token(app, "clerk")


def create(client, headers, **fields):
    body = {"title": "十二月工会委员会会议", "starts_at": START, "attendees": {"roles": ["clerk"]}, **fields}
    resp = client.post(f"{API}/meetings", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_create_get_list_and_invitations(client, clerk, bot, chat_with):
    a = add_member(bot, "甲", roles=["clerk"], employee_no="A1")
    b = add_member(bot, "乙", employee_no="B2", branch="外科分会", group="普外小组")
    c = add_member(bot, "丙", employee_no="C3")
    ca, cb, cc = chat_with(a), chat_with(b), chat_with(c)
    resp = client.post(
        f"{API}/meetings",
        json={
            "title": "十二月工会委员会会议",
            "kind": "工会委员会",
            "starts_at": START,
            "place": "行政楼三楼会议室",
            "agenda": "年终总结",
            "rsvp_deadline": "2026-12-03T18:00:00+08:00",
            "reminder_minutes": [120, 30],
            "attendees": {"roles": ["clerk"], "members": ["b2"]},
            "created_by": "A1",
        },
        headers=clerk,
    )
    assert resp.status_code == 201, resp.get_json()
    m = resp.get_json()
    assert resp.headers["Location"].endswith(f"/api/v1/meetings/{m['id']}")
    assert m["starts_at"] == "2026-12-04T06:30:00Z" and m["rsvp_deadline"] == "2026-12-03T10:00:00Z"
    assert m["attendees"]["members"] == ["B2"] and m["created_by"] == "A1" and m["status"] == "scheduled"
    assert m["counts"] == {"invited": 2, "attend": 0, "excused": 0, "none": 2, "attended": 0}
    assert m["quorum"] is None and m["reminder_minutes"] == [120, 30]
    for chat in (ca, cb):
        (card,) = chat.inbox()
        assert card["title"] == "会议通知：十二月工会委员会会议"
    assert cc.inbox() == []
    ca.ask(f"参加 {m['id']}")
    got = client.get(f"{API}/meetings/{m['id']}", headers=clerk).get_json()
    assert got["counts"]["attend"] == 1
    create(client, clerk, title="另一个会", starts_at="2026-12-10T09:00:00+08:00")
    listed = client.get(f"{API}/meetings?upcoming=true&per_page=1", headers=clerk).get_json()
    assert listed["total"] == 2 and [i["title"] for i in listed["items"]] == ["另一个会"]
    assert client.get(f"{API}/meetings?status=cancelled", headers=clerk).get_json()["total"] == 0
    assert client.get(f"{API}/meetings/999", headers=clerk).get_json()["error"]["code"] == "not_found"


def test_create_validation_is_a_4xx_never_a_500(client, clerk, bot):
    add_member(bot, "甲", roles=["clerk"], employee_no="A1")
    with bot.db.Session() as s:
        branch = s.scalar(select(Branch.id))
    base = {"title": "会", "starts_at": START, "attendees": {"roles": ["clerk"]}}
    bad = [
        ({"title": "会", "starts_at": START}, "attendees"),
        ({**base, "starts_at": "2026-12-04T14:30:00"}, "starts_at"),  # no time zone
        ({**base, "starts_at": "2026-11-30T09:00:00+08:00"}, "starts_at"),
        ({**base, "rsvp_deadline": "2026-12-05T09:00:00+08:00"}, "rsvp_deadline"),
        ({**base, "rsvp_deadline": "2026-11-30T09:00:00+08:00"}, "rsvp_deadline"),
        ({**base, "kind": "茶话会"}, "kind"),
        ({**base, "title": ""}, "title"),
        ({**base, "reminder_minutes": [0]}, "reminder_minutes"),
        ({**base, "reminder_minutes": [1, 2, 3, 4, 5, 6]}, "reminder_minutes"),
        ({**base, "attendees": {"members": ["NOPE"]}}, "attendees"),
        ({**base, "attendees": {"branches": [branch + 100]}}, "attendees"),
        ({**base, "attendees": {"branches": [2**70]}}, "attendees"),
        ({**base, "attendees": {"roles": ["king"]}}, "attendees"),
        ({**base, "attendees": {"roles": ["chair"]}}, "attendees"),  # nobody holds it
        ({**base, "attendees": {}}, "attendees"),
        ({**base, "colour": "red"}, "colour"),
    ]
    for body, field in bad:
        resp = client.post(f"{API}/meetings", json=body, headers=clerk)
        assert resp.status_code == 422, (body, resp.get_json())
        assert field in resp.get_json()["error"]["fields"], (body, resp.get_json())
    resp = client.post(f"{API}/meetings", data="title=x", headers=clerk)
    assert resp.status_code == 415
    resp = client.post(f"{API}/meetings", data="[1", headers={**clerk, "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    resp = client.post(f"{API}/meetings", json={**base, "created_by": "NOBODY"}, headers=clerk)
    assert resp.status_code == 404
    with bot.db.Session() as s:
        assert s.scalar(select(Meeting)) is None


def test_update_notifies_everyone_invited(client, clerk, bot, chat_with):
    a = add_member(bot, "甲", roles=["clerk"], employee_no="A1")
    b = add_member(bot, "乙", roles=["clerk"], employee_no="B1")
    c = add_member(bot, "丙", employee_no="C1")
    ca, cb, cc = chat_with(a), chat_with(b), chat_with(c)
    m = create(client, clerk)
    ca.inbox(), cb.inbox()
    cb.ask(f"请假 {m['id']} 出差")
    url = f"{API}/meetings/{m['id']}"
    r = client.patch(url, json={"starts_at": "2026-12-05T09:00:00+08:00", "place": "礼堂"}, headers=clerk)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["version"] == 2 and r.get_json()["place"] == "礼堂"
    for chat in (ca, cb):  # the excused one is told too
        (notice,) = chat.inbox()
        assert notice["title"] == "会议变更：十二月工会委员会会议" and "地点：礼堂" in notice["lines"]
    r = client.patch(url, json={"place": "礼堂"}, headers=clerk)  # nothing changed: nobody is told
    assert r.status_code == 200 and ca.inbox() == []
    r = client.patch(url, json={"attendees": {"members": ["B1", "C1"]}}, headers=clerk)
    assert r.get_json()["counts"]["invited"] == 2 and r.get_json()["attendees"]["members"] == ["B1", "C1"]
    assert any("不用参加了" in p.get("text", "") for p in ca.inbox())
    assert [p["title"] for p in cc.inbox()] == ["会议通知：十二月工会委员会会议"]
    assert cb.inbox() == []
    for body, field in (
        ({"title": None}, "title"),
        ({"starts_at": "2026-11-30T09:00:00+08:00"}, "starts_at"),
        ({"rsvp_deadline": "2026-12-06T09:00:00+08:00"}, "rsvp_deadline"),
        ({"attendees": {"members": ["NOPE"]}}, "attendees"),
    ):
        r = client.patch(url, json=body, headers=clerk)
        assert r.status_code == 422 and field in r.get_json()["error"]["fields"], (body, r.get_json())
    r = client.patch(
        url, json={"rsvp_deadline": "2026-12-04T18:00:00+08:00", "reminder_minutes": []}, headers=clerk
    )
    assert r.status_code == 200 and r.get_json()["reminder_minutes"] is None
    with time_machine.travel(datetime(2026, 12, 5, 9, 30, tzinfo=SH), tick=False):
        r = client.patch(url, json={"place": "别处"}, headers=clerk)
        assert r.status_code == 409 and r.get_json()["error"]["code"] == "meeting_started"
        r = client.post(f"{url}/cancel", headers=clerk)
        assert r.status_code == 409 and r.get_json()["error"]["code"] == "meeting_started"


def test_cancel_rsvps_and_quorum(client, clerk, bot, chat_with):
    delegates = [add_member(bot, f"代表{i}", employee_no=f"D{i}", is_delegate=True) for i in range(4)]
    chats = [chat_with(d) for d in delegates]
    m = create(client, clerk, kind="职代会", title="职代会", attendees={"delegates": True})
    assert m["quorum"] == {"confirmed": 0, "total": 4, "needed": 3, "reached": False}
    chats[0].ask(f"参加 {m['id']}")
    chats[1].ask(f"请假 {m['id']} 出差")
    url = f"{API}/meetings/{m['id']}"
    rsvps = client.get(f"{url}/rsvps", headers=clerk).get_json()
    assert rsvps["total"] == 4
    assert {r["employee_no"]: r["rsvp"] for r in rsvps["items"]} == {
        "D0": "attend",
        "D1": "excused",
        "D2": "none",
        "D3": "none",
    }
    excused = client.get(f"{url}/rsvps?rsvp=excused", headers=clerk).get_json()["items"]
    assert [(r["name"], r["reason"], r["delegate"], r["attended"]) for r in excused] == [
        ("代表1", "出差", True, None)
    ]
    assert client.get(f"{url}/rsvps?rsvp=maybe", headers=clerk).status_code == 422
    assert client.get(f"{API}/meetings/999/rsvps", headers=clerk).status_code == 404
    for c in chats:
        c.inbox()
    assert client.post(f"{url}/cancel", json={"reason": 5}, headers=clerk).status_code == 422
    r = client.post(f"{url}/cancel", json={"reason": "与上级会议冲突"}, headers=clerk)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert r.get_json()["cancel_reason"] == "与上级会议冲突"
    for c in chats:
        (notice,) = c.inbox()
        assert "已取消" in notice["text"] and "与上级会议冲突" in notice["text"]
    r = client.post(f"{url}/cancel", headers=clerk)  # again, without a body: nothing more happens
    assert r.status_code == 200 and r.get_json()["cancel_reason"] == "与上级会议冲突"
    assert all(c.inbox() == [] for c in chats)
    r = client.patch(url, json={"place": "礼堂"}, headers=clerk)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "meeting_cancelled"


def test_permissions(app, client, clerk, bot):
    add_member(bot, "甲", roles=["clerk"])
    m = create(client, clerk)
    leader = token(app, "group_leader")
    for method, path in (("get", ""), ("get", f"/{m['id']}"), ("get", f"/{m['id']}/rsvps")):
        assert getattr(client, method)(f"{API}/meetings{path}", headers=leader).status_code == 403
    assert client.post(f"{API}/meetings/{m['id']}/cancel", headers=leader).status_code == 403
    assert client.get(f"{API}/meetings").status_code == 401


def test_openapi_lists_meeting_paths_and_codes(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    assert {
        "/meetings",
        "/meetings/{meeting_id}",
        "/meetings/{meeting_id}/cancel",
        "/meetings/{meeting_id}/rsvps",
    } <= set(spec["paths"])
    codes = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert {"meeting_cancelled", "meeting_started"} <= set(codes)
    assert "Attendees" in spec["components"]["schemas"]
