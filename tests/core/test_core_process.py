"""Process-layer behaviour beyond the numbered rules: receive, timers, info, crash reports."""

from __future__ import annotations

import logging
import time

import gevent
import pytest

import snowg
from snowg import Crash, Down, Exit, NoProc, Timeout
from snowg._core import ProcessExit
from snowg._core.runtime import rt, table_sizes
from support import forward_until_stop, is_down

W = 5.0


def watch(pid):
    ref = snowg.monitor(pid)
    return lambda: snowg.receive(is_down(ref), timeout=W).reason


def idle():
    snowg.receive()


def echo_loop(parent):
    snowg.send(parent, ("ready", snowg.self()))
    forward_until_stop(parent, "got")


def start_echo():
    pid = snowg.spawn(echo_loop, snowg.self())
    assert snowg.receive(lambda m: m == ("ready", pid), timeout=W)
    return pid


def next_from(pid):
    return snowg.receive(lambda m: type(m) is tuple and m[:2] == ("got", pid), timeout=W)[2]


def kill_and_wait(*pids):
    waits = [watch(p) for p in pids]
    for p in pids:
        snowg.exit(p, "kill")
    return [w() for w in waits]


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    yield
    me = snowg.self()
    left = [p for p in snowg.processes() if p != me]
    kill_and_wait(*left)
    assert not left, f"test left processes behind: {left}"
    sizes = table_sizes()
    assert sizes["names"] == 0 and sizes["timers"] == 0 and not rt.timers, sizes


# ---------------------------------------------------------- selective receive


def test_selective_receive_three_kinds_keeps_the_rest_in_order(me):
    for i in range(5):
        snowg.send(me, f"s{i}")
        snowg.send(me, ("t", i))
        snowg.send(me, {"d": i})
    is_tuple = lambda m: type(m) is tuple  # noqa: E731
    is_dict = lambda m: type(m) is dict  # noqa: E731
    assert snowg.receive(is_tuple, timeout=0) == ("t", 0)
    assert snowg.receive(is_dict, timeout=0) == {"d": 0}
    assert snowg.receive(is_tuple, timeout=0) == ("t", 1)
    assert snowg.receive(timeout=0) == "s0"
    assert snowg.receive(lambda m: m == {"d": 3}, timeout=0) == {"d": 3}
    assert snowg.process_info(me)["messages"] == [
        "s1",
        {"d": 1},
        "s2",
        ("t", 2),
        {"d": 2},
        "s3",
        ("t", 3),
        "s4",
        ("t", 4),
        {"d": 4},
    ]
    assert [snowg.receive(is_dict, timeout=0) for _ in range(3)] == [{"d": 1}, {"d": 2}, {"d": 4}]
    assert [snowg.receive(is_tuple, timeout=0) for _ in range(3)] == [("t", 2), ("t", 3), ("t", 4)]
    assert snowg.flush_messages() == ["s1", "s2", "s3", "s4"]


def test_selective_receive_while_blocked_scans_new_messages(me):
    """A blocked receive skips non-matching arrivals and takes the first match."""

    def body():
        m = snowg.receive(lambda m: type(m) is int and m > 2)
        snowg.send(me, ("took", m))
        snowg.receive(lambda m: m == "end")
        snowg.send(me, ("rest", snowg.flush_messages()))

    p = snowg.spawn(body)
    wp = watch(p)
    for m in ("a", 1, "b", 2, 3, "c", 4):
        snowg.send(p, m)
        gevent.sleep(0)  # let it scan each arrival separately
    assert snowg.receive(timeout=W) == ("took", 3)
    snowg.send(p, "end")
    assert snowg.receive(timeout=W) == ("rest", ["a", 1, "b", 2, "c", 4])
    assert wp() == "normal"


# ------------------------------------------------------------- receive timeouts


def test_receive_timeout_zero_polls(me):
    with pytest.raises(Timeout):
        snowg.receive(timeout=0)
    snowg.send(me, "x")
    with pytest.raises(Timeout):
        snowg.receive(lambda m: m == "y", timeout=0)
    assert snowg.receive(timeout=0) == "x"


def test_receive_timeout_raises_after_about_that_time(me):
    t0 = time.perf_counter()
    with pytest.raises(Timeout):
        snowg.receive(timeout=0.2)
    elapsed = time.perf_counter() - t0
    assert 0.18 <= elapsed < 2.0


def test_receive_returns_a_message_that_arrives_before_the_timeout(me):
    snowg.send_after(0.02, me, "soon")
    t0 = time.perf_counter()
    assert snowg.receive(timeout=W) == "soon"
    assert time.perf_counter() - t0 < W / 2


def test_receive_timeout_leaves_process_schedulable(me):
    def body():
        for _ in range(20):
            try:
                snowg.receive(lambda m: m == "never", timeout=0.001)
            except Timeout:
                pass
        snowg.send(me, "timed out 20 times")
        got = [snowg.receive(timeout=W) for _ in range(3)]
        snowg.send(me, ("got", got))

    p = snowg.spawn(body)
    wp = watch(p)
    assert snowg.receive(lambda m: m == "timed out 20 times", timeout=W)
    for i in range(3):
        snowg.send(p, i)
    assert snowg.receive(timeout=W) == ("got", [0, 1, 2])
    assert wp() == "normal"


def test_receive_timeout_and_message_racing(me):
    """The timer fires while a wake-up for a message is pending: the message wins once,
    and the stale wake-up does not disturb the next receives."""

    def body():
        snowg.send(me, "parked")
        try:
            m = snowg.receive(timeout=0.05)
        except Timeout:
            m = "timeout"
        snowg.send(me, ("first", m))
        snowg.send(me, ("second", snowg.receive(timeout=W)))
        snowg.send(me, ("third", snowg.receive(timeout=W)))

    p = snowg.spawn(body)
    wp = watch(p)
    snowg.send_after(0.05, p, "msg")  # due just before p's receive timer
    assert snowg.receive(timeout=W) == "parked"
    deadline = time.perf_counter() + 0.1
    while time.perf_counter() < deadline:  # no yield: both timers expire in one loop turn
        pass
    assert snowg.receive(timeout=W) == ("first", "msg")
    snowg.send(p, "two")
    assert snowg.receive(timeout=W) == ("second", "two")
    snowg.send(p, "three")
    assert snowg.receive(timeout=W) == ("third", "three")
    assert wp() == "normal"


# ----------------------------------------------------------------- process_info


def test_process_info_fields(me):
    other = start_echo()

    def body():
        snowg.trap_exit(True)
        snowg.link(me)
        ref = snowg.monitor(other)
        snowg.send(me, ("ref", ref))
        snowg.receive(lambda m: m == "go")
        snowg.receive()

    p = snowg.spawn(body)
    info = snowg.process_info(p)
    assert info["status"] == "runnable"
    ref = snowg.receive(lambda m: type(m) is tuple and m[0] == "ref", timeout=W)[1]
    snowg.register("info_test", p)
    mref = snowg.monitor(p)
    for m in ("m1", "m2", "m3"):
        snowg.send(p, m)
    gevent.sleep(0)  # p scans the new messages and parks again
    info = snowg.process_info(p)
    assert info["status"] == "waiting"
    assert info["message_queue_len"] == 3
    assert info["messages"] == ["m1", "m2", "m3"]
    assert info["links"] == [me]
    assert info["monitors"] == [other]
    assert info["monitored_by"] == [me]
    assert info["trap_exit"] is True
    assert info["registered_name"] == "info_test"
    assert snowg.process_info(other)["monitored_by"] == [p]
    mine = snowg.process_info(me)
    assert mine["status"] == "running"
    assert mine["links"] == [p]
    assert mine["monitors"] == [p]
    assert mine["trap_exit"] is False and mine["registered_name"] is None
    snowg.demonitor(mref)
    snowg.unlink(p)
    kill_and_wait(p, other)
    assert snowg.process_info(p) is None
    assert ref is not None


# ------------------------------------------------------------ adopted greenlets


def test_self_in_main_greenlet(me):
    assert isinstance(me, snowg.Pid)
    assert snowg.self() == me
    assert snowg.is_alive(me)
    assert snowg.processes() == [me]
    assert snowg.process_info(me)["status"] == "running"


def test_plain_gevent_greenlet_is_adopted_and_can_send(me):
    dest = start_echo()

    def plain():
        snowg.send(dest, ("hello from", snowg.self()))
        snowg.receive()  # now a process with a mailbox too

    g = gevent.spawn(plain)
    m = next_from(dest)
    assert m[0] == "hello from" and isinstance(m[1], snowg.Pid)
    gpid = m[1]
    assert gpid != me and snowg.is_alive(gpid)
    wg = watch(gpid)
    snowg.send(gpid, "end")
    assert wg() == "normal"
    assert g.dead and g.successful()
    kill_and_wait(dest)


def test_plain_gevent_greenlet_crash_and_kill_reasons(me, caplog):
    caplog.set_level(logging.ERROR, logger="snowg")

    def crashes():
        snowg.send(me, snowg.self())
        snowg.receive()
        raise KeyError("plain")

    g = gevent.spawn(crashes)
    gpid = snowg.receive(timeout=W)
    wg = watch(gpid)
    snowg.send(gpid, "go")
    reason = wg()
    assert type(reason) is Crash and reason.type == "KeyError"
    g.join(W)
    assert len([r for r in caplog.records if r.name == "snowg"]) == 1

    g2 = gevent.spawn(idle_then_report, me)
    g2pid = snowg.receive(timeout=W)
    w2 = watch(g2pid)
    g2.kill(block=False)  # gevent's own kill (GreenletExit)
    assert w2() == "killed"


def idle_then_report(parent):
    snowg.send(parent, snowg.self())
    snowg.receive()


def test_exit_signal_ends_an_adopted_gevent_greenlet(me):
    g = gevent.spawn(idle_then_report, me)
    gpid = snowg.receive(timeout=W)
    wg = watch(gpid)
    snowg.exit(gpid, "stop it")
    assert wg() == "stop it"
    g.join(W)
    assert g.dead


# ------------------------------------------------- except Exception cannot block


def stubborn(parent):
    snowg.send(parent, "ready")
    while True:
        try:
            snowg.receive()
        except Exception:  # noqa: BLE001 - the point of the test
            snowg.send(parent, "swallowed")


def test_except_exception_does_not_stop_kill(me):
    p = snowg.spawn(stubborn, me)
    assert snowg.receive(timeout=W) == "ready"
    assert kill_and_wait(p) == ["killed"]
    with pytest.raises(Timeout):
        snowg.receive(lambda m: m == "swallowed", timeout=0)


def test_except_exception_does_not_stop_linked_crash(me):
    p = snowg.spawn(stubborn, me)
    assert snowg.receive(timeout=W) == "ready"
    wp = watch(p)

    def crasher():
        snowg.link(p)
        raise RuntimeError("linked crash")

    snowg.spawn(crasher)
    reason = wp()
    assert type(reason) is Crash and reason.type == "RuntimeError"
    with pytest.raises(Timeout):
        snowg.receive(lambda m: m == "swallowed", timeout=0)


def test_except_exception_does_not_stop_exit_in_main(me):
    try:
        snowg.exit("bye")
    except Exception:  # noqa: BLE001
        pytest.fail("exit() was caught by except Exception")
    except ProcessExit as e:
        assert e.reason == "bye"
    assert not snowg.is_alive(me)


# ------------------------------------------------------- spawn_link / monitor


def crash_now():
    raise ValueError("at once")


def test_spawn_link_child_crashing_at_once_ends_the_parent(me):
    def parent():
        snowg.spawn_link(crash_now)
        snowg.receive()

    p = snowg.spawn(parent)
    reason = watch(p)()
    assert type(reason) is Crash and reason.type == "ValueError" and reason.message == "at once"


def test_spawn_link_child_crashing_at_once_notifies_trapping_parent(trapping_me):
    c = snowg.spawn_link(crash_now)
    m = snowg.receive(timeout=W)
    assert type(m) is Exit and m.pid == c and m.reason.type == "ValueError"
    assert snowg.process_info(trapping_me)["links"] == []


def test_spawn_link_from_main_process_crash_raises_process_exit(me):
    snowg.spawn_link(crash_now)
    with pytest.raises(ProcessExit) as ei:
        snowg.receive(timeout=W)
    assert type(ei.value.reason) is Crash
    assert not snowg.is_alive(me)


def test_spawn_monitor_of_child_ending_at_once_gives_one_down(me):
    pid, ref = snowg.spawn_monitor(lambda: None)
    assert snowg.receive(timeout=W) == Down(ref, pid, "normal")
    pid2, ref2 = snowg.spawn_monitor(crash_now)
    d = snowg.receive(timeout=W)
    assert d.ref == ref2 and d.pid == pid2 and d.reason.type == "ValueError"
    # a round trip through a later process: nothing else arrives
    pid3, ref3 = snowg.spawn_monitor(snowg.send, me, "later")
    assert snowg.receive(timeout=W) == "later"
    assert snowg.receive(timeout=W) == Down(ref3, pid3, "normal")
    with pytest.raises(Timeout):
        snowg.receive(timeout=0)
    assert snowg.process_info(me)["monitors"] == []


# ------------------------------------------------------------------ timers


def test_send_after_delivers_and_cancel_after_firing_is_false(me):
    t = snowg.send_after(0.01, me, "tick")
    assert snowg.receive(timeout=W) == "tick"
    assert snowg.cancel_timer(t) is False
    assert not rt.timers


def test_cancel_timer_before_firing(me):
    t = snowg.send_after(0.01, me, "cancelled")
    assert snowg.cancel_timer(t) is True
    assert snowg.cancel_timer(t) is False
    snowg.send_after(0.05, me, "later")
    assert snowg.receive(timeout=W) == "later"
    with pytest.raises(Timeout):
        snowg.receive(timeout=0)


def test_send_after_to_a_name(me):
    p = start_echo()
    snowg.register("timer_dest", p)
    snowg.send_after(0.01, "timer_dest", "by name")
    assert next_from(p) == "by name"
    kill_and_wait(p)


def test_timers_to_a_process_are_cancelled_when_it_ends(me):
    p = start_echo()
    t1 = snowg.send_after(10, p, "never")
    t2 = snowg.send_after(20, p, "never either")
    assert len(rt.timers) == 2
    kill_and_wait(p)
    assert not rt.timers
    assert snowg.cancel_timer(t1) is False and snowg.cancel_timer(t2) is False


# ---------------------------------------------------------------- crash reports


def snowg_errors(caplog):
    return [r for r in caplog.records if r.name == "snowg" and r.levelno >= logging.ERROR]


def named_crasher(parent):
    snowg.register("crashy", snowg.self())
    snowg.send(parent, "registered")
    snowg.receive()
    raise ZeroDivisionError("report me")


def test_crash_report_one_error_record_with_pid_name_and_traceback(me, caplog):
    caplog.set_level(logging.DEBUG, logger="snowg")
    partner = start_echo()
    p = snowg.spawn(named_crasher, me)
    assert snowg.receive(lambda m: m == "registered", timeout=W)
    snowg.link(p)
    snowg.unlink(p)
    wp, wpartner = watch(p), watch(partner)

    def link_them():
        snowg.link(partner)
        snowg.link(p)
        snowg.receive()

    linked = snowg.spawn(link_them)
    wl = watch(linked)
    gevent.sleep(0)
    snowg.send(p, "crash")
    reason = wp()
    assert wl() == reason and wpartner() == reason  # propagated, not logged again
    errors = snowg_errors(caplog)
    assert len(errors) == 1
    text = errors[0].getMessage()
    assert str(p) in text
    assert "crashy" in text
    assert "Traceback (most recent call last)" in text
    assert "named_crasher" in text and "ZeroDivisionError: report me" in text


def test_no_crash_report_for_normal_or_shutdown_exits(me, caplog):
    caplog.set_level(logging.DEBUG, logger="snowg")
    waits = []
    for body in (
        lambda: None,
        lambda: snowg.exit("normal"),
        lambda: snowg.exit("shutdown"),
        lambda: snowg.exit(("shutdown", 1)),
    ):
        waits.append(watch(snowg.spawn(body)))
    p = start_echo()
    waits.append(watch(p))
    snowg.exit(p, "shutdown")
    assert [w() for w in waits] == ["normal", "normal", "shutdown", ("shutdown", 1), "shutdown"]
    assert snowg_errors(caplog) == []


def test_crash_reason_names_exception_and_carries_traceback(me):
    def deep():
        def inner_function_name():
            raise LookupError("where")

        inner_function_name()

    reason = watch(snowg.spawn(deep))()
    assert type(reason) is Crash
    assert "LookupError" in str(reason) and "where" in str(reason)
    assert "inner_function_name" in reason.traceback
    assert reason.traceback.rstrip().endswith("LookupError: where")


# ------------------------------------------------------------------ misc API


def test_send_to_dead_pid_and_exit_to_dead_pid_are_silent(me):
    p = snowg.spawn(lambda: None)
    assert watch(p)() == "normal"
    snowg.send(p, "x")
    snowg.exit(p, "kill")
    assert snowg.is_alive(p) is False


def test_trap_exit_returns_previous_value(me):
    assert snowg.trap_exit(True) is False
    assert snowg.trap_exit(True) is True
    assert snowg.trap_exit(False) is True
    assert snowg.process_info(me)["trap_exit"] is False


def test_unregister_unknown_name_raises(me):
    with pytest.raises(NoProc):
        snowg.unregister("nope")


# ------------------------------------------------------------ fresh interpreter

_FIRST_PROGRAM = """
import snowg
me = snowg.self()
p = snowg.spawn(snowg.receive)
snowg.spawn(snowg.send, me, "hello")
print(snowg.receive(timeout=5))
snowg.exit(p, "kill")
ref = snowg.monitor(p)
print(snowg.receive(timeout=5).reason)
"""


@pytest.mark.timeout(60)
def test_first_receive_in_a_fresh_program_before_the_hub_ever_ran():
    """The very first receive of a program hands off to processes before the gevent hub
    has started; a process ending then must not start the hub with a bad argument."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FIRST_PROGRAM], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hello", "killed"]
