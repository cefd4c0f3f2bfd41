"""Framing: a byte stream <-> msgpack frames, sans-IO (no socket here).

Each frame is a ``u32`` big-endian body length followed by a msgpack body
packed with :mod:`snowg.cluster._codec`. A frame announcing more than the
configured maximum is rejected as soon as its 4 length bytes arrive, so a
peer cannot make this node buffer more than that. Nothing here touches a
socket: the decoder is fed arbitrary bytes in arbitrary chunks, which is how
it is tested.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List, Optional, Tuple, Union

from . import _codec as codec

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameDecoder",
    "FrameTooLarge",
    "MalformedFrame",
    "ProtocolError",
    "encode_frame",
    "read_length",
]

# The largest frame body accepted from a peer unless start_node says otherwise.
# Chosen with the decoder's bounds (snowg.cluster._codec): the costliest frame
# of this size (lists of one element, about 300,000 of them before the memory
# bound refuses it) takes about 100 ms of CPU to decode and 20 times its size
# in memory. A frame over it closes the session that sent it.
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
# A frame body at least this large that is not all there yet is decoded as its
# bytes arrive (snowg.cluster._codec.StreamDecoder), so that a large frame,
# even one allowed by a raised max_frame_size, never holds up the node: each
# read decodes only what it brought.
STREAM_MIN = 64 * 1024
_MAX_U32 = 0xFFFFFFFF


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


_LEN = struct.Struct(">I")
_SMALL_BODY = codec.SMALL_BODY
_pack: Callable[[Any], bytes] = codec.make_packer().pack


def encode_frame(frame: Union[List[Any], Tuple[Any, ...]], max_frame_size: Optional[int] = None) -> bytes:
    """Encode one frame: the 4-byte length prefix and the msgpack body.

    Args:
        frame: the frame as a list (or tuple) ``[tag, *fields]``; it is always
            sent as an array.
        max_frame_size: if given, refuse bodies longer than this.

    Returns:
        The bytes to write.

    Raises:
        TypeError: a field is not a term (see :func:`snowg.cluster._codec.encode`).
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
        # The large frame being decoded as it arrives, and how many of its bytes are still to come.
        self._stream: Optional[codec.StreamDecoder] = None
        self._stream_left = 0
        self._stream_size = 0
        # decode() with hooks made once for this stream (frames are decoded one at a time).
        self._decode = codec.small_decoder()

    def feed(self, data: Any) -> List[Any]:
        """Add received bytes and return the frames they complete, in order.

        Args:
            data: a bytes-like chunk of the stream (may be empty).

        Returns:
            The decoded bodies of the frames completed by ``data`` (not yet
            validated; see :func:`snowg.cluster._frames.validate_frame`).

        Raises:
            FrameTooLarge: a frame announces a length over the maximum (raised
                as soon as its 4 length bytes are in).
            MalformedFrame: a frame body does not decode.
        """
        if self._error is not None:
            raise self._error
        if self._stream is not None:
            return self._feed_stream(data)
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
        decode = self._decode
        small = _SMALL_BODY
        unpack_len = _LEN.unpack_from
        try:
            while end - pos >= 4:
                (n,) = unpack_len(data, pos)
                if n > limit:
                    raise _too_large(n, limit)
                start = pos + 4
                if end - start < n:
                    if n >= STREAM_MIN:
                        # Start decoding it now, and the rest as it comes.
                        self._stream = codec.StreamDecoder(n)
                        self._stream_size = n
                        self._stream_left = n - (end - start)
                        self._stream.feed(view[start:end])
                        pos = end
                    break
                pos = start + n
                if n <= small:
                    # A copy of a small body costs less than a view and its release.
                    append(decode(data[start:pos]))
                else:
                    with view[start:pos] as body:
                        append(decode(body))
        except codec.CodecError as exc:
            self._error = MalformedFrame(f"undecodable frame body: {exc}")
            raise self._error from exc
        except ProtocolError as exc:
            self._error = exc
            raise
        return frames, pos

    def _feed_stream(self, data: Any) -> List[Any]:
        """Feed the large frame being decoded; then go on with what follows it."""
        stream = self._stream
        assert stream is not None
        n = len(data)
        take = min(n, self._stream_left)
        try:
            with memoryview(data) as view:
                stream.feed(view[:take])
                self._stream_left -= take
                if self._stream_left:
                    return []
                frame = stream.finish()
                rest = bytes(view[take:])
        except codec.CodecError as exc:
            self._error = MalformedFrame(f"undecodable frame body: {exc}")
            raise self._error from exc
        self._stream = None
        if not rest:
            return [frame]
        return [frame, *self.feed(rest)]

    @property
    def buffered(self) -> int:
        """How many bytes are held (or were decoded) waiting for the rest of their frame."""
        if self._stream is not None:
            return 4 + self._stream_size - self._stream_left
        return len(self._buf)


def read_length(data: Any, pos: int = 0) -> int:
    """The body length announced by the 4-byte frame header at ``data[pos:]``."""
    n: int = _LEN.unpack_from(data, pos)[0]
    return n
