"""Processes: greenlets with a mailbox, links, monitors and exit signals.

The rules are semantics rules 1-12 (Erlang's). The mechanics:

* A process is a :class:`Process` record plus a greenlet whose parent is the
  gevent hub. Greenlets we spawn are :class:`_ProcessGreenlet` and point at
  their record; a greenlet we did not spawn (the main greenlet, a plain
  ``gevent.spawn``) is *adopted* on first use of ``self()``.
* Scheduling (:mod:`snowg._core.scheduler`): a process that must run (new,
  or woken by a message) goes on the runtime's ready queue; one that parks in
  ``receive`` switches straight to the next ready one.
* An exit signal that ends a process is raised inside its greenlet as
  :class:`ProcessExit`, a ``BaseException`` (a ``GreenletExit``), so a user's
  ``except Exception:`` cannot swallow it. CPython has no preemption: a process
  that never yields cannot be stopped until it yields.

Local names (:mod:`~snowg._core.registry`), timers (:mod:`~snowg._core.timers`)
and looking at processes (:mod:`~snowg._core.introspect`) are modules of their own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from itertools import islice
from weakref import getweakrefcount
from typing import Any, Callable, Deque, Dict, List, NoReturn, Optional, Set, Tuple, Union, overload

import gevent
from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _greenlet

from .._errors import NoProc, Timeout
from . import telemetry as _telemetry
from .runtime import rt
from .scheduler import ACTIVE as _ACTIVE
from .scheduler import DEAD as _DEAD
from .scheduler import NEW as _NEW
from .scheduler import hand_off as _hand_off
from .scheduler import park as _park
from .scheduler import schedule as _schedule
from .terms import Crash, Down, Exit, Pid, Ref

# Builds a Ref, Exit or Down from a tuple of its fields: NamedTuple's own __new__ is Python code.
_new_tuple = tuple.__new__

log = logging.getLogger("snowg")

_TIMED_OUT = object()


class ProcessExit(GreenletExit):
    """Raised inside a process to end it with ``reason``.

    A ``BaseException`` (through ``GreenletExit``), so ``except Exception``
    in user code does not stop a process from exiting.

    Attributes:
        reason: the exit reason.
        by_signal: True when an exit signal (from a link, ``exit(pid,
            reason)``, a kill) raised it; False when the process called
            ``exit(reason)`` itself. Erlang tells the two apart the same way:
            ``gen_server`` runs ``terminate`` for the second only.
    """

    def __init__(self, reason: Any, by_signal: bool = False) -> None:
        # (No base __init__ call: BaseException.__new__ has already set ``args`` to ``(reason,)``.)
        self.reason = reason
        self.by_signal = by_signal


class Process:
    """The record of one process. Internal: users hold :class:`Pid` values."""

    __slots__ = (
        "pid",
        "glet",
        "state",
        "mailbox",
        "parked",
        "ready",
        "timed_out",
        "trap",
        "links",
        "monitors",
        "monitored_by",
        "name",
        "exit_pending",
        "timers",
        "start",
        "adopted",
        "initial",
        "parent",
        "cpu",
        "alias",
        "call_deadline",
        "call_timer",
    )

    def __init__(self, pid: Pid, glet: Any, adopted: bool = False) -> None:
        self.pid = pid
        self.glet = glet
        self.state = _NEW
        self.mailbox: Optional[Deque[Any]] = None
        self.parked = False
        self.ready = False
        self.timed_out = False
        self.trap = False
        # Lazily created: most processes never link, monitor or name themselves.
        self.links: Optional[Set[Pid]] = None
        self.monitors: Optional[Dict[Ref, Any]] = None  # ref -> target pid, or (name, node) elsewhere
        self.monitored_by: Optional[Dict[Ref, Tuple[Pid, Any]]] = None  # ref -> (watcher, reported pid)
        self.name: Optional[str] = None
        self.exit_pending: Any = None
        self.timers: Optional[Set[int]] = None
        self.start: Any = None
        self.adopted = adopted
        # For introspection: what it started with (a callable, or a GenServer class that
        # set_initial_call named), who spawned it, and its CPU seconds (when traced).
        self.initial: Any = None
        self.parent: Optional[Pid] = None
        self.cpu = 0.0
        # The tag of the call it waits for (snowg._core.calls): replies with another tag are dropped.
        self.alias: Any = None
        # The deadline of the call it waits in, and its call timer with when it fires (snowg._core.calls).
        self.call_deadline: Optional[float] = None
        self.call_timer: Optional[Tuple[Any, float]] = None


#: What the pid of an ended process points at (see the end of ``_terminate``).
_ENDED = Process(Pid("nonode@nohost", 0, 0), None)
_ENDED.state = _DEAD


class _ProcessGreenlet(_greenlet):
    __slots__ = ("_snowg_proc",)
    _snowg_proc: Optional[Process]


def _new_pid() -> Pid:
    return Pid(rt.node, next(rt.pid_ids), rt.creation)


def make_ref() -> Ref:
    """A new unique reference of this node."""
    return _new_tuple(Ref, (rt.node, next(rt.ref_ids), rt.creation))


# ------------------------------------------------------------------- spawning


def _run() -> None:
    glet: Any = getcurrent()
    proc: Process = glet._snowg_proc
    proc.state = _ACTIVE
    fn, args, kwargs = proc.start
    proc.start = None
    try:
        if proc.exit_pending is not None:
            reason = proc.exit_pending
            proc.exit_pending = None
            raise ProcessExit(reason, by_signal=True)
        fn(*args, **kwargs)
        # An exit signal that arrived while it was runnable (woken by a message
        # before the hub ran _throw_exit) still ends it with that reason.
        reason = "normal" if proc.exit_pending is None else proc.exit_pending
    except ProcessExit as e:
        reason = e.reason
        if type(reason) is Crash and not e.by_signal:
            _crash_event(proc, reason)  # a GenServer's callback raised: it logged and exited with the crash
    except GreenletExit:
        reason = "killed"
    except BaseException as e:  # noqa: BLE001 - any uncaught error ends the process with a crash
        reason = Crash.from_exception(e)
        _log_crash(proc, reason)
    _terminate(proc, reason)


# Process greenlets that ended, kept to run the next processes spawned. A
# greenlet's first run allocates its Python frame stack (CPython 3.11+ with
# greenlet 3: an mmap, and a munmap when it ends), about as much as everything
# else a spawn does. A greenlet is kept only when nothing holds a weak
# reference to it (``gevent.local``, or ``threading.local`` once patched, keys
# its values that way), and each process starts with no context variables set.
# Not detected: a ``gevent.Timeout`` a process started and never cancelled holds
# its greenlet's ``throw``, so on a reused greenlet it would fire in a later
# process (the README's known limits say so; ``with gevent.Timeout(...)`` cancels).
# The greenlet's reference count cannot tell: every switch into it that is still
# under way holds it too (a process that started it by parking, another that
# woke it), and in the usual cycle of a restart two are; counting them as held
# ended reuse there (tried: the bare re-spawn loop went from 10 to 24 µs).
_idle: List["_ProcessGreenlet"] = []
_IDLE_MAX = 64


def _run_reused() -> None:
    """A process greenlet's body: run its process, then wait idle for another one (see ``_idle``)."""
    glet: Any = getcurrent()
    while True:
        _run()
        glet._snowg_proc = None
        hub = rt._hub or rt.hub
        if len(_idle) >= _IDLE_MAX or glet.parent is not hub or getweakrefcount(glet):
            return
        glet.gr_context = None
        _idle.append(glet)
        try:
            # The exit just made someone runnable (the Exit to a supervisor, a Down):
            # switch to it directly rather than through the hub.
            _hand_off()
            while glet._snowg_proc is None:  # a switch by anyone but the scheduler: wait on
                hub.switch()
        except BaseException:
            # Thrown into while idle (GreenletExit when it is collected): end as a
            # finished greenlet would (the exception goes to the hub).
            if glet in _idle:
                _idle.remove(glet)
            raise


def _log_crash(proc: Process, crash: Crash) -> None:
    name = f" ({proc.name})" if proc.name else ""
    log.error(
        "process %s%s crashed: %s\n%s",
        proc.pid,
        name,
        crash,
        crash.traceback,
        extra={"snowg_pid": str(proc.pid), "snowg_name": proc.name},
    )
    _crash_event(proc, crash)


def _crash_event(proc: Process, crash: Crash) -> None:
    """The telemetry event of a process ending with its own uncaught exception (not an exit signal's)."""
    if _telemetry.PROCESS_CRASH in _telemetry.attached:
        meta = {"pid": proc.pid, "name": proc.name, "reason": crash}
        _telemetry.execute(_telemetry.PROCESS_CRASH, {"count": 1}, meta)


#: What ``spawn`` starts: a callable; with ``node=``, also a spawnable name or,
#: on a BEAM node, ``("module", "function")``.
SpawnTarget = Union[Callable[..., Any], str, Tuple[str, str]]


def _new_process(fn: SpawnTarget, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Process:
    if not callable(fn):
        raise TypeError(f"spawn needs a callable, got {type(fn).__name__}")
    pid = _new_pid()
    glet = _idle.pop() if _idle else _ProcessGreenlet(_run_reused, rt._hub or rt.hub)
    proc = Process(pid, glet)
    proc.start = (fn, args, kwargs)
    proc.initial = fn
    spawner = getattr(getcurrent(), "_snowg_proc", None)
    if spawner is not None:
        proc.parent = spawner.pid
    glet._snowg_proc = proc
    pid._proc = proc
    rt.procs[pid.id] = proc
    return proc


def spawn(fn: SpawnTarget, *args: Any, **kwargs: Any) -> Pid:
    """Start ``fn(*args, **kwargs)`` as a new process and return its pid.

    With ``node='name@host'`` the process starts on that node (``fn`` must be
    ``@spawnable`` there, and may be given by its registered name; on an
    Erlang/Elixir node it is ``("module", "function")`` or ``"module:function"``). Never
    blocks locally: the new process runs when the caller next yields; a remote
    spawn blocks until the node answers.

    Raises:
        TypeError: ``fn`` is not callable (locally), or an argument cannot cross nodes.
        SpawnError: the node refused (``fn`` is not spawnable there).
        NoProc: ``node`` was given but this process is not a node.
    """
    if "node" in kwargs:
        node = kwargs.pop("node")
        if node is not None and not _is_this_node(node):
            pid: Pid = _remote_spawn(node, fn, args, kwargs, ())
            return pid
    proc = _new_process(fn, args, kwargs)
    _schedule(proc)
    return proc.pid


def spawn_link(fn: SpawnTarget, *args: Any, **kwargs: Any) -> Pid:
    """Spawn and link in one step: the child cannot end before the link exists.

    ``node=`` and what is raised as for :func:`spawn`.
    """
    me = _current()
    if "node" in kwargs:
        node = kwargs.pop("node")
        if node is not None and not _is_this_node(node):
            pid: Pid = _remote_spawn(node, fn, args, kwargs, ("link",))
            return pid
    proc = _new_process(fn, args, kwargs)
    _add_link(me, proc.pid)
    _add_link(proc, me.pid)
    _schedule(proc)
    return proc.pid


def spawn_monitor(fn: SpawnTarget, *args: Any, **kwargs: Any) -> Tuple[Pid, Ref]:
    """Spawn and monitor in one step; returns ``(pid, ref)``.

    ``node=`` and what is raised as for :func:`spawn`.
    """
    me = _current()
    if "node" in kwargs:
        node = kwargs.pop("node")
        if node is not None and not _is_this_node(node):
            pid_ref: Tuple[Pid, Ref] = _remote_spawn(node, fn, args, kwargs, ("monitor",))
            return pid_ref
    proc = _new_process(fn, args, kwargs)
    ref = make_ref()
    _add_monitor(me, proc, ref, proc.pid)
    _schedule(proc)
    return proc.pid, ref


def spawn_watched(fn: Callable[..., Any], args: Tuple[Any, ...], link: bool) -> Tuple[Pid, Ref]:
    """A local spawn (linked if ``link``) with a monitor by the caller: ``(pid, ref)``, in one step.

    The same links and monitor as :func:`spawn_link` (or :func:`spawn`) then
    :func:`monitor` with no yield between (what ``gen_server``'s synchronous
    start does), with one look-up of the caller. Never blocks.
    """
    me = _current()
    proc = _new_process(fn, args, {})
    if link:
        _add_link(me, proc.pid)
        _add_link(proc, me.pid)
    ref = make_ref()
    _add_monitor(me, proc, ref, proc.pid)
    _schedule(proc)
    return proc.pid, ref


def _remote_spawn(node: str, fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], opts: Tuple[str, ...]) -> Any:
    router = rt.router
    if router is None:
        raise NoProc(f"cannot spawn on {node}: this node is not distributed (call start_node first)")
    return router.spawn(node, fn, args, kwargs, opts)


def _is_this_node(node: str) -> bool:
    return node == rt.node


def set_initial_call(what: Any) -> None:
    """Name what the calling process runs, for introspection (``process_info``'s ``initial_call``).

    A behaviour calls it with its callback class (a GenServer's body is the
    same loop for every server: its class says more). Never blocks.
    """
    _current().initial = what


# -------------------------------------------------------------- self/adoption


def _current() -> Process:
    glet: Any = getcurrent()
    try:
        proc: Optional[Process] = glet._snowg_proc
    except AttributeError:
        proc = None
    if proc is None or proc.state == _DEAD:
        proc = _adopt(glet)
    return proc


def self() -> Pid:  # noqa: A001 - Erlang's name
    """The pid of the calling process.

    A greenlet that is not yet a process (the main greenlet, a plain
    ``gevent.spawn``) is adopted as one on first use.

    Raises:
        RuntimeError: when called in the gevent hub (no process runs there).
    """
    # _current(), inline: a server's start and a supervisor's restart ask it several times
    proc: Optional[Process] = getattr(getcurrent(), "_snowg_proc", None)
    if proc is None or proc.state == _DEAD:
        proc = _current()
    return proc.pid


def _adopt(glet: Any) -> Process:
    if glet is rt.hub:
        raise RuntimeError("the gevent hub is not a process: call snowg from a greenlet")
    pid = _new_pid()
    proc = Process(pid, glet, adopted=True)
    proc.state = _ACTIVE
    pid._proc = proc
    glet._snowg_proc = proc
    rt.procs[pid.id] = proc
    rawlink = getattr(glet, "rawlink", None)
    if rawlink is not None:  # a gevent.Greenlet tells us when it ends
        rawlink(_adopted_greenlet_ended)
    return proc


def _adopted_greenlet_ended(glet: Any) -> None:
    proc = getattr(glet, "_snowg_proc", None)
    if proc is None or proc.state == _DEAD:
        return
    exc = glet.exception
    if exc is None:
        # gevent counts a GreenletExit (gevent.kill) as success; a process ends 'killed'
        reason: Any = "killed" if isinstance(getattr(glet, "value", None), GreenletExit) else "normal"
    elif isinstance(exc, ProcessExit):
        reason = exc.reason
    elif isinstance(exc, GreenletExit):
        reason = "killed"
    else:
        reason = Crash.from_exception(exc)
        _log_crash(proc, reason)
    _terminate(proc, reason)


# -------------------------------------------------------------------- sending


def send(dest: Union[Pid, str, Tuple[str, str]], msg: Any) -> None:
    """Send ``msg`` to a pid, a locally registered name, or ``(name, node)``.

    Never blocks. A message to a dead pid is dropped silently (as in Erlang).

    Raises:
        NoProc: ``dest`` is a local name that nobody has registered.
        TypeError: ``msg`` cannot be sent to another node (names the type).
        ValueError: ``msg`` is too large for the cluster's ``max_frame_size``.
    """
    if type(dest) is Pid:
        proc = dest._proc
        if proc is None:
            _send_unresolved(dest, msg)
            return
    elif type(dest) is str:
        proc = rt.names.get(dest)
        if proc is None:
            raise NoProc(f"no process is registered as {dest!r}")
    elif type(dest) is tuple and len(dest) == 2:
        name, node = dest
        if not _is_this_node(node):
            router = rt.router
            if router is not None:
                router.send_name(name, node, msg, None)
            return
        proc = rt.names.get(name)
        if proc is None:
            raise NoProc(f"no process is registered as {name!r}")
    else:
        raise TypeError(f"send: a destination is a Pid, a name or (name, node), not {type(dest).__name__}")
    if proc.state == _DEAD:
        return
    mb = proc.mailbox
    if mb is None:
        proc.mailbox = mb = deque()
    mb.append(msg)
    if proc.parked and not proc.ready:
        _schedule(proc)


def _send_unresolved(pid: Pid, msg: Any) -> None:
    if pid.node != rt.node:
        # Another node's pid (rt.is_local_node is only true for this node's name).
        router = rt.router
        if router is not None:
            router.send(pid, msg)
        return
    if pid.creation == rt.creation:
        proc = rt.procs.get(pid.id)
        if proc is not None:
            deliver(proc, msg)
    # else: a pid of an earlier run of this node: dropped


def deliver(proc: Process, msg: Any) -> None:
    """Append ``msg`` to a local process's mailbox and wake it (used by the cluster layer)."""
    if proc.state == _DEAD:
        return
    mb = proc.mailbox
    if mb is None:
        proc.mailbox = mb = deque()
    mb.append(msg)
    if proc.parked and not proc.ready:
        _schedule(proc)


def local_process(pid: Any) -> Optional[Process]:
    """The live local process of ``pid``, or None (dead, remote, or not a pid)."""
    if type(pid) is not Pid:
        return None
    proc = pid._proc
    if proc is None:
        if not rt.is_local_node(pid.node, pid.creation):
            return None
        proc = rt.procs.get(pid.id)
        if proc is None:
            return None
    return None if proc.state == _DEAD else proc


def is_local_pid(pid: Pid) -> bool:
    """True when ``pid`` belongs to this node (alive or not)."""
    return pid._proc is not None or rt.is_local_node(pid.node, pid.creation) or pid.node == rt.node


# ------------------------------------------------------------------ receiving


def receive(match: Optional[Callable[[Any], bool]] = None, timeout: Optional[float] = None) -> Any:
    """Take the first message for which ``match(msg)`` is true (any message if None).

    Messages that do not match stay in the mailbox, in order. Blocks the
    calling process (only it) until a message matches.

    Args:
        match: a predicate, or None for "any message".
        timeout: seconds to wait; None waits for ever, 0 only looks.

    Raises:
        snowg.Timeout: no matching message arrived in time.
    """
    # _current(), inline: receive is on every process's hot path
    proc: Optional[Process] = getattr(getcurrent(), "_snowg_proc", None)
    if proc is None or proc.state == _DEAD:
        proc = _current()
    mb = proc.mailbox
    scanned = 0
    if mb:
        if match is None:
            return mb.popleft()
        for msg in mb:
            if match(msg):
                del mb[scanned]
                return msg
            scanned += 1
    if match is None and timeout is None:
        # The usual wait (any message, no limit), on its own: no timer, no scan.
        try:
            while True:
                _park(proc)
                if proc.exit_pending is not None:
                    _exit_pending(proc)
                mb = proc.mailbox
                if mb:
                    return mb.popleft()
        finally:
            proc.parked = False
    if timeout is not None and timeout <= 0:
        raise Timeout(f"no matching message (timeout={timeout})")
    timer = None
    if timeout is not None:
        timer = rt.loop.timer(timeout)
        timer.start(_on_receive_timeout, proc)
    proc.timed_out = False
    try:
        while True:
            _park(proc)
            if proc.exit_pending is not None:
                _exit_pending(proc)  # a signal that ends it came with (or after) the wake-up
            mb = proc.mailbox
            if mb and len(mb) > scanned:
                if match is None:
                    return mb.popleft()
                i = scanned
                for msg in islice(mb, scanned, None):
                    if match(msg):
                        del mb[i]
                        return msg
                    i += 1
                scanned = i
            if proc.timed_out:
                raise Timeout(f"no matching message within {timeout} s")
    finally:
        proc.parked = False
        if timer is not None:
            timer.close()


def _exit_pending(proc: Process) -> None:
    """End the current process now with its pending exit signal (before _throw_exit runs)."""
    reason = proc.exit_pending
    proc.exit_pending = None
    if proc.adopted:
        _terminate(proc, reason)
    raise ProcessExit(reason, by_signal=True)


def _on_receive_timeout(proc: Process) -> None:
    proc.timed_out = True
    if proc.parked:
        proc.parked = False
        proc.glet.switch()


def flush_messages(match: Optional[Callable[[Any], bool]] = None) -> List[Any]:
    """Remove and return every message of the calling process's mailbox that matches."""
    proc = _current()
    mb = proc.mailbox
    if not mb:
        return []
    if match is None:
        everything = list(mb)
        mb.clear()
        return everything
    out: List[Any] = []
    keep: Deque[Any] = deque()
    for m in mb:
        (out if match(m) else keep).append(m)
    proc.mailbox = keep
    return out


# ------------------------------------------------------------ signals / exits


def _kill(proc: Process, reason: Any) -> None:
    """Make ``proc`` end with ``reason`` (raised inside it as ProcessExit)."""
    if proc.state == _DEAD:
        return
    if proc.glet is getcurrent():
        if proc.adopted:
            _terminate(proc, reason)
        raise ProcessExit(reason, by_signal=True)
    if proc.exit_pending is not None:
        return  # already on its way out; the first signal wins
    proc.exit_pending = reason
    if proc.state == _NEW:
        return  # it is on the ready queue and raises as soon as it starts
    rt.loop.run_callback(_throw_exit, proc)


def _throw_exit(proc: Process) -> None:
    reason = proc.exit_pending
    if reason is None or proc.state == _DEAD:
        return
    proc.exit_pending = None
    proc.parked = False
    glet = proc.glet
    if proc.adopted:
        _terminate(proc, reason)
        glet._snowg_proc = None
    if glet.dead:
        return
    glet.throw(ProcessExit(reason, by_signal=True))


def _signal_link_exit(from_pid: Pid, proc: Process, reason: Any) -> None:
    """A process linked to ``proc`` ended with ``reason`` (semantics rules 1, 3, 4, 5)."""
    if proc.state == _DEAD:
        return
    links = proc.links
    if links:
        links.discard(from_pid)  # the link is gone (also when the exit came from another node)
    if proc.trap:
        deliver(proc, _new_tuple(Exit, (from_pid, reason)))  # Exit(...) without its Python __new__
    elif reason != "normal":
        _kill(proc, reason)


def _signal_exit2(from_pid: Pid, proc: Process, reason: Any) -> None:
    """``exit(proc.pid, reason)`` called by ``from_pid`` (semantics rules 1, 2, 4)."""
    if proc.state == _DEAD:
        return
    if reason == "kill":
        _kill(proc, "killed")
    elif proc.trap:
        deliver(proc, Exit(from_pid, reason))
    elif reason == "normal":
        if from_pid == proc.pid:
            _kill(proc, "normal")
    else:
        _kill(proc, reason)


@overload
def exit(reason: Any, /) -> NoReturn: ...  # noqa: A001


@overload
def exit(pid: Pid, reason: Any, /) -> None: ...  # noqa: A001


def exit(*args: Any) -> None:  # noqa: A001 - Erlang's name
    """``exit(reason)`` ends the caller; ``exit(pid, reason)`` sends an exit signal.

    ``exit(reason)`` raises :class:`ProcessExit` in the caller, which
    ``except Exception`` does not catch (it never returns). ``exit(pid,
    reason)`` follows semantics rules 1-4 and never blocks: ``'kill'`` cannot
    be trapped and ends the target with ``'killed'``; a trapping target gets
    ``Exit(sender, reason)``; ``'normal'`` is ignored by a non-trapping target
    other than the caller itself.

    Raises:
        ProcessExit: ``exit(reason)``, in the caller.
        TypeError: a wrong number of arguments, or ``pid`` is not a Pid.
    """
    if len(args) == 1:
        proc = _current()
        if proc.adopted:
            _terminate(proc, args[0])
        raise ProcessExit(args[0])
    if len(args) != 2:
        raise TypeError("exit(reason) or exit(pid, reason)")
    pid, reason = args
    me = _current()
    target = local_process(pid)
    if target is not None:
        _signal_exit2(me.pid, target, reason)
    elif type(pid) is Pid and not is_local_pid(pid) and rt.router is not None:
        rt.router.exit2(me.pid, pid, reason)
    elif type(pid) is not Pid:
        raise TypeError(f"exit: expected a Pid, got {type(pid).__name__}")


def end(reason: Any) -> None:
    """End the calling process with ``reason`` now, without raising; the process's body must return next.

    What ``exit(reason)`` does, for a body that is about to return anyway (a
    GenServer whose handler asked it to stop): links and monitors get
    ``reason`` at once, and no exception unwinds the stack (an exception
    makes a frame object for every frame it leaves: a GenServer's stop
    raised through four, about 8 k instructions of the 129 k of its
    restart). The process is dead when this returns, so the
    body must not call snowg again. A crash reason (:class:`Crash`) makes
    the same telemetry event as ``exit`` with it. An adopted greenlet (one
    snowg did not spawn) has no body of ours to return to: there ``end``
    raises, as ``exit(reason)`` does.

    Raises:
        ProcessExit: only in an adopted greenlet.
    """
    proc = _current()
    if proc.adopted:
        _terminate(proc, reason)
        raise ProcessExit(reason)
    if type(reason) is Crash:
        _crash_event(proc, reason)
    _terminate(proc, reason)


def trap_exit(flag: bool) -> bool:
    """Set the calling process's trap_exit flag; return the previous value."""
    proc = _current()
    old = proc.trap
    proc.trap = bool(flag)
    return old


# --------------------------------------------------------------------- links


def _add_link(proc: Process, other: Pid) -> None:
    links = proc.links
    if links is None:
        proc.links = links = set()
    links.add(other)


def link(pid: Pid) -> None:
    """Link the caller and ``pid`` (both ways). Linking to self does nothing.

    Raises:
        NoProc: ``pid`` is a dead local process and the caller does not trap
            exits (a trapping caller gets ``Exit(pid, 'noproc')`` instead).
    """
    if type(pid) is not Pid:
        raise TypeError(f"link: expected a Pid, got {type(pid).__name__}")
    me = _current()
    if pid == me.pid:
        return
    target = local_process(pid)
    if target is not None:
        _add_link(me, target.pid)
        _add_link(target, me.pid)
        return
    if is_local_pid(pid) or rt.router is None:
        if me.trap:
            deliver(me, Exit(pid, "noproc"))
            return
        raise NoProc(f"cannot link to {pid}: no such process")
    _add_link(me, pid)
    rt.router.link(me.pid, pid)


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``, if any (semantics rule 6)."""
    me = _current()
    if me.links:
        me.links.discard(pid)
    target = local_process(pid)
    if target is not None:
        if target.links:
            target.links.discard(me.pid)
    elif type(pid) is Pid and not is_local_pid(pid) and rt.router is not None:
        rt.router.unlink(me.pid, pid)


# ------------------------------------------------------------------ monitors


def _add_monitor(watcher: Process, target: Process, ref: Ref, reported: Any) -> None:
    if watcher.monitors is None:
        watcher.monitors = {}
    watcher.monitors[ref] = target.pid
    if target.monitored_by is None:
        target.monitored_by = {}
    target.monitored_by[ref] = (watcher.pid, reported)


def monitor(target: Union[Pid, str, Tuple[str, str]]) -> Ref:
    """Monitor a pid, a local name or ``(name, node)``; returns the monitor's ref.

    When the target ends the caller gets ``Down(ref, pid, reason)`` (``pid`` is
    ``(name, node)`` for a monitor by name); a dead or unknown target yields
    ``Down(ref, target, 'noproc')`` at once.
    """
    me = _current()
    ref = make_ref()
    if type(target) is Pid:
        proc = local_process(target)
        if proc is not None:
            _add_monitor(me, proc, ref, proc.pid)
        elif is_local_pid(target) or rt.router is None:
            deliver(me, Down(ref, target, "noproc"))
        else:
            _remote_monitor(me, target, ref, target)
        return ref
    if type(target) is str:
        name, node = target, rt.node
    elif type(target) is tuple and len(target) == 2:
        name, node = target
    else:
        raise TypeError(f"monitor: expected a Pid, a name or (name, node), not {type(target).__name__}")
    reported = (name, node)
    if _is_this_node(node):
        proc = rt.names.get(name)
        if proc is None or proc.state == _DEAD:
            deliver(me, Down(ref, reported, "noproc"))
        else:
            _add_monitor(me, proc, ref, reported)
    elif rt.router is None:
        deliver(me, Down(ref, reported, "noconnection"))
    else:
        _remote_monitor(me, reported, ref, reported)
    return ref


def _remote_monitor(me: Process, target: Any, ref: Ref, reported: Any) -> None:
    if me.monitors is None:
        me.monitors = {}
    me.monitors[ref] = reported
    rt.router.monitor(me.pid, target, ref)  # type: ignore[union-attr]


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor; no ``Down`` for ``ref`` arrives afterwards (semantics rule 11).

    Args:
        ref: the monitor's reference.
        flush: also remove a ``Down`` for ``ref`` already in the mailbox.

    Returns:
        True if the monitor was still active.
    """
    me = _current()
    active = False
    monitors = me.monitors
    # (one pop, not a test then a pop: hashing a Ref runs Python code; a target is never None)
    target = monitors.pop(ref, None) if monitors else None
    if target is not None:
        active = True
        tproc = _monitor_target_process(target)
        if tproc is not None:
            if tproc.monitored_by:
                tproc.monitored_by.pop(ref, None)
        elif rt.router is not None and not _target_is_local(target):
            rt.router.demonitor(me.pid, target, ref)
    if flush and me.mailbox:
        mb = me.mailbox
        for i, m in enumerate(mb):
            if type(m) is Down and m.ref == ref:
                del mb[i]
                break
    return active


def _monitor_target_process(target: Any) -> Optional[Process]:
    if type(target) is Pid:
        return local_process(target)
    return None  # (name, node) of another node


def _target_is_local(target: Any) -> bool:
    if type(target) is Pid:
        return is_local_pid(target)
    return _is_this_node(target[1])


# -------------------------------------------------------------- termination


def _terminate(proc: Process, reason: Any) -> None:
    """Release everything ``proc`` holds and send its exit to links and monitors."""
    if proc.state == _DEAD:
        return
    proc.state = _DEAD
    pid = proc.pid
    rt.procs.pop(pid.id, None)
    if proc.name is not None:
        if rt.names.get(proc.name) is proc:
            del rt.names[proc.name]
    proc.mailbox = None
    proc.parked = False
    proc.exit_pending = None
    armed = proc.call_timer
    if armed is not None:
        proc.call_timer = None
        armed[0].close()
    timers = proc.timers
    if timers:
        proc.timers = None
        for tid in timers:
            entry = rt.timers.pop(tid, None)
            if entry is not None:
                entry[0].close()
    router = rt.router
    monitors = proc.monitors
    if monitors:
        proc.monitors = None
        for ref, target in monitors.items():
            tproc = _monitor_target_process(target)
            if tproc is not None:
                if tproc.monitored_by:
                    tproc.monitored_by.pop(ref, None)
            elif router is not None and not _target_is_local(target):
                router.demonitor(pid, target, ref)
    links = proc.links
    if links:
        proc.links = None
        for other in links:
            oproc = local_process(other)
            if oproc is not None:
                _signal_link_exit(pid, oproc, reason)  # (which drops oproc's link to pid)
            elif router is not None and not is_local_pid(other):
                router.exit_link(pid, other, reason)
    watchers = proc.monitored_by
    if watchers:
        proc.monitored_by = None
        for ref, (watcher, reported) in watchers.items():
            wproc = local_process(watcher)
            if wproc is not None:
                if wproc.monitors:
                    wproc.monitors.pop(ref, None)
                deliver(wproc, _new_tuple(Down, (ref, reported, reason)))  # Down(...), as Exit above
            elif router is not None and not is_local_pid(watcher):
                router.monitor_exit(reported, watcher, ref, reason)
    proc.glet = None
    proc.start = None
    # The pid no longer points at the record: a Process and its Pid pointing at
    # each other are a reference cycle, which only the cyclic GC frees, and its
    # collections cost a fifth of a restart. A dead pid then reads as ended,
    # as it did.
    pid._proc = _ENDED


# -------------------------------------------------------------------- reset


def reset_runtime(limit: float = 10.0) -> List[Pid]:
    """End every local process, cancel every timer and free every name.

    The calling greenlet's adopted process (if any) ends with ``'normal'``;
    every other live process is killed (``'killed'``). Used between tests
    (``snowg.testing.reset_runtime``), so one test's leftovers cannot reach
    the next. Blocks until they have all ended, at most ``limit`` seconds.

    Args:
        limit: seconds to wait for the killed processes to end.

    Returns:
        The pids that were killed.
    """
    me: Any = getcurrent()
    adopted = getattr(me, "_snowg_proc", None)
    if adopted is not None:
        _terminate(adopted, "normal")
        me._snowg_proc = None
    strays = list(rt.procs.values())
    for proc in strays:
        _kill(proc, "killed")
    deadline = time.monotonic() + limit
    while (rt.procs or rt.ready) and time.monotonic() < deadline:
        gevent.sleep(0)
    for tid, (timer, _owner) in list(rt.timers.items()):
        timer.close()
        del rt.timers[tid]
    rt.names.clear()
    return [p.pid for p in strays]
