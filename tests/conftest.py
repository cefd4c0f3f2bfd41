"""Shared pytest fixtures: every test starts and ends with a clean process runtime.

The pytest main greenlet is adopted as a snowg process the first time a test
calls ``snowg.self()``/``receive``. The autouse fixture :func:`snowg_runtime`
ends that process before and after each test (so each test gets a fresh,
non-trapping one) and, after the test, kills any process the test left
behind and cancels its timers, so one test's leftovers cannot break another.
"""
from __future__ import annotations

import gevent
import pytest
from greenlet import getcurrent

import snowg
from snowg._core import process as _process
from snowg._core.runtime import rt

# Tests fork peer nodes (gevent.subprocess). gevent's default resolver runs
# getaddrinfo in a thread pool, and a fork from a process with threads can
# deadlock the child (Python 3.12+ warns). Tests only dial IP addresses, so
# the blocking resolver costs nothing and keeps this process single-threaded.
gevent.config.resolver = "block"


def _end_main_process() -> None:
    """End the process adopted for the current (pytest main) greenlet, if any."""
    glet = getcurrent()
    proc = getattr(glet, "_snowg_proc", None)
    if proc is not None:
        _process._terminate(proc, "normal")
        glet._snowg_proc = None


def _kill_strays(limit: float = 10.0) -> list:
    """Kill every live process (the main greenlet has none by now); return their pids."""
    strays = list(rt.procs.values())
    for proc in strays:
        _process._kill(proc, "killed")
    with gevent.Timeout(limit, False):
        while rt.procs or rt.ready:
            gevent.sleep(0)
    for tid, (timer, _owner) in list(rt.timers.items()):
        timer.close()
        del rt.timers[tid]
    rt.names.clear()
    return [p.pid for p in strays]


@pytest.fixture(autouse=True)
def snowg_runtime():
    """A fresh main-greenlet process for the test; strays killed afterwards."""
    _end_main_process()
    yield
    _end_main_process()
    _kill_strays()


@pytest.fixture
def me() -> snowg.Pid:
    """The test's own process (the adopted main greenlet), not trapping exits."""
    pid = snowg.self()
    snowg.trap_exit(False)
    return pid


@pytest.fixture
def trapping_me() -> snowg.Pid:
    """The test's own process, trapping exits (linked deaths arrive as ``Exit``)."""
    pid = snowg.self()
    snowg.trap_exit(True)
    return pid
