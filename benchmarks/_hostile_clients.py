"""The WebSocket clients of the hostile benchmark (see hostile.py), one gevent process per role.

``python _hostile_clients.py clients``: the well-behaved clients. Commands on
stdin, one JSON object per line, each answered with one line:

* ``{"cmd": "open", "port": p, "count": n}``: open n clients, answer ``ready <n>``;
* ``{"cmd": "reset"}``: forget what was received (``reset``);
* ``{"cmd": "report"}``: ``report <json>``: deliveries, the latency
  percentiles in ms (arrival - the broadcast's scheduled time) and the
  fewest deliveries any one client had;
* ``{"cmd": "quit"}``.

``python _hostile_clients.py ping|continuation PORT``: an attacker. It opens
a connection and sends, as fast as the socket takes them, masked ping frames
(``ping``) or one unfinished text message made of empty continuation frames
(``continuation``), reading and dropping whatever the server sends; when the
server closes it, it connects again. It prints ``attacking`` once its first
connection is up, and on SIGTERM one line ``summary <json>``: connections
made, refused, bytes sent, the close codes it received, and how many times
the server still held the TCP connection 1 s after it had ended it (its
writes were neither refused nor reset).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
from typing import Any, Dict, List

import gevent
from gevent.event import Event
from gevent.fileobject import FileObject

from _fanout_common import raise_nofile
from _fanout_loadgen import complete_frames, handshake, pong

out = sys.stdout


def say(line: str) -> None:
    out.write(line + "\n")
    out.flush()


# ----------------------------------------------------------------- clients

latencies: List[float] = []
per_client: List[int] = []
keep: list = []


def reader(idx: int, s: Any, buf: bytes) -> None:
    data = bytearray(buf)
    monotonic = time.monotonic
    now = monotonic()
    try:
        while True:
            for op, start, end in complete_frames(data):
                if op == 1:
                    head = bytes(data[start : min(end, start + 64)]).split(b" ", 2)
                    if len(head) >= 2 and head[0].isdigit():
                        latencies.append((now - float(head[1])) * 1000.0)
                        per_client[idx] += 1
                elif op == 9:
                    pong(s, bytes(data[start:end]))
                elif op == 8:
                    return
            chunk = s.recv(262144)
            if not chunk:
                return
            data += chunk
            now = monotonic()
    except OSError:
        return


def pct(xs: List[float], p: float) -> Any:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def clients_main() -> None:
    stdin = FileObject(sys.stdin.fileno(), "rb")
    for line in stdin:
        cmd = json.loads(line)
        kind = cmd["cmd"]
        if kind == "open":
            start = len(per_client)
            for i in range(cmd["count"]):
                s, rest = handshake(cmd["port"], "/")
                keep.append(s)
                per_client.append(0)
                gevent.spawn(reader, start + i, s, rest)
            say(f"ready {cmd['count']}")
        elif kind == "reset":
            latencies.clear()
            for i in range(len(per_client)):
                per_client[i] = 0
            say("reset")
        elif kind == "report":
            lat = list(latencies)
            report = {
                "deliveries": len(lat),
                "p50": pct(lat, 50),
                "p99": pct(lat, 99),
                "max": max(lat) if lat else None,
                "fewest": min(per_client) if per_client else 0,
            }
            say("report " + json.dumps(report))
        elif kind == "quit":
            break
    for s in keep:
        s.close()


# --------------------------------------------------------------- attackers


def masked(opcode_byte: int, count: int) -> bytes:
    """``count`` empty masked frames whose first byte is ``opcode_byte``."""
    return (bytes([opcode_byte, 0x80]) + os.urandom(4)) * count


def attack_main(mode: str, port: int) -> None:
    stats: Dict[str, Any] = {"connections": 0, "refused": 0, "bytes_sent": 0, "closes": {}, "held_after_close": 0}
    stop = Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    batch = masked(0x89, 10000) if mode == "ping" else masked(0x00, 10000)  # ping / continuation, FIN unset
    first = masked(0x01, 1)  # continuation mode: a text frame, FIN unset, empty

    def drain(s: Any, buf: bytes) -> None:
        data = bytearray(buf)
        try:
            while True:
                while len(data) >= 2:
                    b1 = data[1] & 0x7F
                    hl = 2 + (2 if b1 == 126 else 8 if b1 == 127 else 0)
                    if len(data) < hl:
                        break
                    n = b1 if b1 < 126 else int.from_bytes(data[2:hl], "big")
                    if len(data) < hl + n:
                        break
                    if data[0] & 0x0F == 8:
                        code = str(struct.unpack_from("!H", data, hl)[0]) if n >= 2 else "none"
                        stats["closes"][code] = stats["closes"].get(code, 0) + 1
                    del data[: hl + n]
                chunk = s.recv(262144)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return

    def flood(s: Any) -> None:
        try:
            if mode == "continuation":
                s.sendall(first)
                stats["bytes_sent"] += len(first)
            while True:
                s.sendall(batch)
                stats["bytes_sent"] += len(batch)
        except OSError:
            pass

    def attack() -> None:
        announced = False
        while True:
            try:
                s, rest = handshake(port, "/")
            except (OSError, ConnectionError):
                stats["refused"] += 1
                gevent.sleep(0.01)  # a refused attacker tries again soon, not in a tight loop
                continue
            stats["connections"] += 1
            if not announced:
                say("attacking")
                announced = True
            sender = gevent.spawn(flood, s)
            reader = gevent.spawn(drain, s, rest)
            gevent.wait([sender, reader], count=1)
            if not reader.dead:
                reader.join(timeout=1)  # the server reset the connection: the reader sees it too
            elif not sender.dead:
                # The server ended the connection (EOF): once it has also dropped
                # it, the next write is reset. A server that still holds it past
                # 1 s (RFC 6455 7.1.1 wants the server to close first) is counted.
                sender.join(timeout=1)
                if not sender.dead:
                    stats["held_after_close"] += 1
            s.close()
            sender.kill()
            reader.kill()

    attacker = gevent.spawn(attack)
    stop.wait()
    attacker.kill()
    say("summary " + json.dumps(stats))


def main() -> None:
    raise_nofile()
    if sys.argv[1] == "clients":
        clients_main()
    else:
        attack_main(sys.argv[1], int(sys.argv[2]))


if __name__ == "__main__":
    main()
