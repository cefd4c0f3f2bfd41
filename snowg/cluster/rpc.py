"""``rpc.call``: run a ``@spawnable`` function on another node and wait for its value.

As OTP's ``erpc``: a small runner process is spawned on the target node with a
monitor, calls the function, and *ends with its outcome as its exit reason*,
so the caller's one ``Down`` carries the result (or the error). One message
back instead of a reply plus a ``Down``, and no late reply is possible: once
the caller gives up it demonitors, and a ``Down`` for a removed monitor is
never delivered (semantics rule 11). A lost node or a killed runner shows as a
``Down`` with another reason.

The runner's spawn request is sent without blocking on the spawn reply, and
that reply is *quiet* (OTP's ``{reply, error_only}``): the node sets up the
monitor when it comes and keeps the runner's pid aside, and the caller hears
of it only when there is no runner (a refusal, or the node lost first). So
the caller waits in one ``receive`` for one message in the usual case, and
``timeout`` bounds the whole call even when the peer answers nothing at all.
On a timeout the runner is killed: at once if its pid is known by then, else
as soon as the spawn reply brings it (the caller never sees that reply).
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .. import _core
from .._core import remote as _remote
from .._core.terms import Crash, Down, Pid, Ref
from .._errors import CallError, CallTimeout, RemoteError, SpawnError, Timeout
from ._codec import check_term
from ._spawn import SpawnReply, abandon, send_request, started
from ._spawnable import lookup_spawnable, spawnable, wire_name

__all__ = ["RUNNER", "call"]


RUNNER = "snowg.rpc.runner"

# The tags of calls: the runner ends with (tag, outcome...), told apart by its tag
# from an exit reason the function may give. Any term works (the runner echoes
# it; a Ref was used before); an int costs the least to encode, decode and
# compare. They start at a random point, so no function stumbles on one.
_tags = itertools.count(int.from_bytes(os.urandom(7), "big"))


@spawnable(RUNNER)
def _runner(caller: Pid, tag: Any, fn_name: str, args: List[Any], kwargs: Dict[str, Any]) -> None:
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
    if not _remote.is_local_pid(caller) and not _always_crosses(value):
        try:
            check_term(outcome)
        except TypeError as exc:
            outcome = (tag, "error", "TypeError", f"the result cannot cross nodes: {exc}", "")
    _core.exit(outcome)


def _always_crosses(value: Any) -> bool:
    """True for a value whose encoding cannot fail (``check_term`` would pass it): no need to try."""
    t = type(value)
    if t is int:
        return bool(-(1 << 63) <= value < (1 << 64))  # beyond: a big int, which may be too large
    return value is None or t is bool or t is float


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
    tag = next(_tags)
    me = _core.self()
    runner_args = [me, tag, wire_name(fn), list(args), kwargs]
    local = node == _remote.local_node()
    # Raises TypeError for what cannot cross even when not connected, as for a peer.
    req = None if local else send_request(node, me, RUNNER, runner_args, {}, ("monitor",), quiet=True)
    if req is None:
        # This node, or not connected (then the Down says 'noconnection' at once).
        pid, ref = _core.spawn_monitor(_runner if local else RUNNER, *runner_args, node=node)
        try:
            msg = _core.receive(lambda m: type(m) is Down and m.ref == ref, timeout=timeout)
        except Timeout:
            _core.demonitor(ref, flush=True)
            _core.exit(pid, "kill")
            raise CallTimeout(f"rpc.call to {node} timed out after {timeout} s") from None
        return _outcome(tag, msg.reason)
    # The spawn reply is quiet (_spawn.send_request): it comes to this process
    # only when there is no runner (refused, or the node was lost first).
    # Down and SpawnReply both carry the request's ref first.
    try:
        msg = _core.receive(lambda m: (type(m) is Down or type(m) is SpawnReply) and m[0] == req, timeout=timeout)
    except Timeout:
        _abandon(req)
        raise CallTimeout(f"rpc.call to {node} timed out after {timeout} s") from None
    finally:
        started.pop(req, None)
    if type(msg) is Down:
        return _outcome(tag, msg.reason)
    if msg.result == "noconnection":
        raise CallError("noconnection")
    raise SpawnError(str(msg.result))


def _outcome(tag: int, reason: Any) -> Any:
    """The value of a call whose runner ended with ``reason``; raises what the caller gets otherwise."""
    if type(reason) is not tuple or len(reason) < 3 or reason[0] != tag:
        raise CallError(reason)  # killed, node lost, or the function called exit()
    status = reason[1]
    if status == "ok":
        return reason[2]
    if status == "refused":
        raise SpawnError(reason[2])
    raise RemoteError(reason[2], reason[3], reason[4])


def _abandon(req: Ref) -> None:
    """The caller of request ``req`` gives up: nothing of this call may reach its mailbox afterwards."""
    pid = started.pop(req, None)
    if pid is None:
        # The spawn reply is still on its way: the node kills the runner when it
        # comes, and delivers nothing (its monitor is never set up here).
        abandon(req)
    # No Down for req after this (semantics rule 11), and none left in the mailbox.
    _core.demonitor(req, flush=True)
    if pid is not None:
        _core.exit(pid, "kill")
