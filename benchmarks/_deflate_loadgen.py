"""A load generator of the compressed-rooms benchmark: many raw WebSocket clients in one gevent process.

Run as ``python _deflate_loadgen.py``; takes commands on stdin, one JSON per line:

* ``{"cmd": "open", "port": p, "n": n, "deflate": true}``: open ``n`` clients
  (offering ``permessage-deflate; client_max_window_bits`` as Chromium does,
  or nothing), answer ``ready <opened> <the server's Sec-WebSocket-Extensions or ->``;
* ``{"cmd": "expect", "k": k}``: answer ``done <k>`` once every client has
  received ``k`` messages;
* ``{"cmd": "stats"}``: answer ``stats <bytes received> <messages> <compressed> <bad>``
  (bytes: every byte read from the sockets after the handshakes);
* ``{"cmd": "quit"}``.

Client 0 inflates and parses every message (``bad`` counts those that are not
the JSON sent); the others only count frames and bytes, as the server's cost
is what is measured.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from typing import Dict, List

import gevent
from gevent.fileobject import FileObject
from gevent.pool import Pool

from _fanout_common import raise_nofile
from _fanout_loadgen import upgrade

TAIL = b"\x00\x00\xff\xff"
counts: List[int] = []
reached: Dict[int, int] = {}  # k -> clients that have received k messages
waiting: Dict[int, bool] = {}
totals = {"bytes": 0, "messages": 0, "compressed": 0, "bad": 0}
keep: list = []


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def handshake(port: int, deflate: bool):
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    s, head, rest = upgrade(port, "/chat", headers=ext)
    answered = "-"
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            answered = value.strip()
    return s, rest, answered


def _count(idx: int) -> None:
    counts[idx] += 1
    k = counts[idx]
    n = reached.get(k, 0) + 1
    reached[k] = n
    if n == len(counts) and waiting.pop(k, False):
        say(f"done {k}")


def reader(idx: int, s, buf: bytes, no_context: bool) -> None:
    buf = bytearray(buf)
    totals["bytes"] += len(buf)
    inflater = zlib.decompressobj(-15)
    unpack_from = struct.unpack_from
    try:
        while True:
            size, pos = len(buf), 0
            while size - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1] & 0x7F
                if b1 == 126:
                    if size - pos < 4:
                        break
                    n, hl = unpack_from("!H", buf, pos + 2)[0], 4
                elif b1 == 127:
                    if size - pos < 10:
                        break
                    n, hl = unpack_from("!Q", buf, pos + 2)[0], 10
                else:
                    n, hl = b1, 2
                end = pos + hl + n
                if end > size:
                    break
                op = b0 & 0x0F
                if op in (1, 2):
                    totals["messages"] += 1
                    if b0 & 0x40:
                        totals["compressed"] += 1
                    if idx == 0:
                        payload = bytes(buf[pos + hl : end])
                        try:
                            if b0 & 0x40:
                                if no_context:
                                    inflater = zlib.decompressobj(-15)
                                payload = inflater.decompress(payload + TAIL)
                            json.loads(payload)
                        except ValueError:
                            totals["bad"] += 1
                    _count(idx)
                elif op == 8:
                    return
                pos = end
            del buf[:pos]
            data = s.recv(262144)
            if not data:
                return
            totals["bytes"] += len(data)
            buf += data
    except OSError:
        return


def open_all(port: int, n: int, deflate: bool, concurrency: int) -> str:
    answered = ["-"]
    pool = Pool(concurrency)

    def one(i: int) -> None:
        for attempt in range(5):
            try:
                s, rest, ext = handshake(port, deflate)
                break
            except (OSError, ConnectionError):
                if attempt == 4:
                    raise
                gevent.sleep(0.2 * (attempt + 1))
        answered[0] = ext
        keep.append(s)
        gevent.spawn(reader, i, s, rest, "server_no_context_takeover" in ext)

    base = len(counts)
    counts.extend([0] * n)
    for i in range(n):
        pool.spawn(one, base + i)
    pool.join(raise_error=True)
    return answered[0]


def main() -> None:
    raise_nofile()
    stdin = FileObject(sys.stdin.fileno(), "rb")
    for line in stdin:
        cmd = json.loads(line)
        kind = cmd["cmd"]
        if kind == "open":
            ext = open_all(cmd["port"], cmd["n"], cmd["deflate"], cmd.get("concurrency", 32))
            say(f"ready {len(keep)} {ext}")
        elif kind == "expect":
            k = cmd["k"]
            if reached.get(k, 0) == len(counts):
                say(f"done {k}")
            else:
                waiting[k] = True
        elif kind == "stats":
            say("stats {bytes} {messages} {compressed} {bad}".format(**totals))
        elif kind == "quit":
            break
    for s in keep:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
