"""The integration JSON API (/api/v1): tokens, auth, members, roster import, errors and the OpenAPI document."""

from __future__ import annotations

import io
import json
import random
import re
from datetime import date

import pytest
from sqlalchemy import select

from api.members import ImportReportOut, MemberOut
from models import ApiToken, Branch, Group, Member
from tests.conftest import add_member

API = "/api/v1"


def make_token(app, role: str = "clerk", name: str | None = None) -> str:
    """Create a token through the CLI and return it (the last line of the output)."""
    name = name or f"{role}-{random.randrange(10**9)}"
    result = app.test_cli_runner().invoke(args=["tokens", "create", "--name", name, "--role", role])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clerk(app):
    return auth(make_token(app, "clerk", "oa"))


def assert_error(resp, status: int, code: str):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.is_json, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == code, err
    assert re.search(r"[\u4e00-\u9fa5]", err["message"]), err  # a Chinese message
    return err


# tokens ------------------------------------------------------------------------------------------------------
def test_token_cli_create_list_revoke(app, client, bot):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tokens", "create", "--name", "hr", "--role", "clerk"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert len(token) >= 40 and " " not in token
    with bot.db.Session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "hr"))
        assert row.token_hash == ApiToken.hash(token) and token not in row.token_hash
        assert row.last_used_at is None

    assert client.get(f"{API}/members", headers=auth(token)).status_code == 200
    with bot.db.Session() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.name == "hr")).last_used_at is not None

    listing = runner.invoke(args=["tokens", "list"])
    assert listing.exit_code == 0
    assert "hr" in listing.output and "clerk" in listing.output and "有效" in listing.output
    assert token not in listing.output and ApiToken.hash(token) not in listing.output
    assert "从未使用" not in listing.output

    dup = runner.invoke(args=["tokens", "create", "--name", "hr", "--role", "chair"])
    assert dup.exit_code != 0 and "已有" in dup.output
    bad_role = runner.invoke(args=["tokens", "create", "--name", "x", "--role", "boss"])
    assert bad_role.exit_code != 0 and "未知角色" in bad_role.output
    with bot.db.Session() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.name == "x")) is None

    revoked = runner.invoke(args=["tokens", "revoke", "hr"])
    assert revoked.exit_code == 0 and "已吊销" in revoked.output
    assert_error(client.get(f"{API}/members", headers=auth(token)), 401, "unauthorized")
    assert "已吊销" in runner.invoke(args=["tokens", "list"]).output
    missing = runner.invoke(args=["tokens", "revoke", "nobody"])
    assert missing.exit_code != 0 and "没有名为" in missing.output


def test_unauthorized_and_forbidden(app, client):
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 43},
        {"Authorization": "Bearer \x00" + "x" * 43},
        {"Authorization": "Bearer " + "x" * 5000},
    ):
        resp = client.get(f"{API}/members", headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(client.post(f"{API}/members", json={"x": 1}), 401, "unauthorized")

    member_token = auth(make_token(app, "member"))
    assert_error(client.get(f"{API}/members", headers=member_token), 403, "forbidden")
    viewer = auth(make_token(app, "branch_chair"))  # may view, may not edit or import
    assert client.get(f"{API}/members", headers=viewer).status_code == 200
    assert_error(
        client.post(f"{API}/members", headers=viewer, json={"employee_no": "1", "name": "张三"}),
        403,
        "forbidden",
    )
    files = {"file": (io.BytesIO(b"x"), "r.csv")}
    assert_error(client.post(f"{API}/members/import", headers=viewer, data=files), 403, "forbidden")
    admin = auth(make_token(app, "admin"))
    assert client.get(f"{API}/members", headers=admin).status_code == 200


def test_bearer_scheme_is_case_insensitive(app, client):
    token = make_token(app)
    assert client.get(f"{API}/members", headers={"Authorization": f"bearer {token}"}).status_code == 200


# list / get ------------------------------------------------------------------------------------------------
@pytest.fixture
def roster(bot):
    add_member(bot, "张三", "A001", branch="内科分会", group="心内科小组")
    add_member(bot, "张三丰", "A002", branch="内科分会", group="消化科小组")
    add_member(bot, "李四", "B001", branch="外科分会", group="骨科小组", retired=True)
    add_member(bot, "王五", "B002", branch="外科分会", group="骨科小组", active=False)
    add_member(bot, "赵_六", "C100", branch="后勤分会", group="车队")


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [m["name"] for m in resp.get_json()["items"]]


def test_list_filters_and_pagination(client, clerk, roster):
    resp = client.get(f"{API}/members", headers=clerk)
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["total"] == 5 and body["page"] == 1 and body["per_page"] == 50
    assert [m["employee_no"] for m in body["items"]] == ["A001", "A002", "B001", "B002", "C100"]
    for item in body["items"]:
        MemberOut.model_validate(item)  # the documented schema, no extra fields

    get = lambda query: client.get(f"{API}/members?{query}", headers=clerk)  # noqa: E731
    assert names(get("q=张三")) == ["张三", "张三丰"]
    assert names(get("q=b00")) == ["李四", "王五"]  # 工号, case-insensitive
    assert names(get("q=_")) == ["赵_六"]  # LIKE wildcards are literal
    assert names(get("q=%25")) == []
    assert names(get("branch=外科分会")) == ["李四", "王五"]
    assert names(get("group=骨科小组&active=true")) == ["李四"]
    assert names(get("active=false")) == ["王五"]
    assert names(get("retired=1")) == ["李四"]
    assert names(get("branch=没有这个分会")) == []

    page2 = get("per_page=2&page=2").get_json()
    assert [m["employee_no"] for m in page2["items"]] == ["B001", "B002"]
    assert page2["total"] == 5 and page2["page"] == 2 and page2["per_page"] == 2
    assert get("per_page=2&page=9").get_json()["items"] == []
    assert get("per_page=200").status_code == 200

    for bad in ("per_page=201", "per_page=0", "page=0", "page=x", "active=maybe", "nope=1", "q=" + "长" * 51):
        err = assert_error(get(bad), 422, "validation_error")
        assert err["fields"], bad


def test_get_member(client, clerk, roster):
    resp = client.get(f"{API}/members/A001", headers=clerk)
    assert resp.status_code == 200
    m = resp.get_json()
    assert m["name"] == "张三" and m["branch"] == "内科分会" and m["group"] == "心内科小组"
    assert m["roles"] == ["member"] and m["birthday"] == "1980-05-01"
    assert client.get(f"{API}/members/a001", headers=clerk).get_json()["employee_no"] == "A001"
    err = assert_error(client.get(f"{API}/members/Z999", headers=clerk), 404, "not_found")
    assert err["message"].startswith("未找到该会员")
    assert_error(client.get(f"{API}/members/%00", headers=clerk), 404, "not_found")
    assert_error(client.get(f"{API}/members/" + "9" * 300, headers=clerk), 404, "not_found")


# create / update ---------------------------------------------------------------------------------------------
FULL = {
    "employee_no": "h2001",
    "name": "陈七",
    "branch": "药剂分会",
    "group": "中药房",
    "phone": "13900001111",
    "gender": "男",
    "job_title": "药师",
    "birthday": "1975-06-08",
    "birthday_is_lunar": True,
    "lunar_birth_month": 4,
    "lunar_birth_day": 8,
    "lunar_birth_leap": False,
    "retired": False,
    "is_delegate": True,
    "greeting_opt_out": False,
    "active": True,
    "roles": ["group_leader", "member"],
}


def test_create_member(client, clerk, bot):
    resp = client.post(f"{API}/members", headers=clerk, json=FULL)
    assert resp.status_code == 201, resp.get_json()
    m = resp.get_json()
    MemberOut.model_validate(m)
    assert resp.headers["Location"].endswith("/api/v1/members/H2001")
    expected = {**FULL, "employee_no": "H2001", "roles": ["member", "group_leader"]}
    assert {k: m[k] for k in FULL} == expected
    assert client.get(resp.headers["Location"], headers=clerk).get_json() == m
    with bot.db.Session() as s:
        member = s.scalar(select(Member).where(Member.employee_no == "H2001"))
        assert member.group.branch.name == "药剂分会" and member.birthday == date(1975, 6, 8)

    minimal = client.post(f"{API}/members", headers=clerk, json={"employee_no": "H2002", "name": " 周八 "})
    assert minimal.status_code == 201
    m = minimal.get_json()
    assert m["name"] == "周八" and m["branch"] is None and m["active"] is True and m["roles"] == ["member"]

    for no in ("H2001", "h2001", " H2001 "):
        err = assert_error(
            client.post(f"{API}/members", headers=clerk, json={"employee_no": no, "name": "重复"}),
            409,
            "conflict",
        )
        assert "H2001" in err["message"]


def test_has_children_tri_state(client, clerk, bot):
    """有子女 (the 六一 greeting's audience): true / false / null = not known, on create, update and read."""

    def stored(no):
        with bot.db.Session() as s:
            return s.scalar(select(Member.has_children).where(Member.employee_no == no))

    m = client.post(f"{API}/members", headers=clerk, json={"employee_no": "K1", "name": "甲"}).get_json()
    assert m["has_children"] is None and stored("K1") is None
    r = client.post(f"{API}/members", headers=clerk, json={"employee_no": "K2", "name": "乙", "has_children": True})
    assert r.status_code == 201 and r.get_json()["has_children"] is True and stored("K2") is True
    url = f"{API}/members/K2"
    assert client.patch(url, headers=clerk, json={"has_children": False}).get_json()["has_children"] is False
    assert stored("K2") is False
    assert client.patch(url, headers=clerk, json={"job_title": "护士"}).get_json()["has_children"] is False
    assert client.patch(url, headers=clerk, json={"has_children": None}).get_json()["has_children"] is None
    assert stored("K2") is None
    err = assert_error(client.patch(url, headers=clerk, json={"has_children": "有"}), 422, "validation_error")
    assert "has_children" in err["fields"]
    assert client.get(url, headers=clerk).get_json()["has_children"] is None
    spec = client.get(f"{API}/openapi.json").get_json()["components"]["schemas"]
    assert {"has_children"} <= set(spec["MemberCreate"]["properties"]) & set(spec["MemberUpdate"]["properties"])


def test_update_member(client, clerk, bot, roster):
    url = f"{API}/members/A001"
    resp = client.patch(
        url, headers=clerk, json={"phone": None, "job_title": "护士长", "roles": ["group_leader"]}
    )
    assert resp.status_code == 200, resp.get_json()
    m = resp.get_json()
    assert m["phone"] is None and m["job_title"] == "护士长" and m["roles"] == ["member", "group_leader"]
    assert m["name"] == "张三" and m["group"] == "心内科小组"  # untouched

    # moving branch without a group clears the group (it belonged to the old branch)
    m = client.patch(url, headers=clerk, json={"branch": "外科分会"}).get_json()
    assert m["branch"] == "外科分会" and m["group"] is None
    m = client.patch(url, headers=clerk, json={"group": "骨科小组"}).get_json()
    assert m["group"] == "骨科小组"
    with bot.db.Session() as s:  # joined the existing group, no duplicate created
        assert len(s.scalars(select(Group).where(Group.name == "骨科小组")).all()) == 1
    m = client.patch(url, headers=clerk, json={"branch": "新分会", "group": "新小组"}).get_json()
    assert (m["branch"], m["group"]) == ("新分会", "新小组")
    m = client.patch(url, headers=clerk, json={"branch": None}).get_json()
    assert m["branch"] is None and m["group"] is None
    err = assert_error(client.patch(url, headers=clerk, json={"group": "孤儿小组"}), 422, "validation_error")
    assert "group" in err["fields"]
    with bot.db.Session() as s:  # a refused request leaves nothing behind
        assert s.scalar(select(Group).where(Group.name == "孤儿小组")) is None
        assert s.scalar(select(Branch).where(Branch.name == "新分会")) is not None

    m = client.patch(
        url,
        headers=clerk,
        json={
            "birthday_is_lunar": True,
            "lunar_birth_month": 8,
            "lunar_birth_day": 15,
            "lunar_birth_leap": True,
        },
    ).get_json()
    assert (m["birthday_is_lunar"], m["lunar_birth_month"], m["lunar_birth_day"], m["lunar_birth_leap"]) == (
        True,
        8,
        15,
        True,
    )
    m = client.patch(url, headers=clerk, json={"birthday_is_lunar": False}).get_json()
    assert (m["lunar_birth_month"], m["lunar_birth_day"], m["lunar_birth_leap"]) == (None, None, False)
    err = assert_error(
        client.patch(url, headers=clerk, json={"birthday_is_lunar": True}), 422, "validation_error"
    )
    assert "lunar_birth_month" in err["fields"]
    err = assert_error(client.patch(url, headers=clerk, json={"lunar_birth_day": 3}), 422, "validation_error")
    assert "lunar_birth_day" in err["fields"]

    m = client.patch(
        url,
        headers=clerk,
        json={
            "retired": True,
            "is_delegate": True,
            "greeting_opt_out": True,
            "active": False,
            "gender": "男",
        },
    ).get_json()
    assert (m["retired"], m["is_delegate"], m["greeting_opt_out"], m["active"], m["gender"]) == (
        True,
        True,
        True,
        False,
        "男",
    )
    m = client.patch(url, headers=clerk, json={"roles": []}).get_json()
    assert m["roles"] == ["member"]

    m = client.patch(url, headers=clerk, json={"employee_no": "a009"}).get_json()
    assert m["employee_no"] == "A009"
    assert_error(client.get(url, headers=clerk), 404, "not_found")
    assert_error(
        client.patch(f"{API}/members/A009", headers=clerk, json={"employee_no": "B001"}), 409, "conflict"
    )
    assert_error(client.patch(f"{API}/members/NOPE", headers=clerk, json={"name": "某"}), 404, "not_found")
    assert client.patch(f"{API}/members/A009", headers=clerk, json={}).status_code == 200


def test_admin_role_needs_an_admin_token(app, client, clerk, roster):
    url = f"{API}/members/A001"
    assert_error(client.patch(url, headers=clerk, json={"roles": ["admin"]}), 403, "forbidden")
    assert_error(
        client.post(
            f"{API}/members", headers=clerk, json={"employee_no": "X1", "name": "某", "roles": ["admin"]}
        ),
        403,
        "forbidden",
    )
    admin = auth(make_token(app, "admin"))
    assert client.patch(url, headers=admin, json={"roles": ["admin", "clerk"]}).get_json()["roles"] == [
        "member",
        "clerk",
        "admin",
    ]
    # a clerk may still change other roles of an admin member, but not take admin away
    assert client.patch(url, headers=clerk, json={"roles": ["admin"]}).status_code == 200
    assert_error(client.patch(url, headers=clerk, json={"roles": ["clerk"]}), 403, "forbidden")


# invalid input ------------------------------------------------------------------------------------------------
BAD_BODIES = [
    ({"name": "缺工号"}, "employee_no"),
    ({"employee_no": "X1"}, "name"),
    ({"employee_no": "X1", "name": ""}, "name"),
    ({"employee_no": "X1", "name": "   "}, "name"),
    ({"employee_no": "X1", "name": "长" * 51}, "name"),
    ({"employee_no": "X" * 33, "name": "某"}, "employee_no"),
    ({"employee_no": "X 1", "name": "某"}, "employee_no"),
    ({"employee_no": 123, "name": "某"}, "employee_no"),
    ({"employee_no": "X1", "name": "某\x00"}, "name"),
    ({"employee_no": "X1", "name": "某\ud800"}, "name"),
    ({"employee_no": "X1", "name": ["某"]}, "name"),
    ({"employee_no": "X1", "name": "某", "unknown": 1}, "unknown"),
    ({"employee_no": "X1", "name": "某", "id": 5}, "id"),
    ({"employee_no": "X1", "name": "某", "birthday": "1980/05/01"}, "birthday"),
    ({"employee_no": "X1", "name": "某", "birthday": "1980-02-30"}, "birthday"),
    ({"employee_no": "X1", "name": "某", "birthday": "1980-05-01T00:00:00"}, "birthday"),
    ({"employee_no": "X1", "name": "某", "birthday": 0}, "birthday"),
    ({"employee_no": "X1", "name": "某", "birthday": "2999-01-01"}, "birthday"),
    ({"employee_no": "X1", "name": "某", "birthday": "1800-01-01"}, "birthday"),
    ({"employee_no": "X1", "name": "某", "gender": "M"}, "gender"),
    ({"employee_no": "X1", "name": "某", "phone": "abc"}, "phone"),
    ({"employee_no": "X1", "name": "某", "phone": "1" * 21}, "phone"),
    ({"employee_no": "X1", "name": "某", "retired": "yes"}, "retired"),
    ({"employee_no": "X1", "name": "某", "retired": 1}, "retired"),
    ({"employee_no": "X1", "name": "某", "active": None}, "active"),
    ({"employee_no": "X1", "name": "某", "roles": ["boss"]}, "roles"),
    ({"employee_no": "X1", "name": "某", "roles": "clerk"}, "roles"),
    ({"employee_no": "X1", "name": "某", "roles": [1]}, "roles"),
    (
        {"employee_no": "X1", "name": "某", "lunar_birth_month": 13, "birthday_is_lunar": True},
        "lunar_birth_month",
    ),
    ({"employee_no": "X1", "name": "某", "lunar_birth_day": 0, "birthday_is_lunar": True}, "lunar_birth_day"),
    (
        {"employee_no": "X1", "name": "某", "lunar_birth_day": 1.5, "birthday_is_lunar": True},
        "lunar_birth_day",
    ),
    (
        {"employee_no": "X1", "name": "某", "lunar_birth_day": True, "birthday_is_lunar": True},
        "lunar_birth_day",
    ),
    ({"employee_no": "X1", "name": "某", "branch": "长" * 101}, "branch"),
    ({"employee_no": "X1", "name": "某", "group": "小组"}, "group"),
    ({"employee_no": "X1", "name": "某", "birthday_is_lunar": True}, "lunar_birth_month"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_create_refuses_invalid_fields(client, clerk, bot, body, field):
    resp = client.post(f"{API}/members", headers=clerk, data=json.dumps(body), content_type="application/json")
    err = assert_error(resp, 422, "validation_error")
    assert field in err["fields"], err
    with bot.db.Session() as s:
        assert s.scalar(select(Member).where(Member.employee_no == "X1")) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"employee_no": None}, "employee_no"),
        ({"retired": None}, "retired"),
        ({"roles": None}, "roles"),
        ({"birthday": "yesterday"}, "birthday"),
        ({"employee_no ": "X"}, "employee_no "),
    ],
)
def test_update_refuses_invalid_fields(client, clerk, roster, body, field):
    resp = client.patch(f"{API}/members/A001", headers=clerk, data=json.dumps(body), content_type="application/json")
    assert field in assert_error(resp, 422, "validation_error")["fields"]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{", "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "invalid_json"),
        ("[]", "application/json", 400, "invalid_json"),
        ('"text"', "application/json", 400, "invalid_json"),
        ("null", "application/json", 400, "invalid_json"),
        ("42", "application/json", 400, "invalid_json"),
        ('{"name": NaN}', "application/json", 400, "invalid_json"),
        ("[" * 100000 + "]" * 100000, "application/json", 400, "invalid_json"),
        (b"\xff\xfe\xfa", "application/json", 400, "invalid_json"),
        ("employee_no=1&name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"employee_no": "1", "name": "x"}', "text/plain", 415, "unsupported_media_type"),
        ('{"employee_no": "1", "name": "x"}', None, 415, "unsupported_media_type"),
        ('{"name": "' + "x" * 300_000 + '"}', "application/json", 413, "payload_too_large"),
    ],
)
def test_malformed_bodies(client, clerk, roster, data, content_type, status, code):
    headers = dict(clerk)
    if content_type:
        headers["Content-Type"] = content_type
    assert_error(client.post(f"{API}/members", headers=headers, data=data), status, code)
    assert_error(client.patch(f"{API}/members/A001", headers=headers, data=data), status, code)


def test_fuzz_never_500(client, clerk, roster):
    """Random and mutated bodies and query strings always get a 2xx or a 4xx JSON error, never a 500."""
    rng = random.Random(20260125)
    atoms = [
        None, True, False, 0, -1, 1.5, 10**30, "", " ", "x" * 200, "\x00", "\ud800", "1980-13-01", "男",
        "clerk", [], {}, ["admin"], [None], {"a": 1}, "A001", "%", "1980-02-29",
    ]  # fmt: skip
    keys = [*FULL, "", "x", "roles", "group", "branch", "id"]

    def value(depth=0):
        if depth < 2 and rng.random() < 0.15:
            return [value(depth + 1) for _ in range(rng.randrange(3))]
        if depth < 2 and rng.random() < 0.1:
            return {rng.choice(keys): value(depth + 1)}
        return rng.choice([*atoms, *FULL.values()])

    for i in range(300):
        body = dict(FULL) if rng.random() < 0.5 else {}
        body["employee_no"] = f"F{i}"
        for _ in range(rng.randrange(1, 4)):
            body[rng.choice(keys)] = value()
        if rng.random() < 0.5:
            raw = json.dumps(body, ensure_ascii=rng.random() < 0.5)
        else:  # a damaged document
            raw = json.dumps(body)
            cut = rng.randrange(len(raw))
            raw = raw[:cut] + rng.choice(["", "}", "\\", '"', "\x00", "\udcff", "{{", "]"]) + raw[cut + 1 :]
        data = raw.encode("utf-8", "surrogatepass")
        for method, url in (("post", f"{API}/members"), ("patch", f"{API}/members/A001")):
            resp = getattr(client, method)(url, headers=clerk, data=data, content_type="application/json")
            assert resp.status_code < 500, (raw, resp.get_data(as_text=True))
            if resp.status_code >= 400:
                assert resp.is_json and resp.get_json()["error"]["code"], raw
            else:
                MemberOut.model_validate(resp.get_json())

    params = ["q", "branch", "group", "active", "retired", "page", "per_page", "x"]
    for _ in range(150):
        query = "&".join(
            f"{rng.choice(params)}={rng.choice(['', '0', '-1', '1', '201', 'true', 'x', '%00', '%25', '%E4', '9' * 30])}"
            for _ in range(rng.randrange(1, 4))
        )
        resp = client.get(f"{API}/members?{query}", headers=clerk)
        assert resp.status_code in (200, 422), (query, resp.get_data(as_text=True))
        assert resp.is_json


def test_json_errors_for_routing_and_size(app, client, clerk):
    assert_error(client.get(f"{API}/nothing-here", headers=clerk), 404, "not_found")
    assert_error(client.get("/api/v2/members"), 404, "not_found")
    resp = client.delete(f"{API}/members", headers=clerk)
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    assert_error(client.put(f"{API}/members/A001", headers=clerk, json={}), 405, "method_not_allowed")
    # pages outside the API keep their own (HTML) error pages
    other = client.get("/no-such-page")
    assert other.status_code == 404 and not other.is_json

    app.config["MAX_CONTENT_LENGTH"] = 1000
    files = {"file": (io.BytesIO(b"x" * 5000), "roster.csv")}
    assert_error(client.post(f"{API}/members/import", headers=clerk, data=files), 413, "payload_too_large")


def test_unexpected_error_is_json_500(app, client, clerk, roster, monkeypatch):
    import api.members

    def boom(member):
        raise RuntimeError("bug")

    monkeypatch.setattr(api.members, "member_json", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production
    assert_error(client.get(f"{API}/members/A001", headers=clerk), 500, "internal_error")


# roster import -------------------------------------------------------------------------------------------------
CSV = "姓名,工号,分会,小组,手机,性别,生日,角色\n张三,A001,内科分会,心内科小组,13800001234,女,1980-05-01,\n孙九,D001,儿科分会,新生儿小组,13700001234,男,1990-01-02,小组长\n"
BAD_CSV = CSV + "钱十,D001,儿科分会,,123,X,1990-13-01,\n"


def upload(client, headers, content: str, query: str = "", filename: str = "roster.csv"):
    files = {"file": (io.BytesIO(content.encode("utf-8")), filename)}
    return client.post(f"{API}/members/import{query}", headers=headers, data=files)


def count_members(bot) -> int:
    with bot.db.Session() as s:
        return len(s.scalars(select(Member)).all())


def test_import_dry_run_then_real(client, clerk, bot, roster):
    before = count_members(bot)
    resp = upload(client, clerk, CSV, "?dry_run=1")
    assert resp.status_code == 200, resp.get_json()
    report = resp.get_json()
    assert report["ok"] and report["dry_run"] and report["rows"] == 2 and report["created"] == 1
    assert report["errors"] == [] and "试导入" in report["summary"]
    ImportReportOut.model_validate(report)  # the documented schema
    assert count_members(bot) == before

    resp = upload(client, clerk, CSV)
    assert resp.status_code == 200
    report = resp.get_json()
    assert report["ok"] and not report["dry_run"] and report["created"] == 1
    assert report["updated"] + report["unchanged"] == 1
    m = client.get(f"{API}/members/D001", headers=clerk).get_json()
    assert m["name"] == "孙九" and m["branch"] == "儿科分会" and m["roles"] == ["member", "group_leader"]
    assert upload(client, clerk, CSV).get_json()["created"] == 0  # idempotent


def test_import_errors(client, clerk, bot, roster):
    before = count_members(bot)
    resp = upload(client, clerk, BAD_CSV)
    err = assert_error(resp, 422, "import_invalid")
    assert err["errors"] and all({"row", "column", "message"} <= set(e) for e in err["errors"])
    assert any(e["row"] == 4 for e in err["errors"])
    assert resp.get_json()["report"]["ok"] is False
    assert count_members(bot) == before

    assert_error(upload(client, clerk, BAD_CSV, "?dry_run=true"), 422, "import_invalid")
    assert count_members(bot) == before

    resp = upload(client, clerk, BAD_CSV, "?partial=1")
    assert resp.status_code == 200
    report = resp.get_json()
    assert report["created"] == 1 and report["skipped_rows"] == 1 and report["errors"]
    assert count_members(bot) == before + 1

    assert_error(upload(client, clerk, "只有一列\n1\n"), 422, "import_invalid")
    assert_error(upload(client, clerk, "PK\x03\x04garbage", filename="r.xlsx"), 422, "import_invalid")
    assert_error(upload(client, clerk, "x", filename="r.pdf"), 422, "import_invalid")
    assert "file" in assert_error(upload(client, clerk, ""), 422, "validation_error")["fields"]
    no_file = client.post(
        f"{API}/members/import", headers=clerk, data={"other": "1"}, content_type="multipart/form-data"
    )
    assert "file" in assert_error(no_file, 422, "validation_error")["fields"]
    assert_error(client.post(f"{API}/members/import", headers=clerk, json={}), 415, "unsupported_media_type")
    assert_error(upload(client, clerk, CSV, "?dry_run=perhaps"), 422, "validation_error")
    assert_error(upload(client, clerk, CSV, "?force=1"), 422, "validation_error")


def test_import_xlsx(client, clerk):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["会员名册"])  # a title line above the header is fine
    ws.append(["姓名", "工号", "分会", "小组", "生日", "退休"])
    ws.append(["周一", "X100", "行政分会", "办公室小组", date(1970, 3, 8), "是"])
    buf = io.BytesIO()
    wb.save(buf)
    files = {"file": (io.BytesIO(buf.getvalue()), "名册.xlsx")}
    resp = client.post(f"{API}/members/import", headers=clerk, data=files)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["created"] == 1
    m = client.get(f"{API}/members/X100", headers=clerk).get_json()
    assert (m["birthday"], m["retired"], m["group"]) == ("1970-03-08", True, "办公室小组")


# OpenAPI ----------------------------------------------------------------------------------------------------
def test_openapi_document_covers_every_route(app, client):
    resp = client.get(f"{API}/openapi.json")  # no token needed
    assert resp.status_code == 200
    spec = json.loads(resp.get_data(as_text=True))
    assert spec["openapi"].startswith("3.1") and spec["info"]["title"] and spec["info"]["version"]
    assert spec["servers"] == [{"url": API}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/openapi.json"]["get"]["security"] == []

    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule).removeprefix(API)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    assert routes, "the blueprint has no routes"
    assert routes == documented

    # every operation is complete and every reference resolves
    op_ids = set()
    for path, item in spec["paths"].items():
        params = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert op["summary"] and op["responses"], (path, method)
            assert op["operationId"] not in op_ids
            op_ids.add(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, (path, method)
            if op.get("security") != []:
                assert "401" in op["responses"], (path, method)

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    all_refs = list(refs(spec))
    assert all_refs
    for ref in all_refs:
        node = spec
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]

    schemas = spec["components"]["schemas"]
    assert set(FULL) <= set(schemas["MemberCreate"]["properties"])
    assert set(schemas["MemberCreate"]["required"]) == {"employee_no", "name"}
    assert set(schemas["MemberOut"]["properties"]) == set(MemberOut.model_fields)
    codes = {"unauthorized", "forbidden", "not_found", "invalid_json", "validation_error", "conflict"}
    assert codes <= set(spec["x-error-codes"])
    assert codes <= set(schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"])


def test_register_paths_refuses_mistakes():
    from api.openapi import register_paths

    with pytest.raises(ValueError):
        register_paths({"/api/v1/members": {}})
    with pytest.raises(ValueError):
        register_paths({"/members": {"get": {"summary": "another"}}})



def test_ids_beyond_the_database_range_are_not_found(client):
    """<int:id> routes stop at 2^63 - 1: a larger id matches no route (4xx), never a driver overflow (500)."""
    headers = auth(make_token(client.application))
    for method, path in (("get", ""), ("patch", ""), ("post", "/cancel"), ("delete", "/signups/E1")):
        r = getattr(client, method)(f"{API}/activities/{2**63}{path}", headers=headers, json={})
        assert r.status_code in (404, 405), (method, path, r.status_code)
        assert r.get_json()["error"]["code"]
    assert client.get(f"{API}/activities/{2**63 - 1}", headers=headers).status_code == 404
