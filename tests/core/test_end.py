"""``_core.end(reason)``: a process body ends its process without raising, then returns.

A GenServer whose handler asks it to stop ends this way (no exception
unwinds its stack). It must be ``exit(reason)`` in every visible way: links
and monitors get ``reason`` at once, a crash reason makes the crash event,
and nothing the body does after returning changes the reason. An adopted
greenlet has no body of ours to return to, so there it raises.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import gevent
import pytest

import snowg
from snowg import Crash, Down, Exit, ProcessExit, telemetry
from snowg._core import end

W = 5.0


def _ends_then_returns(reason: Any) -> str:
    end(reason)
    return "a value the process's end ignores"


def test_links_and_monitors_get_the_reason_once_and_the_body_returns():
    old = snowg.trap_exit(True)
    try:
        pid = snowg.spawn_link(_ends_then_returns, ("custom", 1))
        ref = snowg.monitor(pid)
        assert snowg.receive(lambda m: type(m) is Exit, W) == Exit(pid, ("custom", 1))
        assert snowg.receive(lambda m: type(m) is Down, W) == Down(ref, pid, ("custom", 1))
        assert not snowg.is_alive(pid)
        # The child ran to its greenlet's end before we ran: no second exit (say 'normal') came.
        assert snowg.flush_messages() == []
    finally:
        snowg.trap_exit(old)


def test_a_crash_reason_makes_the_crash_event_once():
    events: List[Tuple[Any, Dict[str, Any]]] = []
    telemetry.attach("test-end", telemetry.PROCESS_CRASH, lambda e, m, meta, _c: events.append((m, meta)), None)
    try:
        crash = Crash("ValueError", "boom", "Traceback ...")
        pid, ref = snowg.spawn_monitor(end, crash)
        assert snowg.receive(lambda m: type(m) is Down, W) == Down(ref, pid, crash)
    finally:
        telemetry.detach("test-end")
    assert events == [({"count": 1}, {"pid": pid, "name": None, "reason": crash})]


def test_a_plain_reason_makes_no_crash_event():
    events: List[Any] = []
    telemetry.attach("test-end", telemetry.PROCESS_CRASH, lambda *a: events.append(a), None)
    try:
        pid, ref = snowg.spawn_monitor(end, "shutdown")
        assert snowg.receive(lambda m: type(m) is Down, W) == Down(ref, pid, "shutdown")
    finally:
        telemetry.detach("test-end")
    assert events == []


def test_in_an_adopted_greenlet_it_ends_the_process_and_raises():
    me = snowg.self()
    seen: List[Any] = []

    def adopted() -> None:
        snowg.send(me, ("pid", snowg.self()))
        snowg.receive()
        try:
            end("bye")
        except ProcessExit as e:
            seen.append((e.reason, e.by_signal))
            raise

    g = gevent.spawn(adopted)
    _tag, pid = snowg.receive(lambda m: type(m) is tuple and m[0] == "pid", W)
    ref = snowg.monitor(pid)
    snowg.send(pid, "go")
    assert snowg.receive(lambda m: type(m) is Down, W) == Down(ref, pid, "bye")
    g.join(W)
    assert seen == [("bye", False)]


@pytest.mark.parametrize("reason", ["normal", ("shutdown", "x"), "crash"])
def test_a_gen_server_stopping_from_a_handler_runs_terminate_then_ends_with_its_reason(reason):
    class Stops(snowg.GenServer):
        def init(self, owner: Any) -> Any:
            return owner

        def handle_cast(self, request: Any, state: Any) -> Any:
            return ("stop", request, state)

        def terminate(self, why: Any, state: Any) -> None:
            snowg.send(state, ("terminate", why))

    pid = Stops.start(snowg.self())
    ref = snowg.monitor(pid)
    snowg.cast(pid, reason)
    assert snowg.receive(timeout=W) == ("terminate", reason)
    assert snowg.receive(timeout=W) == Down(ref, pid, reason)
