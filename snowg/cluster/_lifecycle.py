"""This OS process as a node: starting it, stopping it, and what it is.

``start_node`` makes the process the node ``name@host``: it checks the
certificates and the cookie, listens for TLS connections, renames the pids
made so far to carry the node's name, and installs the
:class:`~snowg.cluster._router.Router` so that ``send``/``link``/``monitor``/
``exit``/``spawn`` reach other nodes. ``stop_node`` undoes all of it, after
sending what its sessions hold queued.
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional, cast

from gevent.server import StreamServer

from .._core import remote as _remote
from .._core.terms import NONODE
from .._errors import NodeError
from . import _nodestate
from ._connect import DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_HANDSHAKES_PER_ADDRESS, handle_incoming
from ._certfiles import TLSSpec
from ._cookie import resolve_cookie
from ._dispatch import on_frames
from ._framing import DEFAULT_MAX_FRAME_SIZE
from ._names import check_node_name
from ._nodemon import stop_callbacks
from ._nodestate import Node, NodeState
from ._router import Router
from ._session import DEFAULT_DIST_BUFFER_SIZE
from ._tls import client_context, is_node_certificate, load_tls, server_context

__all__ = [
    "DEFAULT_DIST_BUFFER_SIZE",
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_TICK",
    "current",
    "node",
    "nodes",
    "start_node",
    "stop_node",
]

log = logging.getLogger("snowg")

DEFAULT_TICK = 15.0
#: Seconds ``stop_node`` may spend sending what is queued before it closes anyway.
DEFAULT_FLUSH_TIMEOUT = 5.0


def start_node(
    name: str,
    *,
    cookie: Optional[str] = None,
    port: int = 0,
    tls: TLSSpec = None,
    tick: float = DEFAULT_TICK,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    listen_host: Optional[str] = None,
    dist_buffer_size: int = DEFAULT_DIST_BUFFER_SIZE,
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
    max_handshakes_per_address: int = DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
    check_peer_names: Optional[bool] = None,
) -> Node:
    """Make this OS process the node ``name`` (``'alice@127.0.0.1'``) and start listening.

    Returns at once; all IO runs in greenlets.

    Args:
        name: ``'name@host'``; ``host`` is where it listens unless ``listen_host`` is given.
        cookie: the cluster cookie; default ``$SNOWG_COOKIE``, else the cookie file
            (see :func:`snowg.cluster._cookie.resolve_cookie`).
        port: the TCP port; 0 picks a free one (see ``Node.address``).
        tls: certificates made by ``snowg certs``: a directory, a ``(ca, cert, key)``
            tuple or dict; default ``$SNOWG_HOME/certs`` (``~/.snowg/certs``).
        tick: liveness tick in seconds (a silent peer is down after ``4 * tick``).
        max_frame_size: the largest frame accepted from a peer, in bytes.
        listen_host: the address to listen on, when it is not the name's host.
        dist_buffer_size: bytes a session to one node may hold queued (1 MiB, as
            Erlang's ``+zdbbl``). A process that sends a message while more wait
            is suspended until the queue drains below it; the runtime's own
            signals and senders that are not processes are queued over it.
        max_handshakes: incoming connections that may be handshaking (TLS, then
            the cookie) at once; one more is closed at once, with a log line.
        max_handshakes_per_address: of those, how many may come from one address.
        check_peer_names: refuse a peer whose certificate is not issued to the
            node name it claims (its CN, as ``snowg certs --node`` writes it).
            Default: on when this node's own certificate is issued to it, off
            with the generic certificate.

    Raises:
        NodeError: already started, a bad name, bad certificates or cookie,
            or the port cannot be bound (the message says which).
    """
    if _nodestate.current is not None:
        raise NodeError(f"this process is already the node {_nodestate.current.info.name}")
    try:
        host = check_node_name(name)
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    if tick <= 0:
        raise NodeError("tick must be positive")
    for option, value in (
        ("max_handshakes", max_handshakes),
        ("max_handshakes_per_address", max_handshakes_per_address),
    ):
        if type(value) is not int or value <= 0:
            raise NodeError(f"{option} must be a positive integer, not {value!r}")
    if type(dist_buffer_size) is not int or dist_buffer_size <= 0:
        raise NodeError(f"dist_buffer_size must be a positive number of bytes, not {dist_buffer_size!r}")
    cookie = resolve_cookie(cookie)
    cfg = load_tls(tls, name, default_dir=None)
    server_ctx = server_context(cfg)
    client_ctx = client_context(cfg)
    if check_peer_names is None:
        check_peer_names = is_node_certificate(cfg, name)
    creation = _new_creation()
    try:
        server = StreamServer((listen_host or host, port), handle_incoming)
        server.start()
    except OSError as exc:
        raise NodeError(f"node {name}: cannot listen on {listen_host or host}:{port}: {exc}") from exc
    bound_port = cast(int, server.server_port)  # set by start()
    info = Node(name, creation, listen_host or host, bound_port, tick)
    st = NodeState(
        info,
        cookie,
        server_ctx,
        client_ctx,
        max_frame_size,
        on_frames,
        server=server,
        dist_buffer_size=dist_buffer_size,
        max_handshakes=max_handshakes,
        max_handshakes_per_address=max_handshakes_per_address,
        check_peer_names=bool(check_peer_names),
    )
    _nodestate.current = st
    _remote.rename_local_pids(name, creation)
    _remote.install_router(Router(st.sessions, st.max_frame_size))
    log.info("node %s started, listening on %s", name, info.address)
    return info


def _new_creation() -> int:
    # Milliseconds since the epoch, folded to 31 bits, never 0: a node restarted
    # under the same name gets another creation, so stale pids never match.
    return (int(time.time() * 1000) % 0x7FFFFFFF) or 1


def stop_node(*, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
    """Send what is queued, disconnect from every node and stop listening.

    The process is ``nonode@nohost`` again. Every session first sends what is
    queued on it when ``stop_node`` is called and ends its side of the
    connection; the peer reads to the end and closes its side. A session that
    has not done so within ``flush_timeout`` seconds (a peer that does not
    read) is closed anyway: what it still held is lost, and the log says how
    much. Blocks the caller until then (at most ``flush_timeout`` plus about a
    second while the listening server stops). Nothing happens if this process
    is not a node.

    Args:
        flush_timeout: seconds to spend sending what is queued; 0 closes at once
            (what is queued is lost).
    """
    st = _nodestate.current
    if st is None:
        return
    st.stopping = True
    if st.server is not None:
        st.server.stop(timeout=1)
    sessions = list(st.sessions.values())
    if flush_timeout > 0 and sessions:
        for sess in sessions:
            sess.finish()
        deadline = time.monotonic() + flush_timeout
        for sess in sessions:
            sess.wait_closed(max(0.0, deadline - time.monotonic()))
    for sess in list(st.sessions.values()):
        lost = f"; {sess.queued} queued bytes not sent" if sess.queued else ""
        sess.close("disconnect", f"this node stopped{lost}")
    _remote.install_router(None)
    for callback in stop_callbacks:
        callback()
    _remote.rename_local_pids(NONODE, 0)
    _nodestate.current = None
    log.info("node %s stopped", st.info.name)


def current() -> Optional[Node]:
    """This node's :class:`Node`, or None before ``start_node``."""
    st = _nodestate.current
    return st.info if st is not None else None


def node() -> str:
    """This node's name (``'nonode@nohost'`` before ``start_node``)."""
    return _remote.local_node()


def nodes() -> List[str]:
    """The names of the connected nodes (not this one), sorted."""
    st = _nodestate.current
    return sorted(st.sessions) if st is not None else []
