"""snowg is a typed package: a user's program type-checks against it with ``mypy --strict``.

Two small programs are written to a temporary directory and checked in one
``python -m mypy --strict`` run (a subprocess, outside the repository): one
uses processes, a GenServer, a supervisor and a node and must get no error;
the other passes a str where snowg wants seconds and must get exactly that
error. Skipped when mypy is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import snowg

pytestmark = pytest.mark.timeout(300)

GOOD = """
from typing import Any, List, Optional, Tuple

import snowg
from snowg import ChildSpec, GenServer, Pid, supervisor


def worker(parent: Pid, n: int) -> None:
    snowg.send(parent, ("done", snowg.self(), n * 2))


def first_result(parent: Pid) -> int:
    pid: Pid = snowg.spawn(worker, parent, 21)
    msg = snowg.receive(lambda m: type(m) is tuple and m[:2] == ("done", pid), timeout=5.0)
    value: int = msg[2]
    return value


class Counter(GenServer):
    def init(self, start: int) -> Any:
        return start

    def handle_call(self, request: Any, from_: Any, state: int) -> Tuple[str, int, int]:
        return ("reply", state, state + 1)


def use_counter() -> int:
    pid: Optional[Pid] = Counter.start_link(10, name="counter")
    assert pid is not None
    got: int = snowg.call(pid, "next", timeout=1.0)
    return got


def tree() -> Pid:
    children: List[ChildSpec] = [ChildSpec("counter", (Counter, (0,)), restart="permanent", shutdown=5.0)]
    return supervisor.start_link(children, strategy="one_for_one", intensity=3, period=5)


def join(cookie: str) -> str:
    node: snowg.Node = snowg.start_node("alice@127.0.0.1", cookie=cookie, port=0)
    ok: bool = snowg.connect("bob@127.0.0.1:4370")
    names: List[str] = snowg.nodes()
    return f"{node.name} {node.address} {ok} {names}"


ref = snowg.send_after(1.5, "counter", "tick")
"""

BAD = """
import snowg

snowg.send_after("soon", "counter", "tick")
"""


def _mypy_env(package_parent: Path) -> dict:
    """The environment for mypy: it cannot follow an editable install's import hook, so point at the source."""
    env = dict(os.environ)
    if package_parent.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(package_parent)
    return env


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install '.[test]'): the typed-package check did not run",
)
def test_a_user_program_type_checks_strictly_and_a_wrong_type_is_reported(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD), encoding="utf-8")
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD), encoding="utf-8")
    package_parent = Path(snowg.__file__).resolve().parent.parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            "good.py",
            "bad.py",
        ],
        cwd=tmp_path,
        env=_mypy_env(package_parent),
        capture_output=True,
        text=True,
        timeout=280,
    )
    lines = proc.stdout.splitlines()
    assert "error" not in proc.stderr, proc.stderr
    good = [line for line in lines if line.startswith("good.py:")]
    bad = [line for line in lines if line.startswith("bad.py:")]
    assert good == [], "\n".join(good)
    assert len(bad) == 1 and "send_after" in bad[0] and '"str"' in bad[0] and "float" in bad[0], proc.stdout
