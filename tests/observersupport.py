"""``snowg observer`` as a real OS process for the observer tests, and a WebSocket client of its page's channel."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional

import gevent
from gevent import subprocess

from snowg.testing import ClusterConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ObserverProcess:
    """A running ``snowg observer``: its URL, port, node name and log."""

    def __init__(self, process: Any, url: str, node: str, log_path: str) -> None:
        self.process = process
        self.url = url
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])
        self.node = node
        self.log_path = log_path

    def log_tail(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]


@contextlib.contextmanager
def observer_process(
    config: ClusterConfig, target: Optional[str], *, interval: float = 0.5, args: List[str] = ()
) -> Iterator[ObserverProcess]:
    """Run ``python -m snowg observer --port 0 ... TARGET`` until the block ends (then SIGTERM, SIGKILL)."""
    log_fd, log_path = tempfile.mkstemp(prefix="snowg-observer-", suffix=".log")
    env = dict(os.environ, SNOWG_COOKIE=config.cookie)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    cmd = [sys.executable, "-m", "snowg", "observer", "--port", "0", "--certs", config.certs]
    cmd += ["--interval", str(interval), "--tick", str(config.tick), "--log-level", "INFO", *args]
    if target:
        cmd.append(target)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_fd, stdin=subprocess.DEVNULL, env=env, text=True)
    os.close(log_fd)
    try:
        with gevent.Timeout(30, RuntimeError("snowg observer did not say where its page is")):
            line = proc.stdout.readline()
        if not line.startswith("snowg observer: http://"):
            with open(log_path) as f:
                raise RuntimeError(f"snowg observer did not start: {line!r}\n{f.read()[-3000:]}")
        url = line.split()[2]
        node = line.rsplit("hidden node ", 1)[1].rstrip(")\n")
        yield ObserverProcess(proc, url, node, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.unlink(log_path)


class Page:
    """A WebSocket client of the observer's ``/ws``, as the page is (same origin by default)."""

    def __init__(self, port: int, origin: Optional[str] = "", timeout: float = 10.0) -> None:
        import websocket
        from gevent import socket as gsocket

        origin = f"http://127.0.0.1:{port}" if origin == "" else origin
        # A gevent socket: the client's reads must not stop this node's sessions.
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/ws",
            socket=sock,
            timeout=timeout,
            origin=origin,
            suppress_origin=origin is None,
        )
        self.seen: List[Dict[str, Any]] = []

    def send(self, **msg: Any) -> None:
        self.ws.send(json.dumps(msg))

    def next(self, match: Callable[[Dict[str, Any]], bool], timeout: float = 15.0) -> Dict[str, Any]:
        """The next message for which ``match`` is true (the others are kept in :attr:`seen`)."""
        with gevent.Timeout(timeout, AssertionError(f"no matching message in {timeout} s; last: {self.seen[-3:]}")):
            while True:
                msg = json.loads(self.ws.recv())
                self.seen.append(msg)
                if match(msg):
                    return msg

    def close(self) -> None:
        self.ws.close()


def node_row(cluster: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    """The row of ``name`` in a cluster message, or None."""
    return next((n for n in cluster["nodes"] if n["name"] == name), None)
