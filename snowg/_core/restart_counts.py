"""The restart and give-up counts of this node's supervisors, kept where they happen.

A supervisor counts here, in line, each child it restarts and its own giving
up. ``snowg.observe`` reads the counts: ``counts()``,
``supervisor_restarts()``, and the ``snowg_supervisor_restarts_total`` and
``snowg_supervisor_give_ups_total`` metrics. (They were kept by two telemetry
handlers that ``import snowg`` attached; dispatching each restart to them
cost it about 2 µs of its 13. The telemetry events are still made, for the
handlers users attach.)

The state is one record, :data:`COUNTS`:

* ``restarts``, ``give_ups``: the node's totals since the OS process started;
* ``by_supervisor``: supervisor pid -> ``[restarts]``. When it reaches
  ``prune_at`` entries (:data:`MAX_SUPERVISORS` at first), the supervisors
  that ended are forgotten, and ``prune_at`` becomes twice what is left
  (never less than :data:`MAX_SUPERVISORS`): with more live supervisors than
  that, the next scan waits until as many more were added, so a scan costs
  at most two lookups per supervisor added since the last one, and a node
  with many live supervisors does not scan on every new one;
* ``by_label``: metric name -> label -> ``[count]``, where the label is the
  supervisor's registered name, else its pid. A metric keeps at most
  :data:`MAX_LABEL_VALUES` labels, in the order they came; later ones are
  counted under ``"other"``.

A run of restarts by one supervisor is counted on identity tests (its pid
object and its name are the same each time): hashing and comparing a
``Pid`` runs Python code.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .process import local_process
from .terms import Pid

__all__ = [
    "COUNTS",
    "GIVE_UPS",
    "MAX_LABEL_VALUES",
    "MAX_SUPERVISORS",
    "RESTARTS",
    "RestartCounts",
    "count_give_up",
    "count_restart",
    "supervisor_restarts",
]

#: The metric names of :attr:`RestartCounts.by_label`.
RESTARTS = "snowg_supervisor_restarts_total"
GIVE_UPS = "snowg_supervisor_give_ups_total"
#: Supervisors tracked before the ones that ended are first forgotten (see ``by_supervisor``).
MAX_SUPERVISORS = 4096
#: Label values kept per metric; more are counted under ``"other"``.
MAX_LABEL_VALUES = 1000


class RestartCounts:
    """Everything counted (see the module docstring)."""

    __slots__ = ("restarts", "give_ups", "by_supervisor", "prune_at", "by_label", "last")

    def __init__(self) -> None:
        self.restarts = 0
        self.give_ups = 0
        self.by_supervisor: Dict[Pid, List[int]] = {}
        self.prune_at = MAX_SUPERVISORS
        self.by_label: Dict[str, Dict[Any, List[int]]] = {RESTARTS: {}, GIVE_UPS: {}}
        # The last restart counted: the supervisor's pid object, its name, and its two cells.
        self.last: Tuple[Any, Any, List[int], List[int]] = (None, None, [0], [0])


COUNTS = RestartCounts()


def count_restart(supervisor: Pid, name: Optional[str]) -> None:
    """Count a restart by the local ``supervisor`` (registered as ``name``, or None). Never blocks."""
    counts = COUNTS
    counts.restarts += 1
    last = counts.last
    if supervisor is last[0] and name is last[1]:
        last[2][0] += 1
        last[3][0] += 1
        return
    sup_cell = _supervisor_cell(counts, supervisor)
    label_cell = _label_cell(counts.by_label[RESTARTS], supervisor if name is None else name)
    sup_cell[0] += 1
    label_cell[0] += 1
    counts.last = (supervisor, name, sup_cell, label_cell)


def count_give_up(supervisor: Pid, name: Optional[str]) -> None:
    """Count the local ``supervisor`` giving up (its restart intensity reached). Never blocks."""
    counts = COUNTS
    counts.give_ups += 1
    _label_cell(counts.by_label[GIVE_UPS], supervisor if name is None else name)[0] += 1


def supervisor_restarts(supervisor: Pid) -> int:
    """How many children the local ``supervisor`` has restarted (0 if it never did). Never blocks."""
    cell = COUNTS.by_supervisor.get(supervisor)
    return 0 if cell is None else cell[0]


def _supervisor_cell(counts: RestartCounts, supervisor: Pid) -> List[int]:
    table = counts.by_supervisor
    cell = table.get(supervisor)
    if cell is None:
        if len(table) >= counts.prune_at:
            for gone in [p for p in table if local_process(p) is None]:
                del table[gone]
            counts.prune_at = max(MAX_SUPERVISORS, 2 * len(table))
        cell = table[supervisor] = [0]
    return cell


def _label_cell(values: Dict[Any, List[int]], label: Any) -> List[int]:
    cell = values.get(label)
    if cell is None:
        if len(values) >= MAX_LABEL_VALUES:
            label = "other"
            cell = values.get(label)
        if cell is None:
            cell = values[label] = [0]
    return cell
