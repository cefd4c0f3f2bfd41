"""Shared bits of the fan-out benchmark's processes (see broadcast_fanout.py)."""

from __future__ import annotations

import resource
import time


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def message(r: int, room: str, size: int) -> str:
    """A broadcast's text: ``'<r> <room> <t0> xxx...'``, t0 = time.monotonic() now.

    CLOCK_MONOTONIC is system-wide on Linux, so a load generator in another
    process can subtract t0 from its own time.monotonic().
    """
    head = f"{r} {room} {time.monotonic()!r} "
    return head + "x" * max(0, size - len(head))


def rooms_of(path: str) -> list:
    """``'/r0,stuck'`` -> ``['r0', 'stuck']``."""
    return [r for r in path.lstrip("/").split("?", 1)[0].split(",") if r]
