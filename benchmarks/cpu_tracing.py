"""The cost of per-process CPU time accounting (``snowg.set_cpu_tracing``), measured in the same run.

Rows (ratio = tracing on / tracing off; higher is better, 1.0 is free):

* ``cpu_tracing.pingpong``   round trips/s between two processes (``send`` + ``receive``).
* ``cpu_tracing.call``       ``snowg.call`` round trips/s to a GenServer.
* ``cpu_tracing.spawn_exit`` processes/s: spawn N trivial processes, wait until all have ended.

Each figure is the best of ``--repeat`` runs, the two settings alternating so
that drift hits both. Usage: ``python benchmarks/cpu_tracing.py [--pingpong N]
[--calls N] [--spawn N] [--repeat K] [--json FILE]``; about ten seconds with
the defaults.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import snowg  # noqa: E402
from _machine import machine_load  # noqa: E402
from _observer_workload import pingpong  # noqa: E402 - the same local round trips observer.py times
from _table import Row, print_table, write_json  # noqa: E402


class _Echo(snowg.GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        return ("reply", request, state)


def calls(n: int) -> float:
    pid = _Echo.start()
    call = snowg.call
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        call(pid, "x")
    dt = time.perf_counter() - t0
    snowg.gen_server.stop(pid)
    return n / dt


def _noop() -> None:
    pass


def spawn_exit(n: int) -> float:
    me = snowg.self()
    spawn = snowg.spawn
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        spawn(_noop)
    spawn(snowg.send, me, "done")
    snowg.receive()
    return n / (time.perf_counter() - t0)


def best_of(fn: Callable[[], float], repeat: int) -> Dict[bool, float]:
    """The best rate of ``repeat`` runs with tracing off and on, alternating."""
    got: Dict[bool, List[float]] = {False: [], True: []}
    for _ in range(repeat):
        for on in (False, True):
            snowg.set_cpu_tracing(on)
            try:
                got[on].append(fn())
            finally:
                snowg.set_cpu_tracing(False)
    return {on: max(rates) for on, rates in got.items()}


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--pingpong", type=int, default=200_000, help="round trips (default 200,000)")
    ap.add_argument("--calls", type=int, default=100_000, help="GenServer calls (default 100,000)")
    ap.add_argument("--spawn", type=int, default=100_000, help="processes spawned (default 100,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each setting, best kept (default 3)")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON to FILE")
    args = ap.parse_args(argv)

    rows = []
    for metric, unit, fn in (
        ("cpu_tracing.pingpong", "round_trips/s", lambda: pingpong(args.pingpong)),
        ("cpu_tracing.call", "calls/s", lambda: calls(args.calls)),
        ("cpu_tracing.spawn_exit", "processes/s", lambda: spawn_exit(args.spawn)),
    ):
        rates = best_of(fn, args.repeat)
        rows.append(Row(metric, unit, rates[True], rates[False], True))
    print_table(rows)
    print(f"\n(snowg = tracing on, baseline = tracing off; {machine_load()})")
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
