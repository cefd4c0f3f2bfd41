"""Multi-node tests: start peer nodes as real OS processes (like OTP's ``peer`` module).

Use the pytest fixtures by adding ``pytest_plugins = ["snowg.testing"]`` to a
``conftest.py``:

* ``snowg_node``: this test process as a node (session-wide), with
  certificates and a cookie made for the test run in a temporary directory;
* ``peers``: a :class:`PeerFactory`; ``peers.start(modules=["myapp.tasks"])``
  starts ``snowg node`` in a new OS process, importing those modules (so their
  ``@spawnable`` functions can be started there), and connects to it. Every
  peer a test started is killed when the test ends, pass or fail.

Drive a peer with messages: ``snowg.spawn(fn, ..., node=peer.name)`` of a
``@spawnable`` function, or ``peer.rpc(fn, *args)``. Faults: ``peer.kill()``
(SIGKILL), ``peer.freeze()``/``peer.thaw()`` (SIGSTOP/SIGCONT),
``peer.terminate()`` (SIGTERM, a clean stop).

Between tests, :func:`reset_runtime` ends every process of this node and
cancels its timers, so one test's leftovers cannot reach the next (call it
before and after each test, e.g. from an autouse fixture).

Without pytest, :func:`start_test_node` and :class:`PeerFactory` work the same.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import signal
import sys
import tempfile
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence

import gevent

from . import cluster
from ._core import reset_runtime
from ._peer import READY_PREFIX, NodeProcess
from .cluster import current as _current_node
from .cluster import make_certs

__all__ = [
    "DEFAULT_TEST_TICK",
    "READY_PREFIX",
    "START_TIMEOUT",
    "ClusterConfig",
    "Peer",
    "PeerFactory",
    "reset_runtime",
    "start_test_node",
    "wait_for",
]

DEFAULT_TEST_TICK = 1.0
START_TIMEOUT = 30.0

_all_peers: List["Peer"] = []
_counter = itertools.count(1)


class Peer(NodeProcess):
    """A peer node running in its own OS process (see :class:`PeerFactory`).

    Attributes:
        name: its node name.
        address: ``'host:port'`` where it listens.
        process: the ``gevent.subprocess.Popen`` object.
        log_path: file holding its stderr (its log).
    """

    def rpc(self, fn: Any, *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """``snowg.rpc.call(self.name, fn, *args, **kwargs)``: blocks at most ``timeout`` seconds.

        Raises:
            snowg.CallError, snowg.CallTimeout, snowg.RemoteError, snowg.SpawnError:
                as :func:`snowg.rpc.call` does.
        """
        return cluster.rpc.call(self.name, fn, *args, timeout=timeout, **kwargs)

    def freeze(self) -> None:
        """SIGSTOP: the peer stops answering (and ticking) but keeps its sockets open."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self.process.send_signal(signal.SIGCONT)


class ClusterConfig:
    """Certificates and cookie shared by the test node and its peers."""

    def __init__(
        self, directory: Optional[str] = None, cookie: Optional[str] = None, tick: float = DEFAULT_TEST_TICK
    ) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="snowg-test-")
        self.certs = os.path.join(self.directory, "certs")
        make_certs(self.certs)
        self.cookie = cookie or secrets.token_hex(16)
        self.tick = tick


def start_test_node(config: ClusterConfig, name: Optional[str] = None) -> cluster.Node:
    """Make this process a node of the test cluster (or return it if it already is one)."""
    current = _current_node()
    if current is not None:
        return current
    name = name or f"test{os.getpid()}@127.0.0.1"
    return cluster.start_node(name, cookie=config.cookie, tls=config.certs, tick=config.tick)


class PeerFactory:
    """Starts peers for one test (or one block of code) and cleans all of them up.

    Args:
        config: the cluster's certificates, cookie and tick.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.peers: List[Peer] = []

    def start(
        self,
        name: Optional[str] = None,
        *,
        modules: Sequence[str] = (),
        tick: Optional[float] = None,
        monkeypatch: bool = False,
        connect: bool = True,
        extra_args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: float = START_TIMEOUT,
    ) -> Peer:
        """Start a peer node process and (by default) connect this node to it.

        Blocks until the peer listens (and is connected), at most ``timeout`` s.

        Args:
            name: its node name; default ``peerN-<ospid>@127.0.0.1``.
            modules: modules it imports at start (for their ``@spawnable`` functions).
            tick: its liveness tick; default the config's.
            monkeypatch: run it with ``gevent.monkey.patch_all()`` first.
            connect: connect this node to it once it listens.
            extra_args: more ``snowg node`` arguments (they win: ``["--cookie", "wrong"]``).
            env: more environment variables for it.
            timeout: seconds it may take to listen.

        Raises:
            RuntimeError: it did not start in time, exited, or could not be
                connected to (the end of its log is in the message).
        """
        name = name or f"peer{next(_counter)}-{os.getpid()}@127.0.0.1"
        log_fd, log_path = tempfile.mkstemp(prefix="snowg-peer-", suffix=".log")
        os.close(log_fd)
        peer = Peer.launch(
            name,
            certs=self.config.certs,
            cookie=self.config.cookie,
            log_path=log_path,
            tick=tick if tick is not None else self.config.tick,
            modules=modules,
            monkeypatch=monkeypatch,
            extra_args=extra_args,
            pythonpath=[os.getcwd(), *sys.path],
            env=env,
            timeout=timeout,
        )
        self.peers.append(peer)
        _all_peers.append(peer)
        if connect:
            start_test_node(self.config)
            if not cluster.connect(peer.target):
                raise RuntimeError(f"could not connect to peer {name}; end of its log:\n{peer.log_tail()}")
        return peer

    def stop_all(self) -> None:
        """Kill every peer this factory started and remove its log; blocks until they are reaped."""
        for peer in self.peers:
            peer.kill()
            try:
                os.unlink(peer.log_path)
            except OSError:
                pass
            if peer in _all_peers:
                _all_peers.remove(peer)
        self.peers.clear()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` cooperatively until true or ``timeout``; returns its last value.

    For state that has no event to wait on (e.g. the set of connected nodes of a peer).
    """
    deadline = gevent.Timeout(timeout)
    try:
        with deadline:
            while not predicate():
                gevent.sleep(interval)
            return True
    except gevent.Timeout as exc:
        if exc is not deadline:
            raise
    return bool(predicate())


@atexit.register
def _kill_leftovers() -> None:
    for peer in list(_all_peers):
        try:
            if peer.process.poll() is None:
                os.kill(peer.process.pid, signal.SIGKILL)
        except OSError:
            pass


try:
    import pytest
except ImportError:  # pragma: no cover - snowg.testing without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def snowg_cluster_config(tmp_path_factory: Any) -> ClusterConfig:
        """Certificates and a cookie for this test run."""
        return ClusterConfig(str(tmp_path_factory.mktemp("snowg-cluster")))

    @pytest.fixture(scope="session")
    def snowg_node(snowg_cluster_config: ClusterConfig) -> Iterator[cluster.Node]:
        """This test process as a node of the test cluster (for the whole session)."""
        node = start_test_node(snowg_cluster_config)
        yield node
        cluster.stop_node()

    @pytest.fixture
    def peers(snowg_node: cluster.Node, snowg_cluster_config: ClusterConfig) -> Iterator[PeerFactory]:
        """A :class:`PeerFactory`; every peer started through it is killed after the test."""
        factory = PeerFactory(snowg_cluster_config)
        try:
            yield factory
        finally:
            factory.stop_all()
