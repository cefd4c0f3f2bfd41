"""Decoding: no frame a peer sends can freeze the node or blow up its memory.

The node under test is this test process (so ``caplog`` sees its log). The
attacker is a raw TLS session that completed the real handshake (a
certificate of the cluster CA and the cookie) and then writes frames by
hand. The witness is a real peer node (an OS process started by
:mod:`snowg.testing`) with the test tick: it declares this node down if
nothing reaches it for ``4 * tick``, so a frozen node would lose it. Each
test names the attack, asserts its outcome exactly (the frame is refused: the
attacker's session alone is closed, with a log line naming it and the reason;
or, for a legal frame, it is delivered), and that the witness was served
meanwhile: its session stayed up (no ``NodeDown``) and its rpc works.

What one decode costs is counted by the sans-IO tests below (memory with
``tracemalloc``, frames fed one byte at a time), never timed.
"""

from __future__ import annotations

import itertools
import os
import struct
import tracemalloc
from typing import Any, List

import gevent
import msgpack
import pytest

import snowg
from snowg import Pid
from snowg.cluster import _codec as codec
from snowg.cluster._frames import EXIT2, SEND, validate_frame
from snowg.cluster._framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, FrameTooLarge, MalformedFrame, encode_frame
from snowg.testing import wait_for

import distfuncs as df
from support import log_lines, raw_session

pytestmark = pytest.mark.timeout(120)

_serial = itertools.count(1)
_LEN = struct.Struct(">I")
CREATION = 777


# ------------------------------------------------------------------ helpers


def frame_of_body(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def array_header(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n)


def send_body(me: Pid, payload: bytes) -> bytes:
    """The body of ``[SEND, me, <payload>]`` with ``payload`` already encoded."""
    return b"\x93" + msgpack.packb(SEND) + codec.encode(me) + payload


def ext(code: int, data: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, data))


def empty_arrays_body(me: Pid, size: int) -> bytes:
    """A SEND whose message is a list of empty lists, ``size`` bytes in all (the 64 MiB attack, scaled)."""
    head = send_body(me, b"")
    n = size - len(head) - 5
    return head + array_header(n) + b"\x90" * n


def nested_body(me: Pid, depth: int) -> bytes:
    return send_body(me, b"\x91" * depth + b"\xc0")


def forged_node_body(me: Pid) -> bytes:
    """A SEND whose message holds a pid of a node named with a newline (a forged log line)."""
    forged = ext(codec.EXT_PID, struct.pack(">qq", 1, 1) + b"evil@x\n2026-12-01 INFO forged line")
    return send_body(me, forged)


def huge_int_exit_body(me: Pid, sender: Pid, nbytes: int) -> bytes:
    """An EXIT2 from ``sender`` to ``me`` whose reason is an int of ``nbytes`` bytes."""
    return (
        b"\x94"
        + msgpack.packb(EXIT2)
        + codec.encode(sender)
        + codec.encode(me)
        + ext(codec.EXT_BIGINT, b"\x7f" * nbytes)
    )


class RawPeer:
    """The attacker: the real TLS and cookie handshake, then bytes written by hand."""

    def __init__(self, config: Any, node: Any) -> None:
        self.name = f"rawdec{next(_serial)}-{os.getpid()}@127.0.0.1"
        self.sock, _hs = raw_session(config, node.port, self.name, CREATION, node.name)
        host, port = self.sock.getsockname()[:2]
        self.address = f"{host}:{port}"
        assert wait_for(lambda: self.name in snowg.nodes(), timeout=10)

    def pid(self, id: int) -> Pid:
        return Pid(self.name, id, CREATION)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the node may refuse a frame at its header and close before the rest is written

    def wait_closed(self) -> None:
        """Read (and drop) what the node sends until it closes the connection."""
        with gevent.Timeout(10, AssertionError("the node did not close the attacker's session")):
            while True:
                try:
                    if not self.sock.recv(65536):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def attacker(snowg_cluster_config, snowg_node):
    raw = RawPeer(snowg_cluster_config, snowg_node)
    yield raw
    raw.close()


def refused(caplog, raw: RawPeer, reason: str) -> str:
    """The attacker's session closed as a protocol error, with one log line naming it and ``reason``."""
    raw.wait_closed()
    assert wait_for(lambda: raw.name not in snowg.nodes(), timeout=10)
    nd = snowg.receive(lambda m: type(m) is snowg.NodeDown and m.node == raw.name, timeout=10)
    assert nd.reason == "protocol_error"
    lines = [line for line in log_lines(caplog) if f"session with {raw.name} ({raw.address}) closed" in line]
    assert len(lines) == 1, lines
    assert "protocol_error" in lines[0] and reason in lines[0], lines[0]
    return lines[0]


def served(witness) -> None:
    """The witness kept its session (its ticks went on both ways) and is answered."""
    assert witness.name in snowg.nodes()
    assert snowg.flush_messages(lambda m: type(m) is snowg.NodeDown and m.node == witness.name) == []
    assert witness.rpc(df.ping, "still") == ("pong", witness.name, "still")


def watch(*nodes: str) -> None:
    for node in nodes:
        snowg.monitor_node(node)


# ------------------------------------------------------- attacks, live


def test_map_of_pids_with_equal_ids_is_delivered_without_freezing(attacker, witness, log) -> None:
    """Attack: a frame holding a map of 32 k pids with equal ids (distinct creations).

    Pids hash on node, creation and id: the map is an ordinary dict, delivered."""
    me = snowg.self()
    watch(attacker.name, witness.name)
    pids = {Pid("a@b", 7, c): c for c in range(32 * 1024)}
    body = send_body(me, codec.encode(("pids", pids)))
    assert len(body) <= DEFAULT_MAX_FRAME_SIZE
    attacker.send(frame_of_body(body))
    tag, got = snowg.receive(lambda m: type(m) is tuple and m[0] == "pids", timeout=30)
    assert len(got) == 32 * 1024 and got == pids
    assert attacker.name in snowg.nodes()
    served(witness)


def test_map_of_colliding_keys_is_refused(attacker, witness, log) -> None:
    """Attack: a map of 50 k big-int keys, all multiples of 2**61 - 1 (Python hashes every one to 0)."""
    me = snowg.self()
    watch(attacker.name, witness.name)
    keys = [(2**64 + k) * (2**61 - 1) for k in range(50_000)]
    # Written by hand: building that dict here would be the very quadratic work.
    body = send_body(me, b"\xdf" + struct.pack(">I", len(keys)) + b"".join(codec.encode(k) + b"\xc0" for k in keys))
    assert len(body) <= DEFAULT_MAX_FRAME_SIZE
    attacker.send(frame_of_body(body))
    refused(log, attacker, "a map of 50000 entries whose keys have only 1 distinct hashes")
    served(witness)


def test_frame_of_empty_arrays_is_refused(attacker, witness, log) -> None:
    """Attack: a frame of the maximum size holding nothing but empty arrays (64 MiB of them took 4.8 GB)."""
    me = snowg.self()
    watch(attacker.name, witness.name)
    body = empty_arrays_body(me, DEFAULT_MAX_FRAME_SIZE)
    assert len(body) == DEFAULT_MAX_FRAME_SIZE
    attacker.send(frame_of_body(body))
    refused(log, attacker, "more than 20 times its encoded size in memory")
    served(witness)


def test_frame_over_the_maximum_is_refused_at_its_header(attacker, witness, log) -> None:
    """Attack: a 64 MiB frame announced; the node refuses it at the 4 length bytes, buffering nothing."""
    watch(attacker.name, witness.name)
    attacker.send(_LEN.pack(64 * 1024 * 1024) + b"\x90" * 1024)
    refused(log, attacker, f"over the maximum of {DEFAULT_MAX_FRAME_SIZE} bytes")
    served(witness)


def test_nesting_deeper_than_the_limit_is_refused(attacker, witness, log) -> None:
    """Attack: a message nested one level deeper than the limit (its repr would fail in user code)."""
    me = snowg.self()
    watch(attacker.name, witness.name)
    attacker.send(frame_of_body(nested_body(me, codec.MAX_DEPTH + 1)))
    refused(log, attacker, f"nested deeper than {codec.MAX_DEPTH} levels")
    served(witness)


def test_huge_integer_exit_reason_is_refused(attacker, witness, log, snowg_cluster_config, snowg_node) -> None:
    """Attack: an exit signal whose reason is a big integer: 4 MiB (over the frame size), then 2 KiB."""
    me = snowg.self()
    snowg.trap_exit(True)
    watch(attacker.name, witness.name)
    attacker.send(frame_of_body(huge_int_exit_body(me, attacker.pid(1), 4 << 20)))
    refused(log, attacker, "over the maximum")
    second = RawPeer(snowg_cluster_config, snowg_node)
    try:
        watch(second.name)
        second.send(frame_of_body(huge_int_exit_body(me, second.pid(1), 2048)))
        refused(log, second, "an extension value (a pid, ref or big int) of more than")
    finally:
        second.close()
    assert snowg.flush_messages(lambda m: type(m) is snowg.Exit) == []
    served(witness)


def test_newline_in_a_node_name_is_refused_and_not_logged_raw(attacker, witness, log) -> None:
    """Attack: a pid of a node whose name holds a newline and a forged log line."""
    me = snowg.self()
    watch(attacker.name, witness.name)
    attacker.send(frame_of_body(forged_node_body(me)))
    line = refused(log, attacker, "a pid or ref names an invalid node")
    assert "\n" not in line and "\\n2026-12-01 INFO forged line" in line
    assert not any(line.startswith("2026-12-01 INFO forged") for line in log_lines(log))
    served(witness)


def test_peer_text_in_a_refusal_is_escaped_and_cut(attacker, witness, log) -> None:
    """Attack: an unknown frame tag that is a 100 KB string of forged log lines."""
    watch(attacker.name, witness.name)
    tag = "x\n2026-12-01 ERROR forged\n" * 4000
    attacker.send(encode_frame([tag]))
    line = refused(log, attacker, "unknown frame tag")
    assert "\n" not in line and len(line) < 1000
    served(witness)


# ------------------------------------------------ sans-IO, one byte at a time

ME = Pid("me@127.0.0.1", 1, 1)


def feed_bytewise(data: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> List[Any]:
    """Feed ``data`` one byte at a time; return the frames, or raise as the decoder does."""
    decoder = FrameDecoder(max_frame_size)
    frames: List[Any] = []
    view = memoryview(data)
    for i in range(len(data)):
        frames += decoder.feed(view[i : i + 1].tobytes())
    return frames


def peak_while(fn) -> int:
    tracemalloc.start()
    try:
        try:
            fn()
        except (MalformedFrame, codec.CodecError):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "body, reason",
    [
        pytest.param(nested_body(ME, codec.MAX_DEPTH + 1), "nested deeper", id="deep-lists"),
        pytest.param(
            send_body(ME, b"\x92" + msgpack.packb(b"x" * 8192) + b"\x81\xc0" * codec.MAX_DEPTH + b"\x81\xc0\xc0"),
            "nested deeper",
            id="deep-dicts",
        ),
        pytest.param(forged_node_body(ME), "invalid node", id="newline-node"),
        pytest.param(
            send_body(ME, ext(codec.EXT_BIGINT, b"\x01" * (codec.MAX_BIGINT_BYTES + 1))), "a big int of", id="big-int"
        ),
        pytest.param(empty_arrays_body(ME, 64 * 1024), "times its encoded size", id="empty-arrays"),
        pytest.param(send_body(ME, array_header(30000) + b"\x80" * 30000), "times its encoded size", id="empty-maps"),
        pytest.param(send_body(ME, array_header(20000) + b"\x81\xc0\xc0" * 20000), "times its encoded size", id="maps"),
    ],
)
def test_hostile_bodies_are_refused_byte_by_byte(body: bytes, reason: str) -> None:
    data = frame_of_body(body)
    with pytest.raises(MalformedFrame, match=reason):
        feed_bytewise(data)
    # The same frame at once, and inside a batch after a good one: refused the same way.
    good = encode_frame([SEND, ME, "ok"])
    decoder = FrameDecoder()
    assert decoder.feed(good) == [[SEND, ME, "ok"]]
    with pytest.raises(MalformedFrame, match=reason):
        decoder.feed(data)
    with pytest.raises(MalformedFrame, match=reason):
        decoder.feed(good)  # the stream is unusable after an error


def test_oversize_frame_is_refused_at_its_fourth_byte() -> None:
    decoder = FrameDecoder()
    header = _LEN.pack(DEFAULT_MAX_FRAME_SIZE + 1)
    for b in header[:3]:
        assert decoder.feed(bytes([b])) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(header[3:])
    assert decoder.buffered <= 4  # nothing but the header was kept


def test_limits_accept_what_they_should() -> None:
    """The bounds refuse nothing an ordinary program sends: exactly at the limits, frames decode."""
    deepest = nested_body(ME, codec.MAX_DEPTH - 3)  # + the SEND frame's array and the list in it
    assert validate_frame(feed_bytewise(frame_of_body(deepest))[0])[0] == SEND
    biggest = 2 ** (8 * codec.MAX_BIGINT_BYTES - 1) - 1
    assert feed_bytewise(encode_frame([SEND, ME, biggest]))[0][2] == biggest
    tuples = [(i, i) for i in range(20000)]  # 1 tuple per 6 bytes
    assert FrameDecoder().feed(encode_frame([SEND, ME, tuples]))[0][2] == tuples
    rows = [{"id": i, "name": f"n{i}"} for i in range(5000)]
    assert FrameDecoder().feed(encode_frame([SEND, ME, rows]))[0][2] == rows
    names = {f"name{i}": Pid("a@b", i, 1) for i in range(20000)}  # a global registry sync
    assert FrameDecoder().feed(encode_frame([SEND, ME, names]))[0][2] == names


@pytest.mark.parametrize(
    "shape, unit",
    [
        pytest.param(b"\x90", 1, id="empty-lists"),
        pytest.param(b"\x91\xc0", 2, id="one-item-lists"),
        pytest.param(b"\x80", 1, id="empty-dicts"),
        pytest.param(b"\x81\xc0\xc0", 3, id="one-item-dicts"),
        pytest.param(b"\x91" + ext(codec.EXT_TUPLE, b""), 4, id="empty-tuples"),
    ],
)
def test_memory_of_a_frame_is_bounded_by_its_size(shape: bytes, unit: int) -> None:
    """A maximum-size frame of the costliest shapes: refused within about 20x its size (tracemalloc)."""
    n = (DEFAULT_MAX_FRAME_SIZE - 64) // unit
    body = send_body(ME, array_header(n) + shape * n)
    data = frame_of_body(body)
    peak = peak_while(lambda: FrameDecoder().feed(data))
    # 20x for the objects, the top list's n pointers (8 bytes each), and the exception's traceback.
    assert peak <= codec.MEMORY_FACTOR * len(body) + codec.MEMORY_FLOOR + 8 * n + 256 * 1024, peak / len(body)


def test_pid_hash_uses_node_and_creation() -> None:
    pids = [Pid("a@b", 7, c) for c in range(1000)] + [Pid(f"n{i}@b", 7, 1) for i in range(1000)]
    assert len({hash(p) for p in pids}) == len(pids)
    local = snowg.self()
    copy = Pid(local.node, local.id, local.creation)
    assert hash(copy) == hash(local) and {local: 1}[copy] == 1


def test_a_large_frame_is_decoded_as_its_bytes_arrive() -> None:
    """A frame allowed by a raised max_frame_size (8 MiB of tuples): each 16 KiB read decodes what it brought."""
    tuples = [(i, "x") for i in range(800_000)]
    big = encode_frame([SEND, ME, tuples])
    small = encode_frame([SEND, ME, "after"])
    data = encode_frame([SEND, ME, "before"]) + big + small
    decoder = FrameDecoder(max_frame_size=64 * 1024 * 1024)
    frames: List[Any] = []
    spent: List[int] = []
    view = memoryview(data)
    for i in range(0, len(data), 16 * 1024):
        frames += decoder.feed(view[i : i + 16 * 1024].tobytes())
        stream = decoder._stream
        if stream is not None:
            spent.append(stream._hooks.budget)
    assert [f[2] for f in frames] == ["before", tuples, "after"]
    assert decoder.buffered == 0
    # The work was spread: the budget went down at (nearly) every read, not all at the end.
    steps = sum(1 for a, b in zip(spent, spent[1:]) if b < a)
    assert steps >= len(spent) - 2 and len(spent) > 400


@pytest.mark.parametrize("cut", [1, 1000, 70_000])
def test_a_large_frame_truncated_or_with_trailing_bytes_is_refused(cut: int) -> None:
    body = codec.encode([SEND, ME, b"x" * 100_000])
    decoder = FrameDecoder()
    # Announce it shorter than it is: the term does not end where the frame does.
    with pytest.raises(MalformedFrame, match="ends in the middle of a term|incomplete input"):
        decoder.feed(_LEN.pack(len(body) - cut) + body[:100])
        decoder.feed(body[100 : len(body) - cut])
    decoder = FrameDecoder()
    # Announce it longer: trailing bytes after the term.
    padded = body + b"\xc0" * cut
    with pytest.raises(MalformedFrame, match="trailing bytes"):
        decoder.feed(_LEN.pack(len(padded)) + padded[:100])
        decoder.feed(padded[100:])


def test_a_truncated_large_frame_is_counted_as_buffered() -> None:
    body = codec.encode([SEND, ME, b"x" * 100_000])
    decoder = FrameDecoder()
    assert decoder.feed(_LEN.pack(len(body)) + body[:5000]) == []
    assert decoder.buffered == 5004
