"""What each session of this node looks like now, for introspection (``snowg.observe``)."""

from __future__ import annotations

import time
from typing import Any, Dict, List

from . import _nodestate

__all__ = ["session_stats"]


def session_stats() -> List[Dict[str, Any]]:
    """One dict per connected peer, sorted by name; an empty list before ``start_node``.

    Never blocks. Keys: ``node`` (the peer), ``address`` (where it listens),
    ``socket`` (the connection's remote end), ``outgoing`` (this node
    dialled), ``creation``, ``bytes_in`` and ``bytes_out`` (TLS bytes read
    and written since the session began), ``queued`` (bytes queued, not yet
    taken by the socket), ``busy_limit`` (``dist_buffer_size``),
    ``suspended_senders`` (processes waiting for the queue to drain),
    ``last_heard`` and ``last_sent`` (seconds since the last read and the
    last write), ``tick``.
    """
    st = _nodestate.current
    if st is None:
        return []
    now = time.monotonic()
    out: List[Dict[str, Any]] = []
    for name in sorted(st.sessions):
        s = st.sessions[name]
        out.append(
            {
                "node": name,
                "address": s.peer_address,
                "socket": s.peer_socket,
                "outgoing": s.outgoing,
                "creation": s.peer_creation,
                "bytes_in": s.bytes_in,
                "bytes_out": s.bytes_out,
                "queued": s.queued,
                "busy_limit": s.busy_limit,
                "suspended_senders": s.suspended_senders,
                "last_heard": round(now - s.last_recv, 3),
                "last_sent": round(now - s.last_sent, 3),
                "tick": s.tick,
            }
        )
    return out
