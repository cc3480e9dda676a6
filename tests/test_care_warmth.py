"""The warmth campaign (送温暖) before 春节: the scheduler's once-a-year list for the hardship reviewers and the
chair, and the console page with its .xlsx."""

from __future__ import annotations

import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import time_machine
from openpyxl import load_workbook
from sqlalchemy import select

from bot import scheduler as sch
from handlers.care import send_warmth_campaign, warmth_festival
from models.care import AuditLog
from models.messaging import OutboxMessage
from tests.conftest import add_member
from tests.test_admin import add_staff, login
from tests.test_care import people, run_to, texts_to  # noqa: F401  (people is a fixture)

SH = ZoneInfo("Asia/Shanghai")
SPRING_2027 = date(2027, 2, 6)  # 春节 2027 (bot/calendar.py)


def at(y, m, d, h=9):
    return datetime(y, m, d, h, 0, tzinfo=SH)


def test_campaign_window_is_the_30_days_before_spring_festival():
    assert warmth_festival(date(2027, 1, 6)) is None
    assert warmth_festival(date(2027, 1, 7)) == SPRING_2027
    assert warmth_festival(SPRING_2027) == SPRING_2027
    assert warmth_festival(date(2027, 2, 7)) is None
    assert warmth_festival(date(2027, 12, 28)) == date(2028, 1, 26)  # 春节 2028 is in January


def warmth_pushes(bot, member) -> list[str]:
    return [t for t in texts_to(bot, member) if t and ("送温暖" in t or "老张" in t)]


def test_scheduler_sends_the_list_once_to_reviewers_and_the_chair(bot, chat_with, people):  # noqa: F811
    run_to(bot, chat_with, people, until="decided")  # 王芳 is on the hardship record (大病)
    chair = add_member(bot, "主席", roles=["chair"], branch="工会办公室", group="办公室")
    old_zhang = add_member(bot, "老张", retired=True)
    add_member(bot, "离会退休", retired=True, active=False)
    everyone = [*people.values(), chair, old_zhang]
    for m in everyone:
        chat_with(m)
    runner = sch.JobRunner(bot, "solo")
    with time_machine.travel(at(2027, 1, 6), tick=False):  # 31 days before: not yet
        assert runner.group("daily")
    assert "send_warmth_campaign" in runner.runs
    assert not any(warmth_pushes(bot, m) for m in everyone)

    with time_machine.travel(at(2027, 1, 7), tick=False):
        runner.group("daily")
    for who in (people["reviewer"], chair):
        (text,) = warmth_pushes(bot, who)
        assert "2027年春节（2月6日）" in text and "共 2 人" in text
        assert "王芳：困难职工（大病）" in text and "老张：退休职工" in text
        assert "李同事" not in text and "离会退休" not in text
    for key in ("member", "leader", "bchair", "other_bchair", "clerk", "colleague"):
        assert warmth_pushes(bot, people[key]) == [], key  # nobody else sees the names
    assert warmth_pushes(bot, old_zhang) == []

    late = add_member(bot, "新审核", roles=["hardship_reviewer"], branch="工会办公室", group="办公室")
    chat_with(late)
    for day in (8, 20):
        with time_machine.travel(at(2027, 1, day), tick=False):
            runner.group("daily")
            assert send_warmth_campaign(bot) == 0  # once a year
    assert len(warmth_pushes(bot, people["reviewer"])) == 1 and warmth_pushes(bot, late) == []
    with bot.db.Session() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.detail.like("warmth%"))).all()
    assert [(r.actor_label, r.action, r.detail) for r in rows] == [
        ("system", "export", "warmth list 2027 sent to 2 (2 members)")
    ]

    # delivered copies are blanked by the hourly scrub like every other care push
    from handlers.care import scrub_sensitive_replies

    with time_machine.travel(at(2027, 1, 21), tick=False):
        assert "老张" in str(chat_with(people["reviewer"]).inbox()) and chat_with(chair).inbox()
        scrub_sensitive_replies(bot)
    with bot.db.Session() as s:
        payloads = [r.payload for r in s.scalars(select(OutboxMessage).where(
            OutboxMessage.idempotency_key.like("record:warmth:2027:%")))]  # fmt: skip
    assert len(payloads) == 2 and not any("老张" in str(p) for p in payloads)

    with time_machine.travel(at(2028, 1, 10), tick=False):  # next year's campaign
        assert send_warmth_campaign(bot) == 3
    assert "2028年春节（1月26日）" in warmth_pushes(bot, late)[0]


def setup_list(bot, chat_with, people):  # noqa: F811
    run_to(bot, chat_with, people, until="decided")
    add_member(bot, "=HYPERLINK(\"x\")", retired=True, branch="@退休分会", group="+组")


def test_console_page_and_xlsx_for_reviewers_only(bot, client, chat_with, people):  # noqa: F811
    setup_list(bot, chat_with, people)
    add_staff(bot, "rev", role="hardship_reviewer")
    login(client, "rev")
    assert "送温暖名单" in client.get("/admin/care/").get_data(as_text=True)
    page = client.get("/admin/care/warmth?year=2027").get_data(as_text=True)
    assert "王芳" in page and "困难职工（大病）" in page and "退休职工" in page and "李同事" not in page
    assert "2027年春节（2月6日）" in page
    before = bot.clock.local_now().strftime("%Y-%m-%d %H:%M")
    r = client.get("/admin/care/warmth.xlsx?year=2027")
    after = bot.clock.local_now().strftime("%Y-%m-%d %H:%M")
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.data))["送温暖名单"]
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    heads = [[v for v in row if v is not None] for row in rows[:3]]
    assert ["导出人", "rev干事（console:rev）"] in heads
    assert ["导出时间", before] in heads or ["导出时间", after] in heads
    names = [row[2] for row in rows[5:] if row and row[2]]
    assert "王芳" in names and "'=HYPERLINK(\"x\")" in names
    for row in rows:
        for v in row:
            assert not (isinstance(v, str) and v[:1] in "=+-@"), v
    with bot.db.Session() as s:
        got = [(r.actor_label, r.action, r.detail) for r in s.scalars(
            select(AuditLog).where(AuditLog.subject == "record").order_by(AuditLog.id))]  # fmt: skip
    assert got == [("console:rev", "view", "warmth list 2027: 2 members"),
                   ("console:rev", "export", "warmth xlsx 2027: 2 members")]  # fmt: skip


def test_console_warmth_list_refused_to_everyone_else(bot, client, chat_with, people):  # noqa: F811
    setup_list(bot, chat_with, people)
    for username, role in (("clerk1", "clerk"), ("bc", "branch_chair"), ("root", "admin")):
        add_staff(bot, username, role=role)
        c = client.application.test_client()
        login(c, username)
        assert "送温暖名单" not in c.get("/admin/care/").get_data(as_text=True), role
        assert c.get("/admin/care/warmth").status_code == 403, role
        assert c.get("/admin/care/warmth.xlsx").status_code == 403, role
