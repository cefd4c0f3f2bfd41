"""rpc.call's quiet spawn reply and its int call tags (snowg.cluster.rpc, _spawn), against real peer nodes.

The runner's spawn reply is not delivered to the caller when it brings the
runner's pid (it goes to ``_spawn.started``): every way a call ends must leave
nothing behind (no pending request, no started pid, no monitor, no message),
and a call that times out after the reply must still kill the runner. The
outcome check the runner skips for values that always cross must give what
``check_term`` would.
"""

from __future__ import annotations

import math

import pytest
from remotefuncs import add, fail, not_declared, process_count, sleep_then
from rpcfuncs import exits_with, exits_with_a_non_term_by_rpc, offset_power_of_two, power_of_two, special_float
from support import no_message

import snowg
from snowg import rpc
from snowg.cluster import _nodestate, _spawn
from snowg.testing import wait_for

pytest_plugins = ["snowg.testing"]

MODS = ["remotefuncs", "rpcfuncs"]
W = 10.0


def _nothing_left(me: snowg.Pid) -> None:
    st = _nodestate.current
    assert st is not None
    assert _spawn.started == {}
    assert st.spawn_pending == {}
    assert snowg.process_info(me, ["monitors"])["monitors"] == []
    no_message()


def _call_in_a_process(node: str, fn, *args, timeout: float):
    """Start a process that makes the call and sends back ``("done", value or exception)``."""
    parent = snowg.self()

    def caller() -> None:
        try:
            result = rpc.call(node, fn, *args, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - sent back to the test
            result = exc
        snowg.send(parent, ("done", result))

    return snowg.spawn(caller)


def test_every_way_a_call_ends_leaves_nothing_behind(peers):
    peer = peers.start(modules=MODS)
    me = snowg.self()
    assert rpc.call(peer.name, add, 1, 2) == 3
    _nothing_left(me)
    with pytest.raises(snowg.RemoteError):
        rpc.call(peer.name, fail, "x")
    _nothing_left(me)
    with pytest.raises(snowg.SpawnError):
        rpc.call(peer.name, not_declared, me)
    _nothing_left(me)
    with pytest.raises(snowg.CallError):
        rpc.call(peer.name, exits_with, "bye")
    _nothing_left(me)
    with pytest.raises(snowg.CallTimeout):
        rpc.call(peer.name, sleep_then, 1, 30.0, timeout=0.2)
    _nothing_left(me)


def test_a_timeout_after_the_spawn_reply_kills_the_runner_at_once(peers):
    peer = peers.start(modules=MODS)
    baseline = peer.rpc(process_count)
    pid = _call_in_a_process(peer.name, sleep_then, "late", 60.0, timeout=3.0)
    # The reply came (the runner's pid is known only there), and the call still waits.
    assert wait_for(lambda: len(_spawn.started) == 1, timeout=W)
    (runner,) = _spawn.started.values()
    assert peer.rpc(snowg.is_alive, runner) is True
    _, result = snowg.receive(lambda m: type(m) is tuple and m[0] == "done", timeout=W)
    assert type(result) is snowg.CallTimeout
    assert _spawn.started == {}
    # Killed by the caller, not left sleeping for 60 s.
    assert wait_for(lambda: peer.rpc(process_count) == baseline, timeout=W)
    assert not snowg.is_alive(pid)
    _nothing_left(snowg.self())


def test_a_caller_killed_while_it_waits_leaves_nothing_behind(peers):
    peer = peers.start(modules=MODS)
    pid = _call_in_a_process(peer.name, sleep_then, "late", 60.0, timeout=30.0)
    assert wait_for(lambda: len(_spawn.started) == 1, timeout=W)
    ref = snowg.monitor(pid)
    snowg.exit(pid, "kill")
    assert snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=W).reason == "killed"
    assert _spawn.started == {}
    _nothing_left(snowg.self())


def test_a_caller_killed_before_the_spawn_reply_leaves_nothing_behind(peers):
    peer = peers.start(modules=MODS)
    peer.freeze()
    try:
        pid = _call_in_a_process(peer.name, sleep_then, "late", 0.5, timeout=30.0)
        st = _nodestate.current
        assert wait_for(lambda: len(st.spawn_pending) == 1, timeout=W)
        ref = snowg.monitor(pid)
        snowg.exit(pid, "kill")
        assert snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=W).reason == "killed"
    finally:
        peer.thaw()
    # The reply comes for a caller that is gone: nothing is kept for it.
    assert wait_for(lambda: st.spawn_pending == {}, timeout=W)
    assert peer.rpc(add, 1, 1) == 2  # a round trip: everything the peer sent before has been handled
    _nothing_left(snowg.self())


@pytest.mark.parametrize("reason", ["bye", ("x", "ok", 1), (0, "ok", 1), (1, "error", "T", "m", "")])
def test_a_function_that_exits_gives_call_error_with_its_reason(peers, reason):
    peer = peers.start(modules=MODS)
    with pytest.raises(snowg.CallError) as info:
        rpc.call(peer.name, exits_with, reason)
    assert info.value.reason == reason
    _nothing_left(snowg.self())


def test_results_at_the_limits_of_the_encoding(peers):
    peer = peers.start(modules=MODS)
    for bits, sign in [(62, 1), (63, -1), (63, 1), (64, -1), (70, 1), (70, -1), (8000, 1)]:
        value = rpc.call(peer.name, power_of_two, bits, sign)
        assert value == sign * (1 << bits) and type(value) is int
    for bits, offset in [(64, -1), (64, 0), (63, -1)]:
        assert rpc.call(peer.name, offset_power_of_two, bits, offset) == (1 << bits) + offset
    assert rpc.call(peer.name, special_float, "inf") == math.inf
    assert math.isnan(rpc.call(peer.name, special_float, "nan"))
    for value in (True, False, None, 0.5):
        got = rpc.call(peer.name, "remotefuncs.give_back", value)
        assert got == value and type(got) is type(value)
    # Too large to cross: the runner's check turns it into a RemoteError, as before.
    with pytest.raises(snowg.RemoteError, match="cannot cross"):
        rpc.call(peer.name, power_of_two, 9000, 1)
    _nothing_left(snowg.self())


def test_an_exit_reason_that_cannot_cross_arrives_as_its_repr_over_links_and_monitors(peers):
    peer = peers.start(modules=MODS)
    snowg.trap_exit(True)
    me = snowg.self()
    linked = snowg.spawn_link("rpcfuncs.says_then_exits_with_a_non_term", me, node=peer.name)
    monitored, ref = snowg.spawn_monitor("rpcfuncs.says_then_exits_with_a_non_term", me, node=peer.name)
    for pid in (linked, monitored):
        assert snowg.receive(lambda m, pid=pid: m == ("running", pid), timeout=W)
        snowg.send(pid, "go")
    exit_msg = snowg.receive(lambda m: type(m) is snowg.Exit and m.pid == linked, timeout=W)
    assert exit_msg.reason == "<not a term>"
    down = snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=W)
    assert down == snowg.Down(ref, monitored, "<not a term>")
    with pytest.raises(snowg.CallError) as info:
        rpc.call(peer.name, exits_with_a_non_term_by_rpc)
    assert info.value.reason == "<not a term>"
    _nothing_left(me)
