"""Birthday and festival greetings on a travelled clock: rules, audiences, opt-out, milestones, catch-up."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from bot import outbox
from bot.message import payload_to_outgoing
from handlers.greetings import parse_lunar, preview_greetings, run_greetings
from models.greeting import Festival, GreetingConfig, GreetingRun, delivery_report
from models.member import Member, link_identity
from models.messaging import Chat, OutboxMessage
from tests.conftest import Chat as SandboxUser
from tests.conftest import add_member

SH = ZoneInfo("Asia/Shanghai")


def at(y, m, d, h=9, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SH)


def person(bot, name, **kw) -> Member:
    m = add_member(bot, name=name, **kw)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "sandbox", f"sb-{m.id}")
    return m


def run(bot, when):
    with time_machine.travel(when, tick=False):
        return run_greetings(bot, bot.clock.now())


def rows(bot, prefix=""):
    with bot.db.Session() as s:
        return list(
            s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.idempotency_key.like(prefix + "%"))
                .order_by(OutboxMessage.id)
            )
        )


def keys(bot, prefix=""):
    return [r.idempotency_key for r in rows(bot, prefix)]


def texts_to(bot, member, prefix="birthday:"):
    return [r.payload["text"] for r in rows(bot, prefix) if r.member_id == member.id]


def set_config(bot, **values):
    with bot.db.transaction() as s:
        from models.greeting import config

        cfg = config(s)
        for k, v in values.items():
            setattr(cfg, k, v)


@pytest.fixture
def any_bot(any_app):
    """SQLite, and PostgreSQL too when TEST_POSTGRES_URL is set (extract(), ON CONFLICT, rowcount)."""
    return any_app.extensions["bot"]


# birthdays -----------------------------------------------------------------------------------------------------
def test_solar_birthday_at_send_time_once(bot):
    m = person(bot, "王芳", birthday=date(1985, 6, 1))
    run(bot, at(2026, 6, 1, 8, 59))
    assert keys(bot, "birthday:") == []
    run(bot, at(2026, 6, 1, 9, 0))
    run(bot, at(2026, 6, 1, 9, 1))
    run(bot, at(2026, 6, 1, 15, 0))
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2026-06-01"]
    (text,) = texts_to(bot, m)
    assert "王芳" in text and "生日快乐" in text and "41" not in text


def test_configurable_send_time(bot):
    person(bot, "赵一", birthday=date(1985, 6, 1))
    set_config(bot, send_time="07:30")
    run(bot, at(2026, 6, 1, 7, 29))
    assert not keys(bot, "birthday:")
    run(bot, at(2026, 6, 1, 7, 30))
    assert len(keys(bot, "birthday:")) == 1


def test_catch_up_after_downtime_sends_once_same_day_only(bot):
    a = person(bot, "甲", birthday=date(1990, 3, 3))
    b = person(bot, "乙", birthday=date(1990, 3, 4))
    # down from 08:00 until 14:30 on 3-3: the first run after start-up still sends, once
    run(bot, at(2026, 3, 3, 14, 30))
    run(bot, at(2026, 3, 3, 14, 31))
    assert keys(bot, "birthday:") == [f"birthday:{a.id}:2026-03-03"]
    # down all day on 3-4 until 20:00: too late, and never sent on 3-5
    run(bot, at(2026, 3, 4, 20, 0))
    run(bot, at(2026, 3, 5, 9, 0))
    assert f"birthday:{b.id}:2026-03-04" not in keys(bot, "birthday:")


def test_lunar_day_30_birthday_in_a_29_day_layue(any_bot):
    bot = any_bot
    m = person(bot, "腊月", birthday=date(1986, 2, 8), birthday_is_lunar=True, lunar_birth_month=12,
               lunar_birth_day=30)  # fmt: skip
    run(bot, at(2026, 2, 15))
    assert not keys(bot, "birthday:")
    run(bot, at(2026, 2, 16))  # 除夕 2026 = 腊月廿九 (腊月 has 29 days)
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2026-02-16"]
    run(bot, at(2026, 2, 17))
    assert len(keys(bot, "birthday:")) == 1


def test_lunar_leap_month_birthday_in_ordinary_month(bot):
    m = person(bot, "闰月", birthday=date(2000, 4, 5), birthday_is_lunar=True, lunar_birth_month=2,
               lunar_birth_day=15, lunar_birth_leap=True)  # fmt: skip
    run(bot, at(2026, 4, 2))  # lunar 2026 2/15 = 2026-04-02
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2026-04-02"]


def test_lunar_birthday_in_leap_year_2025_not_twice(bot):
    m = person(bot, "六月", birthday=date(1990, 7, 7), birthday_is_lunar=True, lunar_birth_month=6,
               lunar_birth_day=15)  # fmt: skip
    run(bot, at(2025, 7, 9))  # ordinary 六月十五
    run(bot, at(2025, 8, 8))  # 闰六月十五: no second greeting
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2025-07-09"]


def test_feb_29_on_feb_28_in_common_years(any_bot):
    bot = any_bot
    m = person(bot, "闰日", birthday=date(1996, 2, 29))
    run(bot, at(2026, 2, 28))
    run(bot, at(2026, 3, 1))
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2026-02-28"]


def test_opt_out_inactive_and_retirees(any_bot):
    bot = any_bot
    a = person(bot, "退休", birthday=date(1950, 9, 9), retired=True)
    b = person(bot, "不要", birthday=date(1980, 9, 9), greeting_opt_out=True)
    c = person(bot, "离职", birthday=date(1980, 9, 9), active=False)
    run(bot, at(2026, 9, 9))
    assert keys(bot, "birthday:") == [f"birthday:{a.id}:2026-09-09"]
    assert not texts_to(bot, b, "") and not texts_to(bot, c, "")
    with bot.db.Session() as s:
        log = s.scalar(select(GreetingRun).where(GreetingRun.kind == "birthday"))
        report = delivery_report(s, log)
    assert report["queued"] == 1 and report["skipped_opt_out"] == 1 and report["pending"] == 1


def test_delivery_report_of_every_run_kind_counts_its_own_messages(bot):
    person(bot, "主席", roles=["branch_chair"], birthday=None)
    person(bot, "组长", roles=["group_leader"], birthday=None)
    person(bot, "干事", roles=["clerk"], birthday=None)
    person(bot, "整十", birthday=date(1986, 7, 26))
    person(bot, "八月", birthday=date(1990, 8, 3))
    set_config(bot, leader_note=True)
    run(bot, at(2026, 7, 25))  # notice for tomorrow's milestone + the monthly list
    run(bot, at(2026, 7, 26))  # the birthday and the leader's note
    with bot.db.Session() as s:
        got = {(r.kind, r.day.isoformat()): delivery_report(s, r) for r in s.scalars(select(GreetingRun))}
    for kind, day in (("milestone_notice", "2026-07-26"), ("monthly_list", "2026-08-01"),
                      ("leader_note", "2026-07-26"), ("birthday", "2026-07-26")):  # fmt: skip
        sent = 2 if kind == "monthly_list" else 1  # the list's text, then its .xlsx as a file
        assert (got[kind, day]["queued"], got[kind, day]["pending"]) == (sent, sent), kind


def test_unreachable_member_is_counted(bot):
    add_member(bot, name="没绑定", birthday=date(1980, 9, 9))
    run(bot, at(2026, 9, 9))
    with bot.db.Session() as s:
        assert s.scalar(select(GreetingRun.unreachable)) == 1


def test_milestone_birthday_template_and_day_ahead_notice_to_branch_chair(any_bot):
    bot = any_bot
    chair = person(bot, "主席", roles=["branch_chair"], birthday=date(1970, 1, 1))
    other_chair = person(bot, "别的主席", roles=["branch_chair"], branch="外科分会", group="外科小组")
    m = person(bot, "整十", birthday=date(1986, 6, 2))
    plain = person(bot, "普通", birthday=date(1987, 6, 2))
    run(bot, at(2026, 6, 1, 8, 0))
    assert not keys(bot, "milestone_notice:")
    run(bot, at(2026, 6, 1, 9, 0))
    (notice,) = rows(bot, "milestone_notice:")
    assert notice.member_id == chair.id
    assert "整十" in notice.payload["text"] and "6月2日" in notice.payload["text"]
    assert "40" not in notice.payload["text"]
    assert not texts_to(bot, other_chair, "milestone_notice:")
    run(bot, at(2026, 6, 2, 9, 0))
    assert len(rows(bot, "milestone_notice:")) == 1  # not repeated on the day
    (mt,) = texts_to(bot, m)
    (pt,) = texts_to(bot, plain)
    assert mt != pt and "特别的生日" in mt and "40" not in mt


def test_milestone_notice_made_up_on_the_day_after_downtime(bot):
    chair = person(bot, "主席", roles=["branch_chair"])
    person(bot, "整十", birthday=date(1996, 6, 2))
    run(bot, at(2026, 6, 2, 10, 0))  # the scheduler was down all of 6-1
    assert [r.member_id for r in rows(bot, "milestone_notice:")] == [chair.id]


def test_milestone_notice_a_day_before_a_shifted_greeting(bot):
    chair = person(bot, "主席", roles=["branch_chair"], birthday=None)
    sunday = person(bot, "周日", birthday=date(1986, 6, 7))  # 2026-06-07 is a Sunday: greeted Friday 6-5
    monday = person(bot, "周一", birthday=date(1976, 6, 8))  # greeted on Monday 6-8 itself
    set_config(bot, birthday_shift_to_workday=True)
    run(bot, at(2026, 6, 3))
    run(bot, at(2026, 6, 4, 8, 59))
    assert not rows(bot, "milestone_notice:")
    run(bot, at(2026, 6, 4))  # Thursday: the day before Friday's greeting
    (notice,) = rows(bot, "milestone_notice:")
    assert notice.member_id == chair.id and "周日" in notice.payload["text"]
    assert "6月7日" in notice.payload["text"]  # the real birthday
    assert not keys(bot, "birthday:")
    run(bot, at(2026, 6, 5))  # Friday: Sunday's greeting, and Monday's notice (the chair's last working day)
    assert keys(bot, "birthday:") == [f"birthday:{sunday.id}:2026-06-07"]
    notices = rows(bot, "milestone_notice:")
    assert [n.idempotency_key for n in notices] == [
        f"milestone_notice:{sunday.id}:2026-06-07:{chair.id}",
        f"milestone_notice:{monday.id}:2026-06-08:{chair.id}",
    ]
    for day in (6, 7, 8):
        run(bot, at(2026, 6, day))
    assert len(rows(bot, "milestone_notice:")) == 2
    assert keys(bot, "birthday:")[-1] == f"birthday:{monday.id}:2026-06-08"


def test_shifted_milestone_notice_made_up_before_the_greeting_after_downtime(bot):
    chair = person(bot, "主席", roles=["branch_chair"], birthday=None)
    person(bot, "周日", birthday=date(1986, 6, 7))
    set_config(bot, birthday_shift_to_workday=True)
    run(bot, at(2026, 6, 5, 10))  # down all Thursday: made up on Friday with the greeting
    assert [r.member_id for r in rows(bot, "milestone_notice:")] == [chair.id]
    run(bot, at(2026, 6, 6, 10))  # and never again on the weekend
    assert len(rows(bot, "milestone_notice:")) == 1


def test_birthday_on_weekend_moved_to_last_workday(bot):
    m = person(bot, "周六", birthday=date(1990, 6, 6))  # 2026-06-06 is a Saturday
    set_config(bot, birthday_shift_to_workday=True)
    run(bot, at(2026, 6, 5))
    assert keys(bot, "birthday:") == [f"birthday:{m.id}:2026-06-06"]
    run(bot, at(2026, 6, 6))
    assert len(keys(bot, "birthday:")) == 1


# festivals -----------------------------------------------------------------------------------------------------
def test_festival_audiences(any_bot):
    bot = any_bot
    woman = person(bot, "女护士", gender="女", job_title="护士", birthday=None)
    man = person(bot, "男医生", gender="男", job_title="主治医师", birthday=None)
    teacher = person(bot, "带教", gender="男", job_title="带教老师", birthday=None)
    retiree = person(bot, "老李", gender="男", retired=True, birthday=None)
    run(bot, at(2026, 3, 8))
    assert {r.member_id for r in rows(bot, "festival:funv:")} == {woman.id}
    run(bot, at(2026, 5, 12))
    assert {r.member_id for r in rows(bot, "festival:hushi:")} == {woman.id}
    run(bot, at(2026, 9, 10))
    assert {r.member_id for r in rows(bot, "festival:jiaoshi:")} == {teacher.id}
    run(bot, at(2026, 10, 18))  # 重阳 2026
    assert {r.member_id for r in rows(bot, "festival:chongyang:")} == {retiree.id}
    run(bot, at(2026, 9, 25))  # 中秋 2026: everyone
    got = rows(bot, "festival:zhongqiu:2026-09-25:")
    assert {r.member_id for r in got} == {woman.id, man.id, teacher.id, retiree.id}
    assert {r.payload["text"] for r in got} == {
        "中秋快乐！月圆人团圆，工会祝大家阖家幸福！"
    }  # one text for all
    run(bot, at(2026, 9, 25, 10))
    assert len(rows(bot, "festival:zhongqiu:")) == 4


def test_chuxi_group_post_in_29_day_year(bot):
    person(bot, "群主", birthday=None)
    with bot.db.transaction() as s:
        s.add(Chat(platform="sandbox", chat_id="sb-group-1", title="心内科群"))
        s.add(Chat(platform="wecom", chat_id="wc-1", title="no sender in tests"))
    run(bot, at(2026, 2, 15))
    assert not keys(bot, "festival:chuxi")
    run(bot, at(2026, 2, 16))
    (row,) = rows(bot, "festival:chuxi:2026-02-16:chat:")
    assert row.target_kind == "chat" and row.target_id == "sb-group-1" and "除夕" in row.payload["text"]


def test_staff_can_disable_edit_and_add_festivals(bot):
    a = person(bot, "甲", birthday=None)
    run(bot, at(2026, 1, 1, 8))  # seeds the table
    with bot.db.transaction() as s:
        s.scalar(select(Festival).where(Festival.code == "yuandan")).enabled = False
        s.scalar(select(Festival).where(Festival.code == "laodong")).template = "{name}，五一快乐！"
        s.add(Festival(code="laba", name="腊八节", rule="lunar:12-8", audience="all", delivery="private",
                       template="{name}，腊八节快乐！"))  # fmt: skip
    run(bot, at(2026, 1, 1, 10))
    assert not keys(bot, "festival:yuandan")
    run(bot, at(2026, 1, 26))  # 腊八 of lunar 2025
    assert texts_to(bot, a, "festival:") == ["甲，腊八节快乐！"]
    run(bot, at(2026, 5, 1))
    assert "甲，五一快乐！" in texts_to(bot, a, "festival:")


def set_festival(bot, code, **values):
    with bot.db.transaction() as s:
        from models.greeting import ensure_seeded

        ensure_seeded(s)
        f = s.scalar(select(Festival).where(Festival.code == code))
        for k, v in values.items():
            setattr(f, k, v)


def deliver(bot, when, platform=None):
    with time_machine.travel(when, tick=False):
        outbox.drain(bot, platform=platform)


def test_batching_never_reaches_a_platform_without_batch_send(any_bot):
    """Sandbox (and Feishu) senders know nothing of payload["batch"]: one row per member, and they see it."""
    bot = any_bot
    members = [add_member(bot, name=f"会员{i}", birthday=None) for i in range(3)]
    chats = [SandboxUser(bot, m) for m in members]  # binds each to their sandbox account
    set_config(bot, batch_private=True)
    set_festival(bot, "guoqing", template="国庆节快乐！")
    run(bot, at(2026, 10, 1))
    got = rows(bot, "festival:guoqing:")
    assert sorted(r.member_id for r in got) == sorted(m.id for m in members)
    assert all("batch" not in r.payload and not r.target_id.startswith("batch:") for r in got)
    deliver(bot, at(2026, 10, 1, 9, 1), "sandbox")
    for c in chats:
        assert [p["text"] for p in c.inbox()] == ["国庆节快乐！"]


@pytest.fixture
def fake_wecom():
    from tests.fake_wecom import FakeWeCom

    server = FakeWeCom().start()
    yield server
    server.stop()


@pytest.fixture
def wecom_bot(tmp_path, fake_wecom):
    from tests.conftest import make_app
    from tests.wecom_helpers import settings_for

    app = make_app(f"sqlite:///{tmp_path / 'wecom.db'}", **settings_for(fake_wecom))
    yield app.extensions["bot"]
    app.extensions["db"].dispose()


def test_out_of_the_box_general_festivals_are_batched_on_wecom(wecom_bot):
    """No console change: 元旦 and 国庆 have built-in texts without {name} and batching is on by default."""
    bot = wecom_bot
    for i in range(3):
        m = add_member(bot, name=f"企微{i}", birthday=None)
        with bot.db.transaction() as s:
            link_identity(s, s.get(Member, m.id), "wecom", f"wx{i}")
    for day, code in ((date(2026, 10, 1), "guoqing"), (date(2027, 1, 1), "yuandan")):
        run(bot, at(day.year, day.month, day.day))
        (batch,) = rows(bot, f"festival:{code}:")
        assert batch.target_id == "batch:3" and "{name}" not in batch.payload["text"]
    with bot.db.Session() as s:
        assert s.get(GreetingConfig, 1).batch_private is True


def test_wecom_festival_batch_rows_reach_wecom_as_one_call(wecom_bot, fake_wecom):
    bot = wecom_bot
    wecom = []
    for i in range(3):
        m = add_member(bot, name=f"企微{i}", birthday=None)
        with bot.db.transaction() as s:
            link_identity(s, s.get(Member, m.id), "wecom", f"wx{i}")
        wecom.append(m)
    sandbox_member = person(bot, "沙盒", birthday=None)
    set_config(bot, batch_private=True)
    set_festival(bot, "guoqing", template="国庆节快乐！")
    run(bot, at(2026, 10, 1))
    got = rows(bot, "festival:guoqing:")
    (batch,) = [r for r in got if r.platform == "wecom"]
    assert batch.target_kind == "user" and batch.target_id == "batch:3" and batch.member_id is None
    assert sorted(batch.payload["batch"]) == ["wx0", "wx1", "wx2"] and batch.payload["text"] == "国庆节快乐！"
    assert batch.idempotency_key == "festival:guoqing:2026-10-01:batch:wecom:0"
    (single,) = [r for r in got if r.platform == "sandbox"]
    assert single.member_id == sandbox_member.id and "batch" not in single.payload
    deliver(bot, at(2026, 10, 1, 9, 1))
    (call,) = fake_wecom.sent()
    assert sorted(call["touser"].split("|")) == ["wx0", "wx1", "wx2"]
    assert call["text"]["content"] == "国庆节快乐！"
    assert {r.status for r in rows(bot, "festival:guoqing:")} == {"sent"}
    # a personal template ({name}) is never batched: one call per member
    set_festival(bot, "chongyang", template="{name}，重阳节快乐！", audience="all")
    run(bot, at(2026, 10, 18))
    deliver(bot, at(2026, 10, 18, 9, 1))
    personal = [c for c in fake_wecom.sent() if "重阳" in c["text"]["content"]]
    assert sorted(c["touser"] for c in personal) == ["wx0", "wx1", "wx2"]
    assert "企微1，重阳节快乐！" in {c["text"]["content"] for c in personal}


def group_chats(bot):
    """Group chats of 心内科 (a woman nurse) and 骨科 (a man), one tied only to the 外科 branch, one to nothing."""
    from models.member import Branch, Group

    person(bot, "女护士", gender="女", job_title="护士", birthday=None)
    person(bot, "男医生", gender="男", job_title="医师", birthday=None, branch="外科分会", group="骨科小组")
    with bot.db.transaction() as s:
        heart = s.scalar(select(Group).where(Group.name == "心内科小组"))
        bone = s.scalar(select(Group).where(Group.name == "骨科小组"))
        surgery = s.scalar(select(Branch).where(Branch.name == "外科分会"))
        s.add_all([
            Chat(platform="sandbox", chat_id="g-heart", title="心内科群", group_id=heart.id),
            Chat(platform="sandbox", chat_id="g-bone", title="骨科群", group_id=bone.id),
            Chat(platform="sandbox", chat_id="b-surgery", title="外科分会群", branch_id=surgery.id),
            Chat(platform="sandbox", chat_id="all-hands", title="全院群"),
        ])  # fmt: skip


def posted_to(bot, prefix):
    return sorted(r.target_id for r in rows(bot, prefix) if r.target_kind == "chat")


def test_group_post_only_to_chats_of_the_audience(bot):
    group_chats(bot)
    set_festival(bot, "funv", delivery="group", template="三八节快乐！")
    set_festival(bot, "hushi", delivery="group", template="护士节快乐！")
    run(bot, at(2026, 3, 8))
    assert posted_to(bot, "festival:funv:") == ["g-heart"]  # the 骨科 group and 外科 branch have no women
    run(bot, at(2026, 5, 12))
    assert posted_to(bot, "festival:hushi:") == ["g-heart"]
    run(bot, at(2026, 2, 16))  # 除夕, everyone: every chat
    assert posted_to(bot, "festival:chuxi:") == ["all-hands", "b-surgery", "g-bone", "g-heart"]
    set_festival(bot, "guoqing", delivery="group", audience="women")
    with bot.db.transaction() as s:
        s.scalar(select(Member).where(Member.name == "男医生")).gender = "女"
    run(bot, at(2026, 10, 1))  # a branch-only chat gets it when the branch has an audience member
    assert posted_to(bot, "festival:guoqing:") == ["b-surgery", "g-bone", "g-heart"]


def test_both_delivery_private_and_group(bot):
    group_chats(bot)
    set_festival(bot, "funv", delivery="both")
    run(bot, at(2026, 3, 8))
    got = rows(bot, "festival:funv:")
    assert [r.payload["text"].split("，")[0] for r in got if r.target_kind == "user"] == ["女护士"]
    assert posted_to(bot, "festival:funv:") == ["g-heart"]
    chat_text = next(r.payload["text"] for r in got if r.target_kind == "chat")
    assert chat_text.startswith("各位会员，")
    with bot.db.Session() as s:
        report = delivery_report(s, s.scalar(select(GreetingRun).where(GreetingRun.occasion == "funv")))
    assert report["queued"] == 2 and report["pending"] == 2


def test_per_festival_shift_to_workday_and_send_time(bot):
    a = person(bot, "甲", birthday=None)
    # 国庆 2026-10-01 is a holiday: shifted to the last working day before (Wednesday 9-30)
    set_festival(bot, "guoqing", shift_to_workday=True)
    run(bot, at(2026, 9, 29))
    assert not keys(bot, "festival:guoqing:")
    run(bot, at(2026, 9, 30))
    assert keys(bot, "festival:guoqing:") == [f"festival:guoqing:2026-10-01:{a.id}"]  # keyed by the real day
    run(bot, at(2026, 10, 1))
    assert len(keys(bot, "festival:guoqing:")) == 1
    # 元旦 not shifted: on the day itself, a holiday; and at its own send time (07:30), not the general 09:00
    set_festival(bot, "yuandan", send_time="07:30")
    run(bot, at(2026, 12, 31))
    assert not keys(bot, "festival:yuandan:")
    run(bot, at(2027, 1, 1, 7, 29))
    assert not keys(bot, "festival:yuandan:")
    run(bot, at(2027, 1, 1, 7, 30))
    assert keys(bot, "festival:yuandan:") == [f"festival:yuandan:2027-01-01:{a.id}"]


def test_children_day_goes_to_parents_per_roster(any_bot):
    bot = any_bot
    parent = person(bot, "有娃", has_children=True, birthday=None)
    person(bot, "没娃", has_children=False, birthday=None)
    person(bot, "未填", birthday=None)  # unknown: not a parent for 六一
    person(bot, "离职有娃", has_children=True, active=False, birthday=None)
    run(bot, at(2026, 6, 1))
    assert [r.member_id for r in rows(bot, "festival:ertong:")] == [parent.id]


def test_children_day_not_sent_when_the_roster_does_not_say(bot):
    person(bot, "甲", birthday=None)
    person(bot, "乙", birthday=None)
    with bot.db.transaction() as s:
        s.add(Chat(platform="sandbox", chat_id="all-hands", title="全院群"))
    set_festival(bot, "ertong", delivery="both")
    plan = preview_greetings(bot, date(2026, 6, 1), date(2026, 6, 1))
    (p,) = [p for p in plan if p.kind == "节日祝福"]
    assert p.recipients == 0 and "不会发送" in p.what
    run(bot, at(2026, 6, 1))
    assert not keys(bot, "festival:ertong:")
    with bot.db.Session() as s:
        log = s.scalar(select(GreetingRun).where(GreetingRun.occasion == "ertong"))
    assert log.completed_at is not None and "有子女" in log.note


def test_roster_column_has_children(bot):
    from models.roster import import_roster

    data = "姓名,工号,有子女\n甲,E1,是\n乙,E2,无\n丙,E3,\n".encode()
    with bot.db.transaction() as s:
        report = import_roster(s, data, "roster.csv")
    assert report.ok, report.errors
    with bot.db.Session() as s:
        got = dict(s.execute(select(Member.employee_no, Member.has_children)).all())
    assert got == {"E1": True, "E2": False, "E3": None}
    with bot.db.transaction() as s:  # a blank cell leaves the known answer alone
        import_roster(s, "姓名,工号,有子女\n甲,E1,\n".encode(), "roster.csv")
    with bot.db.Session() as s:
        assert s.scalar(select(Member.has_children).where(Member.employee_no == "E1")) is True


def test_youth_day_goes_to_members_up_to_35(bot):
    young = person(bot, "青年", birthday=date(1992, 7, 1))  # 34 in 2026
    person(bot, "三十六", birthday=date(1990, 1, 1))
    person(bot, "退休", birthday=date(1995, 1, 1), retired=True)
    person(bot, "离职青年", birthday=date(2000, 1, 1), active=False)
    run(bot, at(2026, 5, 4))
    assert [r.member_id for r in rows(bot, "festival:qingnian:")] == [young.id]


def test_members_who_left_get_no_greeting_at_all(bot):
    chair = person(bot, "主席", roles=["branch_chair"], birthday=None)
    gone = person(bot, "离职", birthday=date(1986, 6, 2), active=False, gender="女", has_children=True)
    person(bot, "在职", birthday=None, has_children=True)
    set_config(bot, leader_note=True)
    for day in (at(2026, 6, 1), at(2026, 6, 2)):
        run(bot, day)
    assert not texts_to(bot, gone, "")  # no birthday, no 六一
    assert not texts_to(bot, chair, "milestone_notice:")  # no milestone notice about them either
    with bot.db.Session() as s:
        assert s.scalar(select(GreetingRun).where(GreetingRun.kind == "birthday",
                                                  GreetingRun.day == date(2026, 6, 2))).queued == 0  # fmt: skip


# chat ----------------------------------------------------------------------------------------------------------
def test_opt_out_and_back_in_by_chat(bot, chat_with):
    m = add_member(bot, name="小张", birthday=date(1990, 9, 9))
    chat = chat_with(m)
    assert "不再" in chat.ask("别发生日祝福了")
    with bot.db.Session() as s:
        assert s.get(Member, m.id).greeting_opt_out
    run(bot, at(2026, 9, 9))
    assert not keys(bot, "birthday:")
    assert "已开启" in chat.ask("生日祝福还是发吧")
    with bot.db.Session() as s:
        assert not s.get(Member, m.id).greeting_opt_out
    assert "不再" in chat.ask("关掉生日提醒")
    assert "已开启" in chat.ask("开启生日祝福")


def test_lunar_birthday_dialog(bot, chat_with):
    m = add_member(bot, name="小王", birthday=date(1986, 2, 8))
    chat = chat_with(m)
    with time_machine.travel(at(2026, 1, 10), tick=False):
        reply = chat.ask("我按农历过生日")
        assert "农历生日" in reply and "12月30日" in reply  # the roster's guess
        reply = chat.ask("腊月三十")
    assert "农历12月30日" in reply and "廿九" in reply and "2月16日" in reply
    with bot.db.Session() as s:
        got = s.get(Member, m.id)
        assert (got.birthday_is_lunar, got.lunar_birth_month, got.lunar_birth_day) == (True, 12, 30)


def test_parse_lunar():
    assert parse_lunar("腊月初八") == (12, 8, False)
    assert parse_lunar("闰二月十五") == (2, 15, True)
    assert parse_lunar("8月15") == (8, 15, False)
    assert parse_lunar("正月廿三") == (1, 23, False)
    assert parse_lunar("冬月三十") == (11, 30, False)
    assert parse_lunar("随便") is None


def test_preview_lists_birthdays_and_festivals(bot):
    person(bot, "甲", birthday=date(1987, 3, 8), gender="女")
    with bot.db.transaction() as s:
        s.add(GreetingConfig(id=1))
    plan = preview_greetings(bot, date(2027, 3, 1), date(2027, 3, 31))
    kinds = [(p.when.date(), p.kind, p.recipients) for p in plan]
    assert (date(2027, 3, 8), "生日祝福", 1) in kinds
    assert (date(2027, 3, 8), "节日祝福", 1) in kinds
    assert all(p.when.hour == 9 for p in plan)
    assert (date(2027, 3, 25), "生日名单", 0) in kinds  # next month's list on the 25th (no clerk yet)


def test_group_leader_morning_note_names_only(bot):
    leader = person(bot, "组长", roles=["group_leader"], birthday=None)
    person(bot, "寿星甲", birthday=date(1990, 7, 7))
    person(bot, "寿星乙", birthday=date(1975, 7, 7), greeting_opt_out=True)
    person(bot, "别组", birthday=date(1990, 7, 7), group="外科小组")
    run(bot, at(2026, 7, 7))
    assert not keys(bot, "leader_note:")  # off by default
    set_config(bot, leader_note=True)
    run(bot, at(2026, 7, 7, 9, 5))
    (note,) = texts_to(bot, leader, "leader_note:")
    assert "寿星甲" in note and "寿星乙" not in note and "别组" not in note and "1990" not in note


def test_monthly_birthday_list_for_clerks_and_xlsx(bot):
    import io

    from openpyxl import load_workbook

    from handlers.greetings import birthday_list_xlsx

    clerk = person(bot, "干事", roles=["clerk"], birthday=None)
    person(bot, "八月甲", birthday=date(1990, 8, 3))
    person(
        bot, "八月乙", birthday=date(1986, 8, 20), branch="外科分会", group="外科小组", greeting_opt_out=True
    )
    person(bot, "七月", birthday=date(1990, 7, 30))
    run(bot, at(2026, 7, 24))
    assert not keys(bot, "monthly_list:")
    run(bot, at(2026, 7, 27))  # down on the 25th and 26th: made up later in the month, once
    run(bot, at(2026, 7, 28))
    text, file = [r.payload for r in rows(bot, "monthly_list:") if r.member_id == clerk.id]
    text = text["text"]
    assert (
        "8月生日名单" in text and "八月甲（3日）" in text and "八月乙（20日）" in text and "七月" not in text
    )
    assert "外科分会（1人）" in text and "Excel文件随后发到这里" in text.splitlines()[-1]
    # then the .xlsx of all branches itself, as a file (its own key, once)
    assert keys(bot, "monthly_list:") == [
        f"monthly_list:2026-08:{clerk.id}",
        f"monthly_list:2026-08:{clerk.id}:xlsx",
    ]
    sent = payload_to_outgoing(file)
    assert sent.name == "2026年8月生日名单.xlsx"
    got = list(load_workbook(io.BytesIO(sent.data)).active.iter_rows(values_only=True))
    assert {r[2] for r in got[1:]} == {"八月甲", "八月乙"}
    outbox.drain(bot, platform="sandbox")
    with bot.db.Session() as s:
        report = delivery_report(s, s.scalar(select(GreetingRun).where(GreetingRun.kind == "monthly_list")))
    assert report["sent"] == 2 and report["failed"] == 0
    with bot.db.Session() as s:
        data = birthday_list_xlsx(s, 2026, 8)
    ws = load_workbook(io.BytesIO(data)).active
    rows_ = list(ws.iter_rows(values_only=True))
    assert rows_[0][:3] == ("分会", "小组", "姓名")
    assert {r[2] for r in rows_[1:]} == {"八月甲", "八月乙"}
    assert [r[6] for r in rows_[1:] if r[2] == "八月乙"] == ["是"]  # milestone flag for the clerk's gift


def test_birthday_list_xlsx_cells_cannot_run_as_formulas(bot):
    import io

    from openpyxl import load_workbook

    from handlers.greetings import birthday_list_xlsx

    person(bot, "=1+1", birthday=date(1990, 8, 3), branch="@分会", group="-小组")
    with bot.db.Session() as s:
        data = birthday_list_xlsx(s, 2026, 8)
    ws = load_workbook(io.BytesIO(data)).active
    assert [c.value for c in ws[2]][:3] == ["'@分会", "'-小组", "'=1+1"]
    assert [c.coordinate for row in ws.iter_rows() for c in row if c.data_type == "f"] == []
