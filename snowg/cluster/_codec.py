"""The wire encoding of terms: msgpack plus a few ext types, so terms round-trip exactly.

What crosses nodes is a *term* (see the user guide, "Terms"): ``None``, ``bool``, ``int`` (any
size), ``float``, ``str``, ``bytes``, ``tuple``, ``list``, ``dict``, ``Pid``,
``Ref``, ``TimerRef`` and the runtime's message types (``Exit``, ``Down``,
``NodeUp``, ``NodeDown``, ``Crash``). Anything else raises ``TypeError`` at
encode time, with one leniency: msgpack packs ``bytearray`` and ``memoryview``
natively, so they arrive as ``bytes``. Nothing is ever pickled, and decoding
never runs code named by the peer.

Encoding:

* ints beyond 64 bits: ext ``EXT_BIGINT``, payload the two's-complement
  big-endian bytes (at most :data:`MAX_BIGINT_BYTES`: larger ints are refused
  at encode time, with ``ValueError``).
* ``Pid`` / ``Ref``: ext ``EXT_PID`` / ``EXT_REF``, payload ``>qq`` (id,
  creation) followed by the node name in UTF-8. A local pid's ``_proc`` is
  not sent.
* tuples and the message types: a msgpack array whose first element is an
  empty *marker* ext (``EXT_TUPLE``, ``EXT_EXIT``, ...) followed by the items.
  Markers keep decoding flat (no nested ``unpackb`` per tuple, so no
  recursion and no stack risk on hostile input) and work for tuples used
  as dict keys.

Decoding is safe on untrusted bytes: every failure raises :class:`CodecError`,
and what one decode may cost is bounded (see :func:`decode`):

* the Python objects it builds (lists, tuples, dicts, pids, refs, big ints)
  are weighed by their size in memory as they are built, and a body whose
  objects would weigh more than :data:`MEMORY_FACTOR` times its own size
  (plus :data:`MEMORY_FLOOR`) is refused there; this bounds the memory and
  the CPU (one hook call per such object) of every frame by its size;
* nesting deeper than :data:`MAX_DEPTH` is refused (Python's ``repr`` and
  comparisons of deeper values fail on the recursion limit);
* a big int is at most :data:`MAX_BIGINT_BYTES` bytes (so its ``repr``
  works: Python refuses to print ints of more than 4300 digits);
* the node of every pid and ref must be a valid node name
  (:func:`snowg.cluster._names.is_node_name`).
"""

from __future__ import annotations

import struct
import sys
from itertools import chain, compress
from operator import itemgetter
from typing import Any, Callable, Dict, List, Tuple

import msgpack
from msgpack import ExtType

from .._core.terms import Atom, Crash, Down, Exit, NodeDown, NodeUp, Pid, Ref, TimerRef
from ._names import MAX_NODE_NAME, is_node_name

__all__ = [
    "CodecError",
    "check_term",
    "EXT_BIGINT",
    "EXT_PID",
    "EXT_REF",
    "EXT_TUPLE",
    "EXT_TIMERREF",
    "EXT_EXIT",
    "EXT_DOWN",
    "EXT_NODEUP",
    "EXT_NODEDOWN",
    "EXT_CRASH",
    "MAX_BIGINT_BYTES",
    "MAX_DEPTH",
    "MEMORY_FACTOR",
    "MEMORY_FLOOR",
    "SMALL_BODY",
    "StreamDecoder",
    "decode",
    "default",
    "encode",
    "make_packer",
    "small_decoder",
]

EXT_BIGINT = 1
EXT_PID = 2
EXT_REF = 3
EXT_TUPLE = 16
EXT_TIMERREF = 17
EXT_EXIT = 18
EXT_DOWN = 19
EXT_NODEUP = 20
EXT_NODEDOWN = 21
EXT_CRASH = 22

_ID_CREATION = struct.Struct(">qq")

#: The largest big-int payload, in bytes (8192 bits, about 2466 decimal digits).
MAX_BIGINT_BYTES = 1024
#: The deepest nesting of lists, tuples and dicts a decoded term may have
#: (below msgpack's own packing limit of 511 levels, so that whatever one node
#: accepts, every node can send on, whichever msgpack it has).
MAX_DEPTH = 500
#: A decoded body's objects may weigh this many times its size in bytes ...
MEMORY_FACTOR = 20
#: ... plus this many bytes (so that small frames are never refused).
MEMORY_FLOOR = 64 * 1024


class CodecError(ValueError):
    """Bytes that do not decode to a term (malformed msgpack or ext payloads)."""


# --- encoding ---------------------------------------------------------------


def _cannot_send(obj: Any) -> TypeError:
    return TypeError(f"cannot send a value of type {type(obj).__name__!r} to another node")


def _id_payload(kind: str, node: Any, id_: Any, creation: Any) -> bytes:
    try:
        payload: bytes = _ID_CREATION.pack(id_, creation) + node.encode("utf-8")
    except (struct.error, AttributeError, UnicodeEncodeError) as exc:
        raise TypeError(
            f"cannot send a {kind} to another node unless its node is a str and its id "
            f"and creation are 64-bit ints: {kind}({node!r}, {id_!r}, {creation!r})"
        ) from exc
    return payload


# ExtType's own __new__ re-validates its arguments in Python; ours are valid by
# construction, and skipping that check is a good part of a pid's encode time.
_new_tuple = tuple.__new__


def _enc_pid(pid: Pid) -> ExtType:
    return _new_tuple(ExtType, (EXT_PID, _id_payload("Pid", pid.node, pid.id, pid.creation)))


def _enc_ref(ref: Ref) -> ExtType:
    return _new_tuple(ExtType, (EXT_REF, _id_payload("Ref", ref.node, ref.id, ref.creation)))


def _enc_bigint(n: int) -> ExtType:
    # Only reached for ints msgpack cannot hold natively (beyond 64 bits).
    size = (n.bit_length() + 8) // 8
    if size > MAX_BIGINT_BYTES:
        raise ValueError(f"an int of {n.bit_length()} bits is too large to send (at most {8 * MAX_BIGINT_BYTES - 1})")
    return ExtType(EXT_BIGINT, n.to_bytes(size, "big", signed=True))


def _marked(code: int) -> Callable[[Tuple[Any, ...]], List[Any]]:
    marker = ExtType(code, b"")

    def enc(t: Tuple[Any, ...]) -> List[Any]:
        return [marker, *t]

    return enc


_TUPLE_MARKER = ExtType(EXT_TUPLE, b"")

_ENCODERS: Dict[type, Callable[[Any], Any]] = {
    int: _enc_bigint,
    Pid: _enc_pid,
    Ref: _enc_ref,
    tuple: _marked(EXT_TUPLE),
    TimerRef: _marked(EXT_TIMERREF),
    Exit: _marked(EXT_EXIT),
    Down: _marked(EXT_DOWN),
    NodeUp: _marked(EXT_NODEUP),
    NodeDown: _marked(EXT_NODEDOWN),
    Crash: _marked(EXT_CRASH),
    Atom: str,  # an atom is a plain str between snowg nodes (it matters only to BEAM peers)
}


def default(obj: Any) -> Any:
    """The msgpack ``default`` hook: turn a non-native term into ext types or marked arrays.

    Args:
        obj: a value msgpack cannot pack by itself (with ``strict_types=True``,
            this includes every tuple and every subclass of a native type).

    Returns:
        An ``ExtType`` or a list msgpack can pack.

    Raises:
        TypeError: ``obj`` is not a term; the message names its type.
    """
    kind = type(obj)
    if kind is Pid:
        # A pid is usually sent many times (a reply-to address, a destination):
        # its encoding is kept on it. Renaming a local pid clears it.
        ext = obj._ext
        if ext is None:
            ext = obj._ext = _enc_pid(obj)
        return ext
    if kind is tuple:
        # What _ENCODERS[tuple] does, without its call: most messages are tuples.
        return [_TUPLE_MARKER, *obj]
    enc = _ENCODERS.get(kind)
    if enc is None:
        raise _cannot_send(obj)
    return enc(obj)


def make_packer() -> msgpack.Packer:
    """A new ``msgpack.Packer`` that packs terms with snowg's ext types.

    A ``Packer`` is not re-entrant: use one per thread. Within a thread it is
    safe to share between greenlets, because packing never switches greenlets.
    """
    return msgpack.Packer(default=default, use_bin_type=True, strict_types=True, autoreset=True)


_pack: Callable[[Any], bytes] = make_packer().pack


def encode(term: Any) -> bytes:
    """Encode a term to msgpack bytes.

    Args:
        term: the value to encode.

    Returns:
        The msgpack bytes.

    Raises:
        TypeError: ``term`` contains a value that is not a term (a set, an
            object, an enum member, a function, a subclass of a builtin type...);
            the message names its type.
        ValueError: ``term`` is nested deeper than msgpack allows (about 1000
            levels) or is circular.
    """
    try:
        return _pack(term)
    except RecursionError as exc:  # msgpack's pure-Python fallback recurses
        raise ValueError("term nested too deeply to encode") from exc


def check_term(value: Any) -> None:
    """Check that ``value`` can cross to another node (what :func:`encode` accepts).

    Raises:
        TypeError: ``value`` holds something that is not a term, or is nested
            too deeply; the message names the problem (the caller's value).
    """
    try:
        _pack(value)
    except RecursionError:  # msgpack's pure-Python fallback recurses
        raise TypeError("the value cannot cross nodes: nested too deeply") from None
    except ValueError as exc:
        raise TypeError(f"the value cannot cross nodes: {exc}") from None


# --- decoding ---------------------------------------------------------------


class _Mark:
    """What a marker ext decodes to, until the array it heads is turned into a value."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[List[Any]], Any]) -> None:
        self.build = build


def _str_fields(cls: Any) -> Callable[[List[Any]], Any]:
    def build(items: List[Any]) -> Any:
        value = cls(*items)
        for field in value:
            if type(field) is not str:
                raise CodecError(f"{cls.__name__} fields must be str, got {type(field).__name__}")
        return value

    return build


def _build_nodedown(items: List[Any]) -> NodeDown:
    value = NodeDown(*items)
    if type(value.node) is not str:
        raise CodecError(f"NodeDown.node must be a str, got {type(value.node).__name__}")
    return value


_MARKS: Dict[int, _Mark] = {
    EXT_TUPLE: _Mark(tuple),
    EXT_TIMERREF: _Mark(lambda items: TimerRef(*items)),
    EXT_EXIT: _Mark(lambda items: Exit(*items)),
    EXT_DOWN: _Mark(lambda items: Down(*items)),
    EXT_NODEUP: _Mark(_str_fields(NodeUp)),
    EXT_NODEDOWN: _Mark(_build_nodedown),
    EXT_CRASH: _Mark(_str_fields(Crash)),
}


_unpack_id = _ID_CREATION.unpack_from
_ID_SIZE = _ID_CREATION.size
_MAX_ID_EXT = _ID_SIZE + 4 * MAX_NODE_NAME  # a node name is at most 255 characters of UTF-8
_MAX_EXT = max(_MAX_ID_EXT, MAX_BIGINT_BYTES)

# The same few pids arrive again and again (each message's destination, a
# caller's reply-to): decoded ones are shared, by payload. Pids are values, and
# decoded ones are never resolved in place, so sharing is safe; the bound only
# keeps a stream of distinct pids from growing it.
_decoded_pids: Dict[bytes, Pid] = {}
_DECODED_PIDS_MAX = 4096

# Node names already checked, by their UTF-8 bytes (a ref's node is checked
# without decoding it again; a pid shares the str too).
_node_names: Dict[bytes, str] = {}
_NODE_NAMES_MAX = 1024

# What the decoder's objects weigh, in bytes, for the memory bound (this
# CPython's own sizes, which differ between versions; a container's items add
# a pointer each).
_W_LIST = sys.getsizeof([])
_W_DICT = sys.getsizeof({})  # empty
_W_DICT_ONE = sys.getsizeof({"": None}) - 8  # not empty: a table of 8 slots (str keys)
_W_DICT_ITEM = 48
_W_ID = 200  # a pid or ref: the object, its ints and its share of the name
_W_ITEM = 8

_CONTAINERS = frozenset((list, tuple, dict, TimerRef, Exit, Down, NodeUp, NodeDown, Crash))


def _node_name(raw: bytes) -> str:
    name = _node_names.get(raw)
    if name is None:
        name = raw.decode("utf-8")
        if not is_node_name(name):
            raise CodecError(f"a pid or ref names an invalid node: {name[:300]!r}")
        if len(_node_names) >= _NODE_NAMES_MAX:
            _node_names.clear()
        _node_names[raw] = name
    return name


class _Small:
    """The hooks of one ``decode`` call of a small body (at most :data:`_SMALL` bytes).

    ``pending`` counts markers decoded but not yet consumed as the head of an
    array; a marker anywhere else (a dict value, the top level, a later array
    position) leaves it non-zero, and the input is rejected. That check is
    what keeps a marker object from ever leaking into a decoded term. A marker
    is the first thing decoded inside its array, so ``pending`` is also the
    depth of tuples being decoded; ``tuples`` is the deepest it has been.

    ``budget`` is what the objects built so far may still weigh, in bytes. A
    small body cannot break the memory bound nor the nesting bound (no object
    weighs more than 75 bytes per byte of its encoding), so only pids, refs
    and big ints are weighed here: small frames, the common ones, decode at
    the speed of the plain hooks.
    """

    __slots__ = ("pending", "budget", "tuples")

    def __init__(self, size: int) -> None:
        self.pending = 0
        self.tuples = 0
        self.budget = MEMORY_FACTOR * size + MEMORY_FLOOR

    def _spend(self, weight: int) -> None:
        self.budget -= weight
        if self.budget < 0:
            raise CodecError(f"the term would take more than {MEMORY_FACTOR} times its encoded size in memory")

    def ext_hook(self, code: int, data: bytes) -> Any:
        # Pids first: they are in every SEND frame. A short payload raises
        # struct.error and bad UTF-8 a ValueError; decode() wraps both.
        if code == EXT_PID:
            pid = _decoded_pids.get(data)
            if pid is None:
                if len(data) > _MAX_ID_EXT:
                    raise CodecError(f"a pid of {len(data)} bytes (its node name is too long)")
                self._spend(_W_ID)
                id_, creation = _unpack_id(data)
                pid = Pid(_node_name(data[_ID_SIZE:]), id_, creation)
                if len(_decoded_pids) >= _DECODED_PIDS_MAX:
                    _decoded_pids.clear()
                _decoded_pids[data] = pid
            return pid
        mark = _MARKS.get(code)
        if mark is not None:
            if data:
                raise CodecError(f"marker ext {code} must have an empty payload")
            pending = self.pending = self.pending + 1
            if pending > self.tuples:
                if pending > MAX_DEPTH:
                    raise CodecError(f"a term nested deeper than {MAX_DEPTH} levels")
                self.tuples = pending
            return mark
        if code == EXT_REF:
            if len(data) > _MAX_ID_EXT:
                raise CodecError(f"a ref of {len(data)} bytes (its node name is too long)")
            self._spend(_W_ID)
            id_, creation = _unpack_id(data)
            return Ref(_node_name(data[_ID_SIZE:]), id_, creation)
        if code == EXT_BIGINT:
            if not data:
                raise CodecError("empty big-int payload")
            if len(data) > MAX_BIGINT_BYTES:
                raise CodecError(f"a big int of {len(data)} bytes (at most {MAX_BIGINT_BYTES})")
            self._spend(_W_LIST + len(data))
            return int.from_bytes(data, "big", signed=True)
        raise CodecError(f"unknown ext type {code}")

    def list_hook(self, items: List[Any]) -> Any:
        if items and type(items[0]) is _Mark:
            self.pending -= 1
            return items[0].build(items[1:])
        return items


class _Decoding(_Small):
    """The hooks of one ``decode`` call of a larger body: every object is weighed.

    ``plain`` counts the lists and dicts: no term can be deeper than
    ``plain + tuples``, so most bodies need no walk to check their depth.
    """

    __slots__ = ("plain",)

    def __init__(self, size: int) -> None:
        self.pending = 0
        self.tuples = 0
        self.budget = MEMORY_FACTOR * size + MEMORY_FLOOR
        self.plain = 0

    def list_hook(self, items: List[Any]) -> Any:
        self.budget -= _W_LIST + _W_ITEM * len(items)
        if self.budget < 0:
            self._spend(0)  # raises
        if items and type(items[0]) is _Mark:
            self.pending -= 1
            return items[0].build(items[1:])
        self.plain += 1
        return items

    def object_hook(self, d: Dict[Any, Any]) -> Any:
        self.budget -= _W_DICT_ITEM * len(d) + (_W_DICT_ONE if d else _W_DICT)
        self.plain += 1
        if self.budget < 0:
            self._spend(0)  # raises
        return d

    def pairs_hook(self, pairs: List[Tuple[Any, Any]]) -> Any:
        # The careful path for maps of more than _FAST_MAP_LEN entries (see decode()).
        n = len(pairs)
        self.budget -= _W_DICT_ITEM * n + (_W_DICT_ONE if n else _W_DICT)
        self.plain += 1
        if self.budget < 0:
            self._spend(0)  # raises
        if n > _FAST_MAP_LEN:
            # Keys whose hashes collide make building a dict quadratic (ints
            # that are multiples of 2**61 - 1, crafted tuples of ints: their
            # hashes are not salted). Count distinct hashes first.
            distinct = len(set(map(hash, map(_first, pairs))))
            if n - distinct > _MAX_COLLISIONS:
                raise CodecError(f"a map of {n} entries whose keys have only {distinct} distinct hashes")
        return dict(pairs)


_first = itemgetter(0)
# Bodies up to this size cannot break the memory bound (no object weighs more
# than 75 bytes per byte: 75 * 500 < 20 * 500 + 64 KiB), nor nest deeper than
# MAX_DEPTH (each level takes a byte), nor hold a map costly to build.
_SMALL = MAX_DEPTH
# Maps up to this size are built by msgpack's C code directly (colliding keys
# cost at most 16 * 16 / 2 comparisons per map); larger ones go through pairs_hook.
_FAST_MAP_LEN = 16
_MAX_COLLISIONS = 16


def _too_deep(term: Any) -> bool:
    """True when ``term`` nests lists, tuples and dicts deeper than :data:`MAX_DEPTH`.

    Visits containers only, with the items filtered in C; called only when a
    decode built so many lists and dicts that it could be deeper (a list of
    many tuples never needs it).
    """
    if type(term) not in _CONTAINERS:
        return False
    is_container = _CONTAINERS.__contains__
    stack = [(term, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > MAX_DEPTH:
            return True
        if type(value) is dict:
            items: Any = chain(value.keys(), value.values())
            children = [x for x in items if is_container(type(x))]
        else:
            children = list(compress(value, map(is_container, map(type, value))))
        depth += 1
        for child in children:
            push((child, depth))
    return False


_STRAY_MARKER = "malformed term: a marker ext outside the head of an array"
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    struct.error,
    msgpack.UnpackException,
)


def decode(data: Any) -> Any:
    """Decode one term from msgpack bytes (untrusted input is fine).

    What it may cost is bounded by the size of ``data`` (see the module
    docstring): at most :data:`MEMORY_FACTOR` times that size (plus
    :data:`MEMORY_FLOOR`) in the objects it builds, one Python call per list,
    tuple, dict, new pid or ref; the rest is msgpack's C decoder.

    Args:
        data: a bytes-like object holding exactly one encoded term.

    Returns:
        The term. Decoded pids are plain ``Pid(node, id, creation)`` values.

    Raises:
        CodecError: ``data`` is not exactly one well-formed term (malformed
            msgpack, trailing bytes, an unknown or malformed ext payload, an
            unhashable dict key...), or is over a limit: too heavy in memory
            for its size, nested deeper than :data:`MAX_DEPTH`, a big int over
            :data:`MAX_BIGINT_BYTES`, a pid or ref of an invalid node name.
    """
    size = len(data)
    if size <= _SMALL:
        small = _Small(size)
        try:
            term = msgpack.unpackb(
                data,
                ext_hook=small.ext_hook,
                list_hook=small.list_hook,
                raw=False,
                strict_map_key=False,
                timestamp=2,
            )
        except CodecError:
            raise
        except _DECODE_ERRORS as exc:
            raise _malformed(exc) from exc
        if small.pending:
            raise CodecError(_STRAY_MARKER)
        return term
    hooks = _Decoding(size)
    try:
        try:
            term = msgpack.unpackb(
                data,
                ext_hook=hooks.ext_hook,
                list_hook=hooks.list_hook,
                object_hook=hooks.object_hook,
                raw=False,
                strict_map_key=False,
                # A peer could send msgpack's timestamp ext (-1), which bypasses
                # ext_hook; as an int (nanoseconds) it is at least a valid term.
                timestamp=2,
                max_ext_len=_MAX_EXT,
                max_map_len=_FAST_MAP_LEN,
            )
        except ValueError as exc:
            if "max_map_len" not in str(exc):
                raise
            # A map of more than _FAST_MAP_LEN entries: decode again, building
            # the maps in pairs_hook, which checks their keys first.
            hooks = _Decoding(size)
            term = msgpack.unpackb(
                data,
                ext_hook=hooks.ext_hook,
                list_hook=hooks.list_hook,
                object_pairs_hook=hooks.pairs_hook,
                raw=False,
                strict_map_key=False,
                timestamp=2,
                max_ext_len=_MAX_EXT,
            )
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise _wrap_error(exc) from exc
    if hooks.pending:
        raise CodecError(_STRAY_MARKER)
    if hooks.plain + hooks.tuples > MAX_DEPTH and _too_deep(term):
        raise CodecError(f"a term nested deeper than {MAX_DEPTH} levels")
    return term


_TUPLE_MARK = _MARKS[EXT_TUPLE]


class _Stream(_Small):
    """:class:`_Small`'s hooks with shortcuts for what every message has: known pids and tuples.

    The same checks in the same order, less work: a pid already decoded is
    returned at once; a tuple's marker skips the nesting record (a body of at
    most :data:`_SMALL` bytes cannot nest past :data:`MAX_DEPTH`: each level
    takes at least 4 bytes), and the tuple is built from the list in place.
    Everything else goes to :class:`_Small`'s hooks.
    """

    __slots__ = ()

    def ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_PID:
            pid = _decoded_pids.get(data)
            if pid is not None:
                return pid
        elif code == EXT_TUPLE and not data:
            self.pending += 1
            return _TUPLE_MARK
        return _Small.ext_hook(self, code, data)

    def list_hook(self, items: List[Any]) -> Any:
        if items:
            first = items[0]
            if first is _TUPLE_MARK:
                self.pending -= 1
                del items[0]
                return tuple(items)
            if type(first) is _Mark:
                self.pending -= 1
                return first.build(items[1:])
        return items


def small_decoder() -> Callable[[Any], Any]:
    """A :func:`decode` for one stream of bodies, with hooks made once instead of once per body.

    The returned function decodes a body of at most :data:`SMALL_BODY`
    bytes exactly as :func:`decode` does (same results, same errors, same
    bounds), and hands larger bodies to :func:`decode`. It is what a
    session's frame decoder calls for every frame: a small frame (a message)
    then costs msgpack's C decoder and the hook calls, not the making of a
    fresh hooks object and its bound methods as well.

    It is not re-entrant (its hooks keep the state of the body being
    decoded): use one per stream, from one greenlet (decoding never switches
    greenlets).

    Raises (from the function returned):
        CodecError: as :func:`decode`.
    """
    hooks = _Stream(0)
    ext_hook, list_hook = hooks.ext_hook, hooks.list_hook
    unpackb = msgpack.unpackb
    floor = MEMORY_FLOOR

    def decode_body(data: Any) -> Any:
        size = len(data)
        if size > _SMALL:
            return decode(data)
        # The state of a fresh _Small(size): what an earlier body left after
        # an error must not carry over.
        hooks.pending = hooks.tuples = 0
        hooks.budget = MEMORY_FACTOR * size + floor
        try:
            term = unpackb(data, ext_hook=ext_hook, list_hook=list_hook, raw=False, strict_map_key=False, timestamp=2)
        except CodecError:
            raise
        except _DECODE_ERRORS as exc:
            raise _malformed(exc) from exc
        if hooks.pending:
            raise CodecError(_STRAY_MARKER)
        return term

    return decode_body


#: Bodies up to this many bytes take the small-body hooks (see :func:`small_decoder`).
SMALL_BODY = _SMALL


def _wrap_error(exc: BaseException) -> CodecError:
    """The CodecError for what msgpack raised decoding with ``max_ext_len=_MAX_EXT``."""
    if isinstance(exc, ValueError) and "max_ext_len" in str(exc):
        return CodecError(f"an extension value (a pid, ref or big int) of more than {_MAX_EXT} bytes")
    return _malformed(exc)


def _malformed(exc: BaseException) -> CodecError:
    return CodecError(f"malformed term: {type(exc).__name__}: {str(exc)[:300]}")


class StreamDecoder:
    """Decode one term of a known encoded size from chunks, as they arrive.

    The same bounds as :func:`decode`, for a body too large to decode in one
    go without holding up other processes: each :meth:`feed` decodes only
    what its chunk completes (msgpack's decoder resumes where it stopped), so
    the work of a large frame is spread over the reads that bring it.
    """

    def __init__(self, size: int) -> None:
        """Expect a body of exactly ``size`` bytes."""
        self._size = size
        self._hooks = hooks = _Decoding(size)
        self._unpacker = msgpack.Unpacker(
            ext_hook=hooks.ext_hook,
            list_hook=hooks.list_hook,
            object_pairs_hook=hooks.pairs_hook,
            raw=False,
            strict_map_key=False,
            timestamp=2,
            max_buffer_size=max(size, 1),
            max_ext_len=_MAX_EXT,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
        )
        self._done = False
        self._term: Any = None

    def feed(self, data: Any) -> None:
        """Decode what ``data`` (the next bytes of the body) completes.

        Raises:
            CodecError: as :func:`decode`, as soon as the bytes so far show it.
        """
        try:
            self._unpacker.feed(data)
            if not self._done:
                try:
                    self._term = self._unpacker.unpack()
                except msgpack.OutOfData:
                    return
                self._done = True
        except CodecError:
            raise
        except _DECODE_ERRORS as exc:
            raise _wrap_error(exc) from exc

    def finish(self) -> Any:
        """The term, once all ``size`` bytes were fed.

        Raises:
            CodecError: the body is truncated, has trailing bytes, or breaks a bound.
        """
        if not self._done:
            raise CodecError("malformed term: the body ends in the middle of a term")
        if self._unpacker.tell() != self._size:
            raise CodecError("malformed term: trailing bytes after the term")
        hooks, term = self._hooks, self._term
        if hooks.pending:
            raise CodecError(_STRAY_MARKER)
        if hooks.plain + hooks.tuples > MAX_DEPTH and _too_deep(term):
            raise CodecError(f"a term nested deeper than {MAX_DEPTH} levels")
        return term
