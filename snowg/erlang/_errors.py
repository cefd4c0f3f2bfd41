"""The one error of Erlang interoperability: a peer sent something that breaks the protocol.

Every sans-IO module of :mod:`snowg.erlang` (the external term format, the
distribution handshake, the port mapper's messages) raises
:class:`ErlangProtocolError` for bytes it cannot accept: an unknown tag, a
truncated term, a length over a bound, a field with a value the protocol
forbids. The fault is the peer's; the message says what was wrong and where
(the tag, the field, the length, the offset), so the line that closes the
connection can name it. Mistakes of the caller (a Python value that has no
Erlang form) raise ``TypeError`` or ``ValueError`` instead.
"""

from __future__ import annotations

from snowg._errors import NodeError


class ErlangProtocolError(NodeError):
    """Bytes from an Erlang peer break the protocol (the peer's fault); the message says where."""
