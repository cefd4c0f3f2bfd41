"""snowg.pubsub across real node processes: interest routing, ordering, churn, nodes lost and back.

The test process is node A; the others are ``snowg node`` OS processes that
import :mod:`pubsubfuncs`. Subscribers forward what they get to the test's
process, or check long streams themselves and report a summary.

Exactness without sleeps: a node's broadcasts reach a subscriber in the order
the node made them (one FIFO session per pair of nodes, FIFO mailboxes), so
once a subscriber has a *fence* broadcast after a test's messages, it has
everything before it, and counts compare exactly. Frames put on each session
are counted by the sending node (:func:`snowg.cluster.frames_sent`), which is
exact as soon as the broadcast returns. Waits for the cluster's view of the
subscriptions (eventually consistent) poll with a bound.
"""

from __future__ import annotations

pytest_plugins = ["snowg.testing"]

from typing import Any, Dict, List, Sequence  # noqa: E402

import pytest  # noqa: E402

import pubsubfuncs as pf  # noqa: E402
import snowg  # noqa: E402
import snowg.pubsub as pubsub  # noqa: E402
from snowg.cluster import frames_sent  # noqa: E402
from snowg.testing import Peer, PeerFactory, wait_for  # noqa: E402
from support import connected_nodes, no_message, recv, tagged  # noqa: E402

TIME_LIMIT = 240
MODS = ["pubsubfuncs", "support"]
W = 30.0  # seconds a cluster-wide view or a single expected message may take


def mesh(peers: PeerFactory, n: int) -> List[Peer]:
    """Start ``n`` peers and wait until every node is connected to every other."""
    started = [peers.start(modules=MODS) for _ in range(n)]
    names = [snowg.node()] + [p.name for p in started]
    for p in started:
        others = sorted(x for x in names if x != p.name)
        assert wait_for(lambda p=p, others=others: p.rpc(connected_nodes) == others, timeout=W), p.name
    return started


def count_on(node: str, topic: str, peer_of: Dict[str, Peer]) -> int:
    if node == snowg.node():
        return len(pubsub.subscribers(topic))
    return int(peer_of[node].rpc(pf.subscriber_count, topic))


def wait_views(topic: str, n: int, peer_of: Dict[str, Peer], nodes: Sequence[str]) -> None:
    """Wait until every node of ``nodes`` sees ``n`` subscriptions to ``topic``."""
    for node in nodes:
        assert wait_for(lambda node=node: count_on(node, topic, peer_of) == n, timeout=W), (node, topic, n)


def start_subscriber(me: snowg.Pid, node: str, topics: Sequence[str], times: int = 1) -> snowg.Pid:
    pid = snowg.spawn(pf.subscriber, me, list(topics), times, node=node)
    recv(tagged("subscribed", pid), timeout=W)
    return pid


def got(pid: snowg.Pid) -> Any:
    return recv(tagged("got", pid), timeout=W)[2]


def sent_by(node: str, to: Sequence[str], peer_of: Dict[str, Peer]) -> List[int]:
    if node == snowg.node():
        return [frames_sent(n, pubsub.PUBSUB) for n in to]
    return list(peer_of[node].rpc(pf.sent_counts, list(to)))


def broadcast_on(node: str, topic: str, message: Any, peer_of: Dict[str, Peer], exclude: Any = None) -> None:
    if node == snowg.node():
        pf.do_broadcast(topic, message, exclude)
    else:
        peer_of[node].rpc(pf.do_broadcast, topic, message, exclude)


def command(pid: snowg.Pid, op: str, arg: Any) -> None:
    snowg.send(pid, (pf.CMD, op, arg))
    recv(tagged("done", pid, op, arg), timeout=W)


# ---------------------------------------------------------------- every function


def test_every_function_across_three_nodes(me: snowg.Pid, peers: PeerFactory) -> None:
    b, c = mesh(peers, 2)
    a = snowg.node()
    peer_of = {b.name: b, c.name: c}
    nodes = [a, b.name, c.name]
    sb = start_subscriber(me, b.name, ["t"])
    sc = start_subscriber(me, c.name, ["t"], times=2)
    pubsub.subscribe("t")
    wait_views("t", 4, peer_of, nodes)
    assert sorted(pubsub.subscribers("t")) == sorted([me, sb, sc, sc])
    assert pubsub.local_subscribers("t") == [me]

    # broadcast from each node reaches every subscription once.
    for node in nodes:
        broadcast_on(node, "t", ("from", node), peer_of)
        assert recv(lambda m, node=node: m == ("from", node), timeout=W)
        assert got(sb) == ("from", node)
        assert got(sc) == ("from", node)
        assert got(sc) == ("from", node)

    # broadcast_from excludes exactly one process, wherever it and the sender are.
    broadcast_on(b.name, "t", "not to sc", peer_of, exclude=sc)
    broadcast_on(a, "t", "not to sb", peer_of, exclude=sb)
    pubsub.broadcast_from(me, "t", "not to me")
    pubsub.broadcast("t", "fence")
    assert recv(lambda m: type(m) is str, timeout=W) == "not to sc"
    assert recv(lambda m: type(m) is str, timeout=W) == "not to sb"
    assert recv(lambda m: type(m) is str, timeout=W) == "fence"
    assert [got(sb) for _ in range(3)] == ["not to sc", "not to me", "fence"]
    assert [got(sc) for _ in range(6)] == ["not to sb"] * 2 + ["not to me"] * 2 + ["fence"] * 2

    # local_broadcast stays on its node: no frame leaves, the others' next message is the fence.
    before = sent_by(a, [b.name, c.name], peer_of)
    pubsub.local_broadcast("t", "local")
    assert sent_by(a, [b.name, c.name], peer_of) == before
    assert recv(lambda m: type(m) is str, timeout=W) == "local"
    c.rpc(pf.do_local_broadcast, "t", "local on c")
    pubsub.broadcast("t", "fence 2")
    assert got(sb) == "fence 2"
    assert [got(sc) for _ in range(4)] == ["local on c"] * 2 + ["fence 2"] * 2
    assert recv(lambda m: type(m) is str, timeout=W) == "fence 2"

    # unsubscribe drops both of sc's subscriptions, everywhere.
    command(sc, "unsubscribe", "t")
    wait_views("t", 2, peer_of, nodes)
    broadcast_on(c.name, "t", "after", peer_of)
    pubsub.broadcast("t", "fence 3")
    # Two publishers on two nodes: no order between them.
    assert sorted([got(sb), got(sb)]) == ["after", "fence 3"]
    no_message(tagged("got", sc))


def test_a_message_that_cannot_cross_is_refused_before_any_frame(me: snowg.Pid, peers: PeerFactory) -> None:
    (b,) = mesh(peers, 1)
    start_subscriber(me, b.name, ["strict"])
    pubsub.subscribe("strict")
    wait_views("strict", 2, {b.name: b}, [snowg.node(), b.name])
    before = frames_sent(b.name, pubsub.PUBSUB)
    with pytest.raises(TypeError, match=r"cannot (cross|send).*node"):
        pubsub.broadcast("strict", {1, 2})
    assert frames_sent(b.name, pubsub.PUBSUB) == before
    no_message()


# ------------------------------------------------------------- interest routing


def test_a_broadcast_puts_frames_only_on_the_sessions_to_nodes_with_subscribers(
    me: snowg.Pid, peers: PeerFactory
) -> None:
    ps = mesh(peers, 5)
    a = snowg.node()
    peer_of = {p.name: p for p in ps}
    nodes = [a] + [p.name for p in ps]
    b, c, d = ps[0].name, ps[1].name, ps[2].name
    subs = [start_subscriber(me, b, ["hot"]), start_subscriber(me, c, ["hot"])]
    wait_views("hot", 2, peer_of, nodes)

    for sender, message in ((a, "from a"), (d, "from d"), (b, "from b")):
        before = sent_by(sender, nodes, peer_of)
        broadcast_on(sender, "hot", message, peer_of)
        after = sent_by(sender, nodes, peer_of)
        delta = {n: x - y for n, x, y in zip(nodes, after, before)}
        # One frame to each other node with subscribers, none to the rest.
        assert delta == {n: int(n in (b, c) and n != sender) for n in nodes}, sender
        for pid in subs:
            assert got(pid) == message

    # Exactly once each: after a fence, nothing else arrived.
    pubsub.broadcast("hot", "fence")
    for pid in subs:
        assert got(pid) == "fence"
    no_message(tagged("got"))


# ------------------------------------------------------------------- ordering


def test_ten_publishers_ten_thousand_messages_each_in_order_once(me: snowg.Pid, peers: PeerFactory) -> None:
    b, c = mesh(peers, 2)
    a = snowg.node()
    peer_of = {b.name: b, c.name: c}
    nodes = [a, b.name, c.name]
    per_publisher = 10_000
    checker_nodes = [a] * 4 + [b.name] * 3 + [c.name] * 3
    checkers = []
    for node in checker_nodes:
        pid = snowg.spawn(pf.sequence_checker, me, "flow", 10, per_publisher, node=node)
        recv(tagged("subscribed", pid), timeout=W)
        checkers.append(pid)
    wait_views("flow", 10, peer_of, nodes)

    publisher_nodes = [a] * 3 + [b.name] * 4 + [c.name] * 3
    publishers = []
    for i, node in enumerate(publisher_nodes):
        pid = snowg.spawn(pf.publisher, me, "flow", f"p{i}", per_publisher, node=node)
        recv(tagged("ready", pid), timeout=W)
        publishers.append(pid)
    for pid in publishers:
        snowg.send(pid, "go")
    for pid in publishers:
        recv(tagged("published", pid), timeout=120)
    # Every checker got 100,000 messages, each publisher's in order and none twice...
    for pid in checkers:
        _, _, total, errors = recv(tagged("checked", pid), timeout=120)
        assert (total, errors) == (10 * per_publisher, [])
    # ... and nothing more: every node's fence is the next message they get.
    for node in nodes:
        broadcast_on(node, "flow", ("fence", node), peer_of)
    for pid in checkers:
        fences = [recv(tagged("extra", pid), timeout=W)[2] for _ in nodes]
        assert sorted(fences) == sorted(("fence", n) for n in nodes)
        snowg.send(pid, "stop")


def test_subscribe_and_unsubscribe_while_broadcasting(me: snowg.Pid, peers: PeerFactory) -> None:
    (b,) = mesh(peers, 1)
    a = snowg.node()
    peer_of = {b.name: b}
    steady = start_subscriber(me, a, ["stream"])
    toggler = start_subscriber(me, b.name, [])
    stepper = snowg.spawn(pf.stepper, me, "stream")

    def step(n: int) -> None:
        snowg.send(stepper, ("go", n))
        recv(tagged("stepped", stepper), timeout=W)

    step(300)  # 0..299: nobody on B, no frame to B
    snowg.send(toggler, (pf.CMD, "subscribe", "stream"))
    step(300)  # 300..599: B's subscription on its way
    recv(tagged("done", toggler, "subscribe", "stream"), timeout=W)
    wait_views("stream", 2, peer_of, [a])
    step(300)  # 600..899: A knows
    command(toggler, "unsubscribe", "stream")
    step(300)  # 900..1199: B has none (A may still send it a frame: dropped there)
    assert [got(steady) for _ in range(1200)] == list(range(1200))
    # The toggler forwarded them before its answer to the unsubscribe, on the same session: all here.
    seen: List[int] = []
    while True:
        try:
            seen.append(snowg.receive(tagged("got", toggler), timeout=0)[2])
        except snowg.Timeout:
            break
    # What the toggler got is one run without gaps, holding all that A sent while it knew.
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    assert 600 >= seen[0] and seen[-1] == 899
    no_message(tagged("got"))
    snowg.send(stepper, "stop")


def test_a_publisher_waits_for_a_busy_node_as_a_sender_does(me: snowg.Pid, peers: PeerFactory) -> None:
    from snowg.cluster._connect import session_for

    (b,) = mesh(peers, 1)
    checker = snowg.spawn(pf.sequence_checker, me, "bulk", 1, 40, node=b.name)
    recv(tagged("subscribed", checker), timeout=W)
    wait_views("bulk", 1, {b.name: b}, [snowg.node()])
    sess = session_for(b.name)
    assert sess is not None
    b.freeze()
    try:
        # 40 frames of 512 KiB: more than the socket buffers and the 1 MiB bound take.
        publisher = snowg.spawn(pf.blob_publisher, me, "bulk", 40, 512 * 1024)
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=W)
        no_message(tagged("published", publisher))
    finally:
        b.thaw()
    recv(tagged("published", publisher), timeout=W)
    assert recv(tagged("checked", checker), timeout=W)[2:] == (40, [])


# ------------------------------------------------------------------ churn


def test_a_subscriber_that_exits_is_gone_everywhere(me: snowg.Pid, peers: PeerFactory) -> None:
    b, c = mesh(peers, 2)
    a = snowg.node()
    peer_of = {b.name: b, c.name: c}
    nodes = [a, b.name, c.name]
    sb = start_subscriber(me, b.name, ["x"], times=2)
    sc = start_subscriber(me, c.name, ["x"])
    wait_views("x", 3, peer_of, nodes)
    ref = snowg.monitor(sb)
    snowg.send(sb, (pf.CMD, "exit", "bye"))
    assert recv(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=W).reason == "bye"
    wait_views("x", 1, peer_of, nodes)
    before = sent_by(a, [b.name, c.name], peer_of)
    pubsub.broadcast("x", "after")
    assert sent_by(a, [b.name, c.name], peer_of) == [before[0], before[1] + 1]
    assert got(sc) == "after"


def test_a_node_lost_and_back(me: snowg.Pid, peers: PeerFactory) -> None:
    b, c = mesh(peers, 2)
    a = snowg.node()
    peer_of = {b.name: b, c.name: c}
    sb = start_subscriber(me, b.name, ["y"])
    sc = start_subscriber(me, c.name, ["y"])
    wait_views("y", 2, peer_of, [a, b.name, c.name])

    # Disconnected: B's subscriber leaves A's view; C, still connected to B, keeps it.
    snowg.monitor_node(b.name)
    assert snowg.disconnect(b.name)
    recv(lambda m: type(m) is snowg.NodeDown and m.node == b.name, timeout=W)
    assert wait_for(lambda: pubsub.subscribers("y") == [sc], timeout=W)
    pubsub.broadcast("y", "while apart")
    assert got(sc) == "while apart"
    # Back: the membership comes back with the connection.
    assert snowg.connect(b.name)
    wait_views("y", 2, peer_of, [a])
    pubsub.broadcast("y", "together")
    assert got(sb) == "together"
    assert got(sc) == "together"
    no_message(tagged("got"))

    # Killed: gone everywhere; a new run of the node under its name subscribes again.
    b.kill()
    wait_views("y", 1, peer_of, [a, c.name])
    before = frames_sent(c.name, pubsub.PUBSUB)
    pubsub.broadcast("y", "without b")
    assert got(sc) == "without b"
    assert frames_sent(c.name, pubsub.PUBSUB) == before + 1
    b2 = peers.start(b.name, modules=MODS)
    peer_of = {b2.name: b2, c.name: c}
    sb2 = start_subscriber(me, b2.name, ["y"])
    wait_views("y", 2, peer_of, [a, b2.name])
    pubsub.broadcast("y", "b is back")
    assert got(sb2) == "b is back"
    assert got(sc) == "b is back"
    no_message(tagged("got"))
