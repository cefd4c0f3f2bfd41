"""Node names without ports: completing names, registering with the port mapper, connecting by name, port ranges, fork.

The naming rules are pure functions, tested as such. Everything else runs
real node processes (``snowg node``) registering with the test session's
port mapper (``ERL_EPMD_PORT``, set by ``conftest.py``), or with Erlang's own
``epmd`` when it is installed; this test process is a node of the test
cluster and connects to them by name.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import gevent
import pytest
from gevent import socket as gsocket

import snowg
from snowg.cluster import ensure_connected
from snowg.cluster._epmd_client import port_please
from snowg.cluster._epmd_proto import Alive2Request, NodeEntry, encode_request
from snowg.cluster._names import cluster_prefix, complete_name, split_target
from snowg.testing import Peer, wait_for

import distfuncs
from epmdsupport import erlang_epmd, free_port, mapper

pytest_plugins = ["snowg.testing"]

TIME_LIMIT = 120

HEX6 = "[0-9a-f]{6}"


# ------------------------------------------------------------------ the rules


def test_complete_name_keeps_a_full_name() -> None:
    assert complete_name("alice@10.0.0.5", {"SNOWG_HOST": "elsewhere"}) == "alice@10.0.0.5"


def test_complete_name_adds_the_host() -> None:
    assert complete_name("alice", {}) == "alice@127.0.0.1"
    assert complete_name("alice", {"SNOWG_HOST": "10.1.2.3"}) == "alice@10.1.2.3"
    assert complete_name("alice", {"SNOWG_HOST": ""}) == "alice@127.0.0.1"


def test_complete_name_makes_a_unique_name() -> None:
    first = complete_name(None, {})
    assert re.fullmatch(f"snowg-{HEX6}@127\\.0\\.0\\.1", first)
    assert complete_name(None, {}) != first
    assert re.fullmatch(
        f"web-{HEX6}@pod\\.example", complete_name(None, {"SNOWG_PREFIX": "web", "SNOWG_HOST": "pod.example"})
    )


@pytest.mark.parametrize(
    ("name", "env", "says"),
    [
        ("two@at@host", {}, "not of the form"),
        ("has space", {}, "does not make a node name"),
        ("alice", {"SNOWG_HOST": "bad host"}, "$SNOWG_HOST"),
        ("alice", {"SNOWG_HOST": "a@b"}, "$SNOWG_HOST"),
        (None, {"SNOWG_PREFIX": "we b"}, "$SNOWG_PREFIX"),
        (42, {}, "is a str"),
        ("x" * 300, {}, "at most 255"),
    ],
)
def test_complete_name_refuses(name: Any, env: Dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        complete_name(name, env)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("web-3fa2c1@10.0.0.5", "web"),
        ("bob@h", "bob"),
        ("a-b-c@h", "a-b"),
        ("-x@h", "-x"),
        ("x-@h", "x"),
    ],
)
def test_cluster_prefix(name: str, prefix: str) -> None:
    assert cluster_prefix(name) == prefix


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("bob@host", ("bob@host", None)),
        ("bob@host:9100", ("bob@host", 9100)),
        ("bob@::1:9100", ("bob@::1", 9100)),
        ("b:ob@host", ("b:ob@host", None)),
    ],
)
def test_split_target(target: str, parsed: Tuple[str, Optional[int]]) -> None:
    assert split_target(target) == parsed


@pytest.mark.parametrize("target", ["bob", "bob@host:", "bob@host:x", "bob@host:0", "bob@host:65536", "@h", "a@", 7])
def test_split_target_refuses(target: Any) -> None:
    with pytest.raises(ValueError, match="connect needs 'name@host' or 'name@host:port'"):
        split_target(target)


# ------------------------------------------------------------- node processes


@pytest.fixture
def launch(snowg_cluster_config: Any) -> Iterator[Any]:
    """``launch(name=None, **options)``: a ``snowg node`` process of the test cluster (not connected); killed after."""
    started: List[Peer] = []

    def start(name: Optional[str] = None, **options: Any) -> Peer:
        log_fd, log_path = tempfile.mkstemp(prefix="snowg-names-", suffix=".log")
        os.close(log_fd)
        options.setdefault("pythonpath", [os.getcwd(), *sys.path])
        options.setdefault("tick", snowg_cluster_config.tick)
        options.setdefault("modules", ["distfuncs"])
        try:
            peer = Peer.launch(
                name,
                certs=snowg_cluster_config.certs,
                cookie=snowg_cluster_config.cookie,
                log_path=log_path,
                **options,
            )
        except BaseException:
            os.unlink(log_path)
            raise
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.kill()
        os.unlink(peer.log_path)


def _unique(stem: str) -> str:
    return f"{stem}{os.getpid()}-{os.urandom(3).hex()}"


def test_a_node_without_name_or_port_is_reached_by_its_name(snowg_node: Any, launch: Any) -> None:
    peer = launch()
    assert re.fullmatch(f"snowg-{HEX6}@127\\.0\\.0\\.1", peer.name)
    assert snowg.connect(peer.name)
    assert peer.name in snowg.nodes()
    assert peer.rpc(distfuncs.ping, 1) == ("pong", peer.name, 1)


def test_snowg_host_and_snowg_prefix_complete_the_name(snowg_node: Any, launch: Any) -> None:
    peer = launch(env={"SNOWG_HOST": "127.0.0.3", "SNOWG_PREFIX": "web"})
    assert re.fullmatch(f"web-{HEX6}@127\\.0\\.0\\.3", peer.name)
    assert peer.address.startswith("127.0.0.3:")
    assert snowg.connect(peer.name)  # the mapper answers on every local address
    assert peer.rpc(distfuncs.ping, 1) == ("pong", peer.name, 1)


def test_connect_by_name_keeps_the_port_form(snowg_node: Any, launch: Any) -> None:
    peer = launch(epmd=False)
    assert port_please("127.0.0.1", peer.name.split("@")[0]) is None
    assert not snowg.connect(peer.name)
    assert snowg.connect(peer.target)


def test_the_same_name_twice_on_one_host(snowg_node: Any, launch: Any) -> None:
    alive = _unique("dup")
    first = launch(alive)
    with pytest.raises(RuntimeError) as failed:
        launch(f"{alive}@127.0.0.2")  # another address, the same host: one mapper, one name
    assert f"the name {alive!r} is already registered with the port mapper" in str(failed.value)
    assert "every node of a host needs its own name" in str(failed.value)
    # The first one is untouched: still registered, still answering.
    entry = port_please("127.0.0.1", alive)
    assert entry is not None and entry.full_name == first.name
    assert snowg.connect(first.name)
    assert first.rpc(distfuncs.ping, 1) == ("pong", first.name, 1)


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_a_stopped_nodes_name_is_free_again(snowg_node: Any, launch: Any, how: str) -> None:
    alive = _unique("again")
    first = launch(alive)
    getattr(first, how)()
    second = launch(alive)
    entry = port_please("127.0.0.1", alive)
    assert entry is not None and entry.port == int(second.address.rsplit(":", 1)[1])
    assert snowg.connect(second.name)


def test_connect_asks_the_mapper_of_the_names_host(snowg_node: Any, launch: Any, log: Any) -> None:
    """The mapper answers on every local address: its entry must be the very node asked for."""
    peer = launch(_unique("where"))
    other = peer.name.replace("@127.0.0.1", "@127.0.0.2")
    assert not snowg.connect(other)
    assert other not in snowg.nodes()
    assert f"on the port mapper of 127.0.0.2 is the node {peer.name}" in log.text


def test_connect_refuses_a_node_that_is_not_snowgs(snowg_node: Any, log: Any) -> None:
    """An entry without snowg's mark (an Erlang node registers so) is not dialled."""
    alive = _unique("beam")
    with socket.create_connection(("127.0.0.1", int(os.environ["ERL_EPMD_PORT"])), timeout=5) as registration:
        registration.sendall(encode_request(Alive2Request(NodeEntry(alive, 9, 77, 0, 6, 5, b""))))
        assert registration.recv(16)[:2] in (b"v\x00", b"y\x00")  # ALIVE2_X_RESP / ALIVE2_RESP, result 0
        assert not snowg.connect(f"{alive}@127.0.0.1")
    assert f"{alive!r} on the port mapper of 127.0.0.1 is not a snowg node" in log.text


def test_connect_to_a_name_nobody_has(snowg_node: Any, log: Any) -> None:
    alive = _unique("nobody")
    assert not snowg.connect(f"{alive}@127.0.0.1")
    assert f"the port mapper on 127.0.0.1 has no node named {alive!r}" in log.text


def test_ensure_connected_finds_a_node_never_seen(snowg_node: Any, launch: Any) -> None:
    peer = launch()
    with gevent.Timeout(20):
        assert ensure_connected(peer.name)
    assert peer.name in snowg.nodes()
    assert not ensure_connected(f"{_unique('nobody')}@127.0.0.1")


def test_connect_by_name_through_erlangs_epmd(snowg_node: Any, launch: Any, monkeypatch: Any) -> None:
    """A snowg node registers with Erlang's own epmd, and is found through it."""
    with erlang_epmd() as port:
        monkeypatch.setenv("ERL_EPMD_PORT", str(port))
        peer = launch(_unique("viaepmd"))
        listed = subprocess.run(
            ["epmd", "-port", str(port), "-names"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        assert f"name {peer.name.split('@')[0]} at port {peer.address.rsplit(':', 1)[1]}" in listed
        assert snowg.connect(peer.name)
        assert peer.rpc(distfuncs.ping, 1) == ("pong", peer.name, 1)


def test_a_node_registers_again_when_its_mapper_comes_back(snowg_node: Any, launch: Any) -> None:
    """A mapper that stops forgets its nodes; the nodes register again with the next one on that port."""
    port = free_port()
    alive = _unique("phoenix")

    def registered() -> bool:
        try:
            entry = port_please("127.0.0.1", alive, epmd_port=port, timeout=1)
        except snowg.NodeError:
            return False
        return entry is not None and entry.full_name == peer.name

    with mapper(port):
        peer = launch(alive, env={"ERL_EPMD_PORT": str(port)})
        assert registered()
    assert not registered()
    with mapper(port):
        assert wait_for(registered, timeout=30), peer.log_tail()
    log = peer.read_log()
    assert "the port mapper ended its registration (it stopped?); registering again" in log
    assert "registered again with the port mapper" in log


# ----------------------------------------------------------------- port ranges


def _two_free_ports() -> Tuple[int, socket.socket]:
    """``(lo, held)``: ``lo`` and ``lo + 1`` were free; ``held`` now listens on ``lo``."""
    for _ in range(200):
        held = socket.socket()
        try:
            held.bind(("127.0.0.1", 0))
            lo = held.getsockname()[1]
            if lo >= 65535:
                held.close()
                continue
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", lo + 1))
        except OSError:
            held.close()
            continue
        held.listen()
        return lo, held
    raise AssertionError("found no two free consecutive ports")


def test_port_range_takes_the_first_free_port_and_says_when_none_is(snowg_node: Any, launch: Any) -> None:
    lo, held = _two_free_ports()
    with held:
        peer = launch(port_range=(lo, lo + 1))
        assert peer.address == f"127.0.0.1:{lo + 1}"
        assert snowg.connect(peer.name)
        with pytest.raises(RuntimeError) as failed:
            launch(port_range=(lo, lo + 1))
    assert f"no free port on 127.0.0.1 in port_range {lo}-{lo + 1} (2 tried" in str(failed.value)


def test_snowg_port_range_gives_the_range_when_no_port_is_given(snowg_node: Any, launch: Any) -> None:
    lo, held = _two_free_ports()
    with held:
        peer = launch(env={"SNOWG_PORT_RANGE": f"{lo}-{lo + 1}"})
        assert peer.address == f"127.0.0.1:{lo + 1}"
        with pytest.raises(RuntimeError) as failed:
            launch(env={"SNOWG_PORT_RANGE": f"{lo}-{lo + 1}"})
    assert f"no free port on 127.0.0.1 in port_range {lo}-{lo + 1} (2 tried" in str(failed.value)


def _start_node_refusal(certs: str, options: str, env: Optional[Dict[str, str]] = None) -> str:
    code = (
        "import snowg\n"
        "try:\n"
        f"    snowg.start_node('opts', cookie='c', tls={certs!r}, {options})\n"
        "except snowg.NodeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return out.stdout.strip()


@pytest.mark.parametrize("value", ["9100", "9100-", "a-b", "9100:9155"])
def test_a_bad_snowg_port_range_is_refused(snowg_cluster_config: Any, value: str) -> None:
    refusal = _start_node_refusal(snowg_cluster_config.certs, "", env={"SNOWG_PORT_RANGE": value})
    assert refusal == f"refused: $SNOWG_PORT_RANGE must be LO-HI (e.g. 9100-9155), not {value!r}"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("port=9100, port_range=(9100, 9155)", "give port (9100) or port_range (9100, 9155), not both"),
        ("port_range=(9155, 9100)", "port_range must be (lo, hi), two ports with 1 <= lo <= hi <= 65535"),
        ("port_range=9100", "port_range must be (lo, hi)"),
        ("port_range=('9100', 9155)", "port_range must be (lo, hi)"),
        ("port='9100'", "port must be an int from 0 to 65535"),
        ("port=70000", "port must be an int from 0 to 65535"),
        ("cluster=5", "cluster must be a strategy string"),
        ("cluster='bogus:x'", "cluster: "),
    ],
)
def test_start_node_refuses_bad_options(snowg_cluster_config: Any, options: str, says: str) -> None:
    assert _start_node_refusal(snowg_cluster_config.certs, options).startswith(f"refused: {says}")


def test_start_node_twice_at_once(snowg_cluster_config: Any) -> None:
    """start_node blocks while it registers: a second call meanwhile (another greenlet) is refused."""
    code = (
        "import gevent, snowg\n"
        f"first = gevent.spawn(snowg.start_node, cookie='c', tls={snowg_cluster_config.certs!r})\n"
        "gevent.sleep(0)\n"
        "try:\n"
        f"    snowg.start_node(cookie='c', tls={snowg_cluster_config.certs!r})\n"
        "except snowg.NodeError as exc:\n"
        "    print('refused:', exc)\n"
        "print('started:', first.get(timeout=30).name == snowg.node())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == [
        "refused: this process is already starting a node (start_node is under way in another greenlet)",
        "started: True",
    ], out.stderr


# ------------------------------------------------------------------------ fork


@snowg.spawnable
def fork_and_report(certs: str) -> Dict[str, Any]:
    """Runs on a peer: fork; the child reports what it is and starts a node of its own; the parent waits for it."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        report: Dict[str, Any] = {}
        try:
            os.close(read_end)
            report["node"] = snowg.node()
            report["nodes"] = snowg.nodes()
            info = snowg.start_node(tls=certs)
            report["new"] = info.name
            entry = port_please("127.0.0.1", info.name.split("@")[0])
            report["registered"] = entry is not None and entry.full_name == info.name
            snowg.stop_node(flush_timeout=0)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the test
            report["error"] = repr(exc)
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while True:
        gsocket.wait_read(read_end, timeout=30)
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    _, status = os.waitpid(child, 0)
    result: Dict[str, Any] = json.loads(data)
    result["status"] = status
    return result


@pytest.mark.parametrize("patched", [False, True], ids=["os.fork", "gevent.os.fork"])
def test_a_forked_child_is_not_its_parents_node(
    snowg_node: Any, snowg_cluster_config: Any, launch: Any, patched: bool
) -> None:
    """The child of a node process (monkey-patched or not) is nonode@nohost; the parent's node is untouched."""
    parent = launch(_unique("forker"), modules=["distfuncs", "test_names_ports"], monkeypatch=patched)
    assert snowg.connect(parent.name)
    report = parent.rpc(fork_and_report, snowg_cluster_config.certs, timeout=60)
    assert report.pop("status") == 0
    assert "error" not in report, report
    assert report["node"] == "nonode@nohost"
    assert report["nodes"] == []
    assert report["new"] != parent.name and report["registered"]
    assert "was forked from the node " + parent.name in parent.read_log()
    # The parent is untouched: the same session, its name, its listening socket.
    assert parent.name in snowg.nodes()
    assert parent.rpc(distfuncs.ping, 1) == ("pong", parent.name, 1)
    entry = port_please("127.0.0.1", parent.name.split("@")[0])
    assert entry is not None and entry.full_name == parent.name
    assert snowg.disconnect(parent.name)
    assert wait_for(lambda: parent.name not in snowg.nodes())
    assert snowg.connect(parent.name)
