"""The observe handlers count a run of restarts by one supervisor on identity tests (no Pid hashing).

These drive the two handlers (``_counts._count`` and ``_metrics._handle``)
with restart events as a supervisor makes them (the same metadata objects
each time), interleaving supervisors, equal but distinct Pid objects, names
and the ``"other"`` overflow, and check that what they count is exactly what
a plain dict count (the rule) gives.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List

import pytest

from snowg import Pid
from snowg._core import telemetry as _telemetry
from snowg.observe import _counts, _metrics

RESTART = _telemetry.SUPERVISOR_RESTART
GIVE_UP = _telemetry.SUPERVISOR_GIVE_UP
CRASH = _telemetry.PROCESS_CRASH


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty counters of both handlers, restored after the test."""
    monkeypatch.setattr(_counts, "_counts", {"crashes": 0, "restarts": 0, "give_ups": 0})
    monkeypatch.setattr(_counts, "_by_supervisor", {})
    monkeypatch.setattr(_counts, "_last", [object(), [0]])
    monkeypatch.setattr(_metrics, "_counts", {name: {} for name in _metrics._COUNTERS})
    monkeypatch.setattr(_metrics, "_pending", [None, None, 0])


def _reference(events: List[Any], limit: int) -> Dict[str, Dict[Any, int]]:
    """The metrics' supervisor counts by the rule: a label past ``limit`` values counts as "other"."""
    out: Dict[str, Dict[Any, int]] = {"snowg_supervisor_restarts_total": {}, "snowg_supervisor_give_ups_total": {}}
    for event, meta in events:
        if event == CRASH:
            continue
        metric = "snowg_supervisor_restarts_total" if event == RESTART else "snowg_supervisor_give_ups_total"
        label = meta["name"] if meta["name"] is not None else meta["supervisor"]
        values = out[metric]
        if label not in values and len(values) >= limit:
            label = "other"
        values[label] = values.get(label, 0) + 1
    return out


@pytest.mark.parametrize("seed", range(8))
def test_counts_equal_a_plain_count(fresh: None, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(_metrics, "MAX_LABEL_VALUES", 4)
    rnd = random.Random(seed)
    pids = [Pid("nonode@nohost", 900000 + i, 0) for i in range(6)]
    # Each supervisor's metadata, built once (as _restart_event does); some have a name,
    # and some events come with an equal Pid that is another object.
    metas = [
        {"supervisor": p, "name": (f"sup{i}" if i % 3 == 0 else None), "child_id": None} for i, p in enumerate(pids)
    ]
    events: List[Any] = []
    for _ in range(400):
        i = rnd.randrange(len(metas))
        meta = dict(metas[i])
        if rnd.random() < 0.2:
            meta["supervisor"] = Pid(pids[i].node, pids[i].id, pids[i].creation)  # equal, not identical
        event = rnd.choice([RESTART, RESTART, RESTART, GIVE_UP, CRASH])
        events.append((event, meta))
        for handler in (_counts._count, _metrics._handle):
            handler(event, {}, meta, _metrics._ON)
        if rnd.random() < 0.05:  # a scrape in the middle of a run
            _metrics.metrics_text()
    _metrics.metrics_text()
    assert {m: _metrics._counts[m] for m in _reference(events, 4)} == _reference(events, 4)
    for p in pids:
        expected = sum(1 for e, m in events if e == RESTART and m["supervisor"] == p)
        assert _counts.supervisor_restarts(p) == expected
        assert _counts.supervisor_restarts(Pid(p.node, p.id, p.creation)) == expected
    assert _counts.counts() == {
        "crashes": sum(1 for e, _ in events if e == CRASH),
        "restarts": sum(1 for e, _ in events if e == RESTART),
        "give_ups": sum(1 for e, _ in events if e == GIVE_UP),
    }


def test_a_pending_count_shows_in_the_text(fresh: None) -> None:
    p = Pid("nonode@nohost", 900100, 0)
    meta = {"supervisor": p, "name": None, "child_id": None}
    for _ in range(3):
        _metrics._handle(RESTART, {}, meta, _metrics._ON)
    assert f'snowg_supervisor_restarts_total{{supervisor="{p}"}} 3' in _metrics.metrics_text().splitlines()
    _metrics._handle(RESTART, {}, meta, _metrics._ON)
    assert f'snowg_supervisor_restarts_total{{supervisor="{p}"}} 4' in _metrics.metrics_text().splitlines()
