"""The console's 企业微信群 page: group chats, their union group and their webhook (消息推送), via the Flask client."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import outbox
from bot.adapters.wecom_api import webhook_url_error
from bot.message import Text
from models.member import Branch, Group
from models.messaging import Chat
from tests.conftest import make_app
from tests.fake_wecom import FakeWeCom
from tests.wecom_helpers import aibot_request, aibot_text, settings_for, staff_client

KEY = "693a91f6-7b2c-4bc4-97a0-0ec2a1fa5aaa"


@pytest.fixture
def fake():
    server = FakeWeCom().start()
    yield server
    server.stop()


@pytest.fixture
def wapp(tmp_path, fake):
    app = make_app(f"sqlite:///{tmp_path / 'chats.db'}", **settings_for(fake))
    yield app
    app.extensions["db"].dispose()


def chat(app, chat_id: str) -> Chat | None:
    with app.extensions["db"].Session() as s:
        return s.scalar(select(Chat).where(Chat.platform == "wecom", Chat.chat_id == chat_id))


def seen_by_the_ai_bot(app, fake, chat_id: str) -> None:
    payload = aibot_text("someone", "@工会小助手 帮助", chat_id=chat_id, response_url=fake.response_url(chat_id))
    query, body = aibot_request(payload)
    resp = app.test_client().post(f"/wecom/aibot?{query}", data=body, content_type="application/json")
    assert resp.status_code == 200


def save(client, pk: int, **form):
    return client.post(f"/admin/chats/{pk}", data={"csrf_token": client.csrf, "title": "", **form})


def test_clerk_sets_a_webhook_and_broadcasts_use_it(wapp, fake):
    bot = wapp.extensions["bot"]
    with bot.db.transaction() as s:
        branch = Branch(name="内科分会")
        s.add(branch)
        s.flush()
        s.add(Group(branch_id=branch.id, name="心内科小组"))
    seen_by_the_ai_bot(wapp, fake, "wrWARD7")
    clerk = staff_client(wapp, "clerk")
    page = clerk.get("/admin/chats/").get_data(as_text=True)
    assert "wrWARD7" in page and "企业微信群" in page and "未配置" in page
    pk = chat(wapp, "wrWARD7").id
    with bot.db.Session() as s:
        group_id = s.scalar(select(Group.id))

    url = fake.webhook_url(KEY)
    resp = save(clerk, pk, title="心内科病区群", group_id=str(group_id), webhook_url=f"  {url} ")
    assert resp.status_code == 302
    saved = chat(wapp, "wrWARD7")
    assert (saved.title, saved.group_id, saved.webhook_url) == ("心内科病区群", group_id, url)
    page = clerk.get("/admin/chats/").get_data(as_text=True)
    assert "已保存" in page and "key=…5aaa" in page and KEY not in page  # the key is a credential

    # Broadcasts into the chat now go through its webhook.
    with bot.db.transaction() as s:
        bot.notify_chat(s, "wecom", "wrWARD7", Text("周六义诊，请大家报名"), "bc-1")
    outbox.drain(bot, platform="wecom")
    (call,) = [c for c in fake.calls if c["path"] == "/cgi-bin/webhook/send"]
    assert call["args"]["key"] == KEY and call["json"]["text"]["content"] == "周六义诊，请大家报名"

    # Saving again with the field left empty keeps the webhook; ticking 清除 removes it.
    assert save(clerk, pk, title="心内科病区群").status_code == 302
    assert chat(wapp, "wrWARD7").webhook_url == url
    assert save(clerk, pk, title="心内科病区群", clear_webhook="1").status_code == 302
    assert chat(wapp, "wrWARD7").webhook_url is None


@pytest.mark.parametrize(
    "bad",
    [
        "http://evil.example/cgi-bin/webhook/send?key=" + KEY,
        "{base}/cgi-bin/message/send?key=" + KEY,
        "{base}/cgi-bin/webhook/send",
        "{base}/cgi-bin/webhook/send?key=short",
        "{base}/cgi-bin/webhook/send?key=" + KEY + "&debug=1",
        "{base}/cgi-bin/webhook/send?key=" + KEY + "&key=" + KEY,
        "{base}.evil.example/cgi-bin/webhook/send?key=" + KEY,
        "javascript:alert(1)",
    ],
)
def test_webhook_url_is_validated(wapp, fake, bad):
    seen_by_the_ai_bot(wapp, fake, "wrX")
    clerk = staff_client(wapp)
    pk = chat(wapp, "wrX").id
    resp = save(clerk, pk, title="X", webhook_url=bad.format(base=fake.base))
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert "/cgi-bin/webhook/send?key=…" in page and "消息推送" in page
    assert chat(wapp, "wrX").webhook_url is None and chat(wapp, "wrX").title == ""


def test_validation_against_the_real_wecom_host():
    base = "https://qyapi.weixin.qq.com"
    assert webhook_url_error(f"{base}/cgi-bin/webhook/send?key={KEY}", base) is None
    for bad in (
        f"http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        f"https://qyapi.weixin.qq.com.example.com/cgi-bin/webhook/send?key={KEY}",
        f"https://qyapi.weixin.qq.com:8443/cgi-bin/webhook/send?key={KEY}",
        f"{base}/cgi-bin/webhook/send?key={KEY}#x",
        f"{base}/cgi-bin/webhook/send?key=<script>",
    ):
        assert webhook_url_error(bad, base), bad


def test_add_a_chat_the_bot_has_not_seen(wapp, fake):
    clerk = staff_client(wapp)
    url = fake.webhook_url(KEY)
    form = {"csrf_token": clerk.csrf, "chat_id": "wrNEW", "title": "工会委员群", "webhook_url": url}
    assert clerk.post("/admin/chats/new", data=form).status_code == 302
    assert chat(wapp, "wrNEW").webhook_url == url
    again = clerk.post("/admin/chats/new", data=form)
    assert again.status_code == 400 and "已在列表中" in again.get_data(as_text=True)
    missing = clerk.post("/admin/chats/new", data={**form, "chat_id": "wrOTHER", "webhook_url": ""})
    assert missing.status_code == 400 and chat(wapp, "wrOTHER") is None


def test_only_clerks_and_admins_manage_chats(wapp, fake):
    seen_by_the_ai_bot(wapp, fake, "wrY")
    pk = chat(wapp, "wrY").id
    chair = staff_client(wapp, "branch_chair")
    assert "企业微信群" not in chair.get("/admin/").get_data(as_text=True)
    assert chair.get("/admin/chats/").status_code == 403
    assert save(chair, pk, title="改名", webhook_url=fake.webhook_url(KEY)).status_code == 403
    admin = staff_client(wapp, "admin")
    assert "企业微信群" in admin.get("/admin/").get_data(as_text=True)
    assert admin.get("/admin/chats/").status_code == 200
    # No CSRF token, no change; an unknown group is refused.
    assert admin.post(f"/admin/chats/{pk}", data={"title": "改名"}).status_code == 400
    assert save(admin, pk, title="改名", group_id="999").status_code == 400
    assert admin.post("/admin/chats/99999999999999999999", data={"csrf_token": admin.csrf}).status_code == 404
    assert chat(wapp, "wrY").title == "" and chat(wapp, "wrY").webhook_url is None
