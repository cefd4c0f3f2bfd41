"""A small real DNS server for tests: UDP on 127.0.0.1, in a greenlet of the test process.

It answers the queries of the name resolvers that the nodes under test run
(c-ares, through ``GEVENT_RESOLVER=ares``): an ``A`` (or ``AAAA``) query for
a configured name gets every configured address of that family, in one
answer; a configured name with no address of the family asked gets an empty
answer (NOERROR, no records), any other name ``NXDOMAIN``. A datagram that
is not one query with one question gets ``FORMERR`` when its header can be
read, and nothing otherwise. Only the standard library parses: ``struct``
and :mod:`ipaddress`.

Use it as a context manager::

    with DNSServer({"nodes.test": ["127.0.0.2", "127.0.0.3"]}) as dns:
        env = dns.resolver_env()   # for a child process: GEVENT_RESOLVER=ares, server and port
        dns.set("nodes.test", ["127.0.0.2"])   # change the answer while it runs

Every query is handled at once in the server's greenlet (no state kept
across queries), so a test can never be stalled by it.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from gevent.server import DatagramServer

__all__ = ["DNSServer", "parse_query"]

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
TTL = 1  # seconds: a test that changes the records sees the change at once

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount


class BadQuery(ValueError):
    """A datagram that is not one well-formed question."""


def parse_query(data: bytes) -> Tuple[int, int, str, int, int, bytes]:
    """``(id, flags, name, qtype, qclass, question_bytes)`` of a one-question query.

    ``name`` is lower-case, without the trailing dot. Compression pointers
    are refused (a query's only name is the first one, so it has nothing to
    point at). Additional records (EDNS) after the question are ignored.

    Raises:
        BadQuery: too short, not one question, or a malformed name.
    """
    if len(data) < _HEADER.size:
        raise BadQuery("shorter than a DNS header")
    qid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        raise BadQuery("a response, not a query")
    if qdcount != 1:
        raise BadQuery(f"{qdcount} questions (one expected)")
    labels: List[str] = []
    pos = _HEADER.size
    while True:
        if pos >= len(data):
            raise BadQuery("the name runs past the end")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length > 63:
            raise BadQuery("a label longer than 63 bytes, or a compression pointer")
        label = data[pos : pos + length]
        if len(label) != length:
            raise BadQuery("a label runs past the end")
        labels.append(label.decode("ascii", "replace").lower())
        pos += length
        if sum(len(x) + 1 for x in labels) > 255:
            raise BadQuery("a name longer than 255 bytes")
    if pos + 4 > len(data):
        raise BadQuery("no type and class after the name")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    question = data[_HEADER.size : pos + 4]
    return qid, flags, ".".join(labels), qtype, qclass, question


class DNSServer:
    """An authoritative DNS server for a few names, on ``host`` and a free UDP port.

    Args:
        records: each name (case-insensitive, trailing dot optional) and its
            addresses, IPv4 and IPv6 mixed.
        host: the address to listen on.

    Attributes:
        port: the UDP port it listens on (after :meth:`start`).
        queries: ``(name, qtype)`` of every well-formed query received, in order.
    """

    def __init__(self, records: Mapping[str, Sequence[str]], host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.queries: List[Tuple[str, int]] = []
        self._records: Dict[str, List[str]] = {}
        for name, addresses in records.items():
            self.set(name, addresses)
        self._server: Optional[DatagramServer] = None

    def set(self, name: str, addresses: Sequence[str]) -> None:
        """Answer ``name`` with ``addresses`` from now on (an empty list: the name exists, no address)."""
        for address in addresses:
            ipaddress.ip_address(address)  # a test's typo fails here, not as a silent non-answer
        self._records[name.lower().rstrip(".")] = list(addresses)

    def remove(self, name: str) -> None:
        """``NXDOMAIN`` for ``name`` from now on."""
        self._records.pop(name.lower().rstrip("."), None)

    def start(self) -> "DNSServer":
        """Listen; returns at once (queries are answered in the server's greenlet)."""
        self._server = DatagramServer((self.host, 0), self._handle)
        self._server.start()
        self.port = int(self._server.server_port)
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "DNSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resolver_env(self) -> Dict[str, str]:
        """Environment variables that make a gevent program resolve names through this server only."""
        return {
            "GEVENT_RESOLVER": "ares",
            "GEVENTARES_SERVERS": self.host,
            "GEVENTARES_UDP_PORT": str(self.port),
            "GEVENTARES_TCP_PORT": str(self.port),
        }

    def _handle(self, data: bytes, address: Tuple[str, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self._server is not None:
            self._server.sendto(reply, address)

    def answer(self, data: bytes) -> Optional[bytes]:
        """The reply to the datagram ``data``, or None when it gets none (see the module docstring)."""
        try:
            qid, flags, name, qtype, qclass, question = parse_query(data)
        except BadQuery:
            if len(data) < _HEADER.size or data[2] & 0x80:
                return None  # no header to answer, or a response: answering could loop
            qid, flags = struct.unpack_from("!HH", data)
            return _HEADER.pack(qid, _reply_flags(flags, RCODE_FORMERR), 0, 0, 0, 0)
        self.queries.append((name, qtype))
        if (flags >> 11) & 0xF != 0:  # not a standard query
            return _HEADER.pack(qid, _reply_flags(flags, RCODE_NOTIMP), 1, 0, 0, 0) + question
        addresses = self._records.get(name)
        if addresses is None:
            return _HEADER.pack(qid, _reply_flags(flags, RCODE_NXDOMAIN), 1, 0, 0, 0) + question
        answers = [_record(qtype, a) for a in addresses] if qclass == CLASS_IN else []
        found = [r for r in answers if r is not None]
        header = _HEADER.pack(qid, _reply_flags(flags, RCODE_OK), 1, len(found), 0, 0)
        return header + question + b"".join(found)


def _reply_flags(query_flags: int, rcode: int) -> int:
    # QR, the query's opcode, AA, the query's RD; RA unset; the rcode.
    return 0x8000 | (query_flags & 0x7800) | 0x0400 | (query_flags & 0x0100) | rcode


def _record(qtype: int, address: str) -> Optional[bytes]:
    ip = ipaddress.ip_address(address)
    if (qtype, ip.version) not in ((TYPE_A, 4), (TYPE_AAAA, 6)):
        return None
    # The owner name is a pointer to the question's name, at offset 12.
    return struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(ip.packed)) + ip.packed
