"""The Python side of Erlang terms: the values that have no plain Python type.

Most Erlang terms map onto Python's own types (the table is in
:mod:`snowg.erlang._etf`). The rest are here, small immutable value types:

* :class:`Atom` (defined in ``snowg._core``, re-exported here): an atom is a
  ``str`` subclass, so ``Atom("ok") == "ok"``, but it is encoded as an atom,
  while a plain ``str`` is a binary.
* :class:`ImproperList`: a list whose tail is not ``[]`` (``[a | b]``);
  ``gen:call`` tags its replies with ``[alias | Ref]``.
* :class:`ErlPid`, :class:`ErlRef`, :class:`ErlPort`: identifiers of
  another node, kept exactly (every field, every reference word) so they
  can be sent back bit-identical.
* :class:`ErlMap`: a map with no ``dict`` form (a list or map key, or keys
  Python takes as one, such as ``1`` and ``1.0``), kept as its pairs.
* :class:`BitBinary`: a bitstring whose length is not a whole number of
  bytes, kept as its bytes and the number of bits used in the last one.
* :class:`OpaqueTerm`: a fun (``NEW_FUN_EXT``, ``EXPORT_EXT``), kept as its
  encoded bytes, re-encoded byte-identical; Python cannot call it.

They are frozen dataclasses, not tuples, so none of them equals a tuple.
Constructors check their fields (``TypeError``/``ValueError``: the caller's
mistake); the decoder checks the bytes before it builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .._core import Atom

__all__ = ["MAX_ATOM_CHARS", "Atom", "BitBinary", "ErlMap", "ErlPid", "ErlPort", "ErlRef", "ImproperList", "OpaqueTerm"]

#: The most characters an atom may have (Erlang's limit).
MAX_ATOM_CHARS = 255


def _check_node(node: Any) -> Atom:
    if not isinstance(node, str):
        raise TypeError(f"a node name must be a str or an Atom, not {type(node).__name__}")
    if len(node) > MAX_ATOM_CHARS:
        raise ValueError(f"a node name has at most {MAX_ATOM_CHARS} characters, not {len(node)}")
    return Atom(node)


def _check_word(what: str, value: Any, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValueError(f"{what} must be an int in 0..2**{bits}-1, not {value!r}")


@dataclass(frozen=True)
class ImproperList:
    """An Erlang list whose tail is not ``[]``: ``[items[0], ..., items[-1] | tail]``.

    Attributes:
        items: the elements before the tail (at least one).
        tail: the last tail, any term but a list.
    """

    items: Tuple[Any, ...]
    tail: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if not self.items:
            raise ValueError("an improper list needs at least one item before its tail")
        if isinstance(self.tail, (list, ImproperList)):
            raise ValueError("the tail of an improper list cannot be a list (the list would be proper)")


@dataclass(frozen=True)
class ErlMap:
    """An Erlang map that has no ``dict`` form, kept as its pairs in the order read.

    A map key may be a list or a map (unhashable in Python), and two keys
    Erlang tells apart may be one ``dict`` key (``1`` and ``1.0``; ``1`` and
    ``true``). Such a map decodes to an ``ErlMap`` instead, and encodes back
    to the same map. Every other map is a ``dict``.

    Attributes:
        items: the ``(key, value)`` pairs.
    """

    items: Tuple[Tuple[Any, Any], ...]

    def __post_init__(self) -> None:
        pairs = tuple(self.items)
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(f"an ErlMap holds (key, value) pairs, not {pair!r:.80}")
        object.__setattr__(self, "items", pairs)


@dataclass(frozen=True)
class ErlPid:
    """A process identifier of an Erlang node, kept exactly.

    Attributes:
        node: the node's name, as an atom.
        id: the 32-bit id word.
        serial: the 32-bit serial word.
        creation: the node's 32-bit creation.
    """

    node: Atom
    id: int
    serial: int
    creation: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "node", _check_node(self.node))
        _check_word("a pid's id", self.id, 32)
        _check_word("a pid's serial", self.serial, 32)
        _check_word("a pid's creation", self.creation, 32)


@dataclass(frozen=True)
class ErlRef:
    """A reference of an Erlang node, kept bit-identical.

    Attributes:
        node: the node's name, as an atom.
        creation: the node's 32-bit creation.
        ids: the 32-bit id words, 1 to 5 of them (3 for a plain ref, more
            for one that carries a pid).
    """

    node: Atom
    creation: int
    ids: Tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "node", _check_node(self.node))
        object.__setattr__(self, "ids", tuple(self.ids))
        if not 1 <= len(self.ids) <= 5:
            raise ValueError(f"a reference has 1 to 5 id words, not {len(self.ids)}")
        for word in self.ids:
            _check_word("a reference's id word", word, 32)
        _check_word("a reference's creation", self.creation, 32)


@dataclass(frozen=True)
class ErlPort:
    """A port identifier of an Erlang node, opaque to Python, kept exactly.

    Attributes:
        node: the node's name, as an atom.
        id: the port's id (up to 64 bits).
        creation: the node's 32-bit creation.
    """

    node: Atom
    id: int
    creation: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "node", _check_node(self.node))
        _check_word("a port's id", self.id, 64)
        _check_word("a port's creation", self.creation, 32)


@dataclass(frozen=True)
class BitBinary:
    """A bitstring that is not a whole number of bytes, opaque to Python.

    Attributes:
        data: its bytes (at least one); the last holds ``bits`` bits, from its high end.
        bits: how many bits of the last byte belong to it, 1 to 8.
    """

    data: bytes
    bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray)) or not self.data:
            raise ValueError("a bitstring's data must be non-empty bytes")
        object.__setattr__(self, "data", bytes(self.data))
        bits = self.bits
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
            raise ValueError(f"a bitstring's last byte holds 1 to 8 bits, not {bits!r}")


@dataclass(frozen=True)
class OpaqueTerm:
    """A term Python keeps as its encoding (a fun), re-encoded byte-identical.

    Attributes:
        data: the term's external format, from its tag on, without the
            leading version byte.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray)) or not self.data:
            raise ValueError("an opaque term's data must be non-empty bytes (its encoding)")
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def tag(self) -> int:
        """The term's tag (``112`` for ``NEW_FUN_EXT``, ``113`` for ``EXPORT_EXT``)."""
        return self.data[0]
