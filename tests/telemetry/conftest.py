"""Fixtures of the telemetry tests: a handler that turns events into messages to the test process."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import snowg
from snowg import telemetry


def to_process(event: Tuple[str, ...], measurements: Dict[str, float], metadata: Dict[str, Any], pid: Any) -> None:
    """A telemetry handler (config: a pid): each event becomes ``('tm', event, measurements, metadata)``."""
    snowg.send(pid, ("tm", event, measurements, metadata))


def tm(event: Tuple[str, ...]) -> Callable[[Any], bool]:
    """A match for the message :func:`to_process` sends for ``event``."""
    return lambda m: type(m) is tuple and len(m) == 4 and m[0] == "tm" and m[1] == event


@pytest.fixture
def listen() -> Iterator[Callable[..., str]]:
    """``listen(*events)``: attach :func:`to_process` for the test's process; detached after the test."""
    ids: List[str] = []

    def attach(*events: Tuple[str, ...]) -> str:
        handler_id = f"test-{len(ids)}"
        telemetry.attach_many(handler_id, events, to_process, snowg.self())
        ids.append(handler_id)
        return handler_id

    yield attach
    for handler_id in ids:
        telemetry.detach(handler_id)
    assert [h for h in telemetry.list_handlers() if h.id.startswith("test-")] == []
