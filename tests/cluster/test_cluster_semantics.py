"""semantics rules 1-11 and 23-26 across real node OS processes.

Every peer is a separate ``python -m snowg node`` process started by
:mod:`snowg.testing`; the test process is a node too (``snowg_node``). The
helpers the peers run are in ``tests/distfuncs.py``.
"""

from __future__ import annotations

import pytest

import snowg
from snowg import Down, Exit, NodeDown, NodeUp, Pid, Ref
from snowg._core.runtime import table_sizes
from snowg.testing import wait_for

import distfuncs as df
from support import PLAIN_TERMS, connected_nodes, is_down, no_message, recv, tagged, wait_for_stop

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(60)


def start_forwarder(peer, trap: bool = False) -> Pid:
    pid = snowg.spawn(df.forwarder, snowg.self(), trap, node=peer.name)
    recv(tagged("ready", pid))
    return pid


def start_waiter(peer) -> Pid:
    return snowg.spawn(wait_for_stop, node=peer.name)


def await_down(ref: Ref) -> Down:
    return recv(is_down(ref))


@pytest.fixture
def peer(peers):
    return peers.start(modules=["distfuncs"])


# --------------------------------------------------------------- sending


def test_send_to_remote_pid_and_to_name_node(peer, me) -> None:
    echo = snowg.spawn(df.echo, node=peer.name)
    assert echo.node == peer.name and not snowg.is_alive(echo)
    snowg.send(echo, (me, "hello"))
    assert recv() == ("echo", echo, "hello")

    fwd = snowg.spawn(df.registered_forwarder, me, "fw", node=peer.name)
    recv(tagged("ready", fwd))
    snowg.send(("fw", peer.name), "by name")
    assert recv() == ("fwd", fwd, "by name")
    # An unknown name on another node is dropped silently (Erlang: {Name, Node} ! Msg never fails).
    snowg.send(("nobody", peer.name), "lost")
    snowg.send(("fw", peer.name), "after")
    assert recv() == ("fwd", fwd, "after")
    no_message()


def test_terms_round_trip_exactly(peer, me) -> None:
    crash = peer.rpc(df.make_crash_reason, "bad value")
    assert "ValueError" in str(crash) and "bad value" in str(crash)
    values = [
        *PLAIN_TERMS,
        2**100,
        -(2**90),
        b"\x00\xffbytes",
        (1, (2, (3, ()))),
        [1, [2, (3, [4])]],
        {"a": (1, 2), (1, "k"): [b"x"], 3: {"n": None}},
        [(), [], {}],
        me,
        snowg.make_ref(),
        Exit(me, "normal"),
        Down(snowg.make_ref(), me, ("shutdown", 1)),
        NodeUp("x@y"),
        NodeDown("x@y", "noconnection"),
        crash,
    ]
    echo = snowg.spawn(df.echo, node=peer.name)
    for value in values:
        snowg.send(echo, (me, value))
    for value in values:
        tag, frm, got = recv()
        assert (tag, frm) == ("echo", echo)
        assert got == value and type(got) is type(value), (value, got)
    # What the peer itself decoded (not only what came back).
    got, type_name, _ = peer.rpc(df.roundtrip, ((1, [2, (3,)]), b"b"))
    assert got == ((1, [2, (3,)]), b"b") and type_name == "tuple"
    assert type(got[0][1]) is list and type(got[0][1][1]) is tuple
    # A pid of this node that went there and back is still this node's process.
    snowg.send(echo, (me, me))
    _, _, back = recv()
    snowg.send(back, "to myself")
    assert recv() == "to myself"


@pytest.mark.parametrize("bad", [{1, 2}, object(), ("ok", frozenset()), [1, {"k": {2}}]])
def test_unsendable_term_raises_typeerror_and_nothing_is_sent(peer, me, bad) -> None:
    fwd = start_forwarder(peer)
    bad_type = {"set": "set", "object": "object", "tuple": "frozenset", "list": "set"}[type(bad).__name__]
    with pytest.raises(TypeError, match=bad_type):
        snowg.send(fwd, bad)
    with pytest.raises(TypeError, match=bad_type):
        snowg.send(("anyname", peer.name), bad)
    snowg.send(fwd, "marker")
    assert recv() == ("fwd", fwd, "marker")  # the first thing that arrived
    no_message()


def test_message_order_between_a_pair(peer, me) -> None:
    # semantics rule 9: messages, then the exit signal, in the order sent.
    n = 5000
    pid = snowg.spawn(df.send_numbered, me, "n", 0, n, node=peer.name)
    for i in range(n):
        assert recv() == ("n", i)
    # Our messages to a remote process arrive in order too.
    fwd = start_forwarder(peer)
    for i in range(n):
        snowg.send(fwd, i)
    for i in range(n):
        assert recv() == ("fwd", fwd, i)
    del pid


def test_messages_then_exit_signal_arrive_in_order(peer, trapping_me) -> None:
    # The remote process sends, then ends: its messages come before its exit signal.
    pid = snowg.spawn_link(df.send_numbered, trapping_me, "m", 0, 1000, node=peer.name)
    for i in range(1000):
        assert recv() == ("m", i)
    assert recv() == Exit(pid, "normal")


# ------------------------------------------------------------------ links


def test_remote_link_exit_trapping_and_not(peer, trapping_me) -> None:
    # semantics rule 4: trapping -> Exit message; not trapping -> ends with the reason.
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    snowg.link(target)
    assert wait_for(lambda: trapping_me in (peer.rpc(df.info, target) or {}).get("links", []))
    snowg.send(target, ("exit", ("custom", [1, b"2"])))
    assert recv() == Exit(target, ("custom", [1, b"2"]))
    assert snowg.process_info(trapping_me)["links"] == []

    target2 = snowg.spawn(df.exit_on_command, node=peer.name)

    v, ref = snowg.spawn_monitor(df.linked_waiter, target2, trapping_me)
    assert recv() == "linked"
    snowg.send(target2, ("exit", "boom"))
    assert await_down(ref) == Down(ref, v, "boom")


def test_remote_crash_reason_crosses(peer, trapping_me) -> None:
    # semantics rule 5
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    snowg.link(target)
    snowg.send(target, ("raise", "kaput"))
    ex = recv(lambda m: type(m) is Exit)
    assert ex.pid == target
    assert "ValueError" in str(ex.reason) and "kaput" in str(ex.reason)


def test_remote_normal_exit_is_dropped_unless_trapping(peer, trapping_me) -> None:
    # semantics rule 1 across nodes, both directions of the link.
    target = snowg.spawn(df.exit_on_command, node=peer.name)

    def not_trapping():
        snowg.link(target)
        snowg.send(trapping_me, "linked")
        snowg.receive(lambda m: m == "still here?")
        snowg.send(trapping_me, "still here")
        snowg.receive()

    v, vref = snowg.spawn_monitor(not_trapping)
    assert recv() == "linked"
    snowg.link(target)
    tref = snowg.monitor(target)
    snowg.send(target, ("exit", "normal"))
    assert recv(lambda m: type(m) is Exit) == Exit(target, "normal")
    assert await_down(tref) == Down(tref, target, "normal")
    snowg.send(v, "still here?")
    assert recv() == "still here"
    assert snowg.process_info(v)["links"] == []

    # exit(remote, 'normal') is dropped by a non-trapping remote process...
    w = start_waiter(peer)
    wref = snowg.monitor(w)
    snowg.exit(w, "normal")
    assert peer.rpc(df.alive, w) is True
    # ...and reaches a trapping one as an Exit message.
    fwd = start_forwarder(peer, trap=True)
    snowg.exit(fwd, "normal")
    assert recv() == ("fwd", fwd, Exit(trapping_me, "normal"))
    snowg.exit(fwd, "other")
    assert recv() == ("fwd", fwd, Exit(trapping_me, "other"))
    snowg.send(w, "stop")
    assert await_down(wref) == Down(wref, w, "normal")
    del vref


def test_remote_exit_kill_becomes_killed(peer, trapping_me) -> None:
    # semantics rule 2: 'kill' cannot be trapped; links of the victim see 'killed'.
    fwd = start_forwarder(peer, trap=True)
    watcher = snowg.spawn(df.linker, trapping_me, fwd, True, node=peer.name)
    recv(tagged("linked", watcher))
    snowg.link(fwd)
    ref = snowg.monitor(fwd)
    snowg.exit(fwd, "kill")
    assert recv(lambda m: type(m) is Exit) == Exit(fwd, "killed")
    assert await_down(ref) == Down(ref, fwd, "killed")
    assert recv(tagged("fwd", watcher)) == ("fwd", watcher, Exit(fwd, "killed"))


def test_remote_process_ending_with_kill_sends_kill(peer, trapping_me) -> None:
    # semantics rule 3: ending with 'kill' propagates 'kill' (not 'killed') over links.
    target = snowg.spawn(df.exit_on_command, node=peer.name)

    v, vref = snowg.spawn_monitor(df.linked_waiter, target, trapping_me)
    assert recv() == "linked"
    snowg.link(target)
    snowg.send(target, ("exit", "kill"))
    assert recv(lambda m: type(m) is Exit) == Exit(target, "kill")
    assert await_down(vref) == Down(vref, v, "kill")


def test_local_exit_reaches_remote_linked_processes(peer, me) -> None:
    def local():
        snowg.receive()
        snowg.exit(("bye", 1))

    p = snowg.spawn(local)
    trapper = snowg.spawn(df.linker, me, p, True, node=peer.name)
    recv(tagged("linked", trapper))
    plain = snowg.spawn(df.linker, me, p, False, node=peer.name)
    recv(tagged("linked", plain))
    pref = snowg.monitor(plain)
    assert sorted(snowg.process_info(p)["links"]) == sorted([trapper, plain])
    snowg.send(p, "go")
    assert recv(tagged("fwd", trapper)) == ("fwd", trapper, Exit(p, ("bye", 1)))
    assert await_down(pref) == Down(pref, plain, ("bye", 1))


def test_link_twice_is_one_link_and_unlink_stops_signals(peer, trapping_me) -> None:
    # semantics rule 6
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    snowg.link(target)
    snowg.link(target)
    snowg.link(trapping_me)  # self: no-op
    assert wait_for(lambda: peer.rpc(df.info, target)["links"] == [trapping_me])
    assert snowg.process_info(trapping_me)["links"] == [target]
    snowg.unlink(target)
    assert snowg.process_info(trapping_me)["links"] == []
    ref = snowg.monitor(target)  # after the UNLINK on the same connection
    assert peer.rpc(df.info, target)["links"] == []
    snowg.send(target, ("exit", "boom"))
    assert await_down(ref) == Down(ref, target, "boom")
    no_message(lambda m: type(m) is Exit)


def test_link_to_dead_remote_pid_gives_noproc(peer, trapping_me) -> None:
    # semantics rule 7: a remote link to a dead process always ends in 'noproc'.
    w = start_waiter(peer)
    ref = snowg.monitor(w)
    snowg.send(w, "stop")
    await_down(ref)
    snowg.link(w)
    assert recv() == Exit(w, "noproc")
    assert snowg.process_info(trapping_me)["links"] == []

    def not_trapping():
        snowg.link(w)
        snowg.receive()

    v, vref = snowg.spawn_monitor(not_trapping)
    assert await_down(vref) == Down(vref, v, "noproc")
    # A pid that never existed on that node.
    ghost = Pid(peer.name, 10**9, w.creation)
    snowg.link(ghost)
    assert recv() == Exit(ghost, "noproc")


# --------------------------------------------------------------- monitors


def test_remote_monitor_down_and_independent_monitors(peer, me) -> None:
    # semantics rule 10
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    r1 = snowg.monitor(target)
    r2 = snowg.monitor(target)
    assert r1 != r2
    assert wait_for(lambda: len(peer.rpc(df.info, target)["monitored_by"]) == 2)
    snowg.send(target, ("exit", ("reason", 1)))
    downs = {recv().ref: None for _ in range(2)}
    assert set(downs) == {r1, r2}
    no_message(lambda m: type(m) is Down, wait=0.1)


def test_remote_monitor_of_dead_pid_is_noproc(peer, me) -> None:
    w = start_waiter(peer)
    ref = snowg.monitor(w)
    snowg.send(w, "stop")
    assert await_down(ref) == Down(ref, w, "normal")
    ref2 = snowg.monitor(w)
    assert await_down(ref2) == Down(ref2, w, "noproc")
    assert snowg.process_info(me)["monitors"] == []


def test_remote_demonitor_and_flush(peer, me) -> None:
    # semantics rule 11
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    ref = snowg.monitor(target)
    later = snowg.monitor(target)
    assert wait_for(lambda: len(peer.rpc(df.info, target)["monitored_by"]) == 2)
    assert snowg.demonitor(ref) is True
    assert snowg.demonitor(ref) is False
    assert wait_for(lambda: len(peer.rpc(df.info, target)["monitored_by"]) == 1)
    snowg.send(target, ("exit", "x"))
    assert await_down(later) == Down(later, target, "x")
    no_message(lambda m: type(m) is Down)

    # flush=True removes a Down already in the mailbox.
    target = snowg.spawn(df.exit_on_command, node=peer.name)
    ref = snowg.monitor(target)
    sync = snowg.monitor(target)
    snowg.send(target, ("exit", "y"))
    assert await_down(sync).reason == "y"  # the Down for ref came first, it is queued
    assert snowg.process_info(me)["message_queue_len"] == 1
    snowg.demonitor(ref, flush=True)
    assert snowg.process_info(me)["message_queue_len"] == 0


def test_monitor_by_name_on_another_node(peer, me) -> None:
    # semantics rule 10: the Down names (name, node).
    pid = peer.rpc(df.start_registered, "named")
    ref = snowg.monitor(("named", peer.name))
    assert wait_for(lambda: len(peer.rpc(df.info, pid)["monitored_by"]) == 1)
    snowg.exit(pid, "kill")
    assert await_down(ref) == Down(ref, ("named", peer.name), "killed")
    ref2 = snowg.monitor(("named", peer.name))
    assert await_down(ref2) == Down(ref2, ("named", peer.name), "noproc")
    # demonitor of a monitor by name leaves nothing on the peer.
    pid = peer.rpc(df.start_registered, "named2")
    ref3 = snowg.monitor(("named2", peer.name))
    assert wait_for(lambda: len(peer.rpc(df.info, pid)["monitored_by"]) == 1)
    assert snowg.demonitor(ref3) is True
    assert wait_for(lambda: peer.rpc(df.info, pid)["monitored_by"] == [])
    # A remote process monitoring a name of ours.
    snowg.register("mine", me)
    mon = snowg.spawn(df.monitorer, me, ("mine", snowg.node()), node=peer.name)
    _, _, mref = recv(tagged("monitoring", mon))
    assert wait_for(lambda: snowg.process_info(me)["monitored_by"] == [mon])
    snowg.send(mon, "stop")
    assert wait_for(lambda: snowg.process_info(me)["monitored_by"] == [])
    del mref


def test_remote_watcher_sees_local_death(peer, me) -> None:
    def local():
        snowg.receive()
        snowg.exit("done here")

    p = snowg.spawn(local)
    mon = snowg.spawn(df.monitorer, me, p, node=peer.name)
    _, _, ref = recv(tagged("monitoring", mon))
    snowg.send(p, "go")
    assert recv(tagged("fwd", mon)) == ("fwd", mon, Down(ref, p, "done here"))


# ------------------------------------------------------------ cluster


def test_connect_one_node_joins_the_full_mesh(peers, me) -> None:
    # semantics rule 24
    a = peers.start(modules=["distfuncs"], connect=False)
    b = peers.start(modules=["distfuncs"], connect=False, extra_args=["--connect", a.target])
    c = peers.start(modules=["distfuncs"], connect=False, extra_args=["--connect", a.target])
    assert snowg.connect(a.target) is True
    everyone = {snowg.node(), a.name, b.name, c.name}
    assert wait_for(lambda: set(snowg.nodes()) == everyone - {snowg.node()})
    for p in (a, b, c):
        assert wait_for(lambda p=p: set(p.rpc(connected_nodes)) == everyone - {p.name})
    # Messages go directly between any two peers.
    fwd = start_forwarder(b)
    snowg.spawn(df.send_numbered, fwd, "c->b", 0, 3, node=c.name)
    assert [recv() for _ in range(3)] == [("fwd", fwd, ("c->b", i)) for i in range(3)]
    assert snowg.connect(a.target) is True  # already connected: still True


def test_monitor_node_and_monitor_nodes(peers, me) -> None:
    snowg.monitor_node("nobody@127.0.0.1")
    assert recv() == NodeDown("nobody@127.0.0.1", "noconnection")
    snowg.monitor_nodes(True)
    try:
        p = peers.start(modules=["distfuncs"])
        assert recv() == NodeUp(p.name)
        snowg.monitor_node(p.name)
        snowg.monitor_node(p.name)
        q = peers.start(modules=["distfuncs"])
        assert recv() == NodeUp(q.name)
        snowg.monitor_node(q.name)
        snowg.monitor_node(q.name, False)
        p.terminate()
        downs = [recv(), recv(), recv()]
        assert all(d[0] == p.name for d in downs)
        assert all(type(d) is NodeDown for d in downs)
        q.kill()
        assert recv() == NodeDown(q.name, downs[0].reason)
        no_message(wait=0.1)
    finally:
        snowg.monitor_nodes(False)


def test_disconnect(peer, trapping_me) -> None:
    w = start_waiter(peer)
    snowg.link(w)
    ref = snowg.monitor(w)
    snowg.monitor_node(peer.name)
    assert snowg.disconnect("nobody@nowhere") is False
    assert snowg.disconnect(peer.name) is True
    assert recv() == Exit(w, "noconnection")
    assert recv() == Down(ref, w, "noconnection")
    assert type(recv()) is NodeDown
    assert peer.name not in snowg.nodes()
    assert table_sizes()["links"] == 0
    snowg.send(w, "dropped")  # not connected: dropped, no error
    assert snowg.connect(peer.target) is True
    # The peer saw the disconnect too: nothing of ours is left there.
    assert peer.rpc(df.peer_refs_to, snowg.node()) == {"links": 0, "monitors": 0, "monitored_by": 0}
    assert peer.rpc(df.alive, w) is True


def test_monkeypatched_and_plain_peers_work_together(peers, me) -> None:
    plain = peers.start(modules=["distfuncs"])
    patched = peers.start(modules=["distfuncs"], monkeypatch=True)
    assert plain.rpc(df.monkeypatched) is False
    assert patched.rpc(df.monkeypatched) is True
    assert wait_for(lambda: patched.name in plain.rpc(connected_nodes))
    for src, dst in ((plain, patched), (patched, plain)):
        fwd = start_forwarder(dst)
        snowg.spawn(df.send_numbered, fwd, src.name, 0, 100, node=src.name)
        for i in range(100):
            assert recv() == ("fwd", fwd, (src.name, i))
    assert patched.rpc(df.ping, (1, b"x")) == ("pong", patched.name, (1, b"x"))
