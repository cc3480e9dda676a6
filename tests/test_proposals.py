"""Proposals and suggestions: state machine, chat dialogs, co-signing, review, replies, evaluation, chasing."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from handlers.proposals import chase_proposals, close_cosign_window
from models.member import Member
from models.messaging import Dialog, InboundMessage, OutboxMessage
from models.proposal import (
    STATUSES,
    TRANSITIONS,
    AnonymousSender,
    Congress,
    Department,
    DepartmentContact,
    Proposal,
    TransitionError,
    find_by_number,
    submit,
    transition,
)


# ---------------------------------------------------------------------------------------------- helpers
def make_congress(bot, days_left=7, n=2, delegates_only=True, numbering="year", code=""):
    now = bot.clock.now()
    with bot.db.transaction() as s:
        c = Congress(
            name="第三届第二次",
            year=2027,
            code=code,
            collect_start=now - timedelta(days=1),
            collect_end=now + timedelta(days=days_left),
            cosigners_required=n,
            delegates_only=delegates_only,
            numbering=numbering,
        )
        s.add(c)
        s.flush()
        return c.id


def make_department(bot, name, *contacts):
    with bot.db.transaction() as s:
        d = Department(name=name)
        s.add(d)
        s.flush()
        for m in contacts:
            s.add(DepartmentContact(department_id=d.id, member_id=m.id))
        return d.id


def load(bot, number) -> Proposal:
    with bot.db.Session() as s:
        p = find_by_number(s, number)
        assert p is not None, number
        _ = (p.events, p.replies, p.evaluations, p.cosigns, p.lead_department, p.proposer)
        _ = [e.actor for e in p.events]
        return p


def pushes(bot, member) -> list[str]:
    """Texts queued for `member` through notify (not replies)."""
    with bot.db.Session() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.member_id == member.id).order_by(OutboxMessage.id)
        )
        out = []
        for r in rows:
            p = r.payload
            out.append(p["text"] if p["type"] == "text" else "\n".join([p["title"], *p["lines"]]))
        return out


def write_proposal(chat, title="增设职工停车位", cosigners="跳过", category="3", department="总务处"):
    chat.ask("我要提案")
    chat.ask(category)
    chat.ask(title)
    chat.ask("北门停车位太少，夜班职工下班后找不到车位，经常违停被罚。")
    chat.ask("在北门空地划设50个职工车位")
    chat.ask(department)
    chat.ask(cosigners)
    reply = chat.ask("确认")
    num = reply.split("编号 ")[1].split("，")[0].split("\n")[0].strip()
    return num, reply


@pytest.fixture
def cast(bot, chat_with):
    """A congress with its people: proposer and three delegates, a reviewer, a chair, two departments."""
    make_congress(bot)
    ppl = {
        "proposer": add(bot, "刘提案", is_delegate=True),
        "d1": add(bot, "李代表", is_delegate=True),
        "d2": add(bot, "王代表", is_delegate=True),
        "d3": add(bot, "赵代表", is_delegate=True),
        "plain": add(bot, "钱会员"),
        "reviewer": add(bot, "孙委员", roles=("proposal_reviewer",)),
        "chair": add(bot, "周主席", roles=("chair",)),
        "zongwu": add(bot, "吴总务"),
        "baowei": add(bot, "郑保卫"),
    }
    make_department(bot, "总务处", ppl["zongwu"])
    make_department(bot, "保卫处", ppl["baowei"])
    chats = {k: chat_with(m) for k, m in ppl.items()}
    return ppl, chats


def add(bot, name, **kw):
    from tests.conftest import add_member

    return add_member(bot, name=name, **kw)


# ---------------------------------------------------------------------------------------------- state machine
def _new(s, member, kind="proposal", congress=None, anonymous=False, now=None):
    return submit(
        s, member=member, kind=kind, category="其他", title="t", situation="s", measures="m",
        congress=congress, anonymous=anonymous, secret="k", now=now, tz=ZoneInfo("Asia/Shanghai"),
    )  # fmt: skip


def test_every_transition_is_allowed_or_refused_by_the_table(bot):
    m = add(bot, "甲")
    make_congress(bot)
    now = bot.clock.now()
    legal = illegal = 0
    with bot.db.transaction() as s:
        c = s.scalar(select(Congress))
        d = Department(name="总务处")
        s.add(d)
        target = _new(s, s.get(Member, m.id), congress=c, now=now)
        for frm in STATUSES:
            for to in STATUSES:
                p = _new(s, s.get(Member, m.id), congress=c, now=now)
                p.status = frm  # place the proposal in `frm` directly (test setup only)
                p.lead_department_id = d.id
                p.merged_into_id = target.id
                if to in TRANSITIONS[frm]:
                    ev = transition(s, p, to, None, "test")
                    assert (p.status, ev.from_status, ev.to_status) == (to, frm, to)
                    assert p.events[-1] is ev
                    legal += 1
                else:
                    with pytest.raises(TransitionError) as e:
                        transition(s, p, to, None, "test")
                    assert p.status == frm, (frm, to)
                    assert "不能改为" in str(e.value) and p.number in str(e.value)
                    illegal += 1
    assert legal == sum(len(v) for v in TRANSITIONS.values())
    assert legal + illegal == len(STATUSES) ** 2


def test_guards_lead_department_merge_target_and_single_rehandling(bot):
    m = add(bot, "甲")
    make_congress(bot)
    with bot.db.transaction() as s:
        c = s.scalar(select(Congress))
        p = _new(s, s.get(Member, m.id), congress=c, now=bot.clock.now())
        p.status = "under_review"
        with pytest.raises(TransitionError, match="牵头承办部门"):
            transition(s, p, "accepted", None)
        with pytest.raises(TransitionError, match="合并到哪"):
            transition(s, p, "merged", None)
        p.status = "evaluated"
        transition(s, p, "rehandling", None)
        assert p.rehandled
        p.status = "evaluated"
        with pytest.raises(TransitionError, match="重新办理过一次"):
            transition(s, p, "rehandling", None)
        # declining turns a proposal into a suggestion
        q = _new(s, s.get(Member, m.id), congress=c, now=bot.clock.now())
        q.status = "under_review"
        transition(s, q, "declined", None, "理由")
        assert q.kind == "suggestion"
        assert [e.to_status for e in q.events] == ["submitted", "declined"]


# ---------------------------------------------------------------------------------------------- chat: submit
def test_submit_dialog_numbers_and_receipt(bot, cast):
    ppl, chats = cast
    c = chats["proposer"]
    assert "类别" in c.ask("我要提案")
    assert "标题" in c.ask("第三个")
    # restart cleanly to check each step
    c.ask("取消")
    c.ask("写个提案")
    assert "没看懂" in c.ask("随便")
    assert "标题" in c.ask("3")
    assert "现状" in c.ask("增设职工停车位")
    assert "措施" in c.ask("北门停车位太少，夜班职工找不到车位。")
    assert "部门" in c.ask("在北门空地划设50个职工车位")
    assert "附议人" in c.ask("跳过")
    assert "不是职工代表" in c.ask("钱会员")
    assert "没有找到" in c.ask("不存在的人")
    preview = c.ask("李代表，王代表")
    assert "请核对" in preview and "后勤保障" in preview and "李代表、王代表" in preview
    assert "修改哪一项" in c.ask("修改")
    c.ask("2")
    assert "请核对" in c.ask("北门增设职工停车位")
    reply = c.ask("确认")
    assert "编号 2027-001" in reply and "还需要 2 位职工代表附议" in reply
    p = load(bot, "2027-001")
    assert p.status == "cosigning" and p.title == "北门增设职工停车位" and p.suggested_department == ""
    assert [x.status for x in p.cosigns] == ["invited", "invited"]
    assert any("请您附议提案 2027-001" in t for t in pushes(bot, ppl["d1"]))
    num, _ = write_proposal(c)
    assert num == "2027-002"


def test_group_chat_is_redirected_without_echo(bot, cast, chat_with):
    ppl, chats = cast
    g = chat_with(ppl["proposer"], group_id=7)
    reply = g.ask("@工会小助手 我要提案 食堂饭菜太贵了")
    assert "私聊" in reply and "食堂" not in reply
    # the private chat is opened the way hardship reports do it: a first message there, nothing echoed
    private = chats["proposer"].inbox()
    assert len(private) == 1 and "发送“提案”" in private[0]["text"] and "食堂" not in private[0]["text"]
    reply = g.ask("@工会小助手 匿名反映个问题 科室排班不公")
    assert "私聊" in reply and "匿名" not in reply and "排班" not in reply
    again = chats["proposer"].inbox()
    assert len(again) == 1 and "排班" not in again[0]["text"]  # a second invitation, still without the words
    with bot.db.Session() as s:
        assert s.scalar(select(Dialog)) is None  # nothing was started in the group
    assert "类别" in chats["proposer"].ask("提案")


def test_non_delegate_and_closed_window_submit_suggestions(bot, cast):
    ppl, chats = cast
    reply = chats["plain"].ask("我想提提案")
    assert "职工代表" in reply and "合理化建议" in reply
    for t in ("1", "食堂增加夜宵", "夜班职工吃不上饭，外卖又不让进。", "食堂晚上开一个窗口", "跳过"):
        chats["plain"].ask(t)
    reply = chats["plain"].ask("确认")
    assert "合理化建议，编号 建" in reply
    with bot.db.Session() as s:
        p = s.scalar(select(Proposal).where(Proposal.title == "食堂增加夜宵"))
        assert p.kind == "suggestion" and p.status == "received" and p.number.startswith("建")
    assert "合理化建议" in chats["d1"].ask("我有个金点子")


def test_cosign_rules(bot, cast):
    ppl, chats = cast
    num, _ = write_proposal(chats["proposer"], cosigners="李代表")
    assert "只有职工代表" in chats["plain"].ask(f"附议 {num}")
    assert "不需要附议" in chats["proposer"].ask(f"附议 {num}")
    assert "没有找到" in chats["d2"].ask("附议 2027-099")
    assert "已附议" in chats["d2"].ask(f"附议 {num}")
    assert "已经附议过" in chats["d2"].ask(f"附议{num}")
    assert any("王代表附议了您的提案" in t for t in pushes(bot, ppl["proposer"]))
    # the invited co-signer declines through the card button
    p = load(bot, num)
    chats["d1"].ask(action={"do": "proposal_uncosign", "id": p.id})
    assert any("李代表不附议" in t for t in pushes(bot, ppl["proposer"]))
    assert load(bot, num).status == "cosigning"
    # the second co-sign completes it: review
    assert "已附议" in chats["d3"].ask(f"附议 {num}")
    p = load(bot, num)
    assert p.status == "under_review"
    assert any(num in t and "待审查" in t for t in pushes(bot, ppl["reviewer"]))
    assert any("已进入提案委员会审查" in t for t in pushes(bot, ppl["proposer"]))
    assert "附议不能撤回" in chats["d3"].ask(f"不附议 {num}")
    # 附议 without a number lists what is open
    assert num in chats["d1"].ask("附议")


def test_window_end_converts_short_proposals_to_suggestions(bot, cast):
    ppl, chats = cast
    short, _ = write_proposal(chats["proposer"])
    chats["d1"].ask(f"附议 {short}")
    full, _ = write_proposal(chats["d1"], title="增加护士休息室")
    with bot.db.transaction() as s:
        p = find_by_number(s, full)
        p.congress.cosigners_required = 1
    chats["d2"].ask(f"附议 {full}")
    assert load(bot, full).status == "under_review"
    assert close_cosign_window(bot, bot.clock.now()) == 0  # window still open
    assert load(bot, short).status == "cosigning"
    later = bot.clock.now() + timedelta(days=8)
    with bot.db.transaction() as s:
        s.scalar(select(Congress)).cosigners_required = 2
    assert close_cosign_window(bot, later) == 1
    assert close_cosign_window(bot, later) == 0
    p = load(bot, short)
    assert p.status == "received" and p.kind == "suggestion"
    told = [t for t in pushes(bot, ppl["proposer"]) if "转为合理化建议" in t]
    assert len(told) == 1 and "不足2人" in told[0]
    assert [e.to_status for e in p.events if e.from_status != e.to_status][-1] == "received"


# ---------------------------------------------------------------------------------------------- review and handling
def _to_review(bot, chats, title="增设职工停车位"):
    num, _ = write_proposal(chats["proposer"], cosigners="李代表，王代表", title=title)
    chats["d1"].ask(f"附议 {num}")
    chats["d2"].ask(f"附议 {num}")
    assert load(bot, num).status == "under_review"
    return num


def test_review_accept_reply_evaluate_rehandle_once(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    assert "只有提案委员会" in chats["d1"].ask(f"立案 {num} 总务处")
    assert num in chats["reviewer"].ask("待审提案")
    assert "没有找到承办部门" in chats["reviewer"].ask(f"立案 {num} 财务处")
    reply = chats["reviewer"].ask(f"立案 {num} 总务处 协办 保卫处 期限 2099-12-31")
    assert "已立案" in reply and "保卫处" in reply
    p = load(bot, num)
    assert p.status == "accepted" and p.due_date == date(2099, 12, 31)
    assert any("请承办提案" in t for t in pushes(bot, ppl["zongwu"]))
    assert any("请承办提案" in t for t in pushes(bot, ppl["baowei"]))
    for who in ("proposer", "d1", "d2"):
        assert any("已立案" in t for t in pushes(bot, ppl[who])), who
    # illegal: accepting twice
    assert "不能改为" in chats["reviewer"].ask(f"立案 {num} 总务处")
    # replies
    assert "不是交给您部门" in chats["plain"].ask(f"答复 {num} 已办结 好了")
    assert "请写明计划和完成日期" in chats["zongwu"].ask(f"答复 {num} 办理中 正在做")
    assert "协办答复" in chats["baowei"].ask(f"答复 {num} 已办结 保卫处已配合划线")
    assert load(bot, num).status == "accepted"
    assert "已答复" in chats["zongwu"].ask(f"答复 {num} 办理中 已完成选址，预计 2099-06-30 前完工")
    p = load(bot, num)
    assert p.status == "replied" and p.replies[-1].plan_date == date(2099, 6, 30)
    assert any("有答复了" in t for t in pushes(bot, ppl["proposer"]))
    # only the proposer evaluates; unsatisfied sends it back once
    assert "只有提案人" in chats["d1"].ask(f"满意 {num}")
    reply = chats["proposer"].ask(f"不满意 {num} 进度太慢")
    assert "重新办理" in reply
    p = load(bot, num)
    assert p.status == "rehandling" and p.rehandled and p.evaluations[-1].comment == "进度太慢"
    assert any("不满意" in t and "重新办理" in t for t in pushes(bot, ppl["zongwu"]))
    assert "现在不能评价" in chats["proposer"].ask(f"满意 {num}")
    chats["zongwu"].ask(f"答复 {num} 已办结 50个车位已启用")
    reply = chats["proposer"].ask(f"不满意 {num} 还是不够")
    assert "已办结" in reply and "重新办理过一次" in reply
    p = load(bot, num)
    assert p.status == "closed" and len(p.replies) == 3 and [r.round for r in p.replies] == [1, 1, 2]
    steps = [e.to_status for e in p.events if e.from_status != e.to_status]
    assert steps == [
        "submitted", "cosigning", "under_review", "accepted", "replied", "evaluated", "rehandling",
        "replied", "evaluated", "closed",
    ]  # fmt: skip
    # the timeline shows who did what
    tl = chats["d1"].ask(f"提案 {num}")
    assert "孙委员" in tl and "吴总务" in tl and "已办结" in tl
    assert "只有提案人" in chats["plain"].ask(f"提案 {num}")


def test_satisfied_by_button_closes(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处")
    assert load(bot, num).due_date == bot.clock.today() + timedelta(days=30)
    chats["zongwu"].ask(f"答复 {num} 已办结 已增设车位")
    p = load(bot, num)
    chats["proposer"].ask(action={"do": "proposal_eval", "id": p.id, "rating": "partly"})
    p = load(bot, num)
    assert p.status == "closed" and p.evaluations[-1].rating == "partly"


def test_evaluate_without_number_uses_the_only_waiting_one(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处")
    chats["zongwu"].ask(f"答复 {num} 暂不能办 今年预算已用完，明年列入计划")
    assert "已办结" in chats["proposer"].ask("对答复满意")
    assert load(bot, num).evaluations[-1].rating == "satisfied"


def test_decline_and_merge(bot, cast):
    ppl, chats = cast
    a = _to_review(bot, chats)
    b, _ = write_proposal(chats["d3"], title="停车位不够")
    chats["d1"].ask(f"附议 {b}")
    chats["d2"].ask(f"附议 {b}")
    assert "请写明不立案的理由" in chats["reviewer"].ask(f"不立案 {a}")
    c = _to_review(bot, chats, title="食堂涨价")
    assert "已转为合理化建议" in chats["reviewer"].ask(f"不立案 {c} 属于经营事项，转食堂研究")
    p = load(bot, c)
    assert p.status == "declined" and p.kind == "suggestion" and p.decline_reason.startswith("属于经营")
    assert any("不予立案" in t and "属于经营事项" in t for t in pushes(bot, ppl["proposer"]))
    assert "合并" in chats["reviewer"].ask(f"合并 {b} 到 {a}")
    src, dst = load(bot, b), load(bot, a)
    assert src.status == "merged" and src.merged_into_id == dst.id
    assert "赵代表" in [m.name for m in dst.proposers()]
    assert any("已合并办理" in t for t in pushes(bot, ppl["d3"]))
    chats["reviewer"].ask(f"立案 {a} 总务处")
    assert any(f"{a}" in t and "已立案" in t for t in pushes(bot, ppl["d3"]))  # merged proposer is told
    assert "不能改为" in chats["reviewer"].ask(f"合并 {c} 到 {a}")


def test_suggestion_answered_by_the_named_department(bot, cast):
    ppl, chats = cast
    c = chats["plain"]
    c.ask("提个建议")
    for t in ("2", "门诊增加座椅", "门诊候诊区座位不够，老人要站很久。", "增加30把座椅", "总务处"):
        c.ask(t)
    num = c.ask("确认").split("编号 ")[1].split("，")[0]
    assert any(num in t for t in pushes(bot, ppl["reviewer"]))
    assert "指定的承办部门" in chats["baowei"].ask(f"答复 {num} 已增加30把座椅")
    assert "已答复" in chats["zongwu"].ask(f"答复 {num} 已增加30把座椅")
    assert "不能改为" in chats["reviewer"].ask(f"答复 {num} 再补充一次")
    assert load(bot, num).status == "answered"
    assert any("有答复了" in t for t in pushes(bot, ppl["plain"]))
    assert num in c.ask("我的建议")


# ---------------------------------------------------------------------------------------------- anonymity
def test_anonymous_suggestion_hides_the_sender_everywhere(bot, cast):
    ppl, chats = cast
    c = chats["plain"]
    assert "匿名" in c.ask("不想留名，提个意见")
    for t in ("5", "科室排班不公平", "某科室长期让新人连续值夜班，身体吃不消。", "排班公开透明", "跳过"):
        c.ask(t)
    reply = c.ask("确认")
    assert "已匿名收到" in reply and "建" not in reply
    with bot.db.Session() as s:
        p = s.scalar(select(Proposal).where(Proposal.anonymous.is_(True)))
        num = p.number
        assert p.anonymous and p.proposer_id is None and p.kind == "suggestion"
        assert all(e.actor_id is None for e in p.events)
        row = s.get(AnonymousSender, p.id)
        assert len(row.sender_hash) == 64 and set(AnonymousSender.__table__.columns.keys()) == {
            "proposal_id",
            "sender_hash",
        }
        assert not AnonymousSender.__table__.foreign_keys - {
            fk for fk in AnonymousSender.__table__.foreign_keys if fk.column.table.name == "proposal"
        }
        # the text is not kept beside the sender's id in the inbound log
        logged = list(s.scalars(select(InboundMessage)))
        assert not any("连续值夜班" in repr(r.envelope) for r in logged)
        assert not any(r.user_id == c.user_id and r.handler == "dialog:proposal" for r in logged)
        assert not any("连续值夜班" in repr(r.payload) for r in s.scalars(select(OutboxMessage)))
        local = p.created_at.astimezone(bot.clock.tz)
        assert (local.hour, local.minute, local.second) == (0, 0, 0)  # only the day is stored
        pid = p.id
    # the reviewer sees the timeline, but only 匿名
    tl = chats["reviewer"].ask(f"提案 {num}")
    assert "匿名" in tl and "钱会员" not in tl
    # the sender still gets the answer privately, and finds it in 我的提案
    chats["reviewer"].ask(f"答复 {num} 已调整排班规则，新人夜班每月不超过6个")
    with bot.db.Session() as s:
        rows = list(
            s.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("proposal:anon:%")))
        )
        assert len(rows) == 1 and rows[0].member_id is None and f":{pid}:" not in rows[0].idempotency_key
    got = c.inbox()
    assert any("有答复了" in x.get("text", "") for x in got)
    assert num in c.ask("我的提案")
    assert "匿名" in c.ask(f"提案 {num}")
    # report and export never name them
    from models.proposal import export_xlsx, report

    with bot.db.Session() as s:
        r = report(s, bot.clock.today(), tz=bot.clock.tz)
        blob = export_xlsx(s, bot.clock.today(), tz=bot.clock.tz)
    assert "钱会员" not in repr(r)
    import io

    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(blob))
    cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v]
    assert num in cells and "匿名" in cells and not any("钱会员" in v for v in cells)


# ---------------------------------------------------------------------------------------------- chasing
def test_chasing_on_a_travelled_clock(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    due = bot.clock.today() + timedelta(days=10)
    chats["reviewer"].ask(f"立案 {num} 总务处 期限 {due.isoformat()}")
    base = bot.clock.at(bot.clock.today(), 9)

    def chased():
        return [t for t in pushes(bot, ppl["zongwu"]) if "督办" in t]

    def run(day):
        before = len(chased()) + len(escalated())
        chase_proposals(bot, base + timedelta(days=day))
        return len(chased()) + len(escalated()) - before

    def escalated():
        return [t for t in pushes(bot, ppl["chair"]) if "逾期" in t]

    assert run(0) == 0 and run(6) == 0
    assert run(7) == 1 and run(7) == 0  # 3 days before; twice sends once
    assert run(8) == 0 and run(10) == 0  # due day
    assert run(12) == 0 and run(13) == 1 and run(13) == 0  # 3 days late
    assert run(16) == 1 and run(19) == 1
    assert len(chased()) == 4 and "已超过答复期限 9 天" in chased()[-1]
    assert not escalated()
    assert run(25) == 2  # 15 days late: department + chair
    assert run(25) == 0
    assert "逾期 15 天" in escalated()[0]
    chats["zongwu"].ask(f"答复 {num} 已办结 完成")
    assert run(28) == 0


def test_buttons_preview_and_cosign_card(bot, cast):
    ppl, chats = cast
    c = chats["proposer"]
    for t in (
        "提交提案",
        "6",
        "职工食堂延长供餐",
        "夜班职工吃不上热饭，影响健康。",
        "食堂延长到晚上9点",
        "跳过",
    ):
        c.ask(t)
    payloads = c.say("赵代表")
    card = payloads[-1]
    assert card["type"] == "card" and [b["label"] for b in card["buttons"]] == ["确认提交", "修改", "取消"]
    reply = c.ask(action=card["buttons"][0]["action"])
    assert "编号 2027-001" in reply
    assert "已经处理过" in c.ask(action={"do": "proposal_confirm"})  # a second click does nothing
    invite = [p for p in chats["d3"].inbox() if p.get("type") == "card"][-1]
    assert "请您附议" in invite["title"]
    assert "已附议" in chats["d3"].ask(action=invite["buttons"][0]["action"])
    # "我支持…停车场的提案" finds it among others by its words
    write_proposal(chats["d1"], title="增设职工停车位")
    listed = chats["d2"].ask("我支持小李那个停车场的提案")
    assert "停车位" in listed and "供餐" not in listed
    assert "供餐" in chats["d2"].ask("附议")


def test_timeline_visibility_and_unknown_numbers(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    assert "没有找到" in chats["d1"].ask("提案 2027-099")
    assert "只有提案人" in chats["zongwu"].ask(f"提案 {num}")
    chats["reviewer"].ask(f"立案 {num} 总务处")
    for who in ("proposer", "d1", "d2", "reviewer", "zongwu", "chair"):
        assert "立案" in chats[who].ask(f"提案 {num}"), who
    assert "只有提案人" in chats["baowei"].ask(f"{num} 进度")
    mine = chats["d1"].ask("我的提案到哪一步了")
    assert num in mine and "附议" in mine


def test_every_step_notifies_proposer_and_cosigners(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处")
    chats["zongwu"].ask(f"答复 {num} 已办结 已落实")
    chats["proposer"].ask(f"不满意 {num} 没解决")
    chats["zongwu"].ask(f"答复 {num} 已办结 再次落实")
    chats["proposer"].ask(f"满意 {num}")
    with bot.db.Session() as s:
        p = find_by_number(s, num)
        changes = [e for e in p.events if e.from_status and e.from_status != e.to_status]
        for m in (ppl["d1"], ppl["d2"]):  # co-signers are told of every status change
            keys = set(
                s.scalars(select(OutboxMessage.idempotency_key).where(OutboxMessage.member_id == m.id))
            )
            missing = [
                e for e in changes
                if f"proposal:{p.id}:{e.id}:{m.id}" not in keys
                and e.to_status not in ("cosigning", "evaluated")  # before they signed / told with the next step
            ]  # fmt: skip
            assert not missing, (m.name, [e.to_status for e in missing])
        assert len(changes) == 9
    texts = pushes(bot, ppl["proposer"])
    for phrase in ("附议了您的提案", "已进入提案委员会审查", "已立案", "有答复了"):
        assert any(phrase in t for t in texts), phrase
    texts = pushes(bot, ppl["d1"])  # what the proposer did themselves reaches the co-signers
    for phrase in ("已立案", "有答复了", "“不满意：没解决”，已退回承办部门重新办理", "“满意”，已办结"):
        assert any(phrase in t for t in texts), phrase


def test_chase_job_follows_the_travelled_clock(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    due = bot.clock.today() + timedelta(days=5)
    chats["reviewer"].ask(f"立案 {num} 总务处 期限 {due.isoformat()}")
    bot.clock.offset = timedelta(days=2)  # 3 days before the due date
    chase_proposals(bot)
    chase_proposals(bot)
    bot.clock.offset = timedelta(days=5 + 15)  # 15 days late
    chase_proposals(bot)
    assert len([t for t in pushes(bot, ppl["zongwu"]) if "督办" in t]) == 2
    assert len([t for t in pushes(bot, ppl["chair"]) if "逾期 15 天" in t]) == 1


def test_evaluation_comment_keeps_the_members_words(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"立案 {num} 总务处")
    chats["zongwu"].ask(f"答复 {num} 已办结 已落实")
    chats["proposer"].ask(f"答复不满意，{num} 问题没解决，大家还是不满意")
    p = load(bot, num)
    assert p.evaluations[-1].rating == "unsatisfied"
    assert p.evaluations[-1].comment == "问题没解决，大家还是不满意"  # as typed: full-width comma


def test_proposal_text_is_kept_exactly_as_typed(bot, cast):
    """The router sees 三号 as 3号 and ， as ,: what is stored and shown is what the member wrote."""
    ppl, chats = cast
    title = "三号楼增设一个职工停车场（北门）"
    situation = "第一，三号楼附近没有车位；第二，夜班职工下班后找不到车位！"
    measures = "在北门空地先划一个临时停车区，两个月内完工。"
    c = chats["proposer"]
    c.ask("我要提案")
    c.ask("3")
    c.ask(title)
    c.ask(situation)
    c.ask(measures)
    c.ask("总务处")
    preview = c.ask("李代表，王代表")
    assert f"标题：{title}" in preview and f"建议措施：{measures}" in preview
    assert f"现状和理由：{situation}" in preview
    reply = c.ask("确认")
    num = reply.split("编号 ")[1].split("，")[0]
    assert f"标题“{title}”" in reply
    p = load(bot, num)
    assert (p.title, p.situation, p.measures) == (title, situation, measures)
    assert any(f"建议措施：{measures}" in t for t in pushes(bot, ppl["d1"]))  # the co-sign invitation
    chats["d1"].ask(f"附议 {num}")
    chats["d2"].ask(f"附议 {num}")
    chats["reviewer"].ask(f"立案 {num} 总务处")
    assert any(f"建议措施：{measures}" in t for t in pushes(bot, ppl["zongwu"]))
    chats["zongwu"].ask(f"答复 {num} 已办结：已划出一个临时停车区，共五十个车位。")
    assert load(bot, num).replies[-1].text == "已划出一个临时停车区，共五十个车位。"


def test_decline_reason_is_kept_as_typed(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    chats["reviewer"].ask(f"不立案 {num} 理由：属于三号楼一个科室的事项，转科室处理。")
    assert load(bot, num).decline_reason == "属于三号楼一个科室的事项，转科室处理。"


def test_accept_with_chinese_punctuation_and_suggested_department(bot, cast):
    ppl, chats = cast
    num = _to_review(bot, chats)
    with bot.db.transaction() as s:
        make = find_by_number(s, num)
        make.suggested_department = "总务处"
    reply = chats["reviewer"].ask(f"立案 {num}")
    assert "牵头承办：总务处" in reply
    other = _to_review(bot, chats, title="保安巡逻")
    make_department(bot, "医务处")
    reply = chats["reviewer"].ask(f"立案 {other} 牵头保卫处，协办总务处、医务处，期限12月31日")
    assert "牵头承办：保卫处，协办：总务处、医务处" in reply
    p = load(bot, other)
    assert (p.due_date.month, p.due_date.day) == (12, 31)


def test_open_congress_without_cosigners(bot, chat_with):
    make_congress(bot, n=0, delegates_only=False)
    reviewer = add(bot, "孙委员", roles=("proposal_reviewer",))
    chat_with(reviewer)
    c = chat_with(add(bot, "钱会员"))
    num, reply = write_proposal(c)
    assert "已进入提案委员会审查" in reply
    p = load(bot, num)
    assert p.kind == "proposal" and p.status == "under_review"
    assert [e.to_status for e in p.events] == ["submitted", "under_review"]
    assert any(num in t for t in pushes(bot, reviewer))


def test_a_command_at_the_cosigner_step_is_answered_and_the_step_stays(bot, cast):
    _, chats = cast
    chat = chats["proposer"]
    for answer in (
        "我要提案",
        "3",
        "增设职工停车位",
        "北门停车位太少，夜班职工下班后找不到车位。",
        "划设车位",
        "总务处",
    ):
        chat.ask(answer)
    out = chat.ask("我的提案")
    assert "没有找到“我的提案”" not in out and "刚才的问题还等着您回答" in out and "附议人" in out
    assert "确认" in chat.ask("李代表，王代表")  # still in the dialog: the preview
    assert "编号" in chat.ask("确认")


def test_schedule_preview_lists_proposal_chasing_as_the_job_sends_it(bot, cast):
    from cli.schedule import preview_daily

    ppl, chats = cast
    num = _to_review(bot, chats)
    today = bot.clock.today()
    chats["reviewer"].ask(f"立案 {num} 总务处 期限 {(today + timedelta(days=10)).isoformat()}")
    plan = [(w.date(), what, n) for w, k, what, n in preview_daily(bot, today, today + timedelta(days=30))]
    plan = [(d, what, n) for d, what, n in plan if num in what]
    offsets = sorted(((d - today).days, "主席" in what) for d, what, _ in plan)
    assert offsets == [(7, False), (13, False), (16, False), (19, False), (22, False), (25, False), (25, True),
                       (28, False)]  # fmt: skip
    sent = []
    for day in range(31):
        before = len(pushes(bot, ppl["zongwu"])) + len(pushes(bot, ppl["chair"]))
        chase_proposals(bot, bot.clock.at(today + timedelta(days=day), 8, 30))
        sent += [day] * (len(pushes(bot, ppl["zongwu"])) + len(pushes(bot, ppl["chair"])) - before)
    assert sent == [d for d, _ in offsets]
