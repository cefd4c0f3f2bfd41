"""Telemetry events, as Erlang's ``:telemetry``: attach handlers to snowg's events, or execute your own.

``attach(handler_id, event, handler, config=None)`` calls
``handler(event, measurements, metadata, config)`` each time ``event`` is
executed, synchronously, in the greenlet that executes it; ``detach(handler_id)``
removes it. snowg executes the events of :data:`EVENTS` (their measurements
and metadata: the guide's "Telemetry" page). See
:mod:`snowg._core.telemetry` for the rules (handlers must not block; one
that raises is detached with a warning).
"""

from __future__ import annotations

from ._core.telemetry import (
    EVENTS,
    NODE_DOWN,
    NODE_UP,
    PROCESS_CRASH,
    SESSION_BUSY,
    SUPERVISOR_GIVE_UP,
    SUPERVISOR_RESTART,
    WS_CLOSE,
    WS_CONNECT,
    WS_OVERFLOW,
    Handler,
    HandlerInfo,
    attach,
    attach_many,
    detach,
    execute,
    list_handlers,
)

__all__ = [
    "EVENTS",
    "NODE_DOWN",
    "NODE_UP",
    "PROCESS_CRASH",
    "SESSION_BUSY",
    "SUPERVISOR_GIVE_UP",
    "SUPERVISOR_RESTART",
    "WS_CLOSE",
    "WS_CONNECT",
    "WS_OVERFLOW",
    "Handler",
    "HandlerInfo",
    "attach",
    "attach_many",
    "detach",
    "execute",
    "list_handlers",
]
