"""Proposal rules closed after the audit: co-signers are always delegates (also when merged), co-signing stops
with the window, declined proposals are answered as suggestions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.proposals import close_cosign_window
from models.member import Member
from models.proposal import Congress, CoSign, find_by_number, signed_count, transition
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
