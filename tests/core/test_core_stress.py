"""Many processes: crash propagation through long link chains, and 100,000 processes
that leave the runtime's tables empty."""

from __future__ import annotations

import pytest

import snowg
from snowg import Crash, Down, Exit
from snowg._core.runtime import rt, table_sizes

W = 30.0


def chain_node(parent, prev, trap):
    if trap:
        snowg.trap_exit(True)
    if prev is not None:
        snowg.link(prev)
    snowg.send(parent, ("linked", snowg.self()))
    while True:
        m = snowg.receive()
        if m == "crash":
            raise RuntimeError("chain breaks here")
        snowg.send(parent, ("got", snowg.self(), m))


def build_chain(me, n, trapping=()):
    pids, prev = [], None
    for i in range(n):
        prev = snowg.spawn(chain_node, me, prev, i in trapping)
        pids.append(prev)
    for p in pids:
        snowg.receive(lambda m, p=p: m == ("linked", p), timeout=W)
    return pids


@pytest.mark.timeout(60)
def test_crash_propagates_through_chain_of_1000_linked_processes(me):
    pids = build_chain(me, 1000)
    refs = {snowg.monitor(p): p for p in pids}
    snowg.send(pids[0], "crash")
    downs = [snowg.receive(lambda m: type(m) is Down, timeout=W) for _ in pids]
    assert {d.ref for d in downs} == set(refs)
    reasons = {d.ref: d.reason for d in downs}
    first = reasons[next(r for r, p in refs.items() if p == pids[0])]
    assert type(first) is Crash and first.type == "RuntimeError"
    assert all(r == first for r in reasons.values())
    last_ref = next(r for r, p in refs.items() if p == pids[-1])
    assert reasons[last_ref] == first
    assert table_sizes() == dict(table_sizes(), processes=1, links=0, monitors=0, monitored_by=0)


@pytest.mark.timeout(60)
def test_trapping_processes_in_a_chain_survive_and_get_exit(me):
    pids = build_chain(me, 1000, trapping={500})
    refs = {snowg.monitor(p): i for i, p in enumerate(pids)}
    snowg.send(pids[0], "crash")
    downs = [snowg.receive(lambda m: type(m) is Down, timeout=W) for _ in range(500)]
    assert sorted(refs[d.ref] for d in downs) == list(range(500))
    crash = downs[0].reason
    assert type(crash) is Crash and all(d.reason == crash for d in downs)
    trapper = pids[500]
    got = snowg.receive(lambda m: type(m) is tuple and m[:2] == ("got", trapper), timeout=W)
    assert got[2] == Exit(pids[499], crash)
    assert all(snowg.is_alive(p) for p in pids[500:])
    assert snowg.process_info(trapper)["links"] == [pids[501]]
    # the survivors go down together when the trapper is killed
    snowg.exit(trapper, "kill")
    rest = [snowg.receive(lambda m: type(m) is Down, timeout=W) for _ in range(500)]
    assert sorted(refs[d.ref] for d in rest) == list(range(500, 1000))
    assert all(d.reason == "killed" for d in rest)
    assert table_sizes()["processes"] == 1


def worker(i, parent, peer):
    """Links to / monitors its peer or registers a name, then ends in one of several ways."""
    kind = i % 8
    if kind == 0:
        snowg.register(f"w{i}", snowg.self())
    elif kind == 1 and peer is not None:
        snowg.link(peer)
    elif kind == 2 and peer is not None:
        snowg.monitor(peer)
    elif kind == 3:
        snowg.send_after(60, snowg.self(), "never")
    elif kind == 4:
        snowg.trap_exit(True)
        if peer is not None:
            snowg.link(peer)
    snowg.send(parent, "up")
    m = snowg.receive(lambda m: m == "stop")
    if kind == 5:
        snowg.exit("shutdown")
    if kind == 6:
        snowg.exit(("shutdown", i))
    return m


@pytest.mark.timeout(180)
def test_100k_processes_with_links_monitors_names_leave_tables_empty(me):
    total, batch = 100_000, 2_000
    ended = 0
    for start in range(0, total, batch):
        pids = []
        prev = None
        for i in range(start, start + batch):
            prev = snowg.spawn(worker, i, me, prev)
            pids.append(prev)
        refs = [snowg.monitor(p) for p in pids]
        if start % 10_000 == 0:
            snowg.link(pids[7])  # a link to the test process too (kind 7: ends normal)
        for _ in pids:  # all of them set up and waiting
            snowg.receive(lambda m: m == "up", timeout=W)
        for j, p in enumerate(pids):
            if j % 97 == 0:
                snowg.exit(p, "kill")
            else:
                snowg.send(p, "stop")
        for _ in refs:
            d = snowg.receive(lambda m: type(m) is Down, timeout=W)
            ended += 1
            assert d.reason in ("normal", "shutdown", "killed") or d.reason[0] == "shutdown"
        snowg.flush_messages()  # Exit/Down messages that trapping workers never read are gone
    assert ended == total
    sizes = table_sizes()
    assert sizes == {
        "processes": 1,
        "names": 0,
        "timers": 0,
        "links": 0,
        "monitors": 0,
        "monitored_by": 0,
        "ready": 0,
    }, sizes
    assert not rt.timers and not rt.names
    assert snowg.processes() == [me]
    assert snowg.process_info(me)["monitors"] == [] and snowg.process_info(me)["links"] == []
