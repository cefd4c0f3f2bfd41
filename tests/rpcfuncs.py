"""``@spawnable`` helpers for the rpc.call tests (tests/cluster/test_rpc_quiet.py).

Peer nodes import this module (``peers.start(modules=["remotefuncs", "rpcfuncs"])``).
"""

from __future__ import annotations

from typing import Any

import snowg


@snowg.spawnable
def exits_with(reason: Any) -> None:
    """End the rpc runner itself with ``reason`` (``snowg.exit``), as a function may."""
    snowg.exit(reason)


@snowg.spawnable
def power_of_two(bits: int, sign: int) -> int:
    """``sign * 2 ** bits``, made on the node that returns it (it may be too large to send)."""
    return sign * (1 << bits)


@snowg.spawnable
def offset_power_of_two(bits: int, offset: int) -> int:
    return (1 << bits) + offset


@snowg.spawnable
def special_float(name: str) -> float:
    return float(name)


class _NotATerm:
    def __repr__(self) -> str:
        return "<not a term>"


@snowg.spawnable
def says_then_exits_with_a_non_term(parent: snowg.Pid) -> None:
    """Tell ``parent`` it runs, then end with a reason that cannot cross nodes."""
    snowg.send(parent, ("running", snowg.self()))
    snowg.receive(lambda m: m == "go")
    snowg.exit(_NotATerm())


@snowg.spawnable
def exits_with_a_non_term_by_rpc() -> None:
    snowg.exit(_NotATerm())
