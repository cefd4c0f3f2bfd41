"""The scope process: the one writer of a scope's tables, and its conversation with the other nodes.

A scope is a :class:`~snowg.GenServer` registered under the scope's name,
one per node, as OTP's ``pg`` is. It

* handles the local writes (``join``, ``leave``, ``monitor``,
  ``demonitor``) as calls, and monitors every local member: a member that
  exits leaves every group it joined, as many times as it joined;
* tells every peer scope it knows of each local change (``JOIN``/``LEAVE``
  frames); at start it sends ``DISCOVER`` to every connected node, and to
  each node that connects later;
* answers a peer's ``DISCOVER`` with a ``SYNC`` of its local memberships
  (and a ``DISCOVER`` back, if the peer was unknown), monitors each peer
  scope process, replaces what it knew of a peer by that peer's sync, and
  drops the peer's members when that process or its node goes away;
* tells the processes that monitor the scope or a group of every change,
  local or remote, as ``(ref, 'join' | 'leave', group, [pid, ...])``.

Frames from peers arrive in a session's reader greenlet (which must not
block): :func:`on_frame` checks where they come from and puts them in the
scope process's mailbox. What a peer reports is bounded: at most
:data:`MAX_REMOTE_MEMBERS` entries per peer node are kept; the rest is
dropped, with a log line.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from gevent.lock import Semaphore

from .._core import Down, Pid, Ref, SummaryLog, demonitor, make_ref, monitor, send, spawn, whereis
from .._core import self as _self
from .._core.process import local_process
from .._errors import StartError
from ..cluster import broadcast_frame, send_frame
from ..gen_server import From, GenServer, Result, run_server
from ._state import Peer, ScopeState, expand
from ._wire import DISCOVER, JOIN, LEAVE, SYNC, PART_BUDGET, group_size, parts, pid_parts

__all__ = [
    "DEFAULT_SCOPE",
    "MAX_REMOTE_MEMBERS",
    "SCOPES",
    "Scope",
    "live",
    "on_frame",
    "on_node_up",
    "start_scope",
    "start_soon",
]

log = logging.getLogger("snowg")

#: The scope every call uses unless given ``scope=``; started with the node (or on first use).
DEFAULT_SCOPE = "snowg_pg"

#: The most membership entries (joins) kept for one peer node of one scope.
MAX_REMOTE_MEMBERS = 500_000

#: The running scopes of this node: name -> state. A state whose process has
#: ended is stale (the readers check; a new start replaces it).
SCOPES: Dict[str, ScopeState] = {}

_start_lock = Semaphore()

# scope -> the process start_soon made to start it: one start under way at a time.
_starting: Dict[str, Pid] = {}

# Mailbox tags of what on_frame and on_node_up hand to the scope process.
_PEER = "$snowg_pg"


def _bad_input_summary(key: Tuple[str, str], count: int, seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    return "snowg.pg: refused %d more %s from %s in %.0f s", (count, key[1], key[0], seconds)


_bad_input = SummaryLog(log, _bad_input_summary, 10.0, overflow_key=("other nodes", "frames"))


def live(scope: str) -> Optional[ScopeState]:
    """The state of ``scope`` if its process runs here, else None (never blocks)."""
    st = SCOPES.get(scope)
    if st is None:
        return None
    if local_process(st.pid) is None:  # ended without terminate (killed): stale
        if SCOPES.get(scope) is st:
            del SCOPES[scope]
        return None
    return st


def start_scope(scope: str) -> Pid:
    """Start ``scope``'s process unless it runs; its pid. Blocks until it has started.

    Raises:
        TypeError: ``scope`` is not a ``str``.
        StartError: another process holds the name ``scope``.
    """
    if type(scope) is not str:
        raise TypeError(f"a pg scope is named by a str, not {type(scope).__name__}")
    with _start_lock:  # one start at a time: a second caller finds the scope running
        st = live(scope)
        if st is not None:
            return st.pid
        try:
            pid = Scope.start(scope, name=scope)
        except StartError as e:
            reason = e.reason
            if type(reason) is tuple and len(reason) == 2 and reason[0] == "already_started":
                holder: Pid = reason[1]
                if holder is not None and holder == _starting.get(scope):
                    return holder  # start_soon's process: it is the scope
                raise StartError(
                    f"cannot start the pg scope {scope!r}: the name is registered to {reason[1]}, not a pg scope"
                ) from None
            raise
    assert pid is not None  # Scope.init never returns 'ignore'
    return pid


def start_soon(scope: str) -> None:
    """Start ``scope``'s process unless it runs or is starting; never blocks.

    The new process is the scope itself (it acknowledges its start to
    itself), so a node gains exactly one process, with no helper around it.
    """
    soon = _starting.get(scope)
    if (soon is not None and local_process(soon) is not None) or live(scope) is not None:
        return
    if whereis(scope) is not None:
        return  # starting (its init runs), or the name is taken: a write will say so
    _starting[scope] = spawn(_run_scope, scope)


def _run_scope(scope: str) -> None:
    run_server((_self(), make_ref(), False), Scope, (scope,), scope)


class Scope(GenServer):
    """The scope process (see the module docstring); its state is a :class:`ScopeState`."""

    def init(self, *args: Any) -> Any:
        name = args[0]
        st = ScopeState(name, _self())
        SCOPES[name] = st
        broadcast_frame([DISCOVER, name, st.pid])
        return st

    # ---------------------------------------------------------------- calls

    def handle_call(self, request: Any, from_: From, state: Any) -> Result:
        st: ScopeState = state
        kind = request[0]
        if kind == "join":
            _join_local(st, request[1], request[2])
            return ("reply", None, st)
        if kind == "leave":
            return ("reply", _leave_local(st, request[1], request[2]), st)
        if kind == "monitor_scope":
            ref = monitor(from_[0])
            st.scope_monitors[ref] = from_[0]
            return ("reply", (ref, st.snapshot()), st)
        if kind == "monitor":
            group = request[1]
            ref = monitor(from_[0])
            st.group_monitors[ref] = (from_[0], group)
            st.monitored_groups.setdefault(group, {})[ref] = from_[0]
            counts = st.members.get(group)
            return ("reply", (ref, expand(counts, st.sizes[group]) if counts else []), st)
        if kind == "demonitor":
            return ("reply", _drop_watcher(st, request[1]), st)
        raise ValueError(f"snowg.pg scope {st.name!r}: unknown request {request!r}")

    # ------------------------------------------------------------- messages

    def handle_info(self, msg: Any, state: Any) -> Result:
        st: ScopeState = state
        if type(msg) is tuple and msg and msg[0] == "$ack":
            return ("noreply", st)  # start_soon's scope acknowledged its start to itself
        if type(msg) is Down:
            _down(st, msg.ref)
        elif type(msg) is tuple and msg and msg[0] == _PEER:
            kind = msg[1]
            if kind == "discover":
                _discover(st, msg[2])
            elif kind == "sync":
                _sync_part(st, msg[2], msg[3], msg[4])
            elif kind == "join":
                _join_remote(st, msg[2], msg[3], msg[4])
            elif kind == "leave":
                _leave_remote(st, msg[2], msg[3], msg[4])
            elif kind == "nodeup":
                send_frame(msg[2], [DISCOVER, st.name, st.pid])
        else:
            log.warning("snowg.pg scope %r ignored an unexpected message: %r", st.name, msg)
        return ("noreply", st)

    def terminate(self, reason: Any, state: Any) -> None:
        st: ScopeState = state
        if SCOPES.get(st.name) is st:
            del SCOPES[st.name]


# ------------------------------------------------------------------ local


def _join_local(st: ScopeState, group: Any, pids: List[Pid]) -> None:
    for pid in pids:
        entry = st.local.get(pid)
        if entry is None:
            ref = monitor(pid)
            st.local[pid] = (ref, {group: 1})
            st.local_refs[ref] = pid
        else:
            joined = entry[1]
            joined[group] = joined.get(group, 0) + 1
    st.add(group, pids, None)
    _notify(st, group, "join", pids)
    _tell_peers(st, JOIN, group, pids)


def _leave_local(st: ScopeState, group: Any, pids: List[Pid]) -> bool:
    gone: List[Pid] = []
    for pid in pids:
        entry = st.local.get(pid)
        if entry is None:
            continue
        ref, joined = entry
        n = joined.get(group, 0)
        if not n:
            continue
        gone.append(pid)
        if n > 1:
            joined[group] = n - 1
            continue
        del joined[group]
        if not joined:
            del st.local[pid], st.local_refs[ref]
            demonitor(ref, flush=True)
    if not gone:
        return False
    st.remove(group, gone, None)
    _notify(st, group, "leave", gone)
    _tell_peers(st, LEAVE, group, gone)
    return True


def _local_exit(st: ScopeState, ref: Ref) -> None:
    """A local member ended: it leaves every group, once per join."""
    pid = st.local_refs.pop(ref)
    _ref, joined = st.local.pop(pid)
    for group, n in joined.items():
        gone = [pid] * n
        st.remove(group, gone, None)
        _notify(st, group, "leave", gone)
        _tell_peers(st, LEAVE, group, gone)


def _tell_peers(st: ScopeState, tag: int, group: Any, pids: List[Pid]) -> None:
    if not st.peers:
        return
    nodes = {peer.node for peer in st.peers}
    for chunk in pid_parts(pids, PART_BUDGET, group_size(group)):
        frame = [tag, st.name, st.pid, group, chunk]
        for node in nodes:
            send_frame(node, frame)


# --------------------------------------------------------------- watchers


def _notify(st: ScopeState, group: Any, what: str, pids: List[Pid]) -> None:
    if not pids:
        return
    for ref, watcher in st.scope_monitors.items():
        send(watcher, (ref, what, group, list(pids)))
    watchers = st.monitored_groups.get(group)
    if watchers:
        for ref, watcher in watchers.items():
            send(watcher, (ref, what, group, list(pids)))


def _drop_watcher(st: ScopeState, ref: Any) -> bool:
    if ref in st.scope_monitors:
        del st.scope_monitors[ref]
    elif ref in st.group_monitors:
        _watcher, group = st.group_monitors.pop(ref)
        watchers = st.monitored_groups[group]
        del watchers[ref]
        if not watchers:
            del st.monitored_groups[group]
    else:
        return False
    demonitor(ref, flush=True)
    return True


def _down(st: ScopeState, ref: Ref) -> None:
    if ref in st.local_refs:
        _local_exit(st, ref)
    elif ref in st.peer_refs:
        _peer_gone(st, st.peer_refs.pop(ref))
    elif ref in st.scope_monitors or ref in st.group_monitors:
        _drop_watcher(st, ref)


# ----------------------------------------------------------------- peers


def _known(st: ScopeState, peer_pid: Pid) -> Peer:
    peer = st.peers.get(peer_pid)
    if peer is None:
        ref = monitor(peer_pid)
        peer = st.peers[peer_pid] = Peer(peer_pid, ref)
        st.peer_refs[ref] = peer_pid
    return peer


def _discover(st: ScopeState, peer_pid: Pid) -> None:
    local = st.local_snapshot()
    chunks = list(parts((group, expand(counts, sum(counts.values()))) for group, counts in local.items()))
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        send_frame(peer_pid.node, [SYNC, st.name, st.pid, i != last, chunk])
    if peer_pid not in st.peers:
        _known(st, peer_pid)
        send_frame(peer_pid.node, [DISCOVER, st.name, st.pid])


def _sync_part(st: ScopeState, peer_pid: Pid, more: bool, groups: List[Any]) -> None:
    peer = _known(st, peer_pid)
    if peer.pending is None:
        peer.pending, peer.pending_entries, peer.capped = {}, 0, False
    pending = peer.pending
    for group, pids in groups:
        counts = pending.get(group)
        if counts is None:
            counts = pending[group] = {}
        for pid in pids:
            if peer.pending_entries >= MAX_REMOTE_MEMBERS:
                _capped(st, peer)
                break
            counts[pid] = counts.get(pid, 0) + 1
            peer.pending_entries += 1
        if not counts:
            del pending[group]
    if more:
        return
    peer.pending = None
    _replace(st, peer, pending, peer.pending_entries)


def _replace(st: ScopeState, peer: Peer, new: Dict[Any, Dict[Pid, int]], entries: int) -> None:
    """Replace what ``peer`` reported by ``new``, telling the watchers what changed."""
    node = peer.pid.node
    old = peer.groups
    for group in set(old) | set(new):
        before = old.get(group, {})
        after = new.get(group, {})
        if before == after:
            continue
        joined = [p for p, n in after.items() for _ in range(n - before.get(p, 0))]
        left = [p for p, n in before.items() for _ in range(n - after.get(p, 0))]
        if left:
            st.remove(group, left, node)
            _notify(st, group, "leave", left)
        if joined:
            st.add(group, joined, node)
            _notify(st, group, "join", joined)
    peer.groups = new
    peer.entries = entries


def _join_remote(st: ScopeState, peer_pid: Pid, group: Any, pids: List[Pid]) -> None:
    peer = st.peers.get(peer_pid)
    if peer is None:
        return  # a node that left (or never joined) the overlay: its sync will say it all
    room = MAX_REMOTE_MEMBERS - peer.entries
    if len(pids) > room:
        _capped(st, peer)
        pids = pids[: max(room, 0)]
    if not pids:
        return
    counts = peer.groups.setdefault(group, {})
    for pid in pids:
        counts[pid] = counts.get(pid, 0) + 1
    peer.entries += len(pids)
    st.add(group, pids, peer_pid.node)
    _notify(st, group, "join", pids)


def _leave_remote(st: ScopeState, peer_pid: Pid, group: Any, pids: List[Pid]) -> None:
    peer = st.peers.get(peer_pid)
    if peer is None:
        return
    counts = peer.groups.get(group)
    if counts is None:
        return
    gone: List[Pid] = []
    for pid in pids:
        n = counts.get(pid, 0)
        if n:
            gone.append(pid)
            if n > 1:
                counts[pid] = n - 1
            else:
                del counts[pid]
    if not counts:
        del peer.groups[group]
    if gone:
        peer.entries -= len(gone)
        st.remove(group, gone, peer_pid.node)
        _notify(st, group, "leave", gone)


def _peer_gone(st: ScopeState, peer_pid: Pid) -> None:
    """The peer's scope process ended, or its node went away: its members leave."""
    peer = st.peers.pop(peer_pid)
    _replace(st, peer, {}, 0)


def _capped(st: ScopeState, peer: Peer) -> None:
    if not peer.capped:
        peer.capped = True
        log.warning(
            "snowg.pg scope %r: %s reported more than %d memberships; the rest are ignored",
            st.name,
            peer.pid.node,
            MAX_REMOTE_MEMBERS,
        )


# ------------------------------------------------ from the cluster layer


def on_frame(peer: str, frame: Tuple[Any, ...]) -> None:
    """A scope frame from ``peer``: into the mailbox of this node's scope of that name.

    Runs in the session's reader greenlet: never blocks. A frame naming a
    scope process of another node than the sender is refused (logged); a
    member of another node in a frame is dropped (logged). A scope that does
    not run here ignores the frame, as OTP's ``pg`` does (the default scope
    is started by the caller, :mod:`snowg.pg`, on a discover).
    """
    tag, scope, peer_pid = frame[0], frame[1], frame[2]
    if peer_pid.node != peer:
        _bad_input.report(
            (peer, "scope pids"),
            logging.WARNING,
            "snowg.pg: refused a frame from %s naming the scope process %s of another node",
            peer,
            peer_pid,
        )
        return
    st = live(scope)
    if st is None:
        if scope == DEFAULT_SCOPE and tag == DISCOVER:
            start_soon(scope)  # started with the node: its own discover reaches the peer
        return
    if tag == DISCOVER:
        send(st.pid, (_PEER, "discover", peer_pid))
    elif tag == SYNC:
        groups = [(g, _own(peer, pids)) for g, pids in frame[4]]
        send(st.pid, (_PEER, "sync", peer_pid, frame[3], groups))
    elif tag == JOIN or tag == LEAVE:
        send(st.pid, (_PEER, "join" if tag == JOIN else "leave", peer_pid, frame[3], _own(peer, frame[4])))


def _own(peer: str, pids: Any) -> List[Pid]:
    """The pids of ``peer`` among ``pids`` (a node speaks only for its own processes)."""
    own = [p for p in pids if p.node == peer]
    if len(own) != len(pids):
        _bad_input.report(
            (peer, "members"), logging.WARNING, "snowg.pg: ignored members of other nodes that %s reported", peer
        )
    return own


def on_node_up(node: str) -> None:
    """A node connected: each running scope discovers it (never blocks)."""
    for name in list(SCOPES):
        st = live(name)
        if st is not None:
            send(st.pid, (_PEER, "nodeup", node))
    if live(DEFAULT_SCOPE) is None:
        start_soon(DEFAULT_SCOPE)  # its start discovers every connected node
