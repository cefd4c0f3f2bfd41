"""semantics rules 1-12 on real greenlets (snowg._core), one or more tests per rule.

Synchronisation is by messages and monitors only. A test's own process is the
adopted pytest main greenlet (fixtures ``me`` / ``trapping_me`` in conftest).
"""

from __future__ import annotations

import gevent
import pytest

import snowg
from snowg import Crash, Down, Exit, NameTaken, NoProc, Pid
from snowg._core.runtime import RemoteRouter, rt, table_sizes
from support import forward_until_stop, is_down, no_message

W = 5.0  # upper bound of every wait in this module (seconds)


# ------------------------------------------------------------------ helpers


def is_exit_from(pid):
    return lambda m: type(m) is Exit and m.pid == pid


def watch(pid):
    """Monitor ``pid``; returns a function that waits for its exit reason."""
    ref = snowg.monitor(pid)
    return lambda: snowg.receive(is_down(ref), timeout=W).reason


def reporter(parent, trap=False, links=()):
    """Body: optionally trap and link, say 'ready', then forward every message to parent."""
    if trap:
        snowg.trap_exit(True)
    for p in links:
        snowg.link(p)
    snowg.send(parent, ("ready", snowg.self()))
    forward_until_stop(parent, "got")


def start_reporter(trap=False, links=()):
    pid = snowg.spawn(reporter, snowg.self(), trap, tuple(links))
    assert snowg.receive(lambda m: m == ("ready", pid), timeout=W)
    return pid


def got_from(pid):
    return lambda m: type(m) is tuple and len(m) == 3 and m[0] == "got" and m[1] == pid


def next_from(pid):
    return snowg.receive(got_from(pid), timeout=W)[2]


def sync(pid):
    """Round trip through a reporter: everything it had before is forwarded."""
    snowg.send(pid, ("sync", pid))
    assert next_from(pid) == ("sync", pid)


def idle():
    snowg.receive()


@pytest.fixture(autouse=True)
def _tables_clean_after():
    """Each test here leaves nothing behind (the conftest kills strays; this checks first)."""
    yield
    me = snowg.self()
    ending = [p for p in snowg.processes() if p != me]
    # processes the test did not end (a kill sent at the end of a test is asynchronous)
    leftover = [p for p in ending if p._proc.exit_pending is None]
    for p in ending:
        snowg.exit(p, "kill")
    for p in ending:
        ref = snowg.monitor(p)
        snowg.receive(is_down(ref), timeout=W)
    assert not leftover, f"test left processes behind: {leftover}"
    sizes = table_sizes()
    assert sizes["names"] == 0 and sizes["timers"] == 0, sizes


# ------------------------------------------------------------------ rule 1


def test_rule1_normal_signal_is_dropped_by_non_trapping_process(me):
    p = start_reporter()
    snowg.exit(p, "normal")
    snowg.send(p, "still there?")
    assert next_from(p) == "still there?"
    assert snowg.is_alive(p)
    snowg.exit(p, "kill")


def test_rule1_normal_link_exit_ignored_by_non_trapping_partner(me):
    p = start_reporter()

    def linker():
        snowg.link(p)
        snowg.receive()  # ends normally on any message

    q = snowg.spawn(linker)
    wq = watch(q)
    snowg.send(q, "end")
    assert wq() == "normal"
    sync(p)
    assert snowg.is_alive(p)
    assert snowg.process_info(p)["links"] == []
    snowg.exit(p, "kill")


def test_rule1_trapping_receiver_gets_exit_normal(me):
    p = start_reporter(trap=True)
    snowg.exit(p, "normal")
    assert next_from(p) == Exit(me, "normal")
    assert snowg.is_alive(p)
    snowg.exit(p, "kill")


def test_rule1_exit_self_normal_ends_the_caller(me):
    observer = start_reporter(trap=True)

    def body():
        snowg.link(observer)
        snowg.exit(snowg.self(), "normal")
        snowg.send(me, "not reached")

    p = snowg.spawn(body)
    wp = watch(p)
    assert wp() == "normal"
    assert next_from(observer) == Exit(p, "normal")
    no_message(lambda m: m == "not reached")
    snowg.exit(observer, "kill")


def test_rule1_exit_self_normal_in_main_process_ends_it():
    me = snowg.self()
    with pytest.raises(snowg._core.ProcessExit) as ei:
        snowg.exit(me, "normal")
    assert ei.value.reason == "normal"
    assert not snowg.is_alive(me)
    assert snowg.self() != me  # re-adopted as a new process


# ------------------------------------------------------------------ rule 2


def test_rule2_kill_cannot_be_trapped_and_becomes_killed(me):
    observer = start_reporter(trap=True)
    partner = start_reporter()  # not trapping
    p = start_reporter(trap=True, links=(observer, partner))
    wp, wpartner = watch(p), watch(partner)
    snowg.exit(p, "kill")
    assert wp() == "killed"
    assert next_from(observer) == Exit(p, "killed")
    assert wpartner() == "killed"
    snowg.exit(observer, "kill")


def test_rule2_kill_of_a_process_that_never_ran(me):
    p = snowg.spawn(snowg.send, me, "ran")
    wp = watch(p)
    snowg.exit(p, "kill")
    assert wp() == "killed"
    no_message(lambda m: m == "ran")


# ------------------------------------------------------------------ rule 3


def test_rule3_exit_kill_from_a_process_sends_kill_over_links(me):
    trapper = start_reporter(trap=True)
    plain = start_reporter()

    def body():
        snowg.link(trapper)
        snowg.link(plain)
        snowg.receive()
        snowg.exit("kill")

    p = snowg.spawn(body)
    wp, wplain = watch(p), watch(plain)
    snowg.send(p, "go")
    assert wp() == "kill"
    assert next_from(trapper) == Exit(p, "kill")
    assert wplain() == "kill"  # not 'killed'
    assert snowg.is_alive(trapper)
    snowg.exit(trapper, "kill")


# ------------------------------------------------------------------ rule 4


def test_rule4_other_reason_ends_non_trapping_process(me):
    p = start_reporter()
    wp = watch(p)
    snowg.exit(p, ("shutdown", "bye"))
    assert wp() == ("shutdown", "bye")


def test_rule4_trapping_process_gets_exit_at_end_of_mailbox(me):
    def body():
        snowg.trap_exit(True)
        snowg.send(me, "ready")
        snowg.receive(lambda m: m == "go")
        snowg.send(me, snowg.flush_messages())

    p = snowg.spawn(body)
    assert snowg.receive(timeout=W) == "ready"
    snowg.send(p, 1)
    snowg.send(p, 2)
    snowg.exit(p, "custom")
    snowg.send(p, 3)
    wp = watch(p)
    snowg.send(p, "go")
    assert snowg.receive(lambda m: type(m) is list, timeout=W) == [1, 2, Exit(me, "custom"), 3]
    assert wp() == "normal"


def test_rule4_linked_exit_with_reason_ends_partner(me):
    partner = start_reporter()
    wpartner = watch(partner)

    def body():
        snowg.link(partner)
        snowg.exit({"any": "term"})

    snowg.spawn(body)
    assert wpartner() == {"any": "term"}


# ------------------------------------------------------------------ rule 5


def test_rule5_crash_propagates_same_reason_to_linked_processes(me):
    partner = start_reporter()
    trapper = start_reporter(trap=True)

    def body():
        snowg.link(partner)
        snowg.link(trapper)
        raise ValueError("boom 5")

    p = snowg.spawn(body)
    wp, wpartner = watch(p), watch(partner)
    reason = wp()
    assert type(reason) is Crash and reason.type == "ValueError" and reason.message == "boom 5"
    assert wpartner() == reason
    assert next_from(trapper) == Exit(p, reason)
    snowg.exit(trapper, "kill")


def test_rule5_linked_crash_right_after_a_message_still_ends_the_receiver(me):
    """The message and the exit signal arrive together: the receiver must not end 'normal'."""
    trapper = start_reporter(trap=True)

    def victim():
        snowg.link(trapper)
        snowg.send(me, "victim ready")
        snowg.receive()  # returning would end it 'normal'

    v = snowg.spawn(victim)
    assert snowg.receive(lambda m: m == "victim ready", timeout=W)

    def crasher():
        snowg.link(v)
        snowg.send(v, "hi")
        raise ValueError("after the message")

    c = snowg.spawn(crasher)
    wc = watch(c)
    reason = wc()
    assert type(reason) is Crash
    assert next_from(trapper) == Exit(v, reason)
    snowg.exit(trapper, "kill")


# ------------------------------------------------------------------ rule 6


def test_rule6_link_to_self_does_nothing(me):
    snowg.link(me)
    assert snowg.process_info(me)["links"] == []
    p = snowg.spawn(lambda: (snowg.link(snowg.self()), snowg.send(me, snowg.process_info(snowg.self())["links"])))
    assert snowg.receive(timeout=W) == []
    assert p not in snowg.process_info(me)["links"]


def test_rule6_linking_twice_is_one_link(trapping_me):
    p = start_reporter()
    snowg.link(p)
    snowg.link(p)
    assert snowg.process_info(trapping_me)["links"] == [p]
    assert snowg.process_info(p)["links"] == [trapping_me]
    snowg.unlink(p)
    assert snowg.process_info(trapping_me)["links"] == []
    assert snowg.process_info(p)["links"] == []
    wp = watch(p)
    snowg.exit(p, "kill")
    assert wp() == "killed"
    no_message(lambda m: type(m) is Exit)


def test_rule6_no_exit_through_link_after_unlink(me):
    # non-trapping: after unlink, the partner's crash does not end us
    def body():
        p = snowg.spawn_link(idle)
        snowg.unlink(p)
        snowg.send(me, p)
        snowg.receive()
        snowg.send(me, "survived")

    q = snowg.spawn(body)
    p = snowg.receive(lambda m: type(m) is Pid, timeout=W)
    wp = watch(p)
    snowg.exit(p, "boom")
    assert wp() == "boom"
    snowg.send(q, "go")
    assert snowg.receive(timeout=W) == "survived"


def test_rule6_exit_already_queued_stays_after_unlink(trapping_me):
    p = snowg.spawn_link(snowg.exit, "bye")
    wp = watch(p)
    assert wp() == "bye"  # the Exit was queued before the Down
    snowg.unlink(p)
    assert snowg.receive(lambda m: type(m) is Exit, timeout=0) == Exit(p, "bye")


# ------------------------------------------------------------------ rule 7


def test_rule7_link_to_dead_pid_raises_noproc_when_not_trapping(me):
    p = snowg.spawn(lambda: None)
    assert watch(p)() == "normal"
    with pytest.raises(NoProc):
        snowg.link(p)
    assert snowg.process_info(me)["links"] == []


def test_rule7_link_to_dead_pid_delivers_exit_noproc_when_trapping(trapping_me):
    p = snowg.spawn(lambda: None)
    assert watch(p)() == "normal"
    snowg.link(p)
    assert snowg.receive(timeout=W) == Exit(p, "noproc")
    assert snowg.process_info(trapping_me)["links"] == []


# ------------------------------------------------------------------ rule 8


class _FakeRouter(RemoteRouter):
    def __init__(self):
        self.calls = []

    def link(self, from_pid, to_pid):
        self.calls.append(("link", from_pid, to_pid))

    def unlink(self, from_pid, to_pid):
        self.calls.append(("unlink", from_pid, to_pid))

    def exit_link(self, from_pid, to_pid, reason):
        self.calls.append(("exit_link", from_pid, to_pid, reason))


@pytest.fixture
def fake_router():
    old = rt.router
    rt.router = router = _FakeRouter()
    try:
        yield router
    finally:
        rt.router = old


def test_rule8_lost_node_sends_noconnection_over_links(me, fake_router):
    """The seam the cluster layer uses: a link exit from a remote pid, reason 'noconnection'."""
    from snowg._core.process import _signal_link_exit, local_process

    remote = Pid("other@host", 7, 1)

    def linker(target, trap):
        snowg.trap_exit(trap)
        snowg.link(target)
        snowg.send(me, "linked")
        while True:
            snowg.send(me, ("got", snowg.self(), snowg.receive()))

    a = snowg.spawn(linker, remote, False)
    b = snowg.spawn(linker, remote, True)
    for _ in range(2):
        assert snowg.receive(lambda m: m == "linked", timeout=W)
    assert ("link", a, remote) in fake_router.calls and ("link", b, remote) in fake_router.calls
    wa = watch(a)
    # the node goes: the cluster layer signals every local process linked to it
    for p in (a, b):
        _signal_link_exit(remote, local_process(p), "noconnection")
    assert wa() == "noconnection"
    assert next_from(b) == Exit(remote, "noconnection")
    assert snowg.process_info(b)["links"] == []  # the link is gone with the node
    # a ended: no exit was routed back to the lost node's pid
    assert not [c for c in fake_router.calls if c[0] == "exit_link"]
    snowg.exit(b, "kill")


# ------------------------------------------------------------------ rule 9


def test_rule9_messages_and_signals_from_one_process_arrive_in_order(me):
    def body(sink):
        snowg.link(sink)
        for i in range(200):
            snowg.send(sink, i)
            if i % 50 == 0:
                snowg.exit(sink, ("mid", i))
        snowg.exit("done")

    sink_msgs = []

    def sink():
        snowg.trap_exit(True)
        snowg.send(me, "ready")
        while True:
            m = snowg.receive()
            sink_msgs.append(m)
            if m == Exit(src, "done"):
                snowg.send(me, "finished")
                return

    s = snowg.spawn(sink)
    assert snowg.receive(timeout=W) == "ready"
    src = snowg.spawn(body, s)
    assert snowg.receive(timeout=W) == "finished"
    expected = []
    for i in range(200):
        expected.append(i)
        if i % 50 == 0:
            expected.append(Exit(src, ("mid", i)))
    expected.append(Exit(src, "done"))
    assert sink_msgs == expected


def test_rule9_two_senders_each_in_order(me):
    def sender(tag, dest):
        for i in range(300):
            snowg.send(dest, (tag, i))
            if i % 7 == 0:
                gevent.sleep(0)

    a = snowg.spawn(sender, "a", me)
    b = snowg.spawn(sender, "b", me)
    wa, wb = watch(a), watch(b)
    assert wa() == "normal" and wb() == "normal"
    msgs = snowg.flush_messages(lambda m: type(m) is tuple)
    assert [i for t, i in msgs if t == "a"] == list(range(300))
    assert [i for t, i in msgs if t == "b"] == list(range(300))


# ------------------------------------------------------------------ rule 10


def test_rule10_down_once_per_monitor_and_monitors_independent(me):
    p = start_reporter()
    r1 = snowg.monitor(p)
    r2 = snowg.monitor(p)
    assert r1 != r2
    snowg.exit(p, "bye")
    d1 = snowg.receive(is_down(r1), timeout=W)
    d2 = snowg.receive(is_down(r2), timeout=W)
    assert d1 == Down(r1, p, "bye") and d2 == Down(r2, p, "bye")
    sync_pid = snowg.spawn(snowg.send, me, "sync")
    assert snowg.receive(lambda m: m == "sync", timeout=W)
    watch(sync_pid)()
    no_message(lambda m: type(m) is Down)
    assert snowg.process_info(me)["monitors"] == []


def test_rule10_monitor_dead_or_unknown_gives_noproc(me):
    p = snowg.spawn(lambda: None)
    assert watch(p)() == "normal"
    r = snowg.monitor(p)
    assert snowg.receive(timeout=0) == Down(r, p, "noproc")
    r2 = snowg.monitor("nobody-has-this-name")
    assert snowg.receive(timeout=0) == Down(r2, ("nobody-has-this-name", snowg._core.runtime.rt.node), "noproc")
    assert table_sizes()["monitored_by"] == 0


def test_rule10_monitor_by_name_reports_name_and_node(me):
    p = start_reporter()
    snowg.register("r10", p)
    ref = snowg.monitor("r10")
    snowg.exit(p, "bye")
    assert snowg.receive(is_down(ref), timeout=W) == Down(ref, ("r10", rt.node), "bye")


# ------------------------------------------------------------------ rule 11


def test_rule11_demonitor_means_no_later_down(me):
    p = start_reporter()
    ref = snowg.monitor(p)
    assert snowg.demonitor(ref) is True
    assert snowg.process_info(p)["monitored_by"] == []
    wp = watch(p)
    snowg.exit(p, "bye")
    assert wp() == "bye"
    no_message(is_down(ref))
    assert snowg.demonitor(ref) is False


def test_rule11_demonitor_flush_removes_queued_down(me):
    p = start_reporter()
    ref = snowg.monitor(p)
    wp = watch(p)  # a second, later monitor: when it fires, ref's Down is queued
    snowg.exit(p, "bye")
    assert wp() == "bye"
    assert snowg.demonitor(ref) is False  # already fired
    assert snowg.receive(is_down(ref), timeout=0) == Down(ref, p, "bye")  # no flush: it stays

    q = start_reporter()
    ref = snowg.monitor(q)
    wq = watch(q)
    snowg.send(me, "before")
    snowg.exit(q, "bye")
    assert wq() == "bye"
    snowg.send(me, "after")
    assert snowg.demonitor(ref, flush=True) is False
    no_message(is_down(ref))
    assert snowg.flush_messages() == ["before", "after"]


def test_rule11_demonitor_flush_of_active_monitor_returns_true(me):
    p = start_reporter()
    ref = snowg.monitor(p)
    assert snowg.demonitor(ref, flush=True) is True
    snowg.exit(p, "kill")


# ------------------------------------------------------------------ rule 12


def test_rule12_name_released_when_process_ends(me):
    p = start_reporter()
    snowg.register("r12", p)
    assert snowg.whereis("r12") == p
    assert "r12" in snowg.registered()
    snowg.send("r12", "by name")
    assert next_from(p) == "by name"
    wp = watch(p)
    snowg.exit(p, "kill")
    assert wp() == "killed"
    assert snowg.whereis("r12") is None
    assert "r12" not in snowg.registered()
    with pytest.raises(NoProc):
        snowg.send("r12", "gone")
    q = start_reporter()
    snowg.register("r12", q)  # free again
    assert snowg.whereis("r12") == q
    snowg.exit(q, "kill")


def test_rule12_send_to_unregistered_local_name_raises_noproc(me):
    with pytest.raises(NoProc):
        snowg.send("never-registered", 1)
    with pytest.raises(NoProc):
        snowg.send(("never-registered", rt.node), 1)


def test_rule12_register_taken_name_or_dead_pid(me):
    p = start_reporter()
    q = start_reporter()
    snowg.register("taken", p)
    with pytest.raises(NameTaken):
        snowg.register("taken", q)
    with pytest.raises(NameTaken):
        snowg.register("other", p)  # p already has a name
    dead = snowg.spawn(lambda: None)
    assert watch(dead)() == "normal"
    with pytest.raises(NoProc):
        snowg.register("free", dead)
    assert snowg.whereis("free") is None
    snowg.unregister("taken")
    assert snowg.whereis("taken") is None
    assert snowg.process_info(p)["registered_name"] is None
    with pytest.raises(NoProc):
        snowg.unregister("taken")
    snowg.exit(p, "kill")
    snowg.exit(q, "kill")


def test_send_to_dead_pid_is_silent(me):
    p = snowg.spawn(lambda: None)
    assert watch(p)() == "normal"
    snowg.send(p, "into the void")  # no error
    assert snowg.process_info(p) is None
    assert table_sizes()["processes"] == 1
