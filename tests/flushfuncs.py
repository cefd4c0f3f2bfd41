"""``@snowg.spawnable`` helpers for the backpressure and stop-flush tests (``modules=["flushfuncs"]``).

They run on peer nodes: a sender that floods one pid until its node is gone
(and records how far it got), a look at a session's queue, and a sender that
stops its own node right after queueing.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Tuple

import snowg
from snowg.cluster import on_node_stop
from snowg.cluster._connect import session_for

# How far each flood got: tag -> index of the last message it queued.
_progress: Dict[str, int] = {}


def _report_progress() -> None:
    """When the node stops (sessions closed): ``FLOOD <tag> <last index queued>`` on stderr, the log."""
    for tag, last in sorted(_progress.items()):
        print(f"FLOOD {tag} {last}", file=sys.stderr, flush=True)


on_node_stop(_report_progress)


@snowg.spawnable
def flood(dest: snowg.Pid, tag: str, size: int) -> None:
    """Send ``(i, blob)`` to ``dest`` for i = 0, 1, ... until ``dest``'s node is not connected.

    ``_progress[tag]`` is ``i`` just before ``send`` of message ``i``: while the
    sender is suspended in that send, message ``i`` is the last one queued.
    """
    node = dest.node
    blob = b"x" * size
    i = 0
    while node in snowg.nodes():
        _progress[tag] = i
        snowg.send(dest, (i, blob))
        i += 1


@snowg.spawnable
def backlog(node: str, tag: str) -> Tuple[int, int, int]:
    """``(suspended senders, bytes queued, last index queued by flood tag)`` of the session to ``node``."""
    sess = session_for(node)
    if sess is None:
        return (-1, -1, _progress.get(tag, -1))
    return (sess.suspended_senders, sess.queued, _progress.get(tag, -1))


@snowg.spawnable
def send_then_stop(dest: snowg.Pid, count: int, size: int) -> None:
    """Send ``(i, blob)`` for i < ``count`` to ``dest``, tell it the bytes still queued, then stop this node.

    Nothing yields between the sends and ``stop_node()`` unless the session's
    bound suspends the sender, so most of it is still queued when the node stops.
    """
    blob = b"y" * size
    for i in range(count):
        snowg.send(dest, (i, blob))
    sess = session_for(dest.node)
    queued: Any = sess.queued if sess is not None else None
    snowg.send(dest, ("queued_at_stop", queued))
    snowg.stop_node()
