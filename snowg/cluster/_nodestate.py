"""What a running node is and holds: :class:`Node` (its identity) and :class:`NodeState`.

One OS process is at most one node. :data:`current` is its state while it
runs (between ``start_node`` and ``stop_node``), else None; every module of
the cluster layer reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Tuple

from gevent.event import Event
from gevent.server import StreamServer

from .._core.terms import Pid, Ref
from .._errors import NodeError
from ._session import DEFAULT_DIST_BUFFER_SIZE

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Closable", "Node", "NodeState", "Stoppable", "current", "require"]


class Closable(Protocol):
    """What holds a resource until closed (the port mapper registration)."""

    def close(self) -> None: ...


class Stoppable(Protocol):
    """A service that runs for the node's life (discovery); ``stop`` must not block."""

    def stop(self) -> None: ...


class Node:
    """What ``start_node`` returns: this node's identity.

    Attributes:
        name: ``'name@host'``.
        creation: a number that differs each time a node with this name starts.
        host: the address it listens on.
        port: the TCP port it listens on.
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
        """``'host:port'`` where the node listens (what peers connect to)."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Node {self.name} at {self.address}>"


@dataclass(eq=False)
class NodeState:
    """Everything a running node holds.

    Attributes:
        info: the node's identity.
        cookie: the cluster cookie.
        server_ctx: the SSL context for accepted connections.
        client_ctx: the SSL context for connections this node opens.
        max_frame_size: the largest frame accepted from a peer, in bytes.
        on_frames: the session frame dispatcher, ``(session, frames) -> None``.
        sessions: the live session of each connected node, by name.
        pending: an event per node this node is connecting to, set when the attempt ends.
        pending_address: where each pending attempt goes, ``(host, port)``.
        up_events: set when the named node comes up (for a caller that lost a race).
        node_watchers: the processes that called ``monitor_node(name)``, by name.
        all_nodes_watchers: the processes that called ``monitor_nodes()``.
        spawn_pending: remote spawns awaiting their reply: ``req -> (caller, opts, node)``.
        server: the listening server.
        stopping: True once ``stop_node`` began.
        dist_buffer_size: bytes a session may hold queued before sending processes are suspended.
        max_handshakes: incoming connections this node lets handshake at once.
        max_handshakes_per_address: of those, how many may come from one address.
        check_peer_names: a peer's certificate must name the node it claims to be.
        handshakes: the incoming connections handshaking now, by source address.
        accepting: per claimed name, an event for each incoming handshake past its
            HELLO, set when that handshake ends.
        registration: the node's registration with its host's port mapper (its
            connection to the mapper; closing it frees the name), or None.
        cluster: the discovery strategies the node was started with (``'local'`` ...).
        discovery: the discovery service keeping the cluster whole, or None.
        foreign: the connections to nodes in another protocol (BEAM nodes), by
            node name (see :mod:`snowg.cluster._foreign`).
        services: the running services of other protocols, by protocol name
            (``'erlang'``), each started by ``start_node`` and stopped by ``stop_node``.
        epmd_entry: what the node registers with the port mapper: ``(port,
            node type, snowg port or None)``.
        hidden: this node is hidden (``start_node(hidden=True)``): every
            session it has is hidden, on both sides.
    """

    info: Node
    cookie: str
    server_ctx: Any
    client_ctx: Any
    max_frame_size: int
    on_frames: Callable[["Session", List[Any]], None]
    sessions: Dict[str, "Session"] = field(default_factory=dict)
    pending: Dict[str, Event] = field(default_factory=dict)
    pending_address: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    up_events: Dict[str, Event] = field(default_factory=dict)
    node_watchers: Dict[str, List[Pid]] = field(default_factory=dict)
    all_nodes_watchers: List[Pid] = field(default_factory=list)
    spawn_pending: Dict[Ref, Tuple[Pid, Tuple[str, ...], str]] = field(default_factory=dict)
    server: Optional[StreamServer] = None
    stopping: bool = False
    dist_buffer_size: int = DEFAULT_DIST_BUFFER_SIZE
    max_handshakes: int = 64
    max_handshakes_per_address: int = 16
    check_peer_names: bool = False
    handshakes: Dict[str, int] = field(default_factory=dict)
    accepting: Dict[str, List[Event]] = field(default_factory=dict)
    registration: Optional[Closable] = None
    cluster: List[str] = field(default_factory=list)
    discovery: Optional[Stoppable] = None
    foreign: Dict[str, Any] = field(default_factory=dict)
    services: Dict[str, Any] = field(default_factory=dict)
    epmd_entry: Tuple[int, int, Optional[int]] = (0, 77, None)
    hidden: bool = False


current: Optional[NodeState] = None


def require() -> NodeState:
    """The running node's state.

    Raises:
        NodeError: this process is not a node (the caller must start it first).
    """
    if current is None:
        raise NodeError("this process is not a node: call snowg.start_node(...) first")
    return current
