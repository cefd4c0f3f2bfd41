"""PubSub for every process, as Phoenix.PubSub: topics, subscribers, cluster-wide broadcasts.

A process subscribes to a *topic* (a ``str``) with :func:`subscribe`; a
:func:`broadcast` on that topic from any process of any node puts the message,
as it is, into the mailbox of every subscriber in the cluster.

The model: a topic is a process group of :mod:`snowg.pg` in a scope of its own
(:data:`SCOPE`), so subscriptions are pg memberships with pg's rules: only
the caller subscribes, a process that ends is unsubscribed, the subscribers
of a node that is lost disappear everywhere, and the cluster-wide view is
eventually consistent (no global lock). The scope starts on this node when a
node connects, or on first use (``import snowg`` loads this module, so every
node of a cluster runs it and a node that only publishes knows the
subscribers too).

Defaults and rules, as Phoenix's:

* **Subscribing twice** delivers each message twice (one delivery per
  subscription); :func:`unsubscribe` drops *all* of the caller's
  subscriptions to the topic at once.
* **Interest routing.** A broadcast sends the local subscribers their message
  directly and queues ONE ``PUBSUB`` frame (encoded once) for each *other*
  node that has at least one subscriber (:func:`snowg.pg.member_nodes`), and
  none for the others; the receiving node delivers it to its own
  subscribers and never forwards it.
* **Order.** The messages of one publisher reach each subscriber in the order
  they were published (one session per pair of nodes keeps frames in order;
  local delivery is in order too). Between two publishers there is no order,
  as between two senders in Erlang.
* **What crosses.** A message that cannot cross nodes fails in the
  publisher, with :func:`snowg.cluster.check_term`'s ``TypeError``, before
  anything is sent, wherever the subscribers are (a program that works on
  one node keeps working in a cluster). :func:`local_broadcast` never crosses
  and takes any Python object.
* **Timing.** A subscription made on one node reaches the others' view
  asynchronously: a broadcast made on another node right after
  :func:`subscribe` returns may miss the new subscriber. This is the price of
  interest routing (Phoenix's PG2 adapter sends every broadcast to every
  node, and has no such window); a broadcast on the subscriber's own node
  never misses it.

Blocking: :func:`subscribe` and :func:`unsubscribe` call this node's scope
process. A broadcast appends to mailboxes and to session queues, and then
waits only as a process's send does: while a session it queued a frame on
holds more than ``dist_buffer_size`` (semantics rule 30). Reads never block.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

from . import pg
from ._core import Pid, is_alive, send
from ._core import self as self_pid
from .cluster import broadcast_frame, check_term, of_type, on_node_up, register_frame_handler

__all__ = [
    "PUBSUB",
    "SCOPE",
    "broadcast",
    "broadcast_from",
    "local_broadcast",
    "local_broadcast_from",
    "local_subscribers",
    "subscribe",
    "subscribers",
    "unsubscribe",
]

log = logging.getLogger("snowg")

#: The pg scope that holds the topics (one group per topic).
SCOPE = "snowg_pubsub"

#: The cluster frame ``[PUBSUB, topic, message, excluded pid or None]``.
PUBSUB = 24


# This node's scope process, once started here.
_scope_pid: Optional[Pid] = None


def _scope_up() -> None:
    """Start this node's pubsub scope unless it runs; blocks only then (a local start)."""
    global _scope_pid
    pid = _scope_pid
    if pid is None or not is_alive(pid):
        _scope_pid = pg.start(SCOPE)


def _start_soon(*_: Any) -> None:
    """Start the scope unless it runs or is starting; never blocks.

    Called when a node connects (so that a node that only publishes knows the
    subscribers before its first broadcast) and by the reads.
    """
    pid = _scope_pid
    if pid is None or not is_alive(pid):
        pg.start_soon(SCOPE)


def _check_topic(topic: Any) -> None:
    if type(topic) is not str:
        raise TypeError(f"a pubsub topic is a str, not {type(topic).__name__}")


def subscribe(topic: str) -> None:
    """Subscribe the calling process to ``topic``.

    Subscribing twice delivers each message twice; :func:`unsubscribe` drops
    both. The subscription ends with the process.

    Blocks until this node's pubsub scope has recorded it (a local call); the
    other nodes learn it asynchronously.

    Raises:
        TypeError: ``topic`` is not a ``str`` (the caller's value).
        ValueError: ``topic`` is longer than a group name may be (see
            :func:`snowg.pg.join`).
    """
    _check_topic(topic)
    _scope_up()
    pg.join(topic, scope=SCOPE)


def unsubscribe(topic: str) -> None:
    """Drop every subscription of the calling process to ``topic`` (nothing happens without one).

    Blocks as :func:`subscribe` does (not at all without a subscription).

    Raises:
        TypeError: ``topic`` is not a ``str`` (the caller's value).
    """
    _check_topic(topic)
    me = self_pid()
    joins = pg.get_local_members(topic, scope=SCOPE).count(me)
    if joins:
        pg.leave(topic, [me] * joins, scope=SCOPE)


def broadcast(topic: str, message: Any) -> None:
    """Send ``message`` to every subscriber of ``topic`` on every node.

    The local subscribers get it in their mailboxes, and each other node
    with subscribers gets one frame (none goes to nodes without subscribers).
    Blocks only as a send does: a process is suspended while the session to
    one of those nodes holds more than ``dist_buffer_size`` (semantics rule
    30), after the frames were queued; and the first broadcast of a node
    whose scope has not started starts it. Callable from any process or
    plain greenlet (which is never suspended).

    Raises:
        TypeError: ``topic`` is not a ``str``, or ``message`` cannot cross
            nodes (the caller's value; nothing was sent).
    """
    _publish(topic, message, None)


def broadcast_from(pid: Pid, topic: str, message: Any) -> None:
    """Like :func:`broadcast`, but not to ``pid`` (a process of any node; usually the caller).

    Raises:
        TypeError: as for :func:`broadcast`, or ``pid`` is not a :class:`~snowg.Pid`.
    """
    if type(pid) is not Pid:
        raise TypeError(f"broadcast_from excludes a Pid, not {type(pid).__name__}")
    _publish(topic, message, pid)


def local_broadcast(topic: str, message: Any) -> None:
    """Send ``message`` to the subscribers of ``topic`` on this node only.

    Never blocks; ``message`` may be any Python object (it never crosses).

    Raises:
        TypeError: ``topic`` is not a ``str``.
    """
    _check_topic(topic)
    _deliver_local(topic, message, None)


def local_broadcast_from(pid: Pid, topic: str, message: Any) -> None:
    """Like :func:`local_broadcast`, but not to ``pid``.

    Raises:
        TypeError: ``topic`` is not a ``str``, or ``pid`` is not a :class:`~snowg.Pid`.
    """
    _check_topic(topic)
    if type(pid) is not Pid:
        raise TypeError(f"local_broadcast_from excludes a Pid, not {type(pid).__name__}")
    _deliver_local(topic, message, pid)


def subscribers(topic: str) -> List[Pid]:
    """The subscribers of ``topic`` on every node, one entry per subscription.

    Eventually consistent (this node's view); never blocks.

    Raises:
        TypeError: ``topic`` is not a ``str``.
    """
    _check_topic(topic)
    _start_soon()
    return pg.get_members(topic, scope=SCOPE)


def local_subscribers(topic: str) -> List[Pid]:
    """The subscribers of ``topic`` on this node, one entry per subscription; never blocks.

    Raises:
        TypeError: ``topic`` is not a ``str``.
    """
    _check_topic(topic)
    _start_soon()
    return pg.get_local_members(topic, scope=SCOPE)


def _publish(topic: str, message: Any, exclude: Optional[Pid]) -> None:
    _check_topic(topic)
    _scope_up()
    nodes = pg.member_nodes(topic, scope=SCOPE)
    # Encoding the one frame is the check that the message can cross: it
    # raises before anything is queued. No other node to send to: check anyway.
    if not nodes or not broadcast_frame([PUBSUB, topic, message, exclude], nodes, suspend=True):
        check_term(message)
    _deliver_local(topic, message, exclude)


def _deliver_local(topic: str, message: Any, exclude: Optional[Pid]) -> None:
    for pid in pg.get_local_members(topic, scope=SCOPE):
        if pid != exclude:
            send(pid, message)


def _from_node(peer: str, frame: Tuple[Any, ...]) -> None:
    """A broadcast from another node: to this node's subscribers, never forwarded."""
    _deliver_local(frame[1], frame[2], frame[3])


def _is_pid_or_none(value: Any) -> bool:
    return value is None or type(value) is Pid


register_frame_handler(PUBSUB, "PUBSUB", (of_type(str), None, _is_pid_or_none), _from_node)
on_node_up(_start_soon)
