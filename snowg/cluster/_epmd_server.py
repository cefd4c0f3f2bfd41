"""snowg's port mapper: the server side of EPMD's protocol, on gevent.

It behaves as Erlang's ``epmd``, so either serves both snowg and Erlang
nodes:

* It listens on all addresses (``0.0.0.0``) on port 4369 or
  ``$ERL_EPMD_PORT``; ``$ERL_EPMD_ADDRESS`` (comma-separated) or the
  ``addresses`` argument choose others, and ``127.0.0.1`` is always added,
  as epmd does.
* A registration (``ALIVE2_REQ``) lives as long as its connection: a node
  that exits or is killed releases its name at once. A second registration
  of a live name is refused. Each registration gets a creation number, never
  0 and different each time a name is registered again (epmd's scheme: a
  time-based start, then one more each time; 1..3 for old nodes whose
  highest version is below 6).
* Only peers on this host (a loopback address, or this host's own address)
  may register or send ``KILL_REQ``/``STOP_REQ``; anyone may ask
  ``PORT_PLEASE2_REQ`` and ``NAMES_REQ``. ``KILL_REQ`` is answered ``NO``
  while nodes are registered and ``STOP_REQ`` is ignored, unless ``relaxed``
  (epmd's ``-relaxed_command_check``).

What a hostile client can cost is bounded: at most ``max_connections``
connections wait for their request at a time (one more is closed at once),
each has ``request_timeout`` seconds to send its one request (a stalled half
request is closed) and as long again to take the reply, a request is at most the protocol's
:data:`~._epmd_proto.MAX_REQUEST` bytes, and at most ``max_registrations``
names are registered. Each such refusal is logged through the ``snowg``
logger once, then counted (:class:`~snowg._core.logsummary.SummaryLog`), so a
flood gives a few lines, not one per connection. Registrations and releases
are logged at INFO.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import logging
import os
import socket as _stdsocket
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gevent
import gevent.event
from gevent import socket
from gevent.server import StreamServer

from .._core import SummaryLog
from .._errors import NodeError
from ._epmd_proto import (
    Alive2Request,
    EpmdProtocolError,
    KillRequest,
    NamesRequest,
    NodeEntry,
    PortPlease2Request,
    Request,
    RequestParser,
    StopRequest,
    encode_alive2_reply,
    encode_names_reply,
    encode_port2_reply,
)

__all__ = ["DEFAULT_ADDRESSES", "Mapper", "PortTaken", "listen_addresses", "open_listeners"]

log = logging.getLogger("snowg")

DEFAULT_ADDRESSES = ("0.0.0.0",)
#: Released names whose last creation is remembered (epmd's bound too), so a re-registration gets a new one.
_REMEMBERED = 1000
_RECV = 4096


class PortTaken(NodeError):
    """The mapper's port is taken on one of its addresses (by another mapper, or by something else)."""


def listen_addresses(addresses: Optional[Sequence[str]] = None) -> List[str]:
    """The addresses to listen on: ``addresses``, else ``$ERL_EPMD_ADDRESS``, else all (``0.0.0.0``).

    ``127.0.0.1`` is added to a list that lacks it (and all addresses), as
    epmd does, so local nodes can always register.

    Raises:
        NodeError: an address that is not an IP address (naming where it came from).
    """
    source = "the addresses given"
    if addresses is None:
        raw = os.environ.get("ERL_EPMD_ADDRESS", "")
        addresses = [a.strip() for a in raw.split(",") if a.strip()]
        source = "ERL_EPMD_ADDRESS"
    if not addresses:
        return list(DEFAULT_ADDRESSES)
    parsed = []
    for address in addresses:
        try:
            parsed.append(ipaddress.ip_address(address))
        except ValueError:
            raise NodeError(f"{source}: {address!r:.80} is not an IP address") from None
    if not any(str(ip) in ("127.0.0.1", "0.0.0.0") for ip in parsed):
        parsed.append(ipaddress.ip_address("127.0.0.1"))
    return [str(ip) for ip in dict.fromkeys(parsed)]


def open_listeners(addresses: Sequence[str], port: int) -> List[_stdsocket.socket]:
    """Bind and listen on ``port`` at each address (plain sockets, so a daemon can bind before it forks).

    Raises:
        PortTaken: the port is in use on one of the addresses.
        NodeError: another failure to bind (naming the address).
    """
    sockets: List[_stdsocket.socket] = []
    try:
        for address in addresses:
            family = _stdsocket.AF_INET6 if ":" in address else _stdsocket.AF_INET
            sock = _stdsocket.socket(family, _stdsocket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            if family == _stdsocket.AF_INET6:
                sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port))
                sock.listen(_stdsocket.SOMAXCONN)
            except OSError as exc:
                where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    raise PortTaken(f"port {port} is taken on {address} (another port mapper?)") from None
                raise NodeError(f"the port mapper cannot listen on {where}: {exc}") from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _ReplyTimeout(Exception):
    pass


@dataclass
class _Registration:
    entry: NodeEntry
    creation: int
    sock: Any
    peer: str


def _peer_host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else "?"


def _summary(key: Any, count: int, seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    return "port mapper: %d more like that (%s) in %.0fs", (count, key[0], seconds)


class Mapper:
    """The port mapper: serves registrations, lookups and name lists until stopped.

    Args:
        listeners: bound, listening sockets (:func:`open_listeners`).
        max_connections: connections that may wait for their request at once.
        max_registrations: names that may be registered at once.
        request_timeout: seconds a connection has to send its request.
        relaxed: accept ``KILL_REQ`` while nodes are registered, and ``STOP_REQ``.
    """

    def __init__(
        self,
        listeners: Sequence[_stdsocket.socket],
        *,
        max_connections: int = 1024,
        max_registrations: int = 1024,
        request_timeout: float = 5.0,
        relaxed: bool = False,
    ) -> None:
        self.port: int = listeners[0].getsockname()[1]
        self.addresses = [sock.getsockname()[0] for sock in listeners]
        self.max_connections = max_connections
        self.max_registrations = max_registrations
        self.request_timeout = request_timeout
        self.relaxed = relaxed
        self._listeners = list(listeners)
        self._servers: List[StreamServer] = []
        self._registered: Dict[str, _Registration] = {}
        self._creations: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._waiting = 0
        self._stopped = gevent.event.Event()
        self._problems = SummaryLog(log, _summary, window=60.0)

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Start accepting connections on every listener. Never blocks."""
        for sock in self._listeners:
            sock.setblocking(False)
            server = StreamServer(sock, self._handle)
            server.start()
            self._servers.append(server)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the mapper stops (:meth:`stop`, or a ``KILL_REQ``); True if it has."""
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        """Stop listening and close every connection (releasing every name). Never blocks."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for server in self._servers:
            server.close()
        for reg in list(self._registered.values()):
            reg.sock.close()
        self._registered.clear()
        self._problems.flush()

    @property
    def stopped(self) -> bool:
        """True once the mapper has stopped."""
        return self._stopped.is_set()

    def registered(self) -> List[NodeEntry]:
        """The registrations now, newest first (as epmd lists them)."""
        return [reg.entry for reg in reversed(list(self._registered.values()))]

    # ------------------------------------------------------------ one connection

    def _refuse(self, kind: str, peer: str, level: int, msg: str, *args: Any) -> None:
        self._problems.report((kind, peer), level, "port mapper: " + msg, *args)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        peer = _peer_host(address)
        if self._waiting >= self.max_connections:
            sock.close()
            self._refuse(
                "connection cap",
                "*",
                logging.WARNING,
                "refused a connection from %s: %d connections already wait for their request (the cap)",
                peer,
                self.max_connections,
            )
            return
        self._waiting += 1
        reg: Optional[_Registration] = None
        try:
            request = self._read_request(sock, peer)
            if request is not None:
                reg = self._serve(sock, peer, request)
        except OSError as exc:
            log.debug("port mapper: connection from %s failed: %s", peer, exc)
        finally:
            self._waiting -= 1
            if reg is None:
                sock.close()
        if reg is not None:
            self._hold(reg)  # here: gevent's server closes the socket when this handler returns

    def _read_request(self, sock: socket.socket, peer: str) -> Optional[Request]:
        parser = RequestParser()
        got = 0
        timer = gevent.Timeout(self.request_timeout)
        timer.start()
        try:
            while True:
                data = sock.recv(_RECV)
                if not data:
                    if got:
                        self._refuse(
                            "partial request",
                            peer,
                            logging.WARNING,
                            "closed a connection from %s: it closed after %d bytes, before its request was complete",
                            peer,
                            got,
                        )
                    return None
                got += len(data)
                request = parser.feed(data)
                if request is not None:
                    return request
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self._refuse(
                "request timeout",
                peer,
                logging.WARNING,
                "closed a connection from %s: no complete request within %gs (%d bytes came)",
                peer,
                self.request_timeout,
                got,
            )
            return None
        except EpmdProtocolError as exc:
            self._refuse("bad request", peer, logging.WARNING, "closed a connection from %s: %s", peer, exc)
            return None
        finally:
            timer.close()

    def _reply(self, sock: socket.socket, peer: str, data: bytes) -> bool:
        """Send ``data``, bounded by the request deadline (a client that does not read is closed); True if sent."""
        try:
            with gevent.Timeout(self.request_timeout, _ReplyTimeout):
                sock.sendall(data)
        except _ReplyTimeout:
            self._refuse(
                "reply timeout",
                peer,
                logging.WARNING,
                "closed a connection from %s: it did not take its %d-byte reply within %gs",
                peer,
                len(data),
                self.request_timeout,
            )
            return False
        return True

    def _serve(self, sock: socket.socket, peer: str, request: Request) -> Optional[_Registration]:
        """Answer ``request``; the registration when the connection became one."""
        if isinstance(request, PortPlease2Request):
            reg = self._registered.get(request.name)
            self._reply(sock, peer, encode_port2_reply(reg.entry if reg is not None else None))
        elif isinstance(request, NamesRequest):
            self._reply(sock, peer, encode_names_reply(self.port, [(e.name, e.port) for e in self.registered()]))
        elif isinstance(request, Alive2Request):
            if not self._is_local(sock, peer):
                self._refuse(
                    "remote ALIVE2",
                    peer,
                    logging.WARNING,
                    "refused to register %r for %s: only this host's nodes may register",
                    request.entry.name,
                    peer,
                )
                return None
            return self._register(sock, peer, request.entry)
        elif isinstance(request, KillRequest):
            self._kill(sock, peer)
        elif isinstance(request, StopRequest):
            self._stop_name(sock, peer, request.name)
        return None

    def _is_local(self, sock: socket.socket, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback:
            return True
        try:  # as epmd: a connection from this host's own address is local too
            return bool(ip == ipaddress.ip_address(sock.getsockname()[0]))
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------ registrations

    def _next_creation(self, name: str, highest: int) -> int:
        last = self._creations.pop(name, None)
        creation = (last + 1) & 0xFFFFFFFF if last is not None else int(time.time()) + 1
        if creation < 4:
            creation = 4
        self._creations[name] = creation
        while len(self._creations) > _REMEMBERED + len(self._registered):
            oldest = next(iter(self._creations))
            if oldest in self._registered:
                self._creations.move_to_end(oldest)
            else:
                del self._creations[oldest]
        return creation if highest >= 6 else creation % 3 + 1

    def _register(self, sock: socket.socket, peer: str, entry: NodeEntry) -> Optional[_Registration]:
        extended = entry.highest >= 6
        if entry.name in self._registered:
            self._reply(sock, peer, encode_alive2_reply(1, 99, extended))
            # INFO: the node is told and says so; a node retrying a name that is just being released repeats this
            self._refuse(
                "name taken",
                entry.name,
                logging.INFO,
                "refused to register %r (port %d): that name is registered already",
                entry.name,
                entry.port,
            )
            return None
        if len(self._registered) >= self.max_registrations:
            self._reply(sock, peer, encode_alive2_reply(1, 99, extended))
            self._refuse(
                "registration cap",
                "*",
                logging.WARNING,
                "refused to register %r: %d names are registered (the cap)",
                entry.name,
                self.max_registrations,
            )
            return None
        creation = self._next_creation(entry.name, entry.highest)
        reg = _Registration(entry, creation, sock, peer)
        self._registered[entry.name] = reg
        if not self._reply(sock, peer, encode_alive2_reply(0, creation, extended)):
            self._unregister(reg, "it did not take the reply")
            return None
        log.info("port mapper: registered %r at port %d (creation %d)", entry.name, entry.port, creation)
        return reg

    def _hold(self, reg: _Registration) -> None:
        """Keep ``reg`` until its connection closes (a node sends nothing more after registering)."""
        why = "its connection closed"
        try:
            data = reg.sock.recv(_RECV)
            if data:
                why = f"it sent {len(data)} bytes after registering (as epmd, that ends the registration)"
        except OSError as exc:
            why = f"its connection failed: {exc}"
        finally:
            reg.sock.close()
            self._unregister(reg, why)

    def _unregister(self, reg: _Registration, why: str) -> None:
        if self._registered.get(reg.entry.name) is reg:
            del self._registered[reg.entry.name]
            log.info("port mapper: released %r (port %d): %s", reg.entry.name, reg.entry.port, why)

    # ------------------------------------------------------------ administration

    def _kill(self, sock: socket.socket, peer: str) -> None:
        if not self._is_local(sock, peer):
            self._refuse("remote KILL", peer, logging.WARNING, "ignored KILL_REQ from %s: not this host", peer)
            return
        if self._registered and not self.relaxed:
            self._reply(sock, peer, b"NO")
            log.warning("port mapper: refused KILL_REQ: %d nodes are registered", len(self._registered))
            return
        self._reply(sock, peer, b"OK")
        log.info("port mapper: stopping on KILL_REQ")
        self.stop()

    def _stop_name(self, sock: socket.socket, peer: str, name: str) -> None:
        if not self._is_local(sock, peer) or not self.relaxed:
            self._refuse(
                "STOP_REQ",
                peer,
                logging.WARNING,
                "ignored STOP_REQ from %s (only from this host, and only when relaxed)",
                peer,
            )
            return
        reg = self._registered.get(name)
        if reg is None:
            self._reply(sock, peer, b"NOEXIST")
            return
        reg.sock.close()
        self._unregister(reg, "STOP_REQ")
        self._reply(sock, peer, b"STOPPED")
