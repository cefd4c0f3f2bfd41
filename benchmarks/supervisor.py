"""Supervisor restart latency, beside the BEAM's supervisor in the same run.

Rows (ratio = snowg / baseline; lower is better everywhere):

* ``supervisor.restart.{plain,genserver}.{log_off,log_on}.{realistic,large}.{mean,p50,p99}``
  µs, baseline **the BEAM** (Erlang/OTP's ``supervisor`` in ``erl +S 1``, one
  scheduler as snowg has one thread, measured in the same
  run, alternating with snowg, when ``erl`` and ``erlc`` are installed; "not
  installed, skipped" otherwise): from the crash of a child until its
  replacement runs, under a ``one_for_one`` supervisor. The measuring process
  sends the child a message that makes it exit with reason ``crash`` (a plain
  child) or casts it a request whose handler returns ``{stop, crash, State}``
  (a GenServer child), and stops the clock when the replacement's first
  message (``{up, Pid}``, sent by the plain child's body or by the
  GenServer's ``init``) reaches it. A GenServer child counts as running once
  its ``init`` returned (the supervisor starts it synchronously, on both
  sides). The plain child of the BEAM is a process its start function
  ``spawn_link``s (no ``proc_lib``, so no crash report: snowg's plain child
  logs nothing either); its GenServer child is a ``gen_server``.

  - ``realistic``: ``intensity=5, period=30``; each supervisor takes 5
    restarts (its window holds 0 to 4 earlier ones), then it is stopped and a
    new one started (not timed): N restarts over N/5 supervisors.
  - ``large``: ``intensity=N+10, period=3600``; one supervisor takes all N
    restarts (its window grows to N, about 1,000).
  - ``log_on``: each side's default reports, at each side's default level,
    going to its default kind of output. snowg: the ``snowg`` logger with a
    handler that formats every record (time, level, name, message) to
    ``/dev/null``; reports: the supervisor's ``child_terminated`` and, for a
    GenServer, its ``terminating`` report. The BEAM: OTP's default logger
    (primary level ``notice``) with its default handler writing to standard
    output, a pipe this script reads line by line while the BEAM runs (so it
    never fills); reports: the supervisor's ``child_terminated`` and, for a
    ``gen_server``, its terminate error and ``proc_lib``'s crash report.
    Before the BEAM reports its figures, ``logger_std_h:filesync(default)``
    waits until its handler has written everything. OTP's default handler
    writes at most 500 events a second (its burst limit) and drops the rest:
    the script counts the ``child_terminated`` reports it read and prints
    the count under the table (snowg writes every report).
  - ``log_off``: reports filtered out: the ``snowg`` logger disabled; the
    BEAM's ``logger:set_primary_config(level, none)``.
  - Every row pools ``--rounds`` rounds (default 3) of ``--restarts``
    restarts (default 1,000), so each side's mean, p50 and p99 is taken over
    rounds × restarts samples (3,000 by default). In each round and for each
    row, the BEAM runs first, then snowg; 50 restarts of each row warm both
    up first.

* ``supervisor.restart.by_hand.log_off.{realistic,large}.{mean,p50,p99}`` µs,
  baseline the BEAM: the floor under a restart, on both sides. The same
  plain child and the same cycle, but no supervisor: a plain process that
  traps exits spawn_links the child and, on each ``Exit`` (``'EXIT'``),
  spawn_links a new one. ``realistic``: a new such process every 5
  restarts (killed, not timed); ``large``: one for all N. What a
  supervisor's restart costs beyond this is its own bookkeeping (the
  restart window, the child's record, reports), and the difference
  between the two rows shows it.

* ``supervisor.remote_restart.{log_on,log_off}.{mean,p50,p99}`` µs: the
  supervisor runs here (node A), its child on node B, a separate OS process
  started with ``snowg.testing`` (TLS, tick 1 s); from the message that makes
  the child on B crash until the restarted child, again on B, has sent its
  first message to A, over N (default 500) restarts. Baseline: the same cycle
  done by hand by a plain process of A that traps exits and, on the child's
  ``Exit``, spawn_links a new one on B (the floor the distribution layer
  allows); ratio = supervisor / by hand.

Usage: ``python benchmarks/supervisor.py [--restarts N] [--rounds K] [--remote-restarts N]
[--no-remote] [--no-beam] [--beam-no-burst-limit] [--quick] [--json FILE]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GEVENT_RESOLVER", "block")  # the remote rows dial addresses; no resolver thread pool

import argparse  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402

import snowg  # noqa: E402
from snowg import ChildSpec, GenServer, supervisor  # noqa: E402

from _beam import Beam, compile_module, missing_tools, otp_release  # noqa: E402
from _machine import machine_load  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

log = logging.getLogger("snowg")

#: --beam-no-burst-limit: the BEAM's handler writes every report (not OTP's default).
UNLIMITED_BEAM_LOG = False

#: The two intensities: label -> (intensity, period, restarts per supervisor); None: from N.
REALISTIC = (5, 30, 5)

# ------------------------------------------------------------ restart latency


def plain_child(rec: Any) -> None:
    snowg.send(rec, ("up", snowg.self()))
    snowg.receive()
    snowg.exit("crash")


class CrashServer(GenServer):
    def init(self, rec: Any) -> Any:
        snowg.send(rec, ("up", snowg.self()))
        return None

    def handle_cast(self, request: Any, state: Any) -> Tuple[str, str, Any]:
        return ("stop", "crash", state)


def _cycles(kind: str, child: Any, n: int, out: List[float]) -> None:
    """Crash ``child`` (and each replacement) ``n`` times; append each cycle's µs to ``out``."""
    perf = time.perf_counter
    receive = snowg.receive
    crash = snowg.send if kind == "plain" else snowg.cast
    # One guard for the whole loop, not a timer per receive (the BEAM's receive has none either).
    with gevent.Timeout(60 + n / 100, RuntimeError(f"{n} restarts did not complete in time")):
        for _ in range(n):
            t0 = perf()
            crash(child, "crash")
            _up, child = receive()
            out.append((perf() - t0) * 1e6)


def _respawner(rec: Any) -> None:
    """The ``by_hand`` row's restarter: a trapping process that spawn_links a new plain child on each ``Exit``."""
    snowg.trap_exit(True)
    snowg.spawn_link(plain_child, rec)
    receive = snowg.receive
    while True:
        if type(receive()) is snowg.Exit:
            snowg.spawn_link(plain_child, rec)


def respawn_by_hand_latency(n: int, per_restarter: int) -> List[float]:
    """Latencies in µs of ``n`` crash -> respawned-and-running cycles, no supervisor (the ``by_hand`` row)."""
    me = snowg.self()
    out: List[float] = []
    while len(out) < n:
        restarter = snowg.spawn(_respawner, me)
        _up, child = snowg.receive(timeout=5)
        _cycles("plain", child, min(per_restarter, n - len(out)), out)
        ref = snowg.monitor(restarter)
        snowg.exit(restarter, "kill")
        snowg.receive(_down_of(ref), 10)
    return out


def restart_latency(kind: str, n: int, intensity: int, period: float, per_sup: int) -> List[float]:
    """Latencies in µs of ``n`` crash -> restarted-and-running cycles, ``per_sup`` per supervisor."""
    if kind == "by_hand":
        return respawn_by_hand_latency(n, per_sup)
    me = snowg.self()
    fn = plain_child if kind == "plain" else CrashServer
    out: List[float] = []
    while len(out) < n:
        sup = supervisor.start_link([ChildSpec("c", (fn, (me,)))], intensity=intensity, period=period)
        _up, child = snowg.receive(timeout=5)
        _cycles(kind, child, min(per_sup, n - len(out)), out)
        snowg.unlink(sup)
        ref = snowg.monitor(sup)
        snowg.exit(sup, "shutdown")
        snowg.receive(_down_of(ref), 10)
    return out


def _down_of(ref: snowg.Ref) -> Callable[[Any], bool]:
    """A match for the ``Down`` of the monitor ``ref``."""
    return lambda m: type(m) is snowg.Down and m.ref == ref


def stats(xs: List[float]) -> Dict[str, float]:
    s = sorted(xs)
    return {
        "mean": statistics.fmean(s),
        "p50": s[len(s) // 2],
        "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
    }


def with_logging(on: bool) -> None:
    for h in list(log.handlers):
        if getattr(h, "_bench", False):
            log.removeHandler(h)
    if on:
        h = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        h._bench = True  # type: ignore[attr-defined]
        log.addHandler(h)
        log.propagate = False
        log.disabled = False
    else:
        log.disabled = True


# ------------------------------------------------------------------ the BEAM

#: The BEAM's side, compiled (``-eval`` code is interpreted): ``main/0`` reads
#: ``{run, Kind, Log, Intensity, Period, PerSup, N}`` commands on stdin and
#: prints ``result`` and the N latencies in ns, in the order measured.
BEAM_SUP = """
-module(snowg_sup_bench).
-behaviour(supervisor).
-export([main/0, init/1, plain_start/1]).

main() ->
    io:format("ready~n"),
    loop().

loop() ->
    case io:read('') of
        {ok, {run, Kind, Log, Intensity, Period, PerSup, N}} ->
            set_log(Log),
            Samples = lists:reverse(run(Kind, Intensity, Period, PerSup, N, [])),
            Log =/= off andalso logger_std_h:filesync(default),
            set_log(on),
            io:format("result ~s~n", [lists:join(" ", [integer_to_list(S) || S <- Samples])]),
            loop();
        _ ->
            halt()
    end.

set_log(on) ->  % OTP's defaults
    ok = logger:update_handler_config(default, config, #{burst_limit_enable => true}),
    logger:set_primary_config(level, notice);
set_log(unlimited) ->  % every report written (--beam-no-burst-limit)
    ok = logger:update_handler_config(default, config, #{burst_limit_enable => false}),
    logger:set_primary_config(level, notice);
set_log(off) ->
    logger:set_primary_config(level, none).

run(_Kind, _I, _P, _PerSup, 0, Acc) ->
    Acc;
run(by_hand, _I, _P, PerSup, N, Acc) ->  % no supervisor: a trapping process re-spawns the child
    K = min(PerSup, N),
    Me = self(),
    R = spawn(fun() -> process_flag(trap_exit, true), spawn_link(fun() -> plain(Me) end), respawn(Me) end),
    C = receive {up, C0} -> C0 end,
    Acc1 = cycles(plain, C, K, Acc),
    Ref = monitor(process, R),
    exit(R, kill),
    receive {'DOWN', Ref, process, _, _} -> ok end,
    run(by_hand, _I, _P, PerSup, N - K, Acc1);
run(Kind, I, P, PerSup, N, Acc) ->
    K = min(PerSup, N),
    {ok, Sup} = supervisor:start_link(?MODULE, {Kind, self(), I, P}),
    C = receive {up, C0} -> C0 end,
    Acc1 = cycles(Kind, C, K, Acc),
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, _, _} -> ok end,
    run(Kind, I, P, PerSup, N - K, Acc1).

cycles(_Kind, _C, 0, Acc) ->
    Acc;
cycles(Kind, C, K, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    crash(Kind, C),
    receive
        {up, C1} ->
            T1 = erlang:monotonic_time(nanosecond),
            cycles(Kind, C1, K - 1, [T1 - T0 | Acc])
    end.

crash(plain, C) -> C ! crash;
crash(genserver, C) -> gen_server:cast(C, crash).

init({Kind, Rec, I, P}) ->
    Start = case Kind of
        plain -> {?MODULE, plain_start, [Rec]};
        genserver -> {snowg_sup_bench_gs, start_link, [Rec]}
    end,
    {ok, {#{strategy => one_for_one, intensity => I, period => P}, [#{id => c, start => Start}]}}.

respawn(Rec) ->
    receive {'EXIT', _, _} -> spawn_link(fun() -> plain(Rec) end) end,
    respawn(Rec).

plain_start(Rec) ->
    {ok, spawn_link(fun() -> plain(Rec) end)}.

plain(Rec) ->
    Rec ! {up, self()},
    receive _ -> exit(crash) end.
"""

BEAM_GS = """
-module(snowg_sup_bench_gs).
-behaviour(gen_server).
-export([start_link/1, init/1, handle_call/3, handle_cast/2]).

start_link(Rec) -> gen_server:start_link(?MODULE, Rec, []).

init(Rec) ->
    Rec ! {up, self()},
    {ok, Rec}.

handle_call(_Request, _From, State) -> {reply, ok, State}.

handle_cast(crash, State) -> {stop, crash, State}.
"""


def start_beam(workdir: str) -> Beam:
    compile_module(workdir, "snowg_sup_bench", BEAM_SUP)
    compile_module(workdir, "snowg_sup_bench_gs", BEAM_GS)
    # One scheduler, as snowg runs on one thread (and as local.py's and gen_server.py's BEAM).
    return Beam("snowg_sup_bench:main().", workdir, dist_args=["+S", "1"])


def beam_restart_latency(
    beam: Beam, kind: str, log_on: bool, n: int, intensity: int, period: float, per_sup: int
) -> Tuple[List[float], int]:
    """The BEAM's latencies in µs (see :func:`restart_latency`) and the ``child_terminated`` reports it wrote.

    Its standard output is read line by line while it runs (its reports go
    there, and a full pipe would block its logger).
    """
    mode = ("unlimited" if UNLIMITED_BEAM_LOG else "on") if log_on else "off"
    beam.send(f"{{run, {kind}, {mode}, {intensity}, {int(period)}, {per_sup}, {n}}}")
    stdout = beam.proc.stdout
    assert stdout is not None
    reports = 0
    with gevent.Timeout(600, RuntimeError("erl: no result within 600 s")):
        while True:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"erl ended (exit status {beam.proc.poll()})")
            if line.startswith("result"):
                break
            if "child_terminated" in line:
                reports += 1
    out = [int(x) / 1000.0 for x in line[len("result") :].split()]
    assert len(out) == n, (len(out), n)
    return out, reports


# ----------------------------------------------------- remote restart latency


# Named explicitly: this file runs as __main__ here and is imported as
# "supervisor" by the peer node, and both must name the child the same way.
@snowg.spawnable("bench.supervisor.remote_child")
def remote_child(rec: Any) -> None:
    snowg.send(rec, ("up", snowg.self()))
    snowg.receive()
    snowg.exit("crash")


def start_peer() -> Any:
    """Node B as its own OS process, importing this module; returns (factory, peer)."""
    from snowg.testing import ClusterConfig, PeerFactory, start_test_node

    config = ClusterConfig()
    start_test_node(config)
    factory = PeerFactory(config)
    peer = factory.start(modules=[os.path.splitext(os.path.basename(__file__))[0]])
    return factory, peer


def _time_crash_cycles(child: Any, node: str, n: int) -> List[float]:
    """Crash the remote child ``n`` times; µs from each crash to its successor reporting in (on ``node``)."""
    out = []
    perf = time.perf_counter
    send, receive = snowg.send, snowg.receive
    for _ in range(n):
        t0 = perf()
        send(child, "crash")
        _up, child = receive(None, 10)
        assert child.node == node
        out.append((perf() - t0) * 1e6)
    return out


def remote_restart_latency(node: str, n: int) -> List[float]:
    """Latencies in µs of ``n`` crash-on-B -> restarted-on-B-and-running cycles (supervisor on A)."""
    me = snowg.self()
    sup = supervisor.start([ChildSpec("c", (remote_child, (me,)), node=node)], intensity=n + 10, period=3600)
    _up, child = snowg.receive(timeout=10)
    out = _time_crash_cycles(child, node, n)
    ref = snowg.monitor(sup)
    snowg.exit(sup, "kill")
    snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, 10)
    return out


def _manual_restarter(rec: Any, node: str) -> None:
    snowg.trap_exit(True)
    snowg.spawn_link(remote_child, rec, node=node)
    while True:
        m = snowg.receive()
        if type(m) is snowg.Exit:
            snowg.spawn_link(remote_child, rec, node=node)


def manual_remote_restart_latency(node: str, n: int) -> List[float]:
    """The baseline: the same cycle, restarted by a plain trapping process."""
    me = snowg.self()
    r = snowg.spawn(_manual_restarter, me, node)
    _up, child = snowg.receive(timeout=10)
    out = _time_crash_cycles(child, node, n)
    snowg.exit(r, "kill")
    return out


# ------------------------------------------------------------------- main


def _shapes(n: int) -> List[Tuple[str, int, float, int]]:
    """(label, intensity, period, restarts per supervisor) of the two intensities."""
    i, p, per = REALISTIC
    return [("realistic", i, p, per), ("large", n + 10, 3600, n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=1000, help="restarts per row and round (default 1,000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, samples pooled (default 3)")
    ap.add_argument("--remote-restarts", type=int, default=500)
    ap.add_argument("--no-remote", action="store_true", help="skip the remote rows (no peer node)")
    ap.add_argument("--no-beam", action="store_true", help="skip the BEAM even when installed")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: checks that it runs")
    ap.add_argument(
        "--beam-no-burst-limit",
        action="store_true",
        help="log_on: the BEAM's handler writes every report (OTP's default drops beyond 500 a second)",
    )
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.quick:
        args.restarts, args.rounds, args.remote_restarts = 100, 1, 50
    global UNLIMITED_BEAM_LOG
    UNLIMITED_BEAM_LOG = args.beam_no_burst_limit

    load_before = machine_load()
    missing = [] if args.no_beam else missing_tools(("erl", "erlc"))
    beam: Optional[Beam] = None
    workdir = tempfile.mkdtemp(prefix="snowg-sup-bench-")
    release = "-"
    if args.no_beam:
        print("BEAM: --no-beam, skipped")
    elif missing:
        print(f"BEAM: not installed ({', '.join(missing)} not on PATH), skipped")
    else:
        release = otp_release()
        beam = start_beam(workdir)

    configs = [
        (kind, log_on, shape)
        for log_on in (False, True)
        for kind in ("plain", "genserver")
        for shape in _shapes(args.restarts)
    ] + [("by_hand", False, shape) for shape in _shapes(args.restarts)]
    samples: Dict[Tuple[str, bool, str], Dict[str, List[float]]] = {}
    mean_ratios: Dict[Tuple[str, bool, str], List[float]] = {}
    beam_reports: Dict[Tuple[str, bool, str], int] = {}
    try:
        for kind, log_on, (_label, intensity, period, per_sup) in configs:  # warm-up
            with_logging(log_on)
            restart_latency(kind, 50, intensity, period, min(per_sup, 50))
            if beam is not None:
                beam_restart_latency(beam, kind, log_on, 50, intensity, period, min(per_sup, 50))
        for r in range(args.rounds):
            for kind, log_on, (label, intensity, period, per_sup) in configs:
                key = (kind, log_on, label)
                got = samples.setdefault(key, {"snowg": [], "beam": []})
                b: List[float] = []
                if beam is not None:
                    b, seen = beam_restart_latency(beam, kind, log_on, args.restarts, intensity, period, per_sup)
                    got["beam"].extend(b)
                    beam_reports[key] = beam_reports.get(key, 0) + seen
                with_logging(log_on)
                s = restart_latency(kind, args.restarts, intensity, period, per_sup)
                got["snowg"].extend(s)
                if b:
                    mean_ratios.setdefault(key, []).append(statistics.fmean(s) / statistics.fmean(b))
            print(f"[supervisor] round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        if beam is not None:
            beam.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    rows: List[Row] = []
    for kind, log_on, (label, _i, _p, _per) in configs:
        key = (kind, log_on, label)
        st = stats(samples[key]["snowg"])
        bt = stats(samples[key]["beam"]) if samples[key]["beam"] else None
        mode = "log_on" if log_on else "log_off"
        for k, v in st.items():
            rows.append(Row(f"supervisor.restart.{kind}.{mode}.{label}.{k}", "us", v, bt[k] if bt else None, False))

    if not args.no_remote:
        factory, peer = start_peer()
        try:
            for log_on in (True, False):
                with_logging(log_on)
                remote_restart_latency(peer.name, 50)  # warm-up
                manual_remote_restart_latency(peer.name, 50)
                st = stats(remote_restart_latency(peer.name, args.remote_restarts))
                base = stats(manual_remote_restart_latency(peer.name, args.remote_restarts))
                mode = "log_on" if log_on else "log_off"
                for k, v in st.items():
                    rows.append(Row(f"supervisor.remote_restart.{mode}.{k}", "us", v, base[k], False))
        finally:
            factory.stop_all()
            snowg.stop_node()
    with_logging(True)

    n = args.rounds * args.restarts
    print(f"machine: {os.cpu_count()} CPUs; {load_before} before, {machine_load()} after")
    print(
        f"ratio = snowg / baseline (lower is better). supervisor.restart.*: baseline = the BEAM "
        f"(Erlang/OTP {release}, erl +S 1, one_for_one supervisor, same child kind, same logging: log_on = its default "
        f"logger{' with the burst limit off' if UNLIMITED_BEAM_LOG else ''}), "
        f"{n:,} samples per side and row ({args.rounds} alternating rounds x {args.restarts:,}); "
        f"realistic = intensity {REALISTIC[0]}, period {REALISTIC[1]} s, {REALISTIC[2]} restarts per supervisor; "
        f"large = intensity {args.restarts + 10}, period 3600 s, one supervisor per round; "
        "by_hand = no supervisor on either side: a trapping process re-spawns the plain child on its exit "
        "(a new one every 5 restarts / one per round). "
        "supervisor.remote_restart.*: baseline = the same cycle restarted by hand by a trapping process."
    )
    print_table(rows)
    for key, ratios in mean_ratios.items():
        kind, log_on, label = key
        mode = "log_on" if log_on else "log_off"
        print(
            f"supervisor.restart.{kind}.{mode}.{label}.mean, each round's ratio: {' '.join(f'{x:.2f}' for x in ratios)}"
        )
    if beam_reports:
        print(
            "BEAM child_terminated reports read from its standard output, of one per restart (log_on; "
            + (
                "burst limit off, --beam-no-burst-limit; its overload protection drops beyond a queue of 200): "
                if UNLIMITED_BEAM_LOG
                else "OTP's default handler drops what exceeds 500 events a second): "
            )
            + ", ".join(
                f"{kind}/{label} {seen:,} of {n if log_on else 0:,}"
                for (kind, log_on, label), seen in beam_reports.items()
                if log_on
            )
        )
    if args.json:
        write_json(rows, args.json)
    off = [
        r
        for r in rows
        if r.metric.startswith("supervisor.restart.")
        and ".log_off." in r.metric
        and r.metric.endswith(".mean")
        and ".by_hand." not in r.metric  # the floor, not a target
    ]
    on = [
        r
        for r in rows
        if r.metric.startswith("supervisor.restart.") and ".log_on." in r.metric and r.metric.endswith(".mean")
    ]
    if beam is not None or any(r.ratio is not None for r in off):
        print(
            "\ntargets (means): log_off <= 2.5x the BEAM: "
            + ", ".join(f"{r.metric.split('.')[2]}/{r.metric.split('.')[4]} {r.ratio:.2f}x" for r in off if r.ratio)
            + "; log_on < 1.0x: "
            + ", ".join(f"{r.metric.split('.')[2]}/{r.metric.split('.')[4]} {r.ratio:.2f}x" for r in on if r.ratio)
        )
        floor = [r for r in rows if ".by_hand." in r.metric and r.metric.endswith(".mean") and r.ratio]
        if floor:
            print(
                "the floor, no supervisor on either side (by_hand): "
                + ", ".join(f"{r.metric.split('.')[4]} {r.ratio:.2f}x" for r in floor)
            )


if __name__ == "__main__":
    main()
