"""A snowg node with Erlang distribution on, against real ``erl`` nodes: the node side of issue 16.

Over plain TCP and over ``inet_tls_dist`` (the optfile from
``snowg.erlang.write_ssl_dist_optfile``): ``net_adm:ping`` from erl and
``snowg.erlang.ping`` from Python, with snowg's port mapper (the session's)
and with Erlang's own ``epmd``; the registration (hidden, the Erlang port,
the snowg port in the extra); a BEAM node killed with ``kill -9``
(``NodeDown``, ``'noconnection'`` to links and monitors); refusals (a wrong
cookie both ways, garbage, missing flags, a name over 255 characters), each
one WARNING line, the node still serving; ``stop_node`` (deregistered, the
BEAM node sees ``nodedown``). Every BEAM OS process is killed at the end.
"""

from __future__ import annotations

import logging
import os
import stat

import pytest
from beam import skip_unless_beam
from epmdsupport import erlang_epmd, free_port, mapper
from gevent import socket
from support import recv, wait_until

import snowg
import snowg.erlang
from snowg import cluster
from snowg._peer import NodeProcess
from snowg._core.terms import Down, Exit, NodeDown, NodeUp
from snowg.cluster._connect import lookup_port
from snowg.cluster._epmd_proto import NODE_TYPE_HIDDEN, NodeEntry, snowg_extra
from snowg.erlang import Atom, ErlangOptions
from snowg.erlang import _dist_handshake as hs
from snowg.erlang import _flags
from snowg.erlang._dist import erlang_cookie_file

TIME_LIMIT = 120


def _service(node_name: str):
    service = cluster.foreign_service("erlang")
    assert service is not None, node_name
    return service


def _refusals(log, text: str = "refused Erlang connection"):
    return [r.getMessage() for r in log.records if r.levelno == logging.WARNING and text in r.getMessage()]


# ---------------------------------------------------------------- no BEAM needed


def test_registration_extra_carries_both_ports():
    old = NodeEntry("a", 9100, 77, 0, 6, 5, snowg_extra("a@h"))
    assert (old.full_name, old.snowg_port) == ("a@h", 9100)
    both = NodeEntry("a", 4000, NODE_TYPE_HIDDEN, 0, 6, 5, snowg_extra("a@h", 9100))
    assert both.extra == b"snowg1 a@h 9100"
    assert (both.full_name, both.snowg_port) == ("a@h", 9100)
    for bad in (b"snowg1 a@h 0", b"snowg1 a@h 70000", b"snowg1 a@h x", b"snowg1 a@h 1 2", b"snowg1 b@h 9100"):
        entry = NodeEntry("a", 4000, NODE_TYPE_HIDDEN, 0, 6, 5, bad)
        assert (entry.full_name, entry.snowg_port) == (None, None), bad
    beam = NodeEntry("a", 4000, 77, 0, 6, 5, b"")
    assert (beam.full_name, beam.snowg_port) == (None, None)


@pytest.mark.parametrize(
    "value",
    [
        "bad",
        "TLS",
        1,
        Atom("tcp"),
        ErlangOptions(transport="udp"),
        ErlangOptions(none_atom="null"),
        ErlangOptions(tick_time=0),
        ErlangOptions(hidden=False),
        ErlangOptions(port=70000),
    ],
)
def test_bad_erlang_option_is_a_node_error(snowg_cluster_config, value):
    if cluster.current() is not None:
        cluster.stop_node()
    with pytest.raises(snowg.NodeError) as info:
        snowg.start_node(
            "badopt@127.0.0.1", cookie=snowg_cluster_config.cookie, tls=snowg_cluster_config.certs, erlang=value
        )
    text = str(info.value)
    assert "erlang must be" in text or "ErlangOptions:" in text, text
    assert cluster.current() is None
    assert cluster.port_please("127.0.0.1", "badopt") is None


def test_cookie_file_is_read_as_erl_reads_it_and_refused_when_others_may_read_it(tmp_path):
    path = tmp_path / "cookie"
    path.write_text("SECRET\n")
    os.chmod(path, stat.S_IRUSR)
    assert erlang_cookie_file(str(path)) == "SECRET"
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    with pytest.raises(snowg.NodeError, match=r"accessible by group or others .*chmod 400"):
        erlang_cookie_file(str(path))


# ---------------------------------------------------------------- against erl


@skip_unless_beam
def test_ping_both_ways_and_the_node_lists(erlang_node):
    beam = erlang_node.beam()
    assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    assert snowg.erlang.nodes() == [beam.node]
    assert snowg.nodes() == []  # snowg nodes only
    assert beam.eval("nodes(hidden)") == [Atom(erlang_node.name)]
    assert beam.eval("nodes()") == []  # hidden
    other = erlang_node.beam()
    assert snowg.erlang.ping(other.node) == "pong"
    assert snowg.erlang.nodes() == sorted([beam.node, other.node])
    assert other.eval("nodes(hidden)") == [Atom(erlang_node.name)]
    assert snowg.erlang.ping(other.node) == "pong"  # again, on the same connection
    assert snowg.erlang.ping("nosuch@127.0.0.1") == "pang"
    assert cluster.disconnect(other.node) is True
    assert snowg.erlang.nodes() == [beam.node]
    wait_until(lambda: other.eval("nodes(hidden)") == [], "erl sees the disconnect")
    # snowg's own connect and ensure_connected reach a BEAM node through the Erlang side
    assert snowg.connect(other.node) is True
    assert snowg.erlang.nodes() == sorted([beam.node, other.node])
    assert cluster.disconnect(other.node) is True
    assert cluster.ensure_connected(other.node) is True
    assert snowg.erlang.nodes() == sorted([beam.node, other.node])
    assert snowg.nodes() == []


@skip_unless_beam
@pytest.mark.parametrize("transport", ["tcp"])
def test_the_registration_is_hidden_with_the_erlang_port_and_snowg_peers_still_find_the_snowg_port(erlang_node):
    alive = erlang_node.name.split("@")[0]
    entry = cluster.port_please("127.0.0.1", alive)
    assert entry is not None
    assert entry.node_type == NODE_TYPE_HIDDEN
    assert entry.port == _service(erlang_node.name).port != erlang_node.info.port
    assert (entry.full_name, entry.snowg_port) == (erlang_node.name, erlang_node.info.port)
    assert lookup_port(erlang_node.name, 5.0, logging.WARNING) == erlang_node.info.port


@skip_unless_beam
def test_ping_with_erlangs_own_epmd(beam_factory, snowg_cluster_config, monkeypatch, transport):
    if cluster.current() is not None:
        cluster.stop_node()
    with erlang_epmd() as port:
        monkeypatch.setenv("ERL_EPMD_PORT", str(port))
        name = f"realepmd-{os.getpid()}@127.0.0.1"
        snowg.start_node(name, cookie=snowg_cluster_config.cookie, tls=snowg_cluster_config.certs, erlang=transport)
        try:
            beam = beam_factory.start(tls=transport == "tls")
            assert beam.eval("lists:sort([list_to_binary(N) || {N, _} <- element(2, erl_epmd:names())])") == sorted(
                [name.split("@")[0], beam.node.split("@")[0]]
            )
            assert beam.eval(f"net_adm:ping('{name}')") == Atom("pong")
            other = beam_factory.start(tls=transport == "tls")
            assert snowg.erlang.ping(other.node) == "pong"
            assert snowg.erlang.nodes() == sorted([beam.node, other.node])
        finally:
            beam_factory.stop_all()
            cluster.stop_node()
        wait_until(lambda: cluster.port_please("127.0.0.1", name.split("@")[0]) is None, "the name deregistered")


@skip_unless_beam
def test_a_killed_beam_is_node_down_and_noconnection_to_links_and_monitors(erlang_node, trapping_me):
    beam = erlang_node.beam()
    snowg.cluster.monitor_nodes()
    assert snowg.erlang.ping(beam.node) == "pong"
    assert recv(lambda m: isinstance(m, NodeUp)) == NodeUp(beam.node)
    pid = beam.eval("P = spawn(fun() -> receive stop -> ok end end), register(target, P), P")
    assert isinstance(pid, snowg.Pid) and pid.node == beam.node
    snowg.link(pid)
    by_pid = snowg.monitor(pid)
    by_name = snowg.monitor(("target", beam.node))
    snowg.monitor_node(beam.node)
    # the link and the monitors are there on the Erlang side before the kill
    wait_until(lambda: beam.eval("length(element(2, process_info(P, links)))") == 1, "the link in erl")
    wait_until(lambda: beam.eval("length(element(2, process_info(P, monitored_by)))") == 2, "monitors in erl")
    beam.kill()
    assert recv(lambda m: isinstance(m, Exit)) == Exit(pid, "noconnection")
    downs = {recv(lambda m: isinstance(m, Down)) for _ in range(2)}
    assert {(d.ref, d.reason) for d in downs} == {(by_pid, "noconnection"), (by_name, "noconnection")}
    down = recv(lambda m: isinstance(m, NodeDown) and m.node == beam.node)
    assert isinstance(down.reason, str) and down.reason
    assert recv(lambda m: isinstance(m, NodeDown)).node == beam.node  # monitor_nodes too
    assert snowg.erlang.nodes() == []
    snowg.cluster.monitor_nodes(False)


@skip_unless_beam
def test_a_wrong_cookie_is_refused_both_ways_and_the_node_keeps_serving(erlang_node, log):
    bad = erlang_node.beam(cookie="not-the-cookie")
    assert bad.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pang")
    wait_until(lambda: len(_refusals(log)) == 1, "the refusal's log line")
    (line,) = _refusals(log)
    assert bad.node in line and "cookie" in line, line
    assert snowg.erlang.ping(bad.node) == "pang"
    wait_until(lambda: len(_refusals(log, "connection to Erlang node")) == 1, "the failed dial's log line")
    (line,) = _refusals(log, "connection to Erlang node")
    assert bad.node in line, line
    assert snowg.erlang.nodes() == []
    good = erlang_node.beam()
    assert good.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    assert snowg.erlang.nodes() == [good.node]
    assert len(_refusals(log)) == 1


def _dial_raw(erlang_node):
    sock = socket.create_connection(("127.0.0.1", _service(erlang_node.name).port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed_by_peer(sock) -> bool:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()
    return True


@skip_unless_beam
@pytest.mark.parametrize("transport", ["tcp"])
def test_garbage_missing_flags_and_long_names_are_refused_and_the_node_keeps_serving(erlang_node, log):
    # garbage: a length over the handshake's bound
    sock = _dial_raw(erlang_node)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert _closed_by_peer(sock)
    wait_until(lambda: len(_refusals(log)) == 1, "the garbage's log line")
    assert "over the bound" in _refusals(log)[0] and "127.0.0.1:" in _refusals(log)[0]
    # a name message without the mandatory flags
    sock = _dial_raw(erlang_node)
    flags = _flags.OFFERED & ~_flags.DFLAG_MANDATORY_25_DIGEST & ~_flags.DFLAG_BIG_CREATION
    sock.sendall(hs.Initiator("old@127.0.0.1", erlang_node.cookie, flags=flags).send(hs.SendName()))
    assert _closed_by_peer(sock)
    wait_until(lambda: len(_refusals(log)) == 2, "the missing flags' log line")
    assert "lacks mandatory distribution flags: BIG_CREATION" in _refusals(log)[1], _refusals(log)
    assert "old@127.0.0.1" in _refusals(log)[1]
    # a name of 300 characters
    sock = _dial_raw(erlang_node)
    name = ("x" * 290 + "@127.0.0.1").encode()
    body = b"N" + _flags.OFFERED.to_bytes(8, "big") + (1).to_bytes(4, "big") + len(name).to_bytes(2, "big") + name
    sock.sendall(len(body).to_bytes(2, "big") + body)
    assert _closed_by_peer(sock)
    wait_until(lambda: len(_refusals(log)) == 3, "the long name's log line")
    assert "name length 300 is over 255" in _refusals(log)[2], _refusals(log)
    assert snowg.erlang.nodes() == []
    beam = erlang_node.beam()
    assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    assert len(_refusals(log)) == 3


@skip_unless_beam
def test_stop_node_deregisters_and_the_beam_sees_nodedown(erlang_node):
    beam = erlang_node.beam()
    assert snowg.erlang.ping(beam.node) == "pong"
    assert beam.eval(f"erlang:monitor_node('{erlang_node.name}', true)") is True
    alive = erlang_node.name.split("@")[0]
    assert cluster.port_please("127.0.0.1", alive) is not None
    cluster.stop_node()
    wait_until(lambda: cluster.port_please("127.0.0.1", alive) is None, "the name deregistered")
    assert beam.eval("receive {nodedown, N} -> N after 10000 -> timeout end") == Atom(erlang_node.name)
    assert beam.eval("nodes(hidden)") == []
    assert snowg.erlang.nodes() == []


@skip_unless_beam
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_snowg_node_cli_with_erlang_serves_beams_and_snowg_nodes_alike(
    beam_factory, snowg_cluster_config, tmp_path, tls
):
    if cluster.current() is not None:
        cluster.stop_node()
    cli = NodeProcess.launch(
        f"cli-{os.getpid()}@127.0.0.1",
        certs=snowg_cluster_config.certs,
        cookie=snowg_cluster_config.cookie,
        log_path=str(tmp_path / "cli.log"),
        extra_args=["--erlang"] if tls else ["--erlang", "tcp"],
        timeout=30,
    )
    try:
        beam = beam_factory.start(tls=tls)
        assert beam.eval(f"net_adm:ping('{cli.name}')") == Atom("pong")
        assert beam.eval("nodes(hidden)") == [Atom(cli.name)]
        # a plain snowg node finds the snowg listener through the registration's extra
        info = snowg.start_node(
            f"plain-{os.getpid()}@127.0.0.1", cookie=snowg_cluster_config.cookie, tls=snowg_cluster_config.certs
        )
        assert snowg.connect(cli.name) is True
        assert snowg.nodes() == [cli.name]
        assert cli.address.endswith(f":{cluster.port_please('127.0.0.1', cli.name.split('@')[0]).snowg_port}")
        assert info.name not in [str(n) for n in beam.eval("nodes(hidden)")]
    finally:
        if cluster.current() is not None:
            cluster.stop_node()
        beam_factory.stop_all()
        cli.kill()


@skip_unless_beam
@pytest.mark.parametrize("transport", ["tcp"])
def test_simultaneous_connects_end_with_one_connection_both_ways(erlang_node):
    for _ in range(3):
        beam = erlang_node.beam()
        beam.eval_async(f"net_kernel:connect_node('{erlang_node.name}')")
        assert snowg.erlang.connect(beam.node) is True
        wait_until(lambda b=beam: b.eval("nodes(hidden)") == [Atom(erlang_node.name)], "erl connected")
        assert snowg.erlang.nodes() == [beam.node]
        assert snowg.erlang.ping(beam.node) == "pong"
        assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
        beam.stop()
        wait_until(lambda: snowg.erlang.nodes() == [], "the beam gone")


@skip_unless_beam
def test_a_restarted_mapper_gets_the_erlang_registration_again(beam_factory, snowg_cluster_config, monkeypatch):
    if cluster.current() is not None:
        cluster.stop_node()
    port = free_port()
    monkeypatch.setenv("ERL_EPMD_PORT", str(port))
    name = f"rereg-{os.getpid()}@127.0.0.1"
    alive = name.split("@")[0]
    try:
        with mapper(port):
            info = snowg.start_node(
                name, cookie=snowg_cluster_config.cookie, tls=snowg_cluster_config.certs, erlang="tcp"
            )
            first = cluster.port_please("127.0.0.1", alive)
            assert first is not None and first.node_type == NODE_TYPE_HIDDEN
        with mapper(port):

            def again():
                entry = cluster.port_please("127.0.0.1", alive)
                return entry is not None and (entry.port, entry.node_type, entry.snowg_port) == (
                    first.port,
                    NODE_TYPE_HIDDEN,
                    info.port,
                )

            wait_until(again, "the registration again, with the Erlang port, hidden, and the snowg port")
            beam = beam_factory.start()
            assert beam.eval(f"net_adm:ping('{name}')") == Atom("pong")
            beam_factory.stop_all()
            cluster.stop_node()
    finally:
        beam_factory.stop_all()
        if cluster.current() is not None:
            cluster.stop_node()


@skip_unless_beam
def test_garbage_is_refused_with_one_line_over_either_transport(erlang_node, log):
    sock = _dial_raw(erlang_node)
    sock.sendall(b"\x16\x03\x01\x00\x05hello" if erlang_node.transport == "tcp" else b"GET / HTTP/1.1\r\n\r\n")
    assert _closed_by_peer(sock)
    wait_until(lambda: len(_refusals(log)) == 1, "the garbage's log line")
    (line,) = _refusals(log)
    assert "127.0.0.1:" in line
    assert ("TLS handshake failed" in line) == (erlang_node.transport == "tls"), line
    beam = erlang_node.beam()
    assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    assert len(_refusals(log)) == 1


# ---------------------------------------------------------------- the seam, with a recording peer


class RecordingPeer:
    """A ForeignPeer that records what the router gives it."""

    def __init__(self, node: str, creation: int = 5) -> None:
        self.node = node
        self.peer_creation = creation
        self.calls: list = []

    def __getattr__(self, method: str):
        if method not in (
            "send",
            "send_name",
            "link",
            "unlink",
            "exit_link",
            "exit2",
            "monitor",
            "demonitor",
            "monitor_exit",
            "spawn",
        ):
            raise AttributeError(method)
        return lambda *args: self.calls.append((method, *args)) or "spawned"


def test_the_router_gives_a_foreign_nodes_signals_to_its_peer_and_detach_applies_rule_26(
    snowg_cluster_config, trapping_me
):
    if cluster.current() is not None:
        cluster.stop_node()
    snowg.start_node(
        f"seam-{os.getpid()}@127.0.0.1", cookie=snowg_cluster_config.cookie, tls=snowg_cluster_config.certs
    )
    ups = []
    cluster.on_node_up(ups.append)
    try:
        peer = RecordingPeer("beam@127.0.0.1")
        cluster.monitor_nodes()
        cluster.attach_peer(peer)
        assert recv(lambda m: isinstance(m, NodeUp)) == NodeUp("beam@127.0.0.1")
        assert cluster.foreign_peer("beam@127.0.0.1") is peer
        assert cluster.foreign_nodes() == ["beam@127.0.0.1"] and snowg.nodes() == [] and ups == []
        with pytest.raises(snowg.NodeError, match="detach it first"):
            cluster.attach_peer(RecordingPeer("beam@127.0.0.1"))
        far = snowg.Pid("beam@127.0.0.1", 7, 5)
        stale = snowg.Pid("beam@127.0.0.1", 8, 4)
        snowg.send(far, "hi")
        snowg.send(("reg", "beam@127.0.0.1"), "there")
        snowg.link(far)
        by_pid = snowg.monitor(far)
        by_name = snowg.monitor(("reg", "beam@127.0.0.1"))
        assert snowg.spawn(("m", "f"), (1,), node="beam@127.0.0.1") == "spawned"
        me = snowg.self()
        assert [c[0] for c in peer.calls] == ["send", "send_name", "link", "monitor", "monitor", "spawn"]
        assert peer.calls[0] == ("send", far, "hi")
        assert peer.calls[1] == ("send_name", "reg", "there", None)
        assert peer.calls[2] == ("link", me, far)
        assert peer.calls[3] == ("monitor", me, far, by_pid)
        assert peer.calls[4] == ("monitor", me, ("reg", "beam@127.0.0.1"), by_name)
        # a pid of another creation of that node is answered here, as for a snowg node
        snowg.link(stale)
        assert recv(lambda m: isinstance(m, Exit)) == Exit(stale, "noproc")
        snowg.monitor_node("beam@127.0.0.1")
        cluster.detach_peer(peer, "connection_closed")
        assert recv(lambda m: isinstance(m, Exit)) == Exit(far, "noconnection")
        downs = {recv(lambda m: isinstance(m, Down))[0] for _ in range(2)}
        assert downs == {by_pid, by_name}
        assert recv(lambda m: isinstance(m, NodeDown)) == NodeDown("beam@127.0.0.1", "connection_closed")
        assert recv(lambda m: isinstance(m, NodeDown)) == NodeDown("beam@127.0.0.1", "connection_closed")
        assert cluster.foreign_nodes() == [] and cluster.foreign_peer("beam@127.0.0.1") is None
        calls = len(peer.calls)
        snowg.send(far, "lost")  # not connected: dropped, as for a snowg node
        assert len(peer.calls) == calls
        cluster.detach_peer(peer, "again")  # detached already: nothing
    finally:
        cluster.monitor_nodes(False)
        from snowg.cluster import _nodemon

        _nodemon.up_callbacks.remove(ups.append)
        cluster.stop_node()


def test_the_optfile_path_is_absolute_and_names_the_certificates(snowg_cluster_config, tmp_path, monkeypatch):
    # erl refuses a relative -ssl_dist_optfile at boot, so the path given back is absolute.
    monkeypatch.chdir(tmp_path)
    path = snowg.erlang.write_ssl_dist_optfile("dist.conf", tls=snowg_cluster_config.certs)
    assert path == str(tmp_path / "dist.conf")
    text = (tmp_path / "dist.conf").read_text()
    for part in ("certfile", "keyfile", "cacertfile", "verify_peer", "fail_if_no_peer_cert"):
        assert part in text
