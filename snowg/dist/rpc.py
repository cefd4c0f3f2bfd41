"""``rpc.call``: run a ``@spawnable`` function on another node and wait for its value.

Built on remote ``spawn_monitor``: a small runner process starts on the target
node, calls the function, and sends the outcome back to the caller; the
monitor turns a lost node or a killed runner into an error.
"""
from __future__ import annotations

from typing import Any, Callable, Union

from .. import _core
from .._core.terms import Crash, Down, Pid, Ref
from .._core.runtime import rt
from .._errors import CallError, CallTimeout, RemoteError, SpawnError, Timeout
from . import spawnable as _spawnable

RUNNER = "snowg.rpc.runner"


@_spawnable.spawnable(RUNNER)
def _runner(caller: Pid, tag: Ref, fn_name: str, args: list, kwargs: dict) -> None:
    fn = _spawnable.lookup(fn_name)
    if fn is None:
        _core.send(caller, (tag, "refused", f"{fn_name!r} is not spawnable on node {_core_node()}"))
        return
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the caller gets the error, as erpc does
        crash = Crash.from_exception(exc)
        _core.send(caller, (tag, "error", crash.type, crash.message, crash.traceback))
        return
    try:
        _core.send(caller, (tag, "ok", value))
    except TypeError as exc:
        _core.send(caller, (tag, "error", "TypeError", f"the result cannot cross nodes: {exc}", ""))


def _core_node() -> str:
    return rt.node


def call(node: str, fn: Union[str, Callable[..., Any]], *args: Any, timeout: float = 5.0, **kwargs: Any) -> Any:
    """Call the ``@spawnable`` ``fn(*args, **kwargs)`` on ``node`` and return its value.

    Blocks the calling process until the value arrives.

    Raises:
        snowg.RemoteError: the function raised there (type name, message, remote traceback).
        snowg.SpawnError: ``fn`` is not spawnable on ``node``.
        snowg.CallTimeout: no answer within ``timeout`` seconds (a late answer is dropped).
        snowg.CallError: the node was lost (reason ``'noconnection'``) or the runner was killed.
        TypeError: an argument cannot cross nodes (nothing was sent).
    """
    tag = _core.make_ref()
    me = _core.self()
    name = _spawnable.name_of(fn)
    runner: Any = _runner if node == rt.node else RUNNER
    pid, ref = _core.spawn_monitor(runner, me, tag, name, list(args), kwargs, node=node)

    def match(m: Any) -> bool:
        return (type(m) is tuple and len(m) >= 2 and m[0] == tag) or (type(m) is Down and m.ref == ref)

    try:
        msg = _core.receive(match, timeout=timeout)
    except Timeout:
        _core.demonitor(ref, flush=True)
        _core.exit(pid, "kill")
        # A reply that raced the timeout must not stay in the caller's mailbox.
        _core.flush_messages(lambda m: type(m) is tuple and len(m) >= 2 and m[0] == tag)
        raise CallTimeout(f"rpc.call to {node} timed out after {timeout} s") from None
    if type(msg) is Down:
        # The runner ended first: its reply (if any) was sent before it ended,
        # and per-pair ordering means it would have arrived first.
        raise CallError(msg.reason)
    _core.demonitor(ref, flush=True)
    status = msg[1]
    if status == "ok":
        return msg[2]
    if status == "refused":
        raise SpawnError(msg[2])
    raise RemoteError(msg[2], msg[3], msg[4])
