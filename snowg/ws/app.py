"""The WSGI application that turns WebSocket upgrades into snowg processes.

It runs in any gevent WSGI server whose handler is gevent-websocket's or,
better, snowg's subclass of it (which checks upgrades, their Origin and their
deadline before answering them, see ``_handshake``)::

    from gevent.pywsgi import WSGIServer
    server = WSGIServer(addr, WebSocketApp(handler, fallback_app=flask_app),
                        handler_class=snowg.ws.WebSocketHandler)

or through :func:`serve`, which builds and starts a :class:`WebSocketServer`
(that handler, plus a cap on connections). For each upgrade, the WSGI
greenlet becomes the connection's *owner*: it spawns ``handler(conn)`` as a
process (monitored), starts the connection's reader and writer, and waits
until the connection has ended, so that the server closes the socket only
after the close handshake.
"""

from __future__ import annotations

import logging
import resource
import socket
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import gevent
from gevent import ssl as gssl
from gevent.pywsgi import WSGIServer

from . import _frames, _wsfix
from ._deflate import DEFAULT_THRESHOLD, DeflateConfig
from ._handshake import (
    CHECKED,
    DEFAULT_HANDSHAKE_TIMEOUT,
    FailureLog,
    OriginCheck,
    OriginSpec,
    UpgradePolicy,
    WebSocketHandler,
)
from .connection import Connection, Options, run_connection

log = logging.getLogger("snowg")

Handler = Callable[[Connection], Any]

_BAD_REQUEST = b"This URL accepts WebSocket connections only.\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 28\r\n\r\ntoo many connections, sorry\n"
)
#: ``max_connections``'s default: this, or half the process's open-file limit if lower.
MAX_CONNECTIONS = 10_000


def default_max_connections() -> int:
    """10,000, or half of this process's open-file limit (``ulimit -n``) if that is lower."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))


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
        max_fragments: the most frames a client message may come in (empty
            ones count); one more closes the connection with 1009.
        ping_interval: seconds between server pings; None for no pings.
        ping_timeout: seconds a pong may take; then the connection is closed
            with 1001.
        queue_size: outbound frames a connection may have waiting; one more
            closes it with 1008 (the client does not read).
        recv_queue_size: inbound messages that may wait unread in the
            handler's mailbox before the reader stops reading the socket.
        close_timeout: seconds the server's close may take (what was queued
            is sent first) before the TCP connection is dropped; the client's
            close frame is then awaited 1 s at most.
        check_origin: which browser pages may connect (Phoenix's option).
            True: a request's ``Origin`` host must be its ``Host`` (scheme and
            port are not compared); a list of origins
            (``"https://example.com"``: that scheme, host and port;
            ``"//example.com"``: any scheme and port; ``"//*.example.com"``:
            and its subdomains); False: any. A request without ``Origin``
            (not a browser) is allowed. A refused upgrade gets ``403``.
        handshake_timeout: seconds within which a request's line and headers
            must arrive (also between keep-alive requests); a connection that
            has not sent them by then is closed, with no answer.
        max_connections: connections the server handles at once (WebSocket,
            plain HTTP and requests still arriving); one more is answered
            ``503`` and closed at once. Default: 10,000, or half the
            process's open-file limit if lower. Enforced by
            :class:`WebSocketServer` (``serve``); the request deadline and
            the upgrade checks by its handler, :class:`WebSocketHandler`.
        compression: negotiate permessage-deflate (RFC 7692) with clients
            that offer it (browsers do); False: never (every frame goes
            uncompressed). Needs :class:`WebSocketHandler` (it answers the
            offer).
        compression_threshold: the smallest message, in bytes, sent
            compressed (default 256); smaller ones go as they are.
        compression_shared_context: (default True) a client that allows
            server context takeover (browsers do) is answered without
            ``server_no_context_takeover``, and each room keeps one
            compressor per parameter set whose messages refer back to the
            room's earlier ones for the members that received exactly those
            (at most two compressions per broadcast and parameter set,
            whatever the room's size; a few times smaller frames for similar
            messages). False: answer ``server_no_context_takeover`` and
            compress every message on its own (no compressor kept per room;
            larger frames).
        compression_context_takeover: keep each connection's own compressor
            across messages instead (a broadcast then compresses once per
            member). Default False.

    Raises:
        ValueError: an option out of range.
        TypeError: ``handler`` is not callable, ``check_origin`` not a bool
            or a list of origins.
    """

    def __init__(
        self,
        handler: Handler,
        fallback_app: Optional[Callable[..., Iterable[bytes]]] = None,
        *,
        max_message_size: int = 1 << 20,
        max_fragments: int = 1024,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: float = 20.0,
        queue_size: int = 1024,
        recv_queue_size: int = 256,
        close_timeout: float = 5.0,
        check_origin: OriginSpec = True,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_connections: Optional[int] = None,
        compression: bool = True,
        compression_threshold: int = DEFAULT_THRESHOLD,
        compression_context_takeover: bool = False,
        compression_shared_context: bool = True,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        self.handler = handler
        self.fallback_app = fallback_app
        deflate = (
            DeflateConfig(
                threshold=compression_threshold,
                context_takeover=compression_context_takeover,
                shared_context=compression_shared_context,
            )
            if compression
            else None
        )
        self.options = Options(
            max_message_size=max_message_size,
            max_fragments=max_fragments,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            queue_size=queue_size,
            recv_queue_size=recv_queue_size,
            close_timeout=close_timeout,
            compression=deflate,
        )
        self.upgrade_policy = UpgradePolicy(OriginCheck(check_origin), handshake_timeout, deflate)
        if max_connections is None:
            max_connections = default_max_connections()
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._connections: Dict[Connection, None] = {}
        self._failures = FailureLog()
        self._warned_handler = False

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
            if environ.get("HTTP_UPGRADE", "").lower() == "websocket" and not self._warned_handler:
                self._warned_handler = True  # a configuration hint, said once
                log.warning(
                    "WebSocket upgrade to %r reached snowg.ws.WebSocketApp without a websocket: "
                    "the server needs handler_class=snowg.ws.WebSocketHandler",
                    str(environ.get("PATH_INFO"))[:200],
                )
            start_response(
                "400 Bad Request",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_BAD_REQUEST)))],
            )
            return [_BAD_REQUEST]
        if not environ.get(CHECKED) and not self._origin_allowed(ws, environ):
            return []
        self._run_connection(ws, environ)
        return []

    def _origin_allowed(self, ws: Any, environ: Dict[str, Any]) -> bool:
        """The Origin check, for an upgrade that a handler other than snowg's has already answered.

        The 101 is sent by then, so a refused client gets a close frame
        (1008) instead of a 403, before its handler runs.
        """
        origin = environ.get("HTTP_ORIGIN")
        host_header = environ.get("HTTP_HOST")
        if self.upgrade_policy.check_origin.allows(origin, host_header):
            return True
        client = str(environ.get("REMOTE_ADDR", "?"))
        self._failures.report(
            client,
            logging.WARNING,
            "WebSocket from %s refused: origin %r not allowed (Host %r); closed with 1008",
            client,
            (origin or "")[:200],
            (host_header or "")[:200],
        )
        sock, _ = _wsfix.take_over(ws)
        try:
            sock.sendall(_frames.encode_close(_frames.CLOSE_POLICY_VIOLATION, "origin not allowed"))
        except OSError:
            pass
        _wsfix.release(ws)
        return False

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


class _TLSDeadline(BaseException):
    """A TLS handshake that did not end within the handshake timeout."""


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
    """A gevent ``WSGIServer`` with snowg's :class:`WebSocketHandler`, a cap on connections and a graceful :meth:`stop`.

    Access lines are not written (``log=None``); errors go to the ``snowg``
    logger. ``ssl_context`` may be a standard-library ``ssl.SSLContext``.

    A connection accepted while the app's ``max_connections`` are open is
    answered ``503`` (closed at once, without TLS, on a ``wss://`` server)
    and logged (summarised per address, like refused upgrades). A TLS
    handshake must end within the app's ``handshake_timeout``.
    """

    def __init__(self, listener: Any, application: WebSocketApp, ssl_context: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("handler_class", WebSocketHandler)
        kwargs.setdefault("log", None)
        kwargs.setdefault("error_log", log)
        self.app = application
        self.upgrade_failures = FailureLog()
        self._handling: Set[Any] = set()
        self._tls: Optional[_CooperativeTLS] = None
        if ssl_context is not None:
            self._tls = kwargs["ssl_context"] = _CooperativeTLS(ssl_context)
        super().__init__(listener, application, **kwargs)

    @property
    def open_connections(self) -> int:
        """The connections being handled now (WebSocket, plain HTTP, and requests still arriving)."""
        return len(self._handling)

    def do_handle(self, *args: Any) -> None:
        """Handle an accepted connection in a new greenlet, or refuse it if ``max_connections`` are open."""
        if len(self._handling) >= self.app.max_connections:
            self._refuse(*args)
            return
        spawn = getattr(self, "_spawn", None)  # gevent's: Greenlet.spawn, a pool's spawn, or None
        if spawn is None:
            super().do_handle(*args)
            return
        try:
            glet = spawn(self._handle_counted, *args)
        except BaseException:
            self.do_close(*args)
            raise
        self._handling.add(glet)
        glet.rawlink(self._handling.discard)  # also if killed before it ran

    def _handle_counted(self, sock: Any, address: Any) -> None:
        try:
            getattr(self, "_handle")(sock, address)  # noqa: B009 - gevent's handle (TLS-wrapping or not), untyped
        finally:
            self._handling.discard(gevent.getcurrent())
            self.do_close(sock, address)

    def _refuse(self, sock: Any, address: Any) -> None:
        """Over the cap: a 503 (plain HTTP; nothing on TLS), then close; never blocks."""
        host = str(address[0]) if isinstance(address, tuple) and address else "?"
        try:
            sock.setblocking(False)
            if self._tls is None:
                sock.send(_BUSY)
                try:
                    sock.recv(65536)  # what already came, so that closing sends FIN, not RST
                except OSError:
                    pass
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
        self.upgrade_failures.report(
            host,
            logging.WARNING,
            "connection from %s refused with 503: %d connections open (max_connections)",
            host,
            len(self._handling),
        )

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
        timeout = self.app.upgrade_policy.handshake_timeout
        try:
            with gevent.Timeout(timeout, _TLSDeadline):
                tls_socket = tls.wrap_socket(client_socket, **(self.ssl_args or {}))
        except (OSError, ValueError, _TLSDeadline) as e:
            why = f"not done within {timeout:.3g} s" if isinstance(e, _TLSDeadline) else str(e)
            host = str(address[0])
            self.upgrade_failures.report(host, logging.INFO, "TLS handshake with %s failed: %s", host, why)
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
        rest = list(self._handling)  # requests still arriving, plain HTTP ones, keep-alive waits
        if rest:
            gevent.killall(rest, block=True, timeout=1)
            self._handling.difference_update([g for g in rest if g.dead])  # links run later
        self.upgrade_failures.flush()
        app._failures.flush()  # noqa: SLF001 - the app's own summaries, at its server's end


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
            ``max_fragments``, ``ping_interval``, ``ping_timeout``, ``queue_size``,
            ``recv_queue_size``, ``close_timeout``, ``check_origin``,
            ``handshake_timeout``, ``max_connections``, ``compression``,
            ``compression_threshold``, ``compression_context_takeover``,
            ``compression_shared_context``).

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
