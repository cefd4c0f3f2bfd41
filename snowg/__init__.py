"""snowg: Erlang/OTP processes, supervisors and clustering for gevent programs.

The public surface is re-exported here; see the documentation in docs/.
"""
import logging as _logging

from ._core import (
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

__version__ = "0.1.1"

# A library installs no handlers but this one: the application decides where logs go.
_logging.getLogger("snowg").addHandler(_logging.NullHandler())

__all__ = [
    # processes (snowg._core)
    "Crash", "Down", "Exit", "NodeDown", "NodeUp", "Pid", "ProcessExit", "Ref", "TimerRef",
    "cancel_timer", "demonitor", "exit", "flush_messages", "is_alive", "link", "make_ref",
    "monitor", "process_info", "processes", "receive", "register", "registered", "self",
    "send", "send_after", "spawn", "spawn_link", "spawn_monitor", "trap_exit", "unlink",
    "unregister", "whereis",
    # errors
    "AlreadyPresent", "AlreadyStarted", "CallError", "CallTimeout", "NameTaken", "NodeError",
    "NoProc", "NotFound", "RemoteError", "Restarting", "Running", "SnowgError", "SpawnError",
    "StartError", "SupervisorError", "Timeout",
]

# --- OTP behaviours (snowg.supervisor, snowg.gen_server) ---
from . import supervisor  # noqa: E402
from .gen_server import GenServer, call, cast, reply  # noqa: E402
from .supervisor import ChildSpec  # noqa: E402

__all__ += ["ChildSpec", "supervisor", "GenServer", "call", "cast", "reply"]
# --- end OTP behaviours ---

# --- distribution (snowg.cluster) ---
from . import rpc  # noqa: E402
from .cluster import (  # noqa: E402
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

__all__ += [
    "Node", "connect", "disconnect", "monitor_node", "monitor_nodes", "node", "nodes",
    "rpc", "spawnable", "start_node", "stop_node", "register_global", "registered_global",
    "send_global", "unregister_global", "whereis_global",
]
# --- end distribution ---
