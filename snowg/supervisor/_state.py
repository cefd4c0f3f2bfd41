"""The supervisor's state record and its transition functions.

Everything here is plain data and functions with no effect beyond their
arguments (only :func:`add_restart` changes one: it updates the restart
window it is given, in place, so that a restart costs the same whatever
the window's size), so the rules (semantics rules 15-18) can be read and
tested on their own; the process that acts on them is in ``_server.py``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from .._core import Pid
from .._core import is_shutdown_reason
from ._spec import ChildSpec, Flags

#: ``Child.pid`` while a failed restart waits for its retry (which_children shows it).
RESTARTING = "restarting"


@dataclass
class Child:
    """One static child: its spec and its process (a Pid, ``RESTARTING`` or None)."""

    spec: ChildSpec
    pid: Union[Pid, str, None] = None


@dataclass(repr=False)
class State:
    """Everything a supervisor knows: its flags, its children, its recent restarts.

    Static strategies keep ``children`` (id -> Child, in start order: a dict
    keeps insertion order, and a restart does not move a child) and
    ``by_pid`` (pid -> id) so that an exit costs one lookup. A
    simple_one_for_one supervisor keeps one ``template`` and its dynamic
    children in ``dynamic`` (pid -> extra args), plus ``dyn_restarting``
    (old pid -> extra args) for those whose restart failed and waits for a
    retry. ``restarts`` holds the times of the restarts in the current window.
    """

    flags: Flags
    children: Dict[Any, Child] = field(default_factory=dict)
    by_pid: Dict[Pid, Any] = field(default_factory=dict)
    template: Optional[ChildSpec] = None
    dynamic: Dict[Pid, Tuple[Any, ...]] = field(default_factory=dict)
    dyn_restarting: Dict[Pid, Tuple[Any, ...]] = field(default_factory=dict)
    restarts: Deque[float] = field(default_factory=deque)
    #: Whether the strategy is ``simple_one_for_one`` (kept: every exit asks).
    simple: bool = field(init=False)
    #: The metadata of this supervisor's telemetry events but ``child_id`` (made at the first).
    event_meta: Optional[Dict[str, Any]] = None
    #: The supervisor's own pid (kept at its first restart: counted by identity, see ``restart_counts``).
    me: Optional[Pid] = None

    def __post_init__(self) -> None:
        self.simple = self.flags.simple

    def __repr__(self) -> str:
        # Short on purpose: it goes into error reports, and may hold 10,000 children.
        n = len(self.dynamic) + len(self.dyn_restarting) if self.simple else len(self.children)
        return f"<supervisor state {self.flags.strategy} children={n} restarts={len(self.restarts)}>"


def add_restart(restarts: Deque[float], now: float, period: float, intensity: int) -> bool:
    """Record a restart at ``now`` in the window ``restarts`` (in place); return whether it is allowed.

    The window keeps the restarts at most ``period`` seconds old (the boundary
    is inside, as in OTP); the restart is allowed while the window holds at
    most ``intensity`` restarts, so ``intensity=0`` refuses the first one.
    ``restarts`` is in time order (the supervisor's clock is monotonic), so
    only its oldest entries can have left the window: they are dropped from
    its left end and ``now`` appended at its right, so the cost is the
    entries dropped, not the window's size (copying the window on every
    restart made a supervisor with a large ``intensity`` restart in time
    proportional to it).
    """
    while restarts and now - restarts[0] > period:
        restarts.popleft()
    restarts.append(now)
    return len(restarts) <= intensity


def should_restart(restart: str, reason: Any) -> bool:
    """semantics rule 15: permanent always, transient unless a deliberate end, temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return not is_shutdown_reason(reason)
    return False


def is_shutdown_error(reason: Any, shutdown: Any, restart: str) -> bool:
    """semantics rule 20 (OTP's ``do_terminate``): did a child end badly while being stopped?

    Expected: ``'killed'`` under brutal_kill, ``'shutdown'`` otherwise, and
    ``'normal'`` from a child that is not permanent.
    """
    if shutdown == "brutal_kill":
        if reason == "killed":
            return False
    elif reason == "shutdown":
        return False
    return not (reason == "normal" and restart != "permanent")


def ids_to_stop(order: List[Any], failed: Any, strategy: str) -> List[Any]:
    """The ids a restart of ``failed`` stops first, in the order to stop them (reverse start order).

    one_for_all: every other child; rest_for_one: those started after it.
    """
    if strategy == "one_for_all":
        return [i for i in reversed(order) if i != failed]
    if strategy == "rest_for_one":
        after = order[order.index(failed) + 1 :]
        return list(reversed(after))
    return []


def ids_to_start(order: List[Any], failed: Any, strategy: str) -> List[Any]:
    """The ids a restart of ``failed`` starts, in start order."""
    if strategy == "one_for_all":
        return list(order)
    if strategy == "rest_for_one":
        return order[order.index(failed) :]
    return [failed]


def auto_shutdown_due(mode: str, significant_alive: bool) -> bool:
    """semantics rule 18, after a significant child ended and was not restarted.

    ``significant_alive``: whether another significant child still runs.
    """
    if mode == "any_significant":
        return True
    if mode == "all_significant":
        return not significant_alive
    return False


def count(state: State) -> Dict[str, int]:
    """``count_children``'s answer (OTP's: for simple_one_for_one ``specs`` is 1)."""
    if state.simple:
        assert state.template is not None
        n = len(state.dynamic) + len(state.dyn_restarting)
        sup = state.template.type == "supervisor"
        return {
            "specs": 1,
            "active": len(state.dynamic),
            "supervisors": n if sup else 0,
            "workers": 0 if sup else n,
        }
    sups = sum(1 for c in state.children.values() if c.spec.type == "supervisor")
    return {
        "specs": len(state.children),
        "active": len(state.by_pid),
        "supervisors": sups,
        "workers": len(state.children) - sups,
    }


def which(state: State) -> List[Tuple[Any, Any, str]]:
    """``which_children``'s answer: ``(id, pid | 'restarting' | None, type)`` in start order.

    Dynamic children have id None (OTP's ``undefined``).
    """
    if state.simple:
        assert state.template is not None
        t = state.template.type
        return [(None, pid, t) for pid in state.dynamic] + [(None, RESTARTING, t) for _ in state.dyn_restarting]
    return [(cid, c.pid, c.spec.type) for cid, c in state.children.items()]
