"""The BEAM beside snowg in a benchmark: ``erl`` OS processes started, driven and always killed.

A benchmark that compares snowg with Erlang/OTP compiles a small Erlang
module (code given to ``-eval`` is interpreted, many times slower than
compiled code), starts one or more ``erl`` nodes that print ``ready`` when
they are, sends them commands as Erlang terms on their standard input and
reads ``result <figure>`` lines back. Every OS process started here is in a
session of its own and is SIGKILLed when the benchmark ends, however it ends
(``PR_SET_PDEATHSIG``), so a failed run leaves no ``erl`` or ``epmd`` behind.

Distributed nodes use a private ``epmd`` on a free port (``ERL_EPMD_PORT`` in
the environment given to them), and :func:`tls_dist_args` gives the flags of
Erlang's TLS distribution (``-proto_dist inet_tls``) with snowg's certificates,
so that TLS is measured beside TLS.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import time
from typing import Dict, List, Optional, Sequence

import gevent
from gevent import socket as gsocket
from gevent import subprocess

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1
_BENCH_PID = os.getpid()


def die_with_parent() -> None:
    """In a child, before exec: have it SIGKILLed when the benchmark ends, however it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != _BENCH_PID:
        os._exit(70)  # no guarantee it would not outlive us, or we are gone already


def missing_tools(tools: Sequence[str] = ("erl", "erlc")) -> List[str]:
    """The Erlang tools not on PATH (empty when the BEAM can be measured)."""
    return [t for t in tools if shutil.which(t) is None]


def free_port() -> int:
    with gsocket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def otp_release() -> str:
    """The OTP release of the ``erl`` on PATH (``"25"``)."""
    out = subprocess.run(
        ["erl", "-noshell", "-eval", 'io:format("~s~n", [erlang:system_info(otp_release)]), halt().'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip() or "unknown"


def compile_module(directory: str, module: str, source: str) -> None:
    """Write ``module.erl`` (``source``) into ``directory`` and compile it there."""
    path = os.path.join(directory, f"{module}.erl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    subprocess.run(["erlc", "-o", directory, path], check=True, timeout=60)


def start_epmd(env: Dict[str, str]) -> subprocess.Popen:
    """A private ``epmd`` on a free port; sets ``ERL_EPMD_PORT`` in ``env`` and in this process's environment."""
    port = free_port()
    env["ERL_EPMD_PORT"] = str(port)
    os.environ["ERL_EPMD_PORT"] = str(port)
    proc = subprocess.Popen(
        ["epmd", "-port", str(port), "-address", HOST], env=env, start_new_session=True, preexec_fn=die_with_parent
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # epmd is listening once a connect succeeds
        try:
            with gsocket.create_connection((HOST, port), timeout=1):
                return proc
        except OSError:
            gevent.sleep(0.02)
    kill(proc)
    raise RuntimeError(f"epmd did not listen on port {port} within 10 s")


def tls_dist_args(certs: str, directory: str) -> List[str]:
    """The ``erl`` flags of TLS distribution (``inet_tls``) with the certificates in ``certs`` (snowg's layout)."""
    import snowg.erlang

    optfile = snowg.erlang.write_ssl_dist_optfile(os.path.join(directory, "ssl_dist.conf"), tls=certs)
    return ["-proto_dist", "inet_tls", "-ssl_dist_optfile", optfile]


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole session and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


class Beam:
    """One ``erl`` OS process in a session of its own; its stdout read line by line (a cooperative pipe).

    Args:
        call: the ``-eval`` expression that starts it; it must print ``ready``
            on a line of its own once it is.
        path: the directory of the compiled modules (``-pa``).
        env: its environment (None: this process's).
        name: its node name (``-name``), or None for a node that is not distributed.
        dist_args: more flags (``-setcookie``, :func:`tls_dist_args`, ``+sbt`` ...).
        hidden: start it as a hidden node.
        ready_timeout: seconds to wait for ``ready``.
    """

    def __init__(
        self,
        call: str,
        path: str,
        env: Optional[Dict[str, str]] = None,
        name: Optional[str] = None,
        dist_args: Sequence[str] = (),
        hidden: bool = False,
        ready_timeout: float = 30.0,
    ) -> None:
        named = ["-name", name] if name else []
        hide = ["-hidden"] if hidden else []
        cmd = ["erl", "-noshell", *named, *dist_args, *hide, "-pa", path, "-eval", call]
        self.name = name or "erl"
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
            text=True,
        )
        try:
            self.expect("ready", timeout=ready_timeout)
        except BaseException:
            self.kill()
            raise

    def expect(self, prefix: str, timeout: float) -> str:
        """The rest of the next line that starts with ``prefix`` (other lines are skipped)."""
        assert self.proc.stdout is not None
        with gevent.Timeout(timeout, RuntimeError(f"{self.name}: no {prefix!r} line within {timeout} s")):
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} ended (exit status {self.proc.poll()}) before {prefix!r}")
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()

    def send(self, term: str) -> None:
        """Write the Erlang term ``term`` (no final dot) to its standard input."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(term + ".\n")
        self.proc.stdin.flush()

    def command(self, term: str, timeout: float = 300.0) -> float:
        """Send ``term`` and return the figure of the next ``result`` line."""
        self.send(term)
        return float(self.expect("result", timeout))

    def command_line(self, term: str, timeout: float = 300.0) -> str:
        """Send ``term`` and return the rest of the next ``result`` line as text (several figures)."""
        self.send(term)
        return self.expect("result", timeout)

    def kill(self) -> None:
        kill(self.proc)
