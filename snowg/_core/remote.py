"""The distribution seam: everything the cluster layer may ask of ``_core``.

``_core`` knows nothing of nodes. The cluster layer installs a
:class:`~snowg._core.runtime.RemoteRouter` (:func:`install_router`) that
carries signals for other nodes' pids out of this node; the functions here
bring signals from peers in, and give the cluster layer the few runtime
operations it needs. They never block, so a session's reader greenlet can call
them for every frame.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from . import process as _p
from .process import is_local_pid
from .runtime import RemoteRouter, rt
from .scheduler import DEAD, schedule
from .terms import Down, Exit, Pid, Ref, pid_node, set_local_node

__all__ = [
    "RemoteRouter",
    "add_outgoing_link",
    "add_outgoing_monitor",
    "deliver_to",
    "deliver_to_name",
    "fail_remote_spawn",
    "incoming_demonitor",
    "incoming_down",
    "incoming_exit2",
    "incoming_link",
    "incoming_link_exit",
    "incoming_monitor",
    "incoming_unlink",
    "install_router",
    "is_foreign_node",
    "is_local_pid",
    "kill_local",
    "link_noproc",
    "local_node",
    "monitor_target_node",
    "node_down",
    "rename_local_pids",
    "spawn_for_peer",
]


def install_router(router: Optional[RemoteRouter]) -> None:
    """Route signals for other nodes' pids through ``router`` (None: this node is not distributed)."""
    rt.router = router


def is_foreign_node(node: str) -> bool:
    """True when ``node`` is connected through another protocol than snowg's (a BEAM node).

    Upper layers ask it where such a peer needs the plain Erlang form of a
    signal (a GenServer reply goes straight to a BEAM caller). Never blocks;
    False while this node is not distributed.
    """
    router = rt.router
    return router is not None and router.is_foreign(node)


def local_node() -> str:
    """This node's name (``'nonode@nohost'`` while it is not distributed)."""
    return rt.node


def rename_local_pids(node: str, creation: int) -> None:
    """Give every live local pid (and the runtime) a new node name and creation.

    Called when the node starts or stops distribution, so pids made before
    ``start_node`` name the node once it has a name (as in Erlang).
    """
    rt.node = node
    rt.creation = creation
    set_local_node(node, creation)
    for proc in rt.procs.values():
        proc.pid.node = node
        proc.pid.creation = creation
        proc.pid._ext = None


def deliver_to(pid: Pid, msg: Any) -> None:
    """Deliver a message that arrived for ``pid``; dropped if it is not a live local process.

    Every remote message comes through here, so it spells out ``local_process``
    (a pid decoded from the wire never has ``_proc`` set).
    """
    if pid.node == rt.node and pid.creation == rt.creation:
        proc = rt.procs.get(pid.id)
        if proc is not None:
            _p.deliver(proc, msg)  # drops it if the process is dead


def deliver_to_name(name: str, msg: Any) -> bool:
    """Deliver to a locally registered name; False (dropped) if nobody has it."""
    proc = rt.names.get(name)
    if proc is None:
        return False
    _p.deliver(proc, msg)
    return True


def incoming_link(remote: Pid, local: Pid) -> bool:
    """A peer process linked to ``local``. False when ``local`` is not alive (reply 'noproc')."""
    proc = _p.local_process(local)
    if proc is None:
        return False
    _p._add_link(proc, remote)
    return True


def incoming_unlink(remote: Pid, local: Pid) -> None:
    proc = _p.local_process(local)
    if proc is not None and proc.links:
        proc.links.discard(remote)


def incoming_link_exit(remote: Pid, local: Pid, reason: Any) -> None:
    """A linked peer process ended with ``reason`` (only acts while the link exists)."""
    proc = _p.local_process(local)
    if proc is None or not proc.links or remote not in proc.links:
        return  # unlinked meanwhile: semantics rule 6
    proc.links.discard(remote)
    _p._signal_link_exit(remote, proc, reason)


def link_noproc(remote: Pid, local: Pid) -> None:
    """Our link to ``remote`` found no such process there (semantics rule 7)."""
    proc = _p.local_process(local)
    if proc is None or not proc.links or remote not in proc.links:
        return
    proc.links.discard(remote)
    _p._signal_link_exit(remote, proc, "noproc")


def incoming_exit2(remote: Pid, local: Pid, reason: Any) -> None:
    """``exit(local, reason)`` called by a peer process."""
    proc = _p.local_process(local)
    if proc is not None:
        _p._signal_exit2(remote, proc, reason)


def incoming_monitor(watcher: Pid, target: Any, ref: Ref) -> Optional[Any]:
    """A peer process monitors ``target`` (a local pid or name).

    Returns None when the monitor is in place, else the value to report in the
    ``'noproc'`` Down (the target does not exist).
    """
    if type(target) is str:
        proc = rt.names.get(target)
        reported: Any = (target, rt.node)
    else:
        proc = _p.local_process(target)
        reported = target
    if proc is None or proc.state == DEAD:
        return reported
    if type(target) is not str:
        reported = proc.pid
    if proc.monitored_by is None:
        proc.monitored_by = {}
    proc.monitored_by[ref] = (watcher, reported)
    if type(target) is str:
        _index_name_monitor(ref, proc)
    return None


# Monitors peers hold on local processes *by name*: ref -> the process that
# held the name, so a DEMONITOR finds it in O(1) after the name moved. Entries
# whose monitor is gone are pruned when the index doubles (amortised O(1)).
_name_monitors: Dict[Ref, "_p.Process"] = {}
_name_monitors_limit = [1024]


def _index_name_monitor(ref: Ref, proc: "_p.Process") -> None:
    _name_monitors[ref] = proc
    if len(_name_monitors) > _name_monitors_limit[0]:
        for r, p in list(_name_monitors.items()):
            if p.state == DEAD or not p.monitored_by or r not in p.monitored_by:
                del _name_monitors[r]
        _name_monitors_limit[0] = max(1024, 2 * len(_name_monitors))


def incoming_demonitor(watcher: Pid, target: Any, ref: Ref) -> None:
    """A peer's ``watcher`` removes its monitor ``ref``; O(1), and only a monitor ``watcher`` holds."""
    if type(target) is str:
        # By name: the monitor stays on the process that held the name then.
        proc = _name_monitors.get(ref)
    else:
        proc = _p.local_process(target)
    if proc is not None and proc.monitored_by:
        entry = proc.monitored_by.get(ref)
        if entry is not None and entry[0] == watcher:
            del proc.monitored_by[ref]
            if type(target) is str:
                del _name_monitors[ref]


def monitor_target_node(watcher: Pid, ref: Ref) -> Optional[str]:
    """The node of what the local ``watcher``'s active monitor ``ref`` watches; None if no such monitor."""
    proc = _p.local_process(watcher)
    if proc is None or not proc.monitors:
        return None
    target = proc.monitors.get(ref)
    return None if target is None else pid_node(target)


def incoming_down(watcher: Pid, ref: Ref, reported: Any, reason: Any) -> None:
    """A remote process monitored by ``watcher`` ended (only while the monitor is active)."""
    proc = _p.local_process(watcher)
    if proc is None or not proc.monitors or ref not in proc.monitors:
        return  # demonitored meanwhile: semantics rule 11
    del proc.monitors[ref]
    _p.deliver(proc, Down(ref, reported, reason))


def add_outgoing_link(local: Pid, remote: Pid) -> bool:
    """Record a link that a local process made to a remote one (remote spawn_link)."""
    proc = _p.local_process(local)
    if proc is None:
        return False
    _p._add_link(proc, remote)
    return True


def add_outgoing_monitor(local: Pid, remote: Any, ref: Ref) -> bool:
    """Record a monitor that a local process holds on a remote one (remote spawn_monitor)."""
    proc = _p.local_process(local)
    if proc is None:
        return False
    if proc.monitors is None:
        proc.monitors = {}
    proc.monitors[ref] = remote
    return True


def node_down(node: str) -> Tuple[int, int]:
    """Apply the loss of ``node`` to every local process, in semantics rule 26 order.

    First every link to a process of ``node`` breaks with ``'noconnection'``,
    then every monitor of such a process fires ``Down(..., 'noconnection')``;
    monitors that processes of ``node`` held on local ones are dropped.

    Returns:
        (links broken, monitors fired).
    """
    procs = list(rt.procs.values())
    broken: List[Tuple[Pid, Any]] = []
    for proc in procs:
        if proc.links:
            gone = [p for p in proc.links if p.node == node]
            for remote in gone:
                proc.links.discard(remote)
                broken.append((remote, proc))
    for remote, proc in broken:
        _p._signal_link_exit(remote, proc, "noconnection")
    fired = 0
    for proc in procs:
        if proc.state == DEAD:
            continue
        if proc.monitors:
            refs = [r for r, t in proc.monitors.items() if pid_node(t) == node]
            for ref in refs:
                target = proc.monitors.pop(ref)
                _p.deliver(proc, Down(ref, target, "noconnection"))
                fired += 1
        if proc.monitored_by:
            stale = [r for r, (w, _rep) in proc.monitored_by.items() if w.node == node]
            for ref in stale:
                del proc.monitored_by[ref]
    return len(broken), fired


def spawn_for_peer(
    fn: Callable[..., Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    caller: Pid,
    link: bool,
    monitor_ref: Optional[Ref],
) -> Pid:
    """Start a process for a peer's spawn request, linked/monitored *before* it runs."""
    proc = _p._new_process(fn, args, kwargs)
    proc.parent = caller  # process_info's parent: the spawner, on its node
    if link:
        _p._add_link(proc, caller)
    if monitor_ref is not None:
        proc.monitored_by = {monitor_ref: (caller, proc.pid)}
    schedule(proc)
    return proc.pid


def kill_local(pid: Pid) -> None:
    """End the local process ``pid`` as an untrappable ``'kill'`` would; nothing if it is not alive."""
    proc = _p.local_process(pid)
    if proc is not None:
        _p._signal_exit2(pid, proc, "kill")


def fail_remote_spawn(pid: Pid, ref: Ref, opts: Tuple[str, ...]) -> Any:
    """The calling process's remote spawn could not reach the node: answer as Erlang does.

    The caller gets ``pid`` (never alive) and, at once, ``Down(ref, pid,
    'noconnection')`` for a spawn_monitor, or the ``'noconnection'`` exit
    signal of the link for a spawn_link (which ends a caller that does not
    trap exits: raised here, in the caller).

    Returns:
        ``(pid, ref)`` for a spawn_monitor, else ``pid``.
    """
    me = _p._current()
    if "monitor" in opts:
        _p.deliver(me, Down(ref, pid, "noconnection"))
        return pid, ref
    if "link" in opts:
        if me.trap:
            _p.deliver(me, Exit(pid, "noconnection"))
        else:
            _p._kill(me, "noconnection")
    return pid
