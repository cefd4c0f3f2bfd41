"""Remote supervision (semantics rules 13-20, 26).

Supervisors run in this test process (a node of the test cluster, tick 1 s);
their remote children run in real peer node OS processes that import
``tests/supfuncs.py``. Children report ``('started', id, pid)`` and
``('stopped', id)`` to the test process, which checks the exact sequence.
Faults are real: ``kill -9`` and SIGSTOP of a peer, a peer restarted under the
same name. Synchronisation is by messages and monitors; every test is
time-bounded.
"""

pytest_plugins = ["snowg.testing"]

import logging  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List, Tuple  # noqa: E402

import pytest  # noqa: E402

import snowg  # noqa: E402
from snowg import ChildSpec, Down, StartError, supervisor  # noqa: E402
from snowg.gen_server import stop as stop_server  # noqa: E402

from supfuncs import (  # noqa: E402
    Ignorer,
    Member,
    Refuser,
    Undeclared,
    named_worker,
    not_spawnable,
    stubborn,
    worker,
)
from support import no_message  # noqa: E402

pytestmark = pytest.mark.timeout(90)

MODS = ["supfuncs"]
UNCONNECTED = "nosuchnode@127.0.0.1"


# ------------------------------------------------------------------ helpers


def is_report(m: Any) -> bool:
    return type(m) is tuple and len(m) >= 2 and m[0] in ("started", "stopped", "ignored")


def events(n: int, timeout: float = 15.0) -> List[Tuple[Any, ...]]:
    """The next ``n`` reports as (kind, id); the pids of 'started' go to :data:`PIDS`."""
    out = []
    for _ in range(n):
        m = snowg.receive(is_report, timeout)
        if m[0] == "started":
            PIDS[m[1]] = m[2]
        out.append((m[0], m[1]))
    return out


PIDS: Dict[Any, snowg.Pid] = {}


def no_more_events(wait: float = 0.3) -> None:
    no_message(is_report, wait)


def watch(pid: Any) -> Any:
    return snowg.monitor(pid)


def down_reason(ref: Any, timeout: float = 30.0) -> Any:
    return snowg.receive(lambda m: type(m) is Down and m.ref == ref, timeout).reason


def stop_sup(sup: Any) -> None:
    stop_server(sup, "shutdown", timeout=30)


def remote(cid: Any, node: Any, fn: Any = worker, **kw: Any) -> ChildSpec:
    return ChildSpec(cid, (fn, (snowg.self(), cid)), node=node, **kw)


def local(cid: Any, fn: Any = worker, **kw: Any) -> ChildSpec:
    return ChildSpec(cid, (fn, (snowg.self(), cid)), **kw)


@pytest.fixture(autouse=True)
def clear_pids():
    PIDS.clear()
    yield


# --------------------------------------------------- restart on the same node


def test_remote_child_crash_is_restarted_on_the_same_node(peers):
    """semantics rule 4/15/16: the crash arrives as a trapped exit; the restart goes to the same node."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("w", b.name)], intensity=5)
    assert events(1) == [("started", "w")]
    first = PIDS["w"]
    assert first.node == b.name
    assert supervisor.which_children(sup) == [("w", first, "worker")]
    assert supervisor.count_children(sup) == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}

    snowg.send(first, ("exit", "boom"))
    assert events(1) == [("started", "w")]
    second = PIDS["w"]
    assert second.node == b.name and second.creation == first.creation and second != first
    assert supervisor.which_children(sup) == [("w", second, "worker")]
    ref = watch(first)
    assert down_reason(ref) in ("noproc", "boom")  # the old one is gone
    stop_sup(sup)
    assert events(1) == [("stopped", "w")]
    no_more_events()


def test_remote_child_by_registered_name(peers):
    """``fn`` may be the registered spawnable name (a str) of a function of the other node."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([ChildSpec("n", ("supfuncs.named_worker", (snowg.self(), "n")), node=b.name)])
    assert events(1) == [("started", "n")]
    assert PIDS["n"].node == b.name
    assert supervisor.which_children(sup) == [("n", PIDS["n"], "worker")]
    stop_sup(sup)
    assert events(1) == [("stopped", "n")]


def test_transient_remote_child_ending_normally_is_not_restarted(peers):
    """semantics rule 15 applies to remote children: transient + 'normal' is not restarted."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("t", b.name, restart="transient")])
    events(1)
    pid = PIDS["t"]
    ref = watch(pid)
    snowg.send(pid, ("exit", "normal"))
    assert down_reason(ref) == "normal"
    assert supervisor.which_children(sup) == [("t", None, "worker")]
    no_more_events()
    stop_sup(sup)


# ----------------------------------------------------------------- node loss


def test_kill_9_of_the_childs_node_ends_the_supervisor_by_intensity(peers, caplog):
    """semantics rule 8/17/26: 'noconnection' restarts, every failed restart counts, then 'shutdown'."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("w", b.name)], intensity=3, period=30)
    events(1)
    child = PIDS["w"]
    sup_ref = watch(sup)
    child_ref = watch(child)
    with caplog.at_level(logging.INFO, logger="snowg"):
        b.kill()
        assert down_reason(child_ref) == "noconnection"
        assert down_reason(sup_ref) == "shutdown"
    text = caplog.text
    assert "child_terminated" in text and "noconnection" in text
    assert text.count("start_error") == 3  # three restarts, each failed to reach the node
    assert "reached_max_restart_intensity" in text
    no_more_events()


def test_unreachable_node_at_start_fails_the_start(snowg_node):
    """semantics rule 13: a remote child that cannot be reached fails start with 'noconnection'."""
    with pytest.raises(StartError) as e:
        supervisor.start([remote("w", UNCONNECTED)])
    assert e.value.child_id == "w"
    assert e.value.reason == "noconnection"


def test_sigstop_of_the_childs_node_is_detected_by_ticks(peers):
    """A frozen node is declared down by ticks (4 * tick); then as a lost node."""
    b = peers.start(modules=MODS)
    try:
        sup = supervisor.start([remote("w", b.name)], intensity=1, period=60, connect_timeout=0.5)
        events(1)
        child = PIDS["w"]
        sup_ref, child_ref = watch(sup), watch(child)
        t0 = time.monotonic()
        b.freeze()
        assert down_reason(child_ref, 15) == "noconnection"
        detected = time.monotonic() - t0
        assert 3.0 <= detected <= 4 * 1.0 + 2.0  # ticks, not the socket: it stayed open
        assert down_reason(sup_ref, 15) == "shutdown"
        no_more_events()
    finally:
        b.thaw()


def test_candidate_nodes_child_moves_to_the_next_node_when_its_node_is_lost(peers):
    """node=[b, c] starts on b, and on c once b is lost."""
    b = peers.start(modules=MODS)
    c = peers.start(modules=MODS)
    sup = supervisor.start([remote("w", [b.name, c.name])], intensity=5, period=30)
    events(1)
    assert PIDS["w"].node == b.name
    b.kill()
    assert events(1) == [("started", "w")]
    assert PIDS["w"].node == c.name
    assert supervisor.which_children(sup) == [("w", PIDS["w"], "worker")]
    # it crashes on c: restarted on c again (b is still gone)
    snowg.send(PIDS["w"], ("exit", "boom"))
    assert events(1) == [("started", "w")]
    assert PIDS["w"].node == c.name
    stop_sup(sup)
    assert events(1) == [("stopped", "w")]


def test_candidate_nodes_skip_a_frozen_node_after_detection(peers):
    """A frozen first candidate costs at most connect_timeout per start, then the next one is used."""
    b = peers.start(modules=MODS)
    c = peers.start(modules=MODS)
    try:
        sup = supervisor.start([remote("w", [b.name, c.name])], intensity=5, period=30, connect_timeout=0.5)
        events(1)
        assert PIDS["w"].node == b.name
        b.freeze()
        assert events(1, timeout=20) == [("started", "w")]
        assert PIDS["w"].node == c.name
        stop_sup(sup)
        assert events(1) == [("stopped", "w")]
    finally:
        b.thaw()


def test_node_restarted_under_the_same_name_in_time_gets_the_child_back(peers):
    """A restart that finds the node back (same name, new creation) starts the child there."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("w", b.name)], intensity=1_000_000, period=60)
    events(1)
    old = PIDS["w"]
    sup_ref = watch(sup)
    b.kill()
    # A new OS process (a new creation) with the same name and port, as a
    # restarted service would be; the supervisor, retrying meanwhile,
    # reconnects to it on its own (on demand, to b's last known address).
    port = b.address.rsplit(":", 1)[1]
    b2 = peers.start(name=b.name, modules=MODS, connect=False, extra_args=["--port", port])
    assert events(1, timeout=30) == [("started", "w")]
    new = PIDS["w"]
    assert new.node == b2.name == b.name
    assert new.creation != old.creation
    assert supervisor.which_children(sup) == [("w", new, "worker")]
    stop_sup(sup)
    assert events(1) == [("stopped", "w")]
    assert down_reason(sup_ref) == "shutdown"


# ---------------------------------------------------------- stopping children


def test_terminate_child_kills_a_remote_child_that_ignores_shutdown_after_the_timeout(peers):
    """semantics rule 14 : 'shutdown', wait ``shutdown`` s for Down, then 'kill'."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("s", b.name, stubborn, shutdown=1.0)])
    events(1)
    child = PIDS["s"]
    ref = watch(child)
    t0 = time.monotonic()
    supervisor.terminate_child(sup, "s")
    waited = time.monotonic() - t0
    assert snowg.receive(is_report, 5) == ("ignored", "s", "shutdown")
    assert down_reason(ref) == "killed"
    assert waited >= 1.0
    assert supervisor.which_children(sup) == [("s", None, "worker")]
    # the spec is kept: restart_child starts it on its node again
    pid = supervisor.restart_child(sup, "s")
    assert events(1) == [("started", "s")]
    assert pid == PIDS["s"] and pid.node == b.name
    stop_sup(sup)
    assert snowg.receive(is_report, 5) == ("ignored", "s", "shutdown")  # and killed after 1 s


def test_terminate_child_brutal_kill_and_shutdown_of_remote_children(peers):
    """'brutal_kill' kills at once; a seconds shutdown of a cooperative child ends it with 'shutdown'."""
    b = peers.start(modules=MODS)
    sup = supervisor.start(
        [
            remote("brutal", b.name, stubborn, shutdown="brutal_kill"),
            remote("polite", b.name, worker, shutdown=10.0),
            remote("patient", b.name, worker, shutdown="infinity"),
        ]
    )
    events(3)
    refs = {cid: watch(PIDS[cid]) for cid in ("brutal", "polite", "patient")}
    supervisor.terminate_child(sup, "brutal")
    assert down_reason(refs["brutal"]) == "killed"
    supervisor.terminate_child(sup, "polite")
    assert events(1) == [("stopped", "polite")]
    assert down_reason(refs["polite"]) == "shutdown"
    supervisor.terminate_child(sup, "patient")
    assert events(1) == [("stopped", "patient")]
    assert down_reason(refs["patient"]) == "shutdown"
    no_more_events()  # the stubborn one was killed without seeing 'shutdown'
    assert supervisor.count_children(sup) == {"specs": 3, "active": 0, "supervisors": 0, "workers": 3}
    stop_sup(sup)


# ------------------------------------------------------------ mixed strategies


def mixed(b: Any) -> List[ChildSpec]:
    me = snowg.self()
    return [
        ChildSpec("l1", (Member, (me, "l1"))),
        ChildSpec("r1", (Member, (me, "r1")), node=b),
        ChildSpec("l2", (Member, (me, "l2"))),
        ChildSpec("r2", (Member, (me, "r2")), node=b),
    ]


def test_one_for_all_with_local_and_remote_children_restarts_all_in_order(peers, snowg_node):
    """semantics rule 16: the others stopped in reverse start order, then all started in start order."""
    b = peers.start(modules=MODS)
    sup = supervisor.start(mixed(b.name), strategy="one_for_all", intensity=5)
    assert events(4) == [("started", "l1"), ("started", "r1"), ("started", "l2"), ("started", "r2")]
    before = dict(PIDS)
    assert [PIDS[c].node for c in ("l1", "r1", "l2", "r2")] == [snowg_node.name, b.name, snowg_node.name, b.name]
    assert snowg.call(PIDS["r1"], "where") == (b.name, PIDS["r1"])

    snowg.cast(PIDS["r1"], ("exit", "boom"))
    assert events(8) == [
        ("stopped", "r1"),  # its own terminate (the crash)
        ("stopped", "r2"),
        ("stopped", "l2"),
        ("stopped", "l1"),
        ("started", "l1"),
        ("started", "r1"),
        ("started", "l2"),
        ("started", "r2"),
    ]
    for cid in before:
        assert PIDS[cid] != before[cid] and PIDS[cid].node == before[cid].node
    assert supervisor.which_children(sup) == [
        ("l1", PIDS["l1"], "worker"),
        ("r1", PIDS["r1"], "worker"),
        ("l2", PIDS["l2"], "worker"),
        ("r2", PIDS["r2"], "worker"),
    ]
    stop_sup(sup)
    assert events(4) == [("stopped", "r2"), ("stopped", "l2"), ("stopped", "r1"), ("stopped", "l1")]
    no_more_events()


def test_rest_for_one_with_local_and_remote_children(peers):
    """semantics rule 16: the children after the failed one stopped (reverse), then it and they started."""
    b = peers.start(modules=MODS)
    sup = supervisor.start(mixed(b.name), strategy="rest_for_one", intensity=5)
    events(4)
    snowg.cast(PIDS["l2"], ("exit", "boom"))
    assert events(4) == [("stopped", "l2"), ("stopped", "r2"), ("started", "l2"), ("started", "r2")]
    snowg.cast(PIDS["r1"], ("exit", "boom"))
    assert events(6) == [
        ("stopped", "r1"),
        ("stopped", "r2"),
        ("stopped", "l2"),
        ("started", "r1"),
        ("started", "l2"),
        ("started", "r2"),
    ]
    stop_sup(sup)
    assert events(4) == [("stopped", "r2"), ("stopped", "l2"), ("stopped", "r1"), ("stopped", "l1")]


def test_remote_gen_server_child_failing_init_is_a_failed_start(peers):
    """A remote GenServer counts as started once init returned; a refusing init is a StartError."""
    b = peers.start(modules=MODS)
    with pytest.raises(StartError) as e:
        supervisor.start(
            [
                remote("ok", b.name, Member),
                ChildSpec("bad", (Refuser, ("no thanks",)), node=b.name),
            ]
        )
    assert e.value.child_id == "bad" and e.value.reason == "no thanks"
    assert events(2) == [("started", "ok"), ("stopped", "ok")]  # the started one was stopped


def test_remote_gen_server_child_ignoring_its_start_is_kept_with_no_process(peers):
    """OTP's init -> ignore on another node: the spec stays, with no process; the next child starts."""
    b = peers.start(modules=MODS)
    sup = supervisor.start([remote("i", b.name, Ignorer), remote("ok", b.name, Member)])
    assert snowg.receive(lambda m: type(m) is tuple and m[0] == "ignored", 15) == ("ignored", "i", b.name)
    assert events(1) == [("started", "ok")]
    assert [(c, p is None) for c, p, _t in supervisor.which_children(sup)] == [("i", True), ("ok", False)]
    stop_sup(sup)
    assert events(1) == [("stopped", "ok")]


# ------------------------------------------------------- remote supervisors


def test_remote_supervisor_subtree_restarts_its_own_children_on_its_node(peers):
    """A nested supervisor on node b: started once its children started; it restarts them there."""
    b = peers.start(modules=MODS)
    me = snowg.self()
    sub = supervisor.child_spec(
        "sub",
        [ChildSpec("a", (worker, (me, "a"))), ChildSpec("g", (Member, (me, "g")))],
        node=b.name,
        strategy="one_for_one",
        intensity=5,
    )
    sup = supervisor.start([local("top"), sub], intensity=5)
    assert events(3) == [("started", "top"), ("started", "a"), ("started", "g")]
    assert PIDS["a"].node == b.name and PIDS["g"].node == b.name
    (_, top_pid, _), (sid, sub_pid, stype) = supervisor.which_children(sup)
    assert (sid, stype) == ("sub", "supervisor") and sub_pid.node == b.name
    assert supervisor.count_children(sup) == {"specs": 2, "active": 2, "supervisors": 1, "workers": 1}
    assert supervisor.which_children(sub_pid) == [("a", PIDS["a"], "worker"), ("g", PIDS["g"], "worker")]

    old_a = PIDS["a"]
    snowg.send(old_a, ("exit", "boom"))
    assert events(1) == [("started", "a")]  # restarted by the remote supervisor, on its node
    assert PIDS["a"].node == b.name and PIDS["a"] != old_a
    assert supervisor.which_children(sup)[1] == ("sub", sub_pid, "supervisor")  # the subtree absorbed it
    assert supervisor.which_children(sub_pid) == [("a", PIDS["a"], "worker"), ("g", PIDS["g"], "worker")]

    # the dynamic API works on the remote supervisor too
    pid = supervisor.start_child(sub_pid, ChildSpec("c", (worker, (me, "c"))))
    assert events(1) == [("started", "c")] and PIDS["c"] == pid and pid.node == b.name

    stop_sup(sup)
    assert events(4) == [("stopped", "c"), ("stopped", "g"), ("stopped", "a"), ("stopped", "top")]
    no_more_events()


def test_remote_supervisor_that_exceeds_its_intensity_is_restarted_by_its_parent(peers):
    """Failures escalate across nodes: the remote subtree ends with 'shutdown', the parent restarts it there."""
    b = peers.start(modules=MODS)
    me = snowg.self()
    sub = supervisor.child_spec("sub", [ChildSpec("a", (worker, (me, "a")))], node=b.name, intensity=0)
    sup = supervisor.start([sub], intensity=5)
    events(1)
    sub_pid = supervisor.which_children(sup)[0][1]
    ref = watch(sub_pid)
    snowg.send(PIDS["a"], ("exit", "boom"))  # intensity 0: the subtree gives up
    assert down_reason(ref) == "shutdown"
    assert events(1) == [("started", "a")]  # the parent restarted the subtree on b
    new_sub = supervisor.which_children(sup)[0][1]
    assert new_sub != sub_pid and new_sub.node == b.name
    stop_sup(sup)
    assert events(1) == [("stopped", "a")]


def test_remote_supervisor_failing_to_start_a_child_names_it(peers):
    """semantics rule 13 across nodes: the grandchild that failed is named."""
    b = peers.start(modules=MODS)
    sub = supervisor.child_spec("sub", [ChildSpec("bad", (Refuser, ("nope",)))], node=b.name)
    with pytest.raises(StartError) as e:
        supervisor.start([sub])
    assert e.value.child_id == "sub"
    assert e.value.reason == ("failed_to_start_child", "bad", "nope")


def test_remote_supervisor_ends_with_its_parents_node(peers):
    """The remote subtree sees its parent's node go ('noconnection') and stops its children."""
    b = peers.start(modules=MODS)
    me = snowg.self()
    sub = supervisor.child_spec("sub", [ChildSpec("a", (worker, (me, "a")))], node=b.name)
    sup = supervisor.start([sub], intensity=0)
    events(1)
    sub_pid = supervisor.which_children(sup)[0][1]
    a_ref = watch(PIDS["a"])
    ref = watch(sub_pid)
    snowg.disconnect(b.name)  # from b's side, this node is lost
    assert down_reason(ref) == "noconnection"
    assert down_reason(a_ref) == "noconnection"
    snowg.exit(sup, "kill")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "node, message",
    [
        ("bob", "name@host"),
        ("@host", "name@host"),
        ([], "empty"),
        (["a@h", "a@h"], "duplicate"),
        (["a@h", 3], "candidate"),
        (42, "node"),
    ],
)
def test_child_spec_node_validation(node: Any, message: str):
    with pytest.raises((ValueError, TypeError), match=message):
        ChildSpec("x", (worker, ()), node=node)


def test_child_spec_remote_fn_must_be_spawnable():
    with pytest.raises(ValueError, match="spawnable"):
        ChildSpec("x", (not_spawnable, ()), node="b@h")
    with pytest.raises(ValueError, match="spawnable"):
        ChildSpec("x", (Undeclared, ()), node="b@h")
    with pytest.raises(ValueError, match="spawnable"):
        ChildSpec("x", (lambda: None, ()), node="b@h")
    with pytest.raises(TypeError, match="cross"):
        ChildSpec("x", (worker, (object(),)), node="b@h")
    with pytest.raises(ValueError, match="node"):
        ChildSpec("x", (worker, (), {"node": 1}), node="b@h")
    spec = ChildSpec("x", (worker, ()), node=["a@h", "b@h"])
    assert spec.node == ("a@h", "b@h") and spec.nodes == ("a@h", "b@h")
    assert ChildSpec("x", ("some.name", ()), node="a@h").nodes == ("a@h",)
    assert ChildSpec("x", (worker, ())).nodes == ()
    with pytest.raises(TypeError):
        ChildSpec("x", ("some.name", ()))  # a str needs a node to be looked up on


def test_child_spec_remote_supervisor_children_must_cross():
    with pytest.raises(ValueError, match="spawnable"):
        supervisor.child_spec("s", [ChildSpec("x", (not_spawnable, ()))], node="b@h")
    with pytest.raises(TypeError, match="cross"):
        supervisor.child_spec("s", [ChildSpec(object(), (worker, ()))], node="b@h")
    with pytest.raises(ValueError, match="_clock"):
        supervisor.child_spec("s", [], node="b@h", _clock=time.monotonic)
    with pytest.raises(ValueError, match="connect_timeout"):
        supervisor.start([], connect_timeout=0)
    spec = supervisor.child_spec("s", [ChildSpec("x", (named_worker, ()))], node="b@h")
    assert spec.type == "supervisor" and spec.shutdown == "infinity"


def test_local_candidate_starts_the_child_here(snowg_node):
    """A candidate that is this node starts the child here (also by its registered name)."""
    sup = supervisor.start(
        [
            ChildSpec("w", ("supfuncs.named_worker", (snowg.self(), "w")), node=[UNCONNECTED, snowg_node.name]),
        ],
        connect_timeout=0.5,
    )
    assert events(1) == [("started", "w")]
    assert PIDS["w"].node == snowg_node.name
    stop_sup(sup)
    assert events(1) == [("stopped", "w")]
