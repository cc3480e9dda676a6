"""The staff console: login and throttle, CSRF, permissions, members search and edit, roster import."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from admin import nav
from admin.models import StaffLoginFailure
from bot.permissions import can
from models import Member, OutboxMessage, PlatformIdentity, StaffAccount
from models.member import link_identity
from tests.conftest import add_member

PASSWORD = "correct horse 42"


def add_staff(bot, username="clerk1", password=PASSWORD, role="clerk", active=True, member_id=None):
    with bot.db.transaction() as s:
        acc = StaffAccount(username=username, display_name=f"{username}干事", role=role, active=active)
        acc.member_id = member_id
        acc.set_password(password)
        s.add(acc)
        s.flush()
        return acc.id


def csrf(client, path="/admin/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def login(client, username="clerk1", password=PASSWORD, **extra):
    token = csrf(client)
    return client.post(
        "/admin/login", data={"username": username, "password": password, "csrf_token": token, **extra}
    )


@pytest.fixture(autouse=True)
def uploads(app, tmp_path):
    """Roster uploads go to the test's own folder, not the project's instance/."""
    app.config["ADMIN_UPLOAD_DIR"] = str(tmp_path / "uploads")
    return tmp_path / "uploads"


@pytest.fixture
def clerk(client, bot):
    add_staff(bot)
    resp = login(client)
    assert resp.status_code == 302
    return client


def post(client, path, data=None, **kw):
    data = dict(data or {})
    data.setdefault("csrf_token", csrf(client, "/admin/"))
    return client.post(path, data=data, **kw)


# ------------------------------------------------------------------------------------------------ login
def test_login_ok_shows_dashboard_with_user(client, bot):
    add_staff(bot)
    resp = login(client)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/")
    html = client.get("/admin/").get_data(as_text=True)
    assert "clerk1干事" in html and "退出登录" in html and "在册会员" in html


def test_login_required_redirects_to_login(client):
    resp = client.get("/admin/members?q=张")
    assert resp.status_code == 302 and "/admin/login" in resp.headers["Location"]
    assert "next=" in resp.headers["Location"]


def test_login_returns_to_next_but_never_off_site(client, bot):
    add_staff(bot)
    resp = login(client, next="/admin/members?q=x")
    assert resp.headers["Location"].endswith("/admin/members?q=x")
    client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    resp = login(client, next="https://evil.example/admin")
    assert resp.headers["Location"].endswith("/admin/")
    client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    resp = login(client, next="//evil.example/admin")
    assert resp.headers["Location"].endswith("/admin/")


def test_wrong_password_and_unknown_user_give_the_same_message(client, bot):
    add_staff(bot)
    for username, password in (("clerk1", "wrong"), ("nobody", PASSWORD)):
        resp = login(client, username=username, password=password)
        assert resp.status_code == 401
        assert "用户名或密码错误" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_inactive_account_refused_with_generic_message(client, bot):
    add_staff(bot, active=False)
    resp = login(client)
    assert resp.status_code == 401 and "用户名或密码错误" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_deactivated_while_logged_in_is_logged_out(clerk, bot):
    assert clerk.get("/admin/").status_code == 200
    with bot.db.transaction() as s:
        s.scalar(select(StaffAccount)).active = False
    assert clerk.get("/admin/").status_code == 302


def test_password_change_ends_other_sessions(clerk, bot):
    with bot.db.transaction() as s:
        s.scalar(select(StaffAccount)).set_password("a new password")
    assert clerk.get("/admin/").status_code == 302


def test_session_expires_after_twelve_hours(clerk, bot):
    bot.clock.offset += timedelta(hours=11)
    assert clerk.get("/admin/").status_code == 200
    bot.clock.offset += timedelta(hours=2)
    assert clerk.get("/admin/").status_code == 302


def test_throttle_after_five_failures_even_with_right_password(client, bot):
    add_staff(bot)
    for _ in range(5):
        assert login(client, password="wrong").status_code == 401
    resp = login(client)
    assert resp.status_code == 429
    assert "次数过多" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # case changes do not get around it; other usernames are not affected
    assert login(client, username="CLERK1").status_code == 429
    add_staff(bot, username="clerk2")
    assert login(client, username="clerk2").status_code == 302


def test_throttle_expires_after_fifteen_minutes(client, bot):
    add_staff(bot)
    for _ in range(5):
        login(client, password="wrong")
    assert login(client).status_code == 429
    bot.clock.offset += timedelta(minutes=16)
    assert login(client).status_code == 302
    with bot.db.Session() as s:  # a success clears the username's failures
        assert s.scalar(select(func.count()).select_from(StaffLoginFailure)) == 0


def test_role_without_console_login_is_refused(client, bot):
    add_staff(bot, role="member")
    assert login(client).status_code == 401


def test_logout(clerk):
    resp = post(clerk, "/admin/logout")
    assert resp.status_code == 302
    assert clerk.get("/admin/").status_code == 302


def test_logout_needs_post(clerk):
    assert clerk.get("/admin/logout").status_code == 405


# -------------------------------------------------------------------------------------------------- CSRF
def test_csrf_missing_or_wrong_is_400_in_chinese(clerk, bot):
    m = add_member(bot, name="李四")
    resp = clerk.post(f"/admin/members/{m.id}/roles", data={"roles": ["clerk"]})
    assert resp.status_code == 400
    assert "安全校验失败" in resp.get_data(as_text=True)
    resp = clerk.post(f"/admin/members/{m.id}/roles", data={"roles": ["clerk"], "csrf_token": "forged"})
    assert resp.status_code == 400
    with bot.db.Session() as s:
        assert s.get(Member, m.id).roles == {"member"}


def test_csrf_on_login_form(client, bot):
    add_staff(bot)
    client.get("/admin/login")
    resp = client.post("/admin/login", data={"username": "clerk1", "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_rotates_csrf_token(client, bot):
    add_staff(bot)
    before = csrf(client)
    login(client)
    assert csrf(client, "/admin/") != before


def test_security_headers(clerk):
    resp = clerk.get("/admin/")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------------------------- permissions
def test_role_without_members_view_gets_403_and_no_nav_entry(client, bot):
    assert not can({"proposal_reviewer"}, "members.view")
    add_staff(bot, username="reviewer", role="proposal_reviewer")
    login(client, username="reviewer")
    html = client.get("/admin/").get_data(as_text=True)
    assert "工作台" in html and 'href="/admin/members"' not in html
    resp = client.get("/admin/members")
    assert resp.status_code == 403 and "没有权限" in resp.get_data(as_text=True)


def test_branch_chair_sees_members_but_cannot_edit_or_import(client, bot):
    m = add_member(bot, name="王五")
    add_staff(bot, username="chair1", role="branch_chair")
    login(client, username="chair1")
    assert client.get("/admin/members").status_code == 200
    assert client.get(f"/admin/members/{m.id}").status_code == 200
    assert post(client, f"/admin/members/{m.id}", {"name": "改名"}).status_code == 403
    assert post(client, f"/admin/members/{m.id}/roles", {"roles": "clerk"}).status_code == 403
    assert client.get("/admin/members/import").status_code == 403


def test_staff_roles_include_linked_member_roles(client, bot):
    m = add_member(bot, name="赵六", roles=["clerk"])
    add_staff(bot, username="linked", role="member", member_id=m.id)
    assert login(client, username="linked").status_code == 302
    assert client.get("/admin/members").status_code == 200


def test_dashboard_counts_and_dead_letters(clerk, bot):
    a = add_member(bot, name="甲")
    add_member(bot, name="乙")
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, a.id), "sandbox", "sb-a")
        now = bot.clock.now()
        s.add(
            OutboxMessage(
                idempotency_key="k1",
                platform="wecom",
                target_kind="user",
                target_id="u1",
                payload={"type": "text", "text": "你好"},
                status="pending",
                created_at=now,
            )
        )
        s.add(
            OutboxMessage(
                idempotency_key="k2",
                platform="wecom",
                target_kind="user",
                target_id="u2",
                member_id=a.id,
                payload={"type": "text", "text": "活动提醒"},
                status="dead",
                attempts=8,
                last_error="60111 userid not found",
                created_at=now,
            )
        )
    html = clerk.get("/admin/").get_data(as_text=True)
    nums = re.findall(r'<span class="num">(\d+)</span><span class="label">([^<]+)<', html)
    assert dict((label, int(n)) for n, label in nums) == {
        "在册会员": 2,
        "已绑定聊天账号": 1,
        "待发送消息": 1,
        "发送失败（已放弃）": 1,
    }
    assert "60111 userid not found" in html and "甲" in html and "活动提醒" in html


def test_nav_register_api(app, bot):
    from admin import console_blueprint, require

    bp = console_blueprint("demo_admin", __name__, url_prefix="/admin/demo")

    @bp.get("/")
    @require("activities.create")
    def index():
        return "demo page"

    @bp.post("/do")
    def do():
        return "done"

    nav.register("活动管理", "demo_admin.index", "activities.create", order=30)
    try:
        with app.app_context():  # not registered on this app yet: hidden
            assert "demo_admin.index" not in [e.endpoint for e in nav.visible({"clerk"})]
        app.register_blueprint(bp)
        with app.app_context():
            assert "demo_admin.index" in [e.endpoint for e in nav.visible({"clerk"})]
            assert "demo_admin.index" not in [e.endpoint for e in nav.visible({"hardship_reviewer"})]
        client = app.test_client()
        assert client.get("/admin/demo/").status_code == 302  # login first
        add_staff(bot)
        login(client)
        html = client.get("/admin/demo/")
        assert html.get_data(as_text=True) == "demo page"
        assert '<a href="/admin/demo/">活动管理</a>' in client.get("/admin/").get_data(as_text=True)
        assert client.post("/admin/demo/do").status_code == 400
        assert post(client, "/admin/demo/do").get_data(as_text=True) == "done"
        with pytest.raises(KeyError):
            nav.register("x", "demo_admin.index", "no.such.permission")
    finally:
        nav.entries.pop("demo_admin.index", None)


def test_local_filter_shows_shanghai_time(app):
    from datetime import UTC, datetime

    with app.test_request_context("/admin/"):
        from flask import render_template_string

        out = render_template_string("{{ t|local }}", t=datetime(2026, 1, 1, 16, 30, tzinfo=UTC))
    assert out == "2026-01-02 00:30"


# ----------------------------------------------------------------------------------------------- members
def test_search_by_name_employee_no_phone_tail_branch_group(clerk, bot):
    add_member(
        bot, name="张三", employee_no="E1001", phone="13800005678", branch="内科分会", group="心内科小组"
    )
    add_member(
        bot, name="张小红", employee_no="E1002", phone="13900001111", branch="外科分会", group="骨科小组"
    )
    add_member(
        bot, name="李四", employee_no="E2001", phone="13700002222", branch="外科分会", group="普外小组"
    )

    def names(query):
        html = clerk.get("/admin/members" + query).get_data(as_text=True)
        return sorted(re.findall(r'/admin/members/\d+">([^<]+)</a>', html))

    assert names("") == ["张三", "张小红", "李四"]
    assert names("?q=张") == ["张三", "张小红"]
    assert names("?q=E2001") == ["李四"]
    assert names("?q=5678") == ["张三"]
    assert names("?q=骨科") == ["张小红"]
    assert names("?q=外科分会") == ["张小红", "李四"]
    assert names("?q=%25") == []  # LIKE wildcards are literal
    html = clerk.get("/admin/members").get_data(as_text=True)
    branch_id = re.search(r'<option value="(\d+)">外科分会</option>', html).group(1)
    assert names(f"?branch={branch_id}") == ["张小红", "李四"]
    group_id = re.search(r'<option value="(\d+)">外科分会 / 普外小组</option>', html).group(1)
    assert names(f"?group={group_id}") == ["李四"]


def test_search_paginates_and_hides_inactive_by_default(clerk, bot):
    for i in range(45):
        add_member(bot, name=f"会员{i:02d}", employee_no=f"P{i:03d}")
    add_member(bot, name="已停用者", employee_no="Z999", active=False)
    page1 = clerk.get("/admin/members").get_data(as_text=True)
    assert "共 45 人" in page1 and "第 1 / 3 页" in page1 and "会员00" in page1 and "会员20" not in page1
    page3 = clerk.get("/admin/members?page=3").get_data(as_text=True)
    assert "会员44" in page3 and "下一页" not in page3 and "上一页" in page3
    assert "已停用者" in clerk.get("/admin/members?status=inactive").get_data(as_text=True)
    assert "共 46 人" in clerk.get("/admin/members?status=all").get_data(as_text=True)


def test_edit_member_details(clerk, bot):
    m = add_member(bot, name="张三", branch="内科分会", group="心内科小组")
    other = add_member(bot, name="别人", branch="外科分会", group="骨科小组")
    with bot.db.Session() as s:
        o = s.get(Member, other.id)
        new_branch, new_group = o.branch_id, o.group_id
    data = {
        "name": "张三丰",
        "branch_id": new_branch,
        "group_id": new_group,
        "phone": "13912345678",
        "gender": "男",
        "job_title": "主治医师",
        "birthday": "1979-04-08",
        "birthday_is_lunar": "1",
        "lunar_birth_month": "",
        "lunar_birth_day": "",
        "retired": "1",
        "is_delegate": "1",
        "active": "1",
        "greeting_opt_out": "1",
    }
    resp = post(clerk, f"/admin/members/{m.id}", data)
    assert resp.status_code == 302
    page = clerk.get(resp.headers["Location"]).get_data(as_text=True)
    assert "已保存 张三丰 的资料" in page
    with bot.db.Session() as s:
        got = s.get(Member, m.id)
        assert (got.name, got.phone, got.gender, got.job_title) == ("张三丰", "13912345678", "男", "主治医师")
        assert (got.branch_id, got.group_id) == (new_branch, new_group)
        assert got.retired and got.is_delegate and got.active and got.greeting_opt_out
        assert got.birthday.isoformat() == "1979-04-08" and got.birthday_is_lunar
        assert (got.lunar_birth_month, got.lunar_birth_day) == (3, 12)  # converted from the solar date


def test_edit_member_validation_errors_keep_input(clerk, bot):
    m = add_member(bot, name="张三", branch="内科分会", group="心内科小组")
    other = add_member(bot, name="别人", branch="外科分会", group="骨科小组")
    with bot.db.Session() as s:
        own_branch = s.get(Member, m.id).branch_id
        foreign_group = s.get(Member, other.id).group_id
    resp = post(
        clerk,
        f"/admin/members/{m.id}",
        {
            "name": "",
            "phone": "abc",
            "branch_id": own_branch,
            "group_id": foreign_group,
            "birthday": "1980-13-01",
            "job_title": "护士长",
        },
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert (
        "请填写姓名" in html and "手机号格式不对" in html and "不属于分会" in html and "生日格式不对" in html
    )
    assert 'value="护士长"' in html
    with bot.db.Session() as s:
        assert s.get(Member, m.id).name == "张三"


def test_edit_has_children_tri_state(clerk, bot):
    """有子女 decides who gets the 六一 greeting: yes / no / not known (blank roster cell), all settable."""
    m = add_member(bot, name="张三")
    url = f"/admin/members/{m.id}"

    def shown() -> str:
        html = clerk.get(url).get_data(as_text=True)
        select_html = re.search(r'<select name="has_children">(.*?)</select>', html, re.S).group(1)
        return re.search(r'<option value="([^"]*)" selected>', select_html).group(1)

    def stored():
        with bot.db.Session() as s:
            return s.get(Member, m.id).has_children

    assert shown() == "" and stored() is None
    for value, want in (("yes", True), ("no", False), ("", None), ("yes", True)):
        assert post(clerk, url, {"name": "张三", "active": "1", "has_children": value}).status_code == 302
        assert stored() is want and shown() == value
    assert post(clerk, url, {"name": "张三", "active": "1"}).status_code == 302  # an older form: kept
    assert stored() is True
    resp = post(clerk, url, {"name": "张三", "active": "1", "has_children": "maybe"})
    assert resp.status_code == 400 and "有无子女请选择" in resp.get_data(as_text=True)
    assert stored() is True


def test_deactivate_member_by_unticking_active(clerk, bot):
    m = add_member(bot, name="张三")
    assert post(clerk, f"/admin/members/{m.id}", {"name": "张三"}).status_code == 302
    with bot.db.Session() as s:
        assert s.get(Member, m.id).active is False


def test_edit_roles(clerk, bot):
    m = add_member(bot, name="张三", roles=["group_leader"])
    html = clerk.get(f"/admin/members/{m.id}").get_data(as_text=True)
    assert 'value="group_leader" checked' in html and "小组长" in html and "帮扶审核" in html
    resp = post(clerk, f"/admin/members/{m.id}/roles", {"roles": ["branch_chair", "proposal_reviewer"]})
    assert resp.status_code == 302
    with bot.db.Session() as s:
        assert s.get(Member, m.id).roles == {"member", "branch_chair", "proposal_reviewer"}
    assert "分会主席、提案委员" in clerk.get(f"/admin/members/{m.id}").get_data(as_text=True)
    post(clerk, f"/admin/members/{m.id}/roles", {})
    with bot.db.Session() as s:
        assert s.get(Member, m.id).roles == {"member"}


def test_only_admin_grants_admin_role(clerk, bot, client):
    m = add_member(bot, name="张三")
    assert post(clerk, f"/admin/members/{m.id}/roles", {"roles": ["admin"]}).status_code == 403
    with bot.db.Session() as s:
        assert s.get(Member, m.id).roles == {"member"}
    add_staff(bot, username="root", role="admin")
    admin_client = client.application.test_client()
    login(admin_client, username="root")
    assert post(admin_client, f"/admin/members/{m.id}/roles", {"roles": ["admin"]}).status_code == 302
    # a clerk saving other roles keeps the admin role they may not touch
    assert post(clerk, f"/admin/members/{m.id}/roles", {"roles": ["admin", "clerk"]}).status_code == 302
    with bot.db.Session() as s:
        assert s.get(Member, m.id).roles == {"member", "admin", "clerk"}


def test_identities_listed_and_unlinked(clerk, bot):
    m = add_member(bot, name="张三")
    with bot.db.transaction() as s:
        ident = link_identity(s, s.get(Member, m.id), "wecom", "zhangsan")
        s.flush()
        ident_id = ident.id
    html = clerk.get(f"/admin/members/{m.id}").get_data(as_text=True)
    assert "企业微信" in html and "zhangsan" in html
    assert post(clerk, f"/admin/members/{m.id + 999}/identities/{ident_id}/unlink").status_code == 404
    resp = post(clerk, f"/admin/members/{m.id}/identities/{ident_id}/unlink")
    assert resp.status_code == 302
    with bot.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(PlatformIdentity)) == 0


def test_unknown_member_is_404_in_chinese(clerk):
    resp = clerk.get("/admin/members/9999")
    assert resp.status_code == 404 and "页面不存在" in resp.get_data(as_text=True)


# ------------------------------------------------------------------------------------------------ import
GOOD_CSV = (
    "姓名,工号,分会,小组,手机,性别,角色\n王小明,N001,内科分会,心内科小组,13800000001,男,小组长\n"
    "李小华,N002,外科分会,骨科小组,13800000002,女,\n"
)
BAD_CSV = GOOD_CSV + "赵错误,N003,外科分会,骨科小组,12345,X,\n"


def upload(client, text, name="roster.csv"):
    return post(
        client,
        "/admin/members/import",
        {"file": (io.BytesIO(text.encode("utf-8")), name)},
        content_type="multipart/form-data",
    )


def member_count(bot) -> int:
    with bot.db.Session() as s:
        return s.scalar(select(func.count()).select_from(Member))


def test_import_preview_then_confirm(clerk, bot, uploads):
    add_member(bot, name="李小华旧", employee_no="N002")
    resp = upload(clerk, GOOD_CSV)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "roster.csv" in html
    stats = dict(
        (label, int(n))
        for n, label in re.findall(r'<span class="num">(\d+)</span><span class="label">([^<]+)<', html)
    )
    assert stats["将新增"] == 1 and stats["将更新"] == 1 and stats["错误"] == 0
    assert member_count(bot) == 1  # the preview wrote nothing
    kept = list(uploads.glob("roster-*"))
    assert len(kept) == 1
    resp = post(clerk, "/admin/members/import/confirm")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/members")
    assert "导入完成：新增 1 人，更新 1 人" in clerk.get("/admin/members").get_data(as_text=True)
    with bot.db.Session() as s:
        new = s.scalar(select(Member).where(Member.employee_no == "N001"))
        assert new.name == "王小明" and new.roles == {"member", "group_leader"}
        assert s.scalar(select(Member.name).where(Member.employee_no == "N002")) == "李小华"
    assert not any(p.exists() for p in kept)  # the stored upload is removed after the import
    # confirming again without a new upload asks for one
    resp = post(clerk, "/admin/members/import/confirm")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/members/import")


def test_import_error_report_and_all_or_nothing(clerk, bot):
    html = upload(clerk, BAD_CSV).get_data(as_text=True)
    rows = re.findall(r'<tr><td class="row-no">(\d+)</td><td>([^<]*)</td><td>([^<]+)</td></tr>', html)
    assert {(r, c) for r, c, _ in rows} == {("4", "手机"), ("4", "性别")}
    assert "跳过有错误的行" in html
    resp = post(clerk, "/admin/members/import/confirm")
    assert resp.status_code == 400 and "没有导入任何一行" in resp.get_data(as_text=True)
    assert member_count(bot) == 0
    # partial: the good rows go in, the bad one is skipped
    resp = post(clerk, "/admin/members/import/confirm", {"partial": "1"})
    assert resp.status_code == 302
    assert member_count(bot) == 2
    assert "跳过有错误的 2 处" in clerk.get("/admin/members").get_data(as_text=True)


def test_import_rejects_other_file_types_and_bad_files(clerk, bot):
    resp = upload(clerk, "x", name="roster.exe")
    assert resp.status_code == 302
    assert "只支持 .xlsx 或 .csv" in clerk.get("/admin/members/import").get_data(as_text=True)
    html = upload(clerk, "名字不对,编号\n甲,1\n").get_data(as_text=True)
    assert "缺少必填列" in html and "确认导入" not in html


def test_import_xlsx(clerk, bot):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "工号", "分会", "小组"])
    ws.append(["钱多多", "X001", "行政分会", "财务小组"])
    buf = io.BytesIO()
    wb.save(buf)
    resp = post(
        clerk,
        "/admin/members/import",
        {"file": (io.BytesIO(buf.getvalue()), "名单.xlsx")},
        content_type="multipart/form-data",
    )
    assert "名单.xlsx" in resp.get_data(as_text=True)
    assert post(clerk, "/admin/members/import/confirm").status_code == 302
    with bot.db.Session() as s:
        assert s.scalar(select(Member.name).where(Member.employee_no == "X001")) == "钱多多"


def test_import_cancel_drops_the_upload(clerk, bot):
    upload(clerk, GOOD_CSV)
    assert post(clerk, "/admin/members/import/cancel").status_code == 302
    resp = post(clerk, "/admin/members/import/confirm")
    assert resp.headers["Location"].endswith("/admin/members/import")
    assert member_count(bot) == 0


def test_console_ids_beyond_the_database_range_are_not_found(client, bot):
    add_staff(bot, role="admin")
    login(client)
    for path in ("/admin/members/{}", "/admin/activities/{}", "/admin/proposals/{}", "/admin/care/case/{}"):
        assert client.get(path.format(2**63)).status_code == 404, path
