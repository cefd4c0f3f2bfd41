"""Node names (``name@host``), the one rule every part of snowg checks names against; and log escaping.

A valid node name has exactly one ``@`` with a non-empty part on each side,
at most :data:`MAX_NODE_NAME` characters, and only printable characters, none
of them whitespace (``'alice@127.0.0.1'``). The part before the ``@`` is the
*alive* part, as Erlang calls it: the name the node registers with its host's
port mapper. The same rule holds for this node's name, for the name a peer
gives in the handshake and for the node of every pid and ref decoded from a
peer, so a name can never carry a newline into a log line.

What ``start_node`` is given is completed by :func:`complete_name`, as
Erlang's ``-sname`` completes a short name: a name without ``@`` gets the
host ``$SNOWG_HOST``, else ``127.0.0.1`` (only this host can reach it: a
cluster over several hosts needs a routable host, such as the pod's address
in Kubernetes); no name at all gets ``PREFIX-XXXXXX`` (``$SNOWG_PREFIX``,
else ``snowg``, and six random hex digits), unique without any set-up, as
each gunicorn worker needs. A node's *cluster prefix*
(:func:`cluster_prefix`) is its alive part up to its last ``-``
(``web-3fa2c1`` -> ``web``): discovery joins only nodes with the same prefix.

Whatever else a peer sent that ends up in a log line goes through
:func:`loggable`: escaped (``repr``-like, so no newline or control character
gets through) and cut to a bounded length.
"""

from __future__ import annotations

import reprlib
import secrets
from typing import Any, Mapping, Optional, Tuple

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PREFIX",
    "MAX_NODE_NAME",
    "alive_part",
    "check_node_name",
    "cluster_prefix",
    "complete_name",
    "is_node_name",
    "loggable",
    "split_target",
]

#: The longest node name, in characters (Erlang's limit on an atom).
MAX_NODE_NAME = 255
#: The host of a name given without one, when ``$SNOWG_HOST`` is not set.
DEFAULT_HOST = "127.0.0.1"
#: The prefix of a generated name, when ``$SNOWG_PREFIX`` is not set.
DEFAULT_PREFIX = "snowg"


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


def complete_name(name: Optional[str], env: Mapping[str, str]) -> str:
    """The full node name ``start_node`` uses for ``name`` (see the module docstring).

    Args:
        name: ``'alice@host'`` (kept as it is), ``'alice'`` (the host is
            ``env['SNOWG_HOST']``, else :data:`DEFAULT_HOST`) or None
            (``PREFIX-XXXXXX@HOST``, PREFIX from ``env['SNOWG_PREFIX']``, else
            :data:`DEFAULT_PREFIX`).
        env: the environment to read (``os.environ``).

    Raises:
        ValueError: the name (or the environment's host or prefix) does not
            make a valid node name; the message says which.
    """
    if name is not None and type(name) is not str:
        raise ValueError(f"a node name is a str such as 'alice@127.0.0.1', not {loggable(name)}")
    if name is not None and "@" in name:
        check_node_name(name)
        return name
    host = env.get("SNOWG_HOST") or DEFAULT_HOST
    if name is None:
        prefix = env.get("SNOWG_PREFIX") or DEFAULT_PREFIX
        full = f"{prefix}-{secrets.token_hex(3)}@{host}"
        if not is_node_name(full):
            raise ValueError(
                f"$SNOWG_PREFIX {loggable(prefix)} and $SNOWG_HOST {loggable(host)} do not make a node name "
                f"({loggable(full)}: no '@', no whitespace, printable)"
            )
        return full
    full = f"{name}@{host}"
    if not is_node_name(full):
        source = "$SNOWG_HOST" if "SNOWG_HOST" in env and env["SNOWG_HOST"] else "the default host"
        raise ValueError(
            f"node name {loggable(name)} with {source} {loggable(host)} does not make a node name "
            f"({loggable(full)} is not of the form 'name@host': one '@', printable, no whitespace, "
            f"at most {MAX_NODE_NAME} characters)"
        )
    return full


def alive_part(name: str) -> str:
    """The part of the node name ``name`` before its ``@`` (what the port mapper knows it by)."""
    return name.split("@", 1)[0]


def cluster_prefix(name: str) -> str:
    """The cluster prefix of a node name: its alive part up to its last ``-``.

    ``'web-3fa2c1@10.0.0.5'`` -> ``'web'``; ``'bob@h'`` -> ``'bob'`` (no ``-``:
    the whole alive part); ``'a-b-c@h'`` -> ``'a-b'``.
    """
    alive = alive_part(name)
    head, dash, _ = alive.rpartition("-")
    return head if dash and head else alive


def split_target(target: str) -> Tuple[str, Optional[int]]:
    """What ``connect`` is given, ``'name@host:port'`` or ``'name@host'``: ``(name, port or None)``.

    The port is what follows the last ``:`` of the host part, when it has
    one (so an IPv6 host always comes with its port: ``'bob@::1:9100'``).

    Raises:
        ValueError: ``target`` is neither form (the caller's mistake; the
            message shows it).
    """
    if type(target) is not str:
        raise ValueError(f"connect needs 'name@host' or 'name@host:port', got {loggable(target)}")
    host = target.split("@", 1)[1] if "@" in target else ""
    name, port_text = target, None
    if ":" in host:
        name, port_text = target.rsplit(":", 1)
    if not is_node_name(name) or (port_text is not None and not _is_port(port_text)):
        raise ValueError(f"connect needs 'name@host' or 'name@host:port', got {loggable(target)}")
    return name, None if port_text is None else int(port_text)


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


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
