"""``snowg node`` as a real ``python -m snowg node`` process: names, discovery, port ranges, ``--app``.

Every node here is a separate OS process started with the launcher
(:mod:`snowg._peer`); they register with a port mapper this module runs on a
free port (``ERL_EPMD_PORT`` in their environment), never with one on 4369.
The test process itself is not a node: what a node did is read from its
ready line, its exit status, its log, and the mapper.

The ``--app`` modules are written by the tests into a temporary directory on
the nodes' ``PYTHONPATH``; their children write a line to stderr (the node's
log) when they start and when they are stopped.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
from typing import Dict, Iterator, List, Optional, Tuple

import gevent
import pytest

from snowg._node_main import EXIT_APP_ENDED, _start_options
from snowg._peer import NodeProcess, node_command
from snowg.cli import build_parser
from snowg.cluster import make_certs
from snowg.cluster._epmd_client import names
from snowg.testing import wait_for
from epmdsupport import free_port, mapper

TIME_LIMIT = 120
START = 30.0  # seconds a node may take to start (a busy 2-core machine)

APP = '''
import sys

import gevent

import snowg
from snowg import ChildSpec, supervisor


def child(tag):
    """A worker that says when it starts and when it is stopped (and why)."""
    snowg.trap_exit(True)
    print(f"child {tag} started", file=sys.stderr, flush=True)
    exit_signal = snowg.receive(lambda m: isinstance(m, snowg.Exit))
    print(f"child {tag} terminating: {exit_signal.reason}", file=sys.stderr, flush=True)
    snowg.exit(exit_signal.reason)


def crasher():
    gevent.sleep(0.05)
    raise RuntimeError("crash on purpose")


def start():
    return supervisor.start_link([ChildSpec(tag, (child, (tag,))) for tag in ("first", "second", "third")])


def start_failing():
    return supervisor.start_link([ChildSpec("crasher", (crasher, ()))], intensity=2, period=60)


def start_unlinked():
    return supervisor.start([ChildSpec("first", (child, ("first",)))])


def start_then_kill_caller():
    caller = snowg.self()
    sup = start()

    def kill():
        # It first runs when the caller parks: after this function returned and
        # the node took the supervisor as its application's.
        snowg.exit(caller, "kill")

    snowg.spawn(kill)
    return sup


def returns_int():
    return 42


def raises():
    raise ValueError("no database configured")


NOT_CALLABLE = 7
'''

WATCH = """
import sys

import snowg
from snowg import telemetry


def _report(event, measurements, metadata, config):
    # Called as each connection comes up or goes (the node's list already says so).
    print("connected: " + ",".join(snowg.nodes()), file=sys.stderr, flush=True)


telemetry.attach_many("nodecli_watch", [telemetry.NODE_UP, telemetry.NODE_DOWN], _report)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Certificates, and the modules the nodes import."""
    path = tmp_path_factory.mktemp("node-cli")
    make_certs(str(path / "certs"))
    (path / "nodecli_app.py").write_text(textwrap.dedent(APP))
    (path / "nodecli_watch.py").write_text(textwrap.dedent(WATCH))
    return str(path)


@pytest.fixture(scope="module")
def epmd_port() -> Iterator[int]:
    """snowg's port mapper on a free port, for this module's nodes."""
    with mapper() as port:
        yield port


class Nodes:
    """Launches ``snowg node`` processes for one test and kills them all after it."""

    def __init__(self, workdir: str, epmd_port: int) -> None:
        self.workdir = workdir
        self.epmd_port = epmd_port
        self.cookie = secrets.token_hex(16)
        self.started: List[NodeProcess] = []

    def env(self, **extra: str) -> Dict[str, str]:
        return {"ERL_EPMD_PORT": str(self.epmd_port), "SNOWG_CLUSTER": "", **extra}

    def launch(
        self, name: Optional[str] = None, env: Optional[Dict[str, str]] = None, **options: object
    ) -> NodeProcess:
        log_path = os.path.join(self.workdir, f"node-{len(self.started)}-{secrets.token_hex(3)}.log")
        node = NodeProcess.launch(
            name,
            certs=os.path.join(self.workdir, "certs"),
            cookie=self.cookie,
            log_path=log_path,
            pythonpath=[self.workdir],
            env=self.env(**(env or {})),
            timeout=START,
            **options,  # type: ignore[arg-type]
        )
        self.started.append(node)
        return node

    def run(self, *args: str, name: str = "clirun@127.0.0.1") -> "subprocess.CompletedProcess[str]":
        """Run ``snowg node NAME ARGS`` to its end (for the ones that must not start); at most 60 s."""
        cmd = node_command(name, certs=os.path.join(self.workdir, "certs"), extra_args=args)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([self.workdir, *sys.path]), SNOWG_COOKIE=self.cookie)
        env.update(self.env())
        return subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
        )

    def kill_all(self) -> None:
        for node in self.started:
            node.kill()


@pytest.fixture
def nodes(workdir: str, epmd_port: int) -> Iterator[Nodes]:
    launcher = Nodes(workdir, epmd_port)
    try:
        yield launcher
    finally:
        launcher.kill_all()


def wait_log(node: NodeProcess, pattern: str, timeout: float = START) -> re.Match[str]:
    """The first match of ``pattern`` in the node's log, waiting at most ``timeout`` seconds for it."""
    found: List[re.Match[str]] = []

    def seen() -> bool:
        match = re.search(pattern, node.read_log(), re.MULTILINE)
        if match:
            found.append(match)
        return match is not None

    assert wait_for(seen, timeout=timeout, interval=0.05), f"no {pattern!r} in the log of {node}:\n{node.log_tail()}"
    return found[0]


def wait_exit(node: NodeProcess, timeout: float = START) -> int:
    with gevent.Timeout(timeout):
        return int(node.process.wait())


def registered(epmd_port: int) -> Dict[str, int]:
    return dict(names("127.0.0.1", epmd_port=epmd_port))


def unique_prefix() -> str:
    return f"cli{secrets.token_hex(3)}"


# ---------------------------------------------------------------- names


def test_without_a_name_a_node_takes_a_unique_generated_name_and_registers_it(nodes: Nodes) -> None:
    prefix = unique_prefix()
    first = nodes.launch(env={"SNOWG_PREFIX": prefix})
    second = nodes.launch(env={"SNOWG_PREFIX": prefix})
    for node in (first, second):
        assert re.fullmatch(rf"{prefix}-[0-9a-f]{{6}}@127\.0\.0\.1", node.name), node.name
    assert first.name != second.name
    mapped = registered(nodes.epmd_port)
    for node in (first, second):
        alive = node.name.split("@")[0]
        assert mapped.get(alive) == int(node.address.rsplit(":", 1)[1]), (alive, mapped)
    assert "SNOWG_NODE_READY" not in first.read_log()  # the ready line went to stdout, the log to stderr
    assert wait_log(first, rf"^\S+ \S+ {re.escape(first.name)} INFO ")  # each log line names the node


def test_no_epmd_leaves_the_mapper_alone(nodes: Nodes) -> None:
    name = f"{unique_prefix()}@127.0.0.1"
    node = nodes.launch(name, epmd=False)
    assert node.name == name
    assert name.split("@")[0] not in registered(nodes.epmd_port)


# ---------------------------------------------------------------- discovery


def test_cluster_local_a_second_node_joins_the_first(nodes: Nodes) -> None:
    prefix = unique_prefix()
    env = {"SNOWG_PREFIX": prefix}
    first = nodes.launch(env=env, cluster="local", modules=["nodecli_watch"])
    second = nodes.launch(env=env, cluster="local", modules=["nodecli_watch"])
    wait_log(first, rf"^connected: {re.escape(second.name)}$")
    wait_log(second, rf"^connected: {re.escape(first.name)}$")


def test_cluster_specs_are_passed_to_start_node_as_a_list() -> None:
    args = build_parser().parse_args(
        ["node", "--cluster", "local  hosts:a,b", "--cluster", "dns:web.default.svc", "--no-epmd"]
    )
    options = _start_options(args)
    assert options["cluster"] == ["local", "hosts:a,b", "dns:web.default.svc"]
    assert options["epmd"] is False
    assert args.name is None


def test_options_not_given_keep_start_node_defaults() -> None:
    options = _start_options(build_parser().parse_args(["node", "bob"]))
    assert set(options) == {"cookie", "port", "tls"}  # start_node's own defaults for the rest
    given = _start_options(
        build_parser().parse_args(
            ["node", "bob", "--max-handshakes", "3", "--max-handshakes-per-address", "2", "--no-check-peer-names"]
        )
    )
    assert (given["max_handshakes"], given["max_handshakes_per_address"], given["check_peer_names"]) == (3, 2, False)


# ---------------------------------------------------------------- ports


def _two_free_ports() -> Tuple[int, int]:
    """Two consecutive ports that are free now."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port, port + 1
    raise AssertionError("no two consecutive free ports")


def test_port_range_takes_the_first_free_port_of_the_range(nodes: Nodes) -> None:
    low, high = _two_free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", low))
        taken.listen()
        node = nodes.launch(f"{unique_prefix()}@127.0.0.1", port_range=(low, high))
    assert node.address == f"127.0.0.1:{high}"


def test_port_range_with_no_free_port_fails_to_start(nodes: Nodes) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = nodes.run("--port-range", f"{port}-{port}", name=f"{unique_prefix()}@127.0.0.1")
    assert result.returncode == 1, result.stderr
    assert "snowg node:" in result.stderr and str(port) in result.stderr


@pytest.mark.parametrize(
    ("option", "bad", "expected"),
    [
        ("--port-range", "9100", "LO-HI"),
        ("--port-range", "9155-9100", "LO-HI"),
        ("--port-range", "a-b", "LO-HI"),
        ("--port-range", "0-10", "LO-HI"),
        ("--port-range", "9100-70000", "LO-HI"),
        ("--flush-timeout", "-1", "0 or more"),
        ("--flush-timeout", "nan", "0 or more"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(nodes: Nodes, option: str, bad: str, expected: str) -> None:
    result = nodes.run(option, bad)
    assert result.returncode == 2
    assert f"argument {option}" in result.stderr and expected in result.stderr, result.stderr


# ---------------------------------------------------------------- --app


def test_app_whose_supervisor_gives_up_takes_the_node_down(nodes: Nodes) -> None:
    node = nodes.launch(f"{unique_prefix()}@127.0.0.1", app="nodecli_app:start_failing")
    assert wait_exit(node) == EXIT_APP_ENDED == 1
    log = node.read_log()
    assert "reached_max_restart_intensity" in log
    assert re.search(r"ERROR application nodecli_app:start_failing: its supervisor ended with reason 'shutdown'", log)
    assert "node " + node.name + " stopped" in log


def test_app_whose_application_process_is_killed_takes_the_node_down(nodes: Nodes) -> None:
    node = nodes.launch(f"{unique_prefix()}@127.0.0.1", app="nodecli_app:start_then_kill_caller")
    assert wait_exit(node) == EXIT_APP_ENDED
    log = node.read_log()
    assert (
        "ERROR application nodecli_app:start_then_kill_caller: its application process ended with reason 'killed'"
        in log
    )
    # The supervisor, linked to it, stopped its children before the node stopped.
    lines = [line for line in log.splitlines() if "terminating: shutdown" in line or "stopping node" in line]
    assert lines[:3] == [f"child {tag} terminating: shutdown" for tag in ("third", "second", "first")], lines
    assert "stopping node" in lines[3]


def test_sigterm_stops_the_application_in_order_then_the_node(nodes: Nodes) -> None:
    node = nodes.launch(f"{unique_prefix()}@127.0.0.1", app="nodecli_app:start")
    assert "child first started" in node.read_log() and "child third started" in node.read_log()
    assert node.terminate(timeout=START) == 0
    lines = [line for line in node.read_log().splitlines() if "terminating" in line or "stopping node" in line]
    assert lines[:3] == [f"child {tag} terminating: shutdown" for tag in ("third", "second", "first")], lines
    assert "stopping node" in lines[3]


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nodecli_app", "--app expects MODULE:FUNCTION"),
        (":start", "--app expects MODULE:FUNCTION"),
        ("nodecli_nosuchmodule:start", "cannot import 'nodecli_nosuchmodule'"),
        ("nodecli_app:nothere", "has no attribute 'nothere'"),
        ("nodecli_app:NOT_CALLABLE", "NOT_CALLABLE is 7 (type int), not a function"),
        ("nodecli_app:returns_int", "returned 42 (type int), not the pid of the application's top supervisor"),
        ("nodecli_app:raises", "raised ValueError: no database configured"),
        ("nodecli_app:start_unlinked", "a process not linked to its caller"),
    ],
)
def test_a_bad_app_is_a_usage_error(nodes: Nodes, app: str, message: str) -> None:
    result = nodes.run("--no-epmd", "--app", app)
    assert result.returncode == 2, result.stderr
    assert "snowg node: --app" in result.stderr and app in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    assert "SNOWG_NODE_READY" not in result.stdout
