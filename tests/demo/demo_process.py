"""A ``snowg demo`` run as a real subprocess, for the demo tests (with and without a browser).

:class:`Demo` starts ``python -m snowg demo`` on a free port with its own
directory (certificates, cookie, logs), collects its output, waits for lines
of it, and stops it with SIGINT as Ctrl-C would.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional

#: Seconds a demo (launcher and three node processes) may take to be ready.
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """A free port p such that p+1..p+3 look free too (the nodes' preferred chat ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        ok = True
        for p in range(port + 1, port + 4):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free port")


class Demo:
    """A ``snowg demo`` subprocess and its output."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.output: List[str] = []
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "snowg", "demo", "--port", str(self.port), "--dir", directory],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {needle!r} from snowg demo in {timeout} s:\n{self.log()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"snowg demo exited with {self.proc.returncode}:\n{self.log()}") from None
                continue
            if needle in line:
                return line

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        text = "".join(self.output)
        logs = os.path.join(self.directory, "logs")
        if os.path.isdir(logs):
            for name in sorted(os.listdir(logs)):
                with open(os.path.join(logs, name), errors="replace") as f:
                    text += f"\n--- {name} (tail) ---\n" + "".join(f.readlines()[-30:])
        return text

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode
