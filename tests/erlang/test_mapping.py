"""Tests of snowg.erlang._mapping: pids and refs both ways, the Python -> Erlang extras, against a real ``erl``.

* The pid and ref mappings are bijections (hypothesis, both directions,
  the wide forms included); what has no Erlang form is a ``TypeError``.
* ``TermMap.encode`` writes a snowg pid or ref as the very bytes of the
  Erlang pid or ref it maps to; ``decode`` gives snowg values back.
* ``Exit``, ``Down``, ``Crash`` and exit reasons take their Erlang forms.
* One ``erl -noshell`` process (bounded, always killed) writes its own pids
  and refs (``make_ref()``, aliases, wide pids) and reads ours: decode and
  re-encode are byte-identical, and ``binary_to_term`` of our bytes is the
  term it started from.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam import run_erl_script
from snowg import Atom, Crash, Down, Exit, Pid, Ref
from snowg.erlang import _etf
from snowg.erlang._errors import ErlangProtocolError
from snowg.erlang._mapping import (
    REASON_ATOMS,
    TermMap,
    atom_bytes,
    erl_pid_fields,
    erl_ref_words,
    pid_from_erl,
    ref_from_erl,
)
from snowg.erlang._types import ErlMap, ErlPid, ErlRef, ImproperList

NODE = "b@127.0.0.1"
U32 = st.integers(0, 2**32 - 1)


@pytest.fixture
def tm() -> TermMap:
    return TermMap("a@127.0.0.1", 0x12345678)


# -------------------------------------------------------------------- pids


@settings(max_examples=300, deadline=None)
@given(num=U32, serial=U32, creation=U32)
def test_erlang_pid_to_snowg_and_back(num: int, serial: int, creation: int) -> None:
    pid = pid_from_erl(NODE, num, serial, creation)
    assert type(pid) is Pid and type(pid.node) is str and pid.node == NODE and pid.creation == creation
    assert erl_pid_fields(pid) == (num, serial)


@settings(max_examples=300, deadline=None)
@given(
    pid_id=st.one_of(
        st.integers(0, 2**47 - 1),
        st.builds(lambda s, n: 1 << 64 | s << 32 | n, U32, st.integers(2**15, 2**32 - 1)),
    ),
    creation=U32,
)
def test_snowg_pid_to_erlang_and_back(pid_id: int, creation: int) -> None:
    num, serial = erl_pid_fields(Pid(NODE, pid_id, creation))
    assert 0 <= num < 2**32 and 0 <= serial < 2**32
    assert pid_from_erl(NODE, num, serial, creation) == Pid(NODE, pid_id, creation)


def test_pid_mapping_examples() -> None:
    assert pid_from_erl(NODE, 81, 0, 1) == Pid(NODE, 81, 1)
    assert pid_from_erl(NODE, 81, 3, 1) == Pid(NODE, 81 | 3 << 15, 1)
    assert pid_from_erl(NODE, 2**15, 0, 1) == Pid(NODE, 1 << 64 | 2**15, 1)
    assert pid_from_erl(NODE, 2**32 - 1, 2**32 - 1, 1) == Pid(NODE, 1 << 64 | (2**32 - 1) << 32 | 2**32 - 1, 1)
    assert erl_pid_fields(Pid(NODE, 2**47 - 1, 0)) == (0x7FFF, 2**32 - 1)


@pytest.mark.parametrize(
    "pid_id",
    [2**47, 2**64 - 1, 1 << 64 | 5, 1 << 65 | 2**15, 2 << 64, -1],
    ids=["2**47", "2**64-1", "wide-num-small", "wide-extra-bit", "2<<64", "negative"],
)
def test_pids_without_an_erlang_form_are_type_errors(tm: TermMap, pid_id: int) -> None:
    with pytest.raises(TypeError, match="no Erlang form|non-negative"):
        tm.encode(Pid(NODE, pid_id, 1))


def test_pid_fields_out_of_range_are_type_errors(tm: TermMap) -> None:
    with pytest.raises(TypeError, match="creation is not a 32-bit int"):
        tm.encode(Pid(NODE, 1, 2**32))
    with pytest.raises(TypeError, match="at most 255 characters"):
        tm.encode(Pid("n" * 256, 1, 1))
    with pytest.raises(TypeError, match="a pid was expected"):
        tm.pid_bytes("not a pid")  # type: ignore[arg-type]


# -------------------------------------------------------------------- refs

REF_WORDS = st.one_of(
    st.lists(U32, min_size=1, max_size=5).map(tuple),
    st.tuples(st.integers(2**18, 2**32 - 1), U32, U32),
    st.tuples(st.integers(0, 2**18 - 1), U32, U32),
)


@settings(max_examples=400, deadline=None)
@given(words=REF_WORDS, creation=U32)
def test_erlang_ref_to_snowg_and_back(words: Tuple[int, ...], creation: int) -> None:
    ref = ref_from_erl(NODE, creation, words)
    assert type(ref) is Ref and ref.node == NODE and ref.creation == creation
    assert erl_ref_words(ref) == words


@settings(max_examples=300, deadline=None)
@given(ref_id=st.integers(0, 2**82 - 1))
def test_snowg_ref_to_erlang_and_back(ref_id: int) -> None:
    words = erl_ref_words(Ref(NODE, ref_id, 1))
    assert len(words) == 3 and words[0] < 2**18
    assert ref_from_erl(NODE, 1, words) == Ref(NODE, ref_id, 1)


def test_ref_mapping_examples() -> None:
    assert ref_from_erl(NODE, 1, (1, 2, 3)) == Ref(NODE, 1 | 2 << 18 | 3 << 50, 1)
    assert ref_from_erl(NODE, 1, (2**18, 0, 0)) == Ref(NODE, 1 << 200 | 3 << 160 | 2**18, 1)
    assert ref_from_erl(NODE, 1, (7,)) == Ref(NODE, 1 << 200 | 1 << 160 | 7, 1)
    assert ref_from_erl(NODE, 1, (1, 2, 3, 4, 5)) == Ref(
        NODE, 1 << 200 | 5 << 160 | 1 | 2 << 32 | 3 << 64 | 4 << 96 | 5 << 128, 1
    )


@pytest.mark.parametrize(
    "ref_id",
    [
        2**82,
        2**200 - 1,
        1 << 200,  # wide, no words
        1 << 200 | 6 << 160,  # six words
        1 << 200 | 3 << 160 | 5,  # three words, the first under 2**18: has the plain form
        1 << 200 | 1 << 160 | 1 << 32,  # a bit beyond its one word
        1 << 201 | 1 << 160,
        -1,
    ],
)
def test_refs_without_an_erlang_form_are_type_errors(tm: TermMap, ref_id: int) -> None:
    with pytest.raises(TypeError, match="no Erlang form|non-negative"):
        tm.encode(Ref(NODE, ref_id, 1))


# ---------------------------------------------------------- encode, decode


def test_pids_and_refs_encode_as_the_erlang_terms_they_map_to(tm: TermMap) -> None:
    cases: List[Tuple[Any, Any]] = [
        (Pid(NODE, 81 | 3 << 15, 7), ErlPid(Atom(NODE), 81, 3, 7)),
        (Pid(NODE, 1 << 64 | 9 << 32 | 40000, 7), ErlPid(Atom(NODE), 40000, 9, 7)),
        (Ref(NODE, 1 | 2 << 18 | 3 << 50, 7), ErlRef(Atom(NODE), 7, (1, 2, 3))),
        (ref_from_erl(NODE, 7, (1, 2, 3, 4)), ErlRef(Atom(NODE), 7, (1, 2, 3, 4))),
        (ref_from_erl(NODE, 7, (9,)), ErlRef(Atom(NODE), 7, (9,))),
        (Pid("héllo@h", 5, 2**32 - 1), ErlPid(Atom("héllo@h"), 5, 0, 2**32 - 1)),
    ]
    for ours, theirs in cases:
        data = tm.encode(ours)
        assert data == _etf.encode(theirs)
        value, end = tm.decode(data)
        assert end == len(data) and type(value) is type(ours) and value == ours
        # Nested too, and through the pid cache a second time.
        nested = [ours, {"k": (ours,)}, ImproperList((ours,), ours)]
        assert tm.encode(nested) == _etf.encode([theirs, {"k": (theirs,)}, ImproperList((theirs,), theirs)])
        assert tm.decode(tm.encode(nested))[0] == nested


def test_decode_at_an_offset_and_compressed(tm: TermMap) -> None:
    data = b"xyz" + tm.encode((Pid(NODE, 1, 2), "s")) + b"rest"
    assert tm.decode(data, 3) == ((Pid(NODE, 1, 2), "s"), len(data) - 4)
    import zlib

    body = _etf.encode([Atom("a")] * 100)[1:]
    compressed = bytes((131, 80)) + len(body).to_bytes(4, "big") + zlib.compress(body)
    assert tm.decode(compressed) == ([Atom("a")] * 100, len(compressed))
    with pytest.raises(ErlangProtocolError, match="COMPRESSED"):
        tm.decode_dist(compressed, 0)


def test_pid_cache_follows_a_local_pid_renamed_in_place(tm: TermMap) -> None:
    pid = Pid("nonode@nohost", 5, 0)
    assert tm.decode(tm.encode(pid))[0] == Pid("nonode@nohost", 5, 0)
    pid.node, pid.creation = "a@127.0.0.1", 3  # what starting distribution does to a local pid
    assert tm.decode(tm.encode(pid))[0] == Pid("a@127.0.0.1", 5, 3)


def test_pid_cache_is_bounded(tm: TermMap) -> None:
    for i in range(10000):
        assert tm.pid_bytes(Pid(NODE, i, 1)) == _etf.encode(ErlPid(Atom(NODE), i & 0x7FFF, i >> 15, 1))[1:]
    assert len(tm._pid_cache) <= 4096


def test_read_pid_fast_path_agrees_with_decode(tm: TermMap) -> None:
    data = b"\x00" + tm.pid_bytes(Pid(NODE, 1 << 64 | 4 << 32 | 99999, 3)) + b"\x00"
    got = tm.read_pid(data, 1)
    assert got == (Pid(NODE, 1 << 64 | 4 << 32 | 99999, 3), len(data) - 1)
    assert tm.read_pid(data, 1) == got  # cached
    for cut in range(1, len(data) - 1):
        assert tm.read_pid(data[:cut], 1) is None
    assert tm.read_pid(b"X" + bytes((100, 0, 1)) + b"n" + bytes(12), 0) is None  # ATOM_EXT node: not the fast shape
    assert tm.read_pid(b"Xw\x01\xff" + bytes(12), 0) is None  # bad UTF-8


def test_read_ref_fast_path_agrees_with_decode(tm: TermMap) -> None:
    for words in [(1, 2, 3), (2**18, 0, 7), (5,), (1, 2), (1, 2, 3, 4), (1, 2, 3, 4, 2**32 - 1)]:
        ref = ref_from_erl("é@h", 2**32 - 1, words)
        data = b"\x00" + tm.ref_bytes(ref) + b"\x00"
        assert tm.read_ref(data, 1) == (ref, len(data) - 1)
        assert tm.decode(b"\x83" + data[1:-1])[0] == ref
        for cut in range(1, len(data) - 1):
            assert tm.read_ref(data[:cut], 1) is None
    assert tm.read_ref(b"Z\x00\x00w\x01n" + bytes(4), 0) is None  # no words
    assert tm.read_ref(b"Z\x00\x06w\x01n" + bytes(28), 0) is None  # six words
    assert tm.read_ref(b"Z\x00\x01d\x00\x01n" + bytes(8), 0) is None  # ATOM_EXT node
    assert tm.read_ref(b"Z\x00\x01w\x01\xff" + bytes(8), 0) is None  # bad UTF-8


def test_none_atom_and_strict_bytes() -> None:
    elixir = TermMap("a@h", 1, none_atom="nil", strict_bytes=True)
    assert elixir.encode(None) == _etf.encode(Atom("nil"))
    assert elixir.decode(_etf.encode(Atom("nil")))[0] is None
    assert elixir.decode(_etf.encode(Atom("undefined")))[0] == Atom("undefined")
    assert elixir.decode(_etf.encode(b"text"))[0] == b"text"
    assert TermMap("a@h", 1).decode(_etf.encode(b"text"))[0] == "text"
    with pytest.raises(ValueError, match="none_atom"):
        TermMap("a@h", 1, none_atom="null")


# ------------------------------------------------------------------ extras


def test_exit_down_and_crash_take_their_erlang_forms(tm: TermMap) -> None:
    pid = Pid(NODE, 1, 1)
    ref = Ref(NODE, 5, 1)
    crash = Crash("ValueError", "bad", "Traceback ...")
    py_error = (Atom("python_error"), "ValueError", "bad", "Traceback ...")
    cases = [
        (Exit(pid, "normal"), (Atom("EXIT"), pid, Atom("normal"))),
        (Exit(pid, "boom"), (Atom("EXIT"), pid, "boom")),
        (Exit(pid, crash), (Atom("EXIT"), pid, py_error)),
        (Down(ref, pid, "noproc"), (Atom("DOWN"), ref, Atom("process"), pid, Atom("noproc"))),
        (
            Down(ref, ("server", "b@h"), ("shutdown", "x")),
            (Atom("DOWN"), ref, Atom("process"), (Atom("server"), Atom("b@h")), (Atom("shutdown"), "x")),
        ),
        (crash, py_error),
        ([Exit(pid, "kill")], [(Atom("EXIT"), pid, Atom("kill"))]),
    ]
    for value, erlang in cases:
        assert tm.encode(value) == tm.encode(erlang), value


def test_reasons(tm: TermMap) -> None:
    for name in REASON_ATOMS:
        assert type(tm.reason(name)) is Atom and tm.reason(name) == name
    assert REASON_ATOMS == {
        "normal",
        "shutdown",
        "kill",
        "killed",
        "noproc",
        "noconnection",
        "net_tick_timeout",
        "undef",
    }
    assert type(tm.reason("other")) is str
    assert tm.reason(("shutdown", "normal")) == (Atom("shutdown"), "normal")
    assert type(tm.reason(("shutdown", 1))[0]) is Atom
    assert tm.reason(Crash("T", "m", "tb")) == (Atom("python_error"), "T", "m", "tb")
    assert tm.reason(42) == 42
    # Messages are not reason-converted: a str in a message is a binary.
    assert tm.encode("normal") == _etf.encode("normal")


def test_what_has_no_erlang_form_is_still_a_type_error(tm: TermMap) -> None:
    for value in ({1, 2}, object(), float("nan"), [Pid(NODE, 2**50, 1)]):
        with pytest.raises(TypeError):
            tm.encode(value)


def test_atom_bytes_is_the_encoders_atom() -> None:
    for name in ("", "ok", "héllo", "\U0001f600" * 255, "a" * 255):
        assert atom_bytes(name) == _etf.encode(Atom(name))[1:]
    with pytest.raises(TypeError, match="at most 255"):
        atom_bytes("a" * 256)
    with pytest.raises(TypeError, match="lone surrogate"):
        atom_bytes("\ud800")


def test_convert_hook_is_consulted_before_subclass_fallback() -> None:
    seen: List[Any] = []

    def convert(term: Any) -> Any:
        seen.append(term)
        return NotImplemented

    assert _etf.encode(Exit(1, 2), convert=convert) == _etf.encode((1, 2))  # type: ignore[arg-type]
    assert seen == [Exit(1, 2)]  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nested deeper"):
        _etf.encode(object(), convert=lambda t: t)  # a convert that never ends


# ------------------------------------------------------ random terms, caches


def _exact(term: Any) -> Any:
    """A form of ``term`` equal only for the very same term, types included."""
    kind = type(term)
    if kind in (list, tuple):
        return (kind.__name__, [_exact(t) for t in term])
    if kind is dict:
        return ("dict", sorted((repr(_exact(k)), _exact(v)) for k, v in term.items()))
    if kind is ImproperList:
        return ("improper", [_exact(t) for t in term.items], _exact(term.tail))
    if kind in (Pid, Ref):
        return (kind.__name__, term.node, term.id, term.creation)
    return (kind.__name__, repr(term))


_PIDS = st.builds(
    Pid,
    st.sampled_from([NODE, "a@127.0.0.1", "é@h"]),
    st.one_of(
        st.integers(0, 2**47 - 1), st.builds(lambda s, n: 1 << 64 | s << 32 | n, U32, st.integers(2**15, 2**32 - 1))
    ),
    U32,
)
_REFS = st.builds(lambda node, words, cr: ref_from_erl(node, cr, words), st.sampled_from([NODE, "x@y"]), REF_WORDS, U32)
_ATOMS = st.text(max_size=20).filter(lambda t: t not in ("true", "false", "undefined")).map(Atom)
_LEAVES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    _ATOMS,
    st.booleans(),
    st.none(),
    _PIDS,
    _REFS,
)
_TERMS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.builds(
            lambda items, tail: ImproperList(tuple(items), tail),
            st.lists(inner, min_size=1, max_size=3),
            inner.filter(lambda t: type(t) not in (list, ImproperList)),
        ),
    ),
    max_leaves=25,
)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=400, deadline=None)
@given(term=_TERMS)
def test_random_terms_with_pids_and_refs_round_trip(term: Any) -> None:
    tm = TermMap("a@127.0.0.1", 1)
    data = tm.encode(term)
    value, end = tm.decode(data)
    assert end == len(data)
    assert _exact(value) == _exact(term)
    assert tm.encode(value) == data


def test_writer_survives_a_failed_term() -> None:
    tm = TermMap("a@h", 1)
    out = bytearray()
    with pytest.raises(TypeError):
        tm.encode_into(out, [1, {2}])
    assert tm.encode([1, (Atom("ok"),)]) == _etf.encode([1, (Atom("ok"),)])


def test_atom_caches_are_bounded_and_keep_the_none_atoms_apart() -> None:
    nil = _etf.encode(Atom("nil"))
    assert _etf.decode(nil)[0] == Atom("nil")
    assert _etf.decode(nil, none_atom="nil")[0] is None
    assert _etf.decode(nil)[0] == Atom("nil")
    for i in range(5000):
        name = Atom(f"atom{i}")
        assert _etf.decode(_etf.encode(name))[0] == name
    assert len(_etf._ATOM_VALUES["undefined"]) <= 4096
    assert len(_etf._ATOM_BYTES) <= 4096
    # An atom read again after the cache was cleared is still right.
    assert _etf.decode(_etf.encode(Atom("atom1")))[0] == Atom("atom1")


def test_reader_and_writer_options() -> None:
    reader = _etf.TermReader(strict_bytes=True, none_atom="nil")
    data = b"xx" + _etf.encode((b"abc", Atom("nil"), None))
    assert reader.read(data, 2) == ((b"abc", None, Atom("undefined")), len(data))
    assert reader.read_dist(data, 2) == ((b"abc", None, Atom("undefined")), len(data))
    with pytest.raises(ValueError):
        reader.read(data, len(data) + 1)
    with pytest.raises(ValueError):
        _etf.TermReader(none_atom="none")
    with pytest.raises(ValueError):
        _etf.TermWriter(none_atom="none")
    out = bytearray(b"head")
    _etf.TermWriter(none_atom="nil").write(out, None)
    assert bytes(out) == b"head" + _etf.encode(Atom("nil"))


# ----------------------------------------------------------- against real erl

# Each line of the script prints hex(term_to_binary(T)) for an Erlang term.
_ERL_TERMS = [
    "self()",
    'binary_to_term(<<131, 88, 119, 3, "b@h", 40000:32, 3:32, 7:32>>)',
    'binary_to_term(<<131, 88, 119, 3, "b@h", 16#FFFFFFFF:32, 16#FFFFFFFF:32, 16#FFFFFFFF:32>>)',
    'binary_to_term(<<131, 88, 119, 3, "b@h", 32767:32, 16#FFFFFFFF:32, 1:32>>)',
    'binary_to_term(<<131, 90, 5:16, 119, 3, "b@h", 7:32, 1:32, 2:32, 3:32, 4:32, 5:32>>)',
    'binary_to_term(<<131, 90, 1:16, 119, 3, "b@h", 7:32, 1:32>>)',
    'binary_to_term(<<131, 90, 2:16, 119, 3, "b@h", 7:32, 1:32, 2:32>>)',
    'binary_to_term(<<131, 90, 4:16, 119, 3, "b@h", 7:32, 1:32, 2:32, 3:32, 4:32>>)',
    '{spawn(fun() -> ok end), list_to_pid("<0.32767.8191>")}',
    "make_ref()",
    "alias()",
    "erlang:monitor(process, self(), [{alias, explicit_unalias}])",
    'list_to_ref("#Ref<0.1.2.262143>")',
    'binary_to_term(<<131, 90, 3:16, 119, 3, "b@h", 7:32, 262144:32, 1:32, 2:32>>)',
    "{self(), make_ref(), [alias | alias()]}",
    "fun(X) -> {X, self()} end",
    "begin P = self(), fun() -> P end end",
    "fun lists:map/2",
    # maps with no dict form (a list key, a map key, 1 beside 1.0 and true): ErlMap, byte-identical back
    "#{[1, 2] => a, 1 => b, 1.0 => c, true => d}",
    "#{#{k => v} => {self(), make_ref()}}",
]


def test_erls_pids_and_refs_come_back_byte_identical(tmp_path: Any) -> None:
    script = ", ".join(
        f'io:format("~s~n", [binary:encode_hex(term_to_binary({expr}, [{{minor_version, 2}}]))])' for expr in _ERL_TERMS
    )
    lines = run_erl_script(tmp_path, script + ".")
    assert len(lines) == len(_ERL_TERMS)
    tm = TermMap("a@127.0.0.1", 1)
    for expr, line in zip(_ERL_TERMS, lines):
        theirs = bytes.fromhex(line)
        value, end = tm.decode(theirs)
        assert end == len(theirs)
        assert tm.encode(value) == theirs, expr
        plain, _ = _etf.decode(theirs)
        if type(plain) is ErlPid:
            assert type(value) is Pid and erl_pid_fields(value) == (plain.id, plain.serial)
        elif type(plain) is ErlRef:
            assert type(value) is Ref and erl_ref_words(value) == plain.ids
        elif expr.startswith("#{"):
            assert type(value) is ErlMap and type(plain) is ErlMap and len(value.items) == len(plain.items)


def test_erl_reads_our_pids_refs_and_extras(tmp_path: Any) -> None:
    """erl's binary_to_term of our bytes equals the term erl builds itself (pids of nonode@nohost, creation 0)."""
    tm = TermMap("nonode@nohost", 0)
    here = "nonode@nohost"
    cases: List[Tuple[Any, str]] = [
        (Pid(here, 81, 0), 'list_to_pid("<0.81.0>")'),
        (Pid(here, 81 | 3 << 15, 0), 'list_to_pid("<0.81.3>")'),
        (
            pid_from_erl("b@h", 40000, 7, 9),
            'binary_to_term(<<131, 88, 119, 3, "b@h", 40000:32, 7:32, 9:32>>)',
        ),
        (
            ref_from_erl("b@h", 9, (1, 2, 3, 4, 5)),
            'binary_to_term(<<131, 90, 5:16, 119, 3, "b@h", 9:32, 1:32, 2:32, 3:32, 4:32, 5:32>>)',
        ),
        (Ref(here, 3 | 2 << 18 | 1 << 50, 0), 'list_to_ref("#Ref<0.1.2.3>")'),
        (
            ref_from_erl("b@h", 7, (262144, 2, 1)),
            'binary_to_term(<<131, 90, 3:16, 119, 3, "b@h", 7:32, 262144:32, 2:32, 1:32>>)',
        ),
        (Exit(Pid(here, 5, 0), "normal"), "{'EXIT', list_to_pid(\"<0.5.0>\"), normal}"),
        (
            Down(Ref(here, 3 | 2 << 18 | 1 << 50, 0), ("srv", "n@h"), "noconnection"),
            "{'DOWN', list_to_ref(\"#Ref<0.1.2.3>\"), process, {srv, 'n@h'}, noconnection}",
        ),
        (Crash("KeyError", "'x'", "tb"), '{python_error, <<"KeyError">>, <<"\'x\'">>, <<"tb">>}'),
        (Exit(Pid(here, 5, 0), ("shutdown", 1)), "{'EXIT', list_to_pid(\"<0.5.0>\"), {shutdown, 1}}"),
        (None, "undefined"),
    ]
    checks = [
        f'io:format("~p~n", [binary_to_term(binary:decode_hex(<<"{tm.encode(v).hex()}">>)) =:= ({e})])'
        for v, e in cases
    ]
    lines = run_erl_script(tmp_path, ", ".join(checks) + ".")
    assert lines == ["true"] * len(cases), list(zip([e for _v, e in cases], lines))
