"""Session frames: their tags and the layout each tag must have.

After the handshake, every frame is an array ``[tag, *fields]``. This module
names the tags of the core protocol (messages, links, monitors, exits,
spawns, peer lists, ticks) and checks a decoded frame against its tag's
layout before anything acts on it, so a handler never sees a field of the
wrong type. Upper layers add their own tags with :func:`register_frame`
(through :func:`snowg.cluster.register_frame_handler`); this module knows
nothing of what they mean.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .._core.terms import Pid, Ref
from ._framing import MalformedFrame
from ._names import is_node_name, loggable

__all__ = [
    "DEMONITOR",
    "EXTENSION_TAGS",
    "EXIT",
    "EXIT2",
    "FieldCheck",
    "LINK",
    "MONITOR",
    "MONITOR_EXIT",
    "PEER_LIST",
    "SEND",
    "SEND_NAME",
    "SPAWN_REPLY",
    "SPAWN_REQUEST",
    "TAG_NAMES",
    "TICK",
    "UNLINK",
    "of_type",
    "register_frame",
    "validate_frame",
]

# A field's check: True when the value is acceptable; None accepts any term.
FieldCheck = Optional[Callable[[Any], bool]]

# Core tags. Upper layers register others (the global registry uses 12-14
# and 17-19, WebSocket rooms 16, process groups 20-23, PubSub 24); 25-31
# are free.
# A frame of an extension tag that this node never registered (its layer is
# not imported here: a worker node without snowg.ws hears a room broadcast)
# is not the peer's fault: it is dropped, not treated as a protocol error.
EXTENSION_TAGS = range(12, 32)
TICK = 0
SEND = 1
SEND_NAME = 2
LINK = 3
UNLINK = 4
EXIT = 5
EXIT2 = 6
MONITOR = 7
DEMONITOR = 8
MONITOR_EXIT = 9
SPAWN_REQUEST = 10
SPAWN_REPLY = 11
PEER_LIST = 15


def of_type(*types: type) -> Callable[[Any], bool]:
    """A field check accepting values whose type is exactly one of ``types`` (no subclasses)."""
    allowed = frozenset(types)
    return lambda value: type(value) in allowed


def _is_name_node(value: Any) -> bool:
    return type(value) is tuple and len(value) == 2 and type(value[0]) is str and is_node_name(value[1])


def _is_monitor_exit_target(value: Any) -> bool:
    return type(value) is Pid or _is_name_node(value)


def _is_kwargs(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str for k in value)


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _is_peer_list(value: Any) -> bool:
    return type(value) is list and all(
        type(p) in (list, tuple) and len(p) == 2 and type(p[0]) is str and type(p[1]) is str for p in value
    )


_ANY: FieldCheck = None
_PID = of_type(Pid)
_REF = of_type(Ref)
_STR = of_type(str)
_PID_OR_STR = of_type(Pid, str)

TAG_NAMES: Dict[int, str] = {}
# For each tag, the checks of its fields.
_SPECS: Dict[int, Tuple[FieldCheck, ...]] = {}


def register_frame(tag: int, name: str, fields: Sequence[FieldCheck]) -> None:
    """Declare the frame ``[tag, *fields]`` so that :func:`validate_frame` accepts it.

    Args:
        tag: the frame's tag, a small int not used by another frame.
        name: the tag's name, for error messages (``'GLOBAL_SYNC'``).
        fields: one check per field (see :data:`FieldCheck`).

    Raises:
        ValueError: ``tag`` is already declared (two layers claim it: a bug in
            the layer registering second).
    """
    if type(tag) is not int or tag < 0:
        raise ValueError(f"a frame tag is an int >= 0, got {tag!r}")
    if tag in _SPECS:
        raise ValueError(f"frame tag {tag} is already declared as {TAG_NAMES[tag]}; {name} needs another")
    TAG_NAMES[tag] = name
    _SPECS[tag] = tuple(fields)


for _tag, _name, _fields in (
    (TICK, "TICK", ()),
    (SEND, "SEND", (_PID, _ANY)),
    (SEND_NAME, "SEND_NAME", (of_type(Pid, type(None)), _STR, _ANY)),
    (LINK, "LINK", (_PID, _PID)),
    (UNLINK, "UNLINK", (_PID, _PID)),
    (EXIT, "EXIT", (_PID, _PID, _ANY)),
    (EXIT2, "EXIT2", (_PID, _PID, _ANY)),
    (MONITOR, "MONITOR", (_PID, _PID_OR_STR, _REF)),
    (DEMONITOR, "DEMONITOR", (_PID, _PID_OR_STR, _REF)),
    (MONITOR_EXIT, "MONITOR_EXIT", (_is_monitor_exit_target, _PID, _REF, _ANY)),
    (SPAWN_REQUEST, "SPAWN_REQUEST", (_REF, _PID, _STR, of_type(list), _is_kwargs, _is_str_list)),
    (SPAWN_REPLY, "SPAWN_REPLY", (_REF, _PID, _PID_OR_STR)),
    (PEER_LIST, "PEER_LIST", (_is_peer_list,)),
):
    register_frame(_tag, _name, _fields)


def validate_frame(frame: Any) -> Tuple[Any, ...]:
    """Check a decoded session frame against its tag's layout.

    Args:
        frame: a value returned by :meth:`snowg.cluster._framing.FrameDecoder.feed`.

    Returns:
        The frame as a tuple ``(tag, *fields)``.

    Raises:
        MalformedFrame: ``frame`` is not an array, its tag is not a declared
            int, or its field count or a field's type is wrong for the tag
            (the peer's fault).
    """
    if type(frame) is not list and type(frame) is not tuple:
        raise MalformedFrame(f"a frame must be an array, got {type(frame).__name__}")
    if not frame:
        raise MalformedFrame("empty frame (no tag)")
    tag = frame[0]
    spec = _SPECS.get(tag) if type(tag) is int else None
    if spec is None:
        raise MalformedFrame(f"unknown frame tag {loggable(tag)}")
    if len(frame) != len(spec) + 1:
        raise MalformedFrame(f"{TAG_NAMES[tag]} frame must have {len(spec)} fields, got {len(frame) - 1}")
    for i, check in enumerate(spec, 1):
        if check is not None and not check(frame[i]):
            raise MalformedFrame(
                f"{TAG_NAMES[tag]} frame: field {i} has an invalid value of type {type(frame[i]).__name__}"
            )
    return tuple(frame)
