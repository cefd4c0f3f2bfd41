"""Tests of snowg.cluster._codec: exact round-trips, refusals, and hostile input."""

from __future__ import annotations

import enum
import math
import struct
from collections import OrderedDict
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snowg._core.terms import Crash, Down, Exit, NodeDown, NodeUp, Pid, Ref, TimerRef
from snowg.cluster import _codec as codec
from snowg.cluster._codec import CodecError, decode, encode
from support import PLAIN_TERMS

# --- helpers ----------------------------------------------------------------

_VALUE_TYPES = (Pid, Ref)
_SEQ_TYPES = (list, tuple, TimerRef, Exit, Down, NodeUp, NodeDown, Crash)


def assert_same(a: Any, b: Any) -> None:
    """Deep equality that also demands identical types at every level."""
    assert type(a) is type(b), (a, b)
    if type(a) is float:
        assert (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    elif type(a) in _SEQ_TYPES:
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif type(a) is dict:
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_same(ka, kb)
            assert_same(va, vb)
    elif type(a) in _VALUE_TYPES:
        assert (a.node, a.id, a.creation) == (b.node, b.id, b.creation)
        assert_same(a.node, b.node)
    else:
        assert a == b


def roundtrip(term: Any) -> Any:
    out = decode(encode(term))
    assert_same(term, out)
    return out


# --- strategies -------------------------------------------------------------

int64 = st.integers(-(2**63), 2**63 - 1)
node_names = st.builds(
    lambda a, b: f"{a}@{b}",
    st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@"), min_size=1, max_size=10),
    st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@"), min_size=1, max_size=10),
)
pids = st.builds(Pid, node_names, int64, int64)
refs = st.builds(Ref, node_names, int64, int64)
big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**64, max_value=2**8000),
    st.integers(min_value=-(2**8000), max_value=-(2**63) - 1),
)
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=10),
    pids,
    refs,
)
hashable = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
scalars = st.one_of(hashable_scalars, st.floats())


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashable, inner, max_size=4),
        st.builds(TimerRef, int64),
        st.builds(Exit, inner, inner),
        st.builds(Down, refs, inner, inner),
        st.builds(NodeUp, node_names),
        st.builds(NodeDown, node_names, inner),
        st.builds(Crash, st.text(max_size=10), st.text(max_size=10), st.text(max_size=30)),
    )


terms = st.recursive(scalars, _containers, max_leaves=25)


# --- round-trips ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(terms)
def test_any_term_roundtrips_exactly(term: Any) -> None:
    roundtrip(term)


@pytest.mark.parametrize(
    "term",
    [
        *PLAIN_TERMS,
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**100,
        -(10**100),
        float("inf"),
        -0.0,
        b"\x00\xff",
        [],
        [()],
        ((1, 2), [3, (4,)]),
        {"a": 1},
        {(1, 2): "t", (): 0, ((1,), 2): [1]},
        {1: 2, None: 3, b"k": 4},
        {2**70: "big"},
        [[[[(((),),)]]]],
    ],
    ids=repr,
)
def test_scalar_and_container_roundtrip(term: Any) -> None:
    roundtrip(term)


def test_message_types_roundtrip() -> None:
    ref, pid = Ref("a@h", 7, 3), Pid("b@h", 9, 4)
    for term in [
        ref,
        pid,
        TimerRef(12),
        Exit(pid, "normal"),
        Exit(pid, ("shutdown", [1])),
        Down(ref, pid, Crash("ValueError", "boom", "Traceback...")),
        NodeUp("n@h"),
        NodeDown("n@h", "noconnection"),
        Crash("KeyError", "", ""),
        Down(ref, ("name", "node@h"), "noproc"),
        {pid: ref, (pid, ref): [pid]},
    ]:
        out = roundtrip(term)
        assert out == term


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    out = decode(encode({"t": (1, [2, (3,)]), "l": [1, (2, [3])]}))
    assert type(out["t"]) is tuple and type(out["t"][1]) is list and type(out["t"][1][1]) is tuple
    assert type(out["l"]) is list and type(out["l"][1]) is tuple and type(out["l"][1][1]) is list


def test_bytes_stay_bytes_and_str_stays_str() -> None:
    out = decode(encode([b"abc", "abc"]))
    assert [type(x) for x in out] == [bytes, str]


def test_bytearray_and_memoryview_arrive_as_bytes() -> None:
    # msgpack packs these natively (no default hook), so they are sent as bytes.
    assert_same(decode(encode([bytearray(b"ab"), memoryview(b"cd")])), [b"ab", b"cd"])


def test_deeply_nested_tuples_roundtrip() -> None:
    term: Any = ()
    for _ in range(codec.MAX_DEPTH - 1):
        term = (term, 1)
    roundtrip(term)


def test_pid_proc_is_not_encoded() -> None:
    pid = Pid("a@h", 5, 2)
    pid._proc = object()
    data = encode(pid)
    assert data == encode(Pid("a@h", 5, 2))
    out = decode(data)
    assert type(out) is Pid and out._proc is None and out == pid


# --- refusals ---------------------------------------------------------------


class _Color(enum.IntEnum):
    RED = 1


class _Thing:
    pass


class _StrSub(str):
    pass


@pytest.mark.parametrize(
    "value, type_name",
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (_Thing(), "_Thing"),
        (lambda: None, "function"),
        (len, "builtin_function_or_method"),
        (_Color.RED, "_Color"),
        (_StrSub("x"), "_StrSub"),
        (OrderedDict(), "OrderedDict"),
        (1j, "complex"),
    ],
)
def test_non_terms_raise_type_error_naming_the_type(value: Any, type_name: str) -> None:
    for wrapped in (value, [1, value], {"k": (value,)}, Exit(Pid("a", 1), value)):
        with pytest.raises(TypeError, match=f"'{type_name}'"):
            encode(wrapped)


def test_packer_is_usable_after_a_refusal() -> None:
    with pytest.raises(TypeError):
        encode([1, 2, {3}])
    assert decode(encode([1, 2])) == [1, 2]


def test_pid_with_out_of_range_fields_is_refused() -> None:
    with pytest.raises(TypeError):
        encode(Pid("a", 2**70, 0))
    with pytest.raises(TypeError):
        encode(Ref(5, 1, 0))  # type: ignore[arg-type]


def test_an_int_over_the_big_int_limit_is_refused_at_encode() -> None:
    biggest = 2 ** (8 * codec.MAX_BIGINT_BYTES - 1) - 1
    assert decode(encode(biggest)) == biggest and decode(encode(-biggest)) == -biggest
    with pytest.raises(ValueError, match="too large to send"):
        encode(biggest + 1)
    with pytest.raises(TypeError, match="too large to send"):
        codec.check_term([biggest + 1])


def test_too_deep_nesting_is_refused() -> None:
    term: Any = 1
    for _ in range(5000):
        term = [term]
    with pytest.raises(ValueError):
        encode(term)


# --- hostile input ----------------------------------------------------------


def _ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


_MARK_TUPLE = msgpack.ExtType(codec.EXT_TUPLE, b"")


MALFORMED = [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\x92\x01",  # truncated array
    b"\x01\x02",  # trailing data
    b"\xa3ab",  # truncated str
    b"\xa2\xff\xfe",  # invalid UTF-8
    _ext(codec.EXT_PID, b"short"),
    _ext(codec.EXT_PID, struct.pack(">qq", 1, 2) + b"\xff"),
    _ext(codec.EXT_REF, b""),
    _ext(codec.EXT_BIGINT, b""),
    _ext(99, b"x"),
    _ext(codec.EXT_TUPLE, b"x"),  # marker with a payload
    _ext(codec.EXT_TUPLE, b""),  # marker at the top level
    msgpack.packb([1, _MARK_TUPLE]),  # marker after the head
    msgpack.packb({"k": _MARK_TUPLE}),  # marker as a dict value
    msgpack.packb([_MARK_TUPLE, _MARK_TUPLE]),
    msgpack.packb([msgpack.ExtType(codec.EXT_DOWN, b""), 1]),  # wrong field count
    msgpack.packb([msgpack.ExtType(codec.EXT_CRASH, b""), 1, 2, 3]),  # non-str crash fields
    msgpack.packb([msgpack.ExtType(codec.EXT_NODEUP, b""), 5]),
    msgpack.packb([msgpack.ExtType(codec.EXT_NODEDOWN, b""), 5, "r"]),
    b"\x81\x91\x01\x01",  # a list as a dict key
    b"\x81" + msgpack.packb([_MARK_TUPLE, [1]]) + b"\x01",  # unhashable tuple key
    b"\xd6\xff\x00",  # truncated timestamp ext
    b"\x91" * 5000 + b"\x01",  # nested too deep
    b"\x91" * (codec.MAX_DEPTH + 1) + b"\x01",  # deeper than the limit (lists)
    b"\x81\x01" * (codec.MAX_DEPTH + 1) + b"\x01",  # deeper than the limit (dicts)
    msgpack.packb(msgpack.ExtType(codec.EXT_PID, struct.pack(">qq", 1, 2) + b"no-at-sign")),
    msgpack.packb(msgpack.ExtType(codec.EXT_PID, struct.pack(">qq", 1, 2) + b"a\n@b")),
    msgpack.packb(msgpack.ExtType(codec.EXT_REF, struct.pack(">qq", 1, 2) + b"")),
    msgpack.packb(msgpack.ExtType(codec.EXT_BIGINT, b"\x01" * (codec.MAX_BIGINT_BYTES + 1))),
    msgpack.packb(msgpack.ExtType(codec.EXT_BIGINT, b"\x01" * (4 << 20))),  # the 4 MiB integer
    b"\xdd\xff\xff\xff\xff",  # huge array announced
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_input_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_msgpack_timestamp_decodes_to_a_term() -> None:
    assert decode(msgpack.packb(msgpack.Timestamp(1, 0))) == 10**9


def test_decode_accepts_memoryview() -> None:
    data = b"xx" + encode((1, "a"))
    assert decode(memoryview(data)[2:]) == (1, "a")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_codec_error(data: bytes) -> None:
    try:
        decode(data)
    except CodecError:
        pass


@settings(max_examples=300, deadline=None)
@given(terms, st.data())
def test_mutated_encodings_raise_only_codec_error(term: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(term))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decode(candidate)
        except CodecError:
            pass


# --- bounds -------------------------------------------------------------------

_P = 2**61 - 1  # every multiple of it hashes to 0


def test_map_with_colliding_keys_is_refused() -> None:
    keys = [(2**64 + k) * _P for k in range(100)]  # big ints, all of hash 0
    with pytest.raises(CodecError, match="a map of 100 entries whose keys have only 1 distinct hashes"):
        decode(b"\xde" + struct.pack(">H", len(keys)) + b"".join(encode(k) + b"\xc0" for k in keys))
    # Up to 16 entries a map is built directly: at most 16 * 16 / 2 comparisons.
    assert decode(encode(dict.fromkeys(keys[:16]))) == dict.fromkeys(keys[:16])


def test_large_and_many_maps_decode() -> None:
    big = {f"k{i}": [i] for i in range(10000)}
    assert decode(encode(big)) == big
    many = [{f"k{i}": i for i in range(20)} for _ in range(500)]
    assert decode(encode(many)) == many
    mixed = {(i, "x"): Pid("a@b", i, 1) for i in range(1000)}
    assert decode(encode(mixed)) == mixed


def test_pid_and_ref_hash_on_node_creation_and_id() -> None:
    pids = [Pid("a@b", 7, c) for c in range(2000)] + [Pid(f"n{i}@b", 7, 0) for i in range(2000)]
    refs = [Ref("a@b", 7, c) for c in range(2000)] + [Ref(f"n{i}@b", 7, 0) for i in range(2000)]
    assert len({hash(p) for p in pids}) == len(pids)
    assert len({hash(r) for r in refs}) == len(refs)
    assert hash(Pid("a@b", 7, 1)) == hash(decode(encode(Pid("a@b", 7, 1))))
    assert hash(Ref("a@b", 7, 1)) == hash(decode(encode(Ref("a@b", 7, 1))))


def test_a_ref_equals_only_a_ref_and_stays_one_value() -> None:
    ref = Ref("a@b", 7, 1)
    decoded = decode(encode(ref))
    assert decoded == ref and type(decoded) is Ref and decoded is not ref
    assert {ref: "x"}[decoded] == "x"  # a decoded copy finds the original's entry
    # A tuple underneath (for its C hash), but never equal to a plain tuple, either way round.
    assert ref != ("a@b", 7, 1) and ("a@b", 7, 1) != ref
    assert not (ref == ("a@b", 7, 1)) and not (("a@b", 7, 1) == ref)
    assert ref != Ref("a@b", 7, 2) and ref != Ref("a@c", 7, 1) and ref != Ref("a@b", 8, 1)
    assert str(ref) == repr(ref) == f"{ref}" == "#Ref<a@b.7.1>"
    # It encodes as a ref, not as the array a tuple would be.
    assert encode(ref) != encode(("a@b", 7, 1))


def test_decode_refuses_objects_heavier_than_the_bound() -> None:
    n = 100_000
    with pytest.raises(CodecError, match="20 times its encoded size"):
        decode(b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n)
    # The same count of small ints is light: accepted.
    assert decode(b"\xdd" + n.to_bytes(4, "big") + b"\x01" * n) == [1] * n


# --- the stream decoder (what a session's frames go through) ------------------

# One for the whole module, as a session has one for its whole life: what a body
# leaves behind (after an error above all) must never change how the next decodes.
_stream_decode = codec.small_decoder()


def _outcome(decoder: Any, data: bytes) -> Any:
    try:
        return ("term", decoder(data))
    except CodecError:
        return ("error", None)


def _same_outcome(data: bytes) -> None:
    """small_decoder() gives exactly what decode() gives: the same term, or CodecError for both."""
    expected = _outcome(decode, data)
    got = _outcome(_stream_decode, data)
    assert got[0] == expected[0], (data, expected, got)
    if expected[0] == "term":
        assert_same(expected[1], got[1])
    # And it is not left in a state that changes the next body.
    assert_same(_stream_decode(encode(("after", (1, (2,)), [3]))), ("after", (1, (2,)), [3]))


@pytest.mark.parametrize("data", MALFORMED)
def test_stream_decoder_refuses_what_decode_refuses(data: bytes) -> None:
    with pytest.raises(CodecError):
        _stream_decode(data)
    assert_same(_stream_decode(encode((1, (2, "x")))), (1, (2, "x")))


@settings(max_examples=300, deadline=None)
@given(terms)
def test_stream_decoder_decodes_any_term_as_decode_does(term: Any) -> None:
    data = encode(term)
    assert_same(_stream_decode(data), term)
    _same_outcome(data)


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb([_MARK_TUPLE, 1, 2]),
        b"\x93\xc8\x00\x00\x10\x01\x02",  # a tuple's marker as ext 16 (not what snowg sends)
        b"\x92\xc9\x00\x00\x00\x00\x10\x01",  # ... and as ext 32
        msgpack.packb([msgpack.ExtType(codec.EXT_EXIT, b""), 1, 2]),
        msgpack.packb([msgpack.ExtType(codec.EXT_DOWN, b""), 1, 2, 3]),
        msgpack.packb([[_MARK_TUPLE], 1]),  # an empty tuple in a list: [(), 1]
        msgpack.packb([_MARK_TUPLE, [_MARK_TUPLE, _MARK_TUPLE]]),  # marker after the head, nested
        msgpack.packb([1, _ext(codec.EXT_PID, b"")]),
        encode([1, Pid("new@node", 7, 1), ("tick", 1)]),  # a pid seen for the first time
        encode([1, Pid("new@node", 7, 1), ("tick", 1)]),  # ... and again (shared)
        b"\x91" * 200 + b"\x01",
        bytes([0x91, 0xC7, 0x00, 0x10]) * 124 + b"\x01",  # tuples nested as deep as a small body holds
    ],
)
def test_stream_decoder_edge_cases_as_decode(data: bytes) -> None:
    _same_outcome(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=codec.SMALL_BODY + 20))
def test_stream_decoder_on_garbage_as_decode(data: bytes) -> None:
    _same_outcome(data)


@settings(max_examples=300, deadline=None)
@given(terms, st.data())
def test_stream_decoder_on_mutated_encodings_as_decode(term: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(term))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _same_outcome(bytes(raw))
    _same_outcome(bytes(raw[:cut]))


@given(st.lists(hashable, max_size=4).map(tuple))
def test_tuple_shortcut_of_default_encodes_as_the_generic_encoder(t: Any) -> None:
    assert codec.default(t) == codec._ENCODERS[tuple](t)
    assert encode(t) == msgpack.packb(
        codec._ENCODERS[tuple](t), default=codec.default, use_bin_type=True, strict_types=True
    )
