"""A ``snowg node`` OS process owned by this process: start it, wait until it listens, stop it.

``snowg node`` (:mod:`snowg._node_main`) writes one line on its stdout once
it listens: :func:`ready_line`, ``SNOWG_NODE_READY <name> <host:port>``; its
log goes to stderr. :meth:`NodeProcess.launch` starts the process with its
stderr in a log file, reads stdout up to that line and returns a
:class:`NodeProcess` that knows the node's address (and its name, when the
node chose it: ``name=None``). The test helpers
(:mod:`snowg.testing`) and the demo launcher (:mod:`snowg.demo.launcher`)
start their nodes this way.

A launched node runs with ``--exit-with-parent``: it stops when this process
goes, however this process ends. The cookie is passed in the environment
(``SNOWG_COOKIE``), never on the command line that ``ps`` shows everyone.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import gevent
from gevent import subprocess

READY_PREFIX = "SNOWG_NODE_READY"
LOG_TAIL_LINES = 40

N = TypeVar("N", bound="NodeProcess")


def ready_line(name: str, address: str) -> str:
    """The line a node writes on stdout once it listens (ends with a newline)."""
    return f"{READY_PREFIX} {name} {address}\n"


def node_command(
    name: Optional[str] = None,
    *,
    certs: Optional[str],
    tick: Optional[float] = None,
    modules: Sequence[str] = (),
    connect: Sequence[str] = (),
    monkeypatch: bool = False,
    cluster: Union[str, Sequence[str], None] = None,
    port_range: Optional[Tuple[int, int]] = None,
    epmd: bool = True,
    app: Optional[str] = None,
    extra_args: Sequence[str] = (),
) -> List[str]:
    """The ``python -m snowg node ...`` command line of a launched node (no cookie in it).

    See :meth:`NodeProcess.launch` for the arguments.
    """
    cmd = [sys.executable, "-m", "snowg", "node"]
    if name is not None:
        cmd.append(name)
    if certs is not None:
        cmd += ["--certs", certs]
    cmd.append("--exit-with-parent")
    if tick is not None:
        cmd += ["--tick", str(tick)]
    for module in modules:
        cmd += ["--import", module]
    for target in connect:
        cmd += ["--connect", target]
    if monkeypatch:
        cmd.append("--monkeypatch")
    for spec in [cluster] if isinstance(cluster, str) else cluster or ():
        cmd += ["--cluster", spec]
    if port_range is not None:
        cmd += ["--port-range", f"{port_range[0]}-{port_range[1]}"]
    if not epmd:
        cmd.append("--no-epmd")
    if app is not None:
        cmd += ["--app", app]
    return cmd + list(extra_args)


class NodeProcess:
    """A node running in its own OS process, started by :meth:`launch`.

    Attributes:
        name: its node name (``''`` until it is ready when the node chose it).
        address: ``'host:port'`` where it listens (``''`` until it is ready).
        process: the ``gevent.subprocess.Popen`` object; its stdout is still a
            pipe (nothing more is written to it after the ready line).
        log_path: the file holding its stderr (its log).
    """

    def __init__(self, name: str, address: str, process: Any, log_path: str) -> None:
        self.name = name
        self.address = address
        self.process = process
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '(unnamed)'} pid={self.process.pid}>"

    @classmethod
    def launch(
        cls: Type[N],
        name: Optional[str] = None,
        *,
        certs: Optional[str],
        cookie: Optional[str],
        log_path: str,
        tick: Optional[float] = None,
        modules: Sequence[str] = (),
        connect: Sequence[str] = (),
        monkeypatch: bool = False,
        cluster: Union[str, Sequence[str], None] = None,
        port_range: Optional[Tuple[int, int]] = None,
        epmd: bool = True,
        app: Optional[str] = None,
        extra_args: Sequence[str] = (),
        pythonpath: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
    ) -> N:
        """Start ``snowg node name ...`` and wait until it listens.

        Blocks until the node's ready line, at most ``timeout`` seconds. Its
        stderr is appended to ``log_path``. Options left at None keep the
        node's own defaults (``snowg node``'s, which are ``start_node``'s).

        Args:
            name: its node name, ``'name'`` or ``'name@host'``; None lets the
                node make one (:attr:`name` is then read from its ready line).
            certs: the certificate directory (``snowg certs``) it uses; None
                for its default.
            cookie: the cluster cookie (given to it in its environment); None
                for its default.
            log_path: file its log is appended to.
            tick: its liveness tick in seconds.
            modules: modules it imports at start (for their ``@spawnable`` functions).
            connect: ``'name@host[:port]'`` targets it connects to once it listens.
            monkeypatch: run it with ``gevent.monkey.patch_all()`` first.
            cluster: its discovery strategies (``'local'``, ``'dns:NAME'``...):
                one string (several separated by spaces) or a list; None for
                ``$SNOWG_CLUSTER``.
            port_range: ``(lo, hi)``: it listens on the first free port of that range.
            epmd: False: it does not register with the port mapper (``--no-epmd``).
            app: ``'module:function'`` it runs as its application (``--app``).
            extra_args: more ``snowg node`` arguments (they win over the ones above).
            pythonpath: directories put first in its ``PYTHONPATH``.
            env: more environment variables for it (``ERL_EPMD_PORT``,
                ``SNOWG_HOST``, ``SNOWG_CLUSTER``...), over this process's.
            timeout: seconds it may take to listen.

        Raises:
            RuntimeError: it exited or did not listen in time (it is killed
                then); the message holds the end of its log.
        """
        cmd = node_command(
            name,
            certs=certs,
            tick=tick,
            modules=modules,
            connect=connect,
            monkeypatch=monkeypatch,
            cluster=cluster,
            port_range=port_range,
            epmd=epmd,
            app=app,
            extra_args=extra_args,
        )
        child_env: Dict[str, str] = dict(os.environ)
        if cookie is not None:
            child_env["SNOWG_COOKIE"] = cookie
        inherited = [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p]
        child_env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *inherited])
        child_env.update(env or {})
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, env=child_env
            )
        node = cls(name or "", "", proc, log_path)
        try:
            node.name, node.address = node._wait_ready(timeout)
        except BaseException:
            node.kill()
            raise
        return node

    def _wait_ready(self, timeout: float) -> Tuple[str, str]:
        """Read stdout up to the ready line; the name and address it gives.

        Kills the process and raises RuntimeError if none comes.
        """
        prefix = READY_PREFIX.encode()
        line = b""
        timed_out = False
        deadline = gevent.Timeout(timeout)
        try:
            with deadline:
                while True:
                    line = self.process.stdout.readline()
                    if not line or line.startswith(prefix):
                        break
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            timed_out = True
        if not line.startswith(prefix):
            self.kill()
            how = f"did not listen within {timeout} s" if timed_out else f"exited with {self.process.returncode}"
            raise RuntimeError(
                f"node {self.name or '(unnamed)'} did not start ({how}); "
                f"end of its log {self.log_path}:\n{self.log_tail()}"
            )
        _prefix, name, address = line.decode().split()
        return name, address

    @property
    def target(self) -> str:
        """``'name@host:port'``, what :func:`snowg.connect` takes (``''`` before it listens)."""
        if not self.address:
            return ""
        return f"{self.name}:{self.address.rsplit(':', 1)[1]}"

    @property
    def os_pid(self) -> int:
        """Its OS process id."""
        return int(self.process.pid)

    def alive(self) -> bool:
        """True until its OS process has ended (and been reaped)."""
        return self.process.poll() is None

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL it and reap it; blocks at most ``timeout`` seconds."""
        if self.alive():
            try:
                self.process.send_signal(signal.SIGKILL)
            except OSError:
                pass  # it ended meanwhile
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM (a clean stop; SIGCONT first, in case it is frozen), then SIGKILL after ``timeout``.

        Blocks until it has ended. Returns its exit code.
        """
        if self.alive():
            try:
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
                return int(self.process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                pass
            except OSError:
                pass  # it ended meanwhile
        self.kill()
        code = self.process.returncode
        return None if code is None else int(code)

    def read_log(self) -> str:
        """Its log so far (``''`` if the file is gone)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of its log."""
        return "".join(self.read_log().splitlines(keepends=True)[-lines:])
