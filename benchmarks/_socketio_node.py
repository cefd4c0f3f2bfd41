"""The python-socketio peer of the fan-out benchmark: ONE Socket.IO server process of a Redis-backed cluster.

Run as ``python _socketio_node.py REDIS_PORT``; prints ``ports <ws_port> <ctl_port>``.

What a user picking python-socketio would run for rooms across processes:
``socketio.Server(async_mode="gevent", client_manager=socketio.RedisManager(...))``
served by gevent's ``pywsgi.WSGIServer`` with gevent-websocket's handler (the
server python-socketio documents for gevent), the process monkey-patched (the
RedisManager requires it under gevent). Clients connect with the WebSocket
transport only (``/socket.io/?EIO=4&transport=websocket&room=r0``); the
``connect`` handler puts them in the rooms named by ``room`` (``r0`` or
``r0,stuck``). An emit to a room publishes it on Redis; every server (this one
too) gets it from its Redis subscription and sends it to its local members
(engine.io queues each packet for each client's writer greenlet).

A control connection takes lines:

* ``bcast <room> <r> <size> <count>``: ``count`` times, take t0 =
  time.monotonic() and ``sio.emit("m", text, to=room)``;
* ``members <room>``: answers the number of this server's clients in the room.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sys  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import socketio  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from gevent.server import StreamServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

from _fanout_common import message, raise_nofile  # noqa: E402

logging.getLogger("socketio").setLevel(logging.ERROR)
logging.getLogger("engineio").setLevel(logging.ERROR)


def make_server(redis_port: int) -> socketio.Server:
    mgr = socketio.RedisManager(f"redis://127.0.0.1:{redis_port}/0")
    sio = socketio.Server(
        async_mode="gevent",
        client_manager=mgr,
        transports=["websocket"],
        logger=False,
        engineio_logger=False,
    )

    @sio.event
    def connect(sid, environ, auth=None):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        for room in query.get("room", ["r0"])[0].split(","):
            if room:
                sio.enter_room(sid, room)

    return sio


def members(sio: socketio.Server, room: str) -> int:
    return len(sio.manager.rooms.get("/", {}).get(room, {}))


def control(sio: socketio.Server):
    def serve(sock, _address) -> None:
        f = sock.makefile("rwb")
        for line in f:
            parts = line.decode().split()
            if not parts:
                continue
            if parts[0] == "bcast":
                room, r, size, count = parts[1], int(parts[2]), int(parts[3]), int(parts[4])
                for j in range(count):
                    sio.emit("m", message(r + j, room, size), to=room)
            elif parts[0] == "members":
                f.write(f"{members(sio, parts[1])}\n".encode())
                f.flush()

    return serve


def main() -> None:
    raise_nofile()
    sio = make_server(int(sys.argv[1]))
    # The Redis subscription starts with the first client (python-socketio
    # initialises its manager then); start it now instead, so that no
    # broadcast is published before every server listens.
    sio.manager_initialized = True
    sio.manager.initialize()
    server = WSGIServer(("127.0.0.1", 0), socketio.WSGIApp(sio), handler_class=WebSocketHandler, log=None, backlog=1024)
    server.start()
    ctl = StreamServer(("127.0.0.1", 0), control(sio))
    ctl.start()
    print(f"ports {server.server_port} {ctl.server_port}", flush=True)
    # Until the parent closes our stdin.
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()


if __name__ == "__main__":
    main()
