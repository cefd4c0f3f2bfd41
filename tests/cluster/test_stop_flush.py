"""Stopping a node sends what it has queued before closing.

``stop_node()``, and SIGTERM of ``snowg node``, first send everything the
node's sessions hold queued, end their side of each connection and wait for
the peer to read to the end and close (bounded by ``flush_timeout``, 5 s by
default). Without it, a program that sends and then stops (the documented
distribution example) loses what the writer had not written yet.

The nodes that stop are real ``snowg node`` processes; the receiving end is
this test's node, or a raw TLS session (the cluster handshake, then plain
reads) that decides when to start reading.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from typing import Any, List, Tuple

import gevent
import pytest

import snowg
from snowg import Pid
from snowg.cluster._frames import SEND
from snowg.cluster._framing import FrameDecoder
from snowg.testing import wait_for

import flushfuncs as ff
from support import connected_nodes, raw_session, recv

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(90)

_names = itertools.count(1)
RAW_CREATION = 4243


def _collect(count: int) -> List[Tuple[int, bytes]]:
    """The next ``count`` ``(i, blob)`` messages of the calling process."""
    return [recv(lambda m: type(m) is tuple and len(m) == 2 and type(m[0]) is int) for _ in range(count)]


@pytest.mark.parametrize(("count", "size"), [(2_000, 256), (400, 16 * 1024)], ids=["under-the-bound", "over-the-bound"])
def test_stop_node_sends_what_is_queued(peers, me, count: int, size: int) -> None:
    """N messages, then ``stop_node()`` at once: the other node gets all N, in order.

    Under the bound (500 KiB) the sender never yields before ``stop_node``;
    over it (6.25 MiB) the sender is suspended on the way and stops with the
    last MiB or so queued.
    """
    peer = peers.start(modules=["flushfuncs"])
    snowg.monitor_node(peer.name)
    snowg.spawn(ff.send_then_stop, me, count, size, node=peer.name)
    got = _collect(count)
    assert [i for i, _ in got] == list(range(count))
    assert all(blob == b"y" * size for _, blob in got)
    _, queued = recv(lambda m: type(m) is tuple and m[0] == "queued_at_stop")
    if count * size < 1024 * 1024:
        # The sender never yielded: all of it was still queued when the node stopped.
        assert queued >= count * size
    down = recv(lambda m: type(m) is snowg.NodeDown and m.node == peer.name)
    assert down.reason == "connection_closed"  # the peer ended the stream, we closed ours
    assert peer.alive()  # the node stopped; the OS process goes on
    assert "Traceback" not in peer.read_log()


class RawSession:
    """A TLS connection to a node that passed the real handshake, then reads only when told."""

    def __init__(self, config: Any, address: str, node_name: str) -> None:
        host, port = address.rsplit(":", 1)
        self.name = f"rawreader{next(_names)}-{os.getpid()}@127.0.0.1"
        self.pid = Pid(self.name, 1, RAW_CREATION)
        self.sock, hs = raw_session(
            config, int(port), self.name, RAW_CREATION, node_name, host=host, cert_name="raw@127.0.0.1", timeout=5
        )
        self.sock.settimeout(None)
        self.decoder = FrameDecoder(1 << 30)
        self.trailing = hs.trailing_data

    def read_to_the_end(self, timeout: float) -> List[Any]:
        """Every frame until the node ends the stream (blocks at most ``timeout`` s)."""
        frames: List[Any] = []
        data = self.trailing
        with gevent.Timeout(timeout, AssertionError("the node did not end the stream")):
            while True:
                if data:
                    frames.extend(self.decoder.feed(data))
                try:
                    data = self.sock.recv(256 * 1024)
                except OSError:
                    data = b""
                if not data:
                    return frames

    def close(self) -> None:
        self.sock.close()


def _sends_to(frames: List[Any], pid: Pid) -> List[Any]:
    """The messages of the ``SEND`` frames to ``pid``, in order."""
    return [f[2] for f in frames if f[0] == SEND and f[1] == pid]


def _node_flooding_a_non_reader(peers: Any, config: Any, tag: str) -> Tuple[Any, RawSession]:
    """A peer node whose process floods a :class:`RawSession` (16 KiB messages tagged ``tag``) until suspended.

    Returns ``(node, raw)`` once the node's sender is suspended at the
    session's bound; the caller closes ``raw``.
    """
    # A long tick: the peer that does not read is not declared down meanwhile.
    node = peers.start(modules=["flushfuncs", "support"], tick=10.0)
    raw = RawSession(config, node.address, node.name)
    try:
        assert wait_for(lambda: raw.name in node.rpc(connected_nodes), timeout=10)
        snowg.spawn(ff.flood, raw.pid, tag, 16 * 1024, node=node.name)
        assert wait_for(lambda: node.rpc(ff.backlog, raw.name, tag)[0] == 1, timeout=10)
    except BaseException:
        raw.close()
        raise
    return node, raw


def test_sigterm_of_snowg_node_sends_what_is_queued(peers, snowg_cluster_config) -> None:
    """SIGTERM of a node whose session to a non-reading peer is full: the peer, once it reads, gets it all.

    The node's sender is suspended at the session's bound. After SIGTERM the
    peer starts reading: it gets every message the sender had queued when
    the node began to stop, in order, then the end of the stream; the node
    exits with 0.
    """
    node, raw = _node_flooding_a_non_reader(peers, snowg_cluster_config, "sigterm")
    try:
        suspended, queued, last = node.rpc(ff.backlog, raw.name, "sigterm")
        assert suspended == 1 and queued > 1024 * 1024 and last > 0
        node.process.send_signal(signal.SIGTERM)
        frames = raw.read_to_the_end(timeout=20)
        assert node.process.wait(timeout=10) == 0
        log = node.read_log()
        assert "Traceback" not in log
        # The sender's last queued message when the node stopped (its send of
        # it suspended it; the socket may have taken more after `last` above).
        final = int(re.findall(r"^FLOOD sigterm (\d+)$", log, re.M)[-1])
        assert final >= last
        got = _sends_to(frames, raw.pid)
        assert [i for i, _ in got] == list(range(final + 1))
        assert all(blob == b"x" * 16 * 1024 for _, blob in got)
    finally:
        raw.close()


def test_sigterm_with_a_peer_that_never_reads_stops_within_flush_timeout(peers, snowg_cluster_config) -> None:
    """A session whose peer never reads is closed after ``flush_timeout`` (5 s); the log says what was lost."""
    node, raw = _node_flooding_a_non_reader(peers, snowg_cluster_config, "stuck")
    try:
        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=15) == 0
        log = node.read_log()
        assert f"session with {raw.name}" in log and "queued bytes not sent" in log
        assert "Traceback" not in log
    finally:
        raw.close()
