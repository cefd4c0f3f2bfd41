"""Restarts and give-ups are counted in line (``snowg._core.restart_counts``), on identity tests where it can.

These drive the counting functions as supervisors call them (the same pid
object and name each time), interleaving supervisors, equal but distinct
Pid objects, names and the ``"other"`` overflow, and check that what the
observe functions and the metrics text show is exactly what a plain dict
count (the rule) gives. A real supervisor's restarts are counted without
any telemetry handler attached.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Tuple

import pytest

import snowg
from snowg import ChildSpec, Pid, supervisor
from snowg._core import restart_counts as _restart_counts
from snowg._core import telemetry as _telemetry
from snowg.observe import _counts, _metrics
from support import is_down

RESTARTS = _restart_counts.RESTARTS
GIVE_UPS = _restart_counts.GIVE_UPS
W = 5.0


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty counts, restored after the test."""
    monkeypatch.setattr(_restart_counts, "COUNTS", _restart_counts.RestartCounts())


def _reference(events: List[Tuple[str, Pid, Any]], limit: int) -> Dict[str, Dict[Any, int]]:
    """The supervisor metrics by the rule: a label past ``limit`` values counts as "other"."""
    out: Dict[str, Dict[Any, int]] = {RESTARTS: {}, GIVE_UPS: {}}
    for metric, sup, name in events:
        label = name if name is not None else sup
        values = out[metric]
        if label not in values and len(values) >= limit:
            label = "other"
        values[label] = values.get(label, 0) + 1
    return out


@pytest.mark.parametrize("seed", range(8))
def test_counts_equal_a_plain_count(fresh: None, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(_restart_counts, "MAX_LABEL_VALUES", 4)
    rnd = random.Random(seed)
    pids = [Pid("nonode@nohost", 900000 + i, 0) for i in range(6)]
    names = [f"sup{i}" if i % 3 == 0 else None for i in range(len(pids))]
    events: List[Tuple[str, Pid, Any]] = []
    for _ in range(400):
        i = rnd.randrange(len(pids))
        sup = pids[i]
        if rnd.random() < 0.2:
            sup = Pid(sup.node, sup.id, sup.creation)  # equal, not identical
        metric = rnd.choice([RESTARTS, RESTARTS, RESTARTS, GIVE_UPS])
        events.append((metric, sup, names[i]))
        if metric == RESTARTS:
            _restart_counts.count_restart(sup, names[i])
        else:
            _restart_counts.count_give_up(sup, names[i])
        if rnd.random() < 0.05:  # a scrape in the middle of a run
            _metrics.metrics_text()
    expected = _reference(events, 4)
    by_label = _restart_counts.COUNTS.by_label
    assert {m: {k: c[0] for k, c in by_label[m].items()} for m in expected} == expected
    for p in pids:
        n = sum(1 for m, s, _ in events if m == RESTARTS and s == p)
        assert _counts.supervisor_restarts(p) == n
        assert _counts.supervisor_restarts(Pid(p.node, p.id, p.creation)) == n
    got = _counts.counts()
    assert (got["restarts"], got["give_ups"]) == (
        sum(1 for m, _, _ in events if m == RESTARTS),
        sum(1 for m, _, _ in events if m == GIVE_UPS),
    )
    lines = _metrics.metrics_text().splitlines()
    for metric, values in expected.items():
        for label, n in values.items():
            assert f'{metric}{{supervisor="{label}"}} {n}' in lines


def test_a_count_shows_in_the_text_at_once(fresh: None) -> None:
    p = Pid("nonode@nohost", 900100, 0)
    for _ in range(3):
        _restart_counts.count_restart(p, None)
    assert f'snowg_supervisor_restarts_total{{supervisor="{p}"}} 3' in _metrics.metrics_text().splitlines()
    _restart_counts.count_restart(p, None)
    assert f'snowg_supervisor_restarts_total{{supervisor="{p}"}} 4' in _metrics.metrics_text().splitlines()


def _parked() -> None:
    snowg.receive()


def test_ended_supervisors_are_forgotten_and_live_ones_cost_no_scan_each(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_restart_counts, "MAX_SUPERVISORS", 64)
    monkeypatch.setattr(_restart_counts, "COUNTS", _restart_counts.RestartCounts())  # its prune_at: 64
    looked_up: List[Pid] = []
    real_lookup = _restart_counts.local_process

    def lookup(pid: Pid) -> Any:
        looked_up.append(pid)
        return real_lookup(pid)

    monkeypatch.setattr(_restart_counts, "local_process", lookup)
    table = _restart_counts.COUNTS.by_supervisor

    # 64 supervisors that have ended (pids of processes that ran and returned), then live ones.
    ended = []
    for _ in range(64):
        pid, ref = snowg.spawn_monitor(lambda: None)
        snowg.receive(is_down(ref), W)
        ended.append(pid)
    for p in ended:
        _restart_counts.count_restart(p, None)
    assert looked_up == [] and len(table) == 64
    live = [snowg.spawn(_parked) for _ in range(200)]
    _restart_counts.count_restart(live[0], None)  # the table is full: the ended ones go
    assert sorted(looked_up, key=lambda p: p.id) == ended
    assert list(table) == [live[0]]
    assert _counts.supervisor_restarts(ended[0]) == 0
    assert _counts.counts()["restarts"] == 65

    # 199 more live ones: a scan at 64 entries and one at 128 (each doubling what was left),
    # not one on every new supervisor past 64 (that was about 17,000 lookups).
    looked_up.clear()
    for p in live[1:]:
        _restart_counts.count_restart(p, None)
    assert len(looked_up) == 64 + 128
    assert list(table) == live
    assert _restart_counts.COUNTS.prune_at == 256
    assert all(_counts.supervisor_restarts(p) == 1 for p in live)


def _crash_on_message(rec: Pid) -> None:
    snowg.send(rec, ("up", snowg.self()))
    snowg.receive()
    snowg.exit("crash")


def test_a_supervisor_counts_with_no_handler_attached_and_events_still_reach_a_users(fresh: None) -> None:
    me = snowg.self()
    # No handler is on a supervisor event (snowg.observe's count in line; no test leaves one
    # attached): the count costs no dispatch.
    assert _telemetry.list_handlers(("snowg", "supervisor")) == []
    seen: List[Any] = []
    _telemetry.attach("test.restarts", _telemetry.SUPERVISOR_RESTART, lambda e, m, meta, c: seen.append(meta))
    try:
        sup = supervisor.start_link([ChildSpec("c", (_crash_on_message, (me,)))], intensity=10, period=60)
        _up, child = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
        for _ in range(3):
            snowg.send(child, "go")
            _up, child = snowg.receive(lambda m: type(m) is tuple and m[0] == "up", W)
        assert _counts.supervisor_restarts(sup) == 3
        assert _counts.counts()["restarts"] == 3
        assert [(m["supervisor"], m["child_id"]) for m in seen] == [(sup, "c")] * 3
        snowg.unlink(sup)
        ref = snowg.monitor(sup)
        snowg.exit(sup, "shutdown")
        snowg.receive(is_down(ref), W)
    finally:
        _telemetry.detach("test.restarts")
