"""Telemetry: named events with measurements and metadata, and the handlers attached to them.

The model is Erlang's ``:telemetry``. An *event* is a tuple of strings
(``("snowg", "process", "crash")``); code that wants to know attaches a
*handler* to one or more events under a *handler id* of its choosing; the
code where something happens *executes* the event with two dicts:
``measurements`` (numbers: durations, sizes, counts) and ``metadata``
(anything: the pid, the node, the reason). Each attached handler is called
as ``handler(event, measurements, metadata, config)``, synchronously, in the
greenlet that executed the event, in the order the handlers were attached.

Cost: the table is a dict from event to a tuple of handlers. Executing an
event nobody listens to is one dict lookup; snowg's own emit points check
:data:`attached` (``if EVENT in attached:``) before they build the two dicts,
so a node with no handler pays one lookup per emit point passed. The tuples
are replaced on attach and detach (never changed in place), so a handler may
attach or detach handlers, itself included, while an event runs.

A handler that raises is detached (every event of its handler id) with one
WARNING line on the ``snowg`` logger, as ``:telemetry`` does: a broken
metrics exporter must not break the process that crashed, the supervisor
that restarts, or the session reader that noticed a node going. Handlers run
in whatever greenlet emits, which may be the gevent hub or a session's
reader: they must not block (no ``receive``, no ``call``, no IO that
waits); a handler that needs to do such work sends a message to a process
that does it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Sequence, Tuple

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
    "attached",
    "detach",
    "execute",
    "list_handlers",
]

log = logging.getLogger("snowg")

Event = Tuple[str, ...]
#: ``handler(event, measurements, metadata, config)``.
Handler = Callable[[Event, Dict[str, float], Dict[str, Any], Any], None]


class HandlerInfo(NamedTuple):
    """One attached handler, as :func:`list_handlers` reports it."""

    id: str
    event: Event
    function: Handler
    config: Any


class _Attached(NamedTuple):
    id: str
    function: Handler
    config: Any


# snowg's own events (their measurements and metadata: docs/guide/telemetry.md).
PROCESS_CRASH: Tuple[str, ...] = ("snowg", "process", "crash")
SUPERVISOR_RESTART: Tuple[str, ...] = ("snowg", "supervisor", "restart")
SUPERVISOR_GIVE_UP: Tuple[str, ...] = ("snowg", "supervisor", "give_up")
NODE_UP: Tuple[str, ...] = ("snowg", "node", "up")
NODE_DOWN: Tuple[str, ...] = ("snowg", "node", "down")
SESSION_BUSY: Tuple[str, ...] = ("snowg", "session", "busy")
WS_CONNECT: Tuple[str, ...] = ("snowg", "ws", "connect")
WS_CLOSE: Tuple[str, ...] = ("snowg", "ws", "close")
WS_OVERFLOW: Tuple[str, ...] = ("snowg", "ws", "overflow")
#: Every event snowg itself executes.
EVENTS: Tuple[Tuple[str, ...], ...] = (
    PROCESS_CRASH,
    SUPERVISOR_RESTART,
    SUPERVISOR_GIVE_UP,
    NODE_UP,
    NODE_DOWN,
    SESSION_BUSY,
    WS_CONNECT,
    WS_CLOSE,
    WS_OVERFLOW,
)

#: event -> its handlers, in attach order. Read it (``if EVENT in attached:``); change it only here.
attached: Dict[Event, Tuple[_Attached, ...]] = {}
# handler id -> the events it is attached to.
_ids: Dict[str, Tuple[Event, ...]] = {}


def _check_event(event: Any) -> Event:
    if type(event) is not tuple or not event or not all(type(part) is str for part in event):
        raise TypeError(f"a telemetry event is a non-empty tuple of str, got {event!r}")
    return event


def attach(handler_id: str, event: Event, handler: Handler, config: Any = None) -> None:
    """Call ``handler(event, measurements, metadata, config)`` each time ``event`` is executed.

    Never blocks.

    Args:
        handler_id: a name unique among attached handlers (``"my_app.metrics"``);
            :func:`detach` takes it.
        event: the event, a tuple of str (``("snowg", "process", "crash")``).
        handler: called synchronously in the greenlet that executes the event;
            it must not block, and one that raises is detached.
        config: passed to each call as is.

    Raises:
        ValueError: ``handler_id`` is already attached (detach it first).
        TypeError: ``event`` is not a non-empty tuple of str, or ``handler``
            is not callable.
    """
    attach_many(handler_id, [event], handler, config)


def attach_many(handler_id: str, events: Iterable[Event], handler: Handler, config: Any = None) -> None:
    """Attach ``handler`` to each of ``events`` under the one ``handler_id``.

    Never blocks. :func:`detach` of ``handler_id`` removes it from all of them.

    Raises:
        ValueError: ``handler_id`` is already attached, or ``events`` is empty.
        TypeError: an event is not a non-empty tuple of str, or ``handler``
            is not callable.
    """
    if type(handler_id) is not str:
        raise TypeError(f"a handler id is a str, got {type(handler_id).__name__}")
    if not callable(handler):
        raise TypeError(f"a telemetry handler must be callable, got {type(handler).__name__}")
    checked: List[Event] = []
    for event in events:
        if _check_event(event) not in checked:
            checked.append(event)
    if not checked:
        raise ValueError("attach_many needs at least one event")
    if handler_id in _ids:
        raise ValueError(f"telemetry handler {handler_id!r} is already attached")
    entry = _Attached(handler_id, handler, config)
    for event in checked:
        attached[event] = attached.get(event, ()) + (entry,)
    _ids[handler_id] = tuple(checked)


def detach(handler_id: str) -> bool:
    """Remove the handler attached as ``handler_id`` from all its events.

    Never blocks. An event already being executed calls the handlers it
    found when it began; the events executed after this call do not call it.

    Returns:
        True if it was attached, False if there was no such handler.
    """
    events = _ids.pop(handler_id, None)
    if events is None:
        return False
    for event in events:
        kept = tuple(h for h in attached.get(event, ()) if h.id != handler_id)
        if kept:
            attached[event] = kept
        else:
            attached.pop(event, None)
    return True


def execute(event: Event, measurements: Dict[str, float], metadata: Dict[str, Any]) -> None:
    """Call the handlers attached to ``event``, in attach order, in this greenlet.

    Blocks only if a handler does (they must not). A handler that raises is
    detached, with one WARNING log line naming it and the event; the others
    still run, and nothing is raised to the caller.

    Args:
        event: the event (see the module docstring for snowg's own).
        measurements: numbers, by name.
        metadata: what the event is about, by name.
    """
    handlers = attached.get(event)
    if handlers is None:
        return
    for handler_id, function, config in handlers:  # (unpacking beats the named fields' lookups)
        try:
            function(event, measurements, metadata, config)
        except Exception:  # noqa: BLE001 - a handler's bug must not break the code that emits
            if detach(handler_id):
                log.warning(
                    "telemetry handler %r raised on event %r and was detached",
                    handler_id,
                    event,
                    exc_info=True,
                )


def list_handlers(prefix: Sequence[str] = ()) -> List[HandlerInfo]:
    """The attached handlers of the events that start with ``prefix`` (all with ``()``).

    One entry per handler and event, by event then attach order. Never blocks.
    """
    prefix = tuple(prefix)
    n = len(prefix)
    return [
        HandlerInfo(entry.id, event, entry.function, entry.config)
        for event in sorted(attached)
        if event[:n] == prefix
        for entry in attached[event]
    ]
