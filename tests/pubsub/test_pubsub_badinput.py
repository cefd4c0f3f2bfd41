"""A peer's PUBSUB frames: a good one is delivered here, never forwarded; a malformed one closes that session only.

The peer is a raw TLS session that passed the real handshake (a certificate
of the cluster CA and the cookie) and then writes frames by hand.
"""

from __future__ import annotations

pytest_plugins = ["snowg.testing"]

import itertools  # noqa: E402
import os  # noqa: E402
from typing import Any, List  # noqa: E402

import pytest  # noqa: E402

import snowg  # noqa: E402
import snowg.pubsub as pubsub  # noqa: E402
from snowg.cluster import frames_sent  # noqa: E402
from snowg.cluster._framing import encode_frame  # noqa: E402
from snowg.testing import PeerFactory, wait_for  # noqa: E402
from support import assert_logged, raw_session, read_until_closed, recv  # noqa: E402

TIME_LIMIT = 60
_serial = itertools.count(1)


def raw_peer(config: Any, node: Any) -> Any:
    name = f"zzpubsub{next(_serial)}-{os.getpid()}@127.0.0.1"
    sock, _ = raw_session(config, node.port, name, 4242, node.name)
    assert wait_for(lambda: name in snowg.nodes(), timeout=10)
    return name, sock


def test_a_peer_s_broadcast_reaches_the_local_subscribers_and_goes_no_further(
    me: snowg.Pid, snowg_node: Any, snowg_cluster_config: Any, peers: PeerFactory
) -> None:
    witness = peers.start(modules=["pubsubfuncs", "support"])
    pubsub.subscribe("t")
    pubsub.subscribe("t")
    name, sock = raw_peer(snowg_cluster_config, snowg_node)
    try:
        before = frames_sent(witness.name, pubsub.PUBSUB)
        sock.sendall(encode_frame([pubsub.PUBSUB, "t", ("hello", [1, 2]), None]))
        assert recv() == ("hello", [1, 2])
        assert recv() == ("hello", [1, 2])
        sock.sendall(encode_frame([pubsub.PUBSUB, "t", "not to me", me]))
        sock.sendall(encode_frame([pubsub.PUBSUB, "t", "fence", snowg.Pid(name, 1, 4242)]))
        assert recv() == "fence"  # the excluded one was skipped, both times
        assert frames_sent(witness.name, pubsub.PUBSUB) == before  # never forwarded
    finally:
        sock.close()


BAD_FRAMES: List[Any] = [
    [pubsub.PUBSUB, 7, "m", None],  # a topic that is not a str
    [pubsub.PUBSUB, b"t", "m", None],
    [pubsub.PUBSUB, "t", "m", "not a pid"],  # an exclusion that is neither a pid nor None
    [pubsub.PUBSUB, "t", "m"],  # a field missing
    [pubsub.PUBSUB, "t", "m", None, "extra"],
]


@pytest.mark.parametrize("frame", BAD_FRAMES)
def test_a_malformed_pubsub_frame_closes_that_session_only(
    me: snowg.Pid, snowg_node: Any, snowg_cluster_config: Any, peers: PeerFactory, log: Any, frame: Any
) -> None:
    witness = peers.start(modules=["pubsubfuncs", "support"])
    name, sock = raw_peer(snowg_cluster_config, snowg_node)
    try:
        sock.sendall(encode_frame(frame))
        read_until_closed(sock)
        assert wait_for(lambda: name not in snowg.nodes(), timeout=10)
    finally:
        sock.close()
    assert_logged(log, name, "PUBSUB")
    # The node goes on: its other peer still gets its broadcasts.
    import pubsubfuncs as pf

    sub = snowg.spawn(pf.subscriber, me, ["after"], node=witness.name)
    recv(lambda m: m == ("subscribed", sub))
    assert wait_for(lambda: len(pubsub.subscribers("after")) == 1, timeout=10)
    pubsub.broadcast("after", "still here")
    assert recv(lambda m: type(m) is tuple and m[0] == "got") == ("got", sub, "still here")
