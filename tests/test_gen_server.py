"""GenServer (snowg.gen_server): semantics rules 21-22, OTP's gen_server_SUITE in spirit.

Synchronisation is by messages only; every test is time-bounded.
"""

from __future__ import annotations

import logging
from typing import Any, List

import pytest

import snowg
from snowg import (
    CallError,
    CallTimeout,
    ChildSpec,
    Down,
    Exit,
    GenServer,
    NoProc,
    StartError,
    supervisor,
)
from snowg.gen_server import Continue, stop
from support import wait_down

pytestmark = pytest.mark.timeout(30)


def _stop_linked(pid: Any) -> None:
    snowg.unlink(pid)
    ref = snowg.monitor(pid)
    snowg.exit(pid, "shutdown")
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5)


class Store(GenServer):
    """A key-value store that reports its lifecycle to a recorder pid."""

    def init(self, rec: Any, trap: bool = False) -> Any:
        if trap:
            snowg.trap_exit(True)
        self.rec = rec
        return {"pending": None}

    def handle_call(self, req: Any, from_: Any, state: Any) -> tuple:
        kind = req[0]
        if kind == "get":
            return ("reply", state.get(req[1]), state)
        if kind == "put":
            state[req[1]] = req[2]
            return ("reply", "ok", state)
        if kind == "hold":  # reply later, through reply()
            state["pending"] = from_
            return ("noreply", state)
        if kind == "stop":
            return ("stop", req[1], "bye", state)
        if kind == "raise":
            raise ValueError("handler failed")
        if kind == "bad":
            return "nonsense"
        if kind == "idle":
            return ("reply", "ok", state, req[1])
        if kind == "exit":
            snowg.exit(req[1])
        if kind == "block":  # stays inside the handler until an exit signal ends it
            snowg.send(self.rec, ("blocked", snowg.self()))
            snowg.receive(lambda m: m == "never")
        raise AssertionError(req)

    def handle_cast(self, req: Any, state: Any) -> tuple:
        if req[0] == "release":
            snowg.reply(state["pending"], req[1])
            state["pending"] = None
            return ("noreply", state)
        if req[0] == "put":
            state[req[1]] = req[2]
            return ("noreply", state)
        if req[0] == "stop":
            return ("stop", req[1], state)
        if req[0] == "exit":
            snowg.exit(req[1])
        raise AssertionError(req)

    def handle_info(self, msg: Any, state: Any) -> tuple:
        snowg.send(self.rec, ("info", msg))
        return ("noreply", state)

    def terminate(self, reason: Any, state: Any) -> None:
        snowg.send(self.rec, ("terminate", reason))


def test_call_cast_info_terminate():
    me = snowg.self()
    srv = Store.start_link(me)
    assert snowg.call(srv, ("put", "a", 1)) == "ok"
    snowg.cast(srv, ("put", "b", 2))
    assert snowg.call(srv, ("get", "b")) == 2  # the cast was handled first (ordering)
    snowg.send(srv, "hello")
    assert snowg.receive(timeout=5) == ("info", "hello")
    assert snowg.call(srv, ("stop", "normal")) == "bye"
    assert snowg.receive(timeout=5) == ("terminate", "normal")
    assert wait_down(srv) == "noproc"
    assert snowg.process_info(me)["message_queue_len"] == 0


def test_call_by_name_and_by_name_node():
    srv = Store.start_link(snowg.self(), name="store")
    assert snowg.whereis("store") == srv
    assert snowg.call("store", ("put", "k", "v")) == "ok"
    assert snowg.call(("store", srv.node), ("get", "k")) == "v"
    stop("store")
    assert snowg.whereis("store") is None
    assert snowg.receive(timeout=5) == ("terminate", "normal")


def test_reply_later_with_noreply():
    srv = Store.start_link(snowg.self())
    result: List[Any] = []
    caller = snowg.spawn(lambda: result.append(snowg.call(srv, ("hold",))))
    ref = snowg.monitor(caller)
    snowg.call(srv, ("get", "x"))  # the hold request is in the server before this
    snowg.cast(srv, ("release", 42))
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5)
    assert result == [42]
    _stop_linked(srv)


def test_call_timeout_leaves_no_late_reply_in_the_mailbox():
    """semantics rule 21: the late reply is dropped, never left in the caller's mailbox."""
    me = snowg.self()
    srv = Store.start_link(me)
    with pytest.raises(CallTimeout):
        snowg.call(srv, ("hold",), timeout=0.05)
    snowg.cast(srv, ("release", "late"))  # the server now replies to the abandoned call
    assert snowg.call(srv, ("get", "x")) is None  # it has handled the cast, and replied
    assert snowg.process_info(me)["message_queue_len"] == 0
    with pytest.raises(snowg.Timeout):
        snowg.receive(timeout=0)
    assert snowg.process_info(me)["monitors"] == []  # the call's monitor is gone too
    _stop_linked(srv)


def test_call_timeout_then_later_calls_get_their_own_replies():
    srv = Store.start_link(snowg.self())
    with pytest.raises(CallTimeout):
        snowg.call(srv, ("hold",), timeout=0.01)
    snowg.cast(srv, ("release", "late"))
    assert snowg.call(srv, ("put", "a", 1)) == "ok"
    assert snowg.call(srv, ("get", "a")) == 1
    _stop_linked(srv)


def test_call_to_dead_pid_or_unknown_name_raises_noproc():
    pid = snowg.spawn(lambda: None)
    wait_down(pid)
    with pytest.raises(NoProc):
        snowg.call(pid, "anything")
    with pytest.raises(NoProc):
        snowg.call("nobody_has_this_name", "anything")
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0
    assert snowg.process_info(snowg.self())["monitors"] == []


def test_server_dying_during_call_raises_call_error():
    srv = Store.start(snowg.self())
    with pytest.raises(CallError) as ei:
        snowg.call(srv, ("raise",))
    assert ei.value.reason.type == "ValueError"
    assert snowg.receive(timeout=5)[0] == "terminate"


def test_call_error_carries_the_exit_reason_of_a_killed_server():
    srv = Store.start(snowg.self())
    snowg.spawn(lambda: (snowg.call(srv, ("get", "x")), snowg.exit(srv, "kill")))
    with pytest.raises(CallError) as ei:
        snowg.call(srv, ("hold",))
    assert ei.value.reason == "killed"


def test_call_to_a_supervised_server_restarted_mid_call_raises_call_error():
    me = snowg.self()
    sup = supervisor.start_link([ChildSpec("store", (Store, (me,)))])
    [(_, srv, _)] = supervisor.which_children(sup)
    outcome: List[Any] = []

    def caller() -> None:
        try:
            snowg.call(srv, ("hold",))
        except CallError as e:
            outcome.append(e.reason)

    c = snowg.spawn(caller)
    cref = snowg.monitor(c)
    snowg.call(srv, ("get", "x"))  # the held call is in the server
    snowg.cast(srv, ("stop", "crashed"))
    snowg.receive(lambda m: type(m) is Down and m.ref == cref, 5)
    assert outcome == ["crashed"]
    [(_, new, _)] = supervisor.which_children(sup)
    assert new != srv and snowg.call(new, ("put", "a", 1)) == "ok"
    _stop_linked(sup)


def test_calling_self_is_an_error():
    class Selfish(GenServer):
        def handle_call(self, req, from_, state):
            try:
                snowg.call(snowg.self(), "again")
            except CallError as e:
                return ("reply", e.reason, state)
            return ("reply", "no error", state)

    srv = Selfish.start_link()
    assert snowg.call(srv, "x") == "calling_self"
    _stop_linked(srv)


def test_init_raising_gives_start_error_and_the_caller_lives():
    class Bad(GenServer):
        def init(self):
            raise RuntimeError("no init for you")

    with pytest.raises(StartError) as ei:
        Bad.start_link()
    assert ei.value.reason.type == "RuntimeError"
    assert ei.value.child_id is None
    me = snowg.process_info(snowg.self())
    assert me["message_queue_len"] == 0 and me["links"] == []


def test_init_stop_gives_start_error_also_to_a_trapping_caller():
    class Refuse(GenServer):
        def init(self, why):
            return ("stop", why)

    snowg.trap_exit(True)
    with pytest.raises(StartError) as ei:
        Refuse.start_link("not today")
    assert ei.value.reason == "not today"
    assert snowg.process_info(snowg.self())["message_queue_len"] == 0  # no Exit either


def test_name_taken_is_a_start_error():
    srv = Store.start_link(snowg.self(), name="taken")
    with pytest.raises(StartError) as ei:
        Store.start_link(snowg.self(), name="taken")
    assert ei.value.reason == ("already_started", srv)
    _stop_linked(srv)


def test_start_timeout_kills_the_slow_server():
    class Slow(GenServer):
        def init(self):
            snowg.receive()  # never returns

    with pytest.raises(StartError) as ei:
        Slow.start_link(timeout=0.05)
    assert ei.value.reason == "timeout"
    me = snowg.self()
    assert snowg.processes() == [me]


def test_terminate_runs_on_parent_shutdown_when_trapping():
    """semantics rule 22."""
    me = snowg.self()

    def parent() -> None:
        Store.start_link(me, True)
        snowg.exit("shutdown")

    snowg.spawn(parent)
    assert snowg.receive(timeout=5) == ("terminate", "shutdown")


def test_terminate_does_not_run_when_killed_by_an_untrapped_signal():
    me = snowg.self()
    srv = Store.start(me)
    snowg.exit(srv, "die")
    assert wait_down(srv) == "die"  # a terminate message would have been sent before this
    with pytest.raises(snowg.Timeout):
        snowg.receive(lambda m: m[0] == "terminate", 0)


def test_handler_calling_exit_runs_terminate_then_ends_with_that_reason():
    # OTP's gen_server catches exit(Reason) in a callback: terminate(Reason, State), then exit.
    me = snowg.self()
    srv = Store.start(me)
    ref = snowg.monitor(srv)
    with pytest.raises(CallError) as err:
        snowg.call(srv, ("exit", "normal"))
    assert err.value.reason == "normal"
    assert snowg.receive(timeout=5) == ("terminate", "normal")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == "normal"

    srv = Store.start(me)
    ref = snowg.monitor(srv)
    snowg.cast(srv, ("exit", ("shutdown", "cast")))
    assert snowg.receive(timeout=5) == ("terminate", ("shutdown", "cast"))
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == ("shutdown", "cast")


def test_exit_signal_while_inside_a_handler_skips_terminate():
    me = snowg.self()
    srv = Store.start(me)
    ref = snowg.monitor(srv)
    caller = snowg.spawn(lambda: snowg.call(srv, ("block",), timeout=None))
    assert snowg.receive(timeout=5) == ("blocked", srv)
    snowg.exit(srv, "die")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == "die"
    with pytest.raises(snowg.Timeout):
        snowg.receive(lambda m: m[0] == "terminate", 0)
    snowg.exit(caller, "kill")


def test_init_ignore_returns_none_and_leaves_nothing_behind():
    class Ignorer(GenServer):
        def init(self, rec):
            snowg.send(rec, ("init", snowg.self()))
            return "ignore"

    me = snowg.self()
    snowg.trap_exit(True)  # an Exit from the ignoring server would show in the mailbox
    assert Ignorer.start_link(me, name="ign") is None
    _, pid = snowg.receive(timeout=5)
    assert not snowg.is_alive(pid)
    assert snowg.whereis("ign") is None
    info = snowg.process_info(me)
    assert info["message_queue_len"] == 0 and info["links"] == []
    assert Ignorer.start(me) is None
    assert snowg.receive(timeout=5)[0] == "init"


class Loader(GenServer):
    """init returns Continue: the slow part runs in handle_continue, before any message."""

    def init(self, rec: Any) -> Any:
        self.rec = rec
        return Continue([], "load")

    def handle_continue(self, term: Any, state: Any) -> tuple:
        state.append(term)
        snowg.send(self.rec, ("continued", term))
        if term == "load":
            return ("noreply", state, ("continue", "more"))
        if term == "fail":
            raise ValueError("continue failed")
        return ("noreply", state)

    def handle_call(self, req: Any, from_: Any, state: Any) -> tuple:
        if req == "get":
            return ("reply", list(state), state)
        return ("reply", "ok", state, ("continue", req))

    def terminate(self, reason: Any, state: Any) -> None:
        snowg.send(self.rec, ("terminate", reason))


def test_continue_runs_before_any_message_and_chains():
    me = snowg.self()
    srv = Loader.start(me)
    assert snowg.call(srv, "get") == ["load", "more"]  # the call was queued before they ran
    assert [snowg.receive(timeout=5) for _ in range(2)] == [("continued", "load"), ("continued", "more")]
    assert snowg.call(srv, "again") == "ok"  # the reply goes out first, then handle_continue
    assert snowg.receive(timeout=5) == ("continued", "again")
    assert snowg.call(srv, "get") == ["load", "more", "again"]


def test_a_raising_handle_continue_ends_the_server_with_terminate():
    me = snowg.self()
    srv = Loader.start(me)
    ref = snowg.monitor(srv)
    assert snowg.call(srv, "fail") == "ok"
    reason = snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason
    assert reason.type == "ValueError"
    assert snowg.receive(lambda m: m[0] == "terminate", 5) == ("terminate", reason)


def test_abnormal_stop_is_logged_with_the_last_message(caplog):
    srv = Store.start(snowg.self())
    with caplog.at_level(logging.ERROR, logger="snowg"):
        snowg.cast(srv, ("stop", "bad_thing"))
        assert wait_down(srv) == "bad_thing"
    text = caplog.text
    assert "bad_thing" in text and "Last message" in text and "('$gen_cast', ('stop', 'bad_thing'))" in text


def test_quiet_reasons_are_not_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="snowg"):
        for reason in ("normal", "shutdown", ("shutdown", "x")):
            srv = Store.start(snowg.self())
            ref = snowg.monitor(srv)
            snowg.cast(srv, ("stop", reason))
            assert snowg.receive(lambda m, ref=ref: type(m) is Down and m.ref == ref, 5).reason == reason
    assert caplog.records == []


def test_bad_return_value_stops_the_server():
    srv = Store.start(snowg.self())
    with pytest.raises(CallError) as ei:
        snowg.call(srv, ("bad",))
    assert ei.value.reason == ("bad_return_value", "nonsense")


def test_timeout_return_sends_timeout_to_handle_info():
    srv = Store.start_link(snowg.self())
    assert snowg.call(srv, ("idle", 0.01)) == "ok"
    assert snowg.receive(timeout=5) == ("info", "timeout")
    _stop_linked(srv)


def test_trapping_server_gets_exits_of_others_than_its_parent_as_info():
    me = snowg.self()
    srv = Store.start_link(me, True)
    other = snowg.spawn(lambda: snowg.exit(srv, "custom"))
    assert snowg.receive(timeout=5) == ("info", Exit(other, "custom"))
    snowg.trap_exit(True)
    snowg.exit(srv, "from_parent")  # from the parent: terminate, then the same reason
    assert snowg.receive(timeout=5) == ("terminate", "from_parent")
    assert snowg.receive(timeout=5) == Exit(srv, "from_parent")


def test_stop_raises_noproc_for_a_missing_server():
    with pytest.raises(NoProc):
        stop("not_there")


def test_cast_to_missing_name_is_silent():
    snowg.cast("not_there", "x")


def test_parent_exit_not_trapped_kills_without_terminate():
    me = snowg.self()

    def parent() -> None:
        snowg.send(me, ("child", Store.start_link(me)))
        snowg.receive()

    p = snowg.spawn(parent)
    _tag, child = snowg.receive(timeout=5)
    ref = snowg.monitor(child)
    snowg.exit(p, "crash")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, 5).reason == "crash"
    with pytest.raises(snowg.Timeout):
        snowg.receive(lambda m: type(m) is tuple and m[0] == "terminate", 0)
