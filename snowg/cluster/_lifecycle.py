"""This OS process as a node: starting it, stopping it, and what it is.

``start_node`` makes the process the node ``name@host``: it checks the
certificates and the cookie, listens for TLS connections, renames the pids
made so far to carry the node's name, and installs the
:class:`~snowg.cluster._router.Router` so that ``send``/``link``/``monitor``/
``exit``/``spawn`` reach other nodes. ``stop_node`` undoes all of it, after
sending what its sessions hold queued.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import gevent
from gevent.hub import reinit
from gevent.server import StreamServer

from .._core import remote as _remote
from .._core.terms import NONODE
from .._errors import NodeError
from . import _nodestate
from ._connect import DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_HANDSHAKES_PER_ADDRESS, handle_incoming
from ._certauto import ensure_default_certs
from ._certfiles import TLSSpec
from ._cookie import resolve_cookie
from ._dispatch import on_frames
from ._framing import DEFAULT_MAX_FRAME_SIZE
from ._epmd_client import (
    NODE_TYPE_HIDDEN,
    NODE_TYPE_NORMAL,
    NameTaken,
    Registration,
    ensure_mapper,
    epmd_port,
    register,
)
from ._foreign import ForeignContext, ForeignService, protocol
from ._names import DEFAULT_HOST, alive_part, check_node_name, complete_name
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
    "hidden_nodes",
    "node",
    "nodes",
    "start_node",
    "stop_node",
]

log = logging.getLogger("snowg")

DEFAULT_TICK = 15.0
#: Seconds ``stop_node`` may spend sending what is queued before it closes anyway.
DEFAULT_FLUSH_TIMEOUT = 5.0
#: Seconds ``start_node`` asks the port mapper again for a name it refused
#: (the registration of a node that has just stopped may still be closing).
REGISTER_RETRY = 1.0
#: Seconds between attempts to register again once the port mapper lost the
#: registration: the first delay, doubled after each failure up to the cap.
REREGISTER_FIRST = 0.2
REREGISTER_CAP = 10.0

# Not empty while a start_node call runs (it blocks while registering).
_starting: List[bool] = []


def start_node(
    name: Optional[str] = None,
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
    epmd: bool = True,
    port_range: Optional[Tuple[int, int]] = None,
    cluster: Union[str, Sequence[str], None] = None,
    erlang: Any = None,
    hidden: bool = False,
) -> Node:
    """Make this OS process the node ``name`` and start listening.

    Blocks while it registers with the port mapper (starting snowg's own when
    none answers: about a second the first time on a host), then returns; all
    other IO runs in greenlets.

    Args:
        name: ``'name@host'``; ``'name'`` (the host is ``$SNOWG_HOST``, else
            ``127.0.0.1``); or None, a unique ``PREFIX-XXXXXX`` name
            (``$SNOWG_PREFIX``, else ``snowg``). ``host`` is where it listens
            unless ``listen_host`` is given.
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
        epmd: register the name's alive part (before the ``@``) and the port
            with the port mapper on this host (``$SNOWG_EPMD_ADDRESS``, else
            ``127.0.0.1``, port ``$ERL_EPMD_PORT``, else 4369), so that others
            connect to ``'name@host'`` without a port; snowg's mapper is started
            (detached, it outlives the node) when none answers. The name stays
            registered until ``stop_node`` or the process ends. False: no
            mapper; the node is reachable only as ``'name@host:port'``.
        port_range: ``(lo, hi)``: listen on the first free port from ``lo`` to
            ``hi`` inclusive (for a firewall; Erlang's ``inet_dist_listen_min``
            and ``_max``). Not with ``port``. Default ``$SNOWG_PORT_RANGE``
            (``'9100-9155'``) when ``port`` is not given either, so gunicorn
            workers and containers take a range from their environment.
        cluster: discovery strategies that find the other nodes and keep the
            cluster whole for the node's life: ``'local'``, ``'hosts:h1,h2'``,
            ``'dns:NAME'``, ``'static:alice@h1:9100,bob@h2'``, or a list of
            them; default ``$SNOWG_CLUSTER`` (several separated by whitespace),
            else none.
        erlang: also speak Erlang's distribution, to and from real Erlang and
            Elixir nodes (:mod:`snowg.erlang`): ``True`` or ``'tls'`` (TLS
            compatible with ``erl -proto_dist inet_tls``, from the node's own
            certificates), ``'tcp'`` (plain TCP, the MD5 cookie only), or a
            :class:`snowg.erlang.ErlangOptions`. The node then registers its
            Erlang port with the port mapper, as a hidden node (its snowg port
            rides in the registration, so snowg nodes still find it). Default
            None: snowg's protocol only.
        hidden: a hidden node (Erlang's ``-hidden``), for tools such as
            ``snowg observer``: it connects, and is connected to, as any node,
            but its connections are hidden on both sides: it is not in other
            nodes' :func:`nodes` (only in ``nodes(hidden=True)`` and
            :func:`hidden_nodes`), the upper layers (process groups, global
            names, rooms, pubsub) do not sync with it, ``monitor_nodes``
            watchers hear nothing of it, no peer list names it and it sends
            none, and it does not register with the port mapper (``epmd`` is
            ignored), so discovery never dials it: it dials the others.

    Raises:
        NodeError: already started, a bad name or option (``erlang`` included), bad certificates or
            cookie, the port cannot be bound (or no port of ``port_range`` is
            free), no port mapper answers, or the name is already registered
            on this host by another node (the message says which).
    """
    if _nodestate.current is not None:
        raise NodeError(f"this process is already the node {_nodestate.current.info.name}")
    if _starting:
        raise NodeError("this process is already starting a node (start_node is under way in another greenlet)")
    _starting.append(True)
    try:
        try:
            name = complete_name(name, os.environ)
        except ValueError as exc:
            raise NodeError(str(exc)) from None
        host = check_node_name(name)
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
        if port_range is None and port == 0:
            port_range = _env_port_range(os.environ)
        ports = _ports_to_try(port, port_range)
        specs = _cluster_specs(cluster, os.environ)
        foreign = _foreign_options(erlang)
        cookie = resolve_cookie(cookie)
        if tls is None:
            ensure_default_certs(host)
        cfg = load_tls(tls, name, default_dir=None)
        server_ctx = server_context(cfg)
        client_ctx = client_context(cfg)
        if check_peer_names is None:
            check_peer_names = is_node_certificate(cfg, name)
        creation = _new_creation()
        server = _listen(name, listen_host or host, ports, port_range)
        bound_port = cast(int, server.server_port)  # set by start()
        services: Dict[str, ForeignService] = {}
        epmd_entry: Tuple[int, int, Optional[int]] = (bound_port, NODE_TYPE_NORMAL, None)
        registration = None
        try:
            for proto, (starter, options) in foreign.items():
                context = ForeignContext(
                    name,
                    creation,
                    cookie,
                    cfg,
                    listen_host or host,
                    max_handshakes,
                    max_handshakes_per_address,
                    epmd,
                )
                services[proto] = service = starter(options, context)
                # BEAM nodes find the node through the mapper: it registers the Erlang
                # port, as a hidden node, and its snowg port rides in the extra.
                epmd_entry = (service.port, NODE_TYPE_HIDDEN, bound_port)
            if epmd and not hidden:
                registration = _register_name(name, epmd_entry)
        except BaseException:
            for service in services.values():
                service.stop(0)
            server.close()
            raise
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
            registration=registration,
            cluster=specs,
            services=dict(services),
            epmd_entry=epmd_entry,
            hidden=bool(hidden),
        )
        _nodestate.current = st
        _remote.rename_local_pids(name, creation)
        _remote.install_router(Router(st.sessions, st.max_frame_size, st.foreign))
        log.info(
            "%snode %s started, listening on %s%s%s",
            "hidden " if hidden else "",
            name,
            info.address,
            "".join(f", {proto} on port {service.port}" for proto, service in services.items()),
            "" if registration is None else f" (registered as {alive_part(name)!r} with the port mapper)",
        )
        if registration is not None:
            gevent.spawn(_keep_registered, st, registration)
        if specs:
            from ._discovery import start as start_discovery  # only nodes that discover import it

            st.discovery = start_discovery(st, specs)  # once registered, so that the nodes it finds find it too
        return info
    finally:
        _starting.clear()


def _env_port_range(env: Mapping[str, str]) -> Optional[Tuple[int, int]]:
    """``$SNOWG_PORT_RANGE`` (``'LO-HI'``) as a port range, or None when unset or empty.

    Raises:
        NodeError: the variable is set but is not ``LO-HI`` (the message names it).
    """
    value = env.get("SNOWG_PORT_RANGE", "").strip()
    if not value:
        return None
    lo, sep, hi = value.partition("-")
    if not (sep and lo.strip().isdigit() and hi.strip().isdigit()):
        raise NodeError(f"$SNOWG_PORT_RANGE must be LO-HI (e.g. 9100-9155), not {value!r}")
    return int(lo), int(hi)


def _ports_to_try(port: Any, port_range: Any) -> Sequence[int]:
    """The ports ``start_node`` may listen on, in order (``[0]``: any free port).

    Raises:
        NodeError: a bad ``port`` or ``port_range``, or both given.
    """
    if type(port) is not int or not 0 <= port <= 65535:
        raise NodeError(f"port must be an int from 0 to 65535 (0: any free port), not {port!r}")
    if port_range is None:
        return [port]
    if (
        not isinstance(port_range, (tuple, list))
        or len(port_range) != 2
        or any(type(p) is not int for p in port_range)
        or not 1 <= port_range[0] <= port_range[1] <= 65535
    ):
        raise NodeError(f"port_range must be (lo, hi), two ports with 1 <= lo <= hi <= 65535, not {port_range!r}")
    if port != 0:
        raise NodeError(f"give port ({port}) or port_range ({port_range[0]}, {port_range[1]}), not both")
    return range(port_range[0], port_range[1] + 1)


def _listen(name: str, host: str, ports: Sequence[int], port_range: Optional[Tuple[int, int]]) -> StreamServer:
    """A started server on the first port of ``ports`` that is free.

    Raises:
        NodeError: none could be bound (the message names the address, and the range).
    """
    error: Optional[OSError] = None
    for candidate in ports:
        server = StreamServer((host, candidate), handle_incoming)
        try:
            server.start()
        except OSError as exc:
            server.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES) or port_range is None:
                raise NodeError(f"node {name}: cannot listen on {host}:{candidate}: {exc}") from exc
            error = exc
            continue
        return server
    assert port_range is not None and error is not None
    raise NodeError(
        f"node {name}: no free port on {host} in port_range {port_range[0]}-{port_range[1]} "
        f"({len(ports)} tried; the last: {error.strerror or error}); widen the range or stop a node using it"
    )


def _register_name(name: str, entry: Tuple[int, int, Optional[int]], *, start_mapper: bool = True) -> Registration:
    """Register ``name``'s alive part with the port mapper on this host.

    ``entry`` is ``(port, node type, snowg port or None)``: the node's snowg
    port and type 77, or, with Erlang's distribution on, its Erlang port, type
    72 (hidden) and the snowg port.

    Starts snowg's mapper first when none answers (with ``start_mapper``). A
    refused name is asked again for up to :data:`REGISTER_RETRY` s: a node of
    that name that has just stopped may still be closing its registration.
    Blocks until registered.

    Raises:
        NodeError: no mapper answers, or the name is taken (the message says so).
    """
    address = os.environ.get("SNOWG_EPMD_ADDRESS") or DEFAULT_HOST
    mapper_port = epmd_port()
    alive = alive_part(name)
    if start_mapper and not ensure_mapper(host=address, epmd_port=mapper_port):
        raise NodeError(
            f"node {name}: no port mapper answers on {address}:{mapper_port} and snowg's could not be started "
            "there; run 'snowg epmd' (or Erlang's epmd), or start the node with epmd=False"
        )
    deadline = time.monotonic() + REGISTER_RETRY
    while True:
        try:
            port, node_type, snowg_port = entry
            return register(
                alive, port, name, host=address, epmd_port=mapper_port, node_type=node_type, snowg_port=snowg_port
            )
        except NameTaken as exc:
            if time.monotonic() >= deadline:
                raise NodeError(
                    f"node {name}: the name {alive!r} is already registered with the port mapper on "
                    f"{address}:{mapper_port} by another node on this host ({exc}); every node of a host needs "
                    "its own name (leave the name out for a unique one)"
                ) from None
            gevent.sleep(0.1)


def _keep_registered(st: NodeState, registration: Registration) -> None:
    """Register the node again whenever its port mapper loses the registration; runs for the node's life.

    A mapper that stops (killed, or restarted by systemd) forgets its nodes.
    This greenlet notices at once (the registration's connection closes),
    says so once at WARNING, and registers again as soon as a mapper answers
    (the restarted one, or the daemon the next node started on this host
    starts): every :data:`REREGISTER_FIRST` s at first, doubling up to
    :data:`REREGISTER_CAP`, jittered. It does not start a mapper itself: a
    node that goes on running after the mapper was stopped on purpose does
    not bring it back. Registered again, it says so at INFO.
    """
    name = st.info.name
    while True:
        registration.wait_lost()
        if _nodestate.current is not st or st.stopping:
            return
        log.warning("node %s: the port mapper ended its registration (it stopped?); registering again", name)
        delay = REREGISTER_FIRST
        attempts = 0
        while True:
            gevent.sleep(delay * random.uniform(0.75, 1.25))
            if _nodestate.current is not st or st.stopping:
                return
            attempts += 1
            try:
                registration = _register_name(name, st.epmd_entry, start_mapper=False)
            except NodeError:
                delay = min(2 * delay, REREGISTER_CAP)
                continue
            break
        if _nodestate.current is not st or st.stopping:
            registration.close()
            return
        st.registration = registration
        log.info("node %s: registered again with the port mapper (attempt %d)", name, attempts)


def _cluster_specs(cluster: Any, env: Mapping[str, str]) -> List[str]:
    """The discovery strategies: ``cluster`` (a str or a list of str), else ``$SNOWG_CLUSTER``.

    Raises:
        NodeError: ``cluster`` is neither a str nor a list of str, or a
            strategy is malformed (the message quotes it).
    """
    if cluster is None:
        specs = env.get("SNOWG_CLUSTER", "").split()
        source = "$SNOWG_CLUSTER"
    elif isinstance(cluster, str):
        specs, source = cluster.split(), "cluster"
    elif isinstance(cluster, (list, tuple)) and all(isinstance(spec, str) for spec in cluster):
        specs, source = [spec for text in cluster for spec in text.split()], "cluster"
    else:
        raise NodeError(
            f"cluster must be a strategy string ('local', 'dns:NAME', ...) or a list of them, not {cluster!r}"
        )
    if not specs:
        return specs
    from ._strategies import parse_specs  # only nodes that discover import it

    try:
        parse_specs(specs)
    except ValueError as exc:
        raise NodeError(f"{source}: {exc}") from None
    return specs


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
    if st.discovery is not None:
        st.discovery.stop()
    if st.server is not None:
        st.server.stop(timeout=1)
    deadline = time.monotonic() + flush_timeout
    # Other protocols' connections flush alongside the sessions (each service bounds itself by the deadline).
    stopping = [gevent.spawn(_stop_service, proto, service, flush_timeout) for proto, service in st.services.items()]
    sessions = list(st.sessions.values())
    if flush_timeout > 0 and sessions:
        for sess in sessions:
            sess.finish()
        for sess in sessions:
            sess.wait_closed(max(0.0, deadline - time.monotonic()))
    for sess in list(st.sessions.values()):
        lost = f"; {sess.queued} queued bytes not sent" if sess.queued else ""
        sess.close("disconnect", f"this node stopped{lost}")
    gevent.joinall(stopping, timeout=max(0.0, deadline - time.monotonic()) + 2.0)
    for greenlet in stopping:
        greenlet.kill(block=False)
    _remote.install_router(None)
    for callback in stop_callbacks:
        callback()
    _remote.rename_local_pids(NONODE, 0)
    _nodestate.current = None
    if st.registration is not None:
        st.registration.close()  # the name is free again
    log.info("node %s stopped", st.info.name)


def _stop_service(proto: str, service: ForeignService, flush_timeout: float) -> None:
    try:
        service.stop(flush_timeout)
    except Exception:  # noqa: BLE001 - one protocol's failure must not keep the node from stopping
        log.exception("stopping the %s service failed", proto)


def _foreign_options(erlang: Any) -> Dict[str, Tuple[Any, Any]]:
    """The other protocols to start, by name: ``(starter, checked options)``.

    Raises:
        NodeError: a protocol that is not registered, or options its check refuses.
    """
    if erlang is None or erlang is False:
        return {}
    starter, check = protocol("erlang")
    return {"erlang": (starter, check(erlang))}


def _forget_node_in_child() -> None:
    """After a ``fork()``: the child is not the node its parent is (``os.register_at_fork``).

    A child forked from a node (gunicorn's ``--preload`` master, a
    ``multiprocessing`` worker) would otherwise claim the parent's name, accept
    on its listening socket and read from its sessions. The child closes its
    copies of those sockets (the parent's stay open, so its peers, listening
    socket and name are untouched: nothing is shut down, no frame is sent),
    and becomes ``nonode@nohost``; it may call ``start_node`` under another name.
    """
    st = _nodestate.current
    if st is None:
        return
    _nodestate.current = None
    st.stopping = True
    # The child's event loop must not share the parent's (epoll) before the
    # watchers below are stopped; gevent.os.fork does this too, a plain os.fork does not.
    reinit()
    if st.discovery is not None:
        st.discovery.stop()
    if st.server is not None:
        st.server.close()
    if st.registration is not None:
        st.registration.close()
    for service in st.services.values():
        service.forget()
    st.foreign.clear()
    for sess in list(st.sessions.values()):
        sess.close("disconnect", "forked: this copy of the connection belongs to the parent process")
    st.sessions.clear()
    _remote.install_router(None)
    _remote.rename_local_pids(NONODE, 0)
    log.warning(
        "process %d was forked from the node %s: the child is not that node (it stays with process %d); "
        "this process is nonode@nohost and may start a node of its own",
        os.getpid(),
        st.info.name,
        os.getppid(),
    )


os.register_at_fork(after_in_child=_forget_node_in_child)


def current() -> Optional[Node]:
    """This node's :class:`Node`, or None before ``start_node``."""
    st = _nodestate.current
    return st.info if st is not None else None


def node() -> str:
    """This node's name (``'nonode@nohost'`` before ``start_node``)."""
    return _remote.local_node()


def nodes(hidden: bool = False) -> List[str]:
    """The names of the connected nodes (not this one), sorted.

    Args:
        hidden: also the nodes connected by a hidden connection (a hidden
            node, such as ``snowg observer``; on a hidden node, every node).
            Never blocks.
    """
    st = _nodestate.current
    if st is None:
        return []
    return sorted(n for n, s in st.sessions.items() if hidden or not s.hidden)


def hidden_nodes() -> List[str]:
    """The names of the nodes connected by a hidden connection, sorted (never blocks)."""
    st = _nodestate.current
    return sorted(n for n, s in st.sessions.items() if s.hidden) if st is not None else []
