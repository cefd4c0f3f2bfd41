"""``snowg.sys`` (OTP's ``sys``): system requests a GenServer's loop answers itself.

Every test drives a real server process with messages and synchronises on
replies: a system request is answered after the messages sent before it were
taken (the mailbox is FIFO), so a reply proves what the server has seen.
"""

from __future__ import annotations

import logging
from typing import Any, List

import pytest

import snowg
from snowg import ChildSpec, GenServer, supervisor
from support import log_lines, no_message, recv, tagged

pytestmark = pytest.mark.timeout(30)


class Recorder(GenServer):
    """State: the list of casts handled. Each cast is reported to ``rec`` as ``('handled', n)``."""

    def init(self, rec: snowg.Pid) -> Any:
        return (rec, [])

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        if request == "seen":
            return ("reply", list(state[1]), state)
        return ("reply", ("echo", request), state)

    def handle_cast(self, request: Any, state: Any) -> Any:
        rec, seen = state
        snowg.send(rec, ("handled", request))
        return ("noreply", (rec, seen + [request]))

    def handle_info(self, msg: Any, state: Any) -> Any:
        return ("noreply", state)


class Trapper(GenServer):
    """Traps exits; its ``terminate`` reports ``('terminated', reason)`` to ``rec``."""

    def init(self, rec: snowg.Pid) -> Any:
        snowg.trap_exit(True)
        return rec

    def terminate(self, reason: Any, state: Any) -> None:
        snowg.send(state, ("terminated", reason))


def test_get_state_of_a_gen_server(me):
    pid = Recorder.start_link(me)
    snowg.cast(pid, 1)
    snowg.cast(pid, 2)
    assert snowg.sys.get_state(pid) == (me, [1, 2])
    assert snowg.sys.get_state(pid, timeout=1) == (me, [1, 2])


def test_get_state_and_status_of_a_supervisor(me):
    sup = supervisor.start_link(
        [ChildSpec("a", (Recorder, (me,))), ChildSpec("b", (Recorder, (me,)))], strategy="one_for_all", name="sys_sup"
    )
    a, b = (pid for _id, pid, _t in supervisor.which_children(sup))
    state = snowg.sys.get_state("sys_sup")
    assert state.flags.strategy == "one_for_all"
    assert [(cid, child.pid) for cid, child in state.children.items()] == [("a", a), ("b", b)]
    status = snowg.sys.get_status(sup)
    assert status == {
        "pid": sup,
        "module": "snowg.supervisor._server.Supervisor",
        "status": "running",
        "parent": me,
        "trace": False,
        "state": {
            "strategy": "one_for_all",
            "intensity": 1,
            "period": 5,
            "auto_shutdown": "never",
            "name": "sys_sup",
            "children": [{"id": "a", "pid": a, "type": "worker"}, {"id": "b", "pid": b, "type": "worker"}],
            "recent_restarts": 0,
        },
    }


def test_suspend_queues_messages_unhandled_and_resume_handles_them_in_order(me):
    pid = Recorder.start_link(me)
    snowg.sys.suspend(pid)
    for n in range(5):
        snowg.cast(pid, n)
    # Answered while suspended, after the five casts were in its mailbox: none was handled.
    assert snowg.sys.get_state(pid) == (me, [])
    assert snowg.sys.get_status(pid)["status"] == "suspended"
    assert snowg.process_info(pid, ["message_queue_len"]) == {"message_queue_len": 5}
    no_message(tagged("handled"))
    snowg.cast(pid, 5)
    assert snowg.sys.get_state(pid) == (me, [])
    assert snowg.process_info(pid, ["message_queue_len"]) == {"message_queue_len": 6}
    # A call is not answered while suspended (it stays queued, its caller times out).
    with pytest.raises(snowg.CallTimeout):
        snowg.call(pid, "seen", timeout=0.2)
    snowg.sys.resume(pid)
    assert [recv(tagged("handled"))[1] for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    assert snowg.call(pid, "seen") == [0, 1, 2, 3, 4, 5]
    assert snowg.sys.get_status(pid)["status"] == "running"
    assert snowg.process_info(pid, ["message_queue_len"]) == {"message_queue_len": 0}


def test_a_suspended_server_still_obeys_its_parents_exit(me):
    sup = supervisor.start_link([ChildSpec("t", (Trapper, (me,)))])
    [(_id, child, _t)] = supervisor.which_children(sup)
    snowg.sys.suspend(child)
    supervisor.terminate_child(sup, "t")
    assert recv(tagged("terminated")) == ("terminated", "shutdown")
    assert not snowg.is_alive(child)


def test_trace_logs_each_message_taken_and_each_reply_sent(me, caplog):
    caplog.set_level(logging.INFO, logger="snowg")
    pid = Recorder.start_link(me)
    snowg.sys.trace(pid, True)
    snowg.cast(pid, 7)
    snowg.send(pid, "hello")
    assert snowg.call(pid, "seen") == [7]
    snowg.sys.trace(pid, False)
    snowg.cast(pid, 8)
    assert snowg.call(pid, "seen") == [7, 8]
    lines: List[str] = [line for line in log_lines(caplog) if line.startswith("*DBG*")]
    assert lines == [
        f"*DBG* {pid} got cast 7",
        f"*DBG* {pid} got 'hello'",
        f"*DBG* {pid} got call 'seen' from {me}",
        f"*DBG* {pid} sent [7] to {me}, new state ({me!r}, [7])",
    ]


def test_replace_state(me):
    pid = Recorder.start_link(me)
    snowg.cast(pid, 1)
    assert snowg.sys.replace_state(pid, lambda s: (s[0], s[1] + [100])) == (me, [1, 100])
    snowg.cast(pid, 2)
    assert snowg.call(pid, "seen") == [1, 100, 2]


def test_replace_state_with_a_raising_function_keeps_the_state(me):
    pid = Recorder.start_link(me)
    snowg.cast(pid, 1)

    def bad(state: Any) -> Any:
        raise KeyError("nope")

    with pytest.raises(snowg.RemoteError) as info:
        snowg.sys.replace_state(pid, bad)
    assert (info.value.type_name, info.value.message) == ("KeyError", "'nope'")
    assert snowg.sys.get_state(pid) == (me, [1])
    assert snowg.is_alive(pid)


def test_get_status_of_a_gen_server(me):
    pid = Recorder.start_link(me)
    snowg.sys.trace(pid, True)
    assert snowg.sys.get_status(pid) == {
        "pid": pid,
        "module": "test_sys.Recorder",
        "status": "running",
        "parent": me,
        "trace": True,
        "state": (me, []),
    }


def test_a_dead_server_and_a_process_that_is_not_a_server(me):
    pid = Recorder.start_link(me)
    snowg.gen_server.stop(pid)
    with pytest.raises(snowg.NoProc):
        snowg.sys.get_state(pid)
    with pytest.raises(snowg.NoProc):
        snowg.sys.suspend("nobody_here")
    plain = snowg.spawn(snowg.receive, lambda m: False)  # takes no message: never answers
    with pytest.raises(snowg.CallTimeout):
        snowg.sys.get_state(plain, timeout=0.2)
