"""The node-wide runtime state: one module-level singleton, created lazily.

Everything a node knows about its processes lives in :data:`rt`: the process
table, the name registry, the timers, the ready queue that the scheduler
drains, and the *remote router* that the distribution layer installs (the one
seam between ``_core`` and ``cluster``).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

import gevent

from .terms import NONODE


class RemoteRouter:
    """The interface the distribution layer implements for pids of other nodes.

    ``_core`` calls these when a pid's node is not this node. Every method is
    asynchronous (it queues a frame and returns); a node that is not connected
    is handled by the router (``'noconnection'`` exits and ``Down`` messages).
    """

    def send(self, pid: Any, msg: Any) -> None:
        raise NotImplementedError

    def send_name(self, name: str, node: str, msg: Any, from_pid: Any) -> None:
        raise NotImplementedError

    def link(self, from_pid: Any, to_pid: Any) -> None:
        raise NotImplementedError

    def unlink(self, from_pid: Any, to_pid: Any) -> None:
        raise NotImplementedError

    def exit_link(self, from_pid: Any, to_pid: Any, reason: Any) -> None:
        """``from_pid`` (local) ended with ``reason`` and was linked to ``to_pid``."""
        raise NotImplementedError

    def exit2(self, from_pid: Any, to_pid: Any, reason: Any) -> None:
        """``exit(to_pid, reason)`` called by ``from_pid``."""
        raise NotImplementedError

    def monitor(self, from_pid: Any, target: Any, ref: Any) -> None:
        raise NotImplementedError

    def demonitor(self, from_pid: Any, target: Any, ref: Any) -> None:
        raise NotImplementedError

    def monitor_exit(self, target: Any, watcher: Any, ref: Any, reason: Any) -> None:
        """A local process monitored by the remote ``watcher`` ended."""
        raise NotImplementedError

    def spawn(self, node: str, fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], opts: Tuple[str, ...]) -> Any:
        raise NotImplementedError

    def is_foreign(self, node: str) -> bool:
        """True when ``node`` is reached through another protocol (an Erlang/Elixir node), not a snowg session.

        Never blocks. The default: no foreign nodes.
        """
        return False


class Runtime:
    """The state of this node's processes (see the module docstring)."""

    def __init__(self) -> None:
        self.node: str = NONODE
        self.creation: int = 0
        self.procs: Dict[int, Any] = {}
        self.names: Dict[str, Any] = {}
        self.timers: Dict[int, Any] = {}
        self.ready: Deque[Any] = deque()
        self.drain_scheduled = False
        self.handoffs = 0
        self.router: Optional[RemoteRouter] = None
        self.pid_ids = itertools.count(1)
        self.ref_ids = itertools.count(1)
        self.timer_ids = itertools.count(1)
        self._hub: Any = None
        self._loop: Any = None

    @property
    def hub(self) -> Any:
        hub = self._hub
        if hub is None:
            hub = self._hub = gevent.get_hub()
            self._loop = hub.loop
        return hub

    @property
    def loop(self) -> Any:
        if self._loop is None:
            self.hub  # noqa: B018 - sets _loop
        return self._loop

    def is_local_node(self, node: str, creation: int) -> bool:
        """True when ``(node, creation)`` names this node (now or before it was named)."""
        if node == self.node:
            return creation == self.creation
        # Pids made before start_node were renamed in place, so once the node has
        # a name a 'nonode@nohost' pid (e.g. one a peer made up) is nobody here.
        return node == NONODE and creation == 0 and self.node == NONODE


rt = Runtime()


def table_sizes() -> Dict[str, int]:
    """Sizes of the runtime's tables (processes, names, timers, links, monitors, queued).

    Used by tests to prove that ended processes leave nothing behind.
    """
    links = monitors = monitored_by = 0
    for proc in rt.procs.values():
        links += len(proc.links) if proc.links else 0
        monitors += len(proc.monitors) if proc.monitors else 0
        monitored_by += len(proc.monitored_by) if proc.monitored_by else 0
    return {
        "processes": len(rt.procs),
        "names": len(rt.names),
        "timers": len(rt.timers),
        "links": links,
        "monitors": monitors,
        "monitored_by": monitored_by,
        "ready": len(rt.ready),
    }
