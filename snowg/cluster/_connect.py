"""Connecting nodes: dialling, accepting, running the handshake, and races between them.

Connecting (semantics rules 23-24): TLS with certificates verified both ways
against the cluster CA, then the cookie handshake of
:mod:`snowg.cluster._handshake`. When two nodes connect to each other at
once, the connection started by the node whose name sorts lower wins: the
acceptor refuses the other one, and its initiator gets
:class:`~snowg.cluster._handshake.LostRace` and waits for the winner. After
a handshake both sides send their peer list, and each connects to the peers
it does not know yet: connecting one node joins the whole cluster (a full
mesh). The address of every node ever connected is remembered, so that
:func:`ensure_connected` can reconnect on demand, as Erlang does.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import gevent
from gevent import socket as gsocket
from gevent.event import Event

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
    PeerHello,
    printable,
    simultaneous_connect_winner,
)
from ._nodemon import node_down, node_up
from ._nodestate import NodeState, require
from ._session import Session

__all__ = [
    "DIAL_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "connect",
    "connect_to",
    "disconnect",
    "ensure_connected",
    "handle_incoming",
    "session_for",
]

log = logging.getLogger("snowg")

HANDSHAKE_TIMEOUT = 10.0
# Seconds to open the TCP connection to a peer (the handshake has its own limit).
DIAL_TIMEOUT = 5.0

# Where each node we have ever been connected to listened (for reconnecting on demand).
_known_addresses: Dict[str, str] = {}


class _Dialled(enum.Enum):
    """How an outgoing connection attempt ended."""

    CONNECTED = "connected"
    FAILED = "failed"
    LOST_RACE = "lost race"  # another connection between the two nodes wins


def _parse_target(target: str) -> Tuple[str, str, int]:
    try:
        name, port_s = target.rsplit(":", 1)
        host = name.split("@", 1)[1]
        port = int(port_s)
    except (ValueError, IndexError):
        raise ValueError(f"connect needs 'name@host:port', got {target!r}") from None
    return name, host, port


def connect(target: str) -> bool:
    """Connect to the node ``'name@host:port'`` and, through it, to its whole cluster.

    Blocks the caller until the handshake ends (at most ~15 s).

    Returns:
        True when connected (also when already connected), False when the
        connection failed (the reason is logged).

    Raises:
        NodeError: this process is not a node (call ``start_node`` first).
        ValueError: ``target`` is not ``'name@host:port'``.
    """
    st = require()
    name, host, port = _parse_target(target)
    return connect_to(st, name, host, port)


def ensure_connected(name: str) -> bool:
    """Connected to ``name``, connecting on demand to its last known address (as Erlang does).

    Blocks while connecting. Returns False when not connected and it cannot be
    (also when this process is not a node); never raises.
    """
    st = _nodestate.current
    if st is None:
        return False
    if name == st.info.name or name in st.sessions:
        return True
    address = _known_addresses.get(name)
    if address is None:
        return False
    host, port = address.rsplit(":", 1)
    return connect_to(st, name, host, int(port))


def disconnect(name: str) -> bool:
    """Close the connection to ``name``; True if there was one. Never blocks."""
    sess = session_for(name)
    if sess is None:
        return False
    sess.close("disconnect", "disconnect() called on this node")
    return True


def session_for(name: str) -> Optional[Session]:
    """The live session to ``name``, or None."""
    st = _nodestate.current
    return st.sessions.get(name) if st is not None else None


def connect_to(st: NodeState, name: str, host: str, port: int) -> bool:
    """Connect to ``name`` at ``host:port`` unless connected or connecting; True when connected.

    Blocks until the attempt (this one, or one already under way) ends.
    """
    if name == st.info.name:
        return True
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
        outcome = _dial(st, name, host, port)
    finally:
        st.pending.pop(name, None)
        st.pending_address.pop(name, None)
        ev.set()
    if outcome is _Dialled.LOST_RACE:
        up = st.up_events.setdefault(name, Event())
        up.wait(HANDSHAKE_TIMEOUT)
    return name in st.sessions


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


def _dial(st: NodeState, name: str, host: str, port: int) -> _Dialled:
    where = f"{name} at {host}:{port}"
    sock = None
    try:
        with gevent.Timeout(DIAL_TIMEOUT + HANDSHAKE_TIMEOUT, NodeError("timed out")):
            sock = _open_tcp(host, port, DIAL_TIMEOUT)
            sock.settimeout(None)
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            sock = st.client_ctx.wrap_socket(sock, server_side=False)
            hs = Handshake(
                INITIATOR,
                st.info.name,
                st.info.creation,
                st.cookie,
                address=st.info.address,
                expected_peer=name,
            )
            est = _run_handshake(sock, hs, None)
    except LostRace:
        _close_quietly(sock)
        return _Dialled.LOST_RACE
    except HandshakeError as exc:
        _close_quietly(sock)
        log.warning("connection to %s failed: %s", where, exc)
        return _Dialled.FAILED
    except (OSError, NodeError, ValueError) as exc:
        _close_quietly(sock)
        log.warning("connection to %s failed: %s", where, _describe_error(exc))
        return _Dialled.FAILED
    sess = _new_session(st, sock, est, outgoing=True, trailing=hs.trailing_data)
    if not _register(st, sess):
        return _Dialled.LOST_RACE
    sess.start(reader_in_new_greenlet=True)
    _after_up(st, sess)
    return _Dialled.CONNECTED


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


def _run_handshake(sock: Any, hs: Handshake, decide: Optional[Callable[[PeerHello], Optional[str]]]) -> Established:
    """Drive ``hs`` over ``sock`` until Established (returned) or HandshakeError (raised)."""
    try:
        while True:
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
            ev = hs.next_event()
            while ev is not None:
                if isinstance(ev, Established):
                    out = hs.data_to_send()
                    if out:
                        sock.sendall(out)
                    return ev
                reason = decide(ev) if decide is not None else None
                if reason is None:
                    hs.accept()
                else:
                    hs.reject(reason)
                    sock.sendall(hs.data_to_send())
                    raise HandshakeError(f"refused {ev.name}: {reason}", kind="refused")
                out = hs.data_to_send()
                if out:
                    sock.sendall(out)
                ev = hs.next_event()
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
    """The listening server's handler: accept a peer, then read its session in this greenlet."""
    st = _nodestate.current
    if st is None or st.stopping:
        _close_quietly(sock)
        return
    where = f"{address[0]}:{address[1]}"
    tls_sock = None
    hs = None
    try:
        with gevent.Timeout(HANDSHAKE_TIMEOUT, NodeError("handshake timed out")):
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            try:
                tls_sock = st.server_ctx.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                log.warning("rejected connection from %s: TLS handshake failed: %s", where, exc)
                _close_quietly(sock)
                return
            hs = Handshake(ACCEPTOR, st.info.name, st.info.creation, st.cookie, address=st.info.address)
            est = _run_handshake(tls_sock, hs, lambda hello: _decide(st, hello))
    except HandshakeError as exc:
        level = logging.INFO if exc.kind == "refused" else logging.WARNING
        log.log(level, "rejected connection from %s: %s", _who(hs, where), exc)
        _close_quietly(tls_sock or sock)
        return
    except (OSError, NodeError, ValueError) as exc:
        log.warning("rejected connection from %s: %s", _who(hs, where), exc)
        _close_quietly(tls_sock or sock)
        return
    sess = _new_session(st, tls_sock, est, outgoing=False, trailing=hs.trailing_data)
    if not _register(st, sess):
        return
    sess.start(reader_in_new_greenlet=False)
    _after_up(st, sess)
    sess.run_reader()  # this greenlet (the server's) reads until the session ends


def _who(hs: Optional[Handshake], where: str) -> str:
    """The address of an incoming connection, with the name its HELLO claimed if it got that far."""
    name = hs.peer_name if hs is not None else None
    return where if name is None else f"{where} (claiming to be {printable(name, 100)})"


def _decide(st: NodeState, hello: PeerHello) -> Optional[str]:
    """Acceptor's answer to a peer's HELLO: None to accept, or the reason to refuse."""
    if hello.name == st.info.name:
        return "that is this node's own name"
    existing = st.sessions.get(hello.name)
    if existing is not None:
        if existing.peer_creation != hello.creation:
            # The peer restarted and we have not noticed yet: the old session is dead.
            existing.close("connection_closed", "the peer restarted")
            return None
        return REFUSE_ALREADY_CONNECTED
    if hello.name in st.pending:
        if simultaneous_connect_winner(st.info.name, hello.name) == "outgoing":
            return REFUSE_SIMULTANEOUS
    return None


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
    )


def _register(st: NodeState, sess: Session) -> bool:
    """Make ``sess`` the session for its peer; False (and closed) if a duplicate loses."""
    if st.stopping:
        sess.close("disconnect", "this node is stopping")
        return False
    old = st.sessions.get(sess.peer_name)
    if old is not None and not old.closed:
        # Both sides keep the connection started by the lower name (semantics rule 24).
        def starter(s: Session) -> str:
            return st.info.name if s.outgoing else s.peer_name

        keep_new = starter(sess) < starter(old) or old.peer_creation != sess.peer_creation
        if not keep_new:
            sess.close("duplicate", "a connection to this node already exists")
            return False
        old.close("duplicate", "replaced by a newer connection")
    st.sessions[sess.peer_name] = sess
    return True


def _after_up(st: NodeState, sess: Session) -> None:
    log.info("connected to node %s (%s)", sess.peer_name, sess.peer_address)
    _known_addresses[sess.peer_name] = sess.peer_address
    peers = [[n, s.peer_address] for n, s in st.sessions.items() if n != sess.peer_name]
    sess.send(encode_frame([PEER_LIST, peers]))
    node_up(st, sess.peer_name)


def _on_closed(sess: Session, reason: str) -> None:
    st = _nodestate.current
    if st is None or st.sessions.get(sess.peer_name) is not sess:
        return
    del st.sessions[sess.peer_name]
    node_down(st, sess.peer_name, reason)
