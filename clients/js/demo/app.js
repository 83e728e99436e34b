// The demo chat page: one RingpushClient, a conversation list with unread
// counts, read receipts ("Read" under own messages the peer has read) and
// recall of own messages. ?user=ana&peer=ben opens the chat with ben.
import { RingpushClient, directConv } from "/lib/index.js";

const q = new URLSearchParams(location.search);
const me = q.get("user") || prompt("Your user name", "ana") || "ana";
const device = q.get("device") || "web";
const $ = (id) => document.getElementById(id);

/** conv -> { peer, last, read, peerRead, msgs: Map<seq, msg>, pending: [] } */
const convs = new Map();
let current = null;

function peerOf(conv) {
  if (conv.startsWith("g:")) return conv;
  const [, a, b] = conv.split(":");
  return a === me ? b : a;
}

function conv(id) {
  let c = convs.get(id);
  if (!c) {
    c = { id, peer: peerOf(id), last: 0, read: 0, peerRead: 0, msgs: new Map(), pending: [], loaded: false };
    convs.set(id, c);
  }
  return c;
}

function text(body) {
  return typeof body === "string" ? body : `[${body.length} bytes]`;
}

function renderList() {
  const ul = $("convs");
  ul.textContent = "";
  for (const c of [...convs.values()].sort((x, y) => (y.lastTs || 0) - (x.lastTs || 0))) {
    const li = document.createElement("li");
    li.dataset.conv = c.id;
    li.className = c.id === current ? "active" : "";
    const unread = Math.max(0, c.last - c.read);
    li.innerHTML = `<span class="name"></span><span class="badge" data-n="${unread}">${unread || ""}</span>`;
    li.querySelector(".name").textContent = c.peer;
    li.onclick = () => openConv(c.id);
    ul.append(li);
  }
}

function renderMessages() {
  const box = $("messages");
  box.textContent = "";
  if (!current) return;
  const c = conv(current);
  const seqs = [...c.msgs.keys()].sort((a, b) => a - b);
  for (const s of seqs) {
    const m = c.msgs.get(s);
    if (m.type === "recall") {
      const d = document.createElement("div");
      d.className = "system";
      d.textContent = `${m.from === me ? "you" : m.from} recalled a message`;
      box.append(d);
      continue;
    }
    if (m.type === "event") continue;
    box.append(bubble(c, m, m.from === me));
  }
  for (const p of c.pending) box.append(bubble(c, p, true));
  box.scrollTop = box.scrollHeight;
}

function bubble(c, m, mine) {
  const d = document.createElement("div");
  const recalled = m.type === "recalled";
  d.className = `msg${mine ? " mine" : ""}${recalled ? " recalled" : ""}`;
  if (m.seq) d.dataset.seq = m.seq;
  d.innerHTML = `<div class="body"></div><div class="meta"><span class="time"></span></div>`;
  d.querySelector(".body").textContent = recalled ? "message recalled" : text(m.body);
  d.querySelector(".time").textContent = m.ts ? new Date(m.ts).toLocaleTimeString() : "sending…";
  if (mine && m.seq && !recalled) {
    const st = document.createElement("span");
    const read = c.peerRead >= m.seq;
    st.className = `status${read ? " read" : ""}`;
    st.textContent = read ? "✓✓ Read" : "✓ Sent";
    d.querySelector(".meta").append(st);
    const b = document.createElement("button");
    b.className = "recall";
    b.textContent = "Recall";
    b.onclick = () => recall(c, m.seq);
    d.querySelector(".meta").append(b);
  }
  return d;
}

async function openConv(id) {
  current = id;
  const c = conv(id);
  $("title").textContent = `Chat with ${c.peer}`;
  $("text").disabled = $("send").disabled = false;
  if (!c.loaded) {
    c.loaded = true;
    try {
      const page = await client.history(id, { limit: 50 });
      for (const m of page.msgs) c.msgs.set(m.seq, m);
      for (const m of page.msgs) if (m.type === "recall") markRecalled(c, m.target);
      if (page.msgs.length) c.last = Math.max(c.last, page.msgs.at(-1).seq);
    } catch (e) {
      if (e.code !== "forbidden") console.warn("history", e); // a new chat has no log yet
    }
  }
  markRead(c);
  renderList();
  renderMessages();
}

function markRecalled(c, target) {
  const t = c.msgs.get(target);
  if (t) c.msgs.set(target, { ...t, type: "recalled", body: "" });
}

function markRead(c) {
  if (c.id !== current || document.hidden || c.last <= c.read) return;
  c.read = c.last;
  client.read(c.id, c.last).catch((e) => console.warn("read", e));
}

async function recall(c, seq) {
  try {
    const at = await client.recall(c.id, seq);
    markRecalled(c, seq);
    c.msgs.set(at, { conv: c.id, seq: at, from: me, type: "recall", target: seq, body: "", ts: Date.now() });
    c.last = Math.max(c.last, at);
    c.read = Math.max(c.read, at);
  } catch (e) {
    alert(`recall failed: ${e.code}`);
  }
  renderMessages();
}

async function send(body) {
  const c = conv(current);
  const p = { body, from: me, type: "text" };
  c.pending.push(p);
  renderMessages();
  try {
    const r = await client.send(c.peer.startsWith("g:") ? { group: c.peer.slice(2), body } : { to: c.peer, body });
    c.msgs.set(r.seq, { conv: r.conv, seq: r.seq, from: me, dev: device, cmid: r.cmid, type: "text", body, ts: r.ts });
    c.last = Math.max(c.last, r.seq);
    c.read = Math.max(c.read, r.seq); // sending implies reading
    c.lastTs = r.ts;
  } catch (e) {
    alert(`send failed: ${e.code}`);
  }
  c.pending.splice(c.pending.indexOf(p), 1);
  renderList();
  renderMessages();
}

const { token, url } = await (await fetch(`/token?user=${encodeURIComponent(me)}`)).json();
const client = new RingpushClient({ url, token, device });
window.ringpush = client; // for the browser console

client.on("state", (s) => {
  $("state").textContent = s;
  $("state").className = s;
});
client.on("msg", (m) => {
  const c = conv(m.conv);
  if (m.type === "recall") markRecalled(c, m.target);
  c.msgs.set(m.seq, m);
  c.last = Math.max(c.last, m.seq);
  c.lastTs = m.ts;
  markRead(c);
  renderList();
  if (m.conv === current) renderMessages();
});
client.on("read", (r) => {
  const c = conv(r.conv);
  if (r.user === me) c.read = Math.max(c.read, r.seq);
  else c.peerRead = Math.max(c.peerRead, r.seq);
  renderList();
  if (r.conv === current) renderMessages();
});
client.on("synced", refreshCounts);

async function refreshCounts() {
  for (const s of await client.sync()) {
    const c = conv(s.conv);
    c.last = Math.max(c.last, s.last_seq);
    c.read = Math.max(c.read, s.read_seq);
    c.lastTs = s.last_ts;
  }
  if (current) markRead(conv(current));
  renderList();
}

$("me").textContent = me;
$("device").textContent = device;
$("toggle").onclick = () => {
  if (client.status === "idle") {
    client.connect();
    $("toggle").textContent = "Go offline";
  } else {
    client.disconnect();
    $("toggle").textContent = "Go online";
  }
};
$("compose").onsubmit = (e) => {
  e.preventDefault();
  const t = $("text").value.trim();
  if (!t || !current) return;
  $("text").value = "";
  send(t);
};
$("newchat").onsubmit = (e) => {
  e.preventDefault();
  const p = $("peer").value.trim();
  if (p && p !== me) openConv(p.startsWith("g:") ? p : directConv(me, p));
  $("peer").value = "";
};
document.addEventListener("visibilitychange", () => current && markRead(conv(current)));

await client.connect();
await refreshCounts();
const peer = q.get("peer");
if (peer) await openConv(directConv(me, peer));
document.body.dataset.ready = "1";
