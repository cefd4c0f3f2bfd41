"""``@spawnable`` processes for the observe tests: a small supervision tree and a lonely process.

Peer nodes import this module (``peers.start(modules=["observefuncs"])``);
the test process imports it too, so both sides name the functions the same
way. :func:`start_tree` builds, on the node that runs it, a supervisor
registered as ``obs_sup`` with a :class:`Counter` (registered ``obs_counter``),
a :func:`crasher` worker and a nested supervisor with one :func:`idle`
worker, plus a process registered ``lonely`` that joins the pg group
``'team'``; every start is reported to the test's process with a message.
"""

from __future__ import annotations

from typing import Any, Dict

import snowg
from snowg import ChildSpec, GenServer, pg, supervisor


@snowg.spawnable
class Counter(GenServer):
    """State: an int. ``cast(('add', n))`` adds; ``call('get')`` answers it."""

    def init(self, n: int) -> int:
        return n

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        return ("reply", state, state)

    def handle_cast(self, request: Any, state: int) -> Any:
        return ("noreply", state + request[1])


def crasher(rec: snowg.Pid) -> None:
    """Reports ``('crasher', pid)``; raises ``ValueError`` at its first message."""
    snowg.send(rec, ("crasher", snowg.self()))
    snowg.receive()
    raise ValueError("asked to crash")


@snowg.spawnable
def idle() -> None:
    """Waits for ever."""
    snowg.receive(lambda m: False)


def lonely(rec: snowg.Pid) -> None:
    """Registers ``lonely``, joins ``'team'``, reports ``('lonely', pid)``; then never takes a message."""
    snowg.register("lonely", snowg.self())
    pg.join("team")
    snowg.send(rec, ("lonely", snowg.self()))
    snowg.receive(lambda m: m == "stop")


@snowg.spawnable
def start_tree(rec: snowg.Pid) -> Dict[str, snowg.Pid]:
    """Start the tree and the lonely process here (not linked to the caller); their pids by role."""
    inner = supervisor.child_spec("inner", [ChildSpec("leaf", (idle, ()))], name="obs_inner")
    sup = supervisor.start(
        [
            ChildSpec("counter", (Counter, (5,), {"name": "obs_counter"})),
            ChildSpec("crasher", (crasher, (rec,))),
            inner,
        ],
        name="obs_sup",
        intensity=5,
    )
    snowg.spawn(lonely, rec)
    kids = {cid: pid for cid, pid, _type in supervisor.which_children(sup)}
    return {"sup": sup, "counter": kids["counter"], "crasher": kids["crasher"], "inner": kids["inner"]}
