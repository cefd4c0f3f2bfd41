"""OTP's ``sys`` for GenServers and supervisors: look at a running server, pause it, trace it.

Each function sends the server a *system request* (a call, so it has a
timeout, a monitor and works across nodes) that the server's loop answers
itself, before and apart from the callbacks:

* :func:`get_state` and :func:`replace_state` read and change the state the
  callbacks thread through (a supervisor's is its ``State`` record; its
  :func:`get_status` shows a plain description);
* :func:`suspend` stops the server handling messages: they queue in its
  mailbox, and it answers system requests only (and its parent's exit
  signal, when it traps exits) until :func:`resume`, after which it handles
  the queued messages in order; a suspended server's calls time out;
* :func:`trace` logs (logger ``snowg``, INFO) every message the server takes
  and every reply its loop sends: ``*DBG* <pid> got call 'ping' from <pid>``,
  ``*DBG* <pid> got cast ...``, ``*DBG* <pid> got ...`` (any other message),
  ``*DBG* <pid> sent 'pong' to <pid>, new state ...``;
* :func:`get_status` returns a dict: ``pid``, ``module`` (the GenServer
  class), ``status`` (``'running'`` or ``'suspended'``), ``parent``,
  ``trace`` and ``state`` (``GenServer.format_state(state)``).

A server is named as for :func:`snowg.call`: a pid, a local name or
``(name, node)``. A process that is not a GenServer does not answer: the
request times out.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ._errors import RemoteError
from .gen_server import SYSTEM, Dest, call

__all__ = ["get_state", "get_status", "replace_state", "resume", "suspend", "trace"]


def _request(dest: Dest, op: str, arg: Any, timeout: Optional[float]) -> Any:
    answer = call(dest, (SYSTEM, op, arg), timeout)
    if type(answer) is tuple and answer and answer[0] == "ok":
        return answer[1]
    kind, detail = answer[1], answer[2]
    if kind == "callback_failed":
        raise RemoteError(*detail)
    if kind == "not_crossable":
        raise TypeError(detail)
    raise ValueError(detail)


def get_state(dest: Dest, timeout: Optional[float] = 5) -> Any:
    """The state of the GenServer (or supervisor) ``dest``.

    Blocks until the server answers (at most ``timeout`` seconds; None: no
    limit). Answered also while the server is suspended.

    Raises:
        NoProc: no such process.
        CallError: it ended before answering.
        CallTimeout: no answer in time (a process that is not a GenServer never answers).
        TypeError: the server is on another node and its state cannot cross nodes.
    """
    return _request(dest, "get_state", None, timeout)


def replace_state(dest: Dest, fn: Callable[[Any], Any], timeout: Optional[float] = 5) -> Any:
    """Replace the state of ``dest`` with ``fn(state)``, run in the server; return the new state.

    Blocks until the server has run ``fn`` (at most ``timeout`` seconds). A
    function does not cross nodes, so ``dest`` must be a local server.

    Raises:
        RemoteError: ``fn`` raised (in the server); the state is unchanged.
        TypeError: ``dest`` is on another node (``fn`` cannot be sent).
        NoProc, CallError, CallTimeout: as :func:`get_state`.
    """
    return _request(dest, "replace_state", fn, timeout)


def suspend(dest: Dest, timeout: Optional[float] = 5) -> None:
    """Suspend ``dest``: until :func:`resume` it answers system requests only; other messages queue.

    Blocks until the server is suspended (at most ``timeout`` seconds).

    Raises:
        NoProc, CallError, CallTimeout: as :func:`get_state`.
    """
    _request(dest, "suspend", None, timeout)


def resume(dest: Dest, timeout: Optional[float] = 5) -> None:
    """Resume a suspended ``dest``: it handles its queued messages, in order, then the rest.

    Blocks until the server has resumed (at most ``timeout`` seconds).

    Raises:
        NoProc, CallError, CallTimeout: as :func:`get_state`.
    """
    _request(dest, "resume", None, timeout)


def trace(dest: Dest, flag: bool, timeout: Optional[float] = 5) -> None:
    """Log (``True``) or stop logging (``False``) every message ``dest`` takes and every reply it sends.

    The lines go to the ``snowg`` logger at INFO, on the server's node (see
    the module docstring). Blocks until the server has switched (at most
    ``timeout`` seconds).

    Raises:
        NoProc, CallError, CallTimeout: as :func:`get_state`.
    """
    _request(dest, "trace", bool(flag), timeout)


def get_status(dest: Dest, timeout: Optional[float] = 5) -> Dict[str, Any]:
    """The status of ``dest``: ``pid``, ``module``, ``status``, ``parent``, ``trace``, ``state``.

    Blocks until the server answers (at most ``timeout`` seconds); answered
    also while it is suspended. ``state`` is the server's
    ``format_state(state)`` (a supervisor's: a dict of plain terms, see
    ``snowg.supervisor``).

    Raises:
        NoProc, CallError, CallTimeout, TypeError: as :func:`get_state`.
    """
    status: Dict[str, Any] = _request(dest, "get_status", None, timeout)
    return status
