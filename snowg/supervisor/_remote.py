"""What lets a supervisor's child run on another node: the wire form of specs, and the runners.

A remote worker that is a plain function is started with a remote
``spawn_link`` of that ``@spawnable`` function. A remote ``GenServer`` or a
remote nested supervisor needs more: it must be started *synchronously* (it
counts as started once it has initialised), and its class or its child specs
must cross the wire. So the parent supervisor remote-spawns one of the two
runners below, both ``@spawnable`` under fixed names on every node that
imports ``snowg``; the runner becomes the child itself (it runs the
``GenServer`` loop in the spawned process) and acknowledges its start to the
parent with gen_server's start protocol (``('$ack', ref, ok, reason,
child_id)``), which is made of plain terms and so works across nodes.

* ``snowg.supervisor.run_gen_server(starter, class_name, args, name)``: the
  class is looked up by its ``@spawnable`` name on the child's node.
* ``snowg.supervisor.run_supervisor(starter, children, options)``: the child
  specs travel in their wire form (below) and are rebuilt on the child's
  node, each ``fn`` looked up there by its ``@spawnable`` name.

Wire form of a ChildSpec (a plain list): ``['spec', id, kind, target, args,
kwargs, restart, shutdown, type, node, significant]`` with ``kind`` one of
``'fn'`` (``target``: the function's spawnable name), ``'gen_server'``
(``target``: the class's spawnable name) or ``'supervisor'`` (``target``:
None, ``args``: ``[children in wire form]``, ``kwargs``: its flags).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from .._core import exit
from ..cluster import _codec as codec
from ..cluster import lookup_spawnable as lookup
from ..cluster import spawnable
from ..gen_server import GenServer, ack_fail, run_server
from ._spec import ChildSpec, check_children, check_connect_timeout, check_flags, spawnable_name

#: Supervisor flags that may cross to a remote supervisor.
REMOTE_SUP_OPTIONS = ("strategy", "intensity", "period", "name", "auto_shutdown", "connect_timeout")


class BadRemoteSpec(ValueError):
    """A spec list that cannot be rebuilt on this node; ``reason`` is a plain term."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


def is_nested_supervisor(fn: Any) -> bool:
    """``fn`` is ``supervisor.start_link`` (the start of a ``child_spec`` nested supervisor)."""
    return bool(getattr(fn, "_snowg_sync_start", False))


def is_gen_server(fn: Any) -> bool:
    return isinstance(fn, type) and issubclass(fn, GenServer)


# ------------------------------------------------------------------ wire form


def encode_spec(spec: ChildSpec, where: str) -> list:
    """The wire form of ``spec``.

    Raises:
        ValueError: its fn has no spawnable name (``where`` names the supervisor).
        TypeError: some term of it cannot cross nodes.
    """
    fn, args, kwargs = spec.start
    if is_nested_supervisor(fn):
        kind, target = "supervisor", None
        options = dict(kwargs)
        unknown = set(options) - set(REMOTE_SUP_OPTIONS)
        if unknown:
            raise ValueError(
                f"{where}: the nested supervisor {spec.id!r} has options that cannot cross: {sorted(unknown)}"
            )
        args = (encode_children(args[0] if args else [], f"the supervisor {spec.id!r}"),)
        kwargs = options
    else:
        kind = "gen_server" if is_gen_server(fn) else "fn"
        target = spawnable_name(fn)
        if target is None:
            what = getattr(fn, "__qualname__", type(fn).__name__)
            raise ValueError(
                f"{where} runs on another node, so its child {spec.id!r} must be @spawnable "
                f"(or named by its registered name); {what} is not"
            )
    wire = [
        "spec", spec.id, kind, target, tuple(args), dict(kwargs), spec.restart, spec.shutdown,
        spec.type, list(spec.nodes) or None, spec.significant,
    ]
    try:
        codec.encode(wire)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: the spec of its child {spec.id!r} cannot cross nodes: {e}") from None
    return wire


def encode_children(specs: List[ChildSpec], where: str) -> List[list]:
    """The wire form of a supervisor's child list (see :func:`encode_spec`)."""
    return [encode_spec(s, where) for s in specs]


def decode_spec(wire: Any) -> ChildSpec:
    """Rebuild a ChildSpec on this node.

    Raises:
        BadRemoteSpec: malformed, or a function/class that is not ``@spawnable`` here
            (and must run here).
    """
    if type(wire) is not list or len(wire) != 11 or wire[0] != "spec":
        raise BadRemoteSpec(("bad_child_spec", repr(wire)[:200]))
    _tag, cid, kind, target, args, kwargs, restart, shutdown, type_, node, significant = wire
    if kind == "supervisor":
        from . import start_link  # the package imports this module: import at call time

        fn: Any = start_link
        args = (decode_children(args[0] if args else []),)
    elif kind in ("fn", "gen_server") and type(target) is str:
        fn = lookup(target)
        if kind == "gen_server" and not is_gen_server(fn):
            raise BadRemoteSpec(("not_spawnable", target))
        if fn is None:
            if node is None:
                raise BadRemoteSpec(("not_spawnable", target))
            fn = target  # it runs further on: its name is enough
    else:
        raise BadRemoteSpec(("bad_child_spec", repr(wire)[:200]))
    try:
        return ChildSpec(cid, (fn, tuple(args), dict(kwargs)), restart=restart, shutdown=shutdown,
                         type=type_, node=node, significant=significant)
    except (TypeError, ValueError) as e:
        raise BadRemoteSpec(("bad_child_spec", str(e))) from None


def decode_children(wires: Any) -> List[ChildSpec]:
    if type(wires) is not list:
        raise BadRemoteSpec(("bad_child_spec", repr(wires)[:200]))
    return [decode_spec(w) for w in wires]


def remote_flags(options: Dict[str, Any]) -> tuple:
    """The ``Supervisor.init`` flags of a remote supervisor, from its options (validated)."""
    strategy = options.get("strategy", "one_for_one")
    intensity = options.get("intensity", 1)
    period = options.get("period", 5)
    auto_shutdown = options.get("auto_shutdown", "never")
    check_flags(strategy, intensity, period, auto_shutdown)
    from ._child import CONNECT_TIMEOUT

    connect_timeout = check_connect_timeout(options.get("connect_timeout", CONNECT_TIMEOUT))
    return (strategy, intensity, float(period), auto_shutdown, time.monotonic, options.get("name"),
            connect_timeout)


# -------------------------------------------------------------------- runners


@spawnable("snowg.supervisor.run_gen_server")
def run_gen_server(starter: tuple, class_name: str, args: tuple, name: Any) -> None:
    """The body of a remote GenServer child: look its class up here, then run it (with init ack)."""
    cls = lookup(class_name) if type(class_name) is str else None
    if not is_gen_server(cls):
        ack_fail(starter, ("not_spawnable", class_name))
        exit("normal")
    run_server(starter, cls, tuple(args), name)  # type: ignore[arg-type]


@spawnable("snowg.supervisor.run_supervisor")
def run_supervisor(starter: tuple, children: Any, options: Any) -> None:
    """The body of a remote nested supervisor: rebuild its specs here, then run it (with init ack).

    It acknowledges once all its children have started, so the parent's start
    order still means "started and initialised".
    """
    from ._server import Supervisor

    try:
        if type(options) is not dict:
            raise BadRemoteSpec(("bad_flags", repr(options)[:200]))
        flags = remote_flags(options)
        specs = check_children(decode_children(children), flags[0])
    except BadRemoteSpec as e:
        ack_fail(starter, e.reason)
        exit("normal")
    except (TypeError, ValueError) as e:
        ack_fail(starter, ("bad_flags", str(e)))
        exit("normal")
    run_server(starter, Supervisor, (flags, specs), flags[5])


__all__ = [
    "BadRemoteSpec", "REMOTE_SUP_OPTIONS", "decode_children", "encode_children", "is_gen_server",
    "is_nested_supervisor", "run_gen_server", "run_supervisor",
]
