"""Calls to a server on another node: the general path, and the alias checked by the reply router."""

from __future__ import annotations

import pytest
from callfuncs import holding_server

import snowg
from snowg import CallTimeout

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(60)


def test_a_late_reply_from_another_node_is_dropped_and_the_next_call_gets_its_own(peers):
    peer = peers.start(modules=["callfuncs"])
    me = snowg.self()
    srv = snowg.spawn(holding_server, me, node=peer.name)
    assert snowg.call(srv, "first") == "first"
    with pytest.raises(CallTimeout):
        snowg.call(srv, "hold", timeout=0.2)
    assert snowg.receive(timeout=10) == ("holding", peer.name)
    snowg.send(srv, ("release", "late"))  # its reply reaches this node's reply router after the timeout
    assert snowg.call(srv, "next") == "next"  # the router handled the late reply before this one
    assert snowg.process_info(me)["message_queue_len"] == 0
    assert snowg.process_info(me)["monitors"] == []
