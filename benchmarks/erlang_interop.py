"""Erlang interop: a snowg node and an Erlang node, beside two Erlang nodes in the same run.

Three node OS processes on this machine, over TCP and then over TLS
(``-proto_dist inet_tls``, certificates made by snowg):

* E, ``erl -name bench_echo@127.0.0.1``: an echo process and a service that
  starts counting processes (each counts N messages, then sends ``done``);
* D, ``erl -name bench_driver@127.0.0.1 -hidden``: the Erlang driver of the
  baseline, told what to run over its standard input;
* this process: a snowg node ``bench_py@127.0.0.1`` started with
  ``erlang=ErlangOptions(transport=...)`` (a hidden node to E, as D is).

Rows (ratio = snowg / Erlang; higher is better everywhere):
  erlang.pingpong.<tcp|tls>     round trips/s: snowg -> E's echo and back, against D -> E's echo
                                (target: ratio >= 0.7)
  erlang.oneway.<tcp|tls>       msgs/s: snowg sends N small messages ({tick, 1}) to a counting
                                process on E until it answers done, against D doing the same
                                (target: ratio >= 0.3)
  erlang.oneway_in.<tcp|tls>    msgs/s: D sends N to a counting process on snowg, against D to E
                                (what receiving costs snowg; no target)

Each round runs, in this order, the baseline and the snowg side of each row,
alternating; each figure is the median of ``--repeat`` rounds (default 5). The
snowg sender yields every 4096 messages, as ``benchmarks/cluster.py`` does (a
process sending over a connection with more than ``busy_limit`` queued is
suspended anyway). Both transports use a private Erlang ``epmd`` on a free port
(``ERL_EPMD_PORT``) and a private ``SNOWG_HOME``; every OS process started is
killed at the end, whatever happens. Needs ``erl`` and ``epmd`` on PATH (and
``erlang-ssl`` for TLS).

Usage: python benchmarks/erlang_interop.py [--pingpong N] [--oneway N] [--repeat K]
         [--transports tcp,tls] [--quick] [--json FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("GEVENT_RESOLVER", "block")  # a node dials addresses; no resolver thread pool

import argparse  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gevent  # noqa: E402

from _beam import HOST, Beam, compile_module, kill, otp_release, start_epmd, tls_dist_args  # noqa: E402
from _machine import machine_load  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

import snowg  # noqa: E402
import snowg.erlang  # noqa: E402
from snowg import Atom  # noqa: E402
from snowg.cluster import make_certs  # noqa: E402

ECHO = f"bench_echo@{HOST}"
DRIVER = f"bench_driver@{HOST}"
PY = f"bench_py@{HOST}"
#: The snowg sender yields this often (as benchmarks/cluster.py does).
YIELD_EVERY = 4096

#: The Erlang side, compiled (code in ``-eval`` is interpreted, many times slower): E runs
#: ``serve/0``, D runs ``drive/1``.
MODULE = """
-module(snowg_bench).
-export([serve/0, drive/1]).

%% E: an echo process, and a service that answers with the echo's pid or starts a counter.
serve() ->
    Echo = spawn(fun echo/0),
    register(echo, Echo),
    register(counters, spawn(fun() -> counters(Echo) end)),
    halt_at_eof().

echo() -> receive {From, Msg} -> From ! Msg, echo() end.

counters(Echo) ->
    receive
        {echo, From} -> From ! {echo, Echo};
        {new, From, N} -> From ! {counter, spawn(fun() -> count(From, N) end)}
    end,
    counters(Echo).

count(From, 0) -> From ! done;
count(From, K) -> receive _ -> count(From, K - 1) end.

%% D: reads commands ({pingpong, N}, {oneway, Node, N}, stop) and prints "result <per second>".
drive(EchoNode) ->
    {counters, EchoNode} ! {echo, self()},
    Echo = receive {echo, P} -> P end,
    io:format("ready~n"),
    drive_loop(Echo).

drive_loop(Echo) ->
    case io:read('') of
        {ok, {pingpong, N}} ->
            T0 = erlang:monotonic_time(nanosecond),
            ping(Echo, N),
            result(N, T0),
            drive_loop(Echo);
        {ok, {oneway, Node, N}} ->
            {counters, Node} ! {new, self(), N},
            C = receive {counter, P} -> P end,
            T0 = erlang:monotonic_time(nanosecond),
            send(C, N),
            receive done -> ok end,
            result(N, T0),
            drive_loop(Echo);
        _ ->
            halt()
    end.

ping(_, 0) -> ok;
ping(Echo, K) -> Echo ! {self(), K}, receive _ -> ping(Echo, K - 1) end.

send(_, 0) -> ok;
send(C, K) -> C ! {tick, 1}, send(C, K - 1).

result(N, T0) -> io:format("result ~f~n", [N / (erlang:monotonic_time(nanosecond) - T0) * 1.0e9]).

halt_at_eof() ->
    spawn(fun() -> io:get_line(""), halt() end),
    io:format("ready~n").
"""


def log(msg: str) -> None:
    print(f"[erlang_interop {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------- snowg side


def _counters() -> None:
    """Registered as counters: starts a counting process for whoever asks (as E's counters)."""
    while True:
        tag, sender, n = snowg.receive()
        if tag == "new":
            snowg.send(sender, (Atom("counter"), snowg.spawn(_count, sender, n)))


def _count(sender: snowg.Pid, n: int) -> None:
    receive = snowg.receive
    for _ in range(n):
        receive()
    snowg.send(sender, Atom("done"))


def snowg_pingpong(echo: snowg.Pid, n: int) -> float:
    me = snowg.self()
    send, receive = snowg.send, snowg.receive
    t0 = time.perf_counter()
    for i in range(n, 0, -1):
        send(echo, (me, i))
        receive()
    return n / (time.perf_counter() - t0)


def snowg_oneway(n: int) -> float:
    me = snowg.self()
    snowg.send(("counters", ECHO), (Atom("new"), me, n))
    _, counter = snowg.receive(lambda m: isinstance(m, tuple) and m[0] == "counter", timeout=30)
    send = snowg.send
    msg = (Atom("tick"), 1)
    t0 = time.perf_counter()
    for i in range(n):
        send(counter, msg)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            gevent.sleep(0)
    snowg.receive(lambda m: m == "done", timeout=300)
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------- a run


def run_transport(
    transport: str, args: argparse.Namespace, env: Dict[str, str], certs: str, cookie: str, ebin: str
) -> Dict[str, List[float]]:
    """Start E, the snowg node and D over ``transport``; the figures of every round."""
    dist_args = ["-setcookie", cookie]
    if transport == "tls":
        dist_args += tls_dist_args(certs, os.path.dirname(certs))
    figures: Dict[str, List[float]] = {}
    beams: List[Beam] = []
    try:
        # Both BEAM nodes first: a process forked from a running node logs that it is not that node.
        beams.append(Beam("snowg_bench:serve().", ebin, env, name=ECHO, dist_args=dist_args))
        driver = Beam(f"snowg_bench:drive('{ECHO}').", ebin, env, name=DRIVER, dist_args=dist_args, hidden=True)
        beams.append(driver)
        snowg.start_node(PY, cookie=cookie, tls=certs, erlang=snowg.erlang.ErlangOptions(transport=transport))
        if snowg.whereis("counters") is None:  # it outlives a stop_node, for the next transport
            snowg.register("counters", snowg.spawn(_counters))
        if not snowg.erlang.connect(ECHO, timeout=10):
            raise RuntimeError(f"the snowg node could not connect to {ECHO} over {transport}")
        snowg.send(("counters", ECHO), (Atom("echo"), snowg.self()))
        _, echo = snowg.receive(lambda m: isinstance(m, tuple) and m[0] == "echo", timeout=10)
        snowg_pingpong(echo, min(1000, args.pingpong))  # warm up both sides' code paths
        snowg_oneway(min(10000, args.oneway))
        for r in range(args.repeat):
            measured = {
                "pingpong.erlang": driver.command(f"{{pingpong, {args.pingpong}}}"),
                "pingpong.snowg": snowg_pingpong(echo, args.pingpong),
                "oneway.erlang": driver.command(f"{{oneway, '{ECHO}', {args.oneway}}}"),
                "oneway.snowg": snowg_oneway(args.oneway),
                "oneway_in.snowg": driver.command(f"{{oneway, '{PY}', {args.oneway}}}"),
            }
            for key, value in measured.items():
                figures.setdefault(key, []).append(value)
            log(f"{transport} round {r + 1}/{args.repeat}: " + ", ".join(f"{k} {v:,.0f}" for k, v in measured.items()))
    finally:
        snowg.stop_node()
        for beam in beams:
            beam.kill()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pingpong", type=int, default=10000, help="round trips per run (default 10,000)")
    ap.add_argument("--oneway", type=int, default=200000, help="messages per one-way run (default 200,000)")
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds, median kept (default 5)")
    ap.add_argument("--transports", default="tcp,tls", help="comma-separated: tcp, tls (default both)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: checks that it runs")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.quick:
        args.pingpong, args.oneway, args.repeat = 1000, 20000, 1
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if any(t not in ("tcp", "tls") for t in transports):
        ap.error("--transports: tcp and/or tls")
    for tool in ("erl", "erlc", "epmd"):
        if shutil.which(tool) is None:
            print(f"erlang_interop: {tool} not found on PATH; install Erlang/OTP (Debian: erlang-base erlang-ssl)")
            return 1

    load_before = machine_load()
    release = otp_release()
    workdir = tempfile.mkdtemp(prefix="snowg-erlang-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWG_")}
    env["SNOWG_HOME"] = os.path.join(workdir, "home")
    os.environ["SNOWG_HOME"] = env["SNOWG_HOME"]
    epmd = start_epmd(env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    certs = os.path.join(workdir, "certs")
    cookie = secrets.token_hex(16)
    results: Dict[str, Dict[str, List[float]]] = {}
    try:
        make_certs(certs)
        compile_module(workdir, "snowg_bench", MODULE)
        for transport in transports:
            log(f"{transport}: starting {ECHO}, {PY} and {DRIVER}")
            results[transport] = run_transport(transport, args, env, certs, cookie, workdir)
    finally:
        kill(epmd)
        shutil.rmtree(workdir, ignore_errors=True)

    def median(transport: str, key: str) -> Optional[float]:
        values = results.get(transport, {}).get(key)
        return statistics.median(values) if values else None

    rows: List[Row] = []
    for transport in transports:
        for metric, unit, snowg_key, base_key in (
            ("pingpong", "round_trips/s", "pingpong.snowg", "pingpong.erlang"),
            ("oneway", "msgs/s", "oneway.snowg", "oneway.erlang"),
            ("oneway_in", "msgs/s", "oneway_in.snowg", "oneway.erlang"),
        ):
            value = median(transport, snowg_key)
            if value is not None:
                rows.append(Row(f"erlang.{metric}.{transport}", unit, value, median(transport, base_key), True))
    print(f"machine: {os.cpu_count()} CPUs; {load_before} before, {machine_load()} after")
    print(
        f"Erlang/OTP {release}; snowg node <-> erl node, beside erl <-> erl (the baseline), median of {args.repeat} "
        f"alternating rounds; {args.pingpong:,} round trips, {args.oneway:,} one-way messages per run; "
        f"targets: pingpong >= 0.7x, oneway >= 0.3x"
    )
    print_table(rows)
    # Each round's own ratio: round trips are latency-bound, and a busy machine moves both sides at once.
    for transport in transports:
        figures = results.get(transport, {})
        for metric, snowg_key, base_key in (
            ("pingpong", "pingpong.snowg", "pingpong.erlang"),
            ("oneway", "oneway.snowg", "oneway.erlang"),
        ):
            pairs = zip(figures.get(snowg_key, []), figures.get(base_key, []))
            ratios = [f"{a / b:.2f}" for a, b in pairs if b]
            if ratios:
                print(f"erlang.{metric}.{transport}, each round's ratio: {' '.join(ratios)}")
    if args.json:
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
