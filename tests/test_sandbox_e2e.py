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
