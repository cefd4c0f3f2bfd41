"""The client side of a GenServer: :func:`call`, :func:`cast`, :func:`reply`, :func:`stop`.

The messages are plain terms, so they cross nodes:

* call:  ``('$gen_call', (caller_pid, tag), request)``, reply ``(tag, value)``;
  ``tag`` is the caller's monitor ref of the server.
* cast:  ``('$gen_cast', request)``.
* stop:  ``('$gen_stop', reason)``.

The same messages are OTP's ``gen_server`` protocol to and from an Erlang or
Elixir node: to a process of such a node ``'$gen_call'`` and ``'$gen_cast'``
are sent as :class:`~snowg.Atom` values (equal to the plain strings, which
snowg's own messages keep), so :func:`call` may call an Erlang
``gen_server`` (its reply ``{Tag, Value}`` matches the plain ref tag), and a
BEAM process may call a snowg server (the atoms it sends equal the strings).

Late replies. snowg's ``receive`` is selective, so a reply that arrives after
the caller gave up would stay in its mailbox for ever. OTP solves this with a
process alias that the caller deactivates; snowg emulates the alias
(``snowg._core.calls``): a caller holds its tag as its alias for exactly as
long as it waits, and :func:`reply` delivers only to the caller whose alias
the tag is. For a caller on another node the reply goes to the reply router
registered on the caller's node, which does the same check there.

A call to a live process of this node takes ``_core``'s fused path
(``call_local``: monitor, send, wait, demonitor in one step); any other
destination takes the general one below, with the same outcomes.

A caller on a BEAM node (``_core.remote.is_foreign_node``) gets the reply
straight, ``(tag, value)``, as ``gen:reply`` sends it (its tag may be
``[alias | Ref]``, which the Erlang connection sends to the alias).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

from .._core import (
    NOT_LOCAL,
    Atom,
    CallDown,
    Down,
    Pid,
    call_local,
    clear_alias,
    deliver_reply,
    demonitor,
    flush_messages,
    monitor,
    receive,
    register,
    send,
    set_alias,
    spawn,
    trap_exit,
    whereis,
)
from .._core import self as _self
from .._core.remote import is_foreign_node
from .._errors import CallError, CallTimeout, NoProc, Timeout

#: Where a server is: a pid, a locally registered name, or ``(name, node)``.
Dest = Union[Pid, str, Tuple[str, str]]
#: Who called: ``(caller_pid, tag)``, the ``from_`` of ``handle_call``.
#: (A BEAM caller's tag may be ``ImproperList((Atom('alias'),), ref)`` instead of a ref.)
From = Tuple[Pid, Any]

CALL = "$gen_call"
CAST = "$gen_cast"
# The tags as a BEAM node must receive them (atoms, not binaries).
_CALL_ATOM = Atom(CALL)
_CAST_ATOM = Atom(CAST)
# sys:terminate's request, as gen_server:stop sends it to a BEAM server.
_SYSTEM = Atom("system")
_TERMINATE = Atom("terminate")
STOP = "$gen_stop"

_REPLY = "$reply"
_REPLY_ROUTER = "snowg.gen_server.replies"


def is_remote(dest: Dest) -> bool:
    """Whether ``dest`` names a process on another node than the caller's."""
    return _elsewhere(dest, _self().node)


def _on_beam(dest: Dest) -> bool:
    """Whether ``dest`` is on a node reached through Erlang's protocol (a BEAM node)."""
    if type(dest) is Pid:
        return is_foreign_node(dest.node)
    return type(dest) is tuple and len(dest) == 2 and is_foreign_node(dest[1])


def _elsewhere(dest: Dest, here: str) -> bool:
    if type(dest) is Pid:
        return dest.node != here
    return type(dest) is tuple and len(dest) == 2 and dest[1] != here


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
    try:
        value = call_local(dest, CALL, request, timeout)
    except CallDown as e:
        if e.reason == "noproc":
            raise NoProc(f"{dest!r} is not alive") from None
        raise CallError(e.reason) from None
    except Timeout:
        raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    if value is not NOT_LOCAL:
        return value
    return _call(dest, request, timeout)


def _call(dest: Dest, request: Any, timeout: Optional[float]) -> Any:
    """:func:`call` to anything but a live local process: another node, a BEAM node, a dead one."""
    me = _self()
    if dest == me:
        raise CallError("calling_self")
    mref = monitor(dest)
    set_alias(mref)
    try:
        tag = CALL
        if _elsewhere(dest, me.node):
            if _on_beam(dest):
                tag = _CALL_ATOM
            else:
                _ensure_reply_router()
        try:
            send(dest, (tag, (me, mref), request))
        except NoProc:
            demonitor(mref, flush=True)
            raise NoProc(f"no process is registered as {dest!r}") from None
        try:
            msg = receive(
                lambda m: (type(m) is tuple and len(m) == 2 and m[0] == mref) or (type(m) is Down and m.ref == mref),
                timeout,
            )
        except Timeout:
            demonitor(mref, flush=True)
            raise CallTimeout(f"no reply from {dest!r} within {timeout} s") from None
    finally:
        clear_alias()
    if type(msg) is Down:
        if msg.reason == "noproc":
            raise NoProc(f"{dest!r} is not alive")
        raise CallError(msg.reason)
    demonitor(mref, flush=True)
    return msg[1]


def cast(dest: Dest, request: Any) -> None:
    """Send ``request`` to the server's ``handle_cast``; never blocks, never fails."""
    try:
        send(dest, (_CAST_ATOM if _on_beam(dest) else CAST, request))
    except NoProc:
        pass  # OTP: a cast to a missing name is silently dropped


def reply(from_: From, value: Any) -> None:
    """Reply to a call whose ``handle_call`` returned ``noreply`` (or any time).

    Never blocks. A reply to a caller that stopped waiting (timed out or
    ended) is dropped.
    """
    pid, tag = from_
    if deliver_reply(pid, tag, value):
        return  # a caller of this node: delivered if it still waits for tag, else dropped
    if type(pid) is Pid:
        if is_foreign_node(pid.node):
            send(pid, (tag, value))  # gen:reply's form; the BEAM drops a reply to a dead alias
        else:
            send((_REPLY_ROUTER, pid.node), (_REPLY, pid, tag, value))


def stop(dest: Dest, reason: Any = "normal", timeout: Optional[float] = None) -> None:
    """Stop the server: run its ``terminate(reason, state)`` and wait until it ended.

    Blocks until the server has ended (or ``timeout`` seconds; None: no limit).
    A server on a BEAM node (an Erlang ``gen_server``) is stopped as
    ``gen_server:stop`` does, with ``sys:terminate``'s message; a ``str``
    reason goes to it as an atom.

    Raises:
        NoProc: the server does not exist.
        CallError: it ended with another reason than ``reason``.
        CallTimeout: it did not end in time.
    """
    mref = monitor(dest)
    beam = _on_beam(dest)
    try:
        if beam:
            send(dest, (_SYSTEM, (_self(), mref), (_TERMINATE, _beam_reason(reason))))
        else:
            send(dest, (STOP, reason))
    except NoProc:
        demonitor(mref, flush=True)
        raise NoProc(f"no process is registered as {dest!r}") from None
    try:
        down = receive(lambda m: type(m) is Down and m.ref == mref, timeout)
    except Timeout:
        demonitor(mref, flush=True)
        raise CallTimeout(f"{dest!r} did not stop within {timeout} s") from None
    if beam:
        flush_messages(lambda m: type(m) is tuple and len(m) == 2 and m[0] == mref)  # sys:terminate's 'ok'
    if down.reason == "noproc":
        raise NoProc(f"{dest!r} is not alive")
    if down.reason != reason:
        raise CallError(down.reason)


def _beam_reason(reason: Any) -> Any:
    """A stop reason as a BEAM server must get it: ``'normal'`` an atom, not a binary."""
    if type(reason) is str:
        return Atom(reason)
    if type(reason) is tuple and len(reason) == 2 and type(reason[0]) is str:
        return (Atom(reason[0]), reason[1])
    return reason


def _ensure_reply_router() -> None:
    """Start this node's reply router (the alias check for replies from other nodes)."""
    if whereis(_REPLY_ROUTER) is None:
        register(_REPLY_ROUTER, spawn(_reply_router))


def _reply_router() -> None:
    trap_exit(False)
    while True:
        msg = receive()
        if type(msg) is tuple and len(msg) == 4 and msg[0] == _REPLY:
            _tag, pid, tag, value = msg
            deliver_reply(pid, tag, value)  # only to a caller that still waits for tag
