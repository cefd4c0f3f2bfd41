"""Processes, mailboxes, links, monitors, names and timers (uses gevent only)."""

from .calls import NOT_LOCAL, CallDown, call_local, clear_alias, deliver_reply, set_alias
from .cputime import cpu_tracing, set_cpu_tracing
from .introspect import INFO_KEYS, describe_call, initial_call_of, is_alive, process_info, processes
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
    set_initial_call,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
)
from .registry import register, registered, unregister, whereis
from .restart_counts import count_give_up, count_restart
from .scheduler import Task
from .terms import Atom, Crash, Down, Exit, NodeDown, NodeUp, Pid, Ref, TimerRef, is_shutdown_reason
from .timers import cancel_timer, send_after

__all__ = [
    "INFO_KEYS",
    "NOT_LOCAL",
    "Atom",
    "CallDown",
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
    "call_local",
    "cancel_timer",
    "clear_alias",
    "count_give_up",
    "count_restart",
    "cpu_tracing",
    "deliver_reply",
    "demonitor",
    "describe_call",
    "exit",
    "flush_messages",
    "initial_call_of",
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
    "set_alias",
    "set_cpu_tracing",
    "set_initial_call",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]
