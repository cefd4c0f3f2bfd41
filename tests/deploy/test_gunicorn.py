"""snowg.gunicorn.Worker under a real gunicorn: 4 workers, one cluster, one room.

Each test starts ``gunicorn -k snowg.gunicorn.Worker -w 4`` serving
:mod:`gunicorn_app` (Flask, and WebSocket clients in the room "lobby") on a
free port, with a private ``SNOWG_HOME`` and a free ``ERL_EPMD_PORT``, so
nothing touches ``~/.snowg`` or port 4369. Nothing is prepared, as on a fresh
host: the workers make the certificates and the cookie, and start snowg's
port mapper (stopped after the test). gunicorn's output goes to a log file,
shown when a test fails.

The clients live in this process (websocket-client over gevent sockets, a
reader greenlet each). A client is told its worker's node on connecting; the
kernel spreads connections over the workers unevenly, so clients are opened
(a bounded number) until each worker has its share, and the extras closed.

Exactness: after a broadcast, the sender broadcasts a *fence*; a node's
broadcasts reach a client in the order the node issued them, so a client
that has the fence has had everything sent before it, and counts can be
compared exactly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import struct
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import gevent
import gevent.socket
import pytest
import websocket
from gevent import subprocess
from gevent.event import Event
from gunicorn.config import KNOWN_SETTINGS

from epmdsupport import free_port, stop_mapper
from snowg.cluster._epmd_client import names as mapper_names
from snowg.testing import wait_for

TIME_LIMIT = 180
pytestmark = pytest.mark.timeout(TIME_LIMIT + 30)  # the test's own limit (TIME_LIMIT) fails it first
HERE = Path(__file__).resolve().parent
#: Seconds one expected event may take (a worker boots, the mesh forms, a message arrives).
W = 60.0
#: The most clients opened to find a given share on every worker.
MAX_CLIENTS = 400

# Newer gunicorns (27 here) open a control socket in ~/.gunicorn unless told not to; older ones have no such option.
NO_CONTROL_SOCKET = ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []
WORKER_LINE = re.compile(r"gunicorn worker (\d+) is node (\S+)")


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    """Block until something accepts on 127.0.0.1:``port`` (bounded by ``W``), while ``proc`` runs."""

    def answers() -> bool:
        assert proc.poll() is None, f"{what} ended with {proc.returncode} before it listened"
        try:
            gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    assert wait_for(answers, timeout=W, interval=0.05), f"{what} did not listen on {port} within {W} s"


# ------------------------------------------------------------------ servers


@pytest.fixture
def epmd_port() -> Iterable[int]:
    """The port mapper's port for the test's gunicorns (their ``ERL_EPMD_PORT``), free.

    No mapper runs there: the first worker starts snowg's, as on a fresh
    host. It is stopped after the test.
    """
    port = free_port()
    yield port
    stop_mapper(port)


class Gunicorn:
    """A real gunicorn master with ``snowg.gunicorn.Worker`` workers, its output in a log file."""

    def __init__(
        self, tmp_path: Path, epmd_port: int, *options: str, env: Optional[Dict[str, str]] = None, workers: int = 4
    ) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "gunicorn.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SNOWG_")}
        environ.update(ERL_EPMD_PORT=str(epmd_port), SNOWG_HOME=str(tmp_path / ".snowg"), **(env or {}))
        self.epmd_port = epmd_port
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "snowg.gunicorn.Worker",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{self.port}",
            "--pythonpath",
            str(HERE),
            "--graceful-timeout",
            "30",
            *NO_CONTROL_SOCKET,
            *options,
            "gunicorn_app:app",
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=tmp_path, env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> List[Tuple[int, str]]:
        """``(pid, node)`` of every worker that said which node it is, in order."""
        return [(int(pid), node) for pid, node in WORKER_LINE.findall(self.log())]

    def wait_workers(self, count: int) -> List[Tuple[int, str]]:
        """Block until ``count`` workers in all have said which node they are (bounded)."""

        def booted() -> bool:
            assert self.proc.poll() is None, f"gunicorn ended with {self.proc.returncode}"
            return len(self.workers()) >= count

        assert wait_for(booted, timeout=W, interval=0.05), f"{count} workers did not become nodes within {W} s"
        return self.workers()[:count]

    def wait_logged(self, text: str, count: int = 1) -> None:
        assert wait_for(lambda: self.log().count(text) >= count, timeout=W, interval=0.05), (
            f"{text!r} not logged {count} times within {W} s"
        )

    def stop(self) -> Optional[int]:
        """SIGTERM (gunicorn's graceful stop), then its exit status; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=W)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=W)
                return None
        return self.proc.returncode


@pytest.fixture
def gunicorn(tmp_path: Path, epmd_port: int) -> Iterable[Callable[..., Gunicorn]]:
    """``start(*options, env=None, workers=4)``: a gunicorn, once it listens; stopped after the test.

    Its log is written to stderr at the end, which pytest shows when the test failed.
    """
    started: List[Gunicorn] = []

    def start(*options: str, env: Optional[Dict[str, str]] = None, workers: int = 4) -> Gunicorn:
        server = Gunicorn(tmp_path, epmd_port, *options, env=env, workers=workers)
        started.append(server)
        wait_port(server.port, server.proc, "gunicorn")
        return server

    yield start
    for server in started:
        server.stop()
        sys.stderr.write(f"\n--- gunicorn log ({server.log_path}) ---\n{server.log()}\n")


# ------------------------------------------------------------------ clients


class Client:
    """A WebSocket client of the lobby app: its worker's node and pid, and what it received."""

    def __init__(self, port: int) -> None:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=W)
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", socket=sock, timeout=None)
        hello = json.loads(self.ws.recv())
        self.node: str = hello["node"]
        self.pid: int = hello["pid"]
        self.got: List[Dict[str, Any]] = []
        self.close_code: Optional[int] = None
        self.ended = False
        self._changed = Event()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self.got.append(json.loads(data))
                    self._changed.set()
        except (websocket.WebSocketException, OSError):
            pass
        finally:
            self.ended = True
            self._changed.set()

    def wait(self, predicate: Callable[[List[Dict[str, Any]]], bool], what: str) -> None:
        """Block until ``predicate(self.got)`` (bounded by ``W``); the reader wakes us on each message."""
        with gevent.Timeout(W, AssertionError(f"client of {self.node}: no {what} within {W} s; got {self.got[-5:]}")):
            while not predicate(self.got):
                self._changed.clear()
                if predicate(self.got):
                    break
                self._changed.wait()

    def wait_ended(self) -> None:
        self.wait(lambda got: self.ended, "end of the connection")

    def nodes(self) -> Set[str]:
        """Its worker's connected nodes (asked now)."""
        asked = len(self.got)
        self.ws.send("nodes")
        self.wait(lambda got: any("nodes" in m for m in got[asked:]), "answer to 'nodes'")
        return set(next(m for m in self.got[asked:] if "nodes" in m)["nodes"])

    def broadcast(self, text: str) -> None:
        self.ws.send(f"broadcast {text}")

    def received(self, text: str) -> int:
        return self.got.count({"broadcast": text})

    def close(self) -> None:
        self._reader.kill(block=True, timeout=1)
        try:
            self.ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass


@pytest.fixture
def clients() -> Iterable[List[Client]]:
    """Every client a test opens; closed afterwards."""
    opened: List[Client] = []
    yield opened
    for client in opened:
        client.close()


def open_spread(port: int, nodes: Iterable[str], per_node: int, opened: List[Client]) -> List[Client]:
    """``per_node`` clients on each of ``nodes``: opens clients (at most :data:`MAX_CLIENTS`), closes the extras."""
    wanted = set(nodes)
    kept: Dict[str, List[Client]] = defaultdict(list)
    extras: List[Client] = []
    tries = 0
    while any(len(kept[node]) < per_node for node in wanted):
        assert tries < MAX_CLIENTS, f"{tries} clients did not reach every worker: {dict(kept)}"
        tries += 1
        client = Client(port)
        opened.append(client)
        if client.node in wanted and len(kept[client.node]) < per_node:
            kept[client.node].append(client)
        else:
            extras.append(client)
    for client in extras:
        client.close()
        opened.remove(client)
    return [client for node in sorted(wanted) for client in kept[node]]


def wait_mesh(clients: Iterable[Client], nodes: Set[str]) -> None:
    """Block until the worker of each client is connected to exactly the other ``nodes``."""
    seen: Dict[str, Set[str]] = {}
    for client in {c.node: c for c in clients}.values():
        want = nodes - {client.node}

        def meshed(client: Client = client, want: Set[str] = want) -> bool:
            seen[client.node] = client.nodes()
            return seen[client.node] == want

        assert wait_for(meshed, timeout=W, interval=0.1), f"{client.node} sees {seen[client.node]}, not {want}"


def broadcast_reaches(sender: Client, receivers: List[Client], text: str) -> None:
    """``sender`` broadcasts ``text``: each of ``receivers`` gets it exactly once."""
    sender.broadcast(text)
    sender.broadcast(f"fence {text}")
    for client in receivers:
        client.wait(lambda got: {"broadcast": f"fence {text}"} in got, f"fence after {text!r}")
    counts = {f"{c.node}/{i}": c.received(text) for i, c in enumerate(receivers)}
    assert set(counts.values()) == {1}, f"{text!r} received: {counts}"


def alive(node: str) -> str:
    return node.split("@", 1)[0]


def registered(server: Gunicorn) -> Set[str]:
    """The names the port mapper knows."""
    return {name for name, _ in mapper_names("127.0.0.1", epmd_port=server.epmd_port)}


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload"])
def test_four_workers_one_room_and_a_killed_worker_replaced(
    gunicorn: Callable[..., Gunicorn], clients: List[Client], preload: bool
) -> None:
    # With --preload the application is imported in the master and, here,
    # starts a node there at import: the master must not stay one.
    options = ("--preload",) if preload else ()
    server = gunicorn(*options, env={"GUNICORN_APP_STARTS_NODE": "1"} if preload else None)
    workers = server.wait_workers(4)
    nodes = {node for _, node in workers}
    assert len(nodes) == 4, workers
    assert all(alive(node).startswith("gunicorn_app-") for node in nodes), nodes

    lobby = open_spread(server.port, nodes, 3, clients)
    assert len(lobby) == 12 and {c.node for c in lobby} == nodes
    wait_mesh(lobby, nodes)
    for sender in (lobby[0], lobby[-1]):
        broadcast_reaches(sender, lobby, f"hello from {sender.node}")
    assert registered(server) == {alive(node) for node in nodes}

    # kill -9 a worker that the first sender is not on.
    victim = next(pid for pid, node in workers if node != lobby[0].node)
    victim_node = next(node for pid, node in workers if pid == victim)
    os.kill(victim, signal.SIGKILL)
    gone = [c for c in lobby if c.pid == victim]
    for client in gone:
        client.wait_ended()
    replacement = server.wait_workers(5)[4][1]
    nodes = nodes - {victim_node} | {replacement}
    survivors = [c for c in lobby if c.pid != victim]
    newcomers = open_spread(server.port, {replacement}, 3, clients)
    wait_mesh(survivors + newcomers, nodes)
    broadcast_reaches(newcomers[0], survivors + newcomers, "hello from the replacement")
    broadcast_reaches(survivors[0], survivors + newcomers, "hello to the replacement")
    assert all(c.received("hello from the replacement") == 0 for c in gone)
    assert registered(server) == {alive(node) for node in nodes}

    log = server.log()
    assert "Traceback" not in log
    for node in nodes | {victim_node}:
        assert f"node {node} started" in log, f"the snowg logger's line for {node} is not in gunicorn's log"
    if preload:
        assert "the application started node appimport@127.0.0.1 in gunicorn's master" in log
        assert "appimport" not in registered(server)

    # A graceful stop: every worker closes its clients with 1001 and leaves the cluster.
    assert server.stop() == 0
    for client in survivors + newcomers:
        client.wait_ended()
        assert client.close_code == 1001
    log = server.log()
    for node in nodes:
        assert f"node {node} stopped" in log
    assert "Traceback" not in log


def test_hup_reload_replaces_every_worker_and_the_room_works(
    gunicorn: Callable[..., Gunicorn], clients: List[Client]
) -> None:
    server = gunicorn("--access-logfile", "-")
    old = {node for _, node in server.wait_workers(4)}
    before = open_spread(server.port, old, 1, clients)
    wait_mesh(before, old)

    server.proc.send_signal(signal.SIGHUP)
    new = {node for _, node in server.wait_workers(8)[4:]}
    assert not new & old
    for client in before:  # the old workers close their clients ("going away") and stop their nodes
        client.wait_ended()
        assert client.close_code == 1001
    for node in old:
        server.wait_logged(f"node {node} stopped")

    after = open_spread(server.port, new, 3, clients)
    wait_mesh(after, new)
    broadcast_reaches(after[0], after, "hello after the reload")
    assert registered(server) == {alive(node) for node in new}
    log = server.log()
    assert '"GET / HTTP/1.1" 101' in log  # gunicorn's access log sees the upgrades
    assert "Traceback" not in log


def test_max_requests_recycles_a_worker_gracefully(gunicorn: Callable[..., Gunicorn], clients: List[Client]) -> None:
    server = gunicorn("--max-requests", "3", "--max-requests-jitter", "0", workers=1)
    first = server.wait_workers(1)[0][1]
    three = [Client(server.port) for _ in range(3)]  # the third request is the last
    clients.extend(three)
    assert {c.node for c in three} == {first}
    for client in three:
        client.wait_ended()
        assert client.close_code == 1001
    server.wait_logged(f"node {first} stopped")
    second = server.wait_workers(2)[1][1]
    newcomer = Client(server.port)
    clients.append(newcomer)
    assert newcomer.node == second != first
    assert "Autorestarting worker after current request" in server.log()


@pytest.mark.parametrize(
    "variable, value, reason",
    [("SNOWG_CLUSTER", "nosuchstrategy:x", "nosuchstrategy"), ("SNOWG_PREFIX", "my app", "$SNOWG_PREFIX")],
)
def test_a_bad_setting_stops_gunicorn_with_the_reason(
    tmp_path: Path, epmd_port: int, variable: str, value: str, reason: str
) -> None:
    server = Gunicorn(tmp_path, epmd_port, env={variable: value})
    try:
        status = server.proc.wait(timeout=W)
    finally:
        server.stop()
    assert status != 0
    log = server.log()
    assert reason in log, log
    assert "Worker failed to boot" in log, log


@pytest.fixture
def snowg_logger() -> Iterable[logging.Logger]:
    """The ``snowg`` logger as a program that configured no logging has it; restored afterwards."""
    logger = logging.getLogger("snowg")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers[:] = [logging.NullHandler()]  # as snowg/__init__ leaves it
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_the_snowg_log_goes_to_gunicorns_unless_the_application_configured_it(snowg_logger: logging.Logger) -> None:
    from snowg.gunicorn import _log_to

    error_log = logging.getLogger("test_gunicorn.error")
    error_log.handlers[:] = [logging.StreamHandler()]
    error_log.setLevel(logging.DEBUG)
    root = logging.getLogger()
    captures = list(root.handlers)  # pytest's, for this phase of the test
    root.handlers[:] = []
    try:
        _log_to(error_log)
        assert error_log.handlers[0] in snowg_logger.handlers
        assert snowg_logger.level == logging.DEBUG and not snowg_logger.propagate

        snowg_logger.handlers[:] = [logging.NullHandler(), own := logging.StreamHandler()]
        snowg_logger.setLevel(logging.NOTSET)
        snowg_logger.propagate = True
        _log_to(error_log)  # the application's own handler: left alone
        assert snowg_logger.handlers[1:] == [own] and snowg_logger.level == logging.NOTSET

        snowg_logger.handlers[:] = [logging.NullHandler()]
        root.handlers[:] = [logging.StreamHandler()]
        _log_to(error_log)  # logging configured for everything (basicConfig): left alone
        assert len(snowg_logger.handlers) == 1 and snowg_logger.propagate
    finally:
        root.handlers[:] = captures


def test_the_prefix_from_gunicorns_settings() -> None:
    from gunicorn.config import Config

    from snowg.gunicorn import settings_prefix

    cfg = Config()
    cfg.set("default_proc_name", "myproject.wsgi:application")
    assert settings_prefix(cfg) == "myproject_wsgi"
    cfg.set("proc_name", "chat server (eu)")
    assert settings_prefix(cfg) == "chat_server_eu"
    cfg.set("proc_name", "...")
    assert settings_prefix(cfg) == "snowg"


def test_import_snowg_needs_no_gunicorn_and_the_worker_says_what_to_install() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    plain = subprocess.run(
        [sys.executable, "-c", "import sys, snowg; assert 'gunicorn' not in sys.modules, 'imported'"],
        capture_output=True,
        text=True,
        env=env,
        timeout=W,
    )
    assert plain.returncode == 0, plain.stderr
    missing = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['gunicorn'] = None; import snowg.gunicorn"],
        capture_output=True,
        text=True,
        env=env,
        timeout=W,
    )
    assert missing.returncode != 0
    assert "ImportError" in missing.stderr and "pip install snowg[gunicorn]" in missing.stderr, missing.stderr
