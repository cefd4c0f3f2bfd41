"""``forward_events``: a process that sends a node's crash and supervision events to an observer.

``snowg observer`` spawns one on every node it watches (it is spawnable as
``"snowg.observe:forward_events"``, so every node that imports snowg can run
it). The process attaches one telemetry handler to the crash, restart and
give-up events; the handler only sends the event to the forwarder, a local
send that never blocks, so the crashing process or the restarting supervisor
never waits for the observer's connection. The forwarder turns each event
into plain terms and sends it on, at most ``max_per_second`` a second (the
ones over are counted, and the count sent once the second is over). It
monitors the observer and detaches its handler when the observer goes (its
node stopped or was lost), so nothing is left behind on the observed node.

What the observer receives: ``(EVENT_TAG, node, kind, measurements,
metadata, unix_time)`` with ``kind`` ``'crash'``, ``'restart'`` or
``'give_up'``, and ``(EVENT_TAG, node, 'dropped', {'count': n}, {}, t)``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from .._core import Down, Pid, demonitor, monitor, receive, send
from .._core import self as _self
from .._core import telemetry as _telemetry
from ..cluster import node
from ._plain import plain

__all__ = ["EVENT_TAG", "MAX_PER_SECOND", "forward_events"]

#: The first field of what the observer receives.
EVENT_TAG = "snowg_observer_event"
#: Events forwarded a second by default; more are counted and reported as ``'dropped'``.
MAX_PER_SECOND = 100
# A reason (a crash, its traceback) is cut to this many characters.
_MAX_TEXT = 500

_EVENTS = (_telemetry.PROCESS_CRASH, _telemetry.SUPERVISOR_RESTART, _telemetry.SUPERVISOR_GIVE_UP)
_LOCAL = "snowg_observer_local_event"


def _metadata(metadata: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in metadata.items():
        value = plain(value)
        if type(value) is str and len(value) > _MAX_TEXT:
            value = value[:_MAX_TEXT] + "..."
        out[str(key)] = value
    return out


def forward_events(observer: Pid, max_per_second: int = MAX_PER_SECOND) -> None:
    """Send this node's crash, restart and give-up events to ``observer`` until it goes (runs as a process).

    Spawnable as ``"snowg.observe:forward_events"``. Blocks the process it runs
    in for as long as ``observer`` lives; its handler never blocks the
    processes that emit the events.

    Args:
        observer: the pid that receives the events (see the module docstring).
        max_per_second: events sent a second at most; the others are counted.
    """
    me = _self()
    handler_id = f"snowg.observe.forward:{me}"
    window = [time.monotonic(), 0, 0]  # start of the second, sent in it, dropped in it

    def handler(event: Any, measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
        now = time.monotonic()
        if now - window[0] >= 1.0:
            if window[2]:
                send(me, (_LOCAL, "dropped", {"count": window[2]}, {}, time.time()))
            window[0], window[1], window[2] = now, 0, 0
        if window[1] >= max_per_second:
            window[2] += 1
            return
        window[1] += 1
        send(me, (_LOCAL, event[-1], dict(measurements), dict(metadata), time.time()))

    ref = monitor(observer)
    _telemetry.attach_many(handler_id, list(_EVENTS), handler)
    here = node()
    try:
        while True:
            msg = receive()
            if type(msg) is Down and msg.ref == ref:
                return
            if type(msg) is tuple and len(msg) == 5 and msg[0] == _LOCAL:
                _tag, kind, measurements, metadata, ts = msg
                send(observer, (EVENT_TAG, here, kind, plain(measurements), _metadata(metadata), ts))
    finally:
        _telemetry.detach(handler_id)
        demonitor(ref)


def forwarders() -> List[str]:
    """The handler ids of the forwarders attached on this node (for tests; never blocks)."""
    return sorted({h.id for h in _telemetry.list_handlers(("snowg",)) if h.id.startswith("snowg.observe.forward:")})
