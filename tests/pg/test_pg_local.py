"""Process groups on one node: the pg rules (semantics rules 31-38) one by one, plus bad arguments."""

from __future__ import annotations

import pytest

import snowg
import snowg.pg as pg
from snowg.pg import _scope
from support import no_message, recv, wait_down

TIME_LIMIT = 30


def spawn_member(*groups, scope: str = pg.DEFAULT_SCOPE) -> snowg.Pid:
    """A process that joins ``groups`` (in order, repeats count), says so, then waits for 'stop'."""
    parent = snowg.self()

    def body() -> None:
        for g in groups:
            pg.join(g, scope=scope)
        snowg.send(parent, ("joined", snowg.self()))
        snowg.receive(lambda m: m == "stop")

    pid = snowg.spawn(body)
    recv(lambda m: m == ("joined", pid))
    return pid


def notes(ref: snowg.Ref):
    return lambda m: type(m) is tuple and len(m) == 4 and m[0] == ref


# ------------------------------------------------------------ rule 31: scopes


def test_rule_31_the_default_scope_needs_no_start(me) -> None:
    pg.join("g")
    assert pg.get_members("g") == [me]
    assert snowg.whereis(pg.DEFAULT_SCOPE) is not None


def test_rule_31_another_scope_is_started_once_and_is_separate(me) -> None:
    pid = pg.start("other")
    assert pg.start("other") == pid
    assert snowg.whereis("other") == pid
    pg.join("g", scope="other")
    assert pg.get_members("g", scope="other") == [me]
    assert pg.get_members("g") == []
    assert pg.which_groups() == [] and pg.which_groups(scope="other") == ["g"]


def test_rule_31_a_scope_that_does_not_run_refuses_writes_and_reads_nothing(me) -> None:
    with pytest.raises(snowg.NoProc, match=r"pg.start\('nowhere'\)"):
        pg.join("g", scope="nowhere")
    with pytest.raises(snowg.NoProc):
        pg.monitor_scope(scope="nowhere")
    assert pg.get_members("g", scope="nowhere") == []
    assert pg.get_local_members("g", scope="nowhere") == []
    assert pg.which_groups(scope="nowhere") == []
    assert pg.member_nodes("g", scope="nowhere") == frozenset()
    assert pg.demonitor(snowg.make_ref(), scope="nowhere") is False


def test_rule_31_a_scope_name_held_by_another_process_is_refused(me) -> None:
    snowg.register("taken", me)
    with pytest.raises(snowg.StartError, match="registered to"):
        pg.start("taken")
    with pytest.raises(TypeError):
        pg.start(42)  # type: ignore[arg-type]


def test_rule_31_a_killed_scope_is_forgotten_and_the_default_one_restarts(me) -> None:
    pg.join("g")
    old = snowg.whereis(pg.DEFAULT_SCOPE)
    snowg.exit(old, "kill")
    wait_down(old)
    assert pg.get_members("g") == []  # its tables went with it
    pg.join("g")
    assert pg.get_members("g") == [me]
    assert snowg.whereis(pg.DEFAULT_SCOPE) not in (None, old)


def test_rule_31_start_soon_starts_a_scope_without_blocking_and_once() -> None:
    from snowg.testing import wait_for

    before = set(snowg.processes())
    pg.start_soon("later")
    pg.start_soon("later")  # under way: nothing more
    assert wait_for(lambda: _scope.live("later") is not None, 5)
    pg.start_soon("later")  # running: nothing more
    assert set(snowg.processes()) - before == {snowg.whereis("later")}  # the scope, no helper
    with pytest.raises(TypeError):
        pg.start_soon(1)  # type: ignore[arg-type]


# -------------------------------------------------------------- rule 32: join


def test_rule_32_join_adds_the_caller_once_per_join(me) -> None:
    assert pg.join("g") is None
    pg.join("g")
    assert pg.get_members("g") == [me, me]
    assert pg.get_local_members("g") == [me, me]


def test_rule_32_join_takes_a_pid_or_a_list(me) -> None:
    a, b = spawn_member(), spawn_member()
    pg.join("g", a)
    pg.join("g", [a, b, b])
    assert sorted(pg.get_members("g")) == sorted([a, a, b, b])


def test_rule_32_only_local_processes_join(me) -> None:
    remote = snowg.Pid("elsewhere@host", 7, 1)
    with pytest.raises(ValueError, match="only local processes join a group: join it on elsewhere@host"):
        pg.join("g", remote)
    with pytest.raises(ValueError):
        pg.join("g", [me, remote])
    assert pg.get_members("g") == []  # nothing of a refused list joined
    with pytest.raises(ValueError, match="only local processes leave"):
        pg.leave("g", remote)


@pytest.mark.parametrize(
    "group, error",
    [([1, 2], TypeError), ({"a": 1}, TypeError), (object(), TypeError), ("x" * 20000, ValueError)],
    ids=["list", "dict", "object", "huge"],
)
def test_rule_32_a_group_is_a_hashable_term_that_can_cross(me, group, error) -> None:
    with pytest.raises(error):
        pg.join(group)


def test_rule_32_groups_may_be_any_hashable_term(me) -> None:
    for group in [("room", 1), 42, b"bytes", ("nested", ("t", 2))]:
        pg.join(group)
        assert pg.get_members(group) == [me]


def test_rule_32_not_a_pid_is_a_type_error(me) -> None:
    with pytest.raises(TypeError):
        pg.join("g", "not a pid")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pg.join("g", [me, 3])  # type: ignore[list-item]


def test_rule_32_a_dead_process_joins_and_leaves_at_once(me) -> None:
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    ref, _ = pg.monitor("g")
    pg.join("g", dead)
    assert recv(notes(ref)) == (ref, "join", "g", [dead])
    assert recv(notes(ref)) == (ref, "leave", "g", [dead])
    assert pg.get_members("g") == []


# ------------------------------------------------------------- rule 33: leave


def test_rule_33_leave_removes_one_membership(me) -> None:
    pg.join("g")
    pg.join("g")
    assert pg.leave("g") is True
    assert pg.get_members("g") == [me]
    assert pg.leave("g") is True
    assert pg.get_members("g") == []
    assert pg.which_groups() == []


def test_rule_33_leave_is_false_when_not_joined(me) -> None:
    assert pg.leave("g") is False
    pg.join("h")
    assert pg.leave("g") is False
    assert pg.get_members("h") == [me]


def test_rule_33_leave_of_a_list_removes_those_joined(me) -> None:
    a, b = spawn_member("g"), spawn_member()
    assert pg.leave("g", [a, b]) is True
    assert pg.get_members("g") == []
    assert pg.leave("g", [a, b]) is False


# ------------------------------------------------------ rule 34: exit leaves


def test_rule_34_an_exit_leaves_every_group_once_per_join(me) -> None:
    pg.start("other")
    p = spawn_member("a", "a", "b", scope=pg.DEFAULT_SCOPE)
    pg.join("c", p, scope="other")
    pg.join("a")
    ref, _ = pg.monitor_scope()
    snowg.send(p, "stop")
    wait_down(p)
    got = sorted(recv(notes(ref))[1:] for _ in range(2))
    assert got == [("leave", "a", [p, p]), ("leave", "b", [p])]
    assert pg.get_members("a") == [me]
    assert pg.get_members("b") == []
    assert pg.get_members("c", scope="other") == []
    # The scope no longer monitors it.
    st = _scope.live(pg.DEFAULT_SCOPE)
    assert st is not None and p not in st.local


@pytest.mark.parametrize("reason", ["stop", "kill", "boom"])
def test_rule_34_any_exit_reason_leaves(me, reason) -> None:
    p = spawn_member("g")
    if reason == "stop":
        snowg.send(p, "stop")  # it returns: reason 'normal'
    else:
        snowg.exit(p, reason)
    wait_down(p)
    ref, members = pg.monitor("g")  # a call: the scope has handled the Down before it answers
    assert members == []


# ------------------------------------------------------------- rule 35: reads


def test_rule_35_reads_local_members_groups_and_nodes(me) -> None:
    p = spawn_member("a", "b")
    pg.join("a")
    assert sorted(pg.get_members("a")) == sorted([me, p])
    assert sorted(pg.get_local_members("a")) == sorted([me, p])
    assert sorted(pg.which_groups()) == ["a", "b"]
    assert pg.member_nodes("a") == frozenset({snowg.node()})
    assert pg.member_nodes("none") == frozenset()
    assert pg.get_members("none") == []


def test_rule_35_reads_work_from_a_plain_greenlet_and_never_block(me) -> None:
    import gevent

    pg.join("g")
    got = gevent.spawn(lambda: (pg.get_members("g"), pg.member_nodes("g"), pg.which_groups())).get(timeout=5)
    assert got == ([me], frozenset({snowg.node()}), ["g"])


def test_rule_35_a_read_starts_the_default_scope_without_waiting() -> None:
    assert snowg.whereis(pg.DEFAULT_SCOPE) is None  # (reset between tests)
    assert pg.get_members("g") == []
    snowg.self()
    from snowg.testing import wait_for

    assert wait_for(lambda: _scope.live(pg.DEFAULT_SCOPE) is not None, 5)


# ---------------------------------------------------------- rule 38: monitors


def test_rule_38_monitor_scope_gives_the_groups_then_every_change(me) -> None:
    pg.join("a")
    pg.join("a")
    ref, groups = pg.monitor_scope()
    assert groups == {"a": [me, me]}
    p = spawn_member("b")
    pg.leave("a")
    pg.join("c", [me, p])
    assert recv(notes(ref)) == (ref, "join", "b", [p])
    assert recv(notes(ref)) == (ref, "leave", "a", [me])
    assert recv(notes(ref)) == (ref, "join", "c", [me, p])
    no_message(notes(ref))


def test_rule_38_monitor_of_a_group_sees_that_group_only(me) -> None:
    pg.join("a")
    ref, members = pg.monitor("a")
    assert members == [me]
    pg.join("b")
    pg.leave("a")
    assert recv(notes(ref)) == (ref, "leave", "a", [me])
    no_message(notes(ref))


def test_rule_38_demonitor_stops_notes_and_drops_those_queued(me) -> None:
    ref, _ = pg.monitor_scope()
    gref, _ = pg.monitor("g")
    pg.join("g")  # one note of each is in the mailbox now
    assert pg.demonitor(ref) is True
    assert pg.demonitor(gref) is True
    assert pg.demonitor(ref) is False
    pg.leave("g")
    no_message(lambda m: type(m) is tuple and len(m) == 4 and m[0] in (ref, gref))


def test_rule_38_a_watcher_that_exits_is_forgotten(me) -> None:
    parent = me

    def watch() -> None:
        pg.monitor_scope()
        pg.monitor("g")
        snowg.send(parent, "watching")
        snowg.receive(lambda m: m == "stop")

    w = snowg.spawn(watch)
    recv(lambda m: m == "watching")
    st = _scope.live(pg.DEFAULT_SCOPE)
    assert st is not None and len(st.scope_monitors) == 1 and len(st.group_monitors) == 1
    snowg.send(w, "stop")
    wait_down(w)
    pg.join("g")  # a call: the scope has handled the watcher's Down before it
    assert st.scope_monitors == {} and st.group_monitors == {} and st.monitored_groups == {}


# ------------------------------------------------------- the pure parts


def test_sync_parts_keep_every_entry_and_fit_the_budget() -> None:
    from snowg.pg._wire import group_size, parts

    pid = snowg.Pid("n@h", 1, 1)
    groups = [(("g", i), [pid] * (i % 7)) for i in range(3000)] + [("big", [pid] * 5000)]
    cut = list(parts(groups, budget=4096))
    assert len(cut) > 10
    for part in cut:
        assert sum(group_size(g) + len(ps) * (16 + len(pid.node)) for g, ps in part) <= 4096
    total: dict = {}
    for part in cut:
        for g, ps in part:
            total[g] = total.get(g, 0) + len(ps)
    assert total == {g: len(ps) for g, ps in groups if ps}
    assert list(parts([])) == [[]]  # a node with nothing still sends one (empty) part


def test_scope_tables_count_joins_and_nodes() -> None:
    from snowg.pg._state import ScopeState

    me, a1, b1 = snowg.Pid("me@h", 1, 1), snowg.Pid("a@h", 1, 1), snowg.Pid("b@h", 1, 1)
    st = ScopeState("s", me)
    st.add("g", [me, me], None)
    st.add("g", [a1], "a@h")
    st.add("g", [b1], "b@h")
    assert st.member_nodes("g", "me@h") == frozenset({"me@h", "a@h", "b@h"})
    assert st.snapshot() == {"g": [me, me, a1, b1]}
    st.remove("g", [a1], "a@h")
    st.remove("g", [me], None)
    assert st.member_nodes("g", "me@h") == frozenset({"me@h", "b@h"})
    assert st.member_nodes("g", "renamed@h") == frozenset({"renamed@h", "b@h"})  # this node's name changed
    st.remove("g", [me], None)
    st.remove("g", [b1], "b@h")
    assert st.members == {} and st.sizes == {} and st.local_members == {} and st.remote_nodes == {}
    assert st.member_nodes("g", "me@h") == frozenset()
