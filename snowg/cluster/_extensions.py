"""How upper layers plug into the cluster layer: frames of their own, and node events.

The cluster layer may not import the layers above it (imports point down),
and its protocol knows nothing of what they send. A layer that needs the
other nodes (the global registry, WebSocket rooms) registers here, once, at
import:

* :func:`register_frame_handler` declares a frame tag, the layout its fields
  must have (checked before the handler runs), and the handler that gets
  ``(peer_name, frame)`` for each such frame a peer sends;
* :func:`on_node_up` / :func:`on_node_down` / :func:`on_node_stop` add
  callbacks run when a peer connects, when it is lost (after links,
  monitors and node monitors, semantics rule 26), and when this node stops;
* :func:`send_frame` and :func:`broadcast_frame` send its frames (to one
  node, to every node or to some, encoded once), and :func:`frames_sent`
  counts them per node and tag (how tests see a broadcast's fan-out).

Handlers and callbacks run in a session's reader greenlet: they must not block.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

from . import _nodestate
from ._dispatch import add_handler
from ._frames import FieldCheck, register_frame
from ._framing import encode_frame
from ._nodemon import down_callbacks, stop_callbacks, up_callbacks
from ._session import Session

__all__ = [
    "FrameHandler",
    "broadcast_frame",
    "frames_sent",
    "on_node_down",
    "on_node_stop",
    "on_node_up",
    "register_frame_handler",
    "send_frame",
]

FrameHandler = Callable[[str, Tuple[Any, ...]], None]

# (node, tag) -> frames queued for that node's session by send_frame/broadcast_frame.
_sent: Dict[Tuple[str, int], int] = {}


def register_frame_handler(tag: int, name: str, fields: Sequence[FieldCheck], handler: FrameHandler) -> None:
    """Handle the frames ``[tag, *fields]`` that peers send.

    Args:
        tag: the frame's tag, unused by any other frame (see
            :mod:`snowg.cluster._frames` for the ones taken).
        name: the tag's name, for error messages.
        fields: one check per field: a predicate (:func:`of_type` makes the
            common ones), or None for any term. A frame that fails one closes
            the session of the peer that sent it.
        handler: called with ``(peer_name, frame_as_tuple)``; must not block.

    Raises:
        ValueError: ``tag`` is taken (a bug in the layer that registers second).
    """

    def dispatch(sess: Session, frame: Tuple[Any, ...]) -> None:
        handler(sess.peer_name, frame)

    register_frame(tag, name, fields)
    add_handler(tag, dispatch)


def on_node_up(callback: Callable[[str], None]) -> None:
    """Call ``callback(node_name)`` each time a node connects (after its session is up)."""
    up_callbacks.append(callback)


def on_node_down(callback: Callable[[str], None]) -> None:
    """Call ``callback(node_name)`` each time a node is lost, after links, monitors and node monitors."""
    down_callbacks.append(callback)


def on_node_stop(callback: Callable[[], None]) -> None:
    """Call ``callback()`` when this node stops (after every session closed)."""
    stop_callbacks.append(callback)


def send_frame(node: str, frame: List[Any]) -> bool:
    """Queue ``frame`` (``[tag, *fields]``) for ``node``; never blocks.

    Returns:
        False when ``node`` is not connected (nothing sent).

    Raises:
        TypeError: a field cannot cross nodes (the caller's value).
    """
    st = _nodestate.current
    sess = st.sessions.get(node) if st is not None else None
    if sess is None:
        return False
    if not sess.send(encode_frame(frame)):
        return False
    key = (node, frame[0])
    _sent[key] = _sent.get(key, 0) + 1
    return True


def broadcast_frame(frame: List[Any], nodes: Optional[Collection[str]] = None, *, suspend: bool = False) -> int:
    """Queue ``frame`` for every connected node (not hidden ones), or those of ``nodes``, encoded once.

    Never blocks, unless ``suspend`` is true.

    Args:
        frame: ``[tag, *fields]``.
        nodes: only these nodes (the names not connected, this node's own
            included, are skipped); None: every connected node.
        suspend: once it is queued, suspend the calling process while one of
            those sessions holds more than its ``dist_buffer_size``, as a
            process's message would (semantics rule 30; never in the hub or
            a session's reader).

    Returns:
        How many nodes it was queued for (0, without encoding it, when none is connected).

    Raises:
        TypeError: a field cannot cross nodes (the caller's value).
    """
    st = _nodestate.current
    if st is None or not st.sessions:
        return 0
    if nodes is None:
        sessions = [s for s in st.sessions.values() if not s.hidden]
    else:
        sessions = [s for s in map(st.sessions.get, nodes) if s is not None]
        if not sessions:
            return 0
    data = encode_frame(frame)
    tag = frame[0]
    n = 0
    for sess in sessions:
        if sess.send(data):
            n += 1
            key = (sess.peer_name, tag)
            _sent[key] = _sent.get(key, 0) + 1
    if suspend:
        for sess in sessions:
            if sess.queued > sess.busy_limit:
                sess.wait_while_busy()
    return n


def frames_sent(node: str, tag: int) -> int:
    """How many ``tag`` frames :func:`send_frame` and :func:`broadcast_frame` queued for ``node``.

    Counted since this OS process started, across that node's sessions:
    tests and benchmarks read it before and after a broadcast to see which
    sessions it put frames on. Never blocks.
    """
    return _sent.get((node, tag), 0)
