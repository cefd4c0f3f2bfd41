"""Cluster-wide names: ``register_global``, ``whereis_global``, ``send_global`` (semantics rule 28).

Every node keeps a replica of the table ``name -> pid``.

Registration is atomic across the cluster. The registering process takes a
lock on the name on *every* node, in one order that all nodes share (sorted
node names), so two contenders can never hold part of the locks each and
deadlock; a contender refused a lock releases what it holds and retries after
a short random pause. Holding every lock, it checks its own replica (any
earlier registration reached it before that registrar's unlock, because both
travel on the same ordered session), then sends the registration to all nodes
and releases the locks.

A name is removed when its process ends (the name's home node, which monitors
its own registered processes, tells everyone) or when its node goes down.
On connect, each node sends the peer the names its own processes hold; when
two clusters that both hold a name merge, the process on the node whose name
sorts lower keeps it and the other is killed (OTP's default resolver) -- by
its own node, so it is killed once.

The registry plugs into the cluster layer as any upper layer would, through
:mod:`snowg.cluster._extensions`: its frames, and its node up/down/stop callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import gevent

from .. import _core
from .._core import remote as _remote
from .._core.terms import Down, Pid, Ref
from .._errors import NoProc
from ._extensions import (
    broadcast_frame,
    on_node_down,
    on_node_stop,
    on_node_up,
    register_frame_handler,
    send_frame,
)
from ._connect import session_for
from ._frames import of_type
from ._lifecycle import nodes
from ._names import loggable
from ._spawn import refused

__all__ = ["register_global", "registered_global", "send_global", "unregister_global", "whereis_global"]

log = logging.getLogger("snowg")

GLOBAL_REGISTER = 12
GLOBAL_UNREGISTER = 13
GLOBAL_SYNC = 14
GLOBAL_LOCK = 17
GLOBAL_LOCK_REPLY = 18
GLOBAL_UNLOCK = 19

LOCK_TTL = 10.0
# A registrar refused a lock retries at least MAX_ATTEMPTS times and for at
# least LOCK_TTL + 1 s, so that a lock nobody releases (its holder froze)
# has expired before it gives up.
MAX_ATTEMPTS = 200

_names: Dict[str, Pid] = {}
# name -> (ref of the lock request, owner pid, time taken)
_locks: Dict[str, Tuple[Ref, Pid, float]] = {}
# The process that monitors this node's globally registered processes.
_server: Optional[Pid] = None
# Lock requests sent to another node and not answered yet: req -> (caller, node).
_waiting: Dict[Ref, Tuple[Pid, str]] = {}
# The session whose GLOBAL_SYNC (its node's names, sent once on connect) was applied, by node.
_synced: Dict[str, Any] = {}


class _LockReply(NamedTuple):
    """Internal message: a node's answer to a lock request (None: the node went down)."""

    req: Ref
    granted: Optional[bool]


def _local_lock(name: str, req: Ref, owner: Pid) -> bool:
    held = _locks.get(name)
    now = time.monotonic()
    if held is not None and held[0] != req and now - held[2] < LOCK_TTL and _owner_alive(held[1]):
        return False
    _locks[name] = (req, owner, now)
    return True


def _owner_alive(owner: Pid) -> bool:
    if _remote.is_local_pid(owner):
        return _core.is_alive(owner)
    return owner.node in nodes()


def _local_unlock(name: str, req: Ref) -> None:
    held = _locks.get(name)
    if held is not None and held[0] == req:
        del _locks[name]


def register_global(name: str, pid: Pid) -> bool:
    """Register ``pid`` under ``name`` in the whole cluster.

    Blocks the caller while it takes the name's lock on every node (a few
    round trips; while another registration holds a lock, until it releases
    it or the lock expires, 10 s after it was taken). Exactly one of several
    racing registrations of a name wins.

    Returns:
        True if registered (or already registered to ``pid``); False if the
        name is held by another process, ``pid`` is not alive, or the locks
        could not be taken in 200 attempts and 11 s.
    """
    if type(name) is not str:
        raise TypeError(f"a global name is a str, not {type(name).__name__}")
    if type(pid) is not Pid:
        raise TypeError(f"register_global needs a Pid, not {type(pid).__name__}")
    with _name_locked(name) as locked:
        if not locked:
            return False
        current = _names.get(name)
        if current is not None and current != pid:
            return False
        if current == pid:
            return True
        if not _owner_alive(pid):
            return False
        _set(name, pid)
        broadcast_frame([GLOBAL_REGISTER, name, pid])
        return True


@contextlib.contextmanager
def _name_locked(name: str) -> Iterator[bool]:
    """Hold ``name``'s lock on every node for the block (True), or False if it could not be taken in time.

    Retries, with a random pause, while another registration holds a lock
    (see :data:`MAX_ATTEMPTS`).
    """
    me = _core.self()
    for attempt in _attempts():
        req = _core.make_ref()
        held = _acquire_all(name, req, me)
        if held is None:
            gevent.sleep(random.uniform(0.001, 0.005 * (1 + min(attempt, 10))))
            continue
        try:
            yield True
        finally:
            _release(name, req, held)
        return
    yield False


def _attempts() -> Iterator[int]:
    """Attempt numbers for taking a name's locks (see MAX_ATTEMPTS)."""
    deadline = time.monotonic() + LOCK_TTL + 1.0
    attempt = 0
    while attempt < MAX_ATTEMPTS or time.monotonic() < deadline:
        yield attempt
        attempt += 1


def _acquire_all(name: str, req: Ref, me: Pid) -> Optional[List[str]]:
    """Take the lock on every node in sorted order; the nodes locked, or None if refused."""
    here = _remote.local_node()
    order = sorted([here] + nodes())
    held: List[str] = []
    for node_name in order:
        if node_name == here:
            if not _local_lock(name, req, me):
                _release(name, req, held)
                return None
            held.append(node_name)
            continue
        _waiting[req] = (me, node_name)
        if not send_frame(node_name, [GLOBAL_LOCK, name, req, me]):
            del _waiting[req]
            continue  # gone meanwhile: it holds nothing of ours
        reply = _core.receive(lambda m: type(m) is _LockReply and m.req == req)
        granted = reply.granted
        if granted is None:
            continue  # the node went down while we asked
        if not granted:
            _release(name, req, held)
            return None
        held.append(node_name)
    return held


def _release(name: str, req: Ref, held: List[str]) -> None:
    here = _remote.local_node()
    for node_name in held:
        if node_name == here:
            _local_unlock(name, req)
        else:
            send_frame(node_name, [GLOBAL_UNLOCK, name, req])


def unregister_global(name: str) -> None:
    """Remove a global name in the whole cluster (no error if it is not registered).

    A name held by a process of this node is removed at once; a name held by a
    process of another node is removed holding the name's lock on every node,
    as :func:`register_global` registers (the other nodes accept it only
    then), so it blocks the caller for a few round trips.
    """
    pid = _names.get(name)
    if pid is None:
        return
    if _remote.is_local_pid(pid):
        _unset(name, pid)
        broadcast_frame([GLOBAL_UNREGISTER, name, pid])
        return
    with _name_locked(name) as locked:
        pid = _names.get(name) if locked else None
        if pid is not None:
            _unset(name, pid)
            broadcast_frame([GLOBAL_UNREGISTER, name, pid])


def whereis_global(name: str) -> Optional[Pid]:
    """The pid registered under the global ``name``, or None."""
    return _names.get(name)


def registered_global() -> List[str]:
    """All global names, sorted."""
    return sorted(_names)


def send_global(name: str, msg: Any) -> Pid:
    """Send ``msg`` to the process globally registered as ``name``; returns its pid.

    Raises:
        NoProc: no process has that global name.
    """
    pid = _names.get(name)
    if pid is None:
        raise NoProc(f"no process is globally registered as {name!r}")
    _core.send(pid, msg)
    return pid


# ------------------------------------------------------------ the table


def _set(name: str, pid: Pid) -> None:
    _names[name] = pid
    if _remote.is_local_pid(pid):
        _watch(pid, name)


def _unset(name: str, pid: Pid) -> None:
    if _names.get(name) == pid:
        del _names[name]


def _watch(pid: Pid, name: str) -> None:
    """Have the global server monitor a local registered process, to free its name."""
    global _server
    if _server is None or not _core.is_alive(_server):
        _server = _core.spawn(_server_loop)
    _core.send(_server, ("watch", pid, name))


def _server_loop() -> None:
    watched: Dict[Ref, Tuple[Pid, str]] = {}
    while True:
        msg = _core.receive()
        if type(msg) is Down:
            entry = watched.pop(msg.ref, None)
            if entry is not None:
                pid, name = entry
                if _names.get(name) == pid:
                    del _names[name]
                    broadcast_frame([GLOBAL_UNREGISTER, name, pid])
        elif type(msg) is tuple and msg[0] == "watch":
            _tag, pid, name = msg
            watched[_core.monitor(pid)] = (pid, name)


def _resolve(name: str, mine: Pid, theirs: Pid) -> Pid:
    """Two pids hold ``name``: the one on the lower node name wins; the local loser is killed."""
    winner, loser = (mine, theirs) if (mine.node, mine.id) <= (theirs.node, theirs.id) else (theirs, mine)
    _names[name] = winner
    if _remote.is_local_pid(winner):
        _watch(winner, name)
    if _remote.is_local_pid(loser):
        log.warning(
            "global name %s held by %s and %s: %s keeps it, %s is killed", loggable(name), winner, loser, winner, loser
        )
        _remote.kill_local(loser)
    return winner


def _apply_register(name: str, pid: Pid) -> None:
    current = _names.get(name)
    if current is None or current == pid:
        _set(name, pid)
    else:
        _resolve(name, current, pid)


# ----------------------------------------------------------- frame handlers


# Who may say what: a peer speaks for its own processes. It may register or
# unregister a name for one of them, or for any process while one of its own
# processes holds the name's lock here (a registrar between its locks and
# its unlocks); it may not take a name another live process holds (that
# conflict arises only when clusters merge, through GLOBAL_SYNC, once per
# session); and it locks, unlocks and answers lock requests only for itself.
# Anything else is dropped with a WARNING (see _spawn.refused).


def _lock_node(name: str) -> Optional[str]:
    """The node whose process holds ``name``'s lock on this node, or None."""
    held = _locks.get(name)
    return None if held is None else held[1].node


def _h_register(peer: str, f: Tuple[Any, ...]) -> None:
    _, name, pid = f
    if pid.node != peer and _lock_node(name) != peer:
        refused(
            peer, "GLOBAL_REGISTER", f"{loggable(name)} for a pid of node {pid.node!r}, not holding the name's lock"
        )
        return
    if pid.node != _remote.local_node() and pid.node not in nodes():
        refused(peer, "GLOBAL_REGISTER", f"{loggable(name)} for a pid of node {pid.node!r}, which is not connected")
        return
    current = _names.get(name)
    if current is not None and current != pid and _owner_alive(current):
        refused(peer, "GLOBAL_REGISTER", f"{loggable(name)}, which {current} holds")
        return
    _set(name, pid)


def _h_unregister(peer: str, f: Tuple[Any, ...]) -> None:
    _, name, pid = f
    if pid.node != peer and _lock_node(name) != peer:
        refused(
            peer, "GLOBAL_UNREGISTER", f"{loggable(name)} of a pid of node {pid.node!r}, not holding the name's lock"
        )
        return
    _unset(name, pid)


def _h_sync(peer: str, f: Tuple[Any, ...]) -> None:
    sess = session_for(peer)
    if sess is not None and _synced.get(peer) is sess:
        refused(peer, "GLOBAL_SYNC", "its names a second time in one session")
        return
    _synced[peer] = sess
    for name, pid in f[1].items():
        if pid.node != peer:
            refused(peer, "GLOBAL_SYNC", f"{loggable(name)} for a pid of node {pid.node!r}")
            continue
        _apply_register(name, pid)


def _h_lock(peer: str, f: Tuple[Any, ...]) -> None:
    _, name, req, owner = f
    if owner.node != peer:
        refused(peer, "GLOBAL_LOCK", f"a lock on {loggable(name)} for a pid of node {owner.node!r}")
        return
    send_frame(peer, [GLOBAL_LOCK_REPLY, req, owner, _local_lock(name, req, owner)])


def _h_lock_reply(peer: str, f: Tuple[Any, ...]) -> None:
    _, req, _owner, granted = f
    waiting = _waiting.get(req)
    if waiting is None:
        return
    caller, node_name = waiting
    if node_name != peer:
        refused(peer, "GLOBAL_LOCK_REPLY", f"an answer to a lock request sent to {node_name!r}")
        return
    del _waiting[req]
    _remote.deliver_to(caller, _LockReply(req, granted))


def _h_unlock(peer: str, f: Tuple[Any, ...]) -> None:
    _, name, req = f
    held = _locks.get(name)
    if held is not None and held[0] == req and held[1].node != peer:
        refused(peer, "GLOBAL_UNLOCK", f"the lock on {loggable(name)} held by a pid of node {held[1].node!r}")
        return
    _local_unlock(name, req)


def _on_node_up(node_name: str) -> None:
    mine = {name: pid for name, pid in _names.items() if _remote.is_local_pid(pid)}
    send_frame(node_name, [GLOBAL_SYNC, mine])


def _on_node_down(node_name: str) -> None:
    _synced.pop(node_name, None)
    for name in [n for n, pid in _names.items() if pid.node == node_name]:
        del _names[name]
    for name in [n for n, (_r, owner, _t) in _locks.items() if owner.node == node_name]:
        del _locks[name]
    for req in [r for r, (_c, n) in _waiting.items() if n == node_name]:
        caller, _node = _waiting.pop(req)
        _remote.deliver_to(caller, _LockReply(req, None))  # the node went down while we asked


def _reset() -> None:
    """Forget everything (the node stopped)."""
    _names.clear()
    _locks.clear()
    _synced.clear()


def _is_entries(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str and type(v) is Pid for k, v in value.items())


_STR, _PID, _REF = of_type(str), of_type(Pid), of_type(Ref)
for _tag, _name, _fields, _handler in (
    (GLOBAL_REGISTER, "GLOBAL_REGISTER", (_STR, _PID), _h_register),
    (GLOBAL_UNREGISTER, "GLOBAL_UNREGISTER", (_STR, _PID), _h_unregister),
    (GLOBAL_SYNC, "GLOBAL_SYNC", (_is_entries,), _h_sync),
    (GLOBAL_LOCK, "GLOBAL_LOCK", (_STR, _REF, _PID), _h_lock),
    (GLOBAL_LOCK_REPLY, "GLOBAL_LOCK_REPLY", (_REF, _PID, of_type(bool)), _h_lock_reply),
    (GLOBAL_UNLOCK, "GLOBAL_UNLOCK", (_STR, _REF), _h_unlock),
):
    register_frame_handler(_tag, _name, _fields, _handler)
on_node_up(_on_node_up)
on_node_down(_on_node_down)
on_node_stop(_reset)
