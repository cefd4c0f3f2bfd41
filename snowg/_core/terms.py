"""The value types a snowg program passes around: pids, refs, and the runtime's messages.

``Pid`` and ``Ref`` carry the node name and the node's *creation* so that a pid
from an earlier run of a node never reaches a process of a later run. The
local fast path does not pay for that: a ``Pid`` made by this runtime keeps a
direct reference to its process (``_proc``), so ``send`` needs no table lookup
and no string comparison.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any, NamedTuple, Optional, Tuple, Union

NONODE = "nonode@nohost"


class Atom(str):
    """An Erlang atom: a ``str`` that is encoded as an atom, not as a binary.

    ``true``, ``false`` and ``undefined`` decode to ``True``, ``False`` and
    ``None``, not to atoms; ``Atom("true")`` still encodes as ``true``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


# This node's (name, creation), kept current by snowg._core.remote when the
# node starts or stops distribution. Pids of this node hash on their id alone
# (their node and creation are rewritten in place, see ``Pid.__hash__``).
_local_node: Tuple[str, int] = (NONODE, 0)


def set_local_node(node: str, creation: int) -> None:
    """Tell the pid hash this node's current name and creation (called on a rename)."""
    global _local_node
    _local_node = (node, creation)


class Pid:
    """A process identifier: ``Pid(node, id, creation)``.

    Hashable and compared by value. ``str(pid)`` reads ``<node.id.creation>``.
    Pids of local processes are made by the runtime; a ``Pid`` built by hand or
    decoded from the network is resolved to the local process when its node and
    creation are this node's.
    """

    __slots__ = ("node", "id", "creation", "_proc", "_ext", "_hash")

    def __init__(self, node: str, id: int, creation: int = 0) -> None:
        self.node = node
        self.id = id
        self.creation = creation
        self._proc: Any = None
        self._ext: Any = None  # the wire encoding, once it has been sent (snowg.cluster._codec)
        self._hash: Optional[int] = None

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            type(other) is Pid and self.id == other.id and self.creation == other.creation and self.node == other.node
        )

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        # On node, id and creation, so that pids a peer makes up with equal ids
        # do not all collide in a dict. The hash is computed once and kept: a
        # local pid's node and creation are rewritten in place when the node
        # starts or stops distribution, and its hash must not change. Pids of
        # this node hash on their id alone, which a rename does not change, so
        # a pid decoded from the wire hashes as the local one it equals.
        h = self._hash
        if h is None:
            node = self.node
            if self.creation == _local_node[1] and node == _local_node[0]:
                h = hash(self.id)
            else:
                h = hash((node, self.id, self.creation))
            self._hash = h
        return h

    def __lt__(self, other: "Pid") -> bool:
        return (self.node, self.creation, self.id) < (other.node, other.creation, other.id)

    def __repr__(self) -> str:
        return f"<{self.node}.{self.id}.{self.creation}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        return (Pid, (self.node, self.id, self.creation))


class Ref(NamedTuple):
    """A unique reference (monitor references, call tags): ``Ref(node, id, creation)``.

    Hashable and compared by value; equal only to another ``Ref`` (never to a
    plain tuple with the same fields). It is a tuple underneath so that its
    hash is the C tuple hash: every ``call`` puts its ref in two monitor
    tables and takes it out again, and a hash written in Python cost a tenth
    of a local call. The node's str hash is salted per process, so a peer
    cannot make refs that collide.
    """

    node: str
    id: int
    creation: int = 0

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Ref and tuple.__eq__(self, other))

    def __ne__(self, other: object) -> bool:  # (tuple's own __ne__ would compare as a tuple)
        return not self.__eq__(other)

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.id}.{self.creation}>"


# Set after the class, where the type checker does not read it as a field. A
# type's slot takes tuple's C hash directly when given its slot wrapper.
Ref.__hash__ = tuple.__hash__  # type: ignore[method-assign]


class TimerRef(NamedTuple):
    """The handle ``send_after`` returns; pass it to ``cancel_timer``."""

    id: int


class Exit(NamedTuple):
    """An exit signal turned into a message (the receiver traps exits): who sent it, and why."""

    pid: Pid
    reason: Any


class Down(NamedTuple):
    """A monitor fired: ``ref`` from ``monitor``, the monitored ``pid`` and its exit reason.

    ``pid`` is ``(name, node)`` for a monitor set up by name.
    """

    ref: Ref
    pid: Union[Pid, Tuple[str, str]]
    reason: Any


class NodeUp(NamedTuple):
    """A node connected (delivered to processes that called ``monitor_node``... on connect)."""

    node: str


class NodeDown(NamedTuple):
    """The connection to ``node`` went away, for ``reason``."""

    node: str
    reason: Any


class Crash(NamedTuple):
    """The exit reason of a process that ended with an uncaught exception.

    It crosses nodes (three strings), and ``str()`` of it names the exception type.
    """

    type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    @classmethod
    def from_exception(cls, exc: BaseException) -> "Crash":
        """Build the crash reason of ``exc`` (its type name, message and traceback text)."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type(exc).__name__, str(exc), tb)


def is_shutdown_reason(reason: Any) -> bool:
    """True for a deliberate end: ``'normal'``, ``'shutdown'`` or ``('shutdown', term)``.

    These end a GenServer without an error report (semantics rule 22) and do
    not restart a transient child (semantics rule 15).
    """
    return (
        reason == "normal"
        or reason == "shutdown"
        or (type(reason) is tuple and len(reason) == 2 and reason[0] == "shutdown")
    )


def pid_node(pid: Any) -> Optional[str]:
    """The node of a pid, or of a ``(name, node)`` destination."""
    if type(pid) is Pid:
        return pid.node
    if type(pid) is tuple and len(pid) == 2:
        node: str = pid[1]
        return node
    return None
