"""Fixtures for the tests against real BEAM nodes (see ``beam.py``).

* ``beam_factory``: ``beam_factory.start(name, cookie=..., elixir=..., tls_optfile=...)``
  starts a :class:`beam.Beam`; every one is stopped (halted, then ``kill -9``)
  after the test, pass or fail.
* ``transport``: ``"tcp"`` and ``"tls"`` (a test using ``erlang_node`` runs
  over both; ``@pytest.mark.parametrize("transport", ["tcp"])`` narrows it).
* ``erlang_node``: this test process as a snowg node started with
  ``erlang=transport`` (the session's certificates and cookie), stopped after
  the test. Its :meth:`ErlangNode.beam` starts a BEAM node of the same
  transport and cookie.
* ``skip_unless_beam`` / ``skip_unless_elixir`` (from ``beam``): skip, loudly,
  only when ``erl``/``elixir`` are not installed.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from beam import Beam, write_tls_optfile

import snowg
from snowg import cluster
from snowg.testing import ClusterConfig

_names = itertools.count(1)


class BeamFactory:
    """Starts :class:`Beam` nodes for one test and stops all of them after it."""

    def __init__(self, config: ClusterConfig, directory: str) -> None:
        self.config = config
        self.directory = directory
        self.beams: List[Beam] = []
        self._optfile: Optional[str] = None

    def tls_optfile(self) -> str:
        """An ``-ssl_dist_optfile`` for the session's certificates (written once per test)."""
        if self._optfile is None:
            self._optfile = tls_optfile_for(self.config.certs, os.path.join(self.directory, "ssl_dist.conf"))
        return self._optfile

    def start(
        self,
        name: Optional[str] = None,
        *,
        cookie: Optional[str] = None,
        elixir: bool = False,
        tls: bool = False,
        tls_optfile: Optional[str] = None,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> Beam:
        """Start a BEAM node ``name@127.0.0.1`` (default a unique ``beamN-<ospid>``); see :meth:`Beam.start`.

        ``cookie`` defaults to the session's; ``tls=True`` uses :meth:`tls_optfile`.
        """
        name = name or f"beam{next(_names)}-{os.getpid()}"
        if tls and tls_optfile is None:
            tls_optfile = self.tls_optfile()
        beam = Beam.start(
            name,
            cookie=cookie if cookie is not None else self.config.cookie,
            elixir=elixir,
            tls_optfile=tls_optfile,
            extra_args=extra_args,
            timeout=timeout,
        )
        self.beams.append(beam)
        return beam

    __call__ = start

    def stop_all(self) -> None:
        """Stop every node this factory started."""
        for beam in self.beams:
            beam.stop()
        self.beams.clear()


def tls_optfile_for(certs: str, path: str) -> str:
    """The optfile: ``snowg.erlang.write_ssl_dist_optfile`` when it exists, else the harness's own."""
    try:
        from snowg.erlang import write_ssl_dist_optfile  # type: ignore[attr-defined]
    except ImportError:
        return write_tls_optfile(path, certs)
    result: str = write_ssl_dist_optfile(path, tls=certs)
    return result


class ErlangNode:
    """The snowg node of a test, started with Erlang distribution on.

    Attributes:
        info: the :class:`snowg.cluster.Node` ``start_node`` returned.
        name: its name.
        transport: ``"tcp"`` or ``"tls"``.
        cookie: its (and the BEAM nodes') cookie.
    """

    def __init__(self, info: cluster.Node, transport: str, cookie: str, factory: BeamFactory) -> None:
        self.info = info
        self.name = info.name
        self.transport = transport
        self.cookie = cookie
        self.factory = factory

    def beam(self, name: Optional[str] = None, **options: Any) -> Beam:
        """A BEAM node speaking this node's transport, with its cookie (options as ``BeamFactory.start``)."""
        options.setdefault("tls", self.transport == "tls")
        return self.factory.start(name, **options)


@pytest.fixture
def beam_factory(snowg_cluster_config: ClusterConfig, tmp_path: Any) -> Iterator[BeamFactory]:
    """A :class:`BeamFactory`; every BEAM node it started is stopped after the test."""
    factory = BeamFactory(snowg_cluster_config, str(tmp_path))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(params=["tcp", "tls"])
def transport(request: Any) -> str:
    """The Erlang distribution transport: plain TCP (cookie only) or ``inet_tls_dist``."""
    return str(request.param)


@pytest.fixture
def erlang_node(transport: str, snowg_cluster_config: ClusterConfig, beam_factory: BeamFactory) -> Iterator[ErlangNode]:
    """This process as the snowg node ``pyN-<ospid>@127.0.0.1`` with ``erlang=transport``; stopped after.

    A node already running here (the session's ``snowg_node``) is stopped
    first and started again afterwards under its name and port, its
    :class:`~snowg.cluster.Node` updated in place (its new creation), so the
    tests that hold it go on working.
    """
    previous = cluster.current()
    if previous is not None:
        cluster.stop_node()
    name = f"py{next(_names)}-{os.getpid()}@127.0.0.1"
    try:
        info = snowg.start_node(
            name,
            cookie=snowg_cluster_config.cookie,
            tls=snowg_cluster_config.certs,
            tick=snowg_cluster_config.tick,
            erlang=transport,
        )
        try:
            yield ErlangNode(info, transport, snowg_cluster_config.cookie, beam_factory)
        finally:
            # BEAM nodes go first: their connections end with them, not in the node's stop.
            beam_factory.stop_all()
            cluster.stop_node()
    finally:
        if previous is not None:
            _restart(previous, snowg_cluster_config)


#: (the Node a restart returned, the Node object the tests hold): the first is what cluster.current() gives.
_restarted: List[Tuple[cluster.Node, cluster.Node]] = []


def _restart(previous: cluster.Node, config: ClusterConfig) -> None:
    """Start the node ``previous`` was again (same name, port if free) and update the object the tests hold."""
    held = previous
    for running, original in list(_restarted):
        if running is previous:
            held = original
            _restarted.remove((running, original))
    options: Dict[str, Any] = {"cookie": config.cookie, "tls": config.certs, "tick": previous.tick}
    try:
        info = cluster.start_node(previous.name, port=previous.port, **options)
    except snowg.NodeError:
        info = cluster.start_node(previous.name, **options)
    held.creation = info.creation
    held.host = info.host
    held.port = info.port
    _restarted.append((info, held))


@pytest.fixture(autouse=True)
def _session_node_restored(request: Any) -> Iterator[None]:
    """After every test here, the node that ran before it runs again (name, port if free, same object).

    Some tests stop this process's node or start their own (a bad ``erlang=``
    option, ``stop_node`` deregistering); the directories after this one hold
    the session's ``snowg_node`` and must find it as they left it.
    """
    before = cluster.current()
    yield
    if before is None:
        return
    now = cluster.current()
    if now is not None and now.name == before.name:
        return
    if now is not None:
        cluster.stop_node()
    config: ClusterConfig = request.getfixturevalue("snowg_cluster_config")
    _restart(before, config)
