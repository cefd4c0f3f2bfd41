"""Backpressure on a connection's outbound queue: Erlang's busy distribution port.

A connection to another node (a snowg session, a BEAM connection) queues
what processes send and writes it in the background. While more than its
bound waits, a *process* that sends a message is suspended until the queue
drains (:class:`BusyWaiters`); its message is queued first, so nothing is
lost or reordered. Some greenlets must never be suspended: the hub, and the
readers of every connection, which run the signal handlers (a reader that
waited for a writer could wait on itself, or hold up one peer's traffic
behind another slow peer). They are marked with :func:`never_suspend`, in
one set for every kind of connection, so a snowg session's reader that
sends over a busy BEAM connection goes on as well as the other way round.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, List

import gevent
from gevent.hub import Waiter
from greenlet import getcurrent

__all__ = ["BusyWaiters", "may_suspend", "never_suspend", "suspend_again"]

_never_suspend: "weakref.WeakSet[Any]" = weakref.WeakSet()


def never_suspend(glet: Any) -> None:
    """Mark ``glet`` (a connection's reader) as one a busy queue never suspends."""
    _never_suspend.add(glet)


def suspend_again(glet: Any) -> None:
    """Undo :func:`never_suspend` (the reader ended)."""
    _never_suspend.discard(glet)


def may_suspend() -> bool:
    """Whether the calling greenlet may be suspended by a busy queue (not the hub, not a reader)."""
    current = getcurrent()
    return current not in _never_suspend and current is not gevent.get_hub()


class BusyWaiters:
    """The senders suspended on one connection's queue, woken together when it drains."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: List[Waiter[Any]] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def wait(self, busy: Callable[[], bool]) -> None:
        """Suspend the caller while ``busy()`` (blocks; call only where :func:`may_suspend`).

        An exit signal ends a suspended process as usual.
        """
        while busy():
            waiter: Waiter[Any] = Waiter()
            self._waiters.append(waiter)
            try:
                waiter.get()
            finally:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass  # woken: wake_all took the list

    def wake_all(self) -> None:
        """Wake every suspended sender (each checks again whether it may go on); never blocks."""
        waiters, self._waiters = self._waiters, []
        run = gevent.get_hub().loop.run_callback
        for waiter in waiters:
            run(waiter.switch, None)
