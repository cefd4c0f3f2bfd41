"""Process groups across the cluster, as OTP's ``pg`` (semantics rules 31-39).

A *group* is a name (any hashable term that can cross nodes: a ``str``, a
tuple, an int) and its *members*, processes that joined it. A process joins
with :func:`join` and leaves with :func:`leave`; it may join a group several
times and is then listed once per join, and must leave as many times. A
process that exits leaves every group it joined. Only a local process
joins: a process of another node joins there (``ValueError`` otherwise).

Groups live in a *scope*: a process per node, registered under the scope's
name, holding the scope's tables. The default scope (:data:`DEFAULT_SCOPE`)
starts with the node, or on first use: a program that never called
``start_node`` is a node of one, and its groups work the same. Other scopes
are started with :func:`start` (or :func:`start_soon`, which never blocks)
on each node that takes part, and every call takes ``scope=``. Scopes are
independent: a group of one scope is unknown to the others.

The scopes of the same name on all connected nodes form an overlay: each
tells the others of its local joins and leaves, and a scope that meets
another (at start, or when a node connects) is sent that node's local
memberships whole. :func:`get_members` is cluster-wide, :func:`get_local_members`
this node's only. A node that goes away takes its members with it, everywhere.
Membership is *eventually consistent*, without any global lock: a join on one
node is seen on another a moment later, in the order the joining node made
its changes; two nodes' changes are not ordered.

Reads (:func:`get_members`, :func:`get_local_members`, :func:`which_groups`,
:func:`member_nodes`) read the scope's tables directly and never block.
Writes (:func:`join`, :func:`leave`, :func:`monitor_scope`, :func:`monitor`,
:func:`demonitor`) are calls to the scope process and block until it has
made the change (here; other nodes hear of it a moment later).

:func:`monitor_scope` and :func:`monitor` return the membership as it is,
then send the caller ``(ref, 'join', group, [pid, ...])`` and
``(ref, 'leave', group, [pid, ...])`` for every change after it, local or
remote, including the members lost with a node. A monitoring process that
exits is forgotten; :func:`demonitor` stops the notifications.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from .._core import Pid, Ref, flush_messages
from .._core import self as _self
from .._core.process import is_local_pid
from .._errors import NoProc
from ..cluster import check_term, node, on_node_up, register_frame_handler
from ..gen_server import call
from . import _scope
from ._scope import DEFAULT_SCOPE, MAX_REMOTE_MEMBERS
from ._state import ScopeState, expand
from ._wire import MAX_GROUP_REPR, frame_layouts

__all__ = [
    "DEFAULT_SCOPE",
    "MAX_REMOTE_MEMBERS",
    "demonitor",
    "get_local_members",
    "get_members",
    "join",
    "leave",
    "member_nodes",
    "monitor",
    "monitor_scope",
    "start",
    "start_soon",
    "which_groups",
]

PidOrPids = Union[None, Pid, Sequence[Pid]]


def start(scope: str) -> Pid:
    """Start the scope ``scope`` on this node (nothing happens if it runs); its process's pid.

    Start it on every node that is to share its groups. Blocks until the
    scope process has started (it then discovers the scopes of that name on
    the connected nodes by itself). Not linked to the caller.

    Raises:
        TypeError: ``scope`` is not a ``str``.
        StartError: another process is registered under the name ``scope``.
    """
    return _scope.start_scope(scope)


def start_soon(scope: str) -> None:
    """Start the scope ``scope`` on this node unless it runs or is starting; never blocks.

    For code that may not block (a node-up callback, a read): the new process
    is the scope itself, so no helper process is left behind or killed half
    way. Calls made before it has started wait for it (the default scope) or
    raise ``NoProc`` (another scope: use :func:`start` when you can block).

    Raises:
        TypeError: ``scope`` is not a ``str``.
    """
    if type(scope) is not str:
        raise TypeError(f"a pg scope is named by a str, not {type(scope).__name__}")
    _scope.start_soon(scope)


def _server(scope: str) -> Pid:
    st = _scope.live(scope)
    if st is not None:
        return st.pid
    if scope == DEFAULT_SCOPE:
        return _scope.start_scope(scope)
    if type(scope) is not str:
        raise TypeError(f"a pg scope is named by a str, not {type(scope).__name__}")
    raise NoProc(f"the pg scope {scope!r} is not running on this node: start it with snowg.pg.start({scope!r})")


def _check_group(group: Any) -> None:
    try:
        hash(group)
    except TypeError:
        raise TypeError(
            f"a pg group must be hashable (a str, an int, a tuple...), not {type(group).__name__}"
        ) from None
    check_term(group)
    if len(repr(group)) > MAX_GROUP_REPR:
        raise ValueError(f"a pg group is a name: its repr may be at most {MAX_GROUP_REPR} characters")


def _local_pids(pid_or_pids: PidOrPids, what: str) -> List[Pid]:
    if pid_or_pids is None:
        return [_self()]
    pids = [pid_or_pids] if type(pid_or_pids) is Pid else list(pid_or_pids)  # type: ignore[arg-type]
    for pid in pids:
        if type(pid) is not Pid:
            raise TypeError(f"pg.{what}: expected a Pid or a list of Pids, got {type(pid).__name__}")
        if not is_local_pid(pid):
            raise ValueError(f"only local processes {what} a group: {what} it on {pid.node} ({pid} is a process there)")
    return pids


def join(group: Any, pid_or_pids: PidOrPids = None, *, scope: str = DEFAULT_SCOPE) -> None:
    """Add the caller (or ``pid_or_pids``, local processes) to ``group``, once per pid given.

    A pid given twice, or joining again later, is a member twice. Blocks
    until the scope process has made the change on this node (the scope is
    started first if it is the default one and does not run). Joining a
    process that has already ended adds it and removes it at once.

    Raises:
        ValueError: a pid of another node (it joins on its own node), or a
            group whose ``repr`` is longer than :data:`~snowg.pg._wire.MAX_GROUP_REPR`.
        TypeError: ``group`` is not hashable or cannot cross nodes; a non-pid.
        NoProc: ``scope`` is not the default scope and does not run here.
    """
    _check_group(group)
    pids = _local_pids(pid_or_pids, "join")
    if pids:
        call(_server(scope), ("join", group, pids), None)


def leave(group: Any, pid_or_pids: PidOrPids = None, *, scope: str = DEFAULT_SCOPE) -> bool:
    """Remove one membership of the caller (or of each of ``pid_or_pids``) from ``group``.

    Blocks until the scope process has made the change on this node.

    Returns:
        False when none of them was a member (OTP's ``not_joined``); True otherwise.

    Raises:
        ValueError: a pid of another node.
        TypeError: ``group`` is not hashable; a non-pid.
        NoProc: ``scope`` is not the default scope and does not run here.
    """
    _check_group(group)
    pids = _local_pids(pid_or_pids, "leave")
    if not pids:
        return False
    result: bool = call(_server(scope), ("leave", group, pids), None)
    return result


def get_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> List[Pid]:
    """Every member of ``group`` on every node this one knows, one entry per join (no order promised).

    Never blocks (reads the scope's tables). Empty when the scope does not run here.
    """
    st = _tables(scope)
    if st is None:
        return []
    counts = st.members.get(group)
    return expand(counts, st.sizes[group]) if counts else []


def get_local_members(group: Any, *, scope: str = DEFAULT_SCOPE) -> List[Pid]:
    """The members of ``group`` on this node, one entry per join. Never blocks."""
    st = _tables(scope)
    if st is None:
        return []
    counts = st.local_members.get(group)
    return expand(counts, sum(counts.values())) if counts else []


def which_groups(*, scope: str = DEFAULT_SCOPE) -> List[Any]:
    """Every group with at least one member, on any node this one knows. Never blocks."""
    st = _tables(scope)
    return [] if st is None else list(st.members)


def member_nodes(group: Any, *, scope: str = DEFAULT_SCOPE) -> FrozenSet[str]:
    """The nodes (this one included) with at least one member of ``group``.

    For interest routing: send a group's traffic to these nodes only. Never
    blocks; the set is kept between changes, so a call costs a dict look-up.
    """
    st = _tables(scope)
    if st is None:
        return frozenset()
    return st.member_nodes(group, node())


def monitor_scope(*, scope: str = DEFAULT_SCOPE) -> Tuple[Ref, Dict[Any, List[Pid]]]:
    """Every group and its members now, then notifications of every change in the scope.

    The caller then receives ``(ref, 'join', group, pids)`` and ``(ref,
    'leave', group, pids)`` for each change after the snapshot, local or
    remote. Blocks until the scope process answers.

    Raises:
        NoProc: ``scope`` is not the default scope and does not run here.
    """
    result: Tuple[Ref, Dict[Any, List[Pid]]] = call(_server(scope), ("monitor_scope",), None)
    return result


def monitor(group: Any, *, scope: str = DEFAULT_SCOPE) -> Tuple[Ref, List[Pid]]:
    """The members of ``group`` now, then notifications of its changes (as :func:`monitor_scope`).

    Raises:
        TypeError: ``group`` is not hashable.
        NoProc: ``scope`` is not the default scope and does not run here.
    """
    _check_group(group)
    result: Tuple[Ref, List[Pid]] = call(_server(scope), ("monitor", group), None)
    return result


def demonitor(ref: Ref, *, scope: str = DEFAULT_SCOPE) -> bool:
    """Stop the notifications of ``ref`` and drop those already in the caller's mailbox.

    Returns:
        False when ``ref`` was not an active monitor of this scope.
    """
    st = _scope.live(scope)
    if st is None:
        return False
    active: bool = call(st.pid, ("demonitor", ref), None)
    if active:
        flush_messages(lambda m: type(m) is tuple and len(m) == 4 and m[0] == ref)
    return active


def _tables(scope: str) -> Optional[ScopeState]:
    st = _scope.live(scope)
    if st is None and scope == DEFAULT_SCOPE:
        _scope.start_soon(scope)  # started with the node: a read never waits for it
    return st


for _tag, _name, _fields in frame_layouts():
    register_frame_handler(_tag, _name, _fields, _scope.on_frame)
on_node_up(_scope.on_node_up)
