"""The frames scope processes send each other, and the checks a peer's frames must pass.

Four cluster frames (tags 20-23 of the extension range), each naming the
scope (its name) and the sending scope process (its pid, which must be of
the sending node):

* ``[DISCOVER, scope, scope_pid]``: "I run this scope": sent to every
  connected node when a scope starts, and to a node when it connects. The
  answer is a sync, and a discover back if the sender was unknown.
* ``[SYNC, scope, scope_pid, more, groups]``: all the sender's local
  memberships, ``groups`` a list of ``[group, [pid, ...]]`` (one entry per
  join); a large sync comes in parts, all but the last with ``more`` true.
  The receiver replaces what it knew of that node with the whole of it.
* ``[JOIN, scope, scope_pid, group, [pid, ...]]`` and ``[LEAVE, ...]``: the
  deltas, sent to every peer scope the sender knows.

A frame must fit the peer's ``max_frame_size`` (1 MiB by default): syncs and
long member lists are cut into parts of about :data:`PART_BUDGET` bytes,
estimated from the group's ``repr`` and the pids' node names.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Sequence, Tuple

from .._core import Pid

__all__ = [
    "DISCOVER",
    "JOIN",
    "LEAVE",
    "MAX_GROUP_REPR",
    "PART_BUDGET",
    "SYNC",
    "frame_layouts",
    "group_size",
    "is_group",
    "is_pid_list",
    "is_sync_groups",
    "parts",
    "pid_parts",
]

DISCOVER = 20
SYNC = 21
JOIN = 22
LEAVE = 23

#: The estimated size of a frame's payload (bytes) above which it is cut into parts.
PART_BUDGET = 256 * 1024
#: The longest ``repr`` a group may have: a group is a name, and it travels in every frame about it.
MAX_GROUP_REPR = 16 * 1024


def is_group(value: Any) -> bool:
    """A peer's group is acceptable: hashable (it is a dict key here)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def is_pid_list(value: Any) -> bool:
    """A list (or tuple) of pids."""
    return (type(value) is list or type(value) is tuple) and all(type(p) is Pid for p in value)


def is_sync_groups(value: Any) -> bool:
    """A sync's ``[[group, [pid, ...]], ...]``."""
    if type(value) is not list:
        return False
    for item in value:
        if (type(item) is not list and type(item) is not tuple) or len(item) != 2:
            return False
        if not is_group(item[0]) or not is_pid_list(item[1]):
            return False
    return True


def _of_str(value: Any) -> bool:
    return type(value) is str


def _of_pid(value: Any) -> bool:
    return type(value) is Pid


def _of_bool(value: Any) -> bool:
    return type(value) is bool


def frame_layouts() -> List[Tuple[int, str, Sequence[Any]]]:
    """``(tag, name, field checks)`` of the four frames, for ``register_frame_handler``."""
    return [
        (DISCOVER, "PG_DISCOVER", (_of_str, _of_pid)),
        (SYNC, "PG_SYNC", (_of_str, _of_pid, _of_bool, is_sync_groups)),
        (JOIN, "PG_JOIN", (_of_str, _of_pid, is_group, is_pid_list)),
        (LEAVE, "PG_LEAVE", (_of_str, _of_pid, is_group, is_pid_list)),
    ]


def _pid_size(pid: Pid) -> int:
    return 16 + len(pid.node)


def group_size(group: Any) -> int:
    """The estimated wire size of a group (its ``repr``; msgpack is no longer)."""
    return 8 + len(repr(group))


def pid_parts(pids: Sequence[Pid], budget: int, used: int = 0) -> Iterator[List[Pid]]:
    """``pids`` cut into lists whose estimated size fits ``budget`` (the first one has ``used`` taken)."""
    part: List[Pid] = []
    size = used
    for pid in pids:
        s = _pid_size(pid)
        if part and size + s > budget:
            yield part
            part, size = [], used
        part.append(pid)
        size += s
    if part:
        yield part


def parts(groups: Iterable[Tuple[Any, List[Pid]]], budget: int = PART_BUDGET) -> Iterator[List[List[Any]]]:
    """A sync's ``[[group, pids], ...]`` cut into parts of about ``budget`` bytes each.

    A group whose members do not fit one part appears in several (the
    receiver adds them up). Yields at least one part (empty when there is
    nothing to sync: the receiver must still hear that the node has nothing).
    """
    part: List[List[Any]] = []
    size = 0
    for group, pids in groups:
        gsize = group_size(group)
        for chunk in pid_parts(pids, budget, gsize):
            csize = gsize + sum(_pid_size(p) for p in chunk)
            if part and size + csize > budget:
                yield part
                part, size = [], 0
            part.append([group, chunk])
            size += csize
    yield part
