"""WebSocket frames (RFC 6455), server side: encoding, and a checking reader.

This replaces gevent-websocket 0.10.1's own frame code, which sends a close
frame without its status code, buffers a frame of any announced length, and
unmasks byte by byte in Python. :class:`FrameReader` checks each header
*before* it reads the payload, so an announced 1 GB frame, or a message in
millions of empty fragments, is refused (1009) without being read into
memory; it decodes text as fragments arrive (1007 at the first bad one); and
it can stop after a bounded amount of work per call, so that a client sending
tiny frames as fast as it can never holds the greenlet that reads it.

With permessage-deflate (``_deflate``, RFC 7692) negotiated, the reader
takes RSV1 on the first frame of a message as "compressed" and inflates the
message as its frames arrive, never past ``max_message_size`` (1009); RSV1
anywhere else (a continuation, a control frame) or without the extension is a
protocol error (1002). On the sending side, :class:`MessageFrames` is one
message's wire bytes made once per negotiated parameter set, so that a room
broadcast compresses once for all the members that can share the bytes.

No sockets here: the reader is given a ``read(n) -> bytes`` function (a
buffered file's ``read``, which returns fewer than ``n`` bytes only at EOF).
"""

from __future__ import annotations

import codecs
import struct
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ._deflate import Deflater, Inflater, InflateError, InflateTooBig, SharedContext

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))
OP_YIELD = -1  # not on the wire: FrameReader.next_message has used up its turn of work

# Close codes (RFC 6455 section 7.4.1, IANA registry).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # never sent: recorded when a close frame had no code
CLOSE_ABNORMAL = 1006  # never sent: recorded when the TCP connection just went
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

MAX_CLOSE_REASON = 123  # a control frame carries at most 125 bytes: 2 for the code

Data = Union[str, bytes]

_SKIP_CHUNK = 65536

#: The default most frames one message may come in (empty ones count).
MAX_FRAGMENTS = 1024

#: The work a frame costs the reader besides its payload, counted in bytes:
#: a turn of ``turn`` bytes reads at most ``turn // FRAME_COST`` empty frames.
FRAME_COST = 64

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class FrameError(Exception):
    """The peer broke the protocol; the connection must be closed with ``code``.

    Attributes:
        code: the close code to send (1002, 1007 or 1009).
        reason: a short text for the close frame and the log.
        fatal: True when the byte stream can no longer be parsed (the reader
            must not be used again); False when it is still in step.
    """

    def __init__(self, code: int, reason: str, fatal: bool = False) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.fatal = fatal

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


def is_valid_close_code(code: int) -> bool:
    """True for a code that may appear in a close frame on the wire."""
    if 1000 <= code <= 1014:
        return code not in (1004, CLOSE_NO_STATUS, CLOSE_ABNORMAL)
    return 3000 <= code <= 4999


def encode_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One unfragmented, unmasked (server-to-client) frame; ``rsv1``: its payload is compressed."""
    n = len(payload)
    b0 = (0xC0 if rsv1 else 0x80) | opcode
    if n < 126:
        head = bytes((b0, n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def encode_data(data: Data) -> bytes:
    """A text frame for ``str``, a binary frame for bytes-like data.

    Raises:
        TypeError: ``data`` is neither ``str`` nor bytes-like.
    """
    if type(data) is str:
        return encode_frame(OP_TEXT, data.encode("utf-8"))
    if isinstance(data, (bytes, bytearray, memoryview)):
        return encode_frame(OP_BINARY, bytes(data))
    raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")


class MessageFrames:
    """One message's frame, made once per negotiated parameter set: a per-broadcast cache.

    ``frame(conn.deflater)`` gives the wire bytes for a connection: the plain
    frame (made once) for a connection without compression or a payload
    under its threshold; the compressed frame made once per
    :attr:`~snowg.ws._deflate.Deflater.key` for every connection that shares
    it (no server context takeover); a frame of its own for a connection that
    keeps its compressor's context. A shared compression that does not make
    the payload smaller is not used (the plain frame goes instead).

    Raises:
        TypeError: ``data`` is neither ``str`` nor bytes-like.
    """

    __slots__ = ("opcode", "payload", "_compressed", "_plain")

    def __init__(self, data: Data) -> None:
        if type(data) is str:
            self.opcode, self.payload = OP_TEXT, data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self.opcode, self.payload = OP_BINARY, bytes(data)
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")
        self._plain: Optional[bytes] = None
        self._compressed: Optional[Dict[Any, bytes]] = None

    def plain(self) -> bytes:
        """The uncompressed frame."""
        frame = self._plain
        if frame is None:
            frame = self._plain = encode_frame(self.opcode, self.payload)
        return frame

    def frame(self, deflater: Optional[Deflater]) -> bytes:
        """The wire bytes for a connection whose sending side is ``deflater`` (None: uncompressed)."""
        if deflater is None or len(self.payload) < deflater.threshold:
            return self.plain()
        key = deflater.key
        if key is None:  # this connection's own compression context
            return encode_frame(self.opcode, deflater.compress(self.payload), True)
        cache = self._compressed
        if cache is None:
            cache = self._compressed = {}
        frame = cache.get(key)
        if frame is None:
            body = deflater.compress(self.payload)
            frame = encode_frame(self.opcode, body, True) if len(body) < len(self.payload) else self.plain()
            cache[key] = frame
        return frame

    def in_context(self, ctx: SharedContext) -> Tuple[bytes, Optional[object], object]:
        """The message as ``ctx``'s next one: ``(frame, prev, mark)`` (see :meth:`SharedContext.compress`).

        Compresses each time it is called: once per broadcast and context.
        The frame is compressed even if it is not smaller (the context's
        history holds the message; a member must too).
        """
        body, prev, mark = ctx.compress(self.payload)
        return encode_frame(self.opcode, body, True), prev, mark


def encode_message(data: Data, deflater: Optional[Deflater]) -> bytes:
    """The frame of one message for one connection (compressed as its ``deflater`` says).

    Raises:
        TypeError: ``data`` is neither ``str`` nor bytes-like.
    """
    if deflater is None:
        return encode_data(data)
    return MessageFrames(data).frame(deflater)


def encode_close(code: Optional[int], reason: str = "") -> bytes:
    """A correct close frame: 2-byte big-endian code + UTF-8 reason (or empty).

    ``reason`` is cut (on a character boundary) to fit the 125-byte limit.
    """
    if code is None:
        return encode_frame(OP_CLOSE, b"")
    raw = reason.encode("utf-8")
    if len(raw) > MAX_CLOSE_REASON:
        raw = raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + raw)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (one big-integer XOR, not a Python loop)."""
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def decode_close(payload: bytes) -> Tuple[Optional[int], str]:
    """The ``(code, reason)`` of a client's close frame (code None when empty).

    Raises:
        FrameError: 1002 for a 1-byte payload or a code not allowed on the
            wire, 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return None, ""
    if len(payload) < 2:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not is_valid_close_code(code):
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """Reads client frames and assembles messages, checking as it goes.

    Every header is checked before its payload is read: a message larger than
    ``max_message_size`` bytes, or in more than ``max_fragments`` frames
    (empty ones count), is refused (1009) on the header of the frame that
    would exceed the limit. A fragmented text message is decoded as its
    fragments arrive, so invalid UTF-8 is refused (1007) at the first
    fragment that holds it, not after the whole message.

    With ``turn``, :meth:`next_message` does a bounded amount of work per
    call: once it has read ``turn`` bytes of payload, counting
    :data:`FRAME_COST` more for each frame, it returns ``(OP_YIELD, None)``
    so that the caller can let others run before calling it again (a stream
    of empty frames would otherwise be read for as long as it lasts).

    With an ``inflater`` (permessage-deflate negotiated), a message whose
    first frame has RSV1 set is inflated fragment by fragment: it is refused
    (1009) as soon as it inflates past ``max_message_size`` (its bytes on the
    wire are bounded by the same limit), and invalid DEFLATE data is a
    protocol error (1002). Inflated bytes count as work too.

    Args:
        read: ``read(n)`` returning exactly ``n`` bytes, or fewer at EOF.
        max_message_size: the largest message (sum of its fragments) accepted.
        max_fragments: the most frames one message may come in.
        turn: the work (bytes) per call before ``OP_YIELD``; None: no limit.
        inflater: the connection's decompressor; None: RSV1 is never allowed.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        max_message_size: int,
        max_fragments: int = MAX_FRAGMENTS,
        turn: Optional[int] = None,
        inflater: Optional[Inflater] = None,
    ) -> None:
        self._read = read
        self._inflater = inflater
        self._compressed = False  # the fragmented message being assembled is compressed
        self._inflated = 0  # bytes it has inflated to so far
        self._max = max_message_size
        self._max_frags = max_fragments
        self._turn = sys.maxsize if turn is None else turn
        self._credit = self._turn  # work left before the next OP_YIELD
        self._op: Optional[int] = None  # opcode of the fragmented message being assembled
        self._parts: List[Any] = []  # its payloads (bytes), or its decoded text (str)
        self._size = 0
        self._frags = 0
        self._text: Optional[codecs.IncrementalDecoder] = None
        self._skip = 0  # payload bytes of a refused frame still to be skipped
        self._skipping = False  # the rest of a refused message is skipped

    def _exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise EOFError("connection closed in the middle of a frame")
        return data

    def _skip_payload(self) -> None:
        while self._skip:
            chunk = self._read(min(self._skip, _SKIP_CHUNK))
            if not chunk:
                raise EOFError("connection closed in the middle of a frame")
            self._skip -= len(chunk)

    def _refuse(self, n: int, fin: int, code: int, reason: str) -> FrameError:
        # The payload is skipped (never kept) on the next call, so that the
        # peer's close reply can still be read by a caller that wants it.
        self._skip = n
        self._skipping = not fin
        self._op, self._parts, self._size, self._frags, self._text = None, [], 0, 0, None
        if self._compressed and self._inflater is not None:
            self._inflater.reset()  # the client's context is lost with the message
        self._compressed, self._inflated = False, 0
        return FrameError(code, reason)

    def _inflate(self, payload: bytes, fin: int, limit: int) -> bytes:
        inflater = self._inflater
        assert inflater is not None  # RSV1 is refused without one
        try:
            out = inflater.inflate(payload, bool(fin), limit)
        except InflateTooBig:
            raise self._refuse(0, fin, CLOSE_TOO_BIG, f"message inflates to more than {self._max} bytes") from None
        except InflateError as e:
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"invalid compressed data: {e}"[:100], fatal=True) from None
        self._credit -= len(out)
        return out

    def next_message(self) -> Tuple[int, object]:
        """Block until the next message or control frame has been read.

        Returns:
            ``(OP_TEXT, str)``, ``(OP_BINARY, bytes)``, ``(OP_PING, bytes)``,
            ``(OP_PONG, bytes)``, ``(OP_CLOSE, (code or None, reason))``, or
            ``(OP_YIELD, None)`` when this call's turn of work is used up.

        Raises:
            FrameError: the peer broke the protocol (1002), sent invalid UTF-8
                (1007), or a message larger than the maximum or in too many
                fragments (1009).
            EOFError: the stream ended (cleanly between frames or not).
            OSError: the socket failed.
        """
        while True:
            if self._credit <= 0:
                self._credit = self._turn
                return OP_YIELD, None
            if self._skip:
                self._skip_payload()
            head = self._read(2)
            if len(head) != 2:
                raise EOFError("connection closed")
            b0, b1 = head[0], head[1]
            fin = b0 & 0x80
            op = b0 & 0x0F
            n = b1 & 0x7F
            if op not in _OPCODES:
                raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {op:#x}", fatal=True)
            compressed = False
            if b0 & 0x70:
                if b0 & 0x70 != 0x40 or self._inflater is None:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set", fatal=True)
                if op >= OP_CLOSE:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "compressed control frame (RSV1)", fatal=True)
                if op == OP_CONT:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "RSV1 on a continuation frame", fatal=True)
                compressed = True
            if not b1 & 0x80:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "unmasked client frame", fatal=True)
            if op >= OP_CLOSE:
                if not fin:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "fragmented control frame", fatal=True)
                if n > 125:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "control frame longer than 125 bytes", fatal=True)
            if n == 126:
                (n,) = struct.unpack("!H", self._exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._exact(8))
                if n >> 63:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set", fatal=True)
            mask = self._exact(4)
            self._credit -= n + FRAME_COST

            if op >= OP_CLOSE:
                payload = unmask(self._exact(n), mask) if n else b""
                if op == OP_CLOSE:
                    return OP_CLOSE, decode_close(payload)
                return op, payload

            if op == OP_CONT:
                if self._op is None and not self._skipping:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame outside a message", fatal=True)
            elif self._op is not None or self._skipping:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented message", fatal=True)

            if self._skipping:  # the rest of a message already refused
                self._skip = n
                if fin:
                    self._skipping = False
                continue

            if self._size + n > self._max:
                raise self._refuse(n, fin, CLOSE_TOO_BIG, f"message larger than {self._max} bytes")

            if op != OP_CONT:
                if fin:  # a whole message in one frame: the common case
                    payload = unmask(self._exact(n), mask) if n else b""
                    if compressed:
                        payload = self._inflate(payload, fin, self._max)
                    if op == OP_TEXT:
                        try:
                            return OP_TEXT, payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
                    return OP_BINARY, payload
                self._op = op
                self._frags = 1
                self._compressed = compressed
                if op == OP_TEXT:
                    self._text = _utf8_decoder()
            else:
                self._frags += 1
                if self._frags > self._max_frags:
                    raise self._refuse(n, fin, CLOSE_TOO_BIG, f"message in more than {self._max_frags} fragments")

            payload = unmask(self._exact(n), mask) if n else b""
            self._size += n
            if self._compressed:
                payload = self._inflate(payload, fin, self._max - self._inflated)
                self._inflated += len(payload)
            text = self._text
            if text is not None:
                try:
                    chars = text.decode(payload, bool(fin))
                except UnicodeDecodeError:
                    raise self._refuse(0, fin, CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
                if chars:
                    self._parts.append(chars)
            elif payload:
                self._parts.append(payload)
            if not fin:
                continue
            mop, parts = self._op, self._parts
            self._op, self._parts, self._size, self._frags, self._text = None, [], 0, 0, None
            self._compressed, self._inflated = False, 0
            if mop == OP_TEXT:
                return OP_TEXT, "".join(parts)
            return OP_BINARY, b"".join(parts)
