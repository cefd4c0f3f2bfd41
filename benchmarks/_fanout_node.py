"""The snowg side of the fan-out benchmark: imported by each node OS process (``--import _fanout_node``).

:func:`start` runs a ``snowg.ws`` server whose handler joins the rooms named by
the request path (``/r0`` or ``/r0,stuck``) and then only waits for the client
to go, and registers the ``fanout_ctl`` process, which broadcasts on command:

* ``('bcast', room, r, size, count)``: ``count`` broadcasts numbered r, r+1...,
  each stamped with ``time.monotonic()`` just before ``snowg.ws.broadcast``;
* ``('fill', room, size, count, reply_to)``: ``count`` broadcasts of ``size``
  bytes (to fill a never-reading client's buffers), then ``'filled'``.
"""

from __future__ import annotations

from typing import Any, Dict, List

import snowg
import snowg.ws as ws

from _fanout_common import message, raise_nofile, rooms_of

raise_nofile()

CTL = "fanout_ctl"
_servers: Dict[int, Any] = {}


def _handler(conn: ws.Connection) -> None:
    for room in rooms_of(conn.path):
        conn.join(room)
    while conn.receive() is not None:
        pass


def _ctl() -> None:
    broadcast = ws.broadcast
    while True:
        msg = snowg.receive()
        kind = msg[0]
        if kind == "bcast":
            _, room, r, size, count = msg
            for j in range(count):
                broadcast(room, message(r + j, room, size))
        elif kind == "fill":
            _, room, size, count, reply_to = msg
            big = "f" * size
            for _ in range(count):
                broadcast(room, big)
            snowg.send(reply_to, "filled")
        elif kind == "stop":
            return


@snowg.spawnable
def start(**options: Any) -> int:
    """Start the WebSocket server (127.0.0.1, any port) and the ``fanout_ctl`` process; return the port."""
    server = ws.serve(("127.0.0.1", 0), _handler, **options)
    _servers[server.port] = server
    if snowg.whereis(CTL) is None:
        snowg.register(CTL, snowg.spawn(_ctl))
    return server.port


@snowg.spawnable
def member_count(room: str) -> int:
    return len(ws.members(room))


@snowg.spawnable
def connected() -> List[str]:
    return snowg.nodes()


@snowg.spawnable
def room_count(room: str) -> int:
    """``snowg.ws.count(room)``: the room's members on every node, as this node knows them."""
    return ws.count(room)


@snowg.spawnable
def route_to_every_node(on: bool) -> None:
    """The --routing baseline: room broadcasts go to every connected node, as before interest routing."""
    from snowg.ws import _rooms

    _rooms._to_every_node = on


@snowg.spawnable
def room_frames_sent() -> int:
    """Room-broadcast frames this node has queued for the other nodes, in all."""
    from snowg.cluster import frames_sent
    from snowg.ws._rooms import ROOM_BROADCAST

    return sum(frames_sent(n, ROOM_BROADCAST) for n in snowg.nodes())
