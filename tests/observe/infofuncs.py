"""``@snowg.spawnable`` helpers the peer nodes of ``test_info_cli`` import (``modules=["infofuncs"]``)."""

from __future__ import annotations

from typing import Tuple

import snowg
from snowg import ChildSpec, Down, supervisor

QUEUED = 7


def idle() -> None:
    """A child that waits for ``'crash'``, then raises."""
    snowg.receive(lambda m: m == "crash")
    raise RuntimeError("crashed on purpose")


def never_reads() -> None:
    """A process that never takes a message out of its mailbox."""
    snowg.register("busy_box", snowg.self())
    snowg.receive(lambda m: m == "never sent")


@snowg.spawnable
def setup() -> Tuple[snowg.Pid, snowg.Pid]:
    """Start the supervisor ``info_sup`` (child ``worker``, crashed and restarted once) and ``busy_box``.

    ``busy_box`` holds :data:`QUEUED` messages it never reads. Returns the
    pids of the supervisor and of ``busy_box``; blocks until all that is so.
    """
    sup = supervisor.start([ChildSpec("worker", (idle, ()))], name="info_sup", intensity=5)
    ((_, first, _),) = supervisor.which_children(sup)
    ref = snowg.monitor(first)
    snowg.send(first, "crash")
    snowg.receive(lambda m: type(m) is Down and m.ref == ref, timeout=5)
    ((_, second, _),) = supervisor.which_children(sup)  # the supervisor took the exit before this call
    assert second != first
    box = snowg.spawn(never_reads)
    for i in range(QUEUED):
        snowg.send(box, ("hello", i))
    return sup, box
