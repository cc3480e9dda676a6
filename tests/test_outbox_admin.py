"""The console's outbox page (消息发送): dead letters and retries with their reason, the status filter, 重新发送
(CSRF, its own permission), and sensitive rows shown without recipient or content."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from bot import outbox
from bot.message import Text
from models import OutboxMessage
from tests.conftest import add_member
from tests.test_admin import add_staff, csrf, login


def make_row(
    bot, key, text, status="dead", sensitive=False, member=None, error="81013 invalid touser", attempts=5
):
    created = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
    with bot.db.transaction() as s:
        outbox.enqueue(
            s, platform="sandbox", target_kind="user", target_id=f"sb-{key}", message=Text(text), key=key,
            member_id=member.id if member else None, sensitive=sensitive, now=created,
        )  # fmt: skip
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == key)
            .values(status=status, last_error=error, attempts=attempts)
        )
        return s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))


def test_lists_problems_with_reason_and_filters_by_status(bot, client):
    member = add_member(bot, "钱会员")
    make_row(bot, "activity:1:m1", "羽毛球赛报名成功", member=member)
    make_row(bot, "meeting:2:m1", "工会委员会会议提醒", status="pending", error="rate limited", attempts=2)
    make_row(bot, "birthday:3", "生日快乐", status="sent", error=None)
    add_staff(bot)
    login(client)
    html = client.get("/admin/outbox/").get_data(as_text=True)
    assert "钱会员" in html and "羽毛球赛报名成功" in html and "81013 invalid touser" in html
    assert "工会委员会会议提醒" in html and "rate limited" in html and "生日快乐" not in html
    assert "2026-11-30 08:30" in html and "活动" in html and "会议" in html  # Shanghai time, kind
    dead = client.get("/admin/outbox/?status=dead").get_data(as_text=True)
    assert "羽毛球赛报名成功" in dead and "工会委员会会议提醒" not in dead
    retrying = client.get("/admin/outbox/?status=retrying").get_data(as_text=True)
    assert "羽毛球赛报名成功" not in retrying and "工会委员会会议提醒" in retrying
    assert "/admin/outbox/" in client.get("/admin/").get_data(as_text=True)  # linked from the dashboard


def test_retry_puts_the_row_back_with_attempts_reset(bot, client):
    rid = make_row(bot, "activity:1:m1", "羽毛球赛报名成功")
    add_staff(bot)
    login(client)
    assert "重新发送" in client.get("/admin/outbox/").get_data(as_text=True)
    assert client.post(f"/admin/outbox/{rid}/retry").status_code == 400  # no CSRF token
    token = csrf(client, "/admin/outbox/")
    resp = client.post(f"/admin/outbox/{rid}/retry", data={"csrf_token": token})
    assert resp.status_code == 302
    with bot.db.Session() as s:
        row = s.get(OutboxMessage, rid)
        assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)
        assert row.next_attempt_at <= bot.clock.now()
    assert "已重新排队发送" in client.get("/admin/outbox/").get_data(as_text=True)
    outbox.drain(bot, platform="sandbox")
    with bot.db.Session() as s:
        assert s.get(OutboxMessage, rid).status == "sent"


def test_retry_needs_the_manage_permission(bot, client):
    rid = make_row(bot, "activity:1:m1", "羽毛球赛报名成功")
    add_staff(bot, "chair1", role="chair")  # may look (outbox.view), may not resend
    login(client, "chair1")
    html = client.get("/admin/outbox/").get_data(as_text=True)
    assert "羽毛球赛报名成功" in html and "重新发送" not in html
    token = csrf(client, "/admin/outbox/")
    assert client.post(f"/admin/outbox/{rid}/retry", data={"csrf_token": token}).status_code == 403
    add_staff(
        bot, "member1", role="group_leader", member_id=add_member(bot, "刘组长", roles=["group_leader"]).id
    )
    other = client.application.test_client()
    login(other, "member1")
    assert other.get("/admin/outbox/").status_code == 403


def test_sensitive_rows_show_neither_recipient_nor_content(bot, client):
    member = add_member(bot, "王芳")
    pending = make_row(bot, "hardship:1:2:m1", "您的困难帮扶申请已审批同意：慰问金 2000 元", status="pending",
                       sensitive=True, member=member, error="（涉及个人隐私，错误详情已隐去）错误代码 45009")  # fmt: skip
    add_staff(bot)
    login(client)
    for url in ("/admin/outbox/", "/admin/outbox/?status=retrying"):
        html = client.get(url).get_data(as_text=True)
        assert "涉及隐私，内容已隐去" in html and "45009" in html, url
        assert "王芳" not in html and "慰问金" not in html and "sb-hardship" not in html, url
    token = csrf(client, "/admin/outbox/")
    client.post(f"/admin/outbox/{pending}/retry", data={"csrf_token": token})  # still held: may be resent
    with bot.db.Session() as s:
        assert s.get(OutboxMessage, pending).status == "pending"
    outbox.drain(bot, platform="sandbox")  # sent, hence scrubbed
    with bot.db.Session() as s:
        row = s.get(OutboxMessage, pending)
        assert row.status == "sent" and row.target_id == "" and row.member_id is None
        assert row.payload == outbox.SCRUBBED_PAYLOAD and "匿名" not in row.payload["text"]


def test_a_scrubbed_row_cannot_be_resent(bot, client):
    rid = make_row(bot, "care:1:new:m1", "新的关怀任务：王芳 住院 心内科 12床", sensitive=True)
    with bot.db.transaction() as s:
        outbox.scrub_sensitive(s)
    add_staff(bot)
    login(client)
    html = client.get("/admin/outbox/").get_data(as_text=True)
    assert "涉及隐私，内容已隐去" in html and "重新发送" not in html and "12床" not in html
    token = csrf(client, "/admin/outbox/")
    client.post(f"/admin/outbox/{rid}/retry", data={"csrf_token": token})
    assert "无法重新发送" in client.get("/admin/outbox/").get_data(as_text=True)
    with bot.db.Session() as s:
        assert s.get(OutboxMessage, rid).status == "dead"


def test_messages_the_bot_failed_to_handle_are_listed_without_their_text(
    bot, client, chat_with, caplog, monkeypatch
):
    """The member is told staff will look into it: the page shows when and where, the log has the same number."""
    from bot.core import SORRY
    from models import InboundMessage

    chat = chat_with(add_member(bot, "孙会员"))
    add_staff(bot)
    login(client)
    assert "没有处理出错的消息" in client.get("/admin/outbox/").get_data(as_text=True)
    monkeypatch.setattr(bot.settings, "DATA_KEY", "not-a-fernet-key")  # the hardship handler raises
    assert chat.ask("困难申报 家里老人卧床三年，医药费负担重") == SORRY
    with bot.db.Session() as s:
        failed_id = s.scalar(select(InboundMessage.id).where(InboundMessage.status == "failed"))
    html = client.get("/admin/outbox/").get_data(as_text=True)
    assert f"#{failed_id}" in html and "沙盒" in html and "私聊" in html and "ValueError" in html
    assert "卧床" not in html and "没有处理出错的消息" not in html
    assert f"handler failed for inbound #{failed_id}" in caplog.text


def test_a_file_message_shows_its_name(bot, client):
    from bot.message import File

    with bot.db.transaction() as s:
        outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="sb-f", key="monthly_list:f",
                       message=File("2026年12月生日名单.xlsx", b"PK\x03\x04 fake"), now=bot.clock.now())  # fmt: skip
        s.execute(update(OutboxMessage).values(status="dead", last_error="81013 invalid touser"))
    add_staff(bot)
    login(client)
    html = client.get("/admin/outbox/").get_data(as_text=True)
    assert "[文件] 2026年12月生日名单.xlsx" in html and "UEsDB" not in html  # the name, never the base64
