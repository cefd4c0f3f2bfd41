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
