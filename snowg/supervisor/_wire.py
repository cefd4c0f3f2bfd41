"""The wire form of child specs, and the names of the runners that rebuild them on another node.

A ``ChildSpec`` holds Python callables, which never cross nodes; its wire
form names them instead. It is used when a nested supervisor runs on another
node (its children travel with it) and when ``start_child`` is given a spec
for a supervisor on another node.

Wire form of a ChildSpec (a plain list): ``['spec', id, kind, target, args,
kwargs, restart, shutdown, type, node, significant]`` with ``kind`` one of
``'fn'`` (``target``: the function's spawnable name), ``'gen_server'``
(``target``: the class's spawnable name) or ``'supervisor'`` (``target``:
None, ``args``: ``[children in wire form]``, ``kwargs``: its flags).

A remote ``GenServer`` or nested supervisor is started through one of two
runners, ``@spawnable`` under the fixed names below on every node that
imports ``snowg`` (see ``_runners``); the parent spawns them by name.
"""

from __future__ import annotations

from typing import Any, List

from ..cluster import check_term, lookup_spawnable, spawnable_name
from ._spec import FLAG_OPTIONS, SUPERVISOR, ChildSpec, NestedSupervisor, Target, gen_server_class

#: The runner of a remote GenServer child: ``(starter, class_name, args, name)``.
RUN_GEN_SERVER = "snowg.supervisor.run_gen_server"
#: The runner of a remote nested supervisor: ``(starter, children_wire, options)``.
RUN_SUPERVISOR = "snowg.supervisor.run_supervisor"

#: Supervisor flags that may cross to a remote supervisor (the test clock may not).
REMOTE_SUP_OPTIONS = tuple(o for o in FLAG_OPTIONS if not o.startswith("_"))

Wire = List[Any]


class BadRemoteSpec(ValueError):
    """A spec list that cannot be rebuilt on this node; ``reason`` is a plain term."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_spec(spec: ChildSpec, where: str) -> Wire:
    """The wire form of ``spec``.

    Raises:
        ValueError: its fn has no spawnable name, or a nested supervisor has
            options that cannot cross (``where`` names the supervisor).
        TypeError: some term of it cannot cross nodes.
    """
    fn, args, kwargs = spec.fn, spec.args, spec.kwargs
    target: Any
    if isinstance(fn, NestedSupervisor):
        kind, target = "supervisor", None
        unknown = set(kwargs) - set(REMOTE_SUP_OPTIONS)
        if unknown:
            raise ValueError(
                f"{where}: the nested supervisor {spec.id!r} has options that cannot cross: {sorted(unknown)}"
            )
        args = (encode_children(args[0] if args else [], f"the supervisor {spec.id!r}"),)
    else:
        kind = "fn" if gen_server_class(fn) is None else "gen_server"
        target = spawnable_name(fn)
        if target is None:
            what = getattr(fn, "__qualname__", type(fn).__name__)
            raise ValueError(
                f"{where} runs on another node, so its child {spec.id!r} must be @spawnable "
                f"(or named by its registered name); {what} is not"
            )
    wire = [
        "spec",
        spec.id,
        kind,
        target,
        tuple(args),
        dict(kwargs),
        spec.restart,
        spec.shutdown,
        spec.type,
        list(spec.nodes) or None,
        spec.significant,
    ]
    try:
        check_term(wire)
    except TypeError as e:
        raise TypeError(f"{where}: the spec of its child {spec.id!r} cannot cross nodes: {e}") from None
    return wire


def encode_children(specs: List[ChildSpec], where: str) -> List[Wire]:
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
    fn: Target
    if kind == "supervisor":
        fn = SUPERVISOR
        args = (decode_children(args[0] if args else []),)
    elif kind in ("fn", "gen_server") and type(target) is str:
        found = lookup_spawnable(target)
        if kind == "gen_server" and gen_server_class(found) is None:
            raise BadRemoteSpec(("not_spawnable", target))
        if found is None:
            if node is None:
                raise BadRemoteSpec(("not_spawnable", target))
            fn = target  # it runs further on: its name is enough
        else:
            fn = found
    else:
        raise BadRemoteSpec(("bad_child_spec", repr(wire)[:200]))
    try:
        return ChildSpec(
            cid,
            (fn, tuple(args), dict(kwargs)),
            restart=restart,
            shutdown=shutdown,
            type=type_,
            node=node,
            significant=significant,
        )
    except (TypeError, ValueError) as e:
        raise BadRemoteSpec(("bad_child_spec", str(e))) from None


def decode_children(wires: Any) -> List[ChildSpec]:
    """Rebuild a child list from its wire form (see :func:`decode_spec`)."""
    if type(wires) is not list:
        raise BadRemoteSpec(("bad_child_spec", repr(wires)[:200]))
    return [decode_spec(w) for w in wires]
