"""Processes, mailboxes, links, monitors, names and timers (uses gevent only)."""
from .process import (
    ProcessExit,
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
    reset_runtime,
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
from .scheduler import Task
from .terms import Crash, Down, Exit, NodeDown, NodeUp, Pid, Ref, TimerRef

__all__ = [
    "Crash", "Down", "Exit", "NodeDown", "NodeUp", "Pid", "ProcessExit", "Ref", "Task", "TimerRef",
    "cancel_timer", "demonitor", "exit", "flush_messages", "is_alive", "link", "make_ref",
    "monitor", "process_info", "processes", "receive", "register", "registered", "reset_runtime", "self",
    "send", "send_after", "spawn", "spawn_link", "spawn_monitor", "trap_exit", "unlink",
    "unregister", "whereis",
]
