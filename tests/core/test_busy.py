"""The shared backpressure piece of every connection (snowg._core.busy)."""

from __future__ import annotations

import gevent
from gevent.event import Event

from snowg._core.busy import BusyWaiters, may_suspend, never_suspend, suspend_again


def test_readers_and_the_hub_are_never_suspended_and_others_are() -> None:
    seen = {}

    def reader() -> None:
        never_suspend(gevent.getcurrent())
        seen["reader"] = may_suspend()
        suspend_again(gevent.getcurrent())
        seen["reader after"] = may_suspend()

    gevent.spawn(reader).join(5)
    done = Event()
    gevent.get_hub().loop.run_callback(lambda: (seen.__setitem__("hub", may_suspend()), done.set()))
    assert done.wait(5)
    assert seen == {"reader": False, "reader after": True, "hub": False}
    assert may_suspend()


def test_waiters_go_on_only_once_woken_and_no_longer_busy() -> None:
    waiters = BusyWaiters()
    queued = [10]
    order = []

    def sender(i: int) -> None:
        waiters.wait(lambda: queued[0] > 5)
        order.append(i)

    senders = [gevent.spawn(sender, i) for i in range(3)]
    gevent.idle()
    assert len(waiters) == 3 and order == []
    waiters.wake_all()  # still busy: they wait again
    gevent.idle()
    assert len(waiters) == 3 and order == []
    queued[0] = 0
    waiters.wake_all()
    gevent.joinall(senders, timeout=5)
    assert sorted(order) == [0, 1, 2] and len(waiters) == 0
