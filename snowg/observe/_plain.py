"""Terms made plain for a snapshot: dicts, lists, strs, numbers, bools and None only."""

from __future__ import annotations

from typing import Any

from .._core.terms import Ref

__all__ = ["plain"]

_MAX_DEPTH = 20


def plain(term: Any, depth: int = 0) -> Any:
    """``term`` with pids, refs and anything else that is not plain written as strings.

    Tuples become lists and dict keys strings; a term nested deeper than 20
    levels is written whole as its ``repr``. Never raises, never blocks.
    """
    if term is None or type(term) in (str, int, float, bool):
        return term
    if depth >= _MAX_DEPTH:
        return repr(term)
    if type(term) is Ref:
        return str(term)  # a tuple underneath, but one value
    if isinstance(term, (list, tuple)):
        return [plain(t, depth + 1) for t in term]
    if isinstance(term, dict):
        return {k if type(k) is str else str(k): plain(v, depth + 1) for k, v in term.items()}
    if isinstance(term, str):
        return str(term)  # a str subclass (an Atom)
    return str(term)
