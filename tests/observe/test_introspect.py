"""Per-process introspection on one node: initial call, parent, ``process_info`` keys, CPU time, counts.

Local processes only (the peer-node side is ``test_snapshot.py``); every
wait is for a message.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

import snowg
from snowg import ChildSpec, GenServer, observe, supervisor
from snowg._core import INFO_KEYS
from snowg.testing import wait_for
from support import recv, tagged, wait_down

pytestmark = pytest.mark.timeout(30)


def waiter() -> None:
    snowg.receive(lambda m: m == "stop")


def spin(rec: snowg.Pid, rounds: int) -> None:
    """Computes, then reports ``('spun', pid)`` and waits."""
    total = 0
    for _ in range(rounds):
        total += sum(range(1000))
    snowg.send(rec, ("spun", snowg.self()))
    waiter()


class Echo(GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return ("reply", request, state)


def test_process_info_has_every_key_and_the_initial_call_and_parent(me):
    pid = snowg.spawn(waiter)
    info = snowg.process_info(pid)
    assert info is not None and tuple(info) == INFO_KEYS
    assert info["initial_call"] == "test_introspect.waiter"
    assert info["parent"] == me
    assert info["cpu_time"] == 0.0
    assert snowg.process_info(pid, ["initial_call", "message_queue_len"]) == {
        "initial_call": "test_introspect.waiter",
        "message_queue_len": 0,
    }
    with pytest.raises(KeyError):
        snowg.process_info(pid, ["no_such_key"])
    # An adopted greenlet (the test's own process) started with nothing snowg knows.
    assert snowg.process_info(me, ["initial_call", "parent"]) == {"initial_call": None, "parent": None}


def test_the_initial_call_of_a_partial_a_gen_server_and_a_supervisor(me):
    p = snowg.spawn(functools.partial(waiter))
    assert snowg.process_info(p, ["initial_call"]) == {"initial_call": "test_introspect.waiter"}
    server = Echo.start_link()
    assert snowg.process_info(server, ["initial_call", "parent"]) == {
        "initial_call": "test_introspect.Echo",
        "parent": me,
    }
    sup = supervisor.start_link([ChildSpec("echo", (Echo, ()))])
    [(_id, child, _t)] = supervisor.which_children(sup)
    assert snowg.process_info(sup, ["initial_call"]) == {"initial_call": observe.SUPERVISOR_CALL}
    assert snowg.process_info(child, ["initial_call", "parent"]) == {
        "initial_call": "test_introspect.Echo",
        "parent": sup,
    }


def test_cpu_time_is_counted_only_while_tracing_is_on(me):
    assert snowg.set_cpu_tracing(False) is False
    untraced = snowg.spawn(spin, me, 200)
    assert recv(tagged("spun")) == ("spun", untraced)
    assert snowg.process_info(untraced, ["cpu_time"]) == {"cpu_time": 0.0}
    try:
        assert snowg.set_cpu_tracing(True) is False
        assert observe.cpu_tracing() is True
        assert snowg.set_cpu_tracing(True) is True
        traced = snowg.spawn(spin, me, 200)
        assert recv(tagged("spun")) == ("spun", traced)
        counted = snowg.process_info(traced, ["cpu_time"])["cpu_time"]  # type: ignore[index]
        assert counted > 0.0
        assert observe.snapshot()["cpu_tracing"] is True
    finally:
        assert snowg.set_cpu_tracing(False) is True
    # Off: what was counted stays, nothing more is added.
    snowg.send(traced, "nudge")  # wakes it: it looks at the message and waits again, untraced
    assert snowg.process_info(traced, ["status"]) == {"status": "runnable"}
    assert wait_for(lambda: snowg.process_info(traced, ["status"]) == {"status": "waiting"})
    assert snowg.process_info(traced, ["cpu_time", "message_queue_len"]) == {
        "cpu_time": counted,
        "message_queue_len": 1,
    }
    assert snowg.process_info(untraced, ["cpu_time"]) == {"cpu_time": 0.0}


def boom(rec: snowg.Pid) -> None:
    snowg.send(rec, ("ready", snowg.self()))
    snowg.receive()
    raise RuntimeError("boom")


def linked_waiter(rec: snowg.Pid, other: snowg.Pid) -> None:
    snowg.link(other)
    snowg.send(rec, ("linked",))
    waiter()


def test_counts_count_a_crash_once_not_the_processes_it_takes_down(trapping_me):
    before = observe.counts()
    crasher = snowg.spawn_link(boom, trapping_me)
    recv(tagged("ready"))
    bystander = snowg.spawn(linked_waiter, trapping_me, crasher)
    recv(tagged("linked"))
    snowg.send(crasher, "go")
    recv(lambda m: isinstance(m, snowg.Exit) and m.pid == crasher)
    wait_down(bystander)
    after = observe.counts()
    assert after == {**before, "crashes": before["crashes"] + 1}


class Failing(GenServer):
    def handle_cast(self, request: Any, state: Any) -> Any:
        raise ValueError("bad cast")


def test_counts_count_restarts_and_a_supervisor_giving_up(trapping_me):
    before = observe.counts()
    sup = supervisor.start_link([ChildSpec("f", (Failing, ()))], intensity=1, name="counted_sup")
    [(_id, child, _t)] = supervisor.which_children(sup)
    snowg.cast(child, "x")
    wait_down(child)
    [(_id, child2, _t)] = supervisor.which_children(sup)
    assert observe.supervisor_restarts(sup) == 1
    [tree] = observe.snapshot()["supervisors"]
    assert (tree["name"], tree["restarts"], tree["recent_restarts"]) == ("counted_sup", 1, 1)
    snowg.cast(child2, "x")
    recv(lambda m: isinstance(m, snowg.Exit) and m.pid == sup)
    assert observe.counts() == {
        "crashes": before["crashes"] + 2,
        "restarts": before["restarts"] + 1,
        "give_ups": before["give_ups"] + 1,
    }


def test_a_local_snapshot_is_json_and_limits_to_the_longest_queues(me):
    quiet = snowg.spawn(waiter)
    busy = snowg.spawn(waiter)
    for n in range(3):
        snowg.send(busy, n)
    snowg.send(quiet, "one")
    snap = observe.snapshot(limit=2)
    json.dumps(snap)
    assert [(p["pid"], p["message_queue_len"]) for p in snap["processes"]] == [(str(busy), 3), (str(quiet), 1)]
    assert snap["process_count"] >= 3


def test_plain():
    pid = snowg.self()
    ref = snowg.make_ref()
    assert observe.plain({"a": (1, [pid]), 2: None, "s": snowg.Atom("ok"), "r": (ref,)}) == {
        "a": [1, [str(pid)]],
        "2": None,
        "s": "ok",
        "r": [str(ref)],  # one value, although a Ref is a tuple underneath
    }
    deep: Any = 0
    for _ in range(30):
        deep = [deep]
    assert isinstance(json.dumps(observe.plain(deep)), str)
