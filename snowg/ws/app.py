"""The WSGI application that turns WebSocket upgrades into snowg processes.

It runs in any gevent WSGI server whose handler is gevent-websocket's::

    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler
    server = WSGIServer(addr, WebSocketApp(handler, fallback_app=flask_app),
                        handler_class=WebSocketHandler)

or through :func:`serve`, which builds and starts such a server. For each
upgrade, the WSGI greenlet becomes the connection's *owner*: it spawns
``handler(conn)`` as a process (monitored), starts the connection's reader and
writer, and waits until the connection has ended, so that the server closes
the socket only after the close handshake.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional

import gevent
from gevent import ssl as gssl
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

from . import _wsfix
from .connection import Connection, Options, run_connection

log = logging.getLogger("snowg")

Handler = Callable[[Connection], Any]

_BAD_REQUEST = b"This URL accepts WebSocket connections only.\n"


class WebSocketApp:
    """A WSGI application: WebSocket upgrades run ``handler(conn)`` as a process.

    Args:
        handler: called as ``handler(conn)`` in a new snowg process per
            connection (it can be linked, monitored and sent messages; its
            pid is ``conn.pid``). When it returns (or calls
            ``snowg.exit('normal')``) the connection is closed with 1000;
            ``'shutdown'`` closes with 1001; an exception or any other reason
            closes with 1011 (the process layer logs the crash). The handler
            is not killed when the client goes: it gets ``None`` from
            ``conn.receive()`` (or ``WsClosed`` in its mailbox) and should
            return; later sends are dropped.
        fallback_app: a WSGI app for plain HTTP requests; without one they get
            ``400 Bad Request``.
        max_message_size: the largest message accepted from a client, in
            bytes; a larger one closes the connection with 1009 (checked on the
            frame header, before the payload is read).
        ping_interval: seconds between server pings; None for no pings.
        ping_timeout: seconds a pong may take; then the connection is closed
            with 1001.
        queue_size: outbound frames a connection may have waiting; one more
            closes it with 1008 (the client does not read).
        recv_queue_size: inbound messages that may wait unread in the
            handler's mailbox before the reader stops reading the socket.
        close_timeout: seconds a close handshake may take before the TCP
            connection is dropped.

    Raises:
        ValueError: an option out of range.
        TypeError: ``handler`` is not callable.
    """

    def __init__(
        self,
        handler: Handler,
        fallback_app: Optional[Callable[..., Iterable[bytes]]] = None,
        *,
        max_message_size: int = 1 << 20,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: float = 20.0,
        queue_size: int = 1024,
        recv_queue_size: int = 256,
        close_timeout: float = 5.0,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        self.handler = handler
        self.fallback_app = fallback_app
        self.options = Options(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            queue_size=queue_size,
            recv_queue_size=recv_queue_size,
            close_timeout=close_timeout,
        )
        self._connections: Dict[Connection, None] = {}

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point.

        For a WebSocket upgrade, blocks the server's greenlet until the
        connection has ended (the handler runs in its own process meanwhile)
        and returns an empty body; a plain request goes to ``fallback_app`` or
        gets a 400.
        """
        ws = environ.get("wsgi.websocket")
        if ws is None:
            if self.fallback_app is not None:
                return self.fallback_app(environ, start_response)
            if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                log.warning(
                    "WebSocket upgrade to %s reached snowg.ws.WebSocketApp without a websocket: "
                    "the server needs handler_class=geventwebsocket.handler.WebSocketHandler",
                    environ.get("PATH_INFO"),
                )
            start_response(
                "400 Bad Request",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_BAD_REQUEST)))],
            )
            return [_BAD_REQUEST]
        self._run_connection(ws, environ)
        return []

    def connections(self) -> List[Connection]:
        """The connections of this app that have not ended yet."""
        return list(self._connections)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> int:
        """Start closing every connection of this app; never blocks.

        Returns:
            How many connections were asked to close.
        """
        conns = [c for c in self._connections if not c.closed]
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block the caller until every connection has ended; False on timeout."""
        events = [c.finished for c in self._connections]
        done = gevent.wait(events, timeout=timeout)
        return len(done) == len(events)

    def _run_connection(self, ws: Any, environ: Dict[str, Any]) -> None:
        """Run one connection in the WSGI greenlet (which becomes its owner process)."""
        sock, rfile = _wsfix.take_over(ws)
        conn = Connection(sock, rfile, environ, self.options)
        self._connections[conn] = None
        try:
            run_connection(conn, self.handler)
        finally:
            self._connections.pop(conn, None)
            _wsfix.release(ws)


class _CooperativeTLS:
    """Wraps accepted sockets with gevent's cooperative ``SSLSocket``, for any ``ssl.SSLContext``.

    gevent's server calls ``ssl_context.wrap_socket``; a standard-library
    context would make blocking sockets (gevent's caution), so this adapter
    builds gevent's socket with the user's context.
    """

    def __init__(self, context: Any) -> None:
        self.context = context

    def wrap_socket(self, sock: Any, server_side: bool = True, **kwargs: Any) -> Any:
        if isinstance(self.context, gssl.SSLContext):
            return self.context.wrap_socket(sock, server_side=server_side, **kwargs)
        return gssl.SSLSocket(sock=sock, server_side=server_side, _context=self.context, **kwargs)


class WebSocketServer(WSGIServer):
    """A gevent ``WSGIServer`` with gevent-websocket's handler and a graceful :meth:`stop`.

    Access lines are not written (``log=None``); errors go to the ``snowg``
    logger. ``ssl_context`` may be a standard-library ``ssl.SSLContext``.
    """

    def __init__(self, listener: Any, application: WebSocketApp, ssl_context: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("handler_class", WebSocketHandler)
        kwargs.setdefault("log", None)
        kwargs.setdefault("error_log", log)
        self.app = application
        self._tls: Optional[_CooperativeTLS] = None
        if ssl_context is not None:
            self._tls = kwargs["ssl_context"] = _CooperativeTLS(ssl_context)
        super().__init__(listener, application, **kwargs)

    @property
    def port(self) -> int:
        """The port the server listens on (useful after binding port 0).

        Raises:
            RuntimeError: the server has no address yet (a listener not bound).
        """
        port = self.server_port
        if port is None:
            raise RuntimeError("the WebSocket server has no port: its listener is not bound")
        return port

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        """TLS handshake, then the request; a failed handshake is logged (INFO), not printed.

        gevent calls this only for a server made with an ``ssl_context``.
        """
        tls = self._tls
        if tls is None:
            return self.handle(client_socket, address)
        try:
            tls_socket = tls.wrap_socket(client_socket, **(self.ssl_args or {}))
        except (OSError, ValueError) as e:
            log.info("TLS handshake with %s:%s failed: %s", address[0], address[1], e)
            client_socket.close()
            return None
        try:
            return self.handle(tls_socket, address)
        finally:
            tls_socket.close()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, close every connection with 1001, wait, then drop the rest.

        Blocks the caller for at most ``timeout`` seconds (default: the app's
        ``close_timeout``) plus a moment to drop connections that did not
        finish their close handshake.
        """
        app = self.app
        if timeout is None:
            timeout = app.options.close_timeout
        self.close()
        app.close_all(1001, "server shutting down")
        if not app.wait_closed(timeout):
            for conn in app.connections():
                conn.abort("server stopped")
            app.wait_closed(1.0)
        if self.pool is not None:
            self.pool.join(timeout=1.0)
            self.pool.kill(block=True, timeout=1)


def serve(
    addr: Any,
    handler: Handler,
    ssl_context: Any = None,
    *,
    fallback_app: Optional[Callable[..., Iterable[bytes]]] = None,
    **options: Any,
) -> WebSocketServer:
    """Start a WebSocket server in the background and return it (never blocks).

    Args:
        addr: ``(host, port)`` (port 0: any free port, see ``server.port``)
            or a listening socket.
        handler: run as ``handler(conn)`` in a process per connection.
        ssl_context: a server ``ssl.SSLContext`` for ``wss://``.
        fallback_app: a WSGI app for plain HTTP requests.
        **options: the :class:`WebSocketApp` options (``max_message_size``,
            ``ping_interval``, ``ping_timeout``, ``queue_size``,
            ``recv_queue_size``, ``close_timeout``).

    Returns:
        The started :class:`WebSocketServer`; ``server.stop()`` stops it.

    Raises:
        OSError: the address cannot be bound.
        ValueError, TypeError: as :class:`WebSocketApp`.
    """
    app = WebSocketApp(handler, fallback_app, **options)
    server = WebSocketServer(addr, app, ssl_context=ssl_context)
    server.start()
    return server
