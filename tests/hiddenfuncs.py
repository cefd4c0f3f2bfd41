"""Spawnable functions the hidden-node tests call on their peer nodes (``--import hiddenfuncs``)."""

from __future__ import annotations

from typing import Any, List, Optional

import snowg
from snowg import pg
from snowg.cluster import hidden_nodes, nodes, spawnable, whereis_global


@spawnable
def peers(hidden: bool = False) -> List[str]:
    """``snowg.nodes(hidden=hidden)`` of this node."""
    return nodes(hidden=hidden)


@spawnable
def hidden_peers() -> List[str]:
    """``snowg.cluster.hidden_nodes()`` of this node."""
    return hidden_nodes()


def _member(report_to: snowg.Pid, group: str) -> None:
    pg.join(group, snowg.self())
    snowg.send(report_to, ("joined", group, snowg.self()))
    snowg.receive()


@spawnable
def join_group(report_to: snowg.Pid, group: str) -> snowg.Pid:
    """Start a process that joins ``group`` (default scope) and waits; it reports ``('joined', group, pid)``."""
    return snowg.spawn(_member, report_to, group)


@spawnable
def members(group: str) -> List[str]:
    """The members of ``group`` (default scope) this node knows of."""
    return sorted(str(p) for p in pg.get_members(group))


@spawnable
def global_name(name: str) -> Optional[str]:
    """Where this node thinks the global name ``name`` is."""
    pid: Any = whereis_global(name)
    return None if pid is None else str(pid)
