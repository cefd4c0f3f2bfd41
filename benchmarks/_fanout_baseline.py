"""The baseline of the fan-out benchmark: ONE process, plain gevent-websocket, inline broadcast loop.

Run as ``python _fanout_baseline.py``; prints ``ports <ws_port> <ctl_port>``.
The WSGI handler appends the socket to the lists of the rooms its path names
(``/r0`` or ``/r0,stuck``) and waits for the client to go. A control
connection takes lines:

* ``bcast <room> <r> <size> <count>``: ``count`` times, take t0 =
  time.monotonic() and loop ``ws.send(msg)`` over the room's sockets, inline
  (what a plain gevent-websocket program does);
* ``fill <room> <size> <count>``: send ``count`` messages of ``size`` bytes to
  the room's sockets, giving up after 0.5 s, then 100-byte ones for 0.5 s (a
  never-reading client's buffers are then full: a full socket still takes a
  few small writes); answers ``filled``;
* ``members <room>``: answers the number of sockets in the room.
"""

from __future__ import annotations

import sys

import gevent
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer
from geventwebsocket.handler import WebSocketHandler

from _fanout_common import message, raise_nofile, rooms_of

rooms: dict = {}


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]
    names = rooms_of(environ.get("PATH_INFO", "/"))
    for name in names:
        rooms.setdefault(name, []).append(ws)
    try:
        while ws.receive() is not None:
            pass
    except Exception:  # noqa: BLE001 - the client went
        pass
    finally:
        for name in names:
            try:
                rooms[name].remove(ws)
            except (KeyError, ValueError):
                pass
    return []


def broadcast(room: str, r: int, size: int, count: int) -> None:
    for j in range(count):
        msg = message(r + j, room, size)
        for ws in list(rooms.get(room, ())):
            try:
                ws.send(msg)
            except Exception:  # noqa: BLE001 - a closed socket: skip it
                pass


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
                    for ws in list(rooms.get(parts[1], ())):
                        ws.send(big)
            # A full socket may still take a few small writes: fill those too.
            with gevent.Timeout(0.5, False):
                while True:
                    for ws in list(rooms.get(parts[1], ())):
                        ws.send("f" * 100)
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
