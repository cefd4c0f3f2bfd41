"""The supervisor process: a GenServer that traps exits and acts on ``_state``'s rules.

Replies to the dynamic API are ``('ok', value)`` or ``('error', kind,
detail)`` (plain terms, so they cross nodes); the client functions in
``snowg.supervisor`` turn ``kind`` into the exception.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .._core import Exit, Pid, count_give_up, count_restart, send, trap_exit
from .._core import self as _self
from .._core import is_shutdown_reason
from .._core import telemetry as _telemetry
from .._errors import StartError
from ..gen_server import From, GenServer, Result
from ._child import (
    ChildStartFailed,
    shutdown_child,
    shutdown_children,
    start_child_process,
)
from ._spec import ChildSpec, Flags, check_children
from ._state import (
    RESTARTING,
    Child,
    State,
    add_restart,
    auto_shutdown_due,
    count,
    ids_to_start,
    ids_to_stop,
    is_shutdown_error,
    should_restart,
    which,
)
from ._wire import BadRemoteSpec, decode_spec

log = logging.getLogger("snowg")

_TRY_AGAIN = "$sup_try_again"


def start_supervisor(children: Iterable[ChildSpec], flags: Flags, link: bool) -> Optional[Pid]:
    """Start a supervisor process; return its pid once every child runs.

    Blocks until each child, in list order, has started. ``link``: linked to
    the caller (its parent); else it is its own parent.

    Raises:
        TypeError, ValueError: a bad child list (before anything starts).
        StartError: a child failed to start (``.child_id`` names it); the
            children started before it were stopped, in reverse order. Also
            when ``flags.name`` is taken.
    """
    specs = check_children(children, flags.strategy)
    try:
        if link:
            return Supervisor.start_link(flags, specs, name=flags.name)
        return Supervisor.start(flags, specs, name=flags.name)
    except StartError as e:
        r = e.reason
        if type(r) is tuple and len(r) == 2 and r[0] == "shutdown" and type(r[1]) is tuple and len(r[1]) == 3:
            _tag, child_id, reason = r[1]
            raise StartError(reason, child_id) from None
        raise


def _start_nested(children: List[ChildSpec], options: Mapping[str, Any]) -> Optional[Pid]:
    """Start a nested supervisor, linked to the calling (parent) supervisor (see :func:`start_supervisor`).

    Raises:
        TypeError, ValueError: a bad option or child list.
        StartError: as :func:`start_supervisor`.
    """
    return start_supervisor(children, Flags.from_options(options), link=True)


def _start(state: State, spec: ChildSpec, extra_args: Tuple[Any, ...] = ()) -> Optional[Pid]:
    """Start the child of ``spec`` (see ``_child.start_child_process``)."""
    return start_child_process(spec, extra_args, state.flags.connect_timeout, _start_nested)


class ApiError(Exception):
    """Internal: a dynamic API request refused with OTP's error ``kind``."""

    def __init__(self, kind: str, detail: Any = None) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


class Supervisor(GenServer):
    """The supervisor's callbacks. Users go through ``snowg.supervisor``'s functions."""

    # ----------------------------------------------------------------- init

    def init(self, flags: Flags, specs: List[ChildSpec]) -> Any:
        trap_exit(True)
        state = State(flags)
        if state.simple:
            state.template = specs[0]
            return state
        for spec in specs:  # semantics rule 13: in list order, each started and initialised
            try:
                pid = _start(state, spec)
            except ChildStartFailed as e:
                _report(state, logging.ERROR, "start_error", spec.id, None, e.reason)
                self.terminate("shutdown", state)  # the started ones, in reverse
                return ("stop", ("shutdown", ("failed_to_start_child", spec.id, e.reason)))
            state.children[spec.id] = Child(spec, pid)
            if pid is not None:  # None: ignored, kept with no process
                state.by_pid[pid] = spec.id
        return state

    def terminate(self, reason: Any, state: State) -> None:
        """Stop every child, in reverse start order (semantics rule 14)."""
        if state.simple:
            pids = list(state.dynamic)
            state.dynamic.clear()
            state.dyn_restarting.clear()
            assert state.template is not None
            self._stopped(state, state.template, None, shutdown_children(pids, state.template.shutdown))
            return
        for cid in reversed(list(state.children)):
            _stop_static(state, cid)

    def format_state(self, state: State) -> Dict[str, Any]:
        """``snowg.sys.get_status``'s view of a supervisor: its flags and children, in plain terms."""
        flags = state.flags
        return {
            "strategy": flags.strategy,
            "intensity": flags.intensity,
            "period": flags.period,
            "auto_shutdown": flags.auto_shutdown,
            "name": flags.name,
            "children": [{"id": cid, "pid": pid, "type": kind} for cid, pid, kind in which(state)],
            "recent_restarts": len(state.restarts),
        }

    # ------------------------------------------------------- exits, retries

    def handle_info(self, msg: Any, state: State) -> Result:
        if type(msg) is Exit:
            return self._child_exited(state, msg.pid, msg.reason)
        if type(msg) is tuple and len(msg) == 2 and msg[0] == _TRY_AGAIN:
            return self._try_again(state, msg[1])
        log.warning("supervisor %s received an unexpected message: %r", _sup_name(state), msg)
        return ("noreply", state)

    def _child_exited(self, state: State, pid: Any, reason: Any) -> Result:
        if state.simple:
            args = state.dynamic.pop(pid, None)
            if args is None:
                return ("noreply", state)  # not a child (any more): ignored, as in OTP
            spec = state.template
            assert spec is not None
            _report_exit(state, None, pid, reason)
            if should_restart(spec.restart, reason):
                return self._restart_dynamic(state, pid, args)
            return self._auto_shutdown(state, spec)
        cid = state.by_pid.pop(pid, None)
        if cid is None:
            return ("noreply", state)
        child = state.children[cid]
        child.pid = None
        _report_exit(state, cid, pid, reason)
        if should_restart(child.spec.restart, reason):
            return self._restart(state, cid)
        if child.spec.restart == "temporary":
            del state.children[cid]  # semantics rule 15: its spec goes with it
        return self._auto_shutdown(state, child.spec)

    def _try_again(self, state: State, key: Any) -> Result:
        """A retry of a failed restart (sent to ourselves, so other requests went first)."""
        if state.simple:
            args = state.dyn_restarting.pop(key, None)
            if args is None:
                return ("noreply", state)
            return self._restart_dynamic(state, key, args)
        child = state.children.get(key)
        if child is None or child.pid != RESTARTING:
            return ("noreply", state)  # terminated or deleted meanwhile
        return self._restart(state, key)

    def _count_restart(self, state: State, key: Any) -> bool:
        flags = state.flags
        ok = add_restart(state.restarts, flags.clock(), flags.period, flags.intensity)
        if not ok:
            _report(state, logging.ERROR, "reached_max_restart_intensity", key, None, "shutdown")
        _restart_event(state, key, ok)
        return ok

    def _restart(self, state: State, cid: Any) -> Result:
        """Restart ``cid`` by the strategy; a failed start is retried through our mailbox."""
        if not self._count_restart(state, cid):
            state.children[cid].pid = None
            return ("stop", "shutdown", state)  # terminate() stops the others
        strategy = state.flags.strategy
        if strategy == "one_for_one":
            to_start: List[Any] = [cid]  # nothing to stop (ids_to_stop's answer, without the copy of the order)
        else:
            order = list(state.children)
            for oid in ids_to_stop(order, cid, strategy):
                _stop_static(state, oid)
            to_start = ids_to_start(order, cid, strategy)
        for sid in to_start:
            child = state.children.get(sid)
            if child is None or type(child.pid) is Pid:
                continue  # a temporary bystander (removed), or still running
            try:
                pid = _start(state, child.spec)
            except ChildStartFailed as e:
                _report(state, logging.ERROR, "start_error", sid, None, e.reason)
                child.pid = RESTARTING
                send(_self(), (_TRY_AGAIN, sid))
                return ("noreply", state)
            child.pid = pid
            if pid is not None:
                state.by_pid[pid] = sid
        return ("noreply", state)

    def _restart_dynamic(self, state: State, old_pid: Pid, args: Tuple[Any, ...]) -> Result:
        if not self._count_restart(state, None):
            return ("stop", "shutdown", state)
        assert state.template is not None
        try:
            pid = _start(state, state.template, args)
        except ChildStartFailed as e:
            _report(state, logging.ERROR, "start_error", None, None, e.reason)
            state.dyn_restarting[old_pid] = args
            send(_self(), (_TRY_AGAIN, old_pid))
            return ("noreply", state)
        if pid is not None:  # an ignored restart is simply gone, as in OTP
            state.dynamic[pid] = args
        return ("noreply", state)

    def _auto_shutdown(self, state: State, spec: ChildSpec) -> Result:
        """semantics rule 18: a significant child ended and was not restarted."""
        if not spec.significant or state.flags.auto_shutdown == "never":
            return ("noreply", state)
        if state.simple:
            alive = bool(state.dynamic)
        else:
            alive = any(c.spec.significant and type(c.pid) is Pid for c in state.children.values())
        if auto_shutdown_due(state.flags.auto_shutdown, alive):
            log.info("supervisor %s: auto_shutdown (%s)", _sup_name(state), state.flags.auto_shutdown)
            return ("stop", "shutdown", state)
        return ("noreply", state)

    def _stopped(self, state: State, spec: ChildSpec, cid: Any, reasons: Dict[Pid, Any]) -> None:
        for pid, reason in reasons.items():
            if is_shutdown_error(reason, spec.shutdown, spec.restart):
                _report(state, logging.ERROR, "shutdown_error", cid, pid, reason)

    # ----------------------------------------------------------- dynamic API

    def handle_call(self, request: Any, from_: From, state: State) -> Result:
        op, arg = request
        value: Any = None
        try:
            if op == "start_child":
                value = self._start_child(state, arg)
            elif op == "start_child_wire":  # from another node: a spec in wire form
                try:
                    spec = decode_spec(arg)
                except BadRemoteSpec as e:
                    raise ApiError("badarg", e.reason) from None
                value = self._start_child(state, spec)
            elif op == "terminate_child":
                self._terminate_child(state, arg)
            elif op == "restart_child":
                value = self._restart_child(state, arg)
            elif op == "delete_child":
                self._delete_child(state, arg)
            elif op == "which_children":
                value = which(state)
            elif op == "count_children":
                value = count(state)
            else:
                raise ApiError("badarg", f"unknown supervisor request {op!r}")
        except ApiError as e:
            return ("reply", ("error", e.kind, e.detail), state)
        return ("reply", ("ok", value), state)

    def _start_child(self, state: State, arg: Any) -> Optional[Pid]:
        if state.simple:
            if isinstance(arg, ChildSpec) or not isinstance(arg, (tuple, list)):
                raise ApiError("badarg", "a simple_one_for_one supervisor's start_child takes a list of extra args")
            args = tuple(arg)
            assert state.template is not None
            try:
                pid = _start(state, state.template, args)
            except ChildStartFailed as e:
                raise ApiError("start_error", (e.reason, None)) from None
            if pid is not None:
                state.dynamic[pid] = args
            return pid
        if not isinstance(arg, ChildSpec):
            raise ApiError("badarg", f"start_child needs a ChildSpec, got {type(arg).__name__}")
        old = state.children.get(arg.id)
        if old is not None:
            if type(old.pid) is Pid:
                raise ApiError("already_started", old.pid)
            raise ApiError("already_present", arg.id)
        try:
            pid = _start(state, arg)
        except ChildStartFailed as e:
            raise ApiError("start_error", (e.reason, arg.id)) from None
        state.children[arg.id] = Child(arg, pid)
        if pid is not None:
            state.by_pid[pid] = arg.id
        return pid

    def _terminate_child(self, state: State, key: Any) -> None:
        if state.simple:
            if type(key) is not Pid:
                raise ApiError("simple_one_for_one", key)
            if key in state.dynamic:
                del state.dynamic[key]
                spec = state.template
                assert spec is not None
                self._stopped(state, spec, None, {key: shutdown_child(key, spec.shutdown)})
                return
            if state.dyn_restarting.pop(key, None) is not None:
                return
            raise ApiError("not_found", key)
        cid = state.by_pid.get(key) if type(key) is Pid else key
        if cid is None or cid not in state.children:
            raise ApiError("not_found", key)
        _stop_static(state, cid)  # keeps the spec, except a temporary child's
        return

    def _lookup_stopped(self, state: State, cid: Any) -> Child:
        """The child ``cid`` if it is stopped, else the OTP error (semantics rule 19)."""
        if state.simple:
            raise ApiError("simple_one_for_one", cid)
        child = state.children.get(cid)
        if child is None:
            raise ApiError("not_found", cid)
        if type(child.pid) is Pid:
            raise ApiError("running", cid)
        if child.pid == RESTARTING:
            raise ApiError("restarting", cid)
        return child

    def _restart_child(self, state: State, cid: Any) -> Optional[Pid]:
        child = self._lookup_stopped(state, cid)
        try:
            pid = _start(state, child.spec)
        except ChildStartFailed as e:
            raise ApiError("start_error", (e.reason, cid)) from None
        child.pid = pid
        if pid is not None:
            state.by_pid[pid] = cid
        return pid

    def _delete_child(self, state: State, cid: Any) -> None:
        self._lookup_stopped(state, cid)
        del state.children[cid]


# ------------------------------------------------------------------ helpers


def _stop_static(state: State, cid: Any) -> None:
    """Stop the static child ``cid`` if it runs; forget it if it is temporary."""
    child = state.children[cid]
    pid = child.pid
    child.pid = None
    if type(pid) is Pid:
        state.by_pid.pop(pid, None)
        reason = shutdown_child(pid, child.spec.shutdown)
        if is_shutdown_error(reason, child.spec.shutdown, child.spec.restart):
            _report(state, logging.ERROR, "shutdown_error", cid, pid, reason)
    if child.spec.restart == "temporary":
        del state.children[cid]


def _sup_name(state: State) -> Any:
    return state.flags.name if state.flags.name is not None else _self()


def _report(state: State, level: int, kind: str, cid: Any, pid: Any, reason: Any) -> None:
    log.log(
        level,
        "supervisor %s: %s: child %r (%s), reason: %s",
        _sup_name(state),
        kind,
        cid,
        pid,
        reason,
    )


def _restart_event(state: State, cid: Any, ok: bool) -> None:
    """Count a restart (``ok``), or the one too many that makes the supervisor give up; and its telemetry event.

    The counts (``snowg._core.restart_counts``, which ``snowg.observe`` reads)
    are kept in line; the event is made only when a handler is attached to it.
    """
    me = state.me
    if me is None:
        me = state.me = _self()
    flags = state.flags
    if ok:
        count_restart(me, flags.name)
        event = _telemetry.SUPERVISOR_RESTART
    else:
        count_give_up(me, flags.name)
        event = _telemetry.SUPERVISOR_GIVE_UP
    if event in _telemetry.attached:
        base = state.event_meta
        if base is None:  # the same for every event of this supervisor but child_id
            base = state.event_meta = {
                "supervisor": me,
                "name": flags.name,
                "child_id": None,
                "strategy": flags.strategy,
                "intensity": flags.intensity,
                "period": flags.period,
            }
        meta = base.copy()  # a dict of its own per event: a handler may keep it
        meta["child_id"] = cid
        _telemetry.execute(event, {"restarts": len(state.restarts)}, meta)


def _report_exit(state: State, cid: Any, pid: Any, reason: Any) -> None:
    """OTP's child_terminated report: ERROR for an abnormal end, INFO otherwise."""
    if not log.isEnabledFor(logging.ERROR):  # then INFO, below it, is off too: no report at all
        return
    level = logging.INFO if is_shutdown_reason(reason) else logging.ERROR
    if log.isEnabledFor(level):
        _report(state, level, "child_terminated", cid, pid, reason)
