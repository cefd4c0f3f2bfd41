"""GenServer ``call`` against what a user would write or pick instead, measured in the same run.

Rows (ratio = snowg / baseline; every figure is round trips per second, higher is better):

* ``gen_server.call.vs_gevent``: ``snowg.call`` to a GenServer that replies at
  once, vs the plain gevent idiom it replaces: a server greenlet reading a
  ``gevent.queue.Queue`` of ``(request, AsyncResult)`` and setting the
  result; the client puts and ``.get()``\\ s. Target >= 1.5x.
* ``gen_server.call.vs_pingpong``: the same calls vs snowg's raw local
  ping-pong (``local.snowg_pingpong``, benchmarks/local.py's ``local.pingpong``
  row: ``send`` + ``receive`` between two processes). Target >= 0.4x (the
  BEAM's ``gen_server:call`` is about 0.3x of its own ping-pong; printed below).
* ``gen_server.call.vs_beam``: the same calls vs the BEAM's ``gen_server:call``
  to an echo ``gen_server`` (a compiled module, ``erl`` with one scheduler,
  not distributed; see ``_beam_local.py``). Only when ``erl`` is installed.
* ``gen_server.pingpong.vs_beam``: snowg's raw ping-pong vs the BEAM's raw
  ``!``/``receive`` ping-pong in the same module.
* ``gen_server.call.vs_pykka``: the same calls vs Pykka's ``ask`` to a
  ``ThreadingActor`` that answers at once. Only when ``pykka`` is installed.

Each round runs every side once, one after the other (snowg call, gevent,
snowg ping-pong, BEAM call, BEAM ping-pong, Pykka); the figures are medians
of the rounds. Many short rounds rather than a few long ones: on a shared
machine a single round's call / gevent ratio moves by a factor of two.

Usage: ``python benchmarks/gen_server.py [--calls N] [--rounds K] [--quick]
[--no-beam] [--json FILE]``; well under a minute with the defaults.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
from gevent.event import AsyncResult  # noqa: E402
from gevent.queue import Queue  # noqa: E402

import snowg  # noqa: E402
from _beam_local import start_local_beam  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402
from local import snowg_pingpong  # noqa: E402

TARGETS = {  # metric -> target ratio (higher is better)
    "gen_server.call.vs_gevent": 1.5,
    "gen_server.call.vs_pingpong": 0.4,
}


class Echo(snowg.GenServer):
    def handle_call(self, request: Any, from_: Any, state: Any) -> tuple:
        return ("reply", request, state)


def snowg_call(n: int) -> float:
    """``snowg.call`` round trips per second to a GenServer that replies at once (default timeout, 5 s)."""
    srv = Echo.start()
    call = snowg.call
    t0 = time.perf_counter()
    for i in range(n):
        call(srv, i)
    dt = time.perf_counter() - t0
    snowg.exit(srv, "kill")
    return n / dt


def gevent_call(n: int) -> float:
    """The gevent idiom: a server greenlet, a Queue of (request, AsyncResult), the client waits on the result."""
    requests: Queue = Queue()

    def server() -> None:
        get = requests.get
        while True:
            item = get()
            if item is None:
                return
            request, result = item
            result.set(request)

    glet = gevent.spawn(server)
    put = requests.put
    t0 = time.perf_counter()
    for i in range(n):
        result = AsyncResult()
        put((i, result))
        result.get()
    dt = time.perf_counter() - t0
    put(None)
    glet.join()
    return n / dt


def pykka_ask() -> Optional[Callable[[int], float]]:
    """Pykka's ``ask`` rate, or None when pykka is not installed."""
    try:
        import pykka
    except ImportError:
        return None

    class PykkaEcho(pykka.ThreadingActor):  # type: ignore[misc]
        def on_receive(self, message: Any) -> Any:
            return message

    def run(n: int) -> float:
        ref = PykkaEcho.start()
        try:
            ask = ref.ask
            t0 = time.perf_counter()
            for i in range(n):
                ask(i)
            return n / (time.perf_counter() - t0)
        finally:
            ref.stop()

    return run


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000, help="round trips per run (default 20,000)")
    ap.add_argument("--rounds", type=int, default=25, help="alternating rounds, medians kept (default 25)")
    ap.add_argument("--pykka-calls", type=int, default=5_000, help="asks per Pykka run (default 5,000)")
    ap.add_argument("--quick", action="store_true", help="5,000 round trips, 5 rounds")
    ap.add_argument("--no-beam", action="store_true", help="leave the BEAM out")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON to FILE")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.pykka_calls = 5_000, 5, 1_000

    notes: List[str] = []
    beam = None if args.no_beam else start_local_beam(notes)
    if args.no_beam:
        notes.append("BEAM: left out (--no-beam)")
    pykka_run = pykka_ask()
    if pykka_run is None:
        notes.append("Pykka: not installed, skipped")
    figures: Dict[str, List[float]] = {}

    def record(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    try:
        # warm-up (code paths, allocator, the BEAM's module)
        snowg_call(2_000)
        gevent_call(2_000)
        snowg_pingpong(2_000)
        if beam is not None:
            beam.call(2_000)
            beam.pingpong(2_000)
        for _ in range(args.rounds):
            record("snowg.call", snowg_call(args.calls))
            record("gevent.call", gevent_call(args.calls))
            record("snowg.pingpong", snowg_pingpong(args.calls))
            if beam is not None:
                record("beam.call", beam.call(args.calls))
                record("beam.pingpong", beam.pingpong(args.calls))
            if pykka_run is not None:
                record("snowg.call.small", snowg_call(args.pykka_calls))
                record("pykka.ask", pykka_run(args.pykka_calls))
    finally:
        if beam is not None:
            beam.close()

    med = {k: statistics.median(v) for k, v in figures.items()}
    rows = [
        Row("gen_server.call.vs_gevent", "round_trips/s", med["snowg.call"], med["gevent.call"], True),
        Row("gen_server.call.vs_pingpong", "round_trips/s", med["snowg.call"], med["snowg.pingpong"], True),
    ]
    if beam is not None:
        rows.append(Row("gen_server.call.vs_beam", "round_trips/s", med["snowg.call"], med["beam.call"], True))
        rows.append(
            Row("gen_server.pingpong.vs_beam", "round_trips/s", med["snowg.pingpong"], med["beam.pingpong"], True)
        )
    if pykka_run is not None:
        rows.append(Row("gen_server.call.vs_pykka", "round_trips/s", med["snowg.call.small"], med["pykka.ask"], True))

    print(
        f"medians of {args.rounds} alternating rounds, {args.calls:,} round trips per run"
        + (f" ({args.pykka_calls:,} beside Pykka)" if pykka_run is not None else "")
        + "; ratio = snowg / baseline"
    )
    print("baselines: vs_gevent = gevent Queue + AsyncResult server greenlet; vs_pingpong = snowg's raw")
    print("  send/receive ping-pong (local.py); vs_beam = the BEAM (OTP " + (beam.release if beam else "-") + ", +S 1)")
    print("  gen_server:call / raw ping-pong; vs_pykka = Pykka ThreadingActor ask")
    for note in notes:
        print(note)
    print_table(rows)
    own = med["snowg.call"] / med["snowg.pingpong"]
    line = f"\ncall / own raw ping-pong: snowg {own:.2f}x"
    if beam is not None:
        line += f", BEAM {med['beam.call'] / med['beam.pingpong']:.2f}x"
    print(line)
    ratios = sorted(a / b for a, b in zip(figures["snowg.call"], figures["gevent.call"]))
    print(
        f"call / gevent, each round's ratio: median {statistics.median(ratios):.2f}, "
        f"min {ratios[0]:.2f}, max {ratios[-1]:.2f}"
    )
    misses = [
        f"{r.metric}: {r.ratio:.2f}x (target >= {TARGETS[r.metric]}x)"
        for r in rows
        if r.metric in TARGETS and r.ratio is not None and r.ratio < TARGETS[r.metric]
    ]
    print("\ntargets missed: " + "; ".join(misses) if misses else "\nall targets met")
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
