"""The synchronous start: a new process acknowledges its initialisation to its starter.

OTP's ``proc_lib:start_link``/``init_ack``, reduced to what GenServer and the
supervisor need. The starter calls :func:`start_sync`, which spawns
``body(starter, *args)`` with ``starter = (caller, ref, linked)`` and waits.
The new process calls exactly one of :func:`ack_ok`, :func:`ack_fail` or
:func:`ack_ignore`. On failure (and when it ignores the start) it unlinks
from the caller *before* exiting, so a caller that does not trap exits gets
``StartError`` rather than an exit signal.

The acknowledgement is a plain term, ``('$ack', ref, ok, reason, child_id)``
with ``ok`` one of True, False or ``'ignore'``, so the protocol works the
same when the process starts on another node.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

from .._core import (
    Down,
    Exit,
    Pid,
    Ref,
    demonitor,
    exit,
    flush_messages,
    make_ref,
    monitor,
    receive,
    send,
    spawn,
    spawn_link,
    unlink,
)
from .._core import self as _self
from .._core.process import spawn_watched
from .._errors import StartError, Timeout

#: What a started process gets: ``(caller, ref, linked)``.
Starter = Tuple[Pid, Ref, bool]

#: What ``init`` returns to decline to start; also the ``ok`` field of that acknowledgement.
IGNORE = "ignore"

_ACK = "$ack"


def start_sync(
    body: Union[Callable[..., Any], str],
    args: Tuple[Any, ...],
    link: bool,
    timeout: Optional[float],
    node: Optional[str] = None,
) -> Optional[Pid]:
    """Start ``body(starter, *args)`` and wait until it acknowledges its start.

    Blocks the caller until the new process calls :func:`ack_ok`,
    :func:`ack_fail` or :func:`ack_ignore`, ends, or ``timeout`` seconds pass
    (None: no limit). With ``node``, the process starts on that node
    (``body`` must be ``@spawnable`` there, or be its spawnable name, and
    ``args`` terms that cross).

    Returns:
        The pid; None when the process chose not to start (it has ended by
        the time this returns).

    Raises:
        StartError: the process failed to initialise (``.reason``, and
            ``.child_id`` when it named one), ended before its
            acknowledgement, or did not acknowledge in time (it is then
            killed). ``'noconnection'`` when ``node`` cannot be reached.
    """
    me = _self()
    ref = make_ref()
    starter: Starter = (me, ref, link)
    if node is None:
        if not callable(body):
            raise TypeError(f"spawn needs a callable, got {type(body).__name__}")
        # Spawned, linked and monitored in one step: the monitor exists before the child runs.
        # (Always a monitor, as OTP's proc_lib: a child that unlinks from a trapping caller
        # and is then killed sends no Exit and no acknowledgement, only the Down.)
        pid, mref = spawn_watched(body, (starter, *args), link)
    else:
        if link:
            pid = spawn_link(body, starter, *args, node=node)
        else:
            pid = spawn(body, starter, *args, node=node)
        # (A remote spawn waited for its reply: a child already gone gives Down
        # 'noproc', and its real reason is in the Exit a trapping caller has.)
        mref = monitor(pid)

    def match(m: Any) -> bool:
        if type(m) is tuple:
            return len(m) == 5 and m[0] == _ACK and m[1] == ref
        return type(m) is Down and m.ref == mref

    try:
        msg = receive(match, timeout)
    except Timeout:
        unlink(pid)
        exit(pid, "kill")
        _await_down(mref)
        _flush_exit(pid)
        flush_messages(match)  # an acknowledgement sent just as the time ran out
        raise StartError("timeout") from None
    if type(msg) is Down:
        # Ended without acknowledging (killed during init). A trapping caller
        # also has its Exit message, delivered before the Down: consume it.
        exit_reason = _flush_exit(pid)
        if msg.reason == "noproc" and node is not None and exit_reason is not None:
            raise StartError(exit_reason)
        raise StartError(msg.reason)
    _tag, _ref, ok, reason, child_id = msg
    if ok is True:
        demonitor(mref, flush=True)
        return pid
    # The process unlinked from us, acknowledged, and is exiting: wait for it
    # to be gone so that a retry by name cannot find it still registered.
    _await_down(mref)
    _flush_exit(pid)
    if ok == IGNORE:
        return None
    raise StartError(reason, child_id)


def _await_down(mref: Ref) -> None:
    """Wait for the ``Down`` of the monitor ``mref``."""
    receive(lambda m: type(m) is Down and m.ref == mref)


def _flush_exit(pid: Pid) -> Any:
    """Consume the ``Exit`` of ``pid`` if one is in the mailbox; return its reason (else None)."""
    try:
        return receive(lambda m: type(m) is Exit and m.pid == pid, 0).reason
    except Timeout:
        return None


def ack_ok(starter: Starter) -> None:
    """In the started process: it has initialised; :func:`start_sync` returns its pid. Never blocks."""
    caller, ref, _linked = starter
    send(caller, (_ACK, ref, True, None, None))


def ack_fail(starter: Starter, reason: Any, child_id: Any = None) -> None:
    """In the started process: it failed to start (it must exit next). Never blocks.

    Unlinks from the caller first, so that the failure reaches it as
    ``StartError(reason, child_id)`` and not as an exit signal.
    """
    caller, ref, linked = starter
    if linked:
        unlink(caller)
    send(caller, (_ACK, ref, False, reason, child_id))


def ack_ignore(starter: Starter) -> None:
    """In the started process: it declines to start (it must exit ``'normal'`` next). Never blocks."""
    caller, ref, linked = starter
    if linked:
        unlink(caller)
    send(caller, (_ACK, ref, IGNORE, None, None))
