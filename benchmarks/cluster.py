"""Distribution benchmarks: two snowg node OS processes over TLS, beside two BEAM nodes over ``inet_tls``.

Everything runs in the same run, alternating: two snowg nodes (this process and
a peer started with ``snowg.testing``) over snowg's TLS, two ``erl`` nodes
(``-proto_dist inet_tls`` with the same certificates, a private ``epmd``) and a
raw TLS + msgpack connection between two Python processes.

Rows (ratio = snowg / baseline; the baseline of each row is named):
  dist.pingpong.beam_tls    round trips/s, snowg -> an echo process on the peer and back, against the
                            same between two erl nodes over inet_tls (higher is better)
  dist.pingpong.raw         the same snowg figure against raw TLS + msgpack ping-pong between two
                            Python processes (gevent sockets, one frame per sendall)
  dist.oneway.beam_tls      msgs/s: N small messages (("tick", 1) / {tick, 1}) to a counting process
                            on the peer, which answers done after N; against the same between two
                            erl nodes over inet_tls (higher is better)
  dist.oneway.raw           the same snowg figure against raw TLS + msgpack, 256 frames per sendall
  dist.spawn_link_latency.{mean,p50,p99}
                            µs (lower is better) from a remote spawn_link until the child's message is
                            back AND its exit has arrived (the caller traps exits and waits for the
                            child's Exit / {'EXIT', Pid, normal}); against the same on the BEAM
                            (spawn_link(Node, M, F, A)). Each round takes --spawns samples per side
                            (default 2,000); the row is the median over rounds of each round's figure.
  dist.rpc_call.beam_tls    sequential rpc.call of a trivial function (add(1, 2)) on the peer,
                            calls/s, against erpc:call of the same between two erl nodes (higher is
                            better)

Each of ``--repeat`` rounds (default 5) runs every measurement, alternating
the baseline and snowg; every row is the median over the rounds. The snowg
sender of the one-way row yields every 4096 messages (a process sending over
a connection with more than ``busy_limit`` queued is suspended anyway). When
``erl`` / ``erlc`` / ``epmd`` are not on PATH the BEAM is not installed: its
rows are printed without a baseline ("not installed, skipped").

Usage: python benchmarks/cluster.py [--pingpong N] [--oneway N] [--spawns N] [--rpcs N]
         [--repeat K] [--no-beam] [--no-raw] [--only LIST] [--quick] [--json FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("GEVENT_RESOLVER", "block")  # a node dials addresses; no resolver thread pool

import argparse  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Sequence  # noqa: E402

import gevent  # noqa: E402
import msgpack  # noqa: E402
from gevent import socket as gsocket  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _table import Row, print_table, write_json  # noqa: E402

import snowg  # noqa: E402
from snowg import cluster as tls  # noqa: E402

_LEN = struct.Struct(">I")
HOST = "127.0.0.1"
BEAM_A = f"snowg_dist_a@{HOST}"
BEAM_B = f"snowg_dist_b@{HOST}"
#: The one-way sender yields this often (as benchmarks/erlang_interop.py does).
YIELD_EVERY = 4096
MEASUREMENTS = ("pingpong", "oneway", "spawn", "rpc")

#: The BEAM side, compiled (code given to -eval is interpreted). B runs serve/0, A runs drive/1 and
#: reads commands from its standard input; results are printed as "result ..." lines.
MODULE = r"""
-module(snowg_dist_bench).
-export([serve/0, drive/1, hello/1, add/2]).

%% B: an echo process and a service that starts counting processes.
serve() ->
    register(echo, spawn(fun echo/0)),
    register(counters, spawn(fun counters/0)),
    spawn(fun() -> io:get_line(""), halt() end),
    io:format("ready~n").

echo() -> receive {From, Msg} -> From ! Msg, echo() end.

counters() ->
    receive {new, From, N} -> From ! {counter, spawn(fun() -> count(From, N) end)} end,
    counters().

count(From, 0) -> From ! done;
count(From, K) -> receive _ -> count(From, K - 1) end.

hello(Parent) -> Parent ! running.

add(A, B) -> A + B.

%% A: the driver.
drive(Node) ->
    Echo = erpc:call(Node, erlang, whereis, [echo]),
    process_flag(trap_exit, true),
    io:format("ready~n"),
    loop(Node, Echo).

loop(Node, Echo) ->
    case io:read('') of
        {ok, {pingpong, N}} ->
            T0 = now_ns(),
            ping(Echo, N),
            rate(N, T0);
        {ok, {oneway, N}} ->
            {counters, Node} ! {new, self(), N},
            C = receive {counter, P} -> P end,
            T0 = now_ns(),
            send(C, N),
            receive done -> ok end,
            rate(N, T0);
        {ok, {spawn_link, N}} ->
            Samples = spawns(Node, N, []),
            io:format("result~s~n", [[io_lib:format(" ~.3f", [S / 1000]) || S <- Samples]]);
        {ok, {rpc, N}} ->
            T0 = now_ns(),
            rpcs(Node, N),
            rate(N, T0);
        _ ->
            halt()
    end,
    loop(Node, Echo).

now_ns() -> erlang:monotonic_time(nanosecond).

rate(N, T0) -> io:format("result ~f~n", [N / (now_ns() - T0) * 1.0e9]).

ping(_, 0) -> ok;
ping(Echo, K) -> Echo ! {self(), K}, receive _ -> ping(Echo, K - 1) end.

send(_, 0) -> ok;
send(C, K) -> C ! {tick, 1}, send(C, K - 1).

spawns(_, 0, Acc) -> Acc;
spawns(Node, K, Acc) ->
    T0 = now_ns(),
    P = spawn_link(Node, ?MODULE, hello, [self()]),
    receive running -> ok end,
    receive {'EXIT', P, normal} -> ok end,
    spawns(Node, K - 1, [now_ns() - T0 | Acc]).

rpcs(_, 0) -> ok;
rpcs(Node, K) -> 3 = erpc:call(Node, ?MODULE, add, [1, 2]), rpcs(Node, K - 1).
"""


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..1) of ``samples``: the same rule for both sides."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def latency_stats(samples: Sequence[float]) -> Dict[str, float]:
    return {"mean": statistics.fmean(samples), "p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99)}


# ----------------------------------------------------------- snowg side


@snowg.spawnable("bench.echo")
def echo() -> None:
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        snowg.send(msg[0], msg[1])


@snowg.spawnable("bench.counter")
def counter(reply_to: snowg.Pid, n: int) -> None:
    receive = snowg.receive
    for _ in range(n):
        receive()
    snowg.send(reply_to, "done")


@snowg.spawnable("bench.hello")
def hello(parent: snowg.Pid) -> None:
    snowg.send(parent, "running")


@snowg.spawnable("bench.add")
def add(a: int, b: int) -> int:
    return a + b


def snowg_pingpong(peer: str, n: int) -> float:
    pid = snowg.spawn("bench.echo", node=peer)
    me = snowg.self()
    send, receive = snowg.send, snowg.receive
    send(pid, (me, -1))
    receive()
    t0 = time.perf_counter()
    for i in range(n):
        send(pid, (me, i))
        receive()
    dt = time.perf_counter() - t0
    send(pid, "stop")
    return n / dt


def snowg_oneway(peer: str, n: int) -> float:
    me = snowg.self()
    pid = snowg.spawn("bench.counter", me, n, node=peer)
    send = snowg.send
    t0 = time.perf_counter()
    msg = ("tick", 1)
    for i in range(n):
        send(pid, msg)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            gevent.sleep(0)  # let the writer run, as any real sender yields now and then
    snowg.receive(_is_done)
    return n / (time.perf_counter() - t0)


def _is_done(m: object) -> bool:
    return m == "done"


def _is_running(m: object) -> bool:
    return m == "running"


def snowg_spawn_link(peer: str, n: int) -> List[float]:
    """µs per sample of: remote spawn_link -> the child's message is back -> its exit has arrived.

    The caller traps exits and waits for each child's ``Exit`` message, as the
    BEAM driver waits for ``{'EXIT', Pid, normal}``: the child has then ended
    and its link is gone on both sides.
    """
    me = snowg.self()
    was_trapping = snowg.trap_exit(True)
    receive, spawn_link, clock = snowg.receive, snowg.spawn_link, time.perf_counter
    samples = []
    try:
        for _ in range(n):
            t0 = clock()
            pid = spawn_link("bench.hello", me, node=peer)
            receive(_is_running)
            receive(lambda m, pid=pid: isinstance(m, snowg.Exit) and m.pid == pid)
            samples.append((clock() - t0) * 1e6)
    finally:
        snowg.trap_exit(was_trapping)
    return samples


def snowg_rpc(peer: str, n: int) -> float:
    """Sequential rpc.call round trips per second (bench.add on the peer)."""
    call = snowg.rpc.call
    assert call(peer, "bench.add", 1, 2) == 3
    t0 = time.perf_counter()
    for _ in range(n):
        call(peer, "bench.add", 1, 2)
    return n / (time.perf_counter() - t0)


# ------------------------------------------------------- raw TLS baseline


def _frame(obj: object) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(body)) + body


def _read_frames(sock, buf: bytearray):
    """Yield frames from sock, keeping leftovers in buf."""
    while True:
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf, 0)
            if len(buf) < 4 + n:
                break
            body = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            yield msgpack.unpackb(body, raw=False)
        data = sock.recv(262144)
        if not data:
            return
        buf += data


def raw_server(certs: str) -> None:
    """Subprocess: a TLS + msgpack echo/count server on one connection."""
    cfg = tls.load_tls(certs, "bench@127.0.0.1", default_dir=None)
    ctx = tls.server_context(cfg)
    lsock = gsocket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    print(lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    conn.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(conn, server_side=True)
    count = 0
    target = None
    for frame in _read_frames(sock, bytearray()):
        kind = frame[0]
        if kind == "ping":
            sock.sendall(_frame(["pong", frame[1]]))
        elif kind == "count":
            target, count = frame[1], 0
        elif kind == "msg":
            count += 1
            if count == target:
                sock.sendall(_frame(["done"]))
        elif kind == "stop":
            return


def raw_baseline(certs: str, pings: int, oneway: int) -> tuple:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--raw-server", certs], stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        cfg = tls.load_tls(certs, "bench@127.0.0.1", default_dir=None)
        ctx = tls.client_context(cfg)
        raw = gsocket.create_connection(("127.0.0.1", port))
        raw.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        sock = ctx.wrap_socket(raw)
        frames = _read_frames(sock, bytearray())
        sock.sendall(_frame(["ping", -1]))
        next(frames)
        t0 = time.perf_counter()
        for i in range(pings):
            sock.sendall(_frame(["ping", i]))
            next(frames)
        pingpong = pings / (time.perf_counter() - t0)
        sock.sendall(_frame(["count", oneway]))
        t0 = time.perf_counter()
        batch = []
        for _ in range(oneway):
            batch.append(_frame(["msg", ["tick", 1]]))
            if len(batch) == 256:
                sock.sendall(b"".join(batch))
                batch = []
        if batch:
            sock.sendall(b"".join(batch))
        next(frames)
        one = oneway / (time.perf_counter() - t0)
        sock.sendall(_frame(["stop"]))
        sock.close()
        return pingpong, one
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------ BEAM side


class BeamPair:
    """Two erl nodes over inet_tls (B serves, A drives), a private epmd; everything killed by close()."""

    def __init__(self, certs: str, workdir: str) -> None:
        from _beam import Beam, compile_module, start_epmd, tls_dist_args

        env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWG_")}
        self.epmd = start_epmd(env)
        self.beams: List = []
        try:
            compile_module(workdir, "snowg_dist_bench", MODULE)
            dist = ["-setcookie", secrets.token_hex(16), *tls_dist_args(certs, workdir)]
            self.beams.append(Beam("snowg_dist_bench:serve().", workdir, env, name=BEAM_B, dist_args=dist))
            self.driver = Beam(f"snowg_dist_bench:drive('{BEAM_B}').", workdir, env, name=BEAM_A, dist_args=dist)
            self.beams.append(self.driver)
        except BaseException:
            self.close()
            raise

    def rate(self, term: str) -> float:
        return self.driver.command(term)

    def spawn_link(self, n: int) -> List[float]:
        return [float(x) for x in self.driver.command_line(f"{{spawn_link, {n}}}").split()]

    def close(self) -> None:
        from _beam import kill

        for beam in self.beams:
            beam.kill()
        kill(self.epmd)


# ---------------------------------------------------------------- a run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pingpong", type=int, default=10000, help="round trips per run (default 10,000)")
    ap.add_argument("--oneway", type=int, default=200000, help="messages per one-way run (default 200,000)")
    ap.add_argument("--spawns", type=int, default=2000, help="spawn_link samples per round and side (default 2,000)")
    ap.add_argument("--rpcs", type=int, default=2000, help="rpc calls per run (default 2,000)")
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds, median kept (default 5)")
    ap.add_argument("--no-beam", action="store_true", help="skip the BEAM even when erl is installed")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw TLS + msgpack baseline")
    ap.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: pingpong,oneway,spawn,rpc")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: checks that it runs")
    ap.add_argument("--json")
    ap.add_argument("--raw-server", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_server:
        raw_server(args.raw_server)
        return 0
    if args.quick:
        args.pingpong, args.oneway, args.spawns, args.rpcs, args.repeat = 1000, 20000, 1000, 500, 1
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    if only - set(MEASUREMENTS):
        ap.error(f"--only: some of {','.join(MEASUREMENTS)}")
    from _beam import missing_tools
    from _machine import machine_load

    from snowg.testing import ClusterConfig, PeerFactory, start_test_node

    missing = [] if args.no_beam else missing_tools(("erl", "erlc", "epmd"))
    use_beam = not args.no_beam and not missing
    load_before = machine_load()
    config = ClusterConfig(tick=5.0)
    workdir = tempfile.mkdtemp(prefix="snowg-dist-bench-")
    start_test_node(config, name="bench@127.0.0.1")
    factory = PeerFactory(config)
    beam: Optional[BeamPair] = None
    figs: Dict[str, List[float]] = {}
    lat: Dict[str, List[Dict[str, float]]] = {"snowg": [], "beam": []}

    def put(key: str, value: float) -> None:
        figs.setdefault(key, []).append(value)

    try:
        if use_beam:
            log("starting two erl nodes over inet_tls")
            beam = BeamPair(config.certs, workdir)
        module = os.path.splitext(os.path.basename(__file__))[0]
        peer = factory.start("benchpeer@127.0.0.1", modules=[module]).name
        # Warm both sides' code paths up (and the BEAM's connection) before any round.
        snowg_pingpong(peer, 200)
        snowg_oneway(peer, 5000)
        snowg_spawn_link(peer, 50)
        snowg_rpc(peer, 50)
        if beam is not None:
            beam.rate("{pingpong, 200}")
            beam.rate("{oneway, 5000}")
            beam.spawn_link(50)
            beam.rate("{rpc, 50}")
        for r in range(max(1, args.repeat)):
            if not args.no_raw and only & {"pingpong", "oneway"}:
                raw_pp, raw_one = raw_baseline(config.certs, args.pingpong, args.oneway)
                put("pingpong.raw", raw_pp)
                put("oneway.raw", raw_one)
            if "pingpong" in only:
                if beam is not None:
                    put("pingpong.beam", beam.rate(f"{{pingpong, {args.pingpong}}}"))
                put("pingpong.snowg", snowg_pingpong(peer, args.pingpong))
            if "oneway" in only:
                if beam is not None:
                    put("oneway.beam", beam.rate(f"{{oneway, {args.oneway}}}"))
                put("oneway.snowg", snowg_oneway(peer, args.oneway))
            if "spawn" in only:
                if beam is not None:
                    lat["beam"].append(latency_stats(beam.spawn_link(args.spawns)))
                lat["snowg"].append(latency_stats(snowg_spawn_link(peer, args.spawns)))
            if "rpc" in only:
                if beam is not None:
                    put("rpc.beam", beam.rate(f"{{rpc, {args.rpcs}}}"))
                put("rpc.snowg", snowg_rpc(peer, args.rpcs))
            log(
                f"round {r + 1}/{args.repeat}: "
                + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figs.items())
                + "".join(f", spawn_link.{side} mean {v[-1]['mean']:.0f} us" for side, v in lat.items() if v)
            )
    finally:
        factory.stop_all()
        snowg.stop_node()
        if beam is not None:
            beam.close()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(key: str) -> Optional[float]:
        values = figs.get(key)
        return statistics.median(values) if values else None

    def med_lat(side: str, stat: str) -> Optional[float]:
        rounds = lat[side]
        return statistics.median(r[stat] for r in rounds) if rounds else None

    rows: List[Row] = []
    if "pingpong" in only:
        rows.append(Row("dist.pingpong.beam_tls", "round_trips/s", med("pingpong.snowg"), med("pingpong.beam"), True))
        if not args.no_raw:
            rows.append(Row("dist.pingpong.raw", "round_trips/s", med("pingpong.snowg"), med("pingpong.raw"), True))
    if "oneway" in only:
        rows.append(Row("dist.oneway.beam_tls", "msgs/s", med("oneway.snowg"), med("oneway.beam"), True))
        if not args.no_raw:
            rows.append(Row("dist.oneway.raw", "msgs/s", med("oneway.snowg"), med("oneway.raw"), True))
    if "spawn" in only:
        for stat in ("mean", "p50", "p99"):
            rows.append(
                Row(f"dist.spawn_link_latency.{stat}", "us", med_lat("snowg", stat), med_lat("beam", stat), False)
            )
    if "rpc" in only:
        rows.append(Row("dist.rpc_call.beam_tls", "calls/s", med("rpc.snowg"), med("rpc.beam"), True))

    print(f"machine: {os.cpu_count()} CPUs; {load_before} before, {machine_load()} after")
    if use_beam:
        from _beam import otp_release

        beam_note = f"Erlang/OTP {otp_release()}, two erl nodes over -proto_dist inet_tls (snowg's certificates)"
    elif args.no_beam:
        beam_note = "BEAM: skipped (--no-beam)"
    else:
        beam_note = f"BEAM: not installed ({', '.join(missing)} not on PATH), skipped"
    print(
        f"{beam_note}; median of {args.repeat} alternating rounds; {args.pingpong:,} round trips, "
        f"{args.oneway:,} one-way messages, {args.spawns:,} spawn_link samples, {args.rpcs:,} rpc calls per round "
        "and side"
    )
    print(
        "ratio = snowg / baseline. *.beam_tls and dist.spawn_link_latency.*: baseline = the BEAM over inet_tls; "
        "*.raw: baseline = raw TLS + msgpack between two Python processes. Rates: higher is better (ratio > 1: "
        "snowg ahead); latency (us): lower is better (ratio < 1: snowg ahead)."
    )
    print_table([r for r in rows if r.snowg is not None])
    for metric, base in (("pingpong", "beam"), ("oneway", "beam"), ("rpc", "beam")):
        pairs = zip(figs.get(f"{metric}.snowg", []), figs.get(f"{metric}.{base}", []))
        ratios = [f"{a / b:.2f}" for a, b in pairs if b]
        if ratios:
            print(f"{metric} vs BEAM, each round's ratio: {' '.join(ratios)}")
    if lat["snowg"] and lat["beam"]:
        ratios = [f"{a['mean'] / b['mean']:.2f}" for a, b in zip(lat["snowg"], lat["beam"])]
        print(f"spawn_link mean vs BEAM, each round's ratio: {' '.join(ratios)}")
    if args.json:
        write_json([r for r in rows if r.snowg is not None], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
