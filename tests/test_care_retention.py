"""Retention: anonymising old cases and care events also cuts the member out of the audit log and the outbox,
finishes stale open care tasks, wipes every personal column, and follows HARDSHIP_RETENTION_YEARS."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from handlers.care import anonymise_closed_cases
from models import crypto
from models.care import ANON_MEMBER, AuditLog, CareEvent, HardshipCase
from models.messaging import OutboxMessage
from tests.conftest import add_member, make_app
from tests.test_admin import add_staff, login
from tests.test_care import care_events, people, run_to  # noqa: F401  (people is a fixture)

FIVE_YEARS = timedelta(days=365 * 5 + 2)


def case_world(bot, chat_with, people):  # noqa: F811
    """A closed case of 王芳 (she viewed it herself), her own hospital stay (visited, with a gift) and a wedding a
    colleague reported for her that nobody visited."""
    n, _ = run_to(bot, chat_with, people)
    me = chat_with(people["member"])
    me.ask("我的申请")
    me.ask("我住院了 心内科12床")
    hospital = care_events(bot)[-1]
    chat_with(people["leader"]).ask(f"探望 {hospital.id} 今天 刘组长 果篮 500")
    chat_with(people["colleague"]).ask("报告 结婚 王芳")
    wedding = care_events(bot)[-1]
    with bot.db.Session() as s:
        case_id = s.scalar(select(HardshipCase.id))
    return n, case_id, hospital.id, wedding.id


def test_anonymising_cuts_the_member_out_of_the_audit_log(bot, client, chat_with, people):  # noqa: F811
    n, case_id, hospital_id, wedding_id = case_world(bot, chat_with, people)
    wang = people["member"].id
    add_staff(bot, "boss", role="chair")
    login(client, "boss")
    before = client.get("/admin/care/audit").get_data(as_text=True)
    assert "王芳" in before and n in before  # the link the retention job must cut
    with bot.db.Session() as s:
        rows_before = s.scalars(select(AuditLog)).all()
    count_before = len(rows_before)
    staff_rows = [(r.actor_label, r.action, r.detail) for r in rows_before if r.actor_id != wang]

    assert anonymise_closed_cases(bot, bot.clock.now() + FIVE_YEARS) == 3  # the case and both care events

    after = client.get("/admin/care/audit").get_data(as_text=True)
    assert "王芳" not in after
    assert n in after and ANON_MEMBER in after
    assert "陈主席" in after and "赵审核" in after  # staff actors stay
    with bot.db.Session() as s:
        rows = s.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert len(rows) == count_before + 3  # nothing deleted: the counts stay; one row per anonymisation
    assert not any(r.actor_id == wang or "王芳" in r.actor_label or "王芳" in r.detail for r in rows)
    own = [r for r in rows if r.actor_label == ANON_MEMBER]
    assert {(r.action, r.case_id) for r in own} >= {("change", case_id), ("view", case_id), ("change", None)}
    assert all(r.detail == "（已匿名）" for r in own)
    kept = [(r.actor_label, r.action, r.detail) for r in rows[:count_before] if r.actor_label != ANON_MEMBER]
    assert kept == staff_rows
    # the outbox copies of the pushes (keyed by case and member) are gone too
    with bot.db.Session() as s:
        keys = list(s.scalars(select(OutboxMessage.idempotency_key)))
    assert not any(k.startswith((f"hardship:{case_id}:", f"care:{hospital_id}:", f"care:{wedding_id}:")) for k in keys)


def test_old_care_events_are_anonymised_open_or_done_with_every_personal_column(bot, chat_with, people):  # noqa: F811
    _, _, hospital_id, wedding_id = case_world(bot, chat_with, people)
    now = bot.clock.now()
    assert anonymise_closed_cases(bot, now + timedelta(days=365 * 5 - 5)) == 0  # not yet
    crypto.configure(bot.settings)
    with bot.db.Session() as s:
        hospital, wedding = s.get(CareEvent, hospital_id), s.get(CareEvent, wedding_id)
        assert hospital.gift == "果篮" and wedding.status == "open"
    assert anonymise_closed_cases(bot, now + FIVE_YEARS) == 3
    with bot.db.Session() as s:
        hospital, wedding = s.get(CareEvent, hospital_id), s.get(CareEvent, wedding_id)
        for ev in (hospital, wedding):
            assert ev.anonymised_at is not None and ev.member_id is None and ev.reported_by_id is None
            assert ev.details is None and ev.visitors is None and ev.gift is None and ev.visit_note is None
        assert hospital.status == "done" and hospital.amount == Decimal("500")  # statistics keep the amount
        assert wedding.status == "expired"  # finished without a visit: no more reminders, off the task list
    assert "没有待办" in chat_with(people["leader"]).ask("关怀任务")
    assert anonymise_closed_cases(bot, now + FIVE_YEARS + timedelta(days=1)) == 0  # once


def test_retention_years_come_from_the_settings(tmp_path, chat_with):
    from tests.conftest import Chat

    app = make_app(f"sqlite:///{tmp_path / 'r.db'}", HARDSHIP_RETENTION_YEARS=2)
    bot = app.extensions["bot"]
    try:
        member = add_member(bot, "王芳")
        leader = add_member(bot, "刘组长", roles=["group_leader"])
        Chat(bot, leader)
        Chat(bot, member).ask("我住院了")
        now = bot.clock.now()
        assert anonymise_closed_cases(bot, now + timedelta(days=365 * 2 - 3)) == 0
        assert anonymise_closed_cases(bot, now + timedelta(days=365 * 2 + 2)) == 1  # 2 years, not the default 5
    finally:
        app.extensions["db"].dispose()


@pytest.mark.parametrize("value", ["0", "-3", "五"])
def test_retention_and_follow_up_settings_must_be_positive(value):
    from config import ConfigError, load_settings

    for name in ("HARDSHIP_RETENTION_YEARS", "HARDSHIP_FOLLOW_UP_DAYS"):
        with pytest.raises(ConfigError, match=name):
            load_settings({"APP_ENV": "test", name: value})
    assert load_settings({"APP_ENV": "test", "HARDSHIP_RETENTION_YEARS": "7"}).HARDSHIP_RETENTION_YEARS == 7
