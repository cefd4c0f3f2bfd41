"""The fused local call (``snowg._core.calls``): every edge it handles itself, with the outcomes of the general path.

``snowg.call`` to a live process of this node takes ``call_local`` (monitor,
send, wait, demonitor in one step) and the alias in ``Process.alias``; these
tests pin what that path must do exactly as ``monitor`` + ``send`` +
``receive`` + ``demonitor`` do (semantics rules 10, 11, 21). Synchronisation
is by messages; every test is time-bounded.
"""

from __future__ import annotations

from typing import Any, List

import pytest

import snowg
from snowg import CallError, CallTimeout, Down, Exit, GenServer, NoProc
from snowg._core.terms import Pid
from support import wait_down

pytestmark = pytest.mark.timeout(30)


class Held(GenServer):
    """Replies at once, or holds the caller (``('hold',)``) until a ``('release', value)`` cast."""

    def init(self, rec: Any = None) -> Any:
        return {"held": [], "rec": rec}

    def handle_call(self, req: Any, from_: Any, state: Any) -> tuple:
        if req == ("hold",):
            state["held"].append(from_)
            if state["rec"] is not None:
                snowg.send(state["rec"], ("holding", from_[0]))
            return ("noreply", state)
        if type(req) is tuple and req[0] == "send_first":  # a message to the caller before the reply
            snowg.send(from_[0], req[1])
            return ("reply", "after", state)
        if type(req) is tuple and req[0] == "hand_off":  # another process replies, with a rebuilt pid
            pid, tag = from_
            rebuilt = Pid(pid.node, pid.id, pid.creation)  # as decoded from the wire: no _proc
            snowg.spawn(snowg.reply, (rebuilt, tag), req[1])
            return ("noreply", state)
        if type(req) is tuple and req[0] == "exit":
            snowg.exit(req[1])
        return ("reply", req, state)

    def handle_cast(self, req: Any, state: Any) -> tuple:
        if req[0] == "release":
            for from_ in state["held"]:
                snowg.reply(from_, req[1])
            state["held"] = []
        return ("noreply", state)


def _end(pid: Any) -> None:
    snowg.exit(pid, "kill")
    wait_down(pid)


def test_messages_before_and_during_a_call_stay_in_order_and_the_reply_is_taken():
    me = snowg.self()
    srv = Held.start()
    snowg.send(me, "before-1")
    snowg.send(me, ("before-2", 0))  # a 2-tuple that is not the reply
    assert snowg.call(srv, ("send_first", ("during", 1))) == "after"
    assert snowg.process_info(me)["messages"] == ["before-1", ("before-2", 0), ("during", 1)]
    assert snowg.process_info(me)["monitors"] == []
    assert snowg.process_info(srv)["monitored_by"] == []
    _end(srv)


def test_the_monitor_is_a_real_one_while_the_call_waits_and_goes_after():
    me = snowg.self()
    srv = Held.start(me)
    caller = snowg.spawn(lambda: snowg.send(me, ("got", snowg.call(srv, ("hold",)))))
    assert snowg.receive(timeout=5) == ("holding", caller)
    assert snowg.process_info(caller)["monitors"] == [srv]
    assert snowg.process_info(srv)["monitored_by"] == [caller]
    cref = snowg.monitor(caller)
    snowg.cast(srv, ("release", 7))
    assert snowg.receive(timeout=5) == ("got", 7)
    assert snowg.receive(lambda m: type(m) is Down and m.ref == cref, 5).reason == "normal"
    assert snowg.process_info(srv)["monitored_by"] == []
    _end(srv)


def test_an_exit_signal_ends_a_waiting_caller_and_its_late_reply_goes_nowhere():
    me = snowg.self()
    srv = Held.start(me)
    caller = snowg.spawn(snowg.call, srv, ("hold",))
    assert snowg.receive(timeout=5) == ("holding", caller)
    snowg.exit(caller, "boom")
    assert wait_down(caller) == "boom"
    assert snowg.process_info(srv)["monitored_by"] == []  # the dead caller's monitor went with it
    snowg.cast(srv, ("release", "late"))
    assert snowg.call(srv, "still here") == "still here"
    _end(srv)


def test_a_trapping_caller_keeps_the_exit_as_a_message_and_gets_its_reply():
    me = snowg.self()
    srv = Held.start(me)
    out: List[Any] = []

    def caller() -> None:
        snowg.trap_exit(True)
        out.append(snowg.call(srv, ("hold",)))
        out.append(snowg.receive(timeout=5))

    c = snowg.spawn(caller)
    assert snowg.receive(timeout=5) == ("holding", c)
    snowg.exit(c, "nudge")
    snowg.cast(srv, ("release", "reply"))
    assert wait_down(c) == "normal"
    assert out == ["reply", Exit(me, "nudge")]
    _end(srv)


@pytest.mark.parametrize("reason", ["normal", "shutdown", ("custom", 1)])
def test_a_server_ending_mid_call_gives_its_exit_reason(reason):
    srv = Held.start()
    with pytest.raises(CallError) as ei:
        snowg.call(srv, ("exit", reason))
    assert ei.value.reason == reason
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0  # the Down was taken
    assert snowg.process_info(snowg.self())["monitors"] == []


def test_a_server_ending_with_noproc_mid_call_is_noproc():
    srv = Held.start()
    with pytest.raises(NoProc):
        snowg.call(srv, ("exit", "noproc"))
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0


def test_a_reply_then_the_servers_end_leaves_no_down_behind():
    """The reply comes first; the Down that follows before the caller runs is flushed (rule 11)."""
    me = snowg.self()

    def replies_then_ends() -> None:
        _tag, (pid, ref), req = snowg.receive()
        snowg.reply((pid, ref), req)
        snowg.exit("bye")

    srv = snowg.spawn(replies_then_ends)  # not started yet: the call reaches a NEW process
    assert snowg.call(srv, "x") == "x"
    assert wait_down(srv) == "noproc"  # gone already
    assert snowg.process_info(me)["message_queue_len"] == 0


def test_a_reply_from_another_process_with_a_rebuilt_pid_arrives():
    srv = Held.start()
    assert snowg.call(srv, ("hand_off", "from elsewhere")) == "from elsewhere"
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0
    _end(srv)


def test_a_reply_with_another_tag_or_to_a_caller_not_waiting_is_dropped():
    me = snowg.self()
    srv = Held.start(me)
    snowg.reply((me, snowg.make_ref()), "stray")  # me waits for nothing
    caller = snowg.spawn(lambda: snowg.send(me, ("got", snowg.call(srv, ("hold",)))))
    assert snowg.receive(timeout=5) == ("holding", caller)
    snowg.reply((caller, snowg.make_ref()), "wrong tag")  # caller waits, but for another tag
    snowg.cast(srv, ("release", "right"))
    assert snowg.receive(timeout=5) == ("got", "right")
    wait_down(caller)
    assert snowg.process_info(me)["message_queue_len"] == 0
    _end(srv)


def test_calling_yourself_by_name_is_calling_self():
    class ByName(GenServer):
        def handle_call(self, req: Any, from_: Any, state: Any) -> tuple:
            if req == "again":
                return ("reply", "inner", state)
            try:
                snowg.call("by_name_self", "again")
            except CallError as e:
                return ("reply", e.reason, state)
            return ("reply", "no error", state)

    srv = ByName.start(name="by_name_self")
    assert snowg.call(srv, "x") == "calling_self"
    _end(srv)


def test_a_shorter_timeout_after_longer_ones_still_times_out():
    """The call timer is reused across calls: a call with a nearer deadline than the armed one gets its own."""
    me = snowg.self()
    srv = Held.start(me)
    for _ in range(3):
        assert snowg.call(srv, "long", timeout=60) == "long"
    with pytest.raises(CallTimeout):
        snowg.call(srv, ("hold",), timeout=0.05)
    assert snowg.receive(timeout=5)[0] == "holding"
    snowg.cast(srv, ("release", "late"))
    assert snowg.call(srv, "next") == "next"
    assert snowg.process_info(me)["message_queue_len"] == 0
    _end(srv)


def test_an_early_timer_re_arms_for_a_later_deadline_and_never_times_out_a_call_without_one():
    me = snowg.self()
    srv = Held.start(me)
    assert snowg.call(srv, "short", timeout=0.05) == "short"  # its timer is armed for 0.05 s from then
    with pytest.raises(CallTimeout):
        snowg.call(srv, ("hold",), timeout=0.3)  # the timer fires early, re-arms, then times this out
    assert snowg.receive(timeout=5)[0] == "holding"
    snowg.cast(srv, ("release", "late"))
    assert snowg.call(srv, "short", timeout=0.05) == "short"

    def release_later() -> None:
        with pytest.raises(snowg.Timeout):
            snowg.receive(timeout=0.3)  # longer than the armed 0.05 s: it fires while the call below waits
        snowg.cast(srv, ("release", "waited"))

    snowg.spawn(release_later)
    assert snowg.call(srv, ("hold",), timeout=None) == "waited"
    assert snowg.receive(timeout=5)[0] == "holding"
    assert snowg.process_info(me)["message_queue_len"] == 0
    _end(srv)


def test_a_process_that_ends_leaves_no_call_timer():
    srv = Held.start()
    caller = snowg.spawn(snowg.call, srv, "once")
    assert wait_down(caller) == "normal"
    assert caller._proc is not None and caller._proc.call_timer is None
    _end(srv)


def test_calls_to_a_dead_pid_an_unknown_name_and_a_zero_timeout_take_the_general_path():
    srv = Held.start()
    with pytest.raises(CallTimeout):
        snowg.call(srv, ("hold",), timeout=0)
    _end(srv)
    with pytest.raises(NoProc):
        snowg.call(srv, "x")
    with pytest.raises(NoProc):
        snowg.call(("nobody", snowg.self().node), "x")
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0
    assert snowg.process_info(snowg.self())["monitors"] == []


def test_a_down_for_another_monitor_arriving_during_a_call_stays_after_it():
    me = snowg.self()
    other = snowg.spawn(snowg.receive)
    ref = snowg.monitor(other)

    def helper() -> None:
        srv = snowg.receive(timeout=5)
        snowg.receive(lambda m: type(m) is tuple and m[0] == "holding", 5)
        snowg.exit(other, "kill")
        wait_down(other)
        snowg.cast(srv, ("release", "done"))

    h = snowg.spawn(helper)
    srv = Held.start(h)  # tells the helper when it holds the call
    snowg.send(h, srv)
    assert snowg.call(srv, ("hold",)) == "done"
    assert snowg.process_info(me)["messages"] == [Down(ref, other, "killed")]
    snowg.receive(timeout=0)
    wait_down(h)
    _end(srv)
