// snowg demo page: plain JavaScript, no build step.
// Two kinds of WebSocket:
//  * the control socket to the launcher (this page's own host): cluster state
//    every 0.5 s in, button actions out;
//  * the chat socket to the node this tab chose (its own port): join a room, say things.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let state = null;            // the last state from the launcher
let control = null;
const lastPids = {};         // child id -> pid, to flash rows that changed

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const short = (name) => (name || "").split("@")[0];
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

// ------------------------------------------------------------------ control socket

function connectControl() {
  const status = $("control-status");
  control = new WebSocket(`ws://${location.host}/control`);
  control.onopen = () => { status.textContent = "live"; status.className = "pill pill-ok"; };
  control.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "state") { state = msg; render(); }
    else if (msg.type === "result" && !msg.ok) { flashStatus(msg.text); }
  };
  control.onclose = () => {
    status.textContent = "launcher gone: is snowg demo still running?";
    status.className = "pill pill-bad";
    setTimeout(connectControl, 1500);
  };
}
function act(msg) {
  if (control && control.readyState === WebSocket.OPEN) control.send(JSON.stringify(msg));
}
function flashStatus(text) {
  const status = $("control-status");
  status.textContent = text; status.className = "pill pill-bad";
  setTimeout(() => { status.textContent = "live"; status.className = "pill pill-ok"; }, 3000);
}

// ------------------------------------------------------------------ rendering

// Re-render a part only when its data changed, so that a button is not replaced
// under the mouse between press and release (and the page does not flicker).
const rendered = {};
function changed(part, data) {
  const text = JSON.stringify(data);
  if (rendered[part] === text) return false;
  rendered[part] = text;
  return true;
}
function render() {
  if (changed("graph", [state.nodes.map((n) => [n.name, n.status, n.sees, n.ws_port]), state.launcher_sees])) {
    renderGraph();
  }
  if (changed("nodes", [state.nodes, state.ready])) renderNodes();
  if (changed("tree", state.tree)) renderTree();
  if (changed("events", state.events)) renderEvents();
  fillNodeSelect();
}

const POS = [[210, 48], [70, 205], [350, 205]];
const CENTER = [210, 150];

function renderGraph() {
  const g = $("graph");
  g.replaceChildren();
  const nodes = state.nodes;
  const idx = {};
  nodes.forEach((n, i) => { idx[n.name] = i; });
  // the launcher, in the middle, connected to every node it sees
  for (const name of state.launcher_sees || []) {
    if (!(name in idx)) continue;
    const [x, y] = POS[idx[name]];
    g.append(svg("line", { x1: CENTER[0], y1: CENTER[1], x2: x, y2: y, class: "edge launcher" }));
  }
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i], b = nodes[j];
      const ab = a.sees.includes(b.name), ba = b.sees.includes(a.name);
      if (!ab && !ba) continue;
      const [x1, y1] = POS[i], [x2, y2] = POS[j];
      g.append(svg("line", { x1, y1, x2, y2, class: "edge" + (ab && ba ? "" : " oneway"),
        "data-edge": `${a.short}-${b.short}` }));
    }
  }
  const lg = svg("g", { class: "node launcher" });
  lg.append(svg("circle", { cx: CENTER[0], cy: CENTER[1], r: 9 }));
  lg.append(svg("text", { x: CENTER[0] + 14, y: CENTER[1] + 4, class: "small" }, "launcher"));
  g.append(lg);
  nodes.forEach((n, i) => {
    const [x, y] = POS[i];
    const ng = svg("g", { class: `node ${n.status}`, "data-node": n.name });
    ng.append(svg("circle", { cx: x, cy: y, r: 28 }));
    ng.append(svg("text", { x, y: y + 5, class: "big" }, n.short));
    const below = y > 100 ? y + 44 : y - 36;
    ng.append(svg("text", { x, y: below }, n.status === "up" ? `chat :${n.ws_port}` : n.status));
    g.append(ng);
  });
}

function renderNodes() {
  const box = $("nodes");
  box.replaceChildren();
  for (const n of state.nodes) {
    const sees = n.sees.filter((x) => x !== state.launcher).map(short);
    const rooms = Object.entries(n.rooms || {}).map(([r, c]) => `${r} (${c})`).join(", ");
    const alive = n.status === "up" || n.status === "starting";
    box.append(el("div", { class: `node-card ${n.status}`, "data-node": n.name },
      el("div", { class: "title" }, n.short, el("span", { class: "status" }, n.busy ? "busy..." : n.status)),
      el("div", { class: "line" }, `OS pid ${n.os_pid ?? "-"}`),
      el("div", { class: "line" }, `creation ${n.creation ?? "-"}`),
      el("div", { class: "line" }, `sees: ${sees.length ? sees.join(", ") : "nobody"}`),
      el("div", { class: "line" }, `rooms: ${rooms || "none"}`),
      el("div", { class: "line counts" }, n.counts ?
        `${n.processes} processes, ${n.counts.crashes} crashes, ${n.counts.restarts} restarts` : ""),
      el("div", { class: "buttons" },
        el("button", { class: "kill danger", type: "button", disabled: !alive || n.busy || !state.ready,
          onclick: () => act({ action: "kill", node: n.name }) }, "kill -9"),
        el("button", { class: "restart", type: "button", disabled: n.busy || !state.ready,
          onclick: () => act({ action: "restart", node: n.name }) }, alive ? "restart" : "start again")),
    ));
  }
}

function renderTree() {
  const t = state.tree || {};
  const box = $("tree");
  $("tree-where").textContent = `on ${short(t.node)}`;
  box.replaceChildren();
  if (t.gave_up) {
    const g = t.gave_up;
    box.append(el("div", { class: "gaveup", id: "gave-up" },
      el("strong", {}, "demo_sup gave up"),
      ` at ${clock(g.at)}: restart ${g.restarts} within ${g.period} s is over its intensity of ${g.intensity}` +
      ` (crashes of ${g.child_id}). It stopped its children and ended, as an OTP supervisor does;` +
      ` its parent would now decide. It made ${t.restarts} restarts.`,
      el("div", { class: "buttons" }, el("button", { id: "start-tree", type: "button", disabled: !state.ready,
        onclick: () => act({ action: "start_tree" }) }, "start demo_sup again"))));
  }
  if (!t.supervisor && !t.gave_up) {
    box.append(el("p", { class: "muted" }, t.error ? `no supervisor: ${t.error}` : "no supervisor running"));
    return;
  }
  const mode = t.mode === "proxy" ? "remote children through a local proxy" :
    t.mode === "native" ? "remote children: ChildSpec(node=[...])" : "";
  if (t.supervisor) {
    box.append(el("div", { class: "root" }, "demo_sup", el("span", { class: "pid" }, t.supervisor),
      el("span", { class: "muted" }, "one_for_one"),
      el("span", { class: "muted", id: "tree-restarts" },
        `${t.restarts} restarts (gives up past ${t.intensity} in ${t.period} s)`)));
  }
  if (mode) box.append(el("div", { class: "mode muted" }, mode));
  const table = el("table", {},
    el("tr", {}, ...["child", "kind", "node", "pid", "restarts", "status", ""].map((h) => el("th", {}, h))));
  for (const c of t.children) {
    const changed = lastPids[c.id] && c.pid && lastPids[c.id] !== c.pid;
    if (c.pid) lastPids[c.id] = c.pid;
    const cands = c.kind === "remote" ? ` (prefers ${c.candidates.map(short).join(" > ")})` : "";
    const st = (c.status || "").split(" ")[0];
    table.append(el("tr", { class: "child" + (changed ? " flash" : ""), "data-child": c.id },
      el("td", {}, c.id),
      el("td", {}, el("span", { class: `kind ${c.kind}`, title: cands }, c.kind)),
      el("td", { class: "node", title: cands }, short(c.node) || "-"),
      el("td", { class: "pid" }, c.pid || "-"),
      el("td", { class: "restarts" + (c.restarts > 0 ? " hot" : "") }, c.restarts),
      el("td", { class: `status st-${st}` }, c.status),
      el("td", {}, el("button", { class: "crash danger", type: "button", "data-child": c.id,
        disabled: !c.pid || c.status !== "running",
        onclick: () => act({ action: "crash", child: c.id }) }, "crash")),
    ));
  }
  box.append(table);
}

function renderEvents() {
  const box = $("events");
  box.replaceChildren();
  for (const e of [...state.events].reverse()) {
    box.append(el("li", {}, el("time", {}, clock(e.t)), e.text));
  }
}

// ------------------------------------------------------------------ chat

let chat = null;             // {ws, node, room, wanted}
let chatRetry = null;

function fillNodeSelect() {
  const sel = $("chat-node");
  const current = sel.value || wantedNode();
  if (sel.options.length !== state.nodes.length) {
    sel.replaceChildren(...state.nodes.map((n) => el("option", { value: n.name }, n.short)));
    if (current) sel.value = current;
  }
  for (const opt of sel.options) {
    const n = state.nodes.find((x) => x.name === opt.value);
    opt.textContent = n.short + (n.status === "up" ? "" : ` (${n.status})`);
  }
}
function wantedNode() {
  const p = params.get("node");
  if (!p || !state) return null;
  const n = state.nodes.find((x) => x.name === p || x.short === p);
  return n ? n.name : null;
}
function nodePort(name) {
  const n = state && state.nodes.find((x) => x.name === name);
  return n && n.status === "up" ? n.ws_port : null;
}
function chatStatus(text, cls) {
  const s = $("chat-status");
  s.textContent = text; s.className = `chat-status ${cls || "muted"}`;
}
function chatLine(cls, ...parts) {
  const log = $("chat-log");
  log.append(el("li", { class: cls }, ...parts));
  log.scrollTop = log.scrollHeight;
}
function setChatEnabled(on) {
  $("chat-input").disabled = !on;
  $("chat-send").disabled = !on;
}

function join() {
  const node = $("chat-node").value;
  const room = $("chat-room").value.trim() || "lobby";
  const user = $("chat-name").value.trim() || "anonymous";
  if (!node) return;
  if (chat && chat.ws && chat.node === node && chat.ws.readyState === WebSocket.OPEN) {
    chat.room = room; chat.user = user;
    chat.ws.send(JSON.stringify({ type: "join", room, user }));
    return;
  }
  if (chat && chat.ws) { chat.wanted = false; chat.ws.close(); }
  chat = { node, room, user, wanted: true, ws: null };
  openChat();
}

function openChat() {
  clearTimeout(chatRetry);
  const c = chat;
  if (!c || !c.wanted) return;
  const port = nodePort(c.node);
  if (!port) {
    chatStatus(`${short(c.node)} is not up; retrying...`, "bad");
    chatRetry = setTimeout(openChat, 1000);
    return;
  }
  chatStatus(`connecting to ${short(c.node)} (port ${port})...`);
  const sock = new WebSocket(`ws://${location.hostname}:${port}/`);
  c.ws = sock;
  sock.onopen = () => sock.send(JSON.stringify({ type: "join", room: c.room, user: c.user }));
  sock.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "joined") {
      chatStatus(`in room "${m.room}" as ${m.user}, connected to ${short(m.node)}`, "ok");
      $("chat-status").dataset.room = m.room;
      $("chat-status").dataset.node = m.node;
      setChatEnabled(true);
      chatLine("system", `joined "${m.room}" on ${short(m.node)}`);
    } else if (m.type === "msg") {
      chatLine("msg", el("span", { class: "who" }, m.user), el("span", { class: "via" }, `via ${short(m.node)}`),
        ": ", el("span", { class: "text" }, m.text));
    } else if (m.type === "system") {
      chatLine("system", m.text);
    }
  };
  sock.onclose = () => {
    if (c.ws !== sock) return;
    setChatEnabled(false);
    if (c.wanted) {
      chatStatus(`lost ${short(c.node)} (node down?): reconnecting...`, "bad");
      chatRetry = setTimeout(openChat, 1000);
    } else {
      chatStatus("not connected");
    }
  };
}

$("chat-join").addEventListener("click", join);
$("chat-say").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !chat || !chat.ws || chat.ws.readyState !== WebSocket.OPEN) return;
  chat.ws.send(JSON.stringify({ type: "say", text }));
  input.value = "";
});

$("chat-name").value = params.get("name") || `guest${Math.floor(Math.random() * 900 + 100)}`;
if (params.get("room")) $("chat-room").value = params.get("room");
connectControl();
