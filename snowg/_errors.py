"""Every public exception of snowg, in one leaf module that imports nothing.

The hierarchy is small on purpose: catch :class:`SnowgError` for anything
snowg raises, or the specific class named in a function's docstring.
"""

from __future__ import annotations

from typing import Any


class SnowgError(Exception):
    """Base class of all errors raised by snowg."""


class NoProc(SnowgError):
    """The process (or registered name) does not exist (Erlang's ``badarg``/``noproc``)."""


class NameTaken(SnowgError):
    """A name is already registered to another process."""


class Timeout(SnowgError):
    """``receive`` found no matching message before its timeout ran out."""


class CallTimeout(Timeout):
    """A ``call`` (GenServer or rpc) got no reply in time; a late reply is discarded."""


class CallError(SnowgError):
    """The server of a ``call`` ended before replying.

    Attributes:
        reason: the server's exit reason (``'noconnection'`` when its node went away).
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"the called process ended before replying: {self.reason!s}"


class StartError(SnowgError):
    """A process (a supervisor child, a GenServer) failed to start.

    Attributes:
        child_id: the id of the child that failed (``None`` for a lone GenServer).
        reason: why it failed.
    """

    def __init__(self, reason: Any, child_id: Any = None) -> None:
        super().__init__(reason, child_id)
        self.reason = reason
        self.child_id = child_id

    def __str__(self) -> str:
        if self.child_id is None:
            return f"failed to start: {self.reason!s}"
        return f"child {self.child_id!r} failed to start: {self.reason!s}"


class SupervisorError(SnowgError):
    """Base of the errors of the supervisor's dynamic API (names follow OTP)."""


class AlreadyStarted(SupervisorError):
    """``start_child`` for an id whose child is running; ``.pid`` is that child."""

    def __init__(self, pid: Any) -> None:
        super().__init__(pid)
        self.pid = pid


class AlreadyPresent(SupervisorError):
    """``start_child`` for an id whose spec exists but whose child is not running."""


class NotFound(SupervisorError):
    """No child with that id (or pid)."""


class Running(SupervisorError):
    """The operation needs a stopped child, and the child is running."""


class Restarting(SupervisorError):
    """The operation needs a stopped child, and the child is being restarted."""


class SimpleOneForOne(SupervisorError):
    """The operation needs a child id, and a ``simple_one_for_one`` supervisor has none."""


class SpawnError(SnowgError):
    """A remote spawn was refused (for example the function is not ``@spawnable`` there)."""


class RemoteError(SnowgError):
    """An exception raised on another node, carried back by ``rpc.call``.

    Attributes:
        type_name: the remote exception's type name.
        message: its message.
        traceback: the remote traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class NodeError(SnowgError):
    """The node could not start or connect (bad certificates, no cookie, a refused peer)."""
