"""Rooms: this node's room registry, and broadcasts that reach the whole cluster.

Membership is node-local (semantics rule 29): each node knows only
its own connections, ``room -> members`` plus the reverse index
``connection -> rooms`` (``conn.rooms``) so that a disconnect leaves every
room at once. :class:`~snowg.ws.Connection` joins and leaves through
:func:`join`, :func:`leave` and :func:`leave_all`, the package's interface
to the registry.

A broadcast first queues one ``ROOM_BROADCAST`` frame, encoded once, for
each connected node (:func:`snowg.cluster.broadcast_frame`; first, so that
the other nodes fan out while this one does, rather than after it), then
encodes its WebSocket frame once and appends that same ``bytes`` object to
each local member's bounded outbound queue (never writing a socket, so it
never waits for a slow client). A broadcast
arriving from another node is delivered here by :func:`_deliver_from_node`
(registered with :func:`snowg.cluster.register_frame_handler`) and never
forwarded again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Set, Tuple, Union

from ..cluster import broadcast_frame, of_type, register_frame_handler
from ._frames import MessageFrames

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

log = logging.getLogger("snowg")

Data = Union[str, bytes]

# The cluster frame ``[ROOM_BROADCAST, room, data]``.
ROOM_BROADCAST = 16

# room -> {connection: None}: a dict keeps join order and removes in O(1).
_rooms: Dict[str, Dict["Connection", None]] = {}
# connection -> the rooms it is in (only connections in at least one room).
_memberships: Dict["Connection", Set[str]] = {}


def _check_room(room: Any) -> None:
    if type(room) is not str:
        raise TypeError(f"a room name is a str, not {type(room).__name__}")


def _normalise(data: Any) -> Data:
    if type(data) is str or type(data) is bytes:
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")


def join(conn: "Connection", room: str) -> None:
    """Add ``conn`` to ``room`` (idempotent).

    Raises:
        TypeError: ``room`` is not a ``str``.
    """
    _check_room(room)
    members = _rooms.get(room)
    if members is None:
        _rooms[room] = members = {}
    members[conn] = None
    joined = _memberships.get(conn)
    if joined is None:
        _memberships[conn] = joined = set()
    joined.add(room)


def leave(conn: "Connection", room: str) -> None:
    """Remove ``conn`` from ``room`` (nothing happens if not a member).

    Raises:
        TypeError: ``room`` is not a ``str``.
    """
    _check_room(room)
    joined = _memberships.get(conn)
    if joined is not None:
        joined.discard(room)
        if not joined:
            del _memberships[conn]
    _remove_member(room, conn)


def leave_all(conn: "Connection") -> None:
    """Remove ``conn`` from every room it is in."""
    for room in _memberships.pop(conn, ()):
        _remove_member(room, conn)


def rooms_of(conn: "Connection") -> FrozenSet[str]:
    """The rooms ``conn`` is in (a snapshot)."""
    return frozenset(_memberships.get(conn, ()))


def _remove_member(room: str, conn: "Connection") -> None:
    members = _rooms.get(room)
    if members is not None:
        members.pop(conn, None)
        if not members:
            del _rooms[room]


def _deliver_local(room: str, data: Data, exclude: Optional["Connection"] = None) -> int:
    members = _rooms.get(room)
    if not members:
        return 0
    # Encoded once (compressed once per negotiated parameter set), shared by every member's queue.
    message = MessageFrames(data)
    plain = message.plain()
    queued = 0
    # A copy: a member whose queue overflows is closed, and leaves, meanwhile.
    for conn in list(members):
        if conn is exclude:
            continue
        deflater = conn.deflater
        if conn.enqueue(plain if deflater is None else message.frame(deflater)):
            queued += 1
    return queued


def _deliver_from_node(peer: str, frame: Tuple[Any, ...]) -> None:
    """A broadcast from another node: delivered to local members only, never forwarded."""
    _deliver_local(frame[1], frame[2])


def _forward(room: str, data: Data) -> None:
    try:
        broadcast_frame([ROOM_BROADCAST, room, data])
    except Exception:  # noqa: BLE001 - local delivery is done; the cluster part is logged
        log.exception("room broadcast to %r could not be forwarded to the other nodes", room)


def broadcast(room: str, data: Data) -> int:
    """Send ``data`` to every member of ``room`` on every connected node.

    Never blocks: each local member gets the (once encoded) frame on its
    outbound queue; a member whose queue is full is closed (1008) instead of
    slowing anybody down. Callable from any process or plain greenlet.

    Args:
        room: the room's name.
        data: ``str`` (a text message) or bytes-like (a binary message).

    Returns:
        The number of local deliveries queued (members of other nodes are not
        counted).

    Raises:
        TypeError: ``room`` is not a ``str`` or ``data`` not ``str``/bytes.
    """
    _check_room(room)
    data = _normalise(data)
    _forward(room, data)  # first: the other nodes fan out while this one does
    return _deliver_local(room, data)


def broadcast_except(room: str, data: Data, conn: "Connection") -> int:
    """Like :func:`broadcast`, but not to ``conn`` (a connection of this node).

    Other nodes get a plain broadcast: ``conn`` is local, so none of their
    members is excluded.

    Returns:
        The number of local deliveries queued.

    Raises:
        TypeError: as for :func:`broadcast`.
    """
    _check_room(room)
    data = _normalise(data)
    _forward(room, data)
    return _deliver_local(room, data, exclude=conn)


def members(room: str) -> List["Connection"]:
    """The local connections in ``room``, in join order (a copy)."""
    _check_room(room)
    return list(_rooms.get(room, ()))


def rooms() -> List[str]:
    """The names of the rooms that have at least one local member."""
    return list(_rooms)


register_frame_handler(ROOM_BROADCAST, "ROOM_BROADCAST", (of_type(str), of_type(str, bytes)), _deliver_from_node)
