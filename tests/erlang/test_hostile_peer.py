"""A hostile or broken peer of the Erlang side: each fault closes that one connection, the node keeps serving.

A raw client (the sans-IO ``_dist_handshake.Initiator`` over a socket, TLS
wrapped for ``inet_tls_dist``) completes a real handshake with the test's
node, then sends one bad packet: an unknown control tag, a truncated term,
an atom over 255 characters, a packet with the atom cache (not pass-through
``p``), a length over the largest packet. Before or during the handshake:
garbage, missing mandatory flags, a wrong cookie. Each must close that
connection with exactly one WARNING line naming the peer and the problem,
while a real ``erl`` connected to the same node goes on being served (ping
answers ``pong``, a message arrives). A peer that connects and says nothing
is dropped within the handshake timeout, many at once too, and leaves no
file descriptor behind.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
from typing import Any, List, Tuple

import gevent
import pytest
from beam import skip_unless_beam
from gevent import socket
from support import open_fds, read_until_closed, recv, wait_until

import snowg
import snowg.erlang
from snowg import Atom, cluster
from snowg.cluster._epmd_client import port_please
from snowg.erlang import _dist_handshake as hs
from snowg.erlang import _etf, _flags
from snowg.erlang._dist import HANDSHAKE_TIMEOUT
from snowg.erlang._dist_framing import TCP_HANDSHAKE_LENGTH, TLS_HANDSHAKE_LENGTH
from snowg.erlang._types import ErlPid

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120

_names = itertools.count(1)


# ------------------------------------------------------------------ helpers


def erlang_port(erlang_node) -> int:
    """The port of the node's Erlang listener, as a BEAM node finds it (``PORT_PLEASE2``)."""
    entry = port_please("127.0.0.1", erlang_node.name.split("@")[0])
    assert entry is not None, "the node is not registered with the port mapper"
    return int(entry.port)


def dial_raw(erlang_node, config) -> Tuple[Any, int]:
    """A connected socket to the node's Erlang listener (TLS for ``tls``) and its handshake length size."""
    sock = socket.create_connection(("127.0.0.1", erlang_port(erlang_node)), timeout=10)
    if erlang_node.transport == "tls":
        cfg = cluster.load_tls(config.certs, "node", default_dir=None)
        ctx = cluster.client_context(cfg)
        ctx.check_hostname = False
        sock = ctx.wrap_socket(sock, server_side=False)
        return sock, TLS_HANDSHAKE_LENGTH
    return sock, TCP_HANDSHAKE_LENGTH


def handshake(sock, machine) -> Any:
    """Run the initiator to its end; the last event (``Connected`` or ``Refused``), or None if the node closed."""
    sock.sendall(machine.send(hs.SendName()))
    with gevent.Timeout(10, AssertionError("the handshake did not end within 10 s")):
        while True:
            event = machine.next_event()
            if event is hs.NEED_DATA:
                data = sock.recv(65536)
                if not data:
                    return None
                machine.receive_data(data)
                continue
            if isinstance(event, hs.StatusReceived) and event.status == "alive":
                sock.sendall(machine.send(hs.AliveAnswer(True)))
            elif isinstance(event, hs.ChallengeReceived):
                sock.sendall(machine.send(hs.SendChallengeReply()))
            elif isinstance(event, (hs.Refused, hs.Connected)):
                return event


def connect_raw(erlang_node, config, name: str, *, cookie=None, flags: int = _flags.OFFERED) -> Tuple[Any, Any]:
    """A raw connection that passed (or was refused in) the handshake as ``name``: ``(socket, last event)``."""
    sock, length_size = dial_raw(erlang_node, config)
    machine = hs.Initiator(
        name,
        cookie if cookie is not None else erlang_node.cookie,
        flags=flags,
        creation=7,
        length_size=length_size,
        peer=erlang_node.name,
        expect=erlang_node.name,
    )
    return sock, handshake(sock, machine)


def packet(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def control(*terms: bytes) -> bytes:
    """A pass-through packet: ``p`` and the terms, each with its version byte."""
    return packet(b"p" + b"".join(terms))


def warnings_naming(caplog, *parts: str) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "snowg" and r.levelno >= logging.WARNING and all(p in r.getMessage() for p in parts)
    ]


def witness(erlang_node, me):
    """A real erl connected to the node; :func:`still_served` checks that it still is served."""
    beam = erlang_node.beam()
    assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    snowg.register("witness", me)
    return beam


def still_served(erlang_node, beam, n: int) -> None:
    assert snowg.erlang.ping(beam.node) == "pong"
    assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    beam.eval(f"{{witness, '{erlang_node.name}'}} ! {{still_here, {n}}}")
    assert recv(lambda m: m == (Atom("still_here"), n)) == (Atom("still_here"), n)


def the_one_warning(caplog, peer: str, problem: Tuple[str, ...], *, any_of: bool = False) -> str:
    """Exactly one WARNING line names ``peer``, and it names the problem: every part of ``problem`` (or one)."""
    wait_until(lambda: warnings_naming(caplog, peer), f"a WARNING line naming {peer}")
    lines = warnings_naming(caplog, peer)
    assert len(lines) == 1, lines
    found = [part.lower() in lines[0].lower() for part in problem]
    assert any(found) if any_of else all(found), (problem, lines[0])
    return lines[0]


# ------------------------------------------------------------------ after the handshake


def pid_of(node: str) -> bytes:
    return _etf.encode(ErlPid(Atom(node), 1, 0, 7))


def long_atom_reg_send(node: str) -> bytes:
    # {6, From, '', Name} with Name an ATOM_UTF8_EXT of 256 characters (Erlang's limit is 255)
    name = b"\x76" + struct.pack(">H", 256) + b"a" * 256
    ctl = b"\x83\x68\x04\x61\x06" + pid_of(node)[1:] + b"\x76\x00\x00" + name
    return packet(b"p" + ctl + _etf.encode(Atom("hi")))


def atom_cache_packet(node: str) -> bytes:
    # a DIST_HEADER (131, 68) with no cache refs, as a node using the atom cache would send: not pass-through
    ctl = _etf.encode((6, ErlPid(Atom(node), 1, 0, 7), Atom(""), Atom("witness")))
    return packet(b"\x83\x44\x00" + ctl[1:] + _etf.encode(Atom("hi"))[1:])


BAD_PACKETS = {
    "unknown-tag": (
        lambda node: control(_etf.encode((99, Atom("x"), Atom("y")))),
        ("unknown control message", "99"),
    ),
    "truncated-term": (
        lambda node: control(_etf.encode((6, ErlPid(Atom(node), 1, 0, 7), Atom(""), Atom("witness")))[:-4]),
        ("control message", "truncated"),
    ),
    "long-atom": (long_atom_reg_send, ("atom of 256 characters", "255")),
    "atom-cache": (atom_cache_packet, ("atom cache",)),
    "over-max-packet": (
        lambda node: struct.pack(">I", 0x7FFFFFF0) + b"p" * 1000,
        ("2147483632", "over the bound"),
    ),
}


@pytest.mark.parametrize("fault", list(BAD_PACKETS))
def test_a_bad_packet_closes_that_connection_only(erlang_node, snowg_cluster_config, me, log, fault):
    beam = witness(erlang_node, me)
    name = f"hostile{next(_names)}-{os.getpid()}@127.0.0.1"
    sock, event = connect_raw(erlang_node, snowg_cluster_config, name)
    assert isinstance(event, hs.Connected), event
    wait_until(lambda: name in snowg.erlang.nodes(), f"{name} in snowg.erlang.nodes()")
    make, problem = BAD_PACKETS[fault]
    try:
        sock.sendall(make(name))
        read_until_closed(sock, timeout=10)
    finally:
        sock.close()
    line = the_one_warning(caplog=log, peer=name, problem=problem)
    assert "Traceback" not in line
    wait_until(lambda: name not in snowg.erlang.nodes(), f"{name} gone from snowg.erlang.nodes()")
    still_served(erlang_node, beam, 1)


# ------------------------------------------------------------------ before and in the handshake


def test_garbage_before_the_handshake(erlang_node, snowg_cluster_config, me, log):
    beam = witness(erlang_node, me)
    sock, length_size = dial_raw(erlang_node, snowg_cluster_config)
    local = "%s:%d" % sock.getsockname()[:2]
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
        read_until_closed(sock, timeout=10)
    finally:
        sock.close()
    the_one_warning(log, local, ("handshake", "over the bound"))
    if erlang_node.transport == "tls":
        # garbage where the TLS ClientHello should be
        raw = socket.create_connection(("127.0.0.1", erlang_port(erlang_node)), timeout=10)
        local = "%s:%d" % raw.getsockname()[:2]
        try:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
            read_until_closed(raw, timeout=10)
        finally:
            raw.close()
        the_one_warning(log, local, ("ssl", "tls", "wrong version", "record"), any_of=True)
    still_served(erlang_node, beam, 1)


def test_missing_mandatory_flags_are_refused(erlang_node, snowg_cluster_config, me, log):
    beam = witness(erlang_node, me)
    name = f"oldnode{next(_names)}-{os.getpid()}@127.0.0.1"
    flags = _flags.OFFERED & ~(_flags.DFLAG_MANDATORY_25_DIGEST | _flags.DFLAG_BIG_CREATION | _flags.DFLAG_UTF8_ATOMS)
    sock, event = connect_raw(erlang_node, snowg_cluster_config, name, flags=flags)
    try:
        assert not isinstance(event, hs.Connected), event
        read_until_closed(sock, timeout=10)
    finally:
        sock.close()
    the_one_warning(log, name, ("lacks mandatory distribution flags", "BIG_CREATION", "UTF8_ATOMS"))
    assert name not in snowg.erlang.nodes()
    still_served(erlang_node, beam, 1)


def test_a_wrong_cookie_is_refused(erlang_node, snowg_cluster_config, me, log):
    beam = witness(erlang_node, me)
    name = f"badcookie{next(_names)}-{os.getpid()}@127.0.0.1"
    sock, event = connect_raw(erlang_node, snowg_cluster_config, name, cookie="not-the-cookie")
    try:
        assert not isinstance(event, hs.Connected), event
        read_until_closed(sock, timeout=10)
    finally:
        sock.close()
    the_one_warning(log, name, ("wrong digest", "cookie"))
    assert name not in snowg.erlang.nodes()
    still_served(erlang_node, beam, 1)


def test_a_real_erl_with_a_wrong_cookie_is_refused(erlang_node, me, log):
    beam = witness(erlang_node, me)
    intruder = erlang_node.beam(cookie="not-the-cookie")
    assert intruder.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pang")
    the_one_warning(log, intruder.node, ("wrong digest", "cookie"))
    assert intruder.node not in snowg.erlang.nodes()
    still_served(erlang_node, beam, 1)


# ------------------------------------------------------------------ silent peers


@pytest.mark.parametrize("count", [1, 40])
def test_silent_peers_are_dropped_within_the_handshake_timeout(erlang_node, snowg_cluster_config, me, count):
    beam = witness(erlang_node, me)
    before = open_fds()
    port = erlang_port(erlang_node)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        still_served(erlang_node, beam, 1)
        closed = gevent.joinall(
            [gevent.spawn(read_until_closed, s, HANDSHAKE_TIMEOUT + 10) for s in socks], raise_error=True
        )
        assert len(closed) == count
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: open_fds() <= before, f"the open fds to come back to {before} (now {open_fds()})")
    still_served(erlang_node, beam, 2)
