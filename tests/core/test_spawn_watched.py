"""``gen_server``'s synchronous start spawns, links and monitors in one step (``process.spawn_watched``).

What it leaves must be what ``spawn_link``/``spawn`` then ``monitor`` then
``demonitor(flush=True)`` left: the link (only when linked), no monitor in
either direction once started, and every start outcome as before.
"""

from __future__ import annotations

import pytest

import snowg
from snowg import Down, GenServer, StartError
from snowg._core import process as _process
from snowg.gen_server import start_sync

W = 5.0


class Fine(GenServer):
    def init(self, arg):
        return arg


class Fails(GenServer):
    def init(self, arg):
        return ("stop", "bad_init")


class Ignores(GenServer):
    def init(self, arg):
        return "ignore"


def _info(pid):
    return snowg.process_info(pid, ("links", "monitors", "monitored_by"))


@pytest.mark.parametrize("linked", [True, False])
def test_a_started_server_is_linked_only_when_asked_and_left_unmonitored(linked):
    me = snowg.self()
    pid = Fine.start_link(0) if linked else Fine.start(0)
    assert _info(pid) == {"links": [me] if linked else [], "monitors": [], "monitored_by": []}
    mine = _info(me)
    assert (pid in mine["links"]) is linked
    assert mine["monitors"] == [] and pid not in mine["monitored_by"]
    snowg.unlink(pid)
    ref = snowg.monitor(pid)
    snowg.exit(pid, "kill")
    assert snowg.receive(lambda m: type(m) is Down and m.ref == ref, W).reason == "killed"
    assert snowg.flush_messages() == []


@pytest.mark.parametrize("linked", [True, False])
def test_failed_and_ignored_starts_leave_nothing(linked):
    start = (lambda c, a: c.start_link(a)) if linked else (lambda c, a: c.start(a))
    with pytest.raises(StartError) as e:
        start(Fails, 0)
    assert e.value.reason == "bad_init"
    assert start(Ignores, 0) is None
    assert _info(snowg.self())["monitors"] == []
    assert snowg.flush_messages() == []


def test_spawn_watched_is_spawn_link_and_monitor():
    me = snowg.self()

    def child(parent):
        snowg.send(parent, ("ran", snowg.self()))
        snowg.receive()

    pid, ref = _process.spawn_watched(child, (me,), True)
    assert _info(pid) == {"links": [me], "monitors": [], "monitored_by": [me]}
    assert snowg.receive(timeout=W) == ("ran", pid)
    snowg.unlink(pid)
    snowg.exit(pid, "kill")
    down = snowg.receive(lambda m: type(m) is Down, W)
    assert (down.ref, down.pid, down.reason) == (ref, pid, "killed")


def test_a_body_that_is_not_callable_is_refused():
    with pytest.raises(TypeError):
        start_sync(42, (), True, None)  # type: ignore[arg-type]
    assert _info(snowg.self())["monitors"] == []


class Raises(GenServer):
    def init(self, arg):
        raise ValueError("init raised")


class Exits(GenServer):
    def init(self, arg):
        snowg.exit("left_in_init")


class Slow(GenServer):
    def init(self, arg):
        snowg.receive()  # never acknowledges


@pytest.fixture
def trapping():
    old = snowg.trap_exit(True)
    yield snowg.self()
    snowg.trap_exit(old)


@pytest.mark.parametrize(
    "server, reason",
    [
        (Fails, "bad_init"),
        (Exits, "left_in_init"),
    ],
)
def test_a_trapping_caller_gets_each_failed_start_as_start_error_and_no_message(trapping, server, reason):
    with pytest.raises(StartError) as e:
        server.start_link(0)
    assert e.value.reason == reason
    assert _info(trapping)["monitors"] == [] and _info(trapping)["links"] == []
    assert snowg.flush_messages() == []


def test_a_trapping_caller_gets_a_raising_init_as_its_crash(trapping):
    with pytest.raises(StartError) as e:
        Raises.start_link(0)
    assert type(e.value.reason) is snowg.Crash and e.value.reason.type == "ValueError"
    assert snowg.flush_messages() == []


def test_a_trapping_caller_gets_an_ignored_start_as_none_and_no_message(trapping):
    assert Ignores.start_link(0) is None
    assert _info(trapping)["monitors"] == [] and _info(trapping)["links"] == []
    assert snowg.flush_messages() == []


def _killer(_parent):
    snowg.exit(snowg.receive(), "kill")  # kills the pid it is sent


@pytest.mark.parametrize("unlinks", [False, True])
def test_a_trapping_caller_learns_of_a_child_killed_in_init(trapping, unlinks):
    # A killed init sends no acknowledgement; one that unlinked first sends no Exit either:
    # only the start's monitor tells (a start without one, relying on the Exit, would wait for ever).
    killer = snowg.spawn(_killer, trapping)

    class KilledInInit(GenServer):
        def init(self, parent):
            if unlinks:
                snowg.unlink(parent)
            snowg.send(killer, snowg.self())
            snowg.receive()

    with pytest.raises(StartError) as e:
        KilledInInit.start_link(trapping, timeout=W)
    assert e.value.reason == "killed"  # (not 'timeout')
    assert snowg.flush_messages() == []


@pytest.mark.parametrize("trap", [True, False])
def test_a_start_that_times_out_kills_the_child_and_leaves_the_caller_nothing(trap):
    # (The killed init used to acknowledge its kill, and that message stayed in the caller's mailbox.)
    old = snowg.trap_exit(trap)
    try:
        with pytest.raises(StartError) as e:
            Slow.start_link(0, timeout=0.05)
        assert e.value.reason == "timeout"
        # start_sync returned after the child's Down: anything the child sent before it is here already.
        assert _info(snowg.self()) == {"links": [], "monitors": [], "monitored_by": []}
        assert snowg.flush_messages() == []
    finally:
        snowg.trap_exit(old)
