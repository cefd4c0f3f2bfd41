"""What ``benchmarks/observer.py`` runs on the observed node (``--import _observer_workload``)."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import snowg
from snowg import ChildSpec, supervisor


@snowg.spawnable
def set_tracing(on: bool) -> bool:
    """Per-process CPU time accounting on this node, on or off."""
    snowg.set_cpu_tracing(on)
    return snowg.observe.cpu_tracing()


@snowg.spawnable
def pingpong(n: int) -> float:
    """Round trips/s of ``n`` local round trips between two processes here."""
    me = snowg.self()
    send, receive = snowg.send, snowg.receive

    def pong() -> None:
        while True:
            m = receive()
            if m is None:
                return
            send(m, "pong")

    def ping(peer: snowg.Pid) -> None:
        mine = snowg.self()
        t0 = time.perf_counter()
        for _ in range(n):
            send(peer, mine)
            receive()
        dt = time.perf_counter() - t0
        send(peer, None)
        send(me, ("pp", dt))

    snowg.spawn(ping, snowg.spawn(pong))
    return n / snowg.receive(lambda m: type(m) is tuple and m[0] == "pp")[1]


def _child(rec: snowg.Pid) -> None:
    snowg.send(rec, ("up", snowg.self()))
    snowg.receive()
    raise RuntimeError("crashed by the benchmark")


@snowg.spawnable
def restarts(n: int) -> Dict[str, float]:
    """``n`` crash -> restarted-and-running cycles under a one_for_one supervisor here: restarts/s and p50 µs."""
    me = snowg.self()
    sup = supervisor.start([ChildSpec("c", (_child, (me,)))], intensity=n + 10, period=3600)
    _up, child = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", 10)
    lat: List[float] = []
    perf = time.perf_counter
    t_start = perf()
    for _ in range(n):
        t0 = perf()
        snowg.send(child, "crash")
        _up, child = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", 10)
        lat.append((perf() - t0) * 1e6)
    total = perf() - t_start
    ref = snowg.monitor(sup)
    snowg.exit(sup, "kill")
    snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, 10)
    lat.sort()
    return {"rate": n / total, "p50": lat[len(lat) // 2]}


@snowg.spawnable
def hidden_peers() -> List[Any]:
    """The hidden nodes connected here (the observer, when it is attached)."""
    return snowg.cluster.hidden_nodes()


@snowg.spawnable
def snapshot_cost(idle: int, repeat: int = 5) -> Dict[str, float]:
    """Milliseconds of one ``snowg.observe.snapshot`` here with ``idle`` more idle processes (best of ``repeat``).

    The watched node's (``limit=5000``) and a summary's (``limit=0``), as the observer asks each second.
    """
    pids = [snowg.spawn(snowg.receive) for _ in range(idle)]
    snowg.spawn(snowg.send, snowg.self(), "ready")
    snowg.receive(lambda m: m == "ready")
    out: Dict[str, float] = {}
    try:
        for key, limit in (("full", 5000), ("summary", 0)):
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                snowg.observe.snapshot(limit=limit)
                best = min(best, time.perf_counter() - t0)
            out[key] = best * 1000
    finally:
        for pid in pids:
            snowg.exit(pid, "kill")
    return out
