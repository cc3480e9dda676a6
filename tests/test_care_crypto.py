"""Encryption at rest: the database file never holds the plaintext; key rotation; nothing sensitive in logs."""

from __future__ import annotations

import json
import logging
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, text

from models import crypto
from models.care import CareEvent, HardshipCase, submit_case
from models.member import Member
from tests.conftest import add_member

STORY = "肾移植术后排异反应住院欠费四万七千元"
HOUSEHOLD = "妻子下岗独自抚养双胞胎"
CONTACT = "联系电话一三九零零零零八八八八"


def db_bytes(bot) -> bytes:
    """Everything SQLite has on disk for this database, after a full checkpoint."""
    bot.db.engine.dispose()  # no open connections: the checkpoint can fold the WAL back
    path = Path(bot.db.url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    data = path.read_bytes()
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        if extra.exists():
            data += extra.read_bytes()
    return data


def holds(data: bytes, secret: str) -> bool:
    """Whether the bytes hold the secret as UTF-8 text or as the \\u-escaped form JSON columns use."""
    return secret.encode() in data or json.dumps(secret)[1:-1].encode() in data


def make_case(bot, story=STORY, amount=Decimal("47000")):
    crypto.configure(bot.settings)
    m = add_member(bot, "王芳")
    with bot.db.transaction() as s:
        c = submit_case(
            s, member=s.get(Member, m.id), reported_by=s.get(Member, m.id), type="大病", story=story,
            household=HOUSEHOLD, help_kinds=["资金补助"], help_details="手术费缺口", contact=CONTACT,
            now=bot.clock.now(), year=2027,
        )  # fmt: skip
        c.aid_amount = amount
        return c.id


def test_database_file_does_not_contain_the_plaintext(bot):
    case_id = make_case(bot)
    with bot.db.Session() as s:
        raw = s.execute(
            text("SELECT story, aid_amount FROM hardship_case WHERE id = :i"), {"i": case_id}
        ).one()
        case = s.get(HardshipCase, case_id)
        assert case.story == STORY and case.aid_amount == Decimal("47000") and case.contact == CONTACT
    assert raw[0].startswith("gAAAA") and raw[1].startswith("gAAAA")  # Fernet tokens
    data = db_bytes(bot)
    assert "王芳".encode() in data  # the file is readable as such: names are plain, content is not
    for secret in (STORY, HOUSEHOLD, CONTACT, "手术费缺口", "47000"):
        assert not holds(data, secret), secret


def test_a_full_chat_case_leaves_no_plaintext_on_disk(bot, chat_with):
    from handlers.care import scrub_sensitive_replies

    member = add_member(bot, "王芳")
    bchair = add_member(bot, "陈主席", roles=["branch_chair"])
    reviewer = add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="办公室", group="办")
    leader = add_member(bot, "刘组长", roles=["group_leader"])
    chat = chat_with(member)
    chat_with(leader)
    chat.ask("困难申报")
    chat.ask("1")
    chat.ask(STORY)
    chat.ask(HOUSEHOLD)
    chat.ask("1 手术费缺口")
    preview = chat.ask(CONTACT)
    assert STORY in preview  # the member saw it to check it ...
    chat.ask("确认")
    with bot.db.Session() as s:
        n = s.scalar(select(HardshipCase)).number
    chat_with(bchair).ask(f"核实 {n} 家访 今天 邻里反映属实债务沉重")
    assert STORY in chat_with(reviewer).ask(f"查看 {n}")
    chat_with(reviewer).ask(f"审批 {n} 同意 慰问金 4700")
    chat_with(member).ask("报告 住院 我 器官移植科 三十八床")
    assert holds(db_bytes(bot), STORY)  # the delivered preview still holds it: the check can see plaintext
    assert scrub_sensitive_replies(bot) > 0  # the scheduler's job: delivered copies are blanked
    data = db_bytes(bot)
    for secret in (STORY, HOUSEHOLD, CONTACT, "手术费缺口", "邻里反映属实债务沉重", "器官移植科"):
        assert not holds(data, secret), secret  # ... but nothing is left on disk


def test_rotation_moves_everything_to_the_new_key(bot):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    crypto.use_keys(old)
    try:
        add_member(bot, "王芳")
        with bot.db.transaction() as s:
            m = s.scalar(select(Member))
            c = submit_case(
                s, member=m, reported_by=m, type="大病", story=STORY, household=None, help_kinds=[],
                help_details=None, contact=CONTACT, now=bot.clock.now(), year=2027,
            )  # fmt: skip
            s.add(CareEvent(type="hospital", member_id=m.id, details="心内科 12床", due_on=bot.clock.today(),
                            amount=Decimal("500")))  # fmt: skip
            case_id = c.id
        crypto.use_keys(new, old)  # DATA_KEY=new, DATA_KEY_OLD=old: both readable
        with bot.db.transaction() as s:
            assert s.get(HardshipCase, case_id).story == STORY
            counts = crypto.rotate(s)
        assert counts["hardship_case.story"] == (1, 1) and counts["care_event.amount"] == (1, 1)
        assert sum(c for c, _ in counts.values()) >= 5  # story, contact, the event's message, details, amount
        with bot.db.transaction() as s:
            assert (
                sum(c for c, _ in crypto.rotate(s).values()) == 0
            )  # already under the new key: nothing to do
        crypto.use_keys(new)  # the old key is gone
        with bot.db.Session() as s:
            case = s.get(HardshipCase, case_id)
            assert case.story == STORY and case.contact == CONTACT
            assert s.scalar(select(CareEvent)).amount == Decimal("500")
        crypto.use_keys(old)
        with bot.db.Session() as s, pytest.raises(crypto.DataKeyError) as err:
            s.get(HardshipCase, case_id).story  # noqa: B018
        assert STORY not in str(err.value)
    finally:
        crypto.configure(bot.settings)


def test_keys_from_settings(bot):
    from config import load_settings

    dev = load_settings({"APP_ENV": "test", "SECRET_KEY": "abc"})
    assert crypto.keys_from_settings(dev) == [crypto.derive_dev_key("abc")]
    assert crypto.derive_dev_key("abc") == crypto.derive_dev_key("abc") != crypto.derive_dev_key("abd")
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    both = load_settings({"APP_ENV": "test", "DATA_KEY": k1, "DATA_KEY_OLD": k2})
    assert crypto.keys_from_settings(both) == [k1, k2]
    from config import ConfigError

    with pytest.raises(ConfigError, match="DATA_KEY"):
        load_settings({"APP_ENV": "production", "SECRET_KEY": "x" * 40, "SANDBOX_ENABLED": False})


def test_app_with_a_data_key(tmp_path):
    from tests.conftest import make_app

    key = Fernet.generate_key().decode()
    app = make_app(f"sqlite:///{tmp_path / 'k.db'}", DATA_KEY=key)
    bot = app.extensions["bot"]
    try:
        crypto.configure(bot.settings)
        case_id = make_case(bot)
        with bot.db.Session() as s:
            token = s.execute(text("SELECT story FROM hardship_case WHERE id=:i"), {"i": case_id}).scalar()
        assert Fernet(key.encode()).decrypt(token.encode()).decode() == STORY
    finally:
        app.extensions["db"].dispose()


def test_no_sensitive_text_in_application_logs(bot, chat_with, caplog):
    from tests.test_care import submit_case as chat_submit

    caplog.set_level(logging.DEBUG)
    member = add_member(bot, "王芳")
    chat_with(add_member(bot, "陈主席", roles=["branch_chair"]))
    reviewer = add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="办公室", group="办")
    chat_submit(chat_with(member), story=STORY)
    with bot.db.Session() as s:
        n = s.scalar(select(HardshipCase)).number
    chat_with(add_member(bot, "陈二主席", roles=["branch_chair"])).ask(f"核实 {n} 家访 今天 邻里反映属实")
    chat_with(reviewer).ask(f"审批 {n} 同意 慰问金 2000")
    chat_with(reviewer).ask(f"审批 {n} 不同意 {STORY}")  # a step that fails
    chat_with(member).ask("报告 住院 我 器官移植科")
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (STORY, "邻里反映属实", "器官移植科", "13800001234"):
        assert secret not in logged


def test_rotate_key_command(tmp_path):
    """Encrypt with key A; set DATA_KEY=B, DATA_KEY_OLD=A and run the command; drop A: everything still opens."""
    from tests.conftest import make_app

    a, b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'rot.db'}"
    apps = []
    try:
        app_a = make_app(url, DATA_KEY=a)
        apps.append(app_a)
        bot_a = app_a.extensions["bot"]
        crypto.configure(bot_a.settings)
        case_id = make_case(bot_a)
        with bot_a.db.transaction() as s:
            m = s.scalar(select(Member))
            s.add(CareEvent(type="hospital", member_id=m.id, details="心内科 12床", due_on=bot_a.clock.today(),
                            amount=Decimal("500"), gift="果篮"))  # fmt: skip

        app_ab = make_app(url, DATA_KEY=b, DATA_KEY_OLD=a)
        apps.append(app_ab)
        out = app_ab.test_cli_runner().invoke(args=["care", "rotate-key"])
        assert out.exit_code == 0, out.output
        assert (
            "hardship_case.story: 重新加密 1 / 1" in out.output
            and "care_event.amount: 重新加密 1 / 1" in out.output
        )
        assert STORY not in out.output
        again = app_ab.test_cli_runner().invoke(args=["care", "rotate-key"])
        assert (
            again.exit_code == 0
            and "重新加密 0 个" in again.output
            and "可以移除 DATA_KEY_OLD" in again.output
        )

        app_b = make_app(url, DATA_KEY=b)  # the old key is gone
        apps.append(app_b)
        crypto.configure(app_b.extensions["bot"].settings)
        with app_b.extensions["db"].Session() as s:
            case = s.get(HardshipCase, case_id)
            assert case.story == STORY and case.household == HOUSEHOLD and case.contact == CONTACT
            assert case.aid_amount == Decimal("47000") and [e.message for e in case.events][0]
            ev = s.scalar(select(CareEvent))
            assert ev.details == "心内科 12床" and ev.amount == Decimal("500")
            token = s.execute(text("SELECT story FROM hardship_case WHERE id=:i"), {"i": case_id}).scalar()
        with pytest.raises(InvalidToken):
            Fernet(a.encode()).decrypt(token.encode())  # really rewritten, not just readable through A

        # a database under a key the command is not given: it refuses and changes nothing
        app_c = make_app(url, DATA_KEY=Fernet.generate_key().decode())
        apps.append(app_c)
        refused = app_c.test_cli_runner().invoke(args=["care", "rotate-key"])
        assert refused.exit_code != 0 and "DATA_KEY_OLD" in refused.output and STORY not in refused.output
        with app_c.extensions["db"].Session() as s:
            assert (
                s.execute(text("SELECT story FROM hardship_case WHERE id=:i"), {"i": case_id}).scalar()
                == token
            )
    finally:
        for app in apps:
            app.extensions["db"].dispose()
        crypto.use_keys(crypto.derive_dev_key("test-secret"))


def queue_sensitive(bot, member, text_: str, key: str) -> int:
    """A sensitive private message waiting in the outbox (as a care notice would be)."""
    from bot.message import Text
    from models.messaging import OutboxMessage

    with bot.db.transaction() as s:
        assert bot.notify_member(s, s.get(Member, member.id), Text(text_), key, sensitive=True)
        return s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))


def test_a_queued_sensitive_message_is_sealed_until_it_is_sent(bot, chat_with):
    from bot import outbox

    member = add_member(bot, "王芳")
    chat = chat_with(member)
    row_id = queue_sensitive(bot, member, f"您的申请已受理：{STORY}", "care:test:1")
    with bot.db.Session() as s:
        raw = s.execute(text("SELECT payload FROM outbox_message WHERE id = :i"), {"i": row_id}).scalar()
    assert set(json.loads(raw)) == {"sealed"}
    assert not holds(db_bytes(bot), STORY)  # waiting (platform down, a rate limit): no plaintext on disk
    assert outbox.drain(bot) == 1
    assert STORY in chat.inbox()[-1]["text"]  # the platform got the message itself


def test_rotation_reseals_queued_messages_and_an_unreadable_one_is_given_up(bot, chat_with):
    from bot import outbox
    from models.messaging import OutboxMessage

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    member = add_member(bot, "王芳")
    chat = chat_with(member)
    crypto.use_keys(old)
    try:
        queue_sensitive(bot, member, f"慰问：{STORY}", "care:test:rotate")
        lost = queue_sensitive(bot, member, "另一条", "care:test:lost")
        crypto.use_keys(new, old)
        with bot.db.transaction() as s:
            assert crypto.rotate(s)["outbox_message.payload"] == (2, 2)
            # the second message was sealed with a key nobody has any more (e.g. restored from an old backup)
            s.execute(text("UPDATE outbox_message SET payload = :p WHERE id = :i"),
                      {"p": json.dumps({"sealed": Fernet(old.encode()).encrypt(b"{}").decode()}), "i": lost})  # fmt: skip
        crypto.use_keys(new)  # the old key is gone: the re-sealed message still opens
        assert outbox.drain(bot) == 1
        assert STORY in chat.inbox()[-1]["text"]
        with bot.db.Session() as s:
            row = s.get(OutboxMessage, lost)
            assert row.status == "dead" and "data_key" in row.last_error  # given up, with the reason code
    finally:
        crypto.configure(bot.settings)
