"""The distribution protocol, sans-IO: bytes in, frames and events out (in the style of h11).

Nothing here touches a socket, so all of it can be fed arbitrary bytes in
arbitrary chunks, which is how it is tested.

Framing: each frame is a ``u32`` big-endian body length followed by a msgpack
body packed with :mod:`snowg.cluster.codec`. A frame announcing more than the
configured maximum is rejected as soon as its 4 length bytes arrive.

Session frames (after the handshake) are arrays ``[tag, *fields]``; see the
tag constants below and :func:`validate_frame`.

Handshake (inside TLS), each message one frame::

    initiator                                acceptor
    ["HELLO", version, name, creation, address, challenge_i]  ->
                       <-  ["REJECT", reason]                       (or)
                       <-  ["CHALLENGE", name, creation, address, challenge_a,
                            hmac(cookie, "acceptor", challenge_i, names, creations)]
    ["REPLY", hmac(cookie, "initiator", challenge_a, names, creations)]  ->
                       <-  ["ACK"]                                  (or REJECT)

Either side may send ``["REJECT", reason]`` instead of its next message
(after a failed check). The cookie is never sent; the direction label in the
digests stops a peer from reflecting the acceptor's digest back as its reply,
and fresh random challenges stop replays.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import msgpack

from .._core.terms import Pid, Ref
from . import _codec as codec

__all__ = [
    "ACCEPTOR",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEMONITOR",
    "EXIT",
    "EXIT2",
    "Established",
    "FrameDecoder",
    "FrameTooLarge",
    "GLOBAL_LOCK",
    "GLOBAL_LOCK_REPLY",
    "GLOBAL_REGISTER",
    "GLOBAL_UNLOCK",
    "GLOBAL_SYNC",
    "GLOBAL_UNREGISTER",
    "HANDSHAKE_MAX_FRAME_SIZE",
    "Handshake",
    "HandshakeError",
    "INITIATOR",
    "LINK",
    "MONITOR",
    "MONITOR_EXIT",
    "MalformedFrame",
    "PEER_LIST",
    "PROTOCOL_VERSION",
    "PeerHello",
    "ProtocolError",
    "ROOM_BROADCAST",
    "SEND",
    "SEND_NAME",
    "SPAWN_REPLY",
    "SPAWN_REQUEST",
    "TAG_NAMES",
    "TICK",
    "UNLINK",
    "encode_frame",
    "simultaneous_connect_winner",
    "validate_frame",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
HANDSHAKE_MAX_FRAME_SIZE = 4096
_MAX_U32 = 0xFFFFFFFF

# Session frame tags. 20-31 are reserved for later.
TICK = 0
SEND = 1
SEND_NAME = 2
LINK = 3
UNLINK = 4
EXIT = 5
EXIT2 = 6
MONITOR = 7
DEMONITOR = 8
MONITOR_EXIT = 9
SPAWN_REQUEST = 10
SPAWN_REPLY = 11
GLOBAL_REGISTER = 12
GLOBAL_UNREGISTER = 13
GLOBAL_SYNC = 14
PEER_LIST = 15
ROOM_BROADCAST = 16
GLOBAL_LOCK = 17
GLOBAL_LOCK_REPLY = 18
GLOBAL_UNLOCK = 19

TAG_NAMES: Dict[int, str] = {
    TICK: "TICK",
    SEND: "SEND",
    SEND_NAME: "SEND_NAME",
    LINK: "LINK",
    UNLINK: "UNLINK",
    EXIT: "EXIT",
    EXIT2: "EXIT2",
    MONITOR: "MONITOR",
    DEMONITOR: "DEMONITOR",
    MONITOR_EXIT: "MONITOR_EXIT",
    SPAWN_REQUEST: "SPAWN_REQUEST",
    SPAWN_REPLY: "SPAWN_REPLY",
    GLOBAL_REGISTER: "GLOBAL_REGISTER",
    GLOBAL_UNREGISTER: "GLOBAL_UNREGISTER",
    GLOBAL_SYNC: "GLOBAL_SYNC",
    PEER_LIST: "PEER_LIST",
    ROOM_BROADCAST: "ROOM_BROADCAST",
    GLOBAL_LOCK: "GLOBAL_LOCK",
    GLOBAL_LOCK_REPLY: "GLOBAL_LOCK_REPLY",
    GLOBAL_UNLOCK: "GLOBAL_UNLOCK",
}

INITIATOR = "initiator"
ACCEPTOR = "acceptor"


# --- errors -----------------------------------------------------------------


class ProtocolError(Exception):
    """The peer broke the protocol; the session must be closed.

    Attributes:
        reason: a human-readable explanation, fit for a log line.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameTooLarge(ProtocolError):
    """A frame's announced length is over the maximum frame size."""


class MalformedFrame(ProtocolError):
    """A frame body is not valid msgpack/terms, or not a valid frame for its tag."""


class HandshakeError(ProtocolError):
    """The handshake failed.

    Attributes:
        reason: a human-readable explanation.
        kind: what went wrong, for code: ``'bad_data'`` (garbage or a message
            out of place), ``'too_large'``, ``'version'``, ``'cookie'`` (the
            peer could not prove it knows our cookie), ``'rejected'`` (the
            peer sent REJECT; ``reason`` carries its text) or ``'name'`` (the
            peer's name is not the one we expected, or is ours).
    """

    def __init__(self, reason: str, kind: str = "bad_data") -> None:
        super().__init__(reason)
        self.kind = kind


# --- framing ----------------------------------------------------------------

_LEN = struct.Struct(">I")
_pack = codec.make_packer().pack


def encode_frame(frame: Union[List[Any], Tuple[Any, ...]], max_frame_size: Optional[int] = None) -> bytes:
    """Encode one frame: the 4-byte length prefix and the msgpack body.

    Args:
        frame: the frame as a list (or tuple) ``[tag, *fields]``; it is always
            sent as an array.
        max_frame_size: if given, refuse bodies longer than this.

    Returns:
        The bytes to write.

    Raises:
        TypeError: a field is not a term (see :func:`snowg.cluster.codec.encode`).
        ValueError: the frame is nested too deeply to encode.
        FrameTooLarge: the body is over ``max_frame_size`` or 4 GiB.
    """
    try:
        body = _pack(frame if type(frame) is list else list(frame))
    except RecursionError as exc:  # msgpack's pure-Python fallback recurses
        raise ValueError("frame nested too deeply to encode") from exc
    n = len(body)
    if n > _MAX_U32 or (max_frame_size is not None and n > max_frame_size):
        limit = _MAX_U32 if max_frame_size is None else min(max_frame_size, _MAX_U32)
        raise FrameTooLarge(f"frame of {n} bytes is over the maximum frame size of {limit} bytes")
    return _LEN.pack(n) + body


def _too_large(n: int, limit: int) -> FrameTooLarge:
    return FrameTooLarge(f"peer announced a frame of {n} bytes, over the maximum of {limit} bytes")


class FrameDecoder:
    """Split a byte stream into frames and decode their bodies.

    Accepts any chunking (down to one byte at a time) and large coalesced
    batches; buffered bytes are copied once, not once per frame.
    After it raises, the stream is unusable: every later :meth:`feed` raises
    the same error.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        """Create a decoder.

        Args:
            max_frame_size: the largest body length accepted, in bytes.
        """
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._error: Optional[ProtocolError] = None

    def feed(self, data: Any) -> List[Any]:
        """Add received bytes and return the frames they complete, in order.

        Args:
            data: a bytes-like chunk of the stream (may be empty).

        Returns:
            The decoded bodies of the frames completed by ``data`` (not yet
            validated; see :func:`validate_frame`).

        Raises:
            FrameTooLarge: a frame announces a length over the maximum (raised
                as soon as its 4 length bytes are in).
            MalformedFrame: a frame body does not decode.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        if not buf and type(data) is bytes:
            # Nothing buffered (the usual case): decode straight from ``data``
            # and keep only an incomplete tail.
            whole = memoryview(data)
            frames, pos = self._split(data, whole)
            if pos < len(data):
                buf += whole[pos:]
            return frames
        buf += data
        # Bodies are decoded from views of the buffer (no copy); every view is
        # released before the consumed prefix is deleted below.
        with memoryview(buf) as view:
            frames, pos = self._split(buf, view)
        if pos:
            del buf[:pos]
        return frames

    def _split(self, data: Any, view: memoryview) -> Tuple[List[Any], int]:
        """Decode the whole frames at the start of ``data``; return them and where the rest begins."""
        frames: List[Any] = []
        end = len(data)
        pos = 0
        limit = self.max_frame_size
        append = frames.append
        decode = codec.decode
        unpack_len = _LEN.unpack_from
        try:
            while end - pos >= 4:
                (n,) = unpack_len(data, pos)
                if n > limit:
                    raise _too_large(n, limit)
                start = pos + 4
                if end - start < n:
                    break
                pos = start + n
                with view[start:pos] as body:
                    append(decode(body))
        except codec.CodecError as exc:
            self._error = MalformedFrame(f"undecodable frame body: {exc}")
            raise self._error from exc
        except ProtocolError as exc:
            self._error = exc
            raise
        return frames, pos

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the rest of their frame."""
        return len(self._buf)


# --- session frame validation -----------------------------------------------

_Check = Optional[Callable[[Any], bool]]


def _is(*types: type) -> Callable[[Any], bool]:
    allowed = frozenset(types)
    return lambda value: type(value) in allowed


def _is_name_node(value: Any) -> bool:
    return type(value) is tuple and len(value) == 2 and type(value[0]) is str and type(value[1]) is str


def _is_monitor_exit_target(value: Any) -> bool:
    return type(value) is Pid or _is_name_node(value)


def _is_kwargs(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str for k in value)


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _is_global_entries(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str and type(v) is Pid for k, v in value.items())


def _is_peer_list(value: Any) -> bool:
    return type(value) is list and all(
        type(p) in (list, tuple) and len(p) == 2 and type(p[0]) is str and type(p[1]) is str for p in value
    )


_ANY: _Check = None
_PID = _is(Pid)
_REF = _is(Ref)
_STR = _is(str)
_PID_OR_STR = _is(Pid, str)

# For each tag, the checks of its fields (None: any term).
_FRAME_SPECS: Dict[int, Tuple[_Check, ...]] = {
    TICK: (),
    SEND: (_PID, _ANY),
    SEND_NAME: (_is(Pid, type(None)), _STR, _ANY),
    LINK: (_PID, _PID),
    UNLINK: (_PID, _PID),
    EXIT: (_PID, _PID, _ANY),
    EXIT2: (_PID, _PID, _ANY),
    MONITOR: (_PID, _PID_OR_STR, _REF),
    DEMONITOR: (_PID, _PID_OR_STR, _REF),
    MONITOR_EXIT: (_is_monitor_exit_target, _PID, _REF, _ANY),
    SPAWN_REQUEST: (_REF, _PID, _STR, _is(list), _is_kwargs, _is_str_list),
    SPAWN_REPLY: (_REF, _PID, _PID_OR_STR),
    GLOBAL_REGISTER: (_STR, _PID),
    GLOBAL_UNREGISTER: (_STR, _PID),
    GLOBAL_SYNC: (_is_global_entries,),
    PEER_LIST: (_is_peer_list,),
    ROOM_BROADCAST: (_STR, _is(str, bytes)),
    GLOBAL_LOCK: (_STR, _REF, _PID),
    GLOBAL_LOCK_REPLY: (_REF, _PID, _is(bool)),
    GLOBAL_UNLOCK: (_STR, _REF),
}


def validate_frame(frame: Any) -> Tuple[Any, ...]:
    """Check a decoded session frame against its tag's layout.

    Args:
        frame: a value returned by :meth:`FrameDecoder.feed`.

    Returns:
        The frame as a tuple ``(tag, *fields)``.

    Raises:
        MalformedFrame: ``frame`` is not an array, its tag is not a known int,
            or its field count or a field's type is wrong for the tag.
    """
    if type(frame) is not list and type(frame) is not tuple:
        raise MalformedFrame(f"a frame must be an array, got {type(frame).__name__}")
    if not frame:
        raise MalformedFrame("empty frame (no tag)")
    tag = frame[0]
    spec = _FRAME_SPECS.get(tag) if type(tag) is int else None
    if spec is None:
        raise MalformedFrame(f"unknown frame tag {tag!r}")
    if len(frame) != len(spec) + 1:
        raise MalformedFrame(
            f"{TAG_NAMES[tag]} frame must have {len(spec)} fields, got {len(frame) - 1}"
        )
    for i, check in enumerate(spec, 1):
        if check is not None and not check(frame[i]):
            raise MalformedFrame(
                f"{TAG_NAMES[tag]} frame: field {i} has an invalid value of type {type(frame[i]).__name__}"
            )
    return tuple(frame)


def simultaneous_connect_winner(local_name: str, remote_name: str) -> str:
    """Which of two simultaneous connections between two nodes survives (semantics rule 24).

    The connection started by the node whose name sorts lower wins.

    Args:
        local_name: this node's name.
        remote_name: the other node's name.

    Returns:
        ``'outgoing'`` if the connection this node started wins, else ``'incoming'``.

    Raises:
        ValueError: the two names are equal.
    """
    if local_name == remote_name:
        raise ValueError(f"both nodes are named {local_name!r}")
    return "outgoing" if local_name < remote_name else "incoming"


# --- handshake --------------------------------------------------------------


class PeerHello(NamedTuple):
    """Acceptor only: the initiator introduced itself.

    The caller must now call :meth:`Handshake.accept` or :meth:`Handshake.reject`.
    """

    name: str
    creation: int
    address: str


class Established(NamedTuple):
    """The handshake succeeded; the session may start.

    Bytes that arrived after the handshake's last frame are in
    :attr:`Handshake.trailing_data`; feed them to the session's decoder.
    """

    peer_name: str
    peer_creation: int
    peer_address: str


_CHALLENGE_SIZE = 32
_LABEL_ACCEPTOR = "snowg acceptor proof"
_LABEL_INITIATOR = "snowg initiator proof"
_hs_pack = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True).pack

# States.
_AWAIT_HELLO = "await hello"
_AWAIT_DECISION = "await accept/reject"
_AWAIT_CHALLENGE = "await challenge"
_AWAIT_REPLY = "await reply"
_AWAIT_ACK = "await ack"
_ESTABLISHED = "established"
_REJECTED = "rejected"
_FAILED = "failed"


def _printable(text: str, limit: int = 200) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_challenge(value: Any) -> bool:
    return type(value) is bytes and len(value) == _CHALLENGE_SIZE


def _is_name(value: Any) -> bool:
    return type(value) is str and value != ""


class Handshake:
    """One side of the handshake, as a state machine with no IO.

    Usage: write :meth:`data_to_send` to the peer whenever it is non-empty,
    pass received bytes to :meth:`receive_data`, and drain :meth:`next_event`.
    An acceptor gets :class:`PeerHello` first and must answer with
    :meth:`accept` or :meth:`reject`; both sides end with :class:`Established`.

    On :class:`HandshakeError`, :meth:`data_to_send` may still hold a REJECT
    telling the peer why: send it (best effort) before closing.
    """

    def __init__(
        self,
        role: str,
        name: str,
        creation: int,
        cookie: Union[str, bytes],
        address: str = "",
        max_frame_size: int = HANDSHAKE_MAX_FRAME_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        expected_peer: Optional[str] = None,
    ) -> None:
        """Start a handshake.

        Args:
            role: ``'initiator'`` (we connected) or ``'acceptor'`` (we accepted).
            name: this node's name.
            creation: this node's creation number.
            cookie: the shared cluster cookie (never sent).
            address: this node's listening address ``'host:port'``, told to the peer.
            max_frame_size: the largest handshake frame accepted.
            rand: the random source for challenges (``os.urandom``; tests inject one).
            expected_peer: initiator only: the node name we meant to reach; a
                peer claiming another name fails the handshake.

        Raises:
            ValueError: a bad role, an empty name or an empty cookie.
        """
        if role not in (INITIATOR, ACCEPTOR):
            raise ValueError(f"role must be 'initiator' or 'acceptor', not {role!r}")
        if not name:
            raise ValueError("the node name must not be empty")
        if not cookie:
            raise ValueError("the cookie must not be empty")
        self.role = role
        self.name = name
        self.creation = creation
        self.address = address
        self.expected_peer = expected_peer
        self._cookie = cookie.encode("utf-8") if isinstance(cookie, str) else bytes(cookie)
        self._rand = rand
        self._max = max_frame_size
        self._inbuf = bytearray()
        self._out: List[bytes] = []
        self._events: List[Any] = []
        self._error: Optional[HandshakeError] = None
        self._my_challenge = b""
        self._peer_challenge = b""
        self.peer_name: Optional[str] = None
        self.peer_creation: Optional[int] = None
        self.peer_address: Optional[str] = None
        self.trailing_data = b""
        if role == INITIATOR:
            self._my_challenge = self._new_challenge()
            self._send(["HELLO", PROTOCOL_VERSION, name, creation, address, self._my_challenge])
            self._state = _AWAIT_CHALLENGE
        else:
            self._state = _AWAIT_HELLO

    # -- public API ----------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the handshake succeeded."""
        return self._state == _ESTABLISHED

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes to write to the peer; ``b''`` if none."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: Any) -> None:
        """Process bytes received from the peer.

        Bytes past the handshake's last frame are kept in :attr:`trailing_data`.

        Args:
            data: a bytes-like chunk of the stream.

        Raises:
            HandshakeError: the peer sent bad data, an oversized frame, a
                different protocol version, a wrong proof of the cookie, a
                REJECT, or an unexpected name. Later calls raise it again.
        """
        if self._error is not None:
            raise self._error
        if self._state in (_ESTABLISHED, _REJECTED):
            self.trailing_data += bytes(data)
            return
        self._inbuf += data
        self._process_or_fail()

    def next_event(self) -> Optional[Union[PeerHello, Established]]:
        """Return the next event, or None when more data is needed (or we are done)."""
        return self._events.pop(0) if self._events else None

    def accept(self) -> None:
        """Acceptor: go on with the peer announced by :class:`PeerHello` (send CHALLENGE).

        Raises:
            RuntimeError: not waiting for a decision.
            HandshakeError: the handshake already failed.
        """
        self._require_decision()
        assert self.peer_name is not None and self.peer_creation is not None
        self._my_challenge = self._new_challenge()
        proof = self._digest(
            _LABEL_ACCEPTOR, self._peer_challenge, self.peer_name, self.name,
            self.peer_creation, self.creation,
        )
        self._send(["CHALLENGE", self.name, self.creation, self.address, self._my_challenge, proof])
        self._state = _AWAIT_REPLY
        # The peer cannot have sent anything valid yet, but process what is buffered
        # so that junk sent early is reported now rather than on the next read.
        self._process_or_fail()

    def reject(self, reason: str) -> None:
        """Acceptor: refuse the peer announced by :class:`PeerHello` (send REJECT).

        Args:
            reason: why, for the peer's log (e.g. ``'already connected'``).

        Raises:
            RuntimeError: not waiting for a decision.
            HandshakeError: the handshake already failed.
        """
        self._require_decision()
        self._send(["REJECT", str(reason)])
        self._state = _REJECTED

    # -- internals -----------------------------------------------------------

    def _require_decision(self) -> None:
        if self._error is not None:
            raise self._error
        if self.role != ACCEPTOR or self._state != _AWAIT_DECISION:
            raise RuntimeError(f"accept()/reject() called in state {self._state!r} of the {self.role}")

    def _new_challenge(self) -> bytes:
        challenge = self._rand(_CHALLENGE_SIZE)
        if type(challenge) is not bytes or len(challenge) != _CHALLENGE_SIZE:
            raise ValueError(f"rand({_CHALLENGE_SIZE}) must return {_CHALLENGE_SIZE} bytes")
        return challenge

    def _digest(
        self, label: str, challenge: bytes, initiator: str, acceptor: str,
        initiator_creation: int, acceptor_creation: int,
    ) -> bytes:
        message = _hs_pack([label, challenge, initiator, acceptor, initiator_creation, acceptor_creation])
        return hmac.new(self._cookie, message, hashlib.sha256).digest()

    def _send(self, message: List[Any]) -> None:
        self._out.append(encode_frame(message))

    def _fail(self, reason: str, kind: str, tell_peer: Optional[str] = None) -> HandshakeError:
        if tell_peer is not None:
            self._send(["REJECT", tell_peer])
        return HandshakeError(reason, kind)

    def _next_frame(self) -> Optional[Any]:
        buf = self._inbuf
        if len(buf) < 4:
            return None
        (n,) = _LEN.unpack_from(buf, 0)
        if n > self._max:
            raise self._fail(
                f"frame too large: the peer announced a handshake frame of {n} bytes, over the "
                f"maximum of {self._max} (is the peer speaking the snowg protocol?)",
                "too_large",
            )
        if len(buf) < 4 + n:
            return None
        body = bytes(buf[4 : 4 + n])
        del buf[: 4 + n]
        try:
            return codec.decode(body)
        except codec.CodecError as exc:
            raise self._fail(f"the peer sent bad data during the handshake: {exc}", "bad_data") from exc

    def _process_or_fail(self) -> None:
        """Process what is buffered; a HandshakeError fails the handshake for good."""
        try:
            self._process()
        except HandshakeError as exc:
            self._state = _FAILED
            self._error = exc
            raise

    def _process(self) -> None:
        # One frame at a time: after the last handshake frame, the rest of the
        # stream belongs to the session (and may use a larger frame size).
        while self._state in (_AWAIT_HELLO, _AWAIT_CHALLENGE, _AWAIT_REPLY, _AWAIT_ACK, _AWAIT_DECISION):
            if self._state == _AWAIT_DECISION:
                if len(self._inbuf):
                    raise self._fail(
                        "the peer sent data before our challenge", "bad_data",
                    )
                return
            message = self._next_frame()
            if message is None:
                return
            self._handle(message)
        if self._state in (_ESTABLISHED, _REJECTED) and self._inbuf:
            self.trailing_data += bytes(self._inbuf)
            self._inbuf.clear()

    def _handle(self, message: Any) -> None:
        if type(message) is not list or not message or type(message[0]) is not str:
            raise self._fail(
                f"the peer sent bad data during the handshake: not a handshake message "
                f"({type(message).__name__})",
                "bad_data",
            )
        kind = message[0]
        if kind == "REJECT" and self._state != _AWAIT_HELLO:
            if len(message) != 2 or type(message[1]) is not str:
                raise self._fail("the peer sent bad data during the handshake: malformed REJECT", "bad_data")
            raise HandshakeError(f"peer rejected us: {_printable(message[1])}", "rejected")
        expected = {
            _AWAIT_HELLO: "HELLO",
            _AWAIT_CHALLENGE: "CHALLENGE",
            _AWAIT_REPLY: "REPLY",
            _AWAIT_ACK: "ACK",
        }[self._state]
        if kind != expected:
            raise self._fail(
                f"the peer sent bad data during the handshake: expected {expected}, got "
                f"{_printable(kind, 40)!r}",
                "bad_data",
            )
        getattr(self, "_on_" + expected.lower())(message)

    def _malformed(self, what: str) -> HandshakeError:
        return self._fail(f"the peer sent bad data during the handshake: malformed {what}", "bad_data")

    def _on_hello(self, message: List[Any]) -> None:
        # The version is checked before the layout, which a later version may change.
        if len(message) < 2 or not _is_int(message[1]):
            raise self._malformed("HELLO")
        version = message[1]
        if version != PROTOCOL_VERSION:
            text = f"version mismatch: the peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
            raise self._fail(
                text, "version",
                tell_peer=f"version mismatch: you speak protocol version {version}, we speak {PROTOCOL_VERSION}",
            )
        if not (
            len(message) == 6 and _is_name(message[2]) and _is_int(message[3])
            and type(message[4]) is str and _is_challenge(message[5])
        ):
            raise self._malformed("HELLO")
        _, _, name, creation, address, challenge = message
        if name == self.name:
            raise self._fail(
                f"the peer claims our own name {_printable(name)!r}", "name",
                tell_peer=f"name clash: we are {self.name}",
            )
        self.peer_name, self.peer_creation, self.peer_address = name, creation, address
        self._peer_challenge = challenge
        self._state = _AWAIT_DECISION
        self._events.append(PeerHello(name, creation, address))

    def _on_challenge(self, message: List[Any]) -> None:
        if not (
            len(message) == 6 and _is_name(message[1]) and _is_int(message[2])
            and type(message[3]) is str and _is_challenge(message[4]) and type(message[5]) is bytes
        ):
            raise self._malformed("CHALLENGE")
        _, name, creation, address, challenge, proof = message
        if self.expected_peer is not None and name != self.expected_peer:
            raise self._fail(
                f"connected to {self.expected_peer}, but the peer says it is {_printable(name)}",
                "name",
                tell_peer=f"wrong node: we wanted {self.expected_peer}",
            )
        if name == self.name:
            raise self._fail(
                f"the peer claims our own name {_printable(name)!r}", "name",
                tell_peer=f"name clash: we are {self.name}",
            )
        expected = self._digest(_LABEL_ACCEPTOR, self._my_challenge, self.name, name, self.creation, creation)
        if not hmac.compare_digest(proof, expected):
            raise self._fail(
                f"cookie mismatch: {_printable(name)} could not prove it knows our cookie",
                "cookie",
                tell_peer="cookie mismatch: our cookies differ",
            )
        self.peer_name, self.peer_creation, self.peer_address = name, creation, address
        reply = self._digest(_LABEL_INITIATOR, challenge, self.name, name, self.creation, creation)
        self._send(["REPLY", reply])
        self._state = _AWAIT_ACK

    def _on_reply(self, message: List[Any]) -> None:
        if len(message) != 2 or type(message[1]) is not bytes:
            raise self._malformed("REPLY")
        assert self.peer_name is not None and self.peer_creation is not None
        expected = self._digest(
            _LABEL_INITIATOR, self._my_challenge, self.peer_name, self.name,
            self.peer_creation, self.creation,
        )
        if not hmac.compare_digest(message[1], expected):
            raise self._fail(
                f"cookie mismatch: {_printable(self.peer_name)} could not prove it knows our cookie",
                "cookie",
                tell_peer="cookie mismatch: our cookies differ",
            )
        self._send(["ACK"])
        self._establish()

    def _on_ack(self, message: List[Any]) -> None:
        if len(message) != 1:
            raise self._malformed("ACK")
        self._establish()

    def _establish(self) -> None:
        assert self.peer_name is not None and self.peer_creation is not None and self.peer_address is not None
        self._state = _ESTABLISHED
        self._events.append(Established(self.peer_name, self.peer_creation, self.peer_address))
