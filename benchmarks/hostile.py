"""A node under attack: broadcast latency with hostile WebSocket clients and a peer that never reads.

The cluster: node A (a ``snowg node`` OS process, tick 1 s) serves W WebSocket
clients (default 50, in one load-generator process) in one room, and a
process on A broadcasts to the room R times a second (default 100); this
process is node B, A's healthy peer (tick 1 s), and only watches. Each
broadcast carries the time it was *due*, so a node that freezes shows as
latency, not as fewer broadcasts; a delivery's latency is its arrival minus
that time (CLOCK_MONOTONIC is system-wide).

Scenarios, S seconds of broadcasts each (default 10), one after the other:

* ``none``: no attacker, and ``none_after``, the same at the end; the better
  of the two is the reference of every ratio (their difference shows how
  much the machine itself drifted);
* ``ping_flood``: one more client sends masked pings as fast as its socket
  takes them (reading and dropping the pongs), and connects again whenever
  the server closes it;
* ``continuation_flood``: one more client sends one unfinished text message
  made of empty continuation frames, as fast as it can, and connects again
  when closed;
* ``stalled_peer``: node C, a third node connected to A through a TCP relay
  in this process, stops being read (the relay stops reading what A sends it;
  what C sends still reaches A: C keeps sending to A five times a second,
  so A never finds it silent) while a process on A sends to C at F MB/s
  (default 10; ``--flood-rate 0``: as fast as it can). A's RSS is sampled.

Rows (ratio = snowg / baseline, and the baseline is the target's reference):
  hostile.p99.<scenario>            ms, per-delivery p99; baseline: the lower p99 with no attacker (target: <= 2x)
  hostile.missed.<scenario>         deliveries that never arrived (target: 0)
  hostile.hub_lag_max.<scenario>    ms, the longest A's hub was late to wake a greenlet sleeping 5 ms, over and over
                                    (a client holding the node shows here; baseline: the same with no attacker)
  hostile.cpu.<scenario>            node A's CPU while the scenario ran, in % of one core (no target)
  hostile.declared_down             times the healthy peer B declared A down, over all scenarios (target: 0)
  hostile.stalled_peer.rss_growth   MB A's RSS grew while it sent to C; baseline: the
                                    session bound + 10 MB (target: ratio <= 1)
  hostile.stalled_peer.sent         MB the sender on A got out of ``send`` (queued for C)
A note under the table says how each attacker fared (connections, close
codes) and whether A declared C down, with which reason, and when.

Usage: python benchmarks/hostile.py [--clients W] [--rate R] [--seconds S] [--size BYTES]
         [--flood-rate MB/s] [--only SCENARIO,...] [--verbose] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gevent  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent import subprocess  # noqa: E402
from gevent.event import Event  # noqa: E402

import snowg  # noqa: E402
import snowg.ws  # noqa: E402,F401 - room broadcasts from A reach this node too: it must know their frame tag


from _fanout_common import raise_nofile  # noqa: E402
from _machine import cpu_seconds, machine_load  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

NODE = "_hostile_node"
SCENARIOS = ("none", "ping_flood", "continuation_flood", "stalled_peer", "none_after")
QUIET = ("none", "none_after")
#: A's RSS may grow by the session bound plus this much while it sends to a peer that never reads.
RSS_SLACK = 10 * 1024 * 1024
#: Past this much RSS growth the sender on A is killed (this benchmark shares the machine).
RSS_SAFETY = 768 * 1024 * 1024


def log(msg: str) -> None:
    print(f"[hostile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss(os_pid: int) -> int:
    """VmRSS of a process, in bytes (0 once it has gone)."""
    try:
        with open(f"/proc/{os_pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Helper:
    """A ``_hostile_clients.py`` process: the clients (commands on stdin) or an attacker."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_hostile_clients.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE,
        )

    def line(self, timeout: float = 60.0) -> str:
        with gevent.Timeout(timeout, RuntimeError(f"{self.proc.args[2:]}: no answer in {timeout} s")):
            text = self.proc.stdout.readline().decode()
        if not text:
            raise RuntimeError(f"{self.proc.args[2:]} ended")
        return text.strip()

    def cmd(self, timeout: float = 60.0, **kw: Any) -> str:
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.proc.stdin.flush()
        return self.line(timeout)

    def stop(self) -> Optional[dict]:
        """SIGTERM; the attacker's summary (None for the clients)."""
        summary = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                text = self.line(10)
                if text.startswith("summary "):
                    summary = json.loads(text.split(" ", 1)[1])
            except RuntimeError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return summary


class StallRelay:
    """A TCP relay to node C that can stop reading what A sends (what C sends always flows)."""

    def __init__(self, target: tuple) -> None:
        self.target = target
        self.flowing = Event()
        self.flowing.set()
        self.sockets: list = []
        self.listener = gsocket.socket()
        # Small buffers on A's side: A's own queue, not the kernel's, holds what C does not read.
        self.listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, 16384)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.server = gevent.spawn(self._accept)

    def _accept(self) -> None:
        while True:
            a, _ = self.listener.accept()
            c = gsocket.create_connection(self.target)
            self.sockets += [a, c]
            gevent.spawn(self._pump, c, a, False)
            gevent.spawn(self._pump, a, c, True)

    def _pump(self, src: Any, dst: Any, stallable: bool) -> None:
        try:
            while True:
                if stallable:
                    self.flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.server.kill()
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


class Bench:
    def __init__(self, args: Any) -> None:
        self.args = args
        self.downs: List[tuple] = []  # (scenario, node, reason) of every NodeDown this node saw
        self.scenario = "setup"

    def setup(self) -> None:
        from snowg.testing import ClusterConfig, PeerFactory, start_test_node, wait_for

        self.config = ClusterConfig(tick=1.0)
        start_test_node(self.config, name=f"hostile-b{os.getpid()}@127.0.0.1")
        snowg.monitor_nodes(True)
        self.factory = PeerFactory(self.config)
        self.a = self.factory.start(f"hostile-a{os.getpid()}@127.0.0.1", modules=[NODE])
        # C's own tick is long, so that C does not drop A when A's frames stop reaching it.
        self.c = self.factory.start(f"hostile-c{os.getpid()}@127.0.0.1", modules=[NODE], connect=False, tick=60.0)
        host, port = self.c.address.rsplit(":", 1)
        self.relay = StallRelay((host, int(port)))
        snowg.register("hostile_sink", snowg.spawn(_sink))
        self.a.rpc(f"{NODE}.start_sink")
        if not self.a.rpc(f"{NODE}.connect", f"{self.c.name}:{self.relay.port}"):
            raise RuntimeError("A could not connect to C through the relay")
        # C learns of this node from A's peer list and connects to it (full mesh).
        if not wait_for(lambda: self.c.name in snowg.nodes(), timeout=30):
            raise RuntimeError("C did not join the cluster")
        self.c.rpc(f"{NODE}.start_sink")
        snowg.spawn(f"{NODE}.heartbeat", 0.2, node=self.c.name)
        self.bound = self.a.rpc(f"{NODE}.dist_buffer_size")
        self.port = self.a.rpc(f"{NODE}.start_ws")
        self.clients = Helper("clients")
        self.clients.cmd(cmd="open", port=self.port, count=self.args.clients)
        if not wait_for(lambda: self.a.rpc(f"{NODE}.members") == self.args.clients, timeout=30):
            raise RuntimeError("the clients did not all join the room")
        log(f"A={self.a.name} (os pid {self.a.os_pid}), C={self.c.name} via relay :{self.relay.port}, ws :{self.port}")

    def collect_downs(self) -> None:
        for m in snowg.flush_messages(lambda m: isinstance(m, (snowg.NodeDown, snowg.NodeUp))):
            if isinstance(m, snowg.NodeDown):
                self.downs.append((self.scenario, m.node, m.reason))

    def broadcasts(self) -> dict:
        """One run of broadcasts; -> the clients' report, with 'expected' deliveries."""
        args = self.args
        self.clients.cmd(cmd="reset")
        me = snowg.self()
        snowg.spawn(f"{NODE}.broadcaster", me, args.rate, args.seconds, args.size, node=self.a.name)
        try:
            _, count = snowg.receive(
                lambda m: isinstance(m, tuple) and m[0] == "broadcasts_done", timeout=args.seconds * 2 + 10
            )
        except snowg.Timeout:
            count = int(args.rate * args.seconds)
            log(f"{self.scenario}: the broadcaster did not finish in time")
        expected = count * args.clients
        report: dict = {}
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the last deliveries may still be on their way
            report = json.loads(self.clients.cmd(cmd="report").split(" ", 1)[1])
            if report["deliveries"] >= expected:
                break
            gevent.sleep(0.1)
        report["expected"] = expected
        return report

    def run(self, scenario: str) -> dict:
        self.scenario = scenario
        log(f"scenario {scenario}")
        if self.a.name not in snowg.nodes() and not snowg.connect(self.a.target):
            raise RuntimeError(f"{self.a.name} is down and cannot be reached again")
        res: dict = {}
        cpu0, t0 = cpu_seconds(self.a.os_pid), time.monotonic()
        self.a.rpc(f"{NODE}.lag_start", 0.005)
        attacker: Optional[Helper] = None
        sampler = None
        if scenario in ("ping_flood", "continuation_flood"):
            attacker = Helper("ping" if scenario == "ping_flood" else "continuation", str(self.port))
            attacker.line(30)  # 'attacking'
        elif scenario == "stalled_peer":
            rss0 = rss(self.a.os_pid)
            peak = [rss0]
            self.relay.flowing.clear()
            flood_pid = snowg.spawn(f"{NODE}.flood", self.c.name, self.args.flood_rate * 1e6, 65536, node=self.a.name)

            def sample() -> None:
                while True:
                    now = rss(self.a.os_pid)
                    peak[0] = max(peak[0], now)
                    if now - rss0 > RSS_SAFETY:
                        log("stalled_peer: A's RSS grew past the safety limit: the sender is killed")
                        snowg.exit(flood_pid, "kill")
                        res["safety_stop"] = True
                        return
                    gevent.sleep(0.05)

            sampler = gevent.spawn(sample)
        try:
            res.update(self.broadcasts())
            res["cpu"] = 100.0 * (cpu_seconds(self.a.os_pid) - cpu0) / (time.monotonic() - t0)
            res["lag"] = self.a.rpc(f"{NODE}.lag_stop")
        finally:
            if attacker is not None:
                res["attacker"] = attacker.stop()
            if sampler is not None:
                sampler.kill()
                res["rss_growth"] = peak[0] - rss0
                try:
                    res["flood"] = self.a.rpc(f"{NODE}.flood_stats")
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    res["flood"] = {"error": repr(exc)}
                snowg.exit(flood_pid, "kill")
                self.relay.close()
            self.collect_downs()
        log(
            f"{scenario}: p50 {_f(res.get('p50'))} ms, p99 {_f(res.get('p99'))} ms, max {_f(res.get('max'))} ms, "
            f"{res.get('deliveries')}/{res.get('expected')} deliveries"
        )
        return res

    def close(self) -> None:
        if self.args.verbose:
            for peer in (self.a, self.c):
                log(f"log of {peer.name}:\n{peer.log_tail(60)}")
        try:
            self.clients.cmd(cmd="quit", timeout=5)
        except Exception:  # noqa: BLE001 - it may have gone
            pass
        self.clients.stop()
        self.factory.stop_all()


def _sink() -> None:
    while True:
        snowg.receive()


def _f(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def rows_for(results: Dict[str, dict], bench: Bench) -> List[Row]:
    # The reference is the better of the two runs with no attacker (before and
    # after): a noisy moment of a shared machine must not flatter the attacks.
    calm = [results[sc] for sc in QUIET if sc in results]
    base = min((r["p99"] for r in calm if r.get("p99") is not None), default=None)
    base_lag = min((r["lag"]["max"] for r in calm if "lag" in r), default=None)
    rows = []
    for sc, res in results.items():
        rows.append(Row(f"hostile.p99.{sc}", "ms", res.get("p99") or 0.0, None if sc in QUIET else base, False))
    for sc, res in results.items():
        lag = res.get("lag", {}).get("max", 0.0)
        rows.append(Row(f"hostile.hub_lag_max.{sc}", "ms", lag, None if sc in QUIET else base_lag, False))
    for sc, res in results.items():
        rows.append(Row(f"hostile.cpu.{sc}", "% of a core", res.get("cpu", 0.0), None, False))
    for sc, res in results.items():
        rows.append(Row(f"hostile.missed.{sc}", "deliveries", float(res["expected"] - res["deliveries"]), None, False))
    a_downs = [d for d in bench.downs if d[1] == bench.a.name]
    rows.append(Row("hostile.declared_down", "times", float(len(a_downs)), None, False))
    st = results.get("stalled_peer")
    if st is not None:
        bound = bench.bound if bench.bound is not None else 1 << 20
        mb = 1024.0 * 1024.0
        rows.append(
            Row("hostile.stalled_peer.rss_growth", "MB", st["rss_growth"] / mb, (bound + RSS_SLACK) / mb, False)
        )
        rows.append(Row("hostile.stalled_peer.sent", "MB", st.get("flood", {}).get("sent", 0) / mb, None, False))
    return rows


def notes(results: Dict[str, dict], bench: Bench) -> List[str]:
    out = []
    for sc in ("ping_flood", "continuation_flood"):
        att = results.get(sc, {}).get("attacker")
        if att:
            out.append(
                f"{sc}: the attacker connected {att['connections']} times ({att['refused']} refused), "
                f"sent {att['bytes_sent'] / 1e6:.1f} MB, close codes received {att['closes'] or 'none'}; "
                f"the server still held the TCP connection 1 s after ending it {att.get('held_after_close', 0)} times"
            )
    st = results.get("stalled_peer")
    if st is not None:
        fl = st.get("flood", {})
        bound = "none (no bound in this snowg)" if bench.bound is None else f"{bench.bound / 1048576:.2f} MiB"
        if fl.get("down") is not None:
            down = f"A declared C down ({fl['down']}) {fl['down_after']:.1f} s after C stopped reading"
        else:
            down = "A did not declare C down while the scenario ran"
        out.append(
            f"stalled_peer: session bound {bound}; the sender got {fl.get('sent', 0) / 1e6:.1f} MB out of send; "
            f"{down}" + ("; stopped by the safety limit" if st.get("safety_stop") else "")
        )
    a_downs = [d for d in bench.downs if d[1] == bench.a.name]
    if a_downs:
        out.append("the healthy peer declared A down: " + ", ".join(f"{sc} ({r!r})" for sc, _n, r in a_downs))
    else:
        out.append("the healthy peer never declared A down")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50, help="W, well-behaved clients (default 50)")
    ap.add_argument("--rate", type=float, default=100.0, help="R, broadcasts per second (default 100)")
    ap.add_argument("--seconds", type=float, default=10.0, help="S, seconds of broadcasts per scenario (default 10)")
    ap.add_argument("--size", type=int, default=100, help="broadcast size in bytes (default 100)")
    ap.add_argument(
        "--flood-rate", type=float, default=10.0, help="F, MB/s sent to the stalled peer (default 10; 0: at once)"
    )
    ap.add_argument("--only", help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    ap.add_argument(
        "--verbose", action="store_true", help="log this node's events, and the nodes' logs after a node down"
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    if "none" not in chosen:
        chosen.insert(0, "none")  # the reference every ratio needs
    load_before = machine_load()
    raise_nofile()
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s B %(levelname)s %(message)s")
    bench = Bench(args)
    results: Dict[str, dict] = {}
    try:
        bench.setup()
        for sc in chosen:
            results[sc] = bench.run(sc)
        bench.scenario = "end"
        bench.collect_downs()
    finally:
        bench.close()
        snowg.stop_node()
    print(f"machine: {os.cpu_count()} CPUs; {load_before} before, {machine_load()} after")
    print(
        f"2-node cluster (tick 1 s), {args.clients} WebSocket clients, {args.rate:g} broadcasts/s of {args.size} B, "
        f"{args.seconds:g} s per scenario; ratio = p99 / the lower p99 with no attacker (target <= 2x); "
        f"rss_growth ratio = growth / (session bound + 10 MB) (target <= 1)"
    )
    rows = rows_for(results, bench)
    print_table(rows)
    print()
    for line in notes(results, bench):
        print(line)
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
