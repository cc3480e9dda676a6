"""Case numbers (KN<year>-<seq>) under concurrent first submissions of a year, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import select

from models import crypto
from models.care import HardshipCase, HardshipCounter, submit_case
from models.member import Member
from tests.conftest import add_member


def test_concurrent_first_cases_of_a_year_get_distinct_gapless_numbers(any_app):
    bot = any_app.extensions["bot"]
    crypto.configure(bot.settings)
    members = [add_member(bot, f"会员{i}") for i in range(6)]
    per_thread = 4
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(members))

    def work(member_id: int) -> None:
        try:
            barrier.wait(timeout=30)
            for j in range(per_thread):
                try:
                    with bot.db.transaction() as s:
                        m = s.get(Member, member_id)
                        submit_case(
                            s, member=m, reported_by=m, type="大病", story="情况说明", household=None,
                            help_kinds=["资金补助"], help_details=None, contact=None, now=bot.clock.now(),
                            year=2031,
                        )  # fmt: skip
                        if j == 1:
                            raise RuntimeError("rolled back after taking a number")
                except RuntimeError:
                    pass
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m.id,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected = len(members) * (per_thread - 1)
    with bot.db.Session() as s:
        seqs = sorted(s.scalars(select(HardshipCase.seq).where(HardshipCase.year == 2031)))
        counter = s.get(HardshipCounter, 2031)
    assert seqs == list(range(1, expected + 1))  # no gap (rolled-back numbers are reused), no duplicate
    assert counter.value == expected
