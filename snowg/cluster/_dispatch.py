"""Frame dispatch: each frame a session reads goes to the handler of its tag.

Plain messages (``SEND``), the bulk of the traffic, take a fast path with no
validation beyond their shape. The frames of a remote spawn and of its
child's end (``SPAWN_REQUEST``, ``SPAWN_REPLY``, ``EXIT``, ``MONITOR_EXIT``)
are checked in line against their layout, the same checks as
:func:`snowg.cluster._frames.validate_frame` makes for their tag, and go to
their handler as they are; whatever those checks do not accept takes the
general path below, which raises the error. Every other frame is checked
against its tag's layout (:func:`~snowg.cluster._frames.validate_frame`)
before its handler runs; a frame that fails, or a tag nobody handles, raises
:class:`~snowg.cluster._framing.MalformedFrame`, which closes that session
(the peer broke the protocol) and nothing else. Upper layers add handlers
through :func:`snowg.cluster.register_frame_handler`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._core import SummaryLog
from .._core import remote as _remote
from .._core.terms import Pid, Ref
from . import _nodestate
from ._connect import MAX_PEER_LIST, connect_to_peers
from ._frames import (
    DEMONITOR,
    EXIT,
    EXIT2,
    EXTENSION_TAGS,
    LINK,
    MONITOR,
    MONITOR_EXIT,
    PEER_LIST,
    SEND,
    SEND_NAME,
    SPAWN_REPLY,
    SPAWN_REQUEST,
    TICK,
    UNLINK,
    validate_frame,
)
from ._framing import MalformedFrame, encode_frame
from ._names import is_node_name, loggable
from ._session import Session
from ._spawn import handle_reply, handle_request, refused

__all__ = ["add_handler", "on_frames"]

log = logging.getLogger("snowg")

Handler = Callable[[Session, Tuple[Any, ...]], None]


def on_frames(sess: Session, frames: List[Any]) -> None:
    """Act on a batch of decoded frames from ``sess``, in order.

    Raises:
        MalformedFrame: a frame is invalid or its tag is not handled here.
    """
    deliver_to = _remote.deliver_to
    fast = _FAST
    for frame in frames:
        if type(frame) is list and frame:
            tag = frame[0]
            if len(frame) == 3 and tag == SEND and type(frame[1]) is Pid:
                deliver_to(frame[1], frame[2])
                continue
            if type(tag) is int:
                entry = fast.get(tag)
                if entry is not None and entry[0](frame):
                    entry[1](sess, frame)
                    continue
        tag = frame[0] if type(frame) is list and frame else None
        if type(tag) is int and tag in EXTENSION_TAGS and tag not in _HANDLERS:
            _drop_unhandled_extension(sess, tag)
            continue
        f = validate_frame(frame)
        handler = _HANDLERS.get(f[0])
        if handler is None:
            raise MalformedFrame(f"frame tag {f[0]} is not handled by this node")
        handler(sess, f)


def _unhandled_summary(key: Tuple[str, int], count: int, seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    peer, tag = key
    return "snowg: dropped %d more frames of extension tag %d from %s in %.0f s", (count, tag, peer, seconds)


# One line per (peer, tag), then a count every 10 s while such frames keep coming.
_unhandled = SummaryLog(log, _unhandled_summary, 10.0, overflow_key=("other nodes", -1), once=True)


def _drop_unhandled_extension(sess: Session, tag: int) -> None:
    """Drop a frame of an extension this node has not loaded (no layer registered ``tag``)."""
    _unhandled.report(
        (sess.peer_name, tag),
        logging.INFO,
        "snowg: dropping frames of extension tag %d from %s: no layer of this node handles them"
        " (is the module that registers it, e.g. snowg.ws for rooms, imported here?)",
        tag,
        sess.peer_name,
    )


def add_handler(tag: int, handler: Handler) -> None:
    """Route frames tagged ``tag`` to ``handler``.

    Raises:
        ValueError: ``tag`` already has a handler (two layers claim it).
    """
    if tag in _HANDLERS:
        raise ValueError(f"frame tag {tag} already has a handler")
    _HANDLERS[tag] = handler


def _h_tick(sess: Session, f: Tuple[Any, ...]) -> None:
    pass


def _h_send(sess: Session, f: Tuple[Any, ...]) -> None:
    _remote.deliver_to(f[1], f[2])


def _h_send_name(sess: Session, f: Tuple[Any, ...]) -> None:
    if f[1] is not None:
        sess.check_from(f[1])
    _remote.deliver_to_name(f[2], f[3])


def _h_link(sess: Session, f: Tuple[Any, ...]) -> None:
    _, frm, to = f
    sess.check_from(frm)
    if not _remote.incoming_link(frm, to):
        sess.send(encode_frame([EXIT, to, frm, "noproc"]))


def _h_unlink(sess: Session, f: Tuple[Any, ...]) -> None:
    sess.check_from(f[1])
    _remote.incoming_unlink(f[1], f[2])


def _h_exit(sess: Session, f: Sequence[Any]) -> None:
    sess.check_from(f[1])
    _remote.incoming_link_exit(f[1], f[2], f[3])


def _h_exit2(sess: Session, f: Tuple[Any, ...]) -> None:
    sess.check_from(f[1])
    _remote.incoming_exit2(f[1], f[2], f[3])


def _h_monitor(sess: Session, f: Tuple[Any, ...]) -> None:
    _, watcher, target, ref = f
    sess.check_from(watcher)
    missing = _remote.incoming_monitor(watcher, target, ref)
    if missing is not None:
        sess.send(encode_frame([MONITOR_EXIT, missing, watcher, ref, "noproc"]))


def _h_demonitor(sess: Session, f: Tuple[Any, ...]) -> None:
    # O(1), and only a monitor that the watcher (a process of the sender) holds.
    sess.check_from(f[1])
    _remote.incoming_demonitor(f[1], f[2], f[3])


def _h_monitor_exit(sess: Session, f: Sequence[Any]) -> None:
    _, target, watcher, ref, reason = f
    node = _remote.monitor_target_node(watcher, ref)
    if node is None:
        return  # demonitored meanwhile (semantics rule 11), or never held
    if node != sess.peer_name:
        # Only the node the monitor went to may say its target ended.
        refused(sess.peer_name, "MONITOR_EXIT", f"a Down for a monitor of a process on {node!r}")
        return
    _remote.incoming_down(watcher, ref, target, reason)


def _h_peer_list(sess: Session, f: Tuple[Any, ...]) -> None:
    entries = f[1]
    if len(entries) > MAX_PEER_LIST:
        raise MalformedFrame(f"PEER_LIST of {len(entries)} nodes (at most {MAX_PEER_LIST})")
    targets: List[Tuple[str, str, int]] = []
    bad = 0
    for name, address in entries:
        target = _peer_target(name, address)
        if target is None:
            if not bad:
                first_bad = (name, address)
            bad += 1
        else:
            targets.append(target)
    if bad:
        log.warning(
            "node %r sent %d invalid entries in its peer list (the first: %s); ignored",
            sess.peer_name,
            bad,
            loggable(first_bad),
        )
    st = _nodestate.current
    if st is not None and targets:
        connect_to_peers(st, sess.peer_name, targets)


def _peer_target(name: str, address: str) -> Optional[Tuple[str, str, int]]:
    """``(name, host, port)`` from a peer list entry; None when the name or the address is not valid."""
    if not is_node_name(name) or len(address) > 300:
        return None
    host, sep, port_s = address.rpartition(":")
    if not sep or not host or not host.isprintable() or any(c.isspace() for c in host):
        return None
    if not port_s.isascii() or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        return None
    return name, host, int(port_s)


# In-line layout checks of the frames a remote spawn, an rpc.call and a linked
# or monitored child's end are made of. Each accepts exactly what
# validate_frame accepts for its tag, or less (a MONITOR_EXIT for a name, a
# frame sent as a tuple: those take the general path).


def _spawn_request_layout(f: List[Any]) -> bool:
    # [SPAWN_REQUEST, req, caller, fn_name, args, kwargs, opts]
    if len(f) != 7 or type(f[1]) is not Ref or type(f[2]) is not Pid or type(f[3]) is not str:
        return False
    args, kwargs, opts = f[4], f[5], f[6]
    if type(args) is not list or type(kwargs) is not dict or type(opts) is not list:
        return False
    for key in kwargs:
        if type(key) is not str:
            return False
    for opt in opts:
        if type(opt) is not str:
            return False
    return True


def _spawn_reply_layout(f: List[Any]) -> bool:
    # [SPAWN_REPLY, req, caller, pid or refusal]
    return len(f) == 4 and type(f[1]) is Ref and type(f[2]) is Pid and (type(f[3]) is Pid or type(f[3]) is str)


def _exit_layout(f: List[Any]) -> bool:
    # [EXIT, from, to, reason]
    return len(f) == 4 and type(f[1]) is Pid and type(f[2]) is Pid


def _monitor_exit_layout(f: List[Any]) -> bool:
    # [MONITOR_EXIT, target pid, watcher, ref, reason]
    return len(f) == 5 and type(f[1]) is Pid and type(f[2]) is Pid and type(f[3]) is Ref


_HANDLERS: Dict[int, Handler] = {
    TICK: _h_tick,
    SEND: _h_send,
    SEND_NAME: _h_send_name,
    LINK: _h_link,
    UNLINK: _h_unlink,
    EXIT: _h_exit,
    EXIT2: _h_exit2,
    MONITOR: _h_monitor,
    DEMONITOR: _h_demonitor,
    MONITOR_EXIT: _h_monitor_exit,
    SPAWN_REQUEST: handle_request,
    SPAWN_REPLY: handle_reply,
    PEER_LIST: _h_peer_list,
}

# tag -> (its in-line layout check, its handler), for the frames of the fast path.
_FAST: Dict[int, Tuple[Callable[[List[Any]], bool], Callable[[Session, Sequence[Any]], None]]] = {
    SPAWN_REQUEST: (_spawn_request_layout, handle_request),
    SPAWN_REPLY: (_spawn_reply_layout, handle_reply),
    EXIT: (_exit_layout, _h_exit),
    MONITOR_EXIT: (_monitor_exit_layout, _h_monitor_exit),
}
