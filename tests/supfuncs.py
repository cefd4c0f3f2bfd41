"""``@spawnable`` children for the remote supervision tests (tests/supervisor/test_remote_supervision.py).

Peer nodes import this module (``peers.start(modules=["supfuncs"])``); the
test process imports it too, so both sides name the functions the same way.
Every child reports to a recorder process (the test process) with plain
terms: ``('started', id, pid)`` when it runs and ``('stopped', id)`` when an
exit signal or ``terminate`` ends it.
"""

from __future__ import annotations

from typing import Any

import snowg
from snowg import Exit, GenServer


@snowg.spawnable
def worker(rec: snowg.Pid, cid: Any) -> None:
    """A worker that traps exits: reports its start and its stop; obeys ``('exit', reason)``."""
    snowg.trap_exit(True)
    snowg.send(rec, ("started", cid, snowg.self()))
    while True:
        m = snowg.receive()
        if type(m) is Exit:
            snowg.send(rec, ("stopped", cid))
            snowg.exit(m.reason)
        elif type(m) is tuple and m[0] == "exit":
            snowg.exit(m[1])


@snowg.spawnable("supfuncs.named_worker")
def named_worker(rec: snowg.Pid, cid: Any) -> None:
    """:func:`worker` under a registered name (a remote child named by a str)."""
    worker(rec, cid)


@snowg.spawnable
def stubborn(rec: snowg.Pid, cid: Any) -> None:
    """Traps exits and ignores them all (only ``'kill'`` ends it); reports each one as ``('ignored', id, reason)``."""
    snowg.trap_exit(True)
    snowg.send(rec, ("started", cid, snowg.self()))
    while True:
        m = snowg.receive()
        if type(m) is Exit:
            snowg.send(rec, ("ignored", cid, m.reason))


@snowg.spawnable
class Member(GenServer):
    """A GenServer child: ``init(rec, cid)`` reports its start, ``terminate`` its stop.

    ``cast(pid, ('exit', reason))`` makes it stop with ``reason``;
    ``call(pid, 'where')`` answers ``(node, pid)``.
    """

    def init(self, rec: snowg.Pid, cid: Any) -> Any:
        snowg.trap_exit(True)  # so that its parent's 'shutdown' runs terminate
        snowg.send(rec, ("started", cid, snowg.self()))
        return (rec, cid)

    def handle_call(self, request: Any, from_: Any, state: Any) -> tuple:
        return ("reply", (snowg.node(), snowg.self()), state)

    def handle_cast(self, request: Any, state: Any) -> tuple:
        return ("stop", request[1], state)

    def terminate(self, reason: Any, state: Any) -> None:
        rec, cid = state
        snowg.send(rec, ("stopped", cid))


@snowg.spawnable
class Refuser(GenServer):
    """A GenServer whose ``init`` refuses to start."""

    def init(self, reason: Any) -> Any:
        return ("stop", reason)


@snowg.spawnable
class Ignorer(GenServer):
    """A GenServer whose ``init(rec, cid)`` reports ``('ignored', cid, node)`` and returns ``'ignore'``."""

    def init(self, rec: snowg.Pid, cid: Any) -> Any:
        snowg.send(rec, ("ignored", cid, snowg.node()))
        return "ignore"


class Undeclared(GenServer):
    """Not @spawnable: cannot be a remote child."""


def not_spawnable(rec: snowg.Pid) -> None:
    """Not @spawnable: cannot be a remote child."""
