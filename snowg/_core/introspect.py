"""Looking at processes from outside: ``is_alive``, ``processes``, ``process_info``.

Snapshots only: nothing here changes a process or waits for one. A process's
*initial call* is what it was spawned with (a GenServer names its class
instead, through ``set_initial_call``); its *parent* is the process that
spawned it; its CPU time is counted while :func:`~snowg._core.cputime.set_cpu_tracing`
is on.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterable, List, Optional

from greenlet import getcurrent

from .process import local_process
from .runtime import rt
from .scheduler import NEW
from .terms import Pid

__all__ = ["INFO_KEYS", "describe_call", "initial_call_of", "is_alive", "process_info", "processes"]

#: Every key of :func:`process_info`'s answer, in order.
INFO_KEYS = (
    "status",
    "message_queue_len",
    "messages",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
    "registered_name",
    "initial_call",
    "parent",
    "cpu_time",
)


def is_alive(pid: Pid) -> bool:
    """True when ``pid`` is a live local process."""
    return local_process(pid) is not None


def processes() -> List[Pid]:
    """The pids of all live local processes."""
    return [p.pid for p in rt.procs.values()]


def describe_call(what: Any) -> Optional[str]:
    """``module.qualname`` of a function or class (the callable inside a ``functools.partial``).

    None for None; the ``repr`` of anything without a name (never raises).
    """
    if what is None:
        return None
    while isinstance(what, functools.partial):
        what = what.func
    if isinstance(what, str):
        return what
    name = getattr(what, "__qualname__", None) or getattr(what, "__name__", None)
    if name is None:
        return repr(what)
    module = getattr(what, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def initial_call_of(pid: Pid) -> Any:
    """What the live local process ``pid`` started with (a callable or a class), or None."""
    proc = local_process(pid)
    return None if proc is None else proc.initial


def process_info(pid: Pid, keys: Optional[Iterable[str]] = None) -> Optional[Dict[str, Any]]:
    """A snapshot of a live local process, or None when it is not alive.

    Never blocks. Keys (:data:`INFO_KEYS`): ``status`` (``'running'``,
    ``'runnable'``, ``'waiting'`` or ``'suspended'``), ``message_queue_len``,
    ``messages`` (a copy of the mailbox), ``links``, ``monitors``,
    ``monitored_by``, ``trap_exit``, ``registered_name``, ``initial_call``
    (``'module.qualname'`` of the function it was spawned with, or of its
    GenServer class; None for a greenlet adopted as a process), ``parent``
    (the pid of the process that spawned it, on another node for a remote
    spawn, or None), ``cpu_time`` (seconds
    counted while CPU tracing is on, see ``snowg.set_cpu_tracing``).

    Args:
        pid: the process.
        keys: only these keys (all of them when None); ``messages`` copies
            the whole mailbox, so leave it out to look at a long queue.

    Raises:
        KeyError: a key that is not one of :data:`INFO_KEYS`.
    """
    proc = local_process(pid)
    if proc is None:
        return None
    wanted = INFO_KEYS if keys is None else tuple(keys)
    info: Dict[str, Any] = {}
    for key in wanted:
        info[key] = _ITEMS[key](proc)
    return info


def _status(proc: Any) -> str:
    if proc.glet is getcurrent():
        return "running"
    if proc.ready or proc.state == NEW:
        return "runnable"
    if proc.parked:
        return "waiting"
    return "suspended"


_ITEMS: Dict[str, Callable[[Any], Any]] = {
    "status": _status,
    "message_queue_len": lambda proc: len(proc.mailbox or ()),
    "messages": lambda proc: list(proc.mailbox or ()),
    "links": lambda proc: sorted(proc.links or (), key=repr),
    "monitors": lambda proc: list((proc.monitors or {}).values()),
    "monitored_by": lambda proc: [w for (w, _r) in (proc.monitored_by or {}).values()],
    "trap_exit": lambda proc: proc.trap,
    "registered_name": lambda proc: proc.name,
    "initial_call": lambda proc: describe_call(proc.initial),
    "parent": lambda proc: proc.parent,
    "cpu_time": lambda proc: proc.cpu,
}
