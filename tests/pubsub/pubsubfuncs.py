"""``@snowg.spawnable`` PubSub helpers that peer nodes import (``modules=["pubsubfuncs"]``).

A :func:`subscriber` subscribes, tells the test's process, and forwards what
it gets; commands (``("cmd", op, topic)``) make it subscribe or unsubscribe
later. A :func:`sequence_checker` checks order itself and reports a summary,
for streams too long to forward. :func:`publisher` broadcasts numbered
messages. Everything a test waits for arrives as a message.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import gevent

import snowg
import snowg.pubsub as pubsub
from snowg.cluster import frames_sent

CMD = "cmd"


@snowg.spawnable
def subscriber(parent: snowg.Pid, topics: Sequence[str], times: int = 1) -> None:
    """Subscribe ``times`` times to each topic, send ``('subscribed', self())``, forward as ``('got', self(), msg)``.

    ``(CMD, 'subscribe'|'unsubscribe', topic)`` does that and answers
    ``('done', self(), op, topic)``; ``(CMD, 'exit', reason)`` ends the
    process with ``reason``; ``'stop'`` ends it.
    """
    me = snowg.self()
    for topic in topics:
        for _ in range(times):
            pubsub.subscribe(topic)
    snowg.send(parent, ("subscribed", me))
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        if type(msg) is tuple and len(msg) == 3 and msg[0] == CMD:
            _, op, arg = msg
            if op == "exit":
                snowg.exit(me, arg)
            getattr(pubsub, op)(arg)
            snowg.send(parent, ("done", me, op, arg))
            continue
        snowg.send(parent, ("got", me, msg))


@snowg.spawnable
def sequence_checker(parent: snowg.Pid, topic: str, publishers: int, per_publisher: int) -> None:
    """Subscribe to ``topic`` and check ``(publisher, seq)`` messages until all arrived.

    Sends ``('subscribed', self())``, then, once ``publishers * per_publisher``
    messages arrived, ``('checked', self(), total, errors)`` where ``errors``
    lists (at most 10) messages out of order or seen twice; then forwards
    what comes after as ``('extra', self(), msg)`` until ``'stop'``.
    """
    me = snowg.self()
    pubsub.subscribe(topic)
    snowg.send(parent, ("subscribed", me))
    expected: Dict[Any, int] = {}
    errors: List[Any] = []
    total = publishers * per_publisher
    for _ in range(total):
        msg = snowg.receive()
        pub, seq = msg[0], msg[1]
        want = expected.get(pub, 0)
        if seq != want and len(errors) < 10:
            errors.append((pub, seq, want))
        expected[pub] = seq + 1
    snowg.send(parent, ("checked", me, total, errors))
    while (msg := snowg.receive()) != "stop":
        snowg.send(parent, ("extra", me, msg))


@snowg.spawnable
def publisher(parent: snowg.Pid, topic: str, name: Any, count: int) -> None:
    """Say ``('ready', self())``, wait for ``'go'``, broadcast ``(name, 0)`` .. ``(name, count - 1)``.

    Then sends ``('published', self())``.

    It lets the others run every 100 messages (a yield, not a wait), so the
    publishers of a node interleave.
    """
    me = snowg.self()
    snowg.send(parent, ("ready", me))
    snowg.receive(lambda m: m == "go")
    for seq in range(count):
        pubsub.broadcast(topic, (name, seq))
        if seq % 100 == 99:
            gevent.sleep(0)
    snowg.send(parent, ("published", me))


@snowg.spawnable
def blob_publisher(parent: snowg.Pid, topic: str, count: int, size: int) -> None:
    """Broadcast ``('blob', seq, bytes of size)`` for seq in ``range(count)``, then send ``('published', self())``."""
    blob = b"x" * size
    for seq in range(count):
        pubsub.broadcast(topic, ("blob", seq, blob))
    snowg.send(parent, ("published", snowg.self()))


@snowg.spawnable
def stepper(parent: snowg.Pid, topic: str) -> None:
    """On ``('go', n)``, broadcast the next ``n`` numbers (from 0), then send ``('stepped', self(), next)``.

    ``'stop'`` ends it.
    """
    me = snowg.self()
    seq = 0
    while (msg := snowg.receive()) != "stop":
        for _ in range(msg[1]):
            pubsub.broadcast(topic, seq)
            seq += 1
        snowg.send(parent, ("stepped", me, seq))


@snowg.spawnable
def subscriber_count(topic: str) -> int:
    """``len(snowg.pubsub.subscribers(topic))`` on this node."""
    return len(pubsub.subscribers(topic))


@snowg.spawnable
def sent_counts(nodes: List[str]) -> List[int]:
    """``frames_sent(node, PUBSUB)`` on this node, for each of ``nodes``."""
    return [frames_sent(n, pubsub.PUBSUB) for n in nodes]


@snowg.spawnable
def do_broadcast(topic: str, message: Any, exclude: Any = None) -> None:
    """``broadcast`` (or ``broadcast_from(exclude, ...)``) from a process of this node."""
    if exclude is None:
        pubsub.broadcast(topic, message)
    else:
        pubsub.broadcast_from(exclude, topic, message)


@snowg.spawnable
def do_local_broadcast(topic: str, message: Any) -> None:
    """``local_broadcast`` from a process of this node."""
    pubsub.local_broadcast(topic, message)
