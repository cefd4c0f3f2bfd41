"""``@snowg.spawnable`` helpers for tests/hostile/test_authority.py, imported by its peer nodes."""

from __future__ import annotations

from typing import Any, Optional

import snowg


@snowg.spawnable
def started_then_go(parent: snowg.Pid) -> Any:
    """Tell ``parent`` ``('started', self())``, wait for ``'go'``, return ``('from', node)``."""
    snowg.send(parent, ("started", snowg.self()))
    snowg.receive(lambda m: m == "go")
    return ("from", snowg.node())


@snowg.spawnable
def give(value: Any) -> Any:
    return ("given", snowg.node(), value)


@snowg.spawnable
def global_holder(parent: snowg.Pid, name: str) -> None:
    """Hold the global ``name``; report ``('holding', name, ok, self())``; end on ``'stop'``."""
    ok = snowg.register_global(name, snowg.self())
    snowg.send(parent, ("holding", name, ok, snowg.self()))
    snowg.receive(lambda m: m == "stop")


@snowg.spawnable
def whereis_global(name: str) -> Optional[snowg.Pid]:
    return snowg.whereis_global(name)


@snowg.spawnable
def alive(pid: snowg.Pid) -> bool:
    return snowg.is_alive(pid)


@snowg.spawnable
def monitor_for(parent: snowg.Pid, target: snowg.Pid) -> None:
    """Monitor ``target``; report ``('monitoring', ref)``; send ``parent`` the ``Down``; end."""
    ref = snowg.monitor(target)
    snowg.send(parent, ("monitoring", ref))
    snowg.send(parent, ("down seen", snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref)))
