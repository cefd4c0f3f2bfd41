"""The node side of Erlang distribution: options, listener, handshakes, connects, ``ping``.

``start_node(..., erlang=...)`` starts an :class:`ErlangService` through the
cluster layer's protocol seam (``snowg.cluster.register_protocol``): a
listener on its own port (plain TCP, or TLS as ``inet_tls_dist``: the
accepted socket is wrapped before the handshake, mutual, from the node's
snowg certificates), registered with the port mapper in the node's place
(hidden, type 72; the snowg port rides in the registration's extra).

Each connection runs the version-6 handshake of :mod:`._dist_handshake`
(2-byte lengths over TCP, 4-byte under TLS), bounded in time and in number
(the node's ``max_handshakes`` settings). The acceptor's status follows OTP:
``alive`` when a connection with that node is up (the initiator decides
whether it replaces it), and of two simultaneous connects, the one dialled
by the node whose name sorts higher wins (``ok_simultaneous``; the loser is
told ``nok`` and waits for the winner). After the handshake the connection
becomes an :class:`~snowg.erlang._connection.ErlangConnection`, attached to
the cluster layer (``snowg.cluster.attach_peer``) until it closes.

Refusals (a wrong cookie, missing flags, a wrong name, a protocol error, a
TLS failure) are one WARNING line naming the peer's address and the
problem; the node keeps serving.
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
import time
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Tuple, Union, cast

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from gevent.server import StreamServer

from .. import cluster
from .._core import Atom, make_ref, receive, send
from .._core import self as _self
from .._errors import NodeError, Timeout
from . import _dist_handshake as hs
from . import _flags
from ._connection import ErlangConnection
from ._dist_framing import TCP_HANDSHAKE_LENGTH, TLS_HANDSHAKE_LENGTH
from ._errors import ErlangProtocolError
from ._mapping import TermMap

__all__ = [
    "CONNECT_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "ErlangOptions",
    "ErlangService",
    "check_options",
    "connect",
    "nodes",
    "ping",
    "start_service",
]

log = logging.getLogger("snowg")

#: Seconds an incoming or outgoing handshake may take (TLS included).
HANDSHAKE_TIMEOUT = 10.0
#: Seconds :func:`connect` waits by default, and :func:`ping` for ``net_kernel``'s answer (as ``net_adm:ping``).
CONNECT_TIMEOUT = 7.0
#: Seconds to open the TCP connection and to ask the port mapper.
DIAL_TIMEOUT = 5.0


@dataclass
class ErlangOptions:
    """How a node speaks Erlang's distribution (``start_node(..., erlang=ErlangOptions(...))``).

    Attributes:
        transport: ``'tls'`` (compatible with ``erl -proto_dist inet_tls``,
            mutual, from the certificates in ``tls``) or ``'tcp'`` (plain TCP:
            the cookie is the only protection; for trusted networks).
        port: the port to listen on; 0 picks a free one.
        cookie: the Erlang cookie; None: the node's own cookie (or the cookie file, see ``cookie_file``).
        cookie_file: True: read ``~/.erlang.cookie`` as ``erl`` does (it must be
            readable by its owner only); used when ``cookie`` is None.
        tick_time: ``net_ticktime`` in seconds (Erlang's default 60); must match the BEAM nodes'.
        none_atom: the atom ``None`` crosses as: ``'undefined'`` (Erlang) or ``'nil'`` (Elixir).
        strict_bytes: True: a binary always arrives as ``bytes`` (else as ``str`` when it is UTF-8).
        busy_limit: bytes a connection may hold queued before sending processes are suspended.
        max_packet: the largest packet accepted from a BEAM node.
        hidden: join as a hidden node. Only True works now: a published node
            must answer ``global``'s protocol, which snowg does not yet.
        tls: the certificates for ``'tls'`` (as ``start_node``'s ``tls``); None: the node's own.
    """

    transport: str = "tls"
    port: int = 0
    cookie: Optional[str] = None
    cookie_file: bool = False
    tick_time: float = 60.0
    none_atom: str = "undefined"
    strict_bytes: bool = False
    busy_limit: int = 1 << 20
    max_packet: int = 128 << 20
    hidden: bool = True
    tls: Any = None


def check_options(value: Any) -> ErlangOptions:
    """``start_node``'s ``erlang=`` argument as checked :class:`ErlangOptions`.

    Raises:
        NodeError: not ``True``, ``'tls'``, ``'tcp'`` or an :class:`ErlangOptions`
            with sound fields (the message names the value).
    """
    if value is True:
        return ErlangOptions()
    if isinstance(value, str) and not isinstance(value, Atom) and value in ("tls", "tcp"):
        return ErlangOptions(transport=value)
    if not isinstance(value, ErlangOptions):
        raise NodeError(f"erlang must be True, 'tls', 'tcp' or an ErlangOptions, not {value!r:.80}")
    opts = ErlangOptions(**{f.name: getattr(value, f.name) for f in fields(value)})
    problems = []
    if opts.transport not in ("tls", "tcp"):
        problems.append(f"transport must be 'tls' or 'tcp', not {opts.transport!r:.40}")
    if type(opts.port) is not int or not 0 <= opts.port <= 65535:
        problems.append(f"port must be an int from 0 to 65535, not {opts.port!r:.40}")
    if opts.cookie is not None and (not isinstance(opts.cookie, str) or not opts.cookie):
        problems.append("cookie must be a non-empty str or None")
    if not isinstance(opts.tick_time, (int, float)) or isinstance(opts.tick_time, bool) or not opts.tick_time > 0:
        problems.append(f"tick_time must be a positive number of seconds, not {opts.tick_time!r:.40}")
    if opts.none_atom not in ("undefined", "nil"):
        problems.append(f"none_atom must be 'undefined' or 'nil', not {opts.none_atom!r:.40}")
    for name in ("busy_limit", "max_packet"):
        number = getattr(opts, name)
        if type(number) is not int or number <= 0:
            problems.append(f"{name} must be a positive int, not {number!r:.40}")
    if opts.hidden is not True:
        problems.append("hidden must be True: a published node must speak global's protocol, which snowg does not yet")
    if problems:
        raise NodeError("ErlangOptions: " + "; ".join(problems))
    return opts


def erlang_cookie_file(path: Optional[str] = None) -> str:
    """The cookie in ``~/.erlang.cookie`` (or ``path``), checked as ``erl`` checks it.

    Raises:
        NodeError: the file cannot be read, is empty, or group or others may
            read it (the message gives the ``chmod`` that fixes it).
    """
    path = path or os.path.join(os.path.expanduser("~"), ".erlang.cookie")
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise NodeError(
                f"cookie file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                f"erl refuses it too: chmod 400 {path}"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise NodeError(f"cookie file {path}: cannot be read ({exc.strerror or exc})") from None
    cookie = text.strip().split("\n", 1)[0].strip()
    if not cookie:
        raise NodeError(f"cookie file {path} is empty")
    return cookie


class _Closed(Exception):
    """The peer closed the connection during the handshake."""


class _Refused(Exception):
    """This node refused a handshake (the message says why), or a race was lost (``lost``)."""

    def __init__(self, message: str, *, lost: bool = False, warn: bool = True) -> None:
        super().__init__(message)
        self.lost = lost
        self.warn = warn


class _Attempt:
    """One outgoing connect under way: the callers wait on ``done``."""

    def __init__(self) -> None:
        self.done = Event()
        self.superseded = False  # an incoming connection from that node won (ok_simultaneous)
        self.sock: Any = None


class ErlangService:
    """The Erlang side of a running node: its listener and its connections to BEAM nodes.

    Made by :func:`start_service` (``start_node`` calls it through the
    cluster layer); stopped by ``stop_node``.

    Attributes:
        port: the port it listens on.
        conns: the live connections, by node name.
    """

    def __init__(self, opts: ErlangOptions, ctx: cluster.ForeignContext) -> None:
        self.opts = opts
        self.name = ctx.name
        self.creation = ctx.creation
        if opts.cookie is not None:
            self.cookie = opts.cookie
        elif opts.cookie_file:
            self.cookie = erlang_cookie_file()
        else:
            self.cookie = ctx.cookie
        self.tls = opts.transport == "tls"
        self.length_size = TLS_HANDSHAKE_LENGTH if self.tls else TCP_HANDSHAKE_LENGTH
        self.server_ctx: Any = None
        self.client_ctx: Any = None
        if self.tls:
            cfg = ctx.tls if opts.tls is None else cluster.load_tls(opts.tls, ctx.name, default_dir=None)
            self.server_ctx = cluster.server_context(cfg)
            self.client_ctx = cluster.client_context(cfg)
        self.max_handshakes = ctx.max_handshakes
        self.max_handshakes_per_address = ctx.max_handshakes_per_address
        self.conns: Dict[str, ErlangConnection] = {}
        self.attempts: Dict[str, _Attempt] = {}
        self.accepting: Dict[str, int] = {}  # names whose incoming handshake is past its name
        self.handshakes: Dict[str, int] = {}  # incoming handshakes by source address
        self.up_events: Dict[str, Event] = {}
        self.stopping = False
        self.server = StreamServer((ctx.listen_host, opts.port), self._handle)
        try:
            self.server.start()
        except OSError as exc:
            self.server.close()
            raise NodeError(
                f"node {ctx.name}: cannot listen for Erlang distribution on {ctx.listen_host}:{opts.port}: {exc}"
            ) from None
        self.port = cast(int, self.server.server_port)
        services = _services_module()
        if services is not None:
            try:
                services.start_services()
            except Exception as exc:
                self.server.close()
                raise NodeError(f"node {ctx.name}: the Erlang services (net_kernel ...) cannot start: {exc}") from exc
        log.info(
            "node %s: Erlang distribution (%s) on port %d, hidden",
            self.name,
            "inet_tls_dist" if self.tls else "plain TCP",
            self.port,
        )

    # ------------------------------------------------------------ lifecycle

    def stop(self, flush_timeout: float) -> None:
        """Stop listening, send what each connection holds (at most ``flush_timeout`` s), close them all.

        Blocks the caller for at most about ``flush_timeout`` seconds plus one.
        """
        self.stopping = True
        self.server.close()  # no new connections; the handlers of live ones wait for them to close
        conns = list(self.conns.values())
        if flush_timeout > 0 and conns:
            finishing = [gevent.spawn(conn.finish, flush_timeout) for conn in conns]
            gevent.joinall(finishing, timeout=flush_timeout + 1)
            for greenlet in finishing:
                greenlet.kill(block=False)
        for conn in list(self.conns.values()):
            conn.close("disconnect", "this node stopped")
        self.server.stop(timeout=1)  # handshakes still under way
        services = _services_module()
        if services is not None:
            services.stop_services()

    def forget(self) -> None:
        """After ``fork()``, in the child: close this copy of the sockets (no shutdown: the parent's stay up)."""
        self.stopping = True
        self.server.close()
        for conn in list(self.conns.values()):
            conn.close("disconnect", "forked: this copy of the connection belongs to the parent process")
        self.conns.clear()

    # ---------------------------------------------------------- connections

    def _up(
        self, sock: Any, machine: Union[hs.Initiator, hs.Acceptor], *, outgoing: bool, where: str
    ) -> ErlangConnection:
        """Make the connection of a finished handshake and attach it to the node (never blocks)."""
        name = machine.peer_name
        if self.stopping or cluster.current() is None:
            raise _Refused("this node is stopping", warn=False)
        old = self.conns.get(name)
        if old is not None and not old.closed:
            old.close("connection_closed", "replaced: the node connected again")
        conn = ErlangConnection(
            sock,
            node=name,
            peer_creation=machine.peer_creation,
            peer_flags=machine.peer_flags,
            tm=TermMap(
                self.name,
                self.creation,
                none_atom=self.opts.none_atom,
                strict_bytes=self.opts.strict_bytes,
            ),
            initial_data=machine.trailing_data,
            tick_time=self.opts.tick_time,
            busy_limit=self.opts.busy_limit,
            max_packet=self.opts.max_packet,
            outgoing=outgoing,
            on_closed=self._on_closed,
            on_spawn_request=_spawn_handler(),
        )
        try:
            cluster.attach_peer(conn)
        except NodeError as exc:
            raise _Refused(str(exc)) from None
        self.conns[name] = conn
        log.info("connected to Erlang node %s (%s, %s)", name, where.strip(), "dialled" if outgoing else "accepted")
        up = self.up_events.pop(name, None)
        if up is not None:
            up.set()
        return conn

    def _on_closed(self, conn: ErlangConnection, reason: str) -> None:
        if self.conns.get(conn.node) is conn:
            del self.conns[conn.node]
        cluster.detach_peer(conn, reason)
        log.info("disconnected from Erlang node %s (%s)", conn.node, reason)

    # ---------------------------------------------------------------- accept

    def _handle(self, sock: Any, address: Tuple[Any, ...]) -> None:
        """The listener's handler: one incoming connection's handshake, then the connection runs on its own."""
        host = str(address[0])
        where = f"{host}:{address[1]}"
        if self.stopping or cluster.current() is None:
            _close_quietly(sock)
            return
        total = sum(self.handshakes.values())
        from_host = self.handshakes.get(host, 0)
        if total >= self.max_handshakes or from_host >= self.max_handshakes_per_address:
            log.warning(
                "refused Erlang connection from %s at once: %d handshakes under way (%d from that address)",
                where,
                total,
                from_host,
            )
            _close_quietly(sock)
            return
        self.handshakes[host] = from_host + 1
        claimed: List[str] = []
        conn = None
        try:
            with gevent.Timeout(HANDSHAKE_TIMEOUT, _Refused(f"the handshake took over {HANDSHAKE_TIMEOUT:g}s")):
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                if self.tls:
                    # Wrapped first, shaken after: the wrapped socket owns the descriptor from here, so a
                    # handshake that fails or times out closes that one (closing the plain one would not).
                    sock = self.server_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                    sock.do_handshake()
                conn = self._accept(sock, where, claimed)
        except _Refused as exc:
            level = logging.WARNING if exc.warn else logging.INFO
            log.log(level, "refused Erlang connection from %s%s: %s", where, _claiming(claimed), exc)
        except _Closed as exc:
            log.warning("refused Erlang connection from %s%s: %s", where, _claiming(claimed), exc)
        except (ErlangProtocolError, OSError, ValueError) as exc:
            log.warning("refused Erlang connection from %s%s: %s", where, _claiming(claimed), _describe(exc))
        finally:
            left = self.handshakes.get(host, 0) - 1
            if left > 0:
                self.handshakes[host] = left
            else:
                self.handshakes.pop(host, None)
            for name in claimed:
                count = self.accepting.get(name, 0) - 1
                if count > 0:
                    self.accepting[name] = count
                else:
                    self.accepting.pop(name, None)
        if conn is None:
            _close_quietly(sock)
            return
        conn.start()
        # The server closes the accepted socket when this handler returns: it returns with the connection.
        conn.wait_closed(None)

    def _accept(self, sock: Any, where: str, claimed: List[str]) -> Optional[ErlangConnection]:
        machine = hs.Acceptor(
            self.name,
            self.cookie,
            flags=_flags.OFFERED,
            creation=self.creation,
            length_size=self.length_size,
            peer=where,
        )
        while True:
            ev = machine.next_event()
            if ev is hs.NEED_DATA:
                data = sock.recv(4096)
                if not data:
                    raise _Closed("it closed the connection during the handshake")
                machine.receive_data(data)
                continue
            if isinstance(ev, hs.NameReceived):
                status = self._status_for(ev.name)
                sock.sendall(machine.send(hs.SendStatus(status)))
                if status == "not_allowed":
                    raise _Refused(f"{ev.name!r:.300} is this node's own name or a connected snowg node's")
                if status == "nok":
                    raise _Refused("a simultaneous connection with that node wins", lost=True, warn=False)
                claimed.append(ev.name)
                self.accepting[ev.name] = self.accepting.get(ev.name, 0) + 1
            elif isinstance(ev, hs.AliveAnswer):
                if not ev.proceed:
                    raise _Refused("it keeps its existing connection with this node", warn=False)
                sock.sendall(machine.challenge_after_alive())
            elif isinstance(ev, hs.ReplyReceived):
                ack = machine.send(hs.SendChallengeAck())
                # Attached before the ack leaves: once the peer counts the connection up, so does this node.
                conn = self._up(sock, machine, outgoing=False, where=where)
                try:
                    sock.sendall(ack)
                except BaseException:
                    conn.close("connection_closed", "the connection failed before the handshake's last message")
                    raise
                return conn
            elif isinstance(ev, hs.Refused):
                raise _Refused(ev.reason, warn=False)
            else:  # Connected comes only after the ack, which returned above
                raise _Refused(f"unexpected handshake event {type(ev).__name__}")

    def _status_for(self, name: str) -> str:
        """The acceptor's status for an initiator called ``name`` (OTP's rules)."""
        if name == self.name or name in cluster.nodes():
            return "not_allowed"
        live = self.conns.get(name)
        if live is not None and not live.closed:
            return "alive"  # the initiator says whether its side of it is gone (then it is replaced)
        attempt = self.attempts.get(name)
        if attempt is not None and not attempt.superseded:
            if self.name > name:
                # Both dial at once: the connection dialled by the higher name wins; ours gives way.
                attempt.superseded = True
                _close_quietly(attempt.sock)
                return "ok_simultaneous"
            return "nok"
        if self.accepting.get(name):
            return "nok"
        return "ok"

    # ---------------------------------------------------------------- dial

    def connect(self, node: str, timeout: float = CONNECT_TIMEOUT) -> bool:
        """Connect to the BEAM node ``node``; True when connected (also when already).

        Concurrent callers for one node share one attempt. Blocks the caller
        for at most ``timeout`` seconds; never raises for a node that cannot
        be reached (the reason is logged).
        """
        if node in self.conns:
            return True
        if node == self.name or self.stopping:
            return False
        deadline = time.monotonic() + timeout
        attempt = self.attempts.get(node)
        if attempt is None:
            attempt = self.attempts[node] = _Attempt()
            gevent.spawn(self._dial_in_background, node, attempt, timeout)
        attempt.done.wait(max(0.0, deadline - time.monotonic()))
        if node not in self.conns and attempt.superseded:
            self._wait_up(node, max(0.0, deadline - time.monotonic()))
        return node in self.conns

    def _wait_up(self, node: str, timeout: float) -> None:
        if node in self.conns:
            return
        ev = self.up_events.setdefault(node, Event())
        ev.wait(timeout)

    def _dial_in_background(self, node: str, attempt: _Attempt, timeout: float) -> None:
        try:
            self._dial(node, attempt, timeout)
        finally:
            if self.attempts.get(node) is attempt:
                del self.attempts[node]
            attempt.done.set()

    def _dial(self, node: str, attempt: _Attempt, timeout: float) -> None:
        alive, _, host = node.partition("@")
        if not alive or not host or len(node) > 255:
            log.warning("cannot connect to Erlang node %r: not a node name (alive@host)", node[:300])
            return
        where = ""
        try:
            with gevent.Timeout(timeout, _Refused(f"no answer within {timeout:g}s")):
                entry = cluster.port_please(host, alive, timeout=DIAL_TIMEOUT)
                if entry is None:
                    raise _Refused(f"the port mapper on {host} has no node named {alive!r}", warn=False)
                if entry.full_name is not None and entry.snowg_port == entry.port:
                    raise _Refused("it is a snowg node without Erlang distribution: connect to it with snowg.connect")
                if entry.highest < 6:
                    raise _Refused(f"it speaks distribution versions {entry.lowest}-{entry.highest}; snowg needs 6")
                if attempt.superseded:
                    return  # its connection to us won meanwhile
                where = f" at {host}:{entry.port}"
                sock = gsocket.create_connection((host, entry.port), timeout=DIAL_TIMEOUT)
                attempt.sock = sock
                sock.settimeout(None)
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                if self.tls:
                    sock = self.client_ctx.wrap_socket(sock, server_side=False, do_handshake_on_connect=False)
                    attempt.sock = sock  # owns the descriptor now (see _handle)
                    sock.do_handshake()
                conn = self._initiate(sock, node, where, attempt)
        except (_Refused, _Closed, ErlangProtocolError, NodeError, OSError, ValueError) as exc:
            _close_quietly(attempt.sock)
            if attempt.superseded:
                return  # its connection to us won (ok_simultaneous on our side): nothing failed
            if isinstance(exc, _Refused) and exc.lost:
                return
            level = logging.INFO if isinstance(exc, _Refused) and not exc.warn else logging.WARNING
            log.log(level, "connection to Erlang node %s%s failed: %s", node, where, _describe(exc))
            return
        if conn is not None:
            conn.start()

    def _initiate(self, sock: Any, node: str, where: str, attempt: _Attempt) -> Optional[ErlangConnection]:
        machine = hs.Initiator(
            self.name,
            self.cookie,
            flags=_flags.OFFERED,
            creation=self.creation,
            length_size=self.length_size,
            peer=f"{node}{where}",
            expect=node,
        )
        sock.sendall(machine.send(hs.SendName()))
        while True:
            ev = machine.next_event()
            if ev is hs.NEED_DATA:
                data = sock.recv(4096)
                if not data:
                    if machine.state is hs.State.WAIT_ACK:
                        raise _Closed("it closed the connection instead of acknowledging our digest (another cookie?)")
                    raise _Closed("it closed the connection during the handshake")
                machine.receive_data(data)
                continue
            if isinstance(ev, hs.StatusReceived):
                if ev.status == "nok":
                    attempt.superseded = True  # its connection to us wins: wait for that one
                    raise _Refused("a simultaneous connection wins", lost=True, warn=False)
                if ev.status == "alive":
                    sock.sendall(machine.send(hs.AliveAnswer(node not in self.conns)))
                if ev.status == "not_allowed":
                    raise _Refused(f"{node} answered not_allowed")
            elif isinstance(ev, hs.ChallengeReceived):
                sock.sendall(machine.send(hs.SendChallengeReply()))
            elif isinstance(ev, hs.Connected):
                if attempt.superseded:
                    raise _Refused("superseded", lost=True, warn=False)
                return self._up(sock, machine, outgoing=True, where=where)
            elif isinstance(ev, hs.Refused):
                raise _Refused(ev.reason, warn=False)


def _refuse_spawn(conn: Any, req: Any) -> None:
    # Only until snowg.erlang._services is there: the requester's spawn fails as Erlang's does for undef.
    conn.send_spawn_reply(req.req_id, req.from_, 0, Atom("not_supported"))


def _spawn_handler() -> Any:
    """:func:`snowg.erlang._erpc.handle_spawn_request`, or a refusal without that module."""
    try:
        return importlib.import_module("snowg.erlang._erpc").handle_spawn_request
    except (ImportError, AttributeError):
        return _refuse_spawn


def _services_module() -> Any:
    """:mod:`snowg.erlang._services` (``net_kernel``, the group leader, spawn requests), or None without it."""
    try:
        return importlib.import_module("snowg.erlang._services")
    except ImportError:
        return None


def _claiming(claimed: List[str]) -> str:
    return f" (claiming to be {claimed[-1][:300]})" if claimed else ""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE" in text.upper() or "ALERT" in text.upper() or "SSL" in text.upper():
        return f"TLS handshake failed ({text}); are both sides' certificates from the same CA (-ssl_dist_optfile)?"
    return text


def _close_quietly(sock: Any) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def start_service(opts: Any, ctx: cluster.ForeignContext) -> ErlangService:
    """The starter ``start_node`` calls (registered with the cluster layer by :mod:`snowg.erlang`).

    Raises:
        NodeError: the port cannot be bound, the cookie file is refused, or the certificates are bad.
    """
    return ErlangService(check_options(opts), ctx)


def _service() -> ErlangService:
    service = cluster.foreign_service("erlang")
    if service is None:
        if cluster.current() is None:
            raise NodeError("this process is not a node: call snowg.start_node(..., erlang=True) first")
        raise NodeError("this node does not speak Erlang's distribution: start it with start_node(..., erlang=True)")
    return cast(ErlangService, service)


def connect(node: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Connect to the Erlang or Elixir node ``node`` (``'name@host'``, asked of its host's port mapper).

    Blocks the caller until connected or ``timeout`` seconds passed;
    concurrent callers share one attempt.

    Returns:
        True when connected (also when already), False otherwise (the reason is logged).

    Raises:
        NodeError: this process is not a node started with ``erlang=...``.
    """
    return _service().connect(node, timeout)


def ping(node: str) -> str:
    """``net_adm:ping``: ``'pong'`` when ``node`` is reached and its ``net_kernel`` answers, else ``'pang'``.

    Connects when needed, then asks ``net_kernel`` there ``{is_auth, ThisNode}``
    as ``gen_server:call`` does. Blocks the calling process for at most about
    :data:`CONNECT_TIMEOUT` seconds for each.

    Raises:
        NodeError: this process is not a node started with ``erlang=...``.
    """
    service = _service()
    if not service.connect(node, CONNECT_TIMEOUT):
        return "pang"
    me = _self()
    ref = make_ref()
    send(("net_kernel", node), (Atom("$gen_call"), (me, ref), (Atom("is_auth"), Atom(service.name))))
    try:
        reply = receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] == ref, timeout=CONNECT_TIMEOUT)
    except Timeout:
        return "pang"
    return "pong" if reply[1] == "yes" else "pang"


def nodes() -> List[str]:
    """The BEAM nodes this node is connected to, sorted (``snowg.nodes()`` lists the snowg nodes). Never blocks."""
    service = cluster.foreign_service("erlang")
    return sorted(cast(ErlangService, service).conns) if service is not None else []
