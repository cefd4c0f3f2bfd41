"""The seam: start one child, stop children. Nothing else touches a child's process.

Remote supervision (``ChildSpec(node=...)``) will add its case here and
nowhere else: a remote ``spawn_link(fn, *args, node=...)`` in
:func:`start_child_process`; :func:`shutdown_children` already uses only
monitor / unlink / exit / Down, which the dist layer routes to other nodes.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Iterable, Optional

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
from .._errors import StartError, Timeout
from ..gen_server import GenServer
from ._spec import ChildSpec


class ChildStartFailed(Exception):
    """Internal: a child did not start; ``reason`` says why."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


def start_child_process(spec: ChildSpec, extra_args: tuple = ()) -> Pid:
    """Start the child of ``spec`` linked to the calling supervisor; return its pid.

    A plain function is spawned (it cannot fail to start). A ``GenServer``
    subclass, or a function marked ``_snowg_sync_start`` (a nested
    supervisor's ``start_link``), is started synchronously: this blocks until
    it has initialised.

    Raises:
        ChildStartFailed: the child failed to initialise.
    """
    fn, args, kwargs = spec.start
    if extra_args:
        args = args + tuple(extra_args)
    if isinstance(fn, type) and issubclass(fn, GenServer):
        starter = fn.start_link
    elif getattr(fn, "_snowg_sync_start", False):
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


def shutdown_child(pid: Pid, shutdown: Any) -> Any:
    """Stop one child (SEMANTICS 14) and return the reason it ended with."""
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


__all__ = ["ChildStartFailed", "shutdown_child", "shutdown_children", "start_child_process"]
