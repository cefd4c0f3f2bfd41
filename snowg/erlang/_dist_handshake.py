"""The version-6 distribution handshake (OTP 23 and later), both roles, sans-IO.

The *initiator* A dials the *acceptor* B; every message carries the
length prefix of :mod:`._dist_framing` (2 bytes over TCP, 4 under
``inet_tls_dist``)::

    A -> B  'N' flags:8 creation:4 nlen:2 name          send_name
    B -> A  's' status                                  recv_status
            (ok | ok_simultaneous | nok | not_allowed | alive
             | named: nlen:2 name creation:4)
    A -> B  's' true|false                              only after 'alive'
    B -> A  'N' flags:8 challenge:4 creation:4 nlen:2 name
    A -> B  'r' challenge:4 digest:16                   A's challenge, B's answered
    B -> A  'a' digest:16                               A's answered

The digest of a challenge is ``MD5(cookie ++ decimal(challenge))``: each
side proves it knows the cookie by answering the other's challenge. A wrong
digest is an :class:`ErlangProtocolError` naming the peer ("wrong cookie").

Each role is a small state machine in h11's manner: feed it bytes with
``receive_data``; ``next_event`` returns the next event or
:data:`NEED_DATA`; the caller answers with ``send(...)``, which returns the
bytes to write. What the protocol fixes is done by the machine (the
challenge, the digests, the checks); what is policy is the caller's: the
acceptor's status (an event, :class:`NameReceived`, asks for it: ``ok``,
``ok_simultaneous`` when it is dialling that node too and wins, ``nok`` when
it loses, ``alive`` when it already has a connection to that name,
``not_allowed``), and the initiator's answer to ``alive``.

The old version-5 ``n`` message (4-byte flags, no creation) is refused with
an error: OTP 25 speaks only version 6, and an OTP 23 or 24 node sends
``N`` to a peer whose port-mapper entry says it speaks version 6, as
snowg's does. The initiator never sends ``n``. A peer missing a flag OTP 25
makes mandatory is refused (:func:`._flags.check_peer`).

Every read is bounded: messages over :data:`._dist_framing.HANDSHAKE_MAX`
are refused, names over 255 bytes too. After :class:`Connected`, bytes the
peer sent past the handshake are in ``trailing_data``; they belong to the
connected stream (4-byte lengths).
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

from . import _flags
from ._dist_framing import HANDSHAKE_MAX, TCP_HANDSHAKE_LENGTH, Deframer, frame
from ._errors import ErlangProtocolError

__all__ = [
    "NEED_DATA",
    "STATUSES",
    "Acceptor",
    "AliveAnswer",
    "ChallengeReceived",
    "Connected",
    "Initiator",
    "NameReceived",
    "Refused",
    "ReplyReceived",
    "SendChallengeAck",
    "SendChallengeReply",
    "SendName",
    "SendStatus",
    "State",
    "StatusReceived",
    "digest",
]

#: The statuses an acceptor may send (``named:`` carries a name and a creation after it).
STATUSES = ("ok", "ok_simultaneous", "nok", "not_allowed", "alive", "named:")
_REFUSALS = ("nok", "not_allowed")
MAX_NAME = 255


def digest(challenge: int, cookie: bytes) -> bytes:
    """The answer to ``challenge``: ``MD5(cookie ++ decimal(challenge))``, 16 bytes."""
    return hashlib.md5(cookie + str(challenge).encode("ascii")).digest()


class _Need(Enum):
    NEED_DATA = "NEED_DATA"


#: Returned by ``next_event`` when a whole message has not arrived yet.
NEED_DATA = _Need.NEED_DATA


class State(Enum):
    """Where a handshake is."""

    START = "start"  # the initiator has not sent its name
    WAIT_NAME = "wait_name"  # acceptor: waiting for the initiator's name
    DECIDE_STATUS = "decide_status"  # acceptor: the caller must send a status
    WAIT_STATUS = "wait_status"  # initiator
    DECIDE_ALIVE = "decide_alive"  # initiator: the caller must answer 'alive'
    WAIT_ALIVE_ANSWER = "wait_alive_answer"  # acceptor
    WAIT_CHALLENGE = "wait_challenge"  # initiator
    SEND_REPLY = "send_reply"  # initiator: the caller must send the challenge reply
    WAIT_REPLY = "wait_reply"  # acceptor
    SEND_ACK = "send_ack"  # acceptor: the caller must send the ack
    WAIT_ACK = "wait_ack"  # initiator
    CONNECTED = "connected"
    CLOSED = "closed"  # refused by either side, or broken by the peer


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class NameReceived:
    """Acceptor: the initiator's name; the caller answers ``send(SendStatus(...))``."""

    name: str
    flags: int
    creation: int


@dataclass(frozen=True)
class StatusReceived:
    """Initiator: the acceptor's status (``named`` gives this node's name and creation).

    After ``alive`` the caller answers ``send(AliveAnswer(...))``; after
    ``nok`` or ``not_allowed`` a :class:`Refused` follows.
    """

    status: str
    name: Optional[str] = None
    creation: Optional[int] = None


@dataclass(frozen=True)
class ChallengeReceived:
    """Initiator: the acceptor's challenge; the caller answers ``send(SendChallengeReply())``."""

    name: str
    flags: int
    creation: int
    challenge: int


@dataclass(frozen=True)
class Refused:
    """The handshake ended without a connection (a refusing status, or ``alive`` answered false)."""

    reason: str


@dataclass(frozen=True)
class Connected:
    """Both digests checked: the connection is up. The peer's name, flags and creation."""

    name: str
    flags: int
    creation: int


@dataclass(frozen=True)
class ReplyReceived:
    """Acceptor: the initiator answered the challenge correctly; the caller sends ``SendChallengeAck()``."""


# ------------------------------------------------------------------ sends


@dataclass(frozen=True)
class SendName:
    """Initiator: its name (the ``N`` message)."""


@dataclass(frozen=True)
class SendStatus:
    """Acceptor: the status; ``ok``, ``ok_simultaneous`` and ``named:`` go on with the challenge.

    ``named:`` needs ``name`` (the name given to the initiator) and ``creation``.
    """

    status: str
    name: Optional[str] = None
    creation: Optional[int] = None


@dataclass(frozen=True)
class AliveAnswer:
    """Initiator sends it after ``alive`` (True: replace the old connection); the acceptor receives it."""

    proceed: bool


@dataclass(frozen=True)
class SendChallengeReply:
    """Initiator: its own challenge and the digest of the acceptor's."""


@dataclass(frozen=True)
class SendChallengeAck:
    """Acceptor: the digest of the initiator's challenge."""


Send = Union[SendName, SendStatus, AliveAnswer, SendChallengeReply, SendChallengeAck]
Event = Union[NameReceived, StatusReceived, ChallengeReceived, ReplyReceived, Refused, Connected, AliveAnswer]


# ---------------------------------------------------------------- parsing


class _Reader:
    """Bounded reads of one message's fields; a short message is the peer's error, naming the field."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ErlangProtocolError(
                f"{self.what}: truncated at {field} (needs {n} bytes at offset {self.pos}, message is {len(self.data)})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "big")

    def name(self) -> str:
        length = self.u(2, "name length")
        if length > MAX_NAME:
            raise ErlangProtocolError(f"{self.what}: name length {length} is over {MAX_NAME}")
        raw = self.take(length, "name")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ErlangProtocolError(f"{self.what}: name {raw!r} is not UTF-8") from None


def _encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > MAX_NAME:
        raise ValueError(f"node name {name!r} is over {MAX_NAME} bytes")
    return struct.pack(">H", len(raw)) + raw


class _Handshake:
    """What both roles share: the framing, the state, this node's identity."""

    def __init__(
        self,
        name: str,
        cookie: Union[str, bytes],
        *,
        flags: int,
        creation: int,
        length_size: int,
        challenge: Optional[int],
        peer: str,
    ) -> None:
        self.name = name
        self.cookie = cookie.encode("utf-8") if isinstance(cookie, str) else cookie
        self.flags = flags
        self.creation = creation
        self.length_size = length_size
        self.challenge = secrets.randbits(32) if challenge is None else challenge & 0xFFFFFFFF
        self.peer = peer  # the peer's name once known, else its address: every error names it
        self.peer_flags = 0
        self.peer_creation = 0
        self._frames = Deframer(length_size, HANDSHAKE_MAX, f"handshake with {peer}")
        self._pending: Optional[Event] = None
        self.state = State.START

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the last handshake message (the start of the connected stream)."""
        return self._frames.pending

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer."""
        self._frames.receive_data(data)

    def next_event(self) -> Union[Event, _Need]:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            ErlangProtocolError: the peer broke the protocol (the message names it and what was wrong).
        """
        if self._pending is not None:
            event, self._pending = self._pending, None
            return event
        if self.state not in self._reading:
            return NEED_DATA
        try:
            message = self._frames.next_message()
            if message is None:
                return NEED_DATA
            if not message:
                raise ErlangProtocolError(f"handshake with {self.peer}: empty message in state {self.state.value}")
            event = self._handle(message)
        except ErlangProtocolError:
            self.state = State.CLOSED  # nothing more is read: the caller closes the connection
            raise
        self._frames.what = f"handshake with {self.peer}"
        return event

    _reading: frozenset[State] = frozenset()

    def _handle(self, message: bytes) -> Event:
        raise NotImplementedError

    def _out(self, payload: bytes) -> bytes:
        return frame(payload, self.length_size)

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise RuntimeError(f"cannot do that in handshake state {self.state.value}")

    def _tag_error(self, message: bytes, expected: str) -> ErlangProtocolError:
        tag = message[:1]
        if tag == b"n":
            return ErlangProtocolError(
                f"handshake with {self.peer}: version-5 'n' name message refused (snowg speaks only version 6, "
                "as OTP 25 does)"
            )
        return ErlangProtocolError(
            f"handshake with {self.peer}: unexpected tag {tag!r} in state {self.state.value} (expected {expected})"
        )

    def _check_digest(self, got: bytes, challenge: int) -> None:
        if not secrets.compare_digest(got, digest(challenge, self.cookie)):
            raise ErlangProtocolError(f"handshake with {self.peer}: wrong digest: {self.peer} has another cookie")


class Initiator(_Handshake):
    """The dialling side.

    Args:
        name: this node's full name (``alive@host``).
        cookie: the shared secret.
        flags: the flags to offer (:data:`._flags.OFFERED`).
        creation: this node's creation (32 bits).
        length_size: 2 over TCP, 4 under ``inet_tls_dist``.
        challenge: this side's challenge (random when None; tests fix it).
        peer: how errors name the acceptor until its name is known.
        expect: the node this side means to reach (``bob@host``): an acceptor
            calling itself anything else is refused, as OTP refuses it. None
            accepts any name.
    """

    _reading = frozenset({State.WAIT_STATUS, State.WAIT_CHALLENGE, State.WAIT_ACK})

    def __init__(
        self,
        name: str,
        cookie: Union[str, bytes],
        *,
        flags: int = _flags.OFFERED,
        creation: int = 1,
        length_size: int = TCP_HANDSHAKE_LENGTH,
        challenge: Optional[int] = None,
        peer: str = "the acceptor",
        expect: Optional[str] = None,
    ) -> None:
        super().__init__(
            name, cookie, flags=flags, creation=creation, length_size=length_size, challenge=challenge, peer=peer
        )
        self.expect = expect
        self._their_challenge = 0
        self.peer_name = ""

    def send(self, what: Send) -> bytes:
        """The bytes for ``what``: ``SendName()`` first, ``AliveAnswer`` after ``alive``, ``SendChallengeReply()``.

        Raises:
            RuntimeError: not the moment for it (the caller's mistake).
        """
        if isinstance(what, SendName):
            self._expect(State.START)
            self.state = State.WAIT_STATUS
            body = b"N" + struct.pack(">QI", self.flags, self.creation & 0xFFFFFFFF) + _encode_name(self.name)
            return self._out(body)
        if isinstance(what, AliveAnswer):
            self._expect(State.DECIDE_ALIVE)
            if what.proceed:
                self.state = State.WAIT_CHALLENGE
            else:
                self.state = State.CLOSED
                self._pending = Refused("alive: this node chose not to replace the existing connection")
            return self._out(b"strue" if what.proceed else b"sfalse")
        if isinstance(what, SendChallengeReply):
            self._expect(State.SEND_REPLY)
            self.state = State.WAIT_ACK
            return self._out(b"r" + struct.pack(">I", self.challenge) + digest(self._their_challenge, self.cookie))
        raise RuntimeError(f"an initiator does not send {type(what).__name__}")

    def _handle(self, message: bytes) -> Event:
        r = _Reader(message, f"handshake with {self.peer}")
        tag = r.take(1, "tag")
        if self.state is State.WAIT_STATUS:
            if tag != b"s":
                raise self._tag_error(message, "'s' status")
            raw = message[1:]
            if raw.startswith(b"named:"):
                if not self.flags & _flags.DFLAG_NAME_ME:
                    raise ErlangProtocolError(f"handshake with {self.peer}: status 'named:' though no name was asked")
                r.take(len(b"named:"), "status")
                name = r.name()
                creation = r.u(4, "creation")
                self.name, self.creation = name, creation
                self.state = State.WAIT_CHALLENGE
                return StatusReceived("named:", name, creation)
            status = raw.decode("latin-1")
            if status not in STATUSES:
                raise ErlangProtocolError(f"handshake with {self.peer}: unknown status {raw[:64]!r}")
            if status in _REFUSALS:
                self.state = State.CLOSED
                self._pending = Refused(f"{self.peer} answered {status}")
            elif status == "alive":
                self.state = State.DECIDE_ALIVE
            else:
                self.state = State.WAIT_CHALLENGE
            return StatusReceived(status)
        if self.state is State.WAIT_CHALLENGE:
            if tag != b"N":
                raise self._tag_error(message, "'N' challenge")
            flags = r.u(8, "flags")
            challenge = r.u(4, "challenge")
            creation = r.u(4, "creation")
            name = r.name()
            if self.expect is not None and name != self.expect:
                raise ErlangProtocolError(f"handshake with {self.peer}: dialled {self.expect} but the node is {name!r}")
            self.peer = name or self.peer
            _flags.check_peer(flags, self.peer)
            self.peer_name, self.peer_flags, self.peer_creation = name, flags, creation
            self._their_challenge = challenge
            self.state = State.SEND_REPLY
            return ChallengeReceived(name, flags, creation, challenge)
        # WAIT_ACK
        if tag != b"a":
            raise self._tag_error(message, "'a' challenge ack")
        got = r.take(16, "digest")
        self._check_digest(got, self.challenge)
        self.state = State.CONNECTED
        return Connected(self.peer_name, self.peer_flags, self.peer_creation)


class Acceptor(_Handshake):
    """The accepting side.

    Args:
        name: this node's full name (``alive@host``).
        cookie: the shared secret.
        flags: the flags to offer (:data:`._flags.OFFERED`).
        creation: this node's creation (32 bits).
        length_size: 2 over TCP, 4 under ``inet_tls_dist``.
        challenge: this side's challenge (random when None; tests fix it).
        peer: how errors name the initiator until its name is known (its address).
    """

    _reading = frozenset({State.WAIT_NAME, State.WAIT_ALIVE_ANSWER, State.WAIT_REPLY})

    def __init__(
        self,
        name: str,
        cookie: Union[str, bytes],
        *,
        flags: int = _flags.OFFERED,
        creation: int = 1,
        length_size: int = TCP_HANDSHAKE_LENGTH,
        challenge: Optional[int] = None,
        peer: str = "the initiator",
    ) -> None:
        super().__init__(
            name, cookie, flags=flags, creation=creation, length_size=length_size, challenge=challenge, peer=peer
        )
        self.state = State.WAIT_NAME
        self.peer_name = ""
        self._their_challenge = 0

    def _challenge(self) -> bytes:
        body = b"N" + struct.pack(">QII", self.flags, self.challenge, self.creation & 0xFFFFFFFF)
        return self._out(body + _encode_name(self.name))

    def send(self, what: Send) -> bytes:
        """The bytes for ``what``: ``SendStatus`` after :class:`NameReceived`, ``SendChallengeAck()`` last.

        A status that goes on (``ok``, ``ok_simultaneous``, ``named:``) comes
        with the challenge in the same bytes; after ``alive``, when the
        initiator answers true (an :class:`AliveAnswer` event), the caller
        sends :meth:`challenge_after_alive`.

        Raises:
            RuntimeError: not the moment for it (the caller's mistake).
            ValueError: an unknown status, or ``named:`` without a name and creation.
        """
        if isinstance(what, SendStatus):
            self._expect(State.DECIDE_STATUS)
            if what.status not in STATUSES:
                raise ValueError(f"unknown status {what.status!r} (one of {', '.join(STATUSES)})")
            body = b"s" + what.status.encode("ascii")
            if what.status == "named:":
                if what.name is None or what.creation is None:
                    raise ValueError("status 'named:' needs the name and the creation given to the initiator")
                body += _encode_name(what.name) + struct.pack(">I", what.creation & 0xFFFFFFFF)
            if what.status in _REFUSALS:
                self.state = State.CLOSED
                self._pending = Refused(f"this node answered {what.status}")
                return self._out(body)
            if what.status == "alive":
                self.state = State.WAIT_ALIVE_ANSWER
                return self._out(body)
            self.state = State.WAIT_REPLY
            return self._out(body) + self._challenge()
        if isinstance(what, SendChallengeAck):
            self._expect(State.SEND_ACK)
            self.state = State.CONNECTED
            self._pending = Connected(self.peer_name, self.peer_flags, self.peer_creation)
            return self._out(b"a" + digest(self._their_challenge, self.cookie))
        raise RuntimeError(f"an acceptor does not send {type(what).__name__}")

    def challenge_after_alive(self) -> bytes:
        """The challenge, after the initiator answered ``alive`` with true (an :class:`AliveAnswer` event)."""
        self._expect(State.WAIT_REPLY)
        return self._challenge()

    def _handle(self, message: bytes) -> Event:
        r = _Reader(message, f"handshake with {self.peer}")
        tag = r.take(1, "tag")
        if self.state is State.WAIT_NAME:
            if tag != b"N":
                raise self._tag_error(message, "'N' name")
            flags = r.u(8, "flags")
            creation = r.u(4, "creation")
            name = r.name()
            self.peer = name or self.peer
            _flags.check_peer(flags, self.peer)
            if "@" not in name and not flags & _flags.DFLAG_NAME_ME:
                raise ErlangProtocolError(f"handshake with {self.peer}: node name {name!r} has no '@'")
            self.peer_name, self.peer_flags, self.peer_creation = name, flags, creation
            self.state = State.DECIDE_STATUS
            return NameReceived(name, flags, creation)
        if self.state is State.WAIT_ALIVE_ANSWER:
            if tag != b"s":
                raise self._tag_error(message, "'s' alive answer")
            answer = message[1:]
            if answer == b"true":
                self.state = State.WAIT_REPLY
                return AliveAnswer(True)
            if answer == b"false":
                self.state = State.CLOSED
                self._pending = Refused(f"{self.peer} chose not to replace the existing connection")
                return AliveAnswer(False)
            raise ErlangProtocolError(f"handshake with {self.peer}: alive answer {answer[:64]!r} is not true/false")
        # WAIT_REPLY
        if tag != b"r":
            raise self._tag_error(message, "'r' challenge reply")
        their_challenge = r.u(4, "challenge")
        got = r.take(16, "digest")
        self._check_digest(got, self.challenge)
        self._their_challenge = their_challenge
        self.state = State.SEND_ACK
        return ReplyReceived()
