"""Erlang's external term format (version 131), sans-IO: Python values to bytes and back.

The model: a term is one tag byte followed by fields whose sizes the tag
fixes or that carry their own length; containers (lists, tuples, maps) are
followed by their elements, each a whole term. :func:`encode` writes what
``term_to_binary(T, [{minor_version, 2}])`` writes on OTP 25/26 (UTF-8
atoms, ``NEW_FLOAT_EXT``, the smallest integer form, ``STRING_EXT`` for
short lists of bytes), byte for byte; :func:`decode` reads that and the older
forms a peer may still send. Nothing here does IO: bytes in, a value and how
many bytes it took out.

Term mapping (Erlang -> Python by :func:`decode`, Python -> Erlang by
:func:`encode`):

=====================================  =========================================
Erlang                                 Python
=====================================  =========================================
atom                                   :class:`Atom` (a ``str``)
``true`` / ``false``                   ``True`` / ``False``
``undefined`` (``nil`` if asked)       ``None``
integer (small and big)                ``int``
float                                  ``float`` (NaN and infinities refused)
binary                                 ``str`` when valid UTF-8, else ``bytes``
                                       (``strict_bytes=True``: always ``bytes``);
                                       ``str``, ``bytes``, ``bytearray`` encode
                                       as binaries
bitstring (not whole bytes)            :class:`BitBinary`
tuple                                  ``tuple``
proper list (``STRING_EXT`` too)       ``list`` (a string is a list of ints)
improper list                          :class:`ImproperList`
map                                    ``dict``; :class:`ErlMap` (its pairs) when
                                       it has no ``dict`` form (below)
pid / reference / port                 :class:`ErlPid` / :class:`ErlRef` /
                                       :class:`ErlPort`
fun (``NEW_FUN_EXT``, ``EXPORT_EXT``)  :class:`OpaqueTerm`
=====================================  =========================================

Anything else raises ``TypeError`` in :func:`encode` (the caller's mistake).
A ``dict`` is written in its own order (Erlang orders a map's keys when it
reads one), so its bytes are ``term_to_binary``'s when that order is
Erlang's key order. Pids, ports and references are always written in their
newest forms (``NEW_PID_EXT``, ``NEW_PORT_EXT`` or ``V4_PORT_EXT``,
``NEWER_REFERENCE_EXT``), whatever form they were read from.

Bounds: :func:`decode` reads bytes from a peer and trusts none of them.
Input and inflated size, nesting depth, atom length (255 characters),
big-integer length are bounded (:class:`Limits`), and every count (list,
tuple, map, string, binary) is checked against the bytes that remain before
anything is allocated for it. Every malformed input, truncated included,
raises :class:`ErlangProtocolError` naming the tag and the offset; a shorter
input never yields a different value.

Hooks (how :mod:`snowg.erlang._mapping` puts snowg's own pids and refs in
place of :class:`ErlPid`/:class:`ErlRef`, at no cost when unused):
``encode(..., convert=f)`` asks ``f`` about any value whose type is none of
the exact types of the table, before a subclass of tuple, list or dict is
written as its base type (so ``NamedTuple`` values reach it); ``f`` returns a
replacement (an :class:`OpaqueTerm` is written as its bytes) or
``NotImplemented``. ``decode(..., pid_in=, ref_in=)`` build each pid and
reference read. :class:`TermWriter` and :class:`TermReader` hold the options
for a connection that encodes and decodes every message with the same ones.

Speed: this codec is on every message to and from a BEAM node. The common
small terms (small integers, ASCII strings, atoms, small tuples, binaries)
are read and written inline before the general dispatch, and atoms are
looked up in bounded caches of their encodings and of their decoded values
(each cleared when it reaches 4096 entries).

Map keys: Python's ``1 == 1.0 == True`` and unhashable lists and maps mean
some Erlang maps have no ``dict`` form: a map with a list or map key, or
with two keys Python takes as equal, decodes to an :class:`ErlMap` (its
pairs, in the order read), which encodes back to the same map. A map that
really repeats a key (no encoder writes one) is still a valid ``ErlMap``.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ._errors import ErlangProtocolError
from ._types import MAX_ATOM_CHARS, Atom, BitBinary, ErlMap, ErlPid, ErlPort, ErlRef, ImproperList, OpaqueTerm

VERSION = 131

# Tags (erl_ext_dist).
COMPRESSED = 80
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
ATOM_CACHE_REF = 82
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
FUN_EXT = 117
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120
LOCAL_EXT = 121

TAG_NAMES = {
    COMPRESSED: "COMPRESSED",
    NEW_FLOAT_EXT: "NEW_FLOAT_EXT",
    BIT_BINARY_EXT: "BIT_BINARY_EXT",
    ATOM_CACHE_REF: "ATOM_CACHE_REF",
    NEW_PID_EXT: "NEW_PID_EXT",
    NEW_PORT_EXT: "NEW_PORT_EXT",
    NEWER_REFERENCE_EXT: "NEWER_REFERENCE_EXT",
    SMALL_INTEGER_EXT: "SMALL_INTEGER_EXT",
    INTEGER_EXT: "INTEGER_EXT",
    FLOAT_EXT: "FLOAT_EXT",
    ATOM_EXT: "ATOM_EXT",
    REFERENCE_EXT: "REFERENCE_EXT",
    PORT_EXT: "PORT_EXT",
    PID_EXT: "PID_EXT",
    SMALL_TUPLE_EXT: "SMALL_TUPLE_EXT",
    LARGE_TUPLE_EXT: "LARGE_TUPLE_EXT",
    NIL_EXT: "NIL_EXT",
    STRING_EXT: "STRING_EXT",
    LIST_EXT: "LIST_EXT",
    BINARY_EXT: "BINARY_EXT",
    SMALL_BIG_EXT: "SMALL_BIG_EXT",
    LARGE_BIG_EXT: "LARGE_BIG_EXT",
    NEW_FUN_EXT: "NEW_FUN_EXT",
    EXPORT_EXT: "EXPORT_EXT",
    NEW_REFERENCE_EXT: "NEW_REFERENCE_EXT",
    SMALL_ATOM_EXT: "SMALL_ATOM_EXT",
    MAP_EXT: "MAP_EXT",
    FUN_EXT: "FUN_EXT",
    ATOM_UTF8_EXT: "ATOM_UTF8_EXT",
    SMALL_ATOM_UTF8_EXT: "SMALL_ATOM_UTF8_EXT",
    V4_PORT_EXT: "V4_PORT_EXT",
    LOCAL_EXT: "LOCAL_EXT",
}

_ATOM_TAGS = (SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT, SMALL_ATOM_EXT, ATOM_EXT)
_VERSION_BYTE = bytes((VERSION,))

# The values of SMALL_ATOM_UTF8_EXT atoms decoded so far, by their UTF-8 text
# and the none atom (which decodes to None): the atoms a peer repeats in every
# message ('$gen_call', ok, a registered name) are read with one dict lookup.
# Bounded: cleared when it reaches _ATOM_CACHE_MAX entries.
_ATOM_VALUES: Dict[str, Dict[bytes, Any]] = {"undefined": {}, "nil": {}}
_ATOM_CACHE_MAX = 4096
# The encodings of atoms written so far, by their text (bounded the same way).
_ATOM_BYTES: Dict[str, bytes] = {}
_MISSING = object()

# The exact types the encoder knows; ``convert`` is asked about any other.
_KNOWN_TYPES = frozenset(
    (bool, type(None), int, Atom, str, bytes, bytearray, memoryview, float, list, tuple, dict)
    + (ImproperList, ErlMap, ErlPid, ErlRef, ErlPort, BitBinary, OpaqueTerm)
)
_NONE_ATOMS = ("undefined", "nil")

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_III = struct.Struct(">III")
_REF_WORDS = {n: struct.Struct(f">{n + 1}I") for n in range(1, 6)}  # creation, then the id words


@dataclass(frozen=True)
class Limits:
    """What :func:`decode` accepts from a peer; anything beyond is a protocol error.

    Attributes:
        max_size: the most bytes of one term, inflated size of a compressed one included.
        max_depth: the deepest nesting of lists, tuples, maps and improper tails.
        max_big_bytes: the most bytes of one big integer's magnitude.
    """

    max_size: int = 256 * 1024 * 1024
    max_depth: int = 200
    max_big_bytes: int = 64 * 1024


DEFAULT_LIMITS = Limits()


def _tag_name(tag: int) -> str:
    return TAG_NAMES.get(tag, f"unknown tag {tag}")


# ------------------------------------------------------------------ encoding


def encode(
    term: Any,
    *,
    none_atom: str = "undefined",
    max_depth: int = 200,
    convert: Optional[Callable[[Any], Any]] = None,
) -> bytes:
    """Encode a Python value as Erlang's ``term_to_binary(T, [{minor_version, 2}])`` does.

    Args:
        term: the value (see the mapping table of this module).
        none_atom: the atom ``None`` becomes: ``"undefined"`` (Erlang) or ``"nil"`` (Elixir).
        max_depth: the deepest nesting accepted (a cycle would be infinite).
        convert: consulted for a value whose type is none of the exact types
            above (before a subclass of tuple, list or dict is encoded as its
            base type): it returns the value to encode in its place, or
            ``NotImplemented`` to leave it to the encoder. Its replacement may
            be an :class:`OpaqueTerm` (bytes written as they are).

    Returns:
        The bytes, starting with the version byte 131.

    Raises:
        TypeError: ``term`` holds something with no Erlang form (a set, NaN,
            an atom over 255 characters, a str with lone surrogates, a
            nesting deeper than ``max_depth``), or ``convert`` raised it.
    """
    if none_atom not in _NONE_ATOMS:
        raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
    out = bytearray(_VERSION_BYTE)
    _Encoder(out, none_atom, max_depth, convert).term(term, 0)
    return bytes(out)


def encode_into(
    out: bytearray,
    term: Any,
    *,
    none_atom: str = "undefined",
    max_depth: int = 200,
    convert: Optional[Callable[[Any], Any]] = None,
) -> None:
    """Append the version byte and the encoding of ``term`` to ``out`` (see :func:`encode`).

    On ``TypeError`` some bytes may have been appended already; the caller
    drops ``out``.
    """
    if none_atom not in _NONE_ATOMS:
        raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
    out.append(VERSION)
    _Encoder(out, none_atom, max_depth, convert).term(term, 0)


def encode_dist(term: Any, *, none_atom: str = "undefined", max_depth: int = 200) -> bytes:
    """Encode one term of a distribution message (a control message or its payload).

    Without the atom cache (snowg never offers ``DIST_HDR_ATOM_CACHE``), each
    term of a pass-through message is a whole ``term_to_binary`` with its
    version byte, so this is :func:`encode`; it exists so the distribution
    code says which it means. Never compressed.
    """
    return encode(term, none_atom=none_atom, max_depth=max_depth)


class TermWriter:
    """A reusable encoder with fixed options: :meth:`write` appends one term to a buffer.

    What :func:`encode_into` does, without checking the options and building
    an encoder on every call (a connection encodes every message with the
    same options). Not reentrant: one term at a time (nothing in it switches
    greenlets).

    Raises:
        ValueError: ``none_atom`` is neither ``"undefined"`` nor ``"nil"``.
    """

    __slots__ = ("_encoder",)

    def __init__(
        self, *, none_atom: str = "undefined", max_depth: int = 200, convert: Optional[Callable[[Any], Any]] = None
    ) -> None:
        if none_atom not in _NONE_ATOMS:
            raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
        self._encoder = _Encoder(bytearray(), none_atom, max_depth, convert)

    def write(self, out: bytearray, term: Any) -> None:
        """Append the version byte and ``term`` to ``out``; raises as :func:`encode`."""
        encoder = self._encoder
        out.append(VERSION)
        encoder.out = out
        try:
            encoder.term(term, 0)
        finally:
            encoder.out = _NO_BUFFER


_NO_BUFFER = bytearray()


class _Encoder:
    __slots__ = ("out", "none_atom", "max_depth", "convert")

    def __init__(self, out: bytearray, none_atom: str, max_depth: int, convert: Optional[Callable[[Any], Any]]) -> None:
        self.out = out
        self.none_atom = none_atom
        self.max_depth = max_depth
        self.convert = convert

    def atom(self, name: str) -> None:
        if len(name) > MAX_ATOM_CHARS:
            raise TypeError(f"an atom has at most {MAX_ATOM_CHARS} characters, not {len(name)}: {name[:40]!r}...")
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TypeError(f"atom {name!r} is not valid Unicode (lone surrogate)") from e
        if len(raw) < 256:
            encoded = bytes((SMALL_ATOM_UTF8_EXT, len(raw))) + raw
        else:
            encoded = bytes((ATOM_UTF8_EXT,)) + _U16.pack(len(raw)) + raw
        self.out += encoded
        if len(_ATOM_BYTES) >= _ATOM_CACHE_MAX:
            _ATOM_BYTES.clear()
        _ATOM_BYTES[name] = encoded

    def integer(self, value: int) -> None:
        out = self.out
        if 0 <= value <= 255:
            out += bytes((SMALL_INTEGER_EXT, value))
        elif -(1 << 31) <= value < (1 << 31):
            out.append(INTEGER_EXT)
            out += _I32.pack(value)
        else:
            magnitude = abs(value)
            n = (magnitude.bit_length() + 7) // 8
            if n < 256:
                out += bytes((SMALL_BIG_EXT, n))
            else:
                if n >= 1 << 32:
                    raise TypeError("an integer too big for Erlang's external format")
                out.append(LARGE_BIG_EXT)
                out += _U32.pack(n)
            out.append(1 if value < 0 else 0)
            out += magnitude.to_bytes(n, "little")

    def binary(self, data: bytes) -> None:
        if len(data) >= 1 << 32:
            raise TypeError("a binary of 4 GiB or more has no Erlang external form")
        self.out.append(BINARY_EXT)
        self.out += _U32.pack(len(data))
        self.out += data

    def term(self, term: Any, depth: int) -> None:  # noqa: C901 - one dispatch, on purpose
        out = self.out
        kind = type(term)
        # The common exact types first, each writing what the general chain
        # below would; anything unusual falls through to it.
        if kind is str:
            if term.isascii() and len(term) < 1 << 32:
                out.append(BINARY_EXT)
                out += _U32.pack(len(term))
                out += term.encode("ascii")
                return
        elif kind is int:
            if 0 <= term <= 255:
                out.append(SMALL_INTEGER_EXT)
                out.append(term)
                return
        elif kind is Atom:
            cached = _ATOM_BYTES.get(term)
            if cached is not None:
                out += cached
                return
        elif kind is tuple:
            if len(term) < 256 and depth < self.max_depth:
                out.append(SMALL_TUPLE_EXT)
                out.append(len(term))
                for item in term:
                    self.term(item, depth + 1)
                return
        elif kind is OpaqueTerm:
            out += term.data
            return
        elif self.convert is not None and kind not in _KNOWN_TYPES and self.converted(term, depth):
            return
        if term is True or term is False:
            self.atom("true" if term else "false")
        elif term is None:
            self.atom(self.none_atom)
        elif kind is ErlPid:
            out.append(NEW_PID_EXT)
            self.atom(term.node)
            out += struct.pack(">III", term.id, term.serial, term.creation)
        elif kind is ErlRef:
            out.append(NEWER_REFERENCE_EXT)
            out += _U16.pack(len(term.ids))
            self.atom(term.node)
            out += _U32.pack(term.creation)
            out += struct.pack(f">{len(term.ids)}I", *term.ids)
        elif kind is ErlPort:
            if term.id < 1 << 32:
                out.append(NEW_PORT_EXT)
                self.atom(term.node)
                out += struct.pack(">II", term.id, term.creation)
            else:
                out.append(V4_PORT_EXT)
                self.atom(term.node)
                out += _U64.pack(term.id)
                out += _U32.pack(term.creation)
        elif kind is BitBinary:
            out.append(BIT_BINARY_EXT)
            out += _U32.pack(len(term.data))
            out.append(term.bits)
            out += term.data
        elif kind is int or (isinstance(term, int) and not isinstance(term, bool)):
            self.integer(int(term))
        elif kind is Atom:
            self.atom(str(term))
        elif kind is str or isinstance(term, str):
            if isinstance(term, Atom):
                self.atom(str(term))
                return
            try:
                self.binary(term.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise TypeError(f"a str with lone surrogates has no UTF-8 form: {term[:40]!r}") from e
        elif kind is bytes or isinstance(term, (bytes, bytearray, memoryview)):
            self.binary(bytes(term))
        elif kind is float or isinstance(term, float):
            if not math.isfinite(term):
                raise TypeError(f"Erlang has no float {term!r} (NaN and infinities cannot be sent)")
            out.append(NEW_FLOAT_EXT)
            out += _F64.pack(term)
        elif kind is list or kind is tuple or kind is dict or kind is ImproperList:
            if depth >= self.max_depth:
                raise TypeError(f"a term nested deeper than {self.max_depth} levels (a cycle?) cannot be encoded")
            if kind is tuple:
                if len(term) < 256:
                    out += bytes((SMALL_TUPLE_EXT, len(term)))
                else:
                    out.append(LARGE_TUPLE_EXT)
                    out += _U32.pack(len(term))
                for item in term:
                    self.term(item, depth + 1)
            elif kind is list:
                if not term:
                    out.append(NIL_EXT)
                elif len(term) < 65536 and all(type(i) is int and 0 <= i <= 255 for i in term):
                    out.append(STRING_EXT)
                    out += _U16.pack(len(term))
                    out += bytes(term)
                else:
                    out.append(LIST_EXT)
                    out += _U32.pack(len(term))
                    for item in term:
                        self.term(item, depth + 1)
                    out.append(NIL_EXT)
            elif kind is dict:
                out.append(MAP_EXT)
                out += _U32.pack(len(term))
                for key, value in term.items():
                    self.term(key, depth + 1)
                    self.term(value, depth + 1)
            else:
                out.append(LIST_EXT)
                out += _U32.pack(len(term.items))
                for item in term.items:
                    self.term(item, depth + 1)
                self.term(term.tail, depth + 1)
        elif kind is OpaqueTerm:
            out += term.data
        elif kind is ErlMap:
            if depth >= self.max_depth:
                raise TypeError(f"a term nested deeper than {self.max_depth} levels (a cycle?) cannot be encoded")
            out.append(MAP_EXT)
            out += _U32.pack(len(term.items))
            for key, value in term.items:
                self.term(key, depth + 1)
                self.term(value, depth + 1)
        elif isinstance(term, (tuple, list, dict)):
            # Subclasses (a NamedTuple, an OrderedDict) encode as their base type.
            if isinstance(term, dict):
                self.term(dict(term), depth)
            else:
                self.term(tuple(term) if isinstance(term, tuple) else list(term), depth)
        else:
            raise TypeError(f"{type(term).__name__} has no Erlang form: {term!r:.80}")

    def converted(self, term: Any, depth: int) -> bool:
        """Encode what ``convert`` puts in place of ``term``; False if it declines."""
        assert self.convert is not None
        replacement = self.convert(term)
        if replacement is NotImplemented:
            return False
        if depth >= self.max_depth:
            raise TypeError(f"a term nested deeper than {self.max_depth} levels (a cycle?) cannot be encoded")
        self.term(replacement, depth + 1)
        return True


# ------------------------------------------------------------------ decoding


#: Builds the value of a pid read from the wire: ``pid_in(node, num, serial, creation)``.
PidFactory = Callable[[str, int, int, int], Any]
#: Builds the value of a reference read from the wire: ``ref_in(node, creation, ids)``.
RefFactory = Callable[[str, int, Tuple[int, ...]], Any]


def erl_pid(node: str, num: int, serial: int, creation: int) -> ErlPid:
    """The default :data:`PidFactory`: an :class:`ErlPid`."""
    return ErlPid(Atom(node), num, serial, creation)


def erl_ref(node: str, creation: int, ids: Tuple[int, ...]) -> ErlRef:
    """The default :data:`RefFactory`: an :class:`ErlRef`."""
    return ErlRef(Atom(node), creation, ids)


def decode(
    data: bytes,
    *,
    offset: int = 0,
    strict_bytes: bool = False,
    none_atom: str = "undefined",
    limits: Limits = DEFAULT_LIMITS,
    pid_in: PidFactory = erl_pid,
    ref_in: RefFactory = erl_ref,
) -> Tuple[Any, int]:
    """Decode one term written by ``term_to_binary`` (version byte, possibly compressed).

    Args:
        data: the bytes; the term starts at ``offset``, with the version byte 131.
            Bytes after the term are left alone.
        offset: where the term starts.
        strict_bytes: keep every binary as ``bytes`` (by default a binary that
            is valid UTF-8 becomes a ``str``).
        none_atom: the atom that becomes ``None`` (``"undefined"`` or ``"nil"``).
        limits: the bounds (see :class:`Limits`).
        pid_in: builds each pid's value from its node name (a plain ``str``),
            id, serial and creation (default: :class:`ErlPid`); what it raises
            propagates.
        ref_in: builds each reference's value from its node name, creation
            and id words (default: :class:`ErlRef`).

    Returns:
        ``(term, end)``: the value and the offset just after it in ``data``
        (with ``offset`` 0: how many bytes it took).

    Raises:
        ErlangProtocolError: the bytes are not one whole, valid term within
            the limits (truncated too); the message names the tag and offset.
        ValueError: ``offset`` is outside ``data``.
    """
    if offset and not 0 <= offset <= len(data):
        raise ValueError(f"offset {offset} is outside the {len(data)} bytes")
    return _decode_versioned(data, offset, strict_bytes, none_atom, limits, True, pid_in, ref_in)


def decode_dist(
    data: bytes,
    offset: int = 0,
    *,
    strict_bytes: bool = False,
    none_atom: str = "undefined",
    limits: Limits = DEFAULT_LIMITS,
    pid_in: PidFactory = erl_pid,
    ref_in: RefFactory = erl_ref,
) -> Tuple[Any, int]:
    """Decode one term of a distribution message, starting at ``offset``.

    A pass-through message (``p``, no atom cache) holds one or two terms
    back to back (the control message, then the payload), each with its
    version byte. This decodes the one at ``offset`` and returns where it
    ends, so the caller reads the next from there. Distribution never
    compresses; ``COMPRESSED`` and ``ATOM_CACHE_REF`` (the cache snowg never
    offers) are protocol errors here.

    Returns:
        ``(term, end)``: the value and the offset just after it.

    Raises:
        ErlangProtocolError: as :func:`decode` (``pid_in`` and ``ref_in`` as there too).
    """
    if not 0 <= offset <= len(data):
        raise ValueError(f"offset {offset} is outside the {len(data)} bytes")
    return _decode_versioned(data, offset, strict_bytes, none_atom, limits, False, pid_in, ref_in)


class TermReader:
    """A decoder with fixed options: :func:`decode` and :func:`decode_dist` without passing them each time.

    Args: as :func:`decode`'s keywords.

    Raises:
        ValueError: ``none_atom`` is neither ``"undefined"`` nor ``"nil"``.
    """

    __slots__ = ("strict_bytes", "none_atom", "limits", "pid_in", "ref_in")

    def __init__(
        self,
        *,
        strict_bytes: bool = False,
        none_atom: str = "undefined",
        limits: Limits = DEFAULT_LIMITS,
        pid_in: PidFactory = erl_pid,
        ref_in: RefFactory = erl_ref,
    ) -> None:
        if none_atom not in _NONE_ATOMS:
            raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
        self.strict_bytes = strict_bytes
        self.none_atom = none_atom
        self.limits = limits
        self.pid_in = pid_in
        self.ref_in = ref_in

    def read(self, data: bytes, offset: int = 0) -> Tuple[Any, int]:
        """:func:`decode` at ``offset`` (compressed terms too): ``(term, end)``."""
        if offset and not 0 <= offset <= len(data):
            raise ValueError(f"offset {offset} is outside the {len(data)} bytes")
        return _decode_versioned(
            data, offset, self.strict_bytes, self.none_atom, self.limits, True, self.pid_in, self.ref_in
        )

    def read_dist(self, data: bytes, offset: int) -> Tuple[Any, int]:
        """:func:`decode_dist` at ``offset`` (never compressed): ``(term, end)``."""
        if offset and not 0 <= offset <= len(data):
            raise ValueError(f"offset {offset} is outside the {len(data)} bytes")
        return _decode_versioned(
            data, offset, self.strict_bytes, self.none_atom, self.limits, False, self.pid_in, self.ref_in
        )


def _decode_versioned(
    data: bytes,
    offset: int,
    strict_bytes: bool,
    none_atom: str,
    limits: Limits,
    allow_compressed: bool,
    pid_in: PidFactory,
    ref_in: RefFactory,
) -> Tuple[Any, int]:
    if none_atom not in _NONE_ATOMS:
        raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
    if type(data) is not bytes:
        data = bytes(data)
    if offset >= len(data):
        raise ErlangProtocolError(f"truncated term: no version byte at offset {offset}")
    if data[offset] != VERSION:
        raise ErlangProtocolError(f"version byte {data[offset]} at offset {offset}, expected {VERSION}")
    start = offset + 1
    if start < len(data) and data[start] == COMPRESSED:
        if not allow_compressed:
            raise ErlangProtocolError(f"COMPRESSED term at offset {start} inside a distribution message")
        return _decode_compressed(data, start, strict_bytes, none_atom, limits, pid_in, ref_in)
    end_limit = min(len(data), start + limits.max_size)
    dec = _Decoder(data, end_limit, strict_bytes, none_atom, limits, start, pid_in, ref_in)
    return dec.term(0), dec.pos


def _decode_compressed(
    data: bytes,
    at: int,
    strict_bytes: bool,
    none_atom: str,
    limits: Limits,
    pid_in: PidFactory,
    ref_in: RefFactory,
) -> Tuple[Any, int]:
    if at + 5 > len(data):
        raise ErlangProtocolError(f"COMPRESSED at offset {at}: truncated (no uncompressed size)")
    size = _U32.unpack_from(data, at + 1)[0]
    if size > limits.max_size:
        raise ErlangProtocolError(
            f"COMPRESSED at offset {at}: uncompressed size {size} over the limit of {limits.max_size} bytes"
        )
    inflater = zlib.decompressobj()
    try:
        inner = inflater.decompress(data[at + 5 :], size)
        if not inflater.eof and len(inner) == size and inflater.decompress(inflater.unconsumed_tail, 1):
            raise ErlangProtocolError(f"COMPRESSED at offset {at}: inflates to more than the {size} bytes it declares")
    except zlib.error as e:
        raise ErlangProtocolError(f"COMPRESSED at offset {at}: bad zlib data ({e})") from e
    if not inflater.eof:
        raise ErlangProtocolError(f"COMPRESSED at offset {at}: truncated zlib data or longer than declared")
    if len(inner) != size:
        raise ErlangProtocolError(f"COMPRESSED at offset {at}: inflates to {len(inner)} bytes, declared {size}")
    dec = _Decoder(inner, len(inner), strict_bytes, none_atom, limits, 0, pid_in, ref_in)
    term = dec.term(0)
    if dec.pos != len(inner):
        raise ErlangProtocolError(
            f"COMPRESSED at offset {at}: the inflated term ends at {dec.pos} of {len(inner)} bytes"
        )
    consumed = len(data) - len(inflater.unused_data)
    return term, consumed


class _Decoder:
    __slots__ = ("data", "end", "pos", "strict_bytes", "none_atom", "limits", "pid_in", "ref_in", "atoms")

    def __init__(
        self,
        data: bytes,
        end: int,
        strict_bytes: bool,
        none_atom: str,
        limits: Limits,
        pos: int,
        pid_in: PidFactory,
        ref_in: RefFactory,
    ) -> None:
        self.data = data
        self.end = end
        self.pos = pos
        self.strict_bytes = strict_bytes
        self.none_atom = none_atom
        self.limits = limits
        self.pid_in = pid_in
        self.ref_in = ref_in
        self.atoms = _ATOM_VALUES[none_atom]

    def fail(self, tag: int, at: int, what: str) -> ErlangProtocolError:
        return ErlangProtocolError(f"{_tag_name(tag)} at offset {at}: {what}")

    def need(self, tag: int, at: int, n: int, field: str) -> int:
        """Check ``n`` more bytes remain for ``field``; return where they start."""
        pos = self.pos
        if pos + n > self.end:
            if self.end < len(self.data):
                raise self.fail(tag, at, f"{field} goes past the limit of {self.limits.max_size} bytes")
            raise self.fail(tag, at, f"truncated: {field} needs {n} bytes, {self.end - pos} remain")
        self.pos = pos + n
        return pos

    def remaining(self) -> int:
        return self.end - self.pos

    def count(self, tag: int, at: int, n: int, per_item: int, what: str) -> None:
        if n * per_item > self.remaining():
            raise self.fail(tag, at, f"{what} {n} but only {self.remaining()} bytes remain")

    def atom_text(self) -> str:
        """Read an atom (any of the four atom tags) as its text."""
        at = self.pos
        if at >= self.end:
            raise ErlangProtocolError(f"truncated: an atom expected at offset {at}, no bytes remain")
        tag = self.data[at]
        self.pos += 1
        if tag not in _ATOM_TAGS:
            raise ErlangProtocolError(f"{_tag_name(tag)} at offset {at}: an atom was expected (a node name)")
        return self.atom_body(tag, at)

    def atom_body(self, tag: int, at: int) -> str:
        data = self.data
        if tag in (SMALL_ATOM_UTF8_EXT, SMALL_ATOM_EXT):
            n = data[self.need(tag, at, 1, "length")]
        else:
            n = _U16.unpack_from(data, self.need(tag, at, 2, "length"))[0]
        utf8 = tag in (SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT)
        if n > (4 * MAX_ATOM_CHARS if utf8 else MAX_ATOM_CHARS):
            raise self.fail(tag, at, f"atom length {n} bytes, over {MAX_ATOM_CHARS} characters")
        raw = data[self.need(tag, at, n, "atom text") : self.pos]
        if utf8:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.fail(tag, at, f"atom text is not valid UTF-8 ({e.reason})") from None
            if len(text) > MAX_ATOM_CHARS:
                raise self.fail(tag, at, f"atom of {len(text)} characters, over {MAX_ATOM_CHARS}")
            return text
        return raw.decode("latin-1")

    def atom_value(self, text: str) -> Any:
        if text == "true":
            return True
        if text == "false":
            return False
        if text == self.none_atom:
            return None
        return Atom(text)

    def u32(self, tag: int, at: int, field: str) -> int:
        value: int = _U32.unpack_from(self.data, self.need(tag, at, 4, field))[0]
        return value

    def term(self, depth: int) -> Any:  # noqa: C901 - one dispatch, on purpose
        data = self.data
        at = self.pos
        end = self.end
        if at + 5 <= end:
            # The common small terms, read inline when all their bytes are
            # there; anything else (or an error) takes the general path below.
            tag = data[at]
            if tag == SMALL_INTEGER_EXT:
                self.pos = at + 2
                return data[at + 1]
            if tag == SMALL_ATOM_UTF8_EXT:
                stop = at + 2 + data[at + 1]
                if stop <= end:
                    known = self.atoms.get(data[at + 2 : stop], _MISSING)
                    if known is not _MISSING:
                        self.pos = stop
                        return known
            elif tag == BINARY_EXT:
                stop = at + 5 + _U32.unpack_from(data, at + 1)[0]
                if stop <= end:
                    self.pos = stop
                    raw = data[at + 5 : stop]
                    if self.strict_bytes:
                        return raw
                    try:
                        return raw.decode("utf-8")
                    except UnicodeDecodeError:
                        return raw
            elif tag == SMALL_TUPLE_EXT and depth < self.limits.max_depth:
                n = data[at + 1]
                if n <= end - at - 2:
                    self.pos = at + 2
                    return tuple([self.term(depth + 1) for _ in range(n)])
            elif tag == NEW_PID_EXT and data[at + 1] == SMALL_ATOM_UTF8_EXT:
                node_end = at + 3 + data[at + 2]
                if node_end + 12 <= end:
                    try:
                        node = data[at + 3 : node_end].decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        pid_id, serial, creation = _III.unpack_from(data, node_end)
                        self.pos = node_end + 12
                        if self.pid_in is erl_pid:
                            return ErlPid(Atom(node), pid_id, serial, creation)
                        return self.pid_in(node, pid_id, serial, creation)
            elif tag == NEWER_REFERENCE_EXT and data[at + 3] == SMALL_ATOM_UTF8_EXT:
                n = data[at + 1] << 8 | data[at + 2]
                node_end = at + 5 + data[at + 4]
                stop = node_end + 4 + 4 * n
                if 1 <= n <= 5 and stop <= end:
                    try:
                        node = data[at + 5 : node_end].decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        fields = _REF_WORDS[n].unpack_from(data, node_end)
                        self.pos = stop
                        return self.ref_in(node, fields[0], fields[1:])
        if at >= self.end:
            if self.end < len(data):
                raise ErlangProtocolError(f"term longer than the limit of {self.limits.max_size} bytes")
            raise ErlangProtocolError(f"truncated: a term expected at offset {at}, no bytes remain")
        tag = data[at]
        self.pos = at + 1
        if tag == SMALL_INTEGER_EXT:
            return data[self.need(tag, at, 1, "value")]
        if tag in _ATOM_TAGS:
            atom = self.atom_value(self.atom_body(tag, at))
            if tag == SMALL_ATOM_UTF8_EXT:
                atoms = self.atoms
                if len(atoms) >= _ATOM_CACHE_MAX:
                    atoms.clear()
                atoms[data[at + 2 : self.pos]] = atom
            return atom
        if tag == INTEGER_EXT:
            value: int = _I32.unpack_from(data, self.need(tag, at, 4, "value"))[0]
            return value
        if tag == BINARY_EXT:
            n = self.u32(tag, at, "length")
            raw = data[self.need(tag, at, n, "data") : self.pos]
            if self.strict_bytes:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        if tag == NIL_EXT:
            return []
        if tag in (SMALL_TUPLE_EXT, LARGE_TUPLE_EXT, LIST_EXT, MAP_EXT):
            if depth >= self.limits.max_depth:
                raise self.fail(tag, at, f"nested deeper than {self.limits.max_depth} levels")
            if tag == SMALL_TUPLE_EXT:
                n = data[self.need(tag, at, 1, "arity")]
            else:
                n = self.u32(tag, at, "arity" if tag == LARGE_TUPLE_EXT else "length")
            if tag == MAP_EXT:
                self.count(tag, at, n, 2, "map of arity")
                result: Dict[Any, Any] = {}
                for i in range(n):
                    key = self.term(depth + 1)
                    value = self.term(depth + 1)
                    try:
                        fresh = key not in result
                    except TypeError:  # a list or map key
                        fresh = False
                    if not fresh:
                        # No dict form: keep every pair, in order, as an ErlMap.
                        pairs = list(result.items())
                        pairs.append((key, value))
                        for _ in range(i + 1, n):
                            key = self.term(depth + 1)
                            pairs.append((key, self.term(depth + 1)))
                        return ErlMap(tuple(pairs))
                    result[key] = value
                return result
            self.count(tag, at, n, 1, "count")
            items = [self.term(depth + 1) for _ in range(n)]
            if tag != LIST_EXT:
                return tuple(items)
            tail = self.term(depth + 1)  # no items (never written, Erlang reads it): the tail alone
            if n == 0:
                return tail
            if type(tail) is list:
                return items + tail
            if type(tail) is ImproperList:
                return ImproperList(tuple(items) + tail.items, tail.tail)
            return ImproperList(tuple(items), tail)
        if tag == STRING_EXT:
            n = _U16.unpack_from(data, self.need(tag, at, 2, "length"))[0]
            return list(data[self.need(tag, at, n, "characters") : self.pos])
        if tag == NEW_FLOAT_EXT:
            number: float = _F64.unpack_from(data, self.need(tag, at, 8, "value"))[0]
            if not math.isfinite(number):
                raise self.fail(tag, at, f"{number} is not an Erlang float")
            return number
        if tag in (SMALL_BIG_EXT, LARGE_BIG_EXT):
            if tag == SMALL_BIG_EXT:
                n = data[self.need(tag, at, 1, "length")]
            else:
                n = self.u32(tag, at, "length")
            if n > self.limits.max_big_bytes:
                raise self.fail(tag, at, f"big integer of {n} bytes, over the limit of {self.limits.max_big_bytes}")
            sign = data[self.need(tag, at, 1, "sign")]
            if sign > 1:
                raise self.fail(tag, at, f"sign byte {sign}, expected 0 or 1")
            magnitude = int.from_bytes(data[self.need(tag, at, n, "digits") : self.pos], "little")
            return -magnitude if sign else magnitude
        if tag == NEW_PID_EXT or tag == PID_EXT:
            node = self.atom_text()
            start = self.need(tag, at, 12 if tag == NEW_PID_EXT else 9, "id, serial and creation")
            pid_id, serial = struct.unpack_from(">II", data, start)
            creation = _U32.unpack_from(data, start + 8)[0] if tag == NEW_PID_EXT else data[start + 8]
            if self.pid_in is erl_pid:
                return ErlPid(Atom(node), pid_id, serial, creation)
            return self.pid_in(node, pid_id, serial, creation)
        if tag == NEWER_REFERENCE_EXT or tag == NEW_REFERENCE_EXT:
            n = _U16.unpack_from(data, self.need(tag, at, 2, "length"))[0]
            if not 1 <= n <= 5:
                raise self.fail(tag, at, f"{n} id words, expected 1 to 5")
            node = self.atom_text()
            if tag == NEWER_REFERENCE_EXT:
                creation = self.u32(tag, at, "creation")
            else:
                creation = data[self.need(tag, at, 1, "creation")]
            ids = struct.unpack_from(f">{n}I", data, self.need(tag, at, 4 * n, "id words"))
            return self.ref_in(node, creation, ids)
        if tag in (NEW_PORT_EXT, PORT_EXT, V4_PORT_EXT):
            node = self.atom_text()
            if tag == V4_PORT_EXT:
                port_id = _U64.unpack_from(data, self.need(tag, at, 8, "id"))[0]
                creation = self.u32(tag, at, "creation")
            elif tag == NEW_PORT_EXT:
                port_id = self.u32(tag, at, "id")
                creation = self.u32(tag, at, "creation")
            else:
                port_id = self.u32(tag, at, "id")
                creation = data[self.need(tag, at, 1, "creation")]
            return ErlPort(Atom(node), port_id, creation)
        if tag == BIT_BINARY_EXT:
            n = self.u32(tag, at, "length")
            bits = data[self.need(tag, at, 1, "bits")]
            if n == 0 and bits == 0:  # never written, Erlang reads it as <<>>
                return b"" if self.strict_bytes else ""
            if n == 0 or not 1 <= bits <= 8:
                raise self.fail(tag, at, f"{bits} bits in the last of {n} bytes, expected 1 to 8 of at least 1")
            return BitBinary(data[self.need(tag, at, n, "data") : self.pos], bits)
        if tag == EXPORT_EXT:
            if depth >= self.limits.max_depth:
                raise self.fail(tag, at, f"nested deeper than {self.limits.max_depth} levels")
            self.atom_text()  # module
            self.atom_text()  # function
            arity_at = self.need(tag, at, 2, "arity")
            if data[arity_at] != SMALL_INTEGER_EXT:
                raise self.fail(tag, at, f"arity at offset {arity_at} is not a SMALL_INTEGER_EXT")
            return OpaqueTerm(data[at : self.pos])
        if tag == NEW_FUN_EXT:
            return self.new_fun(at, depth)
        if tag == FLOAT_EXT:
            raw = data[self.need(tag, at, 31, "text") : self.pos]
            try:
                number = float(raw.rstrip(b"\0").decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise self.fail(tag, at, f"float text {raw!r} is not a number") from None
            if not math.isfinite(number):
                raise self.fail(tag, at, f"{number} is not an Erlang float")
            return number
        if tag == COMPRESSED:
            raise self.fail(tag, at, "a compressed term inside a term")
        if tag == ATOM_CACHE_REF:
            raise self.fail(tag, at, "atom cache references need the atom cache, which snowg does not negotiate")
        raise self.fail(tag, at, "tag not supported")

    def new_fun(self, at: int, depth: int) -> OpaqueTerm:
        tag = NEW_FUN_EXT
        if depth >= self.limits.max_depth:
            raise self.fail(tag, at, f"nested deeper than {self.limits.max_depth} levels")
        size = self.u32(tag, at, "size")
        if size < 4 + 1 + 16 + 4 + 4:
            raise self.fail(tag, at, f"size {size} is too small for a fun")
        if size - 4 > self.remaining():
            raise self.fail(tag, at, f"truncated: size {size} but {self.remaining() + 4} bytes remain")
        start = self.need(tag, at, 1 + 16 + 4 + 4, "arity, uniq, index and free variable count")
        num_free = _U32.unpack_from(self.data, start + 21)[0]
        self.atom_text()  # module
        for field in ("old index", "old uniq"):
            field_at = self.pos
            value = self.term(depth + 1)
            if type(value) is not int:
                raise self.fail(tag, at, f"{field} at offset {field_at} is not an integer")
        pid_at = self.pos
        # By its tag: pid_in may build any value for it.
        if pid_at >= self.end or self.data[pid_at] not in (NEW_PID_EXT, PID_EXT):
            raise self.fail(tag, at, f"creator at offset {pid_at} is not a pid")
        self.term(depth + 1)
        self.count(tag, at, num_free, 1, "free variables")
        for _ in range(num_free):
            self.term(depth + 1)
        if self.pos != at + 1 + size:
            raise self.fail(tag, at, f"size {size} but its fields end {self.pos - at - 1} bytes after the tag")
        return OpaqueTerm(self.data[at : self.pos])
