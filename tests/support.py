"""Helpers shared by the test modules and by the peer nodes they start.

Tests import this module by name (``tests/`` is on ``sys.path`` under
pytest; peers get it through ``PYTHONPATH``). A peer that is to run its
``@snowg.spawnable`` functions imports it: name it in the peer's modules
(``peers.start(modules=["remotefuncs", "support"])``) unless a module named
there imports it already (``distfuncs`` does).

Every wait here has a time bound and waits for a message, never for a sleep:
:func:`recv` takes the next matching message, :func:`no_message` asserts
that none is there, :func:`wait_down` waits for a process to end.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Callable, List, Optional, Tuple, Union

import gevent

import snowg
from snowg.testing import wait_for

#: Seconds any single expected message may take before a test fails.
T = 10.0

Match = Optional[Callable[[Any], bool]]


#: Plain terms every codec must carry unchanged (value and type): the 64-bit
#: edges, a float, empty and non-ASCII strings, empty bytes, small tuples.
PLAIN_TERMS: List[Any] = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "", "h\u00e9llo", b"", (), (1,)]


# ----------------------------------------------------------- receiving


def recv(match: Match = None, timeout: float = T) -> Any:
    """The next message (matching ``match``, if given) of the calling process.

    Blocks for at most ``timeout`` seconds.

    Raises:
        snowg.Timeout: none arrived in time (the test fails).
    """
    return snowg.receive(match, timeout=timeout)


def no_message(match: Match = None, wait: float = 0.0) -> None:
    """Assert that no (matching) message arrives within ``wait`` seconds.

    Blocks for ``wait`` seconds (not at all with the default 0: only the
    mailbox as it is now is looked at).

    Raises:
        AssertionError: naming the message that was there.
    """
    try:
        msg = snowg.receive(match, timeout=wait)
    except snowg.Timeout:
        return
    raise AssertionError(f"unexpected message {msg!r}")


def tagged(tag: Any, *fields: Any) -> Callable[[Any], bool]:
    """A match: a tuple ``(tag, *fields, ...)`` (its first items equal these)."""
    head = (tag, *fields)
    return lambda m: type(m) is tuple and m[: len(head)] == head


def is_down(ref: snowg.Ref) -> Callable[[Any], bool]:
    """A match: the :class:`snowg.Down` of the monitor ``ref``."""
    return lambda m: type(m) is snowg.Down and m.ref == ref


def wait_down(pid: snowg.Pid, timeout: float = T) -> Any:
    """Monitor ``pid`` and return its exit reason once it has ended.

    Blocks for at most ``timeout`` seconds (a dead pid answers at once with
    ``'noproc'``).

    Raises:
        snowg.Timeout: it did not end in time.
    """
    ref = snowg.monitor(pid)
    return recv(is_down(ref), timeout).reason


# ------------------------------------------- processes any node can start


@snowg.spawnable
def wait_for_stop(parent: Optional[snowg.Pid] = None) -> None:
    """Tell ``parent`` (if given) ``('started', self())``, then block until ``'stop'``.

    The target of links, monitors and exit signals in tests.
    """
    if parent is not None:
        snowg.send(parent, ("started", snowg.self()))
    snowg.receive(lambda m: m == "stop")


@snowg.spawnable
def forward_until_stop(parent: snowg.Pid, tag: str = "fwd") -> None:
    """Send every message to ``parent`` as ``(tag, self(), msg)`` until ``'stop'`` arrives."""
    me = snowg.self()
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        snowg.send(parent, (tag, me, msg))


# ------------------------------------------------ a node's view of the cluster


@snowg.spawnable
def connected_nodes() -> List[str]:
    """``snowg.nodes()`` of the node this runs on."""
    return snowg.nodes()


# ------------------------------------------------------- this machine's state


def rss(pid: Union[int, str] = "self") -> int:
    """The resident memory (``VmRSS``) of the OS process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------- snowg's log


def log_lines(caplog: Any) -> List[str]:
    """The messages of the ``snowg`` log records ``caplog`` holds."""
    return [r.getMessage() for r in caplog.records if r.name == "snowg"]


def find_line(caplog: Any, *parts: str) -> Optional[str]:
    """The first ``snowg`` log line containing every one of ``parts``, or None."""
    for line in log_lines(caplog):
        if all(p in line for p in parts):
            return line
    return None


def assert_logged(caplog: Any, *parts: str) -> str:
    """Some ``snowg`` log line contains every one of ``parts`` (waits up to 5 s); returns it."""
    wait_for(lambda: find_line(caplog, *parts) is not None, timeout=5)
    line = find_line(caplog, *parts)
    assert line is not None, f"no log line with {parts!r} in:\n" + "\n".join(log_lines(caplog))
    return line


# ------------------------------------------------ raw sessions with a node


def read_until_closed(sock: Any, timeout: float = 5.0) -> bytes:
    """Everything the node sends until it closes the connection (fails after ``timeout`` s)."""
    data = b""
    with gevent.Timeout(timeout, AssertionError(f"the node did not close the connection within {timeout} s")):
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return data
            if not chunk:
                return data
            data += chunk


def raw_session(
    config: Any,
    port: int,
    name: str,
    creation: int,
    expected_peer: str,
    *,
    host: str = "127.0.0.1",
    cert_name: Optional[str] = None,
    timeout: float = 10.0,
) -> Tuple[Any, Any]:
    """A TLS connection to the node at ``host:port`` that passed the real handshake as node ``name``.

    The certificate is the cluster's, made out to ``cert_name`` (default:
    ``name``); the cookie is ``config.cookie``. Connecting and the handshake
    each take at most ``timeout`` seconds. Returns ``(socket, Handshake)``;
    the handshake's ``trailing_data`` is what the node sent after it.
    """
    from gevent import socket as gsocket

    from snowg import cluster as tls
    from snowg.cluster._handshake import INITIATOR, Handshake

    sock = gsocket.create_connection((host, port), timeout=timeout)
    cfg = tls.load_tls(config.certs, cert_name or name, default_dir=None)
    sock = tls.client_context(cfg).wrap_socket(sock, server_side=False)
    hs = Handshake(INITIATOR, name, creation, config.cookie, address="127.0.0.1:1", expected_peer=expected_peer)
    drive_handshake(sock, hs, timeout, closed=AssertionError("the node closed the connection during the handshake"))
    return sock, hs


def drive_handshake(sock: Any, hs: Any, timeout: float = 10.0, closed: Optional[BaseException] = None) -> bool:
    """Run the initiator's side of the handshake ``hs`` over ``sock`` to its end (at most ``timeout`` s).

    Told that the node already has a session with us, it goes on ("we have
    none: replace yours"). Returns whether it was told so. If the node closes
    the connection first, raises ``closed`` (default: ``HandshakeError``).
    """
    from snowg.cluster._handshake import HandshakeError, PeerAlive

    alive = False
    with gevent.Timeout(timeout):
        sock.sendall(hs.data_to_send())
        while not hs.established:
            data = sock.recv(4096)
            if not data:
                raise closed if closed is not None else HandshakeError("closed", "closed")
            hs.receive_data(data)
            if isinstance(hs.next_event(), PeerAlive):
                alive = True
                hs.accept()
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
    return alive


# ------------------------------------------------------- raw WebSocket clients


def ws_upgrade(sock: Any, port: int, path: str = "/", key: Optional[str] = None, read_size: int = 1) -> bytes:
    """Upgrade ``sock`` (connected to 127.0.0.1:``port``) to a WebSocket at ``path``; assert the answer is 101.

    ``key``: the Sec-WebSocket-Key (default: a random one). The answer is read
    ``read_size`` bytes at a time (1: nothing after its head is consumed);
    returns what was read after the head.
    """
    return ws_handshake(sock, port, path, key=key, read_size=read_size)[1]


def ws_handshake(
    sock: Any, port: int, path: str = "/", *, key: Optional[str] = None, read_size: int = 1, headers: str = ""
) -> Tuple[str, bytes]:
    """:func:`ws_upgrade` with more request ``headers`` (``'Name: value\\r\\n'`` lines).

    Returns:
        The answer's head (decoded, without the blank line) and what was read after it.
    """
    key = key or base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(read_size)
        assert chunk, "server closed during the handshake"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return head.decode("latin-1"), rest


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = T) -> None:
    """:func:`snowg.testing.wait_for` that fails the test, naming ``what``, when ``timeout`` passes.

    Raises:
        AssertionError: still false after ``timeout`` seconds.
    """
    if not wait_for(predicate, timeout=timeout, interval=0.05):
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
