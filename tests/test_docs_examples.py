"""Every Python code block of the README and of the user guide runs as written.

Each fenced ``python`` block of ``README.md`` and ``docs/guide/*.md`` is one
test. What a block is, and how it runs, is read from the block itself and from
an HTML comment on the line before its fence (invisible once rendered):

* a block whose first line is ``# file: PATH`` is a file the page asks the
  reader to create: it is written to PATH in the page's working directory
  before any block of that page runs; a ``test_*.py`` file is then run with
  pytest, as the page says (the other files are used by the blocks and nodes
  that import them);
* ``<!-- example: needs-peer -->``: the block talks to a node that the page
  starts with a ``snowg node`` shell command; the test runs that command
  first (the nearest one above the block, in the same directory) and stops
  it afterwards;
* ``<!-- example: server -->``: the block serves until it is stopped; the
  test waits until a WebSocket client can connect to it, then stops it;
* ``<!-- example: fragment -->``: a piece of a larger program, deliberately
  not runnable; it is only compiled, and counted (keep them few:
  :data:`MAX_FRAGMENTS`);
* any other block is a program, run as ``python example.py``.

Each block runs in a fresh OS process, in a fresh directory that holds what the
pages tell the reader to make (``snowg certs certs/``, the page's files), with
the README's well-known ports (4371, 8000, 8443) replaced by free ones so that
two runs never collide. A block fails its test if it exits with an error, does
not end within :data:`TIMEOUT` seconds, or prints a traceback (so does a node it
needed); and each ``print(...)  # expected`` line must print what its comment
says (the comment may go on after a ``:``, ``,``, two spaces or `` (``).

Shell blocks are not run, except the ``snowg certs`` and ``snowg node``
commands a page's Python blocks depend on.
"""

from __future__ import annotations

import ast
import io
import os
import re
import select
import shlex
import signal
import socket
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]

#: Seconds a block (or the node it needs) may take before it counts as hung.
TIMEOUT = 60.0
#: Blocks marked ``<!-- example: fragment -->``, which are only compiled.
MAX_FRAGMENTS = 0
#: Ports the pages use, replaced by free ones in blocks and commands.
WELL_KNOWN_PORTS = (4371, 8000, 8443)

MARKERS = ("needs-peer", "server", "fragment")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^<!--\s*example:\s*([\w-]+)\s*-->\s*$")
FILE_LINE = re.compile(r"^#\s*file:\s*(\S+)\s*$")
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: Optional[str]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> Optional[str]:
        first = self.code.split("\n", 1)[0]
        m = FILE_LINE.match(first)
        return m.group(1) if m else None


def read_blocks(page: Path) -> List[Block]:
    """Every fenced block of ``page`` with its language and its marker, in order."""
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks: List[Block] = []
    i = 0
    marker: Optional[str] = None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            mk = MARKER.match(lines[i].strip())
            if mk is not None:
                if mk.group(1) not in MARKERS:
                    raise ValueError(f"{page.name}:{i + 1}: unknown example marker {mk.group(1)!r}")
                marker = mk.group(1)
            elif lines[i].strip():
                marker = None  # a marker applies to the block right after it only
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3)
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        blocks.append(Block(page, start + 1, lang, "\n".join(body) + "\n", marker))
        marker = None
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in read_blocks(page)]
PY_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("python", "py")]


def _test_id(block: Block) -> str:
    return f"{block.page.stem}:{block.line}"


# ------------------------------------------------------------ expected output


def expected_prints(code: str) -> Optional[List[Optional[str]]]:
    """The expected output of each top-level ``print`` of a program, in order.

    A ``print(...)`` statement outside any function, class or loop, on one line
    with a comment, expects what the comment says (None: any line). Returns
    None when the prints cannot be counted (a print inside a loop).
    """
    tree = ast.parse(code)
    comments: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    found: List[Tuple[int, Optional[str]]] = []

    def visit(stmts: List[ast.stmt], in_loop: bool) -> bool:
        for st in stmts:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if (
                isinstance(st, ast.Expr)
                and isinstance(st.value, ast.Call)
                and isinstance(st.value.func, ast.Name)
                and st.value.func.id == "print"
            ):
                if in_loop:
                    return False
                end = st.end_lineno or st.lineno
                found.append((st.lineno, comments.get(end)))
                continue
            loop = isinstance(st, (ast.For, ast.While, ast.AsyncFor))
            for field in ("body", "orelse", "finalbody"):
                if not visit(getattr(st, field, []) or [], in_loop or loop):
                    return False
            for handler in getattr(st, "handlers", []) or []:
                if not visit(handler.body, in_loop or loop):
                    return False
        return True

    if not visit(tree.body, False):
        return None
    return [comment for _, comment in sorted(found)]


def matches(printed: str, comment: str) -> bool:
    """``printed`` is what ``# comment`` announces (the comment may go on after a separator)."""
    if printed == comment:
        return True
    if not comment.startswith(printed) or not printed:
        return False
    rest = comment[len(printed) :]
    return rest.startswith((":", ",", "  ", " ("))


def check_output(block: Block, stdout: str) -> None:
    expected = expected_prints(block.code)
    if expected is None:
        return
    got = stdout.splitlines()
    assert len(got) == len(expected), (
        f"{block.where}: {len(expected)} print lines expected, the block printed {len(got)}:\n{stdout}"
    )
    for n, (line, comment) in enumerate(zip(got, expected), 1):
        if comment is not None:
            assert matches(line, comment), f"{block.where}: print {n} printed {line!r}, its comment says {comment!r}"


# ------------------------------------------------------------- environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(workdir: Path) -> Dict[str, str]:
    """The environment of a reader's fresh shell: no test runner's variables, a private SNOWG_HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "SNOWG_", "COV_")) and k not in ("PYTHONPATH",)
    }
    env["SNOWG_HOME"] = str(workdir / ".snowg")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Workdir:
    """One page's directory: its certificates, its files, and its ports."""

    def __init__(self, root: Path, page: Path, certs: Path) -> None:
        self.path = root / page.stem
        self.path.mkdir()
        (self.path / "certs").symlink_to(certs, target_is_directory=True)
        self.ports = {port: free_port() for port in WELL_KNOWN_PORTS}
        for block in PY_BLOCKS:
            if block.page == page and block.file is not None:
                target = self.path / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.localize(block.code), encoding="utf-8")

    def localize(self, text: str) -> str:
        """``text`` with the well-known ports replaced by this directory's free ones."""
        for old, new in self.ports.items():
            text = re.sub(rf"(?<!\d){old}(?!\d)", str(new), text)
        return text

    def env(self) -> Dict[str, str]:
        return clean_env(self.path)


@pytest.fixture(scope="module")
def docs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs-examples")


@pytest.fixture(scope="module")
def certs(docs_root: Path) -> Path:
    """``snowg certs certs/``, run once as the pages say."""
    made = subprocess.run(
        [sys.executable, "-m", "snowg", "certs", "certs/"],
        cwd=docs_root,
        env=clean_env(docs_root),
        timeout=TIMEOUT,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, f"snowg certs certs/ failed:\n{made.stdout}{made.stderr}"
    return docs_root / "certs"


@pytest.fixture(scope="module")
def workdirs(docs_root: Path, certs: Path) -> Dict[Path, Workdir]:
    """One working directory per page, shared by the page's blocks (they build on each other)."""
    return {page: Workdir(docs_root, page, certs) for page in PAGES}


def fail_on_traceback(what: str, *texts: str) -> None:
    for text in texts:
        assert TRACEBACK not in text, f"{what} printed a traceback:\n{text}"


# --------------------------------------------------------------- the peers


def node_command(block: Block) -> str:
    """The ``snowg node`` shell command the page runs before ``block``."""
    cmds = [
        line.strip()
        for b in ALL_BLOCKS
        if b.page == block.page and b.lang == "sh" and b.line < block.line
        for line in b.code.splitlines()
        if "snowg node " in line
    ]
    assert cmds, f"{block.where}: marked needs-peer, but no `snowg node` command comes before it on its page"
    return cmds[-1]


def run_shell_node(command: str, workdir: Workdir) -> Tuple[subprocess.Popen, Path]:
    """Start ``[VAR=value ...] snowg node ...`` in ``workdir``; return once it listens."""
    words = shlex.split(workdir.localize(command))
    env = workdir.env()
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[:2] == ["snowg", "node"], command
    log = workdir.path / "node.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snowg", *words[1:]],
            cwd=workdir.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    ready = proc.stdout.readline() if readable else b""  # the node's ready line, once it listens
    if not ready:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        raise AssertionError(
            f"`{command}` did not say it listens within {TIMEOUT} s (exit status {proc.returncode}):\n{log.read_text()}"
        )
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the runs


def run_program(block: Block, workdir: Workdir, script: str = "example.py") -> subprocess.CompletedProcess:
    path = workdir.path / script
    path.write_text(workdir.localize(block.code), encoding="utf-8")
    try:
        return subprocess.run(
            [sys.executable, script],
            cwd=workdir.path,
            env=workdir.env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block.where} did not end within {TIMEOUT} s (output: {exc.stdout!r})") from None


def probe_websocket(port: int, proc: subprocess.Popen) -> None:
    """Wait until a WebSocket client connects to ``port`` (the server may still be starting)."""
    import websocket

    deadline = TIMEOUT
    step = 0.05
    waited = 0.0
    while True:
        try:
            client = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=TIMEOUT)
        except (ConnectionRefusedError, websocket.WebSocketConnectionClosedException):
            assert proc.poll() is None, f"the server ended with {proc.returncode} before it served"
            assert waited < deadline, f"nothing served port {port} within {TIMEOUT} s"
            # A server that is still starting: look again shortly (bounded above).
            try:
                proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                pass
            waited += step
            continue
        client.close()
        return


def run_server(block: Block, workdir: Workdir) -> Tuple[str, str]:
    code = workdir.localize(block.code)
    ports = [new for old, new in workdir.ports.items() if re.search(rf"(?<!\d){new}(?!\d)", code)]
    assert len(ports) == 1, f"{block.where}: a server block must name one of the ports {WELL_KNOWN_PORTS}"
    (workdir.path / "server.py").write_text(code, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "server.py"],
        cwd=workdir.path,
        env=workdir.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        probe_websocket(ports[0], proc)
    finally:
        stop(proc)
    out, err = proc.communicate(timeout=TIMEOUT)
    return out, err


def test_fragments_are_few() -> None:
    fragments = [b.where for b in PY_BLOCKS if b.marker == "fragment"]
    assert len(fragments) <= MAX_FRAGMENTS, f"too many fragments (at most {MAX_FRAGMENTS}): {fragments}"


def test_blocks_are_found() -> None:
    """The pages hold the blocks this test runs (a parsing slip would make it test nothing)."""
    assert len(PY_BLOCKS) >= 20
    assert {b.page.name for b in PY_BLOCKS} >= {"README.md", "processes.md", "distribution.md", "websockets.md"}
    for b in ALL_BLOCKS:
        assert b.marker is None or b in PY_BLOCKS, f"{b.where}: an example marker on a {b.lang!r} block"
        # Python under another name would escape this test: name it `python`.
        assert b.lang not in ("python3", "py3", "pycon", "ipython"), f"{b.where}: a {b.lang!r} block"


@pytest.mark.parametrize("block", PY_BLOCKS, ids=_test_id)
def test_block_runs(block: Block, workdirs: Dict[Path, Workdir]) -> None:
    workdir = workdirs[block.page]
    compile(block.code, block.where, "exec")
    if block.marker == "fragment":
        return
    if (block.page.name == "erlang.md" or "erlang=" in block.code) and shutil.which("erl") is None:
        pytest.skip(f"ERLANG NOT INSTALLED: {block.where} talks to a real erl (apt-get install erlang-base erlang-ssl)")
    name = block.file
    if name is not None:
        if not Path(name).name.startswith("test_"):
            return  # a module the other blocks (or a node) import: run through them
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
            cwd=workdir.path,
            env=workdir.env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, f"{block.where}: pytest {name} failed:\n{result.stdout}\n{result.stderr}"
        assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
        return
    if block.marker == "server":
        out, err = run_server(block, workdir)
        fail_on_traceback(block.where, out, err)
        return
    node: Optional[subprocess.Popen] = None
    log: Optional[Path] = None
    if block.marker == "needs-peer":
        node, log = run_shell_node(node_command(block), workdir)
    try:
        result = run_program(block, workdir)
    finally:
        if node is not None:
            stop(node)
    fail_on_traceback(block.where, result.stdout, result.stderr)
    if log is not None:
        fail_on_traceback(f"the node {block.where} needed", log.read_text())
    assert result.returncode == 0, f"{block.where} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    check_output(block, result.stdout)
