"""Process greenlets are reused (``snowg._core.process._idle``): a process on a reused one is a new process.

A greenlet whose process ended waits idle for the next spawn, instead of
being freed (its first run costs an mmap and a munmap of its frame stack).
Everything a process can see must be as on a new greenlet: no context
variables of the previous process, no ``gevent.local`` values (a greenlet
with weak references is never reused), exit signals, links, monitors and
``process_info`` as usual; and an idle greenlet that something else switches
to or throws into runs nothing.
"""

from __future__ import annotations

import contextvars

import gevent
import gevent.event
import gevent.local
import greenlet
import pytest

import snowg
from snowg import Down, Exit
from snowg._core import process as _process
from support import is_down

W = 5.0

_var: contextvars.ContextVar[str] = contextvars.ContextVar("snowg_test_reuse", default="unset")


def _report_greenlet_and_var(parent, value):
    before = _var.get()
    _var.set(value)
    snowg.send(parent, (id(greenlet.getcurrent()), before))


def _idle(glet_id):
    """The idle greenlet whose ``id`` is ``glet_id``, or None.

    Processes report their greenlet by ``id``, so that the test holds none
    itself; while it is idle the pool holds it, so the id names it alone.
    """
    return next((g for g in _process._idle if id(g) == glet_id), None)


def _run_to_end(fn, *args):
    """Spawn ``fn(self, *args)``, return its message, and wait until it has ended."""
    me = snowg.self()
    pid, ref = snowg.spawn_monitor(fn, me, *args)
    msg = snowg.receive(lambda m: type(m) is tuple, timeout=W)
    assert snowg.receive(is_down(ref), timeout=W).reason == "normal"
    return msg


def test_an_ended_process_greenlet_runs_the_next_process_with_fresh_context_variables():
    glet1, seen1 = _run_to_end(_report_greenlet_and_var, "first")
    assert _idle(glet1) is not None
    glet2, seen2 = _run_to_end(_report_greenlet_and_var, "second")
    assert glet2 == glet1  # reused: the test covers the reuse path
    assert (seen1, seen2) == ("unset", "unset")


def test_a_greenlet_with_gevent_local_values_is_not_reused():
    local = gevent.local.local()

    def sets_local(parent):
        local.value = "first"
        snowg.send(parent, (id(greenlet.getcurrent()),))

    def reads_local(parent):
        snowg.send(parent, (id(greenlet.getcurrent()), getattr(local, "value", "unset")))

    (glet1,) = _run_to_end(sets_local)
    glet2, seen = _run_to_end(reads_local)
    assert glet2 != glet1
    assert seen == "unset"


def _wait_forever(parent):
    snowg.send(parent, (id(greenlet.getcurrent()),))
    snowg.receive(lambda m: False)


def _wait_for_stop(parent):
    snowg.send(parent, (id(greenlet.getcurrent()),))
    snowg.receive(lambda m: m == "stop")


def test_exit_signals_links_and_monitors_on_a_reused_greenlet():
    snowg.trap_exit(True)
    (glet1,) = _run_to_end(_report_greenlet_and_var, "x")[:1]
    me = snowg.self()
    pid = snowg.spawn_link(_wait_forever, me)
    ref = snowg.monitor(pid)
    (glet2,) = snowg.receive(lambda m: type(m) is tuple, timeout=W)
    assert glet2 == glet1
    assert snowg.process_info(pid, ["status", "links"]) == {"status": "waiting", "links": [me]}
    snowg.exit(pid, "stop_now")
    assert snowg.receive(lambda m: type(m) is Exit and m.pid == pid, timeout=W).reason == "stop_now"
    assert snowg.receive(is_down(ref), timeout=W) == Down(ref, pid, "stop_now")
    assert not snowg.is_alive(pid)
    # (A greenlet an exit signal was thrown into is not reused: the throw's
    # frame still holds it when the process ends. It is freed as before.)
    glet3, seen = _run_to_end(_report_greenlet_and_var, "y")
    assert seen == "unset"


def test_a_process_that_crashes_leaves_a_greenlet_that_runs_the_next_one(caplog):
    def crash(parent):
        snowg.send(parent, (id(greenlet.getcurrent()),))
        raise ValueError("boom")

    me = snowg.self()
    pid, ref = snowg.spawn_monitor(crash, me)
    (glet1,) = snowg.receive(lambda m: type(m) is tuple, timeout=W)
    reason = snowg.receive(is_down(ref), timeout=W).reason
    assert type(reason) is snowg.Crash and reason.type == "ValueError"
    glet2, seen = _run_to_end(_report_greenlet_and_var, "z")
    assert glet2 == glet1
    assert seen == "unset"


def test_an_idle_greenlet_switched_to_by_someone_else_runs_nothing():
    glet_id, _ = _run_to_end(_report_greenlet_and_var, "x")
    glet = _idle(glet_id)
    assert glet is not None
    hub = gevent.get_hub()
    hub.loop.run_callback(glet.switch)
    gevent.sleep(0)
    gevent.sleep(0)
    assert glet in _process._idle and not glet.dead
    glet2, seen = _run_to_end(_report_greenlet_and_var, "y")
    assert glet2 == glet_id and seen == "unset"


def test_an_idle_greenlet_thrown_into_ends_and_leaves_the_pool():
    glet_id, _ = _run_to_end(_report_greenlet_and_var, "x")
    glet = _idle(glet_id)
    assert glet is not None
    gevent.get_hub().loop.run_callback(glet.throw, greenlet.GreenletExit)
    gevent.sleep(0)
    gevent.sleep(0)
    assert glet.dead and glet not in _process._idle
    glet2, seen = _run_to_end(_report_greenlet_and_var, "y")
    assert glet2 != glet_id and seen == "unset"


def test_the_pool_of_idle_greenlets_is_bounded():
    me = snowg.self()
    n = _process._IDLE_MAX + 20
    watched = [snowg.spawn_monitor(_wait_for_stop, me) for _ in range(n)]
    for _ in range(n):
        snowg.receive(lambda m: type(m) is tuple, timeout=W)
    for pid, _ref in watched:
        snowg.send(pid, "stop")
    for _pid, ref in watched:
        assert snowg.receive(is_down(ref), timeout=W).reason == "normal"
    assert len(_process._idle) == _process._IDLE_MAX


@pytest.mark.parametrize("kill_before_start", [True, False])
def test_a_process_killed_before_it_starts_on_a_reused_greenlet(kill_before_start):
    glet, _ = _run_to_end(_report_greenlet_and_var, "x")
    me = snowg.self()
    pid, ref = snowg.spawn_monitor(_wait_forever, me)
    if kill_before_start:
        snowg.exit(pid, "kill")
    else:
        (glet2,) = snowg.receive(lambda m: type(m) is tuple, timeout=W)
        assert glet2 == glet
        snowg.exit(pid, "kill")
    assert snowg.receive(is_down(ref), timeout=W).reason == "killed"
    glet3, seen = _run_to_end(_report_greenlet_and_var, "y")
    assert seen == "unset"
    if kill_before_start:  # it raised at its start, on its own greenlet: nothing else holds that one
        assert glet3 == glet
