"""Connecting nodes: dialling, accepting, running the handshake, and races between them.

Connecting (semantics rules 23-24): TLS with certificates verified both ways
against the cluster CA (and, with per-node certificates, naming the node
claimed), then the cookie handshake of :mod:`snowg.cluster._handshake`, in
which the connecting side proves the cookie first. Nothing an incoming
connection claims disturbs the node before it has proved the cookie: only
then may it replace a live session with the node it names (OTP's
``up_pending``). When two nodes connect to each other at once, the
connection started by the node whose name sorts lower wins: the acceptor
refuses the other one, and its initiator gets
:class:`~snowg.cluster._handshake.LostRace` and waits for the winner; a node
does not dial a node whose connection to it is past its HELLO, it waits for
that one. Incoming handshakes are capped per node and per source address. After
a handshake both sides send their peer list, and each connects to the peers
it does not know yet: connecting one node joins the whole cluster (a full
mesh). The address of every node ever connected is remembered, so that
:func:`ensure_connected` can reconnect on demand, as Erlang does.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import gevent
from gevent import socket as gsocket
from gevent.event import Event

from .._core import SummaryLog
from .._errors import NodeError
from . import _nodestate
from ._frames import PEER_LIST
from ._framing import encode_frame
from ._handshake import (
    ACCEPTOR,
    INITIATOR,
    REFUSE_ALREADY_CONNECTED,
    REFUSE_SIMULTANEOUS,
    Established,
    Handshake,
    HandshakeError,
    LostRace,
    PeerAlive,
    PeerHello,
    PeerProved,
    simultaneous_connect_winner,
)
from ._epmd_client import port_please
from ._names import is_node_name, loggable, split_target
from ._nodemon import node_down, node_up
from ._nodestate import NodeState, require
from ._session import Session
from ._tls import names_peer, peer_certificate_names

__all__ = [
    "DEFAULT_MAX_HANDSHAKES",
    "DEFAULT_MAX_HANDSHAKES_PER_ADDRESS",
    "DIAL_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "LOOKUP_TIMEOUT",
    "connect",
    "connect_to",
    "disconnect",
    "ensure_connected",
    "handle_incoming",
    "lookup_port",
    "session_for",
]

log = logging.getLogger("snowg")

HANDSHAKE_TIMEOUT = 10.0
#: Incoming connections a node lets handshake (TLS and cookie) at once, and of
#: those how many from one address; the excess is closed at once.
DEFAULT_MAX_HANDSHAKES = 64
DEFAULT_MAX_HANDSHAKES_PER_ADDRESS = 16
#: Seconds in which connections refused for those limits are counted, per address (then one summary line).
REFUSAL_LOG_INTERVAL = 10.0
# Seconds to open the TCP connection to a peer (the handshake has its own limit).
DIAL_TIMEOUT = 5.0
#: Seconds to ask a host's port mapper for a node's port.
LOOKUP_TIMEOUT = 5.0

# Where each node we have ever been connected to listened (for reconnecting on demand).
_known_addresses: Dict[str, str] = {}


class _Dialled(enum.Enum):
    """How an outgoing connection attempt ended."""

    CONNECTED = "connected"
    FAILED = "failed"
    LOST_RACE = "lost race"  # another connection between the two nodes wins


def connect(target: str) -> bool:
    """Connect to the node ``target`` and, through it, to its whole cluster.

    ``target`` is ``'name@host'``: the port is asked of the port mapper on
    ``host`` (as Erlang asks epmd), which must name a snowg node of exactly
    that name; or ``'name@host:port'``, dialled directly (a node started with
    ``epmd=False``). With Erlang's distribution on (``start_node(erlang=...)``),
    a ``'name@host'`` the mapper knows as a BEAM node is connected in Erlang's
    protocol (as :func:`snowg.erlang.connect`). Blocks the caller until the
    handshake ends (at most ~20 s with the mapper's lookup).

    Returns:
        True when connected (also when already connected), False when the
        connection failed, or the mapper does not know the node (the reason
        is logged).

    Raises:
        NodeError: this process is not a node (call ``start_node`` first).
        ValueError: ``target`` is neither ``'name@host'`` nor ``'name@host:port'``.
    """
    st = require()
    name, port = split_target(target)
    host = name.split("@", 1)[1]
    if port is None:
        if name == st.info.name or name in st.sessions or name in st.foreign:
            return True
        port = lookup_port(name, LOOKUP_TIMEOUT, logging.WARNING)
        if port is _FOREIGN:
            return _connect_foreign(st, name)
        if port is None:
            return False
    return connect_to(st, name, host, port)


class _Foreign(int):
    """What :func:`lookup_port` gives for a node of another protocol that this node speaks (a BEAM node)."""


_FOREIGN = _Foreign(0)


def _connect_foreign(st: NodeState, name: str) -> bool:
    """Connect to the BEAM node ``name`` through the node's Erlang service (blocks while connecting)."""
    service = st.services.get("erlang")
    return service is not None and bool(service.connect(name, LOOKUP_TIMEOUT + HANDSHAKE_TIMEOUT))


def lookup_port(name: str, timeout: float, level: int) -> Optional[int]:
    """The port of the snowg node ``name``, asked of the port mapper on its host; None if none.

    The mapper's entry for the name's alive part must be a snowg node whose
    full name is ``name``: an entry of another node (``bob@a`` registered,
    ``bob@b`` asked) or of a node that is not snowg's (a BEAM node) gives
    None. Why there is none is logged at ``level``. A node that is not
    snowg's, when this node runs Erlang's distribution, gives ``_FOREIGN``
    (the caller connects through the Erlang service). The port is the
    entry's snowg port (a node that speaks Erlang too registers its Erlang
    port). Blocks at most ``timeout`` seconds; never raises.
    """
    alive, host = name.split("@", 1)
    try:
        entry = port_please(host, alive, timeout=timeout)
    except (NodeError, OSError, ValueError) as exc:
        log.log(level, "cannot look node %s up: %s", name, exc)
        return None
    if entry is None:
        log.log(level, "cannot look node %s up: the port mapper on %s has no node named %r", name, host, alive)
        return None
    if entry.full_name is None:
        st = _nodestate.current
        if st is not None and "erlang" in st.services:
            return _FOREIGN
        log.log(
            level,
            "cannot look node %s up: %r on the port mapper of %s is not a snowg node (an Erlang node?)",
            name,
            alive,
            host,
        )
        return None
    if entry.full_name != name:
        log.log(
            level,
            "cannot look node %s up: %r on the port mapper of %s is the node %s",
            name,
            alive,
            host,
            loggable(entry.full_name, quoted=False),
        )
        return None
    return entry.snowg_port


def ensure_connected(name: str) -> bool:
    """Connected to ``name``, connecting on demand (as Erlang does).

    Dials the address where ``name`` was last connected; failing that (or
    for a node never connected), the port its host's port mapper gives.
    Blocks while connecting (the lookup at most :data:`LOOKUP_TIMEOUT` s).
    Returns False when not connected and it cannot be (also when this
    process is not a node, or ``name`` is not a node name); never raises.
    """
    st = _nodestate.current
    if st is None:
        return False
    if name == st.info.name or name in st.sessions or name in st.foreign:
        return True
    if not is_node_name(name):
        return False
    host = name.split("@", 1)[1]
    address = _known_addresses.get(name)
    if address is not None:
        known_host, known_port = address.rsplit(":", 1)
        if connect_to(st, name, known_host, int(known_port)):
            return True
    port = lookup_port(name, LOOKUP_TIMEOUT, logging.DEBUG)
    if port is _FOREIGN:
        return _connect_foreign(st, name)
    if port is None or address == f"{host}:{port}":  # (that one failed just now)
        return False
    return connect_to(st, name, host, port)


def disconnect(name: str) -> bool:
    """Close the connection to ``name`` (a snowg node, or a BEAM node); True if there was one. Never blocks."""
    sess = session_for(name)
    if sess is None:
        st = _nodestate.current
        peer = st.foreign.get(name) if st is not None else None
        if peer is not None and hasattr(peer, "close"):
            peer.close("disconnect", "disconnect() called on this node")
            return True
        return False
    sess.close("disconnect", "disconnect() called on this node")
    return True


def session_for(name: str) -> Optional[Session]:
    """The live session to ``name``, or None."""
    st = _nodestate.current
    return st.sessions.get(name) if st is not None else None


def connect_to(
    st: NodeState, name: str, host: str, port: int, *, on_failure: Optional[Callable[[str], None]] = None
) -> bool:
    """Connect to ``name`` at ``host:port`` unless connected or connecting; True when connected.

    Blocks until the attempt (this one, or one already under way in either
    direction) ends. ``on_failure``, if given, gets the reason a dial of
    this call failed instead of the log (for a caller that summarises
    repeated failures: discovery).
    """
    if name == st.info.name:
        return True
    if name in st.sessions:
        return True
    # A connection from ``name`` is past its HELLO: wait for it rather than open a
    # second one, which could then race it (at most the handshake timeout: the
    # claim is not proved yet).
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    for accepting in list(st.accepting.get(name, ())):
        accepting.wait(max(0.0, deadline - time.monotonic()))
        if name in st.sessions:
            return True
    ev = st.pending.get(name)
    if ev is not None:
        same_address = st.pending_address.get(name) == (host, port)
        ev.wait(HANDSHAKE_TIMEOUT + DIAL_TIMEOUT)
        if name in st.sessions or same_address or name in st.pending:
            return name in st.sessions
        # The attempt we waited for went to another address (say, where the
        # node listened before it restarted): now try the one we were given.
    st.pending[name] = ev = Event()
    st.pending_address[name] = (host, port)
    try:
        outcome = _dial(st, name, host, port, on_failure)
    finally:
        st.pending.pop(name, None)
        st.pending_address.pop(name, None)
        ev.set()
    if outcome is _Dialled.LOST_RACE:
        _wait_for_winner(st, name)
    return name in st.sessions


def _wait_for_winner(st: NodeState, name: str) -> None:
    """We lost a connection race to ``name``: wait for the connection that won (semantics rule 24).

    It may be up already (then this returns at once); else it is the one
    ``name`` is opening to us. Blocks at most the handshake timeout.
    """
    if name in st.sessions:
        return
    # No switch since the check: node_up cannot have set the event in between.
    up = st.up_events.setdefault(name, Event())
    up.wait(HANDSHAKE_TIMEOUT)


# A peer list names at most MAX_PEER_LIST nodes (a longer one is a protocol
# error); the nodes to dial wait in one queue of at most MAX_PEER_LIST names
# (beyond it, names are dropped: the next peer list or a later send through
# ensure_connected may bring them again), dialled by at most PEER_DIALERS
# greenlets at once.
MAX_PEER_LIST = 1024
PEER_DIALERS = 8
_peer_queue: Dict[str, Tuple[NodeState, str, int]] = {}  # name -> (node, host, port), oldest first
_peer_dialers = [0]  # greenlets dialling from _peer_queue


def connect_to_peers(st: NodeState, sender: str, peers: List[Tuple[str, str, int]]) -> None:
    """A peer's (checked) list of its own peers: connect, in the background, to those not known yet.

    Never blocks, and never dials more than :data:`PEER_DIALERS` nodes at once
    however long or frequent the lists are.
    """
    dropped = 0
    for name, host, port in peers:
        if name == st.info.name or name in st.sessions or name in st.pending or name in _peer_queue:
            continue
        if len(_peer_queue) >= MAX_PEER_LIST:
            dropped += 1
            continue
        _peer_queue[name] = (st, host, port)
    if dropped:
        log.warning("node %r sent %d peers beyond the %d to dial: dropped", sender, dropped, MAX_PEER_LIST)
    while _peer_dialers[0] < PEER_DIALERS and _peer_dialers[0] < len(_peer_queue):
        _peer_dialers[0] += 1
        gevent.spawn(_peer_dialer, st)


def _peer_dialer(st: NodeState) -> None:
    try:
        while _peer_queue and _nodestate.current is st and not st.stopping:
            name = next(iter(_peer_queue))
            queued_by, host, port = _peer_queue.pop(name)
            if queued_by is st and name not in st.sessions and name not in st.pending:
                connect_to(st, name, host, port)
    finally:
        _peer_dialers[0] -= 1


def _dial(st: NodeState, name: str, host: str, port: int, on_failure: Optional[Callable[[str], None]]) -> _Dialled:
    where = f"{name} at {host}:{port}"
    sock = None
    try:
        with gevent.Timeout(DIAL_TIMEOUT + HANDSHAKE_TIMEOUT, NodeError("timed out")):
            sock = _open_tcp(host, port, DIAL_TIMEOUT)
            sock.settimeout(None)
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            sock = st.client_ctx.wrap_socket(sock, server_side=False)
            if st.check_peer_names and not names_peer(sock, name):
                # Before anything of ours is sent: a node that is not ``name`` gets no HELLO.
                raise HandshakeError(_not_named(sock, name), kind="certificate")
            hs = Handshake(
                INITIATOR,
                st.info.name,
                st.info.creation,
                st.cookie,
                address=st.info.address,
                expected_peer=name,
                hidden=st.hidden,
            )
            est = _run_handshake(sock, hs, _Initiator(st))
    except LostRace:
        _close_quietly(sock)
        return _Dialled.LOST_RACE
    except (HandshakeError, OSError, NodeError, ValueError) as exc:
        _close_quietly(sock)
        reason = str(exc) if isinstance(exc, HandshakeError) else _describe_error(exc)
        if on_failure is None:
            log.warning("connection to %s failed: %s", where, reason)
        else:
            on_failure(reason)
        return _Dialled.FAILED
    sess = _new_session(st, sock, est, outgoing=True, trailing=hs.trailing_data)
    if not _register(st, sess, replace=False):
        return _Dialled.LOST_RACE
    sess.start(reader_in_new_greenlet=True)
    _after_up(st, sess)
    return _Dialled.CONNECTED


def _not_named(sock: Any, name: str) -> str:
    names = ", ".join(sorted(loggable(n, quoted=False) for n in peer_certificate_names(sock))) or "nothing"
    return f"its certificate is not issued to {loggable(name, quoted=False)} (it names {names})"


def _open_tcp(host: str, port: int, timeout: float) -> Any:
    """A TCP connection to ``host:port``; an IP address is used as it is.

    ``create_connection`` always asks the resolver, and gevent's default
    resolver runs in a thread pool: a node that only ever dials addresses
    would start threads for nothing (and then every ``fork()`` of the
    program, e.g. to start a test peer, warns on Python 3.12+).
    """
    for family in (gsocket.AF_INET, gsocket.AF_INET6):
        try:
            gsocket.inet_pton(family, host)
        except OSError:
            continue
        sock = gsocket.socket(family, gsocket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock
    return gsocket.create_connection((host, port), timeout=timeout)


def _describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE" in text.upper() or "ALERT" in text.upper():
        return f"TLS handshake failed ({text}); are both nodes' certificates from the same CA?"
    return text


def _close_quietly(sock: Any) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def _run_handshake(sock: Any, hs: Handshake, decide: "_Decider") -> Established:
    """Drive ``hs`` over ``sock`` until Established (returned) or HandshakeError (raised).

    ``decide`` answers each event that waits for a decision (:class:`PeerHello`,
    :class:`PeerProved`, :class:`PeerAlive`): None to go on, else the reason to
    refuse. It runs with no switch to other greenlets between it and what
    follows (sending nothing), so it may rely on the node's state. On
    Established, what ``hs`` still has to send (the acceptor's ACK) is left
    in it: the caller sends it once the session is registered.
    """
    try:
        while True:
            ev = hs.next_event()
            while ev is not None:
                if isinstance(ev, Established):
                    return ev
                reason = decide(ev)
                if reason is None:
                    hs.accept(alive=decide.alive) if isinstance(ev, PeerHello) else hs.accept()
                else:
                    hs.reject(reason)
                    sock.sendall(hs.data_to_send())
                    error = LostRace if reason in (REFUSE_ALREADY_CONNECTED, REFUSE_SIMULTANEOUS) else HandshakeError
                    raise error(f"refused {loggable(ev.name, quoted=False)}: {reason}", "refused")
                ev = hs.next_event()
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
            data = sock.recv(4096)
            if not data:
                raise HandshakeError("the peer closed the connection during the handshake", kind="closed")
            hs.receive_data(data)
    except HandshakeError:
        out = hs.data_to_send()
        if out:
            try:
                sock.sendall(out)  # best effort: tell the peer why
            except OSError:
                pass
        raise


def handle_incoming(sock: Any, address: Tuple[str, int]) -> None:
    """The listening server's handler: accept a peer, then read its session in this greenlet.

    At most ``max_handshakes`` connections handshake at once, and at most
    ``max_handshakes_per_address`` of them from one address: the excess is
    closed at once, with a log line (repeated ones from one address are
    summarised).
    """
    st = _nodestate.current
    if st is None or st.stopping:
        _close_quietly(sock)
        return
    host = str(address[0])
    where = f"{host}:{address[1]}"
    if not _admit(st, host, where):
        _close_quietly(sock)
        return
    st.handshakes[host] = st.handshakes.get(host, 0) + 1
    try:
        sess = _accept(st, sock, where)
    finally:
        left = st.handshakes.get(host, 0) - 1
        if left > 0:
            st.handshakes[host] = left
        else:
            st.handshakes.pop(host, None)
    if sess is not None:
        sess.run_reader()  # this greenlet (the server's) reads until the session ends


def _admit(st: NodeState, host: str, where: str) -> bool:
    """True when an incoming connection from ``host`` may start its handshake now."""
    from_host = st.handshakes.get(host, 0)
    if from_host >= st.max_handshakes_per_address:
        why = f"{from_host} connections from {host} are handshaking already (max_handshakes_per_address)"
    else:
        total = sum(st.handshakes.values())
        if total < st.max_handshakes:
            return True
        why = f"{total} connections are handshaking already (max_handshakes)"
    _log_refusal(host, where, why)
    return False


def _refusal_summary(host: str, count: int, seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    return "%d more connections from %s refused at once in the last %.3g s (max_handshakes)", (count, host, seconds)


# Refusals for too many handshakes: one line per address, then the count of
# the next ones in one line every REFUSAL_LOG_INTERVAL s.
_refusals = SummaryLog(log, _refusal_summary, REFUSAL_LOG_INTERVAL, overflow_key="other addresses")


def _log_refusal(host: str, where: str, why: str) -> None:
    _refusals.report(host, logging.WARNING, "refused connection from %s at once: %s", where, why)


class _Decider:
    """Answers a handshake's events (see :func:`_run_handshake`)."""

    alive = False  # acceptor: tell the initiator we have a live session with it
    warn = False  # a refusal worth a WARNING (not a connection race)

    def __call__(self, ev: Any) -> Optional[str]:
        return None


class _Initiator(_Decider):
    def __init__(self, st: NodeState) -> None:
        self.st = st

    def __call__(self, ev: Any) -> Optional[str]:
        """The acceptor says it has a live session with us (OTP's ``alive``).

        We dial only when not connected, so a session of ours with it means
        that one came up meanwhile (the acceptor's session is that one): stop.
        With none, the acceptor's session is stale (we dropped it): go on; the
        acceptor replaces it once we have proved the cookie.
        """
        if isinstance(ev, PeerAlive) and ev.name in self.st.sessions:
            return REFUSE_ALREADY_CONNECTED
        return None


class _Acceptor(_Decider):
    """The acceptor's two decisions: on the HELLO (nothing may be disturbed yet) and on the proof."""

    def __init__(self, st: NodeState, sock: Any) -> None:
        self.st = st
        self.sock = sock
        self.live: Optional[Session] = None  # the session we told the initiator about (alive)
        self.claimed: Optional[str] = None
        self.event: Optional[Event] = None

    def __call__(self, ev: Any) -> Optional[str]:
        if isinstance(ev, PeerHello):
            return self._hello(ev)
        if isinstance(ev, PeerProved):
            return self._proved(ev)
        return "unexpected handshake event"

    def _hello(self, hello: PeerHello) -> Optional[str]:
        st = self.st
        if hello.name == st.info.name:
            return "that is this node's own name"
        if st.check_peer_names and not names_peer(self.sock, hello.name):
            self.warn = True
            return _not_named(self.sock, hello.name)
        if hello.name in st.pending and simultaneous_connect_winner(st.info.name, hello.name) == "outgoing":
            return REFUSE_SIMULTANEOUS
        # Nothing is disturbed before the peer proves the cookie: a live session
        # with a node of that name stays as it is (see _proved).
        existing = st.sessions.get(hello.name)
        if existing is not None and existing.peer_creation == hello.creation:
            self.live = existing
            self.alive = True
        self.claimed = hello.name
        self.event = Event()
        st.accepting.setdefault(hello.name, []).append(self.event)
        return None

    def _proved(self, ev: PeerProved) -> Optional[str]:
        st = self.st
        if st.stopping:
            return "this node is stopping"
        existing = st.sessions.get(ev.name)
        if existing is None or existing.closed or existing is self.live:
            # None, or the one the initiator told us is stale (OTP's alive -> true).
            return None
        if existing.peer_creation != ev.creation:
            return None  # the peer restarted: the new connection replaces the old (OTP's up_pending)
        # A connection with this very node came up while this one was handshaking: it stays.
        return REFUSE_ALREADY_CONNECTED

    def done(self) -> None:
        """This handshake ended: wake whoever waits for it (see :func:`connect_to`)."""
        if self.event is None or self.claimed is None:
            return
        events = self.st.accepting.get(self.claimed, [])
        if self.event in events:
            events.remove(self.event)
        if not events:
            self.st.accepting.pop(self.claimed, None)
        self.event.set()
        self.event = None


def _accept(st: NodeState, sock: Any, where: str) -> Optional[Session]:
    """Run an incoming connection's TLS and cookie handshakes; its started session, or None."""
    tls_sock = None
    hs = None
    decider: Optional[_Acceptor] = None
    try:
        with gevent.Timeout(HANDSHAKE_TIMEOUT, NodeError("handshake timed out")):
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            try:
                tls_sock = st.server_ctx.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                log.warning("rejected connection from %s: TLS handshake failed: %s", where, exc)
                _close_quietly(sock)
                return None
            hs = Handshake(
                ACCEPTOR, st.info.name, st.info.creation, st.cookie, address=st.info.address, hidden=st.hidden
            )
            decider = _Acceptor(st, tls_sock)
            try:
                est = _run_handshake(tls_sock, hs, decider)
                sess = _new_session(st, tls_sock, est, outgoing=False, trailing=hs.trailing_data)
                # Registered before our ACK leaves: once the initiator counts the
                # session as up, so does this node.
                if not _register(st, sess, replace=True):
                    return None
            finally:
                decider.done()
            try:
                tls_sock.sendall(hs.data_to_send())  # the ACK
            except BaseException:
                if st.sessions.get(sess.peer_name) is sess:
                    del st.sessions[sess.peer_name]  # never announced: no node-down either
                sess.close("connection_closed", "the connection failed before the handshake's last message")
                raise
    except LostRace as exc:
        log.info("refused connection from %s: %s (another connection between the two nodes wins)", _who(hs, where), exc)
        _close_quietly(tls_sock or sock)
        return None
    except HandshakeError as exc:
        level = logging.INFO if exc.kind == "refused" and not (decider and decider.warn) else logging.WARNING
        log.log(level, "rejected connection from %s: %s", _who(hs, where), exc)
        _close_quietly(tls_sock or sock)
        return None
    except (OSError, NodeError, ValueError) as exc:
        log.warning("rejected connection from %s: %s", _who(hs, where), exc)
        _close_quietly(tls_sock or sock)
        return None
    if sess.closed:
        return None
    sess.start(reader_in_new_greenlet=False)
    _after_up(st, sess)
    return sess


def _who(hs: Optional[Handshake], where: str) -> str:
    """The address of an incoming connection, with the name its HELLO claimed if it got that far."""
    name = hs.peer_name if hs is not None else None
    return where if name is None else f"{where} (claiming to be {loggable(name, quoted=False)})"


def _new_session(st: NodeState, sock: Any, est: Established, *, outgoing: bool, trailing: bytes) -> Session:
    return Session(
        sock,
        est.peer_name,
        est.peer_creation,
        est.peer_address,
        outgoing=outgoing,
        tick=st.info.tick,
        max_frame_size=st.max_frame_size,
        on_frames=st.on_frames,
        on_closed=_on_closed,
        initial_data=trailing,
        busy_limit=st.dist_buffer_size,
        hidden=st.hidden or est.peer_hidden,
    )


def _register(st: NodeState, sess: Session, *, replace: bool) -> bool:
    """Make ``sess`` the session for its peer; False (and ``sess`` closed) if it loses to one already there.

    ``replace``: the acceptor decided, after the peer proved the cookie, that
    ``sess`` replaces whatever session with that node is there (a peer that
    restarted, or one that dropped its side). Else, of two live sessions with
    one node, both sides keep the one started by the lower name (semantics
    rule 24), and a newer creation always wins.
    """
    if st.stopping:
        sess.close("disconnect", "this node is stopping")
        return False
    old = st.sessions.get(sess.peer_name)
    if old is not None and not old.closed:
        restarted = old.peer_creation != sess.peer_creation
        if not replace:

            def starter(s: Session) -> str:
                return st.info.name if s.outgoing else s.peer_name

            if not (restarted or starter(sess) < starter(old)):
                sess.close("duplicate", "a connection to this node already exists")
                return False
        if restarted:
            old.close("connection_closed", "the peer restarted: a connection with its new creation proved the cookie")
        else:
            old.close("connection_closed", "replaced: the peer connected again and proved the cookie")
    st.sessions[sess.peer_name] = sess
    return True


def _after_up(st: NodeState, sess: Session) -> None:
    log.info(
        "connected to %snode %s (%s)",
        "hidden " if sess.hidden else "",
        sess.peer_name,
        loggable(sess.peer_address, quoted=False),
    )
    _known_addresses[sess.peer_name] = sess.peer_address
    # Hidden connections are not told to anyone (nobody dials a hidden node), and a
    # hidden node tells nobody of its peers (it joins the cluster, not the reverse).
    peers = (
        []
        if st.hidden
        else [[n, s.peer_address] for n, s in st.sessions.items() if n != sess.peer_name and not s.hidden]
    )
    sess.send(encode_frame([PEER_LIST, peers]))
    node_up(st, sess.peer_name, sess.hidden)


def _on_closed(sess: Session, reason: str) -> None:
    st = _nodestate.current
    if st is None or st.sessions.get(sess.peer_name) is not sess:
        return
    del st.sessions[sess.peer_name]
    node_down(st, sess.peer_name, reason, sess.hidden)
