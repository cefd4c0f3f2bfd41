"""A message too large for the cluster's frame limit is refused in the sender."""

from __future__ import annotations

import distfuncs as df
import pytest

import snowg
from snowg.testing import PeerFactory
from support import recv


def test_a_message_over_max_frame_size_raises_in_the_sender_and_the_session_lives(
    snowg_node: snowg.Node, peers: PeerFactory
) -> None:
    peer = peers.start(modules=["distfuncs"])
    echo = snowg.spawn(df.echo, node=peer.name)
    big = b"x" * (2 * 1024 * 1024)  # over the default max_frame_size of 1 MiB
    with pytest.raises(ValueError, match="over max_frame_size"):
        snowg.send(echo, (snowg.self(), big))
    with pytest.raises(ValueError, match="over max_frame_size"):
        snowg.send(("some_name", peer.name), big)
    # The session was never touched: a message just under the limit still makes the round trip.
    snowg.send(echo, (snowg.self(), b"y" * (1024 * 1024 - 100)))
    reply = recv(lambda m: type(m) is tuple and m[0] == "echo")
    assert reply == ("echo", echo, b"y" * (1024 * 1024 - 100))
    assert peer.name in snowg.nodes()
