"""This OS process as a node of a cluster: start, connect, route, and lose peers.

``start_node`` makes the process the node ``name@host``: it listens for TLS
connections, and installs a :class:`_Router` as the runtime's remote router so
that ``send``/``link``/``monitor``/``exit``/``spawn`` reach other nodes.

Connecting (semantics rules 23-24): TLS with certificates verified both ways against
the cluster CA, then the cookie handshake of :mod:`snowg.cluster.protocol`. When
two nodes connect to each other at once, the connection started by the node
whose name sorts lower wins. After a handshake both sides send their peer
list, and each connects to the peers it does not know yet: connecting one
node joins the whole cluster (a full mesh).

Losing a peer (semantics rule 26) applies, in order: links (``'noconnection'``
exits), monitors (``Down(..., 'noconnection')``), node monitors
(``NodeDown``), then the node-down hooks (the global registry).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from gevent.server import StreamServer

from .._core import process as _p
from .._core import remote as _remote
from .._core.runtime import RemoteRouter, rt
from .._core.terms import NONODE, Down, Exit, NodeDown, NodeUp, Pid, Ref
from .._errors import NodeError, SpawnError
from . import hooks, protocol
from ._names import check_node_name
from ._spawnable import lookup_spawnable, wire_name
from . import tls as _tls
from .cookie import resolve_cookie
from .session import Session

log = logging.getLogger("snowg")

DEFAULT_TICK = 15.0
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
# Seconds to open the TCP connection to a peer (the handshake has its own limit).
DIAL_TIMEOUT = 5.0

_enc = protocol.encode_frame

# In a spawn_pending entry's options: its caller gave up (a timed-out rpc.call).
ABANDONED = "abandoned"


class SpawnReply(NamedTuple):
    """Internal: the answer to a remote spawn request, delivered to the caller."""

    req: Ref
    result: Any


class Node:
    """What ``start_node`` returns: this node's identity.

    Attributes:
        name: ``'name@host'``.
        creation: a number that differs each time a node with this name starts.
        address: ``'host:port'`` where it listens.
        tick: the liveness tick in seconds.
    """

    def __init__(self, name: str, creation: int, host: str, port: int, tick: float) -> None:
        self.name = name
        self.creation = creation
        self.host = host
        self.port = port
        self.tick = tick

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Node {self.name} at {self.address}>"


class _State:
    """Everything a running node holds (one per OS process)."""

    def __init__(self, info: Node, cookie: str, server_ctx: Any, client_ctx: Any, max_frame_size: int) -> None:
        self.info = info
        self.cookie = cookie
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.max_frame_size = max_frame_size
        self.sessions: Dict[str, Session] = {}
        self.pending: Dict[str, Event] = {}
        self.pending_address: Dict[str, Tuple[str, int]] = {}
        self.up_events: Dict[str, Event] = {}
        self.node_watchers: Dict[str, List[Pid]] = {}
        self.all_nodes_watchers: List[Pid] = []
        self.spawn_pending: Dict[Ref, Tuple[Pid, Tuple[str, ...], str]] = {}
        self.server: Optional[StreamServer] = None
        self.stopping = False


_state: Optional[_State] = None

# Extra frame handlers by tag (the global registry installs its own), and
# callbacks run after a node is lost / gained, after links and monitors.
frame_handlers: Dict[int, Callable[[Session, tuple], None]] = {}
node_down_hooks: List[Callable[[str], None]] = []
node_up_hooks: List[Callable[[Session], None]] = []
node_stop_hooks: List[Callable[[], None]] = []
# Called with (req, caller) for a watched request whose node went down unanswered.
request_lost_hooks: List[Callable[[Ref, Pid], None]] = []
_requests: Dict[Ref, Tuple[Pid, str]] = {}


def watch_request(req: Ref, caller: Pid, node_name: str) -> None:
    """Remember a request sent to ``node_name``: if the node goes down first, the hooks hear of it."""
    _requests[req] = (caller, node_name)


def unwatch_request(req: Ref) -> bool:
    """Forget a request (its answer came); False if it was not watched."""
    return _requests.pop(req, None) is not None


# ---------------------------------------------------------------- lifecycle


def start_node(
    name: str,
    *,
    cookie: Optional[str] = None,
    port: int = 0,
    tls: Any = None,
    tick: float = DEFAULT_TICK,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    listen_host: Optional[str] = None,
) -> Node:
    """Make this OS process the node ``name`` (``'alice@127.0.0.1'``) and start listening.

    Returns at once; all IO runs in greenlets.

    Args:
        name: ``'name@host'``; ``host`` is where it listens unless ``listen_host`` is given.
        cookie: the cluster cookie; default ``$SNOWG_COOKIE``, else the cookie file
            (see :func:`snowg.cluster.cookie.resolve_cookie`).
        port: the TCP port; 0 picks a free one (see ``Node.address``).
        tls: certificates made by ``snowg certs``: a directory, a ``(ca, cert, key)``
            tuple or dict; default ``$SNOWG_HOME/certs`` (``~/.snowg/certs``).
        tick: liveness tick in seconds (a silent peer is down after ``4 * tick``).
        max_frame_size: the largest frame accepted from a peer, in bytes.

    Raises:
        NodeError: already started, a bad name, bad certificates or cookie,
            or the port cannot be bound.
    """
    global _state
    if _state is not None:
        raise NodeError(f"this process is already the node {_state.info.name}")
    try:
        host = check_node_name(name)
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    if tick <= 0:
        raise NodeError("tick must be positive")
    cookie = resolve_cookie(cookie)
    cfg = _tls.load_tls(tls, name, default_dir=None)
    server_ctx = _tls.server_context(cfg)
    client_ctx = _tls.client_context(cfg)
    creation = _new_creation()
    try:
        server = StreamServer((listen_host or host, port), _handle_incoming)
        server.start()
    except OSError as exc:
        raise NodeError(f"node {name}: cannot listen on {listen_host or host}:{port}: {exc}") from exc
    info = Node(name, creation, listen_host or host, server.server_port, tick)
    _state = _State(info, cookie, server_ctx, client_ctx, max_frame_size)
    _state.server = server
    _remote.rename_local_pids(name, creation)
    rt.router = _Router()
    hooks.set_room_forwarder(_forward_room)
    log.info("node %s started, listening on %s", name, info.address)
    return info


def _new_creation() -> int:
    # Milliseconds since the epoch, folded to 31 bits, never 0: a node restarted
    # under the same name gets another creation, so stale pids never match.
    return (int(time.time() * 1000) % 0x7FFFFFFF) or 1


def stop_node() -> None:
    """Disconnect from every node and stop listening; the process is ``nonode@nohost`` again."""
    global _state
    st = _state
    if st is None:
        return
    st.stopping = True
    if st.server is not None:
        st.server.stop(timeout=1)
    for sess in list(st.sessions.values()):
        sess.close("disconnect", "this node stopped")
    rt.router = None
    hooks.set_room_forwarder(None)
    for hook in node_stop_hooks:
        hook()
    _remote.rename_local_pids(NONODE, 0)
    _state = None
    log.info("node %s stopped", st.info.name)


def current() -> Optional[Node]:
    """This node's :class:`Node`, or None before ``start_node``."""
    return _state.info if _state is not None else None


def node() -> str:
    """This node's name (``'nonode@nohost'`` before ``start_node``)."""
    return rt.node


def nodes() -> List[str]:
    """The names of the connected nodes (not this one), sorted."""
    return sorted(_state.sessions) if _state is not None else []


def node_address(name: str) -> Optional[str]:
    """The listening address of a connected node."""
    if _state is None:
        return None
    sess = _state.sessions.get(name)
    return sess.peer_address if sess is not None else None


# --------------------------------------------------------------- connecting


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
    st = _require()
    name, host, port = _parse_target(target)
    return _connect(st, name, host, port)


def _connect(st: _State, name: str, host: str, port: int) -> bool:
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
        outcome = _connect_out(st, name, host, port)
    finally:
        st.pending.pop(name, None)
        st.pending_address.pop(name, None)
        ev.set()
    if outcome == "lost_race":
        up = st.up_events.setdefault(name, Event())
        up.wait(HANDSHAKE_TIMEOUT)
    return name in st.sessions


def _connect_out(st: _State, name: str, host: str, port: int) -> str:
    where = f"{name} at {host}:{port}"
    sock = None
    try:
        with gevent.Timeout(DIAL_TIMEOUT + HANDSHAKE_TIMEOUT, NodeError("timed out")):
            sock = _open_tcp(host, port, DIAL_TIMEOUT)
            sock.settimeout(None)
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            sock = st.client_ctx.wrap_socket(sock, server_side=False)
            hs = protocol.Handshake(
                protocol.INITIATOR, st.info.name, st.info.creation, st.cookie,
                address=st.info.address, expected_peer=name,
            )
            est = _run_handshake(sock, hs, None)
    except protocol.HandshakeError as exc:
        _close_quietly(sock)
        if exc.kind == "rejected" and "simultaneous" in str(exc):
            return "lost_race"
        if exc.kind == "rejected" and "already connected" in str(exc):
            return "lost_race"
        log.warning("connection to %s failed: %s", where, exc)
        return "failed"
    except (OSError, NodeError, ValueError) as exc:
        _close_quietly(sock)
        log.warning("connection to %s failed: %s", where, _describe_error(exc))
        return "failed"
    sess = _new_session(st, sock, est, outgoing=True, trailing=hs.trailing_data)
    if not _register(st, sess):
        return "lost_race"
    sess.start(reader_in_new_greenlet=True)
    _after_up(st, sess)
    return "ok"


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


def _run_handshake(sock: Any, hs: protocol.Handshake, decide: Optional[Callable[[Any], Optional[str]]]) -> Any:
    """Drive ``hs`` over ``sock`` until Established (returned) or HandshakeError."""
    try:
        while True:
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
            ev = hs.next_event()
            while ev is not None:
                if isinstance(ev, protocol.Established):
                    out = hs.data_to_send()
                    if out:
                        sock.sendall(out)
                    return ev
                if isinstance(ev, protocol.PeerHello):
                    reason = decide(ev) if decide is not None else None
                    if reason is None:
                        hs.accept()
                    else:
                        hs.reject(reason)
                        sock.sendall(hs.data_to_send())
                        raise protocol.HandshakeError(f"refused {ev.name}: {reason}", kind="refused")
                out = hs.data_to_send()
                if out:
                    sock.sendall(out)
                ev = hs.next_event()
            data = sock.recv(4096)
            if not data:
                raise protocol.HandshakeError("the peer closed the connection during the handshake",
                                              kind="closed")
            hs.receive_data(data)
    except protocol.HandshakeError:
        out = hs.data_to_send()
        if out:
            try:
                sock.sendall(out)  # best effort: tell the peer why
            except OSError:
                pass
        raise


def _handle_incoming(sock: Any, address: Tuple[str, int]) -> None:
    st = _state
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
            hs = protocol.Handshake(protocol.ACCEPTOR, st.info.name, st.info.creation, st.cookie,
                                    address=st.info.address)
            est = _run_handshake(tls_sock, hs, lambda hello: _decide(st, hello))
    except protocol.HandshakeError as exc:
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


def _who(hs: Optional[protocol.Handshake], where: str) -> str:
    """The address of an incoming connection, with the name its HELLO claimed if it got that far."""
    name = hs.peer_name if hs is not None else None
    return where if name is None else f"{where} (claiming to be {protocol._printable(name, 100)})"


def _decide(st: _State, hello: protocol.PeerHello) -> Optional[str]:
    """Acceptor's answer to a peer's HELLO: None to accept, or the reason to refuse."""
    if hello.name == st.info.name:
        return "that is this node's own name"
    existing = st.sessions.get(hello.name)
    if existing is not None:
        if existing.peer_creation != hello.creation:
            # The peer restarted and we have not noticed yet: the old session is dead.
            existing.close("connection_closed", "the peer restarted")
            return None
        return "already connected"
    if hello.name in st.pending:
        if protocol.simultaneous_connect_winner(st.info.name, hello.name) == "outgoing":
            return "simultaneous connection: the one started by the lower name wins"
    return None


def _new_session(st: _State, sock: Any, est: Any, *, outgoing: bool, trailing: bytes) -> Session:
    return Session(
        sock, est.peer_name, est.peer_creation, est.peer_address,
        outgoing=outgoing, tick=st.info.tick, max_frame_size=st.max_frame_size,
        on_frames=_on_frames, on_closed=_on_closed, initial_data=trailing,
    )


def _register(st: _State, sess: Session) -> bool:
    """Make ``sess`` the session for its peer; False (and closed) if a duplicate loses."""
    if st.stopping:
        sess.close("disconnect", "this node is stopping")
        return False
    old = st.sessions.get(sess.peer_name)
    if old is not None and not old.closed:
        # Both sides keep the connection started by the lower name (semantics rule 24).
        def starter(s: Session) -> str:
            return st.info.name if s.outgoing else s.peer_name

        keep_new = starter(sess) < starter(old) or (
            old.peer_creation != sess.peer_creation
        )
        if not keep_new:
            sess.close("duplicate", "a connection to this node already exists")
            return False
        old.close("duplicate", "replaced by a newer connection")
    st.sessions[sess.peer_name] = sess
    return True


def _after_up(st: _State, sess: Session) -> None:
    log.info("connected to node %s (%s)", sess.peer_name, sess.peer_address)
    _known_addresses[sess.peer_name] = sess.peer_address
    peers = [[n, s.peer_address] for n, s in st.sessions.items() if n != sess.peer_name]
    sess.send(_enc([protocol.PEER_LIST, peers]))
    for hook in node_up_hooks:
        try:
            hook(sess)
        except Exception:  # noqa: BLE001 - a hook's bug must not break the session
            log.exception("node-up hook failed for %s", sess.peer_name)
    ev = st.up_events.pop(sess.peer_name, None)
    if ev is not None:
        ev.set()
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeUp(sess.peer_name))


def _on_closed(sess: Session, reason: str) -> None:
    st = _state
    if st is None or st.sessions.get(sess.peer_name) is not sess:
        return
    del st.sessions[sess.peer_name]
    _node_down(st, sess.peer_name, reason)


def _node_down(st: _State, name: str, reason: str) -> None:
    # semantics rule 26: links, then monitors, then node monitors, then global names.
    broken, fired = _remote.node_down(name)
    for req, (caller, opts, node_name) in list(st.spawn_pending.items()):
        if node_name == name:
            del st.spawn_pending[req]
            if ABANDONED not in opts:
                _remote.deliver_to(caller, SpawnReply(req, "noconnection"))
    for req, (caller, node_name) in list(_requests.items()):
        if node_name == name:
            del _requests[req]
            for lost in request_lost_hooks:
                lost(req, caller)
    for watcher in st.node_watchers.pop(name, ()):
        _remote.deliver_to(watcher, NodeDown(name, reason))
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeDown(name, reason))
    for hook in node_down_hooks:
        try:
            hook(name)
        except Exception:  # noqa: BLE001
            log.exception("node-down hook failed for %s", name)
    log.info("node %s down (%s): %d links broken, %d monitors fired", name, reason, broken, fired)


# Where each node we have ever been connected to listened (for reconnecting on demand).
_known_addresses: Dict[str, str] = {}


def known_address(name: str) -> Optional[str]:
    """The last listening address seen for the node ``name`` (``'host:port'``), or None."""
    return _known_addresses.get(name)


def ensure_connected(name: str) -> bool:
    """Connected to ``name``, connecting on demand to its last known address (as Erlang does).

    Blocks while connecting. Returns False when not connected and it cannot be.
    """
    st = _state
    if st is None:
        return False
    if name == st.info.name or name in st.sessions:
        return True
    address = _known_addresses.get(name)
    if address is None:
        return False
    host, port = address.rsplit(":", 1)
    return _connect(st, name, host, int(port))


def disconnect(name: str) -> bool:
    """Close the connection to ``name``; True if there was one."""
    st = _state
    if st is None:
        return False
    sess = st.sessions.get(name)
    if sess is None:
        return False
    sess.close("disconnect", "disconnect() called on this node")
    return True


def monitor_node(name: str, flag: bool = True) -> None:
    """Ask for ``NodeDown(name, reason)`` when the connection to ``name`` goes.

    If not connected, ``NodeDown(name, 'noconnection')`` arrives at once.
    ``flag=False`` removes the caller's monitors of ``name``.
    """
    me = _p.self()
    st = _state
    if not flag:
        if st is not None and name in st.node_watchers:
            st.node_watchers[name] = [w for w in st.node_watchers[name] if w != me]
        return
    if st is None or name not in st.sessions:
        _remote.deliver_to(me, NodeDown(name, "noconnection"))
        return
    st.node_watchers.setdefault(name, []).append(me)


def monitor_nodes(flag: bool = True) -> None:
    """Ask for ``NodeUp``/``NodeDown`` about every node (``net_kernel:monitor_nodes``)."""
    me = _p.self()
    st = _require()
    st.all_nodes_watchers = [w for w in st.all_nodes_watchers if w != me and _p.is_alive(w)]
    if flag:
        st.all_nodes_watchers.append(me)


def _require() -> _State:
    if _state is None:
        raise NodeError("this process is not a node: call snowg.start_node(...) first")
    return _state


def session_for(name: str) -> Optional[Session]:
    """The live session to ``name`` (for upper layers), or None."""
    return _state.sessions.get(name) if _state is not None else None


def broadcast_frame(frame: bytes) -> int:
    """Queue one encoded frame on every session; returns how many nodes got it."""
    st = _state
    if st is None:
        return 0
    n = 0
    for sess in list(st.sessions.values()):
        if sess.send(frame):
            n += 1
    return n


def _forward_room(room: str, data: Any) -> None:
    if _state is not None and _state.sessions:
        broadcast_frame(_enc([protocol.ROOM_BROADCAST, room, data]))


# ---------------------------------------------------------------- dispatch

_SEND = protocol.SEND


def _on_frames(sess: Session, frames: List[Any]) -> None:
    deliver_to = _remote.deliver_to
    for frame in frames:
        # Fast path for plain messages, the bulk of the traffic.
        if type(frame) is list and len(frame) == 3 and frame[0] == _SEND and type(frame[1]) is Pid:
            deliver_to(frame[1], frame[2])
            continue
        f = protocol.validate_frame(frame)
        handler = _HANDLERS.get(f[0]) or frame_handlers.get(f[0])
        if handler is None:
            raise protocol.MalformedFrame(f"frame tag {f[0]} is not handled by this node")
        handler(sess, f)


def _check_from(sess: Session, pid: Pid) -> None:
    if pid.node != sess.peer_name:
        raise protocol.MalformedFrame(f"peer {sess.peer_name} sent a signal claiming to come from {pid}")


def _h_tick(sess: Session, f: tuple) -> None:
    pass


def _h_send(sess: Session, f: tuple) -> None:
    _remote.deliver_to(f[1], f[2])


def _h_send_name(sess: Session, f: tuple) -> None:
    _remote.deliver_to_name(f[2], f[3])


def _h_link(sess: Session, f: tuple) -> None:
    _, frm, to = f
    _check_from(sess, frm)
    if not _remote.incoming_link(frm, to):
        sess.send(_enc([protocol.EXIT, to, frm, "noproc"]))


def _h_unlink(sess: Session, f: tuple) -> None:
    _check_from(sess, f[1])
    _remote.incoming_unlink(f[1], f[2])


def _h_exit(sess: Session, f: tuple) -> None:
    _check_from(sess, f[1])
    _remote.incoming_link_exit(f[1], f[2], f[3])


def _h_exit2(sess: Session, f: tuple) -> None:
    _check_from(sess, f[1])
    _remote.incoming_exit2(f[1], f[2], f[3])


def _h_monitor(sess: Session, f: tuple) -> None:
    _, watcher, target, ref = f
    _check_from(sess, watcher)
    missing = _remote.incoming_monitor(watcher, target, ref)
    if missing is not None:
        sess.send(_enc([protocol.MONITOR_EXIT, missing, watcher, ref, "noproc"]))


def _h_demonitor(sess: Session, f: tuple) -> None:
    _check_from(sess, f[1])
    _remote.incoming_demonitor(f[2], f[3])


def _h_monitor_exit(sess: Session, f: tuple) -> None:
    _, target, watcher, ref, reason = f
    _remote.incoming_down(watcher, ref, target, reason)


def _h_spawn_request(sess: Session, f: tuple) -> None:
    _, req, caller, fn_name, args, kwargs, opts = f
    _check_from(sess, caller)
    fn = lookup_spawnable(fn_name)
    if fn is None:
        log.warning("node %s asked to spawn %r, which is not @spawnable here: refused", sess.peer_name, fn_name)
        sess.send(_enc([protocol.SPAWN_REPLY, req, caller, f"{fn_name!r} is not spawnable on node {rt.node}"]))
        return
    pid = _remote.spawn_for_peer(fn, tuple(args), kwargs, caller, "link" in opts,
                                 req if "monitor" in opts else None)
    sess.send(_enc([protocol.SPAWN_REPLY, req, caller, pid]))


def _h_spawn_reply(sess: Session, f: tuple) -> None:
    _, req, caller, result = f
    st = _state
    pending = st.spawn_pending.pop(req, None) if st is not None else None
    if pending is None:
        return
    _caller, opts, _node = pending
    if ABANDONED in opts:
        if type(result) is Pid:
            # Its caller gave up (an rpc.call that timed out): end the child
            # quietly, its monitor first so that no Down comes back.
            sess.send(_enc([protocol.DEMONITOR, caller, result, req]))
            sess.send(_enc([protocol.EXIT2, caller, result, "kill"]))
        return
    if type(result) is Pid:
        # Record the link/monitor now, before any EXIT that follows on this
        # session is dispatched: the child may already have ended.
        if "link" in opts and not _remote.add_outgoing_link(caller, result):
            sess.send(_enc([protocol.EXIT, caller, result, "noproc"]))
        if "monitor" in opts and not _remote.add_outgoing_monitor(caller, result, req):
            sess.send(_enc([protocol.DEMONITOR, caller, result, req]))
    _remote.deliver_to(caller, SpawnReply(req, result))


def _h_peer_list(sess: Session, f: tuple) -> None:
    st = _state
    if st is None:
        return
    for name, address in f[1]:
        if name == st.info.name or name in st.sessions or name in st.pending:
            continue
        try:
            host, port = address.rsplit(":", 1)
            gevent.spawn(_connect, st, name, host, int(port))
        except ValueError:
            log.warning("peer %s sent a bad address %r for %s", sess.peer_name, address, name)


def _h_room_broadcast(sess: Session, f: tuple) -> None:
    hooks.deliver_room(f[1], f[2])


_HANDLERS: Dict[int, Callable[[Session, tuple], None]] = {
    protocol.TICK: _h_tick,
    protocol.SEND: _h_send,
    protocol.SEND_NAME: _h_send_name,
    protocol.LINK: _h_link,
    protocol.UNLINK: _h_unlink,
    protocol.EXIT: _h_exit,
    protocol.EXIT2: _h_exit2,
    protocol.MONITOR: _h_monitor,
    protocol.DEMONITOR: _h_demonitor,
    protocol.MONITOR_EXIT: _h_monitor_exit,
    protocol.SPAWN_REQUEST: _h_spawn_request,
    protocol.SPAWN_REPLY: _h_spawn_reply,
    protocol.PEER_LIST: _h_peer_list,
    protocol.ROOM_BROADCAST: _h_room_broadcast,
}


# ------------------------------------------------------------------ router


def _safe_reason(reason: Any) -> Any:
    """A reason that can cross (an exit must never fail to be sent)."""
    try:
        protocol.encode_frame([0, reason])
        return reason
    except (TypeError, ValueError):
        return repr(reason)


class _Router(RemoteRouter):
    """Carries signals for pids of other nodes over their sessions."""

    def _session(self, node_name: str) -> Optional[Session]:
        st = _state
        return st.sessions.get(node_name) if st is not None else None

    def send(self, pid: Pid, msg: Any) -> None:
        frame = _enc([_SEND, pid, msg])  # TypeError here, in the sender, for terms that cannot cross
        st = _state
        sess = st.sessions.get(pid.node) if st is not None else None
        if sess is not None and sess.peer_creation == pid.creation:
            sess.send(frame)

    def send_name(self, name: str, node_name: str, msg: Any, from_pid: Any) -> None:
        frame = _enc([protocol.SEND_NAME, from_pid, name, msg])
        sess = self._session(node_name)
        if sess is not None:
            sess.send(frame)

    def link(self, from_pid: Pid, to_pid: Pid) -> None:
        sess = self._session(to_pid.node)
        if sess is None:
            _remote.incoming_link_exit(to_pid, from_pid, "noconnection")
        elif sess.peer_creation != to_pid.creation:
            _remote.link_noproc(to_pid, from_pid)
        else:
            sess.send(_enc([protocol.LINK, from_pid, to_pid]))

    def unlink(self, from_pid: Pid, to_pid: Pid) -> None:
        sess = self._session(to_pid.node)
        if sess is not None:
            sess.send(_enc([protocol.UNLINK, from_pid, to_pid]))

    def exit_link(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        sess = self._session(to_pid.node)
        if sess is not None:
            sess.send(_enc([protocol.EXIT, from_pid, to_pid, _safe_reason(reason)]))

    def exit2(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        frame = _enc([protocol.EXIT2, from_pid, to_pid, reason])
        sess = self._session(to_pid.node)
        if sess is not None and sess.peer_creation == to_pid.creation:
            sess.send(frame)

    def monitor(self, from_pid: Pid, target: Any, ref: Ref) -> None:
        if type(target) is Pid:
            node_name, wire_target = target.node, target
        else:
            node_name, wire_target = target[1], target[0]
        sess = self._session(node_name)
        if sess is None:
            _remote.incoming_down(from_pid, ref, target, "noconnection")
        elif type(target) is Pid and sess.peer_creation != target.creation:
            _remote.incoming_down(from_pid, ref, target, "noproc")
        else:
            sess.send(_enc([protocol.MONITOR, from_pid, wire_target, ref]))

    def demonitor(self, from_pid: Pid, target: Any, ref: Ref) -> None:
        if type(target) is Pid:
            node_name, wire_target = target.node, target
        else:
            node_name, wire_target = target[1], target[0]
        sess = self._session(node_name)
        if sess is not None:
            sess.send(_enc([protocol.DEMONITOR, from_pid, wire_target, ref]))

    def monitor_exit(self, target: Any, watcher: Pid, ref: Ref, reason: Any) -> None:
        sess = self._session(watcher.node)
        if sess is not None:
            sess.send(_enc([protocol.MONITOR_EXIT, target, watcher, ref, _safe_reason(reason)]))

    def spawn(self, node_name: str, fn: Any, args: tuple, kwargs: dict, opts: tuple) -> Any:
        me = _p._current()
        caller = me.pid
        req = _p.make_ref()
        name = wire_name(fn)
        frame = _enc([protocol.SPAWN_REQUEST, req, caller, name, list(args), kwargs, list(opts)])
        st = _state
        sess = self._session(node_name)
        if st is None or sess is None:
            # As Erlang: a pid that names the node, and at once a 'noconnection'
            # exit (spawn_link) or Down (spawn_monitor). It is never alive.
            pid = Pid(node_name, 0, 0)
            return self._fail_spawn(me, pid, req, opts)
        st.spawn_pending[req] = (caller, tuple(opts), node_name)
        sess.send(frame)
        reply = _p.receive(lambda m: type(m) is SpawnReply and m.req == req)
        result = reply.result
        if type(result) is Pid:
            return (result, req) if "monitor" in opts else result
        if result == "noconnection":
            return self._fail_spawn(me, Pid(node_name, 0, 0), req, opts)
        raise SpawnError(str(result))

    def _fail_spawn(self, me: Any, pid: Pid, req: Ref, opts: tuple) -> Any:
        if "monitor" in opts:
            _p.deliver(me, Down(req, pid, "noconnection"))
            return pid, req
        if "link" in opts:
            if me.trap:
                _p.deliver(me, Exit(pid, "noconnection"))
            else:
                _p._kill(me, "noconnection")
        return pid

