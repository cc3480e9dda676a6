"""Fan-out benchmark: one festival greeting to 100,000 members, enqueued AND delivered to a (fake) WeCom.

Run it (defaults: 100,000 members, a temporary SQLite file; a few minutes on a small machine):

    .venv/bin/python bench/fanout.py
    .venv/bin/python bench/fanout.py --members 20000 --db postgresql://postgres@127.0.0.1:5432/bench --trace
    (--db: an EMPTY database you created for it; the tables are created and left there)

What it does, on a fresh database whose members all have a WeCom account:
  1. identical text with `batch_private` on: the real job (`handlers.greetings.run_greetings`) enqueues one
     outbox row per 1,000 members (payload {"batch": [ids]});
  2. personal text ({name}): one outbox row per member; the run is repeated (0 new rows: idempotent) and forced
     again (every key conflicts).
After each enqueue the real delivery loop (`bot.outbox.deliver_due`, as `flask worker run` calls it) sends the rows
with the real WeCom sender (`bot.adapters.wecom_api.WeComSender`) to the fake WeCom server of the tests
(`tests/fake_wecom.py`, on a loopback port; WECOM_API_BASE points at it). Printed: time to enqueue, rows, the
message/send calls and recipients COUNTED AT THE FAKE SERVER, delivery time and rate, that rate against the
sender's configured limits (30 messages per member per minute; WECOM_API_CALLS_PER_MINUTE app-wide) and WeCom's own
per-API cap (10,000 calls a minute per company), and peak memory (ru_maxrss; tracemalloc peak with --trace).

The personal run delivers `--deliver` rows (default 1,000; the time for all of them is extrapolated and marked so):
one worker sends one row at a time (an HTTP call and a commit each), which takes hours for 100,000 rows on a
small machine. `--deliver all` sends every row.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, update  # noqa: E402

from app import create_app  # noqa: E402
from bot import outbox  # noqa: E402
from bot.adapters import wecom_api  # noqa: E402
from bot.clock import Clock  # noqa: E402
from config import Settings  # noqa: E402
from handlers.greetings import run_greetings  # noqa: E402
from models.greeting import Festival, GreetingConfig, GreetingRun, delivery_report, ensure_seeded  # noqa: E402
from models.member import Branch, Group, Member, PlatformIdentity  # noqa: E402
from models.messaging import OutboxMessage  # noqa: E402
from tests.fake_wecom import FakeWeCom  # noqa: E402
from tests.wecom_helpers import settings_for  # noqa: E402

SH = ZoneInfo("Asia/Shanghai")
SEND_PATH = "/cgi-bin/message/send"
SENDER_CAP = Settings.model_fields["WECOM_API_CALLS_PER_MINUTE"].default
WECOM_CALLS_PER_MINUTE = 10_000  # WeCom: per company and API (../shared/platforms/wecom.md, 访问频率限制)


def seed(db, n: int) -> None:
    with db.transaction() as s:
        b = Branch(name="基准分会")
        g = Group(name="基准小组", branch=b)
        s.add_all([b, g])
        s.flush()
        bid, gid = b.id, g.id
    chunk = 10_000
    for start in range(0, n, chunk):
        with db.transaction() as s:
            rows = [
                dict(
                    id=i + 1,
                    name=f"会员{i:06d}",
                    employee_no=f"B{i:06d}",
                    branch_id=bid,
                    group_id=gid,
                    gender="女" if i % 2 else "男",
                    birthday=None,
                    birthday_is_lunar=False,
                    lunar_birth_leap=False,
                    retired=False,
                    is_delegate=False,
                    greeting_opt_out=False,
                    active=True,
                )
                for i in range(start, min(n, start + chunk))
            ]
            s.execute(insert(Member), rows)
            s.execute(
                insert(PlatformIdentity),
                [
                    dict(
                        member_id=r["id"],
                        platform="wecom",
                        platform_user_id=f"wx{r['id']:06d}",
                        unreachable=False,
                    )
                    for r in rows
                ],
            )


def outbox_rows(db, prefix: str, status: str | None = None) -> int:
    with db.Session() as s:
        q = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.idempotency_key.like(prefix + "%"))
        )
        if status:
            q = q.where(OutboxMessage.status == status)
        return s.scalar(q)


def deliver(bot, fake: FakeWeCom, prefix: str, rows: int, budget: int | None) -> dict:
    """The worker's loop (`outbox.deliver_due`, 50 rows a pass) until the run's rows are sent or `budget` rows
    have been tried; returns what the fake server counted."""
    calls0, recipients0, tokens0 = fake.count(SEND_PATH), _recipients(fake), fake.count("/cgi-bin/gettoken")
    t0 = time.perf_counter()
    tried = 0
    while budget is None or tried < budget:
        n = outbox.deliver_due(bot, platform="wecom")
        if not n and not outbox.claim_preview(bot, "wecom"):
            break
        tried += n
    secs = time.perf_counter() - t0
    return {
        "secs": secs,
        "calls": fake.count(SEND_PATH) - calls0,
        "recipients": _recipients(fake) - recipients0,
        "tokens": fake.count("/cgi-bin/gettoken") - tokens0,
        "sent_rows": outbox_rows(bot.db, prefix, "sent"),
        "left": outbox_rows(bot.db, prefix, "pending"),
        "rows": rows,
    }


def _recipients(fake: FakeWeCom) -> int:
    return sum(len(str(body.get("touser", "")).split("|")) for body in fake.sent(SEND_PATH))


def report(d: dict, members: int) -> None:
    per_min = d["calls"] / d["secs"] * 60 if d["secs"] else 0.0
    people = d["recipients"] / d["secs"] if d["secs"] else 0.0
    left = f" ({d['left']:,} rows left: a sample, see --deliver)" if d["left"] else ""
    print(f"   delivered: {d['sent_rows']:,} of {d['rows']:,} rows in {d['secs']:.1f}s{left}")
    print(f"   counted at the fake WeCom: {d['calls']:,} message/send calls reaching {d['recipients']:,} "
          f"members, {d['tokens']} gettoken")  # fmt: skip
    print(f"   rate: {per_min:,.0f} calls/min, {people:,.0f} members/s")
    if d["left"] and d["sent_rows"]:
        whole = d["secs"] / d["sent_rows"] * d["rows"]
        print(f"   all {d['rows']:,} rows at this rate: ~{whole / 60:,.1f} min (extrapolated)")
    elif d["recipients"]:
        print(f"   {members:,} members greeted in {d['secs']:.1f}s")
    print(
        f"   limits: sender {wecom_api.PER_MEMBER_PER_MINUTE}/member/min (each member gets 1 message here: never "
        f"binding); app-wide cap in the sender: {SENDER_CAP:,} calls/min (WECOM_API_CALLS_PER_MINUTE); WeCom's cap {WECOM_CALLS_PER_MINUTE:,} calls/min per API "
        f"-> {per_min / WECOM_CALLS_PER_MINUTE:.0%} of it"
        + ("  ** OVER: WeCom would answer 45009 **" if per_min > WECOM_CALLS_PER_MINUTE else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--deliver", default="1000", help="rows of the personal run to deliver, or 'all'")
    ap.add_argument("--trace", action="store_true", help="tracemalloc peak (slower)")
    args = ap.parse_args()
    budget = None if args.deliver == "all" else int(args.deliver)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake server's access log

    fake = FakeWeCom().start()
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'fanout.db'}"
    clock = Clock(SH)
    overrides = {"DATABASE_URL": url, "APP_ENV": "test", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}
    app = create_app({**overrides, **settings_for(fake)}, clock=clock)
    bot = app.extensions["bot"]
    assert isinstance(bot.senders.get("wecom"), wecom_api.WeComSender)
    db = bot.db
    db.create_all()
    t = time.perf_counter()
    seed(db, args.members)
    print(f"members: {args.members:,} seeded in {time.perf_counter() - t:.1f}s ({db.engine.dialect.name}); "
          f"fake WeCom at {fake.base}")  # fmt: skip
    with db.transaction() as s:
        ensure_seeded(s)
        s.execute(update(Festival).values(enabled=False))
        s.add(Festival(code="bench_personal", name="个人祝福", rule="solar:10-2", audience="all",
                       delivery="private", template="{name}，国庆节快乐！"))  # fmt: skip
        s.add(Festival(code="bench_batch", name="统一祝福", rule="solar:10-1", audience="all",
                       delivery="private", template="全体会员：国庆假期快乐！"))  # fmt: skip

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.trace:
        tracemalloc.start()

    def at_nine(day: int) -> datetime:
        """Set the bot's clock to 09:00 on 2027-10-<day> (delivery then runs on that clock) and return it."""
        clock.offset = datetime(2027, 10, day, 9, 0, tzinfo=SH) - datetime.now(UTC)
        return clock.now()

    def timed(day: int) -> float:
        t0 = time.perf_counter()
        run_greetings(bot, at_nine(day))
        return time.perf_counter() - t0

    with db.transaction() as s:
        s.get(GreetingConfig, 1).batch_private = True  # identical text is batched; {name} text never is
    secs = timed(1)
    rows = outbox_rows(db, "festival:bench_batch:")
    print("\n1) identical text, batched (payload {'batch': [<=1000 ids]}, WeCom touser)")
    print(f"   enqueue: {secs:.2f}s  ({args.members / secs:,.0f} members/s), outbox rows: {rows:,}")
    report(deliver(bot, fake, "festival:bench_batch:", rows, None), args.members)
    with db.Session() as s:
        run = s.scalar(select(GreetingRun).where(GreetingRun.occasion == "bench_batch"))
        print(f"   delivery log (console): {delivery_report(s, run)}")

    secs = timed(2)
    rows = outbox_rows(db, "festival:bench_personal:")
    again = timed(2)
    rows_again = outbox_rows(db, "festival:bench_personal:")
    with db.transaction() as s:
        s.execute(update(GreetingRun).values(completed_at=None))
    forced = timed(2)
    rows_forced = outbox_rows(db, "festival:bench_personal:")
    rss_enqueue = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("\n2) personal text ({name}), one row per member")
    print(f"   enqueue: {secs:.2f}s  ({args.members / secs:,.0f} members/s), outbox rows: {rows:,}")
    print(f"   repeated run: {again:.2f}s, new rows: {rows_again - rows} (the completed run is skipped)")
    print(f"   forced re-run (every key conflicts): {forced:.2f}s, new rows: {rows_forced - rows}")
    report(deliver(bot, fake, "festival:bench_personal:", rows, budget), args.members)

    print("\nmemory")
    if args.trace:
        _, peak = tracemalloc.get_traced_memory()
        print(f"   tracemalloc peak during the runs: {peak / 2**20:,.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"   ru_maxrss: {rss0 / 1024:,.1f} MiB before the runs, {rss_enqueue / 1024:,.1f} MiB after enqueueing, "
          f"{rss / 1024:,.1f} MiB at the end (the fake server in this process keeps every call)")  # fmt: skip
    fake.stop()
    db.dispose()
    if not args.db:
        tmp.cleanup()


if __name__ == "__main__":
    main()
