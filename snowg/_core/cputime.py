"""CPU time per process, measured by tracing greenlet switches (off by default).

With tracing on, greenlet's switch hook (:func:`greenlet.settrace`) runs at
every switch of this thread's greenlets: it reads the clock and adds the time
since the previous switch to the process that was running (``Process.cpu``).
The time the hub and plain greenlets run is counted for nobody. The clock is
``time.perf_counter``: the time a greenlet held the CPU between two switches,
which includes a blocking call that does not yield (a ``time.sleep`` in an
unpatched program counts as CPU time, as it holds the node).

The hook costs one Python call per switch, and a local message exchange is
about two switches: ``benchmarks/cpu_tracing.py`` measures it (the guide's
"Observing a node" states the numbers). Tracing is per OS thread: switch it on
from the thread that runs the node's processes.
"""

from __future__ import annotations

import time
from typing import Any, List, Optional, Tuple

import greenlet

__all__ = ["cpu_tracing", "set_cpu_tracing"]

_clock = time.perf_counter
# [when the last switch happened]; a list so that the hook updates it without a global lookup chain.
_last = [0.0]
_previous_tracer: Optional[Any] = None
_on = False


def _trace(event: str, args: Tuple[Any, Any], _clock: Any = _clock, _last: List[float] = _last) -> None:
    # 'switch' and 'throw' both pass (origin, target): the origin ran until now.
    now = _clock()
    proc = getattr(args[0], "_snowg_proc", None)
    if proc is not None:
        proc.cpu += now - _last[0]
    _last[0] = now


def _trace_chained(event: str, args: Tuple[Any, Any]) -> None:
    _trace(event, args)
    if _previous_tracer is not None:
        _previous_tracer(event, args)


def set_cpu_tracing(on: bool) -> bool:
    """Switch per-process CPU time accounting on or off; return the previous setting.

    While it is on, ``process_info(pid)['cpu_time']`` grows with the time the
    process runs. Switching it off keeps the times counted so far. Never
    blocks. Costs one Python call per greenlet switch while on (see the module
    docstring): leave it off unless you are looking for a busy process.

    Args:
        on: True to start accounting, False to stop.
    """
    global _on, _previous_tracer
    was = _on
    on = bool(on)
    if on == was:
        return was
    if on:
        _last[0] = _clock()
        previous = greenlet.settrace(_trace)
        if previous is not None:  # someone else traces too (gevent's monitor): call theirs after ours
            _previous_tracer = previous
            greenlet.settrace(_trace_chained)
    else:
        greenlet.settrace(_previous_tracer)
        _previous_tracer = None
    _on = on
    return was


def cpu_tracing() -> bool:
    """Whether per-process CPU time accounting is on (never blocks)."""
    return _on
