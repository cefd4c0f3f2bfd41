"""The node side of the hostile benchmark (see hostile.py): imported by its node processes (``--import _hostile_node``).

On node A, the node under attack: a ``snowg.ws`` server whose clients join the
room ``bench`` (:func:`start_ws`), the broadcaster (:func:`broadcaster`) and the
process that sends to the never-reading peer (:func:`flood`). On every node: a
registered sink that drops what it gets (:func:`start_sink`), and a probe of
how late the hub runs a greenlet (:func:`lag_start`). On node C, the
peer that never reads: :func:`heartbeat`, which keeps sending to its peers so
that they never find it silent.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Dict, List, Optional

import gevent

import snowg
import snowg.ws as ws

ROOM = "bench"
SINK = "hostile_sink"

_servers: Dict[int, Any] = {}
_flood: Dict[str, Any] = {}


def _handler(conn: ws.Connection) -> None:
    conn.join(ROOM)
    while conn.receive() is not None:
        pass


@snowg.spawnable
def start_ws() -> int:
    """Start the WebSocket server (127.0.0.1, any port, default options); return its port."""
    server = ws.serve(("127.0.0.1", 0), _handler)
    _servers[server.port] = server
    return server.port


@snowg.spawnable
def members() -> int:
    return len(ws.members(ROOM))


@snowg.spawnable
def nodes() -> List[str]:
    return snowg.nodes()


@snowg.spawnable
def connect(target: str) -> bool:
    return snowg.connect(target)


@snowg.spawnable
def dist_buffer_size() -> Optional[int]:
    """The default bound on a session's queued bytes, or None on a snowg without one."""
    param = inspect.signature(snowg.start_node).parameters.get("dist_buffer_size")
    return None if param is None else int(param.default)


def _sink() -> None:
    while True:
        snowg.receive()


@snowg.spawnable
def start_sink() -> None:
    if snowg.whereis(SINK) is None:
        snowg.register(SINK, snowg.spawn(_sink))


@snowg.spawnable
def broadcaster(reply_to: snowg.Pid, rate: float, seconds: float, size: int) -> None:
    """``rate`` broadcasts/s to the room for ``seconds``, each stamped with its *scheduled* time.

    A broadcast carries ``'<i> <t>'``, t the ``time.monotonic()`` at which it
    was due (CLOCK_MONOTONIC is system-wide), not when it went out: a node that
    freezes shows as latency instead of as fewer, later broadcasts. One that
    falls behind catches up at once.
    """
    count = int(rate * seconds)
    start = time.monotonic() + 0.05
    for i in range(count):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        head = f"{i} {due!r} "
        ws.broadcast(ROOM, head + "x" * max(0, size - len(head)))
    snowg.send(reply_to, ("broadcasts_done", count))


@snowg.spawnable
def heartbeat(interval: float) -> None:
    """Send a small message to every connected node's sink every ``interval`` seconds."""
    while True:
        for node in snowg.nodes():
            snowg.send((SINK, node), "hb")
        gevent.sleep(interval)


@snowg.spawnable
def flood(target: str, rate: float, chunk: int) -> None:
    """Send ``chunk``-byte messages to ``target``'s sink at ``rate`` bytes/s (0: as fast as it can).

    Stops when ``target`` goes down. As a gevent program must, it yields at
    least once per MiB sent; ``send`` itself never waits unless the session
    makes its senders wait (a bound on queued bytes). Progress is in
    :func:`flood_stats`.
    """
    st = _flood
    st.clear()
    st.update(sent=0, down=None, down_after=None)
    snowg.monitor_node(target)
    payload = b"\0" * chunk
    dest = (SINK, target)
    started = time.monotonic()

    def is_down(m: Any) -> bool:
        return isinstance(m, snowg.NodeDown) and m.node == target

    per_yield = max(1, (1 << 20) // chunk)
    n = 0
    while True:
        wait = 0.0
        if rate:
            wait = started + (st["sent"] + chunk) / rate - time.monotonic()
        if wait > 0 or n % per_yield == 0:
            try:
                down = snowg.receive(is_down, timeout=max(0.0, wait))
            except snowg.Timeout:
                pass
            else:
                st["down"] = down.reason
                st["down_after"] = time.monotonic() - started
                return
            if wait <= 0:
                gevent.sleep(0)
        snowg.send(dest, payload)
        st["sent"] += chunk
        n += 1


@snowg.spawnable
def flood_stats() -> Dict[str, Any]:
    out = dict(_flood)
    if out.get("down") is not None:
        out["down"] = repr(out["down"])
    return out


_lag: Dict[str, Any] = {}


def _lag_loop(interval: float) -> None:
    lags = _lag["lags"]
    while True:
        before = time.monotonic()
        gevent.sleep(interval)
        lags.append(time.monotonic() - before - interval)


@snowg.spawnable
def lag_start(interval: float) -> None:
    """Start measuring how late the hub wakes a greenlet that sleeps ``interval`` s, over and over."""
    old = _lag.get("probe")
    if old is not None:
        old.kill()
    _lag["lags"] = []
    _lag["probe"] = gevent.spawn(_lag_loop, interval)


@snowg.spawnable
def lag_stop() -> Dict[str, float]:
    """Stop measuring; the p99 and the largest lateness, in ms."""
    probe = _lag.pop("probe", None)
    if probe is not None:
        probe.kill()
    lags = sorted(_lag.get("lags", [])) or [0.0]
    return {"p99": 1000.0 * lags[int(0.99 * (len(lags) - 1))], "max": 1000.0 * lags[-1]}
