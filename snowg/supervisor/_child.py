"""The seam: start one child, stop children. Nothing else touches a child's process.

Remote children (``ChildSpec(node=...)``) start here too: each candidate node
in order, skipping those that cannot be reached (connecting on demand, for at
most the supervisor's ``connect_timeout``); a plain function by a remote
``spawn_link``, a ``GenServer`` or a nested supervisor through the runners of
``_remote`` with an init acknowledgement. :func:`shutdown_children` uses only
monitor / unlink / exit / Down, which the cluster layer routes to other nodes.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Iterable, Optional

import gevent

from .._core import (
    Crash,
    Down,
    Exit,
    Pid,
    exit,
    flush_messages,
    monitor,
    receive,
    spawn_link,
    unlink,
)
from .._errors import SpawnError, StartError, Timeout
from ..cluster.node import node as _this_node
from ..cluster.node import nodes as _connected_nodes

try:
    from ..cluster.node import ensure_connected as _ensure_connected
except ImportError:  # a cluster layer without on-demand reconnect: only connected nodes count

    def _ensure_connected(name: str) -> bool:
        return name in _connected_nodes()

from ..cluster import lookup_spawnable as lookup
from ..gen_server import start_sync
from ._remote import (
    encode_children,
    is_gen_server,
    is_nested_supervisor,
    run_gen_server,
    run_supervisor,
)
from ._spec import ChildSpec, spawnable_name

#: Default seconds a supervisor waits to (re)connect to a remote child's node.
CONNECT_TIMEOUT = 5.0


class ChildStartFailed(Exception):
    """Internal: a child did not start; ``reason`` says why."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


def start_child_process(
    spec: ChildSpec, extra_args: tuple = (), connect_timeout: float = CONNECT_TIMEOUT,
) -> Optional[Pid]:
    """Start the child of ``spec`` linked to the calling supervisor; return its pid.

    A plain function is spawned (it cannot fail to start, locally). A
    ``GenServer`` subclass, or a function marked ``_snowg_sync_start`` (a
    nested supervisor's ``start_link``), is started synchronously: this blocks
    until it has initialised. A remote child starts on the first of its
    candidate nodes that can be reached. Returns None for a ``GenServer``
    whose ``init`` returned ``'ignore'`` (OTP: the child's pid is ``undefined``).

    Raises:
        ChildStartFailed: the child failed to initialise; ``'noconnection'``
            when no candidate node could be reached.
    """
    fn, args, kwargs = spec.start
    if extra_args:
        args = args + tuple(extra_args)
    if spec.node is None:
        return _start_local(fn, args, kwargs)
    here = _this_node()
    for node in spec.nodes:
        if node == here:
            local = lookup(fn) if isinstance(fn, str) else fn
            if local is None:
                raise ChildStartFailed(("not_spawnable", fn))
            return _start_local(local, args, kwargs)
        if not _reachable(node, connect_timeout):
            continue
        pid = _start_remote(node, spec.id, fn, args, kwargs)
        if pid is not _UNREACHABLE:
            return pid
    raise ChildStartFailed("noconnection")


def _start_local(fn: Any, args: tuple, kwargs: dict) -> Optional[Pid]:
    if is_gen_server(fn):
        starter = fn.start_link
    elif is_nested_supervisor(fn):
        starter = fn
    else:
        return spawn_link(fn, *args, **kwargs)
    try:
        return starter(*args, **kwargs)
    except StartError as e:
        # A nested supervisor names the grandchild that failed; keep that.
        raise ChildStartFailed(
            e.reason if e.child_id is None else ("failed_to_start_child", e.child_id, e.reason)
        ) from None
    except Exception as e:  # noqa: BLE001 - e.g. a bad spec in a nested supervisor
        raise ChildStartFailed(Crash.from_exception(e)) from None


def _reachable(node: str, timeout: float) -> bool:
    """Connected to ``node``, or connected now on demand within ``timeout`` seconds.

    The connection attempt runs in its own greenlet, so a node that accepts
    TCP but never answers (e.g. stopped with SIGSTOP) costs us ``timeout``,
    not the cluster layer's whole handshake time.
    """
    if node in _connected_nodes():
        return True
    attempt = gevent.spawn(_ensure_connected, node)
    attempt.join(timeout)
    return attempt.successful() and bool(attempt.value)


def _is_placeholder(pid: Pid) -> bool:
    """The pid a spawn on an unreachable node returns (never alive)."""
    return pid.id == 0 and pid.creation == 0


_UNREACHABLE: Any = object()


def _start_remote(node: str, cid: Any, fn: Any, args: tuple, kwargs: dict) -> Any:
    """Start the child on ``node``: its pid, None if ignored, ``_UNREACHABLE`` if the node turned out so."""
    try:
        if is_nested_supervisor(fn):
            options = dict(kwargs)
            wire = encode_children(args[0] if args else [], f"the remote supervisor {cid!r}")
            return start_sync(run_supervisor, (wire, options), True, None, node=node)
        if is_gen_server(fn):
            kw = dict(kwargs)
            name = kw.pop("name", None)
            timeout = kw.pop("timeout", None)
            if kw:
                raise TypeError(f"{fn.__name__}.start_link: unexpected keyword arguments {sorted(kw)}")
            return start_sync(run_gen_server, (spawnable_name(fn), args, name), True, timeout, node=node)
        pid = spawn_link(fn, *args, node=node, **kwargs)
    except StartError as e:
        if e.child_id is None and e.reason == "noconnection":
            return _UNREACHABLE
        raise ChildStartFailed(_nested_reason(e)) from None
    except SpawnError as e:
        raise ChildStartFailed(("spawn_error", str(e))) from None
    except Exception as e:  # noqa: BLE001 - e.g. args that cannot cross
        raise ChildStartFailed(Crash.from_exception(e)) from None
    if _is_placeholder(pid):
        # The node went away just now; the spawn delivered Exit(pid, 'noconnection').
        flush_messages(lambda m: type(m) is Exit and m.pid == pid)
        return _UNREACHABLE
    return pid


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
    by_ref: Dict[Any, Pid] = {}
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


def _await_downs(by_ref: Dict[Any, Pid], reasons: Dict[Pid, Any], timeout: Optional[float]) -> Dict[Any, Pid]:
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


__all__ = ["CONNECT_TIMEOUT", "ChildStartFailed", "shutdown_child", "shutdown_children", "start_child_process"]
