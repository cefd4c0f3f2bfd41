"""``@spawnable`` helpers for the remote tests (tests/cluster/test_remote_*.py).

Peer nodes import this module (``peers.start(modules=["remotefuncs"])``), so
the functions below can be started there with remote spawn or ``rpc.call``.
The test process imports it too, so both sides name them the same way.

Importing it with ``SNOWG_TEST_AUTOREG=name`` in the environment starts, once
the node is connected to another node, a process holding the global ``name``,
and a watcher that logs how that holder ends (for the cluster-merge test, whose
second cluster is not connected to the test node).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional

import gevent

import snowg

log = logging.getLogger("snowg")

#: How many times each counted function ran on this node.
RUNS: Dict[str, int] = {}


def _count(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


@snowg.spawnable
def runs(name: str) -> int:
    """How many times the counted function ``name`` ran on this node."""
    return RUNS.get(name, 0)


# ------------------------------------------------------------ remote spawn


@snowg.spawnable
def hello(parent: snowg.Pid) -> None:
    """Tell the parent that it runs, and where."""
    snowg.send(parent, ("hello", snowg.self(), snowg.node()))


@snowg.spawnable
def echo_args(parent: snowg.Pid, *args: Any, **kwargs: Any) -> None:
    _count("echo_args")
    snowg.send(parent, ("args", args, kwargs))


@snowg.spawnable("test.named")
def named(parent: snowg.Pid, tag: Any) -> None:
    """Spawnable under the registered name ``'test.named'``."""
    _count("test.named")
    snowg.send(parent, ("named", tag, snowg.node()))


def not_declared(parent: snowg.Pid) -> None:
    """NOT ``@spawnable``: a peer must refuse to start it."""
    _count("not_declared")
    snowg.send(parent, "not_declared ran")


@snowg.spawnable
def crash_now(text: str) -> None:
    """Crash at once (before yielding once)."""
    raise ValueError(text)


@snowg.spawnable
def one_reply(parent: snowg.Pid, i: int) -> None:
    snowg.send(parent, i)


@snowg.spawnable
def process_count() -> int:
    """The node's processes, but its process-group scopes (they run with the node, semantics rule 31)."""
    from snowg.pg._scope import SCOPES

    scopes = {st.pid for st in SCOPES.values()}
    return len([p for p in snowg.processes() if p not in scopes])


# ---------------------------------------------------------------------- rpc


@snowg.spawnable
def add(a: Any, b: Any) -> Any:
    return a + b


@snowg.spawnable
def give_back(value: Any) -> Any:
    return value


@snowg.spawnable
def fail(text: str) -> None:
    raise KeyError(text)


@snowg.spawnable
def runs_set() -> Any:
    """A result that cannot cross nodes."""
    return set(RUNS)


@snowg.spawnable
def sleep_then(value: Any, seconds: float) -> Any:
    """Cooperative sleep, then return ``value``."""
    gevent.sleep(seconds)
    return value


@snowg.spawnable
def block_then(value: Any, seconds: float) -> Any:
    """Block the whole node (no yield) for ``seconds``, then return ``value`` at once.

    A caller that timed out meanwhile has its kill signal queued here; the
    reply leaves before that signal is read: the reply arrives late.
    """
    time.sleep(seconds)
    return value


@snowg.spawnable
def node_name() -> str:
    return snowg.node()


# ---------------------------------------------------------- message server


@snowg.spawnable("test.kv_server")
def kv_server() -> None:
    """A tiny server driven by messages: ``(from, ref, request)`` -> ``(ref, reply)``."""
    table: Dict[Any, Any] = {}
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        frm, ref, req = msg
        if req[0] == "put":
            table[req[1]] = req[2]
            snowg.send(frm, (ref, "ok"))
        elif req[0] == "get":
            snowg.send(frm, (ref, table.get(req[1])))
        elif req[0] == "where":
            snowg.send(frm, (ref, (snowg.node(), snowg.self())))
        else:
            snowg.send(frm, (ref, ("error", "unknown request")))


# ------------------------------------------------------------- global names


@snowg.spawnable
def global_holder(parent: snowg.Pid, name: str) -> None:
    """Register itself as the global ``name``, report, then answer pings until 'stop'."""
    ok = snowg.register_global(name, snowg.self())
    snowg.send(parent, ("registered", name, ok, snowg.self()))
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        if type(msg) is tuple and msg[0] == "ping":
            snowg.send(msg[1], ("pong", name, snowg.node()))


@snowg.spawnable
def whereis_global(name: str) -> Optional[snowg.Pid]:
    return snowg.whereis_global(name)


@snowg.spawnable
def whereis_globals(names: List[str]) -> List[Optional[snowg.Pid]]:
    return [snowg.whereis_global(n) for n in names]


@snowg.spawnable
def register_global(name: str, pid: snowg.Pid) -> bool:
    return snowg.register_global(name, pid)


@snowg.spawnable
def unregister_global(name: str) -> None:
    snowg.unregister_global(name)


@snowg.spawnable
def send_global(name: str, msg: Any) -> snowg.Pid:
    return snowg.send_global(name, msg)


@snowg.spawnable
def contender(parent: snowg.Pid) -> None:
    """For the registration race: on ``('go', name)`` try to take ``name``; report the outcome."""
    me = snowg.self()
    snowg.send(parent, ("ready", me, snowg.node()))
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        _go, name = msg
        ok = snowg.register_global(name, me)
        snowg.send(parent, ("result", name, snowg.node(), ok))


# -------------------------------------------- merge test: a detached cluster


def _autoreg(name: str) -> None:
    """Once connected to some node, hold the global ``name`` and log the holder's end."""
    while snowg.node() == "nonode@nohost" or not snowg.nodes():
        gevent.sleep(0.02)

    def holder() -> None:
        snowg.receive(lambda m: m == "stop")

    def watcher() -> None:
        pid = snowg.spawn(holder)
        ref = snowg.monitor(pid)
        ok = snowg.register_global(name, pid)
        log.warning("AUTOREG %s %s %s", name, ok, pid)
        down = snowg.receive(lambda m: isinstance(m, snowg.Down) and m.ref == ref)
        log.warning("HOLDER DOWN %s %s", name, down.reason)

    snowg.spawn(watcher)


if os.environ.get("SNOWG_TEST_AUTOREG") and "pytest" not in sys.modules:
    gevent.spawn(_autoreg, os.environ["SNOWG_TEST_AUTOREG"])
