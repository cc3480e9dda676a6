// The sandbox chat page: send text or button clicks, render text and card replies, poll for pushes.
(function () {
  const log = document.getElementById("log");
  const memberSel = document.getElementById("member");
  const groupSel = document.getElementById("group");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const mentionBox = document.getElementById("mention-box");
  const mention = document.getElementById("mention");
  let lastId = 0;
  let chatId = null;

  function currentChat() {
    const g = groupSel.value;
    return g ? "sb-group-" + g : (memberSel.value === "stranger" ? "sb-stranger" : "sb-" + memberSel.value);
  }

  function render(m) {
    const row = document.createElement("div");
    row.className = "msg " + m.direction;
    const p = m.payload || {};
    let body;
    if (p.type === "card") {
      body = document.createElement("div");
      body.className = "card";
      const h = document.createElement("h3");
      h.textContent = p.title;
      body.appendChild(h);
      (p.lines || []).forEach(function (l) { const e = document.createElement("p"); e.textContent = l; body.appendChild(e); });
      (p.buttons || []).forEach(function (b) {
        const btn = document.createElement("button");
        btn.textContent = b.label;
        btn.className = b.style || "primary";
        btn.addEventListener("click", function () { send({ action: b.action, label: b.label }); });
        body.appendChild(btn);
      });
    } else if (p.type === "file") {
      body = document.createElement("div");
      body.className = "bubble";
      const a = document.createElement("a");
      a.href = p.url;
      a.textContent = "📎 " + p.name + "（点击下载）";
      body.appendChild(a);
    } else {
      body = document.createElement("div");
      body.className = "bubble";
      body.textContent = (m.direction === "in" && m.sender !== currentUser() ? m.sender + "：" : "") + (p.text || "");
    }
    const t = document.createElement("span");
    t.className = "time";
    t.textContent = m.time;
    if (m.direction === "in") { row.appendChild(t); row.appendChild(body); } else { row.appendChild(body); row.appendChild(t); }
    log.appendChild(row);
    log.scrollTop = log.scrollHeight;
    lastId = Math.max(lastId, m.id);
  }

  function currentUser() { return memberSel.value === "stranger" ? "sb-stranger" : "sb-" + memberSel.value; }

  function reset() {
    mentionBox.hidden = !groupSel.value;  // only group chats need an @-mention
    log.innerHTML = "";
    lastId = 0;
    chatId = currentChat();
    poll();
  }

  async function send(extra) {
    const body = Object.assign({ member: memberSel.value, group: groupSel.value, mention: mention.checked, since: lastId }, extra);
    const r = await fetch("/sandbox/send", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!r.ok) { return; }
    const data = await r.json();
    data.messages.forEach(render);
  }

  async function poll() {
    const r = await fetch("/sandbox/messages?chat_id=" + encodeURIComponent(chatId) + "&since=" + lastId);
    if (r.ok) { (await r.json()).messages.forEach(render); }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    send({ text: text });
  });
  memberSel.addEventListener("change", reset);
  groupSel.addEventListener("change", reset);
  reset();
  setInterval(poll, 3000);
})();
