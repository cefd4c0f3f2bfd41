"""snowg's port mapper and Erlang's, each serving the other's clients (real ``epmd``, ``erl``).

Skipped with the reason when Erlang is not installed (Debian's erlang-base
has both; ``.ci/run`` installs it). Every mapper runs on its own free port
(``epmd -port P``, ``ERL_EPMD_PORT=P`` for ``erl``), never on 4369.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import List

import gevent
import pytest
from epmdsupport import answers, erlang_epmd, mapper, wait_until
from gevent import socket, subprocess

from snowg.cluster._epmd_client import NameTaken, names, port_please, register
from snowg.cluster._epmd_proto import Alive2Reply, Alive2ReplyParser, Alive2Request, NodeEntry, encode_request

TIME_LIMIT = 120
T = 20.0
PY = sys.executable

needs_erl = pytest.mark.skipif(shutil.which("erl") is None, reason="Erlang's erl is not installed (erlang-base)")
needs_epmd = pytest.mark.skipif(shutil.which("epmd") is None, reason="Erlang's epmd is not installed (erlang-base)")


def registered(port: int) -> List[str]:
    return sorted(name for name, _ in names("127.0.0.1", epmd_port=port))


def env_with(port: int) -> dict:
    return {**os.environ, "ERL_EPMD_PORT": str(port)}


# ------------------------------------------------------------------ snowg's client, Erlang's epmd


@needs_epmd
def test_snowg_client_against_erlangs_epmd():
    with erlang_epmd() as port:
        reg = register("bob", 9100, "bob@127.0.0.1", epmd_port=port)
        assert reg.creation != 0
        entry = port_please("127.0.0.1", "bob", epmd_port=port)
        assert entry == NodeEntry("bob", 9100, 77, 0, 6, 5, b"snowg1 bob@127.0.0.1")
        assert entry.full_name == "bob@127.0.0.1"
        assert port_please("127.0.0.1", "nobody", epmd_port=port) is None
        assert names("127.0.0.1", epmd_port=port) == [("bob", 9100)]
        with pytest.raises(NameTaken):
            register("bob", 9101, "bob@127.0.0.1", epmd_port=port)
        reg.close()
        wait_until(lambda: registered(port) == [], "epmd to release bob")
        again = register("bob", 9100, "bob@127.0.0.1", epmd_port=port)
        assert again.creation not in (0, reg.creation)
        again.close()


def old_registration(port: int, name: str) -> Alive2Reply:
    """Register as a node whose highest version is 5 would; the mapper answers the old ALIVE2_RESP."""
    with socket.create_connection(("127.0.0.1", port), timeout=T) as sock:
        sock.sendall(encode_request(Alive2Request(NodeEntry(name, 9999, 77, 0, 5, 5, b""))))
        raw = sock.recv(16)
        parser = Alive2ReplyParser()
        reply = parser.feed(raw)
        assert reply is not None, raw
        assert raw[0] == 121 and len(raw) == 4, raw
        return reply


@needs_epmd
@pytest.mark.parametrize("which", ["erlang", "snowg"])
def test_the_old_alive2_resp_for_an_old_node(which):
    with erlang_epmd() if which == "erlang" else mapper() as port:
        reply = old_registration(port, "old")
        assert reply.result == 0 and 1 <= reply.creation <= 3


# ------------------------------------------------------------------ Erlang's tools, snowg's mapper


@needs_epmd
def test_epmd_names_lists_snowg_nodes_and_matches_snowg_names():
    with mapper() as port:
        regs = [register(n, p, f"{n}@127.0.0.1", epmd_port=port) for n, p in [("a1", 9001), ("b2", 9002)]]
        try:
            erl = subprocess.run(["epmd", "-port", str(port), "-names"], capture_output=True, text=True, timeout=T)
            ours = subprocess.run(
                [PY, "-m", "snowg", "names", "--port", str(port)], capture_output=True, text=True, timeout=T
            )
            assert erl.returncode == 0 and ours.returncode == 0, (erl.stderr, ours.stderr)
            assert sorted(erl.stdout.splitlines()) == sorted(ours.stdout.splitlines())
            assert ours.stdout.splitlines()[0] == f"epmd: up and running on port {port} with data:"
            assert "name a1 at port 9001" in erl.stdout.splitlines()
        finally:
            for reg in regs:
                reg.close()


@needs_epmd
def test_epmd_kill_stops_snowgs_mapper():
    with mapper() as port:
        out = subprocess.run(["epmd", "-port", str(port), "-kill"], capture_output=True, text=True, timeout=T)
        assert out.returncode == 0 and out.stdout.strip() == "Killed", out
        wait_until(lambda: not answers(port), "snowg's mapper to stop on epmd -kill")


@needs_epmd
def test_epmd_kill_refused_while_a_node_is_registered():
    with mapper() as port:
        reg = register("busy", 9003, "busy@127.0.0.1", epmd_port=port)
        out = subprocess.run(["epmd", "-port", str(port), "-kill"], capture_output=True, text=True, timeout=T)
        assert "not allowed" in out.stdout + out.stderr, out
        assert answers(port)
        reg.close()


ERL_NODE = 'io:format("up~n"), receive stop -> ok after 60000 -> ok end, halt().'


@needs_erl
def test_a_real_erlang_node_registers_with_snowgs_mapper():
    with mapper() as port:
        erl = subprocess.Popen(
            ["erl", "-sname", "erlx", "-setcookie", "c", "-noshell", "-noinput", "-eval", ERL_NODE],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env_with(port),
            text=True,
        )
        try:
            with gevent.Timeout(T, AssertionError("erl did not start")):
                line = erl.stdout.readline()
            assert line == "up\n", line
            assert registered(port) == ["erlx"]
            entry = port_please("127.0.0.1", "erlx", epmd_port=port)
            assert entry is not None and entry.full_name is None  # not a snowg node
            assert entry.node_type == 77 and entry.highest >= 6 and entry.port > 0
            out = subprocess.run(
                [PY, "-m", "snowg", "names", "--port", str(port)], capture_output=True, text=True, timeout=T
            )
            assert f"name erlx at port {entry.port}" in out.stdout.splitlines()
            erl.kill()
            erl.wait(timeout=T)
            wait_until(lambda: registered(port) == [], "erlx to be released when erl dies")
        finally:
            if erl.poll() is None:
                erl.kill()
            erl.wait(timeout=T)
            erl.stdout.close()


ERL_NAMES = '{ok, Names} = net_adm:names(), io:format("~p~n", [lists:sort(Names)]), halt().'


@needs_erl
def test_erlangs_client_lists_snowg_nodes():
    with mapper() as port:
        reg = register("snowy", 9123, "snowy@127.0.0.1", epmd_port=port)
        try:
            out = subprocess.run(
                ["erl", "-noshell", "-noinput", "-eval", ERL_NAMES],
                capture_output=True,
                text=True,
                env=env_with(port),
                timeout=T,
            )
            assert out.stdout.strip() == '[{"snowy",9123}]', out
        finally:
            reg.close()
