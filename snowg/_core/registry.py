"""Local names: ``register``, ``unregister``, ``whereis``, ``registered``.

A name maps to one live local process, and a process has at most one name; the
name is freed when the process ends (:func:`snowg._core.process` does that on
termination). ``send(name, msg)`` and ``monitor(name)`` read the same table.
"""

from __future__ import annotations

from typing import List, Optional

from .._errors import NameTaken, NoProc
from .process import local_process
from .runtime import rt
from .scheduler import DEAD
from .terms import Pid

__all__ = ["register", "registered", "unregister", "whereis"]


def register(name: str, pid: Pid) -> None:
    """Register ``pid`` (a live local process) under ``name``.

    Raises:
        NameTaken: the name is taken, or the process already has a name.
        NoProc: ``pid`` is not a live local process.
    """
    if type(name) is not str:
        raise TypeError(f"register: a name is a str, not {type(name).__name__}")
    proc = local_process(pid)
    if proc is None:
        raise NoProc(f"cannot register {name!r}: {pid} is not a live local process")
    holder = rt.names.get(name)
    if holder is not None and holder.state != DEAD:
        raise NameTaken(f"{name!r} is already registered to {holder.pid}")
    if proc.name is not None:
        raise NameTaken(f"{pid} is already registered as {proc.name!r}")
    rt.names[name] = proc
    proc.name = name


def unregister(name: str) -> None:
    """Remove a local name.

    Raises:
        NoProc: nobody is registered under ``name``.
    """
    proc = rt.names.pop(name, None)
    if proc is None:
        raise NoProc(f"no process is registered as {name!r}")
    proc.name = None


def whereis(name: str) -> Optional[Pid]:
    """The pid registered locally under ``name``, or None."""
    proc = rt.names.get(name)
    return None if proc is None or proc.state == DEAD else proc.pid


def registered() -> List[str]:
    """All locally registered names."""
    return list(rt.names)
