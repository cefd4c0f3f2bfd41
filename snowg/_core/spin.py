"""Busy-polling the event loop for a moment after a write to a peer, as the BEAM's schedulers do.

A node that has just written a request to another node usually gets the
answer within tens of microseconds. Blocking in ``epoll_wait`` meanwhile costs
a sleep and a wake-up in the kernel on each side of every round trip, which is
most of a remote round trip's latency on loopback or a fast network. The
BEAM's schedulers spin before they sleep (``+sbwt``); snowg does the same, in a
bounded way: after a session writes, the event loop polls without blocking
(a libev *idle* watcher keeps ``epoll_wait``'s timeout at zero) until
:data:`budget` seconds have passed since the last write, then sleeps as usual.

The spin runs only when nothing else is ready (idle watchers run when the
loop has nothing else to do), costs at most ``budget`` of CPU per burst of
writes, and never delays a timer, a socket or a process. ``budget = 0``
turns it off (``SNOWG_SPIN_US=0`` in the environment).
"""

from __future__ import annotations

import os
from time import perf_counter
from typing import Any, Optional

from .runtime import rt

__all__ = ["after_write", "budget", "set_budget"]


def _budget_from_env() -> float:
    raw = os.environ.get("SNOWG_SPIN_US", "")
    try:
        return max(0.0, float(raw)) / 1e6 if raw else 100e-6
    except ValueError:
        return 100e-6


#: Seconds the loop keeps polling after a write to a peer (default 100 µs).
budget: float = _budget_from_env()

_watcher: Optional[Any] = None
_until = 0.0


def set_budget(seconds: float) -> None:
    """Set how long the loop busy-polls after a write to a peer (0 turns it off); never blocks."""
    global budget
    budget = max(0.0, float(seconds))


def after_write() -> None:
    """Keep the event loop polling for :data:`budget` seconds from now; never blocks."""
    global _watcher, _until
    if budget <= 0.0:
        return
    _until = perf_counter() + budget
    w = _watcher
    if w is None:
        _watcher = w = (rt._loop or rt.loop).idle()
    if not w.active:
        w.start(_poll)


def _poll() -> None:
    if perf_counter() >= _until and _watcher is not None:
        _watcher.stop()
