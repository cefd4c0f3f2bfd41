"""Global names across real peer node OS processes (semantics rules 26, 28)."""

from __future__ import annotations

import itertools
import os
import re

import pytest
import remotefuncs as rf
from support import connected_nodes, recv, wait_for_stop

import snowg
from snowg.testing import wait_for

pytest_plugins = ["snowg.testing"]

MODS = ["remotefuncs", "support"]
_uniq = itertools.count(1)


def gname(what: str) -> str:
    """A global name no other test (and no earlier run of this one) used."""
    return f"{what}-{os.getpid()}-{next(_uniq)}"


def everywhere(peer_list, fn, *args):
    """``fn(*args)`` on this node and on every peer."""
    return [fn(*args)] + [p.rpc(fn, *args) for p in peer_list]


def all_see(peer_list, name, expected, timeout: float = 5.0) -> bool:
    return wait_for(
        lambda: everywhere(peer_list, rf.whereis_global, name) == [expected] * (1 + len(peer_list)),
        timeout=timeout,
        interval=0.02,
    )


def start_holder(peer, name):
    me = snowg.self()
    pid = snowg.spawn(rf.global_holder, me, name, node=peer.name)
    msg = recv(lambda m: type(m) is tuple and m[0] == "registered" and m[1] == name)
    assert msg == ("registered", name, True, pid)
    return pid


def test_register_whereis_send_unregister_across_three_nodes(peers):
    b = peers.start(modules=MODS)
    c = peers.start(modules=MODS)
    assert wait_for(lambda: sorted(c.rpc(connected_nodes)) == sorted([snowg.node(), b.name]))
    name = gname("svc")
    holder = start_holder(b, name)
    # every replica has it (the registration reached every node before its locks were released)
    assert everywhere([b, c], rf.whereis_global, name) == [holder] * 3
    assert name in snowg.registered_global()

    me = snowg.self()
    # send_global from this node and from C
    assert snowg.send_global(name, ("ping", me)) == holder
    assert recv(lambda m: type(m) is tuple and m[0] == "pong") == ("pong", name, b.name)
    assert c.rpc(rf.send_global, name, ("ping", me)) == holder
    assert recv(lambda m: type(m) is tuple and m[0] == "pong") == ("pong", name, b.name)

    # a second process cannot take the name, from any node; the same pid again is fine
    other = snowg.spawn(wait_for_stop)
    assert snowg.register_global(name, other) is False
    assert c.rpc(rf.register_global, name, other) is False
    assert c.rpc(rf.register_global, name, holder) is True
    assert everywhere([b, c], rf.whereis_global, name) == [holder] * 3

    # unregister from C: gone everywhere; send_global then raises NoProc
    c.rpc(rf.unregister_global, name)
    assert all_see([b, c], name, None)
    with pytest.raises(snowg.NoProc):
        snowg.send_global(name, "x")
    # and the name is free again: a process of this node takes it
    assert snowg.register_global(name, other) is True
    assert all_see([b, c], name, other)
    snowg.exit(other, "kill")
    assert all_see([b, c], name, None)
    snowg.send(holder, "stop")


def test_global_name_freed_when_its_process_ends_on_every_node(peers):
    b = peers.start(modules=MODS)
    c = peers.start(modules=MODS)
    assert wait_for(lambda: len(c.rpc(connected_nodes)) == 2)
    # a process on B ends normally
    name = gname("ends")
    holder = start_holder(b, name)
    ref = snowg.monitor(holder)
    snowg.send(holder, "stop")
    assert recv(lambda m: isinstance(m, snowg.Down)) == snowg.Down(ref, holder, "normal")
    assert all_see([b, c], name, None)
    # a process on B is killed
    name2 = gname("killed")
    holder2 = start_holder(b, name2)
    assert all_see([b, c], name2, holder2)
    snowg.exit(holder2, "kill")
    assert all_see([b, c], name2, None)
    # a process of this node, registered by C, crashes
    name3 = gname("local")

    def crasher():
        snowg.receive(lambda m: m == "crash")
        raise RuntimeError("bye")

    local = snowg.spawn(crasher)
    assert c.rpc(rf.register_global, name3, local) is True
    assert all_see([b, c], name3, local)
    snowg.send(local, "crash")
    assert all_see([b, c], name3, None)


def test_five_nodes_race_for_one_name_a_hundred_times(peers):
    """Exactly one winner per name, and every replica names the same winner."""
    ps = [peers.start(modules=MODS) for _ in range(4)]
    assert wait_for(lambda: all(len(p.rpc(connected_nodes)) == 4 for p in ps), timeout=15)
    me = snowg.self()
    contenders = {}
    for p in ps:
        pid = snowg.spawn(rf.contender, me, node=p.name)
        assert recv(lambda m, pid=pid: type(m) is tuple and m[0] == "ready" and m[1] == pid)
        contenders[p.name] = pid
    local = snowg.spawn(rf.contender, me)
    assert recv(lambda m: type(m) is tuple and m[0] == "ready" and m[1] == local)
    contenders[snowg.node()] = local

    names = [gname("race") for _ in range(100)]
    for name in names:
        for pid in contenders.values():
            snowg.send(pid, ("go", name))
        results = [
            recv(lambda m, name=name: type(m) is tuple and m[0] == "result" and m[1] == name, 30) for _ in range(5)
        ]
        winners = [r[2] for r in results if r[3] is True]
        assert len(winners) == 1, (name, results)
        assert sorted(r[2] for r in results) == sorted(contenders)
        assert snowg.whereis_global(name) == contenders[winners[0]]
    expected = [snowg.whereis_global(n) for n in names]
    assert all(pid is not None for pid in expected)
    assert wait_for(lambda: all(p.rpc(rf.whereis_globals, names) == expected for p in ps), timeout=5)
    assert len({pid.node for pid in expected}) >= 2  # a real race: not always the same node
    for pid in contenders.values():
        snowg.send(pid, "stop")
    assert wait_for(lambda: everywhere(ps, rf.whereis_globals, names) == [[None] * 100] * 5, timeout=5)


def test_global_name_cleaned_up_on_kill_9_of_its_node(peers):
    """semantics rule 26: the names of a lost node's processes go, on every surviving node."""
    b = peers.start(modules=MODS)
    c = peers.start(modules=MODS)
    assert wait_for(lambda: len(b.rpc(connected_nodes)) == 2)
    on_c = gname("on-c")
    on_b = gname("on-b")
    holder_c = start_holder(c, on_c)
    holder_b = start_holder(b, on_b)
    assert all_see([b, c], on_c, holder_c)
    c.kill()
    assert all_see([b], on_c, None)
    assert everywhere([b], rf.whereis_global, on_b) == [holder_b, holder_b]  # untouched
    # a registration stuck on no lock: the name is free for others at once
    assert snowg.register_global(on_c, snowg.spawn(wait_for_stop)) is True


@pytest.mark.parametrize("winner", ["first", "second"])
def test_two_clusters_holding_a_name_merge_to_one_holder(peers, winner):
    """semantics rule 28: the holder on the node whose name sorts lower keeps it; the other is killed.

    Cluster 1 is this node and peer P1 (which holds the name); cluster 2 is P2
    (holds it) and P3, never connected to this node until the merge. P2 learns
    of P3 with ``--connect`` and registers the name itself (remotefuncs' autoreg),
    logging its holder's end: nothing of cluster 2 can be asked over rpc before the merge.
    """
    name = gname("merge")
    tag = f"{os.getpid()}-{next(_uniq)}"
    n1, n2 = ("a", "b") if winner == "first" else ("c", "b")
    p1 = peers.start(f"{n1}merge1-{tag}@127.0.0.1", modules=MODS)
    p2 = peers.start(f"{n2}merge2-{tag}@127.0.0.1", modules=MODS, connect=False, env={"SNOWG_TEST_AUTOREG": name})
    p3 = peers.start(f"{n2}merge3-{tag}@127.0.0.1", modules=MODS, connect=False, extra_args=["--connect", p2.target])
    # cluster 2 holds the name
    assert wait_for(lambda: f"AUTOREG {name} True" in p2.read_log(), timeout=10), p2.read_log()
    p2_holder_text = re.search(rf"AUTOREG {re.escape(name)} True (\S+)", p2.read_log()).group(1)
    # cluster 1 holds it too
    me = snowg.self()
    h1 = snowg.spawn(rf.global_holder, me, name, node=p1.name)
    assert recv(lambda m: type(m) is tuple and m[0] == "registered") == ("registered", name, True, h1)
    h1_ref = snowg.monitor(h1)
    assert p2.name not in snowg.nodes() and p3.name not in snowg.nodes()

    # merge: connect one node of each cluster
    assert snowg.connect(p2.target)
    everyone = [p1, p2, p3]
    assert wait_for(lambda: all(len(p.rpc(connected_nodes)) == 3 for p in everyone), timeout=15)
    if winner == "first":
        # P1 ('a...') sorts before P2 ('b...'): P1's holder keeps the name, P2's is killed.
        assert all_see(everyone, name, h1)
        assert wait_for(lambda: f"HOLDER DOWN {name} killed" in p2.read_log(), timeout=5), p2.read_log()
        with pytest.raises(snowg.Timeout):
            recv(lambda m: isinstance(m, snowg.Down), 0.3)
        snowg.demonitor(h1_ref)
        snowg.send(h1, "stop")
    else:
        # P2 ('b...') sorts before P1 ('c...'): P1's holder is killed, P2's keeps the name.
        down = recv(lambda m: isinstance(m, snowg.Down), 10)
        assert down == snowg.Down(h1_ref, h1, "killed")
        holder = snowg.whereis_global(name)
        assert holder is not None and holder.node == p2.name and str(holder) == p2_holder_text
        assert all_see(everyone, name, holder)
        holder_ref = snowg.monitor(holder)
        with pytest.raises(snowg.Timeout):  # the winner is not killed afterwards
            recv(lambda m: isinstance(m, snowg.Down) and m.ref == holder_ref, 0.3)
        snowg.demonitor(holder_ref)
        assert "HOLDER DOWN" not in p2.read_log()
        assert all_see(everyone, name, holder)
