"""``rpc.call``: run a ``@spawnable`` function on another node and wait for its value.

As OTP's ``erpc``: a small runner process is spawned on the target node with a
monitor, calls the function, and *ends with its outcome as its exit reason*,
so the caller's one ``Down`` carries the result (or the error). One message
back instead of a reply plus a ``Down``, and no late reply is possible: once
the caller gives up it demonitors, and a ``Down`` for a removed monitor is
never delivered (semantics rule 11). A lost node or a killed runner shows as a
``Down`` with another reason.

The runner's spawn request is sent without blocking on the spawn reply (the
spawn reply and the ``Down`` are awaited in one ``receive``), so ``timeout``
bounds the whole call even when the peer answers nothing at all. On a timeout
the runner is killed: at once if its pid is known by then, else as soon as
the spawn reply brings it (the caller never sees that reply).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .. import _core
from .._core import remote as _remote
from .._core.terms import Crash, Down, Pid, Ref
from .._errors import CallError, CallTimeout, RemoteError, SpawnError, Timeout
from ._codec import check_term
from ._spawn import SpawnReply, abandon, send_request
from ._spawnable import lookup_spawnable, spawnable, wire_name

__all__ = ["RUNNER", "call"]


RUNNER = "snowg.rpc.runner"


@spawnable(RUNNER)
def _runner(caller: Pid, tag: Ref, fn_name: str, args: List[Any], kwargs: Dict[str, Any]) -> None:
    """Run ``fn_name(*args, **kwargs)`` and end with ``(tag, outcome...)`` as the exit reason."""
    fn = lookup_spawnable(fn_name)
    if fn is None:
        _core.exit((tag, "refused", f"{fn_name!r} is not spawnable on node {_remote.local_node()}"))
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the caller gets the error, as erpc does
        crash = Crash.from_exception(exc)
        _core.exit((tag, "error", crash.type, crash.message, crash.traceback))
    outcome: Tuple[Any, ...] = (tag, "ok", value)
    if not _remote.is_local_pid(caller):
        try:
            check_term(outcome)
        except TypeError as exc:
            outcome = (tag, "error", "TypeError", f"the result cannot cross nodes: {exc}", "")
    _core.exit(outcome)


def call(
    node: str, fn: Union[str, Callable[..., Any]], *args: Any, timeout: Optional[float] = 5.0, **kwargs: Any
) -> Any:
    """Call the ``@spawnable`` ``fn(*args, **kwargs)`` on ``node`` and return its value.

    Blocks the calling process until the value arrives. ``timeout`` (seconds,
    None: no limit) covers the whole call, the spawn of the runner included.

    Raises:
        snowg.RemoteError: the function raised there (type name, message, remote traceback).
        snowg.SpawnError: ``fn`` is not spawnable on ``node``.
        snowg.CallTimeout: no answer within ``timeout`` seconds (a late answer is dropped,
            never left in the caller's mailbox).
        snowg.CallError: the node was lost (reason ``'noconnection'``), or the runner
            ended otherwise (killed; ``snowg.exit(reason)`` called by ``fn``).
        TypeError: an argument cannot cross nodes (nothing was sent).
    """
    tag = _core.make_ref()
    me = _core.self()
    name = wire_name(fn)
    deadline = None if timeout is None else time.monotonic() + timeout
    req = _request(node, me, tag, name, args, kwargs)
    if req is None:
        pid, ref = _core.spawn_monitor(
            _runner if node == _remote.local_node() else RUNNER, me, tag, name, list(args), kwargs, node=node
        )
        return _wait(node, tag, ref, pid, None, deadline, timeout)
    return _wait(node, tag, req, None, req, deadline, timeout)


def _request(node: str, me: Pid, tag: Ref, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Ref]:
    """Send the runner's spawn request to ``node`` without waiting for the spawn reply.

    Returns the request's ref (also the runner's monitor ref), or None when the
    runner must be spawned the ordinary way (this node, or not connected).

    Raises:
        TypeError: an argument cannot cross nodes (nothing was sent).
    """
    runner_args = [me, tag, name, list(args), kwargs]
    if node == _remote.local_node():
        return None
    # Raises TypeError for what cannot cross even when not connected, as for a peer.
    return send_request(node, me, RUNNER, runner_args, {}, ("monitor",))


def _wait(
    node: str,
    tag: Ref,
    ref: Ref,
    pid: Optional[Pid],
    req: Optional[Ref],
    deadline: Optional[float],
    timeout: Optional[float],
) -> Any:
    def match(m: Any) -> bool:
        t = type(m)
        return (t is Down and m.ref == ref) or (t is SpawnReply and m.req == req)

    while True:
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = _core.receive(match, timeout=remaining)
        except Timeout:
            _abandon(ref, pid, req)
            raise CallTimeout(f"rpc.call to {node} timed out after {timeout} s") from None
        if type(msg) is Down:
            break
        result = msg.result
        if type(result) is Pid:
            pid = result
        elif result == "noconnection":
            raise CallError("noconnection")
        else:
            raise SpawnError(str(result))
    reason = msg.reason
    if type(reason) is not tuple or len(reason) < 3 or reason[0] != tag:
        raise CallError(reason)  # killed, node lost, or the function called exit()
    status = reason[1]
    if status == "ok":
        return reason[2]
    if status == "refused":
        raise SpawnError(reason[2])
    raise RemoteError(reason[2], reason[3], reason[4])


def _abandon(ref: Ref, pid: Optional[Pid], req: Optional[Ref]) -> None:
    """The caller gives up: nothing of this call may reach its mailbox afterwards."""
    if req is not None and pid is None:
        # If the spawn reply is still on its way, the node kills the runner
        # when it comes, and delivers nothing (its monitor is never set up here).
        abandon(req)
    # No Down for ref after this (semantics rule 11), and none left in the mailbox.
    _core.demonitor(ref, flush=True)
    for m in _core.flush_messages(lambda m: type(m) is SpawnReply and m.req == req):
        if type(m.result) is Pid:
            pid = m.result
    if pid is not None:
        _core.exit(pid, "kill")
