"""The server: a process running a loop around a :class:`GenServer` subclass.

The process initialises through the start protocol (``init``, then an
acknowledgement to the starter), then loops: a call goes to ``handle_call``,
a cast to ``handle_cast``, anything else to ``handle_info``, and the state is
threaded through the handlers (semantics rules 21-22). Written only with the
public process API, as OTP's gen_server is plain Erlang.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, NoReturn, Optional, Tuple, Type, Union

from .._core import (
    Atom,
    Crash,
    Exit,
    Pid,
    ProcessExit,
    deliver_reply,
    end,
    exit,
    receive,
    register,
    set_initial_call,
    whereis,
)
from .._core import self as _self
from .._core import is_shutdown_reason
from .._errors import NameTaken, Timeout
from ._client import CALL, CAST, STOP, From, reply
from ._start import IGNORE, Starter, ack_fail, ack_ignore, ack_ok, start_sync
from ._system import SYSTEM, is_system, trace_received, trace_reply
from ._system import handle as _handle_system

log = logging.getLogger("snowg")

_SYSTEM = "system"
_OK = Atom("ok")


def _is_terminate(req: Any) -> bool:
    """``{terminate, Reason}``: the request of ``sys:terminate`` (``gen_server:stop`` from Erlang)."""
    return type(req) is tuple and len(req) == 2 and req[0] == "terminate"


#: A handler's result: ``('reply', ...)``, ``('noreply', ...)`` or ``('stop', ...)`` (see :class:`GenServer`).
Result = Tuple[Any, ...]


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


class _Stop:
    """In the loop's timeout slot: a handler asked the server to stop with ``reason`` (terminate has run)."""

    __slots__ = ("reason",)

    def __init__(self, reason: Any) -> None:
        self.reason = reason


#: The loop's timeout slot: none, seconds, a pending ``handle_continue``, or a stop.
_Timeout = Union[None, float, _Cont, _Stop]


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

    A BEAM process may call and cast to a server (OTP's messages; the reply
    goes straight to a BEAM caller), and ``gen_server:stop`` from Erlang
    (``sys:terminate``'s ``{system, From, {terminate, Reason}}``) is
    answered ``ok``, then ``terminate`` runs and the server ends with
    ``Reason``.

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

    def handle_call(self, request: Any, from_: From, state: Any) -> Result:
        """Handle a :func:`call`; see the class docstring for the return values."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls (got {request!r})")

    def handle_cast(self, request: Any, state: Any) -> Result:
        """Handle a :func:`cast`; see the class docstring for the return values."""
        raise NotImplementedError(f"{type(self).__name__} does not handle casts (got {request!r})")

    def handle_info(self, msg: Any, state: Any) -> Result:
        """Handle any other message; the default logs it and keeps the state."""
        log.warning("%s %s received an unexpected message: %r", type(self).__name__, _self(), msg)
        return ("noreply", state)

    def handle_continue(self, term: Any, state: Any) -> Result:
        """Continue after ``Continue(state, term)`` or ``('continue', term)``; returns as ``handle_cast``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle continue (got {term!r})")

    def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before the server ends with ``reason``; the default does nothing."""

    def format_state(self, state: Any) -> Any:
        """What ``snowg.sys.get_status`` reports as the state (OTP's ``format_status``); the state by default.

        Override it to hide secrets or to describe a large state briefly. It
        runs in the server process and must not block.
        """
        return state

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
        return start_sync(run_server, (cls, args, name), True, timeout)

    @classmethod
    def start(cls, *args: Any, name: Optional[str] = None, timeout: Optional[float] = None) -> Optional[Pid]:
        """Like :meth:`start_link` without the link (the server is its own parent)."""
        return start_sync(run_server, (cls, args, name), False, timeout)


def run_server(starter: Starter, cls: Type[GenServer], args: Tuple[Any, ...], name: Optional[str]) -> None:
    """The body of a server process: register ``name``, ``init``, acknowledge, then loop.

    Called in the new process by :meth:`GenServer.start_link` through
    ``start_sync``, or by a runner that starts a server on another node's
    behalf (the supervisor's). Returns once the server has ended, its process
    already dead (``snowg._core.end``): the caller, a process's body, must
    return at once. A start that fails ends it with ``exit``.
    """
    caller, _ref, linked = starter
    me = _self()
    set_initial_call(cls)
    parent = caller if linked else me
    if name is not None:
        try:
            register(name, me)
        except NameTaken:
            ack_fail(starter, ("already_started", whereis(name)))
            exit("normal")
    server = cls()
    try:
        result = server.init(*args)
    except ProcessExit as e:
        if not e.by_signal:  # init called exit(reason): a failed start, as OTP's init_it reports it
            ack_fail(starter, e.reason)
        # (Killed by a signal: no acknowledgement; the starter learns of it from the Down or Exit.)
        raise
    except Exception as e:  # noqa: BLE001 - a raising init is a failed start
        crash = Crash.from_exception(e)
        log.error("%s %s failed in init: %s\n%s", cls.__name__, me, crash, crash.traceback)
        ack_fail(starter, crash)
        exit(crash)
    if type(result) is str and result == IGNORE:
        ack_ignore(starter)
        exit("normal")
    if type(result) is tuple and len(result) == 2 and result[0] == "stop":
        reason = result[1]
        if not is_shutdown_reason(reason):
            log.error("%s %s refused to start: %s", cls.__name__, me, reason)
        ack_fail(starter, reason)
        exit(reason)
    ack_ok(starter)
    if type(result) is Continue:
        reason = _loop(server, result.state, parent, _Cont(result.term))
    else:
        reason = _loop(server, result, parent, None)
    # The loop returned the reason to end with, terminate done: ending here, with no
    # exception to unwind the stack, is what exit(reason) would do.
    end(reason)


def _loop(server: GenServer, state: Any, parent: Pid, timeout: _Timeout) -> Any:
    """Take messages until the server stops; return the reason to end with (``terminate`` has run)."""
    msg: Any = None
    # snowg.sys: a suspended server takes system requests (and its parent's exit) only;
    # with debug on it logs every message it takes and every reply it sends.
    suspended = debug = False
    while True:
        if timeout is None and not suspended:
            msg = receive()
        elif isinstance(timeout, _Stop):
            return timeout.reason
        elif suspended:
            msg = receive(lambda m: is_system(m) or (type(m) is Exit and m.pid == parent))
        elif isinstance(timeout, _Cont):
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
                if tag == CALL and len(msg) == 3:
                    from_ = msg[1]
                    request = msg[2]
                    if type(request) is tuple and len(request) == 3 and request[0] == SYSTEM:
                        state, suspended, debug = _handle_system(
                            server, state, parent, from_, request, suspended, debug
                        )
                        continue
                    if debug:
                        trace_received(msg)
                    try:
                        ret = server.handle_call(request, from_, state)
                    except ProcessExit as e:
                        _handler_exited(server, state, msg, e)
                    if type(ret) is tuple and ret:
                        kind = ret[0]
                        if kind == "reply" and 3 <= len(ret) <= 4:
                            pid, ref = from_
                            if not deliver_reply(pid, ref, ret[1]):  # (True for a caller of this node)
                                reply(from_, ret[1])
                            state = ret[2]
                            if debug:
                                trace_reply(from_, ret[1], state)
                            timeout = None if len(ret) == 3 else _timeout_of(ret, 3)
                            continue
                        if kind == "stop" and len(ret) == 4:
                            _stop(server, ret[1], ret[3], msg)
                            reply(from_, ret[2])
                            if debug:
                                trace_reply(from_, ret[2], ret[3])
                            return ret[1]
                    state, timeout = _after(server, ret, msg, state)
                    continue
                if debug:
                    trace_received(msg)
                if tag == CAST and len(msg) == 2:
                    try:
                        ret = server.handle_cast(msg[1], state)
                    except ProcessExit as e:
                        _handler_exited(server, state, msg, e)
                    if type(ret) is tuple and len(ret) == 2 and ret[0] == "noreply":
                        state = ret[1]  # _after's usual case, in line
                        timeout = None
                    else:
                        state, timeout = _after(server, ret, msg, state)
                    continue
                if tag == STOP and len(msg) == 2:
                    _stop(server, msg[1], state, msg)
                    return msg[1]
                if tag == _SYSTEM and len(msg) == 3 and _is_terminate(msg[2]):
                    # sys:terminate, as gen_server:stop/proc_lib:stop on a BEAM node sends it:
                    # the reply 'ok' first, then terminate and the end (OTP's sys order).
                    reply(msg[1], _OK)
                    _stop(server, msg[2][1], state, msg)
                    return msg[2][1]
            else:
                if debug:
                    trace_received(msg)
                if type(msg) is Exit and msg.pid == parent:
                    # The parent's exit signal, trapped: OTP runs terminate, then
                    # ends with the same reason (semantics rule 22).
                    _stop(server, msg.reason, state, msg)
                    return msg.reason
            try:
                ret = server.handle_info(msg, state)
            except ProcessExit as e:
                _handler_exited(server, state, msg, e)
            if type(ret) is tuple and len(ret) == 2 and ret[0] == "noreply":
                state = ret[1]  # _after's usual case, in line
                timeout = None
            else:
                state, timeout = _after(server, ret, msg, state)
        except Exception as e:  # noqa: BLE001 - a raising handler ends the server
            crash = Crash.from_exception(e)
            _stop(server, crash, state, msg)
            return crash


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


def _timeout_of(ret: Result, i: int) -> _Timeout:
    """A handler result's timeout slot: None (none), seconds, or a ``_Cont``."""
    if len(ret) <= i:
        return None
    t = ret[i]
    if t == "hibernate" or t == "infinity" or t is None:
        return None
    if type(t) is tuple and len(t) == 2 and t[0] == "continue":
        return _Cont(t[1])
    return float(t)


def _after(server: GenServer, ret: Any, msg: Any, state: Any) -> Tuple[Any, _Timeout]:
    """Apply a handler's ``noreply``/``stop`` result; returns (state, timeout).

    A stop (asked for, or a bad return value) runs ``terminate`` here and
    comes back as a :class:`_Stop` in the timeout slot: the loop returns its
    reason next.
    """
    if type(ret) is tuple and ret:
        kind = ret[0]
        if kind == "noreply" and 2 <= len(ret) <= 3:
            return ret[1], _timeout_of(ret, 2)
        if kind == "stop" and len(ret) == 3:
            _stop(server, ret[1], ret[2], msg)
            return ret[2], _Stop(ret[1])
    reason = ("bad_return_value", ret)
    _stop(server, reason, state, msg)
    return state, _Stop(reason)


def _stop(server: GenServer, reason: Any, state: Any, last_msg: Any) -> None:
    """Run ``terminate`` and report an abnormal end (the caller then exits)."""
    try:
        server.terminate(reason, state)
    except Exception as e:  # noqa: BLE001 - a raising terminate changes the reason
        reason = Crash.from_exception(e)
        log.error("%s %s crashed in terminate: %s\n%s", type(server).__name__, _self(), reason, reason.traceback)
        exit(reason)
    if log.isEnabledFor(logging.ERROR) and not is_shutdown_reason(reason):
        tb = getattr(reason, "traceback", "")
        log.error(
            "%s %s terminating\n** Last message: %r\n** State: %r\n** Reason: %s\n%s",
            type(server).__name__,
            _self(),
            last_msg,
            state,
            reason,
            tb,
        )
