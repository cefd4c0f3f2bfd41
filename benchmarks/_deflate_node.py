"""The node side of the compressed-rooms benchmark (``broadcast_fanout.py --compression``).

Imported by the node OS process (``--import _deflate_node``): :func:`start`
serves ``snowg.ws`` with or without permessage-deflate, every client joining
room ``chat``; :func:`broadcast` is one ``snowg.ws.broadcast`` of the text it
is given.
"""

from __future__ import annotations

from typing import Any, Dict

import snowg
import snowg.ws as ws

from _fanout_common import raise_nofile

raise_nofile()

ROOM = "chat"
_servers: Dict[int, Any] = {}


def _handler(conn: ws.Connection) -> None:
    conn.join(ROOM)
    while conn.receive() is not None:
        pass


@snowg.spawnable
def start(compression: bool, context_takeover: bool = False, shared_context: bool = True) -> int:
    """Serve on 127.0.0.1 (any port), compressing or not; no server pings (nothing but broadcasts on the wire)."""
    server = ws.serve(
        ("127.0.0.1", 0),
        _handler,
        compression=compression,
        compression_context_takeover=context_takeover,
        compression_shared_context=shared_context,
        ping_interval=None,
    )
    _servers[server.port] = server
    return server.port


@snowg.spawnable
def broadcast(text: str) -> int:
    return ws.broadcast(ROOM, text)


@snowg.spawnable
def members() -> int:
    return len(ws.members(ROOM))
