"""A test-only driver: snowg's sans-IO distribution handshake over a real gevent TCP socket.

Nothing here is snowg's node: it is the least code that puts
:mod:`snowg.erlang._dist_handshake` and :mod:`snowg.erlang._dist_framing`
on a socket, so tests can hold them against a real ``erl``.

* :func:`accept_one`: accept one connection on a listening socket and run
  the acceptor role (status ``ok``), then keep the connection.
* :func:`dial`: connect to an address and run the initiator role, then keep
  the connection.

Keeping the connection means what a node does with nothing to say: read
messages (counting ticks and others) and send a tick whenever nothing was
sent for ``tick_interval`` seconds (a :class:`Ticker` for a tick time of
four intervals), for ``run_for`` seconds, until the peer closes, or until it
is silent for the tick time. The handshake reads at most ``recv_size`` bytes a time (1: the
machines get the peer's bytes one at a time). Every step is bounded by
``timeout``; the socket is always
closed. Errors are not raised but returned in :class:`Result`, so a test
can check the refusals too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Union

import gevent
from gevent import socket

from snowg.erlang import _dist_handshake as hs
from snowg.erlang._dist_framing import CONNECTED_LENGTH, MESSAGE_MAX, TICK, Deframer, Ticker


@dataclass
class Result:
    """What happened on one connection."""

    connected: Optional[hs.Connected] = None
    error: Optional[BaseException] = None
    events: List[object] = field(default_factory=list)
    ticks_received: int = 0
    ticks_sent: int = 0
    messages: List[bytes] = field(default_factory=list)
    closed_by_peer: bool = False
    seconds_connected: float = 0.0


class _PeerClosed(Exception):
    pass


def _recv(sock: socket.socket, size: int = 65536) -> bytes:
    data: bytes = sock.recv(size)
    if not data:
        raise _PeerClosed()
    return data


def _handshake(sock: socket.socket, machine: Union[hs.Initiator, hs.Acceptor], result: Result, recv_size: int) -> None:
    if isinstance(machine, hs.Initiator):
        sock.sendall(machine.send(hs.SendName()))
    while True:
        event = machine.next_event()
        if event is hs.NEED_DATA:
            machine.receive_data(_recv(sock, recv_size))
            continue
        result.events.append(event)
        if isinstance(event, hs.NameReceived):
            sock.sendall(machine.send(hs.SendStatus("ok")))
        elif isinstance(event, hs.StatusReceived) and event.status == "alive":
            sock.sendall(machine.send(hs.AliveAnswer(True)))
        elif isinstance(event, hs.ChallengeReceived):
            sock.sendall(machine.send(hs.SendChallengeReply()))
        elif isinstance(event, hs.ReplyReceived):
            sock.sendall(machine.send(hs.SendChallengeAck()))
        elif isinstance(event, hs.Refused):
            return
        elif isinstance(event, hs.Connected):
            result.connected = event
            return


def _keep(sock: socket.socket, trailing: bytes, run_for: float, tick_interval: float, result: Result) -> None:
    frames = Deframer(CONNECTED_LENGTH, MESSAGE_MAX, "connected stream")
    frames.receive_data(trailing)
    start = time.monotonic()
    ticker = Ticker(4 * tick_interval, start)
    while True:
        for message in frames.messages():
            if message:
                result.messages.append(message)
            else:
                result.ticks_received += 1
        now = time.monotonic()
        if now - start >= run_for or ticker.peer_lost(now):
            result.seconds_connected = now - start
            return
        if ticker.tick_due(now):
            sock.sendall(TICK)
            result.ticks_sent += 1
            ticker.sent(now)
        wait = max(0.01, min(ticker.wait(now), start + run_for - now))
        try:
            with gevent.Timeout(wait):
                data = _recv(sock)
        except gevent.Timeout:
            continue
        except _PeerClosed:
            result.closed_by_peer = True
            result.seconds_connected = time.monotonic() - start
            return
        ticker.received(time.monotonic())
        frames.receive_data(data)


def _run(
    sock: socket.socket,
    machine: Union[hs.Initiator, hs.Acceptor],
    run_for: float,
    tick_interval: float,
    timeout: float,
    recv_size: int,
) -> Result:
    result = Result()
    try:
        with gevent.Timeout(timeout, TimeoutError(f"the handshake took over {timeout:g}s")):
            _handshake(sock, machine, result, recv_size)
        if result.connected is not None:
            with gevent.Timeout(run_for + timeout, TimeoutError("keeping the connection overran")):
                _keep(sock, machine.trailing_data, run_for, tick_interval, result)
    except _PeerClosed:
        result.closed_by_peer = True
    except Exception as exc:  # the test inspects it
        result.error = exc
    finally:
        sock.close()
    return result


def accept_one(
    listener: socket.socket,
    name: str,
    cookie: str,
    *,
    creation: int = 7,
    run_for: float = 0.0,
    tick_interval: float = 1.0,
    timeout: float = 20.0,
    recv_size: int = 65536,
) -> Result:
    """Accept one connection on ``listener`` and answer it as the acceptor ``name`` (status ``ok``)."""
    with gevent.Timeout(timeout, TimeoutError(f"nobody connected within {timeout:g}s")):
        sock, address = listener.accept()
    machine = hs.Acceptor(name, cookie, creation=creation, peer=f"{address[0]}:{address[1]}")
    return _run(sock, machine, run_for, tick_interval, timeout, recv_size)


def dial(
    host: str,
    port: int,
    name: str,
    cookie: str,
    *,
    creation: int = 7,
    run_for: float = 0.0,
    tick_interval: float = 1.0,
    timeout: float = 20.0,
    recv_size: int = 65536,
    expect: Optional[str] = None,
) -> Result:
    """Connect to ``host:port`` and run the initiator ``name`` (to reach the node ``expect``, if given)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    machine = hs.Initiator(name, cookie, creation=creation, peer=f"{host}:{port}", expect=expect)
    return _run(sock, machine, run_for, tick_interval, timeout, recv_size)
