"""Local process benchmarks of snowg against plain gevent, measured in the same run.

Rows (ratio = snowg / baseline):

* ``local.spawn_exit``  processes/s: spawn N trivial processes and wait until all
  have ended, vs ``gevent.spawn`` + ``joinall`` of N trivial greenlets.
* ``local.pingpong``    round trips/s between two processes, vs two greenlets
  doing ping-pong through two ``gevent.queue.Queue``.
* ``local.ring``        msgs/s: a token passed around a ring of R processes for
  L laps (R * L hops), vs the same ring of greenlets with one Queue each.
* ``local.rss_per_process`` bytes: RSS growth per idle process (parked in
  ``receive``) for N processes, vs parked greenlets (``Event.wait``); each
  side measured in its own fresh subprocess. Lower is better.
* ``local.spawn_exit.vs_beam``, ``local.pingpong.vs_beam``, ``local.ring.vs_beam``:
  the same snowg figures vs the BEAM doing the same thing (a compiled Erlang
  module, ``erl`` with one scheduler, see ``_beam_local.py``), measured in the
  same runs, alternating with snowg. Only when ``erl`` is installed.

Usage: ``python benchmarks/local.py [--spawn N] [--pingpong N] [--ring R]
[--laps L] [--rss N] [--repeat K] [--no-beam] [--json FILE]``. Runs in about
a minute with the defaults (the targets are printed at the end).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.queue import Queue  # noqa: E402

import snowg  # noqa: E402
from _beam_local import start_local_beam  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

TARGETS = {  # metric -> (target ratio, higher_is_better)
    "local.pingpong": (1.0, True),
    "local.spawn_exit": (0.7, True),
    "local.rss_per_process": (1.5, False),
}


def _noop() -> None:
    pass


def best(fn, repeat):
    """The best rate of ``repeat`` runs (rates drift; the best is the least disturbed)."""
    return max(fn() for _ in range(repeat))


# ---------------------------------------------------------------- spawn + exit


def snowg_spawn_exit(n: int) -> float:
    me = snowg.self()
    spawn = snowg.spawn
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        spawn(_noop)
    # processes run in spawn order: when this one runs, all the others have ended
    spawn(snowg.send, me, "done")
    snowg.receive()
    return n / (time.perf_counter() - t0)


def gevent_spawn_exit(n: int) -> float:
    gspawn = gevent.spawn
    gc.collect()
    t0 = time.perf_counter()
    glets = [gspawn(_noop) for _ in range(n)]
    gevent.joinall(glets)
    return n / (time.perf_counter() - t0)


# ------------------------------------------------------------------- ping-pong


def snowg_pingpong(n: int) -> float:
    me = snowg.self()
    send, receive = snowg.send, snowg.receive

    def pong():
        while True:
            m = receive()
            if m is None:
                return
            send(m, "pong")

    def ping(peer):
        mine = snowg.self()
        t0 = time.perf_counter()
        for _ in range(n):
            send(peer, mine)
            receive()
        dt = time.perf_counter() - t0
        send(peer, None)
        send(me, dt)

    peer = snowg.spawn(pong)
    snowg.spawn(ping, peer)
    return n / snowg.receive()


def gevent_pingpong(n: int) -> float:
    q_ping, q_pong = Queue(), Queue()
    result = []

    def pong():
        get, put = q_ping.get, q_pong.put
        while True:
            m = get()
            if m is None:
                return
            put("pong")

    def ping():
        put, get = q_ping.put, q_pong.get
        t0 = time.perf_counter()
        for _ in range(n):
            put("ping")
            get()
        result.append(time.perf_counter() - t0)
        put(None)

    gevent.joinall([gevent.spawn(pong), gevent.spawn(ping)])
    return n / result[0]


# ------------------------------------------------------------------------ ring


def snowg_ring(size: int, laps: int) -> float:
    me = snowg.self()
    send, receive = snowg.send, snowg.receive

    def node():
        nxt = receive()
        while True:
            m = receive()
            if m is None:
                send(nxt, None)
                return
            if m == 0:
                send(me, "done")
            else:
                send(nxt, m - 1)

    pids = [snowg.spawn(node) for _ in range(size)]
    for i, p in enumerate(pids):
        send(p, pids[(i + 1) % size])
    hops = size * laps
    t0 = time.perf_counter()
    send(pids[0], hops)
    assert receive() == "done"
    dt = time.perf_counter() - t0
    refs = [snowg.monitor(p) for p in pids]
    send(pids[0], None)  # ends the ring (not timed)
    for _ in refs:
        receive(lambda m: type(m) is snowg.Down)
    return hops / dt


def gevent_ring(size: int, laps: int) -> float:
    queues = [Queue() for _ in range(size)]
    done = Queue()

    def node(i):
        get, put = queues[i].get, queues[(i + 1) % size].put
        while True:
            m = get()
            if m is None:
                put(None)
                return
            if m == 0:
                done.put("done")
            else:
                put(m - 1)

    glets = [gevent.spawn(node, i) for i in range(size)]
    gevent.sleep(0)
    hops = size * laps
    t0 = time.perf_counter()
    queues[0].put(hops)
    done.get()
    dt = time.perf_counter() - t0
    queues[0].put(None)
    gevent.joinall(glets)
    return hops / dt


# ------------------------------------------------------------------------- RSS


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(kind: str, n: int) -> None:
    """Run in a fresh subprocess: print the RSS growth per parked process/greenlet."""
    # warm up everything that allocates once (hub, loop, code objects)
    if kind == "snowg":
        me = snowg.self()
        p = snowg.spawn(snowg.receive)
        snowg.spawn(snowg.send, me, "warm")
        snowg.receive()
        snowg.exit(p, "kill")
    else:
        ev = Event()
        g = gevent.spawn(ev.wait)
        gevent.sleep(0)
        ev.set()
        g.join()
    gevent.sleep(0)
    gc.collect()
    before = _rss_bytes()
    if kind == "snowg":
        pids = [snowg.spawn(snowg.receive) for _ in range(n)]  # noqa: F841 - held, as the baseline holds glets
        snowg.spawn(snowg.send, me, "parked")  # runs after all of them have parked
        snowg.receive()
        assert len(snowg.processes()) == n + 1
    else:
        ev = Event()
        glets = [gevent.spawn(ev.wait) for _ in range(n)]
        gevent.sleep(0)
        gevent.sleep(0)
        assert sum(1 for g in glets if g) == n
    gc.collect()
    after = _rss_bytes()
    print(json.dumps({"per_process": (after - before) / n}))
    sys.stdout.flush()
    os._exit(0)  # no teardown of n greenlets: the figure is taken


def rss_per_process(kind: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--rss-child", kind, "--rss", str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["per_process"])


# ------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spawn", type=int, default=100_000, help="processes spawned (default 100,000)")
    ap.add_argument("--pingpong", type=int, default=200_000, help="round trips (default 200,000)")
    ap.add_argument("--ring", type=int, default=10_000, help="processes in the ring (default 10,000)")
    ap.add_argument("--laps", type=int, default=100, help="laps of the token (default 100)")
    ap.add_argument("--rss", type=int, default=100_000, help="idle processes for RSS (default 100,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of spawn/ping-pong, best kept (default 3)")
    ap.add_argument("--only", default="", help="comma list of: spawn,pingpong,ring,rss")
    ap.add_argument("--no-beam", action="store_true", help="leave the BEAM rows out")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON to FILE")
    ap.add_argument("--rss-child", choices=("snowg", "gevent"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.rss_child:
        rss_child(args.rss_child, args.rss)
        return 0

    only = set(filter(None, args.only.split(","))) or {"spawn", "pingpong", "ring", "rss"}
    notes = []
    beam = None
    if args.no_beam:
        notes.append("BEAM: left out (--no-beam)")
    elif only & {"spawn", "pingpong", "ring"}:
        beam = start_local_beam(notes)
    rows = []
    beam_rows = []
    try:
        for name, metric, unit, size, runs in (
            ("spawn", "local.spawn_exit", "processes/s", args.spawn, (gevent_spawn_exit, snowg_spawn_exit)),
            ("pingpong", "local.pingpong", "round_trips/s", args.pingpong, (gevent_pingpong, snowg_pingpong)),
        ):
            if name not in only:
                continue
            # alternating runs (gevent, snowg, BEAM), the best of each kept
            base, mine, erl = [], [], []
            for _ in range(args.repeat):
                base.append(runs[0](size))
                mine.append(runs[1](size))
                if beam is not None:
                    erl.append(beam.spawn_exit(size) if name == "spawn" else beam.pingpong(size))
            rows.append(Row(metric, unit, max(mine), max(base), True))
            if erl:
                beam_rows.append(Row(f"{metric}.vs_beam", unit, max(mine), max(erl), True))
        if "ring" in only:
            base_ring = gevent_ring(args.ring, args.laps)
            mine_ring = snowg_ring(args.ring, args.laps)
            rows.append(Row("local.ring", "msgs/s", mine_ring, base_ring, True))
            if beam is not None:
                erl_ring = beam.ring(args.ring, args.laps)
                beam_rows.append(Row("local.ring.vs_beam", "msgs/s", mine_ring, erl_ring, True))
    finally:
        if beam is not None:
            beam.close()
    if "rss" in only:
        base = rss_per_process("gevent", args.rss)
        mine = rss_per_process("snowg", args.rss)
        rows.append(Row("local.rss_per_process", "bytes", mine, base, False))
    rows += beam_rows

    print(
        f"ratio = snowg / baseline; best of {args.repeat} alternating runs (ring: one run each); baselines: "
        "local.* = plain gevent (greenlets, gevent.queue.Queue), *.vs_beam = the BEAM"
        + (f" (OTP {beam.release}, erl +S 1, a compiled module)" if beam is not None else "")
    )
    for note in notes:
        print(note)
    print_table(rows)
    misses = []
    for r in rows:
        if r.metric in TARGETS and r.ratio is not None:
            target, higher = TARGETS[r.metric]
            ok = r.ratio >= target if higher else r.ratio <= target
            if not ok:
                misses.append(f"{r.metric}: {r.ratio:.2f}x (target {'>=' if higher else '<='} {target}x)")
    if misses:
        print("\ntargets missed: " + "; ".join(misses))
    else:
        print("\nall targets met")
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
