"""permessage-deflate (RFC 7692): its negotiation, and the compressor and decompressor of a connection.

No sockets here (sans-IO): :func:`negotiate` turns a request's
``Sec-WebSocket-Extensions`` header into the parameters to answer (or None),
:class:`Deflater` compresses a message's payload, :class:`Inflater`
decompresses one, bounded. ``_frames`` puts them in frames; ``_handshake``
answers the offer.

The model, and the defaults:

* **Negotiation.** The client offers, the server picks: the first offer of
  ``permessage-deflate`` in the header that this server can accept is
  answered, the others are ignored. An offer with an unknown parameter, a
  parameter twice, or a bad value (window bits are ``8`` to ``15``, written
  without leading zeros) is not acceptable (RFC 7692 section 5 and 7.1); so
  is ``server_max_window_bits=8``, which zlib cannot honour (it raises a
  raw-deflate window of 8 to 9). A header that is not valid HTTP syntax
  offers nothing: the connection goes on uncompressed.
* **Server context takeover, shared by a room (the default).** A client
  that allows it (browsers do) is answered without
  ``server_no_context_takeover``: its decompressor keeps a window of what
  the compressed messages it received inflated to (RFC 7692 section 7.2.1;
  messages sent with RSV1 clear never enter it). A room keeps one
  :class:`SharedContext` (one compressor) per parameter set: a message it
  compresses may refer back to the room's earlier messages, which every
  member that received exactly the room's messages since the compressor's
  last reset holds at the same distances. A reset (a full flush: nothing
  after it refers to anything before) is valid for every member, whatever
  its window holds. A member that got any other compressed message in
  between (a compressed ``conn.send``, another room's broadcast) is out of
  step and gets the message compressed alone (once per broadcast, shared by
  all such members) until the room's next reset. The room resets when
  fewer than 90% of its members with those parameters were in step at the
  last broadcast (new members joined, some fell out). No other bound on the
  history is needed: deflate never refers back further than the window
  the client was told (``server_max_window_bits``), and the compressor's
  memory is fixed. So a broadcast costs at most two compressions per
  parameter set (the room's, and one alone), whatever the room's size, and
  its bytes shrink as a per-connection context's would. A conn.send is
  compressed alone (its bytes depend on the message only).
* **server_no_context_takeover**, when the client asks for it or
  ``shared_context=False`` (``compression_shared_context`` on the app):
  each message is compressed on its own, so its bytes depend only on its
  text and on the parameters, and a broadcast compresses a message once for
  every member that negotiated the same parameters. No room keeps a
  compressor, but messages of a few hundred bytes shrink less.
  ``context_takeover=True`` in :class:`DeflateConfig`
  (``compression_context_takeover`` on the app) gives each connection whose
  client allows it its own compressor instead (a broadcast then compresses
  once per member).
* **The client's context** is kept across messages, as the client chooses
  (unless it offered ``client_no_context_takeover``, then echoed): the
  connection keeps a decompressor with a window of 32 KiB (created at the
  first compressed message). ``client_max_window_bits`` is never asked for.
* **Threshold.** Payloads shorter than ``threshold`` bytes (default 256) go
  uncompressed (RSV1 clear): deflate gains little on them and costs a
  compressor call per message. A shared (no-context-takeover) compression
  that does not shrink the payload is not used either.
* **Bounded inflation.** :meth:`Inflater.inflate` never produces more than
  the bytes the message may still have (``max_message_size`` minus what it
  already has) plus one: a small message that inflates past the limit is
  stopped there (:class:`InflateTooBig`, closed with 1009), never inflated
  in full.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: The extension's registered name.
EXTENSION = "permessage-deflate"

#: What a sender strips from the end of a compressed message and a receiver
#: appends back (the empty stored block of a sync flush, RFC 7692 7.2.1).
TAIL = b"\x00\x00\xff\xff"

#: The default smallest payload (bytes) that is compressed.
DEFAULT_THRESHOLD = 256

#: The largest window (bits): 32 KiB.
MAX_WBITS = 15

#: The WSGI environ key of an upgrade whose answer named the extension: its :class:`DeflateParams`.
ENVIRON_KEY = "snowg.ws.deflate"

_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"

Param = Tuple[str, Optional[str]]
Offer = Tuple[str, List[Param]]


class InflateError(Exception):
    """A compressed message that is not valid DEFLATE data (the client's fault: close with 1002)."""


class InflateTooBig(Exception):
    """A compressed message that inflates past its limit (the client's: close with 1009)."""


@dataclass(frozen=True)
class DeflateConfig:
    """The server's compression settings (from the app's options).

    Attributes:
        threshold: the smallest payload, in bytes, that is compressed.
        context_takeover: keep each connection's own compressor across
            messages (not answering ``server_no_context_takeover`` unless the
            client asks for it): a broadcast is compressed once per member.
        shared_context: (when ``context_takeover`` is False) keep the
            server's context per room, shared by its members (default; see
            the module's docstring); False: answer
            ``server_no_context_takeover`` and compress every message alone.
        level: zlib's compression level, 1 (fastest) to 9.
    """

    threshold: int = DEFAULT_THRESHOLD
    context_takeover: bool = False
    shared_context: bool = True
    level: int = 6

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("compression_threshold must be at least 0")
        if not 1 <= self.level <= 9:
            raise ValueError("the compression level is 1 to 9")


@dataclass(frozen=True)
class DeflateParams:
    """The parameters of one connection's permessage-deflate, as answered to its client.

    Attributes:
        server_no_context_takeover: the server compresses every message alone.
        client_no_context_takeover: the client does (so the server keeps no
            decompressor between messages).
        server_max_window_bits: the server's LZ77 window (9 to 15).
    """

    server_no_context_takeover: bool = True
    client_no_context_takeover: bool = False
    server_max_window_bits: int = MAX_WBITS
    #: Whether the client's offer named server_max_window_bits (then it is answered).
    server_window_asked: bool = False

    def header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value that answers the offer."""
        parts = [EXTENSION]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_window_asked:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        return "; ".join(parts)


# ------------------------------------------------------------- negotiation


def _token(text: str, pos: int) -> Tuple[str, int]:
    end = pos
    n = len(text)
    while end < n and text[end] in _TCHAR:
        end += 1
    if end == pos:
        raise ValueError(f"a token expected at {pos}")
    return text[pos:end], end


def _quoted(text: str, pos: int) -> Tuple[str, int]:
    # pos is at the opening quote; quoted-pair is a backslash and any visible char
    out: List[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i >= n:
                break
            c = text[i]
        if c < " " and c != "\t" or c == "\x7f":
            raise ValueError("a control character in a quoted string")
        out.append(c)
        i += 1
    raise ValueError("an unterminated quoted string")


def _skip_ows(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _OWS:
        pos += 1
    return pos


def parse_extensions(header: str) -> List[Offer]:
    """The offers of a ``Sec-WebSocket-Extensions`` value, in order: ``[(name, [(param, value or None)])]``.

    Names and parameter names are lower case; a quoted value is unquoted.
    Empty list elements (``a, , b``) are allowed, as HTTP says.

    Raises:
        ValueError: the value is not valid syntax (RFC 6455 section 9.1).
    """
    offers: List[Offer] = []
    pos = 0
    n = len(header)
    while True:
        pos = _skip_ows(header, pos)
        if pos < n and header[pos] != ",":
            name, pos = _token(header, pos)
            params: List[Param] = []
            while True:
                pos = _skip_ows(header, pos)
                if pos >= n or header[pos] != ";":
                    break
                pos = _skip_ows(header, pos + 1)
                pname, pos = _token(header, pos)
                value: Optional[str] = None
                pos = _skip_ows(header, pos)
                if pos < n and header[pos] == "=":
                    pos = _skip_ows(header, pos + 1)
                    if pos < n and header[pos] == '"':
                        value, pos = _quoted(header, pos)
                    else:
                        value, pos = _token(header, pos)
                params.append((pname.lower(), value))
            offers.append((name.lower(), params))
        if pos >= n:
            return offers
        if header[pos] != ",":
            raise ValueError(f"',' expected at {pos}")
        pos += 1


def accept_offer(params: List[Param], config: DeflateConfig) -> Optional[DeflateParams]:
    """The answer to one ``permessage-deflate`` offer, or None if it is not acceptable."""
    seen: Dict[str, Optional[str]] = {}
    for name, value in params:
        if name in seen:
            return None  # a parameter twice (RFC 7692 section 7)
        seen[name] = value
    server_nct = False
    client_nct = False
    server_bits = MAX_WBITS
    server_asked = False
    for name, value in seen.items():
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif name == "server_max_window_bits":
            if value is None or not _WINDOW_BITS.match(value):
                return None
            server_bits = int(value)
            if server_bits < 9:
                return None  # zlib makes a raw window of 8 bits 9: the client could not read it
            server_asked = True
        elif name == "client_max_window_bits":
            # The client can take any window it names; the server decodes with the largest.
            if value is not None and not _WINDOW_BITS.match(value):
                return None
        else:
            return None
    return DeflateParams(
        server_no_context_takeover=server_nct or not (config.context_takeover or config.shared_context),
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        server_window_asked=server_asked,
    )


def negotiate(header: Optional[str], config: Optional[DeflateConfig]) -> Optional[DeflateParams]:
    """The parameters to answer a request's ``Sec-WebSocket-Extensions``, or None: no compression.

    None when compression is off (``config`` None), nothing is offered, no
    offer of ``permessage-deflate`` is acceptable, or the header is not valid
    syntax. Never raises.
    """
    if config is None or not header:
        return None
    try:
        offers = parse_extensions(header)
    except ValueError:
        return None
    for name, params in offers:
        if name == EXTENSION:
            answer = accept_offer(params, config)
            if answer is not None:
                return answer
    return None


# ------------------------------------------------------------- compressing

# One compressor per (window bits, level), shared by every connection without
# context takeover: a full flush after each message resets its state (no
# back-reference crosses it), which is what server_no_context_takeover asks,
# at a tenth of the cost of a new compressor per message.
_shared: Dict[Tuple[int, int], "zlib._Compress"] = {}


def compress_alone(payload: bytes, wbits: int = MAX_WBITS, level: int = 6) -> bytes:
    """``payload`` compressed on its own (no context before it), the tail stripped."""
    key = (wbits, level)
    c = _shared.get(key)
    if c is None:
        c = _shared[key] = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    data = c.compress(payload) + c.flush(zlib.Z_FULL_FLUSH)
    return data[:-4] if data.endswith(TAIL) else data


class Deflater:
    """The sending side of one connection's permessage-deflate.

    Attributes:
        params: what was negotiated.
        threshold: the smallest payload compressed.
        key: the identity of the compressed bytes' parameters, shared by every
            connection that would produce the same bytes for a message
            compressed alone; None when this connection keeps its own
            context (its bytes are its own).
        shared: the client keeps the server's context and this connection
            takes a room's :class:`SharedContext` messages.
        last: the mark of the last compressed message queued for this
            connection when it was a room context's message (None: any other
            compressed message, or none yet). Set at enqueue time only.
    """

    __slots__ = ("key", "last", "level", "params", "shared", "threshold", "wbits", "_own")

    def __init__(self, params: DeflateParams, config: DeflateConfig) -> None:
        self.params = params
        self.threshold = config.threshold
        self.level = config.level
        self.wbits = params.server_max_window_bits
        self.last: Optional[object] = None
        self.shared = False
        self._own: Optional["zlib._Compress"] = None
        if params.server_no_context_takeover or not config.context_takeover:
            self.key: Optional[Tuple[int, int]] = (self.wbits, self.level)
            self.shared = not params.server_no_context_takeover
        else:
            self.key = None
            self._own = zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits)

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one message (tail stripped), in this connection's context if it has one."""
        own = self._own
        if own is None:
            return compress_alone(payload, self.wbits, self.level)
        data = own.compress(payload) + own.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if data.endswith(TAIL) else data


# The output of a full flush right after a sync flush: one empty stored block,
# byte-aligned, which a decoder skips without any change to its state.
_EMPTY_BLOCK = b"\x00\x00\x00\xff\xff"


class SharedContext:
    """A room's compressor for the members with one parameter set that keep the server's context.

    :meth:`compress` compresses the room's next message; the caller sends
    its bytes to each member whose :attr:`Deflater.last` is the returned
    ``prev`` (in step), or to every member when ``prev`` is None (a reset),
    and counts both kinds in :attr:`in_step` and :attr:`out_of_step`, which
    decide the next reset. Sans-IO; never blocks.
    """

    __slots__ = ("in_step", "level", "out_of_step", "wbits", "_c", "_mark")

    def __init__(self, wbits: int, level: int) -> None:
        self.wbits = wbits
        self.level = level
        self.in_step = 0
        self.out_of_step = 0
        self._c: Optional["zlib._Compress"] = None
        self._mark: Optional[object] = None

    def compress(self, payload: bytes) -> Tuple[bytes, Optional[object], object]:
        """The room's next message compressed: ``(bytes without the tail, prev, mark)``.

        ``prev`` is None for a reset (the bytes refer to nothing before
        them: valid for every member), else the mark a member's last room
        message must have for it to be in step; ``mark`` is this message's.
        """
        c = self._c
        prefix = b""
        # Fewer than 90% of the members in step at the last message: start afresh.
        reset = c is None or self.in_step * 10 < (self.in_step + self.out_of_step) * 9
        if c is None:
            c = self._c = zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits)
        elif reset:
            prefix = c.flush(zlib.Z_FULL_FLUSH)  # forgets the history (as compress_alone's flush does)
            if prefix == _EMPTY_BLOCK:
                prefix = b""
        data = prefix + c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
        prev = None if reset else self._mark
        mark = self._mark = object()
        self.in_step = self.out_of_step = 0
        return (data[:-4] if data.endswith(TAIL) else data), prev, mark


class Inflater:
    """The receiving side of one connection's permessage-deflate: bounded decompression.

    The decompressor is made at the first compressed message and kept across
    messages (the client's context) unless ``client_no_context_takeover``
    was negotiated; one that met a final block starts afresh.
    """

    __slots__ = ("_d", "_keep")

    def __init__(self, params: DeflateParams) -> None:
        self._keep = not params.client_no_context_takeover
        self._d: Optional["zlib._Decompress"] = None

    def inflate(self, data: bytes, final: bool, limit: int) -> bytes:
        """Decompress one frame's payload of a compressed message.

        Args:
            data: the frame's (unmasked) payload.
            final: the message's last frame (the tail is appended).
            limit: the most bytes the message may still produce.

        Returns:
            The bytes it inflates to (at most ``limit``).

        Raises:
            InflateTooBig: it inflates to more than ``limit`` bytes (only
                ``limit + 1`` are ever produced).
            InflateError: it is not valid DEFLATE data.
        """
        d = self._d
        if d is None:
            d = self._d = zlib.decompressobj(-MAX_WBITS)
        if final:
            data += TAIL
        try:
            # At most limit + 1 bytes come out; the rest stays unconsumed.
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            self._d = None
            raise InflateError(str(e)) from None
        if len(out) > limit:
            self._d = None
            raise InflateTooBig(limit)
        if d.eof or (final and not self._keep):
            self._d = None
        return out

    def reset(self) -> None:
        """Forget the client's context (after a refused message)."""
        self._d = None
