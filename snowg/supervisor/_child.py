"""The seam: start one child, stop children. Nothing else touches a child's process.

Remote children (``ChildSpec(node=...)``) start here too: each candidate node
in order, skipping those that cannot be reached (connecting on demand, for at
most the supervisor's ``connect_timeout``); a plain function by a remote
``spawn_link``, a ``GenServer`` or a nested supervisor through the runners
named in ``_wire`` with an init acknowledgement. :func:`shutdown_children`
uses only monitor / unlink / exit / Down, which the cluster layer routes to
other nodes.

A child on an Erlang/Elixir node (``_core.remote.is_foreign_node``, once
connected) is ``ChildSpec(id, ("mod:fun", [args]), node=beam_node)``: it is
started with ``spawn_link("mod:fun", *args, node=beam_node)`` (the Erlang
function ``mod:fun``) and stopped as any remote child.

A nested supervisor on this node is started by the caller's
``start_supervisor`` (the supervisor process passes its own start: this
module sits below it).
"""

from __future__ import annotations

import time
from types import FunctionType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import gevent

from .._core import Crash, Down, Exit, Pid, Ref, exit, flush_messages, monitor, receive, spawn_link, unlink
from .._core.remote import is_foreign_node
from .._errors import SpawnError, StartError, Timeout
from ..cluster import ensure_connected, lookup_spawnable, node, nodes, spawnable_name
from ..gen_server import start_sync
from ._spec import ChildSpec, NestedSupervisor, Target, gen_server_class
from ._wire import RUN_GEN_SERVER, RUN_SUPERVISOR, encode_children

#: What a child starts on this node: a function, a ``GenServer`` class or a nested supervisor.
LocalTarget = Union[Callable[..., Any], NestedSupervisor]
#: Starts a nested supervisor on this node, linked to the caller: ``(children, options) -> pid``.
StartSupervisor = Callable[[List[ChildSpec], Mapping[str, Any]], Optional[Pid]]


class ChildStartFailed(Exception):
    """Internal: a child did not start; ``reason`` says why."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unreachable(Exception):
    """Internal: the candidate node turned out to be unreachable during the start."""


def start_child_process(
    spec: ChildSpec,
    extra_args: Tuple[Any, ...],
    connect_timeout: float,
    start_supervisor: StartSupervisor,
) -> Optional[Pid]:
    """Start the child of ``spec`` linked to the calling supervisor; return its pid.

    A plain function is spawned (it cannot fail to start, locally). A
    ``GenServer`` subclass or a nested supervisor is started synchronously:
    this blocks until it has initialised. A remote child starts on the first
    of its candidate nodes that can be reached (waiting at most
    ``connect_timeout`` seconds for each that is not connected). Returns
    None for a ``GenServer`` whose ``init`` returned ``'ignore'`` (OTP: the
    child's pid is ``undefined``).

    Raises:
        ChildStartFailed: the child failed to initialise; ``'noconnection'``
            when no candidate node could be reached.
    """
    fn, args, kwargs = spec.start  # (fn, args, kwargs), as spec.fn/.args/.kwargs read them
    if extra_args:
        args = args + tuple(extra_args)
    if spec.node is None:
        if type(fn) is FunctionType:  # a plain function, the usual child: what _start_local does, in line
            return spawn_link(fn, *args, **kwargs)
        return _start_local(_resolve(fn), args, kwargs, start_supervisor)
    here = node()
    for candidate in spec.nodes:
        if candidate == here:
            return _start_local(_resolve(fn), args, kwargs, start_supervisor)
        if not _reachable(candidate, connect_timeout):
            continue
        try:
            return _start_remote(candidate, spec.id, fn, args, kwargs)
        except _Unreachable:
            continue
    raise ChildStartFailed("noconnection")


def _resolve(fn: Target) -> LocalTarget:
    """What ``fn`` starts on this node: a spawnable name is looked up here.

    Raises:
        ChildStartFailed: nothing is ``@spawnable`` here under that name.
    """
    if not isinstance(fn, str):
        return fn
    found = lookup_spawnable(fn)
    if found is None:
        raise ChildStartFailed(("not_spawnable", fn))
    return found


def _start_local(
    fn: LocalTarget,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    start_supervisor: StartSupervisor,
) -> Optional[Pid]:
    server = gen_server_class(fn)
    if server is None and not isinstance(fn, NestedSupervisor):
        return spawn_link(fn, *args, **kwargs)  # a plain function: started once spawned
    try:
        if server is not None:
            return server.start_link(*args, **kwargs)
        return start_supervisor(args[0] if args else [], kwargs)
    except StartError as e:
        # A nested supervisor names the grandchild that failed; keep that.
        raise ChildStartFailed(
            e.reason if e.child_id is None else ("failed_to_start_child", e.child_id, e.reason)
        ) from None
    except Exception as e:  # noqa: BLE001 - e.g. a bad spec in a nested supervisor
        raise ChildStartFailed(Crash.from_exception(e)) from None


def _reachable(name: str, timeout: float) -> bool:
    """Connected to ``name``, or connected now on demand within ``timeout`` seconds.

    The connection attempt runs in its own greenlet, so a node that accepts
    TCP but never answers (e.g. stopped with SIGSTOP) costs us ``timeout``,
    not the cluster layer's whole handshake time.
    """
    if name in nodes() or is_foreign_node(name):
        return True
    attempt = gevent.spawn(ensure_connected, name)
    attempt.join(timeout)
    return attempt.successful() and bool(attempt.value)


def _is_placeholder(pid: Pid) -> bool:
    """The pid a spawn on an unreachable node returns (never alive)."""
    return pid.id == 0 and pid.creation == 0


def _start_remote(
    where: str,
    cid: Any,
    fn: Target,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
) -> Optional[Pid]:
    """Start the child on node ``where``: its pid, or None if it ignored its start.

    Raises:
        _Unreachable: the node turned out to be unreachable.
        ChildStartFailed: the child failed to start there.
    """
    if is_foreign_node(where):
        fn = _beam_function(cid, fn)
    try:
        if isinstance(fn, NestedSupervisor):
            wire = encode_children(args[0] if args else [], f"the remote supervisor {cid!r}")
            return start_sync(RUN_SUPERVISOR, (wire, dict(kwargs)), True, None, node=where)
        if gen_server_class(fn) is not None:
            kw = dict(kwargs)
            name = kw.pop("name", None)
            timeout = kw.pop("timeout", None)
            if kw:
                raise TypeError(f"{getattr(fn, '__name__', fn)}.start_link: unexpected keyword arguments {sorted(kw)}")
            return start_sync(RUN_GEN_SERVER, (spawnable_name(fn), args, name), True, timeout, node=where)
        pid = spawn_link(fn, *args, node=where, **kwargs)
    except StartError as e:
        if e.child_id is None and e.reason == "noconnection":
            raise _Unreachable(where) from None
        raise ChildStartFailed(_nested_reason(e)) from None
    except SpawnError as e:
        raise ChildStartFailed(("spawn_error", str(e))) from None
    except Exception as e:  # noqa: BLE001 - e.g. args that cannot cross
        raise ChildStartFailed(Crash.from_exception(e)) from None
    if _is_placeholder(pid):
        # The node went away just now; the spawn delivered Exit(pid, 'noconnection').
        flush_messages(lambda m: type(m) is Exit and m.pid == pid)
        raise _Unreachable(where)
    return pid


def _beam_function(cid: Any, fn: Target) -> str:
    """The ``"mod:fun"`` a child on a BEAM node starts (a Python function cannot run there).

    Raises:
        ChildStartFailed: ``fn`` names no Erlang function.
    """
    name = fn if isinstance(fn, str) else None
    if name is None or name.count(":") != 1 or not all(name.split(":")):
        raise ChildStartFailed(("not_an_erlang_function", cid, repr(fn)))
    return name


def _nested_reason(e: StartError) -> Any:
    """The start-error reason as the local path reports it (a remote supervisor's grandchild named)."""
    r = e.reason
    if e.child_id is not None:
        return ("failed_to_start_child", e.child_id, r)
    if type(r) is tuple and len(r) == 2 and r[0] == "shutdown" and type(r[1]) is tuple and len(r[1]) == 3:
        return r[1]  # ('failed_to_start_child', id, reason), from a remote Supervisor.init
    return r


def shutdown_child(pid: Pid, shutdown: Any) -> Any:
    """Stop one child (semantics rule 14) and return the reason it ended with."""
    return shutdown_children((pid,), shutdown)[pid]


def shutdown_children(pids: Iterable[Pid], shutdown: Any) -> Dict[Pid, Any]:
    """Stop children that share one ``shutdown`` setting, all at once; wait until they ended.

    Each child is monitored (so one that unlinked itself cannot hang us) and
    unlinked, and an ``Exit`` it sent before the unlink is consumed: such a
    child is already dead and its reason is the ``Exit``'s. The others get
    ``exit(pid, 'shutdown')`` and ``shutdown`` seconds to end before
    ``'kill'`` (``'brutal_kill'``: ``'kill'`` at once; ``'infinity'``: no
    limit). Blocks until every child has ended.

    Returns:
        pid -> the reason from its ``Down`` (``'killed'`` after a kill).
    """
    by_ref: Dict[Ref, Pid] = {}
    for pid in pids:
        by_ref[monitor(pid)] = pid
        unlink(pid)
    reasons: Dict[Pid, Any] = {}
    members = set(by_ref.values())
    for m in flush_messages(lambda m: type(m) is Exit and m.pid in members):
        reasons[m.pid] = m.reason  # died before we unlinked
    signal = "kill" if shutdown == "brutal_kill" else "shutdown"
    for pid in by_ref.values():
        if pid not in reasons:
            exit(pid, signal)
    timeout: Optional[float] = None
    if shutdown != "brutal_kill" and shutdown != "infinity":
        timeout = float(shutdown)
    pending = _await_downs(by_ref, reasons, timeout)
    if pending:
        for pid in pending.values():
            exit(pid, "kill")
        _await_downs(pending, reasons, None)
    return reasons


def _await_downs(by_ref: Dict[Ref, Pid], reasons: Dict[Pid, Any], timeout: Optional[float]) -> Dict[Ref, Pid]:
    """Collect the ``Down`` of each monitor in ``by_ref``; return those still missing at the deadline."""
    pending = dict(by_ref)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            down = receive(lambda m: type(m) is Down and m.ref in pending, remaining)
        except Timeout:
            return pending
        pid = pending.pop(down.ref)
        reasons.setdefault(pid, down.reason)
    return pending
