"""What each node of ``snowg demo`` runs: the chat server and the supervision tree.

Every demo node imports this module (``snowg node demoN@127.0.0.1 --import
snowg.demo.node_app``), which makes its ``@spawnable`` functions startable
there. The launcher (itself the node ``demo@127.0.0.1``) drives the nodes with
``snowg.rpc.call`` of these functions:

* :func:`start_web` starts the node's WebSocket chat server;
* :func:`node_info` says what the node sees (connected nodes, rooms);
* :func:`start_tree` starts, on node 1, the supervisor ``demo_sup`` with two
  local children and two children on the other nodes (remote supervision,
  ``ChildSpec(node=[candidates])``), and the stats process ``demo_stats``;
* :func:`tree_state` and :func:`crash_child` read and poke that tree.

The launcher reads everything else of a node from ``snowg.observe:snapshot``
(what ``snowg observer`` shows). The tree's restart counts are the
supervisor's own: a telemetry handler, attached by :func:`start_tree`,
counts its ``restart`` events per child, and its ``give_up`` event
(restart intensity reached: the "40 crash clicks" case) is kept, so the
page says that the supervisor gave up, with counts that add up.

The chat protocol (JSON text frames): the client sends ``{"type": "join",
"room": r, "user": u}`` and ``{"type": "say", "text": t}``; the server sends
``welcome``, ``joined``, ``msg`` and ``system`` frames. A message goes to the
room with :func:`snowg.ws.broadcast`, which reaches the room's members on
every node of the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

import snowg
from snowg import ChildSpec, Exit, spawnable, supervisor, telemetry
from snowg import ws
from snowg.cluster import current as _current_node

log = logging.getLogger("snowg.demo")

SUP_NAME = "demo_sup"
STATS_NAME = "demo_stats"
MAX_TEXT = 2000
MAX_NAME = 40

_server: Optional[ws.WebSocketServer] = None
# child id -> {'starts', 'pid', 'node', 'status'}; written by the stats process only.
_stats: Dict[str, Dict[str, Any]] = {}
# child id -> 'local' | list of candidate nodes; and how remote children are made.
_layout: Dict[str, Any] = {}
_mode: Dict[str, str] = {"remote": ""}
#: demo_sup's restart intensity: more than this many restarts in PERIOD seconds and it gives up.
INTENSITY = 30
PERIOD = 10
# The running demo_sup's pid, its restarts per child (its telemetry events), and its give-up.
_tree: Dict[str, Any] = {"sup": None, "restarts": {}, "gave_up": None}


# ------------------------------------------------------------------ chat


def _clean(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.split())[:limit]


def _frame(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


def chat_handler(conn: ws.Connection) -> None:
    """One chat client (a process per connection)."""
    me = snowg.node()
    room: Optional[str] = None
    user = "anonymous"
    conn.send(_frame(type="welcome", node=me))
    while True:
        data = conn.receive()
        if data is None:
            break
        if not isinstance(data, str):
            continue
        try:
            msg = json.loads(data)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        kind = msg.get("type")
        if kind == "join":
            new_room = _clean(msg.get("room"), MAX_NAME) or "lobby"
            user = _clean(msg.get("user"), MAX_NAME) or user
            if room is not None and room != new_room:
                conn.leave(room)
                ws.broadcast(room, _frame(type="system", room=room, text=f"{user} left", node=me))
            room = new_room
            conn.join(room)
            conn.send(_frame(type="joined", room=room, user=user, node=me))
            ws.broadcast_except(room, _frame(type="system", room=room, text=f"{user} joined via {me}", node=me), conn)
        elif kind == "say" and room is not None:
            text = _clean(msg.get("text"), MAX_TEXT)
            if text:
                ws.broadcast(room, _frame(type="msg", room=room, user=user, text=text, node=me, ts=time.time()))
    if room is not None:
        ws.broadcast(room, _frame(type="system", room=room, text=f"{user} left", node=me))


def _not_found(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    body = f"snowg demo node {snowg.node()}: this port takes WebSocket connections (the chat).\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


@spawnable
def start_web(port: int) -> int:
    """Start this node's WebSocket chat server (once); return its port.

    ``port`` is the preferred port; when it is taken, any free port is used.
    The default Origin check applies: the page (on the launcher's port of the
    same host) may connect, a page of another site gets a 403.
    """
    global _server
    if _server is None:
        try:
            _server = ws.serve(("127.0.0.1", port), chat_handler, fallback_app=_not_found)
        except OSError:
            _server = ws.serve(("127.0.0.1", 0), chat_handler, fallback_app=_not_found)
        log.info("chat WebSocket server on port %d", _server.port)
    return int(_server.port)


@spawnable
def node_info() -> Dict[str, Any]:
    """What the launcher shows about this node."""
    info = _current_node()
    return {
        "name": snowg.node(),
        "nodes": snowg.nodes(),
        "creation": info.creation if info is not None else 0,
        "address": info.address if info is not None else "",
        "os_pid": os.getpid(),
        "ws_port": int(_server.port) if _server is not None else 0,
        "rooms": {room: len(ws.members(room)) for room in ws.rooms()},
        # The cluster-wide members of this node's rooms, as this node sees them (eventually consistent).
        "room_counts": {room: ws.count(room) for room in ws.rooms()},
    }


# ------------------------------------------------------- supervision tree


@spawnable
def demo_worker(child_id: str, home: str) -> None:
    """A supervised child: reports its start to ``demo_stats`` on ``home``, crashes on ``'crash'``."""
    try:
        snowg.send((STATS_NAME, home), ("started", child_id, snowg.self(), snowg.node()))
    except Exception:  # noqa: BLE001 - no stats process (yet): the child still runs
        pass
    handled = 0
    while True:
        msg = snowg.receive()
        if msg == "crash":
            raise RuntimeError(f"{child_id} was crashed from the demo page")
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "ping":
            handled += 1
            snowg.send(msg[1], ("pong", msg[2], handled))


def _stats_loop() -> None:
    """The stats process: counts the starts of each child (restarts = starts - 1)."""
    while True:
        msg = snowg.receive()
        if type(msg) is not tuple or len(msg) < 2:
            continue
        if msg[0] == "started" and len(msg) == 4:
            _tag, child_id, pid, node = msg
            entry = _stats.setdefault(child_id, {"starts": 0})
            entry.update(starts=entry["starts"] + 1, pid=pid, node=node, status="running", since=time.time())
        elif msg[0] == "waiting" and len(msg) == 2:
            entry = _stats.setdefault(msg[1], {"starts": 0})
            entry["status"] = "waiting for a node"


def remote_proxy(child_id: str, candidates: List[str], home: str) -> None:
    """Fallback for a remote child while ``ChildSpec(node=...)`` is not available.

    A local child of the supervisor that starts the real worker with a remote
    ``spawn_link`` on the first connected candidate node and ends with the
    worker's exit reason (``'noconnection'`` when that node is lost), so the
    supervisor's restart moves the child to the next candidate that is up.
    """
    snowg.trap_exit(True)
    worker = None
    waiting_said = False
    while worker is None:
        up = set(snowg.nodes())
        for cand in candidates:
            if cand in up:
                try:
                    worker = snowg.spawn_link(demo_worker, child_id, home, node=cand)
                except snowg.SpawnError:
                    continue
                break
        if worker is None:
            if not waiting_said:
                snowg.send(STATS_NAME, ("waiting", child_id))
                waiting_said = True
            try:
                msg = snowg.receive(lambda m: isinstance(m, Exit), timeout=0.5)
            except snowg.Timeout:
                continue
            snowg.exit(msg.reason)  # the supervisor stops us
    while True:
        msg = snowg.receive(lambda m: isinstance(m, Exit))
        if msg.pid == worker:
            snowg.exit(msg.reason)
        snowg.exit(worker, msg.reason)  # our supervisor: take the worker along
        snowg.exit(msg.reason)


def _remote_spec(child_id: str, candidates: List[str], home: str, mode: str) -> ChildSpec:
    if mode in ("", "native"):
        try:
            spec = ChildSpec(child_id, (demo_worker, (child_id, home)), node=list(candidates))
            _mode["remote"] = "native"
            return spec
        except (ValueError, TypeError) as exc:
            if mode == "native":
                raise
            log.warning("remote supervision with a candidate list is not available (%s): using a proxy", exc)
    _mode["remote"] = "proxy"
    return ChildSpec(child_id, (remote_proxy, (child_id, list(candidates), home)), shutdown=2.0)


def _on_supervisor_event(event: Any, measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
    """demo_sup's restarts and give-up, counted as the supervisor counts them (never blocks)."""
    if _tree["sup"] is None or metadata.get("supervisor") != _tree["sup"]:
        return
    if event == telemetry.SUPERVISOR_RESTART:
        restarts = _tree["restarts"]
        child_id = metadata.get("child_id")
        restarts[child_id] = restarts.get(child_id, 0) + 1
    elif event == telemetry.SUPERVISOR_GIVE_UP:
        _tree["gave_up"] = {
            "at": time.time(),
            "supervisor": str(metadata.get("supervisor")),
            "child_id": metadata.get("child_id"),
            "restarts": measurements.get("restarts"),
            "intensity": metadata.get("intensity"),
            "period": metadata.get("period"),
        }


TREE_HANDLER = "snowg.demo.tree"


def _count_tree_events() -> None:
    """Attach :func:`_on_supervisor_event` (again: a handler that raised was detached).

    Done by :func:`start_tree`, not on import: the launcher and anything else
    that imports this module for its functions' names gets no handler, and
    its supervisors' restarts make no telemetry event for it.
    """
    telemetry.detach(TREE_HANDLER)
    telemetry.attach_many(
        TREE_HANDLER, [telemetry.SUPERVISOR_RESTART, telemetry.SUPERVISOR_GIVE_UP], _on_supervisor_event
    )


@spawnable
def start_tree(others: List[str]) -> str:
    """Start ``demo_stats`` and the supervisor ``demo_sup`` here (once); return the supervisor's pid.

    ``others`` are the other demo nodes: remote child ``remote-A`` prefers the
    first and falls back to the second, ``remote-B`` the other way round.
    Set ``SNOWG_DEMO_REMOTE=proxy`` (or ``native``) to choose how remote
    children are supervised; by default ``ChildSpec(node=[...])`` when this
    snowg has it, else a local proxy child.
    """
    home = snowg.node()
    sup = snowg.whereis(SUP_NAME)
    if sup is not None:
        return str(sup)
    if snowg.whereis(STATS_NAME) is None:
        snowg.register(STATS_NAME, snowg.spawn(_stats_loop))
    mode = os.environ.get("SNOWG_DEMO_REMOTE", "")
    others = list(others)
    specs = [
        ChildSpec("local-1", (demo_worker, ("local-1", home))),
        ChildSpec("local-2", (demo_worker, ("local-2", home))),
    ]
    _layout.clear()
    _layout.update({"local-1": [home], "local-2": [home]})
    if others:
        pairs = [("remote-A", others), ("remote-B", list(reversed(others)))]
        for child_id, cands in pairs:
            specs.append(_remote_spec(child_id, cands, home, mode))
            _layout[child_id] = cands
    # Generous intensity: people click "crash" and kill nodes.
    try:
        _tree.update(sup=None, restarts={}, gave_up=None)
        _count_tree_events()
        pid = supervisor.start(specs, strategy="one_for_one", intensity=INTENSITY, period=PERIOD, name=SUP_NAME)
        _tree["sup"] = pid
        return str(pid)
    except snowg.StartError:
        sup = snowg.whereis(SUP_NAME)  # another start_tree won the race
        if sup is None:
            raise
        return str(sup)


@spawnable
def tree_state() -> Dict[str, Any]:
    """The supervisor's children with their pids, nodes and restart counts (for the page)."""
    sup = snowg.whereis(SUP_NAME)
    restarts: Dict[Any, int] = _tree["restarts"]
    out: Dict[str, Any] = {
        "node": snowg.node(),
        "supervisor": str(sup) if sup else None,
        "mode": _mode["remote"],
        "children": [],
        "intensity": INTENSITY,
        "period": PERIOD,
        "restarts": sum(restarts.values()),
        "gave_up": _tree["gave_up"],
    }
    if sup is None:
        if _tree["gave_up"] is not None:
            # It stopped its children and ended: show them stopped, with the restarts it made.
            for child_id in _layout:
                out["children"].append(_child_row(child_id, None, "stopped: the supervisor gave up", restarts))
        return out
    try:
        children = supervisor.which_children(sup)
    except Exception as exc:  # noqa: BLE001 - it may be restarting its children right now
        out["error"] = str(exc)
        return out
    up = set(snowg.nodes()) | {snowg.node()}
    for child_id, pid, _type in children:
        entry = _stats.get(child_id, {})
        status = entry.get("status", "starting")
        if pid == "restarting" or pid is None:
            status = "restarting" if pid == "restarting" else "stopped"
        elif entry.get("node") and entry["node"] not in up:
            status = "node down"
        out["children"].append(_child_row(child_id, pid, status, restarts))
    return out


def _child_row(child_id: str, pid: Any, status: str, restarts: Dict[Any, int]) -> Dict[str, Any]:
    entry = _stats.get(child_id, {})
    return {
        "id": child_id,
        "pid": str(entry["pid"]) if "pid" in entry else None,
        "sup_pid": str(pid) if isinstance(pid, snowg.Pid) else str(pid),
        "node": entry.get("node"),
        "kind": "local" if _layout.get(child_id) == [snowg.node()] else "remote",
        "candidates": list(_layout.get(child_id, [])),
        "starts": entry.get("starts", 0),
        "restarts": restarts.get(child_id, 0),
        "status": status,
    }


@spawnable
def crash_child(child_id: str) -> Optional[str]:
    """Send ``'crash'`` to the running process of child ``child_id``; return its pid (None: none running).

    The pid is the supervisor's own (``which_children``: it answers once it
    has handled the previous crash, so quick clicks each crash the child that
    runs then), or, for a remote child behind a proxy, the worker's.
    """
    sup = snowg.whereis(SUP_NAME)
    if sup is None:
        return None
    try:
        children = {cid: pid for cid, pid, _type in supervisor.which_children(sup)}
    except Exception:  # noqa: BLE001 - it ended meanwhile
        return None
    pid = children.get(child_id)
    if not isinstance(pid, snowg.Pid):
        return None
    if _mode["remote"] == "proxy" and _layout.get(child_id) != [snowg.node()]:
        entry = _stats.get(child_id, {})
        pid = entry.get("pid")
        if not isinstance(pid, snowg.Pid):
            return None
    snowg.send(pid, "crash")
    return str(pid)
