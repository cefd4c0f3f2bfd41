"""The scheduler: the ready queue, and how a parked greenlet hands the CPU to the next one.

A process (or a :class:`Task`) that must run -- new, or woken by a message --
goes on the runtime's ready queue (:func:`schedule`). A greenlet that parks
(:func:`park`, in ``receive``) switches straight to the next ready one instead
of going through the gevent hub: one greenlet switch per delivery. So does a
process greenlet whose process ended and that goes idle (:func:`hand_off`):
its exit made someone runnable (a linked supervisor, a monitor's owner). After
``HANDOFF_LIMIT`` direct switches in a row it goes through the hub, so that IO
and timers are not starved; a hub callback (:func:`drain`) runs whatever is
left.

Anything scheduled has the attributes ``glet``, ``state``, ``parked`` and
``ready`` (a process record, or a :class:`Task`).
"""

from __future__ import annotations

from typing import Any

from .runtime import rt

__all__ = ["ACTIVE", "DEAD", "HANDOFF_LIMIT", "NEW", "Task", "drain", "hand_off", "park", "schedule"]

# States of a process (a Task is always ACTIVE).
NEW, ACTIVE, DEAD = 0, 1, 2

HANDOFF_LIMIT = 64
# No direct handoff before the hub's first drain: a process greenlet that ends
# returns to its parent, the hub, and an unstarted hub would be started with
# that return value as an argument (TypeError in Hub.run). drain resets this.
rt.handoffs = HANDOFF_LIMIT


def schedule(proc: Any) -> None:
    """Put ``proc`` on the ready queue; never blocks, never switches."""
    proc.ready = True
    rt.ready.append(proc)
    if not rt.drain_scheduled:
        rt.drain_scheduled = True
        (rt._loop or rt.loop).run_callback(drain)


def drain() -> None:
    """Hub callback: run the processes that were ready when it started."""
    rt.drain_scheduled = False
    rt.handoffs = 0
    ready = rt.ready
    for _ in range(len(ready)):
        if not ready:
            break
        proc = ready.popleft()
        proc.ready = False
        if proc.parked:
            proc.parked = False
            proc.glet.switch()
        elif proc.state == NEW:
            proc.glet.switch()


def park(proc: Any) -> Any:
    """Suspend the current greenlet (``proc``'s) until it is scheduled; run someone else meanwhile.

    Returns what the greenlet is switched back in with.
    """
    proc.parked = True
    ready = rt.ready
    if rt.handoffs < HANDOFF_LIMIT:
        while ready:
            nxt = ready.popleft()
            nxt.ready = False
            if nxt.parked:
                nxt.parked = False
            elif nxt.state != NEW:
                continue
            rt.handoffs += 1
            return nxt.glet.switch()
    return (rt._hub or rt.hub).switch()


def hand_off() -> None:
    """Switch straight to the next ready greenlet, if there is one and the handoff limit allows.

    For a greenlet that has nothing to do and is not scheduled (an idle process
    greenlet): it returns when something switches back to it, or at once if
    nothing is ready (the caller then waits in the hub). It saves the trip
    through the hub that a greenlet's switch to the hub would cost (the hub's
    loop, then :func:`drain`).
    """
    if rt.handoffs < HANDOFF_LIMIT:
        ready = rt.ready
        while ready:
            nxt = ready.popleft()
            nxt.ready = False
            if nxt.parked:
                nxt.parked = False
            elif nxt.state != NEW:
                continue
            rt.handoffs += 1
            nxt.glet.switch()
            return


class Task:
    """A plain greenlet (not a process) that parks and is woken through the ready queue.

    The cluster layer's session writers and the WebSocket connections' writers
    are tasks: a process that queues data and then waits in ``receive`` hands
    the CPU straight to the writer, with no trip through the hub.

    Args:
        glet: the greenlet that will call :meth:`park` (may be set later).
    """

    __slots__ = ("glet", "state", "parked", "ready")

    def __init__(self, glet: Any) -> None:
        self.glet = glet
        self.state = ACTIVE
        self.parked = False
        self.ready = False

    def park(self) -> None:
        """Suspend the calling greenlet (which must be ``self.glet``) until :meth:`wake`; blocks it."""
        try:
            park(self)
        finally:
            self.parked = False

    def wake(self) -> None:
        """Make a parked task runnable; never blocks, never switches."""
        if self.parked and not self.ready:
            schedule(self)
