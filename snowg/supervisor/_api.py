"""The supervisor's API: start one, describe a nested one, and the dynamic API.

The dynamic API (``start_child`` ...) sends a request to the supervisor
process with ``call`` and waits for its answer, ``('ok', value)`` or
``('error', kind, detail)``; ``kind`` becomes the exception OTP's error names
(semantics rule 19).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

from .._core import Pid
from .._errors import AlreadyPresent, AlreadyStarted, NotFound, Restarting, Running, SimpleOneForOne, StartError
from ..gen_server import Dest, call, is_remote
from ._server import start_supervisor
from ._spec import CHILD_CONNECT_TIMEOUT, FLAG_OPTIONS, SUPERVISOR, ChildSpec, Flags, check_children
from ._wire import encode_spec

#: A supervisor: its pid, its registered name, or ``(name, node)``.
SupRef = Dest


def start_link(
    children: Iterable[ChildSpec],
    strategy: str = "one_for_one",
    intensity: int = 1,
    period: float = 5,
    name: Optional[str] = None,
    auto_shutdown: str = "never",
    *,
    connect_timeout: float = CHILD_CONNECT_TIMEOUT,
    _clock: Optional[Callable[[], float]] = None,
) -> Pid:
    """Start a supervisor linked to the caller; return its pid once every child runs.

    Blocks until each child, in list order, has started (a ``GenServer`` or a
    nested supervisor: has initialised).

    Args:
        children: the child specs (for ``simple_one_for_one``: exactly one template).
        strategy: see the package docstring.
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
    return _start(children, True, strategy, intensity, period, name, auto_shutdown, connect_timeout, _clock)


def start(
    children: Iterable[ChildSpec],
    strategy: str = "one_for_one",
    intensity: int = 1,
    period: float = 5,
    name: Optional[str] = None,
    auto_shutdown: str = "never",
    *,
    connect_timeout: float = CHILD_CONNECT_TIMEOUT,
    _clock: Optional[Callable[[], float]] = None,
) -> Pid:
    """Like :func:`start_link` without the link."""
    return _start(children, False, strategy, intensity, period, name, auto_shutdown, connect_timeout, _clock)


def _start(
    children: Iterable[ChildSpec],
    link: bool,
    strategy: str,
    intensity: int,
    period: float,
    name: Optional[str],
    auto_shutdown: str,
    connect_timeout: float,
    clock: Optional[Callable[[], float]],
) -> Pid:
    flags = Flags(
        strategy=strategy,
        intensity=intensity,
        period=period,
        auto_shutdown=auto_shutdown,
        name=name,
        connect_timeout=connect_timeout,
        clock=clock or time.monotonic,
    )
    # A supervisor never ignores its start (its init does not return 'ignore').
    return cast(Pid, start_supervisor(children, flags, link=link))


_SPEC_OPTIONS = ("restart", "shutdown", "node", "significant")


def child_spec(id: Any, children: Iterable[ChildSpec], **options: Any) -> ChildSpec:
    """The spec of a nested supervisor (``type='supervisor'``, shutdown ``'infinity'``).

    Args:
        id: the child id in the parent supervisor.
        children: the nested supervisor's child specs.
        **options: supervisor flags (``strategy``, ``intensity``, ``period``,
            ``name``, ``auto_shutdown``, ``connect_timeout``) and spec fields
            (``restart``, ``shutdown``, ``node``, ``significant``). With
            ``node``, the nested supervisor runs on that node (see the package
            docstring, "Remote children"): every child in ``children`` must
            then be ``@spawnable`` and made of terms that cross nodes.

    Raises:
        TypeError: an unknown option, or (with ``node``) a child whose terms cannot cross.
        ValueError: a bad flag, child list or spec field, or (with ``node``)
            a child that is not ``@spawnable``.
    """
    sup = {k: v for k, v in options.items() if k in FLAG_OPTIONS}
    fields = {k: v for k, v in options.items() if k in _SPEC_OPTIONS}
    unknown = set(options) - set(sup) - set(fields)
    if unknown:
        raise TypeError(f"child_spec: unknown options {sorted(unknown)}")
    specs = check_children(children, sup.get("strategy", "one_for_one"))
    Flags.from_options(sup)
    spec = ChildSpec(id, (SUPERVISOR, (specs,), sup), type="supervisor", **fields)
    if spec.node is not None:
        encode_spec(spec, "child_spec")  # its children cross with it: they must be able to
    return spec


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
    sup: SupRef,
    spec_or_args: Union[ChildSpec, Sequence[Any]],
    timeout: Optional[float] = None,
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
    pid: Optional[Pid]
    if isinstance(spec_or_args, ChildSpec) and is_remote(sup):
        # A ChildSpec holds Python callables: it crosses in its wire form.
        pid = _request(sup, "start_child_wire", encode_spec(spec_or_args, "start_child"), timeout)
    else:
        pid = _request(sup, "start_child", spec_or_args, timeout)
    return pid


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
    pid: Optional[Pid] = _request(sup, "restart_child", id, timeout)
    return pid


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
    children: List[Tuple[Any, Any, str]] = _request(sup, "which_children", None, timeout)
    return children


def count_children(sup: SupRef, timeout: Optional[float] = 5.0) -> Dict[str, int]:
    """``{'specs', 'active', 'supervisors', 'workers'}`` counts, as OTP's.

    Raises:
        NoProc: the supervisor is not there.
        CallTimeout: no answer in ``timeout`` seconds.
    """
    counts: Dict[str, int] = _request(sup, "count_children", None, timeout)
    return counts
