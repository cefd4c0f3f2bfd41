"""Discovery strategies: parsing specs, and finding candidates through real port mappers.

The finders are driven against snowg's mapper on a free port (never 4369)
with registrations made by this test process, and against a mapper that
answers what a hostile or broken one might: names, port lookups and full
names that are not what they claim.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Dict, Iterator, List, Optional, Tuple

import gevent
import pytest
from epmdsupport import epmd_env, free_port, mapper, snowg_mapper  # noqa: F401
from gevent.server import StreamServer
from support import assert_logged, log_lines

from snowg.cluster._epmd_client import register
from snowg.cluster._epmd_proto import (
    NODE_TYPE_NORMAL,
    PROTOCOL_TCP,
    Alive2Request,
    NamesRequest,
    NodeEntry,
    PortPlease2Request,
    RequestParser,
    encode_names_reply,
    encode_port2_reply,
    encode_request,
    snowg_extra,
)
from snowg.cluster._strategies import (
    MAX_NAMES_PER_HOST,
    Candidate,
    Dns,
    Finder,
    Hosts,
    Local,
    Static,
    parse_spec,
    parse_specs,
)

TIME_LIMIT = 60

# ------------------------------------------------------------------ parsing


def test_each_kind_of_spec_parses_into_its_record() -> None:
    assert parse_spec("local") == Local()
    assert parse_spec("hosts:a.example,10.0.0.2,[::1]") == Hosts(("a.example", "10.0.0.2", "::1"))
    assert parse_spec("dns:web.default.svc.cluster.local") == Dns("web.default.svc.cluster.local")
    assert parse_spec("static:alice@h1:9100,bob@h2") == Static((("alice@h1", 9100), ("bob@h2", None)))


def test_specs_come_as_one_string_several_separated_by_whitespace_or_a_list() -> None:
    assert parse_specs(None) == []
    assert parse_specs("") == []
    assert parse_specs("local  dns:n.example\nhosts:h") == [Local(), Dns("n.example"), Hosts(("h",))]
    assert parse_specs(["local", "static:a@h"]) == [Local(), Static((("a@h", None),))]
    # The same strategy twice is looked up once; so is the same host or node.
    assert parse_specs(["local", "local", "hosts:h,h"]) == [Local(), Hosts(("h",))]


def test_a_spec_renders_back_as_written() -> None:
    for spec in ("local", "hosts:a,b", "dns:n.example", "static:alice@h1:9100,bob@h2"):
        assert parse_spec(spec).spec == spec


@pytest.mark.parametrize(
    "spec, says",
    [
        ("locale", "unknown kind 'locale'"),
        ("local:x", "'local' takes nothing after it"),
        ("hosts:", "comma-separated list"),
        ("hosts:a,,b", "comma-separated list"),
        ("hosts:a/b", "'a/b' is not a host name or address"),
        ("hosts:" + "a" * 254, "at most 253 characters"),
        ("dns:", "'dns:' needs a name"),
        ("dns:bad/name", "'bad/name' is not a host name"),
        ("static:bob", "'bob' is not 'name@host' or 'name@host:port'"),
        ("static:bob@h:0", "is not 'name@host' or 'name@host:port'"),
        ("static:bob@h:99999", "is not 'name@host' or 'name@host:port'"),
        ("etcd:foo", "expected local, hosts:H1,H2, dns:NAME or static:NAME@HOST[:PORT],..."),
    ],
)
def test_a_bad_spec_is_a_value_error_that_quotes_it_and_says_why(spec: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_specs(["local", spec])
    message = str(info.value)
    assert says in message
    assert repr(spec[:40])[:-1] in message or "..." in message


def test_a_spec_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match="a cluster strategy is a str"):
        parse_specs(["local", 4369])  # type: ignore[list-item]


# ------------------------------------------------------------------ finding: real mapper


@contextlib.contextmanager
def registered(port: int, *entries: Tuple[str, int, Optional[str]]) -> Iterator[None]:
    """Register ``(alive, port, full_name)`` entries with the mapper on 127.0.0.1:``port``.

    A full name of None registers a non-snowg entry (as an Erlang node's);
    every registration is released when the block ends.
    """
    held: List[object] = []
    try:
        for alive, node_port, full_name in entries:
            if full_name is None:
                held.append(_register_plain(port, alive, node_port))
            else:
                held.append(register(alive, node_port, full_name, epmd_port=port))
        yield
    finally:
        for reg in held:
            reg.close()  # type: ignore[attr-defined]


def _register_plain(epmd_port: int, alive: str, node_port: int) -> socket.socket:
    """An ALIVE2 registration without snowg's extra (as Erlang registers); the open socket holds it."""
    sock = socket.create_connection(("127.0.0.1", epmd_port), timeout=5)
    entry = NodeEntry(alive, node_port, NODE_TYPE_NORMAL, PROTOCOL_TCP, 6, 5, b"")
    sock.sendall(encode_request(Alive2Request(entry)))
    reply = b""
    while len(reply) < 6:
        chunk = sock.recv(16)
        assert chunk, "the mapper closed the registration"
        reply += chunk
    assert reply[1] == 0, f"the mapper refused {alive!r}"
    return sock


def test_local_finds_the_snowg_nodes_with_this_nodes_prefix(snowg_mapper: int) -> None:  # noqa: F811
    with registered(
        snowg_mapper,
        ("web-aaaaaa", 9001, "web-aaaaaa@127.0.0.1"),
        ("web-bbbbbb", 9002, "web-bbbbbb@10.0.0.7"),
        ("web-self01", 9003, "web-self01@127.0.0.1"),  # this node
        ("api-cccccc", 9004, "api-cccccc@127.0.0.1"),  # another prefix
        ("web", 9005, "web@127.0.0.1"),  # prefix 'web' too: no '-'
        ("web-erlang", 9006, None),  # not a snowg node
    ):
        finder = Finder(Local(), "web-self01@127.0.0.1", epmd_port=snowg_mapper)
        found = finder.lookup()
    assert found == {
        # A local node is dialled at its name's host, where it listens.
        "web-aaaaaa@127.0.0.1": Candidate("web-aaaaaa@127.0.0.1", "127.0.0.1", 9001),
        "web-bbbbbb@10.0.0.7": Candidate("web-bbbbbb@10.0.0.7", "10.0.0.7", 9002),
        "web@127.0.0.1": Candidate("web@127.0.0.1", "127.0.0.1", 9005),
    }


def test_a_node_that_leaves_its_mapper_is_no_longer_found(snowg_mapper: int) -> None:  # noqa: F811
    finder = Finder(Hosts(("127.0.0.1",)), "web-self01@127.0.0.1", epmd_port=snowg_mapper)
    with registered(snowg_mapper, ("web-aaaaaa", 9001, "web-aaaaaa@127.0.0.1")):
        assert list(finder.lookup()) == ["web-aaaaaa@127.0.0.1"]
        with registered(snowg_mapper, ("web-bbbbbb", 9002, "web-bbbbbb@127.0.0.1")):
            assert sorted(finder.lookup()) == ["web-aaaaaa@127.0.0.1", "web-bbbbbb@127.0.0.1"]
        assert list(finder.lookup()) == ["web-aaaaaa@127.0.0.1"]
    assert finder.lookup() == {}
    # Registered again, on another port: the new port is asked for, not remembered.
    with registered(snowg_mapper, ("web-aaaaaa", 9011, "web-aaaaaa@127.0.0.1")):
        assert finder.lookup()["web-aaaaaa@127.0.0.1"].port == 9011


def test_hosts_dials_each_node_at_the_host_where_it_was_found(snowg_mapper: int) -> None:  # noqa: F811
    with registered(snowg_mapper, ("web-aaaaaa", 9001, "web-aaaaaa@elsewhere")):
        found = Finder(Hosts(("localhost",)), "web-self01@x", epmd_port=snowg_mapper).lookup()
    assert found == {"web-aaaaaa@elsewhere": Candidate("web-aaaaaa@elsewhere", "localhost", 9001)}


def test_a_mapper_that_stops_answering_keeps_naming_what_it_named_and_says_so_once(
    snowg_cluster_config: object,
    epmd_env: int,  # noqa: F811
    log: pytest.LogCaptureFixture,
) -> None:
    finder = Finder(Hosts(("127.0.0.1",)), "web-self01@127.0.0.1", epmd_port=epmd_env, timeout=2.0)
    with mapper(epmd_env), registered(epmd_env, ("web-aaaaaa", 9001, "web-aaaaaa@127.0.0.1")):
        first = finder.lookup()
    assert list(first) == ["web-aaaaaa@127.0.0.1"]
    # Behind a partition (here: the mapper is gone), the node stays a candidate, to be retried.
    for _ in range(3):
        assert finder.lookup() == first
    failures = [line for line in log_lines(log) if "discovery hosts:127.0.0.1:" in line]
    assert len(failures) == 1, failures
    assert "no port mapper answers on 127.0.0.1" in failures[0]
    # It answers again: said once, and what it names now is taken.
    with mapper(epmd_env):
        assert finder.lookup() == {}
    assert_logged(log, "discovery hosts:127.0.0.1: 127.0.0.1 answers again")
    summary = [line for line in log_lines(log) if "failed 2 more times" in line]
    assert len(summary) == 1, log_lines(log)


def test_one_host_that_never_answers_delays_nobody(epmd_env: int) -> None:  # noqa: F811
    # A "mapper" that accepts and never answers, on 127.0.0.2 and the port of the real one.
    silent = socket.socket()
    silent.bind(("127.0.0.2", epmd_env))
    silent.listen(8)
    try:
        with (
            mapper(epmd_env, args=["--address", "127.0.0.1"]),
            registered(epmd_env, ("web-aaaaaa", 9001, "web-aaaaaa@127.0.0.1")),
        ):
            finder = Finder(Hosts(("127.0.0.2", "127.0.0.1")), "web-self01@x", epmd_port=epmd_env, timeout=1.0)
            with gevent.Timeout(5, AssertionError("the lookup was not bounded by its timeout")):
                found = finder.lookup()
    finally:
        silent.close()
    assert list(found) == ["web-aaaaaa@127.0.0.1"]


def test_static_dials_a_given_port_and_asks_the_mapper_for_the_others(snowg_mapper: int) -> None:  # noqa: F811
    spec = parse_spec("static:alice@127.0.0.1:9100,bob@127.0.0.1,carol@127.0.0.1,me@127.0.0.1")
    finder = Finder(spec, "me@127.0.0.1", epmd_port=snowg_mapper)
    with registered(snowg_mapper, ("bob", 9200, "bob@127.0.0.1")):
        found = finder.lookup()
    assert found == {
        "alice@127.0.0.1": Candidate("alice@127.0.0.1", "127.0.0.1", 9100),
        "bob@127.0.0.1": Candidate("bob@127.0.0.1", "127.0.0.1", 9200),
    }  # carol is not running now; me is this node


def test_static_refuses_a_registration_under_another_full_name_once(
    snowg_mapper: int,  # noqa: F811
    log: pytest.LogCaptureFixture,
) -> None:
    finder = Finder(parse_spec("static:bob@127.0.0.1"), "me@127.0.0.1", epmd_port=snowg_mapper)
    with registered(snowg_mapper, ("bob", 9200, "bob@10.1.2.3")):
        assert finder.lookup() == {}
        assert finder.lookup() == {}
    lines = [line for line in log_lines(log) if "discovery static:bob@127.0.0.1" in line]
    assert len(lines) == 1, lines
    assert "'bob' registered with 127.0.0.1's port mapper is the node bob@10.1.2.3, not bob@127.0.0.1" in lines[0]


# ------------------------------------------------------------------ finding: a mapper that lies


class LyingMapper:
    """Answers NAMES with ``names`` and PORT_PLEASE2 with ``entries`` (whatever they hold)."""

    def __init__(self, names: List[Tuple[str, int]], entries: Dict[str, NodeEntry]) -> None:
        self.names = names
        self.entries = entries
        self.port_pleases = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = int(self.server.server_port)

    def _handle(self, sock: socket.socket, _address: object) -> None:
        parser = RequestParser()
        request = None
        while request is None:
            data = sock.recv(4096)
            if not data:
                return
            request = parser.feed(data)
        if isinstance(request, NamesRequest):
            sock.sendall(encode_names_reply(self.port, self.names))
        elif isinstance(request, PortPlease2Request):
            self.port_pleases += 1
            sock.sendall(encode_port2_reply(self.entries.get(request.name)))
        sock.close()


def _entry(alive: str, port: int, extra: bytes) -> NodeEntry:
    return NodeEntry(alive, port, NODE_TYPE_NORMAL, PROTOCOL_TCP, 6, 5, extra)


def test_registrations_that_lie_about_their_name_or_port_are_not_taken() -> None:
    lying = LyingMapper(
        [("web-a", 9001), ("web-b", 9002), ("web-c", 9003), ("web-d", 9004), ("web-e", 9005)],
        {
            "web-a": _entry("web-a", 9001, snowg_extra("web-a@127.0.0.1")),  # the honest one
            "web-b": _entry("web-b", 9002, snowg_extra("web-z@127.0.0.1")),  # another alive part
            "web-c": _entry("web-c", 9003, snowg_extra("web-c@127.0.0.1\nINJECTED")),  # not a node name
            "web-d": _entry("web-d", 0, snowg_extra("web-d@127.0.0.1")),  # no port
            "web-e": _entry("web-e", 9005, b"snowg1 \xff\xfe"),  # not UTF-8
        },
    )
    try:
        found = Finder(Hosts(("127.0.0.1",)), "web-self@x", epmd_port=lying.port).lookup()
    finally:
        lying.server.stop()
    assert found == {"web-a@127.0.0.1": Candidate("web-a@127.0.0.1", "127.0.0.1", 9001)}


def test_a_mapper_listing_a_flood_of_names_costs_a_bounded_lookup() -> None:
    flood = [(f"web-{i:06d}", 10000 + i % 50000) for i in range(MAX_NAMES_PER_HOST * 3)]
    lying = LyingMapper(flood, {})
    try:
        finder = Finder(Hosts(("127.0.0.1",)), "web-self@x", epmd_port=lying.port, timeout=20.0)
        assert finder.lookup() == {}
    finally:
        lying.server.stop()
    assert lying.port_pleases == MAX_NAMES_PER_HOST


def test_a_names_reply_that_breaks_the_protocol_is_a_logged_failure(log: pytest.LogCaptureFixture) -> None:
    def garbage(sock: socket.socket, _address: object) -> None:
        sock.recv(64)
        sock.sendall(struct.pack(">I", 1) + b"this is not how epmd lists names\n")
        sock.close()

    server = StreamServer(("127.0.0.1", 0), garbage)
    server.start()
    try:
        finder = Finder(Hosts(("127.0.0.1",)), "web-self@x", epmd_port=int(server.server_port))
        assert finder.lookup() == {}
        assert finder.lookup() == {}
    finally:
        server.stop()
    lines = [line for line in log_lines(log) if "discovery hosts:127.0.0.1:" in line]
    assert len(lines) == 1, lines


def test_dns_asks_the_mapper_at_each_address_the_name_resolves_to(snowg_mapper: int) -> None:  # noqa: F811
    # The test process resolves with the system's resolver: localhost is
    # 127.0.0.1 (and perhaps ::1, where this mapper does not listen: that
    # address fails alone).
    with registered(snowg_mapper, ("web-aaaaaa", 9001, "web-aaaaaa@elsewhere")):
        found = Finder(Dns("localhost"), "web-self01@x", epmd_port=snowg_mapper).lookup()
    assert found == {"web-aaaaaa@elsewhere": Candidate("web-aaaaaa@elsewhere", "127.0.0.1", 9001)}


def test_dns_that_cannot_resolve_is_a_logged_failure(log: pytest.LogCaptureFixture) -> None:
    # The test process resolves with the system's resolver ('block'): the
    # reserved .invalid domain never resolves. (The node tests resolve
    # through a real DNS server of their own: test_discovery.py.)
    finder = Finder(Dns("nowhere.invalid"), "web-self@x", epmd_port=free_port(), timeout=5.0)
    assert finder.lookup() == {}
    assert_logged(log, "discovery dns:nowhere.invalid: cannot resolve nowhere.invalid")
