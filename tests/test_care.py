"""Hardship reports and care events: dialog, group refusal, proxy, workflow + notifications, jobs, export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.core import LEFT_DIALOG
from models.care import AuditLog, CareEvent, HardshipCase, HardshipRecord
from models.member import Member
from models.messaging import InboundMessage, OutboxMessage

STORY = "我母亲突发脑梗住进重症监护室手术费还差三万元"


def texts_to(bot, member) -> list[str]:
    """Private pushes to a member, oldest first: those delivered (read from the sandbox chat, since care pushes are
    sensitive and the outbox keeps no copy once sent) and those still queued."""
    from bot.adapters import sandbox
    from models.messaging import SandboxMessage

    with bot.db.Session() as s:
        delivered = s.execute(
            select(OutboxMessage.id, SandboxMessage.payload)
            .join(SandboxMessage, SandboxMessage.outbox_id == OutboxMessage.id)
            .where(
                SandboxMessage.chat_id == sandbox.user_id_for(member),
                OutboxMessage.idempotency_key.not_like("reply:%"),
            )
        ).all()
        queued = s.execute(
            select(OutboxMessage.id, OutboxMessage.payload).where(
                OutboxMessage.member_id == member.id, OutboxMessage.status.in_(("pending", "sending"))
            )
        ).all()
    by_id = dict([*delivered, *queued])
    return [by_id[i].get("text") or by_id[i].get("title", "") for i in sorted(by_id)]


def load_case(bot, number=None) -> HardshipCase:
    from models import crypto

    crypto.configure(bot.settings)
    with bot.db.Session() as s:
        q = select(HardshipCase).order_by(HardshipCase.id.desc())
        c = s.scalar(q)
        c.events  # noqa: B018  load
        return c


@pytest.fixture
def people(bot, chat_with):
    from tests.conftest import add_member

    found = {
        "member": add_member(bot, "王芳"),
        "leader": add_member(bot, "刘组长", roles=["group_leader"]),
        "bchair": add_member(bot, "陈主席", roles=["branch_chair"]),
        "other_bchair": add_member(bot, "周分会", roles=["branch_chair"], branch="外科分会", group="骨科小组"),
        "reviewer": add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="工会办公室", group="办公室"),
        "clerk": add_member(bot, "孙干事", roles=["clerk"], branch="工会办公室", group="办公室"),
        "colleague": add_member(bot, "李同事"),
    }
    for m in found.values():
        chat_with(m)  # link a sandbox identity so pushes can reach them
    return found


def submit_case(chat, story=STORY):
    chat.ask("困难申报")
    chat.ask("1")
    chat.ask(story)
    chat.ask("家里4口人，爱人务农")
    chat.ask("1 3 手术费缺口大")
    preview = chat.ask("13800001234 晚上方便")
    receipt = chat.ask("确认")
    return preview, receipt


def test_dialog_submits_a_case_with_receipt(bot, chat_with, people):
    chat = chat_with(people["member"])
    preview, receipt = submit_case(chat)
    assert STORY in preview and "确认" in preview
    assert "KN" in receipt and "我的申请" in receipt
    c = load_case(bot)
    assert c.number in receipt
    assert c.type == "大病" and c.story == STORY and c.status == "submitted"
    assert c.help_kinds == "资金补助,医疗互助理赔协助" and c.help_details == "手术费缺口大"
    assert c.household == "家里4口人，爱人务农"  # as typed


def test_hardship_and_care_words_are_kept_as_typed(bot, chat_with, people):
    """The router sees 三号 as 3号 and ， as ,: the case keeps what the member and the staff wrote."""
    story = "三号那天母亲突发脑梗，住进重症监护室；手术费还差一个大缺口！"
    preview, _ = submit_case(chat_with(people["member"]), story=story)
    assert f"情况：{story}" in preview
    c = load_case(bot)
    assert c.story == story and c.contact == "13800001234 晚上方便"
    chat_with(people["bchair"]).ask(f"核实 {c.number} 家访 今天 情况属实，家中还有两个孩子上学。")
    assert load_case(bot).verify_notes == "情况属实，家中还有两个孩子上学。"
    chat_with(people["colleague"]).ask("报告 住院 王芳 三号楼心内科，第十二床")
    (ev,) = care_events(bot)
    assert ev.details == "三号楼心内科，第十二床"
    chat_with(people["leader"]).ask(f"探望 {ev.id} 今天 刘组长 果篮两个 第三天已能下床走动")
    (ev,) = care_events(bot)
    assert (ev.visitors, ev.gift, ev.visit_note) == ("刘组长", "果篮两个", "第三天已能下床走动")
    # the branch chair is asked to verify, without the story in the push
    pushes = texts_to(bot, people["bchair"])
    assert any(c.number in t and "核实" in t for t in pushes)
    assert not any(STORY in t for t in pushes)


def member_pushes(bot, member) -> str:
    return "\n".join(t or "" for t in texts_to(bot, member))


# ---------------------------------------------------------------------------------------------- dialog
def test_cancel_mid_dialog_saves_nothing(bot, chat_with, people):
    chat = chat_with(people["member"])
    chat.ask("申请困难帮扶")
    chat.ask("2")
    chat.ask(STORY)
    assert chat.ask("取消") == LEFT_DIALOG
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipCase)) is None
    assert "还没有困难帮扶申请" in chat.ask("我的申请")


def test_cancel_button_on_preview(bot, chat_with, people):
    chat = chat_with(people["member"])
    chat.ask("困难申报")
    chat.ask("5")
    chat.ask(STORY)
    chat.ask("跳过")
    chat.ask("2")
    chat.ask("跳过")
    assert "已取消" in chat.ask(action={"do": "hardship_cancel"})
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipCase)) is None


def test_confirm_button_submits(bot, chat_with, people):
    chat = chat_with(people["member"])
    chat.ask("孩子学费交不上")
    chat.ask("子女就学")
    chat.ask("孩子今年考上大学学费八千元还没凑齐")
    chat.ask("跳过")
    chat.ask("1")
    preview = chat.ask("跳过")
    assert "尾号1234" in preview and "未填写" in preview
    receipt = chat.ask(action={"do": "hardship_confirm"})
    c = load_case(bot)
    assert c.number in receipt and c.type == "子女就学" and c.household is None
    assert c.contact == "登记手机尾号1234"


def test_dialog_expires(bot, chat_with, people):
    chat = chat_with(people["member"])
    chat.ask("困难申报")
    chat.ask("1")
    bot.clock.offset = timedelta(minutes=31)
    try:
        reply = chat.ask(STORY)
    finally:
        bot.clock.offset = timedelta()
    assert "超时" in reply
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipCase)) is None


def test_dialog_reasks_on_bad_input(bot, chat_with, people):
    chat = chat_with(people["member"])
    chat.ask("家里遇到难处了，工会能帮吗")
    assert "编号" in chat.ask("不知道")
    chat.ask("6")
    assert "多写几句" in chat.ask("难")
    chat.ask("家里房子失火烧了一半")
    chat.ask("跳过")
    assert "编号" in chat.ask("随便")
    chat.ask("物资")
    chat.ask("跳过")
    assert "确认" in chat.ask("嗯")
    assert "KN" in chat.ask("确认")
    assert load_case(bot).help_kinds == "物资帮助"


def test_case_numbers_count_up_per_year(bot, chat_with, people):
    chat = chat_with(people["member"])
    submit_case(chat)
    submit_case(chat)
    with bot.db.Session() as s:
        numbers = [c.number for c in s.scalars(select(HardshipCase).order_by(HardshipCase.id))]
    year = bot.clock.today().year
    assert numbers == [f"KN{year}-001", f"KN{year}-002"]


# ---------------------------------------------------------------------------------------------- group chat
def test_group_chat_never_takes_or_echoes(bot, chat_with, people):
    member = people["member"]
    group = chat_with(member, group_id=member.group_id)
    said = "@工会小助手 我家里出事了想申请补助，我妈做手术钱不够"
    reply = group.ask(said)
    assert "私聊" in reply
    for words in ("家里", "出事", "补助", "手术", "我妈", "钱不够"):
        assert words not in reply
    # nothing started in the group, a private invitation was sent, and the group text is not kept
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipCase)) is None
        envs = [r.envelope for r in s.scalars(select(InboundMessage))]
    assert not any("手术" in repr(e) for e in envs)
    assert any("困难申报" in t for t in texts_to(bot, member))


def test_group_care_report_is_moved_to_private(bot, chat_with, people):
    member = people["member"]
    group = chat_with(member, group_id=member.group_id)
    reply = group.ask("@工会小助手 李同事住院了 心内科 12床")
    assert "私聊" in reply and "李同事" not in reply and "12床" not in reply
    with bot.db.Session() as s:
        assert s.scalar(select(CareEvent)) is None


def test_group_proxy_report_opens_the_private_chat(bot, chat_with, people):
    leader = people["leader"]
    group = chat_with(leader, group_id=leader.group_id)
    reply = group.ask("@工会小助手 代报 困难 王芳")
    assert "我已私信您" in reply and "王芳" not in reply
    assert any("代报 困难" in (t or "") for t in texts_to(bot, leader))  # the promised private message


def test_group_my_cases_goes_private(bot, chat_with, people):
    member = people["member"]
    group = chat_with(member, group_id=member.group_id)
    assert "私聊" in group.ask("@工会小助手 我的申请")


# ---------------------------------------------------------------------------------------------- proxy
def test_group_leader_reports_for_a_member(bot, chat_with, people):
    leader = chat_with(people["leader"])
    assert "王芳" in leader.ask("代报 困难 王芳")
    leader.ask("3")
    leader.ask("爱人车祸去世，两个孩子上学")
    leader.ask("跳过")
    leader.ask("1")
    preview = leader.ask("跳过")
    assert "代报" in preview
    receipt = leader.ask("确认")
    c = load_case(bot)
    assert c.number in receipt
    assert c.proxy and c.reported_by_id == people["leader"].id and c.member_id == people["member"].id
    told = member_pushes(bot, people["member"])
    assert "刘组长已代您" in told and c.number in told and "车祸" not in told


def test_proxy_only_for_own_unit_and_roles(bot, chat_with, people):
    from tests.conftest import add_member

    add_member(bot, "钱外科", branch="外科分会", group="骨科小组")
    assert "只有小组长和分会主席" in chat_with(people["colleague"]).ask("代报 困难 王芳")
    assert "没有找到" in chat_with(people["leader"]).ask("代报 困难 钱外科")
    add_member(bot, "王芳")  # a namesake in the same group: ask for the employee number
    assert "工号" in chat_with(people["leader"]).ask("代报 困难 王芳")


# ---------------------------------------------------------------------------------------------- workflow
def run_to(bot, chat_with, people, until="closed"):
    submit_case(chat_with(people["member"]))
    c = load_case(bot)
    n = c.number
    bchair, reviewer = chat_with(people["bchair"]), chat_with(people["reviewer"])
    replies = {}
    replies["verify"] = bchair.ask(f"核实 {n} 家访 12月3日 情况属实，内部：邻居反映有债务")
    if until == "verifying":
        return n, replies
    replies["decide"] = reviewer.ask(f"审批 {n} 同意 慰问金 2000 备注 从专项资金列支")
    if until == "decided":
        return n, replies
    replies["deliver"] = reviewer.ask(f"发放 {n} 2000")
    replies["follow_up"] = bchair.ask(f"回访 {n} 已出院，生活基本稳定")
    replies["close"] = reviewer.ask(f"结案 {n}")
    return n, replies


def test_full_workflow_notifies_the_member_plainly(bot, chat_with, people):
    n, replies = run_to(bot, chat_with, people)
    c = load_case(bot)
    assert c.status == "closed" and c.decision == "approved"
    assert c.aid_amount == Decimal("2000") and c.delivered_amount == Decimal("2000")
    assert c.visit_date is not None and c.visit_date.month == 12 and c.visit_date.day == 3
    assert c.verify_notes.startswith("情况属实") and c.decision_note == "从专项资金列支"
    assert c.follow_up_due == c.delivered_on + timedelta(days=30)
    assert [e.to_status for e in c.events] == [
        "submitted", "verifying", "decided", "delivered", "followed_up", "closed"
    ]
    told = member_pushes(bot, people["member"])
    for phrase in ("完成核实", "审批同意：慰问金 2000 元", "已于", "发放", "回访", "已办结"):
        assert phrase in told, phrase
    for secret in ("债务", "邻居", "专项资金", "生活基本稳定", "情况属实"):
        assert secret not in told
    # 我的申请: status and plain messages, never internal notes
    mine = chat_with(people["member"]).ask("我的申请")
    assert n in mine and "已办结" in mine and "审批同意" in mine
    for secret in ("债务", "专项资金", "生活基本稳定"):
        assert secret not in mine
    # notifications are idempotent per event: one push per step
    assert sum(1 for t in texts_to(bot, people["member"]) if "完成核实" in (t or "")) == 1
    # the reviewers were asked to decide after the verification
    assert any(n in t and "审批" in t for t in texts_to(bot, people["reviewer"]))


def test_decline_tells_the_reason_and_closes(bot, chat_with, people):
    n, _ = run_to(bot, chat_with, people, until="verifying")
    reviewer = chat_with(people["reviewer"])
    assert "理由" in reviewer.ask(f"审批 {n} 不同意")
    assert "不同意" in reviewer.ask(f"审批 {n} 不同意 家庭人均收入高于帮扶标准")
    c = load_case(bot)
    assert c.status == "closed" and c.decision == "declined"
    assert c.decision_reason == "家庭人均收入高于帮扶标准"
    told = member_pushes(bot, people["member"])
    assert "暂未获批准" in told and "家庭人均收入高于帮扶标准" in told
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipRecord)) is None


def test_steps_out_of_order_and_by_the_wrong_people_are_refused(bot, chat_with, people):
    submit_case(chat_with(people["member"]))
    n = load_case(bot).number
    reviewer = chat_with(people["reviewer"])
    assert "核实" in reviewer.ask(f"审批 {n} 同意 慰问金 2000")  # not verified yet
    assert "没有办理" in chat_with(people["other_bchair"]).ask(f"核实 {n} 家访 今天 属实")
    assert "没有办理" in chat_with(people["leader"]).ask(f"核实 {n} 家访 今天 属实")
    assert "没有办理" in chat_with(people["member"]).ask(f"核实 {n} 家访 今天 属实")
    assert "没有办理" in chat_with(people["bchair"]).ask(f"审批 {n} 同意 慰问金 2000")
    assert "还没有审批同意" in reviewer.ask(f"发放 {n} 2000")
    assert load_case(bot).status == "submitted"
    with bot.db.Session() as s:
        denied = s.scalars(select(AuditLog).where(AuditLog.detail.like("denied%"))).all()
    assert len(denied) >= 4


def test_transition_table_cell_by_cell(bot, people):
    """Exactly the issue's workflow: no shortcut past delivery or follow-up for an approved case."""
    from models import crypto
    from models.care import STATUSES, TransitionError, transition
    from models.care import submit_case as model_submit
    from models.member import Member

    allowed = {("submitted", "verifying"), ("verifying", "decided"), ("decided", "delivered"),
               ("delivered", "followed_up"), ("followed_up", "closed")}  # fmt: skip
    crypto.configure(bot.settings)
    for decision in ("approved", "declined"):
        for frm in STATUSES:
            for to in STATUSES:
                with bot.db.transaction() as s:
                    m = s.get(Member, people["member"].id)
                    c = model_submit(s, member=m, reported_by=m, type="大病", story="情况", household=None,
                                     help_kinds=[], help_details=None, contact=None, now=bot.clock.now(),
                                     year=2030)  # fmt: skip
                    c.status, c.decision = frm, decision
                    ok = (frm, to) in allowed or (frm, to, decision) == ("decided", "closed", "declined")
                    try:
                        transition(s, c, to, None, now=bot.clock.now())
                        assert ok, (frm, to, decision)
                        assert c.status == to
                    except TransitionError as exc:
                        assert not ok, (frm, to, decision)
                        assert c.number in str(exc) and c.status == frm


def test_an_approved_case_closes_only_after_delivery_and_follow_up(bot, chat_with, people):
    n, _ = run_to(bot, chat_with, people, until="decided")
    reviewer = chat_with(people["reviewer"])
    refused = reviewer.ask(f"结案 {n}")
    assert "不能" in refused and f"发放 {n}" in refused  # says what to type instead
    assert load_case(bot).status == "decided"
    reviewer.ask(f"发放 {n} 2000")
    refused = reviewer.ask(f"结案 {n}")
    assert "不能" in refused and f"回访 {n}" in refused
    assert load_case(bot).status == "delivered"
    assert "已办结" not in member_pushes(bot, people["member"])
    chat_with(people["bchair"]).ask(f"回访 {n} 联系不上，已留言")
    assert "已结案" in reviewer.ask(f"结案 {n}")
    c = load_case(bot)
    assert [e.to_status for e in c.events] == ["submitted", "verifying", "decided", "delivered", "followed_up",
                                               "closed"]  # fmt: skip
    assert "已办结" in member_pushes(bot, people["member"])


def test_branch_chair_reports_for_a_member_of_their_branch(bot, chat_with, people):
    from tests.conftest import add_member

    other_group = add_member(bot, "赵护士", group="呼吸科小组")  # same branch (内科分会), another group
    chat_with(other_group)
    add_member(bot, "钱外科", branch="外科分会", group="骨科小组")
    bchair = chat_with(people["bchair"])
    assert "没有找到" in bchair.ask("代报 困难 钱外科")  # not their branch
    assert "没有找到" in chat_with(people["leader"]).ask("代报 困难 赵护士")  # a group leader: own group only
    assert "赵护士" in bchair.ask("代报 帮扶 赵护士")
    bchair.ask("1")
    bchair.ask("突发重病住院，家中无人照顾")
    bchair.ask("跳过")
    bchair.ask("1")
    assert "代报" in bchair.ask("跳过")
    receipt = bchair.ask("确认")
    c = load_case(bot)
    assert c.number in receipt
    assert c.proxy and c.member_id == other_group.id and c.reported_by_id == people["bchair"].id
    told = member_pushes(bot, other_group)
    assert "陈主席已代您" in told and c.number in told and "重病" not in told
    with bot.db.Session() as s:
        row = s.scalar(select(AuditLog).where(AuditLog.case_id == c.id))
    assert (row.actor_label, row.detail) == ("陈主席", "submitted (proxy)")


def test_approval_creates_the_hardship_record(bot, chat_with, people):
    run_to(bot, chat_with, people, until="decided")
    with bot.db.Session() as s:
        rec = s.scalar(select(HardshipRecord))
    today = bot.clock.today()
    assert rec.member_id == people["member"].id and rec.active
    assert rec.next_review == today.replace(year=today.year + 1)


def test_todo_lists(bot, chat_with, people):
    submit_case(chat_with(people["member"]))
    n = load_case(bot).number
    assert n in chat_with(people["bchair"]).ask("帮扶待办")
    assert "目前没有" in chat_with(people["other_bchair"]).ask("帮扶待办")
    assert "只对" in chat_with(people["leader"]).ask("帮扶待办")
    assert n in chat_with(people["reviewer"]).ask("待审批")


# ---------------------------------------------------------------------------------------------- care events
def care_events(bot) -> list[CareEvent]:
    from models import crypto

    crypto.configure(bot.settings)
    with bot.db.Session() as s:
        rows = list(s.scalars(select(CareEvent).order_by(CareEvent.id)))
        for r in rows:
            r.member  # noqa: B018
        return rows


def test_report_hospital_stay_for_a_colleague(bot, chat_with, people):
    reporter = chat_with(people["colleague"])
    reply = reporter.ask("报告 住院 王芳 心内科 12床")
    assert "王芳" in reply and "探望" in reply
    (ev,) = care_events(bot)
    assert ev.type == "hospital" and ev.member_id == people["member"].id and ev.details == "心内科 12床"
    assert ev.due_on == bot.clock.today() + timedelta(days=3) and ev.status == "open"
    for who in ("leader", "bchair"):
        pushes = member_pushes(bot, people[who])
        assert f"关怀任务 {ev.id}" in pushes and "心内科 12床" in pushes
    assert member_pushes(bot, people["clerk"]) == ""


@pytest.mark.parametrize(
    "text,ctype,details",
    [
        ("我住院了，在外科", "hospital", "外科"),
        ("我下周结婚", "marriage", ""),
        ("我媳妇生了个闺女", "childbirth", "媳妇 个闺女"),
        ("我父亲走了", "bereavement", "父亲"),
        ("家里老人过世了", "bereavement", None),
    ],
)
def test_self_reports(bot, chat_with, people, text, ctype, details):
    reply = chat_with(people["member"]).ask(text)
    assert "收到" in reply
    (ev,) = care_events(bot)
    assert ev.type == ctype and ev.member_id == people["member"].id
    if details is not None:
        assert (ev.details or "") == details


def test_nickname_is_confirmed_never_guessed(bot, chat_with, people):
    from tests.conftest import add_member

    zhou = add_member(bot, "周建国")
    reporter = chat_with(people["colleague"])
    reply = reporter.ask("老周住院了 3病区")
    assert "周建国" in reply and "1" in reply
    assert care_events(bot) == []
    assert "收到" in reporter.ask("1")
    (ev,) = care_events(bot)
    assert ev.member_id == zhou.id and ev.details == "3病区"


def test_ambiguous_name_asks_which_one(bot, chat_with, people):
    from tests.conftest import add_member

    a = add_member(bot, "张三")
    b = add_member(bot, "张三", branch="外科分会", group="骨科小组")
    reporter = chat_with(people["colleague"])
    reply = reporter.ask("报告 住院 张三 心内科 12床")
    assert "哪一位" in reply and "骨科小组" in reply and "心内科小组" in reply
    assert care_events(bot) == []
    assert "编号" in reporter.ask("9")
    reporter.ask("2")
    (ev,) = care_events(bot)
    assert ev.member_id == b.id and ev.member_id != a.id and ev.details == "心内科 12床"
    assert "没有找到" in reporter.ask("报告 住院 王小二")


def test_duplicate_open_report_is_not_a_second_task(bot, chat_with, people):
    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    assert "已经登记过" in chat_with(people["leader"]).ask("报告 住院 王芳")
    assert len(care_events(bot)) == 1


def test_visit_record_and_task_list(bot, chat_with, people):
    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    (ev,) = care_events(bot)
    leader = chat_with(people["leader"])
    assert f"{ev.id} 王芳" in leader.ask("关怀任务")
    assert "不负责" in chat_with(people["other_bchair"]).ask(f"探望 {ev.id} 今天 周分会 300")
    assert "只对" in chat_with(people["colleague"]).ask("关怀任务")
    reply = leader.ask(f"探望 {ev.id} 昨天 刘组长 陈主席 果篮 500")
    assert "500" in reply
    (ev,) = care_events(bot)
    assert ev.status == "done" and ev.amount == Decimal("500") and ev.gift == "果篮"
    assert ev.visitors == "刘组长、陈主席" and ev.visited_on == bot.clock.today() - timedelta(days=1)
    assert "已经记录过" in leader.ask(f"探望 {ev.id} 今天 500")
    assert "没有待办" in leader.ask("关怀任务")


def test_care_reminders_on_a_travelled_clock(bot, chat_with, people):
    from handlers.care import remind_care_tasks

    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    (ev,) = care_events(bot)
    now = bot.clock.now()
    assert remind_care_tasks(bot, now) == 0  # due in 3 days
    day2 = now + timedelta(days=2)
    assert remind_care_tasks(bot, day2) == 2  # leader + branch chair, the day before it is due
    assert remind_care_tasks(bot, day2 + timedelta(hours=1)) == 0  # once a day
    day4 = now + timedelta(days=4)
    assert remind_care_tasks(bot, day4) == 2
    assert "已逾期" in member_pushes(bot, people["leader"])
    day6 = now + timedelta(days=6)
    assert remind_care_tasks(bot, day6) == 3  # two days late: the clerk is told too
    chat_with(people["leader"]).ask(f"探望 {ev.id} 今天 刘组长 300")
    assert remind_care_tasks(bot, now + timedelta(days=7)) == 0


def test_care_reminders_with_time_machine(bot, chat_with, people):
    import time_machine

    from handlers.care import remind_care_tasks

    chat_with(people["member"]).ask("我住院了")
    start = datetime.now(UTC)
    with time_machine.travel(start + timedelta(days=3), tick=False):
        assert remind_care_tasks(bot) == 2
        assert remind_care_tasks(bot) == 0


# ---------------------------------------------------------------------------------------------- jobs
def test_follow_up_reminder(bot, chat_with, people):
    from handlers.care import remind_follow_ups

    n, _ = run_to(bot, chat_with, people, until="decided")
    chat_with(people["reviewer"]).ask(f"发放 {n} 2000")
    now = bot.clock.now()
    assert remind_follow_ups(bot, now) == 0
    assert remind_follow_ups(bot, now + timedelta(days=31)) == 1
    assert remind_follow_ups(bot, now + timedelta(days=32)) == 0
    told = member_pushes(bot, people["reviewer"])
    assert f"回访 {n}" in told and "王芳" in told and "13800001234" in told and "慰问金 2000 元" in told
    # the branch chair sees only that the case exists by now: no reminder they could not act on
    assert f"回访 {n}" not in member_pushes(bot, people["bchair"])
    with bot.db.Session() as s:
        q = select(OutboxMessage).where(OutboxMessage.idempotency_key.like("hardship:%"))
        pushes = s.scalars(q).all()
    assert pushes and all(r.sensitive for r in pushes)


def test_follow_up_days_come_from_the_settings(tmp_path):
    from handlers.care import remind_follow_ups
    from tests.conftest import Chat, add_member, make_app

    app = make_app(f"sqlite:///{tmp_path / 'f.db'}", HARDSHIP_FOLLOW_UP_DAYS=10)
    bot = app.extensions["bot"]
    try:
        people = {
            "member": add_member(bot, "王芳"),
            "bchair": add_member(bot, "陈主席", roles=["branch_chair"]),
            "reviewer": add_member(bot, "赵审核", roles=["hardship_reviewer"], branch="工会办公室", group="办公室"),
        }
        chat_with = lambda m: Chat(bot, m)  # noqa: E731
        for m in people.values():
            chat_with(m)
        n, _ = run_to(bot, chat_with, people, until="decided")
        assert "回访期限" in chat_with(people["reviewer"]).ask(f"发放 {n} 2000")
        c = load_case(bot)
        assert c.follow_up_due == c.delivered_on + timedelta(days=10)  # not the default 30
        now = bot.clock.now()
        assert remind_follow_ups(bot, now + timedelta(days=9)) == 0
        assert remind_follow_ups(bot, now + timedelta(days=11)) == 1
    finally:
        app.extensions["db"].dispose()


def test_yearly_reverification(bot, chat_with, people):
    from handlers.care import reverify_hardship_records

    run_to(bot, chat_with, people, until="decided")
    now = bot.clock.now()
    assert reverify_hardship_records(bot, now) == 0
    later = now + timedelta(days=367)
    assert reverify_hardship_records(bot, later) == 1
    assert reverify_hardship_records(bot, later) == 0  # asked once per due date
    with bot.db.Session() as s:
        rec = s.scalar(select(HardshipRecord))
    assert f"复核 {rec.id} 继续" in member_pushes(bot, people["bchair"])
    assert "没有找到" in chat_with(people["other_bchair"]).ask(f"复核 {rec.id} 继续")
    assert "继续保留" in chat_with(people["bchair"]).ask(f"复核 {rec.id} 继续")
    with bot.db.Session() as s:
        rec = s.scalar(select(HardshipRecord))
    assert rec.next_review == bot.clock.today().replace(year=bot.clock.today().year + 1)
    assert "移出" in chat_with(people["reviewer"]).ask(f"复核 {rec.id} 退出 已再就业")
    with bot.db.Session() as s:
        assert not s.scalar(select(HardshipRecord)).active


def test_warmth_campaign_list(bot, chat_with, people):
    from models.care import warmth_campaign_list
    from tests.conftest import add_member

    run_to(bot, chat_with, people, until="decided")
    add_member(bot, "老张", retired=True)
    add_member(bot, "王芳", retired=True, branch="外科分会", group="骨科小组")  # a namesake: not merged
    year = bot.clock.today().year
    with bot.db.Session() as s:
        entries = warmth_campaign_list(s, year)
        assert [(e.name, e.branch, e.reason) for e in entries] == [
            ("王芳", "内科分会", "困难职工（大病）"), ("老张", "内科分会", "退休职工"), ("王芳", "外科分会", "退休职工")
        ]  # fmt: skip
        assert [e.name for e in warmth_campaign_list(s, year - 1)] == ["老张", "王芳"]  # retirees only
        s.get(Member, people["member"].id).retired = True
        assert warmth_campaign_list(s, year)[0].reason == "困难职工（大病）、退休职工"


def test_anonymise_closed_cases_keeps_statistics(bot, chat_with, people):
    from handlers.care import anonymise_closed_cases, care_statistics

    n, _ = run_to(bot, chat_with, people)
    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    (ev,) = care_events(bot)
    chat_with(people["leader"]).ask(f"探望 {ev.id} 今天 刘组长 500")
    now = bot.clock.now()
    assert anonymise_closed_cases(bot, now, years=5) == 0
    assert anonymise_closed_cases(bot, now + timedelta(days=365 * 5 + 10), years=5) == 2  # the case, the visit
    assert anonymise_closed_cases(bot, now + timedelta(days=365 * 5 + 11), years=5) == 0
    c = load_case(bot)
    assert c.anonymised_at is not None and c.member_id is None and c.reported_by_id is None
    assert c.story is None and c.contact is None and c.verify_notes is None and c.household is None
    assert all(e.note is None and e.message is None for e in c.events)
    assert c.type == "大病" and c.delivered_amount == Decimal("2000") and c.branch_id is not None
    (ev,) = care_events(bot)
    assert ev.member_id is None and ev.details is None and ev.amount == Decimal("500")
    with bot.db.Session() as s:
        st = care_statistics(s, bot.clock.today().year)
    assert st["visits"] == 1 and st["aid_paid"] == Decimal("2000") and st["cases"] == 1
    assert "没有" in chat_with(people["member"]).ask("我的申请")
    assert "没有办理" in chat_with(people["bchair"]).ask(f"查看 {n}")


# ---------------------------------------------------------------------------------------------- statistics / export
def test_statistics_in_chat(bot, chat_with, people):
    run_to(bot, chat_with, people)
    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    (ev,) = care_events(bot)
    chat_with(people["leader"]).ask(f"探望 {ev.id} 今天 刘组长 500")
    reply = chat_with(people["reviewer"]).ask("帮扶统计")
    assert "探望 1 次" in reply and "住院1" in reply and "内科分会1" in reply
    assert "慰问金 500 元" in reply and "发放 2000 元" in reply
    assert "只对" in chat_with(people["leader"]).ask("帮扶统计")


def test_xlsx_export_is_formula_safe_and_audited(bot, chat_with, people):
    import io

    from openpyxl import load_workbook

    from handlers.care import export_xlsx
    from models.member import Member
    from tests.conftest import add_member

    evil = add_member(bot, "=HYPERLINK(\"x\")", branch="@危险分会", group="+组")
    chat_with(evil)
    chat_with(people["colleague"]).ask("报告 住院 =HYPERLINK(\"x\") 3床")
    (ev,) = care_events(bot)
    bchair = add_member(bot, "危险主席", roles=["branch_chair"], branch="@危险分会", group="+组")
    chat_with(bchair).ask(f"探望 {ev.id} 今天 危险主席 200")
    run_to(bot, chat_with, people)
    year = bot.clock.today().year
    with bot.db.transaction() as s:
        reviewer = s.get(Member, people["reviewer"].id)
        data = export_xlsx(bot, s, reviewer, year)
        with pytest.raises(PermissionError):
            export_xlsx(bot, s, s.get(Member, people["clerk"].id), year)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["统计", "探望记录", "帮扶申请"]
    stats = [[c.value for c in row] for row in wb["统计"].iter_rows()]
    assert ["导出人", "赵审核"] in stats
    visits = [[c.value for c in row] for row in wb["探望记录"].iter_rows()]
    assert visits[1][2] == "'=HYPERLINK(\"x\")" and visits[1][3] == "'@危险分会" and visits[1][7] == 200
    cases = [[c.value for c in row] for row in wb["帮扶申请"].iter_rows()]
    assert cases[1][0].startswith("KN") and cases[1][8] == 2000
    for sheet in wb.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert not (isinstance(cell.value, str) and cell.value[:1] in "=+-@"), cell.value
    assert STORY not in str(cases)
    with bot.db.Session() as s:
        exports = s.scalars(select(AuditLog).where(AuditLog.action == "export")).all()
    assert [(e.actor_label, e.detail) for e in exports] == [
        ("赵审核", f"xlsx {year}"), ("孙干事", f"denied export {year}")
    ]


class Holding:
    """Our own rate limit keeps every message back: rows stay pending, as they are before delivery."""

    def send(self, row):
        from bot.outbox import SendResult

        return SendResult(False, "held", retry_after=60, held=True)


def test_pending_care_rows_are_marked_sensitive(bot, chat_with, people):
    chat = chat_with(people["member"])
    bot.senders["sandbox"] = Holding()
    submit_case(chat)
    chat_with(people["colleague"]).ask("报告 住院 王芳 心内科 12床")
    with bot.db.Session() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")))
    pushes = [r for r in rows if r.idempotency_key.startswith(("hardship:", "care:"))]
    assert any("需要核实" in r.payload.get("text", "") for r in pushes)  # the branch chair's notice
    assert any("12床" in r.payload.get("text", "") for r in pushes)  # the care task to the group leader
    preview = [r for r in rows if STORY in repr(r.payload)]
    assert preview and all(r.idempotency_key.startswith("reply:") for r in preview)  # the dialog's preview
    assert all(r.sensitive for r in pushes + preview)
    assert all(r.sensitive for r in rows if r.target_id == chat.user_id)  # every reply of the dialog


def inbound_texts(bot) -> list[tuple[str, str]]:
    with bot.db.Session() as s:
        rows = s.scalars(select(InboundMessage).order_by(InboundMessage.id))
        return [(r.status, repr(r.envelope)) for r in rows]


def test_a_failing_hardship_handler_keeps_no_story(bot, chat_with, people, monkeypatch):
    from bot.core import SORRY

    chat = chat_with(people["member"])
    chat.ask("困难申报")
    chat.ask("1")
    monkeypatch.setattr(bot.settings, "DATA_KEY", "not-a-fernet-key")  # the handler raises
    assert chat.ask(STORY) == SORRY  # a dialog step
    assert chat.ask("取消") == LEFT_DIALOG
    assert chat.ask("困难申报 " + STORY) == SORRY  # a route
    assert chat.ask("李同事住院了 心内科 12床") == SORRY  # a care report
    assert chat.ask("我的申请") == SORRY  # not sensitive: kept as typed, so the check has teeth
    rows = inbound_texts(bot)
    failed = [env for status, env in rows if status == "failed"]
    assert len(failed) == 4 and "我的申请" in failed[3]
    assert not any("脑梗" in env or "12床" in env for _, env in rows)


def test_a_deferred_hardship_message_that_fails_keeps_no_story(bot, chat_with, people, monkeypatch):
    """The worker's path (`process_pending`) blanks the story like the webhook's when the handler raises."""
    from bot.adapters import sandbox

    chat = chat_with(people["member"])
    monkeypatch.setattr(bot.settings, "DATA_KEY", "not-a-fernet-key")  # the handler raises
    for text in ("困难申报 " + STORY, "我的申请"):  # the second is not sensitive: kept, so the check has teeth
        msg = sandbox.incoming(bot, user_id=chat.user_id, chat_id=chat.chat_id, text=text)
        assert bot.handle(msg, defer=True).deferred
    assert bot.process_pending() == 2
    rows = inbound_texts(bot)
    assert [status for status, _ in rows] == ["failed", "failed"] and "我的申请" in rows[1][1]
    assert not any("脑梗" in env for _, env in rows)


def test_an_unbound_member_s_story_is_not_kept(bot, chat_with, people):
    from handlers.members import ASK

    stranger = chat_with(None)
    assert stranger.ask("困难申报 " + STORY) == ASK  # asked who they are first
    stranger.ask("取消")
    assert "工号" in stranger.ask("我们组李同事住院了 心内科 12床")
    assert not any("脑梗" in env or "12床" in env for _, env in inbound_texts(bot))
    with bot.db.Session() as s:
        assert s.scalar(select(HardshipCase)) is None and s.scalar(select(CareEvent)) is None
