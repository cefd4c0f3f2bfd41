"""The cost of being observed by ``snowg observer``, measured in the same run.

A node W (its own OS process) runs the workload; the benchmark asks W to
run it (``rpc.call``) in three settings, alternating, each keeping its best
of ``--repeat``:

* **unobserved**: the baseline;
* **observed**: a ``snowg observer`` OS process attached to W, refreshing
  every second (``--interval``), with one page (a WebSocket client in this
  process) watching W, so W sends its whole process list each second and
  forwards its crash and restart events;
* **observed + tracing**: the same, with per-process CPU time accounting on
  in W (``snowg.set_cpu_tracing(True)``).

Rows (ratio = setting / unobserved; higher is better, 1.0 is free):

* ``observer.pingpong`` / ``observer.pingpong.tracing``: local round trips/s
  between two processes on W.
* ``observer.restart`` / ``observer.restart.tracing``: crash -> restarted
  and running cycles/s of a ``one_for_one`` child on W (every cycle is a
  crash event and a restart event for the observer).
* ``observer.restart_p50`` (µs, lower is better): the same cycles' median.
* ``observer.snapshot_ms.{full,summary}`` (no baseline): what one gathering
  costs W, in ms of W's CPU, with ``--idle`` (10,000) more idle processes:
  a watched node's snapshot (the process list, up to 5,000 rows) and an
  unwatched one's (``limit=0``). At one gathering a second, that many ms is
  that tenth of a percent of a core.

Target (issue 17): <= 1.05x the unobserved cost without tracing. Usage:
``python benchmarks/observer.py [--pingpong N] [--restarts N] [--repeat K]
[--interval S] [--idle N] [--json FILE]``; about a minute with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess as std_subprocess
import sys
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gevent  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent import subprocess  # noqa: E402

import _observer_workload as work  # noqa: E402
import snowg  # noqa: E402
from _machine import machine_load  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

ROOT = os.path.dirname(HERE)


class _Observed:
    """A ``snowg observer`` attached to ``target`` and one page watching ``watch``, until :meth:`stop`."""

    def __init__(self, config: Any, target: str, watch: str, interval: float) -> None:
        env = dict(os.environ, SNOWG_COOKIE=config.cookie)
        env["PYTHONPATH"] = os.pathsep.join([ROOT, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
        cmd = [sys.executable, "-m", "snowg", "observer", "--port", "0", "--certs", config.certs]
        cmd += ["--interval", str(interval), "--tick", str(config.tick), target]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=std_subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, text=True
        )
        with gevent.Timeout(30, RuntimeError("snowg observer did not start")):
            line = self.proc.stdout.readline()
        port = int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
        import websocket

        sock = gsocket.create_connection(("127.0.0.1", port), timeout=30)
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", socket=sock, timeout=30)
        self.ws.send(json.dumps({"cmd": "watch", "node": watch}))
        self.snapshots = 0
        self.events = 0
        # The page reads everything, as a browser does (else its queue would fill and it would be closed).
        self.reader = gevent.spawn(self._read)
        with gevent.Timeout(30, RuntimeError("the observer sent no snapshot of the node")):
            while self.snapshots < 2:
                gevent.sleep(0.05)

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if msg.get("type") == "node" and msg.get("snapshot"):
                    self.snapshots += 1
                elif msg.get("type") == "event":
                    self.events += 1
        except Exception:  # noqa: BLE001 - closed at stop
            return

    def stop(self) -> None:
        self.reader.kill()
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--pingpong", type=int, default=300_000, help="round trips per run (default 300,000)")
    ap.add_argument("--restarts", type=int, default=3_000, help="crash/restart cycles per run (default 3,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each setting, best kept (default 3)")
    ap.add_argument("--interval", type=float, default=1.0, help="the observer's refresh, seconds (default 1)")
    ap.add_argument("--idle", type=int, default=10_000, help="idle processes for the snapshot cost (default 10,000)")
    ap.add_argument("--json", metavar="FILE", help="write the rows as JSON to FILE")
    args = ap.parse_args(argv)

    from snowg.testing import ClusterConfig, PeerFactory, start_test_node

    config = ClusterConfig(tick=5.0)  # W is busy for seconds at a time: no false node-down
    start_test_node(config)
    factory = PeerFactory(config)
    w = factory.start(modules=["_observer_workload"], env={"PYTHONPATH": HERE})
    settings = ("unobserved", "observed", "tracing")
    pp: Dict[str, List[float]] = {s: [] for s in settings}
    rs: Dict[str, List[Dict[str, float]]] = {s: [] for s in settings}
    seen = {"snapshots": 0, "events": 0}
    try:
        for _ in range(args.repeat):
            for setting in settings:
                observed: Optional[_Observed] = None
                if setting != "unobserved":
                    observed = _Observed(config, w.target, w.name, args.interval)
                    assert w.rpc(work.hidden_peers), "the observer is not attached"
                w.rpc(work.set_tracing, setting == "tracing")
                try:
                    pp[setting].append(w.rpc(work.pingpong, args.pingpong, timeout=600))
                    rs[setting].append(w.rpc(work.restarts, args.restarts, timeout=600))
                finally:
                    w.rpc(work.set_tracing, False)
                    if observed is not None:
                        seen["snapshots"] += observed.snapshots
                        seen["events"] += observed.events
                        observed.stop()
        cost = w.rpc(work.snapshot_cost, args.idle, timeout=600)
    finally:
        factory.stop_all()
        snowg.stop_node()

    best_pp = {s: max(v) for s, v in pp.items()}
    best_rate = {s: max(r["rate"] for r in v) for s, v in rs.items()}
    best_p50 = {s: min(r["p50"] for r in v) for s, v in rs.items()}
    rows = [
        Row("observer.pingpong", "round_trips/s", best_pp["observed"], best_pp["unobserved"], True),
        Row("observer.pingpong.tracing", "round_trips/s", best_pp["tracing"], best_pp["unobserved"], True),
        Row("observer.restart", "restarts/s", best_rate["observed"], best_rate["unobserved"], True),
        Row("observer.restart.tracing", "restarts/s", best_rate["tracing"], best_rate["unobserved"], True),
        Row("observer.restart_p50", "us", best_p50["observed"], best_p50["unobserved"], False),
        Row("observer.restart_p50.tracing", "us", best_p50["tracing"], best_p50["unobserved"], False),
        Row(f"observer.snapshot_ms.full.{args.idle}", "ms", cost["full"], None, False),
        Row(f"observer.snapshot_ms.summary.{args.idle}", "ms", cost["summary"], None, False),
    ]
    print_table(rows)
    print(
        f"\n(snowg = observed by snowg observer every {args.interval:g} s, a page watching the node; "
        f"baseline = unobserved; the pages got {seen['snapshots']} snapshots and {seen['events']} events; "
        f"{machine_load()})"
    )
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
