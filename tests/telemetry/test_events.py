"""snowg's own telemetry events, each from the real thing, with its exact measurements and metadata.

A handler (``conftest.to_process``) turns each event into a message to the
test's process; the tests receive those messages (no sleeps, no polling).
"""

from __future__ import annotations

from typing import Any

import gevent.socket
import pytest
import websocket

import distfuncs as df
import snowg
import snowg.ws as ws
from conftest import tm
from snowg import ChildSpec, Crash, Down, GenServer, supervisor, telemetry
from snowg.gen_server import call
from support import no_message, recv, tagged, wait_down

pytestmark = pytest.mark.timeout(60)

CRASH = telemetry.PROCESS_CRASH
RESTART = telemetry.SUPERVISOR_RESTART
GIVE_UP = telemetry.SUPERVISOR_GIVE_UP


def is_down(pid: Any):
    return lambda m: type(m) is Down and m.pid == pid


# ------------------------------------------------------------------ process crash


def raiser(name: Any = None) -> None:
    if name is not None:
        snowg.register(name, snowg.self())
    snowg.receive(lambda m: m == "go")
    raise ValueError("boom")


def test_a_process_that_raises_emits_a_crash(me, listen):
    listen(CRASH)
    pid = snowg.spawn(raiser, "crasher")
    snowg.monitor(pid)
    snowg.send(pid, "go")
    _, event, measurements, metadata = recv(tm(CRASH))
    down = recv(is_down(pid))
    assert type(down.reason) is Crash and (down.reason.type, down.reason.message) == ("ValueError", "boom")
    assert (event, measurements) == (CRASH, {"count": 1})
    assert metadata == {"pid": pid, "name": "crasher", "reason": down.reason}


class Failing(GenServer):
    def init(self) -> Any:
        return None

    def handle_call(self, req: Any, from_: Any, state: Any) -> Any:
        raise KeyError(req)


def test_a_gen_server_whose_callback_raises_emits_a_crash(me, listen):
    listen(CRASH)
    server = Failing.start()
    snowg.monitor(server)
    with pytest.raises(snowg.CallError):
        call(server, "missing", timeout=5)
    _, _, measurements, metadata = recv(tm(CRASH))
    down = recv(is_down(server))
    assert (down.reason.type, down.reason.message) == ("KeyError", "'missing'")
    assert (measurements, metadata) == ({"count": 1}, {"pid": server, "name": None, "reason": down.reason})


def test_a_process_ended_by_a_linked_crash_does_not_emit_one(me, listen):
    listen(CRASH)
    first = snowg.spawn(raiser)
    second = snowg.spawn(lambda: (snowg.link(first), snowg.send(me, "linked"), snowg.receive()))
    recv(lambda m: m == "linked")
    snowg.monitor(second)
    snowg.send(first, "go")
    down = recv(is_down(second))  # it died of first's crash, as an exit signal
    assert type(down.reason) is Crash
    assert recv(tm(CRASH))[3]["pid"] == first
    no_message(tm(CRASH))  # second's would have come before its Down: nothing


def test_a_normal_end_and_an_exit_signal_emit_nothing(me, listen):
    listen(CRASH)
    quiet = snowg.spawn(lambda: None)
    waiting = snowg.spawn(snowg.receive)
    for pid in (quiet, waiting):
        snowg.monitor(pid)
    snowg.exit(waiting, Crash("Injected", "by a signal", ""))
    recv(is_down(quiet))
    recv(is_down(waiting))
    no_message(tm(CRASH))


# ------------------------------------------------------------- supervisor restart


def worker(rec: snowg.Pid) -> None:
    snowg.send(rec, ("started", snowg.self()))
    snowg.receive(lambda m: m == "crash")
    raise RuntimeError("worker failed")


def test_a_supervisor_restart_then_its_giving_up(trapping_me, listen):
    listen(RESTART, GIVE_UP, CRASH)
    sup = supervisor.start_link([ChildSpec("w", (worker, (trapping_me,)))], intensity=1, period=3600)
    _, first = recv(tagged("started"))
    meta = {
        "supervisor": sup,
        "name": None,
        "child_id": "w",
        "strategy": "one_for_one",
        "intensity": 1,
        "period": 3600.0,
    }
    snowg.send(first, "crash")
    assert recv(tm(CRASH))[3]["pid"] == first
    assert recv(tm(RESTART))[2:] == ({"restarts": 1}, meta)
    _, second = recv(tagged("started"))
    snowg.send(second, "crash")
    assert recv(tm(CRASH))[3]["pid"] == second
    assert recv(tm(GIVE_UP))[2:] == ({"restarts": 2}, meta)
    assert recv(lambda m: type(m) is snowg.Exit and m.pid == sup).reason == "shutdown"
    no_message(tm(RESTART))


def test_a_named_simple_one_for_one_supervisor_names_itself_and_no_child_id(trapping_me, listen):
    listen(RESTART)
    sup = supervisor.start_link(
        [ChildSpec("tpl", (worker, (trapping_me,)))], strategy="simple_one_for_one", name="pool", intensity=3
    )
    child = supervisor.start_child(sup, ())
    assert recv(tagged("started")) == ("started", child)
    snowg.send(child, "crash")
    assert recv(tm(RESTART))[2:] == (
        {"restarts": 1},
        {
            "supervisor": sup,
            "name": "pool",
            "child_id": None,
            "strategy": "simple_one_for_one",
            "intensity": 3,
            "period": 5.0,
        },
    )
    recv(tagged("started"))
    snowg.unlink(sup)
    snowg.exit(sup, "shutdown")
    wait_down(sup)


# ------------------------------------------------------------------- WebSockets


def connect(port: int, path: str) -> Any:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    return websocket.create_connection(f"ws://localhost:{port}{path}", socket=sock, timeout=5)


def test_websocket_connect_and_close(me, listen, ws_servers):
    listen(telemetry.WS_CONNECT, telemetry.WS_CLOSE)

    def handler(conn: ws.Connection) -> None:
        snowg.send(me, ("conn", conn.id, conn.pid))
        while conn.receive() is not None:
            pass

    srv = ws_servers(handler, ping_interval=None)
    client = connect(srv.port, "/chat?room=a")
    _, cid, pid = recv(tagged("conn"))
    peer = ("127.0.0.1", client.sock.getsockname()[1])
    meta = {"id": cid, "pid": pid, "peer": peer, "path": "/chat"}
    assert recv(tm(telemetry.WS_CONNECT))[2:] == ({"count": 1}, meta)
    client.close(status=1000, reason=b"bye")
    _, _, measurements, metadata = recv(tm(telemetry.WS_CLOSE))
    assert metadata == {**meta, "code": 1000, "reason": "bye"}
    assert list(measurements) == ["duration"] and measurements["duration"] > 0


def test_websocket_overflow_then_close_1008(me, listen, ws_servers):
    listen(telemetry.WS_OVERFLOW, telemetry.WS_CLOSE)

    def handler(conn: ws.Connection) -> None:
        snowg.send(me, ("conn", conn.id, conn.pid))
        # Nothing yields between these sends: the writer cannot drain, the fifth overflows.
        snowg.send(me, ("sent", [conn.send(f"m{i}") for i in range(6)]))
        while conn.receive() is not None:
            pass

    srv = ws_servers(handler, ping_interval=None, queue_size=4)
    client = connect(srv.port, "/feed")
    _, cid, pid = recv(tagged("conn"))
    meta = {"id": cid, "pid": pid, "peer": ("127.0.0.1", client.sock.getsockname()[1]), "path": "/feed"}
    assert recv(tagged("sent")) == ("sent", [True, True, True, True, False, False])
    assert recv(tm(telemetry.WS_OVERFLOW))[2:] == ({"queue_size": 4}, meta)
    _, _, measurements, metadata = recv(tm(telemetry.WS_CLOSE))
    assert metadata == {**meta, "code": ws.CLOSE_OVERFLOW, "reason": "outbound queue overflow"}
    assert list(measurements) == ["duration"]
    no_message(tm(telemetry.WS_OVERFLOW))  # one overflow, one event
    client.close()


# ------------------------------------------------------------------- the cluster


def test_node_up_and_down(me, listen, peers):
    listen(telemetry.NODE_UP, telemetry.NODE_DOWN)
    peer = peers.start(modules=["distfuncs"])
    _, _, measurements, metadata = recv(tm(telemetry.NODE_UP))
    assert metadata == {"node": peer.name}
    assert measurements == {"nodes": len(snowg.nodes())} and peer.name in snowg.nodes()
    remote = snowg.spawn(df.echo, node=peer.name)
    snowg.monitor(remote)
    linked = snowg.spawn(lambda: (snowg.trap_exit(True), snowg.link(remote), snowg.send(me, "linked"), snowg.receive()))
    recv(lambda m: m == "linked")
    peer.kill()
    _, _, measurements, metadata = recv(tm(telemetry.NODE_DOWN))
    assert metadata == {"node": peer.name, "reason": "connection_closed"}
    assert sorted(measurements) == ["links_broken", "monitors_fired", "nodes"]
    assert (measurements["nodes"], measurements["links_broken"]) == (len(snowg.nodes()), 1)
    assert measurements["monitors_fired"] >= 1  # ours, and those of snowg's own processes (pg scopes)
    assert peer.name not in snowg.nodes()
    assert recv(is_down(remote)).reason == "noconnection"
    snowg.exit(linked, "kill")


BLOB = 64 * 1024
BLOBS = 320  # 20 MiB: more than loopback's socket buffers and the 1 MiB bound hold


def test_a_process_suspended_by_a_busy_session(me, listen, peers):
    from snowg.cluster._connect import session_for

    listen(telemetry.SESSION_BUSY)
    peer = peers.start(modules=["distfuncs"])
    checker = snowg.spawn(df.blob_checker, me, BLOBS, node=peer.name)
    sess = session_for(peer.name)

    def sender() -> None:
        for i in range(BLOBS):
            snowg.send(checker, (i, bytes([i % 256]) * BLOB))

    peer.freeze()  # for well under 4 ticks: the session stays up
    try:
        pid = snowg.spawn(sender)
        _, _, measurements, metadata = recv(tm(telemetry.SESSION_BUSY))
        assert metadata == {"node": peer.name, "pid": pid}
        assert sorted(measurements) == ["busy_limit", "queued"]
        assert measurements["busy_limit"] == sess.busy_limit == 1024 * 1024
        assert measurements["queued"] > measurements["busy_limit"]
    finally:
        peer.thaw()
    assert recv(tagged("blobs"), timeout=60) == ("blobs", BLOBS, BLOBS * BLOB)
