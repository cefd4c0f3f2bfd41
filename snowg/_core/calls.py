"""Calls: a request that waits for its reply, with a monitor of the callee and an alias.

OTP's ``gen:call`` is four steps: monitor the server, send ``{'$gen_call',
{self(), Ref}, Request}``, receive ``{Ref, Reply}`` or the monitor's
``'DOWN'``, demonitor. Written with the public API (``monitor``, ``send``,
``receive`` with a predicate, ``demonitor``) that is four generic calls, each
resolving the caller and the destination again; :func:`call_local` does the
four in one step when the destination is a live process of this node, which
is what nearly every call is. Every other destination (another node, a BEAM
node, a dead pid, an unknown name) gets ``NOT_LOCAL`` back and takes the
general path in ``snowg.gen_server``, so the outcomes are the same:

* the monitor is a real one (in ``monitors``/``monitored_by``, as
  ``monitor`` makes it), so a server that ends delivers ``Down`` with its
  reason, and a caller that ends drops it;
* messages already in the caller's mailbox cannot match the new ref, so the
  wait scans only what arrives after the send, and leaves everything but the
  reply or the ``Down`` in order;
* an exit signal that arrives while the caller waits ends it, as in
  ``receive``.

The alias. A reply that comes after the caller gave up must never reach its
mailbox (semantics rule 21). OTP deactivates a process alias; a process here
holds the tag of the one call it waits for in ``Process.alias`` (a process
waits for one call at a time), and :func:`deliver_reply` delivers a reply only
while the tag is that alias. The general path sets and clears the same slot
(:func:`set_alias`, :func:`clear_alias`), and the reply router of a node
checks it, through :func:`deliver_reply`, for replies from other nodes.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Optional

from greenlet import getcurrent

from .._errors import CallError, Timeout
from .process import Process, _current, _exit_pending, _new_tuple, _on_receive_timeout, local_process
from .runtime import rt
from .scheduler import DEAD as _DEAD
from .scheduler import drain as _drain
from .scheduler import park as _park
from .terms import Down, Pid, Ref

__all__ = ["NOT_LOCAL", "CallDown", "call_local", "clear_alias", "deliver_reply", "set_alias"]


class _NotLocal:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_LOCAL"


#: What :func:`call_local` returns when the destination is not a live local process.
NOT_LOCAL: Any = _NotLocal()


class CallDown(Exception):
    """The callee ended before it replied; ``reason`` is its exit reason (from the monitor's ``Down``)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


def _arm(proc: Process, loop: Any, after: float, due: float) -> None:
    """Give ``proc`` a call timer that fires ``after`` seconds from now (at ``due``)."""
    timer = loop.timer(after)
    timer.start(_on_call_timer, proc)
    proc.call_timer = (timer, due)


def _on_call_timer(proc: Process) -> None:
    """A process's call timer fired: time its call out, or re-arm for the deadline of the call it waits in now."""
    armed = proc.call_timer
    if armed is None:
        return
    proc.call_timer = None
    armed[0].close()
    deadline = proc.call_deadline
    if deadline is None or proc.state == _DEAD:
        return  # not in a call now: the timer goes
    loop = rt._loop or rt.loop
    remaining = deadline - loop.now()
    if remaining > 0:
        _arm(proc, loop, remaining, deadline)  # a later call than the one it was armed for
        return
    proc.call_deadline = None
    _on_receive_timeout(proc)


def call_local(dest: Any, tag: Any, request: Any, timeout: Optional[float]) -> Any:
    """Call a live process of this node: monitor it, send ``(tag, (me, ref), request)``, wait, demonitor.

    Blocks the caller until the reply ``(ref, value)`` or the monitor's
    ``Down`` arrives, or ``timeout`` seconds pass (None: no limit). Other
    messages stay in the caller's mailbox, in order; an exit signal that
    arrives meanwhile ends the caller as it would in ``receive``.

    Args:
        dest: a pid, a locally registered name, or ``(name, node)``.
        tag: the first element of the request message (``'$gen_call'``).
        request: its third element.
        timeout: seconds to wait; None waits for ever.

    Returns:
        The reply's value; or ``NOT_LOCAL``, having done nothing, when ``dest``
        is not a live process of this node (another node, a dead pid, a name
        nobody holds) or ``timeout <= 0``: the caller then takes the general path.

    Raises:
        CallError: ``'calling_self'``, when ``dest`` is the caller.
        CallDown: the callee ended first (``.reason``, its exit reason).
        snowg.Timeout: no reply in time; the monitor is gone, and a reply that
            comes later is dropped (the alias is cleared).
    """
    if type(dest) is Pid:
        target = dest._proc
        if target is None or target.state == _DEAD:
            return NOT_LOCAL
        reported: Any = target.pid
    elif type(dest) is str:
        target = rt.names.get(dest)
        if target is None or target.state == _DEAD:
            return NOT_LOCAL
        reported = (dest, rt.node)
    elif type(dest) is tuple and len(dest) == 2 and dest[1] == rt.node:
        target = rt.names.get(dest[0])
        if target is None or target.state == _DEAD:
            return NOT_LOCAL
        reported = (dest[0], dest[1])
    else:
        return NOT_LOCAL
    if timeout is not None and timeout <= 0:
        return NOT_LOCAL
    me: Optional[Process] = getattr(getcurrent(), "_snowg_proc", None)
    if me is None or me.state == _DEAD:
        me = _current()  # adopts the greenlet
    if target is me:
        raise CallError("calling_self")
    # monitor (as process.monitor does for a live local target)
    ref = _new_tuple(Ref, (rt.node, next(rt.ref_ids), rt.creation))  # Ref(...) without its Python __new__
    mine = me.monitors
    if mine is None:
        me.monitors = mine = {}
    mine[ref] = target.pid
    theirs = target.monitored_by
    if theirs is None:
        target.monitored_by = theirs = {}
    theirs[ref] = (me.pid, reported)
    # send (as process.send does)
    mb = target.mailbox
    if mb is None:
        target.mailbox = mb = deque()
    mb.append((tag, (me.pid, ref), request))
    if target.parked and not target.ready:
        # scheduler.schedule, inline; the park below hands the CPU to it unless others are ready first
        target.ready = True
        rt.ready.append(target)
        if not rt.drain_scheduled:
            rt.drain_scheduled = True
            (rt._loop or rt.loop).run_callback(_drain)
    # wait for (ref, value) or Down(ref, ...): nothing already in the mailbox can match a new ref
    mb = me.mailbox
    scanned = len(mb) if mb else 0
    if timeout is not None:
        # The timer outlives the call: the next call reuses it while it would fire no later
        # than that call's deadline (it re-arms itself when it fires early). A libev timer
        # made, started and closed per call cost a ninth of a local call's instructions.
        loop = rt._loop or rt.loop
        deadline = loop.now() + timeout
        armed = me.call_timer
        if armed is None or armed[1] > deadline:
            if armed is not None:
                armed[0].close()
            _arm(me, loop, timeout, deadline)
        me.call_deadline = deadline
    me.alias = ref
    me.timed_out = False
    msg: Any = None
    try:
        while True:
            _park(me)
            if me.exit_pending is not None:
                _exit_pending(me)  # a signal that ends it came with (or after) the wake-up
            mb = me.mailbox
            if mb and len(mb) > scanned:
                m = mb[-1]
                if len(mb) == scanned + 1 and type(m) is tuple and len(m) == 2 and m[0] is ref:
                    msg = mb.pop()  # the usual case: the reply is the one new message
                    break
                i = scanned
                for m in islice(mb, scanned, None):
                    kind = type(m)
                    if kind is tuple:
                        if len(m) == 2 and (m[0] is ref or m[0] == ref):
                            msg = m
                            break
                    elif kind is Down and m.ref == ref:
                        msg = m
                        break
                    i += 1
                if msg is not None:
                    del mb[i]
                    break
                scanned = i
            if me.timed_out:
                break
    finally:
        me.alias = None
        me.call_deadline = None
        me.parked = False
    if type(msg) is tuple:
        mine = me.monitors
        if mine is not None and mine.pop(ref, None) is not None:  # demonitor, inline: the usual case
            theirs = target.monitored_by
            if theirs:
                theirs.pop(ref, None)
        else:
            _demonitor(me, target, ref)
        return msg[1]
    if msg is None:  # timed out
        _demonitor(me, target, ref)
        raise Timeout(f"no reply within {timeout} s")
    raise CallDown(msg.reason)  # the Down took the monitor away


def _demonitor(me: Process, target: Process, ref: Ref) -> None:
    """``demonitor(ref, flush=True)`` for the monitor ``call_local`` made of the local ``target``."""
    mine = me.monitors
    if mine is not None and mine.pop(ref, None) is not None:
        theirs = target.monitored_by
        if theirs:
            theirs.pop(ref, None)
        return
    # The target ended (its _terminate took the monitor): its Down may be in the mailbox.
    mb = me.mailbox
    if mb:
        for i, m in enumerate(mb):
            if type(m) is Down and m.ref == ref:
                del mb[i]
                break


def deliver_reply(pid: Any, tag: Any, value: Any) -> bool:
    """Deliver the reply ``(tag, value)`` to ``pid`` if it is a process of this node; never blocks.

    Returns:
        True when ``pid`` is of this node: the reply was delivered if the
        process waits for ``tag`` (its alias), and dropped otherwise (it timed
        out, or ended). False when ``pid`` is not of this node (nothing done:
        the caller routes the reply).
    """
    if type(pid) is not Pid:
        return False
    proc = pid._proc
    if proc is None:
        if pid.node != rt.node:
            return False
        proc = local_process(pid)
        if proc is None:
            return True  # gone, or of an earlier run of this node
    alias = proc.alias
    if alias is not None and (alias is tag or alias == tag) and proc.state != _DEAD:
        mb = proc.mailbox
        if mb is None:
            proc.mailbox = mb = deque()
        mb.append((tag, value))
        if proc.parked and not proc.ready:
            proc.ready = True  # scheduler.schedule, inline
            rt.ready.append(proc)
            if not rt.drain_scheduled:
                rt.drain_scheduled = True
                (rt._loop or rt.loop).run_callback(_drain)
    return True


def set_alias(ref: Ref) -> None:
    """Make ``ref`` the calling process's alias: replies tagged ``ref`` reach it (until :func:`clear_alias`)."""
    _current().alias = ref


def clear_alias() -> None:
    """Deactivate the calling process's alias: a reply that comes now is dropped."""
    _current().alias = None
