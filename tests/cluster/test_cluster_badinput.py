"""Bad input from a peer closes only that session, with a log line naming the
peer (or its address) and the reason; the node keeps serving its other
sessions .

The node under test is this test process (so ``caplog`` sees its log); a real
peer node started by :mod:`snowg.testing` shows that the node still serves
other sessions. Raw clients speak TLS and the sans-IO handshake of
:mod:`snowg.cluster._handshake` themselves.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
from typing import Any, Iterator, List, Optional, Tuple

import gevent
import msgpack
import pytest
from gevent import socket as gsocket
from gevent.server import StreamServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snowg
from snowg import Pid
from snowg import cluster as tls
from snowg.cluster import _frames as protocol
from snowg.cluster._framing import encode_frame
from snowg.cluster._handshake import INITIATOR, Handshake, HandshakeError
from snowg.testing import wait_for

import distfuncs as df
from support import assert_logged, drive_handshake, read_until_closed

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(60)

_names = itertools.count(1)
_LEN = struct.Struct(">I")


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def recording_hub_errors() -> Iterator[List[Tuple[Any, Any]]]:
    """``(context, exception)`` of every uncaught exception in any greenlet (the hub's handle_error) meanwhile."""
    hub = gevent.get_hub()
    errors: List[Tuple[Any, Any]] = []
    original = hub.handle_error

    def record(context, type_, value, tb):
        errors.append((context, value))
        return original(context, type_, value, tb)

    hub.handle_error = record
    try:
        yield errors
    finally:
        del hub.handle_error


@pytest.fixture
def hub_errors():
    """Uncaught exceptions in any greenlet during the test (:func:`recording_hub_errors`)."""
    with recording_hub_errors() as errors:
        yield errors


def still_serving(peer) -> None:
    assert peer.name in snowg.nodes()
    assert peer.rpc(df.ping, "still") == ("pong", peer.name, "still")


def tcp(snowg_node) -> Any:
    sock = gsocket.create_connection(("127.0.0.1", snowg_node.port), timeout=5)
    return sock


def where(sock) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def tls_client(config, snowg_node, cfg: Optional[tls.TLSConfig] = None) -> Any:
    sock = tcp(snowg_node)
    cfg = cfg or tls.load_tls(config.certs, "raw@127.0.0.1", default_dir=None)
    return tls.client_context(cfg).wrap_socket(sock, server_side=False)


def handshake(sock, config, node_name: str, name: Optional[str] = None, cookie: Optional[str] = None):
    """Run the initiator's side of the handshake over ``sock``; returns (name, Handshake)."""
    name = name or f"raw{next(_names)}-{os.getpid()}@127.0.0.1"
    hs = Handshake(INITIATOR, name, 12345, cookie or config.cookie, address="127.0.0.1:1", expected_peer=node_name)
    drive_handshake(sock, hs, timeout=5)
    return name, hs


def raw_session(config, snowg_node) -> Tuple[Any, str]:
    """A TLS connection that completed the real handshake; the node lists it as a node."""
    sock = tls_client(config, snowg_node)
    name, _hs = handshake(sock, config, snowg_node.name)
    assert wait_for(lambda: name in snowg.nodes(), timeout=5)
    return sock, name


# --------------------------------------------------- before/at the TLS layer


def test_plain_tcp_without_tls(snowg_node, witness, log, hub_errors) -> None:
    sock = tcp(snowg_node)
    addr = where(sock)
    hello = Handshake(INITIATOR, "plain@127.0.0.1", 1, "cookie", address="x").data_to_send()
    sock.sendall(hello)
    read_until_closed(sock)
    assert_logged(log, f"rejected connection from {addr}", "TLS handshake failed")
    still_serving(witness)
    assert hub_errors == []


def test_random_bytes_on_tcp(snowg_node, witness, log, hub_errors) -> None:
    sock = tcp(snowg_node)
    addr = where(sock)
    sock.sendall(bytes(range(256)) * 8)
    read_until_closed(sock)
    assert_logged(log, f"rejected connection from {addr}", "TLS handshake failed")
    still_serving(witness)
    assert hub_errors == []


def test_certificate_from_another_ca_is_refused(
    snowg_node, snowg_cluster_config, witness, log, hub_errors, tmp_path
) -> None:
    other = tls.make_certs(tmp_path / "other")
    ours = tls.load_tls(snowg_cluster_config.certs, "raw@127.0.0.1", default_dir=None)
    # The client trusts our CA but presents a certificate of another CA.
    assert other  # made a CA and a generic node certificate
    forged = tls.TLSConfig(ours.ca, str(tmp_path / "other" / "node.pem"), str(tmp_path / "other" / "node.key"))
    sock = tcp(snowg_node)
    addr = where(sock)
    try:
        tls_sock = tls.client_context(forged).wrap_socket(sock, server_side=False)
        read_until_closed(tls_sock)  # TLS 1.3: the server refuses after the client finished
    except OSError:
        pass
    assert_logged(log, f"rejected connection from {addr}", "TLS handshake failed")
    still_serving(witness)

    # And we refuse a server whose certificate is from another CA.
    server_cfg = tls.load_tls(str(tmp_path / "other"), "fake@127.0.0.1", default_dir=None)
    ctx = tls.server_context(server_cfg)

    def handle(s, _addr):
        try:
            ctx.wrap_socket(s, server_side=True).recv(10)
        except OSError:
            pass

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    try:
        target = f"fake@127.0.0.1:{server.server_port}"
        assert snowg.connect(target) is False
        assert_logged(
            log, "connection to fake@127.0.0.1", f"127.0.0.1:{server.server_port}", "TLS handshake failed", "same CA"
        )
    finally:
        server.stop()
    assert "fake@127.0.0.1" not in snowg.nodes()
    still_serving(witness)
    assert hub_errors == []


# ------------------------------------------------------- the cookie handshake


def test_wrong_cookie_raw_client(snowg_node, snowg_cluster_config, witness, log, hub_errors) -> None:
    sock = tls_client(snowg_cluster_config, snowg_node)
    addr = where(sock)
    with pytest.raises(HandshakeError) as err:
        handshake(sock, snowg_cluster_config, snowg_node.name, name="liar@127.0.0.1", cookie="not the cookie")
    # The connecting side proves the cookie first: the node refused our proof, and sent none of its own.
    assert err.value.kind == "rejected" and "cookie mismatch" in err.value.reason
    sock.close()
    # Now the node's side: a client that cannot prove the cookie (reflects garbage as its REPLY).
    sock = tls_client(snowg_cluster_config, snowg_node)
    addr = where(sock)
    hs = Handshake(INITIATOR, "liar2@127.0.0.1", 1, snowg_cluster_config.cookie, address="x")
    sock.sendall(hs.data_to_send())
    with gevent.Timeout(5):
        assert sock.recv(4096)  # the node's CHALLENGE
    sock.sendall(encode_frame(["REPLY", b"\x00" * 32]))
    reply = read_until_closed(sock)
    assert b"cookie mismatch" in reply  # the node told us why before closing
    assert_logged(log, f"rejected connection from {addr}", "cookie mismatch", "liar2@127.0.0.1")
    assert "liar2@127.0.0.1" not in snowg.nodes()
    still_serving(witness)
    assert hub_errors == []


def test_wrong_cookie_peer_node(snowg_node, peers, witness, log, hub_errors) -> None:
    # A real node with another cookie: connecting to it fails on both sides, with reasons.
    bad = peers.start(connect=False, extra_args=["--cookie", "another cookie"])
    assert snowg.connect(bad.target) is False
    assert_logged(log, f"connection to {bad.name}", "cookie")
    assert bad.name not in snowg.nodes()
    assert wait_for(lambda: "cookie mismatch" in bad.read_log(), timeout=5)
    # ... and when it connects to us.
    bad2 = peers.start(
        connect=False, extra_args=["--cookie", "another cookie", "--connect", f"{snowg.node()}:{snowg_node.port}"]
    )
    assert_logged(log, "rejected connection from", "cookie mismatch", bad2.name)
    assert bad2.name not in snowg.nodes()
    still_serving(witness)
    assert hub_errors == []


def test_garbage_inside_tls_before_the_handshake(snowg_node, snowg_cluster_config, witness, log, hub_errors) -> None:
    for garbage, reason in [
        (b"\xc1" * 64, "too large"),
        (_LEN.pack(5) + b"\xc1\xc1\xc1\xc1\xc1", "bad data"),
        (encode_frame(["HELLO", 99, "x@y", 1, "", b"0" * 32]), "version mismatch"),
        (encode_frame(["ACK"]), "expected HELLO"),
    ]:
        sock = tls_client(snowg_cluster_config, snowg_node)
        addr = where(sock)
        sock.sendall(garbage)
        read_until_closed(sock)
        assert_logged(log, f"rejected connection from {addr}", reason)
    # Half a frame, then close.
    sock = tls_client(snowg_cluster_config, snowg_node)
    addr = where(sock)
    sock.sendall(_LEN.pack(100) + b"\x00" * 10)
    sock.close()
    assert_logged(log, f"rejected connection from {addr}", "closed the connection during the handshake")
    still_serving(witness)
    assert hub_errors == []


# -------------------------------------------------- after a real handshake


def _body(term) -> bytes:
    body = msgpack.packb(term, use_bin_type=True)
    return _LEN.pack(len(body)) + body


BAD_SESSION_INPUT = [
    pytest.param(lambda me: _LEN.pack(8) + b"\xc1" * 8, "undecodable frame body", id="random-bytes"),
    pytest.param(lambda me: b"GET / HTTP/1.1\r\n\r\n", "over the maximum", id="http"),
    pytest.param(lambda me: _LEN.pack(64 * 1024 * 1024 + 1), "over the maximum", id="oversize"),
    pytest.param(lambda me: encode_frame([99, 1]), "unknown frame tag 99", id="unknown-tag"),
    pytest.param(lambda me: encode_frame(["SEND", me, 1]), "unknown frame tag 'SEND'", id="str-tag"),
    pytest.param(lambda me: _body("just a string"), "a frame must be an array", id="not-an-array"),
    pytest.param(lambda me: _body([]), "empty frame", id="empty-frame"),
    pytest.param(lambda me: encode_frame([protocol.SEND, "not a pid", 1]), "SEND frame: field 1", id="send-str"),
    pytest.param(lambda me: encode_frame([protocol.SEND, me]), "SEND frame must have 2 fields", id="send-short"),
    pytest.param(lambda me: encode_frame([protocol.LINK, 1, me]), "LINK frame: field 1", id="link-int"),
    pytest.param(
        lambda me: encode_frame([protocol.MONITOR, me, me, "ref"]), "MONITOR frame: field 3", id="monitor-str-ref"
    ),
    pytest.param(lambda me: encode_frame([protocol.LINK, me, me]), "claiming to come from", id="spoofed-link"),
    pytest.param(lambda me: encode_frame([protocol.EXIT2, me, me, "kill"]), "claiming to come from", id="spoofed-exit"),
    pytest.param(lambda me: encode_frame([protocol.PEER_LIST, [["a@b"]]]), "PEER_LIST frame: field 1", id="peer-list"),
]


@pytest.mark.parametrize("make, reason", BAD_SESSION_INPUT)
def test_bad_frames_close_only_that_session(
    snowg_node, snowg_cluster_config, witness, log, hub_errors, make, reason
) -> None:
    me = snowg.self()
    snowg.trap_exit(True)
    sock, name = raw_session(snowg_cluster_config, snowg_node)
    snowg.monitor_node(name)
    sock.sendall(make(me))
    read_until_closed(sock)
    line = assert_logged(log, f"session with {name}", "closed", reason)
    assert where(sock) in line  # the peer's address too
    nd = snowg.receive(lambda m: type(m) is snowg.NodeDown, timeout=5)
    assert nd.node == name and nd.reason == "protocol_error"
    assert snowg.is_alive(me) and snowg.process_info(me)["trap_exit"] is True
    snowg.flush_messages(lambda m: type(m) is snowg.Exit)  # nothing was spoofed into us either
    still_serving(witness)
    assert hub_errors == []


def test_truncated_frame_then_close(snowg_node, snowg_cluster_config, witness, log, hub_errors) -> None:
    sock, name = raw_session(snowg_cluster_config, snowg_node)
    frame = encode_frame([protocol.SEND, snowg.self(), "x" * 100])
    sock.sendall(frame[:50])
    addr = where(sock)
    sock.close()
    assert_logged(log, f"session with {name} ({addr}) closed", "middle of a frame")
    assert wait_for(lambda: name not in snowg.nodes(), timeout=5)
    still_serving(witness)
    assert hub_errors == []


def test_good_frames_from_a_raw_session_work(snowg_node, snowg_cluster_config, witness, log) -> None:
    # The control case: the raw client is a real session, and a good frame is delivered.
    me = snowg.self()
    sock, name = raw_session(snowg_cluster_config, snowg_node)
    sock.sendall(encode_frame([protocol.TICK]) + encode_frame([protocol.SEND, me, ("hi", b"x")]))
    assert snowg.receive(timeout=5) == ("hi", b"x")
    assert name in snowg.nodes()
    sock.close()
    assert wait_for(lambda: name not in snowg.nodes(), timeout=5)


# ------------------------------------------------------------- fuzzing live


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300), after_handshake=st.booleans())
def test_any_bytes_to_a_live_node(snowg_node, snowg_cluster_config, data: bytes, after_handshake: bool) -> None:
    """Any bytes, before or after the handshake: the connection ends or stays a session; the node lives."""
    with recording_hub_errors() as errors:
        sock = tls_client(snowg_cluster_config, snowg_node)
        name = None
        if after_handshake:
            sock, name = sock, handshake(sock, snowg_cluster_config, snowg_node.name)[0]
        if data:
            sock.sendall(data)
        sock.close()
        if name is not None:
            assert wait_for(lambda: name not in snowg.nodes(), timeout=5)
        # The node still accepts and completes a handshake.
        sock2 = tls_client(snowg_cluster_config, snowg_node)
        name2 = handshake(sock2, snowg_cluster_config, snowg_node.name)[0]
        assert wait_for(lambda: name2 in snowg.nodes(), timeout=5)
        sock2.close()
        assert wait_for(lambda: name2 not in snowg.nodes(), timeout=5)
    assert errors == []


_terms = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(Pid, st.sampled_from(["x@y", "nonode@nohost"]), st.integers(0, 5), st.integers(0, 3)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)

# Everything but PEER_LIST (a valid one would make the node dial addresses) and
# the global-registry tags (owned and fuzzed elsewhere).
_FUZZ_TAGS = [t for t in range(0, 32) if t not in (protocol.PEER_LIST, 12, 13, 14, 17, 18, 19)]


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(tag=st.sampled_from(_FUZZ_TAGS), fields=st.lists(_terms, max_size=6))
def test_fuzzed_frames_after_the_handshake(snowg_node, snowg_cluster_config, tag: int, fields: list) -> None:
    """A well-formed frame with any tag and fields: handled, or the session closes; never a crash."""
    with recording_hub_errors() as errors:
        me = snowg.self()
        sock, name = raw_session(snowg_cluster_config, snowg_node)
        marker = ("marker", tag)
        sock.sendall(encode_frame([tag, *fields]) + encode_frame([protocol.SEND, me, marker]))
        # Either the frame was fine (the marker follows) or the session closed.
        assert wait_for(
            lambda: name not in snowg.nodes() or snowg.process_info(me)["messages"].count(marker) > 0, timeout=5
        )
        snowg.flush_messages()
        sock.close()
        assert wait_for(lambda: name not in snowg.nodes(), timeout=5)
    assert errors == []
