"""What the benchmarks read about the machine and their processes from /proc (Linux).

``machine_load`` for the line that says how busy the machine was around a
run; ``cpu_seconds`` for one process, ``session_cpu_seconds`` for every
process of some sessions (a process started with ``start_new_session`` and
all its children). Processes that have ended count 0.
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional

__all__ = ["cpu_seconds", "machine_load", "session_cpu_seconds"]


def machine_load() -> str:
    """The 1-minute load average and, where the kernel has it, the memory pressure (PSI)."""
    try:
        text = f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        text = "load average unknown"
    try:
        with open("/proc/pressure/memory") as f:
            full = f.read().split("full ", 1)[1].split()[0]  # 'avg10=...'
        text += f", memory pressure (full) {full.split('=')[1]}%"
    except (OSError, IndexError):
        pass
    return text


def _stat_fields(os_pid: int) -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name (state first), or None once it has gone."""
    try:
        with open(f"/proc/{os_pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu(fields: List[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(os_pid: int) -> float:
    """User + system CPU time a process has used, in seconds (0 once it has gone)."""
    fields = _stat_fields(os_pid)
    return 0.0 if fields is None else _cpu(fields)


def session_cpu_seconds(session_ids: Iterable[int]) -> float:
    """User + system CPU time used by every live process of these sessions, in seconds."""
    wanted = {str(s) for s in session_ids}
    total = 0.0
    if not wanted:
        return total
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[3] in wanted:
                total += _cpu(fields)
    return total
