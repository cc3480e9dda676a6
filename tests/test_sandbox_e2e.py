"""An end-to-end conversation through the Flask test client and the sandbox page's endpoints."""

from tests.conftest import add_member


def test_sandbox_conversation_binds_and_answers(client, bot):
    add_member(bot, name="王秀珍", employee_no="20001", phone="13900005678")
    page = client.get("/sandbox/")
    assert page.status_code == 200 and "王秀珍" in page.get_data(as_text=True)

    r = client.post("/sandbox/send", json={"member": "stranger", "text": "你好"})
    texts = [m["payload"].get("text", "") for m in r.get_json()["messages"] if m["direction"] == "out"]
    assert any("工号" in t for t in texts)  # a stranger is asked who they are

    r = client.post("/sandbox/send", json={"member": "stranger", "text": "２０００１ 王秀珍", "since": 0})
    texts = [m["payload"].get("text", "") for m in r.get_json()["messages"] if m["direction"] == "out"]
    assert any("绑定成功" in t for t in texts)

    r = client.post("/sandbox/send", json={"member": "stranger", "text": "我的信息"})
    out = [m["payload"]["text"] for m in r.get_json()["messages"] if m["direction"] == "out"]
    assert "工号：20001" in out[-1]


def test_sandbox_member_help_and_poll(client, bot):
    add_member(bot, name="刘桂英", employee_no="20002")
    r = client.post("/sandbox/send", json={"member": "20002", "text": "帮助"})
    data = r.get_json()
    assert data["chat_id"] == "sb-20002"
    assert "刘桂英您好" in data["messages"][-1]["payload"]["text"]
    last = data["messages"][-1]["id"]
    assert client.get(f"/sandbox/messages?chat_id=sb-20002&since={last}").get_json()["messages"] == []


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}


# --- the sandbox stays out of production --------------------------------------------------------------------
def production_app(tmp_path):
    from cryptography.fernet import Fernet

    from tests.conftest import make_app

    return make_app(f"sqlite:///{tmp_path / 'prod.db'}", APP_ENV="production", SECRET_KEY="s" * 40,
                    DATA_KEY=Fernet.generate_key().decode())  # fmt: skip


def test_sandbox_is_gone_when_disabled(tmp_path):
    app = production_app(tmp_path)
    add_member(app.extensions["bot"], name="周强", employee_no="20003")
    client = app.test_client()
    assert client.get("/sandbox/").status_code == 404
    assert client.post("/sandbox/send", json={"member": "20003", "text": "帮助"}).status_code == 404
    assert client.get("/sandbox/messages?chat_id=sb-20003").status_code == 404
    assert client.get("/sandbox/file/1").status_code == 404
    assert "sandbox" not in app.extensions["bot"].senders  # no push can be delivered into the sandbox table
    assert client.get("/").headers["Location"].endswith("/admin/")
    app.extensions["db"].dispose()


def test_pushes_go_to_the_real_platform_even_after_the_member_tried_the_sandbox(bot):
    from sqlalchemy import select

    from bot.message import Text
    from models import Member, OutboxMessage
    from models.member import link_identity

    m = add_member(bot, name="孙丽", employee_no="20004")
    bot.senders["wecom"] = bot.senders["sandbox"]  # any sender: only the choice of account is tested here
    with bot.db.transaction() as s:
        member = s.get(Member, m.id)
        link_identity(s, member, "wecom", "sunli")
        s.flush()
        link_identity(s, member, "sandbox", "sb-20004")  # linked later: the newest account, but a sandbox one
    with bot.db.transaction() as s:
        assert bot.notify_member(s, s.get(Member, m.id), Text("会议提醒"), key="t:1")
    with bot.db.Session() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "t:1"))
    assert (row.platform, row.target_id) == ("wecom", "sunli")


# --- scheduled pushes reach the sandbox with the development server ----------------------------------------
def test_dev_server_runner_brings_a_scheduled_birthday_greeting_to_the_sandbox_page(app, client, bot):
    """`python app.py` runs the scheduler and the delivery loop in threads (bot.background.DevRunner); here their
    step functions run on a travelled clock: the greeting due at 09:00 arrives on the page's poll."""
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    import time_machine

    from bot.adapters import sandbox
    from bot.background import DevRunner

    add_member(bot, name="钱芳", employee_no="20005", birthday=date(1990, 6, 2))
    with time_machine.travel(datetime(2026, 6, 2, 9, 5, tzinfo=ZoneInfo("Asia/Shanghai")), tick=False):
        first = client.post("/sandbox/send", json={"member": "20005", "text": "帮助"}).get_json()["messages"]
        seen = first[-1]["id"]
        runner = DevRunner(app)
        assert runner.schedule_step()  # took the scheduler lease and ran the minute scan
        assert runner.deliver_step() == 1  # delivered by the runner, not by the page's own poll
        pushed = sandbox.messages_since(bot, "sb-20005", seen)
        assert [m["direction"] for m in pushed] == ["out"] and "钱芳，生日快乐" in pushed[0]["payload"][
            "text"
        ]
        page = client.get(f"/sandbox/messages?chat_id=sb-20005&since={seen}").get_json()["messages"]
        assert page == pushed
        assert runner.schedule_step() and runner.deliver_step() == 0  # once
        runner.jobs.lease.release()


def test_group_messages_without_the_mention_box_are_ignored(client, bot):
    from sqlalchemy import select

    from models.member import Member

    add_member(bot, name="刘桂英", employee_no="20002")
    with bot.db.Session() as s:
        gid = s.scalar(select(Member).where(Member.employee_no == "20002")).group_id
    page = client.get("/sandbox/").get_data(as_text=True)
    assert 'id="mention"' in page and "@机器人" in page

    def outgoing(**extra):
        r = client.post("/sandbox/send", json={"member": "20002", "group": gid, "text": "帮助", **extra})
        return [m for m in r.get_json()["messages"] if m["direction"] == "out"]

    body = {"member": "20002", "group": gid, "text": "帮助", "mention": False}
    ignored = client.post("/sandbox/send", json=body).get_json()["messages"]
    assert [m for m in ignored if m["direction"] == "out"] == []
    assert ignored[-1]["payload"]["text"] == "帮助"  # no @ shown: the group sees a plain message
    assert outgoing(mention=True)  # ticked (the default): the bot answers
    assert outgoing(mention=False, text="@工会小助手 帮助")  # the @ typed by hand counts too


def test_dev_server_warns_when_the_sandbox_listens_beyond_this_machine(app, caplog):
    from app import warn_if_exposed

    with caplog.at_level("WARNING"):
        assert warn_if_exposed(app, "127.0.0.1") is False
        assert warn_if_exposed(app, "0.0.0.0") is True
    assert "anyone who can reach it can act as any member" in caplog.text and "0.0.0.0" in caplog.text


def test_a_file_from_the_bot_shows_as_a_download_link(client, bot):
    from bot import outbox
    from bot.message import File

    add_member(bot, name="孙丽", employee_no="20009")
    client.post("/sandbox/send", json={"member": "20009", "text": "帮助"})  # links the sandbox account
    with bot.db.transaction() as s:
        outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="sb-20009",
                       message=File("8月生日名单.xlsx", b"PK-xlsx-bytes"), key="f1", now=bot.clock.now())  # fmt: skip
    (shown,) = [m for m in client.get("/sandbox/messages?chat_id=sb-20009").get_json()["messages"]
                if m["payload"]["type"] == "file"]  # fmt: skip
    assert (
        shown["payload"]["name"] == "8月生日名单.xlsx" and "data" not in shown["payload"]
    )  # no bytes in the poll
    resp = client.get(shown["payload"]["url"])
    assert resp.status_code == 200 and resp.data == b"PK-xlsx-bytes"
    assert "attachment" in resp.headers["Content-Disposition"] and "spreadsheetml" in resp.mimetype
    assert client.get(f"/sandbox/file/{shown['id'] - 1}").status_code == 404  # not a file message
