"""GenServer: OTP's ``gen_server`` behaviour on snowg processes.

A server is a process running a loop around a :class:`GenServer` subclass:
requests from :func:`call` go to ``handle_call``, messages from :func:`cast`
to ``handle_cast``, anything else to ``handle_info``; the state lives in the
loop and is threaded through the handlers (semantics rules 21-22).

Written only with the public process API, as OTP's gen_server is plain Erlang.
The wire format (all plain terms, so it crosses nodes):

* call:  ``('$gen_call', (caller_pid, tag), request)``, reply ``(tag, value)``.
  ``tag`` is the caller's monitor ref of the server.
* cast:  ``('$gen_cast', request)``.
* stop:  ``('$gen_stop', reason)``.
* start acknowledgement: ``('$ack', start_ref, ok, reason, child_id)``;
  ``ok`` is True, False, or ``'ignore'``.

Late replies. snowg's ``receive`` is selective, so a reply that arrives after
the caller gave up would stay in its mailbox for ever. OTP solves this with a
process alias that the caller deactivates; snowg emulates the alias: a caller
keeps its tag in :data:`_active_calls` for exactly as long as it waits, and
:func:`reply` delivers only to an active tag. For a caller on another node the
reply goes to the reply router registered on the caller's node, which does the
same check there.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, NamedTuple, NoReturn, Optional, Tuple, Union

from ._core import (
    Crash,
    Down,
    Exit,
    Pid,
    ProcessExit,
    Ref,
    demonitor,
    exit,
    make_ref,
    monitor,
    receive,
    register,
    send,
    spawn,
    spawn_link,
    trap_exit,
    unlink,
    whereis,
)
from ._core import self as _self
from ._core.terms import is_shutdown_reason
from ._errors import CallError, CallTimeout, NameTaken, NoProc, StartError, Timeout

log = logging.getLogger("snowg")

__all__ = ["Continue", "GenServer", "call", "cast", "reply", "stop"]

Dest = Union[Pid, str, Tuple[str, str]]
From = Tuple[Pid, Ref]

_CALL = "$gen_call"
_CAST = "$gen_cast"
_STOP = "$gen_stop"
_ACK = "$ack"
#: What ``init`` returns to decline to start; also the ``ok`` field of that acknowledgement.
IGNORE = "ignore"


class Continue(NamedTuple):
    """What ``init`` returns to start with ``state`` and then run ``handle_continue(term, state)``.

    OTP's ``{ok, State, {continue, Term}}``: the starter gets the pid at once,
    and the continuation runs before the server takes any message.
    """

    state: Any
    term: Any


class _Cont:
    """A pending ``handle_continue(term)``, in the loop's timeout slot."""

    __slots__ = ("term",)

    def __init__(self, term: Any) -> None:
        self.term = term
_REPLY_ROUTER = "snowg.gen_server.replies"

#: tag -> caller pid, for every call of this node that is still waiting (the "alias").
_active_calls: Dict[Ref, Pid] = {}



# ------------------------------------------------------------ synchronous start
#
# proc_lib's start/init_ack, reduced to what GenServer needs. The new process
# gets ``starter = (caller, ref, linked)`` and must call _ack_ok or _ack_fail
# exactly once. On failure it unlinks from the caller *before* exiting, so a
# caller that does not trap exits gets StartError rather than an exit signal.


def start_sync(
    body: Callable[..., Any], args: tuple, link: bool, timeout: Optional[float], node: Optional[str] = None,
) -> Optional[Pid]:
    """Start ``body(starter, *args)`` and wait until it acknowledges its start.

    Blocks the caller until the new process calls ``_ack_ok``/``_ack_fail``/
    ``_ack_ignore``, ends, or ``timeout`` seconds pass (None: no limit).
    Returns the pid, or None when the process chose not to start (``_ack_ignore``:
    it has ended by the time this returns). With ``node``, the
    process starts on that node (``body`` must be ``@spawnable`` there and
    ``args`` terms that cross); the protocol is the same, as it is made of
    plain terms. An unreachable node fails the start with ``'noconnection'``.

    Raises:
        StartError: the process failed to initialise, ended before its
            acknowledgement, or did not acknowledge in time (it is then killed).
    """
    me = _self()
    ref = make_ref()
    starter = (me, ref, link)
    if node is None:
        pid = spawn_link(body, starter, *args) if link else spawn(body, starter, *args)
    elif link:
        pid = spawn_link(body, starter, *args, node=node)
    else:
        pid = spawn(body, starter, *args, node=node)
    # No yield since a local spawn: the monitor exists before the child runs.
    # (A remote spawn waited for its reply: a child already gone gives Down
    # 'noproc', and its real reason is in the Exit a trapping caller has.)
    mref = monitor(pid)

    def match(m: Any) -> bool:
        return (type(m) is tuple and len(m) == 5 and m[0] == _ACK and m[1] == ref) or (
            type(m) is Down and m.ref == mref
        )

    try:
        msg = receive(match, timeout)
    except Timeout:
        unlink(pid)
        exit(pid, "kill")
        receive(lambda m: type(m) is Down and m.ref == mref)
        _flush_exit(pid)
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
    receive(lambda m: type(m) is Down and m.ref == mref)
    _flush_exit(pid)
    if ok == IGNORE:
        return None
    raise StartError(reason, child_id)


def _flush_exit(pid: Pid) -> Any:
    """Consume the ``Exit`` of ``pid`` if one is in the mailbox; return its reason (else None)."""
    try:
        return receive(lambda m: type(m) is Exit and m.pid == pid, 0).reason
    except Timeout:
        return None


def _ack_ok(starter: tuple) -> None:
    caller, ref, _linked = starter
    send(caller, (_ACK, ref, True, None, None))


def _ack_fail(starter: tuple, reason: Any, child_id: Any = None) -> None:
    caller, ref, linked = starter
    if linked:
        unlink(caller)
    send(caller, (_ACK, ref, False, reason, child_id))


def _ack_ignore(starter: tuple) -> None:
    caller, ref, linked = starter
    if linked:
        unlink(caller)
    send(caller, (_ACK, ref, IGNORE, None, None))


# -------------------------------------------------------------------- the class


class GenServer:
    """Base class of a generic server; subclass it and override the handlers.

    The server process creates one instance (``cls()``, no arguments) and calls
    its handlers; the *state* is separate from the instance and is passed to
    and returned by every handler, as in OTP.

    Handlers and what they return:

    * ``init(*args)`` gets the ``start_link`` arguments and returns the initial
      state, ``Continue(state, term)`` (started; then ``handle_continue(term,
      state)`` runs before any message), ``('stop', reason)`` to refuse to
      start (``start_link`` then raises ``StartError(reason)``; a raising
      ``init`` does the same with the crash as reason), or ``'ignore'`` (see
      :meth:`init`). A state that is itself a 2-tuple starting with ``'stop'``
      must therefore be wrapped.
    * ``handle_call(request, from_, state)`` returns one of
      ``('reply', value, state)``, ``('reply', value, state, timeout)``,
      ``('noreply', state)`` (reply later with :func:`reply`),
      ``('noreply', state, timeout)``, ``('stop', reason, value, state)``
      (reply, then stop) or ``('stop', reason, state)``.
    * ``handle_cast(request, state)`` and ``handle_info(msg, state)`` return
      ``('noreply', state)``, ``('noreply', state, timeout)`` or
      ``('stop', reason, state)``.
    * ``timeout`` (seconds) means: if no message arrives within it,
      ``handle_info('timeout', state)`` is called. In its place,
      ``('continue', term)`` (OTP's ``{continue, Term}``) calls
      ``handle_continue(term, state)`` before the next message;
      ``handle_continue`` returns what ``handle_cast`` does.
    * ``terminate(reason, state)`` runs when a handler returns ``stop``, when a
      handler raises, when :func:`stop` is called, and when the server traps
      exits and its parent (the process that called ``start_link``, e.g. a
      supervisor) sends an exit signal, and when a handler calls
      ``snowg.exit(reason)`` (the server then ends with that reason). It does
      not run when the server is killed by an exit signal it does not trap.

    Reasons ``'normal'``, ``'shutdown'`` and ``('shutdown', term)`` end the
    server quietly; any other reason is logged (logger ``snowg``) with the last
    message and the state. A handler that raises ends the server with the
    crash as reason (logged once, with the traceback). A handler returning
    anything else ends it with ``('bad_return_value', value)``.

    Defaults: ``init`` returns None; ``handle_call``/``handle_cast`` raise
    ``NotImplementedError`` (the server crashes); ``handle_info`` logs the
    unexpected message and keeps the state; ``terminate`` does nothing.
    """

    def init(self, *args: Any) -> Any:
        """Return the initial state, ``Continue(state, term)``, ``('stop', reason)`` or ``'ignore'``.

        ``('stop', reason)`` fails the start; see the class docstring for ``Continue``.

        ``'ignore'`` (OTP's ``ignore``): the server ends quietly and the start
        returns None instead of a pid; a supervisor keeps such a child's spec
        with no process. (So the string ``'ignore'`` cannot be a state.)
        """
        return None

    def handle_call(self, request: Any, from_: From, state: Any) -> tuple:
        """Handle a :func:`call`; see the class docstring for the return values."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls (got {request!r})")

    def handle_cast(self, request: Any, state: Any) -> tuple:
        """Handle a :func:`cast`; see the class docstring for the return values."""
        raise NotImplementedError(f"{type(self).__name__} does not handle casts (got {request!r})")

    def handle_info(self, msg: Any, state: Any) -> tuple:
        """Handle any other message; the default logs it and keeps the state."""
        log.warning("%s %s received an unexpected message: %r", type(self).__name__, _self(), msg)
        return ("noreply", state)

    def handle_continue(self, term: Any, state: Any) -> tuple:
        """Continue after ``Continue(state, term)`` or ``('continue', term)``; returns as ``handle_cast``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle continue (got {term!r})")

    def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before the server ends with ``reason``; the default does nothing."""

    @classmethod
    def start_link(cls, *args: Any, name: Optional[str] = None, timeout: Optional[float] = None) -> Optional[Pid]:
        """Start a server linked to the caller; return its pid once ``init`` returned.

        Returns None, and the server is gone, when ``init`` returned ``'ignore'``.

        Blocks until ``init`` has returned (or ``timeout`` seconds, None: no
        limit). The caller becomes the server's *parent*.

        Args:
            *args: passed to ``init``.
            name: register the server locally under this name.
            timeout: seconds to wait for ``init``.

        Raises:
            StartError: ``init`` raised or returned ``('stop', reason)``, the
                name is taken (reason ``('already_started', pid)``), or the
                timeout ran out. The server is gone and no exit signal reaches
                the caller.
        """
        return start_sync(_server_main, (cls, args, name), True, timeout)

    @classmethod
    def start(cls, *args: Any, name: Optional[str] = None, timeout: Optional[float] = None) -> Optional[Pid]:
        """Like :meth:`start_link` without the link (the server is its own parent)."""
        return start_sync(_server_main, (cls, args, name), False, timeout)


# ------------------------------------------------------------------ the loop


def _server_main(starter: tuple, cls: type, args: tuple, name: Optional[str]) -> None:
    caller, _ref, linked = starter
    me = _self()
    parent = caller if linked else me
    if name is not None:
        try:
            register(name, me)
        except NameTaken:
            _ack_fail(starter, ("already_started", whereis(name)))
            exit("normal")
    server = cls()
    try:
        result = server.init(*args)
    except ProcessExit as e:
        _ack_fail(starter, e.reason)
        raise
    except Exception as e:  # noqa: BLE001 - a raising init is a failed start
        crash = Crash.from_exception(e)
        log.error("%s %s failed in init: %s\n%s", cls.__name__, me, crash, crash.traceback)
        _ack_fail(starter, crash)
        exit(crash)
    if type(result) is str and result == IGNORE:
        _ack_ignore(starter)
        exit("normal")
    if type(result) is tuple and len(result) == 2 and result[0] == "stop":
        reason = result[1]
        if not is_shutdown_reason(reason):
            log.error("%s %s refused to start: %s", cls.__name__, me, reason)
        _ack_fail(starter, reason)
        exit(reason)
    _ack_ok(starter)
    if type(result) is Continue:
        _loop(server, result.state, parent, _Cont(result.term))
    else:
        _loop(server, result, parent, None)


def _loop(server: GenServer, state: Any, parent: Pid, timeout: Any) -> None:
    msg: Any = None
    while True:
        if timeout is None:
            msg = receive()
        elif type(timeout) is _Cont:
            msg = timeout  # handle_continue, before any message
        else:
            try:
                msg = receive(None, timeout)
            except Timeout:
                msg = "timeout"
        try:
            if type(msg) is _Cont:
                try:
                    ret = server.handle_continue(msg.term, state)
                except ProcessExit as e:
                    _handler_exited(server, state, msg.term, e)
                state, timeout = _after(server, ret, msg.term, state)
                continue
            if type(msg) is tuple and msg:
                tag = msg[0]
                if tag == _CALL and len(msg) == 3:
                    from_ = msg[1]
                    try:
                        ret = server.handle_call(msg[2], from_, state)
                    except ProcessExit as e:
                        _handler_exited(server, state, msg, e)
                    if type(ret) is tuple and ret:
                        kind = ret[0]
                        if kind == "reply" and 3 <= len(ret) <= 4:
                            reply(from_, ret[1])
                            state = ret[2]
                            timeout = _timeout_of(ret, 3)
                            continue
                        if kind == "stop" and len(ret) == 4:
                            _stop(server, ret[1], ret[3], msg)
                            reply(from_, ret[2])
                            exit(ret[1])
                    state, timeout = _after(server, ret, msg, state)
                    continue
                if tag == _CAST and len(msg) == 2:
                    try:
                        ret = server.handle_cast(msg[1], state)
                    except ProcessExit as e:
                        _handler_exited(server, state, msg, e)
                    state, timeout = _after(server, ret, msg, state)
                    continue
                if tag == _STOP and len(msg) == 2:
                    _stop(server, msg[1], state, msg)
                    exit(msg[1])
            elif type(msg) is Exit and msg.pid == parent:
                # The parent's exit signal, trapped: OTP runs terminate, then
                # ends with the same reason (semantics rule 22).
                _stop(server, msg.reason, state, msg)
                exit(msg.reason)
            try:
                ret = server.handle_info(msg, state)
            except ProcessExit as e:
                _handler_exited(server, state, msg, e)
            state, timeout = _after(server, ret, msg, state)
        except Exception as e:  # noqa: BLE001 - a raising handler ends the server
            crash = Crash.from_exception(e)
            _stop(server, crash, state, msg)
            exit(crash)


def _handler_exited(server: GenServer, state: Any, msg: Any, e: ProcessExit) -> NoReturn:
    """A handler ended the process: ``terminate`` first if it called ``exit(reason)`` itself; re-raises.

    (A handler that raises is handled by the loop, which runs ``terminate``
    with the crash as reason.)
    """
    if not e.by_signal:
        # The handler called exit(reason): OTP's gen_server catches that too.
        _stop(server, e.reason, state, msg)
    # (An exit signal it does not trap ends it without terminate, as in OTP.)
    raise e


def _timeout_of(ret: tuple, i: int) -> Any:
    """A handler result's timeout slot: None (none), seconds, or a ``_Cont``."""
    if len(ret) <= i:
        return None
    t = ret[i]
    if t == "hibernate" or t == "infinity" or t is None:
        return None
    if type(t) is tuple and len(t) == 2 and t[0] == "continue":
        return _Cont(t[1])
    return float(t)


def _after(server: GenServer, ret: Any, msg: Any, state: Any) -> Tuple[Any, Optional[float]]:
    """Apply a handler's ``noreply``/``stop`` result; returns (state, timeout)."""
    if type(ret) is tuple and ret:
        kind = ret[0]
        if kind == "noreply" and 2 <= len(ret) <= 3:
            return ret[1], _timeout_of(ret, 2)
        if kind == "stop" and len(ret) == 3:
            _stop(server, ret[1], ret[2], msg)
            exit(ret[1])
    reason = ("bad_return_value", ret)
    _stop(server, reason, state, msg)
    exit(reason)
    raise AssertionError("unreachable")  # exit() raises


def _stop(server: GenServer, reason: Any, state: Any, last_msg: Any) -> None:
    """Run ``terminate`` and report an abnormal end (the caller then exits)."""
    try:
        server.terminate(reason, state)
    except Exception as e:  # noqa: BLE001 - a raising terminate changes the reason
        reason = Crash.from_exception(e)
        log.error("%s %s crashed in terminate: %s\n%s", type(server).__name__, _self(), reason, reason.traceback)
        exit(reason)
    if not is_shutdown_reason(reason):
        tb = getattr(reason, "traceback", "")
        log.error(
            "%s %s terminating\n** Last message: %r\n** State: %r\n** Reason: %s\n%s",
            type(server).__name__, _self(), last_msg, state, reason, tb,
        )


# ----------------------------------------------------------------- client API


def call(dest: Dest, request: Any, timeout: Optional[float] = 5.0) -> Any:
    """Send ``request`` to the server ``dest`` and wait for its reply.

    Blocks the caller until the reply arrives, the server ends, or ``timeout``
    seconds pass (None: no limit). The server is monitored for the duration.

    Args:
        dest: a pid, a locally registered name, or ``(name, node)``.
        request: passed to the server's ``handle_call``.
        timeout: seconds to wait (default 5).

    Returns:
        The value the server replied.

    Raises:
        NoProc: the server does not exist (or ended with reason ``'noproc'``).
        CallError: the server ended before replying; ``.reason`` is its exit
            reason (``'noconnection'`` when its node went away), or
            ``'calling_self'`` when a server calls itself.
        CallTimeout: no reply in time; a reply that comes later is dropped and
            never reaches the caller's mailbox.
    """
    me = _self()
    if dest == me:
        raise CallError("calling_self")
    mref = monitor(dest)
    _active_calls[mref] = me
    try:
        if _is_remote(dest, me):
            _ensure_reply_router()
        try:
            send(dest, (_CALL, (me, mref), request))
        except NoProc:
            demonitor(mref, flush=True)
            raise NoProc(f"no process is registered as {dest!r}") from None
        try:
            msg = receive(
                lambda m: (type(m) is tuple and len(m) == 2 and m[0] == mref)
                or (type(m) is Down and m.ref == mref),
                timeout,
            )
        except Timeout:
            demonitor(mref, flush=True)
            raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    finally:
        del _active_calls[mref]
    if type(msg) is Down:
        if msg.reason == "noproc":
            raise NoProc(f"{dest!r} is not alive")
        raise CallError(msg.reason)
    demonitor(mref, flush=True)
    return msg[1]


def cast(dest: Dest, request: Any) -> None:
    """Send ``request`` to the server's ``handle_cast``; never blocks, never fails."""
    try:
        send(dest, (_CAST, request))
    except NoProc:
        pass  # OTP: a cast to a missing name is silently dropped


def reply(from_: From, value: Any) -> None:
    """Reply to a call whose ``handle_call`` returned ``noreply`` (or any time).

    Never blocks. A reply to a caller that stopped waiting (timed out or
    ended) is dropped.
    """
    pid, tag = from_
    if tag in _active_calls:
        send(pid, (tag, value))
    elif type(pid) is Pid and pid.node != _self().node:
        send((_REPLY_ROUTER, pid.node), ("$reply", pid, tag, value))


def stop(dest: Dest, reason: Any = "normal", timeout: Optional[float] = None) -> None:
    """Stop the server: run its ``terminate(reason, state)`` and wait until it ended.

    Blocks until the server has ended (or ``timeout`` seconds; None: no limit).

    Raises:
        NoProc: the server does not exist.
        CallError: it ended with another reason than ``reason``.
        CallTimeout: it did not end in time.
    """
    mref = monitor(dest)
    try:
        send(dest, (_STOP, reason))
    except NoProc:
        demonitor(mref, flush=True)
        raise NoProc(f"no process is registered as {dest!r}") from None
    try:
        down = receive(lambda m: type(m) is Down and m.ref == mref, timeout)
    except Timeout:
        demonitor(mref, flush=True)
        raise CallTimeout(f"{dest!r} did not stop within {timeout} s") from None
    if down.reason == "noproc":
        raise NoProc(f"{dest!r} is not alive")
    if down.reason != reason:
        raise CallError(down.reason)


# ------------------------------------------------- replies to remote callers


def _is_remote(dest: Any, me: Pid) -> bool:
    if type(dest) is Pid:
        return dest.node != me.node
    return type(dest) is tuple and len(dest) == 2 and dest[1] != me.node


def _ensure_reply_router() -> None:
    """Start this node's reply router (the alias check for replies from other nodes)."""
    if whereis(_REPLY_ROUTER) is None:
        register(_REPLY_ROUTER, spawn(_reply_router))


def _reply_router() -> None:
    trap_exit(False)
    while True:
        msg = receive()
        if type(msg) is tuple and len(msg) == 4 and msg[0] == "$reply":
            _tag, pid, tag, value = msg
            if tag in _active_calls:
                send(pid, (tag, value))
