"""Port mappers for tests: snowg's or Erlang's on a free port, stopped afterwards.

Tests never touch port 4369 or a mapper someone else runs: each uses its own
free port, given to snowg through ``ERL_EPMD_PORT`` (the :func:`epmd_env`
fixture sets it) or the ``epmd_port`` argument.

* :func:`free_port`: a TCP port free on 127.0.0.1 now.
* :func:`mapper`: ``python -m snowg epmd --port P`` as a child process; yields
  P once it answers, stops it afterwards. :func:`erlang_epmd`: the same with
  Erlang's ``epmd -port P`` (skips the test when ``epmd`` is not installed).
* :func:`stop_mapper`: stop whatever snowg mapper listens on a port (a daemon
  that ``ensure_mapper`` started), with ``KILL_REQ`` and, if nodes are still
  registered there, SIGTERM to the process (only a ``snowg epmd`` process).
* Fixtures: ``epmd_env`` (``ERL_EPMD_PORT`` set to a free port for the
  test, any mapper started there stopped after it) and ``snowg_mapper``
  (a running snowg mapper on that port). A test module gets them with
  ``pytest_plugins = ["epmdsupport"]``.

Every wait is bounded: a mapper that does not answer within :data:`T`
seconds fails the test.

PYTEST_DONT_REWRITE: test modules import this module before pytest loads it
as a plugin, so pytest could not rewrite its asserts anyway (it would warn);
they carry their own messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
from typing import Dict, Iterator, List, Optional, Sequence

import gevent
import pytest
from gevent import socket as gsocket
from gevent import subprocess

from snowg.cluster import _epmd_client
from support import wait_until
from snowg.cluster._epmd_proto import KillRequest, TextReplyParser, encode_request

#: Seconds a mapper may take to start or to stop.
T = 10.0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """True if a port mapper answers a names request on ``host:port`` (within 1 s)."""
    try:
        _epmd_client.names(host, epmd_port=port, timeout=1.0)
    except Exception:
        return False
    return True


def send_kill(port: int, host: str = "127.0.0.1", timeout: float = T) -> str:
    """Send ``KILL_REQ`` to the mapper on ``host:port``; its text reply (``'OK'``, ``'NO'``, or ``''``)."""
    with gevent.Timeout(timeout), gsocket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode_request(KillRequest()))
        parser = TextReplyParser()
        while True:
            data = sock.recv(64)
            if not data:
                return parser.close()
            parser.feed(data)


def listening_pids(port: int) -> List[int]:
    """Pids of the processes listening on TCP ``port`` (any address), read from ``/proc``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.append(int(pid))
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def stop_mapper(port: int) -> None:
    """Stop the snowg mapper listening on ``port``, if any (a daemon a test made start); bounded.

    Sends ``KILL_REQ``; when it is refused (nodes still registered), sends
    SIGTERM to the listening process, but only if it is a ``snowg epmd``.
    """
    if not answers(port):
        return
    with contextlib.suppress(OSError, gevent.Timeout):
        if send_kill(port) == "OK":
            wait_until(lambda: not answers(port), f"the mapper on port {port} to stop")
            return
    for pid in listening_pids(port):
        if "snowg epmd" in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not answers(port), f"the mapper on port {port} to stop")


def _env(port: int, extra: Optional[Dict[str, str]]) -> Dict[str, str]:
    env = dict(os.environ)
    env["ERL_EPMD_PORT"] = str(port)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def mapper(
    port: Optional[int] = None, *, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None
) -> Iterator[int]:
    """Run snowg's mapper (``python -m snowg epmd --port P``) as a child; yield P once it answers.

    Its log goes to this process's stderr (pytest shows it for a failed
    test). Stopped with SIGTERM (then SIGKILL) when the block ends.
    """
    port = free_port() if port is None else port
    cmd = [sys.executable, "-m", "snowg", "epmd", "--port", str(port), "--log-level", "DEBUG", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=_env(port, env))
    try:
        assert proc.stdout is not None
        with gevent.Timeout(T, AssertionError(f"snowg epmd on port {port} did not start in {T:g}s")):
            line = proc.stdout.readline().decode()
        assert line.startswith("snowg epmd: listening"), f"snowg epmd did not start: {line!r}"
        yield port
    finally:
        _end(proc)


@contextlib.contextmanager
def erlang_epmd(port: Optional[int] = None) -> Iterator[int]:
    """Run Erlang's ``epmd -port P`` in the foreground as a child; yield P once it answers.

    Skips the test when ``epmd`` is not installed (Debian's erlang-base has it).
    """
    exe = shutil.which("epmd")
    if exe is None:
        pytest.skip("Erlang's epmd is not installed (apt-get install erlang-base)")
    port = free_port() if port is None else port
    proc = subprocess.Popen([exe, "-port", str(port)], stdout=subprocess.DEVNULL, env=_env(port, None))
    try:
        wait_until(lambda: answers(port) or proc.poll() is not None, f"Erlang's epmd on port {port}")
        assert proc.poll() is None, f"epmd -port {port} exited with status {proc.returncode}"
        yield port
    finally:
        _end(proc)


def _end(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=T)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=T)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def epmd_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """``ERL_EPMD_PORT`` set to a free port for this test (and its children); yields the port.

    Any snowg mapper listening there after the test (one that
    ``ensure_mapper`` started as a daemon) is stopped.
    """
    port = free_port()
    monkeypatch.setenv("ERL_EPMD_PORT", str(port))
    try:
        yield port
    finally:
        stop_mapper(port)


@pytest.fixture
def snowg_mapper(epmd_env: int) -> Iterator[int]:
    """A snowg mapper running on ``ERL_EPMD_PORT`` (see ``epmd_env``) for this test; yields its port."""
    with mapper(epmd_env) as port:
        yield port
