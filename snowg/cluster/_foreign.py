"""The seam for connections in other protocols: a BEAM node as a peer of this node.

snowg nodes talk to each other over their own sessions. A connection in
another protocol (Erlang's distribution, :mod:`snowg.erlang`) is a
:class:`ForeignPeer`: once :func:`attach_peer` has run, the node's router
sends every signal for that node's pids and names to it (when no snowg
session has the node), ``monitor_node``/``monitor_nodes`` watchers hear of
it, and losing it (:func:`detach_peer`) applies semantics rule 26 as for a
snowg peer: ``'noconnection'`` to links and monitors, then ``NodeDown``.

A foreign peer is not a snowg node: ``snowg.nodes()``, ``broadcast_frame``
and the extension hooks (``on_node_up``/``on_node_down``: process groups,
pubsub, rooms, global names) never see it.

The cluster layer imports no other protocol. A protocol registers itself
with :func:`register_protocol` when its package is imported; ``start_node``
(``erlang=...``) calls its starter, which returns the running
:class:`ForeignService`, and ``stop_node`` stops it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from .._core import remote as _remote
from .._core.terms import NodeDown, NodeUp, Pid, Ref
from .._errors import NodeError
from . import _nodestate
from ._certfiles import TLSConfig
from ._spawn import node_lost

__all__ = [
    "ForeignContext",
    "ForeignPeer",
    "ForeignService",
    "attach_peer",
    "detach_peer",
    "foreign_nodes",
    "foreign_peer",
    "foreign_service",
    "protocol",
    "register_protocol",
]

log = logging.getLogger("snowg")


class ForeignPeer(Protocol):
    """A connection to one node in another protocol, as the node's router uses it.

    Every method but :meth:`spawn` queues the signal and returns (``send`` and
    ``send_name`` may suspend the calling process while the connection is
    busy, as a snowg session does); :meth:`spawn` waits for the peer's reply.
    A term that cannot cross raises ``TypeError`` in the caller.
    """

    node: str
    peer_creation: int

    def send(self, pid: Pid, msg: Any) -> None: ...

    def send_name(self, name: str, msg: Any, from_pid: Optional[Pid]) -> None: ...

    def link(self, from_pid: Pid, to_pid: Pid) -> None: ...

    def unlink(self, from_pid: Pid, to_pid: Pid) -> None: ...

    def exit_link(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None: ...

    def exit2(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None: ...

    def monitor(self, from_pid: Pid, target: Any, ref: Ref) -> None: ...

    def demonitor(self, from_pid: Pid, target: Any, ref: Ref) -> None: ...

    def monitor_exit(self, target: Any, watcher: Pid, ref: Ref, reason: Any) -> None: ...

    def spawn(self, fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], opts: Tuple[str, ...]) -> Any: ...


class ForeignService(Protocol):
    """A protocol's service, running for the node's life (its listener, its connections).

    Attributes:
        port: the port it listens on (registered with the port mapper in the
            node's place when the service asks for it, see :class:`ForeignContext`).
    """

    port: int

    def connect(self, node: str, timeout: float) -> bool:
        """Connect to ``node`` in this protocol; blocks the caller at most ``timeout`` s."""
        ...

    def stop(self, flush_timeout: float) -> None:
        """Stop listening, send what is queued (at most ``flush_timeout`` s), close every connection."""
        ...

    def forget(self) -> None:
        """After ``fork()``, in the child: close this copy's sockets without a word to the peers."""
        ...


@dataclass(frozen=True)
class ForeignContext:
    """What a protocol's starter gets from ``start_node``.

    Attributes:
        name: the node's full name.
        creation: the node's creation.
        cookie: the node's cookie.
        tls: the node's checked certificate files.
        listen_host: the address the node listens on.
        max_handshakes: incoming connections that may handshake at once.
        max_handshakes_per_address: of those, from one address.
        epmd: whether the node registers with the port mapper.
    """

    name: str
    creation: int
    cookie: str
    tls: TLSConfig
    listen_host: str
    max_handshakes: int
    max_handshakes_per_address: int
    epmd: bool


@dataclass(frozen=True)
class _Protocol:
    starter: Callable[[Any, ForeignContext], ForeignService]
    check: Callable[[Any], Any]


_protocols: Dict[str, _Protocol] = {}


def register_protocol(
    name: str,
    starter: Callable[[Any, ForeignContext], ForeignService],
    check: Optional[Callable[[Any], Any]] = None,
) -> None:
    """Make ``start_node(..., <name>=option)`` start ``starter(check(option), context)``.

    ``check`` turns what the caller gave (``True``, ``'tls'``, an options
    object) into the protocol's options, raising :class:`~snowg.NodeError`
    naming a bad value; it runs before anything is started. Registering a
    name again replaces it (a module reloaded). Never blocks.
    """
    _protocols[name] = _Protocol(starter, check if check is not None else (lambda option: option))


def protocol(name: str) -> Tuple[Callable[[Any, ForeignContext], ForeignService], Callable[[Any], Any]]:
    """The starter and the options check registered for ``name``.

    Raises:
        NodeError: no such protocol is registered (its package is not imported).
    """
    found = _protocols.get(name)
    if found is None:
        raise NodeError(f"no {name!r} protocol is registered: import snowg.{name} (import snowg does) first")
    return found.starter, found.check


def foreign_service(name: str) -> Optional[ForeignService]:
    """The running service of protocol ``name`` (``'erlang'``), or None."""
    st = _nodestate.current
    return st.services.get(name) if st is not None else None


def attach_peer(peer: ForeignPeer) -> None:
    """Make ``peer`` this node's connection to ``peer.node``; ``monitor_nodes`` watchers get ``NodeUp``.

    Never blocks. The snowg extension hooks (``on_node_up``) are not run.

    Raises:
        NodeError: this process is not a node, the name is this node's own,
            a snowg node of that name is connected, or another foreign
            connection holds the name (detach it first).
    """
    st = _nodestate.require()
    name = peer.node
    if name == st.info.name:
        raise NodeError(f"a connection cannot be attached under this node's own name {name}")
    if name in st.sessions:
        raise NodeError(f"{name} is connected as a snowg node already")
    held = st.foreign.get(name)
    if held is not None and held is not peer:
        raise NodeError(f"{name} has a connection already: detach it first")
    st.foreign[name] = peer
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeUp(name))


def detach_peer(peer: ForeignPeer, reason: str) -> None:
    """``peer`` is lost: semantics rule 26, as for a snowg peer.

    Links to that node's processes break with ``'noconnection'``, monitors of
    them fire ``Down(..., 'noconnection')``, then ``monitor_node`` and
    ``monitor_nodes`` watchers get ``NodeDown(node, reason)``. Nothing happens
    if ``peer`` is not the attached connection of its node (detached already,
    or replaced). Never blocks.
    """
    st = _nodestate.current
    name = peer.node
    if st is None or st.foreign.get(name) is not peer:
        return
    del st.foreign[name]
    broken, fired = _remote.node_down(name)
    node_lost(st, name)
    for watcher in st.node_watchers.pop(name, ()):
        _remote.deliver_to(watcher, NodeDown(name, reason))
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeDown(name, reason))
    log.info("node %s down (%s): %d links broken, %d monitors fired", name, reason, broken, fired)


def foreign_peer(node: str) -> Optional[ForeignPeer]:
    """The attached connection to ``node``, or None."""
    st = _nodestate.current
    return st.foreign.get(node) if st is not None else None


def foreign_nodes() -> List[str]:
    """The names of the nodes connected in other protocols, sorted."""
    st = _nodestate.current
    return sorted(st.foreign) if st is not None else []
