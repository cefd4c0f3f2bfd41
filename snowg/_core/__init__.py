"""Processes, mailboxes, links, monitors, names and timers (uses gevent only)."""

from .introspect import is_alive, process_info, processes
from .logsummary import SummaryLog
from .process import (
    ProcessExit,
    demonitor,
    exit,
    flush_messages,
    link,
    make_ref,
    monitor,
    receive,
    reset_runtime,
    self,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
)
from .registry import register, registered, unregister, whereis
from .scheduler import Task
from .terms import Atom, Crash, Down, Exit, NodeDown, NodeUp, Pid, Ref, TimerRef, is_shutdown_reason
from .timers import cancel_timer, send_after

__all__ = [
    "Atom",
    "Crash",
    "Down",
    "Exit",
    "NodeDown",
    "NodeUp",
    "Pid",
    "ProcessExit",
    "Ref",
    "SummaryLog",
    "Task",
    "TimerRef",
    "cancel_timer",
    "demonitor",
    "exit",
    "flush_messages",
    "is_alive",
    "is_shutdown_reason",
    "link",
    "make_ref",
    "monitor",
    "process_info",
    "processes",
    "receive",
    "register",
    "registered",
    "reset_runtime",
    "self",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]
