"""A process leaves no reference cycle behind: what it held is freed by reference counting.

CPython's cyclic collector runs when allocations minus frees pass a
threshold, and each run walks every young object. A cycle left per process
(a ``Process`` record and its ``Pid`` pointing at each other, as they did)
brought those runs back on every spawn and restart: a fifth of a supervisor
restart, and twice its p99. So: the paths a busy node runs all day leave no
cyclic garbage, and a dead pid still reads as dead everywhere.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, List

import pytest

import snowg
from snowg import ChildSpec, Down, Exit, GenServer, NoProc, supervisor
from support import is_down

W = 5.0


def _cyclic_garbage(run: Callable[[], None]) -> List[str]:
    """The types of the objects only the cyclic collector could free after ``run()`` (run once before, to warm)."""
    run()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _exit_of(pid: Any) -> Callable[[Any], bool]:
    return lambda m: type(m) is Exit and m.pid == pid


def _quiet() -> None:
    pass


def _crash() -> None:
    raise ValueError("on purpose")


def _plain_child(rec: Any) -> None:
    snowg.send(rec, ("up", snowg.self()))
    snowg.receive()
    snowg.exit("crash")


class _CrashServer(GenServer):
    def init(self, rec: Any) -> Any:
        snowg.send(rec, ("up", snowg.self()))
        return None

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return ("reply", request, state)

    def handle_cast(self, request: Any, state: Any) -> Any:
        return ("stop", "crash", state)


def test_spawn_link_monitor_and_exit_leave_no_cycle(caplog: pytest.LogCaptureFixture) -> None:
    def run() -> None:
        snowg.trap_exit(True)
        try:
            for _ in range(50):
                linked = snowg.spawn_link(_quiet)
                assert snowg.receive(_exit_of(linked), W).reason == "normal"
                pid, ref = snowg.spawn_monitor(_crash)
                down = snowg.receive(is_down(ref), W)
                assert type(down) is Down and down.pid == pid
        finally:
            snowg.trap_exit(False)

    assert _cyclic_garbage(run) == []


@pytest.mark.parametrize("child", ["plain", "genserver"])
def test_supervisor_restarts_leave_no_cycle(child: str) -> None:
    me = snowg.self()
    start = _plain_child if child == "plain" else _CrashServer

    def run() -> None:
        sup = supervisor.start_link([ChildSpec("c", (start, (me,)))], intensity=100, period=60)
        _up, pid = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
        for _ in range(20):
            if child == "plain":
                snowg.send(pid, "crash")
            else:
                assert snowg.call(pid, "ping") == "ping"
                snowg.cast(pid, "crash")
            _up, new = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
            assert new != pid
            pid = new
        snowg.unlink(sup)
        ref = snowg.monitor(sup)
        snowg.exit(sup, "shutdown")
        assert snowg.receive(is_down(ref), W).reason == "shutdown"

    assert _cyclic_garbage(run) == []


def test_a_dead_pid_reads_as_dead_everywhere() -> None:
    pid, ref = snowg.spawn_monitor(_quiet)
    assert snowg.receive(is_down(ref), W).reason == "normal"
    assert not snowg.is_alive(pid)
    assert snowg.process_info(pid) is None
    snowg.send(pid, "dropped")  # no error: dropped, as in Erlang
    with pytest.raises(NoProc):
        snowg.call(pid, "anything", timeout=1)
    ref2 = snowg.monitor(pid)
    assert snowg.receive(is_down(ref2), W).reason == "noproc"
    snowg.trap_exit(True)
    try:
        snowg.link(pid)
        assert snowg.receive(lambda m: type(m) is Exit and m.pid == pid, W).reason == "noproc"
    finally:
        snowg.trap_exit(False)
    # A copy of the pid (as decoded from the wire) reads the same.
    copy = snowg.Pid(pid.node, pid.id, pid.creation)
    assert copy == pid and not snowg.is_alive(copy) and snowg.process_info(copy) is None
