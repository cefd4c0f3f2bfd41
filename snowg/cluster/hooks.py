"""Seams through which upper layers plug into the distribution layer.

``cluster`` may not import ``ws`` (imports point down), so the WebSocket rooms
register their local-delivery function here, and call :func:`forward_room`
to reach the other nodes. Both are cheap no-ops on a node that is not
distributed.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

RoomData = Union[str, bytes]

_room_handler: Optional[Callable[[str, RoomData], int]] = None
_room_forwarder: Optional[Callable[[str, RoomData], None]] = None


def set_room_handler(handler: Optional[Callable[[str, RoomData], int]]) -> None:
    """Install the function that delivers a room broadcast to this node's members."""
    global _room_handler
    _room_handler = handler


def deliver_room(room: str, data: RoomData) -> int:
    """Deliver a broadcast that arrived from another node (never forwarded again)."""
    handler = _room_handler
    return handler(room, data) if handler is not None else 0


def set_room_forwarder(forwarder: Optional[Callable[[str, RoomData], None]]) -> None:
    """Installed by the node: sends one room-broadcast frame to every connected node."""
    global _room_forwarder
    _room_forwarder = forwarder


def forward_room(room: str, data: RoomData) -> None:
    """Send a room broadcast that originated here to every connected node."""
    forwarder = _room_forwarder
    if forwarder is not None:
        forwarder(room, data)
