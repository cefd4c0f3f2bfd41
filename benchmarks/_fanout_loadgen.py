"""A load generator of the fan-out benchmark: many raw WebSocket clients in one gevent process.

Run as ``python _fanout_loadgen.py``; takes commands on stdin, one JSON per line:

* ``{"cmd": "open", "conns": [[port, path, count, proto], ...], "concurrency": 64}``:
  open the clients (path ``/r0`` joins room r0), answer ``ready <opened>``;
  ``proto`` is ``"ws"`` (a plain WebSocket at ``path``) or ``"sio"`` (a
  Socket.IO client, WebSocket transport only: it upgrades at
  ``/socket.io/?EIO=4&transport=websocket&room=r0``, waits for engine.io's
  open packet, connects to the default namespace with ``40`` and waits for
  the server's ``40{...}``);
* ``{"cmd": "stuck", "port": p, "path": "/r0,stuck"}``: open one more client
  that never reads after its handshake (small SO_RCVBUF), answer ``stuck-ready``;
* ``{"cmd": "counts"}``: answer ``counts <json list>``, the messages each
  client (in "open" order) got since the last ``reset``;
* ``{"cmd": "reset"}``: zero those counts (answers ``reset``);
* ``{"cmd": "reads"}``: answer ``reads <n>``, the socket reads that returned
  data so far (frames per read tell how much the server coalesced);
* ``{"cmd": "quit"}``.

Each received broadcast ``'<r> <room> <t0> ...'`` (for Socket.IO, the text
of an event packet ``42["m","<r> <room> <t0> ..."]``) is stamped with
time.monotonic() when its bytes were read; when all of this process's
clients in ``room`` have broadcast ``r``, it prints
``done <r> <clients> <last arrival> <min t0>``. Pings are answered with pongs
(engine.io's ``2`` with ``3``).
"""

from __future__ import annotations

import base64
import json
import os
import socket as pysocket
import struct
import sys
import time
from typing import Iterator, Tuple

import gevent
from gevent import socket
from gevent.fileobject import FileObject
from gevent.pool import Pool

from _fanout_common import raise_nofile, rooms_of

out = sys.stdout
counts: list = []
expected: dict = {}  # room -> how many of this process's clients are in it
stats: dict = {}  # r -> [count, last arrival, min t0]
keep: list = []  # sockets (the stuck one included), so they stay open
reads = [0]  # socket reads that returned data


def say(line: str) -> None:
    out.write(line + "\n")
    out.flush()


def upgrade(port: int, path: str, rcvbuf: int = 0, headers: str = ""):
    """A WebSocket at ``path`` on 127.0.0.1:``port``: (socket, the answer's head, what followed it)."""
    s = socket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, rcvbuf)
    s.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:80])
    s.settimeout(None)
    return s, head.decode("latin-1"), rest


def handshake(port: int, path: str, rcvbuf: int = 0):
    s, _head, rest = upgrade(port, path, rcvbuf)
    return s, rest


def pong(s, payload: bytes, opcode: int = 0xA) -> None:
    """A masked frame (a pong by default) with ``payload`` (< 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked)


SIO_EVENT = b'42["m","'  # a Socket.IO event "m" with one string argument


def sio_handshake(port: int, path: str):
    """A Socket.IO client on the WebSocket transport, connected to the default namespace: (socket, rest)."""
    query = "&room=" + ",".join(rooms_of(path))
    s, rest = handshake(port, "/socket.io/?EIO=4&transport=websocket" + query)
    buf = bytearray(rest)
    s.settimeout(30)
    try:
        for want, answer in ((b"0{", b"40"), (b"40", None)):
            while True:
                found = False
                for op, start, _end in complete_frames(buf):
                    if op == 1 and bytes(buf[start : start + len(want)]) == want:
                        found = True
                        break
                if found:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the Socket.IO handshake")
                buf += chunk
            if answer is not None:
                pong(s, answer, 0x1)
    finally:
        s.settimeout(None)
    return s, bytes(buf)


def complete_frames(buf: bytearray) -> Iterator[Tuple[int, int, int]]:
    """``(opcode, payload start, payload end)`` of each whole unmasked frame at the head of ``buf``.

    Once the iteration ends (or is abandoned) the frames it yielded are removed
    from ``buf``; an incomplete frame at the end stays for the next read.
    """
    unpack_from = struct.unpack_from
    size = len(buf)
    pos = 0
    try:
        while size - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
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
            yield buf[pos] & 0x0F, pos + hl, end
            pos = end
    finally:
        del buf[:pos]


def reader(idx: int, s, buf: bytes, sio: bool = False) -> None:
    """Read frames for ever; account each broadcast."""
    buf = bytearray(buf)
    skip = len(SIO_EVENT) if sio else 0
    monotonic = time.monotonic
    now = monotonic()
    try:
        while True:
            for op, start, end in complete_frames(buf):
                if op == 1:
                    if sio and buf[start] != 0x34:  # not a "4..." socket.io packet: engine.io's
                        if end - start == 1 and buf[start] == 0x32:  # "2": ping
                            pong(s, b"3", 0x1)
                        continue
                    start += skip
                    head = bytes(buf[start : min(end, start + 80)]).split(b" ", 3)
                    if len(head) >= 3 and head[0].isdigit():
                        counts[idx] += 1
                        r = int(head[0])
                        t0 = float(head[2])
                        st = stats.get(r)
                        if st is None:
                            stats[r] = st = [0, now, t0]
                        st[0] += 1
                        if now > st[1]:
                            st[1] = now
                        if t0 < st[2]:
                            st[2] = t0
                        if st[0] == expected.get(head[1].decode(), -1):
                            say(f"done {r} {st[0]} {st[1]!r} {st[2]!r}")
                elif op == 9:
                    pong(s, bytes(buf[start:end]))
                elif op == 8:
                    return
            data = s.recv(262144)
            if not data:
                return
            reads[0] += 1
            buf += data
            now = monotonic()
    except OSError:
        return


def open_all(conns: list, concurrency: int) -> int:
    jobs = []
    for port, path, n, *proto in conns:
        for _ in range(n):
            jobs.append((port, path, bool(proto) and proto[0] == "sio"))
    counts.extend([0] * len(jobs))
    for _port, path, _sio in jobs:
        for room in rooms_of(path):
            expected[room] = expected.get(room, 0) + 1
    pool = Pool(concurrency)
    opened = [0]

    def one(i: int, port: int, path: str, sio: bool) -> None:
        for attempt in range(5):
            try:
                s, rest = sio_handshake(port, path) if sio else handshake(port, path)
                break
            except (OSError, ConnectionError):
                if attempt == 4:
                    raise
                gevent.sleep(0.2 * (attempt + 1))
        keep.append(s)
        opened[0] += 1
        gevent.spawn(reader, i, s, rest, sio)

    for i, (port, path, sio) in enumerate(jobs):
        pool.spawn(one, i, port, path, sio)
    pool.join(raise_error=True)
    return opened[0]


def main() -> None:
    raise_nofile()
    stdin = FileObject(sys.stdin.fileno(), "rb")
    for line in stdin:
        cmd = json.loads(line)
        kind = cmd["cmd"]
        if kind == "open":
            say(f"ready {open_all(cmd['conns'], cmd.get('concurrency', 64))}")
        elif kind == "stuck":
            s, _rest = handshake(cmd["port"], cmd["path"], rcvbuf=4096)
            keep.append(s)  # and never read it
            say("stuck-ready")
        elif kind == "counts":
            say("counts " + json.dumps(counts))
        elif kind == "reads":
            say(f"reads {reads[0]}")
        elif kind == "reset":
            for i in range(len(counts)):
                counts[i] = 0
            stats.clear()
            say("reset")
        elif kind == "quit":
            break
    for s in keep:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
