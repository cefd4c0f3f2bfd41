"""snowg.ws._frames: frame encoding and the checking reader, byte by byte (no sockets)."""

import io
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snowg.ws import _frames as fr


def client_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """A client frame as a browser would send it (masked), or broken on purpose."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def reader(data, max_size=1 << 20):
    return fr.FrameReader(io.BytesIO(data).read, max_size)


def test_encode_close_is_code_then_utf8_reason():
    assert fr.encode_close(1000) == b"\x88\x02\x03\xe8"
    assert fr.encode_close(4001, "bye\u00e9") == b"\x88\x07\x0f\xa1bye\xc3\xa9"
    assert fr.encode_close(None) == b"\x88\x00"
    long = fr.encode_close(1000, "\u00e9" * 100)  # 200 bytes of reason: cut on a character boundary
    assert long[1] == 2 + 122 and long[4:].decode("utf-8") == "\u00e9" * 61


def test_encode_frame_lengths():
    assert fr.encode_frame(fr.OP_TEXT, b"a" * 125)[:2] == b"\x81\x7d"
    assert fr.encode_frame(fr.OP_TEXT, b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert fr.encode_frame(fr.OP_BINARY, b"a" * 65536)[:10] == b"\x82\x7f" + struct.pack("!Q", 65536)
    assert fr.encode_data("h\u00e9") == b"\x81\x03h\xc3\xa9"
    assert fr.encode_data(bytearray(b"\x00\x01")) == b"\x82\x02\x00\x01"
    with pytest.raises(TypeError):
        fr.encode_data(42)


def test_unmask_matches_the_definition():
    payload, key = os.urandom(1001), os.urandom(4)
    assert fr.unmask(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert fr.unmask(b"", key) == b""


def test_reader_messages_fragments_and_control_frames_in_between():
    data = (
        client_frame(fr.OP_TEXT, "h\u00e9".encode())
        + client_frame(fr.OP_BINARY, b"\x00\xff")
        + client_frame(fr.OP_TEXT, b"ab", fin=False)
        + client_frame(fr.OP_PING, b"p")
        + client_frame(fr.OP_CONT, b"cd", fin=False)
        + client_frame(fr.OP_CONT, b"e")
        + client_frame(fr.OP_PONG, b"q")
        + client_frame(fr.OP_CLOSE, struct.pack("!H", 4000) + b"why")
    )
    r = reader(data)
    assert r.next_message() == (fr.OP_TEXT, "h\u00e9")
    assert r.next_message() == (fr.OP_BINARY, b"\x00\xff")
    assert r.next_message() == (fr.OP_PING, b"p")
    assert r.next_message() == (fr.OP_TEXT, "abcde")
    assert r.next_message() == (fr.OP_PONG, b"q")
    assert r.next_message() == (fr.OP_CLOSE, (4000, "why"))
    with pytest.raises(EOFError):
        r.next_message()


def test_too_big_is_refused_on_the_header_without_reading_the_payload():
    asked = []
    head = client_frame(fr.OP_BINARY, length=1 << 40)[:14]  # 2 + 8 + 4 mask bytes, no payload

    stream = io.BytesIO(head)

    def read(n):
        asked.append(n)
        if n > 1 << 20:
            raise AssertionError("the reader tried to read the payload")
        return stream.read(n)

    r = fr.FrameReader(read, 1024)
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert e.value.code == 1009 and not e.value.fatal
    assert max(asked) <= 8


def test_too_big_message_is_skipped_and_the_close_reply_still_read():
    data = (
        client_frame(fr.OP_TEXT, b"x" * 600, fin=False)
        + client_frame(fr.OP_CONT, b"y" * 600, fin=False)  # 1200 > 1000: refused here
        + client_frame(fr.OP_CONT, b"z" * 10)
        + client_frame(fr.OP_CLOSE, struct.pack("!H", 1000))
    )
    r = reader(data, max_size=1000)
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert e.value.code == 1009
    assert r.next_message() == (fr.OP_CLOSE, (1000, ""))


@pytest.mark.parametrize(
    "frame, code",
    [
        (client_frame(fr.OP_TEXT, b"\xff\xfe"), 1007),
        (client_frame(fr.OP_TEXT, b"abc", mask=False), 1002),
        (client_frame(fr.OP_TEXT, b"abc", rsv=0x40), 1002),
        (client_frame(0x3, b"abc"), 1002),
        (client_frame(fr.OP_PING, b"abc", fin=False), 1002),
        (client_frame(fr.OP_PING, b"a" * 126), 1002),
        (client_frame(fr.OP_CONT, b"abc"), 1002),
        (client_frame(fr.OP_TEXT, b"a", fin=False) + client_frame(fr.OP_TEXT, b"b"), 1002),
        (client_frame(fr.OP_CLOSE, b"\x03"), 1002),
        (client_frame(fr.OP_CLOSE, struct.pack("!H", 1005)), 1002),
        (client_frame(fr.OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "bad-utf8",
        "unmasked",
        "rsv",
        "opcode",
        "fragmented-ping",
        "long-ping",
        "stray-cont",
        "interleaved",
        "close-1-byte",
        "close-1005",
        "close-reason-utf8",
    ],
)
def test_reader_errors(frame, code):
    with pytest.raises(fr.FrameError) as e:
        reader(frame).next_message()
    assert e.value.code == code


def test_close_codes():
    for ok in (1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999):
        assert fr.is_valid_close_code(ok)
    for bad in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000):
        assert not fr.is_valid_close_code(bad)


# ------------------------------------------------------------- fragment limit


def fragments(n, opcode=fr.OP_TEXT, payload=b""):
    """One message in ``n`` frames (the first ``opcode``, then continuations), each with ``payload``."""
    frames = [client_frame(opcode, payload, fin=n == 1)]
    frames += [client_frame(fr.OP_CONT, payload, fin=i == n - 1) for i in range(1, n)]
    return b"".join(frames)


def test_a_message_may_come_in_max_fragments_frames_empty_ones_included():
    r = fr.FrameReader(io.BytesIO(fragments(5, fr.OP_BINARY) + fragments(5, payload=b"a")).read, 1 << 20, 5)
    assert r.next_message() == (fr.OP_BINARY, b"")
    assert r.next_message() == (fr.OP_TEXT, "aaaaa")


def test_one_fragment_more_closes_1009_on_its_header():
    data = fragments(6) + client_frame(fr.OP_CLOSE, struct.pack("!H", 1000))
    stream = io.BytesIO(data)
    r = fr.FrameReader(stream.read, 1 << 20, 5)
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert (e.value.code, e.value.reason) == (1009, "message in more than 5 fragments")
    assert not e.value.fatal
    assert stream.tell() == 5 * 6 + 6  # five frames, and the sixth one's header (2 + 4 mask bytes) only
    assert r.next_message() == (fr.OP_CLOSE, (1000, ""))  # still in step


def test_default_fragment_limit():
    assert fr.MAX_FRAGMENTS == 1024
    r = reader(fragments(fr.MAX_FRAGMENTS) + fragments(fr.MAX_FRAGMENTS + 1))
    assert r.next_message() == (fr.OP_TEXT, "")
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert e.value.code == 1009


def test_control_frames_between_fragments_do_not_count():
    data = (
        client_frame(fr.OP_TEXT, b"a", fin=False)
        + client_frame(fr.OP_PING, b"1")
        + client_frame(fr.OP_PONG, b"2")
        + client_frame(fr.OP_CONT, b"b")
    )
    r = fr.FrameReader(io.BytesIO(data).read, 1 << 20, 2)
    assert r.next_message() == (fr.OP_PING, b"1")
    assert r.next_message() == (fr.OP_PONG, b"2")
    assert r.next_message() == (fr.OP_TEXT, "ab")


# ----------------------------------------------------- UTF-8 as fragments arrive


def test_invalid_utf8_fails_at_the_first_bad_fragment():
    data = (
        client_frame(fr.OP_TEXT, b"ok", fin=False)
        + client_frame(fr.OP_CONT, b"\xc3\x28", fin=False)  # invalid here
        + client_frame(fr.OP_CONT, b"never read")
    )
    stream = io.BytesIO(data)
    r = fr.FrameReader(stream.read, 1 << 20)
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert e.value.code == 1007
    assert stream.tell() == len(data) - len(client_frame(fr.OP_CONT, b"never read"))


def test_a_character_split_across_fragments_is_valid():
    euro = "\u20ac".encode()  # 3 bytes
    data = (
        client_frame(fr.OP_TEXT, b"x" + euro[:1], fin=False)
        + client_frame(fr.OP_CONT, euro[1:2], fin=False)
        + client_frame(fr.OP_CONT, b"", fin=False)
        + client_frame(fr.OP_CONT, euro[2:] + b"y")
    )
    assert reader(data).next_message() == (fr.OP_TEXT, "x\u20acy")


def test_a_character_cut_at_the_end_of_the_message_is_invalid():
    data = client_frame(fr.OP_TEXT, b"x", fin=False) + client_frame(fr.OP_CONT, "\u20ac".encode()[:2])
    with pytest.raises(fr.FrameError) as e:
        reader(data).next_message()
    assert e.value.code == 1007


@pytest.mark.parametrize(
    "payload",
    [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xff"],
    ids=["surrogate", "above-U+10FFFF", "overlong", "ff"],
)
def test_invalid_sequences_in_fragments(payload):
    data = client_frame(fr.OP_TEXT, b"a", fin=False) + client_frame(fr.OP_CONT, payload, fin=False)
    with pytest.raises(fr.FrameError) as e:
        reader(data).next_message()  # fails without waiting for the end of the message
    assert e.value.code == 1007


def test_binary_fragments_are_not_decoded():
    data = client_frame(fr.OP_BINARY, b"\xc3", fin=False) + client_frame(fr.OP_CONT, b"\x28")
    assert reader(data).next_message() == (fr.OP_BINARY, b"\xc3\x28")


# -------------------------------------------------------------- bounded turns


def test_the_reader_yields_after_a_turn_of_empty_frames():
    n = 10 * 1000
    data = fragments(n) + client_frame(fr.OP_TEXT, b"after")
    stream = io.BytesIO(data)
    turn = 100 * fr.FRAME_COST  # a hundred empty frames per turn
    r = fr.FrameReader(stream.read, 1 << 20, n, turn)
    yields = 0
    positions = []
    while True:
        op, value = r.next_message()
        if op != fr.OP_YIELD:
            break
        yields += 1
        positions.append(stream.tell())
    assert (op, value) == (fr.OP_TEXT, "")
    assert yields == n // 100 - 1
    # Each turn read exactly a hundred frames (6 bytes each, the first one 6 too).
    assert all(b - a == 100 * 6 for a, b in zip(positions, positions[1:]))
    assert r.next_message() == (fr.OP_YIELD, None)  # the last turn ended with the message
    assert r.next_message() == (fr.OP_TEXT, "after")


def test_a_turn_counts_payload_bytes_and_control_frames():
    data = b"".join(client_frame(fr.OP_PING, b"x" * 100) for _ in range(10)) + client_frame(fr.OP_BINARY, b"y" * 1000)
    r = fr.FrameReader(io.BytesIO(data).read, 1 << 20, turn=300)  # two pings (2 * 164) use a turn up
    ops = [r.next_message()[0] for _ in range(16)]
    assert ops == [fr.OP_PING, fr.OP_PING, fr.OP_YIELD] * 5 + [fr.OP_BINARY]


def test_without_a_turn_the_reader_never_yields():
    r = fr.FrameReader(io.BytesIO(fragments(5000)).read, 1 << 20, 5000)
    assert r.next_message() == (fr.OP_TEXT, "")


# ------------------------------------------------------- permessage-deflate


def deflate_reader(data, max_size=1 << 20, no_context=False, turn=None):
    from snowg.ws import _deflate as dfl

    inflater = dfl.Inflater(dfl.DeflateParams(client_no_context_takeover=no_context))
    return fr.FrameReader(io.BytesIO(data).read, max_size, turn=turn, inflater=inflater)


def deflated(payload, compressor=None):
    import zlib

    c = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_messages_whole_and_in_fragments_with_control_frames_between():
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)  # the client keeps its context
    one = deflated("h\u00e9llo ".encode() * 50, c)
    two = deflated("h\u00e9llo ".encode() * 51, c)  # refers to the first
    data = (
        client_frame(fr.OP_TEXT, one, rsv=0x40)
        + client_frame(fr.OP_BINARY, two[:3], fin=False, rsv=0x40)
        + client_frame(fr.OP_PING, b"p")
        + client_frame(fr.OP_CONT, two[3:7], fin=False)
        + client_frame(fr.OP_CONT, two[7:])
        + client_frame(fr.OP_TEXT, b"plain")  # a message sent uncompressed
    )
    r = deflate_reader(data)
    assert r.next_message() == (fr.OP_TEXT, "h\u00e9llo " * 50)
    assert r.next_message() == (fr.OP_PING, b"p")
    assert r.next_message() == (fr.OP_BINARY, "h\u00e9llo ".encode() * 51)
    assert r.next_message() == (fr.OP_TEXT, "plain")


@pytest.mark.parametrize(
    "frame, inflater",
    [
        (client_frame(fr.OP_TEXT, b"x", rsv=0x40), False),  # RSV1 without the extension
        (client_frame(fr.OP_PING, b"x", rsv=0x40), True),
        (client_frame(fr.OP_CLOSE, b"\x03\xe8", rsv=0x40), True),
        (client_frame(fr.OP_TEXT, b"x", fin=False) + client_frame(fr.OP_CONT, b"y", rsv=0x40), True),
        (client_frame(fr.OP_TEXT, b"x", rsv=0x60), True),
        (client_frame(fr.OP_TEXT, b"\xff\xff\xff\xff", rsv=0x40), True),  # not DEFLATE
    ],
)
def test_rsv1_errors_are_1002(frame, inflater):
    r = deflate_reader(frame) if inflater else reader(frame)
    with pytest.raises(fr.FrameError) as e:
        r.next_message()
    assert e.value.code == fr.CLOSE_PROTOCOL_ERROR


def test_inflating_past_the_limit_is_1009_in_one_frame_or_several():
    bomb = deflated(bytes(1 << 20))
    assert len(bomb) < 2000
    with pytest.raises(fr.FrameError) as e:
        deflate_reader(client_frame(fr.OP_BINARY, bomb, rsv=0x40), max_size=65536).next_message()
    assert e.value.code == fr.CLOSE_TOO_BIG
    half = len(bomb) // 2
    data = client_frame(fr.OP_BINARY, bomb[:half], fin=False, rsv=0x40) + client_frame(fr.OP_CONT, bomb[half:])
    with pytest.raises(fr.FrameError) as e:
        deflate_reader(data, max_size=65536).next_message()
    assert e.value.code == fr.CLOSE_TOO_BIG
    # exactly at the limit is fine
    exact = deflated(bytes(65536))
    assert deflate_reader(client_frame(fr.OP_BINARY, exact, rsv=0x40), max_size=65536).next_message() == (
        fr.OP_BINARY,
        bytes(65536),
    )


def test_compressed_invalid_utf8_is_1007():
    with pytest.raises(fr.FrameError) as e:
        deflate_reader(client_frame(fr.OP_TEXT, deflated(b"ok \xff"), rsv=0x40)).next_message()
    assert e.value.code == fr.CLOSE_INVALID_DATA


def test_inflated_bytes_count_towards_the_turn():
    msg = client_frame(fr.OP_BINARY, deflated(bytes(70000)), rsv=0x40)
    r = deflate_reader(msg * 2, turn=65536, no_context=True)
    assert r.next_message() == (fr.OP_BINARY, bytes(70000))
    assert r.next_message() == (
        fr.OP_YIELD,
        None,
    )  # 70,000 inflated bytes used the turn (the wire bytes alone would not)
    assert r.next_message() == (fr.OP_BINARY, bytes(70000))


def test_encode_frame_sets_rsv1():
    assert fr.encode_frame(fr.OP_TEXT, b"x", rsv1=True)[:2] == b"\xc1\x01"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_the_deflate_reader_only_ever_raises_frame_errors_or_eof(data, compressed_first):
    """Any bytes after a compressed frame header: FrameError or EOFError, nothing else."""
    head = client_frame(fr.OP_TEXT, data, rsv=0x40) if compressed_first else data
    r = deflate_reader(head + data, max_size=4096)
    for _ in range(50):
        try:
            r.next_message()
        except (fr.FrameError, EOFError):
            return
