"""Node names: ``name@host``, the one rule every part of snowg checks names against.

A valid node name has exactly one ``@`` with a non-empty part on each side,
and only printable characters, none of them whitespace (``'alice@127.0.0.1'``).
"""

from __future__ import annotations

from typing import Any


def is_node_name(value: Any) -> bool:
    """True when ``value`` is a str that is a valid node name (see the module docstring)."""
    if type(value) is not str or value.count("@") != 1:
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
            f"node name {name!r} is not of the form 'name@host' (one '@', both parts "
            "non-empty, printable, no whitespace)"
        )
    host: str = name.split("@")[1]
    return host
