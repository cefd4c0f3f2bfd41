"""The cluster-wide half of room membership: each local membership is a join in a pg scope.

A room is a process group of the :mod:`snowg.pg` scope :data:`SCOPE`
(``"snowg_ws"``, a scope of its own, so rooms never mix with a program's
groups): a connection in a room is its handler process joined to the group
named by the room, once. pg then gives what a node cannot know alone: which
nodes have members (:func:`member_nodes`, for routing broadcasts) and how many
members there are in the whole cluster (:func:`count`). It is eventually
consistent, as pg is: a join or a leave is seen on this node a moment after
it is made, and on the others a moment later.

The joins and leaves are made by one process per node, the *writer*, never by
the connection's code: pg's writes are calls that block, and a connection
leaves its rooms when it closes, which may happen in a timer's callback (where
nothing may block) or in its reader. :func:`joined` and :func:`left` put the
change in the writer's mailbox and return; the writer applies them in order,
a run of changes to one room in one call. The room registry (``_rooms``) is
the truth; should the writer or the scope process end, or a call fail, the
writer *reconciles*: it makes pg's local members of every room equal to the
registry's. pg removes a handler process that ends from every group anyway.

The scope is started on each node by the writer: the first time a connection
joins a room here, or a node connects, or a broadcast or a count finds it not
running. Only nodes that import :mod:`snowg.ws` run it; a node that joins a
cluster whose members it has not heard of yet routes to nobody for that moment.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .. import pg
from .._core import Down, Pid, Ref, demonitor, flush_messages, is_alive, monitor, receive, send, spawn
from ..cluster import on_node_up

log = logging.getLogger("snowg")

#: The pg scope of the WebSocket rooms.
SCOPE = "snowg_ws"

# The writer process of this node, once started.
_writer: Optional[Pid] = None


def _no_registry() -> Iterable[Tuple[str, Pid]]:
    return ()


# What the registry holds now: (room, handler pid) for each local membership. Set by _rooms.
_local_memberships: Callable[[], Iterable[Tuple[str, Pid]]] = _no_registry

_JOIN, _LEAVE = "join", "leave"


def set_registry(snapshot: Callable[[], Iterable[Tuple[str, Pid]]]) -> None:
    """Tell the writer where the registry's memberships are (``_rooms`` does, at import)."""
    global _local_memberships
    _local_memberships = snapshot


def joined(room: str, pid: Pid) -> None:
    """``pid`` (a connection's handler) has joined ``room`` here: join its group. Never blocks."""
    _send((_JOIN, room, pid))


def left(room: str, pid: Pid) -> None:
    """``pid`` has left ``room`` here: leave its group once. Never blocks."""
    _send((_LEAVE, room, pid))


def member_nodes(room: str) -> FrozenSet[str]:
    """The nodes with at least one member of ``room``, as this node knows them. Never blocks."""
    nodes = pg.member_nodes(room, scope=SCOPE)
    if not nodes:
        ensure_started()
    return nodes


def count(room: str) -> int:
    """The members of ``room`` on every node, as this node knows them. Never blocks."""
    ensure_started()
    return len(pg.get_members(room, scope=SCOPE))


def ensure_started() -> None:
    """Start this node's writer (which starts the scope) unless it runs. Never blocks."""
    global _writer
    if _writer is None or not is_alive(_writer):
        _writer = spawn(_write_loop)


def _send(op: Tuple[str, str, Pid]) -> None:
    ensure_started()
    assert _writer is not None
    send(_writer, op)  # a local send: never blocks, even in the hub


def _on_node_up(node: str) -> None:
    # A node connected: the scope must run here to learn that node's rooms.
    ensure_started()


# ----------------------------------------------------------------- the writer


def _write_loop() -> None:
    scope_ref: Optional[Ref] = None
    in_step = False  # pg's local members are the registry's, give or take the changes queued
    while True:
        if not in_step:
            if scope_ref is not None:
                demonitor(scope_ref)
            scope_ref = _reconcile()
            if scope_ref is None:  # the scope could not be started: logged; try again on the next change
                receive()
                continue
            in_step = True
        batch = [receive()]
        batch += flush_messages()
        if any(type(m) is Down and m.ref == scope_ref for m in batch):
            log.warning("snowg.ws: the pg scope %r ended; restarted, with this node's room memberships", SCOPE)
            scope_ref, in_step = None, False
            continue
        try:
            _apply([m for m in batch if type(m) is tuple and len(m) == 3])
        except Exception:  # noqa: BLE001 - the registry is the truth: start again from it
            log.exception("snowg.ws: a room membership change failed; reconciling with the room registry")
            in_step = False


def _apply(ops: List[Tuple[str, str, Pid]]) -> None:
    """Apply ``ops`` in order, a run of the same change to one room in one pg call."""
    i, n = 0, len(ops)
    while i < n:
        kind, room, _ = ops[i]
        j = i + 1
        while j < n and ops[j][0] == kind and ops[j][1] == room:
            j += 1
        pids = [op[2] for op in ops[i:j]]
        if kind == _JOIN:
            pg.join(room, pids, scope=SCOPE)
        else:
            pg.leave(room, pids, scope=SCOPE)
        i = j


def _reconcile() -> Optional[Ref]:
    """Make pg's local members of every room those of the registry; the scope's monitor ref, or None.

    The changes queued so far are dropped first: the registry already holds
    them. What is queued while this runs comes after the snapshot and is
    applied as usual.
    """
    try:
        scope = pg.start(SCOPE)
    except Exception:  # noqa: BLE001 - logged; the writer tries again on the next change
        log.exception("snowg.ws: the pg scope %r could not be started", SCOPE)
        return None
    ref = monitor(scope)
    flush_messages(lambda m: type(m) is tuple)
    want: Dict[str, Counter[Pid]] = {}
    for room, pid in _local_memberships():
        want.setdefault(room, Counter())[pid] += 1
    have: Dict[str, Counter[Pid]] = {}
    for room in pg.which_groups(scope=SCOPE):
        local = pg.get_local_members(room, scope=SCOPE)
        if local:
            have[room] = Counter(local)
    for room in set(want) | set(have):
        w, h = want.get(room, Counter()), have.get(room, Counter())
        try:
            extra = list((w - h).elements())
            if extra:
                pg.join(room, extra, scope=SCOPE)
            gone = list((h - w).elements())
            if gone:
                pg.leave(room, gone, scope=SCOPE)
        except Exception:  # noqa: BLE001 - one room's failure must not stop the others
            log.exception("snowg.ws: room %r could not be reconciled with pg", room)
    return ref


on_node_up(_on_node_up)
