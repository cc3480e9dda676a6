"""The console in a real headless Chromium: log in, search members, import a roster (preview, confirm).

Needs Debian's chromium at /usr/bin/chromium (CI's .ci/run installs it); skipped otherwise.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from models import StaffAccount
from tests.conftest import add_member, make_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def live(tmp_path):
    """The app served by werkzeug on a free local port, against a temporary SQLite database."""
    app = make_app(f"sqlite:///{tmp_path / 'browser.db'}")
    app.config["ADMIN_UPLOAD_DIR"] = str(tmp_path / "uploads")
    bot = app.extensions["bot"]
    with bot.db.transaction() as s:
        acc = StaffAccount(username="clerk", display_name="王干事", role="clerk")
        acc.set_password("s3cret-pass")
        s.add(acc)
    add_member(
        bot, name="张三", employee_no="E1001", phone="13800005678", branch="内科分会", group="心内科小组"
    )
    add_member(
        bot, name="李四", employee_no="E1002", phone="13900001111", branch="外科分会", group="骨科小组"
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["db"].dispose()


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Chromium not installed: apt-get install chromium (CI's .ci/run does this) to run the browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
            context.set_default_timeout(15000)
            yield context.new_page()
        finally:
            browser.close()


def test_login_search_and_import_roster(live, page, tmp_path):
    from playwright.sync_api import expect

    # not logged in: the console sends us to the login page; a wrong password is refused
    page.goto(f"{live}/admin/members")
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    page.get_by_label("用户名").fill("clerk")
    page.get_by_label("密码").fill("wrong")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")

    page.get_by_label("密码").fill("s3cret-pass")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="会员")).to_be_visible()  # back to where we wanted to go
    expect(page.locator(".who")).to_have_text("王干事")
    expect(page.locator("table.members tbody tr")).to_have_count(2)

    # search by phone tail
    page.get_by_label("搜索").fill("5678")
    page.get_by_role("button", name="查询").click()
    expect(page.locator("table.members tbody tr")).to_have_count(1)
    expect(page.locator("table.members")).to_contain_text("张三")
    expect(page.locator("table.members")).not_to_contain_text("李四")

    # import a roster with one bad row: preview shows the error report, nothing is written yet
    roster = tmp_path / "名单.csv"
    roster.write_text(
        "姓名,工号,分会,小组,手机,性别,角色\n"
        "王小明,N001,内科分会,心内科小组,13800000001,男,小组长\n"
        "赵错误,N002,外科分会,骨科小组,12345,女,\n",
        encoding="utf-8",
    )
    page.get_by_role("link", name="名单导入").click()
    page.get_by_label("名单文件").set_input_files(str(roster))
    page.get_by_role("button", name="上传并预览").click()
    expect(page.get_by_role("heading", name="第 2 步：预览“名单.csv”")).to_be_visible()
    errors = page.locator("table.errors tbody tr")
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("3")
    expect(errors.first).to_contain_text("手机")

    # all-or-nothing refuses; ticking "skip the bad rows" imports the good one
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator(".flash-error")).to_contain_text("没有导入任何一行")
    page.get_by_label("跳过有错误的行").check()
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator(".flash-ok")).to_contain_text("导入完成：新增 1 人")

    page.get_by_label("搜索").fill("王小明")
    page.get_by_role("button", name="查询").click()
    rows = page.locator("table.members tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("N001")
    expect(rows.first).to_contain_text("小组长")

    page.get_by_label("搜索").fill("")
    page.get_by_role("button", name="查询").click()
    expect(page.locator("table.members tbody tr")).to_have_count(3)
    shot = os.environ.get("ADMIN_SCREENSHOT") or tmp_path / "admin_members.png"  # a path of the test's own
    page.screenshot(path=str(shot), full_page=True)

    # the member's page, then log out
    page.get_by_role("link", name="王小明").click()
    expect(page.get_by_role("heading", name="王小明 · 会员资料")).to_be_visible()
    expect(page.get_by_label("姓名")).to_have_value("王小明")
    page.get_by_role("button", name="退出登录").click()
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    page.goto(f"{live}/admin/members")
    expect(page.get_by_role("button", name="登录")).to_be_visible()
