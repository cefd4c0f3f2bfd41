"""The sans-IO protocol: framing, frame validation and the handshake (cluster._framing, _frames, _handshake)."""

from __future__ import annotations

import itertools
import random
import struct
import time
from typing import Any, Callable, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snowg._core.terms import Pid, Ref
from snowg.cluster import _codec as codec
from snowg.cluster import _frames as P
from snowg.cluster._frames import validate_frame
from snowg.cluster._framing import FrameDecoder, FrameTooLarge, MalformedFrame, ProtocolError, encode_frame
from snowg.cluster._global import (
    GLOBAL_LOCK,
    GLOBAL_LOCK_REPLY,
    GLOBAL_REGISTER,
    GLOBAL_SYNC,
    GLOBAL_UNLOCK,
    GLOBAL_UNREGISTER,
)
from snowg.cluster._handshake import (
    PROTOCOL_VERSION,
    REFUSE_ALREADY_CONNECTED,
    REFUSE_SIMULTANEOUS,
    Established,
    Handshake,
    HandshakeError,
    LostRace,
    PeerAlive,
    PeerHello,
    PeerProved,
    simultaneous_connect_winner,
)
from snowg.pg._wire import DISCOVER as PG_DISCOVER
from snowg.pg._wire import JOIN as PG_JOIN
from snowg.pg._wire import LEAVE as PG_LEAVE
from snowg.pg._wire import SYNC as PG_SYNC
from snowg.pubsub import PUBSUB
from snowg.ws._rooms import ROOM_BROADCAST  # registers the rooms' frame, as importing snowg.ws does

PID_A = Pid("a@h", 1, 10)
PID_B = Pid("b@h", 2, 20)
REF = Ref("a@h", 3, 10)

VALID_FRAMES: List[list] = [
    [P.TICK],
    [P.SEND, PID_B, {"x": (1, [2])}],
    [P.SEND_NAME, PID_A, "server", ("call", PID_A, REF)],
    [P.SEND_NAME, None, "server", "hi"],
    [P.LINK, PID_A, PID_B],
    [P.UNLINK, PID_A, PID_B],
    [P.EXIT, PID_A, PID_B, "normal"],
    [P.EXIT2, PID_A, PID_B, ("shutdown", 1)],
    [P.MONITOR, PID_A, PID_B, REF],
    [P.MONITOR, PID_A, "server", REF],
    [P.DEMONITOR, PID_A, "server", REF],
    [P.MONITOR_EXIT, PID_B, PID_A, REF, "noproc"],
    [P.MONITOR_EXIT, ("server", "b@h"), PID_A, REF, "noproc"],
    [P.SPAWN_REQUEST, REF, PID_A, "mod.fn", [1, (2,)], {"k": 3}, ["link", "monitor"]],
    [P.SPAWN_REPLY, REF, PID_A, PID_B],
    [P.SPAWN_REPLY, REF, PID_A, "function 'x' is not spawnable"],
    [GLOBAL_REGISTER, "name", PID_A],
    [GLOBAL_UNREGISTER, "name", PID_A],
    [GLOBAL_SYNC, {"n1": PID_A, "n2": PID_B}],
    [GLOBAL_SYNC, {}],
    [P.PEER_LIST, [["a@h", "h:1"], ["b@h", "h:2"]]],
    [ROOM_BROADCAST, "lobby", "text"],
    [ROOM_BROADCAST, "lobby", b"\x00binary"],
    [GLOBAL_LOCK, "name", REF, PID_A],
    [GLOBAL_LOCK_REPLY, REF, PID_A, True],
    [GLOBAL_UNLOCK, "name", REF],
    [PG_DISCOVER, "snowg_pg", PID_A],
    [PG_SYNC, "snowg_pg", PID_A, False, [["g", [PID_A, PID_A]], [("t", 1), []]]],
    [PG_JOIN, "snowg_pg", PID_A, ("room", 7), [PID_A]],
    [PG_LEAVE, "snowg_pg", PID_A, "g", [PID_A]],
    [PUBSUB, "topic", ("any", [1]), None],
    [PUBSUB, "topic", "not to A", PID_A],
]


def _by_byte(data: bytes):
    return (data[i : i + 1] for i in range(len(data)))


# --- framing ----------------------------------------------------------------


def test_every_tag_has_a_valid_example() -> None:
    assert {f[0] for f in VALID_FRAMES} == set(P.TAG_NAMES)
    assert set(range(25)) <= set(P.TAG_NAMES)


@pytest.mark.parametrize("frame", VALID_FRAMES, ids=lambda f: P.TAG_NAMES[f[0]])
def test_frame_roundtrips_whole_and_byte_by_byte(frame: list) -> None:
    data = encode_frame(frame)
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    assert FrameDecoder().feed(data) == [frame]
    dec = FrameDecoder()
    out: list = []
    for b in _by_byte(data):
        out += dec.feed(b)
    assert out == [frame]
    assert validate_frame(out[0]) == tuple(frame)


def test_tuple_frames_are_sent_as_arrays() -> None:
    frame = (P.LINK, PID_A, PID_B)
    (decoded,) = FrameDecoder().feed(encode_frame(frame))
    assert type(decoded) is list
    assert validate_frame(decoded) == frame


def test_many_frames_in_one_chunk_decode_quickly() -> None:
    frames = [[P.SEND, PID_B, ("msg", i, "x" * 20)] for i in range(10_000)]
    data = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder()
    t0 = time.perf_counter()
    out = dec.feed(data)
    elapsed = time.perf_counter() - t0
    assert out == frames
    assert dec.buffered == 0
    assert elapsed < 2.0, elapsed


def test_large_frame_one_byte_at_a_time_is_linear() -> None:
    frame = [P.SEND, PID_B, b"x" * 300_000]
    data = encode_frame(frame)
    dec = FrameDecoder()
    t0 = time.perf_counter()
    out: list = []
    for b in _by_byte(data):
        out += dec.feed(b)
    assert out == [frame]
    assert time.perf_counter() - t0 < 5.0


def test_random_chunking_preserves_order() -> None:
    frames = [[P.SEND, PID_B, i] for i in range(500)] + [[P.TICK]]
    data = b"".join(encode_frame(f) for f in frames)
    rng = random.Random(1)
    dec = FrameDecoder()
    out: list = []
    pos = 0
    while pos < len(data):
        n = rng.randint(0, 40)
        out += dec.feed(data[pos : pos + n])
        pos += n
    assert out == frames


def test_truncated_frame_yields_nothing_until_complete() -> None:
    data = encode_frame([P.SEND, PID_B, "hello"])
    dec = FrameDecoder()
    assert dec.feed(data[:3]) == []
    assert dec.feed(data[3:-1]) == []
    assert dec.buffered == len(data) - 1
    assert dec.feed(data[-1:]) == [[P.SEND, PID_B, "hello"]]
    assert dec.buffered == 0


def test_oversize_length_rejected_from_the_header_alone() -> None:
    dec = FrameDecoder(max_frame_size=100)
    assert dec.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge, match="101"):
        dec.feed(b"\x00\x65")
    with pytest.raises(FrameTooLarge):  # the decoder stays failed
        dec.feed(b"")


def test_frame_of_exactly_the_maximum_is_accepted() -> None:
    body = codec.encode([ROOM_BROADCAST, "r", b"x" * 50])
    dec = FrameDecoder(max_frame_size=len(body))
    assert len(dec.feed(struct.pack(">I", len(body)) + body)) == 1


def test_encode_frame_enforces_max_size() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame([P.SEND, PID_B, b"x" * 200], max_frame_size=100)
    assert encode_frame([P.TICK], max_frame_size=100)


def test_encode_frame_refuses_non_terms() -> None:
    with pytest.raises(TypeError, match="'set'"):
        encode_frame([P.SEND, PID_B, {1}])


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa2\xff\xfe"])
def test_undecodable_body_raises_malformed_frame(body: bytes) -> None:
    with pytest.raises(MalformedFrame):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


def test_frames_before_a_bad_one_do_not_hide_the_error() -> None:
    good = encode_frame([P.TICK])
    with pytest.raises(MalformedFrame):
        FrameDecoder().feed(good + b"\x00\x00\x00\x01\xc1")


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, match",
    [
        ("not a list", "array"),
        ({"a": 1}, "array"),
        (None, "array"),
        ([], "empty"),
        ([30], "unknown"),
        ([31, 1], "unknown"),
        ([-1], "unknown"),
        (["SEND", PID_A, 1], "unknown"),
        ([True], "unknown"),
        ([1.0, PID_A, 1], "unknown"),
        ([P.TICK, 1], "fields"),
        ([P.SEND, PID_A], "fields"),
        ([P.SEND, PID_A, 1, 2], "fields"),
        ([P.SEND, "pid", 1], "field 1"),
        ([P.SEND, REF, 1], "field 1"),
        ([P.SEND_NAME, 5, "n", 1], "field 1"),
        ([P.SEND_NAME, PID_A, b"n", 1], "field 2"),
        ([P.LINK, PID_A, None], "field 2"),
        ([P.EXIT, PID_A, "b", "normal"], "field 2"),
        ([P.MONITOR, PID_A, PID_B, PID_A], "field 3"),
        ([P.MONITOR, PID_A, 3, REF], "field 2"),
        ([P.MONITOR_EXIT, "server", PID_A, REF, 1], "field 1"),
        ([P.MONITOR_EXIT, ("server", 1), PID_A, REF, 1], "field 1"),
        ([P.MONITOR_EXIT, ["server", "b@h"], PID_A, REF, 1], "field 1"),
        ([P.SPAWN_REQUEST, REF, PID_A, "f", (1,), {}, []], "field 4"),
        ([P.SPAWN_REQUEST, REF, PID_A, "f", [], {1: 2}, []], "field 5"),
        ([P.SPAWN_REQUEST, REF, PID_A, "f", [], {}, ["link", 1]], "field 6"),
        ([P.SPAWN_REPLY, REF, PID_A, 5], "field 3"),
        ([GLOBAL_REGISTER, 1, PID_A], "field 1"),
        ([GLOBAL_SYNC, {"n": "notapid"}], "field 1"),
        ([GLOBAL_SYNC, [("n", PID_A)]], "field 1"),
        ([P.PEER_LIST, [["a@h"]]], "field 1"),
        ([P.PEER_LIST, [["a@h", 5]]], "field 1"),
        ([ROOM_BROADCAST, "r", 5], "field 2"),
    ],
)
def test_validation_errors(frame: Any, match: str) -> None:
    with pytest.raises(MalformedFrame, match=match):
        validate_frame(frame)


def test_validation_errors_are_protocol_errors_with_a_reason() -> None:
    with pytest.raises(ProtocolError) as info:
        validate_frame([99])
    assert "99" in info.value.reason


# --- fuzzing the decoder ----------------------------------------------------


def _feed_all(dec: FrameDecoder, chunks) -> None:
    for chunk in chunks:
        for frame in dec.feed(chunk):
            try:
                validate_frame(frame)
            except MalformedFrame:
                pass


def _chunks(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


_valid_stream = st.lists(st.sampled_from(VALID_FRAMES), max_size=5).map(
    lambda fs: b"".join(encode_frame(f) for f in fs)
)
_streams = st.one_of(
    st.binary(max_size=300),
    # Plausible headers followed by garbage reach the body decoder more often.
    st.lists(st.binary(max_size=30), max_size=6).map(
        lambda bodies: b"".join(struct.pack(">I", len(b)) + b for b in bodies)
    ),
    st.tuples(_valid_stream, st.binary(max_size=40)).map(lambda t: t[0] + t[1]),
)


@settings(max_examples=400, deadline=None)
@given(_streams, st.lists(st.integers(0, 10_000), max_size=8), st.sampled_from([16, 64, 4096]))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes, cuts: List[int], limit: int) -> None:
    for chunks in ([data], list(_by_byte(data)), _chunks(data, cuts)):
        try:
            _feed_all(FrameDecoder(max_frame_size=limit), chunks)
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(_valid_stream, st.lists(st.integers(0, 10_000), max_size=8))
def test_chunking_never_changes_the_result(data: bytes, cuts: List[int]) -> None:
    expected = FrameDecoder().feed(data)
    dec = FrameDecoder()
    got: list = []
    for chunk in _chunks(data, cuts):
        got += dec.feed(chunk)
    assert got == expected


# --- handshake --------------------------------------------------------------

COOKIE = "secret-cookie"


def _counter_rand() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def _pair(icookie: str = COOKIE, acookie: str = COOKIE, **ikw: Any) -> Tuple[Handshake, Handshake]:
    init = Handshake("initiator", "alice@h", 11, icookie, address="h:1", **ikw)
    acc = Handshake("acceptor", "bob@h", 22, acookie, address="h:2")
    return init, acc


def _pump(src: Handshake, dst: Handshake, byte_by_byte: bool = False) -> List[Any]:
    """Move src's pending output into dst; return dst's events (accepting any PeerHello)."""
    data = src.data_to_send()
    events: List[Any] = []
    for chunk in _by_byte(data) if byte_by_byte else [data]:
        dst.receive_data(chunk)
        while True:
            ev = dst.next_event()
            if ev is None:
                break
            events.append(ev)
            if isinstance(ev, (PeerHello, PeerProved, PeerAlive)):
                dst.accept()
    return events


def _run(init: Handshake, acc: Handshake, byte_by_byte: bool = False) -> Tuple[List[Any], List[Any]]:
    ievents: List[Any] = []
    aevents: List[Any] = []
    for _ in range(4):
        aevents += _pump(init, acc, byte_by_byte)
        ievents += _pump(acc, init, byte_by_byte)
    return ievents, aevents


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_handshake_completes(byte_by_byte: bool) -> None:
    init, acc = _pair(expected_peer="bob@h")
    ievents, aevents = _run(init, acc, byte_by_byte)
    assert aevents == [
        PeerHello("alice@h", 11, "h:1"),
        PeerProved("alice@h", 11, "h:1"),
        Established("alice@h", 11, "h:1"),
    ]
    assert ievents == [Established("bob@h", 22, "h:2")]
    assert init.established and acc.established
    assert init.trailing_data == b"" and acc.trailing_data == b""


def test_cookie_is_never_sent() -> None:
    init, acc = _pair()
    wire = b""
    for _ in range(4):
        data = init.data_to_send()
        wire += data
        acc.receive_data(data)
        if isinstance(acc.next_event(), (PeerHello, PeerProved)):
            acc.accept()
        data = acc.data_to_send()
        wire += data
        init.receive_data(data)
    assert init.established
    assert COOKIE.encode() not in wire


def test_bytes_after_the_last_handshake_frame_are_kept_for_the_session() -> None:
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    assert isinstance(acc.next_event(), PeerHello)
    acc.accept()
    init.receive_data(acc.data_to_send())
    acc.receive_data(init.data_to_send())
    assert isinstance(acc.next_event(), PeerProved)
    acc.accept()
    assert isinstance(acc.next_event(), Established)
    # Session frames may be larger than the handshake's frame limit.
    session = encode_frame([P.SEND, PID_A, b"x" * 10_000]) + encode_frame([P.TICK])
    data = acc.data_to_send() + session
    init.receive_data(data[:5])
    init.receive_data(data[5:])
    assert init.next_event() == Established("bob@h", 22, "h:2")
    assert init.trailing_data == session
    assert FrameDecoder().feed(init.trailing_data) == [[P.SEND, PID_A, b"x" * 10_000], [P.TICK]]


def test_the_initiator_proves_the_cookie_first() -> None:
    """OTP's order: nothing the acceptor sends before the initiator's proof depends on the cookie.

    Two acceptors with different cookies and the same random source answer a
    HELLO with the same bytes; only after a good REPLY does the acceptor send
    its own proof.
    """
    hello = Handshake("initiator", "alice@h", 11, COOKIE, address="h:1", rand=_counter_rand()).data_to_send()
    sent = []
    for cookie in (COOKIE, "a different cookie"):
        acc = Handshake("acceptor", "bob@h", 22, cookie, address="h:2", rand=_counter_rand())
        acc.receive_data(hello)
        assert acc.next_event() == PeerHello("alice@h", 11, "h:1")
        assert acc.data_to_send() == b""
        acc.accept()
        sent.append(acc.data_to_send())
        assert acc.next_event() is None and not acc.established
    assert sent[0] == sent[1]
    (challenge,) = FrameDecoder().feed(sent[0])
    assert challenge[0] == "CHALLENGE" and len(challenge) == 6 and challenge[5] is False  # no proof in it
    # The initiator's REPLY carries its proof; only a good one gets the acceptor's.
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    init.receive_data(acc.data_to_send())
    reply = init.data_to_send()
    assert FrameDecoder().feed(reply)[0][0] == "REPLY"
    acc.receive_data(reply)
    assert acc.next_event() == PeerProved("alice@h", 11, "h:1")
    assert acc.data_to_send() == b""  # nothing until the node decides
    acc.accept()
    (ack,) = FrameDecoder().feed(acc.data_to_send())
    assert ack[0] == "ACK" and type(ack[1]) is bytes and len(ack[1]) == 32


def test_wrong_cookie_fails_on_the_acceptor_before_it_proves_anything() -> None:
    init, acc = _pair(icookie="one", acookie="two")
    acc.receive_data(init.data_to_send())
    assert isinstance(acc.next_event(), PeerHello)
    acc.accept()
    init.receive_data(acc.data_to_send())
    with pytest.raises(HandshakeError, match="cookie mismatch") as info:
        acc.receive_data(init.data_to_send())
    assert info.value.kind == "cookie"
    assert "alice@h" in info.value.reason
    assert not acc.established and acc.next_event() is None
    # The acceptor tells the initiator why, and nothing else: no proof of its own.
    out = acc.data_to_send()
    assert FrameDecoder().feed(out) == [["REJECT", "cookie mismatch: our cookies differ"]]
    with pytest.raises(HandshakeError, match="peer rejected us: cookie mismatch") as info2:
        init.receive_data(out)
    assert info2.value.kind == "rejected"
    assert not init.established
    # Failures are sticky.
    with pytest.raises(HandshakeError, match="cookie mismatch"):
        acc.receive_data(b"")


def test_initiator_detects_a_wrong_ack() -> None:
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    init.receive_data(acc.data_to_send())
    init.data_to_send()
    with pytest.raises(HandshakeError, match="cookie mismatch") as info:
        init.receive_data(encode_frame(["ACK", b"\x00" * 32]))
    assert info.value.kind == "cookie" and "bob@h" in info.value.reason
    assert not init.established


def test_acceptor_detects_a_wrong_reply() -> None:
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    acc.data_to_send()
    with pytest.raises(HandshakeError, match="cookie mismatch") as info:
        acc.receive_data(encode_frame(["REPLY", b"\x00" * 32]))
    assert info.value.kind == "cookie"
    with pytest.raises(HandshakeError, match="peer rejected us: cookie mismatch"):
        init.receive_data(acc.data_to_send())


def test_acceptor_may_refuse_a_proved_peer() -> None:
    """The second decision: a node that is connected meanwhile refuses with a connection-race reason."""
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    init.receive_data(acc.data_to_send())
    acc.receive_data(init.data_to_send())
    assert isinstance(acc.next_event(), PeerProved)
    acc.reject(REFUSE_ALREADY_CONNECTED)
    assert not acc.established and acc.next_event() is None
    with pytest.raises(LostRace):
        init.receive_data(acc.data_to_send())


@pytest.mark.parametrize("go_on", [True, False])
def test_alive_acceptor_asks_the_initiator(go_on: bool) -> None:
    """OTP's alive status: the acceptor has a session with this initiator; the initiator says whether to go on."""
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept(alive=True)
    (challenge,) = FrameDecoder().feed(acc.data_to_send())
    assert challenge[5] is True
    init.receive_data(encode_frame(challenge))
    assert init.next_event() == PeerAlive("bob@h", 22, "h:2")
    assert init.data_to_send() == b""  # no proof before the decision
    if go_on:
        init.accept()
        acc.receive_data(init.data_to_send())
        assert isinstance(acc.next_event(), PeerProved)
        acc.accept()
        init.receive_data(acc.data_to_send())
        assert init.established and acc.established
    else:
        init.reject(REFUSE_ALREADY_CONNECTED)
        with pytest.raises(LostRace):
            acc.receive_data(init.data_to_send())
        assert not init.established


def test_acceptor_reject_reaches_the_initiator() -> None:
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    assert acc.next_event() == PeerHello("alice@h", 11, "h:1")
    acc.reject("already connected")
    assert acc.next_event() is None and not acc.established
    with pytest.raises(HandshakeError, match="peer rejected us: already connected") as info:
        init.receive_data(acc.data_to_send())
    assert info.value.kind == "rejected"


@pytest.mark.parametrize("reason", [REFUSE_SIMULTANEOUS, REFUSE_ALREADY_CONNECTED])
def test_a_refusal_for_a_connection_race_is_a_lost_race(reason: str) -> None:
    """Semantics rule 24: the initiator learns that another connection wins, as a type, not a text."""
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.reject(reason)
    with pytest.raises(LostRace) as info:
        init.receive_data(acc.data_to_send())
    assert info.value.kind == "rejected"


def test_other_refusals_are_not_a_lost_race() -> None:
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.reject("simultaneous connection, but not in the protocol's words")
    with pytest.raises(HandshakeError) as info:
        init.receive_data(acc.data_to_send())
    assert not isinstance(info.value, LostRace)


def test_accept_and_reject_need_a_peer_hello() -> None:
    init, acc = _pair()
    with pytest.raises(RuntimeError):
        acc.accept()
    with pytest.raises(RuntimeError):
        init.reject("no")
    with pytest.raises(RuntimeError):
        init.accept()


def test_reflected_reply_is_no_ack() -> None:
    # An attacker without the cookie plays the acceptor, makes the initiator
    # prove itself over the initiator's own challenge, and sends that proof
    # back as its ACK: the direction label tells them apart.
    init = Handshake("initiator", "alice@h", 11, COOKIE, expected_peer="bob@h")
    (hello,) = FrameDecoder().feed(init.data_to_send())
    init.receive_data(encode_frame(["CHALLENGE", "bob@h", 22, "h:2", hello[5], False]))
    (reply,) = FrameDecoder().feed(init.data_to_send())
    with pytest.raises(HandshakeError, match="cookie mismatch"):
        init.receive_data(encode_frame(["ACK", reply[1]]))
    assert not init.established


def test_replayed_reply_fails() -> None:
    # Record a genuine REPLY, then replay it in a new handshake with a fresh challenge.
    init, acc = _pair()
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    init.receive_data(acc.data_to_send())
    recorded = init.data_to_send()
    acc.receive_data(recorded)
    assert isinstance(acc.next_event(), PeerProved)

    init2 = Handshake("initiator", "alice@h", 11, "unknown cookie", address="h:1")
    acc2 = Handshake("acceptor", "bob@h", 22, COOKIE)
    acc2.receive_data(init2.data_to_send())
    acc2.next_event()
    acc2.accept()
    with pytest.raises(HandshakeError, match="cookie mismatch"):
        acc2.receive_data(recorded)


def test_same_random_challenges_still_bind_names() -> None:
    # Even with identical challenges, a proof made for other names does not verify.
    rand = lambda n: b"\x07" * n  # noqa: E731
    i1 = Handshake("initiator", "alice@h", 11, COOKIE, rand=rand)
    a1 = Handshake("acceptor", "bob@h", 22, COOKIE, rand=rand)
    a1.receive_data(i1.data_to_send())
    a1.next_event()
    a1.accept()
    i1.receive_data(a1.data_to_send())
    reply_for_alice = i1.data_to_send()

    a2 = Handshake("acceptor", "bob@h", 22, COOKIE, rand=rand)
    a2.receive_data(encode_frame(["HELLO", PROTOCOL_VERSION, "eve@h", 11, "", b"\x07" * 32]))
    a2.next_event()
    a2.accept()
    with pytest.raises(HandshakeError, match="cookie mismatch"):
        a2.receive_data(reply_for_alice)


def test_version_mismatch() -> None:
    acc = Handshake("acceptor", "bob@h", 22, COOKIE)
    with pytest.raises(HandshakeError, match="version mismatch") as info:
        acc.receive_data(encode_frame(["HELLO", 99, "alice@h", {"future": "layout"}]))
    assert info.value.kind == "version"
    (reject,) = FrameDecoder().feed(acc.data_to_send())
    assert reject[0] == "REJECT" and "version mismatch" in reject[1]
    init = Handshake("initiator", "alice@h", 11, COOKIE)
    with pytest.raises(HandshakeError, match="peer rejected us: version mismatch"):
        init.receive_data(encode_frame(reject))


@pytest.mark.parametrize("role", ["initiator", "acceptor"])
def test_oversize_handshake_frame(role: str) -> None:
    hs = Handshake(role, "bob@h", 22, COOKIE, max_frame_size=4096)
    with pytest.raises(HandshakeError, match="frame too large") as info:
        hs.receive_data(b"GET ")  # an HTTP client, say
    assert info.value.kind == "too_large"


@pytest.mark.parametrize(
    "role, message",
    [
        ("acceptor", ["CHALLENGE"]),
        ("acceptor", ["HELLO"]),
        ("acceptor", ["HELLO", PROTOCOL_VERSION, "alice@h", 1, "", b"short"]),
        ("acceptor", ["HELLO", PROTOCOL_VERSION, "", 1, "", b"\x00" * 32]),
        ("acceptor", ["HELLO", PROTOCOL_VERSION, "alice@h", "1", "", b"\x00" * 32]),
        ("acceptor", ["REJECT", "x"]),
        ("acceptor", [1, 2, 3]),
        ("acceptor", "HELLO"),
        ("initiator", ["ACK"]),
        ("initiator", ["CHALLENGE", "bob@h", 2, "", b"\x00" * 32, b"not a bool"]),
        ("initiator", ["CHALLENGE", "bob@h", 2, "", b"\x00" * 32]),
        ("initiator", ["REJECT"]),
        ("initiator", ["REJECT", 5]),
        ("initiator", {"a": 1}),
    ],
)
def test_bad_handshake_messages(role: str, message: Any) -> None:
    hs = Handshake(role, "bob@h", 22, COOKIE)
    with pytest.raises(HandshakeError, match="bad data") as info:
        hs.receive_data(encode_frame(message) if isinstance(message, list) else _raw_frame(message))
    assert info.value.kind == "bad_data"


def _raw_frame(term: Any) -> bytes:
    body = codec.encode(term)
    return struct.pack(">I", len(body)) + body


def test_acceptor_refuses_data_before_its_challenge() -> None:
    init, acc = _pair()
    with pytest.raises(HandshakeError, match="before our challenge"):
        acc.receive_data(init.data_to_send() + encode_frame(["REPLY", b"\x00" * 32]))


def test_unexpected_peer_name() -> None:
    init, acc = _pair(expected_peer="carol@h")
    acc.receive_data(init.data_to_send())
    acc.next_event()
    acc.accept()
    with pytest.raises(HandshakeError, match="carol@h") as info:
        init.receive_data(acc.data_to_send())
    assert info.value.kind == "name"


def test_peer_with_our_own_name_is_refused() -> None:
    acc = Handshake("acceptor", "alice@h", 22, COOKIE)
    init = Handshake("initiator", "alice@h", 11, COOKIE)
    with pytest.raises(HandshakeError, match="own name") as info:
        acc.receive_data(init.data_to_send())
    assert info.value.kind == "name"


def test_handshake_constructor_checks() -> None:
    with pytest.raises(ValueError):
        Handshake("server", "a@h", 1, COOKIE)
    with pytest.raises(ValueError):
        Handshake("initiator", "a@h", 1, "")
    with pytest.raises(ValueError):
        Handshake("initiator", "", 1, COOKIE)


def test_handshake_error_is_a_protocol_error() -> None:
    assert issubclass(HandshakeError, ProtocolError)
    assert issubclass(FrameTooLarge, ProtocolError)
    assert issubclass(MalformedFrame, ProtocolError)


# --- fuzzing the handshake --------------------------------------------------


def _fuzz_handshake(hs: Handshake, chunks) -> None:
    try:
        for chunk in chunks:
            hs.receive_data(chunk)
            while True:
                ev = hs.next_event()
                if ev is None:
                    break
                if isinstance(ev, (PeerHello, PeerProved, PeerAlive)):
                    hs.accept()
            hs.data_to_send()
    except ProtocolError:
        pass


_hello = encode_frame(["HELLO", PROTOCOL_VERSION, "alice@h", 11, "h:1", b"\x01" * 32])
_handshake_streams = st.one_of(
    st.binary(max_size=200),
    st.lists(st.binary(max_size=40), max_size=4).map(
        lambda bodies: b"".join(struct.pack(">I", len(b)) + b for b in bodies)
    ),
    st.binary(max_size=100).map(lambda tail: _hello + tail),
    st.lists(
        st.sampled_from(
            [
                ["HELLO", PROTOCOL_VERSION, "alice@h", 11, "h:1", b"\x01" * 32],
                ["CHALLENGE", "bob@h", 22, "h:2", b"\x02" * 32, False],
                ["CHALLENGE", "bob@h", 22, "h:2", b"\x02" * 32, True],
                ["REPLY", b"\x04" * 32],
                ["ACK", b"\x05" * 32],
                ["ACK"],
                ["REJECT", "go away"],
                ["HELLO", 2, "x"],
                [P.TICK],
            ]
        ),
        max_size=4,
    ).map(lambda ms: b"".join(encode_frame(m) for m in ms)),
)


@settings(max_examples=300, deadline=None)
@given(
    _handshake_streams,
    st.sampled_from(["initiator", "acceptor"]),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_any_bytes_to_a_handshake_raise_only_protocol_errors(data: bytes, role: str, cuts: List[int]) -> None:
    for chunks in ([data], list(_by_byte(data)), _chunks(data, cuts)):
        _fuzz_handshake(Handshake(role, "bob@h", 22, COOKIE, max_frame_size=128), chunks)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_handshake_transcripts_raise_only_protocol_errors(data: st.DataObject) -> None:
    init, acc = _pair()
    transcript: List[Tuple[str, bytes]] = []
    for _ in range(3):
        out = init.data_to_send()
        transcript.append(("to_acceptor", out))
        acc.receive_data(out)
        if isinstance(acc.next_event(), (PeerHello, PeerProved)):
            acc.accept()
        out = acc.data_to_send()
        transcript.append(("to_initiator", out))
        init.receive_data(out)
    assert init.established
    side = data.draw(st.sampled_from(["to_acceptor", "to_initiator"]))
    stream = bytearray(b"".join(d for s, d in transcript if s == side))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    role = "acceptor" if side == "to_acceptor" else "initiator"
    rand = _counter_rand()
    hs = Handshake(role, "bob@h" if role == "acceptor" else "alice@h", 22, COOKIE, rand=rand)
    _fuzz_handshake(hs, [bytes(stream)])


# --- simultaneous connect ---------------------------------------------------


def test_simultaneous_connect_winner() -> None:
    assert simultaneous_connect_winner("a@h", "b@h") == "outgoing"
    assert simultaneous_connect_winner("b@h", "a@h") == "incoming"
    with pytest.raises(ValueError):
        simultaneous_connect_winner("a@h", "a@h")


@given(st.text(min_size=1), st.text(min_size=1))
def test_simultaneous_connect_winner_is_deterministic_and_antisymmetric(a: str, b: str) -> None:
    if a == b:
        return
    first = simultaneous_connect_winner(a, b)
    assert first == simultaneous_connect_winner(a, b)
    assert {first, simultaneous_connect_winner(b, a)} == {"outgoing", "incoming"}
    # Exactly one of the two connections survives: the one started by the lower name.
    winner_starter = a if first == "outgoing" else b
    assert winner_starter == min(a, b)


# --- the decoder's small-body path gives what codec.decode gives ---------------


def _reference_frames(data: bytes) -> Tuple[list, bool]:
    """The whole frames of ``data`` decoded one by one with codec.decode, and whether one failed."""
    out: list = []
    pos = 0
    while len(data) - pos >= 4:
        (n,) = struct.unpack_from(">I", data, pos)
        if len(data) - pos - 4 < n:
            break
        try:
            out.append(codec.decode(data[pos + 4 : pos + 4 + n]))
        except codec.CodecError:
            return out, True
        pos += 4 + n
    return out, False


_mixed_bodies = st.lists(
    st.one_of(
        st.sampled_from(VALID_FRAMES).map(encode_frame),
        # Bodies on both sides of the small-body bound, tuples and pids inside.
        st.integers(codec.SMALL_BODY - 40, codec.SMALL_BODY + 40).map(
            lambda n: encode_frame([P.SEND, PID_B, ("pad", "x" * n, (1, PID_B))])
        ),
        st.binary(max_size=30).map(lambda b: struct.pack(">I", len(b)) + b),
    ),
    max_size=6,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_mixed_bodies, st.lists(st.integers(0, 10_000), max_size=8))
def test_frames_decode_as_codec_decode_does_however_chunked(data: bytes, cuts: List[int]) -> None:
    expected, fails = _reference_frames(data)
    for chunks in ([data], _chunks(data, cuts), [bytearray(c) for c in _chunks(data, cuts)]):
        dec = FrameDecoder()
        got: list = []
        failed = False
        try:
            for chunk in chunks:
                got += dec.feed(chunk)
        except MalformedFrame:
            failed = True
        assert failed == fails
        # A chunk that holds a bad frame returns none of its frames (it raises).
        assert got == (expected[: len(got)] if fails else expected)
        assert [type(f) for f in got] == [type(f) for f in expected[: len(got)]]
