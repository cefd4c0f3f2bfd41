"""Helpers shared by the test modules and by the peer nodes they start.

Tests import this module by name (``tests/`` is on ``sys.path`` under
pytest; peers get it through ``PYTHONPATH``). A peer that is to run its
``@snowg.spawnable`` functions imports it: name it in the peer's modules
(``peers.start(modules=["remotefuncs", "support"])``) unless a module named
there imports it already (``distfuncs`` does).

Every wait here has a time bound and waits for a message, never for a sleep:
:func:`recv` takes the next matching message, :func:`no_message` asserts
that none is there, :func:`wait_down` waits for a process to end.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import snowg

#: Seconds any single expected message may take before a test fails.
T = 10.0

Match = Optional[Callable[[Any], bool]]


# ----------------------------------------------------------- receiving


def recv(match: Match = None, timeout: float = T) -> Any:
    """The next message (matching ``match``, if given) of the calling process.

    Blocks for at most ``timeout`` seconds.

    Raises:
        snowg.Timeout: none arrived in time (the test fails).
    """
    return snowg.receive(match, timeout=timeout)


def no_message(match: Match = None, wait: float = 0.0) -> None:
    """Assert that no (matching) message arrives within ``wait`` seconds.

    Blocks for ``wait`` seconds (not at all with the default 0: only the
    mailbox as it is now is looked at).

    Raises:
        AssertionError: naming the message that was there.
    """
    try:
        msg = snowg.receive(match, timeout=wait)
    except snowg.Timeout:
        return
    raise AssertionError(f"unexpected message {msg!r}")


def tagged(tag: Any, *fields: Any) -> Callable[[Any], bool]:
    """A match: a tuple ``(tag, *fields, ...)`` (its first items equal these)."""
    head = (tag, *fields)
    return lambda m: type(m) is tuple and m[: len(head)] == head


def is_down(ref: snowg.Ref) -> Callable[[Any], bool]:
    """A match: the :class:`snowg.Down` of the monitor ``ref``."""
    return lambda m: type(m) is snowg.Down and m.ref == ref


def wait_down(pid: snowg.Pid, timeout: float = T) -> Any:
    """Monitor ``pid`` and return its exit reason once it has ended.

    Blocks for at most ``timeout`` seconds (a dead pid answers at once with
    ``'noproc'``).

    Raises:
        snowg.Timeout: it did not end in time.
    """
    ref = snowg.monitor(pid)
    return recv(is_down(ref), timeout).reason


# ------------------------------------------- processes any node can start


@snowg.spawnable
def wait_for_stop(parent: Optional[snowg.Pid] = None) -> None:
    """Tell ``parent`` (if given) ``('started', self())``, then block until ``'stop'``.

    The target of links, monitors and exit signals in tests.
    """
    if parent is not None:
        snowg.send(parent, ("started", snowg.self()))
    snowg.receive(lambda m: m == "stop")


@snowg.spawnable
def forward_until_stop(parent: snowg.Pid, tag: str = "fwd") -> None:
    """Send every message to ``parent`` as ``(tag, self(), msg)`` until ``'stop'`` arrives."""
    me = snowg.self()
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        snowg.send(parent, (tag, me, msg))


# ------------------------------------------------ a node's view of the cluster


@snowg.spawnable
def connected_nodes() -> List[str]:
    """``snowg.nodes()`` of the node this runs on."""
    return snowg.nodes()
