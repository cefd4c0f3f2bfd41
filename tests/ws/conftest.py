"""Fixtures shared by the WebSocket cluster tests."""

import pytest
import wsfuncs


@pytest.fixture
def local_servers():
    """Servers started in this process with wsfuncs.start_server; stopped after the test."""
    ports = []

    def start(**kwargs):
        port = wsfuncs.start_server(**kwargs)
        ports.append(port)
        return port

    yield start
    for port in ports:
        wsfuncs.stop_server(port, timeout=1)
