"""``snapshot``: everything a node can tell about itself, in plain terms.

It runs on the node it describes (``rpc.call(node, "snowg.observe:snapshot")``
from any node of the cluster) and returns dicts, lists, strs and numbers,
ready for JSON: a pid is written as its string (``'<a@host.12.3>'``).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Set

from .. import pg
from .. import sys as _sys
from .._core import Pid, cpu_tracing, process_info, processes
from .._errors import CallTimeout, SnowgError
from ..cluster import node, nodes, session_stats
from ._counts import counts, supervisor_restarts
from ._plain import plain

__all__ = ["ROOMS_SCOPE", "SUPERVISOR_CALL", "snapshot"]

#: The ``initial_call`` of a supervisor process.
SUPERVISOR_CALL = "snowg.supervisor._server.Supervisor"
#: The pg scope of snowg.ws's rooms (``snowg.ws``'s SCOPE; not imported, so that a
#: node without WebSocket servers does not load them).
ROOMS_SCOPE = "snowg_ws"

_PROCESS_KEYS = (
    "registered_name",
    "initial_call",
    "status",
    "message_queue_len",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
    "parent",
    "cpu_time",
)


def snapshot(limit: Optional[int] = None, timeout: float = 1.0) -> Dict[str, Any]:
    """A description of this node now, in plain terms (see the guide's "Observing a node").

    Spawnable as ``"snowg.observe:snapshot"`` on every node that imports
    snowg. Blocks the caller while it asks each local supervisor for its
    children (a system request, answered also by a suspended supervisor; at
    most ``timeout`` seconds each); everything else is read without waiting.

    Args:
        limit: at most this many processes, those with the longest message
            queues first (all of them, in pid order, when None).
        timeout: seconds to wait for each supervisor's answer; one that does
            not answer in time shows with ``"error": "timeout"``.

    Returns:
        A dict: ``node``, ``nodes`` (connected), ``time`` (Unix seconds),
        ``cpu_tracing``, ``process_count``, ``processes`` (each: ``pid``,
        ``name``, ``initial_call``, ``status``, ``message_queue_len``,
        ``links``, ``monitors``, ``monitored_by``, ``trap_exit``,
        ``parent``, ``supervisor``, ``cpu_time``), ``supervisors`` (the
        supervision trees rooted here: ``pid``, ``name``, ``strategy``,
        ``intensity``, ``period``, ``restarts``, ``recent_restarts``,
        ``status``, ``children``, a child that is a local supervisor holding
        its own tree), ``groups`` (``scope``, ``group``, ``members``,
        ``local_members``), ``rooms`` (``room``, ``members``,
        ``local_members``), ``sessions`` (see ``snowg.cluster.session_stats``)
        and ``counts`` (``crashes``, ``restarts``, ``give_ups``).
    """
    pids = processes()
    infos: Dict[Pid, Dict[str, Any]] = {}
    for pid in pids:
        info = process_info(pid, _PROCESS_KEYS)
        if info is not None:
            infos[pid] = info
    sups = [pid for pid, info in infos.items() if info["initial_call"] == SUPERVISOR_CALL]
    trees, supervisor_of = _trees(sups, timeout)
    rows = [_process_row(pid, info, supervisor_of.get(pid)) for pid, info in infos.items()]
    if limit is not None:
        rows.sort(key=lambda r: -r["message_queue_len"])
        rows = rows[: max(0, limit)]
    groups, rooms = _groups(infos)
    return {
        "node": node(),
        "nodes": nodes(),
        "time": time.time(),
        "cpu_tracing": cpu_tracing(),
        "process_count": len(infos),
        "processes": rows,
        "supervisors": trees,
        "groups": groups,
        "rooms": rooms,
        "sessions": session_stats(),
        "counts": counts(),
    }


def _process_row(pid: Pid, info: Dict[str, Any], supervisor: Optional[Pid]) -> Dict[str, Any]:
    return {
        "pid": str(pid),
        "name": info["registered_name"],
        "initial_call": info["initial_call"],
        "status": info["status"],
        "message_queue_len": info["message_queue_len"],
        "links": [str(p) for p in info["links"]],
        "monitors": [plain(t) for t in info["monitors"]],
        "monitored_by": [str(p) for p in info["monitored_by"]],
        "trap_exit": info["trap_exit"],
        "parent": None if info["parent"] is None else str(info["parent"]),
        "supervisor": None if supervisor is None else str(supervisor),
        "cpu_time": info["cpu_time"],
    }


def _trees(sups: List[Pid], timeout: float) -> Any:
    """The supervision trees of the local supervisors, and each child's supervisor."""
    local = set(sups)
    statuses: Dict[Pid, Dict[str, Any]] = {}
    for sup in sups:
        try:
            statuses[sup] = _sys.get_status(sup, timeout)
        except CallTimeout:  # busy (starting a child) past the timeout
            statuses[sup] = {"error": "timeout"}
        except SnowgError as e:  # it ended meanwhile
            statuses[sup] = {"error": type(e).__name__}
    supervisor_of: Dict[Pid, Pid] = {}
    nested: Set[Pid] = set()
    for sup, status in statuses.items():
        for child in (status.get("state") or {}).get("children", ()):
            pid = child["pid"]
            if type(pid) is Pid:
                supervisor_of[pid] = sup
                if pid in local:
                    nested.add(pid)

    def tree(sup: Pid, seen: Set[Pid]) -> Dict[str, Any]:
        status = statuses.get(sup, {})
        state = status.get("state") or {}
        out: Dict[str, Any] = {
            "pid": str(sup),
            "name": state.get("name"),
            "status": status.get("status"),
            "strategy": state.get("strategy"),
            "intensity": state.get("intensity"),
            "period": state.get("period"),
            "restarts": supervisor_restarts(sup),
            "recent_restarts": state.get("recent_restarts"),
            "children": [],
        }
        if "error" in status:
            out["error"] = status["error"]
        seen.add(sup)
        for child in state.get("children", ()):
            pid = child["pid"]
            entry: Dict[str, Any] = {
                "id": plain(child["id"]),
                "pid": plain(pid),
                "type": child["type"],
                "node": pid.node if type(pid) is Pid else None,
            }
            if type(pid) is Pid and pid in local and pid not in seen:
                entry["tree"] = tree(pid, seen)
            out["children"].append(entry)
        return out

    seen: Set[Pid] = set()
    roots = [tree(sup, seen) for sup in sups if sup not in nested and sup not in seen]
    return roots, supervisor_of


def _groups(infos: Dict[Pid, Dict[str, Any]]) -> Any:
    """The groups of every pg scope running here (scopes are registered under their name), and the rooms."""
    groups: List[Dict[str, Any]] = []
    rooms: List[Dict[str, Any]] = []
    scopes = sorted({info["registered_name"] for info in infos.values() if info["registered_name"]})
    for scope in scopes:
        for group in pg.which_groups(scope=scope):
            members = len(pg.get_members(group, scope=scope))
            local = len(pg.get_local_members(group, scope=scope))
            if scope == ROOMS_SCOPE:
                rooms.append({"room": plain(group), "members": members, "local_members": local})
            else:
                groups.append({"scope": scope, "group": plain(group), "members": members, "local_members": local})
    rooms.sort(key=lambda r: str(r["room"]))
    groups.sort(key=lambda g: (g["scope"], str(g["group"])))
    return groups, rooms
