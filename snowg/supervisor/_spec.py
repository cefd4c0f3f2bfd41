"""Child specifications and supervisor flags, validated where they are made.

A :class:`ChildSpec` says how one child is started, restarted and stopped;
:class:`Flags` say how a supervisor restarts its children. Both are immutable
records checked when they are built: errors are ``ValueError``/``TypeError``
naming the field, raised in the code that built the bad value (the caller's
mistake), not later inside the supervisor process.

A nested supervisor is a child whose ``fn`` is :data:`SUPERVISOR`, a marker of
its own type (:class:`NestedSupervisor`) rather than a function: its ``args``
are ``(children,)`` and its ``kwargs`` the supervisor's options. The parent
starts it as a supervisor (synchronously, its own children first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ..cluster import check_node_name, check_term, spawnable_name
from ..gen_server import GenServer

RESTARTS = ("permanent", "transient", "temporary")
TYPES = ("worker", "supervisor")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")

#: Default seconds a supervisor waits to (re)connect to the node of a remote child
#: (its ``connect_timeout`` flag); not the cluster's own dial timeout.
CHILD_CONNECT_TIMEOUT = 5.0

#: ``ChildSpec.shutdown``: seconds, ``'brutal_kill'`` or ``'infinity'``.
Shutdown = Union[float, str]


class NestedSupervisor:
    """The type of :data:`SUPERVISOR`, the ``fn`` of a nested supervisor's spec."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<nested supervisor>"


#: The ``fn`` of a nested supervisor's :class:`ChildSpec` (see ``supervisor.child_spec``).
SUPERVISOR = NestedSupervisor()

#: What a ChildSpec starts: a function, a ``GenServer`` class, a spawnable name
#: (a ``str``, for a remote child) or :data:`SUPERVISOR`.
Target = Union[Callable[..., Any], str, NestedSupervisor]


def gen_server_class(fn: Any) -> Optional[Type[GenServer]]:
    """``fn`` if it is a ``GenServer`` subclass (a child started through its ``start_link``), else None."""
    return fn if isinstance(fn, type) and issubclass(fn, GenServer) else None


class _DefaultShutdown:
    """Sentinel: the default shutdown depends on the type (5 s workers, 'infinity' supervisors)."""

    def __repr__(self) -> str:
        return "5.0 (worker) / 'infinity' (supervisor)"


_DEFAULT_SHUTDOWN: Any = _DefaultShutdown()


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Args:
        id: the child's name inside its supervisor (hashable, not None).
        start: ``(fn, args)`` or ``(fn, args, kwargs)``. The child is started
            as ``spawn_link(fn, *args, **kwargs)``; when ``fn`` is a
            ``GenServer`` subclass it is ``fn.start_link(*args, **kwargs)``
            (the child counts as started once ``init`` returned).
        restart: ``'permanent'`` (always restarted), ``'transient'``
            (restarted unless it ends with ``'normal'``, ``'shutdown'`` or
            ``('shutdown', term)``) or ``'temporary'`` (never restarted; its
            spec is removed when it ends).
        shutdown: seconds to wait after ``exit(child, 'shutdown')`` before
            killing it, ``'brutal_kill'`` or ``'infinity'``. Default 5 s for
            workers, ``'infinity'`` for supervisors.
        type: ``'worker'`` or ``'supervisor'``.
        node: where the child runs (remote supervision): ``'name@host'``, or a
            non-empty list of candidate nodes, tried in order at every
            (re)start. ``fn`` must then be ``@spawnable`` (or be its
            registered name, a ``str``), and ``args``/``kwargs`` must be
            terms that can cross nodes. ``None`` (default): this node.
        significant: with the supervisor's ``auto_shutdown``, the end of this
            child may end the supervisor; needs ``transient`` or ``temporary``.

    Raises:
        ValueError, TypeError: a field is invalid (the message names it).
    """

    id: Any
    start: Tuple[Any, ...]
    restart: str = "permanent"
    shutdown: Shutdown = field(default=_DEFAULT_SHUTDOWN)
    type: str = "worker"
    node: Union[str, Sequence[str], None] = None
    significant: bool = False

    def __post_init__(self) -> None:
        if self.id is None:
            raise ValueError("ChildSpec.id must not be None")
        try:
            hash(self.id)
        except TypeError:
            raise TypeError(f"ChildSpec.id must be hashable, got {type(self.id).__name__}") from None
        if self.node is not None:
            object.__setattr__(self, "node", _check_node(self.node))
        object.__setattr__(self, "start", _check_start(self.start, self.node is not None))
        if self.restart not in RESTARTS:
            raise ValueError(f"ChildSpec.restart must be one of {RESTARTS}, got {self.restart!r}")
        if self.type not in TYPES:
            raise ValueError(f"ChildSpec.type must be one of {TYPES}, got {self.type!r}")
        if self.shutdown is _DEFAULT_SHUTDOWN:
            object.__setattr__(self, "shutdown", "infinity" if self.type == "supervisor" else 5.0)
        _check_shutdown(self.shutdown)
        if self.node is not None:
            _check_remote_start(self)
        if not isinstance(self.significant, bool):
            raise TypeError(f"ChildSpec.significant must be a bool, got {self.significant!r}")
        if self.significant and self.restart == "permanent":
            raise ValueError("ChildSpec.significant: a significant child must be 'transient' or 'temporary'")

    @property
    def nodes(self) -> Tuple[str, ...]:
        """The candidate nodes in order (``()`` for a local child)."""
        node = self.node
        if node is None:
            return ()
        return (node,) if isinstance(node, str) else tuple(node)

    @property
    def fn(self) -> Target:
        """What the child starts (``start[0]``)."""
        fn: Target = self.start[0]
        return fn

    @property
    def args(self) -> Tuple[Any, ...]:
        """The positional arguments of ``fn`` (``start[1]``, a tuple)."""
        args: Tuple[Any, ...] = self.start[1]
        return args

    @property
    def kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of ``fn`` (``start[2]``, ``{}`` when not given)."""
        kwargs: Dict[str, Any] = self.start[2]
        return kwargs

    @property
    def is_supervisor(self) -> bool:
        """Whether the child is a nested supervisor (its ``fn`` is :data:`SUPERVISOR`)."""
        return isinstance(self.start[0], NestedSupervisor)


def _check_node(node: Any) -> Union[str, Tuple[str, ...]]:
    if isinstance(node, str):
        _check_node_name(node)
        return node
    if isinstance(node, (list, tuple)):
        if not node:
            raise ValueError("ChildSpec.node: the list of candidate nodes is empty")
        for n in node:
            if not isinstance(n, str):
                raise TypeError(f"ChildSpec.node: a candidate node must be a 'name@host' str, got {n!r}")
            _check_node_name(n)
        if len(set(node)) != len(node):
            raise ValueError(f"ChildSpec.node: duplicate candidate nodes in {list(node)!r}")
        return tuple(node)
    raise TypeError(f"ChildSpec.node must be a 'name@host' str or a list of them, got {node!r}")


def _check_node_name(name: str) -> None:
    try:
        check_node_name(name)
    except ValueError as e:
        raise ValueError(f"ChildSpec.node: {e}") from None


def _check_remote_start(spec: ChildSpec) -> None:
    """A remote child's start must be nameable on the other node and its terms must cross.

    A nested supervisor's children are checked by whoever made its spec
    (``child_spec`` puts them in their wire form).
    """
    fn, args, kwargs = spec.start
    if "node" in kwargs:
        raise ValueError("ChildSpec.start: a remote child cannot take a keyword argument named 'node'")
    if spec.is_supervisor:
        return
    if spawnable_name(fn) is None:
        what = getattr(fn, "__qualname__", type(fn).__name__)
        raise ValueError(
            f"ChildSpec.start: the child {spec.id!r} runs on another node (node={spec.node!r}), so its "
            f"fn must be @spawnable (or its registered name as a str); {what} is not"
        )
    for what, term in (("args", args), ("kwargs", kwargs)):
        try:
            check_term(term)
        except TypeError as e:
            raise TypeError(
                f"ChildSpec.start: the {what} of the remote child {spec.id!r} cannot cross nodes: {e}"
            ) from None


def _check_start(start: Any, remote: bool) -> Tuple[Target, Tuple[Any, ...], Dict[str, Any]]:
    if not isinstance(start, (tuple, list)) or len(start) not in (2, 3):
        raise ValueError(f"ChildSpec.start must be (fn, args) or (fn, args, kwargs), got {start!r}")
    fn, args = start[0], start[1]
    kwargs = start[2] if len(start) == 3 else {}
    if remote and isinstance(fn, str):
        if not fn:
            raise ValueError("ChildSpec.start: the registered name of a remote fn is empty")
    elif not callable(fn) and not isinstance(fn, NestedSupervisor):
        raise TypeError(f"ChildSpec.start: fn must be callable, got {type(fn).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"ChildSpec.start: args must be a tuple or list, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"ChildSpec.start: kwargs must be a dict, got {type(kwargs).__name__}")
    return (fn, tuple(args), dict(kwargs))


def _check_shutdown(shutdown: Any) -> None:
    if shutdown in ("brutal_kill", "infinity"):
        return
    if isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)) or shutdown < 0:
        raise ValueError(f"ChildSpec.shutdown must be seconds >= 0, 'brutal_kill' or 'infinity', got {shutdown!r}")


def check_children(children: Iterable[Any], strategy: str) -> List[ChildSpec]:
    """Validate the list of child specs of a new supervisor.

    Raises:
        TypeError: an element is not a ChildSpec.
        ValueError: duplicate ids, or not exactly one template for simple_one_for_one.
    """
    if isinstance(children, ChildSpec):
        raise TypeError("children must be a list of ChildSpec, got a single ChildSpec")
    specs = list(children)
    seen = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children: expected ChildSpec, got {type(spec).__name__}")
        if spec.id in seen:
            raise ValueError(f"children: duplicate child id {spec.id!r}")
        seen.add(spec.id)
    if strategy == "simple_one_for_one" and len(specs) != 1:
        raise ValueError(f"children: simple_one_for_one needs exactly one template spec, got {len(specs)}")
    return specs


# ------------------------------------------------------------------- flags

#: The options of a supervisor that are its flags (``_clock`` only for tests, never crosses nodes).
FLAG_OPTIONS = ("strategy", "intensity", "period", "name", "auto_shutdown", "connect_timeout", "_clock")


@dataclass(frozen=True)
class Flags:
    """How a supervisor restarts its children (see ``snowg.supervisor.start_link``).

    Raises:
        ValueError, TypeError: a flag is invalid (the message names it).
    """

    strategy: str = "one_for_one"
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: str = "never"
    name: Optional[str] = None
    connect_timeout: float = CHILD_CONNECT_TIMEOUT
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        strategy, intensity, period = self.strategy, self.intensity, self.period
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
            raise ValueError(f"intensity must be an int >= 0, got {intensity!r}")
        if isinstance(period, bool) or not isinstance(period, (int, float)) or period <= 0:
            raise ValueError(f"period must be a number of seconds > 0, got {period!r}")
        if self.auto_shutdown not in AUTO_SHUTDOWNS:
            raise ValueError(f"auto_shutdown must be one of {AUTO_SHUTDOWNS}, got {self.auto_shutdown!r}")
        timeout = self.connect_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"connect_timeout must be a number of seconds > 0, got {timeout!r}")
        object.__setattr__(self, "period", float(period))
        object.__setattr__(self, "connect_timeout", float(timeout))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Flags:
        """The flags given as ``start_link``'s keyword options (a nested supervisor's ``kwargs``).

        Raises:
            TypeError: an option that is not a flag.
            ValueError: a bad flag.
        """
        unknown = set(options) - set(FLAG_OPTIONS)
        if unknown:
            raise TypeError(f"unknown supervisor options {sorted(unknown)}")
        fields = {k: v for k, v in options.items() if k != "_clock"}
        clock = options.get("_clock")
        if clock is not None:
            fields["clock"] = clock
        return cls(**fields)

    @property
    def simple(self) -> bool:
        """Whether the strategy is ``simple_one_for_one``."""
        return self.strategy == "simple_one_for_one"
