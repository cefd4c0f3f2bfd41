"""Supervisor (snowg.supervisor): semantics rules 13-20, modelled on OTP's supervisor_SUITE.

Children report ``('started', id)`` and ``('stopped', id, reason)`` to the
test process, which checks the exact sequence. Synchronisation is by
messages (monitors, calls) only; every test is time-bounded.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, ClassVar, Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snowg
import snowg.sys
from snowg import ChildSpec, Down, Exit, GenServer, NoProc, StartError, supervisor, telemetry
from snowg.supervisor import (
    AlreadyPresent,
    AlreadyStarted,
    NotFound,
    Restarting,
    Running,
    SimpleOneForOne,
)
from snowg.supervisor._state import add_restart
from support import no_message, wait_down

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ helpers


def member(rec: Any, cid: Any, trap: bool = True) -> None:
    """A child: reports its start, obeys ('exit', reason), reports the exit signal it traps."""
    snowg.trap_exit(trap)
    snowg.send(rec, ("started", cid))
    while True:
        m = snowg.receive()
        if type(m) is Exit:
            snowg.send(rec, ("stopped", cid, m.reason))
            snowg.exit(m.reason)
        elif m[0] == "exit":
            if m[1] == "normal":
                return
            snowg.exit(m[1])


def spec(cid: Any, restart: str = "permanent", **kw: Any) -> ChildSpec:
    return ChildSpec(cid, (member, (snowg.self(), cid)), restart=restart, **kw)


def events(n: int) -> List[Tuple[Any, ...]]:
    """The next ``n`` started/stopped reports, as (kind, id)."""
    out = []
    for _ in range(n):
        m = snowg.receive(lambda m: type(m) is tuple and m and m[0] in ("started", "stopped"), 5)
        out.append((m[0], m[1]))
    return out


def no_more_events() -> None:
    no_message(lambda m: type(m) is tuple and m and m[0] in ("started", "stopped"))


def end_child(pid: Any, reason: Any) -> None:
    """Make a child end with ``reason`` and wait until it has (its supervisor has the Exit then)."""
    ref = snowg.monitor(pid)
    snowg.send(pid, ("exit", reason))
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5)


def pids(sup: Any) -> Dict[Any, Any]:
    return {cid: pid for cid, pid, _t in supervisor.which_children(sup)}


def stop_sup(sup: Any) -> Any:
    snowg.unlink(sup)
    ref = snowg.monitor(sup)
    snowg.exit(sup, "shutdown")
    return snowg.receive(lambda m: type(m) is Down and m.ref == ref, 10).reason


def alone() -> bool:
    me = snowg.self()  # first: it may adopt this greenlet as a process
    return snowg.processes() == [me]


def assert_shut_down(sup: Any, *stopped: Any) -> None:
    """``sup`` (linked, this process trapping exits) ended with 'shutdown' after stopping the children ``stopped``
    in this order, and no process is left."""
    assert snowg.receive(lambda m: type(m) is Exit, 5) == Exit(sup, "shutdown")
    assert events(len(stopped)) == [("stopped", cid) for cid in stopped]
    assert alone()


# ------------------------------------------------------ start and stop order


def test_children_start_in_order_and_stop_in_reverse():
    """semantics rules 13, 14."""
    sup = supervisor.start_link([spec("a"), spec("b"), spec("c")])
    assert events(3) == [("started", "a"), ("started", "b"), ("started", "c")]
    assert [c for c, _p, _t in supervisor.which_children(sup)] == ["a", "b", "c"]
    assert stop_sup(sup) == "shutdown"
    assert events(3) == [("stopped", "c"), ("stopped", "b"), ("stopped", "a")]
    assert alone()


def test_failed_start_names_the_child_and_stops_the_earlier_ones_in_reverse():
    """semantics rule 13: StartError names the child; the caller (not trapping) is not killed."""

    class Broken(GenServer):
        def init(self):
            raise RuntimeError("cannot start")

    with pytest.raises(StartError) as ei:
        supervisor.start_link([spec("a"), spec("b"), ChildSpec("c", (Broken, ())), spec("d")])
    assert ei.value.child_id == "c"
    assert ei.value.reason.type == "RuntimeError"
    assert events(4) == [("started", "a"), ("started", "b"), ("stopped", "b"), ("stopped", "a")]
    no_more_events()
    assert alone()
    info = snowg.process_info(snowg.self())
    assert info["message_queue_len"] == 0 and info["links"] == []


def test_failed_start_of_a_nested_supervisor_names_the_grandchild():
    class Refuse(GenServer):
        def init(self):
            return ("stop", "no")

    snowg.trap_exit(True)
    with pytest.raises(StartError) as ei:
        supervisor.start_link([spec("a"), supervisor.child_spec("inner", [ChildSpec("g", (Refuse, ()))])])
    assert ei.value.child_id == "inner"
    assert ei.value.reason == ("failed_to_start_child", "g", "no")
    assert events(2) == [("started", "a"), ("stopped", "a")]
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0  # no Exit either
    assert alone()


def test_genserver_child_is_started_synchronously():
    class Slowish(GenServer):
        def init(self, rec):
            snowg.send(rec, ("started", "gs"))
            return rec

    sup = supervisor.start_link([ChildSpec("gs", (Slowish, (snowg.self(),))), spec("after")])
    assert events(2) == [("started", "gs"), ("started", "after")]
    stop_sup(sup)


def test_name_registers_the_supervisor():
    sup = supervisor.start_link([spec("a")], name="the_sup")
    assert snowg.whereis("the_sup") == sup
    assert supervisor.which_children("the_sup")[0][0] == "a"
    with pytest.raises(StartError) as ei:
        supervisor.start_link([], name="the_sup")
    assert ei.value.reason == ("already_started", sup)
    stop_sup(sup)
    assert snowg.whereis("the_sup") is None


# ---------------------------------------------- strategies x restart types

STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
RESTARTS = ["permanent", "transient", "temporary"]
REASONS = ["normal", "shutdown", ("shutdown", "why"), "crashed"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("restart", RESTARTS)
@pytest.mark.parametrize("reason", REASONS, ids=str)
def test_restart_type_decides_the_restart(strategy: str, restart: str, reason: Any):
    """semantics rules 15, for each strategy."""
    me = snowg.self()
    if strategy == "simple_one_for_one":
        sup = supervisor.start_link([ChildSpec("t", (member, (me,)), restart=restart)], strategy=strategy, intensity=5)
        pid = supervisor.start_child(sup, ["x"])
    else:
        sup = supervisor.start_link([spec("x", restart)], strategy=strategy, intensity=5)
        pid = pids(sup)["x"]
    assert events(1) == [("started", "x")]
    end_child(pid, reason)
    restarted = restart == "permanent" or (restart == "transient" and reason == "crashed")
    children = supervisor.which_children(sup)
    if restarted:
        assert events(1) == [("started", "x")]
        assert len(children) == 1 and children[0][1] not in (pid, None)
    elif strategy == "simple_one_for_one" or restart == "temporary":
        assert children == []  # semantics rule 15: a temporary child's spec goes with it
    else:
        assert children == [("x", None, "worker")]
    no_more_events()
    stop_sup(sup)


def test_one_for_one_restarts_only_the_failed_child():
    sup = supervisor.start_link([spec("a"), spec("b"), spec("c")])
    events(3)
    before = pids(sup)
    end_child(before["b"], "crashed")
    assert events(1) == [("started", "b")]
    after = pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
    stop_sup(sup)


def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order():
    """semantics rule 16."""
    sup = supervisor.start_link([spec("a"), spec("b"), spec("c"), spec("d")], strategy="one_for_all")
    events(4)
    end_child(pids(sup)["b"], "crashed")
    assert events(7) == [
        ("stopped", "d"),
        ("stopped", "c"),
        ("stopped", "a"),
        ("started", "a"),
        ("started", "b"),
        ("started", "c"),
        ("started", "d"),
    ]
    no_more_events()
    stop_sup(sup)


def test_rest_for_one_stops_the_later_ones_in_reverse_then_restarts_from_the_failed():
    """semantics rule 16."""
    sup = supervisor.start_link([spec("a"), spec("b"), spec("c"), spec("d")], strategy="rest_for_one")
    events(4)
    a = pids(sup)["a"]
    end_child(pids(sup)["b"], "crashed")
    assert events(5) == [
        ("stopped", "d"),
        ("stopped", "c"),
        ("started", "b"),
        ("started", "c"),
        ("started", "d"),
    ]
    assert pids(sup)["a"] == a
    no_more_events()
    stop_sup(sup)


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_temporary_bystanders_are_not_restarted(strategy: str):
    """semantics rule 15: not even when a sibling's failure takes them down."""
    sup = supervisor.start_link([spec("a"), spec("tmp", "temporary"), spec("c", "transient")], strategy=strategy)
    events(3)
    end_child(pids(sup)["a"], "crashed")
    # Both strategies stop everything after a (c, then tmp), then start a and c only.
    assert events(4) == [("stopped", "c"), ("stopped", "tmp"), ("started", "a"), ("started", "c")]
    assert [c for c, _p, _t in supervisor.which_children(sup)] == ["a", "c"]
    no_more_events()
    stop_sup(sup)


def test_exit_of_a_sibling_dying_during_the_restart_is_consumed():
    """Exits that arrive while children are being stopped are not handled as crashes later."""
    sup = supervisor.start_link([spec("a"), spec("b"), spec("c")], strategy="one_for_all", intensity=1)
    events(3)
    p = pids(sup)
    ra, rb = snowg.monitor(p["a"]), snowg.monitor(p["b"])
    snowg.send(p["a"], ("exit", "crashed"))
    snowg.send(p["b"], ("exit", "crashed"))  # both Exits reach the supervisor
    for ref in (ra, rb):
        snowg.receive(lambda m, ref=ref: type(m) is Down and m.ref == ref, 5)
    # One restart (intensity 1 allows it): c is stopped, b is found dead already.
    assert events(4) == [("stopped", "c"), ("started", "a"), ("started", "b"), ("started", "c")]
    assert snowg.is_alive(sup)
    assert supervisor.count_children(sup)["active"] == 3
    no_more_events()
    stop_sup(sup)


# --------------------------------------------------------------- intensity


def _add(restarts, now, period, intensity):
    """add_restart on a copy of ``restarts``: (the window after it, allowed)."""
    window = deque(restarts)
    ok = add_restart(window, now, period, intensity)
    return tuple(window), ok


def test_add_restart_window_includes_its_boundary():
    assert _add((), 0.0, 5.0, 1) == ((0.0,), True)
    assert _add((0.0,), 5.0, 5.0, 1) == ((0.0, 5.0), False)  # 5 s old: still inside
    assert _add((0.0,), 5.001, 5.0, 1) == ((5.001,), True)
    assert _add((), 0.0, 5.0, 0) == ((0.0,), False)


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=4, allow_nan=False), max_size=30),
    step=st.floats(min_value=0, max_value=12, allow_nan=False),
    period=st.floats(min_value=0, max_value=10, allow_nan=False),
    intensity=st.integers(min_value=0, max_value=40),
)
def test_add_restart_is_the_window_rule_for_restarts_in_time_order(gaps, step, period, intensity):
    """It drops only the oldest entries; the result is the filter over the whole window, exactly."""
    times, now = [], 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    restarts = tuple(times)
    now += step
    expected = tuple(t for t in restarts if now - t <= period) + (now,)
    assert _add(restarts, now, period, intensity) == (expected, len(expected) <= intensity)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=4, allow_nan=False), min_size=1, max_size=60),
    period=st.floats(min_value=0, max_value=10, allow_nan=False),
    intensity=st.integers(min_value=0, max_value=40),
)
def test_add_restart_in_place_over_a_run_of_restarts_is_the_filter_rule(gaps, period, intensity):
    """One window updated restart after restart (as a supervisor does) equals the filter each time."""
    window: deque = deque()
    times, now = [], 0.0
    for gap in gaps:
        now += gap
        expected = tuple(t for t in times if now - t <= period) + (now,)
        times.append(now)
        assert add_restart(window, now, period, intensity) == (len(expected) <= intensity)
        assert tuple(window) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_intensity_exactly_at_the_limit_survives_and_one_past_ends_it(caplog):
    """semantics rule 17."""
    clock = Clock()
    snowg.trap_exit(True)
    sup = supervisor.start_link([spec("a"), spec("b")], intensity=2, period=10, _clock=clock)
    events(2)
    end_child(pids(sup)["a"], "crashed")
    events(1)
    clock.now += 10  # the first restart is exactly `period` old: still in the window
    end_child(pids(sup)["a"], "crashed")
    events(1)
    assert snowg.is_alive(sup)  # 2 restarts in the window: at the limit
    with caplog.at_level(logging.ERROR, logger="snowg"):
        end_child(pids(sup)["b"], "crashed")  # a third within 10 s: one past
        assert snowg.receive(lambda m: type(m) is Exit, 5) == Exit(sup, "shutdown")
    assert events(1) == [("stopped", "a")]
    assert "reached_max_restart_intensity" in caplog.text
    assert alone()


def test_restarts_older_than_the_period_fall_out_of_the_window():
    clock = Clock()
    sup = supervisor.start_link([spec("a")], intensity=1, period=10, _clock=clock)
    events(1)
    for _ in range(5):
        end_child(pids(sup)["a"], "crashed")
        assert events(1) == [("started", "a")]
        clock.now += 10.001
    assert snowg.is_alive(sup)
    stop_sup(sup)


def test_a_sliding_window_drops_only_what_left_it_restart_after_restart():
    """The window the supervisor keeps (in place) over a run of restarts: older ones leave, the boundary stays."""
    clock = Clock()
    snowg.trap_exit(True)
    sup = supervisor.start_link([spec("a")], intensity=3, period=10, _clock=clock)
    events(1)
    for t in (0.0, 4.0, 8.0, 10.5):  # at 10.5 the restart at 0 has left: 4, 8, 10.5 remain
        clock.now = 100.0 + t
        end_child(pids(sup)["a"], "crashed")
        assert events(1) == [("started", "a")]
    assert snowg.is_alive(sup)
    assert snowg.sys.get_status(sup)["state"]["recent_restarts"] == 3
    clock.now = 114.0  # the restart at 4 is exactly `period` old: still inside, so 4 in the window
    end_child(pids(sup)["a"], "crashed")
    assert snowg.receive(lambda m: type(m) is Exit and m.pid == sup, 5) == Exit(sup, "shutdown")
    assert alone()


def test_restart_events_each_carry_their_own_metadata():
    """The telemetry metadata is a dict of its own per event (a handler may keep it), with its child's id."""
    me = snowg.self()
    kept: List[Dict[str, Any]] = []

    def handler(event: Any, measurements: Any, metadata: Dict[str, Any], config: Any) -> None:
        kept.append(metadata)
        snowg.send(me, ("restart_event", metadata["child_id"]))

    telemetry.attach("test.supervisor.meta", telemetry.SUPERVISOR_RESTART, handler)
    try:
        sup = supervisor.start_link([spec("a"), spec("b")], intensity=5, period=10)
        events(2)
        for cid in ("a", "b", "a"):
            end_child(pids(sup)[cid], "crashed")
            assert snowg.receive(lambda m: type(m) is tuple and m[0] == "restart_event", 5) == ("restart_event", cid)
            assert events(1) == [("started", cid)]
        assert [m["child_id"] for m in kept] == ["a", "b", "a"]
        assert len({id(m) for m in kept}) == 3
        for m in kept:
            assert {k: v for k, v in m.items() if k != "child_id"} == {
                "supervisor": sup,
                "name": None,
                "strategy": "one_for_one",
                "intensity": 5,
                "period": 10.0,
            }
        stop_sup(sup)
    finally:
        telemetry.detach("test.supervisor.meta")


def test_intensity_zero_ends_on_the_first_restart():
    snowg.trap_exit(True)
    sup = supervisor.start_link([spec("a"), spec("b")], intensity=0)
    events(2)
    end_child(pids(sup)["b"], "crashed")
    assert_shut_down(sup, "a")


def test_ends_that_are_not_restarts_do_not_count():
    """Only real restarts count (semantics rule 17)."""
    sup = supervisor.start_link([spec("t", "temporary"), spec("tr", "transient"), spec("p")], intensity=0)
    events(3)
    end_child(pids(sup)["t"], "crashed")
    end_child(pids(sup)["tr"], "normal")
    assert snowg.is_alive(sup) and supervisor.count_children(sup)["active"] == 1
    stop_sup(sup)


class Flaky(GenServer):
    """Fails to start while ``plan`` says so; reports every attempt."""

    plan: ClassVar[Dict[str, List[bool]]] = {}

    def init(self, rec, key):
        ok = Flaky.plan[key].pop(0) if Flaky.plan[key] else True
        snowg.send(rec, ("attempt", key, ok))
        if not ok:
            return ("stop", "not_now")
        return None

    def handle_cast(self, req, state):
        return ("stop", req, state)


def attempts(n: int) -> List[bool]:
    return [snowg.receive(lambda m: type(m) is tuple and m[0] == "attempt", 5)[2] for _ in range(n)]


def test_failed_restart_is_retried_and_each_retry_counts():
    """semantics rule 17: retried through the supervisor's own mailbox; each retry counts."""
    Flaky.plan["f"] = [True] + [False] * 10
    snowg.trap_exit(True)
    sup = supervisor.start_link([ChildSpec("f", (Flaky, (snowg.self(), "f")))], intensity=3, period=60)
    assert attempts(1) == [True]
    snowg.cast(pids(sup)["f"], "crashed")
    # restart 1 fails, retry 2 fails, retry 3 fails, retry 4 is one past intensity 3.
    assert attempts(3) == [False, False, False]
    assert_shut_down(sup)


def test_failed_restart_shows_restarting_and_recovers():
    Flaky.plan["g"] = [True, False, False, False, False, True]
    sup = supervisor.start_link([ChildSpec("g", (Flaky, (snowg.self(), "g")))], intensity=10)
    attempts(1)
    g = pids(sup)["g"]
    ref = snowg.monitor(g)
    snowg.cast(g, "crashed")
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5)
    # Our call is queued behind the Exit, and each retry goes behind the call
    # that arrived while the previous attempt ran: the API keeps answering.
    assert supervisor.which_children(sup) == [("g", "restarting", "worker")]
    assert supervisor.count_children(sup) == {"specs": 1, "active": 0, "supervisors": 0, "workers": 1}
    with pytest.raises(Restarting):
        supervisor.restart_child(sup, "g")
    with pytest.raises(Restarting):
        supervisor.delete_child(sup, "g")
    assert attempts(5) == [False, False, False, False, True]
    assert isinstance(pids(sup)["g"], snowg.Pid)
    stop_sup(sup)


def test_terminate_child_cancels_a_pending_retry():
    Flaky.plan["h"] = [True, False, True]
    sup = supervisor.start_link([ChildSpec("h", (Flaky, (snowg.self(), "h")))], intensity=5)
    attempts(1)
    h = pids(sup)["h"]
    ref = snowg.monitor(h)
    snowg.cast(h, "crashed")
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5)
    supervisor.terminate_child(sup, "h")  # between the failed restart and its retry
    assert attempts(1) == [False]
    assert supervisor.which_children(sup) == [("h", None, "worker")]
    with pytest.raises(snowg.Timeout):
        snowg.receive(lambda m: type(m) is tuple and m[0] == "attempt", 0)
    stop_sup(sup)


# ------------------------------------------------------------------ shutdown


def stubborn(rec: Any, cid: Any) -> None:
    """Traps exits and ignores 'shutdown'."""
    snowg.trap_exit(True)
    snowg.send(rec, ("started", cid))
    while True:
        m = snowg.receive()
        if type(m) is Exit:
            snowg.send(rec, ("ignored", m.reason))


def test_child_ignoring_shutdown_is_killed_after_its_shutdown_time(caplog):
    """semantics rules 14, 20."""
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("s", (stubborn, (me, "s")), shutdown=0.1)])
    events(1)
    s = pids(sup)["s"]
    ref = snowg.monitor(s)
    with caplog.at_level(logging.ERROR, logger="snowg"):
        supervisor.terminate_child(sup, "s")
    assert snowg.receive(timeout=5) == ("ignored", "shutdown")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == "killed"
    assert "shutdown_error" in caplog.text and "killed" in caplog.text
    assert supervisor.which_children(sup) == [("s", None, "worker")]
    stop_sup(sup)


def test_brutal_kill_kills_at_once_without_shutdown_error(caplog):
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("s", (stubborn, (me, "s")), shutdown="brutal_kill")])
    events(1)
    s = pids(sup)["s"]
    with caplog.at_level(logging.ERROR, logger="snowg"):
        supervisor.terminate_child(sup, "s")
    assert wait_down(s) == "noproc"
    assert caplog.records == []
    with pytest.raises(snowg.Timeout):
        snowg.receive(lambda m: m[0] == "ignored", 0)
    stop_sup(sup)


def unlinker(rec: Any, cid: Any, trap: bool) -> None:
    """Unlinks itself from its supervisor: only the supervisor's monitor still sees it."""
    snowg.trap_exit(trap)
    for p in snowg.process_info(snowg.self())["links"]:
        snowg.unlink(p)
    snowg.send(rec, ("started", cid))
    while True:
        m = snowg.receive()
        if type(m) is Exit:
            snowg.send(rec, ("ignored", m.reason))


@pytest.mark.parametrize("trap", [False, True])
def test_child_that_unlinked_does_not_hang_the_shutdown(trap: bool):
    """semantics rule 14: the supervisor monitors the child it stops."""
    sup = supervisor.start_link([ChildSpec("u", (unlinker, (snowg.self(), "u", trap)), shutdown=0.2), spec("b")])
    events(2)
    u = pids(sup)["u"]
    assert stop_sup(sup) == "shutdown"
    assert events(1) == [("stopped", "b")]
    assert wait_down(u) == "noproc"
    assert alone()


def test_parent_exit_stops_children_and_the_supervisor_exits_with_that_reason():
    me = snowg.self()
    children = [spec("a"), spec("b")]  # reporting to this process

    def parent() -> None:
        snowg.send(me, ("sup", supervisor.start_link(children)))
        snowg.receive()

    p = snowg.spawn(parent)
    _t, sup = snowg.receive(lambda m: m[0] == "sup", 5)
    events(2)
    ref = snowg.monitor(sup)
    snowg.exit(p, "boom")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == "boom"
    assert [(k, c) for k, c in events(2)] == [("stopped", "b"), ("stopped", "a")]
    assert alone()


def test_trapping_genserver_child_runs_terminate_on_supervisor_shutdown():
    """semantics rule 22."""

    class Clean(GenServer):
        def init(self, rec):
            snowg.trap_exit(True)
            return rec

        def terminate(self, reason, rec):
            snowg.send(rec, ("stopped", "clean", reason))

    sup = supervisor.start_link([ChildSpec("clean", (Clean, (snowg.self(),)))])
    stop_sup(sup)
    assert snowg.receive(lambda m: m[0] == "stopped", 5) == ("stopped", "clean", "shutdown")


# ------------------------------------------------------------------ nesting


def tree(me: Any, top_intensity: int, mid_intensity: int) -> Any:
    leaf = supervisor.child_spec("leaf", [spec("w")], intensity=0)
    mid = supervisor.child_spec("mid", [leaf], intensity=mid_intensity)
    return supervisor.start_link([mid, spec("other")], intensity=top_intensity)


def test_escalation_through_three_levels_ends_the_tree():
    snowg.trap_exit(True)
    top = tree(snowg.self(), 0, 0)
    assert events(2) == [("started", "w"), ("started", "other")]
    mid = pids(top)["mid"]
    leaf = pids(mid)["leaf"]
    w = pids(leaf)["w"]
    end_child(w, "crashed")  # leaf: intensity 0 -> ends; mid: ends; top: ends
    assert snowg.receive(lambda m: type(m) is Exit, 5) == Exit(top, "shutdown")
    assert events(1) == [("stopped", "other")]
    assert alone()


def test_escalation_stops_at_the_level_that_can_restart():
    top = tree(snowg.self(), 1, 1)
    events(2)
    mid = pids(top)["mid"]
    leaf = pids(mid)["leaf"]
    end_child(pids(leaf)["w"], "crashed")  # leaf ends, mid restarts it (and its worker)
    assert events(1) == [("started", "w")]
    assert pids(top)["mid"] == mid and pids(mid)["leaf"] != leaf
    assert supervisor.count_children(mid) == {"specs": 1, "active": 1, "supervisors": 1, "workers": 0}
    assert stop_sup(top) == "shutdown"
    assert sorted(events(2)) == [("stopped", "other"), ("stopped", "w")]
    assert alone()


def test_nested_supervisor_is_stopped_with_infinity_by_default():
    s = supervisor.child_spec("inner", [spec("x")])
    assert s.type == "supervisor" and s.shutdown == "infinity"
    assert ChildSpec("w", (member, ())).shutdown == 5.0


# --------------------------------------------------------------- dynamic API


def test_dynamic_api_results_and_errors():
    """semantics rule 19."""
    sup = supervisor.start_link([spec("a")])
    events(1)
    a = pids(sup)["a"]
    with pytest.raises(AlreadyStarted) as ei:
        supervisor.start_child(sup, spec("a"))
    assert ei.value.pid == a
    b = supervisor.start_child(sup, spec("b"))
    assert events(1) == [("started", "b")]
    with pytest.raises(Running):
        supervisor.restart_child(sup, "b")
    with pytest.raises(Running):
        supervisor.delete_child(sup, "b")
    supervisor.terminate_child(sup, b)  # by pid: the spec stays
    assert events(1) == [("stopped", "b")]
    assert supervisor.which_children(sup) == [("a", a, "worker"), ("b", None, "worker")]
    with pytest.raises(AlreadyPresent):
        supervisor.start_child(sup, spec("b"))
    b2 = supervisor.restart_child(sup, "b")
    assert events(1) == [("started", "b")] and b2 != b
    supervisor.terminate_child(sup, "b")
    events(1)
    supervisor.delete_child(sup, "b")
    assert supervisor.which_children(sup) == [("a", a, "worker")]
    for fn in (supervisor.terminate_child, supervisor.restart_child, supervisor.delete_child):
        with pytest.raises(NotFound):
            fn(sup, "zz")
    tmp = supervisor.start_child(sup, spec("tmp", "temporary"))
    events(1)
    supervisor.terminate_child(sup, tmp)
    events(1)
    assert [c for c, _p, _t in supervisor.which_children(sup)] == ["a"]  # temporary: spec removed
    assert supervisor.count_children(sup) == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}
    with pytest.raises(ValueError):
        supervisor.start_child(sup, ["not", "a", "spec"])
    stop_sup(sup)


def test_start_child_that_fails_names_it_and_is_not_kept():
    class No(GenServer):
        def init(self):
            return ("stop", "nope")

    sup = supervisor.start_link([])
    with pytest.raises(StartError) as ei:
        supervisor.start_child(sup, ChildSpec("no", (No, ())))
    assert (ei.value.child_id, ei.value.reason) == ("no", "nope")
    assert supervisor.which_children(sup) == []
    stop_sup(sup)


def test_api_on_a_dead_supervisor_raises_noproc():
    sup = supervisor.start([])
    wait_stop = snowg.monitor(sup)
    snowg.exit(sup, "kill")
    snowg.receive(lambda m: type(m) is Down and m.ref == wait_stop, 5)
    with pytest.raises(NoProc):
        supervisor.which_children(sup)
    with pytest.raises(NoProc):
        supervisor.start_child(sup, spec("x"))
    with pytest.raises(NoProc):
        supervisor.count_children("no_such_sup")


def test_simple_one_for_one_api():
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("tpl", (member, (me,)), restart="transient")], strategy="simple_one_for_one")
    assert supervisor.which_children(sup) == []
    p1 = supervisor.start_child(sup, ["one"])
    p2 = supervisor.start_child(sup, ("two",))
    assert events(2) == [("started", "one"), ("started", "two")]
    assert supervisor.which_children(sup) == [(None, p1, "worker"), (None, p2, "worker")]
    assert supervisor.count_children(sup) == {"specs": 1, "active": 2, "supervisors": 0, "workers": 2}
    with pytest.raises(SimpleOneForOne):
        supervisor.restart_child(sup, "tpl")
    with pytest.raises(SimpleOneForOne):
        supervisor.delete_child(sup, "tpl")
    with pytest.raises(SimpleOneForOne):
        supervisor.terminate_child(sup, "tpl")
    with pytest.raises(NotFound):
        supervisor.terminate_child(sup, snowg.self())
    with pytest.raises(ValueError):
        supervisor.start_child(sup, spec("x"))
    supervisor.terminate_child(sup, p1)
    assert events(1) == [("stopped", "one")]
    assert supervisor.which_children(sup) == [(None, p2, "worker")]
    stop_sup(sup)
    assert events(1) == [("stopped", "two")]


def quiet_member() -> None:
    snowg.receive()


def test_simple_one_for_one_with_10000_children():
    n = 10_000
    sup = supervisor.start_link(
        [ChildSpec("t", (quiet_member, ()), shutdown="brutal_kill")], strategy="simple_one_for_one"
    )
    kids = [supervisor.start_child(sup, []) for _ in range(n)]
    assert len(set(kids)) == n
    assert supervisor.count_children(sup) == {"specs": 1, "active": n, "supervisors": 0, "workers": n}
    for k in kids:
        supervisor.terminate_child(sup, k)
    assert supervisor.count_children(sup)["active"] == 0
    assert snowg.processes() == [snowg.self(), sup]
    kids = [supervisor.start_child(sup, []) for _ in range(n)]
    assert len(snowg.processes()) == n + 2
    assert stop_sup(sup) == "shutdown"  # all at once
    assert alone()


def test_simple_one_for_one_children_are_stopped_all_at_once():
    """Every dynamic child gets 'shutdown' before the first is killed (OTP stops them together)."""
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("t", (stubborn, (me,)), shutdown=0.1)], strategy="simple_one_for_one")
    kids = [supervisor.start_child(sup, [i]) for i in range(20)]
    for _ in kids:
        snowg.receive(lambda m: m[0] == "started", 5)
    refs = {snowg.monitor(k) for k in kids}
    stop_sup(sup)
    seen = [m for m in snowg.flush_messages() if (type(m) is Down and m.ref in refs) or m[0] == "ignored"]
    assert [m[0] == "ignored" for m in seen] == [True] * 20 + [False] * 20
    assert {m.reason for m in seen[20:]} == {"killed"}
    assert alone()


# ------------------------------------------------------------ init 'ignore'


class Ignorer(GenServer):
    """A GenServer child whose init reports ('ignored', cid) and returns 'ignore'."""

    def init(self, rec: Any, cid: Any) -> Any:
        snowg.send(rec, ("ignored", cid))
        return "ignore"


def reports(n: int) -> List[Tuple[Any, ...]]:
    """Like events(), with the ignores in the sequence too."""
    out = []
    for _ in range(n):
        m = snowg.receive(lambda m: type(m) is tuple and m and m[0] in ("started", "stopped", "ignored"), 5)
        out.append((m[0], m[1]))
    return out


def test_ignoring_child_keeps_its_spec_with_no_process_and_one_for_all_starts_it_again():
    """OTP: a child whose init returns ignore is kept with pid undefined; a group restart calls its init again."""
    me = snowg.self()
    sup = supervisor.start_link([spec("a"), ChildSpec("i", (Ignorer, (me, "i"))), spec("b")], strategy="one_for_all")
    assert reports(3) == [("started", "a"), ("ignored", "i"), ("started", "b")]
    assert pids(sup)["i"] is None
    assert supervisor.count_children(sup) == {"specs": 3, "active": 2, "supervisors": 0, "workers": 3}
    end_child(pids(sup)["a"], "crashed")
    assert reports(4) == [("stopped", "b"), ("started", "a"), ("ignored", "i"), ("started", "b")]
    assert pids(sup)["i"] is None
    assert supervisor.restart_child(sup, "i") is None
    assert reports(1) == [("ignored", "i")]
    supervisor.delete_child(sup, "i")
    assert supervisor.start_child(sup, ChildSpec("j", (Ignorer, (me, "j")))) is None
    assert reports(1) == [("ignored", "j")]
    assert [(c, p is None) for c, p, _t in supervisor.which_children(sup)] == [("a", False), ("b", False), ("j", True)]
    stop_sup(sup)
    assert reports(2) == [("stopped", "b"), ("stopped", "a")]
    assert alone()


def test_simple_one_for_one_ignoring_child_is_not_kept():
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("t", (Ignorer, (me,)))], strategy="simple_one_for_one")
    assert supervisor.start_child(sup, ["x"]) is None
    assert reports(1) == [("ignored", "x")]
    assert supervisor.which_children(sup) == []
    assert supervisor.count_children(sup)["active"] == 0
    stop_sup(sup)
    assert alone()


# ------------------------------------------------------------- auto_shutdown


def test_auto_shutdown_any_significant():
    """semantics rule 18."""
    snowg.trap_exit(True)
    sup = supervisor.start_link([spec("a"), spec("s", "transient", significant=True)], auto_shutdown="any_significant")
    events(2)
    end_child(pids(sup)["s"], "normal")
    assert_shut_down(sup, "a")


def test_auto_shutdown_all_significant():
    snowg.trap_exit(True)
    sup = supervisor.start_link(
        [spec("s1", "temporary", significant=True), spec("s2", "transient", significant=True), spec("a")],
        auto_shutdown="all_significant",
    )
    events(3)
    end_child(pids(sup)["s1"], "crashed")  # temporary: not restarted, one significant left
    assert snowg.is_alive(sup)
    assert [c for c, _p, _t in supervisor.which_children(sup)] == ["s2", "a"]
    end_child(pids(sup)["s2"], "shutdown")
    assert_shut_down(sup, "a")


def test_auto_shutdown_never_ignores_significance():
    sup = supervisor.start_link([spec("s", "transient", significant=True), spec("a")])
    events(2)
    end_child(pids(sup)["s"], "normal")
    assert snowg.is_alive(sup)
    stop_sup(sup)


def test_significant_child_restarted_does_not_trigger_auto_shutdown():
    sup = supervisor.start_link([spec("s", "transient", significant=True)], auto_shutdown="any_significant")
    events(1)
    end_child(pids(sup)["s"], "crashed")  # abnormal: restarted, so no auto shutdown
    assert events(1) == [("started", "s")]
    assert snowg.is_alive(sup)
    stop_sup(sup)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(restart="sometimes"), "restart"),
        (dict(shutdown=-1), "shutdown"),
        (dict(shutdown="later"), "shutdown"),
        (dict(type="manager"), "type"),
        (dict(significant=True), "significant"),
        (dict(node="bob@host"), "must be @spawnable"),  # remote child: fn must be nameable there
        (dict(node="bob"), "node"),
    ],
)
def test_child_spec_validation_names_the_field(kwargs: Dict[str, Any], field: str):
    with pytest.raises(ValueError, match=field):
        ChildSpec("x", (member, ()), **kwargs)


def test_child_spec_start_and_id_validation():
    with pytest.raises(ValueError, match="start"):
        ChildSpec("x", (member,))
    with pytest.raises(TypeError, match="fn"):
        ChildSpec("x", ("not callable", ()))
    with pytest.raises(TypeError, match="args"):
        ChildSpec("x", (member, "abc"))
    with pytest.raises(ValueError, match="id"):
        ChildSpec(None, (member, ()))
    with pytest.raises(TypeError, match="id"):
        ChildSpec([], (member, ()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strategy="all_for_one"), "strategy"),
        (dict(intensity=-1), "intensity"),
        (dict(period=0), "period"),
        (dict(auto_shutdown="sometimes"), "auto_shutdown"),
    ],
)
def test_supervisor_flag_validation(kwargs: Dict[str, Any], match: str):
    with pytest.raises(ValueError, match=match):
        supervisor.start_link([], **kwargs)
    assert alone()


def test_children_list_validation():
    with pytest.raises(ValueError, match="duplicate"):
        supervisor.start_link([spec("a"), spec("a")])
    with pytest.raises(ValueError, match="exactly one"):
        supervisor.start_link([spec("a"), spec("b")], strategy="simple_one_for_one")
    with pytest.raises(TypeError):
        supervisor.start_link([("a", member)])
    with pytest.raises(TypeError, match="unknown"):
        supervisor.child_spec("x", [], colour="blue")
    assert alone()


def test_public_names():
    assert snowg.supervisor is supervisor
    for name in ("ChildSpec", "supervisor", "GenServer", "call", "cast", "reply"):
        assert name in snowg.__all__ and hasattr(snowg, name)
