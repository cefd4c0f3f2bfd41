"""Cluster formation: N node OS processes started at once find each other, beside N BEAM nodes in the same run.

snowg: N ``snowg node --cluster local`` processes, nothing else given (no
names, ports or peers: each takes a unique ``snowg-XXXXXX`` name and a free
port, registers with the host's port mapper and connects to the others it
lists). Each imports ``_formation_probe``, which writes a line with
``time.monotonic_ns()`` each time its number of peers changes; the benchmark
itself joins nothing.

BEAM (when ``erl`` is on PATH; skipped, and said so, otherwise): N ``erl
-sname ... -setcookie ... -noshell`` nodes, each running ``net_adm:world_list
([Host])`` at start, as a BEAM user would (global's full mesh connects the
rest), and printing the same lines (the OS's CLOCK_MONOTONIC, read through
``erlang:system_info(os_monotonic_time_source)``).

Each side has a private port mapper on a free port (``ERL_EPMD_PORT``),
started by the benchmark before any node and left running between runs, as a
host's mapper is: Erlang's own ``epmd`` for the BEAM nodes, ``snowg epmd`` for
the snowg nodes (``--snowg-mapper epmd``: Erlang's ``epmd`` for them too). The
snowg nodes share a private ``SNOWG_HOME`` (a temporary directory): a first,
unmeasured round of 4 nodes on each side creates its cookie and certificates
(as the first start on a host does) and warms the OS's file cache.

Rows (ratio = snowg / BEAM; lower is better everywhere):
  formation.time.n<N>      ms from launching the N processes until every node sees N-1 peers
                           (median of --repeat runs; target: ratio <= 2)
  formation.boot.n<N>      ms until every node runs and listens (its first probe line): how much
                           of the formation time is starting the runtime itself
  formation.mesh.n<N>      ms from then until every node sees N-1 peers: the finding and
                           connecting itself (the median of each run's difference)
  formation.idle_cpu.n<N>  the N nodes' CPU (utime + stime from /proc, with their children) over
                           --idle seconds once formed (after a 1 s pause), in % of one core; at the
                           largest N only
  formation.idle_cpu_mapper.n<N>  the port mapper's CPU over the same window

The runs alternate snowg and BEAM at each N. Every run has a deadline
(--timeout) and kills the process groups it started, whatever happens (and
should this process be killed, the kernel kills every process it started:
PR_SET_PDEATHSIG); a run that fails is reported (with the end of the log of a
node that did not form) and left out of the median. Linux only (/proc, prctl).

Usage: python benchmarks/cluster_formation.py [--sizes 4,8,16] [--repeat K] [--idle S]
         [--timeout S] [--snowg-mapper snowg|epmd] [--no-beam] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gevent  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent import subprocess  # noqa: E402
from gevent.event import Event  # noqa: E402

from _machine import machine_load, session_cpu_seconds  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

PROBE = "_formation_probe"
PR_SET_PDEATHSIG = 1
_BENCH_PID = os.getpid()
#: The start of the probe's lines (_formation_probe.PREFIX; importing that module makes a process a probe).
PREFIX = "FORMATION_PEERS"
WARMUP_N = 4
#: Pause between formation and the idle CPU window.
SETTLE = 1.0
#: Environment variables that would give the snowg nodes something besides ``--cluster local``.
SNOWG_ENV = ("SNOWG_COOKIE", "SNOWG_CLUSTER", "SNOWG_HOST", "SNOWG_PREFIX", "SNOWG_EPMD_ADDRESS", "SNOWG_HOME")

#: Evaluated by each BEAM node (``erl -eval``): the same lines as _formation_probe, then
#: ``net_adm:world_list`` of this host.
BEAM_PROBE = """
{_, Clock} = lists:keyfind(clock_id, 1, erlang:system_info(os_monotonic_time_source)),
Now = fun() ->
    {time, T} = lists:keyfind(time, 1, erlang:system_info(os_monotonic_time_source)),
    erlang:convert_time_unit(T, native, nanosecond)
end,
[_, Host] = string:split(atom_to_list(node()), "@"),
ok = net_kernel:monitor_nodes(true),
Report = fun() -> io:format("%s ~b ~b ~s~n", [length(nodes()), Now(), Clock]) end,
Report(),
spawn(fun() -> net_adm:world_list([list_to_atom(Host)]) end),
Loop = fun L() -> receive {nodeup, _} -> Report(), L(); {nodedown, _} -> Report(), L() end end,
Loop().
""".replace("%s", PREFIX)


def log(msg: str) -> None:
    print(f"[formation {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with gsocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mapper_names(port: int, timeout: float = 2.0) -> Optional[List[str]]:
    """The names a port mapper on 127.0.0.1:``port`` lists (EPMD's NAMES_REQ), or None if none answers."""
    try:
        with gsocket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">H", 1) + b"n")
            data = b""
            while len(data) < (1 << 20):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if len(data) < 4:
        return None
    lines = data[4:].decode("utf-8", "replace").splitlines()
    return [line.split()[1] for line in lines if line.startswith("name ")]


def _die_with_parent() -> None:
    """In a child, before exec: have it SIGKILLed when this process ends, however it ends (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != _BENCH_PID:
        os._exit(70)  # no guarantee it would not outlive us, or we are gone already


class Proc:
    """An OS process this benchmark started, in a session of its own (its children are killed with it).

    Its stdout is read line by line: each probe line ``FORMATION_PEERS <count>
    <ns> [clock]`` is kept in ``peers`` and sets ``changed``.
    """

    def __init__(self, label: str, cmd: Sequence[str], env: Dict[str, str], log_path: str, changed: Event) -> None:
        self.label = label
        self.log_path = log_path
        self.peers: List[Tuple[int, int]] = []
        self.clock: Optional[str] = None
        self.ended = False
        self.changed = changed
        with open(log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=HERE,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.reader = gevent.spawn(self._read)

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            fields = raw.decode("utf-8", "replace").split()
            if len(fields) >= 3 and fields[0] == PREFIX and fields[1].isdigit() and fields[2].isdigit():
                self.peers.append((int(fields[1]), int(fields[2])))
                if len(fields) > 3:
                    self.clock = fields[3]
                self.changed.set()
        self.ended = True
        self.changed.set()

    def first_seen(self, count: int) -> Optional[int]:
        """The monotonic ns of its first line with at least ``count`` peers."""
        return next((t for c, t in self.peers if c >= count), None)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL its process group and reap it (bounded)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{self.label} (pid {self.pid}) did not end after SIGKILL")
        self.reader.join(timeout=5)  # its stdout is at its end now
        self.reader.kill()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


class Side:
    """How one side starts its port mapper and its nodes."""

    name = ""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.mapper: Optional[Proc] = None
        self.runs = 0

    def mapper_command(self) -> List[str]:
        raise NotImplementedError

    def node_command(self, i: int) -> List[str]:
        raise NotImplementedError

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["ERL_EPMD_PORT"] = str(self.port)
        return env

    def start_mapper(self) -> None:
        path = os.path.join(self.workdir, f"{self.name}-mapper.log")
        self.mapper = Proc(f"{self.name} mapper", self.mapper_command(), self.env(), path, Event())
        deadline = time.monotonic() + 15
        while mapper_names(self.port) is None:
            if self.mapper.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} port mapper did not answer:\n{self.mapper.log_tail()}")
            gevent.sleep(0.05)
        log(f"{self.name}: port mapper on 127.0.0.1:{self.port}: {' '.join(self.mapper_command())}")

    def wait_mapper_empty(self, timeout: float = 10.0) -> None:
        """Until the mapper lists no node (the last run's registrations are gone)."""
        deadline = time.monotonic() + timeout
        while mapper_names(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} port mapper still lists {mapper_names(self.port)}")
            gevent.sleep(0.05)

    def stop(self) -> None:
        if self.mapper is not None:
            self.mapper.kill()


class SnowgSide(Side):
    name = "snowg"

    def __init__(self, workdir: str, mapper: str) -> None:
        super().__init__(workdir)
        self.home = os.path.join(workdir, "snowg-home")
        self.mapper_kind = mapper

    def mapper_command(self) -> List[str]:
        if self.mapper_kind == "epmd":
            return ["epmd", "-port", str(self.port), "-address", "127.0.0.1"]
        return [sys.executable, "-m", "snowg", "epmd", "--port", str(self.port), "--address", "127.0.0.1"]

    def node_command(self, i: int) -> List[str]:
        return [sys.executable, "-m", "snowg", "node", "--cluster", "local", "--import", PROBE]

    def env(self) -> Dict[str, str]:
        env = super().env()
        for var in SNOWG_ENV:
            env.pop(var, None)
        env["SNOWG_HOME"] = self.home
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([HERE, *inherited])
        return env


class BeamSide(Side):
    name = "beam"

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir)
        self.cookie = secrets.token_hex(10)

    def mapper_command(self) -> List[str]:
        return ["epmd", "-port", str(self.port), "-address", "127.0.0.1"]

    def node_command(self, i: int) -> List[str]:
        name = f"formation{self.runs}n{i}"
        return ["erl", "-sname", name, "-setcookie", self.cookie, "-noshell", "-eval", BEAM_PROBE]

    def env(self) -> Dict[str, str]:
        env = super().env()
        env["HOME"] = self.workdir  # no ~/.erlang.cookie of the user is read or made
        return env


class RunFailed(Exception):
    pass


def run(side: Side, n: int, timeout: float, idle: float = 0.0) -> Dict[str, float]:
    """Start ``n`` nodes of ``side`` at once and wait until each sees ``n - 1`` peers.

    Blocks at most ``timeout`` seconds for the formation (plus ``idle`` and
    the settle pause when ``idle`` is set). Every process started is killed
    before it returns or raises.

    Returns:
        ``formation_ms``, ``boot_ms``; with ``idle``, also ``cpu`` and
        ``mapper_cpu`` (% of one core) and ``drops`` (nodes that lost a peer
        in the window).

    Raises:
        RunFailed: a node ended, or the mesh did not form in time (the message
            holds the end of the logs of the nodes that did not form).
    """
    side.wait_mapper_empty()
    side.runs += 1
    changed = Event()
    env = side.env()
    procs: List[Proc] = []
    want = n - 1
    res: Dict[str, float] = {}
    try:
        t0 = time.monotonic_ns()
        for i in range(n):
            path = os.path.join(side.workdir, f"{side.name}-run{side.runs}-n{i}.log")
            procs.append(Proc(f"{side.name} node {i}", side.node_command(i), env, path, changed))
        deadline = time.monotonic() + timeout
        while True:
            changed.clear()
            if all(p.first_seen(want) is not None for p in procs):
                break
            ended = [p for p in procs if p.ended]
            if ended:
                raise RunFailed(f"{side.name} N={n}: {ended[0].label} ended:\n{ended[0].log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0 or not changed.wait(left):
                late = [p for p in procs if p.first_seen(want) is None]
                counts = [p.peers[-1][0] if p.peers else None for p in late]
                raise RunFailed(
                    f"{side.name} N={n}: {len(late)} nodes did not see {want} peers in {timeout:g} s "
                    f"(peers seen: {counts}); end of {late[0].label}'s log:\n{late[0].log_tail()}"
                )
        for p in procs:
            if p.clock not in (None, "CLOCK_MONOTONIC"):
                raise RunFailed(f"{p.label} reports times of {p.clock}, not CLOCK_MONOTONIC")
        formed = max(p.first_seen(want) or 0 for p in procs)
        res["formation_ms"] = (formed - t0) / 1e6
        res["boot_ms"] = (max(p.peers[0][1] for p in procs) - t0) / 1e6
        res["mesh_ms"] = res["formation_ms"] - res["boot_ms"]
        if idle > 0:
            gevent.sleep(SETTLE)
            seen = sum(len(p.peers) for p in procs)
            sids = [p.pid for p in procs]
            mapper_sid = [side.mapper.pid] if side.mapper is not None else []
            cpu0, mcpu0, w0 = session_cpu_seconds(sids), session_cpu_seconds(mapper_sid), time.monotonic()
            gevent.sleep(idle)
            cpu1, mcpu1, w1 = session_cpu_seconds(sids), session_cpu_seconds(mapper_sid), time.monotonic()
            res["cpu"] = 100.0 * (cpu1 - cpu0) / (w1 - w0)
            res["mapper_cpu"] = 100.0 * (mcpu1 - mcpu0) / (w1 - w0)
            res["changes"] = float(sum(len(p.peers) for p in procs) - seen)
            res["short"] = float(sum(1 for p in procs if p.peers[-1][0] < want))
        return res
    finally:
        for p in procs:
            p.kill()


def median_of(results: List[Dict[str, float]], key: str) -> Optional[float]:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4,8,16", help="comma-separated N (default 4,8,16)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per N and side, median kept (default 3)")
    ap.add_argument(
        "--idle", type=float, default=30.0, help="seconds of idle CPU measured at the largest N (default 30)"
    )
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a formation may take before the run fails")
    ap.add_argument(
        "--snowg-mapper",
        choices=("snowg", "epmd"),
        default="snowg",
        help="the port mapper of the snowg nodes: 'snowg epmd' (default) or Erlang's epmd",
    )
    ap.add_argument("--no-beam", action="store_true", help="skip the BEAM side")
    ap.add_argument("--keep", help="keep the nodes' logs (and the snowg home) in this directory")
    ap.add_argument("--json")
    args = ap.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 2:
        ap.error("--sizes: at least one N, each at least 2")
    beam_note = None
    if args.no_beam:
        beam_note = "BEAM side skipped (--no-beam)"
    elif shutil.which("erl") is None or shutil.which("epmd") is None:
        beam_note = "BEAM side skipped: erl/epmd not found on PATH"
    if args.snowg_mapper == "epmd" and shutil.which("epmd") is None:
        ap.error("--snowg-mapper epmd: epmd not found on PATH")

    workdir = args.keep or tempfile.mkdtemp(prefix="snowg-formation-")
    os.makedirs(workdir, exist_ok=True)
    load_before = machine_load()
    sides: List[Side] = [SnowgSide(workdir, args.snowg_mapper)]
    if beam_note is None:
        sides.append(BeamSide(workdir))
    else:
        log(beam_note)
    results: Dict[Tuple[str, int], List[Dict[str, float]]] = {}
    failures: List[str] = []
    try:
        for side in sides:
            side.start_mapper()
        for side in sides:
            log(f"{side.name}: warm-up round of {WARMUP_N} nodes (not measured)")
            try:
                run(side, WARMUP_N, args.timeout)
            except RunFailed as exc:
                log(f"FAILED (warm-up): {exc}")
                return 1
        for n in sizes:
            for rep in range(args.repeat):
                for side in sides:
                    idle = args.idle if n == sizes[-1] and rep == args.repeat - 1 else 0.0
                    try:
                        res = run(side, n, args.timeout, idle)
                    except RunFailed as exc:
                        failures.append(str(exc))
                        log(f"FAILED: {exc}")
                        continue
                    results.setdefault((side.name, n), []).append(res)
                    extra = f", idle CPU {res['cpu']:.2f}% of a core" if "cpu" in res else ""
                    log(
                        f"{side.name} N={n} run {rep + 1}: formed in {res['formation_ms']:.0f} ms "
                        f"(every node up at {res['boot_ms']:.0f} ms){extra}"
                    )
    finally:
        for side in sides:
            side.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rows: List[Row] = []
    for metric, key in (
        ("formation.time", "formation_ms"),
        ("formation.boot", "boot_ms"),
        ("formation.mesh", "mesh_ms"),
    ):
        for n in sizes:
            snowg_ms = median_of(results.get(("snowg", n), []), key)
            if snowg_ms is not None:
                beam_ms = median_of(results.get(("beam", n), []), key)
                rows.append(Row(f"{metric}.n{n}", "ms", snowg_ms, beam_ms, False))
    top = sizes[-1]
    for metric, key in (("formation.idle_cpu", "cpu"), ("formation.idle_cpu_mapper", "mapper_cpu")):
        snowg_cpu = median_of(results.get(("snowg", top), []), key)
        if snowg_cpu is not None:
            rows.append(
                Row(f"{metric}.n{top}", "% of a core", snowg_cpu, median_of(results.get(("beam", top), []), key), False)
            )

    mapper = "snowg epmd" if args.snowg_mapper == "snowg" else "Erlang's epmd"
    print(f"machine: {os.cpu_count()} CPUs; {load_before} before, {machine_load()} after")
    print(
        f"N node processes started at once, median of {args.repeat} runs; snowg: --cluster local, mapper {mapper}; "
        f"BEAM: net_adm:world_list, Erlang's epmd; ratio = snowg / BEAM (target for formation.time: <= 2x)"
    )
    print_table(rows)
    for side in sides:
        for res in results.get((side.name, top), []):
            if res.get("changes") or res.get("short"):
                print(
                    f"{side.name} N={top}: {res['changes']:.0f} peer changes while idle, "
                    f"{res['short']:.0f} nodes short of {top - 1} peers at the end"
                )
    if beam_note:
        print(beam_note)
    for failure in failures:
        print(f"failed run: {failure.splitlines()[0]}")
    if args.json:
        write_json(rows, args.json)
    return 1 if failures or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
