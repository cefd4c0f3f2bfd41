"""The ``demo`` fixture: one ``snowg demo`` subprocess shared by the tests of a module."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from demo_process import STARTUP_TIMEOUT, Demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: Any) -> Iterator[Demo]:
    """A running demo (ready for clients); stopped with SIGINT after the module's tests."""
    d = Demo(str(tmp_path_factory.mktemp("snowg-demo")))
    try:
        d.wait_line("open http://", STARTUP_TIMEOUT)
        yield d
    finally:
        d.stop()
