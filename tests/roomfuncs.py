"""``@snowg.spawnable`` helpers about rooms across nodes, for peers that import them (``modules=["roomfuncs"]``).

Tests read a node's view of a room's cluster-wide membership (:func:`room_count`)
and how many room-broadcast frames the node has queued for each other node
(:func:`room_frames_sent`), by rpc; the test process calls them directly.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import snowg
import snowg.ws as ws
from snowg.cluster import frames_sent
from snowg.ws._rooms import ROOM_BROADCAST


@snowg.spawnable
def room_count(room: str) -> int:
    """``snowg.ws.count(room)`` on this node."""
    return ws.count(room)


@snowg.spawnable
def room_frames_sent(nodes: List[str]) -> Dict[str, int]:
    """Room-broadcast frames this node has queued for each of ``nodes`` since it started."""
    return {n: frames_sent(n, ROOM_BROADCAST) for n in nodes}


@snowg.spawnable
def counted_broadcast(room: str, data: str, others: List[str]) -> Tuple[int, Dict[str, int]]:
    """``snowg.ws.broadcast`` from the calling process; its local deliveries and the frames it queued per node.

    The counts are read just before and just after the call (which never
    yields), so they are this broadcast's frames exactly.
    """
    before = room_frames_sent(others)
    delivered = ws.broadcast(room, data)
    after = room_frames_sent(others)
    return delivered, {n: after[n] - before[n] for n in others}
