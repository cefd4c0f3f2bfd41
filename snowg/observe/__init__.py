"""Looking inside a running node, from it or from any node of its cluster.

* :func:`snapshot` describes this node in plain terms: its processes (with
  what each started with, its status, queue length, links, monitors, parent
  and supervisor), its supervision trees, its process groups and WebSocket
  rooms with their member counts, its sessions (bytes in and out, bytes
  queued, when the peer was last heard) and its counts of crashes, restarts
  and supervisors giving up. It is ``@spawnable`` as
  ``"snowg.observe:snapshot"``, so ``rpc.call(node,
  "snowg.observe:snapshot")`` asks any node of the cluster.
* The read-only process functions are spawnable too, under their own names:
  ``rpc.call(node, snowg.processes)``, ``rpc.call(node,
  snowg.process_info, pid)``, ``snowg.is_alive``, ``snowg.registered``,
  ``snowg.whereis``, ``snowg.supervisor.which_children`` and
  ``count_children``, ``snowg.sys.get_state`` and ``get_status``.
* :func:`set_cpu_tracing` switches per-process CPU time accounting on
  (``process_info(pid)['cpu_time']``); :func:`counts` is the node's counts.
* :func:`metrics_text` (spawnable as ``"snowg.observe:metrics_text"``) and
  :func:`metrics_app` (a WSGI ``/metrics`` endpoint): the node's Prometheus
  metrics, from telemetry counters and introspection gauges;
  :func:`info_main` is the ``snowg info NODE`` command.
* :func:`forward_events` (spawnable as ``"snowg.observe:forward_events"``)
  sends a node's crash, restart and give-up events to an observer;
  :class:`Observer` and :func:`observer_main` (``snowg observer``) are the
  web observer, loaded on first use (they import :mod:`snowg.ws`, which
  ``import snowg`` does not load).

``import snowg`` imports this package: every node answers.
"""

from typing import TYPE_CHECKING, Any

from .. import sys as _sys
from .._core import cpu_tracing, is_alive, process_info, processes, registered, set_cpu_tracing, whereis
from ..cluster import session_stats, spawnable
from ..supervisor import count_children, which_children
from ._counts import HANDLER_ID, counts, supervisor_restarts
from ._counts import attach as _attach_counts
from ._forward import forward_events
from ._info_cli import info_main
from ._metrics import metrics_app, metrics_text
from ._plain import plain
from ._snapshot import ROOMS_SCOPE, SUPERVISOR_CALL, snapshot

if TYPE_CHECKING:
    from ._observer import Observer
    from ._observer_cli import observer_main

__all__ = [
    "HANDLER_ID",
    "Observer",
    "ROOMS_SCOPE",
    "SUPERVISOR_CALL",
    "counts",
    "cpu_tracing",
    "forward_events",
    "info_main",
    "metrics_app",
    "metrics_text",
    "observer_main",
    "plain",
    "session_stats",
    "set_cpu_tracing",
    "snapshot",
    "supervisor_restarts",
]

spawnable("snowg.observe:snapshot")(snapshot)
spawnable("snowg.observe:metrics_text")(metrics_text)
spawnable("snowg.observe:forward_events")(forward_events)
for _fn in (
    processes,
    process_info,
    is_alive,
    registered,
    whereis,
    which_children,
    count_children,
    _sys.get_state,
    _sys.get_status,
):
    spawnable(_fn)
del _fn

_attach_counts()

# The web observer imports snowg.ws (gevent-websocket): loaded on first use.
_LAZY = {"Observer": "_observer", "observer_main": "_observer_cli"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
