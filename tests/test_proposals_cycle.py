"""Proposals: numbering under concurrent submissions, report and export, permissions, and a whole congress cycle
through the sandbox chat."""

from __future__ import annotations

import io
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from handlers.proposals import close_cosign_window
from models.member import Member
from models.proposal import (
    Congress,
    Proposal,
    ProposalCounter,
    export_xlsx,
    find_by_number,
    report,
    safe_cell,
    submit,
)
from tests.conftest import add_member, make_app
from tests.test_admin import add_staff, login
from tests.test_proposals import make_congress, make_department, write_proposal


# ---------------------------------------------------------------------------------------------- numbering
def test_numbers_have_no_gaps_or_duplicates_under_concurrent_submissions(any_app):
    bot = any_app.extensions["bot"]
    make_congress(bot)
    members = [add_member(bot, name=f"代表{i}", is_delegate=True) for i in range(6)]
    per_thread = 6
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(members))

    def work(member_id: int, idx: int) -> None:
        try:
            barrier.wait(timeout=30)
            for j in range(per_thread):
                try:
                    with bot.db.transaction() as s:
                        c = s.scalar(select(Congress))
                        submit(
                            s, member=s.get(Member, member_id), kind="proposal", category="其他",
                            title=f"t{idx}-{j}", situation="s", measures="m", congress=c, secret="k",
                            now=bot.clock.now(), tz=bot.clock.tz,
                        )  # fmt: skip
                        if j == 2:
                            raise RuntimeError("rolled back after taking a number")
                except RuntimeError:
                    pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m.id, i)) for i, m in enumerate(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with bot.db.Session() as s:
        seqs = sorted(s.scalars(select(Proposal.seq).where(Proposal.series == "2027")))
        numbers = list(s.scalars(select(Proposal.number)))
        counter = s.get(ProposalCounter, "2027")
    expected = len(members) * (per_thread - 1)
    assert seqs == list(range(1, expected + 1))  # no gaps (rolled-back numbers are reused), no duplicates
    assert len(set(numbers)) == len(numbers) == expected and "2027-001" in numbers
    assert counter.value == expected


def test_per_session_numbering_and_suggestion_series(bot):
    make_congress(bot, numbering="session", code="S32")
    m = add_member(bot, name="代表", is_delegate=True)
    with bot.db.transaction() as s:
        c = s.scalar(select(Congress))
        mem = s.get(Member, m.id)
        a = submit(s, member=mem, kind="proposal", category="其他", title="a", situation="s", measures="m",
                   congress=c, secret="k", now=bot.clock.now(), tz=bot.clock.tz)  # fmt: skip
        b = submit(s, member=mem, kind="suggestion", category="其他", title="b", situation="s", measures="m",
                   congress=c, secret="k", now=bot.clock.now(), tz=bot.clock.tz)  # fmt: skip
        assert a.number == "S32-001" and b.number == f"建{bot.clock.today().year}-001"
        assert find_by_number(s, "提案 s32-1").id == a.id
        assert find_by_number(s, f"建{bot.clock.today().year}-1").id == b.id


def test_suggestion_year_and_anonymous_day_follow_the_configured_zone(tmp_path):
    """TIMEZONE=America/Los_Angeles: 2027-01-01 03:00 UTC is still 2026-12-31 there (in Shanghai it is 2027)."""
    app = make_app(f"sqlite:///{tmp_path / 'la.db'}", TIMEZONE="America/Los_Angeles")
    la_bot = app.extensions["bot"]
    m = add_member(la_bot, name="会员")
    now = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    with la_bot.db.transaction() as s:
        p = submit(s, member=s.get(Member, m.id), kind="suggestion", category="其他", title="b", situation="s",
                   measures="m", congress=None, anonymous=True, secret="k", now=now, tz=la_bot.clock.tz)  # fmt: skip
        assert p.number == "建2026-001"
        local_midnight = datetime(2026, 12, 31, 8, 0, tzinfo=UTC)  # only the day is kept
        assert p.created_at == local_midnight
    app.extensions["db"].dispose()


def test_safe_cell_neutralises_formulas():
    assert safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert [safe_cell(x) for x in ("+1", "-1", "@a", "ok", 3)] == ["'+1", "'-1", "'@a", "ok", 3]


# ---------------------------------------------------------------------------------------------- permissions
def test_permissions(bot, chat_with):
    make_congress(bot)
    make_department(bot, "总务处")
    plain = chat_with(add_member(bot, name="钱会员"))
    clerk = chat_with(add_member(bot, name="干事", roles=("clerk",)))
    chair = chat_with(add_member(bot, name="主席", roles=("chair",)))
    for text in ("待审提案", "立案 2027-001 总务处", "不立案 2027-001 重复", "合并 2027-002 到 2027-001"):
        assert "只有提案委员会" in plain.ask(text)
        assert "只有提案委员会" in clerk.ask(text)
    assert "只对提案委员会" in plain.ask("提案统计")
    assert "按时答复率" in clerk.ask("提案统计")
    assert "目前没有待审查" in chair.ask("待审提案")


# ---------------------------------------------------------------------------------------------- the whole cycle
def test_congress_cycle_end_to_end(bot, chat_with, client):
    make_congress(bot, days_left=3)
    cats = ["工资福利", "医疗卫生", "后勤保障", "劳动保护", "民主管理", "其他"]
    dels = [add_member(bot, name=f"代表{chr(0x7532 + i)}", is_delegate=True) for i in range(10)]
    depts = ["总务处", "人事处", "保卫处"]
    contacts = {d: add_member(bot, name=f"{d}联络员") for d in depts}
    for d in depts:
        make_department(bot, d, contacts[d])
    reviewer = chat_with(add_member(bot, name="提案委员", roles=("proposal_reviewer",)))
    chats = [chat_with(m) for m in dels]
    dchat = {d: chat_with(contacts[d]) for d in depts}

    # 40 proposals from the delegates, each naming two co-signers who then co-sign (38 and 39 get only one)
    nums = []
    for i in range(40):
        a, b = (i + 1) % 10, (i + 2) % 10
        num, receipt = write_proposal(
            chats[i % 10], title=f"第{i}号建议事项", category=str(i % 6 + 1),
            cosigners=f"{dels[a].name},{dels[b].name}",
        )  # fmt: skip
        assert num == f"2027-{i + 1:03d}", receipt
        nums.append(num)
        assert "已附议" in chats[a].ask(f"附议 {num}")
        if i < 38:
            assert "已附议" in chats[b].ask(f"附议 {num}")
    assert close_cosign_window(bot, bot.clock.now() + timedelta(days=4)) == 2
    bot.clock.offset = timedelta(days=4)
    assert "待审查提案 38 件" in reviewer.ask("待审提案")

    # review: merge 37 into 36, decline 34 and 35, accept the rest
    assert "合并" in reviewer.ask(f"合并 {nums[37]} 到 {nums[36]}")
    for i in (34, 35):
        assert "不予立案" in reviewer.ask(f"不立案 {nums[i]} 属于个人诉求")
    due = bot.clock.today() + timedelta(days=10)
    accepted = [*range(34), 36]
    for i in accepted:
        assert "已立案" in reviewer.ask(f"立案 {nums[i]} {depts[i % 3]} 期限 {due.isoformat()}")

    # replies: 0..29 on time, 30..33 late, 36 never
    bot.clock.offset = timedelta(days=9)
    for i in range(30):
        assert "已答复" in dchat[depts[i % 3]].ask(f"答复 {nums[i]} 已办结 第{i}号已落实")
    bot.clock.offset = timedelta(days=19)
    for i in range(30, 34):
        assert "已答复" in dchat[depts[i % 3]].ask(f"答复 {nums[i]} 办理中 已立项，预计 2099-12-31 前完成")

    # evaluations: 20 satisfied, 5 partly, 5 unsatisfied -> re-handled, then 3 satisfied and 2 unsatisfied
    for i in range(30):
        word = "满意" if i < 20 else "基本满意" if i < 25 else "不满意"
        assert "评价" in chats[i % 10].ask(f"{word} {nums[i]} 意见{i}")
    for i in range(25, 30):
        assert load_status(bot, nums[i]) == "rehandling"
        dchat[depts[i % 3]].ask(f"答复 {nums[i]} 已办结 第二次办理完成")
        word = "满意" if i < 28 else "不满意"
        assert "已办结" in chats[i % 10].ask(f"{word} {nums[i]}")

    with bot.db.Session() as s:
        r = report(s, bot.clock.today(), tz=bot.clock.tz)
        blob = export_xlsx(s, bot.clock.today(), tz=bot.clock.tz)
        merged_into = find_by_number(s, nums[37]).merged_into.number
        assert s.scalar(select(func.count()).select_from(Proposal)) == 40
    assert merged_into == nums[36]
    assert r["totals"] == {"proposal": 36, "suggestion": 4}
    assert r["by_status"] == {
        "已办结": 30, "已答复，待评价": 4, "已立案，承办中": 1, "已合并": 1, "不予立案（转为建议）": 2, "已收到": 2,
    }  # fmt: skip
    assert r["by_category"] == {c: sum(1 for i in range(40) if i % 6 == k) for k, c in enumerate(cats)}
    assert r["accepted"] == 35
    assert r["on_time"] == 30 and r["on_time_counted"] == 35
    assert r["on_time_rate"] == pytest.approx(30 / 35)
    assert r["evaluated"] == 30
    assert r["satisfaction_rate"] == pytest.approx(28 / 30)
    assert r["satisfied_rate"] == pytest.approx(23 / 30)
    zw = r["by_department"]["总务处"]
    assert zw["assigned"] == sum(1 for i in accepted if i % 3 == 0)
    assert zw["on_time"] == sum(1 for i in range(30) if i % 3 == 0)
    assert len(r["public_list"]) == 35 and not any("代表" in str(x) for x in r["public_list"])

    wb = load_workbook(io.BytesIO(blob))
    assert wb.sheetnames == ["汇总", "按部门", "公开清单", "明细"]
    summary = {row[0]: row[1] for row in wb["汇总"].iter_rows(values_only=True) if row and row[0]}
    assert summary["提案"] == 36 and summary["立案提案"] == 35
    assert summary["按时答复率"] == "85.7%" and summary["满意率（满意+基本满意）"] == "93.3%"
    public = list(wb["公开清单"].iter_rows(values_only=True))
    assert len(public) == 36 and public[1][0] == nums[0] and public[1][7] == "第0号已落实"
    assert not any("代表" in str(v) for row in public for v in row if v)
    assert len(list(wb["明细"].iter_rows(values_only=True))) == 41
    assert "按时答复率：85.7%" in reviewer.ask("提案统计")

    # the console's report page shows the same figures
    add_staff(bot, username="clerk9", role="clerk")
    login(client, username="clerk9")
    page = client.get("/admin/proposals/report").get_data(as_text=True)
    for figure in ('id="n-proposal">36<', 'id="n-suggestion">4<', 'id="n-accepted">35<', 'id="on-time">85.7%<',
                   'id="satisfaction">93.3%<'):  # fmt: skip
        assert figure in page, figure
    assert "代表甲" not in page


def load_status(bot, number) -> str:
    with bot.db.Session() as s:
        return find_by_number(s, number).status


def test_report_on_empty_database(bot):
    with bot.db.Session() as s:
        r = report(s, date(2027, 1, 1), tz=bot.clock.tz)
        assert r["on_time_rate"] is None and r["satisfaction_rate"] is None
        blob = export_xlsx(s, date(2027, 1, 1), tz=bot.clock.tz)
        assert load_workbook(io.BytesIO(blob)).sheetnames[0] == "汇总"


def test_demo_seed_is_repeatable(bot):
    from models.proposal import Department, seed_demo

    for i in range(8):
        add_member(bot, name=f"职工{i}")
    with bot.db.transaction() as s:
        first = seed_demo(s, bot.clock.now(), bot.clock.tz)
    with bot.db.transaction() as s:
        again = seed_demo(s, bot.clock.now(), bot.clock.tz)
        c = s.scalar(select(Congress))
        assert c.window_open(bot.clock.now())
        assert all(d.contacts for d in s.scalars(select(Department)))
    assert first == {"congress": 1, "departments": 7, "contacts": 7}
    assert again == {"congress": 0, "departments": 0, "contacts": 0}


def test_two_reviewers_accepting_at_once_only_one_wins(any_app):
    bot = any_app.extensions["bot"]
    make_congress(bot, n=0)
    m = add_member(bot, name="代表", is_delegate=True)
    make_department(bot, "总务处")
    with bot.db.transaction() as s:
        p = submit(s, member=s.get(Member, m.id), kind="proposal", category="其他", title="t", situation="s",
                   measures="m", congress=s.scalar(select(Congress)), secret="k", now=bot.clock.now(),
                   tz=bot.clock.tz)  # fmt: skip
        p.status = "under_review"
        pid = p.id
    from handlers.proposals import do_accept
    from models.proposal import Department, TransitionError

    results: list[str] = []
    postgres = bot.db.engine.dialect.name == "postgresql"
    barrier = threading.Barrier(2)

    def work() -> None:
        try:
            with bot.db.transaction() as s:
                p = s.get(Proposal, pid)
                if postgres:
                    barrier.wait(timeout=30)  # both have read "under_review" before either writes
                dept = s.scalar(select(Department))
                do_accept(bot, s, p, dept, [], date(2099, 1, 1), None, bot.clock.now())
            results.append("ok")
        except TransitionError as e:
            results.append(str(e))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    refused = [r for r in results if r != "ok"]
    assert len(results) == 2 and len(refused) == 1, results
    # PostgreSQL: the loser read "under_review" and is stopped by the compare-and-set;
    # SQLite: writers are serialised, so the loser already reads "accepted"
    assert ("刚刚已被其他人处理" if postgres else "不能改为") in refused[0]
    assert results.count("ok") == 1
    with bot.db.Session() as s:
        p = s.get(Proposal, pid)
        assert p.status == "accepted"
        assert [e.to_status for e in p.events].count("accepted") == 1
