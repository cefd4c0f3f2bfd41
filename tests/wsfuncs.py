"""``@snowg.spawnable`` WebSocket helpers that peer nodes import (``modules=["wsfuncs"]``).

A node (a peer, or the test process itself) runs a WebSocket server with
:func:`start_server`; its clients drive it with small text commands (see
:func:`command_handler`). Tests look at a node's rooms with :func:`member_ids`
and :func:`room_names` (by rpc), and broadcast from a plain process of a node
with :func:`node_broadcast` (rpc runs it in a process there) or stream numbered
broadcasts with :func:`streamer`.

Everything that happens on a node and that a test waits for is reported to the
test's process with a message (never observed by polling a socket with sleeps).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, List, Optional

import gevent

import snowg
import snowg.ws as ws

# Servers started on this node, kept here so tests can stop them (and so they
# stay referenced after the rpc that started them has returned).
_servers: Dict[int, Any] = {}


def command_handler(conn: ws.Connection, report_to: Optional[snowg.Pid] = None) -> None:
    """Text commands from the client; each one is answered (except broadcasts' content).

    * ``join R`` / ``leave R`` -> ``joined R`` / ``left R``
    * ``bcast R text`` -> ``snowg.ws.broadcast(R, text)``, answered ``sent <n>``
    * ``bexc R text`` -> ``snowg.ws.broadcast_except(R, text, conn)``, answered ``sent <n>``
    * ``id`` -> ``id <conn.id>``
    * ``ping`` -> ``pong``

    With ``report_to``, the handler sends it ``('joined', node, conn.id, room)``
    after each join and ``('gone', node, conn.id, close_code)`` at the end.
    """
    node = snowg.node()
    try:
        while (msg := conn.receive()) is not None:
            if type(msg) is not str:
                continue
            cmd, _, arg = msg.partition(" ")
            if cmd == "join":
                conn.join(arg)
                conn.send("joined " + arg)
                if report_to is not None:
                    snowg.send(report_to, ("joined", node, conn.id, arg))
            elif cmd == "leave":
                conn.leave(arg)
                conn.send("left " + arg)
            elif cmd in ("bcast", "bexc"):
                room, _, text = arg.partition(" ")
                if cmd == "bcast":
                    n = ws.broadcast(room, text)
                else:
                    n = ws.broadcast_except(room, text, conn)
                conn.send(f"sent {n}")
            elif cmd == "id":
                conn.send(f"id {conn.id}")
            elif cmd == "ping":
                conn.send("pong")
    finally:
        if report_to is not None:
            snowg.send(report_to, ("gone", node, conn.id, conn.close_code))


@snowg.spawnable
def start_server(report_to: Optional[snowg.Pid] = None, **options: Any) -> int:
    """Start a WebSocket server on 127.0.0.1 (any free port) running :func:`command_handler`.

    ``options`` are :class:`snowg.ws.WebSocketApp` options (``queue_size``...).
    Returns the port.
    """
    server = ws.serve(("127.0.0.1", 0), partial(command_handler, report_to=report_to), **options)
    _servers[server.port] = server
    return server.port


@snowg.spawnable
def stop_server(port: int, timeout: float = 1.0) -> bool:
    """Stop a server started by :func:`start_server`; False if there is none on ``port``."""
    server = _servers.pop(port, None)
    if server is None:
        return False
    server.stop(timeout=timeout)
    return True


@snowg.spawnable
def member_ids(room: str) -> List[int]:
    """The ids of this node's connections in ``room`` (join order)."""
    return [c.id for c in ws.members(room)]


@snowg.spawnable
def room_names() -> List[str]:
    """``snowg.ws.rooms()`` of this node, sorted."""
    return sorted(ws.rooms())


@snowg.spawnable
def node_broadcast(room: str, data: Any) -> int:
    """``snowg.ws.broadcast`` from the calling process (an rpc runner: a plain process)."""
    return ws.broadcast(room, data)


@snowg.spawnable
def streamer(report_to: snowg.Pid, room: str, tag: str, tail: int = 50, pause: float = 0.001) -> None:
    """Broadcast ``'<tag> <i>'`` to ``room`` for i = 0, 1, 2... until told to finish.

    Reports ``('streaming', tag, self())`` first. On ``'finish'`` (checked
    between broadcasts) it sends ``tail`` more, then reports
    ``('streamed', tag, count)`` (count: how many it broadcast in all) and
    ends. ``pause`` seconds between broadcasts keep the stream going for as
    long as the test needs (and let the writers drain).
    """
    me = snowg.self()
    snowg.send(report_to, ("streaming", tag, me))
    i = 0
    stop_at: Optional[int] = None
    while stop_at is None or i < stop_at:
        ws.broadcast(room, f"{tag} {i}")
        i += 1
        if stop_at is None:
            try:
                snowg.receive(lambda m: m == "finish", timeout=0)
                stop_at = i + tail
            except snowg.Timeout:
                pass
        gevent.sleep(pause)
    snowg.send(report_to, ("streamed", tag, i))
