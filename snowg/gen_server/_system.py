"""System messages: what ``snowg.sys`` asks of a running GenServer (OTP's ``sys``).

A system request travels as a call whose request is ``('$system', op, arg)``,
so it has a call's monitor, timeout and late-reply protection, and crosses
nodes. The server loop answers it itself, never the callbacks, and also while
it is suspended. The answer is ``('ok', value)`` or ``('error', kind,
detail)``; ``snowg.sys`` turns errors into exceptions.

Requests (``op``, ``arg``): ``'get_state'``, ``'replace_state'`` (a function
of the state, so a local caller only), ``'suspend'``, ``'resume'``,
``'trace'`` (a bool), ``'get_status'``.

Trace lines go to the ``snowg`` logger at INFO, one per message received and
one per reply the loop sends (see :func:`trace_received`, :func:`trace_reply`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, Tuple

from .._core import Crash, Exit, Pid, describe_call
from .._core import self as _self
from ._client import CALL, CAST, STOP, From, reply

if TYPE_CHECKING:
    from ._server import GenServer

log = logging.getLogger("snowg")

SYSTEM = "$system"

#: The operations a server answers.
OPS = ("get_state", "replace_state", "suspend", "resume", "trace", "get_status")


def is_system(msg: Any) -> bool:
    """Whether ``msg`` is a system request (a call of ``('$system', op, arg)``)."""
    if type(msg) is tuple and len(msg) == 3 and msg[0] == CALL:
        req = msg[2]
        return type(req) is tuple and len(req) == 3 and req[0] == SYSTEM
    return False


def handle(
    server: "GenServer", state: Any, parent: Pid, from_: From, req: Tuple[Any, ...], suspended: bool, debug: bool
) -> Tuple[Any, bool, bool]:
    """Answer the system request ``req`` from ``from_``; returns the new (state, suspended, debug).

    Never blocks (a reply is a send). A reply that cannot reach a caller on
    another node (its value cannot cross) is replaced by an error reply, so
    the server never fails because it was looked at.
    """
    _tag, op, arg = req
    answer: Any
    if op == "get_state":
        answer = ("ok", state)
    elif op == "replace_state":
        try:
            state = arg(state)
        except Exception as e:  # noqa: BLE001 - the state stays, the caller is told
            crash = Crash.from_exception(e)
            answer = ("error", "callback_failed", (crash.type, crash.message, crash.traceback))
        else:
            answer = ("ok", state)
    elif op == "suspend":
        suspended = True
        answer = ("ok", None)
    elif op == "resume":
        suspended = False
        answer = ("ok", None)
    elif op == "trace":
        debug = bool(arg)
        answer = ("ok", None)
    elif op == "get_status":
        answer = ("ok", status(server, state, parent, suspended, debug))
    else:
        answer = ("error", "badarg", f"unknown system request {op!r}")
    try:
        reply(from_, answer)
    except (TypeError, ValueError) as e:  # the value cannot cross to the caller's node
        reply(from_, ("error", "not_crossable", f"the answer cannot cross nodes: {e}"))
    return state, suspended, debug


def status(server: "GenServer", state: Any, parent: Pid, suspended: bool, debug: bool) -> Dict[str, Any]:
    """``get_status``'s answer: a dict of the server's status (plain terms but ``state``)."""
    me = _self()
    return {
        "pid": me,
        "module": describe_call(type(server)),
        "status": "suspended" if suspended else "running",
        "parent": parent,
        "trace": debug,
        "state": server.format_state(state),
    }


def _who() -> str:
    return str(_self())


def trace_received(msg: Any) -> None:
    """Log a message the server took (trace on): ``*DBG* <pid> got ...``."""
    if type(msg) is tuple and msg:
        tag = msg[0]
        if tag == CALL and len(msg) == 3:
            caller = msg[1][0] if type(msg[1]) is tuple and msg[1] else msg[1]
            log.info("*DBG* %s got call %r from %s", _who(), msg[2], caller)
            return
        if tag == CAST and len(msg) == 2:
            log.info("*DBG* %s got cast %r", _who(), msg[1])
            return
        if tag == STOP and len(msg) == 2:
            log.info("*DBG* %s got stop %r", _who(), msg[1])
            return
    if type(msg) is Exit:
        log.info("*DBG* %s got exit %r from %s", _who(), msg.reason, msg.pid)
        return
    log.info("*DBG* %s got %r", _who(), msg)


def trace_reply(from_: From, value: Any, state: Any) -> None:
    """Log a reply the loop sent (trace on): ``*DBG* <pid> sent <value> to <pid>, new state <state>``."""
    caller = from_[0] if type(from_) is tuple and from_ else from_
    log.info("*DBG* %s sent %r to %s, new state %r", _who(), value, caller, state)
