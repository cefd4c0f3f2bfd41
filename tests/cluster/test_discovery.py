"""Discovery with real node processes: ``--cluster local``, ``dns:``, ``hosts:``, ``static:``; healing.

Every node here is a real ``snowg node`` process registered with a real
port mapper on a free port (``ERL_EPMD_PORT``, never 4369), and nothing
tells it of the others but its strategy: this test process is no node of
their cluster (it would pass peer lists around and could join nodes that
discovery failed to join). Each node imports ``peerprobe``, which logs its
exact peer set at every change; the tests wait, with a bound, for the peer
sets they expect.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Set

import gevent
import pytest
from gevent import socket as gsocket
from dnsserver import DNSServer
from epmdsupport import epmd_env, free_port, snowg_mapper  # noqa: F401
from support import wait_until

from snowg.cluster._epmd_server import Mapper, open_listeners
from snowg.testing import ClusterConfig, Peer

TIME_LIMIT = 180
#: Seconds a cluster may take to reach the peer sets a test expects.
SETTLE = 30.0
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Nodes:
    """Starts node processes for one test; kills them all at the end."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.started: List[Peer] = []

    def start(
        self,
        name: Optional[str] = None,
        *,
        prefix: str = "web",
        cluster: Sequence[str] = ("local",),
        cookie: Optional[str] = None,
        tick: Optional[float] = None,
        env: Optional[Mapping[str, str]] = None,
        extra: Sequence[str] = (),
    ) -> Peer:
        """A node process with ``--cluster`` (and a generated ``PREFIX-XXXXXX`` name unless ``name``)."""
        fd, log_path = tempfile.mkstemp(prefix="snowg-discovery-", suffix=".log")
        os.close(fd)
        peer = Peer.launch(
            name,
            certs=self.config.certs,
            cookie=cookie or self.config.cookie,
            log_path=log_path,
            tick=tick if tick is not None else self.config.tick,
            modules=["peerprobe"],
            cluster=list(cluster),
            pythonpath=[TESTS_DIR],
            env={"SNOWG_PREFIX": prefix, **(env or {})},
            extra_args=["--log-level", "DEBUG", *extra],
        )
        self.started.append(peer)
        return peer

    def start_many(self, count: int, **options: object) -> List[Peer]:
        """``count`` nodes started at once (each launch in its own greenlet)."""
        jobs = [gevent.spawn(self.start, **options) for _ in range(count)]  # type: ignore[arg-type]
        gevent.joinall(jobs, raise_error=True)
        return [job.value for job in jobs]

    def kill_all(self) -> None:
        for peer in self.started:
            peer.kill()
            try:
                os.unlink(peer.log_path)
            except OSError:
                pass


@pytest.fixture
def nodes(snowg_cluster_config: ClusterConfig, snowg_mapper: int) -> Iterator[Nodes]:  # noqa: F811
    """A :class:`Nodes` whose nodes register with this test's own mapper."""
    started = Nodes(snowg_cluster_config)
    try:
        yield started
    finally:
        started.kill_all()


def peers_of(peer: Peer) -> Set[str]:
    """The peer set ``peer`` logged last (empty before its first connection)."""
    found = re.findall(r" PEERS ([^\s]*)$", peer.read_log(), re.MULTILINE)
    return set(found[-1].split(",")) - {""} if found else set()


def wait_peers(expected: Mapping[Peer, Set[str]], timeout: float = SETTLE) -> None:
    """Wait until each node's peer set is exactly the one given (polling the logs, bounded).

    Raises:
        AssertionError: not reached in time; the message shows each node's set and its log's end.
    """
    try:
        wait_until(lambda: all(peers_of(p) == want for p, want in expected.items()), "the peer sets", timeout)
    except AssertionError:
        report = "\n".join(
            f"{p.name}: has {sorted(peers_of(p))}, expected {sorted(want)}\n{p.log_tail(15)}"
            for p, want in expected.items()
        )
        raise AssertionError(f"peer sets not reached within {timeout:g} s:\n{report}") from None


def mesh(members: Sequence[Peer]) -> Dict[Peer, Set[str]]:
    """What a full mesh of ``members`` is: each connected to all the others."""
    names = {p.name for p in members}
    return {p: names - {p.name} for p in members}


def count_lines(peer: Peer, *parts: str) -> int:
    """How many lines of ``peer``'s log contain every one of ``parts``."""
    return sum(1 for line in peer.read_log().splitlines() if all(part in line for part in parts))


def wait_lines(peer: Peer, count: int, *parts: str, timeout: float = SETTLE) -> None:
    """Wait until ``peer``'s log has at least ``count`` lines with every one of ``parts``."""
    try:
        wait_until(lambda: count_lines(peer, *parts) >= count, f"{count} lines with {parts}", timeout)
    except AssertionError:
        raise AssertionError(
            f"{peer.name}: fewer than {count} lines with {parts} in {timeout:g} s:\n{peer.log_tail()}"
        ) from None


# ------------------------------------------------------------------ local


@pytest.mark.parametrize("victim", [0, 3], ids=["first", "another"])
def test_local_full_mesh_survives_any_loss_and_takes_a_late_node(nodes: Nodes, victim: int) -> None:
    five = nodes.start_many(5)
    assert len({p.name for p in five}) == 5
    assert all(p.name.startswith("web-") for p in five)
    wait_peers(mesh(five))

    # The first node started is nobody's seed: killing it, or any other, leaves four connected.
    five[victim].kill()
    four = [p for i, p in enumerate(five) if i != victim]
    wait_peers(mesh(four))

    # A node started later joins them all, with nothing given but the strategy.
    late = nodes.start()
    wait_peers(mesh([*four, late]))
    # A node that stopped has left its mapper: it is forgotten, not retried.
    assert not any(count_lines(p, "discovery: cannot connect") for p in four)


def test_a_node_speaking_erlang_too_is_found_at_its_snowg_port(nodes: Nodes) -> None:
    # With Erlang distribution on, the mapper lists the node's Erlang port; discovery must dial
    # the snowg port its registration names instead (a TLS hello on the Erlang port would fail).
    plain = nodes.start_many(2)
    # It looks for nobody itself, so only the others' discovery can connect it.
    bilingual = nodes.start(cluster=(), extra=["--erlang", "tcp"])
    wait_peers(mesh([*plain, bilingual]))
    assert not any(count_lines(p, "discovery: cannot connect") for p in [*plain, bilingual])


def test_partition_heals_without_anyone_calling_connect(nodes: Nodes) -> None:
    three = nodes.start_many(3, tick=0.5)
    wait_peers(mesh(three))
    frozen, others = three[0], three[1:]
    frozen.freeze()
    try:
        # Down after 4 ticks; it is still registered, so the others keep trying it.
        wait_peers(mesh(others))
    finally:
        frozen.thaw()
    wait_peers(mesh(three))


def test_another_cookie_or_another_prefix_is_never_joined_and_logged_once(nodes: Nodes) -> None:
    web = nodes.start_many(2)
    intruder = nodes.start(cookie="not-the-cluster-cookie")
    other_app = nodes.start(prefix="api")
    wait_peers(mesh(web))
    # Several attempts to reach the intruder failed (the debug lines count them), and were logged once.
    for p in web:
        wait_lines(p, 3, "discovery: attempt", f"to reach node {intruder.name} failed")
        assert count_lines(p, "discovery: cannot connect to node", intruder.name) == 1, p.read_log()
    wait_peers({**mesh(web), intruder: set(), other_app: set()})
    for p in [*web, intruder]:
        assert other_app.name not in p.read_log()
    assert not any(name in other_app.read_log() for name in (web[0].name, web[1].name, intruder.name))


# ------------------------------------------------------------------ hosts:, static:


def test_hosts_asks_each_mapper_and_one_without_a_mapper_delays_nobody(
    snowg_cluster_config: ClusterConfig,
    epmd_env: int,  # noqa: F811
) -> None:
    started = Nodes(snowg_cluster_config)
    spec = "hosts:127.0.0.2,127.0.0.3,127.0.0.9"  # nothing listens on 127.0.0.9
    try:
        with mapper_on("127.0.0.2", epmd_env), mapper_on("127.0.0.3", epmd_env):
            members = [
                started.start(cluster=[spec], env=_on_address(address))
                for address in ("127.0.0.2", "127.0.0.2", "127.0.0.3")
            ]
            wait_peers(mesh(members))
            assert {p.address.rsplit(":", 1)[0] for p in members} == {"127.0.0.2", "127.0.0.3"}
            for p in members:
                wait_lines(p, 1, "discovery hosts:", "127.0.0.9")
    finally:
        started.kill_all()


def test_static_names_with_and_without_a_port_reconnect_after_a_restart(nodes: Nodes) -> None:
    port = free_port()
    target = nodes.start("api-b", prefix="api", cluster=(), env={"SNOWG_CLUSTER": ""}, extra=["--port", str(port)])
    by_mapper = nodes.start(cluster=["static:api-b@127.0.0.1"])
    by_port = nodes.start(cluster=[f"static:api-b@127.0.0.1:{port}"])
    everyone = [target, by_mapper, by_port]
    wait_peers(mesh(everyone))

    target.kill()
    wait_peers(mesh([by_mapper, by_port]))
    wait_lines(by_port, 2, "discovery: attempt", "to reach node api-b@127.0.0.1 failed")
    target = nodes.start("api-b", prefix="api", cluster=(), env={"SNOWG_CLUSTER": ""}, extra=["--port", str(port)])
    wait_peers(mesh([target, by_mapper, by_port]))
    assert count_lines(by_port, "discovery: cannot connect to node api-b@127.0.0.1") == 1
    assert count_lines(by_port, "discovery: reached node api-b@127.0.0.1 after") == 1


# ------------------------------------------------------------------ dns:


@contextlib.contextmanager
def mapper_on(address: str, port: int) -> Iterator[None]:
    """snowg's port mapper listening on ``address`` only, in a greenlet of this process.

    Several hosts are simulated by addresses of 127.0.0.0/8, each with its own
    mapper on the same port. ``snowg epmd --address`` adds 127.0.0.1, as
    Erlang's epmd does, so two such mapper processes could not share the
    port; the mapper's own code, serving real sockets here, can.
    """
    server = Mapper(open_listeners([address], port))
    server.start()
    try:
        yield
    finally:
        server.stop()


def _on_address(address: str) -> Dict[str, str]:
    """A node's environment for a host of its own: named, listening and registered at ``address``."""
    return {"SNOWG_HOST": address, "SNOWG_EPMD_ADDRESS": address}


def test_dns_finds_every_address_a_real_name_server_gives(
    snowg_cluster_config: ClusterConfig,
    epmd_env: int,  # noqa: F811
) -> None:
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    started = Nodes(snowg_cluster_config)
    try:
        with DNSServer({"nodes.snowg-test": addresses}) as dns, contextlib.ExitStack() as mappers:
            for address in [*addresses, "127.0.0.5"]:
                mappers.enter_context(mapper_on(address, epmd_env))
            env = dns.resolver_env()
            members = [
                started.start(cluster=["dns:nodes.snowg-test"], env={**env, **_on_address(a)}) for a in addresses
            ]
            assert [p.address.rsplit(":", 1)[0] for p in members] == addresses
            wait_peers(mesh(members))
            assert ("nodes.snowg-test", 1) in dns.queries  # the nodes asked this server (A records)

            # A new address in the answer (a pod that became ready) joins them.
            dns.set("nodes.snowg-test", [*addresses, "127.0.0.5"])
            late = started.start(cluster=["dns:nodes.snowg-test"], env={**env, **_on_address("127.0.0.5")})
            wait_peers(mesh([*members, late]))
    finally:
        started.kill_all()


# ------------------------------------------------------------------ the test DNS server itself


def _query(name: str, qtype: int, qid: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_the_dns_server_answers_every_address_and_refuses_what_is_not_a_query() -> None:
    dns = DNSServer({"Nodes.Test.": ["127.0.0.2", "127.0.0.3", "::1"]})
    reply = dns.answer(_query("nodes.test", 1))
    assert reply is not None
    qid, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", reply)
    assert (qid, flags & 0x800F, qd, an) == (0x1234, 0x8000, 1, 2)  # a response, NOERROR, two A records
    assert reply.endswith(bytes([127, 0, 0, 3]))
    aaaa = dns.answer(_query("nodes.test", 28))
    assert aaaa is not None and struct.unpack_from("!H", aaaa, 6)[0] == 1  # one AAAA record
    unknown = dns.answer(_query("other.test", 1))
    assert unknown is not None and struct.unpack_from("!H", unknown, 2)[0] & 0xF == 3  # NXDOMAIN
    # Malformed: a short datagram gets nothing; a bad question gets FORMERR; a response is never answered.
    assert dns.answer(b"\x12\x34") is None
    pointer = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    bad = dns.answer(pointer)
    assert bad is not None and struct.unpack_from("!H", bad, 2)[0] & 0xF == 1
    assert dns.answer(_query("nodes.test", 1, flags=0x8000)) is None
    assert dns.queries == [("nodes.test", 1), ("nodes.test", 28), ("other.test", 1)]


def test_the_dns_server_answers_over_udp() -> None:
    with DNSServer({"nodes.test": ["127.0.0.2"]}) as dns:
        sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        try:
            sock.settimeout(5)
            sock.sendto(_query("nodes.test", 1), ("127.0.0.1", dns.port))
            reply, _ = sock.recvfrom(512)
        finally:
            sock.close()
    assert reply.endswith(bytes([127, 0, 0, 2]))


# ------------------------------------------------------------------ stopping


def test_discovery_stops_with_the_node(snowg_cluster_config: ClusterConfig, snowg_mapper: int) -> None:  # noqa: F811
    code = f"""
import gevent, snowg
from snowg.cluster import _nodemon, _nodestate
snowg.start_node(cookie="c", tls={snowg_cluster_config.certs!r}, cluster="local")
discovery = _nodestate.current.discovery
gevent.sleep(0)  # the loop starts its first look-up; stopping must end it mid-way
print("running:", discovery._loop is not None and not discovery._loop.dead)
print("watching:", discovery._node_down in _nodemon.session_down_callbacks)
loop = discovery._loop
snowg.stop_node(flush_timeout=0)
gevent.sleep(0)
print("stopped:", loop.dead, discovery._node_down not in _nodemon.session_down_callbacks, not discovery.dialing)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["running: True", "watching: True", "stopped: True True True"], out.stderr
