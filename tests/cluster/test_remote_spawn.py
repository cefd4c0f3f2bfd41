"""Remote spawn against real peer node OS processes (semantics rules 27, 1-11).

Every peer is a ``snowg node`` OS process started by ``snowg.testing`` that
imports ``tests/remotefuncs.py``. The test process (pytest's main greenlet) is
adopted as a snowg process; tests that must see an exit signal kill it either
trap exits or watch a helper process through a monitor.
"""

from __future__ import annotations

import time

import gevent
import pytest
import remotefuncs
from remotefuncs import (
    crash_now,
    echo_args,
    hello,
    named,
    not_declared,
    one_reply,
    process_count,
    runs,
)
from support import no_message, recv, wait_for_stop

import snowg
from snowg.testing import wait_for

pytest_plugins = ["snowg.testing"]

MODS = ["remotefuncs", "support"]
QUIET = 0.3  # seconds in which no further message may arrive
UNCONNECTED = "nosuchnode@127.0.0.1"


def is_exit(m) -> bool:
    return isinstance(m, snowg.Exit)


def assert_crash(reason, type_name: str, message: str, fn_name: str) -> None:
    assert isinstance(reason, snowg.Crash), reason
    assert reason.type == type_name
    assert reason.message == message
    assert type_name in str(reason)
    assert "Traceback (most recent call last)" in reason.traceback
    assert fn_name in reason.traceback  # the remote frame, with the remote source
    assert f"{type_name}: {message}" in reason.traceback


# ----------------------------------------------------- links and monitors


def test_trapping_caller_of_remote_spawn_link_gets_crash_exit(peers):
    """semantics rule 27 + 4/5: the link exists before the child runs; the crash reason crosses."""
    peer = peers.start(modules=MODS)
    snowg.trap_exit(True)
    try:
        pid = snowg.spawn_link(crash_now, "boom at once", node=peer.name)
        assert pid.node == peer.name
        ex = recv(is_exit)
        assert ex.pid == pid
        assert_crash(ex.reason, "ValueError", "boom at once", "crash_now")
        no_message(is_exit, QUIET)
    finally:
        snowg.trap_exit(False)


def test_non_trapping_caller_of_remote_spawn_link_dies_with_crash_reason(peers):
    """semantics rule 5: a linked non-trapping process ends with the child's crash reason."""
    peer = peers.start(modules=MODS)
    me = snowg.self()

    def middle():
        child = snowg.spawn_link(crash_now, "linked boom", node=peer.name)
        snowg.send(me, ("child", child))
        snowg.receive(lambda m: m == "never")
        snowg.send(me, "middle survived")

    mid, ref = snowg.spawn_monitor(middle)
    down = recv(lambda m: isinstance(m, snowg.Down) and m.ref == ref)
    assert down.pid == mid
    assert_crash(down.reason, "ValueError", "linked boom", "crash_now")
    # It was killed, not ended: the "survived" line never ran.
    no_message(lambda m: m == "middle survived", QUIET)


def test_remote_spawn_monitor_of_child_dying_at_once_gives_one_down(peers):
    """semantics rule 10/27: one Down per monitor, with the reason; the monitor predates the child's run."""
    peer = peers.start(modules=MODS)
    pid, ref = snowg.spawn_monitor(crash_now, "monitored boom", node=peer.name)
    assert isinstance(ref, snowg.Ref)
    assert pid.node == peer.name
    down = recv(lambda m: isinstance(m, snowg.Down))
    assert down.ref == ref and down.pid == pid
    assert_crash(down.reason, "ValueError", "monitored boom", "crash_now")
    no_message(lambda m: isinstance(m, snowg.Down), QUIET)

    # And a normal end is reported as 'normal', after the child's message.
    me = snowg.self()
    pid2, ref2 = snowg.spawn_monitor(hello, me, node=peer.name)
    assert recv(lambda m: type(m) is tuple and m[0] == "hello") == ("hello", pid2, peer.name)
    assert recv(lambda m: isinstance(m, snowg.Down)) == snowg.Down(ref2, pid2, "normal")
    no_message(wait=QUIET)


def test_remote_spawn_link_normal_exit_is_not_delivered_to_non_trapping_caller(peers):
    """semantics rule 1: 'normal' over a link is dropped by a non-trapping process; trapping sees it."""
    peer = peers.start(modules=MODS)
    me = snowg.self()
    pid = snowg.spawn_link(hello, me, node=peer.name)
    assert recv(lambda m: type(m) is tuple and m[0] == "hello") == ("hello", pid, peer.name)
    no_message(wait=QUIET)
    snowg.trap_exit(True)
    try:
        pid = snowg.spawn_link(hello, me, node=peer.name)
        assert recv(lambda m: type(m) is tuple and m[0] == "hello")[1] == pid
        assert recv(is_exit) == snowg.Exit(pid, "normal")
    finally:
        snowg.trap_exit(False)


# -------------------------------------------------- what can be spawned


def test_spawn_by_function_object_and_by_registered_name(peers):
    peer = peers.start(modules=MODS)
    me = snowg.self()
    pid = snowg.spawn(hello, me, node=peer.name)
    assert recv(lambda m: m[0] == "hello") == ("hello", pid, peer.name)
    # by qualified name string
    pid = snowg.spawn("remotefuncs.hello", me, node=peer.name)
    assert recv(lambda m: m[0] == "hello") == ("hello", pid, peer.name)
    # @spawnable('test.named'): by the name, and by the function object (which carries the name)
    snowg.spawn("test.named", me, "by-name", node=peer.name)
    assert recv(lambda m: m[0] == "named") == ("named", "by-name", peer.name)
    snowg.spawn(named, me, "by-object", node=peer.name)
    assert recv(lambda m: m[0] == "named") == ("named", "by-object", peer.name)
    assert peer.rpc(runs, "test.named") == 2
    # node= this node is a local spawn
    pid = snowg.spawn(hello, me, node=snowg.node())
    assert recv(lambda m: m[0] == "hello") == ("hello", pid, snowg.node())


def test_args_and_kwargs_cross_exactly(peers):
    peer = peers.start(modules=MODS)
    me = snowg.self()
    snowg.spawn(
        echo_args, me, 1, (2, 3), [4, (5,)], b"\x00", None, key={"a": (1, 2), "b": [me]}, other=1.5, node=peer.name
    )
    msg = recv(lambda m: m[0] == "args")
    assert msg == ("args", (1, (2, 3), [4, (5,)], b"\x00", None), {"key": {"a": (1, 2), "b": [me]}, "other": 1.5})
    assert type(msg[1][1]) is tuple and type(msg[1][2]) is list and type(msg[1][2][1]) is tuple
    assert type(msg[2]["key"]["a"]) is tuple


def test_args_that_cannot_cross_raise_type_error_before_sending(peers):
    peer = peers.start(modules=MODS)
    me = snowg.self()
    baseline = peer.rpc(process_count)
    for spawn in (snowg.spawn, snowg.spawn_link, snowg.spawn_monitor):
        with pytest.raises(TypeError, match="set"):
            spawn(echo_args, me, {1, 2}, node=peer.name)
        with pytest.raises(TypeError, match="set"):
            spawn(echo_args, me, 1, node=peer.name, key=frozenset())
    assert peer.rpc(runs, "echo_args") == 0  # nothing ran there
    assert peer.rpc(process_count) == baseline  # nothing was spawned there
    no_message(wait=QUIET)  # no Exit / Down / reply: nothing was sent
    assert snowg.process_info(me)["links"] == []
    assert snowg.process_info(me)["monitors"] == []


def test_undeclared_function_is_refused_and_logged(peers):
    """semantics rule 27: only @spawnable functions run; the caller gets SpawnError naming fn and node."""
    peer = peers.start(modules=MODS)
    me = snowg.self()
    for spawn in (snowg.spawn, snowg.spawn_link, snowg.spawn_monitor):
        with pytest.raises(snowg.SpawnError) as ei:
            spawn(not_declared, me, node=peer.name)
        assert "remotefuncs.not_declared" in str(ei.value)
        assert peer.name in str(ei.value)
    with pytest.raises(snowg.SpawnError, match="os.system"):
        snowg.spawn("os.system", "true", node=peer.name)
    no_message(wait=QUIET)  # no Exit, no Down, and not_declared sent nothing
    assert snowg.process_info(me)["links"] == []
    assert peer.rpc(runs, "not_declared") == 0
    logged = peer.read_log()
    # The first refusal from a node is logged in full; later ones are counted
    # and summarised (a flood of them cannot fill the log).
    assert logged.count("'remotefuncs.not_declared', which is not @spawnable here: refused") == 1
    assert snowg.node() in logged  # the log names the node that asked
    assert "'os.system', which is not @spawnable here" not in logged
    snowg.disconnect(peer.name)  # the peer summarises what it counted from this node when it goes
    summary = "sent 3 more spawn requests for functions not @spawnable here; refused"
    assert wait_for(lambda: summary in peer.read_log(), timeout=10)


def test_spawn_on_unconnected_node(peers):
    """As Erlang: the pid names the node with id 0 (never alive); 'noconnection' at once."""
    me = snowg.self()
    snowg.trap_exit(True)
    try:
        pid = snowg.spawn_link(hello, me, node=UNCONNECTED)
        # The returned pid is Pid(<that node>, 0, 0): id 0 and creation 0 never name a process.
        assert pid == snowg.Pid(UNCONNECTED, 0, 0)
        assert pid.node == UNCONNECTED and pid.id == 0
        assert recv(is_exit, 1) == snowg.Exit(pid, "noconnection")
    finally:
        snowg.trap_exit(False)
    pid, ref = snowg.spawn_monitor(hello, me, node=UNCONNECTED)
    assert pid == snowg.Pid(UNCONNECTED, 0, 0)
    assert recv(lambda m: isinstance(m, snowg.Down), 1) == snowg.Down(ref, pid, "noconnection")
    # plain spawn: a pid, and nothing else happens
    assert snowg.spawn(hello, me, node=UNCONNECTED) == snowg.Pid(UNCONNECTED, 0, 0)
    no_message(wait=QUIET)

    # A non-trapping caller is killed with 'noconnection' (semantics rules 8, rule 4).
    def caller():
        snowg.spawn_link(hello, me, node=UNCONNECTED)
        snowg.send(me, "caller survived")

    cpid, cref = snowg.spawn_monitor(caller)
    assert recv(lambda m: isinstance(m, snowg.Down)) == snowg.Down(cref, cpid, "noconnection")
    no_message(wait=QUIET)


def test_kill_9_of_child_node_gives_linked_caller_noconnection(peers):
    """semantics rule 8/10/26: kill -9 closes the socket; links get 'noconnection', monitors Down."""
    peer = peers.start(modules=MODS)
    me = snowg.self()
    snowg.trap_exit(True)
    try:
        linked = snowg.spawn_link(wait_for_stop, me, node=peer.name)
        assert recv(lambda m: m == ("started", linked))
        mon, ref = snowg.spawn_monitor(wait_for_stop, me, node=peer.name)
        assert recv(lambda m: m == ("started", mon))

        def non_trapping():
            snowg.spawn_link(wait_for_stop, snowg.self(), node=peer.name)
            snowg.receive(lambda m: type(m) is tuple and m[0] == "started")
            snowg.send(me, "ready")
            snowg.receive(lambda m: m == "never")

        npid, nref = snowg.spawn_monitor(non_trapping)
        assert recv(lambda m: m == "ready")
        t0 = time.monotonic()
        peer.kill()
        assert recv(is_exit, 5) == snowg.Exit(linked, "noconnection")
        assert recv(lambda m: isinstance(m, snowg.Down) and m.ref == ref, 5) == snowg.Down(ref, mon, "noconnection")
        assert recv(lambda m: isinstance(m, snowg.Down) and m.ref == nref, 5) == snowg.Down(nref, npid, "noconnection")
        assert time.monotonic() - t0 < 3  # a closed socket is down at once, no tick wait
        no_message(wait=QUIET)
    finally:
        snowg.trap_exit(False)


def test_ten_thousand_remote_spawns_in_a_row(peers):
    peer = peers.start(modules=MODS)
    me = snowg.self()
    n = 10_000
    t0 = time.monotonic()
    for i in range(n):
        snowg.spawn(one_reply, me, i, node=peer.name)
    got = set()
    for _ in range(n):
        got.add(recv(lambda m: type(m) is int, 30))
    elapsed = time.monotonic() - t0
    assert got == set(range(n))
    no_message(wait=QUIET)
    assert elapsed < 90, f"{n} remote spawns took {elapsed:.1f} s"
    # every child ended: only the rpc runner itself is left there
    assert wait_for(lambda: peer.rpc(process_count) == 1, timeout=10)


# --------------------------------------------------- a peer driven by messages


def test_peer_driven_by_messages_through_a_spawned_server(peers):
    """snowg.testing: a peer is driven by remote spawn and plain messages, not only rpc."""
    peer = peers.start(modules=MODS)
    me = snowg.self()
    server, mref = snowg.spawn_monitor("test.kv_server", node=peer.name)

    def ask(req):
        ref = snowg.make_ref()
        snowg.send(server, (me, ref, req))
        return recv(lambda m: type(m) is tuple and len(m) == 2 and m[0] == ref)[1]

    assert ask(("where",)) == (peer.name, server)
    assert ask(("put", "k", (1, [2]))) == "ok"
    assert ask(("get", "k")) == (1, [2])
    assert ask(("get", "missing")) is None
    assert ask(("nope",)) == ("error", "unknown request")
    snowg.send(server, "stop")
    assert recv(lambda m: isinstance(m, snowg.Down)) == snowg.Down(mref, server, "normal")
    assert remotefuncs.RUNS == {}  # nothing of it ran in this process


def test_remote_spawn_link_from_several_processes_at_once(peers):
    """Concurrent spawn requests from many local processes each get their own reply."""
    peer = peers.start(modules=MODS)
    me = snowg.self()

    def worker(k):
        snowg.trap_exit(True)
        pid = snowg.spawn_link(hello, snowg.self(), node=peer.name)
        got = snowg.receive(lambda m: type(m) is tuple and m[0] == "hello", timeout=10)
        ex = snowg.receive(lambda m: isinstance(m, snowg.Exit), timeout=10)
        snowg.send(me, ("done", k, got[1] == pid, ex == snowg.Exit(pid, "normal")))

    for k in range(50):
        snowg.spawn(worker, k)
    results = [recv(lambda m: type(m) is tuple and m[0] == "done") for _ in range(50)]
    assert sorted(r[1] for r in results) == list(range(50))
    assert all(r[2] and r[3] for r in results)
    gevent.sleep(0)


def test_a_beam_function_spawned_on_a_snowg_node_is_a_type_error_and_unconnected_is_noconnection(peers):
    """``('mod', 'fun')`` names an Erlang function: a snowg node cannot run it; an unconnected node is noconnection."""
    peer = peers.start(modules=MODS)
    with pytest.raises(TypeError, match=r"names a function of an Erlang node, but .* is a snowg node"):
        snowg.spawn(("lists", "reverse"), [1, 2], node=peer.name)
    pid, ref = snowg.spawn_monitor(("lists", "reverse"), [1, 2], node=UNCONNECTED)
    assert pid.node == UNCONNECTED
    assert recv(lambda m: isinstance(m, snowg.Down)) == snowg.Down(ref, pid, "noconnection")
