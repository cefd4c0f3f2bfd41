"""Looking at processes from outside: ``is_alive``, ``processes``, ``process_info``.

Snapshots only: nothing here changes a process or waits for one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from greenlet import getcurrent

from .process import local_process
from .runtime import rt
from .scheduler import NEW
from .terms import Pid

__all__ = ["is_alive", "process_info", "processes"]


def is_alive(pid: Pid) -> bool:
    """True when ``pid`` is a live local process."""
    return local_process(pid) is not None


def processes() -> List[Pid]:
    """The pids of all live local processes."""
    return [p.pid for p in rt.procs.values()]


def process_info(pid: Pid) -> Optional[Dict[str, Any]]:
    """A snapshot of a live local process, or None when it is not alive.

    Keys: ``status`` (``'running'``, ``'runnable'``, ``'waiting'`` or
    ``'suspended'``), ``message_queue_len``, ``messages``, ``links``,
    ``monitors``, ``monitored_by``, ``trap_exit``, ``registered_name``.
    """
    proc = local_process(pid)
    if proc is None:
        return None
    if proc.glet is getcurrent():
        status = "running"
    elif proc.ready or proc.state == NEW:
        status = "runnable"
    elif proc.parked:
        status = "waiting"
    else:
        status = "suspended"
    mb = proc.mailbox or ()
    return {
        "status": status,
        "message_queue_len": len(mb),
        "messages": list(mb),
        "links": sorted(proc.links or (), key=repr),
        "monitors": list((proc.monitors or {}).values()),
        "monitored_by": [w for (w, _r) in (proc.monitored_by or {}).values()],
        "trap_exit": proc.trap,
        "registered_name": proc.name,
    }
