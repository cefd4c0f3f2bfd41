"""snowg's port mapper and its client, over real sockets and real processes.

Each test runs its own mapper on a free port (``tests/epmdsupport.py``),
never on 4369, and stops what it started.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Iterator, List

import gevent
import pytest
from epmdsupport import (
    answers,
    free_port,
    listening_pids,
    mapper,
    send_kill,
    wait_until,
)
from gevent import socket, subprocess

import snowg
from snowg.cluster._epmd_client import NameTaken, ensure_mapper, epmd_port, names, port_please, register
from snowg.cluster._epmd_proto import (
    Alive2Request,
    KillRequest,
    NamesRequest,
    NodeEntry,
    StopRequest,
    TextReplyParser,
    encode_request,
)
from snowg.cluster._epmd_server import Mapper, PortTaken, listen_addresses, open_listeners

pytest_plugins = ["epmdsupport"]  # its fixtures: epmd_env, snowg_mapper

TIME_LIMIT = 90
T = 10.0
PY = sys.executable


def run(args: List[str], timeout: float = 30.0) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def registered(port: int) -> List[str]:
    return [name for name, _ in names("127.0.0.1", epmd_port=port)]


# ------------------------------------------------------------------ the client against snowg's mapper


def test_register_look_up_list_and_release(snowg_mapper):
    port = snowg_mapper
    reg = register("bob", 9100, "bob@10.0.0.7", epmd_port=port)
    assert reg.creation != 0
    entry = port_please("127.0.0.1", "bob", epmd_port=port)
    assert entry is not None
    assert (entry.name, entry.port, entry.node_type, entry.protocol) == ("bob", 9100, 77, 0)
    assert entry.full_name == "bob@10.0.0.7"
    assert port_please("127.0.0.1", "nobody", epmd_port=port) is None
    assert names("127.0.0.1", epmd_port=port) == [("bob", 9100)]

    with pytest.raises(NameTaken, match="refused to register 'bob'") as info:
        register("bob", 9101, "bob@10.0.0.7", epmd_port=port)
    assert isinstance(info.value, snowg.NodeError) and isinstance(info.value, snowg.NameTaken)

    reg.close()
    wait_until(lambda: registered(port) == [], "bob to be released")
    again = register("bob", 9100, "bob@10.0.0.7", epmd_port=port)
    assert again.creation not in (0, reg.creation)
    again.close()


def test_a_registration_knows_when_its_mapper_is_gone():
    with mapper() as port:
        reg = register("kim", 9150, "kim@127.0.0.1", epmd_port=port)
        assert not reg.wait_lost(timeout=0.05)
        other = register("lou", 9151, "lou@127.0.0.1", epmd_port=port)
        waiter = gevent.spawn(other.wait_lost)
        gevent.sleep(0)
        other.close()
        assert waiter.get(timeout=T) is True
    # the mapper stopped (SIGTERM): the registration has ended
    assert reg.wait_lost(timeout=T)
    reg.close()
    assert reg.wait_lost(timeout=0)


def test_the_mapper_port_comes_from_erl_epmd_port(snowg_mapper):
    assert epmd_port() == snowg_mapper
    reg = register("carol", 1234, "carol@127.0.0.1")
    try:
        entry = port_please("127.0.0.1", "carol")
        assert entry is not None and entry.port == 1234
    finally:
        reg.close()


def test_erl_epmd_port_malformed_is_named(monkeypatch):
    monkeypatch.setenv("ERL_EPMD_PORT", "43x")
    with pytest.raises(snowg.NodeError, match="ERL_EPMD_PORT='43x'"):
        epmd_port()
    monkeypatch.setenv("ERL_EPMD_PORT", "70000")
    with pytest.raises(snowg.NodeError, match="ERL_EPMD_PORT"):
        epmd_port()


def test_no_mapper_is_a_clear_node_error():
    port = free_port()
    with pytest.raises(snowg.NodeError, match=f"no port mapper answers on 127.0.0.1:{port}"):
        names("127.0.0.1", epmd_port=port, timeout=2)
    with pytest.raises(snowg.NodeError, match="no port mapper answers"):
        register("bob", 1, "bob@h", epmd_port=port, timeout=2)


def test_a_mapper_that_does_not_answer_is_bounded_by_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(snowg.NodeError, match="did not answer within 0.3s"):
            port_please("127.0.0.1", "bob", epmd_port=port, timeout=0.3)
        with pytest.raises(snowg.NodeError, match="did not answer within 0.3s"):
            register("bob", 1, "bob@h", epmd_port=port, timeout=0.3)


CHILD_REGISTERS = """
import sys, time
from snowg.cluster._epmd_client import register
reg = register(sys.argv[1], 9200, sys.argv[1] + "@127.0.0.1", epmd_port=int(sys.argv[2]))
print("registered", flush=True)
time.sleep(60)
"""


def test_a_name_is_released_when_its_process_is_killed(snowg_mapper):
    proc = subprocess.Popen([PY, "-c", CHILD_REGISTERS, "dora", str(snowg_mapper)], stdout=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(T):
            assert proc.stdout.readline() == "registered\n"
        assert registered(snowg_mapper) == ["dora"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=T)
        wait_until(lambda: registered(snowg_mapper) == [], "dora to be released after kill -9")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=T)
        proc.stdout.close()


# ------------------------------------------------------------------ the commands


def test_snowg_names_prints_what_epmd_names_prints(snowg_mapper):
    regs = [register(n, p, f"{n}@127.0.0.1", epmd_port=snowg_mapper) for n, p in [("a1", 9001), ("b2", 9002)]]
    try:
        out = run([PY, "-m", "snowg", "names", "--port", str(snowg_mapper)])
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"epmd: up and running on port {snowg_mapper} with data:"
        assert sorted(lines[1:]) == ["name a1 at port 9001", "name b2 at port 9002"]
        # the port from ERL_EPMD_PORT, the host given
        out = run([PY, "-m", "snowg", "names", "127.0.0.1"])
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 3, out.stderr
    finally:
        for reg in regs:
            reg.close()


def test_snowg_names_without_a_mapper_exits_1_saying_so():
    port = free_port()
    out = run([PY, "-m", "snowg", "names", "--port", str(port)])
    assert out.returncode == 1
    assert f"no port mapper answers on 127.0.0.1:{port}" in out.stderr
    assert out.stdout == ""


def test_snowg_epmd_stops_on_sigterm_with_status_0():
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "snowg", "epmd", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(T):
            line = proc.stdout.readline()
        assert line == f"snowg epmd: listening on 0.0.0.0 port {port}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=T) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=T)
        proc.stdout.close()


def test_snowg_epmd_on_a_taken_port(snowg_mapper):
    out = run([PY, "-m", "snowg", "epmd", "--port", str(snowg_mapper)])
    assert out.returncode == 1
    assert f"port {snowg_mapper} is taken: a port mapper already runs there" in out.stderr
    out = run([PY, "-m", "snowg", "epmd", "--daemon", "--port", str(snowg_mapper)])
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert len(listening_pids(snowg_mapper)) == 1


def test_snowg_epmd_on_a_port_held_by_something_else():
    with socket.socket() as other:
        other.bind(("0.0.0.0", 0))
        other.listen(8)
        port = other.getsockname()[1]
        for daemon in ([], ["--daemon"]):
            out = run([PY, "-m", "snowg", "epmd", "--port", str(port), *daemon])
            assert out.returncode == 1
            assert f"port {port} is taken" in out.stderr
            assert "does not answer as a port mapper" in out.stderr


def test_snowg_epmd_bad_address_and_port():
    out = run([PY, "-m", "snowg", "epmd", "--address", "nowhere", "--port", str(free_port())])
    assert out.returncode == 1 and "'nowhere' is not an IP address" in out.stderr
    out = run([PY, "-m", "snowg", "epmd", "--port", "0"])
    assert out.returncode == 1 and "--port 0 is not a port number" in out.stderr


def test_kill_request_refused_while_nodes_are_registered():
    with mapper() as port:
        reg = register("eve", 9300, "eve@127.0.0.1", epmd_port=port)
        assert send_kill(port) == "NO"
        assert registered(port) == ["eve"]
        reg.close()
        wait_until(lambda: registered(port) == [], "eve to be released")
        assert send_kill(port) == "OK"
        wait_until(lambda: not answers(port), "the mapper to stop after KILL_REQ")


def stop_request(port: int, name: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=T) as sock:
        sock.sendall(encode_request(StopRequest(name)))
        parser = TextReplyParser()
        while data := sock.recv(64):
            parser.feed(data)
        return parser.close()


def test_stop_request_only_when_relaxed():
    with mapper() as port:
        reg = register("fay", 9400, "fay@127.0.0.1", epmd_port=port)
        assert stop_request(port, "fay") == ""  # ignored, as epmd without -relaxed_command_check
        assert registered(port) == ["fay"]
        reg.close()
    with mapper(args=["--relaxed-command-check"]) as port:
        reg = register("fay", 9400, "fay@127.0.0.1", epmd_port=port)
        assert stop_request(port, "fay") == "STOPPED"
        assert registered(port) == []
        assert stop_request(port, "fay") == "NOEXIST"
        reg.close()
        reg = register("gus", 9500, "gus@127.0.0.1", epmd_port=port)
        assert send_kill(port) == "OK"  # relaxed: even with a node registered
        wait_until(lambda: not answers(port), "the mapper to stop after KILL_REQ")


# ------------------------------------------------------------------ the daemon started on demand

CHILD_ENSURES = """
import sys
from snowg.cluster._epmd_client import ensure_mapper
if len(sys.argv) > 2:
    print("ready", flush=True)
    sys.stdin.readline()
print(ensure_mapper(epmd_port=int(sys.argv[1]), timeout=20), flush=True)
"""


def daemons(port: int) -> List[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"epmd" in cmd and b"--daemon" in cmd and str(port).encode() in cmd:
            pids.append(int(pid))
    return pids


def test_ensure_mapper_starts_a_daemon_that_outlives_its_starter(epmd_env):
    port = epmd_env
    assert not answers(port)
    out = run([PY, "-c", CHILD_ENSURES, str(port)])
    assert out.stdout == "True\n", out.stderr
    # the process that started it has exited; the daemon answers, in its own session
    assert answers(port)
    [pid] = listening_pids(port)
    assert os.getsid(pid) != os.getsid(0)
    out = run([PY, "-m", "snowg", "names"])
    assert out.returncode == 0 and out.stdout.startswith(f"epmd: up and running on port {port}")
    # a mapper answers already: nothing is started
    assert ensure_mapper(epmd_port=port)
    assert listening_pids(port) == [pid]
    assert send_kill(port) == "OK"
    wait_until(lambda: not answers(port), "the daemon to stop after KILL_REQ")


def test_four_processes_racing_to_start_the_mapper_end_with_exactly_one(epmd_env):
    port = epmd_env
    procs = [
        subprocess.Popen([PY, "-c", CHILD_ENSURES, str(port), "race"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    try:
        with gevent.Timeout(T * 2):
            for proc in procs:
                assert proc.stdout.readline() == b"ready\n"
            for proc in procs:  # as close to at once as we can
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            results = [proc.stdout.readline() for proc in procs]
        assert results == [b"True\n"] * 4
        assert len(listening_pids(port)) == 1
        wait_until(lambda: len(daemons(port)) == 1, "the losing daemons to exit")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=T)
            proc.stdin.close()
            proc.stdout.close()


# ------------------------------------------------------------------ hostile clients


@pytest.fixture
def small_mapper(caplog) -> Iterator[Mapper]:
    """A mapper in this process with small caps and a short request deadline."""
    caplog.set_level(logging.INFO, logger="snowg")
    m = Mapper(open_listeners(["127.0.0.1"], 0), max_connections=8, max_registrations=3, request_timeout=0.5)
    m.start()
    yield m
    m.stop()


def closed_by_mapper(sock: socket.socket) -> bytes:
    """What the mapper sent before closing ``sock`` (fails if it does not close within T)."""
    got = b""
    with gevent.Timeout(T, AssertionError("the mapper did not close the connection")):
        while data := sock.recv(4096):
            got += data
    return got


def log_lines(caplog, words: str) -> List[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


@pytest.mark.parametrize(
    "garbage, words",
    [
        (b"\xff\xff" + b"A" * 100, "request length 65535 is outside the protocol's"),
        (b"\x00\x00", "request length 0 is outside"),
        (b"\x00\x03abc", "unknown request tag 97"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "request length 18245 is outside"),
        (b"\x00\x02n\x00", "carries 1 bytes after its tag"),
        (b"\x00\x02z\xff", "not UTF-8"),
    ],
)
def test_garbage_is_closed_with_a_clear_line(small_mapper, caplog, garbage, words):
    with socket.create_connection(("127.0.0.1", small_mapper.port)) as sock:
        sock.sendall(garbage)
        assert closed_by_mapper(sock) == b""
    wait_until(lambda: bool(log_lines(caplog, words)), f"a log line with {words!r}")
    [line] = log_lines(caplog, words)
    assert line.startswith("port mapper: closed a connection from 127.0.0.1: ")
    assert names("127.0.0.1", epmd_port=small_mapper.port) == []


def test_a_stalled_half_request_is_closed_and_others_are_served_meanwhile(small_mapper, caplog):
    reg = register("hal", 9600, "hal@127.0.0.1", epmd_port=small_mapper.port)
    with socket.create_connection(("127.0.0.1", small_mapper.port)) as stalled:
        stalled.sendall(b"\x00\x10x\x00")
        assert names("127.0.0.1", epmd_port=small_mapper.port) == [("hal", 9600)]
        assert closed_by_mapper(stalled) == b""
    [line] = log_lines(caplog, "no complete request")
    assert line == "port mapper: closed a connection from 127.0.0.1: no complete request within 0.5s (4 bytes came)"
    assert names("127.0.0.1", epmd_port=small_mapper.port) == [("hal", 9600)]
    reg.close()


def test_idle_connections_over_the_cap_are_closed_and_summarised(caplog):
    caplog.set_level(logging.INFO, logger="snowg")
    m = Mapper(open_listeners(["127.0.0.1"], 0), max_connections=8, request_timeout=3.0)
    m.start()
    reg = register("ida", 9700, "ida@127.0.0.1", epmd_port=m.port)
    idle = [socket.create_connection(("127.0.0.1", m.port)) for _ in range(8)]
    try:
        wait_until(lambda: m._waiting == 8, "8 connections waiting")
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", m.port)) as extra:
                assert closed_by_mapper(extra) == b""
        [line] = log_lines(caplog, "refused a connection")
        assert line == (
            "port mapper: refused a connection from 127.0.0.1: 8 connections already wait for their request (the cap)"
        )
        for sock in idle:  # each closed at its deadline
            assert closed_by_mapper(sock) == b""
        # the registration held on; the mapper answers again
        assert names("127.0.0.1", epmd_port=m.port) == [("ida", 9700)]
        assert len(log_lines(caplog, "no complete request")) == 1  # the other 7 counted, not logged
        m.stop()
        assert log_lines(caplog, "port mapper: 4 more like that (connection cap)")
        assert log_lines(caplog, "port mapper: 7 more like that (request timeout)")
    finally:
        for sock in idle:
            sock.close()
        reg.close()
        m.stop()


def test_registrations_are_capped(small_mapper, caplog):
    regs = [register(f"r{i}", 9800 + i, f"r{i}@127.0.0.1", epmd_port=small_mapper.port) for i in range(3)]
    with pytest.raises(NameTaken):
        register("r3", 9803, "r3@127.0.0.1", epmd_port=small_mapper.port)
    [line] = log_lines(caplog, "names are registered (the cap)")
    assert line == "port mapper: refused to register 'r3': 3 names are registered (the cap)"
    regs.pop().close()
    wait_until(lambda: len(names("127.0.0.1", epmd_port=small_mapper.port)) == 2, "a slot to free")
    regs.append(register("r3", 9803, "r3@127.0.0.1", epmd_port=small_mapper.port))
    for reg in regs:
        reg.close()


def test_bytes_after_a_registration_end_it_as_epmd_does(small_mapper, caplog):
    reg = register("ivy", 9900, "ivy@127.0.0.1", epmd_port=small_mapper.port)
    reg._sock.sendall(encode_request(NamesRequest()))
    wait_until(lambda: names("127.0.0.1", epmd_port=small_mapper.port) == [], "ivy to be released")
    assert log_lines(caplog, "released 'ivy' (port 9900): it sent 3 bytes after registering")
    reg.close()


def test_only_this_hosts_peers_may_register_or_kill(small_mapper, caplog):
    # A peer on another machine cannot be made on one host: hand the mapper a real
    # connection and the address another machine would have.
    with socket.create_connection(("127.0.0.1", small_mapper.port)) as client:
        gevent.sleep(0)
        assert small_mapper._is_local(client, "127.0.0.1") and small_mapper._is_local(client, "::ffff:127.0.0.5")
        assert not small_mapper._is_local(client, "10.9.9.9")
        entry = NodeEntry("mal", 9999, 77, 0, 6, 5, b"")
        assert small_mapper._serve(client, "10.9.9.9", Alive2Request(entry)) is None
        small_mapper._serve(client, "10.9.9.9", KillRequest())
    assert names("127.0.0.1", epmd_port=small_mapper.port) == [] and not small_mapper.stopped
    assert log_lines(caplog, "refused to register 'mal' for 10.9.9.9: only this host's nodes may register")
    assert log_lines(caplog, "ignored KILL_REQ from 10.9.9.9: not this host")


def test_registrations_and_releases_are_logged(small_mapper, caplog):
    reg = register("joe", 9910, "joe@127.0.0.1", epmd_port=small_mapper.port)
    for _ in range(3):  # a node retrying a taken name: one line, the repeats counted
        with pytest.raises(NameTaken):
            register("joe", 9911, "joe@127.0.0.1", epmd_port=small_mapper.port)
    assert log_lines(caplog, "refused to register") == [
        "port mapper: refused to register 'joe' (port 9911): that name is registered already"
    ]
    reg.close()
    wait_until(lambda: bool(log_lines(caplog, "released 'joe'")), "the release to be logged")
    assert log_lines(caplog, f"registered 'joe' at port 9910 (creation {reg.creation})")
    assert log_lines(caplog, "released 'joe' (port 9910): its connection closed")


# ------------------------------------------------------------------ addresses


def test_listen_addresses(monkeypatch):
    monkeypatch.delenv("ERL_EPMD_ADDRESS", raising=False)
    assert listen_addresses() == ["0.0.0.0"]
    monkeypatch.setenv("ERL_EPMD_ADDRESS", "10.1.2.3, 127.0.0.1")
    assert listen_addresses() == ["10.1.2.3", "127.0.0.1"]
    monkeypatch.setenv("ERL_EPMD_ADDRESS", "10.1.2.3")
    assert listen_addresses() == ["10.1.2.3", "127.0.0.1"]  # loopback added, as epmd does
    assert listen_addresses(["::1"]) == ["::1", "127.0.0.1"]
    with pytest.raises(snowg.NodeError, match="ERL_EPMD_ADDRESS: 'example.com' is not an IP address"):
        monkeypatch.setenv("ERL_EPMD_ADDRESS", "example.com")
        listen_addresses()


def test_erl_epmd_address_is_honoured(monkeypatch):
    port = free_port()
    with mapper(port, env={"ERL_EPMD_ADDRESS": "127.0.0.2"}):
        assert answers(port, "127.0.0.2") and answers(port, "127.0.0.1")
        with socket.socket() as probe:  # 0.0.0.0 is not bound: another mapper could take it on another address
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.3", port))


def test_a_taken_port_is_port_taken():
    with mapper() as port, pytest.raises(PortTaken, match=f"port {port} is taken on 0.0.0.0"):
        open_listeners(["0.0.0.0"], port)
