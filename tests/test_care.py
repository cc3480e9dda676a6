"""Hardship reports and care events: dialog, group refusal, proxy, workflow + notifications, jobs, export."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from models.care import AuditLog, CareEvent, CaseEvent, HardshipCase, HardshipRecord
from models.messaging import InboundMessage, OutboxMessage

STORY = "我母亲突发脑梗住进重症监护室手术费还差三万元"


def texts_to(bot, member) -> list[str]:
    """Private pushes queued for a member (any status), oldest first."""
    with bot.db.Session() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.member_id == member.id).order_by(OutboxMessage.id)
        )
        return [r.payload.get("text") or r.payload.get("title", "") for r in rows]


def load_case(bot, number=None) -> HardshipCase:
    from models import crypto

    crypto.configure(bot.settings)
    with bot.db.Session() as s:
        q = select(HardshipCase).order_by(HardshipCase.id.desc())
        c = s.scalar(q)
        c.events  # noqa: B018  load
        return c


@pytest.fixture
def people(bot, chat_with):
    from tests.conftest import add_member

    found = {
        "member": add_member(bot, "王芳"),
        "leader": add_member(bot, "刘组长", roles=["group_leader"]),
        "bchair": add_member(bot, "陈主席", roles=["branch_chair"]),
        "other_bchair": add_member(bot, "周分会", roles=["branch_chair"], branch="外科分会", group="骨科小组"),
        "reviewer": add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="工会办公室", group="办公室"),
        "clerk": add_member(bot, "孙干事", roles=["clerk"], branch="工会办公室", group="办公室"),
        "colleague": add_member(bot, "李同事"),
    }
    for m in found.values():
        chat_with(m)  # link a sandbox identity so pushes can reach them
    return found


def submit_case(chat, story=STORY):
    chat.ask("困难申报")
    chat.ask("1")
    chat.ask(story)
    chat.ask("家里4口人，爱人务农")
    chat.ask("1 3 手术费缺口大")
    preview = chat.ask("13800001234 晚上方便")
    receipt = chat.ask("确认")
    return preview, receipt


def test_dialog_submits_a_case_with_receipt(bot, chat_with, people):
    chat = chat_with(people["member"])
    preview, receipt = submit_case(chat)
    assert STORY in preview and "确认" in preview
    assert "KN" in receipt and "我的申请" in receipt
    c = load_case(bot)
    assert c.number in receipt
    assert c.type == "大病" and c.story == STORY and c.status == "submitted"
    assert c.help_kinds == "资金补助,医疗互助理赔协助" and c.help_details == "手术费缺口大"
    assert c.household == "家里4口人,爱人务农"
    # the branch chair is asked to verify, without the story in the push
    pushes = texts_to(bot, people["bchair"])
    assert any(c.number in t and "核实" in t for t in pushes)
    assert not any(STORY in t for t in pushes)
