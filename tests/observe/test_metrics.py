"""The Prometheus metrics of a node (``snowg.observe._metrics``), parsed with prometheus_client's own parser.

Each test reads the metrics, makes real things happen (a crash, a
supervisor's restart and giving up, a WebSocket client, a peer node), reads
them again and checks the exact differences.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import gevent
import gevent.socket
import pytest
import websocket
from gevent.pywsgi import WSGIServer
from prometheus_client.parser import text_string_to_metric_families

import distfuncs as df
import snowg
from snowg import ChildSpec, Down, supervisor, telemetry
from snowg.observe import _metrics
from snowg.observe._metrics import metrics_app, metrics_text
from support import recv, tagged

pytestmark = pytest.mark.timeout(60)

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Tuple[Dict[str, str], Samples]:
    """(family name -> type, (sample name, sorted labels) -> value)."""
    types: Dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def delta(before: Samples, after: Samples) -> Dict[Any, float]:
    """The samples that changed, by how much (gauges and timings left out)."""
    skip = ("snowg_processes", "snowg_message_queue", "snowg_session_", "snowg_ws_connection_duration_seconds_sum")
    out = {}
    for key, value in after.items():
        if key[0].startswith(skip):
            continue
        change = value - before.get(key, 0)
        if change:
            out[key] = change
    return out


def test_every_family_has_its_type_and_help():
    types, samples = parse(metrics_text())
    assert types == {
        "snowg_process_crashes": "counter",
        "snowg_supervisor_restarts": "counter",
        "snowg_supervisor_give_ups": "counter",
        "snowg_node_up": "counter",
        "snowg_node_down": "counter",
        "snowg_session_busy": "counter",
        "snowg_ws_connects": "counter",
        "snowg_ws_closes": "counter",
        "snowg_ws_overflows": "counter",
        "snowg_ws_connection_duration_seconds": "summary",
        "snowg_processes": "gauge",
        "snowg_message_queue_messages": "gauge",
        "snowg_message_queue_max": "gauge",
        "snowg_connected_nodes": "gauge",
        "snowg_ws_open_connections": "gauge",
        "snowg_session_received_bytes": "counter",
        "snowg_session_sent_bytes": "counter",
        "snowg_session_queued_bytes": "gauge",
        "snowg_session_last_heard_seconds": "gauge",
    }
    text = metrics_text()
    assert all(f"# HELP {name}" in text for name in ("snowg_processes", "snowg_process_crashes_total"))


def child(rec: snowg.Pid) -> None:
    snowg.send(rec, ("started", snowg.self()))
    snowg.receive(lambda m: m == "crash")
    raise RuntimeError("child failed")


def test_crashes_restarts_and_giving_up_are_counted(trapping_me):
    _, before = parse(metrics_text())
    sup = supervisor.start_link([ChildSpec("c", (child, (trapping_me,)))], name="metrics_sup", intensity=1)
    for _ in range(2):
        _, pid = recv(tagged("started"))
        snowg.send(pid, "crash")
    assert recv(lambda m: type(m) is snowg.Exit and m.pid == sup).reason == "shutdown"
    _, after = parse(metrics_text())
    assert delta(before, after) == {
        ("snowg_process_crashes_total", ()): 2,
        ("snowg_supervisor_restarts_total", (("supervisor", "metrics_sup"),)): 1,
        ("snowg_supervisor_give_ups_total", (("supervisor", "metrics_sup"),)): 1,
    }


def test_process_and_mailbox_gauges(me):
    snowg.send(me, "one")
    snowg.send(me, "two")
    parked = snowg.spawn(snowg.receive, lambda m: m == "never")
    for i in range(5):
        snowg.send(parked, i)
    expected = len(snowg.processes())
    _, samples = parse(metrics_text())  # nothing yields in between: the same processes
    assert samples[("snowg_processes", ())] == expected
    assert samples[("snowg_message_queue_max", ())] >= 5
    assert samples[("snowg_message_queue_messages", ())] >= 7
    snowg.exit(parked, "kill")
    snowg.flush_messages()


def test_websocket_connections_closes_and_overflows(me, ws_servers):
    def handler(conn: Any) -> None:
        snowg.send(me, ("conn", conn))
        if conn.path == "/flood":
            for i in range(3):
                conn.send(f"m{i}")  # the third overflows a queue of 2
        while conn.receive() is not None:
            pass

    _, before = parse(metrics_text())
    srv = ws_servers(handler, ping_interval=None, queue_size=2)
    clients, conns = [], []
    for path in ("/a", "/flood"):
        sock = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        clients.append(websocket.create_connection(f"ws://localhost:{srv.port}{path}", socket=sock, timeout=5))
        conns.append(recv(tagged("conn"))[1])
    assert conns[1].finished.wait(timeout=5)
    _, during = parse(metrics_text())
    assert during[("snowg_ws_open_connections", ())] - before[("snowg_ws_open_connections", ())] == 1
    clients[0].close()
    assert conns[0].finished.wait(timeout=5)
    _, after = parse(metrics_text())
    assert delta(before, after) == {
        ("snowg_ws_connects_total", ()): 2,
        ("snowg_ws_closes_total", (("code", "1000"),)): 1,
        ("snowg_ws_closes_total", (("code", "1008"),)): 1,
        ("snowg_ws_overflows_total", ()): 1,
        ("snowg_ws_connection_duration_seconds_count", ()): 2,
    }
    assert (
        after[("snowg_ws_connection_duration_seconds_sum", ())]
        > before[("snowg_ws_connection_duration_seconds_sum", ())]
    )
    clients[1].close()


def test_a_peer_node_and_its_session(me, peers):
    _, before = parse(metrics_text())
    peer = peers.start(modules=["distfuncs"])
    assert peer.rpc(df.ping, 1) == ("pong", peer.name, 1)  # traffic both ways on the session
    _, during = parse(metrics_text())
    label = (("peer", peer.name),)
    assert during[("snowg_connected_nodes", ())] == len(snowg.nodes())
    assert during[("snowg_session_received_bytes_total", label)] > 0
    assert during[("snowg_session_sent_bytes_total", label)] > 0
    assert during[("snowg_session_queued_bytes", label)] >= 0
    assert during[("snowg_session_last_heard_seconds", label)] >= 0
    snowg.monitor_node(peer.name)
    peer.kill()
    assert recv(lambda m: type(m) is snowg.NodeDown and m.node == peer.name).reason == "connection_closed"
    _, after = parse(metrics_text())
    assert delta(before, after) == {
        ("snowg_node_up_total", ()): 1,
        ("snowg_node_down_total", (("reason", "connection_closed"),)): 1,
    }
    assert ("snowg_session_queued_bytes", label) not in after


def test_a_label_takes_at_most_max_label_values(monkeypatch):
    monkeypatch.setattr(_metrics, "MAX_LABEL_VALUES", 2)
    monkeypatch.setitem(_metrics._counts, "snowg_node_down_total", {})
    for reason in ("a", "b", "c", "d"):
        telemetry.execute(telemetry.NODE_DOWN, {"nodes": 0}, {"node": "x@h", "reason": reason})
    _, samples = parse(metrics_text())
    assert {k[1]: v for k, v in samples.items() if k[0] == "snowg_node_down_total"} == {
        (("reason", "a"),): 1,
        (("reason", "b"),): 1,
        (("reason", "other"),): 2,
    }


def http_get(port: int, path: str, method: str = "GET") -> Tuple[str, Dict[str, str], bytes]:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_the_metrics_endpoint_over_http(me):
    server = WSGIServer(("127.0.0.1", 0), metrics_app, log=None)
    server.start()
    try:
        status, headers, body = http_get(server.server_port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert int(headers["content-length"]) == len(body)
        types, samples = parse(body.decode("utf-8"))
        assert types["snowg_processes"] == "gauge" and ("snowg_process_crashes_total", ()) in samples
        status, headers, body = http_get(server.server_port, "/metrics", method="POST")
        assert status.startswith("HTTP/1.1 405") and headers["allow"] == "GET, HEAD"
    finally:
        server.stop(timeout=1)


def test_a_label_value_is_escaped():
    odd = {'quote"back\\slash\nnewline': 1}
    saved = dict(_metrics._counts["snowg_session_busy_total"])
    _metrics._counts["snowg_session_busy_total"].update(odd)
    try:
        _, samples = parse(metrics_text())
        assert samples[("snowg_session_busy_total", (("peer", 'quote"back\\slash\nnewline'),))] == 1
    finally:
        _metrics._counts["snowg_session_busy_total"].clear()
        _metrics._counts["snowg_session_busy_total"].update(saved)


def test_down_is_still_a_down():  # the module's handler never breaks the node's own events
    ref = snowg.monitor(snowg.spawn(lambda: None))
    assert type(snowg.receive(lambda m: type(m) is Down and m.ref == ref, timeout=5)) is Down
    # every event but the two supervisor ones, which the supervisors count in line
    assert [h.id for h in telemetry.list_handlers() if h.id == _metrics.HANDLER_ID] == [_metrics.HANDLER_ID] * 7
