"""Fan-out benchmark: one festival greeting to 100,000 members.

    .venv/bin/python bench/fanout.py                  # 100,000 members, SQLite temp file
    .venv/bin/python bench/fanout.py --members 20000 --trace --db postgresql://...

Two runs of the real job (`handlers.greetings.run_greetings`), on a fresh database:
  1. personal text ({name}): one outbox row per member, i.e. one platform API call per member;
  2. identical text with `batch_private` on: one outbox row per platform and 1,000 recipients
     (payload {"batch": [ids]}, WeCom message/send `touser` takes up to 1,000 ids).
Prints the time to enqueue, rows written, API calls implied, how long delivery takes at a given API rate,
a repeated run (idempotency: 0 new rows) and peak memory (ru_maxrss; tracemalloc peak with --trace).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, update  # noqa: E402

from app import create_app  # noqa: E402
from handlers.greetings import run_greetings  # noqa: E402
from models.greeting import Festival, GreetingConfig, GreetingRun, ensure_seeded  # noqa: E402
from models.member import Branch, Group, Member, PlatformIdentity  # noqa: E402
from models.messaging import OutboxMessage  # noqa: E402

SH = ZoneInfo("Asia/Shanghai")


class NullSender:
    def send(self, row):  # never called: the benchmark only enqueues
        raise AssertionError


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


def outbox_rows(db, prefix: str) -> int:
    with db.Session() as s:
        return s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.idempotency_key.like(prefix + "%"))
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    ap.add_argument(
        "--api-rate", type=float, default=20.0, help="platform API calls per second we allow ourselves"
    )
    ap.add_argument("--trace", action="store_true", help="tracemalloc peak (slower)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'fanout.db'}"
    app = create_app({"DATABASE_URL": url, "APP_ENV": "test", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"})
    bot = app.extensions["bot"]
    bot.senders["wecom"] = NullSender()
    db = bot.db
    db.create_all()
    t = time.perf_counter()
    seed(db, args.members)
    print(f"members: {args.members:,} seeded in {time.perf_counter() - t:.1f}s ({db.engine.dialect.name})")
    with db.transaction() as s:
        ensure_seeded(s)
        s.execute(update(Festival).values(enabled=False))
        s.add(Festival(code="bench_personal", name="个人祝福", rule="solar:10-1", audience="all",
                       delivery="private", template="{name}，国庆节快乐！"))  # fmt: skip
        s.add(Festival(code="bench_batch", name="统一祝福", rule="solar:10-2", audience="all",
                       delivery="private", template="全体会员：国庆假期快乐！"))  # fmt: skip

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.trace:
        tracemalloc.start()

    def timed(day: int) -> tuple[float, object]:
        now = datetime(2027, 10, day, 9, 0, tzinfo=SH)
        t0 = time.perf_counter()
        stats = run_greetings(bot, now)
        return time.perf_counter() - t0, stats

    secs, stats = timed(1)
    rows = outbox_rows(db, "festival:bench_personal:")
    again, _ = timed(1)
    rows_again = outbox_rows(db, "festival:bench_personal:")
    with db.transaction() as s:
        s.execute(update(GreetingRun).values(completed_at=None))
    forced, _ = timed(1)
    rows_forced = outbox_rows(db, "festival:bench_personal:")
    print("\n1) personal text, one row per member")
    print(f"   enqueue: {secs:.2f}s  ({args.members / secs:,.0f} members/s)")
    print(f"   outbox rows: {rows:,}  -> platform API calls: {rows:,}")
    print(f"   delivery at {args.api_rate:g} calls/s: {rows / args.api_rate / 60:,.1f} min")
    print(f"   repeated run: {again:.2f}s, new rows: {rows_again - rows} (the completed run is skipped)")
    print(
        f"   forced re-run (run not marked done, every key conflicts): {forced:.2f}s, new rows: {rows_forced - rows}"
    )

    with db.transaction() as s:
        s.get(GreetingConfig, 1).batch_private = True
    secs, stats = timed(2)
    rows = outbox_rows(db, "festival:bench_batch:")
    with db.Session() as s:
        ids = sum(
            len(p.get("batch", []))
            for p in s.scalars(
                select(OutboxMessage.payload).where(
                    OutboxMessage.idempotency_key.like("festival:bench_batch:%")
                )
            )
        )
    print("\n2) identical text, batched (payload {'batch': [<=1000 ids]})")
    print(f"   enqueue: {secs:.2f}s  ({args.members / secs:,.0f} members/s)")
    print(f"   outbox rows: {rows:,} carrying {ids:,} recipients -> platform API calls: {rows:,}")
    print(f"   delivery at {args.api_rate:g} calls/s: {rows / args.api_rate:,.1f} s")

    print("\nmemory")
    if args.trace:
        _, peak = tracemalloc.get_traced_memory()
        print(f"   tracemalloc peak during the runs: {peak / 2**20:,.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"   ru_maxrss: {rss / 1024:,.1f} MiB (before the runs {rss0 / 1024:,.1f} MiB)")
    db.dispose()
    if not args.db:
        tmp.cleanup()


if __name__ == "__main__":
    main()
