"""Two nodes that dial each other at the same moment settle at once (semantics rule 24).

Each round breaks the connection between this node and a peer OS process and
has both dial the other right away: one side calls ``disconnect`` and then
``connect``, the other connects as soon as its ``NodeDown`` arrives. Every
round must end with both connected, neither ``connect`` blocked for the
handshake timeout (each runs under a ``gevent.Timeout`` of 1 s: a bound, not
a timing measurement). Peers are named below and above this node, so both
orders of the names (which decide the winner) are exercised, and each side
starts the race half of the time.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Union

import gevent
import pytest

import snowg
from snowg import Pid

from support import connected_nodes, recv, tagged

pytest_plugins = ["snowg.testing"]

ROUNDS = 100
BOUND = 1.0  # seconds a connect may take in a race, at most


@snowg.spawnable
def racer(parent: Pid, target: str, rounds: int) -> None:
    """Runs on the peer: in each round, break or notice the broken connection, then dial at once."""
    home = parent.node
    for i in range(rounds):
        snowg.monitor_node(home)
        snowg.send(parent, ("armed", i))
        msg = snowg.receive(lambda m, i=i: m == ("go", i) or (type(m) is snowg.NodeDown and m.node == home), timeout=30)
        if msg == ("go", i):
            snowg.disconnect(home)
            snowg.receive(lambda m: type(m) is snowg.NodeDown and m.node == home, timeout=30)
        outcome: Union[bool, str]
        try:
            with gevent.Timeout(BOUND):
                outcome = snowg.connect(target)
        except gevent.Timeout:
            outcome = "blocked"
        snowg.send(parent, ("raced", i, outcome, home in snowg.nodes()))


def _race(peer: Any, racer_pid: Pid, i: int, caplog: Any) -> None:
    recv(tagged("armed", i))
    caplog.clear()
    if i % 2 == 0:
        # This node breaks the connection and dials; the peer dials on its NodeDown.
        assert snowg.disconnect(peer.name)
    else:
        # The peer breaks it and dials; this node dials on its NodeDown.
        snowg.monitor_node(peer.name)
        snowg.send(racer_pid, ("go", i))
        recv(lambda m: type(m) is snowg.NodeDown and m.node == peer.name)
    try:
        with gevent.Timeout(BOUND, AssertionError(f"round {i}: connect blocked for over {BOUND} s")):
            assert snowg.connect(peer.target) is True
        # The peer's side of the same round: it connected within the bound and sees us.
        assert recv(tagged("raced", i)) == ("raced", i, True, True)
    except AssertionError as exc:
        lines = "\n".join(f"{r.relativeCreated:.0f} ms {r.getMessage()}" for r in caplog.records)
        raise AssertionError(f"{exc}\nthis node's log:\n{lines}\nthe peer's log:\n{peer.log_tail(20)}") from None
    assert peer.name in snowg.nodes()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("peer_name", ["a-race", "z-race"], ids=["peer-name-lower", "peer-name-higher"])
def test_simultaneous_dials_settle_at_once(snowg_node, peers, me, caplog, peer_name: str) -> None:
    caplog.set_level(logging.INFO, logger="snowg")
    name = f"{peer_name}-{os.getpid()}@127.0.0.1"
    assert (name < snowg.node()) == (peer_name == "a-race")
    peer = peers.start(name, modules=["support", "test_connect_races"])
    racer_pid = snowg.spawn(racer, me, f"{snowg.node()}:{snowg_node.port}", ROUNDS, node=peer.name)
    for i in range(ROUNDS):
        _race(peer, racer_pid, i, caplog)
    # The cluster works afterwards, both ways.
    assert snowg.node() in peer.rpc(connected_nodes)
