"""The scheduler: time zones and misfire options on every job, the DB lease, two schedulers at once, the CLI."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select, update

from bot import scheduler as sch
from handlers.greetings import run_greetings
from models.greeting import GreetingRun
from models.member import Member, link_identity
from models.messaging import OutboxMessage
from tests.conftest import add_member

SH = ZoneInfo("Asia/Shanghai")


def at(y, m, d, h=9, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SH)


def person(bot, name, **kw):
    m = add_member(bot, name=name, **kw)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "sandbox", f"sb-{m.id}")
    return m


def outbox_count(bot, prefix=""):
    with bot.db.Session() as s:
        return s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.idempotency_key.like(prefix + "%"))
        )


def test_every_trigger_has_the_union_time_zone_and_hours_of_grace(app):
    sched = sch.build_scheduler(app, holder="t", blocking=False)
    sched.start(paused=True)  # job options are filled in when jobs reach the store; nothing runs while paused
    jobs = {j.id: j for j in sched.get_jobs()}
    sched.shutdown(wait=False)
    assert set(jobs) == {"greetings", "scan", "lease", "catch_up", "hourly", "daily", "nightly"}
    assert str(sched.timezone) == "Asia/Shanghai"
    for job in jobs.values():
        tz = (
            getattr(job.trigger, "timezone", None) or job.trigger.run_date.tzinfo
        )  # DateTrigger: aware run_date
        assert str(tz) == "Asia/Shanghai", job.id
        assert job.coalesce is True and job.max_instances == 1
    assert jobs["greetings"].misfire_grace_time >= 3600
    fields = {f.name: str(f) for f in jobs["greetings"].trigger.fields}
    assert (fields["hour"], fields["minute"]) == ("9", "0")


def test_greeting_job_fires_at_nine_shanghai_even_on_a_utc_host(app):
    sched = sch.build_scheduler(app, holder="t", blocking=False)
    trigger = sched.get_job("greetings").trigger
    now = datetime(2026, 6, 1, 0, 30, tzinfo=ZoneInfo("UTC"))  # 08:30 in Shanghai
    nxt = trigger.get_next_fire_time(None, now)
    assert nxt == at(2026, 6, 1, 9, 0)


@pytest.fixture
def any_bot(any_app):
    return any_app.extensions["bot"]


def test_lease_taken_atomically_renewed_and_taken_over_when_expired(any_bot):
    bot = any_bot
    a, b = sch.Lease(bot.db, "A"), sch.Lease(bot.db, "B")
    t0 = datetime(2026, 6, 1, 1, 0, tzinfo=ZoneInfo("UTC"))
    assert a.acquire(t0)
    assert not b.acquire(t0 + timedelta(seconds=10))
    assert a.acquire(t0 + timedelta(minutes=2))  # renewal pushes expiry on
    assert not b.acquire(t0 + timedelta(minutes=4))
    assert b.acquire(t0 + timedelta(minutes=5, seconds=1))  # A crashed: expired, B takes over
    assert not a.acquire(t0 + timedelta(minutes=5, seconds=2))
    b.release()
    assert a.acquire(t0 + timedelta(minutes=5, seconds=3))


def test_jobs_skip_when_not_holding_the_lease(bot):
    person(bot, "甲", birthday=date(1990, 6, 1))
    leader, follower = sch.JobRunner(bot, "leader"), sch.JobRunner(bot, "follower")
    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        assert leader.scan()
        assert not follower.scan()
        assert not follower.greetings()
    assert "greetings" in leader.runs and follower.runs == []
    assert outbox_count(bot, "birthday:") == 1


def test_two_schedulers_started_at_once_send_each_greeting_once(any_bot):
    bot = any_bot
    for i in range(6):
        person(bot, f"会员{i}", birthday=date(1980 + i, 6, 1), has_children=True)
    runners = [sch.JobRunner(bot, f"proc-{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    results = []

    def start(r):
        barrier.wait()
        results.append(r.catch_up())

    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        threads = [threading.Thread(target=start, args=(r,)) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False, True]  # exactly one holds the lease
        # Even if both ran the job (lease lost mid-run, clock skew: neither saw the other's completed run),
        # the outbox keys keep each greeting once:
        with bot.db.transaction() as s:
            s.execute(update(GreetingRun).values(completed_at=None))
        stats = run_greetings(bot, bot.clock.now())
    assert stats.birthdays == 0 and stats.festival_private == 0 and stats.already == 12  # + 6 儿童节
    assert outbox_count(bot, "birthday:") == 6


def test_catch_up_at_start_up_after_downtime(app, bot):
    person(bot, "甲", birthday=date(1990, 6, 1))
    with time_machine.travel(at(2026, 6, 1, 13, 15), tick=False):  # started after a morning outage
        runner = sch.JobRunner(bot, "late")
        assert runner.catch_up()
    assert outbox_count(bot, "birthday:") == 1
    with time_machine.travel(at(2026, 6, 1, 20, 30), tick=False):  # and after 20:00 nothing is made up
        person(bot, "乙", birthday=date(1991, 6, 1))
        runner.catch_up()
    assert outbox_count(bot, "birthday:") == 1


def test_other_features_jobs_are_wired_when_present(monkeypatch, bot):
    import sys
    import types

    calls = []
    fake = types.ModuleType("handlers.activities")
    fake.send_activity_reminders = lambda bot, now: calls.append(("activities", now))
    care = types.ModuleType("handlers.care")
    care.remind_care_tasks = lambda bot, now: calls.append(("care", now))
    monkeypatch.setitem(sys.modules, "handlers.activities", fake)
    monkeypatch.setitem(sys.modules, "handlers.care", care)
    names = [n for n, _ in sch.scan_jobs()]
    assert names == ["greetings", "meeting_reminders", "send_activity_reminders"]
    assert [n for n, _ in sch.optional_jobs("daily")][:1] == ["remind_care_tasks"]
    runner = sch.JobRunner(bot, "x")
    with time_machine.travel(at(2026, 6, 1, 7, 0), tick=False):  # before 08:30: daily reminders wait
        runner.catch_up()
    assert [c[0] for c in calls] == ["activities"]
    with time_machine.travel(at(2026, 6, 1, 10, 0), tick=False):  # started late: daily reminders made up
        runner.catch_up()
    assert [c[0] for c in calls] == ["activities", "activities", "care"]
    monkeypatch.setitem(sys.modules, "handlers.activities", types.ModuleType("handlers.activities"))
    assert [n for n, _ in sch.scan_jobs()] == ["greetings", "meeting_reminders"]


def test_cli_preview_and_status(app, bot):
    person(bot, "甲", birthday=date(1987, 3, 8), gender="女")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["schedule", "preview", "--from", "2027-03-01", "--to", "2027-03-31"])
    assert result.exit_code == 0, result.output
    assert "2027-03-08" in result.output and "生日祝福" in result.output and "三八妇女节" in result.output
    assert "共" in result.output
    result = runner.invoke(args=["schedule", "preview", "--from", "2027-03-31", "--to", "2027-03-01"])
    assert result.exit_code != 0
    result = runner.invoke(args=["schedule", "status"])
    assert result.exit_code == 0 and "no scheduler" in result.output


def test_same_job_never_overlaps_in_one_process(bot):
    runner = sch.JobRunner(bot, "solo")
    calls = []

    def slow(b, now):
        calls.append(now)
        runner.run("greetings", slow)  # the minute scan arriving while the 09:00 run is still going

    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        assert runner.run("greetings", slow)
    assert len(calls) == 1 and runner.runs == ["greetings"]


def test_preview_lists_activity_reminders_and_nudges_when_the_real_job_sends_them(app, bot):
    from cli.schedule import preview_activities
    from handlers.activities import send_activity_reminders
    from models.activity import Activity, sign_up

    members = [person(bot, f"会员{i}", birthday=None) for i in range(4)]
    with bot.db.transaction() as s:
        a = Activity(title="羽毛球赛", place="体育馆", starts_at=at(2027, 5, 10, 14), signup_deadline=at(2027, 5, 8, 18),
                     capacity=None, taken=0, seq=0, waitlist_enabled=True, companions_max=0, questions=[],
                     audience_kind="all", audience_ids=[], status="open", remind_unanswered=True,
                     created_at=at(2027, 5, 1, 10))  # fmt: skip
        s.add(a)
        s.flush()
        for m in members[:2]:
            assert sign_up(s, a, s.get(Member, m.id), at(2027, 5, 1, 11)).outcome == "confirmed"
        late = Activity(title="讲座", starts_at=at(2027, 5, 20, 9), capacity=None, taken=0, seq=0,
                        waitlist_enabled=True, companions_max=0, questions=[], audience_kind="all",
                        audience_ids=[], status="open", created_at=at(2027, 5, 1, 10))  # fmt: skip
        s.add(late)  # nobody signed up, no nudge asked for: nothing to preview
        aid = a.id
    plan = preview_activities(bot, date(2027, 5, 1), date(2027, 5, 31))
    assert [(w.replace(tzinfo=None), k, n) for w, k, _, n in plan] == [
        (datetime(2027, 5, 7, 18, 0), "报名截止提醒", 2),
        (datetime(2027, 5, 9, 14, 0), "活动提醒", 2),
        (datetime(2027, 5, 10, 12, 0), "活动提醒", 2),
    ]
    assert preview_activities(bot, date(2027, 5, 8), date(2027, 5, 9))[0][1] == "活动提醒"  # range respected
    # the real job sends exactly these, at exactly these times
    for when, _, _, n in sorted(plan):
        with time_machine.travel(when - timedelta(minutes=1), tick=False):
            before = outbox_count(bot, f"activity:{aid}:")
            send_activity_reminders(bot, bot.clock.now())
            assert outbox_count(bot, f"activity:{aid}:") == before
        with time_machine.travel(when, tick=False):
            send_activity_reminders(bot, bot.clock.now())
        assert outbox_count(bot, f"activity:{aid}:") == before + n
    result = app.test_cli_runner().invoke(
        args=["schedule", "preview", "--from", "2027-05-01", "--to", "2027-05-31"]
    )
    assert "2027-05-09 Sun 14:00  活动提醒" in result.output and "羽毛球赛（活动前一天" in result.output
    assert "报名截止提醒" in result.output


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_run_lets_running_jobs_finish_before_releasing_the_lease(app, bot, monkeypatch, sig):
    """Ctrl-C (or SIGTERM from systemd / serve) on `schedule run` while a job is running: the job's next lease
    check must come before the release, or it takes the lease back and the next scheduler waits LEASE_TTL for it.
    Real BlockingScheduler, a real signal to the main thread; every wait is bounded by an Event."""
    import signal
    import sys

    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.triggers.date import DateTrigger

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread (SIGINT)")
    stopping, done = threading.Event(), threading.Event()
    seen: list[bool] = []

    class Executor(ThreadPoolExecutor):
        def shutdown(self, wait=True):
            stopping.set()
            super().shutdown(wait)

    real_build = sch.build_scheduler

    def build(app, holder=None, blocking=True):
        sched = real_build(app, holder=holder, blocking=blocking)
        sched.remove_all_jobs()
        runner = sched.runner
        release = runner.lease.release

        def released():
            stopping.set()
            release()

        runner.lease.release = released

        def main_loop_waiting() -> bool:
            """The main thread sits in the scheduler's idle wait (where Ctrl-C arrives in practice; inside
            _process_jobs APScheduler would log and swallow the KeyboardInterrupt)."""
            f, names = sys._current_frames().get(threading.main_thread().ident), []
            while f is not None and len(names) < 4:
                names.append(f.f_code.co_name)
                f = f.f_back
            return names[:1] == ["wait"] and "_main_loop" in names

        def job():
            try:
                seen.append(runner.renew())  # a job starts with its lease check
                for _ in range(2000):  # bounded: the main thread gets there within milliseconds
                    if main_loop_waiting():
                        break
                    stopping.wait(0.005)
                else:
                    seen.append("the main thread never went idle")
                signal.pthread_kill(threading.main_thread().ident, getattr(signal, sig))  # stopped meanwhile
                stopping.wait(
                    10
                )  # the command is stopping: shutting the scheduler down, or releasing the lease
                seen.append(runner.renew())  # the job's next step checks the lease again
            finally:
                done.set()

        sched.add_executor(Executor(2), "default")
        sched.add_job(job, DateTrigger(run_date=datetime.now(SH), timezone=SH), id="slow")
        return sched

    monkeypatch.setattr(sch, "build_scheduler", build)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = app.test_cli_runner().invoke(args=["schedule", "run", "--holder", "ctrl-c"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done.wait(10) and seen == [True, True], (seen, result.output)
    holder, expires = sch.Lease(bot.db).current()
    assert (holder, expires) == ("ctrl-c", sch.EPOCH)  # released after the job: free for the next scheduler


def test_preview_lists_the_daily_jobs_when_the_real_jobs_send_them(app, bot):
    """Care tasks, yearly re-verification and the warmth list (春节 2027 is 2-6: the list goes out 30 days before)
    appear in the preview on the days, and to as many people, as the real daily jobs send them."""
    from cli.schedule import preview_daily
    from handlers.care import remind_care_tasks, reverify_hardship_records, send_warmth_campaign
    from models.care import CareEvent, HardshipRecord

    m = person(bot, "会员", birthday=None)
    person(bot, "组长", roles=["group_leader"], birthday=None)
    person(bot, "分会主席", roles=["branch_chair"], birthday=None)
    person(bot, "干事", roles=["clerk"], birthday=None)
    person(bot, "主席", roles=["chair"], birthday=None)
    with bot.db.transaction() as s:
        member = s.get(Member, m.id)
        ev = CareEvent(type="hospital", member_id=m.id, branch_id=member.branch_id, group_id=member.group_id,
                       due_on=date(2027, 1, 3))  # fmt: skip
        rec = HardshipRecord(member_id=m.id, branch_id=member.branch_id, type="因病", since=date(2026, 1, 6),
                             last_verified=date(2026, 1, 6), next_review=date(2027, 1, 6))  # fmt: skip
        s.add_all([ev, rec])
        s.flush()
        prefixes = {"关怀提醒": f"care:{ev.id}:remind:", "年度复核": f"record:{rec.id}:review:",
                    "送温暖名单": "record:warmth:"}  # fmt: skip
    plan = preview_daily(bot, date(2027, 1, 1), date(2027, 1, 10))
    planned = {(w.date(), k, n) for w, k, _, n in plan}
    assert {k for _, k, _ in planned} == set(prefixes) and all(w.time() == sch.DAILY_AT for w, *_ in plan)
    assert {(d, k) for d, k, _ in planned if k != "关怀提醒"} == {
        (date(2027, 1, 6), "年度复核"),
        (date(2027, 1, 7), "送温暖名单"),
    }
    sent = set()
    for day in (date(2027, 1, 1) + timedelta(days=i) for i in range(10)):
        with time_machine.travel(at(day.year, day.month, day.day, 8, 30), tick=False):
            before = {k: outbox_count(bot, p) for k, p in prefixes.items()}
            for job in (remind_care_tasks, reverify_hardship_records, send_warmth_campaign):
                job(bot, bot.clock.now())
            sent |= {(day, k, outbox_count(bot, p) - before[k]) for k, p in prefixes.items()}
    assert planned == {row for row in sent if row[2]}
    later = {k for _, k, _, _ in preview_daily(bot, date(2027, 1, 1), date(2027, 1, 31))}
    assert later == {"关怀提醒"}  # once sent, the yearly ones are not previewed again; an open task still is
