"""snowg.telemetry's rules, as Erlang's ``:telemetry``: attach, detach, execute, list, a raising handler."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import pytest

import snowg
from snowg import telemetry

pytestmark = pytest.mark.timeout(30)

A = ("my_app", "thing", "done")
B = ("my_app", "thing", "failed")
C = ("other", "event")

Call = Tuple[str, Tuple[str, ...], Dict[str, float], Dict[str, Any], Any]


@pytest.fixture
def calls():
    """A list the handlers append to; every handler id of the test detached afterwards."""
    got: List[Call] = []
    yield got
    for info in telemetry.list_handlers():
        if info.id.startswith("t-"):
            telemetry.detach(info.id)


def recorder(name: str, calls: List[Call]):
    def handler(event, measurements, metadata, config):
        calls.append((name, event, measurements, metadata, config))

    return handler


def test_attached_handlers_are_called_in_order_with_measurements_metadata_and_config(calls):
    telemetry.attach("t-1", A, recorder("one", calls), config={"k": 1})
    telemetry.attach("t-2", A, recorder("two", calls))
    telemetry.execute(A, {"duration": 2.5}, {"who": "me"})
    assert calls == [
        ("one", A, {"duration": 2.5}, {"who": "me"}, {"k": 1}),
        ("two", A, {"duration": 2.5}, {"who": "me"}, None),
    ]


def test_an_event_calls_only_its_own_handlers(calls):
    telemetry.attach("t-a", A, recorder("a", calls))
    telemetry.execute(B, {"n": 1}, {})
    telemetry.execute(C, {"n": 1}, {})
    telemetry.execute(("my_app", "thing"), {"n": 1}, {})  # a prefix is another event
    assert calls == []
    telemetry.execute(A, {"n": 1}, {})
    assert [c[0] for c in calls] == ["a"]


def test_attach_many_and_detach_removes_every_event_of_the_id(calls):
    telemetry.attach_many("t-many", [A, B], recorder("m", calls))
    telemetry.execute(A, {"n": 1}, {})
    telemetry.execute(B, {"n": 2}, {})
    assert [(c[1], c[2]) for c in calls] == [(A, {"n": 1}), (B, {"n": 2})]
    assert telemetry.detach("t-many") is True
    assert telemetry.detach("t-many") is False
    telemetry.execute(A, {"n": 3}, {})
    telemetry.execute(B, {"n": 4}, {})
    assert len(calls) == 2


def test_executing_an_event_nobody_listens_to_does_nothing():
    telemetry.execute(("nobody", "listens"), {"n": 1}, {"x": object()})


def test_a_handler_id_is_attached_once(calls):
    telemetry.attach("t-dup", A, recorder("a", calls))
    with pytest.raises(ValueError, match="t-dup"):
        telemetry.attach("t-dup", B, recorder("b", calls))
    telemetry.execute(B, {}, {})
    assert calls == []


@pytest.mark.parametrize("event", [(), "snowg.process.crash", ["snowg", "process"], ("snowg", 1)])
def test_an_event_is_a_non_empty_tuple_of_str(event, calls):
    with pytest.raises(TypeError, match="tuple of str"):
        telemetry.attach("t-bad", event, recorder("x", calls))
    assert telemetry.detach("t-bad") is False


def test_a_handler_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        telemetry.attach("t-bad", A, "not a function")  # type: ignore[arg-type]


def test_attach_many_needs_an_event(calls):
    with pytest.raises(ValueError, match="at least one event"):
        telemetry.attach_many("t-none", [], recorder("x", calls))


def test_a_raising_handler_is_detached_with_one_warning_and_the_others_still_run(calls, caplog):
    def broken(event, measurements, metadata, config):
        raise RuntimeError("bug in a handler")

    caplog.set_level(logging.WARNING, logger="snowg")
    telemetry.attach("t-first", A, recorder("first", calls))
    telemetry.attach_many("t-broken", [A, B], broken)
    telemetry.attach("t-last", A, recorder("last", calls))
    telemetry.execute(A, {"n": 1}, {})  # nothing raised here
    assert [c[0] for c in calls] == ["first", "last"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "snowg"]
    assert [r.getMessage() for r in warnings] == [
        "telemetry handler 't-broken' raised on event ('my_app', 'thing', 'done') and was detached"
    ]
    assert warnings[0].exc_info is not None and warnings[0].exc_info[0] is RuntimeError
    assert [h.id for h in telemetry.list_handlers(("my_app",))] == ["t-first", "t-last"]  # gone from B too
    telemetry.execute(A, {"n": 2}, {})
    telemetry.execute(B, {"n": 2}, {})
    assert [c[0] for c in calls] == ["first", "last", "first", "last"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_handler_may_detach_itself_while_the_event_runs(calls):
    def once(event, measurements, metadata, config):
        calls.append(("once", event, measurements, metadata, config))
        telemetry.detach("t-once")

    telemetry.attach("t-once", A, once)
    telemetry.attach("t-after", A, recorder("after", calls))
    telemetry.execute(A, {}, {})
    telemetry.execute(A, {}, {})
    assert [c[0] for c in calls] == ["once", "after", "after"]


def test_list_handlers_by_prefix(calls):
    h = recorder("x", calls)
    telemetry.attach_many("t-l1", [B, A], h, config=7)
    telemetry.attach("t-l2", C, h)
    mine = [i for i in telemetry.list_handlers() if i.id.startswith("t-")]
    assert [(i.id, i.event, i.config) for i in mine] == [("t-l1", A, 7), ("t-l1", B, 7), ("t-l2", C, None)]
    assert [(i.id, i.event) for i in telemetry.list_handlers(("my_app", "thing", "failed"))] == [("t-l1", B)]
    assert [(i.id, i.event) for i in telemetry.list_handlers(["other"])] == [("t-l2", C)]
    assert telemetry.list_handlers(("nothing",)) == []
    assert all(i.function is h for i in mine)


def test_handlers_run_in_the_greenlet_that_executes(calls):
    seen = []

    def where(event, measurements, metadata, config):
        seen.append(snowg.self())

    telemetry.attach("t-where", A, where)
    me = snowg.self()
    other = snowg.spawn(lambda: telemetry.execute(A, {}, {}))
    ref = snowg.monitor(other)
    snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=5)
    telemetry.execute(A, {}, {})
    assert seen == [other, me]


def test_snowg_events_are_listed():
    assert telemetry.EVENTS == (
        ("snowg", "process", "crash"),
        ("snowg", "supervisor", "restart"),
        ("snowg", "supervisor", "give_up"),
        ("snowg", "node", "up"),
        ("snowg", "node", "down"),
        ("snowg", "session", "busy"),
        ("snowg", "ws", "connect"),
        ("snowg", "ws", "close"),
        ("snowg", "ws", "overflow"),
    )
