"""``rpc.call`` against real peer node OS processes."""

from __future__ import annotations

import time

import gevent
import pytest
from remotefuncs import (
    add,
    block_then,
    fail,
    give_back,
    not_declared,
    process_count,
    runs,
    sleep_then,
)
from support import no_message

import snowg
from snowg import rpc
from snowg.testing import wait_for

pytest_plugins = ["snowg.testing"]

MODS = ["remotefuncs"]


def test_rpc_returns_values_exactly(peers):
    peer = peers.start(modules=MODS)
    assert rpc.call(peer.name, add, 1, 2) == 3
    assert rpc.call(peer.name, "remotefuncs.add", "a", "b") == "ab"
    assert rpc.call(peer.name, add, a=(1,), b=(2,)) == (1, 2)
    value = (1, [2, (3, None)], {"k": (4, b"x")}, snowg.self())
    got = rpc.call(peer.name, give_back, value)
    assert got == value
    assert type(got) is tuple and type(got[1]) is list and type(got[1][1]) is tuple
    assert type(got[2]["k"]) is tuple
    assert rpc.call(peer.name, give_back, [1, 2]) == [1, 2]
    assert type(rpc.call(peer.name, give_back, [1, 2])) is list
    assert rpc.call(peer.name, give_back, None) is None
    no_message(wait=0.1)  # no Down, no stray reply


def test_rpc_reraises_remote_exception_as_remote_error(peers):
    peer = peers.start(modules=MODS)
    with pytest.raises(snowg.RemoteError) as ei:
        rpc.call(peer.name, fail, "no such key")
    err = ei.value
    assert isinstance(err, snowg.SnowgError)
    assert err.type_name == "KeyError"
    assert err.message == str(KeyError("no such key")) == "'no such key'"
    assert "KeyError" in str(err)
    assert "Traceback (most recent call last)" in err.traceback
    assert "remotefuncs.py" in err.traceback and "in fail" in err.traceback
    assert "KeyError: 'no such key'" in err.traceback
    no_message(wait=0.1)


def test_rpc_timeout_and_no_late_reply(peers):
    """A late reply is discarded (as erpc): never left in the caller's mailbox."""
    peer = peers.start(modules=MODS)
    baseline = peer.rpc(process_count)
    with gevent.Timeout(5.0), pytest.raises(snowg.CallTimeout):  # the bound turns a hang into a failure
        rpc.call(peer.name, sleep_then, "late", 1.0, timeout=0.2)
    no_message(wait=1.3)
    # the runner was killed, not left running there
    assert peer.rpc(process_count) == baseline


def test_rpc_reply_in_flight_at_timeout_is_dropped(peers):
    """The reply leaves the peer after the caller gave up (the peer was blocked): still dropped."""
    peer = peers.start(modules=MODS)
    with pytest.raises(snowg.CallTimeout):
        rpc.call(peer.name, block_then, "late", 0.6, timeout=0.2)
    no_message(wait=1.5)
    # and the next call works and gets its own answer
    assert rpc.call(peer.name, add, 2, 3) == 5
    no_message(wait=0.1)


def test_rpc_timeout_covers_the_spawn_of_the_runner(peers):
    """A peer that answers nothing (SIGSTOP): the timeout still holds, and nothing comes later."""
    peer = peers.start(modules=MODS)
    peer.freeze()
    try:
        # The call's own timeout ends it: the bound only turns a hang into a failure.
        with gevent.Timeout(5.0), pytest.raises(snowg.CallTimeout):
            rpc.call(peer.name, add, 1, 2, timeout=0.3)
    finally:
        peer.thaw()
    # the spawn reply, the reply and the runner's Down all come now, and are all dropped
    no_message(wait=1.0)
    assert rpc.call(peer.name, add, 1, 2) == 3
    assert peer.name in snowg.nodes()


def test_rpc_timeout_before_the_spawn_reply_still_kills_the_runner(peers):
    """The runner's pid was not known at the timeout: it is killed when the spawn reply brings it."""
    peer = peers.start(modules=MODS)
    baseline = peer.rpc(process_count)
    peer.freeze()
    try:
        with pytest.raises(snowg.CallTimeout):
            rpc.call(peer.name, sleep_then, "late", 30.0, timeout=0.3)
    finally:
        peer.thaw()
    # Without the kill the runner would sleep there for 30 s.
    assert wait_for(lambda: peer.rpc(process_count) == baseline, timeout=5)
    no_message(wait=0.5)
    assert rpc.call(peer.name, add, 1, 2) == 3
    no_message(wait=0.1)


def test_rpc_node_killed_during_call_gives_call_error_noconnection(peers):
    peer = peers.start(modules=MODS)
    killer = gevent.spawn_later(0.3, peer.kill)
    t0 = time.monotonic()
    with pytest.raises(snowg.CallError) as ei:
        rpc.call(peer.name, sleep_then, 1, 30.0, timeout=10.0)
    assert ei.value.reason == "noconnection"
    assert time.monotonic() - t0 < 3
    killer.join()
    no_message(wait=0.1)
    # and a call to the gone node fails the same way, at once
    with pytest.raises(snowg.CallError) as ei:
        rpc.call(peer.name, add, 1, 2)
    assert ei.value.reason == "noconnection"


def test_rpc_of_non_spawnable_function_is_spawn_error(peers):
    peer = peers.start(modules=MODS)
    with pytest.raises(snowg.SpawnError) as ei:
        rpc.call(peer.name, not_declared, snowg.self())
    assert "remotefuncs.not_declared" in str(ei.value) and peer.name in str(ei.value)
    with pytest.raises(snowg.SpawnError, match="os.getcwd"):
        rpc.call(peer.name, "os.getcwd")
    assert peer.rpc(runs, "not_declared") == 0
    no_message(wait=0.2)


def test_rpc_args_that_cannot_cross_raise_type_error(peers):
    peer = peers.start(modules=MODS)
    baseline = peer.rpc(process_count)
    with pytest.raises(TypeError, match="set"):
        rpc.call(peer.name, give_back, {1})
    assert peer.rpc(process_count) == baseline
    # a result that cannot cross comes back as a RemoteError naming the problem
    with pytest.raises(snowg.RemoteError, match="cannot cross"):
        rpc.call(peer.name, "remotefuncs.runs_set")
    no_message(wait=0.1)


def test_rpc_on_this_node_runs_locally():
    assert rpc.call(snowg.node(), add, 1, 2) == 3
    with pytest.raises(snowg.RemoteError) as ei:
        rpc.call(snowg.node(), fail, "local")
    assert ei.value.type_name == "KeyError"
    with pytest.raises(snowg.CallTimeout):
        rpc.call(snowg.node(), sleep_then, 1, 0.5, timeout=0.05)
    no_message(wait=0.7)
