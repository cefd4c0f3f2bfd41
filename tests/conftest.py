"""Shared pytest fixtures: every test starts and ends with a clean process runtime.

The pytest main greenlet is adopted as a snowg process the first time a test
calls ``snowg.self()``/``receive``. The autouse fixture :func:`snowg_runtime`
ends that process before and after each test (so each test gets a fresh,
non-trapping one) and, after the test, kills any process the test left
behind and cancels its timers, so one test's leftovers cannot break another.

The whole session has its own port mapper (``snowg epmd``) on a free port,
exported as ``ERL_EPMD_PORT`` before any test runs: every node the tests
start, in this process or in another, registers there, never with a mapper
on 4369 that someone else may be running. It is killed when the session ends.
"""

from __future__ import annotations

import contextlib
import logging
import os

import gevent
import pytest

import snowg
from snowg.testing import reset_runtime

# Tests fork peer nodes (gevent.subprocess). gevent's default resolver runs
# getaddrinfo in a thread pool, and a fork from a process with threads can
# deadlock the child (Python 3.12+ warns). Tests only dial IP addresses, so
# the blocking resolver costs nothing and keeps this process single-threaded.
gevent.config.resolver = "block"


_session_mapper = contextlib.ExitStack()


def pytest_sessionstart(session):
    """Start the session's port mapper and point every node at it (``ERL_EPMD_PORT``)."""
    from epmdsupport import mapper

    # Its log (on this process's stderr, which pytest does not capture between tests): problems only.
    port = _session_mapper.enter_context(mapper(args=["--log-level", "WARNING"]))
    os.environ["ERL_EPMD_PORT"] = str(port)


def pytest_sessionfinish(session, exitstatus):
    """Kill the session's port mapper."""
    _session_mapper.close()


@pytest.fixture(autouse=True)
def snowg_runtime():
    """A fresh main-greenlet process for the test; strays killed afterwards."""
    reset_runtime()
    yield
    reset_runtime()


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


@pytest.fixture(autouse=True)
def time_limit(request):
    """The test fails (``gevent.Timeout``) after its module's ``TIME_LIMIT`` seconds, if it sets one."""
    limit = getattr(request.module, "TIME_LIMIT", None)
    if limit is None:
        yield
        return
    with gevent.Timeout(limit):
        yield


@pytest.fixture
def ws_servers():
    """``start(handler, **options)``: a ``snowg.ws.serve`` server on 127.0.0.1; all stopped after the test."""
    import snowg.ws as ws

    started = []

    def start(handler, **options):
        server = ws.serve(("127.0.0.1", 0), handler, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(timeout=1)


@pytest.fixture
def log(caplog):
    """``caplog`` recording snowg's log from INFO up."""
    caplog.set_level(logging.INFO, logger="snowg")
    return caplog


@pytest.fixture
def witness(peers):
    """A healthy peer node (importing ``distfuncs``): it must go on being served whatever a test's attacker does."""
    import distfuncs

    peer = peers.start(modules=["distfuncs"])
    assert peer.rpc(distfuncs.ping, 0) == ("pong", peer.name, 0)
    return peer
