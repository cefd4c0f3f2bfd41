"""OTP's supervisor on snowg processes.

A supervisor is a process (a :class:`~snowg.GenServer` that traps exits)
that starts its children, watches them through links, and restarts them
according to a *strategy* (semantics rules 13-20):

* ``'one_for_one'`` (default): only the child that ended is restarted.
* ``'one_for_all'``: the others are stopped (reverse start order), then all
  are started again (start order).
* ``'rest_for_one'``: the children started after the one that ended are
  stopped (reverse order), then it and they are started again.
* ``'simple_one_for_one'``: one template spec and no children at start;
  ``start_child(sup, extra_args)`` starts the template with ``args +
  extra_args``. Children are kept in a dict by pid (cheap with 10,000s of
  them) and are stopped all at once, not one by one. Their id is None.

Restart types (``ChildSpec.restart``): ``'permanent'`` (default) always,
``'transient'`` unless the reason is ``'normal'``, ``'shutdown'`` or
``('shutdown', term)``, ``'temporary'`` never (not even when a sibling's end
takes it down), and its spec is forgotten when it ends.

Restart intensity: at most ``intensity`` (default 1) restarts within
``period`` (default 5) seconds, the window including its boundary. One more
and the supervisor stops all its children (reverse order), logs
``reached_max_restart_intensity`` (logger ``snowg``) and exits with
``'shutdown'``, which its own supervisor sees as the end of a child:
failures escalate up the tree. ``intensity=0``: the first restart ends it.
A restart whose start fails is retried through a message the supervisor
sends itself (so that it keeps answering requests meanwhile); each retry
counts as a restart.

Stopping a child (``ChildSpec.shutdown``): monitor it, ``exit(child,
'shutdown')``, wait up to ``shutdown`` seconds (default 5 for workers,
``'infinity'`` for supervisors) for it to end, then ``exit(child, 'kill')``;
``'brutal_kill'`` kills at once. A supervisor stops its children when it
ends: when its parent sends it an exit signal (with that signal's reason),
on too many restarts, or by ``auto_shutdown``:

* ``'never'`` (default);
* ``'any_significant'``: when any ``significant`` child ends and is not restarted;
* ``'all_significant'``: when the last running significant child ends so.

Reports go to the ``snowg`` logger, named as OTP's: ``child_terminated``
(ERROR for an abnormal end, INFO for a deliberate one), ``start_error``,
``shutdown_error`` (a child that did not end with the expected reason while
being stopped), ``reached_max_restart_intensity``.

Remote children (``ChildSpec(node=...)``):

* ``node='name@host'``: the child is started with a remote ``spawn_link`` of
  its ``fn``, which must be ``@spawnable`` (or be given by its registered
  name, a ``str``); ``args``/``kwargs`` must be terms that cross nodes. Its
  pid carries that node; its end arrives as an ordinary trapped exit signal
  and drives the strategy as for a local child. A restart goes to the same
  node, never silently to this one.
* ``node=['a@h', 'b@h', ...]``: candidate nodes. At every start and restart
  the child starts on the first one that can be reached, in list order; so
  when its node is lost it comes back on the next candidate (and on an
  earlier one again once that is back, at a later restart). A candidate that
  is this node starts the child here.
* Node loss: the child ends with ``'noconnection'`` (an abnormal end; restart
  types apply). A node that is not connected is connected on demand (to its
  last known address) for at most ``connect_timeout`` seconds (a flag of
  ``start_link``, default 5). When no candidate can be reached the start
  fails with reason ``'noconnection'``, and like any failed restart it is
  retried through the supervisor's mailbox, each retry counting toward
  intensity: a node that stays away ends the supervisor with ``'shutdown'``;
  a node that is back in time (e.g. restarted under the same name) gets the
  child back.
* Stopping a remote child honours its ``shutdown`` exactly as for a local one
  (monitor, ``'shutdown'``, wait for ``Down``, then ``'kill'``); a child whose
  node is gone counts as stopped at once (its ``Down`` is ``'noconnection'``).
* A remote ``GenServer`` child: the class must be ``@spawnable`` (decorate the
  class itself: a subclass does not inherit the name). The parent spawns the
  runner ``snowg.supervisor.run_gen_server`` on the node, which looks the
  class up there and runs the server in the spawned process; the child counts
  as started once ``init`` returned there (an acknowledgement to the parent).
  ``kwargs`` may hold ``name`` (registered on that node) and ``timeout``.
* A remote nested supervisor: ``child_spec(id, children, node=...)``. Its
  specs travel to the node in a wire form (each ``fn`` by its spawnable
  name, looked up there) and the runner ``snowg.supervisor.run_supervisor``
  runs the supervisor in the spawned process; it counts as started once its
  own children started (an acknowledgement to the parent). Its children
  without ``node`` run on its node; it restarts them there by its own
  strategy, and ends (stopping them) when the parent's node is lost.
  ``which_children``/``count_children``/``start_child`` work on its remote pid.
* Mixed trees (local and remote children) stop and start in exactly the
  same order as local ones under every strategy.

The dynamic API (``start_child`` ...) sends a request to the supervisor
process and waits for its answer; it raises ``NoProc`` when the supervisor
is gone. Errors follow OTP (semantics rule 19) as ``SupervisorError`` subclasses;
on a ``simple_one_for_one`` supervisor, ``restart_child`` and
``delete_child`` (and ``terminate_child`` with anything but a pid) raise
:class:`SimpleOneForOne` (OTP's ``{error, simple_one_for_one}``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .._core import Pid
from .._errors import (
    AlreadyPresent,
    AlreadyStarted,
    NotFound,
    Restarting,
    Running,
    StartError,
    SupervisorError,
)
from ..gen_server import call
from ._server import Supervisor
from ._child import CONNECT_TIMEOUT
from ..cluster.node import node as this_node
from ._remote import encode_spec, run_gen_server, run_supervisor
from ._spec import ChildSpec, check_children, check_connect_timeout, check_flags

__all__ = [
    "CONNECT_TIMEOUT", "ChildSpec", "SimpleOneForOne", "child_spec", "count_children", "delete_child", "restart_child",
    "run_gen_server", "run_supervisor", "start", "start_child", "start_link", "terminate_child",
    "which_children",
]

SupRef = Union[Pid, str, Tuple[str, str]]


class SimpleOneForOne(SupervisorError):
    """The operation needs a child id, and a simple_one_for_one supervisor has none."""


def start_link(
    children: Iterable[ChildSpec],
    strategy: str = "one_for_one",
    intensity: int = 1,
    period: float = 5,
    name: Optional[str] = None,
    auto_shutdown: str = "never",
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    _clock: Optional[Callable[[], float]] = None,
) -> Pid:
    """Start a supervisor linked to the caller; return its pid once every child runs.

    Blocks until each child, in list order, has started (a ``GenServer`` or a
    nested supervisor: has initialised).

    Args:
        children: the child specs (for ``simple_one_for_one``: exactly one template).
        strategy: see the module docstring.
        intensity: restarts allowed within ``period``.
        period: seconds of the restart window.
        name: register the supervisor locally under this name.
        auto_shutdown: ``'never'``, ``'any_significant'`` or ``'all_significant'``.
        connect_timeout: seconds to wait, at each (re)start of a remote
            child, to connect to a candidate node that is not connected.
        _clock: private, for tests: the monotonic clock of the restart window.

    Raises:
        ValueError, TypeError: a bad flag or child list (raised before anything starts).
        StartError: a child failed to start (``.child_id`` names it, ``.reason``
            says why); the children started before it were stopped in reverse
            order, the supervisor is gone, and no exit signal reaches the caller.
            Also when ``name`` is taken (reason ``('already_started', pid)``).
    """
    return _start(True, children, strategy, intensity, period, name, auto_shutdown, connect_timeout, _clock)


# A nested supervisor's start is synchronous: the parent supervisor calls this
# rather than spawning it (see _child.start_child_process).
start_link._snowg_sync_start = True  # type: ignore[attr-defined]


def start(
    children: Iterable[ChildSpec],
    strategy: str = "one_for_one",
    intensity: int = 1,
    period: float = 5,
    name: Optional[str] = None,
    auto_shutdown: str = "never",
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    _clock: Optional[Callable[[], float]] = None,
) -> Pid:
    """Like :func:`start_link` without the link."""
    return _start(False, children, strategy, intensity, period, name, auto_shutdown, connect_timeout, _clock)


def _start(
    link: bool,
    children: Iterable[ChildSpec],
    strategy: str,
    intensity: int,
    period: float,
    name: Optional[str],
    auto_shutdown: str,
    connect_timeout: float,
    clock: Optional[Callable[[], float]],
) -> Pid:
    check_flags(strategy, intensity, period, auto_shutdown)
    connect_timeout = check_connect_timeout(connect_timeout)
    specs = check_children(children, strategy)
    flags = (strategy, intensity, float(period), auto_shutdown, clock or time.monotonic, name, connect_timeout)
    try:
        if link:
            return Supervisor.start_link(flags, specs, name=name)
        return Supervisor.start(flags, specs, name=name)
    except StartError as e:
        r = e.reason
        if type(r) is tuple and len(r) == 2 and r[0] == "shutdown" and type(r[1]) is tuple and len(r[1]) == 3:
            _tag, child_id, reason = r[1]
            raise StartError(reason, child_id) from None
        raise


_SUP_OPTIONS = ("strategy", "intensity", "period", "name", "auto_shutdown", "connect_timeout", "_clock")
_SPEC_OPTIONS = ("restart", "shutdown", "node", "significant")


def child_spec(id: Any, children: Iterable[ChildSpec], **options: Any) -> ChildSpec:
    """The spec of a nested supervisor (``type='supervisor'``, shutdown ``'infinity'``).

    Args:
        id: the child id in the parent supervisor.
        children: the nested supervisor's child specs.
        **options: supervisor flags (``strategy``, ``intensity``, ``period``,
            ``name``, ``auto_shutdown``, ``connect_timeout``) and spec fields
            (``restart``, ``shutdown``, ``node``, ``significant``). With
            ``node``, the nested supervisor runs on that node (see the module
            docstring, "Remote children"): every child in ``children`` must
            then be ``@spawnable`` and made of terms that cross nodes.

    Raises:
        TypeError: an unknown option.
        ValueError: a bad flag, child list or spec field.
    """
    sup = {k: v for k, v in options.items() if k in _SUP_OPTIONS}
    fields = {k: v for k, v in options.items() if k in _SPEC_OPTIONS}
    unknown = set(options) - set(sup) - set(fields)
    if unknown:
        raise TypeError(f"child_spec: unknown options {sorted(unknown)}")
    specs = check_children(children, sup.get("strategy", "one_for_one"))
    check_flags(
        sup.get("strategy", "one_for_one"), sup.get("intensity", 1), sup.get("period", 5),
        sup.get("auto_shutdown", "never"),
    )
    if "connect_timeout" in sup:
        check_connect_timeout(sup["connect_timeout"])
    return ChildSpec(id, (start_link, (specs,), sup), type="supervisor", **fields)


# ------------------------------------------------------------- dynamic API

_ERRORS: Dict[str, Callable[[Any], Exception]] = {
    "already_started": AlreadyStarted,
    "already_present": AlreadyPresent,
    "not_found": NotFound,
    "running": Running,
    "restarting": Restarting,
    "simple_one_for_one": SimpleOneForOne,
    "badarg": ValueError,
    "start_error": lambda d: StartError(d[0], d[1]),
}


def _request(sup: SupRef, op: str, arg: Any, timeout: Optional[float]) -> Any:
    answer = call(sup, (op, arg), timeout)
    if answer[0] == "ok":
        return answer[1]
    _error, kind, detail = answer
    raise _ERRORS[kind](detail)


def start_child(
    sup: SupRef, spec_or_args: Union[ChildSpec, Sequence[Any]], timeout: Optional[float] = None,
) -> Optional[Pid]:
    """Add and start a child; return its pid (None: a ``GenServer`` whose ``init`` returned ``'ignore'``).

    ``spec_or_args`` is a ``ChildSpec``, or for ``simple_one_for_one`` the
    extra args appended to the template's. Blocks until the child started
    (no time limit by default, like OTP).

    Raises:
        AlreadyStarted: a child with that id runs (``.pid``).
        AlreadyPresent: a child with that id exists, not running.
        StartError: the child failed to start (its spec is not kept).
        TypeError: a ChildSpec for a supervisor on another node whose
            terms cannot cross (its fn must be ``@spawnable``, ValueError else).
        ValueError: a ChildSpec for simple_one_for_one, or args for another strategy.
        NoProc: the supervisor is not there.
    """
    if isinstance(spec_or_args, ChildSpec) and _is_remote(sup):
        # A ChildSpec holds Python callables: it crosses in its wire form.
        return _request(sup, "start_child_wire", encode_spec(spec_or_args, "start_child"), timeout)
    return _request(sup, "start_child", spec_or_args, timeout)


def _is_remote(sup: SupRef) -> bool:
    here = this_node()
    if type(sup) is Pid:
        return sup.node != here
    return type(sup) is tuple and len(sup) == 2 and sup[1] != here


def terminate_child(sup: SupRef, id_or_pid: Any, timeout: Optional[float] = None) -> None:
    """Stop a child (by id, or by pid); keep its spec unless it is temporary or dynamic.

    Blocks until the child ended (its ``shutdown`` time at most; no limit by default).

    Raises:
        NotFound: no such child.
        SimpleOneForOne: not a pid, on a simple_one_for_one supervisor.
        NoProc: the supervisor is not there.
    """
    _request(sup, "terminate_child", id_or_pid, timeout)


def restart_child(sup: SupRef, id: Any, timeout: Optional[float] = None) -> Optional[Pid]:
    """Start a stopped child again from its spec; return the new pid (None if it ignored the start).

    Raises:
        NotFound, Running, Restarting: see semantics rule 19.
        StartError: it failed to start (the spec is kept).
        SimpleOneForOne: on a simple_one_for_one supervisor.
        NoProc: the supervisor is not there.
    """
    return _request(sup, "restart_child", id, timeout)


def delete_child(sup: SupRef, id: Any, timeout: Optional[float] = 5.0) -> None:
    """Forget the spec of a stopped child.

    Raises:
        NotFound, Running, Restarting: see semantics rule 19.
        SimpleOneForOne: on a simple_one_for_one supervisor.
        NoProc: the supervisor is not there.
        CallTimeout: no answer in ``timeout`` seconds.
    """
    _request(sup, "delete_child", id, timeout)


def which_children(sup: SupRef, timeout: Optional[float] = 5.0) -> List[Tuple[Any, Any, str]]:
    """``[(id, pid | 'restarting' | None, type)]`` in start order (id None for dynamic children).

    Raises:
        NoProc: the supervisor is not there.
        CallTimeout: no answer in ``timeout`` seconds.
    """
    return _request(sup, "which_children", None, timeout)


def count_children(sup: SupRef, timeout: Optional[float] = 5.0) -> Dict[str, int]:
    """``{'specs', 'active', 'supervisors', 'workers'}`` counts, as OTP's.

    Raises:
        NoProc: the supervisor is not there.
        CallTimeout: no answer in ``timeout`` seconds.
    """
    return _request(sup, "count_children", None, timeout)
