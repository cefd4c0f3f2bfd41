"""Attacks on the cluster handshake: impostors, guesses at the cookie, floods of half-open connections.

The node under test is this test process (so ``caplog`` sees its log); a
real peer node (an OS process started by :mod:`snowg.testing`) is the
witness it must keep serving. Attackers are raw TLS clients that hold a
certificate of the cluster CA and speak the handshake with the sans-IO
:class:`~snowg.cluster._handshake.Handshake`, or plain TCP sockets. Each
test names the attack, asserts its outcome exactly, and that the witness
was served meanwhile (its session never went down, an rpc over it works).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, List

import gevent
import pytest
from gevent import socket as gsocket
from gevent.server import StreamServer

import snowg
from snowg import cluster as tls
from snowg.cluster import _nodestate
from snowg.cluster._connect import HANDSHAKE_TIMEOUT, REFUSAL_LOG_INTERVAL, session_for
from snowg.cluster._framing import FrameDecoder, encode_frame
from snowg.cluster._handshake import (
    INITIATOR,
    PROTOCOL_VERSION,
    Handshake,
    HandshakeError,
)
from snowg.cluster._tls import is_node_certificate
from snowg.testing import wait_for

import distfuncs as df
from support import (
    assert_logged,
    drive_handshake,
    log_lines,
    no_message,
    read_until_closed,
    recv,
    tagged,
    wait_for_stop,
)

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(120)

_serial = itertools.count(1)


# ------------------------------------------------------------------ helpers


def tls_client(certs: str, node: Any, as_name: str = "raw@127.0.0.1", source: str = "127.0.0.1") -> Any:
    """A TLS connection to ``node`` with the certificate ``certs`` would give the node ``as_name``."""
    sock = gsocket.create_connection(("127.0.0.1", node.port), timeout=10, source_address=(source, 0))
    cfg = tls.load_tls(certs, as_name, default_dir=None)
    return tls.client_context(cfg).wrap_socket(sock, server_side=False)


@contextlib.contextmanager
def session_replaced(name: str, timeout: float) -> Iterator[None]:
    """What the block does replaces the session with node ``name``.

    After the block: NodeDown with 'connection_closed', then NodeUp, each
    within ``timeout`` seconds (this process monitors nodes meanwhile).
    """
    snowg.monitor_nodes(True)
    try:
        yield
        down = snowg.receive(lambda m: type(m) is snowg.NodeDown and m.node == name, timeout=timeout)
        assert down.reason == "connection_closed"
        snowg.receive(lambda m: type(m) is snowg.NodeUp and m.node == name, timeout=timeout)
    finally:
        snowg.monitor_nodes(False)


def still_served(peer: Any, sess: Any) -> None:
    """The peer's session is the same live one, and an rpc over it works."""
    assert session_for(peer.name) is sess and not sess.closed
    assert peer.rpc(df.ping, "still") == ("pong", peer.name, "still")


# ------------------------------------------------------- impostors (no cookie)


@pytest.mark.parametrize("same_creation", [False, True], ids=["new-creation", "same-creation"])
def test_impostor_claiming_a_connected_peer_disturbs_nothing(
    snowg_node, snowg_cluster_config, witness, trapping_me, log, same_creation: bool
) -> None:
    """Attack: a TLS client with a cluster certificate but not the cookie says HELLO under the name of
    a connected peer (with a new creation, as if the peer had restarted; or with its very creation,
    saying it has no session). Outcome, 6 of 6 tries: the live session stays up (no NodeDown, no
    'noconnection' exit), an rpc over it works, and the impostor is refused for the cookie."""
    sess = session_for(witness.name)
    assert sess is not None
    snowg.monitor_node(witness.name)
    # A link that a lost session would break with 'noconnection'.
    linked = snowg.spawn_link(wait_for_stop, trapping_me, node=witness.name)
    assert recv(tagged("started")) == ("started", linked)
    for attempt in range(6):
        creation = sess.peer_creation if same_creation else sess.peer_creation + 1 + attempt
        sock = tls_client(snowg_cluster_config.certs, snowg_node)
        hs = Handshake(INITIATOR, witness.name, creation, "a guess at the cookie", address=witness.address)
        if attempt % 2 == 0:
            # Goes all the way: its REPLY proves nothing.
            with pytest.raises(HandshakeError, match="peer rejected us: cookie mismatch"):
                drive_handshake(sock, hs)
        else:
            # Stops after the CHALLENGE and holds the connection while the peer is used.
            sock.sendall(hs.data_to_send())
            with gevent.Timeout(5):
                (challenge,) = FrameDecoder().feed(sock.recv(4096))
            assert challenge[0] == "CHALLENGE" and challenge[5] is same_creation
            still_served(witness, sess)
        sock.close()
        still_served(witness, sess)
    claims = lambda: [line for line in log_lines(log) if f"claiming to be {witness.name}" in line]  # noqa: E731
    assert wait_for(lambda: len(claims()) == 6, timeout=5), claims()
    assert sum("cookie mismatch" in line for line in claims()) == 3
    assert sum("closed the connection during the handshake" in line for line in claims()) == 3
    no_message(lambda m: type(m) in (snowg.NodeDown, snowg.Exit))
    assert witness.name in snowg.nodes()
    snowg.send(linked, "stop")
    assert recv(lambda m: type(m) is snowg.Exit).reason == "normal"


def test_the_node_sends_nothing_cookie_derived_before_the_initiator_proves(
    snowg_node, snowg_cluster_config, witness
) -> None:
    """Attack: the wrong cookie, to collect the node's proof for an offline guess. Outcome: the node
    answers a HELLO with a CHALLENGE holding only its name, creation, address, a random challenge
    and a flag; after a wrong REPLY it sends a REJECT and nothing else (no proof, no ACK)."""
    sess = session_for(witness.name)
    sock = tls_client(snowg_cluster_config.certs, snowg_node)
    hs = Handshake(INITIATOR, f"guesser{next(_serial)}@127.0.0.1", 7, "wrong cookie", address="127.0.0.1:1")
    sock.sendall(hs.data_to_send())
    with gevent.Timeout(5):
        (challenge,) = FrameDecoder().feed(sock.recv(4096))
    assert challenge[:4] == ["CHALLENGE", snowg.node(), snowg_node.creation, snowg_node.address]
    assert type(challenge[4]) is bytes and len(challenge[4]) == 32 and challenge[5] is False
    assert len(challenge) == 6
    hs.receive_data(encode_frame(challenge))
    sock.sendall(hs.data_to_send())  # the REPLY, made with the wrong cookie
    frames = FrameDecoder().feed(read_until_closed(sock))
    assert frames == [["REJECT", "cookie mismatch: our cookies differ"]]
    still_served(witness, sess)


def test_a_restarted_peer_replaces_its_old_session_only_once_it_has_proved(
    snowg_node, snowg_cluster_config, peers, me, log
) -> None:
    """A restart this node has not noticed yet (OTP's up_pending): the old incarnation's session is
    still up (the old OS process even goes on running, so it stays up until replaced, however long
    the new one takes to start); the new one dials this node with a new creation and the cookie.
    Outcome: the old session goes (NodeDown 'connection_closed', as the peer restarted) only after
    the new one proved the cookie, then NodeUp, and the new incarnation answers an rpc."""
    name = f"phoenix{next(_serial)}-{os.getpid()}@127.0.0.1"
    old = peers.start(name, modules=["distfuncs"])
    old_sess = session_for(name)
    assert old_sess is not None and old.alive()
    with session_replaced(name, timeout=10):
        peers.start(
            name,
            modules=["distfuncs"],
            connect=False,
            # The old incarnation still holds the name in the port mapper.
            extra_args=["--connect", f"{snowg.node()}:{snowg_node.port}", "--no-epmd"],
        )
    new_sess = session_for(name)
    assert new_sess is not None and new_sess is not old_sess and old_sess.closed
    assert new_sess.peer_creation != old_sess.peer_creation
    assert snowg.rpc.call(name, df.ping, 1, timeout=10) == ("pong", name, 1)
    assert_logged(log, f"session with {name}", "the peer restarted")


# ------------------------------------------------- per-node certificates


@pytest.fixture
def node_certs(snowg_cluster_config, tmp_path) -> Path:
    """The cluster's CA, with certificates for named nodes (``snowg certs --node``)."""
    directory = tmp_path / "certs"
    directory.mkdir(mode=0o700)
    for f in ("ca.pem", "ca.key"):
        shutil.copy(Path(snowg_cluster_config.certs) / f, directory / f)
    return directory


def test_per_node_certificates_must_name_the_node_claimed(snowg_node, snowg_cluster_config, node_certs, peers) -> None:
    """Attack: with per-node certificates, a certificate holder claims another node's name (with the
    generic certificate, or with the certificate of another node), or a server answers for a node it
    is not. Outcome: the node whose certificate is its own refuses both before the cookie is used
    (REJECT, a WARNING naming the claimed name), and its own dial to the wrong server sends nothing
    at all; the owner of a certificate is accepted under its own name."""
    stamp = f"{next(_serial)}-{os.getpid()}"
    alice, bob, carol = (f"{n}{stamp}@127.0.0.1" for n in ("alice", "bob", "carol"))
    tls.make_certs(node_certs, [alice, bob])
    assert is_node_certificate(tls.load_tls(str(node_certs), alice, default_dir=None), alice)
    assert not is_node_certificate(tls.load_tls(snowg_cluster_config.certs, alice, default_dir=None), alice)

    # A server that presents bob's certificate and records what it is sent.
    received: List[bytes] = []
    ended: List[bool] = []
    ctx = tls.server_context(tls.load_tls(str(node_certs), bob, default_dir=None))

    def impostor_server(s: Any, _addr: Any) -> None:
        try:
            t = ctx.wrap_socket(s, server_side=True)
            while True:
                data = t.recv(4096)
                received.append(data)
                if not data:
                    return
        except OSError:
            pass
        finally:
            ended.append(True)

    server = StreamServer(("127.0.0.1", 0), impostor_server)
    server.start()
    try:
        node = peers.start(
            alice,
            connect=False,
            extra_args=["--certs", str(node_certs), "--connect", f"{carol}:{server.server_port}"],
        )
        assert wait_for(lambda: f"connection to {carol}" in node.read_log(), timeout=10), node.log_tail()
        assert f"its certificate is not issued to {carol}" in node.read_log()
        assert wait_for(lambda: bool(ended), timeout=5)
        assert b"".join(received) == b""  # not even a HELLO

        class Target:
            port = int(node.address.rsplit(":", 1)[1])

        cookie = snowg_cluster_config.cookie
        for certs, cert_of, claimed in (
            (snowg_cluster_config.certs, "x@127.0.0.1", bob),  # the generic certificate
            (str(node_certs), bob, carol),  # bob's certificate, claiming to be carol
        ):
            sock = tls_client(certs, Target, as_name=cert_of)
            with pytest.raises(HandshakeError, match="is not issued to") as err:
                drive_handshake(sock, Handshake(INITIATOR, claimed, 1, cookie, address="127.0.0.1:1"))
            assert err.value.kind == "rejected"
            sock.close()
            assert wait_for(lambda c=claimed: f"claiming to be {c}" in node.read_log(), timeout=5)
            assert "WARNING" in next(
                line for line in node.read_log().splitlines() if f"claiming to be {claimed}" in line
            )

        # The owner of bob's certificate, as bob, with the cookie: accepted.
        sock = tls_client(str(node_certs), Target, as_name=bob)
        hs = Handshake(INITIATOR, bob, 1, cookie, address="127.0.0.1:1", expected_peer=alice)
        drive_handshake(sock, hs)
        assert hs.established
        sock.close()
    finally:
        server.stop()


# --------------------------------------------- floods of pending handshakes


def test_pending_handshakes_are_capped_per_address_and_per_node(snowg_node, snowg_cluster_config, witness, log) -> None:
    """Attack: many TCP connections that never finish their handshake (each would hold a file
    descriptor for the handshake timeout). Outcome: past max_handshakes_per_address from one
    address, or max_handshakes in all, a new connection is closed at once (long before the
    handshake timeout), with one WARNING line per address however many are refused; connections
    from other addresses are admitted until the node-wide cap; the witness is served throughout;
    once the attackers go, a new client completes the handshake."""
    st = _nodestate.current
    assert st is not None
    per_address, per_node = st.max_handshakes_per_address, st.max_handshakes
    assert per_node % per_address == 0 and per_node // per_address + 2 < 250
    sess = session_for(witness.name)
    held: List[Any] = []

    def hold(source: str) -> Any:
        sock = gsocket.create_connection(("127.0.0.1", snowg_node.port), timeout=5, source_address=(source, 0))
        held.append(sock)
        return sock

    def refused_at_once(source: str) -> None:
        sock = hold(source)
        # Closed long before the handshake timeout would close it.
        assert read_until_closed(sock, timeout=HANDSHAKE_TIMEOUT / 2) == b""

    try:
        for _ in range(per_address):
            hold("127.0.0.1")
        assert wait_for(lambda: st.handshakes.get("127.0.0.1") == per_address, timeout=5)
        before = len(log_lines(log))
        for _ in range(20):
            refused_at_once("127.0.0.1")
        refusals = [line for line in log_lines(log)[before:] if "refused connection from 127.0.0.1:" in line]
        assert len(refusals) == 1, refusals  # summarised, not one line each
        assert "max_handshakes_per_address" in refusals[0]
        assert REFUSAL_LOG_INTERVAL > 1  # ... for that long, then a line says how many more
        still_served(witness, sess)

        # Another address is admitted: it completes a real handshake while 127.0.0.1 is full.
        sock = tls_client(snowg_cluster_config.certs, snowg_node, source="127.0.0.2")
        other = f"other{next(_serial)}-{os.getpid()}@127.0.0.1"
        drive_handshake(sock, Handshake(INITIATOR, other, 1, snowg_cluster_config.cookie, address="127.0.0.1:1"))
        assert wait_for(lambda: other in snowg.nodes(), timeout=5)
        sock.close()

        # Fill the node-wide cap from more addresses; then any address is refused at once.
        sources = [f"127.0.0.{i}" for i in range(3, 3 + per_node // per_address - 1)]
        for source in sources:
            for _ in range(per_address):
                hold(source)
        assert wait_for(lambda: sum(st.handshakes.values()) == per_node, timeout=10)
        refused_at_once("127.0.0.250")
        assert_logged(log, "refused connection from 127.0.0.250:", "max_handshakes")
        still_served(witness, sess)
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: not st.handshakes, timeout=10)
    # The attackers gone, a new client from the flooded address completes the handshake.
    sock = tls_client(snowg_cluster_config.certs, snowg_node)
    late = f"late{next(_serial)}-{os.getpid()}@127.0.0.1"
    drive_handshake(sock, Handshake(INITIATOR, late, 1, snowg_cluster_config.cookie, address="127.0.0.1:1"))
    assert wait_for(lambda: late in snowg.nodes(), timeout=5)
    sock.close()
    still_served(witness, sess)


def test_an_old_protocol_version_is_told_why(snowg_node, snowg_cluster_config, witness, log) -> None:
    """A node of the previous protocol (the acceptor proved the cookie first) is refused with the reason."""
    sock = tls_client(snowg_cluster_config.certs, snowg_node)
    sock.sendall(encode_frame(["HELLO", PROTOCOL_VERSION - 1, "old@127.0.0.1", 1, "", b"\x00" * 32]))
    (reject,) = FrameDecoder().feed(read_until_closed(sock))
    assert reject[0] == "REJECT" and f"we speak {PROTOCOL_VERSION}" in reject[1]
    assert_logged(log, "rejected connection from", "version mismatch")
    still_served(witness, session_for(witness.name))


def test_a_peer_that_dropped_its_side_reconnects_at_once(snowg_node, snowg_cluster_config, witness, me) -> None:
    """A node's side of a session is gone but this node has not noticed (its end of the stream was
    lost): the node dials again with the same creation. Outcome: told that this node is alive, it
    says it has no session; once it has proved the cookie its new connection replaces the stale one
    (NodeDown 'connection_closed', then NodeUp), instead of being refused for the 4 ticks it takes
    to notice. The witness is served meanwhile."""
    name = f"dropper{next(_serial)}-{os.getpid()}@127.0.0.1"
    first = tls_client(snowg_cluster_config.certs, snowg_node)
    drive_handshake(first, Handshake(INITIATOR, name, 77, snowg_cluster_config.cookie, address="127.0.0.1:1"))
    assert wait_for(lambda: name in snowg.nodes(), timeout=5)
    stale = session_for(name)
    with session_replaced(name, timeout=5):
        second = tls_client(snowg_cluster_config.certs, snowg_node)
        hs = Handshake(INITIATOR, name, 77, snowg_cluster_config.cookie, address="127.0.0.1:1")
        assert drive_handshake(second, hs) is True  # told "alive", it answered "go on"
        assert hs.established
    fresh = session_for(name)
    assert stale is not None and stale.closed and fresh is not None and fresh is not stale
    still_served(witness, session_for(witness.name))
    first.close()
    second.close()
    assert wait_for(lambda: name not in snowg.nodes(), timeout=5)
