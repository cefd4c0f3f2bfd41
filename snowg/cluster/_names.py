"""Node names (``name@host``), the one rule every part of snowg checks names against; and log escaping.

A valid node name has exactly one ``@`` with a non-empty part on each side,
at most :data:`MAX_NODE_NAME` characters, and only printable characters, none
of them whitespace (``'alice@127.0.0.1'``). The same rule holds for this
node's name, for the name a peer gives in the handshake and for the node of
every pid and ref decoded from a peer, so a name can never carry a newline
into a log line.

Whatever else a peer sent that ends up in a log line goes through
:func:`loggable`: escaped (``repr``-like, so no newline or control character
gets through) and cut to a bounded length.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["MAX_NODE_NAME", "check_node_name", "is_node_name", "loggable"]

#: The longest node name, in characters (Erlang's limit on an atom).
MAX_NODE_NAME = 255


def is_node_name(value: Any) -> bool:
    """True when ``value`` is a str that is a valid node name (see the module docstring)."""
    if type(value) is not str or len(value) > MAX_NODE_NAME or value.count("@") != 1:
        return False
    short, host = value.split("@")
    return bool(short) and bool(host) and value.isprintable() and not any(c.isspace() for c in value)


def check_node_name(name: Any) -> str:
    """Check a node name and return its host part.

    Raises:
        ValueError: ``name`` is not ``'name@host'`` (the caller's mistake);
            the message shows the name.
    """
    if not is_node_name(name):
        raise ValueError(
            f"node name {loggable(name)} is not of the form 'name@host' (one '@', both parts "
            f"non-empty, printable, no whitespace, at most {MAX_NODE_NAME} characters)"
        )
    host: str = name.split("@")[1]
    return host


class _LogRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 120
        self.maxother = 120
        self.maxlong = 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 8

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception:
            return f"<{type(x).__name__} object>"
        if not (text.isascii() and text.isprintable()):
            # A repr is the object's own text: escape it as a string would be.
            text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
        if len(text) > self.maxother:
            half = (self.maxother - 3) // 2
            text = text[:half] + "..." + text[len(text) - half :]
        return text

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * self.maxlong:
            return f"<int of {x.bit_length()} bits>"
        return reprlib.Repr.repr_int(self, x, level)


_log_repr = _LogRepr()


def loggable(value: Any, quoted: bool = True) -> str:
    """``value`` as it may appear in a log line: a short, escaped ``repr``.

    Strings are quoted with their newlines and control characters escaped;
    long strings, deep or long containers and huge ints are cut (``...``).
    Use it for anything a peer or a client sent (a frame tag, a field, a
    name that was refused). With ``quoted=False`` a string is shown escaped
    the same way, without its quotes (for a name in the middle of a sentence).
    """
    text = _log_repr.repr(value)
    if not quoted and type(value) is str:
        return text[1:-1]
    return text
