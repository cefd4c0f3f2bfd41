"""Headless Chromium for the browser tests, driven by Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (or
``$SNOWG_CHROMIUM`` / ``$SNOWG_CHROMEDRIVER``) and the ``browser`` extra
(``pip install '.[browser]'``); ``.ci/run`` installs them when it can.
:func:`skip_unless_browser` skips a test module that needs them, saying
loudly what is missing; :func:`headless_chromium` starts the browser with
the flags a closed network needs (no background connections, a fresh
profile) and never lets Selenium Manager look for or download anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator, List, Optional, Sequence

import gevent
import pytest


def _find(*candidates: str) -> Optional[str]:
    for c in candidates:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.path.exists(path) and os.access(path, os.X_OK):
            return path
    return None


CHROMIUM = _find(os.environ.get("SNOWG_CHROMIUM", "/usr/bin/chromium"), "chromium", "chromium-browser")
CHROMEDRIVER = _find(os.environ.get("SNOWG_CHROMEDRIVER", "/usr/bin/chromedriver"), "chromedriver")


def _missing() -> List[str]:
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the machine
        missing.append(f"the Python package selenium ({exc}; pip install '.[browser]')")
    if CHROMIUM is None:
        missing.append("Chromium (/usr/bin/chromium; apt-get install chromium)")
    if CHROMEDRIVER is None:
        missing.append("chromedriver (/usr/bin/chromedriver; apt-get install chromium-driver)")
    return missing


def skip_unless_browser(what: str) -> None:
    """Skip the calling test module (at import) when the browser or Selenium is missing.

    Args:
        what: what goes unchecked without them, for the skip's reason
            ("the demo", "compression").
    """
    missing = _missing()
    if missing:
        pytest.skip(
            f"BROWSER TEST SKIPPED: {what} was NOT checked in a browser, missing: " + "; ".join(missing),
            allow_module_level=True,
        )


@contextlib.contextmanager
def headless_chromium(extra_args: Sequence[str] = ()) -> Iterator[Any]:
    """A Selenium driver of a fresh headless Chromium, quit (and its profile removed) at the end.

    A browser that cannot start skips the test with the reason.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="snowg-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *extra_args,
    ):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=os.path.join(profile, "chromedriver.log"))
    # Starting (and quitting) the browser blocks for seconds on a loaded machine; in a thread of
    # the hub's pool, this test process, a node of the test cluster, goes on ticking meanwhile.
    pool = gevent.get_hub().threadpool
    try:
        driver = pool.apply(webdriver.Chrome, kwds={"service": service, "options": opts})
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start is a skip with the reason
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"BROWSER TEST SKIPPED: headless Chromium did not start: {exc}")
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        pool.apply(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)
