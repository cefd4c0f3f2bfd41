"""The web observer's server: ``snowg observer`` (a real OS process, a hidden node) against real peer nodes.

The page's channel is driven with a real WebSocket client (websocket-client)
as the page would: the cluster messages, watching a node, events pushed
as they happen, the kill command (checked on the node itself), a node whose
OS process is killed; then the protections (Origin, Host, message size)
and ``/metrics`` read by prometheus_client's own parser. Everything waits
for messages the observer pushes, never for a sleep.
"""

pytest_plugins = ["snowg.testing"]

import json  # noqa: E402
from typing import Any, Dict  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
from gevent import socket as gsocket  # noqa: E402

import observefuncs  # noqa: E402
import snowg  # noqa: E402
from epmdsupport import epmd_env, snowg_mapper  # noqa: E402, F401
from observersupport import Page, node_row, observer_process  # noqa: E402
from snowg.observe._observer import merge_metrics, parse_pid  # noqa: E402
from snowg.testing import wait_for  # noqa: E402
from support import recv, tagged  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _http(port: int, path: str, host: str = "") -> Any:
    """GET over a gevent socket: (status, headers, body)."""
    sock = gsocket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _all_up(names):
    def match(msg: Dict[str, Any]) -> bool:
        if msg["type"] != "cluster":
            return False
        rows = [node_row(msg, n) for n in names]
        return all(r is not None and r["up"] and r["answering"] for r in rows)

    return match


def test_the_page_channel_shows_the_cluster_a_node_its_events_and_kills(peers, me, snowg_cluster_config):
    p1 = peers.start(modules=["observefuncs"])
    p2 = peers.start(modules=["observefuncs"])
    p3 = peers.start(modules=["observefuncs"])
    names = [p1.name, p2.name, p3.name]
    roles = p2.rpc(observefuncs.start_tree, me)
    crasher = recv(tagged("crasher"))[1]
    lonely = recv(tagged("lonely"))[1]

    with observer_process(snowg_cluster_config, p1.target) as obs:
        page = Page(obs.port)
        try:
            hello = page.next(lambda m: m["type"] == "hello")
            assert hello["observer"] == obs.node
            # Every node, found through p1 alone, with its connections; the hidden observer in nobody's.
            cluster = page.next(_all_up(names))
            for name in names:
                row = node_row(cluster, name)
                assert set(names) - {name} <= set(row["connected_to"])
                assert obs.node not in row["connected_to"]
                assert row["events"] == "yes" or row["events"] == "starting"
            assert snowg.node() in [n["name"] for n in cluster["nodes"]]
            assert obs.node not in snowg.nodes() and obs.node in snowg.cluster.hidden_nodes()

            # Watching p2: its processes, by initial call, and its supervision tree.
            page.send(cmd="watch", node=p2.name)
            msg = page.next(lambda m: m["type"] == "node" and m["node"] == p2.name and m["snapshot"])
            snap = msg["snapshot"]
            [lone] = [p for p in snap["processes"] if p["pid"] == str(lonely)]
            assert (lone["name"], lone["initial_call"]) == ("lonely", "observefuncs.lonely")
            [tree] = [t for t in snap["supervisors"] if t["name"] == "obs_sup"]
            assert tree["pid"] == str(roles["sup"]) and tree["restarts"] == 0

            # A crash and its restart arrive as events, then in the next snapshot's counts.
            page.next(lambda m: m["type"] == "cluster" and node_row(m, p2.name)["events"] == "yes")
            snowg.send(crasher, "crash")
            crash = page.next(lambda m: m["type"] == "event" and m["kind"] == "crash")
            assert (crash["node"], crash["pid"]) == (p2.name, str(crasher))
            assert "asked to crash" in crash["reason"]
            restart = page.next(lambda m: m["type"] == "event" and m["kind"] == "restart")
            assert (restart["node"], restart["supervisor"], restart["child_id"]) == (
                p2.name,
                str(roles["sup"]),
                "crasher",
            )
            assert restart["measurements"]["restarts"] == 1
            new_crasher = recv(tagged("crasher"))[1]
            msg = page.next(
                lambda m: (
                    m["type"] == "node"
                    and m["snapshot"]
                    and any(p["pid"] == str(new_crasher) for p in m["snapshot"]["processes"])
                )
            )
            [tree] = [t for t in msg["snapshot"]["supervisors"] if t["name"] == "obs_sup"]
            assert tree["restarts"] == 1
            assert msg["snapshot"]["counts"]["restarts"] == 1 and msg["snapshot"]["counts"]["crashes"] == 1

            # Kill: the process named ends on its node.
            page.send(cmd="kill", node=p2.name, pid=str(lonely))
            killed = page.next(lambda m: m["type"] == "killed")
            assert killed == {"type": "killed", "node": p2.name, "pid": str(lonely), "ok": True}
            assert wait_for(lambda: not p2.rpc(snowg.is_alive, lonely), timeout=10)
            # A pid of another node, and a bad pid, are refused.
            page.send(cmd="kill", node=p2.name, pid=str(crasher).replace(p2.name, p3.name))
            assert page.next(lambda m: m["type"] == "killed")["ok"] is False
            page.send(cmd="kill", node=p2.name, pid="<nonsense>")
            assert page.next(lambda m: m["type"] == "killed")["error"] == "not a pid: '<nonsense>'"

            # Crashing the child until obs_sup (intensity 5) gives up: the event, then the cluster's record of it.
            child = new_crasher
            while True:
                snowg.send(child, "crash")
                ev = page.next(lambda m: m["type"] == "event" and m["kind"] in ("restart", "give_up"))
                if ev["kind"] == "give_up":
                    break
                child = recv(tagged("crasher"))[1]
            assert (ev["node"], ev["supervisor"], ev["name"]) == (p2.name, str(roles["sup"]), "obs_sup")
            assert ev["measurements"]["restarts"] == ev["intensity"] + 1 == 6
            cluster = page.next(lambda m: m["type"] == "cluster" and m["gave_up"])
            assert [(g["node"], g["supervisor"], g["name"]) for g in cluster["gave_up"]] == [
                (p2.name, str(roles["sup"]), "obs_sup")
            ]
            assert node_row(cluster, p2.name)["counts"]["give_ups"] == 1

            # A node whose OS process is killed is shown down at the next push.
            p3.kill()
            page.next(lambda m: m["type"] == "event" and m["kind"] == "node_down" and m["node"] == p3.name)
            down = page.next(lambda m: m["type"] == "cluster")
            assert node_row(down, p3.name)["up"] is False and node_row(down, p3.name)["connected_to"] == []
            assert node_row(down, p1.name)["up"] and p3.name not in node_row(down, p1.name)["connected_to"]
        finally:
            page.close()


def test_the_page_and_its_channel_refuse_other_origins_hosts_and_big_messages(peers, snowg_cluster_config):
    import websocket

    p1 = peers.start()
    with observer_process(snowg_cluster_config, p1.target) as obs:
        status, headers, body = _http(obs.port, "/")
        assert status == 200 and b"snowg observer" in body
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert _http(obs.port, "/static/observer.js")[0] == 200
        assert _http(obs.port, "/static/../_observer.py")[0] == 404
        # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own Host.
        assert _http(obs.port, "/", host=f"evil.example:{obs.port}")[0] == 421
        assert _http(obs.port, "/metrics", host=f"evil.example:{obs.port}")[0] == 421

        # Another site's page: refused (1008) before anything is sent to it.
        bad = Page(obs.port, origin="http://evil.example")
        try:
            opcode, frame = bad.ws.recv_data_frame(True)
            assert opcode == websocket.ABNF.OPCODE_CLOSE
            assert int.from_bytes(frame.data[:2], "big") == 1008
        finally:
            bad.close()
        # The same host on another port is another origin.
        other = Page(obs.port, origin=f"http://127.0.0.1:{obs.port + 1}")
        try:
            opcode, frame = other.ws.recv_data_frame(True)
            assert int.from_bytes(frame.data[:2], "big") == 1008
        finally:
            other.close()

        # A message over the bound closes the page's channel with 1009; the observer serves the next one.
        page = Page(obs.port)
        try:
            page.next(lambda m: m["type"] == "hello")
            page.ws.send(json.dumps({"cmd": "watch", "node": "x" * 5000}))
            with gevent.Timeout(10):
                while True:
                    opcode, frame = page.ws.recv_data_frame(True)
                    if opcode == websocket.ABNF.OPCODE_CLOSE:
                        break
            assert int.from_bytes(frame.data[:2], "big") == 1009
        finally:
            page.close()
        page = Page(obs.port)
        try:
            page.next(lambda m: m["type"] == "hello")
            page.send(cmd="nonsense")
            assert page.next(lambda m: m["type"] == "error")["error"] == "unknown command 'nonsense'"
            page.ws.send("not json")
            assert page.next(lambda m: m["type"] == "error")["error"] == "expected a JSON object"
            page.next(_all_up([p1.name]))
        finally:
            page.close()


def test_metrics_of_every_node_with_a_node_label_parse_with_prometheus_client(peers, snowg_cluster_config):
    from prometheus_client.parser import text_string_to_metric_families

    p1 = peers.start()
    p2 = peers.start()
    with observer_process(snowg_cluster_config, p1.target) as obs:
        page = Page(obs.port)
        try:
            page.next(_all_up([p1.name, p2.name]))
        finally:
            page.close()
        status, headers, body = _http(obs.port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        procs = {s.labels["node"]: s.value for s in families["snowg_processes"].samples}
        assert {p1.name, p2.name} <= set(procs) and all(v > 0 for v in procs.values())
        up = {s.labels["node"]: s.value for s in families["snowg_observer_node_up"].samples}
        assert up[p1.name] == up[p2.name] == 1
        assert obs.node not in procs
        # Each family once, with its type, although every node wrote it.
        assert families["snowg_process_crashes"].type == "counter"
        assert body.decode().count("# TYPE snowg_processes gauge") == 1


def test_merge_metrics_and_parse_pid():
    a = '# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n# TYPE g gauge\ng{k="v"} 2\n'
    b = '# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n# TYPE g gauge\ng{k="w"} 4\n'
    text = merge_metrics({"b@h": b, "a@h": a}, {"a@h": True, "b@h": True, "c@h": False})
    assert text.splitlines() == [
        "# HELP x_total X.",
        "# TYPE x_total counter",
        'x_total{node="a@h"} 1',
        'x_total{node="b@h"} 3',
        "# TYPE g gauge",
        'g{node="a@h",k="v"} 2',
        'g{node="b@h",k="w"} 4',
        "# HELP snowg_observer_node_up Whether the node answered the observer's last request (1) or not (0).",
        "# TYPE snowg_observer_node_up gauge",
        'snowg_observer_node_up{node="a@h"} 1',
        'snowg_observer_node_up{node="b@h"} 1',
        'snowg_observer_node_up{node="c@h"} 0',
    ]
    pid = parse_pid("<n1@127.0.0.1.42.7>")
    assert (pid.node, pid.id, pid.creation) == ("n1@127.0.0.1", 42, 7)
    assert str(pid) == "<n1@127.0.0.1.42.7>"
    for bad in ("", "<>", "<n1.1.2>", "<n1@h.x.2>", "n1@h.1.2", 5):
        with pytest.raises(ValueError):
            parse_pid(bad)


def test_without_node_it_uses_discovery(peers, snowg_cluster_config, snowg_mapper, monkeypatch):  # noqa: F811
    """No NODE: discovery (``local``) finds the nodes of its prefix; the observer is not in the port mapper."""
    import subprocess
    import sys

    monkeypatch.delenv("SNOWG_CLUSTER", raising=False)
    # Two nodes of the prefix "obst" registered with this test's own port mapper; nobody connects them.
    a = peers.start("obst-a1@127.0.0.1", connect=False)
    b = peers.start("obst-b2@127.0.0.1", connect=False)
    with observer_process(snowg_cluster_config, None, args=["--name", "obst-observer1"]) as obs:
        page = Page(obs.port)
        try:
            cluster = page.next(_all_up([a.name, b.name]))
        finally:
            page.close()
        assert sorted(n["name"] for n in cluster["nodes"]) == [a.name, b.name]
        names = subprocess.run(
            [sys.executable, "-m", "snowg", "names", "--port", str(snowg_mapper)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert "obst-a1" in names and "obst-b2" in names and "observer" not in names
