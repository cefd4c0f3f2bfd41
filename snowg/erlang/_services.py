"""The processes a BEAM node expects on every node: ``net_kernel`` and a group leader.

:func:`start_services` runs when the Erlang side of the node starts (the
node service calls it) and :func:`stop_services` when it stops:

* ``net_kernel``: a registered process answering the ``gen:call`` that
  ``net_adm:ping`` makes, ``{'$gen_call', From, {is_auth, Node}}``, with
  ``yes``. Other calls are answered ``{error, not_supported}`` so a caller
  never waits for its timeout; other messages are dropped.
* the group leader (``snowg.erlang.group_leader``, :mod:`._io`): the
  processes this node spawns on BEAM nodes write their output to it.

Spawn requests from BEAM nodes (``erpc``, ``rpc``, ``spawn(Node, M, F, A)``)
are :func:`snowg.erlang._erpc.handle_spawn_request`.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from .._core import Atom, Pid, exit, receive, register, spawn, whereis
from ..gen_server import reply
from ._io import GROUP_LEADER, group_leader_loop

log = logging.getLogger("snowg")

#: The registered name of the process answering ``net_adm:ping``.
NET_KERNEL = "net_kernel"

_GEN_CALL = "$gen_call"
_YES = Atom("yes")
_NOT_SUPPORTED = (Atom("error"), Atom("not_supported"))

# The pids start_services made (stop_services ends exactly these).
_started: List[Pid] = []


def start_services() -> None:
    """Start ``net_kernel`` and the group leader, registered; nothing for those already running.

    Never blocks (the processes run when the caller next yields).

    Raises:
        NameTaken: another process holds one of the names.
    """
    for name, body in ((NET_KERNEL, _net_kernel_loop), (GROUP_LEADER, group_leader_loop)):
        if whereis(name) is None:
            pid = spawn(body)
            register(name, pid)
            _started.append(pid)


def stop_services() -> None:
    """End the processes :func:`start_services` started (``'kill'``); never blocks."""
    while _started:
        exit(_started.pop(), "kill")


def group_leader() -> Optional[Pid]:
    """The group leader's pid (what a spawn on a BEAM node names as group leader), or None if not running."""
    return whereis(GROUP_LEADER)


def _net_kernel_loop() -> None:
    while True:
        msg = receive()
        if type(msg) is tuple and len(msg) == 3 and msg[0] == _GEN_CALL:
            from_, request = msg[1], msg[2]
            if not (type(from_) is tuple and len(from_) == 2 and type(from_[0]) is Pid):
                continue
            if type(request) is tuple and len(request) == 2 and request[0] == "is_auth":
                reply(from_, _YES)
            else:
                log.debug("net_kernel: unsupported call %r from %s", request, from_[0])
                reply(from_, _NOT_SUPPORTED)
