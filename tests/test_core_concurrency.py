"""Database-sensitive core behaviour under concurrency, on SQLite and (when available) PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from bot import outbox
from bot.adapters import sandbox
from models.member import Member, link_identity
from models.messaging import InboundMessage, OutboxMessage, SandboxMessage
from tests.conftest import add_member


def test_concurrent_duplicate_deliveries_are_processed_once(any_app):
    bot = any_app.extensions["bot"]
    m = add_member(bot, name="周丽", employee_no="C0001")
    uid = sandbox.user_id_for(m)
    with bot.db.transaction() as s:
        link_identity(s, s.get(Member, m.id), "sandbox", uid)
    msg = sandbox.incoming(bot, user_id=uid, chat_id=uid, text="我的信息", message_id="retry-storm")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: bot.handle(msg), range(16)))
    assert sum(not r.duplicate for r in results) == 1
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(InboundMessage.id))) == 1
        assert s.scalar(select(func.count(OutboxMessage.id))) == 1


def test_parallel_delivery_workers_send_each_message_once(any_app):
    bot = any_app.extensions["bot"]
    with bot.db.transaction() as s:
        for i in range(300):
            outbox.enqueue(s, platform="sandbox", target_kind="user", target_id=f"u{i % 7}",
                           message={"type": "text", "text": str(i)}, key=f"fan:{i}", now=bot.clock.now())
    calls: list[int] = []
    real = bot.senders["sandbox"]

    class Counting:
        def send(self, row):
            calls.append(row.id)
            return real.send(row)

    bot.senders["sandbox"] = Counting()

    def worker(_):
        total = 0
        while True:
            n = outbox.deliver_due(bot, limit=20)
            if n == 0 and not outbox.claim_preview(bot, None):
                return total
            total += n

    with ThreadPoolExecutor(4) as pool:
        sent = sum(pool.map(worker, range(4)))
    assert sent == 300 and len(calls) == 300 and len(set(calls)) == 300
    with bot.db.Session() as s:
        assert s.scalar(select(func.count(SandboxMessage.id))) == 300
        assert s.scalar(select(func.count()).where(OutboxMessage.status != "sent")) == 0
