// snowg observer page: plain JavaScript, no build step, nothing loaded from elsewhere.
// One WebSocket to the observer (this page's own origin, path /ws): the cluster every
// interval, the watched node's snapshot, events as they happen; it sends "watch" and "kill".
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let sock = null;
let cluster = null;          // the last {"type":"cluster"} message
let watched = params.get("node") || null;
let snap = null;             // the watched node's last snapshot
let sortKey = "message_queue_len";
let sortDesc = true;
const openTrees = new Set(); // supervisor pids unfolded
const liveRestarts = {};     // "node|supervisor pid" -> restarts seen in events since the last snapshot
const events = [];

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
// "<name@host.17.863078017>" -> "#17" (the full pid is the row's title and data-pid)
const shortPid = (pid) => { const m = /\.(\d+)\.\d+>$/.exec(pid || ""); return m ? `#${m[1]}` : fmt(pid); };
const fmt = (v) => (v === null || v === undefined ? "" : String(v));

// ------------------------------------------------------------------ the socket

function connect() {
  const status = $("status");
  sock = new WebSocket(`ws://${location.host}/ws`);
  sock.onopen = () => {
    status.textContent = "live"; status.className = "pill ok";
    if (watched) send({ cmd: "watch", node: watched });
  };
  sock.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") {
      $("observer-node").textContent = `as ${msg.observer}`;
      events.length = 0;
      for (const e of msg.events || []) events.push(e);
      renderEvents();
    } else if (msg.type === "cluster") {
      cluster = msg; renderCluster();
      if (!watched) {
        const first = msg.nodes.find((n) => n.up);
        if (first) watch(first.name);
      }
    } else if (msg.type === "node" && msg.node === watched) {
      snap = msg.snapshot;
      for (const k of Object.keys(liveRestarts)) if (k.startsWith(msg.node + "|")) delete liveRestarts[k];
      $("node-state").textContent = msg.snapshot ? `${msg.snapshot.process_count} processes` :
        (msg.error ? `not answering: ${msg.error}` : "no snapshot yet");
      renderNode();
    } else if (msg.type === "event") {
      onEvent(msg);
    } else if (msg.type === "killed") {
      flash(msg.ok ? `kill sent to ${msg.pid}` : `kill refused: ${msg.error}`, msg.ok);
    } else if (msg.type === "error") {
      flash(msg.error, false);
    }
  };
  sock.onclose = () => {
    status.textContent = "observer gone: is snowg observer still running?"; status.className = "pill bad";
    setTimeout(connect, 1500);
  };
}
function send(msg) {
  if (sock && sock.readyState === WebSocket.OPEN) sock.send(JSON.stringify(msg));
}
function flash(text, ok) {
  const status = $("status");
  status.textContent = text; status.className = "pill " + (ok ? "ok" : "bad");
  setTimeout(() => { status.textContent = "live"; status.className = "pill ok"; }, 3000);
}
function watch(name) {
  if (watched !== name) { snap = null; renderNode(); }
  watched = name;
  $("watched").textContent = name;
  $("watched").dataset.node = name;
  send({ cmd: "watch", node: name });
  renderCluster();
}

// ------------------------------------------------------------------ cluster

let lastGraph = "";
const nodeRows = new Map(); // node name -> tr
function renderCluster() {
  if (!cluster) return;
  $("cluster-when").textContent = `at ${clock(cluster.ts)}, every ${cluster.interval} s`;
  const nodes = cluster.nodes;
  const graphKey = JSON.stringify([nodes.map((n) => [n.name, n.up, n.answering, n.connected_to]), watched]);
  if (graphKey !== lastGraph) { lastGraph = graphKey; renderGraph(nodes); }
  const body = $("nodes").tBodies[0];
  const gaveUp = cluster.gave_up || [];
  const keep = new Set();
  for (const n of nodes) {
    keep.add(n.name);
    // A row lives as long as its node is listed and is updated in place: a click between two
    // cluster messages lands on the row the user aimed at, not on one a redraw replaced.
    let tr = nodeRows.get(n.name);
    if (!tr) {
      tr = el("tr", { "data-node": n.name, onclick: () => watch(n.name) });
      for (let i = 0; i < 6; i++) tr.append(el("td", {}));
      tr.children[1].className = "state";
      tr.children[2].className = "num";
      tr.children[3].className = "num crashes";
      tr.children[4].className = "num restarts";
      tr.children[5].className = "num";
      nodeRows.set(n.name, tr);
    }
    const state = !n.up ? "down" : n.answering ? "up" : "not answering";
    const counts = n.counts || {};
    const cls = `node-row ${state.replace(" ", "-")}${n.name === watched ? " watched" : ""}`;
    if (tr.className !== cls) tr.className = cls;
    tr.dataset.state = state;
    tr.children[0].title = n.name + (n.error ? `: ${n.error}` : "");
    const cells = [short(n.name), state, n.process_count, counts.crashes, counts.restarts,
      gaveUp.filter((g) => g.node === n.name).length || counts.give_ups || 0];
    cells.forEach((v, i) => { const td = tr.children[i]; const t = fmt(v); if (td.textContent !== t) td.textContent = t; });
    body.append(tr); // appending an existing row moves it: the order follows the cluster's
  }
  for (const [name, tr] of nodeRows) if (!keep.has(name)) { tr.remove(); nodeRows.delete(name); }
}

function renderGraph(nodes) {
  const g = $("graph");
  g.replaceChildren();
  const n = nodes.length;
  const pos = {};
  nodes.forEach((node, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, n);
    pos[node.name] = n === 1 ? [200, 150] : [200 + 120 * Math.cos(a), 150 + 110 * Math.sin(a)];
  });
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = nodes[i], b = nodes[j];
      const ab = (a.connected_to || []).includes(b.name), ba = (b.connected_to || []).includes(a.name);
      if (!ab && !ba) continue;
      const [x1, y1] = pos[a.name], [x2, y2] = pos[b.name];
      g.append(svg("line", { x1, y1, x2, y2, class: "edge" + (ab && ba ? "" : " oneway"),
        "data-edge": `${a.name} ${b.name}` }));
    }
  }
  for (const node of nodes) {
    const [x, y] = pos[node.name];
    const state = !node.up ? "down" : node.answering ? "up" : "slow";
    const grp = svg("g", { class: `gnode ${state}${node.name === watched ? " watched" : ""}`, "data-node": node.name });
    grp.append(svg("circle", { cx: x, cy: y, r: 24 }));
    grp.append(svg("text", { x, y: y + 4, class: "label" }, short(node.name)));
    grp.append(svg("text", { x, y: y + 40, class: "small" }, state === "up" ? `${node.process_count} procs` : state));
    grp.addEventListener("click", () => watch(node.name));
    g.append(grp);
  }
}

// ------------------------------------------------------------------ events

function onEvent(e) {
  events.push(e);
  if (events.length > 200) events.shift();
  renderEvents();
  if (e.kind === "restart" && e.supervisor) {
    const key = `${e.node}|${e.supervisor}`;
    liveRestarts[key] = (liveRestarts[key] || 0) + 1;
    if (e.node === watched) renderTrees();
  }
  if (e.kind === "give_up" && e.node === watched) renderTrees();
}
function describe(e) {
  const where = short(e.node);
  if (e.kind === "crash") return `${where}: process ${e.pid}${e.name ? " (" + e.name + ")" : ""} crashed: ${reason(e.reason)}`;
  if (e.kind === "restart") return `${where}: supervisor ${e.name || e.supervisor} restarted child ${fmt(e.child_id)}` +
    ` (${(e.measurements || {}).restarts} in its window of ${e.period} s, intensity ${e.intensity})`;
  if (e.kind === "give_up") return `${where}: supervisor ${e.name || e.supervisor} GAVE UP (more than ${e.intensity}` +
    ` restarts in ${e.period} s): it stopped its children and ended`;
  if (e.kind === "node_up") return `${where} is up`;
  if (e.kind === "node_down") return `${where} is down`;
  if (e.kind === "dropped") return `${where}: ${(e.measurements || {}).count} events not shown (too many)`;
  return `${where}: ${e.kind}`;
}
function reason(text) {
  const t = String(text || "");
  const cut = t.indexOf("Traceback");
  return (cut > 0 ? t.slice(0, cut) : t).replace(/[,\s]+$/, "").slice(0, 160);
}
function renderEvents() {
  const box = $("events");
  box.replaceChildren();
  for (const e of [...events].reverse().slice(0, 100)) {
    box.append(el("li", { class: `ev ev-${e.kind}`, "data-kind": e.kind, "data-node": e.node },
      el("time", {}, clock(e.ts)), describe(e)));
  }
}

// ------------------------------------------------------------------ one node

function renderNode() {
  renderProcesses();
  renderTrees();
  renderGroups();
  renderSessions();
}

const rows = new Map(); // pid -> tr
function procValue(p, key) {
  const v = p[key];
  if (Array.isArray(v)) return v.length;
  return v === null || v === undefined ? "" : v;
}
function renderProcesses() {
  const body = $("processes").tBodies[0];
  if (!snap) { body.replaceChildren(); rows.clear(); $("proc-count").textContent = ""; return; }
  const filter = $("filter").value.trim().toLowerCase();
  let procs = snap.processes.filter((p) => !filter ||
    [p.pid, p.name, p.initial_call].some((x) => x && String(x).toLowerCase().includes(filter)));
  procs.sort((a, b) => {
    const x = procValue(a, sortKey), y = procValue(b, sortKey);
    const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return (sortDesc ? -c : c) || a.pid.localeCompare(b.pid);
  });
  $("proc-count").textContent = `${procs.length} of ${snap.process_count} processes`;
  const names = {};
  for (const p of snap.processes) if (p.name) names[p.pid] = p.name;
  const keep = new Set();
  for (const p of procs) {
    keep.add(p.pid);
    let tr = rows.get(p.pid);
    if (!tr) {
      tr = el("tr", { class: "proc", "data-pid": p.pid });
      for (let i = 0; i < 9; i++) tr.append(el("td", {}));
      tr.append(el("td", {}, el("button", { type: "button", class: "kill danger", "data-pid": p.pid,
        onclick: () => kill(p.pid) }, "kill")));
      rows.set(p.pid, tr);
    }
    const sup = p.supervisor ? (names[p.supervisor] || p.supervisor) : "";
    const cpu = snap.cpu_tracing && typeof p.cpu_time === "number" ? p.cpu_time.toFixed(3) : "";
    const cells = [shortPid(p.pid), p.name, p.initial_call, p.status, p.message_queue_len, p.links.length,
      p.monitors.length, sup, cpu];
    cells.forEach((v, i) => { const td = tr.children[i]; const t = fmt(v); if (td.textContent !== t) td.textContent = t; });
    tr.children[0].className = "pid";
    tr.children[0].title = p.pid;
    tr.children[4].className = "num queue" + (p.message_queue_len > 100 ? " hot" : "");
    for (const i of [5, 6, 8]) tr.children[i].className = "num";
    tr.dataset.initial = p.initial_call || "";
    tr.dataset.name = p.name || "";
    body.append(tr); // appending an existing row moves it: the order follows the sort
  }
  for (const [pid, tr] of rows) if (!keep.has(pid)) { tr.remove(); rows.delete(pid); }
}
function kill(pid) {
  if (!watched) return;
  if (!window.confirm(`Kill process ${pid} on ${watched}? (exit(pid, 'kill'): it cannot trap it)`)) return;
  send({ cmd: "kill", node: watched, pid });
}

function treeEl(t, node) {
  const live = liveRestarts[`${node}|${t.pid}`] || 0;
  const restarts = (t.restarts || 0) + live;
  const det = el("details", { class: "tree", "data-pid": t.pid, "data-name": t.name || "" });
  if (openTrees.has(t.pid)) det.open = true;
  det.addEventListener("toggle", () => { if (det.open) openTrees.add(t.pid); else openTrees.delete(t.pid); });
  det.append(el("summary", {},
    el("span", { class: "sup-name" }, t.name || "(unnamed)"), " ",
    el("span", { class: "pid" }, t.pid), " ",
    el("span", { class: "muted" }, `${fmt(t.strategy)}, intensity ${fmt(t.intensity)} in ${fmt(t.period)} s`), " ",
    el("span", { class: "sup-status" }, t.error ? `(${t.error})` : fmt(t.status)), " ",
    el("span", { class: "restarts" + (restarts ? " hot" : ""), "data-restarts": restarts }, `restarts ${restarts}`),
    t.recent_restarts !== null && t.recent_restarts !== undefined ?
      el("span", { class: "muted" }, ` (${t.recent_restarts} in the window)`) : null));
  const list = el("ul", { class: "children" });
  for (const c of t.children || []) {
    const li = el("li", { class: "child", "data-child": fmt(c.id) },
      el("span", { class: "cid" }, fmt(c.id)), " ",
      el("span", { class: "pid" }, fmt(c.pid)), " ",
      el("span", { class: "muted" }, c.type + (c.node && c.node !== node ? ` on ${c.node}` : "")));
    if (c.tree) li.append(treeEl(c.tree, node));
    list.append(li);
  }
  det.append(list);
  return det;
}
let treesShown = null; // what the trees were last drawn from: unchanged data keeps the same elements
function renderTrees() {
  const box = $("trees");
  const gone = ((cluster && cluster.gave_up) || []).filter((g) => g.node === watched);
  // Redrawing replaces every element; skipping an identical redraw keeps a click or a selection
  // that lands between two snapshots on the element the user aimed at.
  const shown = JSON.stringify([watched, gone, snap && [snap.node, snap.supervisors, snap.counts], liveRestarts]);
  if (shown === treesShown) return;
  treesShown = shown;
  box.replaceChildren();
  for (const g of gone) {
    box.append(el("div", { class: "gaveup", "data-pid": g.supervisor },
      el("strong", {}, `supervisor ${g.name || ""} ${g.supervisor} GAVE UP`),
      ` at ${clock(g.ts)}: too many restarts; it stopped its children and ended.`));
  }
  if (!snap) return;
  if (!snap.supervisors.length) box.append(el("p", { class: "muted" }, "no supervisor running on this node"));
  for (const t of snap.supervisors) box.append(treeEl(t, snap.node));
  const c = snap.counts || {};
  box.append(el("p", { class: "muted" }, `node counts: crashes ${c.crashes}, restarts ${c.restarts}, supervisors that gave up ${c.give_ups}`));
}

function renderGroups() {
  const gb = $("groups").tBodies[0], rb = $("rooms").tBodies[0];
  gb.replaceChildren(); rb.replaceChildren();
  if (!snap) return;
  for (const g of snap.groups) gb.append(el("tr", { "data-group": fmt(g.group) }, el("td", {}, g.scope),
    el("td", {}, fmt(g.group)), el("td", { class: "num" }, g.members), el("td", { class: "num" }, g.local_members)));
  for (const r of snap.rooms) rb.append(el("tr", { "data-room": fmt(r.room) }, el("td", {}, fmt(r.room)),
    el("td", { class: "num" }, r.members), el("td", { class: "num" }, r.local_members)));
}
function renderSessions() {
  const body = $("sessions").tBodies[0];
  body.replaceChildren();
  if (!snap) return;
  for (const s of snap.sessions) body.append(el("tr", { "data-peer": s.node }, el("td", {}, s.node),
    el("td", {}, s.address), el("td", { class: "num" }, s.bytes_in), el("td", { class: "num" }, s.bytes_out),
    el("td", { class: "num" }, s.queued), el("td", { class: "num" }, s.last_heard)));
}

// ------------------------------------------------------------------ controls

for (const th of document.querySelectorAll("#processes th[data-key]")) {
  th.addEventListener("click", () => {
    const key = th.dataset.key;
    if (sortKey === key) sortDesc = !sortDesc; else { sortKey = key; sortDesc = th.classList.contains("num"); }
    for (const o of document.querySelectorAll("#processes th")) o.classList.remove("asc", "desc");
    th.classList.add(sortDesc ? "desc" : "asc");
    renderProcesses();
  });
}
document.querySelector('#processes th[data-key="message_queue_len"]').classList.add("desc");
$("filter").addEventListener("input", renderProcesses);
for (const b of document.querySelectorAll(".tabs button")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll(".tabs button")) o.classList.toggle("active", o === b);
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("hidden", t.id !== `tab-${b.dataset.tab}`);
  });
}
if (watched) $("watched").textContent = watched;
connect();
