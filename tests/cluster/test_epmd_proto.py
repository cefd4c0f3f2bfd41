"""The port mapper's sans-IO protocol: every request and reply, whole, byte by byte, malformed, fuzzed."""

from __future__ import annotations

import struct
from typing import Any, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snowg
from snowg.cluster._epmd_proto import (
    MAX_EXTRA,
    MAX_NAMES_REPLY,
    MAX_REQUEST,
    Alive2Reply,
    Alive2ReplyParser,
    Alive2Request,
    EpmdProtocolError,
    KillRequest,
    NamesReply,
    NamesReplyParser,
    NamesRequest,
    NodeEntry,
    Port2Reply,
    Port2ReplyParser,
    PortPlease2Request,
    RequestParser,
    StopRequest,
    TextReplyParser,
    encode_alive2_reply,
    encode_names_reply,
    encode_port2_reply,
    encode_request,
    snowg_extra,
)

BOB = NodeEntry("bob", 9100, 77, 0, 6, 5, snowg_extra("bob@10.0.0.7"))
ERL = NodeEntry("x", 40000, 77, 0, 6, 6, b"")
UNICODE = NodeEntry("\u00e9t\u00e9-\u2603", 1, 72, 0, 5, 5, b"\x00\xff")
LONGEST = NodeEntry("\u2603" * 255, 65535, 77, 0, 6, 5, b"e" * MAX_EXTRA)

REQUESTS = [
    Alive2Request(BOB),
    Alive2Request(ERL),
    Alive2Request(UNICODE),
    Alive2Request(LONGEST),
    PortPlease2Request("bob"),
    PortPlease2Request("\u2603" * 255),
    NamesRequest(),
    KillRequest(),
    StopRequest("bob"),
]


def parse_whole(data: bytes) -> Any:
    return RequestParser().feed(data)


def parse_bytewise(data: bytes) -> Any:
    parser = RequestParser()
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    assert all(r is None for r in results[:-1])
    return results[-1]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_round_trips_whole_and_byte_by_byte(request_):
    data = encode_request(request_)
    assert struct.unpack(">H", data[:2])[0] == len(data) - 2
    assert parse_whole(data) == request_
    assert parse_bytewise(data) == request_


def test_request_wire_format_is_epmds():
    data = encode_request(Alive2Request(NodeEntry("ab", 0x1234, 77, 0, 6, 5, b"xy")))
    assert data == b"\x00\x11" + b"x" + b"\x12\x34" + b"M\x00" + b"\x00\x06\x00\x05" + b"\x00\x02ab" + b"\x00\x02xy"
    assert encode_request(PortPlease2Request("ab")) == b"\x00\x03zab"
    assert encode_request(NamesRequest()) == b"\x00\x01n"
    assert encode_request(KillRequest()) == b"\x00\x01k"
    assert encode_request(StopRequest("ab")) == b"\x00\x03sab"


def test_port_please_with_a_trailing_nul_as_c_clients_send():
    assert parse_whole(b"\x00\x05zbob\x00") == PortPlease2Request("bob")


def test_node_entry_full_name():
    assert BOB.full_name == "bob@10.0.0.7"
    assert ERL.full_name is None
    # extra that names another node, or is not a node name, is not trusted
    assert NodeEntry("bob", 1, 77, 0, 6, 5, snowg_extra("eve@h")).full_name is None
    assert NodeEntry("bob", 1, 77, 0, 6, 5, b"snowg1 bob@").full_name is None
    assert NodeEntry("bob", 1, 77, 0, 6, 5, b"snowg1 bob@h\n").full_name is None
    assert NodeEntry("bob", 1, 77, 0, 6, 5, b"snowg1 \xff@h").full_name is None


# ------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x00\x00", "length 0"),
        (struct.pack(">H", MAX_REQUEST + 1), f"length {MAX_REQUEST + 1}"),
        (b"\xff\xff", "length 65535"),
        (b"\x00\x01?", "unknown request tag 63"),
        (b"\x00\x02nX", "after its tag"),
        (b"\x00\x02kX", "after its tag"),
        (b"\x00\x01z", "PORT_PLEASE2_REQ node name"),
        (b"\x00\x03z\xff\xfe", "not UTF-8"),
        (b"\x00\x04za\x00b", "without NUL"),
        (b"\x00\x05x\x00\x01M\x00", "shorter than its 13-byte minimum"),
        (b"\x00\x0ex\x00\x01M\x00\x00\x06\x00\x05\x00\x09ab\x00", "name length 9 runs past"),
        (b"\x00\x0fx\x00\x01M\x00\x00\x06\x00\x05\x00\x02ab\x00\x05", "extra length 5 does not match"),
        (b"\x00\x0dx\x00\x01M\x00\x00\x06\x00\x05\x00\x00\x00\x00", "ALIVE2_REQ node name"),
    ],
)
def test_malformed_requests_are_refused_naming_the_fault(data, words):
    with pytest.raises(EpmdProtocolError, match=words):
        parse_bytewise(data)
    with pytest.raises(EpmdProtocolError, match=words):
        parse_whole(data)


def test_an_over_long_length_is_refused_before_its_body_is_read():
    parser = RequestParser()
    assert parser.feed(b"\x7f") is None
    with pytest.raises(EpmdProtocolError, match="outside the protocol"):
        parser.feed(b"\xff")


def test_one_request_per_connection():
    data = encode_request(NamesRequest())
    with pytest.raises(EpmdProtocolError, match="after the connection's request"):
        RequestParser().feed(data + b"\x00")
    parser = RequestParser()
    assert parser.feed(data) == NamesRequest()
    with pytest.raises(EpmdProtocolError, match="after the connection's request"):
        parser.feed(b"\x00")


def test_the_protocol_error_is_a_node_error():
    assert issubclass(EpmdProtocolError, snowg.NodeError)


def test_names_and_extras_the_protocol_cannot_carry_are_the_callers_error():
    with pytest.raises(ValueError, match="1 to 255 characters"):
        encode_request(PortPlease2Request(""))
    with pytest.raises(ValueError, match="1 to 255 characters"):
        encode_request(PortPlease2Request("a" * 256))
    with pytest.raises(ValueError, match="without NUL"):
        encode_request(StopRequest("a\0b"))
    with pytest.raises(ValueError, match="over the protocol"):
        encode_request(Alive2Request(NodeEntry("a", 1, 77, 0, 6, 5, b"e" * (MAX_EXTRA + 1))))


# ------------------------------------------------------------------ replies


def feed_all(parser: Any, data: bytes, bytewise: bool) -> Any:
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    result = None
    for chunk in chunks:
        result = parser.feed(chunk)
    return result


@pytest.mark.parametrize("bytewise", [False, True])
def test_alive2_replies_both_forms(bytewise):
    data = encode_alive2_reply(0, 0xDEADBEEF, extended=True)
    assert data == b"v\x00\xde\xad\xbe\xef"
    assert feed_all(Alive2ReplyParser(), data, bytewise) == Alive2Reply(0, 0xDEADBEEF)
    data = encode_alive2_reply(1, 3, extended=False)
    assert data == b"y\x01\x00\x03"
    assert feed_all(Alive2ReplyParser(), data, bytewise) == Alive2Reply(1, 3)


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("entry", [BOB, ERL, UNICODE, LONGEST], ids=["bob", "erl", "unicode", "longest"])
def test_port2_reply_with_an_entry(entry, bytewise):
    data = encode_port2_reply(entry)
    assert data[:2] == b"w\x00"
    parser = Port2ReplyParser()
    assert feed_all(parser, data, bytewise) == Port2Reply(0, entry)
    assert parser.close() == Port2Reply(0, entry)


def test_port2_reply_not_registered():
    assert encode_port2_reply(None) == b"w\x01"
    assert feed_all(Port2ReplyParser(), b"w\x01", True) == Port2Reply(1, None)


@pytest.mark.parametrize("bytewise", [False, True])
def test_names_reply(bytewise):
    listed = [("bob", 9100), ("\u2603 x", 1), ("a" * 255, 65535)]
    data = encode_names_reply(4369, listed)
    assert data.startswith(b"\x00\x00\x11\x11name bob at port 9100\n")
    parser = NamesReplyParser()
    feed_all(parser, data, bytewise)
    assert parser.close() == NamesReply(4369, tuple(listed))
    empty = NamesReplyParser()
    empty.feed(b"\x00\x00\x11\x11")
    assert empty.close() == NamesReply(4369, ())


def test_text_replies():
    parser = TextReplyParser()
    parser.feed(b"O")
    parser.feed(b"K")
    assert parser.close() == "OK"
    with pytest.raises(EpmdProtocolError, match="over 16 bytes"):
        TextReplyParser().feed(b"x" * 17)


@pytest.mark.parametrize(
    "parser, data, words",
    [
        (Alive2ReplyParser, b"w\x00\x00\x00", "tag 119"),
        (Alive2ReplyParser, b"v\x00\x00\x00\x00\x01\x00", "1 bytes after"),
        (Port2ReplyParser, b"v\x00", "tag 118"),
        (Port2ReplyParser, b"w\x01\x00", "1 bytes after"),
        (Port2ReplyParser, b"w\x00\x00\x01M\x00\x00\x06\x00\x05\xff\xff", "name length 65535"),
        (Port2ReplyParser, b"w\x00\x00\x01M\x00\x00\x06\x00\x05\x00\x01a\xff\xff", "extra length 65535"),
        (Port2ReplyParser, b"w\x00\x00\x01M\x00\x00\x06\x00\x05\x00\x01\xff\x00\x00", "not UTF-8"),
        (NamesReplyParser, b"\x00\x00\x11\x11nom bob at port 1\n", "is not 'name NAME at port N'"),
        (NamesReplyParser, b"\x00\x00\x11\x11name bob at port 99999\n", "is not 'name NAME at port N'"),
        (NamesReplyParser, b"\x00\x00\x11\x11name bob at port x\n", "is not 'name NAME at port N'"),
        (NamesReplyParser, b"\x00\x00\x11\x11name  at port 1\n", "names reply node name"),
        (NamesReplyParser, b"\x00\x00\x11\x11" + b"n" * 2000, "line of the mapper's names reply is over"),
    ],
)
def test_malformed_replies_are_refused_naming_the_fault(parser, data, words):
    with pytest.raises(EpmdProtocolError, match=words):
        feed_all(parser(), data, False)
    with pytest.raises(EpmdProtocolError, match=words):
        feed_all(parser(), data, True)


CUT_SHORT = [(Alive2ReplyParser, b"v\x00\x00"), (Port2ReplyParser, b"w\x00\x00"), (NamesReplyParser, b"\x00\x00")]


@pytest.mark.parametrize("parser, data", [*CUT_SHORT, (NamesReplyParser, b"\0\0\0\0name a")])
def test_replies_cut_short_by_close(parser, data):
    p = parser()
    p.feed(data)
    with pytest.raises(EpmdProtocolError, match="cut short|closed the connection after"):
        p.close()


def test_a_names_reply_is_bounded():
    parser = NamesReplyParser()
    parser.feed(b"\x00\x00\x11\x11")
    line = b"name %s at port 1\n" % (b"a" * 200)
    with pytest.raises(EpmdProtocolError, match=f"over {MAX_NAMES_REPLY} bytes"):
        for _ in range(MAX_NAMES_REPLY // len(line) + 2):
            parser.feed(line)


# ------------------------------------------------------------------ fuzzing


def chunked(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


entries = st.builds(
    NodeEntry,
    name=st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=255),
    port=st.integers(0, 65535),
    node_type=st.sampled_from([72, 77]),
    protocol=st.integers(0, 255),
    highest=st.integers(0, 65535),
    lowest=st.integers(0, 65535),
    extra=st.binary(max_size=MAX_EXTRA),
)


@settings(max_examples=200, deadline=None)
@given(entries, st.lists(st.integers(0, 5000), max_size=8))
def test_fuzz_any_chunking_of_a_registration_parses_the_same(entry, cuts):
    data = encode_request(Alive2Request(entry))
    parser = RequestParser()
    results = [parser.feed(chunk) for chunk in chunked(data, cuts)]
    assert results[-1] == Alive2Request(entry)
    assert all(r is None for r in results[:-1])
    reply = encode_port2_reply(entry)
    rparser = Port2ReplyParser()
    rresults = [rparser.feed(chunk) for chunk in chunked(reply, cuts)]
    assert rresults[-1] == Port2Reply(0, entry)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_fuzz_garbage_gives_a_request_or_a_protocol_error_never_anything_else(data, cuts):
    for parser_type in (RequestParser, Alive2ReplyParser, Port2ReplyParser, NamesReplyParser, TextReplyParser):
        parser: Any = parser_type()
        result: Optional[Any] = None
        try:
            for chunk in chunked(data, cuts):
                result = parser.feed(chunk) or result
            if parser_type is not RequestParser:
                result = parser.close()
        except EpmdProtocolError:
            continue
        if parser_type is RequestParser and result is not None:
            assert encode_request(result) == data[: len(encode_request(result))]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0x78, 0x7A, 0x6E, 0x6B, 0x73]), st.binary(max_size=2100))
def test_fuzz_bodies_of_known_tags(tag, body):
    data = struct.pack(">H", min(len(body) + 1, 0xFFFF)) + bytes([tag]) + body
    try:
        request = parse_whole(data)
    except EpmdProtocolError:
        return
    assert request is not None
