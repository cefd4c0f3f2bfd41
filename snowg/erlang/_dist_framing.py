"""Framing of Erlang distribution connections, sans-IO: bytes in, whole messages out.

A distribution connection carries length-prefixed messages, big-endian:

* during the handshake each message has a 2-byte length over plain TCP
  (``inet_tcp_dist``) and a 4-byte one under ``inet_tls_dist``;
* once connected every message has a 4-byte length, and an empty message
  (four zero bytes) is a *tick*, the keep-alive each side sends when it has
  sent nothing for a while.

:class:`Deframer` cuts messages out of whatever the socket gave, in any
pieces (one byte at a time is fine), and refuses a length over its bound
before buffering the body: a peer cannot make it hold more than
``max_size`` bytes plus one header. :func:`frame` is the other direction.

:class:`Ticker` decides when to tick, on the caller's clock: a tick is due
when nothing was *sent* for a quarter of ``net_ticktime``, whatever was
received (a BEAM node streaming to us sends no ticks, and declares us down
if we only listen); the peer is lost when nothing at all was *received* for
``net_ticktime``.
"""

from __future__ import annotations

from typing import List, Optional

from ._errors import ErlangProtocolError

__all__ = [
    "CONNECTED_LENGTH",
    "Deframer",
    "HANDSHAKE_MAX",
    "MESSAGE_MAX",
    "TCP_HANDSHAKE_LENGTH",
    "TICK",
    "TLS_HANDSHAKE_LENGTH",
    "Ticker",
    "frame",
]

#: Length-prefix sizes: handshake over TCP, handshake under ``inet_tls_dist``, connected messages.
TCP_HANDSHAKE_LENGTH = 2
TLS_HANDSHAKE_LENGTH = 4
CONNECTED_LENGTH = 4
#: Default bounds: a handshake message (names are at most 255 bytes and a message a few dozen more).
HANDSHAKE_MAX = 4096
#: Default bound of a connected message.
MESSAGE_MAX = 128 * 1024 * 1024
#: A tick, as sent: an empty connected message.
TICK = b"\x00\x00\x00\x00"


def frame(payload: bytes, length_size: int = CONNECTED_LENGTH) -> bytes:
    """``payload`` with its big-endian length prefix of ``length_size`` bytes (2 or 4).

    Raises:
        ValueError: the payload is too long for the prefix (the caller's mistake).
    """
    if length_size not in (2, 4):
        raise ValueError(f"length_size must be 2 or 4, not {length_size}")
    if len(payload) >= 1 << (8 * length_size):
        raise ValueError(f"a message of {len(payload)} bytes does not fit a {length_size}-byte length")
    return len(payload).to_bytes(length_size, "big") + payload


class Deframer:
    """Incremental reader of length-prefixed messages.

    Args:
        length_size: 2 or 4, the bytes of each length prefix.
        max_size: the largest message accepted; a longer length is the peer's error.
        what: how errors name the stream (``'handshake from bob@host'``).
    """

    def __init__(self, length_size: int = CONNECTED_LENGTH, max_size: int = MESSAGE_MAX, what: str = "peer") -> None:
        if length_size not in (2, 4):
            raise ValueError(f"length_size must be 2 or 4, not {length_size}")
        self.length_size = length_size
        self.max_size = max_size
        self.what = what
        self._buf = bytearray()
        self._need: Optional[int] = None  # the body length once its header is read

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the socket."""
        self._buf += data

    def next_message(self) -> Optional[bytes]:
        """The next whole message (``b""`` for an empty one: a tick once connected), or None for more data.

        Raises:
            ErlangProtocolError: a length over ``max_size``.
        """
        if self._need is None:
            if len(self._buf) < self.length_size:
                return None
            need = int.from_bytes(self._buf[: self.length_size], "big")
            if need > self.max_size:
                raise ErlangProtocolError(
                    f"{self.what}: message length {need} is over the bound of {self.max_size} bytes"
                )
            del self._buf[: self.length_size]
            self._need = need
        if len(self._buf) < self._need:
            return None
        message = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        self._need = None
        return message

    def messages(self) -> List[bytes]:
        """Every whole message buffered now."""
        found: List[bytes] = []
        while True:
            message = self.next_message()
            if message is None:
                return found
            found.append(message)

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a returned message (a header already read is not included)."""
        return bytes(self._buf)


class Ticker:
    """When a connection must send a tick, and when its peer counts as lost; times are the caller's clock.

    Args:
        ticktime: ``net_ticktime`` in seconds (Erlang's default is 60).
        now: the current time (the connection is up from then).
    """

    def __init__(self, ticktime: float, now: float) -> None:
        if ticktime <= 0:
            raise ValueError(f"ticktime must be positive, not {ticktime}")
        self.ticktime = ticktime
        self.interval = ticktime / 4
        self.last_sent = now
        self.last_received = now

    def sent(self, now: float) -> None:
        """Something (a message or a tick) was sent at ``now``."""
        self.last_sent = now

    def received(self, now: float) -> None:
        """Something (a message or a tick) was received at ``now``."""
        self.last_received = now

    def tick_due(self, now: float) -> bool:
        """True when nothing was sent for a quarter of the tick time: send :data:`TICK`."""
        return now - self.last_sent >= self.interval

    def peer_lost(self, now: float) -> bool:
        """True when nothing was received for the whole tick time: the peer is down."""
        return now - self.last_received >= self.ticktime

    def wait(self, now: float) -> float:
        """Seconds until a tick is due or the peer is lost, whichever comes first (0 when already)."""
        return max(0.0, min(self.last_sent + self.interval, self.last_received + self.ticktime) - now)
