"""Frames of an extension a node has not loaded are dropped, not a protocol error."""

from __future__ import annotations

import distfuncs as df

import snowg
from snowg.cluster import broadcast_frame
from snowg.testing import PeerFactory
from snowg.ws._rooms import ROOM_BROADCAST
from support import no_message, recv


def test_a_room_broadcast_to_a_node_without_snowg_ws_leaves_the_session_up(
    snowg_node: snowg.Node, peers: PeerFactory
) -> None:
    peer = peers.start(modules=["distfuncs"])  # a plain worker node: snowg.ws is never imported there
    assert peer.rpc(df.loaded_modules, "snowg.ws") == []
    snowg.monitor_node(peer.name)
    for i in range(3):  # a room-broadcast frame, as a node with snowg.ws sends one to a node with members
        broadcast_frame([ROOM_BROADCAST, "lobby", f"hello {i}"])
    echo = snowg.spawn(df.echo, node=peer.name)
    snowg.send(echo, (snowg.self(), "still there"))
    assert recv(lambda m: type(m) is tuple and m[0] == "echo") == ("echo", echo, "still there")
    no_message(lambda m: isinstance(m, snowg.NodeDown))
    assert peer.name in snowg.nodes()
    # One line for the three dropped frames; the rest are counted, not logged.
    assert peer.read_log().count("dropping frames of extension tag 16") == 1
