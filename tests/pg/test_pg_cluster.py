"""Process groups across real node processes: the pg rules (semantics rules 31-39) on 3 and 5 nodes.

This test process is one node; the others are ``snowg node`` processes
(:mod:`snowg.testing` peers) importing :mod:`pgfuncs`. Memberships spread
without a message to wait for, so a test waits (bounded) until a node's
``get_members`` is what it expects, then asserts it; monitors and members
report with messages.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any, List

import gevent
import pgfuncs as pf
import pytest

import snowg
import snowg.pg as pg
from snowg import cluster as tls
from snowg.cluster._framing import encode_frame
from snowg.cluster._handshake import INITIATOR, Handshake
from snowg.pg import _scope
from snowg.pg._wire import DISCOVER, JOIN, LEAVE, SYNC
from snowg.testing import PeerFactory, wait_for
from support import assert_logged, drive_handshake, no_message, read_until_closed, recv, rss, wait_down

TIME_LIMIT = 120

pytestmark = pytest.mark.usefixtures("snowg_node")

MODS = ["pgfuncs"]


def start_member(node: str, group: Any = None, times: int = 1, scope: str = pg.DEFAULT_SCOPE) -> snowg.Pid:
    """A :func:`pgfuncs.member` on ``node`` that joined ``group`` ``times`` times."""
    pid = snowg.spawn(pf.member, snowg.self(), group, times, scope, node=node)
    recv(lambda m: m == ("member", pid))
    return pid


def command(member: snowg.Pid, *cmd: Any) -> Any:
    snowg.send(member, cmd)
    return recv(lambda m: type(m) is tuple and m[:2] == ("done", member))[2]


def start_watcher(node: str, group: Any = None, scope: str = pg.DEFAULT_SCOPE) -> Any:
    """A :func:`pgfuncs.watcher` on ``node``; returns its snapshot."""
    pid = snowg.spawn(pf.watcher, snowg.self(), group, scope, node=node)
    return recv(lambda m: type(m) is tuple and m[:2] == ("watching", pid))[2]


def note(node: str):
    return lambda m: type(m) is tuple and len(m) == 5 and m[0] == "note" and m[1] == node


def everywhere(peers: List[Any], group: Any, want: List[Any], scope: str = pg.DEFAULT_SCOPE) -> None:
    """Every node (this one and ``peers``) lists ``want`` as the members of ``group`` (bounded wait)."""
    assert pf.local_wait_members(group, want, scope) == want
    for peer in peers:
        assert peer.rpc(pf.wait_members, group, want, scope) == want, peer.name


@pytest.fixture
def witness(peers: PeerFactory):
    """A healthy peer (importing pgfuncs): whatever a hostile session does, it goes on sharing groups."""
    return peers.start(modules=MODS)


@pytest.fixture
def three(peers: PeerFactory):
    """Two peers: with this node, three nodes."""
    return peers.start(modules=MODS), peers.start(modules=MODS)


# -------------------------------------------------------------- rule 31


def test_rule_31_a_scope_is_shared_by_the_nodes_that_run_it(three) -> None:
    a, b = three
    pg.start("s2")
    a.rpc(pf.start_scope, "s2")
    p = start_member(a.name, "g", scope="s2")
    everywhere([a], "g", pf.key([p]), scope="s2")
    assert b.rpc(pf.members, "g", "s2") == []  # b does not run s2
    assert pg.get_members("g") == [] and b.rpc(pf.members, "g") == []  # nor is it the default scope's
    b.rpc(pf.start_scope, "s2")  # started later: it meets the others and hears their members
    assert b.rpc(pf.wait_members, "g", pf.key([p]), "s2") == pf.key([p])


def test_rule_31_every_node_runs_the_default_scope(three) -> None:
    a, b = three
    for peer in (a, b):
        assert wait_for(lambda peer=peer: peer.rpc(pf.scope_pid) is not None, 10)


# -------------------------------------------------------------- rule 32


def test_rule_32_a_remote_join_is_seen_on_every_node_once_per_join(three) -> None:
    a, b = three
    p = start_member(a.name, "g", times=2)
    q = start_member(b.name, "g")
    pg.join("g")
    want = pf.key([p, p, q, snowg.self()])
    everywhere([a, b], "g", want)
    assert b.rpc(pf.local_members, "g") == pf.key([q])
    assert pg.get_local_members("g") == [snowg.self()]
    assert b.rpc(pf.groups) == ["g"]
    assert b.rpc(pf.nodes_of, "g") == sorted([a.name, b.name, snowg.node()])
    assert pg.member_nodes("g") == frozenset({a.name, b.name, snowg.node()})


def test_rule_32_a_process_of_another_node_cannot_join_here(three) -> None:
    a, _b = three
    p = start_member(a.name)
    with pytest.raises(ValueError, match=f"only local processes join a group: join it on {a.name}"):
        pg.join("g", p)
    assert command(p, "join", "g") is None  # it joins on its own node
    everywhere([a], "g", pf.key([p]))


# -------------------------------------------------------------- rule 33


def test_rule_33_a_remote_leave_removes_one_join_everywhere(three) -> None:
    a, b = three
    p = start_member(a.name, "g", times=2)
    everywhere([a, b], "g", pf.key([p, p]))
    assert command(p, "leave", "g") is True
    everywhere([a, b], "g", pf.key([p]))
    assert command(p, "leave", "g") is True
    everywhere([a, b], "g", [])
    assert command(p, "leave", "g") is False
    assert b.rpc(pf.groups) == [] and pg.which_groups() == []


# -------------------------------------------------------------- rule 34


def test_rule_34_a_remote_member_that_exits_leaves_everywhere(three) -> None:
    a, b = three
    p = start_member(a.name, "g", times=2)
    start_member(a.name, "h")
    q = start_member(a.name, "h")
    snowg.send(q, ("join_many", ["g"]))
    recv(lambda m: m[:2] == ("done", q))
    everywhere([a, b], "g", pf.key([p, p, q]))
    ref, _ = pg.monitor("g")
    snowg.exit(p, "kill")
    assert recv(lambda m: type(m) is tuple and m[0] == ref) == (ref, "leave", "g", [p, p])
    everywhere([a, b], "g", pf.key([q]))
    snowg.send(q, ("exit", "shutdown"))
    assert recv(lambda m: type(m) is tuple and m[0] == ref) == (ref, "leave", "g", [q])
    everywhere([a, b], "g", [])
    assert len(b.rpc(pf.members, "h")) == 1


# -------------------------------------------------------------- rule 36


def test_rule_36_five_nodes_joining_and_leaving_one_group_end_alike(peers: PeerFactory) -> None:
    others = [peers.start(modules=MODS) for _ in range(4)]
    nodes = [snowg.node()] + [p.name for p in others]
    rng = random.Random(36)
    me = snowg.self()
    n = 0
    for node in nodes:
        for _ in range(6):
            steps = [rng.choice("jjl") for _ in range(40)]
            snowg.spawn(pf.churn, me, "crowd", steps, n, node=node)
            n += 1
    want: List[snowg.Pid] = []
    for _ in range(n):
        _tag, _n, pid, joins = recv(lambda m: type(m) is tuple and m[0] == "churned")
        want += [pid] * joins
    assert want, "the random steps left nobody joined: pick another seed"
    everywhere(others, "crowd", pf.key(want))
    counts = dict(Counter(p.node for p in want))
    for peer in others:
        assert peer.rpc(pf.wait_counts, "crowd", counts) == counts


# -------------------------------------------------------------- rule 37


def test_rule_37_a_lost_node_takes_its_members_away_everywhere(three) -> None:
    a, b = three
    p = start_member(a.name, "g", times=2)
    q = start_member(b.name, "g")
    everywhere([a, b], "g", pf.key([p, p, q]))
    here = start_watcher(snowg.node(), "g")
    there = start_watcher(b.name, None)
    assert here == pf.key([p, p, q]) and there == {"g": pf.key([p, p, q])}
    a.kill()  # SIGKILL: no goodbye
    assert recv(note(snowg.node())) == ("note", snowg.node(), "leave", "g", pf.key([p, p]))
    assert recv(note(b.name)) == ("note", b.name, "leave", "g", pf.key([p, p]))
    assert pg.get_members("g") == [q]
    assert b.rpc(pf.members, "g") == pf.key([q])
    assert pg.member_nodes("g") == frozenset({b.name})


def test_rule_37_a_reconnected_node_brings_its_members_back(three) -> None:
    a, b = three
    p = start_member(a.name, "g", times=2)
    everywhere([a, b], "g", pf.key([p, p]))
    start_watcher(snowg.node(), "g")
    snowg.monitor_node(a.name)
    snowg.disconnect(a.name)
    recv(lambda m: type(m) is snowg.NodeDown)
    assert recv(note(snowg.node())) == ("note", snowg.node(), "leave", "g", pf.key([p, p]))
    assert pg.get_members("g") == []
    assert b.rpc(pf.members, "g") == pf.key([p, p])  # b is still connected to a
    assert snowg.connect(a.target)
    assert recv(note(snowg.node())) == ("note", snowg.node(), "join", "g", pf.key([p, p]))
    everywhere([a, b], "g", pf.key([p, p]))
    no_message(note(snowg.node()))


def test_rule_37_a_peer_scope_that_ends_takes_its_members_away(three) -> None:
    a, b = three
    p = start_member(a.name, "g")
    everywhere([a, b], "g", pf.key([p]))
    scope = a.rpc(pf.scope_pid)
    snowg.exit(scope, "kill")
    assert pf.local_wait_members("g", []) == []
    assert b.rpc(pf.wait_members, "g", []) == []


# -------------------------------------------------------------- rule 38


def test_rule_38_monitors_see_remote_changes_exactly(three) -> None:
    a, b = three
    pg.join("g")
    assert b.rpc(pf.wait_members, "g", pf.key([snowg.self()])) == pf.key([snowg.self()])
    assert start_watcher(b.name, None) == {"g": pf.key([snowg.self()])}
    p = start_member(a.name, "g")
    assert recv(note(b.name)) == ("note", b.name, "join", "g", pf.key([p]))
    command(p, "join", "h")
    assert recv(note(b.name)) == ("note", b.name, "join", "h", pf.key([p]))
    command(p, "leave", "g")
    assert recv(note(b.name)) == ("note", b.name, "leave", "g", pf.key([p]))
    pg.leave("g")
    assert recv(note(b.name)) == ("note", b.name, "leave", "g", pf.key([snowg.self()]))
    snowg.send(p, "stop")
    assert recv(note(b.name)) == ("note", b.name, "leave", "h", pf.key([p]))
    no_message(note(b.name), wait=0.2)


# ------------------------------------------------ rule 39: hostile peers


def raw_peer(config, snowg_node, drain: bool = True) -> Any:
    """A TLS session that completed the real handshake as a made-up node; ``(sock, name, creation)``."""
    sock = gevent.socket.create_connection(("127.0.0.1", snowg_node.port), timeout=5)
    cfg = tls.load_tls(config.certs, "raw@127.0.0.1", default_dir=None)
    sock = tls.client_context(cfg).wrap_socket(sock, server_side=False)
    name = f"pgraw{os.urandom(3).hex()}@127.0.0.1"
    creation = 4242
    hs = Handshake(INITIATOR, name, creation, config.cookie, address="127.0.0.1:1", expected_peer=snowg_node.name)
    drive_handshake(sock, hs, timeout=5)
    assert wait_for(lambda: name in snowg.nodes(), timeout=5)
    if drain:
        gevent.spawn(_drain, sock)  # what the node sends it (discover, monitors) is read and dropped
    return sock, name, creation


def _drain(sock: Any) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def test_rule_39_a_node_speaks_only_for_its_own_processes(snowg_node, snowg_cluster_config, witness, log) -> None:
    pg.join("g")  # the scope runs
    sock, name, creation = raw_peer(snowg_cluster_config, snowg_node)
    scope = snowg.Pid(name, 1, creation)
    own = snowg.Pid(name, 2, creation)
    theirs = snowg.Pid(witness.name, 99, 1)
    sock.sendall(
        encode_frame([DISCOVER, pg.DEFAULT_SCOPE, scope])
        + encode_frame([SYNC, pg.DEFAULT_SCOPE, scope, False, [["g", [own, theirs]]]])
        + encode_frame([JOIN, pg.DEFAULT_SCOPE, snowg.Pid(witness.name, 1, 1), "g", [own]])
    )
    assert sorted(pf.local_wait_members("g", pf.key([snowg.self(), own]))) == pf.key([snowg.self(), own])
    assert_logged(log, "ignored members of other nodes", name)
    assert_logged(log, "naming the scope process", name)
    assert witness.rpc(pf.members, "g") == pf.key([snowg.self()])  # nothing of the raw node's reached it
    sock.close()
    assert pf.local_wait_members("g", pf.key([snowg.self()])) == pf.key([snowg.self()])


def test_rule_39_a_malformed_scope_frame_closes_only_that_session(
    snowg_node, snowg_cluster_config, witness, log
) -> None:
    pg.join("g")
    sock, name, creation = raw_peer(snowg_cluster_config, snowg_node, drain=False)
    scope = snowg.Pid(name, 1, creation)
    sock.sendall(encode_frame([SYNC, pg.DEFAULT_SCOPE, scope, False, [[[1, 2], [scope]]]]))  # a list as a group
    read_until_closed(sock)
    assert_logged(log, f"session with {name}", "closed", "PG_SYNC frame: field 4")
    assert pg.get_members("g") == [snowg.self()]
    assert witness.rpc(pf.wait_members, "g", pf.key([snowg.self()])) == pf.key([snowg.self()])


def test_rule_39_a_sync_naming_a_million_groups_is_capped(
    snowg_node, snowg_cluster_config, witness, log, monkeypatch
) -> None:
    monkeypatch.setattr(_scope, "MAX_REMOTE_MEMBERS", 10_000)
    pg.join("mine")
    sock, name, creation = raw_peer(snowg_cluster_config, snowg_node)
    scope = snowg.Pid(name, 1, creation)
    member = snowg.Pid(name, 2, creation)
    before = rss()
    sock.sendall(encode_frame([DISCOVER, pg.DEFAULT_SCOPE, scope]))
    per_frame = 20_000
    for start in range(0, 1_000_000, per_frame):
        groups = [[i, [member]] for i in range(start, start + per_frame)]
        sock.sendall(encode_frame([SYNC, pg.DEFAULT_SCOPE, scope, start + per_frame < 1_000_000, groups]))
    assert_logged(log, "reported more than 10000 memberships", name)
    assert wait_for(lambda: len(pg.which_groups()) == 10_001, 30)
    assert rss() - before < 200 * 1024 * 1024
    assert pg.get_members("mine") == [snowg.self()]  # the node goes on
    assert witness.rpc(pf.members, "mine") == pf.key([snowg.self()])
    sock.close()
    assert wait_for(lambda: pg.which_groups() == ["mine"], 30)


def test_rule_39_join_deltas_past_the_cap_are_dropped(
    snowg_node, snowg_cluster_config, witness, log, monkeypatch
) -> None:
    monkeypatch.setattr(_scope, "MAX_REMOTE_MEMBERS", 1_000)
    pg.join("mine")
    sock, name, creation = raw_peer(snowg_cluster_config, snowg_node)
    scope = snowg.Pid(name, 1, creation)
    members = [snowg.Pid(name, i, creation) for i in range(2, 1_502)]
    sock.sendall(
        encode_frame([DISCOVER, pg.DEFAULT_SCOPE, scope])
        + encode_frame([SYNC, pg.DEFAULT_SCOPE, scope, False, []])
        + encode_frame([JOIN, pg.DEFAULT_SCOPE, scope, "g", members[:600]])
        + encode_frame([JOIN, pg.DEFAULT_SCOPE, scope, "h", members[600:]])
        + encode_frame([LEAVE, pg.DEFAULT_SCOPE, scope, "g", [snowg.Pid(name, 9_999, creation)]])  # never joined
    )
    assert_logged(log, "reported more than 1000 memberships", name)
    assert wait_for(lambda: len(pg.get_members("g")) + len(pg.get_members("h")) == 1_000, 10)
    assert len(pg.get_members("g")) == 600
    sock.close()
    assert wait_for(lambda: pg.which_groups() == ["mine"], 10)


def test_large_memberships_travel_in_parts(three, peers: PeerFactory) -> None:
    """50,000 joins of one pid in one call: the join deltas and a later node's sync are cut into parts."""
    a, b = three
    p = start_member(a.name)
    snowg.send(p, ("join_times", "big", 50_000))
    recv(lambda m: m[:2] == ("done", p), timeout=30)
    assert wait_for(lambda: len(pg.get_members("big")) == 50_000, 30)
    assert b.rpc(pf.wait_counts, "big", {a.name: 50_000}, 30.0, timeout=40) == {a.name: 50_000}
    c = peers.start(modules=MODS)  # started now: it hears a's members through a sync in parts
    assert c.rpc(pf.wait_counts, "big", {a.name: 50_000}, 30.0, timeout=40) == {a.name: 50_000}


def test_a_node_stop_and_start_again_keeps_its_groups_working(tmp_path) -> None:
    """Before ``start_node`` (a node of one), after it, after ``stop_node`` and a new start (rule 31)."""
    import subprocess
    import sys

    script = tmp_path / "restart.py"
    script.write_text(
        "import snowg, snowg.pg as pg\n"
        "pg.join('g')\n"
        "print(pg.member_nodes('g') == {snowg.node()}, pg.get_members('g') == [snowg.self()])\n"
        "snowg.start_node('pgone@127.0.0.1', cookie='c', tls=None)\n"
        "print(pg.member_nodes('g') == {'pgone@127.0.0.1'}, pg.get_members('g') == [snowg.self()])\n"
        "snowg.stop_node()\n"
        "snowg.start_node('pgtwo@127.0.0.1', cookie='c', tls=None)\n"
        "pg.join('h')\n"
        "print(pg.member_nodes('h') == {'pgtwo@127.0.0.1'}, sorted(pg.which_groups()))\n"
        "snowg.stop_node()\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["True True", "True True", "True ['g', 'h']"]


def test_peers_started_together_agree_without_this_node(peers: PeerFactory) -> None:
    """Two peers that never met before this node introduced them still share their groups (rule 36)."""
    a = peers.start(modules=MODS)
    b = peers.start(modules=MODS)
    p = start_member(a.name, "x")
    q = start_member(b.name, "x")
    want = pf.key([p, q])
    assert a.rpc(pf.wait_members, "x", want) == want
    assert b.rpc(pf.wait_members, "x", want) == want
    wait_down_pid = p
    snowg.send(p, "stop")
    wait_down(wait_down_pid)
    assert b.rpc(pf.wait_members, "x", pf.key([q])) == pf.key([q])
