"""How this node's Python values cross to one BEAM peer: snowg pids and refs, exit reasons, signals as messages.

:mod:`snowg.erlang._etf` maps Erlang terms onto plain Python values and
keeps pids and references as :class:`ErlPid`/:class:`ErlRef`. A snowg node
needs more: a pid from a BEAM node must be a snowg :class:`~snowg.Pid` that
processes can link to, monitor and send to, and a snowg pid must reach Erlang
as a pid that comes back as the very same ``Pid``. :class:`TermMap` is that
layer, one per connection (it holds the connection's options).

Pids (the same rule for every node, so it is a bijection)::

    Erlang pid (node, num, serial, creation)  <->  Pid(node, id, creation)
    num < 2**15:   id = num | serial << 15                 (id < 2**47)
    otherwise:     id = 1 << 64 | serial << 32 | num

A snowg pid whose id has no Erlang form under that rule (``2**47 <= id <
2**64``, or ``id >= 2**64`` not of the second shape, or a creation over 32
bits) raises ``TypeError`` when sent.

References: three words ``(w0, w1, w2)`` with ``w0 < 2**18`` (every ordinary
Erlang reference) are ``Ref(node, w0 | w1 << 18 | w2 << 50, creation)``, so
a snowg ref with an id under ``2**82`` is one too; any other (1, 2, 4 or 5
words, or ``w0 >= 2**18``) is ``Ref(node, 1 << 200 | n << 160 | w0 | w1 << 32
| ...)``, kept bit-identical both ways.

Python -> Erlang extras (Erlang -> Python is :mod:`._etf`'s table):

=============================  ============================================
Python                         Erlang
=============================  ============================================
``Pid`` / ``Ref``              pid / reference (as above)
``Exit(pid, reason)``          ``{'EXIT', Pid, Reason}``
``Down(ref, pid, reason)``     ``{'DOWN', Ref, process, Pid, Reason}``
                               (a ``(name, node)`` target: ``{Name, Node}``)
``Crash(type, msg, tb)``       ``{python_error, Type, Message, Traceback}``
                               (three binaries)
=============================  ============================================

Exit reasons (:meth:`TermMap.reason`, used for the reasons of signals and
the reason fields of ``Exit``/``Down``): the strings ``'normal'``,
``'shutdown'``, ``'kill'``, ``'killed'``, ``'noproc'``, ``'noconnection'``,
``'net_tick_timeout'`` and ``'undef'`` become atoms (a ``'normal'`` sent as a
binary would turn a normal exit into a crash), ``('shutdown', X)`` becomes
``{shutdown, X}`` and a :class:`~snowg.Crash` the ``python_error`` tuple.
Messages are not reason-converted: a ``str`` in a message is a binary.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Optional, Tuple

from .._core import Atom, Crash, Down, Exit, Pid, Ref
from . import _etf
from ._etf import DEFAULT_LIMITS, Limits
from ._types import MAX_ATOM_CHARS, OpaqueTerm

__all__ = ["REASON_ATOMS", "TermMap", "atom_bytes", "erl_pid_fields", "erl_ref_words", "pid_from_erl", "ref_from_erl"]

#: Exit reasons given as ``str`` that travel as atoms.
REASON_ATOMS = frozenset(
    ("normal", "shutdown", "kill", "killed", "noproc", "noconnection", "net_tick_timeout", "undef")
)

_SMALL_NUM = 1 << 15
_WIDE = 1 << 64
_MASK32 = 0xFFFFFFFF
_REF_PLAIN_W0 = 1 << 18
_REF_PLAIN_LIMIT = 1 << 82
_REF_WIDE = 1 << 200
_CACHE_MAX = 4096

_EXIT = Atom("EXIT")
_DOWN = Atom("DOWN")
_PROCESS = Atom("process")
_PYTHON_ERROR = Atom("python_error")
_SHUTDOWN = Atom("shutdown")
_REASONS = {name: Atom(name) for name in REASON_ATOMS}

_III = struct.Struct(">III")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_WORDS = {n: struct.Struct(f">{n + 1}I") for n in range(1, 6)}  # creation, then the id words


# ------------------------------------------------------------ the bijections


def pid_from_erl(node: str, num: int, serial: int, creation: int) -> Pid:
    """The snowg ``Pid`` of the Erlang pid ``(node, num, serial, creation)``."""
    if num < _SMALL_NUM:
        return Pid(node, num | serial << 15, creation)
    return Pid(node, _WIDE | serial << 32 | num, creation)


def erl_pid_fields(pid: Pid) -> Tuple[int, int]:
    """The Erlang ``(num, serial)`` of a snowg pid.

    Raises:
        TypeError: the pid's id has no Erlang form (see the module docstring).
    """
    pid_id = pid.id
    if type(pid_id) is not int or pid_id < 0:
        raise TypeError(f"pid {pid!r}: its id is not a non-negative int")
    if pid_id >> 64:
        num = pid_id & _MASK32
        if pid_id >> 64 != 1 or num < _SMALL_NUM:
            raise TypeError(f"pid {pid!r} has no Erlang form: id {pid_id:#x} is not 1 << 64 | serial << 32 | num")
        return num, (pid_id >> 32) & _MASK32
    serial = pid_id >> 15
    if serial > _MASK32:
        raise TypeError(f"pid {pid!r} has no Erlang form: its serial {serial} (id >> 15) is over 32 bits")
    return pid_id & 0x7FFF, serial


def ref_from_erl(node: str, creation: int, ids: Tuple[int, ...]) -> Ref:
    """The snowg ``Ref`` of an Erlang reference (1 to 5 id words, as they were read)."""
    if len(ids) == 3 and ids[0] < _REF_PLAIN_W0:
        return Ref(node, ids[0] | ids[1] << 18 | ids[2] << 50, creation)
    value = _REF_WIDE | len(ids) << 160
    for i, word in enumerate(ids):
        value |= word << (32 * i)
    return Ref(node, value, creation)


def erl_ref_words(ref: Ref) -> Tuple[int, ...]:
    """The Erlang id words of a snowg ref.

    Raises:
        TypeError: the ref's id has no Erlang form (see the module docstring).
    """
    ref_id = ref.id
    if type(ref_id) is not int or ref_id < 0:
        raise TypeError(f"ref {ref!r}: its id is not a non-negative int")
    if ref_id < _REF_PLAIN_LIMIT:
        return (ref_id & 0x3FFFF, (ref_id >> 18) & _MASK32, ref_id >> 50)
    n = (ref_id >> 160) & 0xFF_FFFF_FFFF
    words = tuple((ref_id >> (32 * i)) & _MASK32 for i in range(n if 1 <= n <= 5 else 0))
    if (
        ref_id >> 200 != 1
        or not 1 <= n <= 5
        or (ref_id & ((1 << 160) - 1)) >> (32 * n)
        or (n == 3 and words[0] < _REF_PLAIN_W0)
    ):
        raise TypeError(f"ref {ref!r} has no Erlang form: id {ref_id:#x} is neither plain nor of the wide shape")
    return words


# ----------------------------------------------------------------- the map


class TermMap:
    """How this node's Python values cross to one BEAM peer (pids, refs, reasons); see the module docstring.

    Args:
        node: this node's name (a node's own pid 0 is ``Pid(node, 0, creation)``).
        creation: this node's creation, as sent in the handshake.
        none_atom: the atom ``None`` is written as and read from (``"undefined"`` or ``"nil"``).
        strict_bytes: keep every binary from the peer as ``bytes``.
        limits: the decoder's bounds.

    Raises:
        ValueError: ``none_atom`` is neither ``"undefined"`` nor ``"nil"``.

    Not thread-safe (one connection's greenlets share it, which is fine:
    nothing here switches).
    """

    __slots__ = (
        "node",
        "creation",
        "none_atom",
        "strict_bytes",
        "limits",
        "_pid_cache",
        "_pid_in_cache",
        "_node_cache",
        "_writer",
        "_reader",
    )

    def __init__(
        self,
        node: str,
        creation: int,
        *,
        none_atom: str = "undefined",
        strict_bytes: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if none_atom not in ("undefined", "nil"):
            raise ValueError(f"none_atom must be 'undefined' or 'nil', not {none_atom!r}")
        self.node = node
        self.creation = creation
        self.none_atom = none_atom
        self.strict_bytes = strict_bytes
        self.limits = limits
        # pid -> (node, creation, encoded pid): a local pid's node and creation
        # are rewritten in place when distribution starts or stops, so the
        # entry is checked against them.
        self._pid_cache: Dict[Pid, Tuple[str, int, bytes, OpaqueTerm]] = {}
        self._node_cache: Dict[str, bytes] = {}
        # encoded pid -> Pid, for the control messages of every send.
        self._pid_in_cache: Dict[bytes, Pid] = {}
        self._writer = _etf.TermWriter(none_atom=none_atom, convert=self._convert)
        self._reader = _etf.TermReader(
            strict_bytes=strict_bytes, none_atom=none_atom, limits=limits, pid_in=pid_from_erl, ref_in=ref_from_erl
        )

    # -------------------------------------------------------------- encode

    def encode(self, term: Any) -> bytes:
        """Encode one term for the peer (version byte first), snowg pids and refs as Erlang's.

        Never blocks.

        Raises:
            TypeError: something in ``term`` has no Erlang form (nothing is sent).
        """
        out = bytearray()
        self._writer.write(out, term)
        return bytes(out)

    def encode_into(self, out: bytearray, term: Any) -> None:
        """Append one encoded term (version byte first) to ``out``; as :meth:`encode`.

        On ``TypeError`` part of the term may have been appended: the caller drops ``out``.
        """
        self._writer.write(out, term)

    def pid_bytes(self, pid: Pid) -> bytes:
        """``NEW_PID_EXT`` of a snowg pid, without a version byte (cached).

        Raises:
            TypeError: ``pid`` is not a ``Pid`` or has no Erlang form.
        """
        return self._pid_entry(pid)[2]

    def _pid_entry(self, pid: Pid) -> Tuple[str, int, bytes, OpaqueTerm]:
        if type(pid) is not Pid:
            raise TypeError(f"a pid was expected, not {type(pid).__name__}: {pid!r:.80}")
        hit = self._pid_cache.get(pid)
        if hit is not None and hit[0] == pid.node and hit[1] == pid.creation:
            return hit
        node = pid.node
        creation = pid.creation
        if type(creation) is not int or not 0 <= creation <= _MASK32:
            raise TypeError(f"pid {pid!r}: its creation is not a 32-bit int")
        num, serial = erl_pid_fields(pid)
        data = b"X" + self._node_atom(node, pid) + _III.pack(num, serial, creation)
        entry = (node, creation, data, _opaque(data))
        cache = self._pid_cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[pid] = entry
        return entry

    def _node_atom(self, node: Any, owner: Any) -> bytes:
        cache = self._node_cache
        got = cache.get(node) if type(node) is str else None
        if got is None:
            if not isinstance(node, str) or len(node) > MAX_ATOM_CHARS:
                raise TypeError(f"{owner!r}: its node is not a str of at most {MAX_ATOM_CHARS} characters")
            got = atom_bytes(node)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[str(node)] = got
        return got

    def ref_bytes(self, ref: Ref) -> bytes:
        """``NEWER_REFERENCE_EXT`` of a snowg ref, without a version byte.

        Raises:
            TypeError: ``ref`` is not a ``Ref`` or has no Erlang form.
        """
        if type(ref) is not Ref:
            raise TypeError(f"a reference was expected, not {type(ref).__name__}: {ref!r:.80}")
        creation = ref.creation
        if type(creation) is not int or not 0 <= creation <= _MASK32:
            raise TypeError(f"ref {ref!r}: its creation is not a 32-bit int")
        words = erl_ref_words(ref)
        n = len(words)
        return b"Z" + _U16.pack(n) + self._node_atom(ref.node, ref) + _WORDS[n].pack(creation, *words)

    def _convert(self, term: Any) -> Any:
        kind = type(term)
        if kind is Pid:
            return self._pid_entry(term)[3]
        if kind is Ref:
            return _opaque(self.ref_bytes(term))
        if kind is Exit:
            return (_EXIT, term.pid, self.reason(term.reason))
        if kind is Down:
            target = term.pid
            if type(target) is tuple and len(target) == 2:
                target = (_as_atom(target[0]), _as_atom(target[1]))
            return (_DOWN, term.ref, _PROCESS, target, self.reason(term.reason))
        if kind is Crash:
            return (_PYTHON_ERROR, str(term.type), str(term.message), str(term.traceback))
        return NotImplemented

    def reason(self, reason: Any) -> Any:
        """The Erlang form of an exit reason, as a Python value to encode (see the module docstring).

        Never blocks, raises nothing (what cannot be encoded fails in :meth:`encode`).
        """
        kind = type(reason)
        if kind is str or kind is Atom:
            return _REASONS.get(reason, reason)
        if kind is tuple and len(reason) == 2 and reason[0] == "shutdown" and isinstance(reason[0], str):
            return (_SHUTDOWN, reason[1])
        if kind is Crash:
            return self._convert(reason)
        return reason

    # -------------------------------------------------------------- decode

    def decode(self, data: bytes, offset: int = 0) -> Tuple[Any, int]:
        """Decode one term (version byte first, compressed too) at ``offset``; pids and refs as snowg's.

        Returns:
            ``(term, end)``: the value and the offset just after it.

        Raises:
            ErlangProtocolError: the bytes are not one whole, valid term within the limits.
        """
        return self._reader.read(data, offset)

    def read_pid(self, data: bytes, at: int) -> Optional[Tuple[Pid, int]]:
        """Read a ``NEW_PID_EXT`` with a ``SMALL_ATOM_UTF8_EXT`` node at ``at`` (no version byte), cached.

        Returns:
            ``(pid, end)``, or None when the bytes there are not that shape
            (another form, truncated, bad UTF-8): the caller then decodes
            them the general way, which names the problem. Raises nothing.
        """
        n = len(data)
        if at + 3 > n or data[at] != 88 or data[at + 1] != 119:
            return None
        end = at + 15 + data[at + 2]
        if end > n:
            return None
        key = data[at:end]
        cache = self._pid_in_cache
        pid = cache.get(key)
        if pid is None:
            try:
                node = key[3:-12].decode("utf-8")
            except UnicodeDecodeError:
                return None
            if len(node) > MAX_ATOM_CHARS:
                return None
            num, serial, creation = _III.unpack_from(key, len(key) - 12)
            pid = pid_from_erl(node, num, serial, creation)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = pid
        return pid, end

    def read_ref(self, data: bytes, at: int) -> Optional[Tuple[Ref, int]]:
        """Read a ``NEWER_REFERENCE_EXT`` with a ``SMALL_ATOM_UTF8_EXT`` node at ``at`` (no version byte).

        Returns:
            ``(ref, end)``, or None when the bytes there are not that shape
            (as :meth:`read_pid`). Raises nothing.
        """
        n = len(data)
        if at + 5 > n or data[at] != 90 or data[at + 3] != 119:
            return None
        words = data[at + 1] << 8 | data[at + 2]
        node_end = at + 5 + data[at + 4]
        end = node_end + 4 + 4 * words
        if not 1 <= words <= 5 or end > n:
            return None
        try:
            node = data[at + 5 : node_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if len(node) > MAX_ATOM_CHARS:
            return None
        fields = _WORDS[words].unpack_from(data, node_end)
        return ref_from_erl(node, fields[0], fields[1:]), end

    def decode_dist(self, data: bytes, offset: int) -> Tuple[Any, int]:
        """Decode one term of a distribution message at ``offset`` (never compressed); as :meth:`decode`."""
        return self._reader.read_dist(data, offset)


def atom_bytes(name: str) -> bytes:
    """The external form of the atom ``name`` without a version byte, as :func:`._etf.encode` writes it.

    Raises:
        TypeError: over 255 characters, or a str with lone surrogates.
    """
    if len(name) > MAX_ATOM_CHARS:
        raise TypeError(f"an atom has at most {MAX_ATOM_CHARS} characters, not {len(name)}: {name[:40]!r}...")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TypeError(f"atom {name!r} is not valid Unicode (lone surrogate)") from e
    if len(raw) < 256:
        return bytes((119, len(raw))) + raw
    return b"v" + _U16.pack(len(raw)) + raw


def _opaque(data: bytes) -> OpaqueTerm:
    # An OpaqueTerm of bytes this module just wrote, without the constructor's checks.
    term: OpaqueTerm = object.__new__(OpaqueTerm)
    object.__setattr__(term, "data", data)
    return term


def _as_atom(value: Any) -> Any:
    return Atom(value) if type(value) is str else value
