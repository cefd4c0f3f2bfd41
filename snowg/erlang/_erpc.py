"""Calls between Python and BEAM nodes: spawn requests from them, ``erpc`` calls and casts to them.

From a BEAM node. Everything a BEAM node runs here arrives as a spawn
request (``SPAWN_REQUEST``); :func:`handle_spawn_request` answers it:

* ``erpc:execute_call(Res, M, F, A)`` is what ``erpc:call`` (and OTP 25's
  ``rpc:call``, built on it) sends. The ``@snowg.spawnable("M:F")`` function
  runs with the arguments ``A`` in a new process, whose exit reason is what
  the caller's ``erpc`` reads (OTP's ``erpc.erl``): ``{Res, return, Value}``;
  for a Python exception ``{Res, error, {python_error, Type, Message,
  Traceback}, [{M, F, Arity, []}]}`` (``erpc:call`` raises
  ``error:{exception, {python_error, ...}, Stack}``); for an unknown name or
  arity ``{Res, error, undef, [{M, F, A, []}]}`` (``error:{exception, undef,
  ...}``, as for a missing Erlang function); for ``snowg.exit(reason)``
  ``{Res, exit, Reason}``. A function may raise :class:`ErlangError` to
  choose the Erlang exception itself (``throw`` included).
* ``erpc:execute_cast(M, F, A)`` (``erpc:cast``): the same, with no reply.
* ``M:F`` (``spawn``, ``spawn_link``, ``spawn_monitor`` from Erlang,
  ``Node.spawn_link`` from Elixir): the spawnable ``"M:F"`` with the
  argument list; an unknown one ends ``{undef, [{M, F, Args, []}]}``, as
  Erlang's process does.

The process is linked and monitored as the request asks, before it runs,
and the spawn reply goes out before any signal of it.

To a BEAM node: :func:`call` and :func:`cast`, ``erpc``'s protocol (a spawn
request of ``erpc:execute_call/4`` with a monitor).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Callable, List, NoReturn, Optional, Sequence, Tuple

from .._core import Atom, Crash, Down, ProcessExit, demonitor, exit, make_ref, receive, spawn, spawn_monitor
from .._core.remote import is_foreign_node, spawn_for_peer
from .._errors import CallError, CallTimeout, SnowgError, Timeout
from ..cluster import lookup_spawnable
from ._dist import CONNECT_TIMEOUT, connect

log = logging.getLogger("snowg")

# The SPAWN_REPLY flags (erl_dist_protocol): what was set up for the caller.
_FLAG_LINK = 1
_FLAG_MONITOR = 2

_RETURN = Atom("return")
_THROW = Atom("throw")
_EXIT = Atom("exit")
_ERROR = Atom("error")
_UNDEF = Atom("undef")
_PYTHON_ERROR = Atom("python_error")
_KINDS = ("error", "exit", "throw")


class ErlangError(SnowgError):
    """An Erlang exception: raised by :func:`call` for one on the BEAM node; raise it to answer one.

    ``kind`` is ``'error'``, ``'exit'`` or ``'throw'``; ``reason`` is the
    exception's reason (Python values, atoms as :class:`~snowg.Atom`);
    ``stack`` the stack trace ``erpc`` gave (a list; empty for ``throw``
    and ``exit``). A Python function that an ``erpc:call`` runs may raise
    one: the Erlang caller then gets exactly that exception.

    Raises:
        ValueError: ``kind`` is not one of the three.
    """

    def __init__(self, kind: str, reason: Any, stack: Optional[List[Any]] = None) -> None:
        if kind not in _KINDS:
            raise ValueError(f"ErlangError kind must be one of {_KINDS}, not {kind!r}")
        super().__init__(kind, reason)
        self.kind = str(kind)
        self.reason = reason
        self.stack: List[Any] = list(stack) if stack is not None else []

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason!r}"


# ------------------------------------------------------------ from the BEAM


def handle_spawn_request(conn: Any, req: Any) -> None:
    """Answer a BEAM node's spawn request: start the process, then the spawn reply.

    Called by the Erlang connection's reader for each ``SPAWN_REQUEST``
    (``req`` is a ``_control.SpawnRequest``); never blocks. The new process
    is linked to / monitored by the caller (monitor ref = the request id) as
    the options ask, before it runs.
    """
    link = _has_opt(req.opts, "link")
    monitor = _has_opt(req.opts, "monitor")
    module, function, args = req.module, req.function, req.args
    body: Callable[..., Any]
    if module == "erpc" and function == "execute_call" and len(args) == 4:
        body = _execute_call
        call_args: Tuple[Any, ...] = (conn, *args)
    elif module == "erpc" and function == "execute_cast" and len(args) == 3:
        body = _execute_cast
        call_args = tuple(args)
    else:
        body = _apply
        call_args = (module, function, args)
    pid = spawn_for_peer(body, call_args, {}, req.from_, link, req.req_id if monitor else None)
    flags = (_FLAG_LINK if link else 0) | (_FLAG_MONITOR if monitor else 0)
    conn.send_spawn_reply(req.req_id, req.from_, flags, pid)


def _has_opt(opts: Any, name: str) -> bool:
    if type(opts) is not list:
        return False
    for opt in opts:
        if opt == name or (type(opt) is tuple and opt and opt[0] == name):
            return True
    return False


def _resolve(module: Any, function: Any, args: Any) -> Optional[Callable[..., Any]]:
    """The spawnable ``"module:function"`` if it takes ``args`` (Erlang's arity), else None."""
    if not isinstance(module, str) or not isinstance(function, str) or type(args) is not list:
        return None
    fn = lookup_spawnable(f"{module}:{function}")
    if fn is None:
        return None
    try:
        inspect.signature(fn).bind(*args)
    except TypeError:
        return None  # another arity: no such function
    except ValueError:
        pass  # no signature to check (a builtin): it says so itself when called
    return fn


def _undef_stack(module: Any, function: Any, args: Any) -> List[Any]:
    return [(module, function, args, [])]


def _python_error(crash: Crash) -> Tuple[Any, ...]:
    return (_PYTHON_ERROR, crash.type, crash.message, crash.traceback)


def _execute_call(conn: Any, res: Any, module: Any, function: Any, args: Any) -> NoReturn:
    """``erpc:execute_call(Res, M, F, A)``: run the function, end with erpc's result as the reason."""
    fn = _resolve(module, function, args)
    if fn is None:
        exit((res, _ERROR, _UNDEF, _undef_stack(module, function, args)))
    stack: List[Any] = [(module, function, len(args), [])]
    try:
        result: Tuple[Any, ...] = (res, _RETURN, fn(*args))
    except ErlangError as e:
        result = (res, Atom(e.kind), e.reason, e.stack) if e.kind == "error" else (res, Atom(e.kind), e.reason)
    except ProcessExit as e:
        if e.by_signal:
            raise  # an exit signal ended it: erpc's caller sees that reason
        result = (res, _EXIT, e.reason)
    except Exception as e:  # noqa: BLE001 - the caller gets the exception, as erpc does
        result = (res, _ERROR, _python_error(Crash.from_exception(e)), stack)
    tm = getattr(conn, "tm", None)
    if tm is not None:
        try:
            tm.encode(result)
        except (TypeError, ValueError) as e:
            # A value with no Erlang form would fail in the exit's encoding; tell the caller instead.
            result = (res, _ERROR, _python_error(Crash.from_exception(e)), stack)
    exit(result)


def _execute_cast(module: Any, function: Any, args: Any) -> None:
    """``erpc:execute_cast(M, F, A)``: run the function; nobody waits for the result."""
    fn = _resolve(module, function, args)
    if fn is None:
        log.warning("erpc:cast of %s:%s/%s: no such @spawnable function here", module, function, _arity(args))
        exit((_UNDEF, _undef_stack(module, function, args)))
    fn(*args)


def _apply(module: Any, function: Any, args: Any) -> None:
    """``spawn(Node, M, F, A)`` from a BEAM node: the spawnable ``"M:F"``, else exit ``{undef, ...}``."""
    fn = _resolve(module, function, args)
    if fn is None:
        log.warning("spawn of %s:%s/%s from a BEAM node: no such @spawnable here", module, function, _arity(args))
        exit((_UNDEF, _undef_stack(module, function, args)))
    fn(*args)


def _arity(args: Any) -> Any:
    return len(args) if type(args) is list else "?"


# -------------------------------------------------------------- to the BEAM


def call(node: str, module: str, function: str, args: Sequence[Any] = (), timeout: Optional[float] = 5.0) -> Any:
    """Call ``module:function(*args)`` on the BEAM node ``node`` and return its value (``erpc:call``).

    The call runs in a new process there (``erpc:execute_call/4``, spawned
    with a monitor). Blocks the calling process until the result, or for at
    most ``timeout`` seconds (None: no limit).

    Args:
        node: the BEAM node (``'name@host'``), connected or reachable (it is
            connected first, within the timeout, when it is not).
        module, function: names (sent as atoms).
        args: the arguments, terms with an Erlang form.
        timeout: seconds to wait.

    Returns:
        The function's value, in the Python form of the term mapping.

    Raises:
        ErlangError: the function raised (``kind`` 'error', 'exit' or
            'throw', as ``erpc`` reports it; an unknown function is
            ``ErlangError('error', 'undef', [...])``); a process ended by a
            signal is ``ErlangError('exit', ('signal', reason))``.
        CallTimeout: no result in time; the remote process is killed.
        CallError: ``'noconnection'``: the node is not reachable or was lost.
        NoProc: this process is not on a running node.
        TypeError: an argument has no Erlang form (nothing was sent).
        SpawnError: the node refused the spawn.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    _ensure_connected(node, CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT))
    res = make_ref()
    pid, mref = spawn_monitor(("erpc", "execute_call"), res, Atom(module), Atom(function), list(args), node=node)
    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        down = receive(lambda m: type(m) is Down and m.ref == mref, remaining)
    except Timeout:
        demonitor(mref, flush=True)
        exit(pid, "kill")  # as erpc abandons a call
        raise CallTimeout(f"{module}:{function}/{len(args)} on {node} did not return within {timeout} s") from None
    return _result(res, down.reason)


def _result(res: Any, reason: Any) -> Any:
    """What ``erpc``'s ``result/4`` makes of the exit reason of ``execute_call``."""
    if type(reason) is tuple and len(reason) in (3, 4) and reason[0] == res:
        kind = reason[1]
        if len(reason) == 3 and kind == "return":
            return reason[2]
        if len(reason) == 3 and kind in ("throw", "exit", "error"):
            raise ErlangError(str(kind), reason[2])
        if len(reason) == 4 and kind == "error":
            stack = reason[3] if type(reason[3]) is list else [reason[3]]
            raise ErlangError("error", reason[2], stack)
    if reason == "noconnection":
        raise CallError("noconnection")
    raise ErlangError("exit", (Atom("signal"), reason))


def cast(node: str, module: str, function: str, args: Sequence[Any] = ()) -> None:
    """Run ``module:function(*args)`` on the BEAM node ``node``; nobody waits for it (``erpc:cast``).

    Blocks the calling process only until the node answered the spawn
    request (connecting first when needed). Errors in the function are the
    BEAM node's to log.

    Raises:
        CallError: ``'noconnection'``: the node could not be reached.
        TypeError: an argument has no Erlang form (nothing was sent).
        SpawnError: the node refused the spawn.
        NoProc: this process is not on a running node.
    """
    _ensure_connected(node, CONNECT_TIMEOUT)
    spawn(("erpc", "execute_cast"), Atom(module), Atom(function), list(args), node=node)


def _ensure_connected(node: str, timeout: float) -> None:
    """Connect to the BEAM node ``node`` unless connected; blocks up to ``timeout`` seconds.

    Raises:
        CallError: ``'noconnection'``: it could not be reached.
        NodeError: this node does not speak Erlang's protocol.
    """
    if not is_foreign_node(node) and not connect(node, timeout):
        raise CallError("noconnection")
