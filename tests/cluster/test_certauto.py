"""Certificates made on first start when none exist (snowg.cluster._certauto), with real processes."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List, Sequence

import pytest
from cryptography import x509

from snowg._errors import NodeError
from snowg.cluster import load_tls, make_certs
from snowg.cluster._certauto import ensure_default_certs
from snowg.cluster._certmaking import check_san_host

POSIX = os.name == "posix"
CREATED = "created a private cluster CA and node certificate in"
PROC_TIMEOUT = 60


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $SNOWG_HOME, and a $HOME elsewhere that nothing may touch."""
    monkeypatch.setenv("SNOWG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    return tmp_path / "home"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _san(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)], san.get_values_for_type(x509.DNSName)


def _created_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if CREATED in r.getMessage()]


def test_made_once_with_private_modes(home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="snowg")
    assert ensure_default_certs("10.1.2.3") is True
    certs = home / "certs"
    assert sorted(p.name for p in certs.iterdir()) == ["ca.key", "ca.pem", "node.key", "node.pem"]
    assert [p.name for p in home.iterdir()] == ["certs"]  # no temporary directory left beside it
    assert not any((tmp_path / "user").iterdir())  # $SNOWG_HOME wins over ~
    if POSIX:
        assert _mode(certs) == 0o700
        assert _mode(certs / "ca.key") == 0o600 and _mode(certs / "node.key") == 0o600
    ips, dns = _san(certs / "node.pem")
    assert ips == ["10.1.2.3", "127.0.0.1"]
    try:
        hostname = check_san_host(socket.gethostname())
    except ValueError:
        hostname = "localhost"
    assert dns == list(dict.fromkeys(["localhost", hostname]))
    [line] = _created_lines(caplog)
    assert str(certs) in line and "snowg certs DIR --host" in line
    cfg = load_tls(None, "web-1a2b3c@10.1.2.3", default_dir=None)
    assert cfg.ca == str(certs / "ca.pem") and cfg.cert == str(certs / "node.pem")

    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    caplog.clear()
    assert ensure_default_certs("10.1.2.3") is False
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
    assert _created_lines(caplog) == []


def test_existing_empty_directory_is_filled(home: Path) -> None:
    (home / "certs").mkdir(parents=True, mode=0o755)
    assert ensure_default_certs("127.0.0.1") is True
    load_tls(None, "a@127.0.0.1", default_dir=None)
    if POSIX:
        assert _mode(home / "certs") == 0o700


def test_directory_with_certificates_is_left_alone(home: Path) -> None:
    made = make_certs(home / "certs")
    (home / "certs" / "node.pem").unlink()  # even a partial set is the user's
    assert ensure_default_certs("127.0.0.1") is False
    with pytest.raises(NodeError, match=r"node\.pem: file not found"):
        load_tls(None, "a@127.0.0.1", default_dir=None)
    assert not made["node"].cert.exists()


def test_directory_with_other_files_is_refused(home: Path) -> None:
    (home / "certs").mkdir(parents=True)
    (home / "certs" / "notes.txt").write_text("mine")
    with pytest.raises(NodeError) as err:
        ensure_default_certs("127.0.0.1")
    assert f"certificate directory {home / 'certs'}: holds none of" in str(err.value)
    assert f"snowg certs {home / 'certs'}" in str(err.value)
    assert [p.name for p in (home / "certs").iterdir()] == ["notes.txt"]


def test_home_that_cannot_hold_it_is_a_clear_error(home: Path) -> None:
    home.write_text("a file where the directory should be")  # refused to root too, unlike a mode
    with pytest.raises(NodeError, match=rf"certificate directory {home / 'certs'}: cannot create it \(.+\)"):
        ensure_default_certs("127.0.0.1")


# --------------------------------------------------------------------------
# Real processes
# --------------------------------------------------------------------------

RACER = textwrap.dedent("""
    import hashlib, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    import snowg.cluster._certmaking  # cryptography loaded before the start line, for a closer race
    from snowg.cluster import load_tls
    from snowg.cluster._certauto import ensure_default_certs
    print("ready", flush=True)
    sys.stdin.readline()
    made = ensure_default_certs("127.0.0.1")
    cfg = load_tls(None, "racer@127.0.0.1", default_dir=None)
    with open(cfg.ca, "rb") as f:
        print(int(made), hashlib.sha256(f.read()).hexdigest(), flush=True)
""")


@pytest.fixture
def procs() -> Iterator[List["subprocess.Popen[str]"]]:
    started: List[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(PROC_TIMEOUT)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def _popen(script: str, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("existing", ["missing", "empty"])
def test_racing_processes_end_with_one_ca(home: Path, procs: List["subprocess.Popen[str]"], existing: str) -> None:
    if existing == "empty":
        (home / "certs").mkdir(parents=True)
    procs.extend(_popen(RACER) for _ in range(6))
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n", p.stderr.read() if p.stderr else ""
    for p in procs:  # all let go at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    logs = []
    for p in procs:
        out, err = p.communicate(timeout=PROC_TIMEOUT)
        assert p.returncode == 0, err
        results.append(out.split())
        logs.append(err)
    final = (home / "certs" / "ca.pem").read_bytes()
    import hashlib

    digest = hashlib.sha256(final).hexdigest()
    assert [made for made, _ in results].count("1") == 1, results
    assert all(ca == digest for _, ca in results), results  # every process uses the one CA in place
    assert "".join(logs).count(CREATED) == 1, logs
    assert [p.name for p in home.iterdir()] == ["certs"]  # the losers' directories are gone
    assert sorted(p.name for p in (home / "certs").iterdir()) == ["ca.key", "ca.pem", "node.key", "node.pem"]


def test_losing_the_race_uses_the_winners(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process puts its directory in place while this one is making its own."""
    import snowg.cluster._certmaking as certmaking

    made_here = certmaking.new_cluster_files

    def and_then_another_process(directory: Path, hosts: Sequence[str], days: int) -> None:
        made_here(directory, hosts, days)
        winner = subprocess.run(
            [sys.executable, "-c", "from snowg.cluster._certauto import ensure_default_certs as e; print(e('::1'))"],
            capture_output=True,
            text=True,
            timeout=PROC_TIMEOUT,
        )
        assert winner.stdout == "True\n", winner.stderr

    monkeypatch.setattr(certmaking, "new_cluster_files", and_then_another_process)
    caplog.set_level(logging.DEBUG, logger="snowg")
    assert ensure_default_certs("127.0.0.1") is False
    assert _created_lines(caplog) == []
    assert "made by another process at the same time" in caplog.text
    assert _san(home / "certs" / "node.pem")[0] == ["::1", "127.0.0.1"]  # the winner's
    assert [p.name for p in home.iterdir()] == ["certs"]  # this process's own are gone


NODE = textwrap.dedent("""
    import logging, sys
    import gevent
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    import snowg
    def line():  # read stdin while the node's greenlets keep running
        return gevent.get_hub().threadpool.apply(sys.stdin.readline).strip()
    tls = sys.argv[2] if len(sys.argv) > 2 else None
    print(snowg.start_node(sys.argv[1], cookie="autocookie", epmd=False, tls=tls).address, flush=True)
    target = line()
    if target:
        print(snowg.connect(target), snowg.nodes(), flush=True)
    line()
    snowg.stop_node()
""")


def test_start_node_makes_them_and_a_second_node_uses_them(home: Path, procs: List["subprocess.Popen[str]"]) -> None:
    first = _popen(NODE, "auto-a@127.0.0.1")
    procs.append(first)
    assert first.stdout is not None and first.stdin is not None
    address = first.stdout.readline().strip()
    assert address, first.stderr.read() if first.stderr else ""
    assert (home / "certs" / "ca.key").exists()

    second = _popen(NODE, "auto-b@127.0.0.1")
    procs.append(second)
    assert second.stdout is not None and second.stdin is not None
    assert second.stdout.readline().strip(), second.stderr.read() if second.stderr else ""
    port = address.rsplit(":", 1)[1]
    out_b, err_b = second.communicate(f"auto-a@127.0.0.1:{port}\n\n", timeout=PROC_TIMEOUT)
    _, err_a = first.communicate("\n\n", timeout=PROC_TIMEOUT)
    assert out_b.strip() == "True ['auto-a@127.0.0.1']", err_b
    assert err_a.count(CREATED) == 1 and CREATED not in err_b, (err_a, err_b)


def test_start_node_with_tls_makes_nothing(home: Path, tmp_path: Path, procs: List["subprocess.Popen[str]"]) -> None:
    certs = tmp_path / "given"
    make_certs(certs)
    node = _popen(NODE, "given@127.0.0.1", str(certs))
    procs.append(node)
    assert node.stdout is not None and node.stdin is not None
    assert node.stdout.readline().strip(), node.stderr.read() if node.stderr else ""
    _, err = node.communicate("\n\n", timeout=PROC_TIMEOUT)
    assert node.returncode == 0, err
    assert not (home / "certs").exists() and CREATED not in err
