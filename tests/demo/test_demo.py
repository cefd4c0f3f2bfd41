"""``snowg demo`` without a browser: the launcher as a real subprocess, real nodes, real clients.

One demo (launcher + 3 node OS processes) is started for the module; the tests
talk to it as the page does: HTTP for the files, the launcher's control
WebSocket for the cluster state and the buttons, and each node's chat
WebSocket. The last test starts its own demo to check that SIGINT leaves no
process behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List

import pytest
import websocket
from demo_process import STARTUP_TIMEOUT, Demo
from support import wait_until

STATE_TIMEOUT = 20.0
NODES = [f"demo{i}@127.0.0.1" for i in (1, 2, 3)]


class Control:
    """The launcher's control WebSocket, as the page uses it."""

    def __init__(self, demo: Demo) -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{demo.port}/control", timeout=5)
        self.state: Dict[str, Any] = {}
        self.results: List[Dict[str, Any]] = []

    def next(self) -> Dict[str, Any]:
        msg = json.loads(self.ws.recv())
        if msg["type"] == "state":
            self.state = msg
        else:
            self.results.append(msg)
        return msg

    def wait(
        self, predicate: Callable[[Dict[str, Any]], bool], what: str, timeout: float = STATE_TIMEOUT
    ) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.next()
            if msg["type"] == "state" and predicate(msg):
                return msg
        raise AssertionError(f"timed out waiting for {what}; last state:\n{json.dumps(self.state, indent=1)}")

    def act(self, **msg: Any) -> None:
        self.ws.send(json.dumps(msg))

    def close(self) -> None:
        self.ws.close()


def all_connected(state: Dict[str, Any]) -> bool:
    nodes = {n["name"]: n for n in state["nodes"]}
    return state["ready"] and all(
        nodes[n]["status"] == "up" and set(NODES) - {n} <= set(nodes[n]["sees"]) for n in NODES
    )


def child(state: Dict[str, Any], child_id: str) -> Dict[str, Any]:
    for c in state["tree"]["children"]:
        if c["id"] == child_id:
            return c
    return {}


def tree_running(state: Dict[str, Any]) -> bool:
    children = state["tree"].get("children") or []
    return len(children) == 4 and all(c["status"] == "running" and c["pid"] for c in children)


def wait_room(control: Control, room: str, nodes: List[str], count: int) -> None:
    """Wait until each of ``nodes`` counts ``count`` members of ``room`` in the cluster.

    Room broadcasts go only to the nodes a node knows to have members, and
    membership spreads between nodes a moment after a join.
    """
    control.wait(
        lambda s: all(n["room_counts"].get(room) == count for n in s["nodes"] if n["name"] in nodes),
        f"{count} members of {room} seen by {nodes}",
    )


class ChatClient:
    def __init__(self, port: int, room: str, user: str) -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=10)
        welcome = json.loads(self.ws.recv())
        assert welcome["type"] == "welcome"
        self.node = welcome["node"]
        self.ws.send(json.dumps({"type": "join", "room": room, "user": user}))
        self.expect(lambda m: m["type"] == "joined" and m["room"] == room)

    def expect(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float = 10.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if predicate(msg):
                return msg
        raise AssertionError("expected message did not come")

    def say(self, text: str) -> None:
        self.ws.send(json.dumps({"type": "say", "text": text}))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def control(demo: Demo):
    c = Control(demo)
    c.wait(all_connected, "three connected nodes")
    c.wait(tree_running, "the supervision tree")
    yield c
    c.close()


def http_get(url: str) -> tuple:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_page_and_static_files_are_served(demo: Demo) -> None:
    status, ctype, body = http_get(demo.url)
    assert status == 200 and ctype.startswith("text/html")
    assert b"app.js" in body and b"style.css" in body
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")):
        status, ctype, body = http_get(demo.url + name)
        assert status == 200 and ctype.startswith(kind) and body
    for bad in ("nope.js", "..%2Fsetup.cfg", "%2Fetc%2Fpasswd"):
        with pytest.raises(urllib.error.HTTPError) as e:
            http_get(demo.url + bad)
        assert e.value.code == 404


def test_three_nodes_up_and_fully_connected(control: Control) -> None:
    state = control.state
    assert [n["name"] for n in state["nodes"]] == NODES
    assert set(NODES) <= set(state["launcher_sees"])
    pids = {n["os_pid"] for n in state["nodes"]}
    assert len(pids) == 3 and all(pids)
    assert len({n["ws_port"] for n in state["nodes"]}) == 3
    tree = state["tree"]
    assert tree["node"] == NODES[0] and tree["supervisor"]
    kinds = {c["id"]: (c["kind"], c["node"]) for c in tree["children"]}
    assert kinds["local-1"] == ("local", NODES[0])
    assert kinds["remote-A"] == ("remote", NODES[1])
    assert kinds["remote-B"] == ("remote", NODES[2])


def test_chat_message_on_node1_reaches_node3(control: Control) -> None:
    ports = {n["name"]: n["ws_port"] for n in control.state["nodes"]}
    a = ChatClient(ports[NODES[0]], "testroom", "alice")
    c = ChatClient(ports[NODES[2]], "testroom", "carol")
    other = ChatClient(ports[NODES[2]], "elsewhere", "eve")
    wait_room(control, "testroom", [NODES[0], NODES[2]], 2)
    try:
        assert a.node == NODES[0] and c.node == NODES[2]
        a.say("hello from node 1")
        got = c.expect(lambda m: m["type"] == "msg")
        assert (got["user"], got["text"], got["node"], got["room"]) == (
            "alice",
            "hello from node 1",
            NODES[0],
            "testroom",
        )
        c.say("hi back")
        got = a.expect(lambda m: m["type"] == "msg" and m["user"] == "carol")
        assert got["text"] == "hi back"
        other.ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            other.expect(lambda m: m["type"] == "msg", timeout=1.0)
    finally:
        for cl in (a, c, other):
            cl.close()


def test_crash_button_restarts_a_remote_child(control: Control) -> None:
    before = child(control.state, "remote-A")
    control.act(action="crash", child="remote-A")
    after = control.wait(
        lambda s: (
            child(s, "remote-A").get("restarts", 0) > before["restarts"] and child(s, "remote-A")["status"] == "running"
        ),
        "remote-A restarted",
    )
    c = child(after, "remote-A")
    assert c["pid"] != before["pid"] and c["node"] == before["node"] == NODES[1]
    assert c["restarts"] == before["restarts"] + 1
    assert any(r["ok"] and r["action"] == "crash" for r in control.results)


def test_kill_and_restart_a_node(control: Control) -> None:
    """kill -9 demo3: remote-B moves to demo2; restart demo3: it rejoins with a new creation."""
    before = {n["name"]: n for n in control.state["nodes"]}
    b = child(control.state, "remote-B")
    assert b["node"] == NODES[2]
    control.act(action="kill", node=NODES[2])
    control.wait(
        lambda s: (
            s["nodes"][2]["status"] == "down"
            and child(s, "remote-B").get("node") == NODES[1]
            and child(s, "remote-B")["status"] == "running"
        ),
        "remote-B on demo2",
    )
    state = control.wait(lambda s: NODES[2] not in s["nodes"][0]["sees"], "demo1 sees demo3 go")
    assert child(state, "remote-B")["restarts"] == b["restarts"] + 1
    old_os_pid = before[NODES[2]]["os_pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(old_os_pid, 0)  # reaped by the launcher
    control.act(action="restart", node=NODES[2])
    state = control.wait(all_connected, "demo3 back in the cluster", timeout=30)
    n3 = state["nodes"][2]
    assert n3["os_pid"] != old_os_pid and n3["creation"] != before[NODES[2]]["creation"]
    assert n3["launches"] == 2
    # its chat works again and reaches the others
    ports = {n["name"]: n["ws_port"] for n in state["nodes"]}
    a = ChatClient(ports[NODES[1]], "after", "bob")
    c = ChatClient(ports[NODES[2]], "after", "carol")
    wait_room(control, "after", [NODES[1], NODES[2]], 2)
    try:
        c.say("I am back")
        assert a.expect(lambda m: m["type"] == "msg")["text"] == "I am back"
    finally:
        a.close()
        c.close()


def test_forty_crash_clicks_make_the_supervisor_give_up_and_the_page_says_so(control: Control) -> None:
    """The "40 crash clicks" case: demo_sup reaches its restart intensity, gives up, and the state says so."""
    intensity = control.state["tree"]["intensity"]
    clicks = 0
    while clicks < 40:
        clicks += 1
        control.act(action="crash", child="local-1")
        while True:  # each answer comes once the crash was sent: the next click crashes the child running then
            msg = control.next()
            if msg["type"] == "result" and msg["action"] == "crash":
                break
        if not msg["ok"]:  # no child running any more: the supervisor is gone
            break
    state = control.wait(lambda s: s["tree"].get("gave_up") is not None, "demo_sup gave up")
    tree = state["tree"]
    assert not msg["ok"] and clicks <= 40  # a click found no child: the supervisor had given up
    assert tree["supervisor"] is None
    assert tree["gave_up"]["restarts"] == intensity + 1 and tree["gave_up"]["child_id"] == "local-1"
    # The counts add up: the supervisor's restarts are its children's, and every child is shown stopped.
    assert tree["restarts"] == sum(c["restarts"] for c in tree["children"]) >= intensity - 2
    assert {c["id"] for c in tree["children"]} == {"local-1", "local-2", "remote-A", "remote-B"}
    assert all(c["status"] == "stopped: the supervisor gave up" for c in tree["children"])
    assert any("supervisor demo_sup gave up" in e["text"] for e in state["events"])
    # It is not started again behind the user's back...
    state = control.wait(lambda s: s["nodes"][0]["counts"]["give_ups"] >= 1, "demo1's snapshot counts the give-up")
    assert state["tree"]["supervisor"] is None
    # ...but by the page's button.
    control.act(action="start_tree")
    state = control.wait(lambda s: tree_running(s) and s["tree"]["gave_up"] is None, "demo_sup running again")
    assert state["tree"]["restarts"] == 0


def _processes_mentioning(text: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if text.encode() in cmdline and not zombie:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to look for leftover processes")
def test_sigint_stops_everything(tmp_path: Any) -> None:
    d = Demo(str(tmp_path))
    try:
        d.wait_line("open http://", STARTUP_TIMEOUT)
        c = Control(d)
        state = c.wait(all_connected, "three connected nodes")
        c.close()
        node_pids = [n["os_pid"] for n in state["nodes"]]
        assert sorted(_processes_mentioning(str(tmp_path))) == sorted(node_pids + [d.proc.pid])
    finally:
        code = d.stop()
    assert code == 0, d.log()
    assert "no process left behind" in "".join(d.output)
    wait_until(lambda: not _processes_mentioning(str(tmp_path)), "the demo's processes to end", timeout=5)
    for pid in node_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_control_socket_refuses_other_origins(demo: Demo) -> None:
    """Any web page may try a WebSocket to 127.0.0.1; only the demo's own page gets the buttons (403 for others)."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{demo.port}/control", timeout=10, origin="http://evil.example")
    assert refused.value.status_code == 403


def test_port_in_use_is_a_clear_error(tmp_path: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "snowg", "demo", "--port", str(port), "--dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"cannot start on http://127.0.0.1:{port}/" in proc.stdout
    assert _processes_mentioning(str(tmp_path)) == []
