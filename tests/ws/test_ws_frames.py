"""snowg.ws._frames: frame encoding and the checking reader, byte by byte (no sockets)."""

import io
import os
import struct

import pytest

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
