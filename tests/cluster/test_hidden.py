"""Hidden nodes (``start_node(hidden=True)``, ``snowg node --hidden``; Erlang's ``-hidden``).

A hidden node connects, and is connected to, as any node, but the
connection is hidden on both sides: it is in ``nodes(hidden=True)`` and
``hidden_nodes()``, not in ``nodes()``; the upper layers' node callbacks
(process groups, global names, rooms) do not run for it, ``monitor_nodes``
watchers hear nothing of it, no peer list names it, and it does not
register with the port mapper. The handshake carries the flag as an extra
field that only a hidden node sends, so nodes that are not hidden speak as
before. Every peer here is a real node OS process; the test waits on
messages and on what the nodes answer, never on sleeps.
"""

pytest_plugins = ["snowg.testing"]

from typing import Any, List  # noqa: E402

import msgpack  # noqa: E402
import pytest  # noqa: E402

import hiddenfuncs  # noqa: E402
import snowg  # noqa: E402
from snowg import pg  # noqa: E402
from snowg.cluster import hidden_nodes, monitor_node, monitor_nodes, nodes  # noqa: E402
from snowg.cluster._handshake import (  # noqa: E402
    ACCEPTOR,
    FLAG_HIDDEN,
    INITIATOR,
    Established,
    Handshake,
    PeerHello,
    PeerProved,
)
from snowg.testing import wait_for  # noqa: E402
from support import no_message, recv, tagged  # noqa: E402

pytestmark = pytest.mark.timeout(90)

HIDDEN = ["--hidden"]


def _frames(data: bytes) -> List[Any]:
    out = []
    while data:
        n = int.from_bytes(data[:4], "big")
        out.append(msgpack.unpackb(data[4 : 4 + n], raw=False, strict_map_key=False))
        data = data[4 + n :]
    return out


def _pump(ini: Handshake, acc: Handshake) -> List[Any]:
    """Run a handshake between two sans-IO sides to the end; the messages, in order, by their first field."""
    seen: List[Any] = []
    events: List[Any] = []
    for _ in range(10):
        for src, dst in ((ini, acc), (acc, ini)):
            data = src.data_to_send()
            if data:
                seen += _frames(data)
                dst.receive_data(data)
            ev = dst.next_event()
            while ev is not None:
                events.append(ev)
                if isinstance(ev, (PeerHello, PeerProved)):
                    dst.accept()
                ev = dst.next_event()
        if ini.established and acc.established:
            return seen + events
    raise AssertionError(f"the handshake did not end: {seen}")


@pytest.mark.parametrize("hidden_side", [None, INITIATOR, ACCEPTOR])
def test_the_handshake_carries_the_flag_only_from_a_hidden_node(hidden_side):
    ini = Handshake(INITIATOR, "a@h", 1, "c", "h:1", hidden=hidden_side == INITIATOR)
    acc = Handshake(ACCEPTOR, "b@h", 2, "c", "h:2", hidden=hidden_side == ACCEPTOR)
    out = _pump(ini, acc)
    [hello] = [m for m in out if isinstance(m, list) and m[0] == "HELLO"]
    [challenge] = [m for m in out if isinstance(m, list) and m[0] == "CHALLENGE"]
    # A node that is not hidden sends exactly what nodes before hidden ones sent (6 fields each).
    assert len(hello) == (7 if hidden_side == INITIATOR else 6)
    assert len(challenge) == (7 if hidden_side == ACCEPTOR else 6)
    if hidden_side == INITIATOR:
        assert hello[6] == FLAG_HIDDEN
    if hidden_side == ACCEPTOR:
        assert challenge[6] == FLAG_HIDDEN
    [hello_ev] = [e for e in out if isinstance(e, PeerHello)]
    assert hello_ev.hidden is (hidden_side == INITIATOR)
    [on_ini, on_acc] = sorted((e for e in out if isinstance(e, Established)), key=lambda e: e.peer_name)
    assert (on_ini.peer_name, on_acc.peer_name) == ("a@h", "b@h")  # the acceptor's, then the initiator's view
    assert on_ini.peer_hidden is (hidden_side == INITIATOR)
    assert on_acc.peer_hidden is (hidden_side == ACCEPTOR)


def test_a_hidden_peer_is_connected_but_not_in_nodes(peers, me):
    monitor_nodes(True)
    try:
        hidden = peers.start(modules=["hiddenfuncs"], extra_args=HIDDEN)
        # Connected (this node dialled it): rpc works over the hidden connection.
        assert hidden.name in nodes(hidden=True)
        assert hidden_nodes() == [hidden.name]
        assert hidden.name not in nodes()
        assert hidden.rpc(hiddenfuncs.peers) == []
        assert hidden.rpc(hiddenfuncs.peers, True) == [snowg.node()]
        assert hidden.rpc(hiddenfuncs.hidden_peers) == [snowg.node()]
        # monitor_nodes watchers hear nothing of it; monitor_node of that node works.
        no_message(lambda m: isinstance(m, snowg.NodeUp) and m.node == hidden.name)
        monitor_node(hidden.name)
        hidden.kill()
        down = recv(lambda m: isinstance(m, snowg.NodeDown) and m.node == hidden.name)
        assert down.node == hidden.name
        assert wait_for(lambda: hidden_nodes() == [], timeout=10)
        no_message(lambda m: isinstance(m, (snowg.NodeUp, snowg.NodeDown)) and m.node == hidden.name)
    finally:
        monitor_nodes(False)


def test_a_hidden_node_joins_through_one_node_and_nobody_syncs_with_it_or_dials_it(peers, me):
    a = peers.start(modules=["hiddenfuncs"])
    # The hidden node dials a; a's peer list brings it to this node too.
    hidden = peers.start(modules=["hiddenfuncs"], extra_args=[*HIDDEN, "--connect", a.target], connect=False)
    assert wait_for(lambda: hidden_nodes() == [hidden.name], timeout=15)
    assert wait_for(lambda: hidden.rpc(hiddenfuncs.peers, True) == sorted([a.name, snowg.node()]), timeout=15)
    assert hidden.rpc(hiddenfuncs.peers) == []
    assert a.rpc(hiddenfuncs.peers) == [snowg.node()]
    assert a.rpc(hiddenfuncs.hidden_peers) == [hidden.name]

    # Process groups: a member on a reaches this node, never the hidden one.
    member = a.rpc(hiddenfuncs.join_group, me, "grp")
    recv(tagged("joined", "grp"))
    assert wait_for(lambda: pg.get_members("grp") == [member], timeout=10)
    assert hidden.rpc(hiddenfuncs.members, "grp") == []
    # Global names: registered on every visible node, unknown to the hidden one.
    assert snowg.cluster.register_global("hidden_test_name", me)
    try:
        assert wait_for(lambda: a.rpc(hiddenfuncs.global_name, "hidden_test_name") == str(me), timeout=10)
        assert hidden.rpc(hiddenfuncs.global_name, "hidden_test_name") is None
    finally:
        snowg.cluster.unregister_global("hidden_test_name")

    # A new node that joins through a learns of this node from a's peer list, not of the hidden one.
    b = peers.start(modules=["hiddenfuncs"], extra_args=["--connect", a.target], connect=False)
    assert wait_for(lambda: b.name in nodes(), timeout=15)  # b dialled us, from a's peer list
    assert wait_for(lambda: b.rpc(hiddenfuncs.peers, True) == sorted([a.name, snowg.node()]), timeout=15)
    assert b.rpc(hiddenfuncs.hidden_peers) == []
    assert hidden.rpc(hiddenfuncs.peers, True) == sorted([a.name, snowg.node()])
