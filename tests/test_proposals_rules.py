"""Proposal rules closed after the audit: co-signers are always delegates (also when merged), co-signing stops
with the window, declined proposals are answered as suggestions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.proposals import close_cosign_window
from models.member import Member
from models.messaging import InboundMessage, OutboxMessage
from models.proposal import Congress, CoSign, Department, Proposal, find_by_number, signed_count, transition
from tests.test_proposals import _to_review, add, cast, load, pushes, write_proposal  # noqa: F401  (fixture)


def _open_congress(bot, chat_with, n=2):
    """A congress where everyone may submit formal proposals; co-signers must still be delegates."""
    from tests.test_proposals import make_congress

    make_congress(bot, n=n, delegates_only=False)
    ppl = {
        "plain": add(bot, "钱会员"),
        "plain2": add(bot, "冯会员"),
        "d1": add(bot, "李代表", is_delegate=True),
        "d2": add(bot, "王代表", is_delegate=True),
        "d3": add(bot, "赵代表", is_delegate=True),
        "reviewer": add(bot, "孙委员", roles=("proposal_reviewer",)),
    }
    return ppl, {k: chat_with(m) for k, m in ppl.items()}


# ---------------------------------------------------------------------------------------------- co-signers
def test_cosigners_are_delegates_even_when_everyone_may_submit(bot, chat_with):
    ppl, chats = _open_congress(bot, chat_with)
    c = chats["plain"]
    for t in (
        "我要提案",
        "3",
        "增设职工停车位",
        "北门停车位太少，夜班职工找不到车位。",
        "划设50个车位",
        "跳过",
    ):
        c.ask(t)
    assert "冯会员不是职工代表，不能附议" in c.ask("冯会员")
    assert "请核对" in c.ask("李代表")
    num = c.ask("确认").split("编号 ")[1].split("，")[0]
    p = load(bot, num)
    assert p.kind == "proposal" and p.status == "cosigning"  # a non-delegate may submit here
    reply = chats["plain2"].ask(f"附议 {num}")
    assert "只有职工代表可以附议" in reply and "提个建议" in reply
    assert "已附议" in chats["d1"].ask(f"附议 {num}")
    assert load(bot, num).status == "cosigning"
    assert "已附议" in chats["d2"].ask(f"附议 {num}")
    assert load(bot, num).status == "under_review"
    assert not any(c.member_id == ppl["plain2"].id for c in load(bot, num).cosigns)


def test_only_delegates_count_at_the_window_end(bot, chat_with):
    """A co-sign recorded for someone who is (no longer) a delegate does not make up the number."""
    ppl, chats = _open_congress(bot, chat_with)
    num, _ = write_proposal(chats["d1"])
    chats["d2"].ask(f"附议 {num}")
    with bot.db.transaction() as s:
        p = find_by_number(s, num)
        p.cosigns.append(
            CoSign(proposal_id=p.id, member_id=ppl["plain"].id, role="cosigner", status="signed")
        )
        s.flush()
        assert signed_count(s, p) == 1
    assert close_cosign_window(bot, bot.clock.now() + timedelta(days=8)) == 1
    assert load(bot, num).status == "received"


def _legacy_in_review(bot, chats, proposer: str, cosigner: Member) -> str:
    """A proposal that reached review with a non-delegate co-signer (data from before the rule)."""
    num, _ = write_proposal(chats[proposer], title="停车难")
    with bot.db.transaction() as s:
        p = find_by_number(s, num)
        p.cosigns.append(CoSign(proposal_id=p.id, member_id=cosigner.id, role="cosigner", status="signed"))
        s.flush()
        transition(s, p, "under_review", None, "旧数据")
    return num


def test_a_merge_copies_only_cosigners_who_are_delegates(bot, chat_with):
    ppl, chats = _open_congress(bot, chat_with)
    dst, _ = write_proposal(chats["d1"], title="增设职工停车位")
    chats["d2"].ask(f"附议 {dst}")  # 1 of 2
    src = _legacy_in_review(bot, chats, "plain", ppl["plain2"])
    assert "合并" in chats["reviewer"].ask(f"合并 {src} 到 {dst}")
    p = load(bot, dst)
    assert p.status == "cosigning" and "钱会员" in [m.name for m in p.proposers()]  # every proposer is kept
    assert ppl["plain2"].id not in {c.member_id for c in p.cosigns}
    with bot.db.Session() as s:
        assert signed_count(s, find_by_number(s, dst)) == 1
    # a merged proposal whose co-signers are delegates does make up the number: on to review
    src2, _ = write_proposal(chats["plain2"], title="停车位不够")
    chats["d3"].ask(f"附议 {src2}")
    chats["d1"].ask(f"附议 {src2}")
    assert load(bot, src2).status == "under_review"
    chats["reviewer"].ask(f"合并 {src2} 到 {dst}")
    p = load(bot, dst)
    assert p.status == "under_review" and {"钱会员", "冯会员"} <= {m.name for m in p.proposers()}
    assert any(dst in t and "待审查" in t for t in pushes(bot, ppl["reviewer"]))


# ---------------------------------------------------------------------------------------------- window, decline
def test_cosigning_is_refused_after_the_window_closes(bot, cast):  # noqa: F811
    ppl, chats = cast
    num, _ = write_proposal(chats["proposer"])
    assert "已附议" in chats["d1"].ask(f"附议 {num}")
    with bot.db.transaction() as s:
        c = s.scalar(select(Congress))
        c.collect_end = bot.clock.now() - timedelta(minutes=1)
    reply = chats["d2"].ask(f"附议 {num}")
    assert "截止" in reply and "不能再附议" in reply
    p = load(bot, num)
    assert [m.name for m in p.signed_cosigners()] == ["李代表"] and p.status == "cosigning"
    assert "截止" in chats["d3"].ask(action={"do": "proposal_cosign", "id": p.id})


def test_a_declined_proposal_is_answered_as_a_suggestion(bot, cast):  # noqa: F811
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"不立案 {num} 属于个人诉求，转总务处研究")
    p = load(bot, num)
    assert (p.status, p.kind, p.submitted_as) == ("declined", "suggestion", "proposal")
    assert "指定的承办部门" in chats["baowei"].ask(f"答复 {num} 已研究")
    assert "已答复" in chats["zongwu"].ask(f"答复 {num} 已研究，明年统筹考虑")  # the department it named
    p = load(bot, num)
    assert p.status == "answered" and p.replies[-1].text.startswith("已研究")
    assert p.replies[-1].department.name == "总务处"
    for who in ("proposer", "d1", "d2"):
        assert any("您的建议" in t and num in t and "有答复了" in t for t in pushes(bot, ppl[who])), who
    assert "不能改为" in chats["reviewer"].ask(f"答复 {num} 再答一次")


# ---------------------------------------------------------------------------------------------- closing
def _nightly(bot, days: int) -> list[str]:
    """Travel `days` ahead and run the scheduler's nightly group; returns the jobs that ran."""
    from bot.scheduler import JobRunner

    bot.clock.offset = timedelta(days=days)
    runner = JobRunner(bot)
    runner.group("nightly")
    return runner.runs


def test_an_unevaluated_reply_is_closed_by_the_nightly_job(bot, cast):  # noqa: F811
    ppl, chats = cast
    with bot.db.transaction() as s:
        s.scalar(select(Congress)).close_after_days = 10  # configurable (default 15)
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处")
    chats["zongwu"].ask(f"答复 {num} 已办结 已增设车位")
    assert any("请在10天内评价" in t for t in pushes(bot, ppl["proposer"]))
    assert "close_unevaluated" in _nightly(bot, 9)
    assert load(bot, num).status == "replied"
    _nightly(bot, 10)
    p = load(bot, num)
    assert p.status == "closed" and p.closed_at is not None and p.events[-1].actor_id is None
    assert "10天未评价" in p.events[-1].note
    for who in ("proposer", "d1", "d2"):
        assert any("未评价，按规定办结" in t for t in pushes(bot, ppl[who])), who
    assert any(num in t and "已按规定办结" in t for t in pushes(bot, ppl["zongwu"]))
    before = len(pushes(bot, ppl["proposer"]))
    _nightly(bot, 11)
    assert len(pushes(bot, ppl["proposer"])) == before
    assert "现在不能评价" in chats["proposer"].ask(f"满意 {num}")


def _suggest(chat, title: str) -> str:
    chat.ask("提个建议")
    for t in ("2", title, "门诊候诊区座位不够，老人要站很久。", "增加30把座椅", "总务处"):
        chat.ask(t)
    return chat.ask("确认").split("编号 ")[1].split("，")[0]


def test_an_answered_suggestion_closes_on_thanks_or_after_n_days(bot, cast):  # noqa: F811
    ppl, chats = cast
    c = chats["plain"]
    assert c.ask("谢谢") == ""  # nothing waiting: small talk stays unanswered
    first = _suggest(c, "门诊增加座椅")
    chats["zongwu"].ask(f"答复 {first} 已增加30把座椅")
    assert any("“谢谢”" in t and "15天后自动办结" in t for t in pushes(bot, ppl["plain"]))
    assert "不再退回" in c.ask(f"不满意 {first} 还是不够")
    assert load(bot, first).status == "answered"
    assert "已办结" in c.ask("谢谢")
    p = load(bot, first)
    assert p.status == "closed" and p.events[-1].actor_id == ppl["plain"].id
    second = _suggest(c, "门诊增加饮水机")
    third = _suggest(c, "门诊增加轮椅")
    for n in (second, third):
        chats["zongwu"].ask(f"答复 {n} 已安排")
    reply = c.ask("谢谢")
    assert second in reply and third in reply and "满意 编号" in reply  # which one? nothing closed
    assert "已办结" in c.ask(f"满意 {third}")
    assert "只有提出人" in chats["d1"].ask(f"满意 {second}")
    _nightly(bot, 14)
    assert load(bot, second).status == "answered"
    _nightly(bot, 15)
    assert load(bot, second).status == "closed"
    assert any(second in t and "已答复满15天" in t for t in pushes(bot, ppl["plain"]))


def test_an_anonymous_sender_closes_by_thanks_without_being_named(bot, cast, chat_with):  # noqa: F811
    ppl, chats = cast
    sender = add(bot, "冯匿名")
    c = chat_with(sender)
    c.ask("匿名反映个问题")
    for t in ("4", "防护用品不够", "发热门诊防护服经常断货，护士只能重复使用。", "增加库存", "跳过"):
        c.ask(t)
    c.ask("确认")
    with bot.db.Session() as s:
        num = s.scalar(select(Proposal.number).where(Proposal.anonymous.is_(True)))
    chats["reviewer"].ask(f"答复 {num} 已补充防护服库存")
    assert any("有答复了" in x.get("text", "") and "谢谢" in x.get("text", "") for x in c.inbox())
    assert "不再退回" in c.ask(f"不满意 {num} 还是不够")
    assert "已办结" in c.ask("满意")
    p = load(bot, num)
    assert p.status == "closed" and sender.id not in {e.actor_id for e in p.events}
    assert p.events[-1].actor_id is None and "满意" in p.events[-1].note
    with bot.db.Session() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.target_id == c.user_id)).all()
        assert not any(num in repr(r.payload) for r in rows)  # the answers to the sender were scrubbed
        logged = s.scalars(select(InboundMessage).where(InboundMessage.user_id == c.user_id)).all()
        assert not any(num in repr(r.envelope) for r in logged)


def test_the_demo_command_seeds_a_congress_and_departments(app, bot):
    r = app.test_cli_runner().invoke(args=["demo", "--members", "30"])
    assert r.exit_code == 0, r.output
    assert "提案：新增届次 1 个、承办部门 7 个" in r.output
    with bot.db.Session() as s:
        c = s.scalar(select(Congress))
        assert c is not None and c.window_open(bot.clock.now())
        assert all(d.contacts for d in s.scalars(select(Department)))


# ---------------------------------------------------------------------------------------------- public list
def test_public_list_in_chat_is_short_paged_and_names_nobody(bot, cast, chat_with):  # noqa: F811
    from handlers.proposals import do_accept, record_reply
    from models.proposal import submit

    ppl, chats = cast
    assert "还没有立案的提案" in chats["plain"].ask("提案公开")
    now, due = bot.clock.now(), bot.clock.today() + timedelta(days=30)
    with bot.db.transaction() as s:
        c = s.scalar(select(Congress))
        dept = s.scalar(select(Department).where(Department.name == "总务处"))
        me = s.get(Member, ppl["proposer"].id)
        for i in range(13):
            p = submit(s, member=me, kind="proposal", category="其他", title=f"第{i + 1}件提案", situation="s",
                       measures="m", congress=c, secret="k", now=now, tz=bot.clock.tz)  # fmt: skip
            transition(s, p, "under_review", None)
            if i == 12:
                break  # still under review: not public
            do_accept(bot, s, p, dept, [], due, None, now)
            if i % 2 == 0:
                text = f"已落实第{i + 1}件，" + "具体情况如下" * 10
                record_reply(bot, s, p, dept, "done", text, None, None, now)
    first = chats["plain"].ask("提案公开")
    assert "立案提案共 12 件（第1/2页）" in first and first.count("｜总务处｜") == 10
    assert "已办结：已落实第1件" in first and "…" in first and "尚未答复" in first
    assert "发送“提案公开 2”看下一页" in first
    second = chats["plain"].ask("提案公开 2")
    assert second.count("｜总务处｜") == 2 and "第12件提案" in second and "下一页" not in second
    assert "第13件提案" not in first + second
    assert not any(m.name in first + second for m in ppl.values())
    assert "第1件提案" in chats["d1"].ask("提案答复")
    group = chat_with(ppl["plain"], group_id=3)
    assert "立案提案共 12 件" in group.ask("@工会小助手 提案公开")  # may be shared with everyone
