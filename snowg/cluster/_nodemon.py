"""Who hears of nodes coming and going: node monitors, and the layers above.

Losing a peer (semantics rule 26) applies, in order: links (``'noconnection'``
exits), monitors (``Down(..., 'noconnection')``), unanswered remote spawns,
node monitors (``NodeDown``), then the callbacks registered with
:func:`snowg.cluster.on_node_down` (the global registry, for one). A new
peer is announced to the ``on_node_up`` callbacks, then to ``monitor_nodes``
watchers (``NodeUp``). A hidden connection (``start_node(hidden=True)``)
is announced to neither, nor its loss: only to :data:`session_down_callbacks`
(discovery), node monitors of that very node, links and monitors.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List

from .._core import is_alive
from .._core import remote as _remote
from .._core import telemetry as _telemetry
from .._core import self as _self
from .._core.terms import NodeDown, NodeUp
from . import _nodestate
from ._nodestate import NodeState, require
from ._spawn import node_lost, refusals_summary

__all__ = [
    "down_callbacks",
    "session_down_callbacks",
    "monitor_node",
    "monitor_nodes",
    "node_down",
    "node_up",
    "stop_callbacks",
    "up_callbacks",
]

log = logging.getLogger("snowg")

# Called with the node's name, after the node's own notifications (see the module docstring).
up_callbacks: List[Callable[[str], None]] = []
down_callbacks: List[Callable[[str], None]] = []
# Called with the node's name when any session ends, hidden ones too (discovery).
session_down_callbacks: List[Callable[[str], None]] = []
# Called when this node stops, after every session closed.
stop_callbacks: List[Callable[[], None]] = []


def node_up(st: NodeState, name: str, hidden: bool = False) -> None:
    """``name`` is connected (its session is registered): tell everyone who asked.

    A hidden connection wakes only whoever waits for the connection itself.
    """
    if hidden:
        ev = st.up_events.pop(name, None)
        if ev is not None:
            ev.set()
        return
    for callback in up_callbacks:
        try:
            callback(name)
        except Exception:  # noqa: BLE001 - a callback's bug must not break the session
            log.exception("node-up callback failed for %s", name)
    ev = st.up_events.pop(name, None)
    if ev is not None:
        ev.set()
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeUp(name))
    if _telemetry.NODE_UP in _telemetry.attached:
        _telemetry.execute(_telemetry.NODE_UP, {"nodes": len(st.sessions)}, {"node": name})


def node_down(st: NodeState, name: str, reason: str, hidden: bool = False) -> None:
    """``name`` is lost: apply semantics rule 26, in its order (a hidden one: links, monitors, node monitors)."""
    broken, fired = _remote.node_down(name)
    node_lost(st, name)
    for watcher in st.node_watchers.pop(name, ()):
        _remote.deliver_to(watcher, NodeDown(name, reason))
    for callback in session_down_callbacks:
        try:
            callback(name)
        except Exception:  # noqa: BLE001
            log.exception("session-down callback failed for %s", name)
    if hidden:
        log.info("hidden node %s down (%s): %d links broken, %d monitors fired", name, reason, broken, fired)
        refusals_summary(name)
        return
    for watcher in st.all_nodes_watchers:
        _remote.deliver_to(watcher, NodeDown(name, reason))
    for callback in down_callbacks:
        try:
            callback(name)
        except Exception:  # noqa: BLE001
            log.exception("node-down callback failed for %s", name)
    log.info("node %s down (%s): %d links broken, %d monitors fired", name, reason, broken, fired)
    if _telemetry.NODE_DOWN in _telemetry.attached:
        measures: Dict[str, float] = {"nodes": len(st.sessions), "links_broken": broken, "monitors_fired": fired}
        _telemetry.execute(_telemetry.NODE_DOWN, measures, {"node": name, "reason": reason})
    refusals_summary(name)


def monitor_node(name: str, flag: bool = True) -> None:
    """Ask for ``NodeDown(name, reason)`` when the connection to ``name`` goes.

    Never blocks. If not connected, ``NodeDown(name, 'noconnection')`` arrives
    at once. ``name`` may be a snowg node or a node of another protocol (a
    BEAM node). ``flag=False`` removes the caller's monitors of ``name``.
    """
    me = _self()
    st = _nodestate.current
    if not flag:
        if st is not None and name in st.node_watchers:
            st.node_watchers[name] = [w for w in st.node_watchers[name] if w != me]
        return
    if st is None or (name not in st.sessions and name not in st.foreign):
        _remote.deliver_to(me, NodeDown(name, "noconnection"))
        return
    st.node_watchers.setdefault(name, []).append(me)


def monitor_nodes(flag: bool = True) -> None:
    """Ask for ``NodeUp``/``NodeDown`` about every node (``net_kernel:monitor_nodes``).

    Never blocks. ``flag=False`` stops them.

    Raises:
        NodeError: this process is not a node.
    """
    me = _self()
    st = require()
    st.all_nodes_watchers = [w for w in st.all_nodes_watchers if w != me and is_alive(w)]
    if flag:
        st.all_nodes_watchers.append(me)
