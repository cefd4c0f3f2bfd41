"""Counts of crashes, supervisor restarts and give-ups, kept from snowg's telemetry events.

One handler (id :data:`HANDLER_ID`) is attached when ``snowg.observe`` is
imported (by ``import snowg``) to ``("snowg", "process", "crash")``,
``("snowg", "supervisor", "restart")`` and ``("snowg", "supervisor",
"give_up")``. It adds one to a counter, and to the restarting supervisor's
own count; it runs only when such an event happens, so the events' cost when
nothing happens is unchanged. Counts start with the OS process.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .._core import Pid, is_alive
from .._core import telemetry as _telemetry

__all__ = ["HANDLER_ID", "attach", "counts", "supervisor_restarts"]

HANDLER_ID = "snowg.observe.counts"

# Supervisors tracked at most: beyond it, the ones that ended are forgotten.
_MAX_SUPERVISORS = 4096

_counts: Dict[str, int] = {"crashes": 0, "restarts": 0, "give_ups": 0}
# supervisor -> [its count]: a cell, so that the last one counted is counted again without a lookup
_by_supervisor: Dict[Pid, List[int]] = {}
# The pid object last counted and its cell. A supervisor sends the same Pid object in every
# restart event's metadata, so a run of restarts by one supervisor is counted on an identity
# test: hashing and comparing a Pid runs Python code (three lookups per restart otherwise).
_last: List[Any] = [object(), [0]]


def _count(event: Any, measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
    if event == _telemetry.PROCESS_CRASH:
        _counts["crashes"] += 1
        return
    if event == _telemetry.SUPERVISOR_RESTART:
        _counts["restarts"] += 1
        sup = metadata.get("supervisor")
        last = _last
        if sup is last[0]:
            last[1][0] += 1
        elif type(sup) is Pid:
            cell = _by_supervisor.get(sup)
            if cell is None:
                if len(_by_supervisor) >= _MAX_SUPERVISORS:
                    for gone in [p for p in _by_supervisor if not is_alive(p)]:
                        del _by_supervisor[gone]
                cell = _by_supervisor[sup] = [0]
            cell[0] += 1
            last[0] = sup
            last[1] = cell
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
    cell = _by_supervisor.get(sup)
    return 0 if cell is None else cell[0]
