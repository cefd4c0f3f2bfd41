"""The baselines of the fan-out benchmark: ONE process, plain gevent-websocket, two broadcast styles.

Run as ``python _fanout_baseline.py [--queued]``; prints ``ports <ws_port> <ctl_port>``.
The WSGI handler appends the client to the lists of the rooms its path names
(``/r0`` or ``/r0,stuck``) and waits for the client to go.

Inline (the default): a broadcast loops ``ws.send(msg)`` over the room's
sockets in the broadcasting greenlet (what a plain gevent-websocket program
does: the frame is re-encoded per client, and a client whose socket is full
blocks the loop).

Queued (``--queued``, as ``snowg.ws`` does it): each client has a bounded
``gevent.queue.Queue`` (1,024 frames, like snowg's ``queue_size``) and a writer
greenlet; a broadcast encodes the frame ONCE and ``put_nowait``s the same
``bytes`` on every member's queue (a full queue closes that client, as
snowg's overflow policy does); the writer takes a frame, drains whatever else
is queued without waiting and writes it all with one ``sendall`` (the same
write coalescing as snowg's writer).

A control connection takes lines:

* ``bcast <room> <r> <size> <count>``: ``count`` times, take t0 =
  time.monotonic() and broadcast it to the room (inline or queued);
* ``fill <room> <size> <count>``: send ``count`` messages of ``size`` bytes to
  the room's sockets, giving up after 0.5 s, then 100-byte ones for 0.5 s (a
  never-reading client's buffers are then full: a full socket still takes a
  few small writes); answers ``filled``;
* ``members <room>``: answers the number of sockets in the room.
"""

from __future__ import annotations

import struct
import sys

import gevent
from gevent import queue as gqueue
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer
from geventwebsocket.handler import WebSocketHandler

from _fanout_common import message, raise_nofile, rooms_of

QUEUED = "--queued" in sys.argv
QUEUE_SIZE = 1024  # snowg.ws's default queue_size

rooms: dict = {}


class Client:
    """A queued-mode client: its socket, its bounded queue and its writer greenlet."""

    __slots__ = ("ws", "queue", "writer", "closed")

    def __init__(self, ws) -> None:
        self.ws = ws
        self.queue: gqueue.Queue = gqueue.Queue(QUEUE_SIZE)
        self.closed = False
        self.writer = gevent.spawn(self.write_loop)

    def put(self, frame: bytes) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except gqueue.Full:  # the client does not read: close it, nobody else waits
            self.close()

    def write_loop(self) -> None:
        q = self.queue
        sendall = self.ws.stream.handler.socket.sendall
        try:
            while True:
                frame = q.get()
                if q.qsize():
                    frames = [frame]
                    while q.qsize():
                        frames.append(q.get_nowait())
                    frame = b"".join(frames)
                sendall(frame)
        except Exception:  # noqa: BLE001 - the client went
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.ws.stream.handler.socket.shutdown(2)
            except Exception:  # noqa: BLE001
                pass


def encode_text(text: str) -> bytes:
    """One unmasked text frame (FIN): header + UTF-8 payload."""
    payload = text.encode("utf-8")
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]
    names = rooms_of(environ.get("PATH_INFO", "/"))
    member = Client(ws) if QUEUED else ws
    for name in names:
        rooms.setdefault(name, []).append(member)
    try:
        while ws.receive() is not None:
            pass
    except Exception:  # noqa: BLE001 - the client went
        pass
    finally:
        for name in names:
            try:
                rooms[name].remove(member)
            except (KeyError, ValueError):
                pass
        if QUEUED:
            member.close()
            member.writer.kill(block=False)
    return []


def send_text(members: list, text: str) -> None:
    if QUEUED:
        frame = encode_text(text)  # once per broadcast, shared by every queue
        for c in list(members):
            c.put(frame)
    else:
        for ws in list(members):
            try:
                ws.send(text)
            except Exception:  # noqa: BLE001 - a closed socket: skip it
                pass


def broadcast(room: str, r: int, size: int, count: int) -> None:
    for j in range(count):
        send_text(rooms.get(room, ()), message(r + j, room, size))


def control(sock, _address) -> None:
    f = sock.makefile("rwb")
    for line in f:
        parts = line.decode().split()
        if not parts:
            continue
        if parts[0] == "bcast":
            broadcast(parts[1], int(parts[2]), int(parts[3]), int(parts[4]))
        elif parts[0] == "fill":
            big = "f" * int(parts[2])
            with gevent.Timeout(0.5, False):
                for _ in range(int(parts[3])):
                    send_text(rooms.get(parts[1], ()), big)
                    gevent.sleep(0)  # queued: let the writers write
            # A full socket may still take a few small writes: fill those too.
            with gevent.Timeout(0.5, False):
                while True:
                    send_text(rooms.get(parts[1], ()), "f" * 100)
                    gevent.sleep(0)
            f.write(b"filled\n")
            f.flush()
        elif parts[0] == "members":
            f.write(f"{len(rooms.get(parts[1], ()))}\n".encode())
            f.flush()


def main() -> None:
    raise_nofile()
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None, backlog=1024)
    server.start()
    ctl = StreamServer(("127.0.0.1", 0), control)
    ctl.start()
    print(f"ports {server.server_port} {ctl.server_port}", flush=True)
    # Until the parent closes our stdin.
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()


if __name__ == "__main__":
    main()
