"""Counts of crashes, supervisor restarts and give-ups, kept from snowg's telemetry events.

One handler (id :data:`HANDLER_ID`) is attached when ``snowg.observe`` is
imported (by ``import snowg``) to ``("snowg", "process", "crash")``,
``("snowg", "supervisor", "restart")`` and ``("snowg", "supervisor",
"give_up")``. It adds one to a counter, and to the restarting supervisor's
own count; it runs only when such an event happens, so the events' cost when
nothing happens is unchanged. Counts start with the OS process.
"""

from __future__ import annotations

from typing import Any, Dict

from .._core import Pid, is_alive
from .._core import telemetry as _telemetry

__all__ = ["HANDLER_ID", "attach", "counts", "supervisor_restarts"]

HANDLER_ID = "snowg.observe.counts"

# Supervisors tracked at most: beyond it, the ones that ended are forgotten.
_MAX_SUPERVISORS = 4096

_counts: Dict[str, int] = {"crashes": 0, "restarts": 0, "give_ups": 0}
_by_supervisor: Dict[Pid, int] = {}


def _count(event: Any, measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
    if event == _telemetry.PROCESS_CRASH:
        _counts["crashes"] += 1
        return
    if event == _telemetry.SUPERVISOR_RESTART:
        _counts["restarts"] += 1
        sup = metadata.get("supervisor")
        if type(sup) is Pid:
            if sup not in _by_supervisor and len(_by_supervisor) >= _MAX_SUPERVISORS:
                for gone in [p for p in _by_supervisor if not is_alive(p)]:
                    del _by_supervisor[gone]
            _by_supervisor[sup] = _by_supervisor.get(sup, 0) + 1
    elif event == _telemetry.SUPERVISOR_GIVE_UP:
        _counts["give_ups"] += 1


def attach() -> None:
    """Attach the counting handler unless it is attached (at import; again after a detach). Never blocks."""
    if any(h.id == HANDLER_ID for h in _telemetry.list_handlers(("snowg",))):
        return
    _telemetry.attach_many(
        HANDLER_ID,
        [_telemetry.PROCESS_CRASH, _telemetry.SUPERVISOR_RESTART, _telemetry.SUPERVISOR_GIVE_UP],
        _count,
    )


def counts() -> Dict[str, int]:
    """This node's ``crashes`` (processes that ended by their own error), ``restarts`` and ``give_ups``.

    Never blocks.
    """
    return dict(_counts)


def supervisor_restarts(sup: Pid) -> int:
    """How many children the local supervisor ``sup`` has restarted (never blocks)."""
    return _by_supervisor.get(sup, 0)
