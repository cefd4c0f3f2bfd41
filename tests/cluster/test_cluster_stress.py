"""Load between real node OS processes.

* 1,000,000 messages: 10 senders on one peer send to 10 receivers on another
  peer; every receiver checks per-sender order and duplicates itself and
  reports one summary (semantics rule 9: per-pair ordering, across nodes).
* A peer that stops reading: sends outrun the socket, what the socket
  cannot take waits in the session's writer, the sender is suspended at the
  session's bound, and all of it arrives in order once the peer reads.
"""

from __future__ import annotations

import time

import pytest

import snowg
from snowg.testing import wait_for

import distfuncs as df
from support import connected_nodes

pytest_plugins = ["snowg.testing"]

SENDERS = 10
RECEIVERS = 10
PER_PAIR = 10_000  # 10 x 10 x 10,000 = 1,000,000 messages


@pytest.mark.timeout(300)
def test_a_million_messages_arrive_in_order_once(peers, me) -> None:
    src = peers.start(modules=["distfuncs"])
    dst = peers.start(modules=["distfuncs"])
    assert wait_for(lambda: dst.name in src.rpc(connected_nodes))
    sessions = src.rpc(df.local_sessions), dst.rpc(df.local_sessions)
    receivers = [snowg.spawn(df.order_checker, me, SENDERS, PER_PAIR, node=dst.name) for _ in range(RECEIVERS)]
    t0 = time.monotonic()
    for tag in range(SENDERS):
        snowg.spawn(df.fanout_sender, me, receivers, tag, PER_PAIR, node=src.name)
    sent = {snowg.receive(lambda m: type(m) is tuple and m[0] == "sent", timeout=240)[1] for _ in range(SENDERS)}
    assert sent == set(range(SENDERS))
    summaries = {}
    for _ in range(RECEIVERS):
        _, pid, received, out_of_order, duplicates = snowg.receive(
            lambda m: type(m) is tuple and m[0] == "summary", timeout=240
        )
        summaries[pid] = (received, out_of_order, duplicates)
    elapsed = time.monotonic() - t0
    assert summaries == {r: (SENDERS * PER_PAIR, 0, 0) for r in receivers}
    # The load never made a node declare the other down (e.g. by starving its ticks).
    assert (src.rpc(df.local_sessions), dst.rpc(df.local_sessions)) == sessions
    print(f"1,000,000 remote messages in {elapsed:.1f} s ({1_000_000 / elapsed:,.0f}/s)")


BLOB = 64 * 1024
BLOBS_PER_BATCH = 160  # 10 MiB a batch: more than loopback's socket buffers hold


@pytest.mark.timeout(120)
def test_rule9_sends_to_a_peer_that_stopped_reading_wait_and_stay_in_order(peers, me) -> None:
    from snowg.cluster._connect import session_for

    peer = peers.start(modules=["distfuncs"])
    count = 2 * BLOBS_PER_BATCH
    checker = snowg.spawn(df.blob_checker, me, count, node=peer.name)
    sess = session_for(peer.name)

    def sender() -> None:
        for i in range(count):
            snowg.send(checker, (i, bytes([i % 256]) * BLOB))

    peer.freeze()  # for well under 4 ticks: the session stays up
    try:
        # The writer writes until the socket is full, then waits with what it
        # holds; the sender queues behind it up to the session's bound
        # (dist_buffer_size), then is suspended (semantics rule 30).
        snowg.spawn(sender)
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=5)
        assert sess._writer_busy and not sess.closed
    finally:
        peer.thaw()
    assert snowg.receive(lambda m: type(m) is tuple and m[0] == "blobs", timeout=60) == ("blobs", count, count * BLOB)
    assert wait_for(lambda: not sess._writer_busy, timeout=5)
    assert session_for(peer.name) is sess and not sess.closed
