"""Rooms: this node's room registry, and broadcasts routed to the nodes with members.

The registry is node-local: each node holds its own connections, ``room ->
members`` plus the reverse index ``connection -> rooms`` (``conn.rooms``) so
that a disconnect leaves every room at once. :class:`~snowg.ws.Connection`
joins and leaves through :func:`join`, :func:`leave` and :func:`leave_all`,
the package's interface to the registry. Each change is also made in the
cluster's view of the room, a :mod:`snowg.pg` group of connection processes
(see ``_membership``), which tells a broadcast where members are and
:func:`count` how many there are (eventually consistent, as pg is).

A broadcast (semantics rule 29) first queues one ``ROOM_BROADCAST`` frame,
encoded once, for each *other node with members* of the room
(:func:`snowg.cluster.broadcast_frame` with ``nodes=``; first, so that the
other nodes fan out while this one does), and none for the others; then it
makes its WebSocket frame once (once per compression parameter set, see
``_frames.MessageFrames``) and appends that same ``bytes`` object to each
local member's bounded outbound queue (never writing a socket, so it never
waits for a slow client). Members that keep the server's compression
context share the room's compressor (a ``_deflate.SharedContext`` per
parameter set, while the room has two local members or more): those in step
with it get its frame, the others the message compressed alone, so at most
two compressions per parameter set, whatever the room's size; whether a
member is in step is decided and recorded as its frame is queued. Any process or greenlet of any node can broadcast,
member or not. A broadcast arriving from another node is delivered here by
:func:`_deliver_from_node` (registered with
:func:`snowg.cluster.register_frame_handler`) and never forwarded again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Set, Tuple, Union

from .._core import Pid
from .._core.scheduler import schedule
from ..cluster import broadcast_frame, node, of_type, register_frame_handler
from . import _membership
from ._deflate import SharedContext
from ._frames import MessageFrames

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

log = logging.getLogger("snowg")

Data = Union[str, bytes]

# The cluster frame ``[ROOM_BROADCAST, room, data]``.
ROOM_BROADCAST = 16

#: The longest room name (characters): a room is a pg group, named in every frame about it.
MAX_ROOM_NAME = 1024

# ``connection._OPEN``: a connection that takes frames (connection.py checks they agree).
OPEN = 0

# Benchmarks only: True sends every broadcast to every connected node, as
# before rooms were routed (the baseline of the interest-routing benchmark).
_to_every_node = False

# room -> {connection: None}: a dict keeps join order and removes in O(1).
_rooms: Dict[str, Dict["Connection", None]] = {}
# connection -> the rooms it is in (only connections in at least one room).
_memberships: Dict["Connection", Set[str]] = {}
# room -> {parameter key: its shared compressor}, while the room has local members.
_contexts: Dict[str, Dict[Tuple[int, int], SharedContext]] = {}
_context_count = 0

#: The most room compressors (:class:`~snowg.ws._deflate.SharedContext`) a
#: node keeps: each holds a zlib compressor's state (about 256 KiB at the
#: default level and window); rooms beyond it compress every message alone.
MAX_SHARED_CONTEXTS = 1000


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
    """Add ``conn`` to ``room`` (idempotent). Never blocks.

    Raises:
        TypeError: ``room`` is not a ``str``.
        ValueError: ``room`` is longer than :data:`MAX_ROOM_NAME`.
    """
    _check_room(room)
    if len(room) > MAX_ROOM_NAME:
        raise ValueError(f"a room name is at most {MAX_ROOM_NAME} characters, not {len(room)}")
    members = _rooms.get(room)
    if members is None:
        _rooms[room] = members = {}
    elif conn in members:
        return
    members[conn] = None
    joined = _memberships.get(conn)
    if joined is None:
        _memberships[conn] = joined = set()
    joined.add(room)
    if conn.pid is not None:
        _membership.joined(room, conn.pid)


def leave(conn: "Connection", room: str) -> None:
    """Remove ``conn`` from ``room`` (nothing happens if not a member). Never blocks.

    Raises:
        TypeError: ``room`` is not a ``str``.
    """
    _check_room(room)
    joined = _memberships.get(conn)
    if joined is None or room not in joined:
        return
    joined.discard(room)
    if not joined:
        del _memberships[conn]
    _remove_member(room, conn)


def leave_all(conn: "Connection") -> None:
    """Remove ``conn`` from every room it is in. Never blocks."""
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
            contexts = _contexts.pop(room, None)
            if contexts:
                global _context_count
                _context_count -= len(contexts)
    if conn.pid is not None:
        _membership.left(room, conn.pid)


def _registry_memberships() -> List[Tuple[str, Pid]]:
    """Every local membership as ``(room, handler pid)``: what pg's local members must be."""
    return [(room, conn.pid) for conn, joined in _memberships.items() if conn.pid is not None for room in joined]


def _context(room: str, key: Tuple[int, int]) -> Optional[SharedContext]:
    """``room``'s compressor for the members with parameters ``key`` that keep the server's context.

    Made at the first broadcast that needs it in a room with at least two
    local members, while fewer than :data:`MAX_SHARED_CONTEXTS` exist on this
    node (each holds a zlib compressor's state); None: compress alone.
    """
    contexts = _contexts.get(room)
    ctx = None if contexts is None else contexts.get(key)
    if ctx is None:
        global _context_count
        if _context_count >= MAX_SHARED_CONTEXTS or len(_rooms.get(room, ())) < 2:
            return None
        if contexts is None:
            contexts = _contexts[room] = {}
        ctx = contexts[key] = SharedContext(*key)
        _context_count += 1
    return ctx


def _deliver_local(room: str, data: Data, exclude: Optional["Connection"] = None) -> int:
    members = _rooms.get(room)
    if not members:
        return 0
    # Encoded once (compressed once per negotiated parameter set), shared by every member's queue.
    message = MessageFrames(data)
    plain = message.plain()
    size = len(message.payload)
    # key -> (frame, prev, mark, context) of the room's shared compressor: made once for this message.
    shared: Dict[Tuple[int, int], Tuple[bytes, Optional[object], Optional[object], Optional[SharedContext]]] = {}
    queued = 0
    # A copy: a member whose queue overflows is closed, and leaves, meanwhile.
    for conn in list(members):
        if conn is exclude:
            continue
        deflater = conn.deflater
        if deflater is None:
            # conn.enqueue(plain), inlined for the common case (open, room in
            # its queue): an uncompressed frame has no deflater record to keep,
            # and two calls per member are most of a broadcast's own cost.
            out = conn._out  # noqa: SLF001 - the package's own connection
            if conn._state == OPEN and len(out) < conn._queue_size:  # noqa: SLF001
                out.append(plain)
                task = conn._wtask  # noqa: SLF001
                if task.parked and not task.ready:
                    schedule(task)  # task.wake()
                queued += 1
                continue
            ok = conn.enqueue(plain)  # closing or closed (False), or full: closed with 1008
        elif not deflater.shared or size < deflater.threshold:
            ok = conn.enqueue(message.frame(deflater))
        else:
            key = deflater.key
            assert key is not None  # a shared deflater has one
            entry = shared.get(key)
            if entry is None:
                ctx = _context(room, key)
                entry = shared[key] = (b"", None, None, None) if ctx is None else (*message.in_context(ctx), ctx)
            frame, prev, mark, ctx = entry
            if ctx is None:
                ok = conn.enqueue(message.frame(deflater))
            elif prev is None or deflater.last is prev:
                # a reset, or the member received exactly the context's messages since it: in step
                ok = conn.enqueue(frame, mark)
                ctx.in_step += 1
            else:
                ok = conn.enqueue(message.frame(deflater))  # compressed alone: once for all of them
                ctx.out_of_step += 1
        if ok:
            queued += 1
    return queued


def _deliver_from_node(peer: str, frame: Tuple[Any, ...]) -> None:
    """A broadcast from another node: delivered to local members only, never forwarded."""
    _deliver_local(frame[1], frame[2])


def _forward(room: str, data: Data) -> None:
    """Queue one ``ROOM_BROADCAST`` frame for each other node with members (every node: ``_to_every_node``)."""
    if _to_every_node:
        nodes: Optional[FrozenSet[str]] = None
    else:
        nodes = _membership.member_nodes(room)
        if not nodes or (len(nodes) == 1 and node() in nodes):
            return  # nobody elsewhere: nothing is encoded
    try:
        broadcast_frame([ROOM_BROADCAST, room, data], nodes)
    except Exception:  # noqa: BLE001 - local delivery is done; the cluster part is logged
        log.exception("room broadcast to %r could not be forwarded to the other nodes", room)


def broadcast(room: str, data: Data) -> int:
    """Send ``data`` to every member of ``room`` on every connected node.

    Never blocks: each local member gets the (once encoded) frame on its
    outbound queue; a member whose queue is full is closed (1008) instead of
    slowing anybody down. Each other node with members of ``room`` (as this
    node knows them: a member that joined elsewhere a moment ago may not be
    known yet) gets one room-broadcast frame; the others get nothing.
    Callable from any process or plain greenlet of any node.

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


def count(room: str) -> int:
    """The number of members of ``room`` on every node (connections; each is in a room once).

    Eventually consistent, as :mod:`snowg.pg` is: a join or a leave counts
    here a moment after it is made, on this node too, and a node that goes
    down takes its members out of the count. Never blocks.

    Raises:
        TypeError: ``room`` is not a ``str``.
    """
    _check_room(room)
    return _membership.count(room)


_membership.set_registry(_registry_memberships)


register_frame_handler(ROOM_BROADCAST, "ROOM_BROADCAST", (of_type(str), of_type(str, bytes)), _deliver_from_node)
