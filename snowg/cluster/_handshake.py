"""The handshake, sans-IO: bytes in, events out (in the style of h11).

Nothing here touches a socket, so it can be fed arbitrary bytes in arbitrary
chunks, which is how it is tested. It runs inside TLS, each message one frame
(see :mod:`snowg.cluster._framing`)::

    initiator                                acceptor
    ["HELLO", version, name, creation, address, challenge_i(, flags)]  ->
                       <-  ["REJECT", reason]                       (or)
                       <-  ["CHALLENGE", name, creation, address, challenge_a, alive(, flags)]
    ["REPLY", hmac(cookie, "initiator", challenge_a, names, creations)]  ->
                       <-  ["ACK", hmac(cookie, "acceptor", challenge_i, names, creations)]
                                                                    (or REJECT)

The connecting side proves the cookie first, as in OTP: nothing the acceptor
sends before it has checked the initiator's proof depends on the cookie, so a
client that holds a cluster certificate but not the cookie gets nothing to
guess the cookie from offline. Either side may send ``["REJECT", reason]``
instead of its next message (after a failed check or a decision). The cookie
is never sent; the direction label in the digests stops a peer from
reflecting one side's digest back as the other's, and fresh random
challenges stop replays.

The acceptor decides twice: on :class:`PeerHello` (go on, or refuse) and on
:class:`PeerProved`, once the initiator has proved the cookie (establish, or
refuse). Only the second decision may disturb anything the node holds, such
as a live session with a node of the same name (OTP's ``up_pending``).
``alive`` in the CHALLENGE is OTP's ``alive`` status: the acceptor has a live
session with this very initiator (same name and creation) and replaces it
only if the initiator, which is dialling, confirms that it has none (the
initiator gets :class:`PeerAlive` and answers with ``accept`` or ``reject``).

``flags`` is sent only by a *hidden* node (:data:`FLAG_HIDDEN`; see
``start_node(hidden=True)``): a node that is not hidden sends the messages
of the same version as before, so it still speaks with older peers, and a
peer reads a missing ``flags`` as 0.

Two of the acceptor's refusals are not failures but the outcome of a
connection race (semantics rule 24): :data:`REFUSE_SIMULTANEOUS` and
:data:`REFUSE_ALREADY_CONNECTED`. The initiator gets them as
:class:`LostRace`, so the node can wait for the winning connection instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Callable, List, NamedTuple, Optional, Union

import msgpack

from . import _codec as codec
from ._framing import ProtocolError, encode_frame, read_length
from ._names import is_node_name, loggable

__all__ = [
    "ACCEPTOR",
    "FLAG_HIDDEN",
    "Established",
    "HANDSHAKE_MAX_FRAME_SIZE",
    "Handshake",
    "HandshakeError",
    "INITIATOR",
    "LostRace",
    "PROTOCOL_VERSION",
    "PeerAlive",
    "PeerHello",
    "PeerProved",
    "REFUSE_ALREADY_CONNECTED",
    "REFUSE_SIMULTANEOUS",
    "simultaneous_connect_winner",
]

# 2: the initiator proves the cookie first (the acceptor's proof moved to ACK);
# the CHALLENGE carries the acceptor's ``alive`` status.
PROTOCOL_VERSION = 2
HANDSHAKE_MAX_FRAME_SIZE = 4096
#: The sender is a hidden node (the optional last field of HELLO and CHALLENGE).
FLAG_HIDDEN = 1

INITIATOR = "initiator"
ACCEPTOR = "acceptor"

# The acceptor's REJECT reasons that mean "another connection between us wins".
REFUSE_SIMULTANEOUS = "simultaneous connection: the one started by the lower name wins"
REFUSE_ALREADY_CONNECTED = "already connected"
_LOST_RACE = frozenset((REFUSE_SIMULTANEOUS, REFUSE_ALREADY_CONNECTED))


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


class LostRace(HandshakeError):
    """The acceptor refused us because another connection between the two nodes wins.

    Not an error of either node: the caller waits for that other connection.
    """


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


class PeerHello(NamedTuple):
    """Acceptor only: the initiator introduced itself.

    The caller must now call :meth:`Handshake.accept` or :meth:`Handshake.reject`.
    """

    name: str
    creation: int
    address: str
    hidden: bool = False


class PeerProved(NamedTuple):
    """Acceptor only: the initiator proved that it knows the cookie.

    The caller must now call :meth:`Handshake.accept` (send ACK: the
    handshake is established) or :meth:`Handshake.reject`.
    """

    name: str
    creation: int
    address: str


class PeerAlive(NamedTuple):
    """Initiator only: the acceptor has a live session with us (our name and creation).

    It goes on (and then replaces that session) only if we confirm that we
    have none: :meth:`Handshake.accept` to go on, :meth:`Handshake.reject`
    (with :data:`REFUSE_ALREADY_CONNECTED`) when we are connected after all.
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
    peer_hidden: bool = False


_CHALLENGE_SIZE = 32
_LABEL_ACCEPTOR = "snowg acceptor proof"
_LABEL_INITIATOR = "snowg initiator proof"
_hs_pack = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True).pack

# States.
_AWAIT_HELLO = "await hello"
_AWAIT_DECISION = "await accept/reject"
_AWAIT_CHALLENGE = "await challenge"
_AWAIT_CONTINUE = "await accept/reject of an alive acceptor"
_AWAIT_REPLY = "await reply"
_AWAIT_CONFIRM = "await accept/reject of a proved peer"
_AWAIT_ACK = "await ack"
_DECISIONS = (_AWAIT_DECISION, _AWAIT_CONTINUE, _AWAIT_CONFIRM)
_WAITING = (_AWAIT_HELLO, _AWAIT_CHALLENGE, _AWAIT_REPLY, _AWAIT_ACK) + _DECISIONS
_ESTABLISHED = "established"
_REJECTED = "rejected"
_FAILED = "failed"


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_challenge(value: Any) -> bool:
    return type(value) is bytes and len(value) == _CHALLENGE_SIZE


class Handshake:
    """One side of the handshake, as a state machine with no IO.

    Usage: write :meth:`data_to_send` to the peer whenever it is non-empty,
    pass received bytes to :meth:`receive_data`, and drain :meth:`next_event`.
    An acceptor gets :class:`PeerHello`, then :class:`PeerProved`, and must
    answer each with :meth:`accept` or :meth:`reject`; an initiator may get
    :class:`PeerAlive`, answered the same way. Both sides end with
    :class:`Established`.

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
        hidden: bool = False,
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
            hidden: this node is hidden: its HELLO or CHALLENGE says so
                (:data:`FLAG_HIDDEN`).

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
        self.peer_hidden = False
        self.hidden = hidden
        self._flags = [FLAG_HIDDEN] if hidden else []
        self.trailing_data = b""
        if role == INITIATOR:
            self._my_challenge = self._new_challenge()
            self._send(["HELLO", PROTOCOL_VERSION, name, creation, address, self._my_challenge, *self._flags])
            self._state = _AWAIT_CHALLENGE
        else:
            self._state = _AWAIT_HELLO

    # -- public API ----------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the handshake succeeded."""
        return self._state == _ESTABLISHED

    @property
    def deciding(self) -> bool:
        """True while an event waits for :meth:`accept` or :meth:`reject`."""
        return self._state in _DECISIONS

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

    def next_event(self) -> Optional[Union[PeerHello, PeerProved, PeerAlive, Established]]:
        """Return the next event, or None when more data is needed (or we are done)."""
        return self._events.pop(0) if self._events else None

    def accept(self, *, alive: bool = False) -> None:
        """Go on after the event waiting for a decision.

        After :class:`PeerHello` (acceptor): send the CHALLENGE; ``alive``
        tells the initiator that we have a live session with it (its name and
        creation), which we replace only if it confirms. After
        :class:`PeerProved` (acceptor): send the ACK, with our proof; the
        handshake is established. After :class:`PeerAlive` (initiator): send
        our REPLY, with our proof.

        Raises:
            RuntimeError: no event waits for a decision.
            HandshakeError: the handshake already failed.
        """
        self._require_decision()
        assert self.peer_name is not None and self.peer_creation is not None
        if self._state == _AWAIT_DECISION:
            self._my_challenge = self._new_challenge()
            # Nothing here depends on the cookie: the initiator proves it first.
            self._send(
                ["CHALLENGE", self.name, self.creation, self.address, self._my_challenge, bool(alive), *self._flags]
            )
            self._state = _AWAIT_REPLY
        elif self._state == _AWAIT_CONFIRM:
            proof = self._digest(
                _LABEL_ACCEPTOR, self._peer_challenge, self.peer_name, self.name, self.peer_creation, self.creation
            )
            self._send(["ACK", proof])
            self._establish()
        else:  # _AWAIT_CONTINUE
            self._send_reply()
        # The peer cannot have sent anything valid yet, but process what is buffered
        # so that junk sent early is reported now rather than on the next read.
        self._process_or_fail()

    def reject(self, reason: str) -> None:
        """Refuse the peer after the event waiting for a decision (send REJECT).

        Args:
            reason: why, for the peer's log (e.g. ``'already connected'``).

        Raises:
            RuntimeError: no event waits for a decision.
            HandshakeError: the handshake already failed.
        """
        self._require_decision()
        self._send(["REJECT", str(reason)])
        self._state = _REJECTED

    # -- internals -----------------------------------------------------------

    def _require_decision(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state not in _DECISIONS:
            raise RuntimeError(f"accept()/reject() called in state {self._state!r} of the {self.role}")

    def _new_challenge(self) -> bytes:
        challenge = self._rand(_CHALLENGE_SIZE)
        if type(challenge) is not bytes or len(challenge) != _CHALLENGE_SIZE:
            raise ValueError(f"rand({_CHALLENGE_SIZE}) must return {_CHALLENGE_SIZE} bytes")
        return challenge

    def _digest(
        self,
        label: str,
        challenge: bytes,
        initiator: str,
        acceptor: str,
        initiator_creation: int,
        acceptor_creation: int,
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
        n = read_length(buf)
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
        while self._state in _WAITING:
            if self._state in _DECISIONS:
                if len(self._inbuf):
                    raise self._fail(
                        "the peer sent data before our "
                        + ("challenge" if self._state == _AWAIT_DECISION else "answer"),
                        "bad_data",
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
                f"the peer sent bad data during the handshake: not a handshake message ({type(message).__name__})",
                "bad_data",
            )
        kind = message[0]
        if kind == "REJECT" and self._state != _AWAIT_HELLO:
            if len(message) != 2 or type(message[1]) is not str:
                raise self._fail("the peer sent bad data during the handshake: malformed REJECT", "bad_data")
            if message[1] in _LOST_RACE:
                raise LostRace(f"peer rejected us: {message[1]}", "rejected")
            raise HandshakeError(f"peer rejected us: {loggable(message[1], quoted=False)}", "rejected")
        expected = {
            _AWAIT_HELLO: "HELLO",
            _AWAIT_CHALLENGE: "CHALLENGE",
            _AWAIT_REPLY: "REPLY",
            _AWAIT_ACK: "ACK",
        }[self._state]
        if kind != expected:
            raise self._fail(
                f"the peer sent bad data during the handshake: expected {expected}, got {loggable(kind)}",
                "bad_data",
            )
        getattr(self, "_on_" + expected.lower())(message)

    def _malformed(self, what: str) -> HandshakeError:
        return self._fail(f"the peer sent bad data during the handshake: malformed {what}", "bad_data")

    def _name_clash(self, name: str) -> HandshakeError:
        return self._fail(
            f"the peer claims our own name {loggable(name)}",
            "name",
            tell_peer=f"name clash: we are {self.name}",
        )

    def _cookie_mismatch(self) -> HandshakeError:
        return self._fail(
            f"cookie mismatch: {loggable(self.peer_name or '?', quoted=False)} could not prove it knows our cookie",
            "cookie",
            tell_peer="cookie mismatch: our cookies differ",
        )

    def _on_hello(self, message: List[Any]) -> None:
        # The version is checked before the layout, which a later version may change.
        if len(message) < 2 or not _is_int(message[1]):
            raise self._malformed("HELLO")
        version = message[1]
        if version != PROTOCOL_VERSION:
            text = f"version mismatch: the peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}"
            raise self._fail(
                text,
                "version",
                tell_peer=f"version mismatch: you speak protocol version {version}, we speak {PROTOCOL_VERSION}",
            )
        if not (
            len(message) in (6, 7)
            and is_node_name(message[2])
            and _is_int(message[3])
            and type(message[4]) is str
            and _is_challenge(message[5])
            and (len(message) == 6 or _is_int(message[6]))
        ):
            raise self._malformed("HELLO")
        name, creation, address, challenge = message[2:6]
        self.peer_hidden = len(message) == 7 and bool(message[6] & FLAG_HIDDEN)
        if name == self.name:
            raise self._name_clash(name)
        self.peer_name, self.peer_creation, self.peer_address = name, creation, address
        self._peer_challenge = challenge
        self._state = _AWAIT_DECISION
        self._events.append(PeerHello(name, creation, address, self.peer_hidden))

    def _on_challenge(self, message: List[Any]) -> None:
        if not (
            len(message) in (6, 7)
            and is_node_name(message[1])
            and _is_int(message[2])
            and type(message[3]) is str
            and _is_challenge(message[4])
            and type(message[5]) is bool
            and (len(message) == 6 or _is_int(message[6]))
        ):
            raise self._malformed("CHALLENGE")
        name, creation, address, challenge, alive = message[1:6]
        self.peer_hidden = len(message) == 7 and bool(message[6] & FLAG_HIDDEN)
        if self.expected_peer is not None and name != self.expected_peer:
            raise self._fail(
                f"connected to {self.expected_peer}, but the peer says it is {loggable(name, quoted=False)}",
                "name",
                tell_peer=f"wrong node: we wanted {self.expected_peer}",
            )
        if name == self.name:
            raise self._name_clash(name)
        self.peer_name, self.peer_creation, self.peer_address = name, creation, address
        self._peer_challenge = challenge
        if alive:
            self._state = _AWAIT_CONTINUE
            self._events.append(PeerAlive(name, creation, address))
        else:
            self._send_reply()

    def _send_reply(self) -> None:
        assert self.peer_name is not None and self.peer_creation is not None
        reply = self._digest(
            _LABEL_INITIATOR, self._peer_challenge, self.name, self.peer_name, self.creation, self.peer_creation
        )
        self._send(["REPLY", reply])
        self._state = _AWAIT_ACK

    def _on_reply(self, message: List[Any]) -> None:
        if len(message) != 2 or type(message[1]) is not bytes:
            raise self._malformed("REPLY")
        assert self.peer_name is not None and self.peer_creation is not None and self.peer_address is not None
        expected = self._digest(
            _LABEL_INITIATOR,
            self._my_challenge,
            self.peer_name,
            self.name,
            self.peer_creation,
            self.creation,
        )
        if not hmac.compare_digest(message[1], expected):
            raise self._cookie_mismatch()
        self._state = _AWAIT_CONFIRM
        self._events.append(PeerProved(self.peer_name, self.peer_creation, self.peer_address))

    def _on_ack(self, message: List[Any]) -> None:
        if len(message) != 2 or type(message[1]) is not bytes:
            raise self._malformed("ACK")
        assert self.peer_name is not None and self.peer_creation is not None
        expected = self._digest(
            _LABEL_ACCEPTOR, self._my_challenge, self.name, self.peer_name, self.creation, self.peer_creation
        )
        if not hmac.compare_digest(message[1], expected):
            raise self._cookie_mismatch()
        self._establish()

    def _establish(self) -> None:
        assert self.peer_name is not None and self.peer_creation is not None and self.peer_address is not None
        self._state = _ESTABLISHED
        self._events.append(Established(self.peer_name, self.peer_creation, self.peer_address, self.peer_hidden))
