"""A process greenlet that ends and goes idle switches straight to the next ready one (``scheduler.hand_off``).

The switch skips the hub's loop; nothing else may change: the process it
made runnable (by an exit signal, a Down, a message) runs with that message,
a new process on the idle greenlet runs from the start, processes scheduled
in the same turn run in order, and past ``HANDOFF_LIMIT`` direct switches the
hub still runs (a timer fires in the middle of a long chain of exits).
"""

from __future__ import annotations

import gevent
import greenlet

import snowg
from snowg import Down, Exit
from snowg._core import process as _process
from snowg._core import scheduler as _scheduler
from support import is_down

W = 5.0


def _crash_after_message(parent):
    # By id: the test holds no greenlet itself (an idle one is held by the pool).
    snowg.send(parent, ("up", snowg.self(), id(greenlet.getcurrent())))
    snowg.receive()
    snowg.exit("crash")


def test_a_trapping_parent_gets_each_exit_and_its_children_reuse_the_greenlet():
    snowg.trap_exit(True)
    try:
        me = snowg.self()
        pid = snowg.spawn_link(_crash_after_message, me)
        _up, _pid, glet = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
        reused = 0
        for _ in range(3 * _scheduler.HANDOFF_LIMIT):  # past the limit: through the hub too
            snowg.send(pid, "go")
            msg = snowg.receive(lambda m: type(m) is Exit, W)
            assert (msg.pid, msg.reason) == (pid, "crash")
            assert not snowg.is_alive(pid)
            # The ended greenlet is idle (the pool holds it, so its id names it alone)...
            assert any(id(g) == glet for g in _process._idle)
            pid = snowg.spawn_link(_crash_after_message, me)
            _up, got, new_glet = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
            assert got == pid
            reused += new_glet == glet  # ...and the next child runs on it
            glet = new_glet
        assert reused == 3 * _scheduler.HANDOFF_LIMIT
        assert snowg.process_info(me, ("links",))["links"] == [pid]
        snowg.unlink(pid)
        snowg.exit(pid, "kill")
    finally:
        snowg.trap_exit(False)


def _chain(parent, left, fired):
    """Spawn the next link of the chain and end, until the timer has fired (or ``left`` runs out)."""
    if fired or left == 0:
        snowg.send(parent, ("chain done", left))
        return
    snowg.spawn(_chain, parent, left - 1, fired)


def test_a_chain_of_ending_processes_does_not_starve_a_timer():
    # Each process ends right after making the next one ready: with direct
    # switches only, the hub's loop would never run and the timer never fire.
    me = snowg.self()
    fired = []
    timer = gevent.get_hub().loop.timer(0.001)
    timer.start(fired.append, True)
    try:
        start = 1_000_000
        snowg.spawn(_chain, me, start, fired)
        _done, left = snowg.receive(lambda m: type(m) is tuple and m[0] == "chain done", 120)
        assert fired == [True]
        assert left > 0  # it fired while the chain ran
    finally:
        timer.close()


def _reports(parent, tag):
    snowg.send(parent, tag)


def _spawns_three_then_ends(parent):
    for tag in ("a", "b", "c"):
        snowg.spawn(_reports, parent, tag)


def test_processes_made_ready_by_an_ending_one_run_in_order():
    me = snowg.self()
    pid, ref = snowg.spawn_monitor(_spawns_three_then_ends, me)
    got = [snowg.receive(timeout=W) for _ in range(4)]
    downs = [m for m in got if type(m) is Down]
    assert [m for m in got if type(m) is not Down] == ["a", "b", "c"]
    assert len(downs) == 1 and is_down(ref)(downs[0]) and downs[0].reason == "normal"


def test_a_monitor_of_each_ended_process_gets_its_down():
    me = snowg.self()
    refs = []
    for i in range(2 * _scheduler.HANDOFF_LIMIT):
        _pid, ref = snowg.spawn_monitor(_reports, me, i)
        refs.append(ref)
    seen = [snowg.receive(lambda m: type(m) is int, W) for _ in refs]
    assert sorted(seen) == list(range(len(refs)))
    for ref in refs:
        assert snowg.receive(is_down(ref), W).reason == "normal"
    assert not _process._idle or all(g._snowg_proc is None for g in _process._idle)
