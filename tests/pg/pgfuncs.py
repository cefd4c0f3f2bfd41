"""``@snowg.spawnable`` helpers for the process-group tests, imported by the peers (``modules=["pgfuncs"]``).

Members are driven by messages and answer with messages, so tests wait for
an answer, never for a sleep. Reads of a peer's groups go through
``peer.rpc``; the waits for a membership to spread are bounded polls
(:func:`wait_members`), since the spreading itself sends no message.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import snowg
import snowg.pg as pg
from snowg.testing import wait_for

Members = List[Tuple[str, int, int]]


def key(pids: List[snowg.Pid]) -> Members:
    """Pids as sorted plain tuples: a multiset that compares equal across nodes."""
    return sorted((p.node, p.id, p.creation) for p in pids)


@snowg.spawnable
def member(parent: snowg.Pid, group: Any = None, times: int = 1, scope: str = pg.DEFAULT_SCOPE) -> None:
    """Join ``group`` ``times`` times (none if None), tell ``parent`` ``('member', self())``, then obey commands.

    Commands: ``('join', group)``, ``('leave', group)``, ``('join_many', groups)``,
    ``('join_times', group, n)``
    each answered ``('done', self(), result)``; ``('exit', reason)`` ends it;
    ``'stop'`` ends it normally.
    """
    me = snowg.self()
    for _ in range(times if group is not None else 0):
        pg.join(group, scope=scope)
    snowg.send(parent, ("member", me))
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        what = msg[0]
        if what == "exit":
            snowg.exit(msg[1])
        elif what == "join":
            snowg.send(parent, ("done", me, pg.join(msg[1], scope=scope)))
        elif what == "leave":
            snowg.send(parent, ("done", me, pg.leave(msg[1], scope=scope)))
        elif what == "join_times":
            pg.join(msg[1], [me] * msg[2], scope=scope)  # one call, one pid many times
            snowg.send(parent, ("done", me, None))
        elif what == "join_many":
            for g in msg[1]:
                pg.join(g, scope=scope)
            snowg.send(parent, ("done", me, None))


@snowg.spawnable
def churn(parent: snowg.Pid, group: Any, steps: List[str], tag: Any) -> None:
    """Join or leave ``group`` for each step (``'j'`` or ``'l'``), then tell ``parent`` ``('churned', tag, joins)``.

    Stays alive afterwards (its memberships stay) until ``'stop'``.
    """
    joins = 0
    for step in steps:
        if step == "j":
            pg.join(group)
            joins += 1
        elif joins and pg.leave(group):
            joins -= 1
    snowg.send(parent, ("churned", tag, snowg.self(), joins))
    snowg.receive(lambda m: m == "stop")


@snowg.spawnable
def watcher(parent: snowg.Pid, group: Any = None, scope: str = pg.DEFAULT_SCOPE) -> None:
    """Monitor ``group`` (the scope if None), tell ``parent`` ``('watching', self(), snapshot)``, forward notes.

    Each notification goes to ``parent`` as ``('note', node, what, group, members)``.
    """
    if group is None:
        ref, snap = pg.monitor_scope(scope=scope)
        snapshot: Any = {g: key(p) for g, p in snap.items()}
    else:
        ref, members = pg.monitor(group, scope=scope)
        snapshot = key(members)
    snowg.send(parent, ("watching", snowg.self(), snapshot))
    node = snowg.node()
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        if type(msg) is tuple and len(msg) == 4 and msg[0] == ref:
            snowg.send(parent, ("note", node, msg[1], msg[2], key(msg[3])))


@snowg.spawnable
def members(group: Any, scope: str = pg.DEFAULT_SCOPE) -> Members:
    """``get_members(group)`` on this node, as :func:`key`."""
    return key(pg.get_members(group, scope=scope))


@snowg.spawnable
def local_members(group: Any, scope: str = pg.DEFAULT_SCOPE) -> Members:
    return key(pg.get_local_members(group, scope=scope))


@snowg.spawnable
def groups(scope: str = pg.DEFAULT_SCOPE) -> List[Any]:
    return sorted(pg.which_groups(scope=scope), key=repr)


@snowg.spawnable
def nodes_of(group: Any, scope: str = pg.DEFAULT_SCOPE) -> List[str]:
    return sorted(pg.member_nodes(group, scope=scope))


@snowg.spawnable
def start_scope(scope: str) -> snowg.Pid:
    return pg.start(scope)


@snowg.spawnable
def wait_members(group: Any, expected: Members, scope: str = pg.DEFAULT_SCOPE, timeout: float = 10.0) -> Members:
    """Wait (bounded) until this node's ``get_members(group)`` is ``expected``; returns what it is then."""
    want = [tuple(e) for e in expected]
    wait_for(lambda: key(pg.get_members(group, scope=scope)) == want, timeout)
    return key(pg.get_members(group, scope=scope))


@snowg.spawnable
def wait_counts(group: Any, expected: Dict[str, int], timeout: float = 10.0) -> Dict[str, int]:
    """Wait until the members of ``group`` per node are ``expected`` (node -> entries); returns them."""

    def now() -> Dict[str, int]:
        return dict(Counter(p.node for p in pg.get_members(group)))

    wait_for(lambda: now() == expected, timeout)
    return now()


def local_wait_members(group: Any, expected: Members, scope: str = pg.DEFAULT_SCOPE, timeout: float = 10.0) -> Members:
    """:func:`wait_members` on this node (no rpc)."""
    return wait_members(group, expected, scope, timeout)


@snowg.spawnable
def scope_pid(scope: str = pg.DEFAULT_SCOPE) -> Optional[snowg.Pid]:
    return snowg.whereis(scope)
