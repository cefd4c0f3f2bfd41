"""What snowg takes over from gevent-websocket 0.10.1 (its last release), and why.

gevent-websocket's ``WebSocketHandler`` does the HTTP upgrade well and snowg
keeps it (it is what existing gevent servers already run). Its ``WebSocket``
object is not used for IO, because in 0.10.1:

* ``close(code, reason)`` sends a close frame whose payload is only the reason
  (the status code is dropped): a malformed close frame;
* two greenlets sending at once raise ``ConcurrentObjectUseError`` (no writer
  discipline);
* there is no maximum message size (a frame's announced length is read into
  memory, whatever it is);
* there are no server pings.

So snowg reads frames itself from the handler's buffered ``rfile`` (which may
already hold bytes read past the HTTP request) and writes through one writer
greenlet per connection on the handler's socket. When the connection ends,
:func:`release` marks the library's object closed, so that the handler's
``finally`` (``if not websocket.closed: websocket.close()``) does not send its
malformed close frame after snowg's correct one.
"""

from __future__ import annotations

from typing import Any, Tuple


def take_over(ws: Any) -> Tuple[Any, Any]:
    """The ``(socket, rfile)`` under a gevent-websocket ``WebSocket``."""
    handler = ws.handler
    return handler.socket, handler.rfile


def release(ws: Any) -> None:
    """Mark the library's ``WebSocket`` closed so that it never writes again."""
    ws.closed = True
