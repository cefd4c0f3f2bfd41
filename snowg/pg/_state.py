"""A scope's state: the tables every process reads, and the scope process's bookkeeping.

One :class:`ScopeState` per running scope. Its *tables* (``members``,
``local_members``, ``remote_nodes``) play the part of OTP pg's ETS table:
only the scope process writes them, any process or greenlet reads them
without asking it (a read never blocks). A group's members are a dict
``pid -> how many times it joined`` plus the total, so a leave is O(1) and a
pid that joined twice is listed twice.

The rest is the scope process's own: the monitor of each local member (and
the groups it joined, with how many times), each peer scope it knows (the
monitor of that scope process and the members that node reported), and the
processes that monitor the scope or a group.

The transitions here change the tables and nothing else: sending frames and
notifications is the scope process's (:mod:`snowg.pg._scope`).
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .._core import Pid, Ref

__all__ = ["Peer", "ScopeState", "expand"]


class Peer:
    """What this scope knows of one peer scope process (another node's scope of the same name)."""

    __slots__ = ("pid", "ref", "groups", "entries", "pending", "pending_entries", "capped")

    def __init__(self, pid: Pid, ref: Ref) -> None:
        self.pid = pid
        self.ref = ref
        # group -> {pid: joins}: the members that node reported, one count per join.
        self.groups: Dict[Any, Dict[Pid, int]] = {}
        self.entries = 0  # sum of all counts: bounded by the scope's cap
        # A sync arriving in parts: the parts so far (applied when the last one arrives).
        self.pending: Optional[Dict[Any, Dict[Pid, int]]] = None
        self.pending_entries = 0
        self.capped = False  # the cap was hit (logged once per sync)


class ScopeState:
    """The state of one scope on this node (see the module docstring)."""

    __slots__ = (
        "name",
        "pid",
        "members",
        "sizes",
        "local_members",
        "remote_nodes",
        "_node_sets",
        "local",
        "local_refs",
        "peers",
        "peer_refs",
        "scope_monitors",
        "group_monitors",
        "monitored_groups",
    )

    def __init__(self, name: str, pid: Pid) -> None:
        self.name = name
        self.pid = pid
        # ---- the tables (read by anyone, written by the scope process only)
        # group -> {pid: joins}, cluster-wide; sizes[group] = the sum of the counts.
        self.members: Dict[Any, Dict[Pid, int]] = {}
        self.sizes: Dict[Any, int] = {}
        # group -> {local pid: joins}.
        self.local_members: Dict[Any, Dict[Pid, int]] = {}
        # group -> {other node: entries}: the nodes other than this one with members.
        self.remote_nodes: Dict[Any, Dict[str, int]] = {}
        # group -> (this node's name when computed, the frozenset member_nodes returns).
        self._node_sets: Dict[Any, Tuple[str, FrozenSet[str]]] = {}
        # ---- the scope process's bookkeeping
        # local pid -> (its monitor, {group: how many times it joined}).
        self.local: Dict[Pid, Tuple[Ref, Dict[Any, int]]] = {}
        self.local_refs: Dict[Ref, Pid] = {}
        # peer scope pid -> what it reported; monitor ref -> peer scope pid.
        self.peers: Dict[Pid, Peer] = {}
        self.peer_refs: Dict[Ref, Pid] = {}
        # monitor_scope(): ref -> watcher; monitor(group): ref -> (watcher, group), and group -> {ref: watcher}.
        self.scope_monitors: Dict[Ref, Pid] = {}
        self.group_monitors: Dict[Ref, Tuple[Pid, Any]] = {}
        self.monitored_groups: Dict[Any, Dict[Ref, Pid]] = {}

    # ------------------------------------------------------------ the tables

    def add(self, group: Any, pids: Iterable[Pid], node: Optional[str]) -> None:
        """``pids`` join ``group`` (one entry each); ``node`` is None for local pids, else their node."""
        counts = self.members.get(group)
        if counts is None:
            counts = self.members[group] = {}
            self.sizes[group] = 0
        local = None
        if node is None:
            local = self.local_members.get(group)
            if local is None:
                local = self.local_members[group] = {}
        n = 0
        for pid in pids:
            counts[pid] = counts.get(pid, 0) + 1
            if local is not None:
                local[pid] = local.get(pid, 0) + 1
            n += 1
        self.sizes[group] += n
        if node is not None and n:
            per_node = self.remote_nodes.get(group)
            if per_node is None:
                per_node = self.remote_nodes[group] = {}
            per_node[node] = per_node.get(node, 0) + n
        self._node_sets.pop(group, None)

    def remove(self, group: Any, pids: Iterable[Pid], node: Optional[str]) -> None:
        """One entry of each of ``pids`` leaves ``group`` (each must be there: the caller checked)."""
        counts = self.members[group]
        local = self.local_members.get(group) if node is None else None
        n = 0
        for pid in pids:
            _decrement(counts, pid)
            if local is not None:
                _decrement(local, pid)
            n += 1
        size = self.sizes[group] - n
        if size:
            self.sizes[group] = size
        else:
            del self.members[group], self.sizes[group]
        if local is not None and not local:
            del self.local_members[group]
        if node is not None and n:
            per_node = self.remote_nodes[group]
            left = per_node[node] - n
            if left:
                per_node[node] = left
            else:
                del per_node[node]
                if not per_node:
                    del self.remote_nodes[group]
        self._node_sets.pop(group, None)

    def member_nodes(self, group: Any, this_node: str) -> FrozenSet[str]:
        """The nodes with at least one member of ``group`` (``this_node`` if a local process is one)."""
        cached = self._node_sets.get(group)
        if cached is not None and cached[0] == this_node:
            return cached[1]
        nodes = set(self.remote_nodes.get(group, ()))
        if group in self.local_members:
            nodes.add(this_node)
        result = frozenset(nodes)
        if result:  # (only groups with members are kept: the cache stays as small as the tables)
            self._node_sets[group] = (this_node, result)
        return result

    def snapshot(self) -> Dict[Any, List[Pid]]:
        """Every group and its members (one entry per join)."""
        return {group: expand(counts, self.sizes[group]) for group, counts in self.members.items()}

    def local_snapshot(self) -> Dict[Any, Dict[Pid, int]]:
        """Every group with local members: ``group -> {pid: joins}`` (copies)."""
        return {group: dict(counts) for group, counts in self.local_members.items()}


def expand(counts: Dict[Pid, int], size: int) -> List[Pid]:
    """``{pid: joins}`` as a list with one entry per join (``size``: the sum of the counts)."""
    if size == len(counts):
        return list(counts)
    return [pid for pid, n in counts.items() for _ in range(n)]


def _decrement(counts: Dict[Pid, int], pid: Pid) -> None:
    n = counts[pid] - 1
    if n:
        counts[pid] = n
    else:
        del counts[pid]
