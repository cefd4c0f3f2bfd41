"""Counts of crashes, supervisor restarts and give-ups.

Crashes come from snowg's telemetry: one handler (id :data:`HANDLER_ID`) is
attached to ``("snowg", "process", "crash")`` when ``snowg.observe`` is
imported (by ``import snowg``) and adds one per crash; it runs only when a
process crashes, so nothing else pays for it. Restarts and give-ups are
counted by the supervisors themselves, in line (``snowg._core.restart_counts``):
a handler on each restart cost it about 2 µs of 13. Counts start with the
OS process.
"""

from __future__ import annotations

from typing import Any, Dict

from .._core import Pid
from .._core import restart_counts as _restart_counts
from .._core import telemetry as _telemetry

__all__ = ["HANDLER_ID", "attach", "counts", "supervisor_restarts"]

HANDLER_ID = "snowg.observe.counts"

_crashes = [0]


def _count(event: Any, measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
    if event == _telemetry.PROCESS_CRASH:
        _crashes[0] += 1


def attach() -> None:
    """Attach the counting handler unless it is attached (at import; again after a detach). Never blocks."""
    if any(h.id == HANDLER_ID for h in _telemetry.list_handlers(("snowg",))):
        return
    _telemetry.attach_many(HANDLER_ID, [_telemetry.PROCESS_CRASH], _count)


def counts() -> Dict[str, int]:
    """This node's ``crashes`` (processes that ended by their own error), ``restarts`` and ``give_ups``.

    Never blocks.
    """
    restarts = _restart_counts.COUNTS
    return {"crashes": _crashes[0], "restarts": restarts.restarts, "give_ups": restarts.give_ups}


def supervisor_restarts(sup: Pid) -> int:
    """How many children the local supervisor ``sup`` has restarted (never blocks)."""
    return _restart_counts.supervisor_restarts(sup)
