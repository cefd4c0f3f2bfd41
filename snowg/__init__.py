"""snowg: a gevent program that behaves like an Erlang/OTP node.

Greenlets become processes with mailboxes, links and monitors; OTP's
supervisor and gen_server are built on them; nodes form a cluster over
mutually authenticated TLS, where processes are spawned, linked, monitored
and messaged across nodes as locally; WebSocket connections are processes
whose rooms broadcast across the cluster; a supervisor can keep children
alive on other nodes.

This package re-exports the public names: the process API, the errors, the
OTP behaviours and the cluster API. The subpackages ``snowg.supervisor``,
``snowg.gen_server``, ``snowg.pg`` (process groups), ``snowg.pubsub``
(topics), ``snowg.ws``, ``snowg.rpc``, ``snowg.erlang`` (Erlang and Elixir
nodes), ``snowg.observe`` (a node's snapshot, metrics, the observer),
``snowg.sys`` (OTP's ``sys``), ``snowg.telemetry`` (events, as Erlang's
``:telemetry``) and ``snowg.testing`` hold the rest.
"""

import logging as _logging
from typing import Any as _Any

from . import cluster as _cluster
from . import observe, pg, pubsub, rpc, supervisor, sys, telemetry
from ._core import (
    Atom,
    Crash,
    Down,
    Exit,
    NodeDown,
    NodeUp,
    Pid,
    ProcessExit,
    Ref,
    TimerRef,
    cancel_timer,
    demonitor,
    exit,
    flush_messages,
    is_alive,
    link,
    make_ref,
    monitor,
    process_info,
    processes,
    receive,
    register,
    registered,
    self,
    send,
    send_after,
    set_cpu_tracing,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
    unregister,
    whereis,
)
from ._errors import (
    AlreadyPresent,
    AlreadyStarted,
    CallError,
    CallTimeout,
    NameTaken,
    NodeError,
    NoProc,
    NotFound,
    RemoteError,
    Restarting,
    Running,
    SnowgError,
    SpawnError,
    StartError,
    SupervisorError,
    Timeout,
)
from .cluster import (
    Node,
    connect,
    disconnect,
    monitor_node,
    monitor_nodes,
    node,
    nodes,
    register_global,
    registered_global,
    send_global,
    spawnable,
    start_node,
    stop_node,
    unregister_global,
    whereis_global,
)
from .gen_server import GenServer, call, cast, reply
from .supervisor import ChildSpec

__version__ = "0.1.1"

# A library installs no handlers but this one: the application decides where logs go.
_logging.getLogger("snowg").addHandler(_logging.NullHandler())

__all__ = [
    # processes
    "Atom",
    "Crash",
    "Down",
    "Exit",
    "NodeDown",
    "NodeUp",
    "Pid",
    "ProcessExit",
    "Ref",
    "TimerRef",
    "cancel_timer",
    "demonitor",
    "exit",
    "flush_messages",
    "is_alive",
    "link",
    "make_ref",
    "monitor",
    "process_info",
    "processes",
    "receive",
    "register",
    "registered",
    "self",
    "send",
    "send_after",
    "set_cpu_tracing",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
    # errors
    "AlreadyPresent",
    "AlreadyStarted",
    "CallError",
    "CallTimeout",
    "NameTaken",
    "NodeError",
    "NoProc",
    "NotFound",
    "RemoteError",
    "Restarting",
    "Running",
    "SnowgError",
    "SpawnError",
    "StartError",
    "SupervisorError",
    "Timeout",
    # OTP behaviours
    "ChildSpec",
    "GenServer",
    "call",
    "cast",
    "reply",
    "supervisor",
    # the cluster
    "Node",
    "connect",
    "disconnect",
    "monitor_node",
    "monitor_nodes",
    "node",
    "nodes",
    "register_global",
    "registered_global",
    "rpc",
    "send_global",
    "spawnable",
    "start_node",
    "stop_node",
    "unregister_global",
    "whereis_global",
    # process groups and topics (modules: snowg.pg.join, snowg.pubsub.subscribe, ...)
    "pg",
    "pubsub",
    # Erlang and Elixir nodes (snowg.erlang.connect, snowg.erlang.call, ...)
    "erlang",
    # looking inside a node (snowg.observe.snapshot) and OTP's sys (snowg.sys.get_state, suspend, trace, ...)
    "observe",
    "sys",
    "telemetry",
]


# snowg.erlang (a third of what ``import snowg`` would load) is imported on
# first use: by ``start_node(..., erlang=...)`` through these two stand-ins,
# which its import replaces with the real starter and check, or by ``snowg.erlang``.
def _erlang() -> _Any:
    import importlib

    return importlib.import_module(".erlang", __name__)


def _start_erlang(options: _Any, context: _Any) -> _Any:
    _erlang()
    starter, _check = _cluster.protocol("erlang")
    return starter(options, context)


def _check_erlang(value: _Any) -> _Any:
    _erlang()
    _starter, check = _cluster.protocol("erlang")
    return check(value)


_cluster.register_protocol("erlang", _start_erlang, _check_erlang)


def __getattr__(name: str) -> _Any:
    if name == "erlang":
        return _erlang()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
