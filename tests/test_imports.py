"""What importing snowg costs and offers, each checked in a fresh interpreter.

* ``import snowg`` does not import ``cryptography`` (only making
  certificates needs it, and it is slow to import);
* ``import snowg`` loads ``snowg.erlang`` only on first use (``snowg.erlang``,
  or ``start_node(..., erlang=...)``);
* ``import snowg.rpc`` gives ``snowg.rpc.call``;
* ``python -m snowg --help`` runs and lists the commands.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def run_python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh interpreter, outside the repository; fails the test if it fails."""
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"python {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr}"
    return proc


def test_import_snowg_does_not_import_cryptography(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        import snowg
        print(sorted(m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")))
    """)
    assert run_python(tmp_path, "-c", code).stdout.strip() == "[]"


def test_snowg_erlang_is_loaded_on_first_use(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        import snowg
        print("snowg.erlang" in sys.modules)
        try:
            snowg.start_node("lazy@127.0.0.1", epmd=False, erlang="telnet")
        except snowg.NodeError as exc:
            print(exc)
        print("snowg.erlang" in sys.modules, snowg.cluster.current())
        print(snowg.erlang.ErlangOptions().transport)
    """)
    out = run_python(tmp_path, "-c", code).stdout.splitlines()
    assert out == [
        "False",
        "erlang must be True, 'tls', 'tcp' or an ErlangOptions, not 'telnet'",
        "True None",
        "tls",
    ]


def test_import_snowg_rpc_gives_call(tmp_path: Path) -> None:
    code = "import snowg.rpc; print(callable(snowg.rpc.call))"
    assert run_python(tmp_path, "-c", code).stdout.strip() == "True"


def test_python_m_snowg_help(tmp_path: Path) -> None:
    out = run_python(tmp_path, "-m", "snowg", "--help").stdout
    assert out.startswith("usage: snowg")
    for command in ("certs", "node", "example", "demo"):
        assert command in out
