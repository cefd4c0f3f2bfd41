"""The port mapper's wire protocol (EPMD's), sans-IO: bytes in, requests and replies out.

A port mapper maps a node's *alive* name (the part before ``@``) to the TCP
port the node listens on, for the nodes of one host. The protocol is
Erlang's EPMD protocol (OTP's "Distribution Protocol" guide), so Erlang's
``epmd`` can serve snowg nodes and snowg's mapper can serve Erlang nodes.

Every request is a 2-byte big-endian length followed by that many bytes,
the first of which says what is asked; a connection carries one request:

* ``ALIVE2_REQ`` (120): register a name. The reply is ``ALIVE2_X_RESP``
  (118, a 4-byte creation) when the node's highest version is 6 or more,
  else the old ``ALIVE2_RESP`` (121, a 2-byte creation). The connection
  stays open; the name is released when it closes.
* ``PORT_PLEASE2_REQ`` (122): where does a name listen. ``PORT2_RESP``
  (119): a result byte, then (result 0) the fields of the registration.
* ``NAMES_REQ`` (110): the mapper's port (4 bytes) then one line
  ``name NAME at port N`` per node, until the mapper closes.
* ``KILL_REQ`` (107): stop the mapper, answered ``OK`` (or ``NO`` while
  nodes are registered); ``STOP_REQ`` (115): release a name, answered
  ``STOPPED`` or ``NOEXIST``.

:class:`RequestParser` (the mapper's side) and the reply parsers (the
client's side) are incremental: fed a message whole or one byte at a time,
they give the same result. They are bounded: a length over what the
protocol allows is refused before anything is buffered, and nothing grows
past :data:`MAX_REQUEST` (a request) or :data:`MAX_NAMES_REPLY` (a names
reply). Malformed input raises :class:`EpmdProtocolError`, which names
the field at fault. Names are UTF-8, 1 to 255 characters, without NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Generic, List, Optional, Tuple, TypeVar, Union

from .._errors import NodeError

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "KILL_REQ",
    "MAX_EXTRA",
    "MAX_NAMES_REPLY",
    "MAX_NAME_BYTES",
    "MAX_NAME_CHARS",
    "MAX_REQUEST",
    "NAMES_REQ",
    "NODE_TYPE_HIDDEN",
    "NODE_TYPE_NORMAL",
    "PORT2_RESP",
    "PORT_PLEASE2_REQ",
    "PROTOCOL_TCP",
    "SNOWG_EXTRA_PREFIX",
    "STOP_REQ",
    "Alive2Reply",
    "Alive2ReplyParser",
    "Alive2Request",
    "EpmdProtocolError",
    "KillRequest",
    "NamesReply",
    "NamesReplyParser",
    "NamesRequest",
    "NodeEntry",
    "Port2Reply",
    "Port2ReplyParser",
    "PortPlease2Request",
    "Request",
    "RequestParser",
    "StopRequest",
    "TextReplyParser",
    "check_name",
    "encode_alive2_reply",
    "encode_names_reply",
    "encode_port2_reply",
    "encode_request",
    "snowg_extra",
]

ALIVE2_REQ = 120
ALIVE2_X_RESP = 118
ALIVE2_RESP = 121
PORT_PLEASE2_REQ = 122
PORT2_RESP = 119
NAMES_REQ = 110
KILL_REQ = 107
STOP_REQ = 115

NODE_TYPE_NORMAL = 77
NODE_TYPE_HIDDEN = 72
PROTOCOL_TCP = 0  # tcp/ipv4, the only protocol EPMD knows

#: A name's longest length in characters (Erlang's limit on an atom) and in UTF-8 bytes.
MAX_NAME_CHARS = 255
MAX_NAME_BYTES = 4 * MAX_NAME_CHARS
#: The longest ``Extra`` field of a registration, in bytes (epmd's limit).
MAX_EXTRA = 1020
#: The longest request (after its 2-byte length): an ``ALIVE2_REQ`` with the longest name and extra.
MAX_REQUEST = 13 + MAX_NAME_BYTES + MAX_EXTRA
#: The most a names reply may carry, in bytes, before it is refused as hostile.
MAX_NAMES_REPLY = 4 * 1024 * 1024
_MAX_NAMES_LINE = len("name ") + MAX_NAME_BYTES + len(" at port 65535\n")
_MAX_TEXT_REPLY = 16

#: How a snowg node's registration ``Extra`` starts; the node's full name follows.
SNOWG_EXTRA_PREFIX = b"snowg1 "

_ALIVE2_HEAD = struct.Struct(">BHBBHHH")  # tag, port, node type, protocol, highest, lowest, name length
_PORT2_HEAD = struct.Struct(">BBHBBHHH")  # tag, result, port, node type, protocol, highest, lowest, name length


class EpmdProtocolError(NodeError):
    """A port mapper or its client sent something the EPMD protocol does not allow (the sender's fault)."""


def check_name(name: str, what: str = "node name") -> bytes:
    """The UTF-8 bytes of a registrable name.

    Raises:
        ValueError: ``name`` is empty, longer than 255 characters or holds NUL.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or "\0" in name:
        raise ValueError(f"{what} {name!r:.80} must be 1 to {MAX_NAME_CHARS} characters without NUL")
    return name.encode("utf-8")


def _decode_name(raw: bytes, what: str) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EpmdProtocolError(f"{what} is not UTF-8: {raw[:40]!r}") from None
    if not name or len(name) > MAX_NAME_CHARS or "\0" in name:
        raise EpmdProtocolError(f"{what} must be 1 to {MAX_NAME_CHARS} characters without NUL, got {raw[:40]!r}")
    return name


def snowg_extra(full_name: str, snowg_port: Optional[int] = None) -> bytes:
    """The ``Extra`` a snowg node registers with: :data:`SNOWG_EXTRA_PREFIX` then its full name.

    A node that also speaks Erlang's distribution registers its Erlang port
    (what BEAM nodes dial) and adds its snowg port after the name, separated
    by a space: ``b"snowg1 alice@host 9100"``.
    """
    extra = SNOWG_EXTRA_PREFIX + full_name.encode("utf-8")
    if snowg_port is not None:
        extra += b" %d" % snowg_port
    return extra


@dataclass(frozen=True)
class NodeEntry:
    """One registration: what ``ALIVE2_REQ`` gives and ``PORT2_RESP`` returns.

    Attributes:
        name: the alive name (before ``@``).
        port: the port the node listens on.
        node_type: 77 (normal) or 72 (hidden).
        protocol: 0 (tcp/ipv4).
        highest: the highest distribution version the node speaks.
        lowest: the lowest.
        extra: free bytes; a snowg node puts ``b"snowg1 " + full_name`` there, and
            ``b" " + snowg_port`` after it when ``port`` is its Erlang port.
    """

    name: str
    port: int
    node_type: int
    protocol: int
    highest: int
    lowest: int
    extra: bytes = b""

    @property
    def full_name(self) -> Optional[str]:
        """The snowg node's full name ``'alive@host'`` carried in ``extra``; None for a non-snowg node."""
        parsed = self._snowg()
        return None if parsed is None else parsed[0]

    @property
    def snowg_port(self) -> Optional[int]:
        """The port of the snowg node's own (TLS) listener; None for a non-snowg node.

        That is ``port`` itself unless the node speaks Erlang's distribution
        too (then ``port`` is its Erlang port and ``extra`` names the other).
        """
        parsed = self._snowg()
        return None if parsed is None else parsed[1]

    def _snowg(self) -> Optional[Tuple[str, int]]:
        if not self.extra.startswith(SNOWG_EXTRA_PREFIX):
            return None
        try:
            full = self.extra[len(SNOWG_EXTRA_PREFIX) :].decode("utf-8")
        except UnicodeDecodeError:
            return None
        port = self.port
        name, space, tail = full.partition(" ")
        if space:
            if not (tail.isdigit() and tail.isascii() and len(tail) <= 5 and 0 < int(tail) < 65536):
                return None
            full, port = name, int(tail)
        alive, at, host = full.partition("@")
        if alive != self.name or not at or not host or not full.isprintable() or " " in full:
            return None
        return full, port


def _entry_fields(entry: NodeEntry) -> bytes:
    name = check_name(entry.name)
    if len(entry.extra) > MAX_EXTRA:
        raise ValueError(f"extra of {len(entry.extra)} bytes is over the protocol's {MAX_EXTRA}")
    return (
        struct.pack(">HBBHHH", entry.port, entry.node_type, entry.protocol, entry.highest, entry.lowest, len(name))
        + name
        + struct.pack(">H", len(entry.extra))
        + entry.extra
    )


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Alive2Request:
    """``ALIVE2_REQ``: register ``entry``."""

    entry: NodeEntry


@dataclass(frozen=True)
class PortPlease2Request:
    """``PORT_PLEASE2_REQ``: where does ``name`` listen."""

    name: str


@dataclass(frozen=True)
class NamesRequest:
    """``NAMES_REQ``: list the registered names."""


@dataclass(frozen=True)
class KillRequest:
    """``KILL_REQ``: stop the mapper."""


@dataclass(frozen=True)
class StopRequest:
    """``STOP_REQ``: release ``name``."""

    name: str


Request = Union[Alive2Request, PortPlease2Request, NamesRequest, KillRequest, StopRequest]


def encode_request(request: Request) -> bytes:
    """The bytes of ``request``, its 2-byte length first.

    Raises:
        ValueError: a name or extra the protocol cannot carry.
    """
    if isinstance(request, Alive2Request):
        body = bytes([ALIVE2_REQ]) + _entry_fields(request.entry)
    elif isinstance(request, PortPlease2Request):
        body = bytes([PORT_PLEASE2_REQ]) + check_name(request.name)
    elif isinstance(request, NamesRequest):
        body = bytes([NAMES_REQ])
    elif isinstance(request, KillRequest):
        body = bytes([KILL_REQ])
    else:
        body = bytes([STOP_REQ]) + check_name(request.name)
    return struct.pack(">H", len(body)) + body


def _parse_request(body: bytes) -> Request:
    tag = body[0]
    if tag == ALIVE2_REQ:
        if len(body) < 13:
            raise EpmdProtocolError(f"ALIVE2_REQ of {len(body)} bytes is shorter than its 13-byte minimum")
        _, port, node_type, protocol, highest, lowest, nlen = _ALIVE2_HEAD.unpack_from(body)
        if 11 + nlen + 2 > len(body):
            raise EpmdProtocolError(f"ALIVE2_REQ name length {nlen} runs past the request's {len(body)} bytes")
        name = _decode_name(body[11 : 11 + nlen], "ALIVE2_REQ node name")
        (elen,) = struct.unpack_from(">H", body, 11 + nlen)
        if 13 + nlen + elen != len(body):
            raise EpmdProtocolError(f"ALIVE2_REQ extra length {elen} does not match the request's {len(body)} bytes")
        if elen > MAX_EXTRA:
            raise EpmdProtocolError(f"ALIVE2_REQ extra of {elen} bytes is over the protocol's {MAX_EXTRA}")
        extra = body[13 + nlen :]
        return Alive2Request(NodeEntry(name, port, node_type, protocol, highest, lowest, extra))
    if tag in (PORT_PLEASE2_REQ, STOP_REQ):
        raw = body[1:]
        if raw.endswith(b"\0"):  # as epmd: a C client may send the terminating NUL
            raw = raw[:-1]
        what = "PORT_PLEASE2_REQ" if tag == PORT_PLEASE2_REQ else "STOP_REQ"
        name = _decode_name(raw, f"{what} node name")
        return PortPlease2Request(name) if tag == PORT_PLEASE2_REQ else StopRequest(name)
    if tag in (NAMES_REQ, KILL_REQ):
        if len(body) != 1:
            raise EpmdProtocolError(f"request {tag} carries {len(body) - 1} bytes after its tag, none allowed")
        return NamesRequest() if tag == NAMES_REQ else KillRequest()
    raise EpmdProtocolError(f"unknown request tag {tag}")


class RequestParser:
    """The mapper's side of one connection: bytes in, the one request out.

    :meth:`feed` returns the request once its last byte has come, None
    before. A length of 0 or over :data:`MAX_REQUEST` is refused as soon as
    its 2 bytes are in; a byte after the request is an error too (one
    request per connection; a registration's connection carries nothing
    more).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._want = 0
        self._done = False

    @property
    def started(self) -> bool:
        """True once any byte has been fed."""
        return bool(self._buf) or self._done

    def feed(self, data: bytes) -> Optional[Request]:
        """Take ``data``; return the request if it is now complete.

        Raises:
            EpmdProtocolError: malformed, over-long, or more than one request.
        """
        if not data:
            return None
        if self._done:
            raise EpmdProtocolError(f"{len(data)} more bytes after the connection's request")
        if not self._want:
            need = 2 - len(self._buf)
            self._buf += data[:need]
            data = data[need:]
            if len(self._buf) < 2:
                return None
            (length,) = struct.unpack(">H", self._buf)
            if length == 0 or length > MAX_REQUEST:
                raise EpmdProtocolError(f"request length {length} is outside the protocol's 1..{MAX_REQUEST}")
            self._want = 2 + length
        room = self._want - len(self._buf)
        if len(data) > room:
            raise EpmdProtocolError(f"{len(data) - room} bytes after the connection's request")
        self._buf += data
        if len(self._buf) < self._want:
            return None
        self._done = True
        body = bytes(self._buf[2:])
        self._buf = bytearray()
        return _parse_request(body)


# ------------------------------------------------------------------ replies


@dataclass(frozen=True)
class Alive2Reply:
    """``ALIVE2_X_RESP`` or ``ALIVE2_RESP``: ``result`` 0 is success, with ``creation``."""

    result: int
    creation: int


@dataclass(frozen=True)
class Port2Reply:
    """``PORT2_RESP``: ``entry`` when ``result`` is 0, else None (the name is not registered)."""

    result: int
    entry: Optional[NodeEntry]


@dataclass(frozen=True)
class NamesReply:
    """The reply to ``NAMES_REQ``: the mapper's port and the ``(name, port)`` of each node."""

    epmd_port: int
    names: Tuple[Tuple[str, int], ...]


def encode_alive2_reply(result: int, creation: int, extended: bool) -> bytes:
    """``ALIVE2_X_RESP`` (``extended``, 4-byte creation) or ``ALIVE2_RESP`` (2-byte creation)."""
    if extended:
        return struct.pack(">BBI", ALIVE2_X_RESP, result, creation)
    return struct.pack(">BBH", ALIVE2_RESP, result, creation)


def encode_port2_reply(entry: Optional[NodeEntry]) -> bytes:
    """``PORT2_RESP``: ``entry``'s fields, or result 1 alone when there is none."""
    if entry is None:
        return bytes([PORT2_RESP, 1])
    return bytes([PORT2_RESP, 0]) + _entry_fields(entry)


def encode_names_reply(epmd_port: int, names: List[Tuple[str, int]]) -> bytes:
    """The reply to ``NAMES_REQ``: the mapper's port then one ``name NAME at port N`` line per node."""
    lines = b"".join(b"name %s at port %d\n" % (check_name(name), port) for name, port in names)
    return struct.pack(">I", epmd_port) + lines


T = TypeVar("T")


class _ReplyParser(Generic[T]):
    """A reply read until complete (:meth:`feed`) or until the mapper closes (:meth:`close`)."""

    what = "reply"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._result: Optional[T] = None

    def feed(self, data: bytes) -> Optional[T]:
        """Take ``data``; return the reply if it is now complete.

        Raises:
            EpmdProtocolError: malformed or over-long.
        """
        if not data:
            return self._result
        if self._result is not None:
            raise EpmdProtocolError(f"the mapper sent {len(data)} bytes after its {self.what}")
        self._buf += data
        self._result = self._parse()
        return self._result

    def close(self) -> T:
        """The mapper closed the connection: the reply.

        Raises:
            EpmdProtocolError: the reply was cut short.
        """
        if self._result is None:
            raise EpmdProtocolError(f"the mapper closed the connection after {len(self._buf)} bytes of its {self.what}")
        return self._result

    def _parse(self) -> Optional[T]:
        raise NotImplementedError


class Alive2ReplyParser(_ReplyParser[Alive2Reply]):
    """The reply to ``ALIVE2_REQ``, either form."""

    what = "ALIVE2 reply"

    def _parse(self) -> Optional[Alive2Reply]:
        buf = self._buf
        if buf[0] == ALIVE2_X_RESP:
            size, fmt = 6, ">BBI"
        elif buf[0] == ALIVE2_RESP:
            size, fmt = 4, ">BBH"
        else:
            raise EpmdProtocolError(f"ALIVE2 reply starts with tag {buf[0]}, not {ALIVE2_X_RESP} or {ALIVE2_RESP}")
        if len(buf) < size:
            return None
        if len(buf) > size:
            raise EpmdProtocolError(f"the mapper sent {len(buf) - size} bytes after its {self.what}")
        _, result, creation = struct.unpack(fmt, buf)
        return Alive2Reply(result, creation)


class Port2ReplyParser(_ReplyParser[Port2Reply]):
    """The reply to ``PORT_PLEASE2_REQ``."""

    what = "PORT2 reply"

    def _parse(self) -> Optional[Port2Reply]:
        buf = self._buf
        if buf[0] != PORT2_RESP:
            raise EpmdProtocolError(f"PORT2 reply starts with tag {buf[0]}, not {PORT2_RESP}")
        if len(buf) < 2:
            return None
        if buf[1] != 0:
            if len(buf) > 2:
                raise EpmdProtocolError(f"the mapper sent {len(buf) - 2} bytes after its {self.what}")
            return Port2Reply(buf[1], None)
        if len(buf) < _PORT2_HEAD.size:
            return None
        _, _, port, node_type, protocol, highest, lowest, nlen = _PORT2_HEAD.unpack_from(buf)
        if nlen > MAX_NAME_BYTES:
            raise EpmdProtocolError(f"PORT2 reply name length {nlen} is over the protocol's {MAX_NAME_BYTES}")
        at = _PORT2_HEAD.size + nlen
        if len(buf) < at + 2:
            return None
        (elen,) = struct.unpack_from(">H", buf, at)
        if elen > MAX_EXTRA:
            raise EpmdProtocolError(f"PORT2 reply extra length {elen} is over the protocol's {MAX_EXTRA}")
        end = at + 2 + elen
        if len(buf) < end:
            return None
        if len(buf) > end:
            raise EpmdProtocolError(f"the mapper sent {len(buf) - end} bytes after its {self.what}")
        name = _decode_name(bytes(buf[_PORT2_HEAD.size : at]), "PORT2 reply node name")
        return Port2Reply(0, NodeEntry(name, port, node_type, protocol, highest, lowest, bytes(buf[at + 2 :])))


class NamesReplyParser:
    """The reply to ``NAMES_REQ``, complete only when the mapper closes.

    Lines are parsed as they come, so at most one line (about 1 kB) is
    buffered; the whole reply is capped at :data:`MAX_NAMES_REPLY` bytes.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._port: Optional[int] = None
        self._names: List[Tuple[str, int]] = []
        self._total = 0

    def feed(self, data: bytes) -> None:
        """Take ``data`` (the reply is only complete at :meth:`close`).

        Raises:
            EpmdProtocolError: a malformed line, or over :data:`MAX_NAMES_REPLY` bytes.
        """
        self._total += len(data)
        if self._total > MAX_NAMES_REPLY:
            raise EpmdProtocolError(f"the mapper's names reply is over {MAX_NAMES_REPLY} bytes")
        self._buf += data
        if self._port is None:
            if len(self._buf) < 4:
                return
            (self._port,) = struct.unpack_from(">I", self._buf)
            del self._buf[:4]
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            self._names.append(self._parse_line(bytes(self._buf[:end])))
            del self._buf[: end + 1]
        if len(self._buf) >= _MAX_NAMES_LINE:
            raise EpmdProtocolError(f"a line of the mapper's names reply is over {_MAX_NAMES_LINE} bytes")

    @staticmethod
    def _parse_line(line: bytes) -> Tuple[str, int]:
        head, sep, port = line.rpartition(b" at port ")
        if not sep or not head.startswith(b"name ") or not port.isdigit() or int(port) > 65535:
            raise EpmdProtocolError(f"names reply line {line[:80]!r} is not 'name NAME at port N'")
        return _decode_name(head[5:], "names reply node name"), int(port)

    def close(self) -> NamesReply:
        """The mapper closed the connection: the reply.

        Raises:
            EpmdProtocolError: the mapper's port or the last line was cut short.
        """
        if self._port is None or self._buf:
            raise EpmdProtocolError(f"the mapper's names reply was cut short ({self._total} bytes)")
        return NamesReply(self._port, tuple(self._names))


class TextReplyParser:
    """The short text replies: ``OK``/``NO`` to ``KILL_REQ``, ``STOPPED``/``NOEXIST`` to ``STOP_REQ``."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Take ``data`` (complete at :meth:`close`).

        Raises:
            EpmdProtocolError: over 16 bytes.
        """
        self._buf += data
        if len(self._buf) > _MAX_TEXT_REPLY:
            raise EpmdProtocolError(f"the mapper's reply is over {_MAX_TEXT_REPLY} bytes: {bytes(self._buf)!r}")

    def close(self) -> str:
        """The reply's text (empty when the mapper closed without one)."""
        return self._buf.decode("ascii", "replace")
