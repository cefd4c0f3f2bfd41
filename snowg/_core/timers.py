"""Timers: ``send_after`` and ``cancel_timer``.

A timer is a gevent loop timer that sends a message when it fires. A timer to
a local pid belongs to that process and is cancelled when it ends, as in
Erlang (:func:`snowg._core.process` closes them on termination).
"""

from __future__ import annotations

from typing import Any, Tuple, Union

from .._errors import NoProc
from .process import local_process, send
from .runtime import rt
from .terms import Pid, TimerRef

__all__ = ["cancel_timer", "send_after"]


def send_after(seconds: float, dest: Union[Pid, str, Tuple[str, str]], msg: Any) -> TimerRef:
    """Send ``msg`` to ``dest`` after ``seconds``; returns a ref for ``cancel_timer``.

    A timer to a local pid is cancelled when that process ends (as in Erlang).
    """
    tid = next(rt.timer_ids)
    tref = TimerRef(tid)
    timer = rt.loop.timer(max(0.0, float(seconds)))
    owner = local_process(dest) if type(dest) is Pid else None
    rt.timers[tid] = (timer, owner)
    if owner is not None:
        if owner.timers is None:
            owner.timers = set()
        owner.timers.add(tid)
    timer.start(_fire_timer, tid, dest, msg)
    return tref


def _fire_timer(tid: int, dest: Any, msg: Any) -> None:
    entry = rt.timers.pop(tid, None)
    if entry is None:
        return
    timer, owner = entry
    timer.close()
    if owner is not None and owner.timers:
        owner.timers.discard(tid)
    try:
        send(dest, msg)
    except NoProc:
        pass  # a name that went away meanwhile: dropped, as erlang:send_after does


def cancel_timer(ref: TimerRef) -> bool:
    """Cancel a timer; True if it had not fired yet."""
    entry = rt.timers.pop(ref.id, None)
    if entry is None:
        return False
    timer, owner = entry
    timer.close()
    if owner is not None and owner.timers:
        owner.timers.discard(ref.id)
    return True
