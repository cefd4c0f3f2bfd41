"""WebSocket connections as snowg processes, and rooms whose broadcasts reach every node.

Quick start::

    import snowg.ws as ws

    def chat(conn):                      # runs as a snowg process per client
        conn.join('lobby')
        while (text := conn.receive()) is not None:
            ws.broadcast_except('lobby', text, conn)

    server = ws.serve(('0.0.0.0', 8000), chat)   # started; server.stop() stops it

Frames from the client also arrive in the handler's mailbox as
``WsMessage(conn, data)`` (and ``WsClosed(conn, code, reason)`` at the end),
so a handler can wait for client frames and process messages in one
``snowg.receive()``; ``conn.receive()`` takes only this connection's frames.
See :mod:`snowg.ws.connection` for the queues, close codes and pings.

A room is a process group of connections (:mod:`snowg.pg`, scope
``snowg_ws``): :func:`broadcast` reaches its members on every node, sending
to the nodes that have members and no other; :func:`members` and
:func:`rooms` are this node's, :func:`count` the whole cluster's
(eventually consistent).
"""

from ._handshake import WebSocketHandler
from ._rooms import broadcast, broadcast_except, count, members, rooms
from .app import WebSocketApp, WebSocketServer, serve
from .connection import CLOSE_OVERFLOW, Connection, WsClosed, WsMessage

__all__ = [
    "CLOSE_OVERFLOW",
    "Connection",
    "WebSocketApp",
    "WebSocketHandler",
    "WebSocketServer",
    "WsClosed",
    "WsMessage",
    "broadcast",
    "broadcast_except",
    "count",
    "members",
    "rooms",
    "serve",
]
