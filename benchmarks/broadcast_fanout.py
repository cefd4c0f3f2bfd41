"""Cluster broadcast fan-out: K server processes x N WebSocket clients in one room, snowg beside three peers.

snowg: K ``snowg node`` processes (TLS distribution, full mesh), each serving
N/K clients with ``snowg.ws``; a broadcast is one ``snowg.ws.broadcast`` call
on one node (rotating), which queues the frame for its local members and sends
one room-broadcast frame to each other node with members: here, every node
(semantics rule 29).

The peers, each measured in the same run with the same clients (every system
is open at once, each with its own load generators; latency blocks and bursts
alternate between them over --rounds rounds):

* ``queued`` (the baseline of the ``fanout.*`` rows): K independent
  gevent-websocket servers (``_fanout_baseline.py --queued``); each client has
  a bounded ``gevent.queue.Queue`` (1,024 frames, snowg's ``queue_size``) and a
  writer greenlet that drains it into one ``sendall``; a broadcast encodes the
  frame once and puts it on every member's queue (a full queue closes that
  client). This is how ``snowg.ws`` sends, written in plain gevent.
* ``inline`` (``fanout.inline.*``): the same servers, but a broadcast loops
  ``ws.send(msg)`` over the clients in the broadcasting greenlet (re-encoded
  per client; a client that does not read blocks the loop).
  Both baselines get each broadcast on all K servers at once (control lines
  written back to back): they have no cluster to relay it.
* ``socketio`` (``socketio.*``, when python-socketio, redis and redis-server
  are installed; else "not installed, skipped"): K python-socketio servers
  (``_socketio_node.py``: ``socketio.Server(async_mode="gevent",
  client_manager=socketio.RedisManager(...))`` on gevent's WSGIServer with
  gevent-websocket) and a private ``redis-server`` on a free port, killed at
  the end; a broadcast is one ``sio.emit(..., to=room)`` on one server
  (rotating), which Redis carries to every server. Its clients speak
  Socket.IO over the WebSocket transport only (no polling).

Clients live in L separate load-generator processes (gevent, raw sockets, the
same code for every system: ``_fanout_loadgen.py``). Each message carries
``time.monotonic()`` taken by the broadcaster just before the broadcast call
(CLOCK_MONOTONIC is system-wide on Linux); each load generator stamps
arrivals with its own ``time.monotonic()``. Latency of one broadcast = last
arrival at any client - earliest t0.

Rows (ratio = snowg / the row's baseline, printed above the table):
  *.latency_p50 / _p95 or _p99  ms until the last client has a broadcast (sequential broadcasts;
                                p99 only from 1,000 samples: --broadcasts 1000)
  *.deliveries                  deliveries/s for a burst of B broadcasts from one server
                                (clients x B / (last arrival - first t0)); the median of the rounds
  *.cpu_per_delivery            µs of server CPU (every server process -- Redis too -- all
                                threads, /proc/<pid>/task/*/schedstat) during the burst /
                                deliveries; median of the rounds
  *.cpu_per_delivery_seq        the same over all the sequential broadcasts (one frame per write)
  *.stuck.latency_p50           the latency with one extra client that never reads (its
                                buffers filled first); the baseline's is None when it stalled
  *.stuck.starved_clients       clients that missed broadcasts in the stuck run (should be 0)
  fanout.stuck_vs_normal_p50    snowg's stuck p50 / its normal p50 (no baseline)
Targets: fanout.deliveries >= 1.0x; snowg ahead of socketio on the tail latency
and on CPU per delivery.

Compressed rooms (--compression): one node, N clients in one room, R sequential
broadcasts of a JSON chat message of about 1 KB (a different one each time),
once with clients that negotiate permessage-deflate (as browsers offer it: the
default answer keeps the server's context, one compressor shared by the room)
and once without (compression=False); each broadcast waits until every client
has it. Rows (ratio = compressed / uncompressed):
  compress.wire_bytes     bytes the clients read from their sockets per broadcast
  compress.server_cpu_ms  the node process's CPU time (user + system) per broadcast
  compress.wall_ms        time per broadcast until every client has it
  compress.takeover.*     the same with compression_context_takeover=True (each member
                          compressed with its own context: no shared bytes)
  compress.alone.*        the same with compression_shared_context=False
                          (server_no_context_takeover: each message compressed alone)
Targets: wire bytes <= 0.5x, server CPU <= 1.2x (the shared, default mode).

Interest routing (--routing, default K = 8): the N clients are on the first M
nodes only (--member-nodes, default 2), in one room; broadcasts rotate over
all K nodes as above, so most come from nodes without members. The same
clients are measured in alternating blocks with rooms routed (frames only to
the nodes with members) and with every broadcast sent to every connected node
(as snowg did before, a benchmark-only switch on each node). Rows (ratio =
routed / to every node):
  routing.frames_per_broadcast  room-broadcast frames the nodes queued per broadcast
                                (routed: one per member node other than the sender)
  routing.latency_p50 / _p99    ms until the last client has a broadcast
  routing.idle_nodes_cpu_ms     CPU time (user + system) of the K - M nodes without
                                members, together, per broadcast
Targets: frames per broadcast = the nodes with members (other than the
sender), latency <= the every-node run.

Usage: python benchmarks/broadcast_fanout.py [--clients N] [--nodes K] [--broadcasts R] [--rounds 3]
         [--room-size S] [--loadgens L] [--size BYTES] [--burst B] [--no-stuck] [--no-socketio]
         [--json FILE] [--plot FILE.png [--plot-sizes N1,N2,...]]
       python benchmarks/broadcast_fanout.py --compression [--clients N] [--broadcasts R] [--loadgens L]
       python benchmarks/broadcast_fanout.py --routing [--nodes K] [--member-nodes M] [--clients N] [--broadcasts R]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gevent  # noqa: E402
from gevent import queue as gqueue  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent import subprocess  # noqa: E402

import snowg  # noqa: E402

from _fanout_common import raise_nofile  # noqa: E402
from _table import Row, print_table, write_json  # noqa: E402

CTL = "fanout_ctl"
WARMUP = 5


def log(msg: str) -> None:
    print(f"[fanout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ load generators


class Loadgens:
    """L load-generator processes; their 'done' lines go to one queue."""

    def __init__(self, count: int) -> None:
        self.procs = []
        self.replies: List[gqueue.Queue] = []
        self.done: gqueue.Queue = gqueue.Queue()
        for i in range(count):
            p = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "_fanout_loadgen.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=HERE,
            )
            self.procs.append(p)
            self.replies.append(gqueue.Queue())
            gevent.spawn(self._read, i, p)

    def _read(self, i: int, p: Any) -> None:
        for line in p.stdout:
            text = line.decode().strip()
            if text.startswith("done "):
                _, r, n, last, t0 = text.split()
                self.done.put((i, int(r), int(n), float(last), float(t0)))
            else:
                self.replies[i].put(text)
        self.replies[i].put("EOF")

    def cmd(self, i: int, **obj: Any) -> None:
        self.procs[i].stdin.write((json.dumps(obj) + "\n").encode())
        self.procs[i].stdin.flush()

    def reply(self, i: int, timeout: float = 120.0) -> str:
        text = self.replies[i].get(timeout=timeout)
        if text == "EOF":
            raise RuntimeError(f"load generator {i} ended")
        return text

    def close(self) -> None:
        for i in range(len(self.procs)):
            try:
                self.cmd(i, cmd="quit")
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------- systems


class SnowgSystem:
    name = "snowg"
    proto = "ws"
    stuck_ok = True

    def __init__(self, config: Any) -> None:
        self.config = config
        self.factory = None
        self.nodes: List[str] = []
        self.ports: List[int] = []

    def start(self, k: int) -> None:
        from snowg.testing import PeerFactory, wait_for

        self.factory = PeerFactory(self.config)
        peers = [self.factory.start(modules=["_fanout_node"]) for _ in range(k)]
        self.peers = peers
        self.nodes = [p.name for p in peers]
        mine = snowg.node()
        for p in peers:
            want = sorted(n for n in self.nodes + [mine] if n != p.name)
            if not wait_for(lambda p=p, want=want: p.rpc("_fanout_node.connected") == want, timeout=30):
                raise RuntimeError(f"{p.name} did not join the full mesh")
        self.ports = [p.rpc("_fanout_node.start") for p in peers]

    def pids(self) -> List[int]:
        return [p.os_pid for p in self.peers]

    def broadcast(self, node: int, room: str, r: int, size: int, count: int = 1) -> None:
        snowg.send((CTL, self.nodes[node]), ("bcast", room, r, size, count))

    def fill(self, node: int, room: str, size: int, count: int) -> None:
        snowg.send((CTL, self.nodes[node]), ("fill", room, size, count, snowg.self()))
        snowg.receive(lambda m: m == "filled", timeout=60)

    def members(self, node: int, room: str) -> int:
        return self.peers[node].rpc("_fanout_node.member_count", room)

    def stop(self) -> None:
        if self.factory is not None:
            self.factory.stop_all()


class BaselineSystem:
    """K independent gevent-websocket servers (``_fanout_baseline.py``), inline or queued broadcasts."""

    proto = "ws"
    stuck_ok = True

    def __init__(self, queued: bool) -> None:
        self.queued = queued
        self.name = "queued" if queued else "inline"
        self.procs: list = []
        self.ctl: list = []
        self.ports: List[int] = []

    def _command(self) -> List[str]:
        return [sys.executable, os.path.join(HERE, "_fanout_baseline.py")] + (["--queued"] if self.queued else [])

    def start(self, k: int) -> None:
        for _ in range(k):
            p = subprocess.Popen(self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE)
            self.procs.append(p)
        for p in self.procs:
            _, ws_port, ctl_port = p.stdout.readline().decode().split()
            self.ports.append(int(ws_port))
            s = gsocket.create_connection(("127.0.0.1", int(ctl_port)))
            s.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            self.ctl.append((s, s.makefile("rb")))

    def pids(self) -> List[int]:
        return [p.pid for p in self.procs]

    def broadcast(self, node: int, room: str, r: int, size: int, count: int = 1) -> None:
        # Every baseline process loops over its own clients, triggered at once.
        line = f"bcast {room} {r} {size} {count}\n".encode()
        for s, _f in self.ctl:
            s.sendall(line)

    def fill(self, node: int, room: str, size: int, count: int) -> None:
        s, f = self.ctl[node]
        s.sendall(f"fill {room} {size} {count}\n".encode())
        with gevent.Timeout(30):
            assert f.readline().strip() == b"filled"

    def members(self, node: int, room: str) -> int:
        s, f = self.ctl[node]
        s.sendall(f"members {room}\n".encode())
        with gevent.Timeout(10, False):
            return int(f.readline())
        return -1  # a stalled baseline process does not answer

    def stop(self) -> None:
        for s, _f in self.ctl:
            s.close()
        for p in self.procs:
            p.kill()
            p.wait()


def socketio_missing() -> List[str]:
    """What the python-socketio + Redis peer needs and is not installed (empty: it runs)."""
    import importlib.util
    import shutil

    missing = [m for m in ("socketio", "engineio", "redis") if importlib.util.find_spec(m) is None]
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


def _free_port() -> int:
    s = gsocket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _redis(port: int, *words: str) -> bytes:
    """One Redis command (RESP) on a fresh connection; its raw answer (small: one read)."""
    s = gsocket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words))
        return s.recv(65536)
    finally:
        s.close()


class SocketioSystem(BaselineSystem):
    """python-socketio + RedisManager: a private ``redis-server`` and K ``_socketio_node.py`` processes.

    A broadcast is one ``sio.emit(..., to=room)`` on one server (rotating, as
    for snowg); it goes through Redis to every server, which sends it to its
    own members.
    """

    proto = "sio"
    stuck_ok = False

    def __init__(self) -> None:
        super().__init__(queued=False)
        self.name = "socketio"
        self.redis: Any = None
        self.redis_port = 0

    def _command(self) -> List[str]:
        return [sys.executable, os.path.join(HERE, "_socketio_node.py"), str(self.redis_port)]

    def start(self, k: int) -> None:
        self.redis_port = _free_port()
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            cwd=HERE,
        )
        _wait_until(lambda: _redis_ok(self.redis_port), 10, "redis-server did not start")
        super().start(k)
        # Every server listens on the Redis channel before the first broadcast.
        _wait_until(
            lambda: _redis(self.redis_port, "PUBSUB", "NUMSUB", "socketio").endswith(b":%d\r\n" % k),
            30,
            "the Socket.IO servers did not subscribe",
        )

    def pids(self) -> List[int]:
        return super().pids() + [self.redis.pid]

    def broadcast(self, node: int, room: str, r: int, size: int, count: int = 1) -> None:
        # One emit on one server: Redis carries it to every server.
        self.ctl[node][0].sendall(f"bcast {room} {r} {size} {count}\n".encode())

    def stop(self) -> None:
        super().stop()
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()


def _redis_ok(port: int) -> bool:
    try:
        return _redis(port, "PING") == b"+PONG\r\n"
    except OSError:
        return False


# --------------------------------------------------------------------- runs


class Run:
    """One system with N clients: open them, then measure phases."""

    def __init__(self, system: Any, args: Any, n: int) -> None:
        self.system, self.args, self.n = system, args, n
        k, s = args.nodes, args.room_size or n
        self.client_room = [f"r{i // s}" for i in range(n)]
        self.client_node = [i % k for i in range(n)]
        self.client_lg = [i % args.loadgens for i in range(n)]
        self.rooms = sorted(set(self.client_room), key=lambda r: int(r[1:]))
        self.room_size = {r: self.client_room.count(r) for r in self.rooms}
        self.room_lgs = {r: {self.client_lg[i] for i in range(n) if self.client_room[i] == r} for r in self.rooms}
        self.next_r = 0
        self.r_room: Dict[int, int] = {}
        self.lg: Optional[Loadgens] = None

    def open(self) -> None:
        sysm, args = self.system, self.args
        t = time.monotonic()
        sysm.start(args.nodes)
        self.lg = lg = Loadgens(args.loadgens)
        self.order: List[List[int]] = [[] for _ in range(args.loadgens)]  # clients per loadgen, open order
        for j in range(args.loadgens):
            groups: Dict[tuple, int] = {}
            for i in range(self.n):
                if self.client_lg[i] == j:
                    key = (sysm.ports[self.client_node[i]], "/" + self.client_room[i])
                    groups[key] = groups.get(key, 0) + 1
            conns = [[port, path, c, sysm.proto] for (port, path), c in groups.items()]
            # Remember which room each count belongs to, in the loadgen's open order.
            self.order[j] = [path[1:] for (_port, path), c in groups.items() for _ in range(c)]
            lg.cmd(j, cmd="open", conns=conns, concurrency=args.concurrency)
        opened = sum(int(lg.reply(j).split()[1]) for j in range(args.loadgens))
        if opened != self.n:
            raise RuntimeError(f"{sysm.name}: opened {opened} of {self.n} clients")
        # The handlers join their rooms just after the handshake: wait until all have.
        per_node = [
            sum(1 for i in range(self.n) if self.client_node[i] == k and self.client_room[i] == "r0")
            for k in range(args.nodes)
        ]
        for k in range(args.nodes):
            _wait_until(lambda k=k: sysm.members(k, "r0") == per_node[k], 30)
        log(f"{sysm.name}: {self.n} clients on {args.nodes} nodes open in {time.monotonic() - t:.1f} s")

    def _wait(self, rs: List[int], timeout: float) -> Dict[int, tuple]:
        """Wait for the 'done' of each r in rs from every loadgen with members; -> {r: (last, t0)}."""
        need = {r: set(self.room_lgs[self._room(r)]) for r in rs}
        res: Dict[int, list] = {r: [0.0, float("inf")] for r in rs}
        deadline = time.monotonic() + timeout
        while any(need.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                i, r, _n, last, t0 = self.lg.done.get(timeout=left)
            except gqueue.Empty:
                break
            if r in need and i in need[r]:
                need[r].discard(i)
                res[r][0] = max(res[r][0], last)
                res[r][1] = min(res[r][1], t0)
        return {r: tuple(v) for r, v in res.items() if not need[r]}

    def _room(self, r: int) -> str:
        return self.rooms[self.r_room[r]] if r in self.r_room else self.rooms[0]

    def latency(self, count: int, timeout: float, give_up_after: int = 0) -> tuple:
        """``count`` sequential broadcasts (rotating node and room); -> (latencies in ms, timeouts, sent per room)."""
        lat, timeouts, sent, streak = [], 0, {}, 0
        for j in range(count):
            r = self._new_r(j % len(self.rooms))
            room = self._room(r)
            self.system.broadcast(j % self.args.nodes, room, r, self.args.size)
            sent[room] = sent.get(room, 0) + 1
            got = self._wait([r], timeout)
            if r in got:
                last, t0 = got[r]
                lat.append((last - t0) * 1000.0)
                streak = 0
            else:
                timeouts += 1
                streak += 1
                if give_up_after and streak >= give_up_after:
                    break
        return lat, timeouts, sent

    def burst(self, count: int, timeout: float) -> Optional[Tuple[float, float]]:
        """``count`` broadcasts back to back from node 0 to room 0.

        Returns (deliveries/s, server CPU µs per delivery), or None if some
        broadcast did not reach every client in time. The CPU is user + system
        time of every server process (Redis too, for Socket.IO) from just
        before the burst until the last client has the last message.
        """
        first = self.next_r
        rs = [self._new_r(0) for _ in range(count)]
        pids = self.system.pids()
        reads0 = self.reads()
        cpu0 = sum(map(_proc_cpu_ns, pids))
        self.system.broadcast(0, self.rooms[0], first, self.args.size, count)
        got = self._wait(rs, timeout)
        cpu = sum(map(_proc_cpu_ns, pids)) - cpu0
        if len(got) < count:
            return None
        self.frames_per_read = self.room_size[self.rooms[0]] * count / max(1, self.reads() - reads0)
        t0 = min(v[1] for v in got.values())
        last = max(v[0] for v in got.values())
        deliveries = self.room_size[self.rooms[0]] * count
        return deliveries / (last - t0), cpu * 1e6 / deliveries

    def reads(self) -> int:
        """Socket reads that returned data, all load generators together, so far."""
        total = 0
        for j in range(self.args.loadgens):
            self.lg.cmd(j, cmd="reads")
            total += int(self.lg.reply(j).split()[1])
        return total

    def _new_r(self, room_index: int) -> int:
        r = self.next_r
        self.next_r += 1
        self.r_room[r] = room_index
        return r

    def stuck(self, count: int, timeout: float) -> dict:
        """Add one never-reading client in room 0 on node 0, fill its buffers, measure again."""
        sysm, lg = self.system, self.lg
        lg.cmd(0, cmd="stuck", port=sysm.ports[0], path=f"/{self.rooms[0]},stuck")
        lg.reply(0)
        _wait_until(lambda: sysm.members(0, "stuck") == 1, 30)
        sysm.fill(0, "stuck", 65536, 100)
        for j in range(self.args.loadgens):
            lg.cmd(j, cmd="reset")
            lg.reply(j)
        lat, timeouts, sent = self.latency(count, timeout, give_up_after=2)
        starved = 0
        for j in range(self.args.loadgens):
            lg.cmd(j, cmd="counts")
            counts = json.loads(lg.reply(j).split(" ", 1)[1])
            for room, c in zip(self.order[j], counts):
                if c < sent.get(room, 0):
                    starved += 1
        return {"lat": lat, "timeouts": timeouts, "starved": starved}

    def close(self) -> None:
        if self.lg is not None:
            self.lg.close()
        self.system.stop()


def _wait_until(pred: Any, timeout: float, what: str = "timed out waiting for the clients to join") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        gevent.sleep(0.05)


def _f(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def pct(xs: List[float], p: float) -> Optional[float]:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def tail_pct(samples: int) -> int:
    """The highest percentile ``samples`` latencies support: 99 from 1,000 on, else 95 (else 90 under 100)."""
    return 99 if samples >= 1000 else 95 if samples >= 100 else 90


def measure_all(systems: List[Any], args: Any, n: int, full: bool) -> Dict[str, dict]:
    """Every system open at once with its own clients; latency blocks and bursts alternate between them.

    ``args.rounds`` rounds; in each, every system (in a rotated order) takes
    ``args.broadcasts / rounds`` sequential broadcasts and then one burst. The
    latencies of all rounds are pooled; deliveries/s and CPU per delivery are
    the medians of the rounds' bursts. The stuck runs come last.
    """
    runs = [Run(system, args, n) for system in systems]
    res: Dict[str, dict] = {}
    for r in runs:
        res[r.system.name] = {"lat": [], "timeouts": 0, "deliveries": [], "cpu_us": [], "failed_bursts": 0}
        res[r.system.name].update(cpu_seq=0.0, seq_deliveries=0)
    rounds = max(1, args.rounds)
    per = -(-args.broadcasts // rounds)
    try:
        for run in runs:
            run.open()
            run.latency(WARMUP, args.timeout)
        for rnd in range(rounds):
            order = runs[rnd % len(runs) :] + runs[: rnd % len(runs)]
            for run in order:
                out = res[run.system.name]
                pids = run.system.pids()
                cpu0 = sum(map(_proc_cpu_ns, pids))
                lat, timeouts, _ = run.latency(per, args.timeout)
                out["cpu_seq"] += sum(map(_proc_cpu_ns, pids)) - cpu0
                out["seq_deliveries"] += per * n / len(run.rooms)  # rooms in turn: n / rooms members each
                out["lat"] += lat
                out["timeouts"] += timeouts
                if full:
                    b = run.burst(args.burst, args.timeout * 4)
                    if b is None:
                        out["failed_bursts"] += 1
                    else:
                        out["deliveries"].append(b[0])
                        out["cpu_us"].append(b[1])
                        out.setdefault("frames_per_read", []).append(run.frames_per_read)
                log(
                    f"round {rnd + 1}/{rounds} {run.system.name}: {len(lat)} broadcasts"
                    + (
                        f", burst {_f(out['deliveries'][-1] if out['deliveries'] else None)} deliveries/s, "
                        f"{_f(out['cpu_us'][-1] if out['cpu_us'] else None)} µs CPU per delivery, "
                        f"{_f(out['frames_per_read'][-1] if out.get('frames_per_read') else None)} messages "
                        "per client read"
                        if full
                        else ""
                    )
                )
        if full and not args.no_stuck:
            for run in runs:
                if run.system.stuck_ok:
                    res[run.system.name]["stuck"] = run.stuck(args.stuck_broadcasts, args.stuck_timeout)
    finally:
        for run in runs:
            run.close()
    for name, out in res.items():
        lat = out["lat"]
        tp = tail_pct(len(lat))
        out["deliveries"] = median(out["deliveries"]) if out["deliveries"] else None
        out["cpu_us"] = median(out["cpu_us"]) if out["cpu_us"] else None
        out["cpu_seq_us"] = out["cpu_seq"] * 1e6 / max(1, out["seq_deliveries"])
        log(
            f"{name} N={n}: {len(lat)} latencies, ms p50 {_f(pct(lat, 50))}, p90 {_f(pct(lat, 90))}, "
            f"p{tp} {_f(pct(lat, tp))}, max {_f(max(lat) if lat else None)}, timeouts {out['timeouts']}, "
            f"server CPU {out['cpu_seq_us']:.2f} µs per delivery"
            + (
                f"; bursts: {_f(out['deliveries'])} deliveries/s, {_f(out['cpu_us'])} µs CPU per delivery (medians), "
                f"failed {out['failed_bursts']}"
                if full
                else ""
            )
        )
        if args.verbose:
            log(f"{name} N={n}: latencies in order: {' '.join(_f(x) for x in lat)}")
    return res


def median(xs: List[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def systems_for(args: Any, config: Any) -> List[Any]:
    systems: List[Any] = [SnowgSystem(config), BaselineSystem(queued=True), BaselineSystem(queued=False)]
    if args.no_socketio:
        log("python-socketio + Redis: --no-socketio, skipped")
    else:
        missing = socketio_missing()
        if missing:
            log(f"python-socketio + Redis: not installed ({', '.join(missing)} missing), skipped")
        else:
            systems.append(SocketioSystem())
    return systems


# Which baseline each group of rows compares against (printed with the table).
BASELINES = {
    "fanout.": "queued: gevent-websocket, a bounded queue + writer greenlet per client, frame encoded once",
    "fanout.inline.": "inline: gevent-websocket, ws.send looped over the clients (re-encoded per client)",
    "socketio.": "python-socketio + RedisManager (gevent, WebSocket transport) with a private redis-server",
}


def rows_for(res: dict, n: int, args: Any, main: bool) -> List[Row]:
    s = res["snowg"]
    at = "" if main else f"@N={n}"
    tp = tail_pct(min(len(r["lat"]) for r in res.values()))
    rows = []
    for prefix, other in (("fanout.", "queued"), ("fanout.inline.", "inline"), ("socketio.", "socketio")):
        if other not in res:
            continue
        b = res[other]
        rows += [
            Row(f"{prefix}latency_p50{at}", "ms", pct(s["lat"], 50), pct(b["lat"], 50), False),
            Row(f"{prefix}latency_p{tp}{at}", "ms", pct(s["lat"], tp), pct(b["lat"], tp), False),
        ]
        rows.append(Row(f"{prefix}cpu_per_delivery_seq{at}", "µs", s["cpu_seq_us"], b["cpu_seq_us"], False))
        if s.get("deliveries") is not None:
            rows.append(Row(f"{prefix}deliveries{at}", "deliveries/s", s["deliveries"], b.get("deliveries"), True))
            rows.append(Row(f"{prefix}cpu_per_delivery{at}", "µs", s["cpu_us"], b.get("cpu_us"), False))
    if "stuck" in s:
        ss = s["stuck"]
        for prefix, other in (("fanout.", "queued"), ("fanout.inline.", "inline")):
            bs = res[other]["stuck"]
            b_p50 = pct(bs["lat"], 50) if not bs["timeouts"] else None
            rows.append(Row(f"{prefix}stuck.latency_p50", "ms", pct(ss["lat"], 50), b_p50, False))
            starved = float(ss["starved"]), float(bs["starved"])
            rows.append(Row(f"{prefix}stuck.starved_clients", "clients", *starved, False))
        rows.append(Row("fanout.stuck_vs_normal_p50", "x", pct(ss["lat"], 50) / pct(s["lat"], 50), None, False))
    return rows


def plot(points: Dict[int, dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot: matplotlib is not installed (pip install matplotlib); {path} not written", file=sys.stderr)
        return
    ns = sorted(points)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system, style in (("snowg", "-o"), ("queued", "--s"), ("inline", ":^"), ("socketio", "-.d")):
        if system not in points[ns[0]]:
            continue
        for p in (50, 99):
            ys = [pct(points[n][system]["lat"], p) for n in ns]
            ax.plot(ns, ys, style, label=f"{system} p{p}")
    ax.set_xlabel("clients (total, over all nodes)")
    ax.set_ylabel("time until the last client has the message (ms)")
    ax.set_title("Cluster broadcast fan-out")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}", file=sys.stderr)


# ------------------------------------------------------- compressed rooms

_SENTENCES = [
    "Did anyone else see the release notes for the new version this morning?",
    "I think the deploy went fine, but the dashboard still shows the old numbers.",
    "Can we move the meeting to Thursday afternoon? Wednesday is packed for me.",
    "The build on main has been green since yesterday evening, nice work everyone.",
    "I'll take a look at the flaky test after lunch and report back here.",
    "Has anybody tried the new coffee place around the corner from the office?",
    "Reminder: the quarterly review slides are due on Friday before noon.",
    "Thanks for the quick fix, the customer confirmed it works for them now.",
    "I'm seeing a few timeouts from the payment service, is that expected?",
    "Let's keep this thread for the launch checklist so nothing gets lost.",
    "The staging database was restored from last night's backup, all good.",
    "Could someone with admin rights add the new intern to the team channel?",
    "Lunch order is going out in ten minutes, reply with what you want.",
    "The graphs look much better after the cache change, latency dropped by half.",
]


def chat_messages(count: int, seed: int = 7) -> List[str]:
    """``count`` JSON chat messages of about 1 KB, each different (as a chat room's would be)."""
    import random

    rnd = random.Random(seed)
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    out = []
    for i in range(count):
        name = rnd.choice(names)
        body = ""
        while len(body) < 620:
            body += rnd.choice(_SENTENCES) + " "
        msg = {
            "event": "new_msg",
            "topic": "room:engineering",
            "ref": str(1000 + i),
            "payload": {
                "id": f"msg_{rnd.getrandbits(64):016x}",
                "user": {"id": rnd.randint(1, 10**6), "name": name, "avatar": f"https://cdn.example.com/a/{name}.png"},
                "sent_at": f"2026-12-01T18:{i % 60:02d}:{rnd.randint(0, 59):02d}.{rnd.randint(0, 999):03d}Z",
                "body": body.strip(),
                "reactions": {"+1": rnd.randint(0, 9), "eyes": rnd.randint(0, 3)},
            },
        }
        out.append(json.dumps(msg))
    return out


def _proc_cpu_ns(pid: int) -> float:
    """CPU seconds of process ``pid``, all its threads, from the scheduler's ns counters (/proc schedstat).

    The /proc/<pid>/stat figures move in clock ticks (10 ms): too coarse for
    one burst. Falls back to them where schedstat is missing.
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return _proc_cpu(pid)


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DeflateLoadgens:
    """L ``_deflate_loadgen.py`` processes, one line-oriented reply queue each."""

    def __init__(self, count: int) -> None:
        self.procs = []
        self.replies: List[gqueue.Queue] = []
        for _ in range(count):
            p = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "_deflate_loadgen.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=HERE,
            )
            q: gqueue.Queue = gqueue.Queue()
            gevent.spawn(self._read, p, q)
            self.procs.append(p)
            self.replies.append(q)

    @staticmethod
    def _read(p: Any, q: Any) -> None:
        for line in p.stdout:
            q.put(line.decode().strip())
        q.put("EOF")

    def ask(self, i: int, timeout: float = 120.0, **obj: Any) -> str:
        self.procs[i].stdin.write((json.dumps(obj) + "\n").encode())
        self.procs[i].stdin.flush()
        return self.reply(i, timeout)

    def tell(self, i: int, **obj: Any) -> None:
        self.procs[i].stdin.write((json.dumps(obj) + "\n").encode())
        self.procs[i].stdin.flush()

    def reply(self, i: int, timeout: float = 120.0) -> str:
        text = self.replies[i].get(timeout=timeout)
        if text == "EOF":
            raise RuntimeError(f"load generator {i} ended")
        return text

    def close(self) -> None:
        for i, p in enumerate(self.procs):
            try:
                self.tell(i, cmd="quit")
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def compression_run(
    args: Any,
    config: Any,
    compression: bool,
    messages: List[str],
    context_takeover: bool = False,
    shared_context: bool = True,
) -> Dict[str, Any]:
    """One node, ``args.clients`` clients offering deflate, sequential broadcasts; -> per-broadcast figures."""
    from snowg.testing import PeerFactory

    factory = PeerFactory(config)
    lg: Optional[DeflateLoadgens] = None
    try:
        peer = factory.start(modules=["_deflate_node"])
        port = peer.rpc("_deflate_node.start", compression, context_takeover, shared_context)
        lg = DeflateLoadgens(args.loadgens)
        per = [
            args.clients // args.loadgens + (1 if j < args.clients % args.loadgens else 0) for j in range(args.loadgens)
        ]
        for j, n in enumerate(per):
            lg.tell(j, cmd="open", port=port, n=n, deflate=True, concurrency=args.concurrency)
        answered = set()
        for j in range(args.loadgens):
            _, opened, ext = lg.reply(j).split(" ", 2)
            if int(opened) != per[j]:
                raise RuntimeError(f"load generator {j} opened {opened} of {per[j]} clients")
            answered.add(ext)
        _wait_until(lambda: peer.rpc("_deflate_node.members") == args.clients, 60)
        pid = peer.process.pid
        k = 0

        def one(text: str) -> None:
            nonlocal k
            k += 1
            peer.rpc("_deflate_node.broadcast", text)
            for j in range(args.loadgens):
                got = lg.ask(j, timeout=args.timeout, cmd="expect", k=k)
                if got != f"done {k}":
                    raise RuntimeError(f"load generator {j}: {got!r} instead of 'done {k}'")

        for i in range(WARMUP):
            one(messages[i % len(messages)])
        before = [lg.ask(j, cmd="stats").split()[1:] for j in range(args.loadgens)]
        cpu0, t0 = _proc_cpu(pid), time.monotonic()
        for i in range(args.broadcasts):
            one(messages[i % len(messages)])
        cpu1, t1 = _proc_cpu(pid), time.monotonic()
        after = [lg.ask(j, cmd="stats").split()[1:] for j in range(args.loadgens)]
        delta = [sum(int(a[c]) - int(b[c]) for a, b in zip(after, before)) for c in range(4)]
        nbytes, nmsgs, ncompressed, bad = delta
        if bad or nmsgs != args.broadcasts * args.clients:
            raise RuntimeError(f"{nmsgs} messages (expected {args.broadcasts * args.clients}), {bad} not the JSON sent")
        res = {
            "answered": sorted(answered),
            "wire_bytes": nbytes / args.broadcasts,
            "cpu_ms": (cpu1 - cpu0) * 1000.0 / args.broadcasts,
            "wall_ms": (t1 - t0) * 1000.0 / args.broadcasts,
            "compressed_share": ncompressed / nmsgs,
        }
        log(
            f"compression={compression}, context_takeover={context_takeover}, shared_context={shared_context}: "
            f"{res['wire_bytes']:,.0f} B on the wire and {res['cpu_ms']:.2f} ms of node CPU "
            f"per broadcast to {args.clients} clients ({res['compressed_share']:.0%} compressed; "
            f"answer {res['answered']})"
        )
        return res
    finally:
        if lg is not None:
            lg.close()
        factory.stop_all()


def compression_main(args: Any, config: Any) -> List[Row]:
    messages = chat_messages(50)
    sizes = sorted(len(m.encode()) for m in messages)
    log(f"messages: {len(messages)} JSON chat messages of {sizes[0]}-{sizes[-1]} B")
    plain = compression_run(args, config, False, messages)
    comp = compression_run(args, config, True, messages)
    own = compression_run(args, config, True, messages, context_takeover=True)
    alone = compression_run(args, config, True, messages, shared_context=False)
    print(
        f"1 node x {args.clients} clients in one room, {args.broadcasts} sequential broadcasts of "
        f"{sizes[0]}-{sizes[-1]} B JSON; baseline = the same run with compression=False"
    )
    return [
        Row("compress.wire_bytes", "B/broadcast", comp["wire_bytes"], plain["wire_bytes"], False),
        Row("compress.server_cpu_ms", "ms/broadcast", comp["cpu_ms"], plain["cpu_ms"], False),
        Row("compress.wall_ms", "ms/broadcast", comp["wall_ms"], plain["wall_ms"], False),
        # compression_context_takeover=True: each member's own compressor (no shared bytes)
        Row("compress.takeover.wire_bytes", "B/broadcast", own["wire_bytes"], plain["wire_bytes"], False),
        Row("compress.takeover.server_cpu_ms", "ms/broadcast", own["cpu_ms"], plain["cpu_ms"], False),
        # compression_shared_context=False: server_no_context_takeover, every message compressed alone
        Row("compress.alone.wire_bytes", "B/broadcast", alone["wire_bytes"], plain["wire_bytes"], False),
        Row("compress.alone.server_cpu_ms", "ms/broadcast", alone["cpu_ms"], plain["cpu_ms"], False),
    ]


# ------------------------------------------------------------ interest routing


class RoutedRun(Run):
    """A :class:`Run` whose clients are on the first ``members_on`` nodes only (broadcasts rotate over all)."""

    def __init__(self, system: Any, args: Any, n: int, members_on: int) -> None:
        super().__init__(system, args, n)
        self.client_node = [i % members_on for i in range(n)]


def routing_main(args: Any, config: Any) -> List[Row]:
    """The --routing rows: routed rooms beside every broadcast sent to every node, same clients, same run."""
    system = SnowgSystem(config)
    run = RoutedRun(system, args, args.clients, args.member_nodes)
    rounds = 4
    per = max(1, args.broadcasts // rounds // args.nodes) * args.nodes  # whole rotations over the nodes
    lat: Dict[bool, List[float]] = {False: [], True: []}
    frames = {False: 0, True: 0}
    timeouts = {False: 0, True: 0}
    cpu = {False: 0.0, True: 0.0}

    def frames_sent() -> int:
        return sum(p.rpc("_fanout_node.room_frames_sent") for p in system.peers)

    try:
        run.open()
        room = run.rooms[0]
        # Membership is eventually consistent: every node must know every member first.
        for p in system.peers:
            _wait_until(lambda p=p: p.rpc("_fanout_node.room_count", room) == args.clients, 30)
        run.latency(WARMUP, args.timeout)
        for rnd in range(rounds):
            # Alternate which mode goes first: the first block of a round is the slower one, whichever it is.
            for every in (False, True) if rnd % 2 == 0 else (True, False):
                for p in system.peers:
                    p.rpc("_fanout_node.route_to_every_node", every)
                idle = [p.os_pid for p in system.peers[args.member_nodes :]]
                before = frames_sent()
                cpu0 = sum(map(_proc_cpu, idle))
                got, missed, _ = run.latency(per, args.timeout)
                cpu[every] += sum(map(_proc_cpu, idle)) - cpu0
                frames[every] += frames_sent() - before
                lat[every] += got
                timeouts[every] += missed
    finally:
        run.close()
    sent = per * rounds
    for every in (False, True):
        name = "to every node" if every else "routed"
        log(
            f"{name}: frames per broadcast {frames[every] / sent:.2f}, latency ms p50 {_f(pct(lat[every], 50))}, "
            f"p99 {_f(pct(lat[every], 99))}, timeouts {timeouts[every]}, "
            f"CPU of the nodes without members {cpu[every] * 1000 / sent:.2f} ms per broadcast"
        )
    k, m = args.nodes, args.member_nodes
    log(f"expected when routed: {(m * (m - 1) + (k - m) * m) / k:.2f} frames per broadcast ({m} member nodes of {k})")
    return [
        Row("routing.frames_per_broadcast", "frames", frames[False] / sent, frames[True] / sent, False),
        Row("routing.latency_p50", "ms", pct(lat[False], 50), pct(lat[True], 50), False),
        Row("routing.latency_p99", "ms", pct(lat[False], 99), pct(lat[True], 99), False),
        Row("routing.idle_nodes_cpu_ms", "ms", cpu[False] * 1000 / sent, cpu[True] * 1000 / sent, False),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=3000, help="N, clients in total (default 3000)")
    ap.add_argument("--nodes", type=int, default=None, help="K, node processes (default 3; 8 with --routing)")
    ap.add_argument(
        "--broadcasts", type=int, default=200, help="R, sequential broadcasts per system (default 200: p95; 1000: p99)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3), one burst each")
    ap.add_argument(
        "--stuck-broadcasts", type=int, default=50, help="broadcasts in each never-reading-client run (default 50)"
    )
    ap.add_argument("--no-socketio", action="store_true", help="skip the python-socketio + Redis peer")
    ap.add_argument("--room-size", type=int, default=0, help="clients per room (default: all in one room)")
    ap.add_argument("--loadgens", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--size", type=int, default=100, help="message size in bytes (default 100)")
    ap.add_argument("--burst", type=int, default=100, help="broadcasts in the deliveries/s burst (default 100)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a broadcast may take")
    ap.add_argument(
        "--stuck-timeout",
        type=float,
        default=3.0,
        help="seconds a broadcast may take in the stuck run (2 misses end it)",
    )
    ap.add_argument("--no-stuck", action="store_true", help="skip the never-reading-client run")
    ap.add_argument("--concurrency", type=int, default=32, help="handshakes in flight per load generator")
    ap.add_argument("--verbose", action="store_true", help="log every latency")
    ap.add_argument("--compression", action="store_true", help="measure compressed rooms instead (see above)")
    ap.add_argument("--routing", action="store_true", help="measure interest routing instead (see above)")
    ap.add_argument("--member-nodes", type=int, default=2, help="M, nodes with clients in --routing (default 2)")
    ap.add_argument("--json")
    ap.add_argument("--plot", help="also measure --plot-sizes and plot latency against clients")
    ap.add_argument("--plot-sizes", help="comma-separated N values (default N/4, N/2, N)")
    args = ap.parse_args()
    if args.nodes is None:
        args.nodes = 8 if args.routing else 3
    if args.routing and not 1 <= args.member_nodes <= args.nodes:
        ap.error("--member-nodes must be between 1 and --nodes")
    if args.clients < args.nodes:
        ap.error("--clients must be at least --nodes")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                f"--plot: matplotlib is not installed (pip install matplotlib); "
                f"{args.plot} will not be written and the extra sizes are not measured",
                file=sys.stderr,
            )
            args.plot = None
    raise_nofile()
    from snowg.testing import ClusterConfig, start_test_node

    config = ClusterConfig(tick=5.0)
    start_test_node(config, name="fanout@127.0.0.1")
    if args.routing:
        try:
            rows = routing_main(args, config)
        finally:
            snowg.stop_node()
        print(
            f"{args.nodes} nodes, {args.clients} clients in one room on {args.member_nodes} of them, "
            f"{args.broadcasts} broadcasts of {args.size} B per mode ('baseline': sent to every node)"
        )
        print_table(rows)
        if args.json:
            write_json(rows, args.json)
        return 0
    if args.compression:
        try:
            rows = compression_main(args, config)
        finally:
            snowg.stop_node()
        print_table(rows)
        if args.json:
            write_json(rows, args.json)
        return 0
    try:
        res = measure_all(systems_for(args, config), args, args.clients, full=True)
        rows = rows_for(res, args.clients, args, main=True)
        points = {args.clients: res}
        if args.plot:
            sizes = (
                [int(x) for x in args.plot_sizes.split(",")]
                if args.plot_sizes
                else [max(args.nodes, args.clients // 4), max(args.nodes, args.clients // 2)]
            )
            for n in sizes:
                if n not in points:
                    points[n] = measure_all(systems_for(args, config), args, n, full=False)
            for n in sorted(points):
                if n != args.clients:
                    rows += rows_for(points[n], n, args, main=False)
    finally:
        snowg.stop_node()
    samples = min(len(r["lat"]) for r in res.values())
    print(
        f"{args.nodes} nodes x {args.clients} clients (rooms of {args.room_size or args.clients}), "
        f"{args.broadcasts} sequential broadcasts of {args.size} B per system in {args.rounds} alternating rounds "
        f"(latency percentiles over {samples} samples: p{tail_pct(samples)}"
        f"{'' if tail_pct(samples) == 99 else '; p99 needs --broadcasts 1000'}), "
        f"a burst of {args.burst} per round (deliveries/s and CPU per delivery: medians of {args.rounds} bursts), "
        f"{args.loadgens} load generators"
    )
    print("ratio = snowg / baseline; the baseline of each row:")
    for prefix, what in BASELINES.items():
        if prefix == "socketio." and "socketio" not in res:
            what += ": not installed or --no-socketio, skipped"
        print(f"  {prefix}*: {what}")
    print_table(rows)
    if "stuck" in res["snowg"]:
        print(f"\nstuck runs ({args.stuck_broadcasts} broadcasts each, one never-reading client added):")
        for name in ("snowg", "queued", "inline"):
            st = res[name]["stuck"]
            print(f"  {name}: broadcasts timed out {st['timeouts']}, starved clients {st['starved']}")
    if args.json:
        write_json(rows, args.json)
    if args.plot:
        plot(points, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
