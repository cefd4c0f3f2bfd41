"""``snowg._core.stall.LoopStall``: how late a repeating timer ran, as time this node's loop did not run."""

from __future__ import annotations

import pytest

from snowg._core.stall import LoopStall


def test_runs_on_time_or_within_one_more_interval_are_not_held_up() -> None:
    stall = LoopStall(0.25, now=100.0)
    assert stall.since_last_run(100.25) == 0.0
    assert stall.since_last_run(100.5) == 0.0
    assert stall.since_last_run(100.99) == 0.0  # 0.24 late: a busy loop, not a held-up one
    assert stall.since_last_run(101.49) == 0.0  # 0.25 late, exactly one more interval: still on time


def test_a_late_run_gives_its_lateness_beyond_the_interval() -> None:
    stall = LoopStall(0.25, now=100.0)
    assert stall.since_last_run(105.25) == pytest.approx(5.0)
    # Measured from the late run on: the next run on time is not held up again.
    assert stall.since_last_run(105.5) == 0.0
    assert stall.since_last_run(106.0) == 0.0  # 0.25 late, one more interval: on time


def test_each_run_is_measured_from_the_one_before() -> None:
    stall = LoopStall(1.0, now=0.0)
    lateness = [stall.since_last_run(t) for t in (1.0, 5.0, 6.0, 6.5, 10.0)]
    assert lateness == pytest.approx([0.0, 3.0, 0.0, 0.0, 2.5])


def test_excuse_moves_both_liveness_clocks_on_by_the_held_up_time_only() -> None:
    stall = LoopStall(0.25, now=100.0)
    assert stall.excuse(100.25, 99.0, None) == (99.0, None)  # on time: nothing moves
    assert stall.excuse(100.5, 99.0, 100.1) == (99.0, 100.1)
    last_recv, stalled = stall.excuse(105.75, 99.0, 100.1)  # 5 s held up
    assert (last_recv, stalled) == (pytest.approx(104.0), pytest.approx(105.1))
    assert stall.excuse(106.0, 104.0, None) == (104.0, None)  # a stalled writer stays unstalled
