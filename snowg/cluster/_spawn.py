"""Remote spawns: the request a caller sends, and the reply that comes back.

A spawn on another node is one ``SPAWN_REQUEST`` frame naming a
``@spawnable`` function; the node there starts it (linked or monitored
*before* it runs, when asked) and answers with ``SPAWN_REPLY`` carrying the
new pid or a refusal. The caller's side keeps each request in
``NodeState.spawn_pending`` until its reply, or until the node is lost (then
the caller gets ``'noconnection'``). A caller that gave up (a timed-out
``rpc.call``) marks its request abandoned: the child is ended as soon as its
pid arrives, and nothing reaches the caller. A *quiet* request (``rpc.call``'s
runner, which its caller monitors) delivers its reply only when it brings no
pid; a new pid goes to :data:`started` instead, for the caller to take.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

from .._core import SummaryLog, make_ref
from .._core import remote as _remote
from .._core.terms import Pid, Ref
from . import _nodestate
from ._frames import DEMONITOR, EXIT, EXIT2, SPAWN_REPLY, SPAWN_REQUEST
from ._framing import MalformedFrame, encode_frame
from ._nodestate import NodeState
from ._session import Session
from ._names import loggable
from ._spawnable import bad_arguments, lookup_spawnable

__all__ = [
    "SpawnReply",
    "abandon",
    "handle_reply",
    "handle_request",
    "node_lost",
    "refused",
    "refusals_summary",
    "send_request",
]

log = logging.getLogger("snowg")

# In a spawn_pending entry's options: its caller gave up.
_ABANDONED = "abandoned"
# In a spawn_pending entry's options: a quiet request (never sent to the peer).
_QUIET = "quiet"

#: The pids of the children of quiet requests whose reply came, by request ref.
#: The caller takes its entry out when it is done waiting, however it ends.
started: Dict[Ref, Pid] = {}


# What a peer sent wrong: logged in full once per (peer, kind), then counted
# and summarised in one line at most every _SUMMARY_EVERY s, and when the peer goes.
_SUMMARY_EVERY = 10.0
# Spawn requests refused for their arguments, or for a function that is not
# @spawnable here, by (peer, this kind).
_BAD_ARGUMENTS = "SPAWN_REQUEST (bad arguments)"
_NOT_SPAWNABLE = "SPAWN_REQUEST (not @spawnable)"


def _summary(key: Tuple[str, str], count: int, _seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    peer, kind = key
    if kind == _BAD_ARGUMENTS:
        return "node %r sent %d more spawn requests with bad arguments; refused", (peer, count)
    if kind == _NOT_SPAWNABLE:
        return "node %r sent %d more spawn requests for functions not @spawnable here; refused", (peer, count)
    return "node %r sent %d more %s frames it had no authority to send; dropped", (peer, count, kind)


_refusals = SummaryLog(log, _summary, _SUMMARY_EVERY, overflow_key=("other nodes", "frames"), once=True)


def refused(peer: str, kind: str, detail: str) -> None:
    """Log that ``peer`` sent ``kind``, a frame it had no authority to send (dropped).

    The first one of each kind from a peer is a WARNING with ``detail``
    (which must already show what the peer sent escaped, e.g. with
    :func:`~snowg.cluster._names.loggable`); later ones are counted and
    summarised in one line at most every 10 s, and when the peer goes
    (:func:`refusals_summary`).
    """
    _refusals.report((peer, kind), logging.WARNING, "node %r sent %s: %s; dropped", peer, kind, detail)


def refusals_summary(peer: str) -> None:
    """``peer`` is gone: log what was refused from it and not logged yet, and forget it."""
    _refusals.flush(lambda key: key[0] == peer)


class SpawnReply(NamedTuple):
    """The answer to a remote spawn request, delivered to its caller.

    Attributes:
        req: the request's ref.
        result: the new pid, ``'noconnection'``, or the peer's refusal (a str).
    """

    req: Ref
    result: Any


def send_request(
    node_name: str,
    caller: Pid,
    fn_name: str,
    args: Sequence[Any],
    kwargs: Dict[str, Any],
    opts: Tuple[str, ...],
    req: Optional[Ref] = None,
    quiet: bool = False,
) -> Optional[Ref]:
    """Ask ``node_name`` to spawn ``fn_name(*args, **kwargs)`` for ``caller``; never blocks.

    The reply comes to ``caller`` as a :class:`SpawnReply`.

    Args:
        opts: ``'link'`` and/or ``'monitor'``: set up before the child runs.
        req: the request's ref (also the monitor's); a new one by default.
        quiet: with ``'monitor'``, a reply that brings the new pid is not
            delivered: the pid is put in :data:`started` under ``req`` (the
            caller waits for the monitor's ``Down``, and must take that entry
            out when it stops waiting). A refusal or ``'noconnection'`` is
            delivered as usual.

    Returns:
        The request's ref, or None when ``node_name`` is not connected.

    Raises:
        TypeError: an argument cannot cross nodes (nothing was sent).
    """
    if req is None:
        req = make_ref()
    frame = encode_frame([SPAWN_REQUEST, req, caller, fn_name, list(args), kwargs, list(opts)])
    st = _nodestate.current
    sess = st.sessions.get(node_name) if st is not None else None
    if st is None or sess is None:
        return None
    st.spawn_pending[req] = (caller, opts + (_QUIET,) if quiet else opts, node_name)
    if not sess.send(frame):
        del st.spawn_pending[req]
        return None
    return req


def abandon(req: Ref) -> bool:
    """The caller of request ``req`` gave up; False if its reply already came (or the node went)."""
    st = _nodestate.current
    entry = st.spawn_pending.get(req) if st is not None else None
    if st is None or entry is None:
        return False
    caller, _opts, node_name = entry
    st.spawn_pending[req] = (caller, (_ABANDONED,), node_name)
    return True


def node_lost(st: NodeState, node_name: str) -> None:
    """``node_name`` went down: its unanswered requests get ``'noconnection'``."""
    for req, (caller, opts, name) in list(st.spawn_pending.items()):
        if name == node_name:
            del st.spawn_pending[req]
            if _ABANDONED not in opts:
                _remote.deliver_to(caller, SpawnReply(req, "noconnection"))


def handle_request(sess: Session, f: Sequence[Any]) -> None:
    """A peer asks this node to spawn a ``@spawnable`` function."""
    _, req, caller, fn_name, args, kwargs, opts = f
    sess.check_from(caller)
    fn = lookup_spawnable(fn_name)
    if fn is None:
        _refusals.report(
            (sess.peer_name, _NOT_SPAWNABLE),
            logging.WARNING,
            "node %s asked to spawn %s, which is not @spawnable here: refused",
            sess.peer_name,
            loggable(fn_name),
        )
        refusal = f"{fn_name!r} is not spawnable on node {_remote.local_node()}"
        sess.send(encode_frame([SPAWN_REPLY, req, caller, refusal]))
        return
    if kwargs:
        # A keyword the function does not take would crash the new process
        # (a traceback in the log per request): refuse the spawn instead.
        problem = bad_arguments(fn_name, fn, args, kwargs)
        if problem is not None:
            _refusals.report(
                (sess.peer_name, _BAD_ARGUMENTS),
                logging.WARNING,
                "node %r asked to spawn %s with bad arguments (%s): refused",
                sess.peer_name,
                loggable(fn_name),
                loggable(problem),
            )
            refusal = f"{fn_name!r} cannot be called with those arguments on node {_remote.local_node()}: {problem}"
            sess.send(encode_frame([SPAWN_REPLY, req, caller, refusal]))
            return
    pid = _remote.spawn_for_peer(fn, tuple(args), kwargs, caller, "link" in opts, req if "monitor" in opts else None)
    sess.send(encode_frame([SPAWN_REPLY, req, caller, pid]))


def handle_reply(sess: Session, f: Sequence[Any]) -> None:
    """The answer to one of this node's spawn requests."""
    _, req, _caller, result = f
    st = _nodestate.current
    pending = st.spawn_pending.pop(req, None) if st is not None else None
    if st is None or pending is None:
        return
    caller, opts, node_name = pending
    if node_name != sess.peer_name:
        # Only the node the request went to may answer it.
        st.spawn_pending[req] = pending
        refused(sess.peer_name, "SPAWN_REPLY", f"a reply to a spawn request sent to {node_name!r}")
        return
    if type(result) is Pid and result.node != sess.peer_name:
        # It answers with a process of another node: a protocol error (the
        # session closes, and the caller gets 'noconnection').
        st.spawn_pending[req] = pending
        raise MalformedFrame(f"SPAWN_REPLY names a pid of node {result.node!r} as its new process")
    if _ABANDONED in opts:
        if type(result) is Pid:
            # Its caller gave up: end the child quietly, its monitor first so
            # that no Down comes back.
            sess.send(encode_frame([DEMONITOR, caller, result, req]))
            sess.send(encode_frame([EXIT2, caller, result, "kill"]))
        return
    if type(result) is Pid:
        # Record the link/monitor now, before any EXIT that follows on this
        # session is dispatched: the child may already have ended.
        if "link" in opts and not _remote.add_outgoing_link(caller, result):
            sess.send(encode_frame([EXIT, caller, result, "noproc"]))
        if "monitor" in opts:
            if not _remote.add_outgoing_monitor(caller, result, req):
                sess.send(encode_frame([DEMONITOR, caller, result, req]))
            elif _QUIET in opts:
                started[req] = result
                return
    _remote.deliver_to(caller, SpawnReply(req, result))
