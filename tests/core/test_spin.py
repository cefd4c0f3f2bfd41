"""The event loop busy-polls for a bounded time after a write to a peer (``snowg._core.spin``)."""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

from snowg._core import spin


@pytest.fixture(autouse=True)
def _budget_restored():
    before = spin.budget
    yield
    spin.set_budget(before)


def _wait_until_stopped(limit: float = 5.0) -> float:
    """Let the loop go idle until the spin's watcher stops; return how long that took.

    (The spin runs only when the loop has nothing else to do: waiting on an
    event that nobody sets leaves it idle, where ``sleep(0)`` would not.)
    """
    t0 = time.monotonic()
    nothing = gevent.event.Event()
    while spin._watcher is not None and spin._watcher.active:
        assert time.monotonic() - t0 < limit, "the spin never stopped"
        nothing.wait(0.001)
    return time.monotonic() - t0


def test_a_write_keeps_the_loop_polling_then_the_spin_stops_by_itself():
    spin.set_budget(0.002)
    spin.after_write()
    assert spin._watcher is not None and spin._watcher.active
    _wait_until_stopped()
    assert not spin._watcher.active


def test_a_later_write_extends_the_spin():
    spin.set_budget(0.002)
    spin.after_write()
    first_until = spin._until
    spin.after_write()
    assert spin._until >= first_until
    _wait_until_stopped()


def test_a_budget_of_zero_turns_it_off():
    spin.set_budget(0.0)
    if spin._watcher is not None:
        _wait_until_stopped()
    spin.after_write()
    assert spin._watcher is None or not spin._watcher.active


def test_the_budget_is_never_negative():
    spin.set_budget(-1)
    assert spin.budget == 0.0
