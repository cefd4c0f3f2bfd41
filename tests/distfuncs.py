"""``@snowg.spawnable`` helpers that peer nodes import (``modules=["distfuncs"]``).

Tests start these on peers with ``snowg.spawn(fn, ..., node=peer.name)`` or
call them with ``peer.rpc(fn, ...)``. Every long-lived helper reports to the
test's process with messages, so tests synchronise on messages, not sleeps.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import snowg
from snowg._core.runtime import rt
from snowg.cluster._connect import session_for
from support import forward_until_stop, wait_for_stop


# ------------------------------------------------------------------ processes


@snowg.spawnable
def echo() -> None:
    """Answer ``(reply_to, x)`` with ``('echo', self(), x)``; end on ``'stop'``."""
    me = snowg.self()
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        if type(msg) is tuple and len(msg) == 2 and type(msg[0]) is snowg.Pid:
            snowg.send(msg[0], ("echo", me, msg[1]))


def linked_waiter(target: snowg.Pid, parent: snowg.Pid) -> None:
    """A local, non-trapping process: link to ``target``, tell ``parent`` ``'linked'``, wait for ever."""
    snowg.link(target)
    snowg.send(parent, "linked")
    snowg.receive()


@snowg.spawnable
def forwarder(parent: snowg.Pid, trap: bool = False) -> None:
    """Forward every message to ``parent`` as ``('fwd', self(), msg)``; end on ``'stop'``."""
    snowg.trap_exit(trap)
    snowg.send(parent, ("ready", snowg.self()))
    forward_until_stop(parent)


@snowg.spawnable
def registered_forwarder(parent: snowg.Pid, name: str) -> None:
    """Register as ``name``, then forward like :func:`forwarder`."""
    me = snowg.self()
    snowg.register(name, me)
    snowg.send(parent, ("ready", me))
    forward_until_stop(parent)


@snowg.spawnable
def exit_on_command() -> None:
    """Wait for ``('exit', reason)`` and end with ``reason``; ``('raise', text)`` raises."""
    while True:
        msg = snowg.receive()
        if type(msg) is tuple and msg[0] == "exit":
            snowg.exit(msg[1])
        if type(msg) is tuple and msg[0] == "raise":
            raise ValueError(msg[1])


@snowg.spawnable
def linker(parent: snowg.Pid, target: snowg.Pid, trap: bool) -> None:
    """Link to ``target`` (trapping or not), report ``('linked', self())``, forward messages."""
    snowg.trap_exit(trap)
    snowg.link(target)
    snowg.send(parent, ("linked", snowg.self()))
    forward_until_stop(parent)


@snowg.spawnable
def monitorer(parent: snowg.Pid, target: Any) -> None:
    """Monitor ``target``, report ``('monitoring', self(), ref)``, forward messages."""
    ref = snowg.monitor(target)
    snowg.send(parent, ("monitoring", snowg.self(), ref))
    forward_until_stop(parent)


@snowg.spawnable
def send_numbered(dest: Any, tag: Any, first: int, count: int) -> None:
    """Send ``(tag, i)`` for ``i`` in ``first .. first+count-1`` to ``dest``."""
    send = snowg.send
    for i in range(first, first + count):
        send(dest, (tag, i))


@snowg.spawnable
def order_checker(parent: snowg.Pid, senders: int, per_sender: int) -> None:
    """Receive ``(tag, i)`` from ``senders`` senders; report one summary when all arrived.

    Summary: ``('summary', self(), received, out_of_order, duplicates)``.
    """
    expected = [0] * senders
    received = out_of_order = duplicates = 0
    total = senders * per_sender
    receive = snowg.receive
    while received < total:
        tag, i = receive()
        received += 1
        nxt = expected[tag]
        if i == nxt:
            expected[tag] = i + 1
        elif i < nxt:
            duplicates += 1
        else:
            out_of_order += 1
            expected[tag] = i + 1
    snowg.send(parent, ("summary", snowg.self(), received, out_of_order, duplicates))


@snowg.spawnable
def blob_checker(parent: snowg.Pid, count: int) -> None:
    """Receive ``(i, blob)`` ``count`` times; report ``('blobs', in_order, total_bytes)``.

    ``in_order`` counts the messages that arrived exactly in sequence; each blob
    must be ``bytes([i % 256]) * len``, so a torn or mixed-up write shows too.
    """
    in_order = total = 0
    for n in range(count):
        i, blob = snowg.receive()
        total += len(blob)
        if i == n and blob == bytes([i % 256]) * len(blob):
            in_order += 1
    snowg.send(parent, ("blobs", in_order, total))


# ------------------------------------------------------------------------ rpc


@snowg.spawnable
def ping(x: Any = None) -> Any:
    return ("pong", snowg.node(), x)


@snowg.spawnable
def start_registered(name: str) -> snowg.Pid:
    """Start a process registered as ``name`` that waits for ever; return its pid."""
    pid = snowg.spawn(wait_for_stop)
    snowg.register(name, pid)
    return pid


@snowg.spawnable
def info(pid: snowg.Pid) -> Any:
    """``process_info`` of a local pid (links, monitors, monitored_by, trap_exit...)."""
    i = snowg.process_info(pid)
    if i is None:
        return None
    i.pop("messages", None)
    return i


@snowg.spawnable
def alive(pid: snowg.Pid) -> bool:
    return snowg.is_alive(pid)


def refs_to(node: str, skip: Optional[snowg.Pid] = None) -> Dict[str, int]:
    """How many links / monitors / monitored_by entries of this node's processes involve ``node``.

    The process ``skip`` (if given) is left out, and so are the node's
    process-group scopes, which monitor the other nodes' scopes while they are
    connected (semantics rule 37).
    """
    from snowg.pg._scope import SCOPES

    links = monitors = monitored_by = 0
    scopes = {st.pid for st in SCOPES.values()}
    for proc in list(rt.procs.values()):
        if proc.pid == skip or proc.pid in scopes:
            continue
        links += sum(1 for p in (proc.links or ()) if p.node == node)
        for target in (proc.monitors or {}).values():
            tnode = target.node if type(target) is snowg.Pid else target[1]
            monitors += tnode == node
        monitored_by += sum(1 for w, _r in (proc.monitored_by or {}).values() if w.node == node)
    return {"links": links, "monitors": monitors, "monitored_by": monitored_by}


@snowg.spawnable
def peer_refs_to(node: str) -> Dict[str, int]:
    """:func:`refs_to` run by rpc: the rpc runner (and its caller's monitor on it) is left out."""
    return refs_to(node, skip=snowg.self())


@snowg.spawnable
def crash(text: str) -> None:
    raise ValueError(text)


@snowg.spawnable
def make_crash_reason(text: str) -> Any:
    """The crash reason of a local process that raised ``ValueError(text)``."""
    pid, ref = snowg.spawn_monitor(crash, text)
    down = snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref)
    return down.reason


@snowg.spawnable
def roundtrip(value: Any) -> Any:
    """Return ``(value, its type name, repr)``: what this node decoded."""
    return value, type(value).__name__, repr(value)


@snowg.spawnable
def local_sessions() -> Dict[str, str]:
    """Peer name -> the local socket address of its session (to tell sessions apart)."""
    sessions = {name: session_for(name) for name in snowg.nodes()}
    return {name: sess.peer_socket for name, sess in sessions.items() if sess is not None}


@snowg.spawnable
def monkeypatched() -> bool:
    import socket

    from gevent import monkey

    return bool(monkey.is_module_patched("socket")) and socket.socket.__module__.startswith("gevent")


# ------------------------------------------------------------- node events

EVENTS: List[Any] = []


@snowg.spawnable
def watch_nodes(parent: snowg.Pid) -> None:
    """``monitor_nodes(True)`` and record every NodeUp/NodeDown in :data:`EVENTS`."""
    snowg.monitor_nodes(True)
    snowg.send(parent, ("watching", snowg.self()))
    while True:
        EVENTS.append(snowg.receive())


@snowg.spawnable
def get_events() -> List[Any]:
    return list(EVENTS)


@snowg.spawnable
def stream_sender(dest: snowg.Pid, batch: int = 20, pause: float = 0.002) -> None:
    """Send ``('s', 0)``, ``('s', 1)``... to ``dest`` until ``'stop'``; then ``('done', n)``."""
    import gevent

    i = 0
    while True:
        for _ in range(batch):
            snowg.send(dest, ("s", i))
            i += 1
        try:
            snowg.receive(lambda m: m == "stop", timeout=0)
        except snowg.Timeout:
            gevent.sleep(pause)
            continue
        snowg.send(dest, ("done", i))
        return


@snowg.spawnable
def fanout_sender(parent: snowg.Pid, receivers: List[snowg.Pid], tag: int, per_receiver: int) -> None:
    """Send ``(tag, i)`` for ``i`` in ``0..per_receiver-1`` to every receiver, interleaved."""
    import gevent

    send = snowg.send
    for i in range(per_receiver):
        msg = (tag, i)
        for r in receivers:
            send(r, msg)
        if i % 100 == 99:
            gevent.sleep(0)
    snowg.send(parent, ("sent", tag))


@snowg.spawnable
def loaded_modules(prefix: str) -> List[str]:
    """The modules named ``prefix`` or under it that this node has imported."""
    import sys

    return sorted(m for m in sys.modules if m == prefix or m.startswith(prefix + "."))
