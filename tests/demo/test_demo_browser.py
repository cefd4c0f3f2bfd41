"""``snowg demo`` in a real browser: headless Chromium driven by Selenium.

Two tabs on two different nodes join one room; a message typed in one shows
up in the other; then the page's "crash" button crashes a remote child and the
page shows it restarted (restart count up, new pid).

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the
``browser`` extra (``pip install '.[browser]'``); ``.ci/run`` installs them
when it can. Without them the test is SKIPPED, saying why.

Set ``SNOWG_DEMO_SCREENSHOT=docs/demo.png`` to save a screenshot of the page
at the end (that is how the README's screenshot is made).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from browsersupport import headless_chromium, skip_unless_browser
from demo_process import Demo

WAIT = 25.0  # seconds any one thing in the page may take


skip_unless_browser("the demo")

from selenium.webdriver.common.by import By  # noqa: E402 - only once the browser is known to be there
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium(["--window-size=1440,1000"]) as driver:
        yield driver


def wait(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    def check(d: Any) -> Any:
        try:
            return condition(d)
        except Exception:  # noqa: BLE001 - the page re-renders every 0.5 s: stale elements, retry
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception as exc:
        log = driver.get_log("browser") if hasattr(driver, "get_log") else ""
        raise AssertionError(f"page: timed out waiting for {what} ({exc!r}); browser log: {log}") from None


def text_of(driver: Any, css: str) -> str:
    """The text of ``css``; may raise StaleElementReferenceException (use inside :func:`wait`)."""
    return driver.find_element(By.CSS_SELECTOR, css).text


def read(driver: Any, css: str) -> str:
    """The text of ``css``, retried while the page re-renders it."""
    return wait(driver, lambda d: (text_of(d, css),), f"text of {css}")[0]


def click(driver: Any, css: str) -> None:
    """Click ``css`` once it is enabled, retried while the page re-renders it."""

    def go(d: Any) -> bool:
        e = d.find_element(By.CSS_SELECTOR, css)
        if not e.is_enabled():
            return False
        e.click()
        return True

    wait(driver, go, f"click on {css}")


def open_tab(driver: Any, url: str, node: str, name: str, room: str) -> str:
    driver.switch_to.new_window("tab")
    driver.get(f"{url}?node={node}&name={name}&room={room}")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#graph .node.up")) == 3, "three nodes up")
    wait(
        driver,
        lambda d: d.find_element(By.ID, "chat-node").get_attribute("value").startswith(node),
        f"node {node} chosen",
    )
    click(driver, "#chat-join")
    wait(
        driver,
        lambda d: (
            "ok" in d.find_element(By.ID, "chat-status").get_attribute("class")
            and node in d.find_element(By.ID, "chat-status").text
        ),
        f"{name} in room {room} on {node}",
    )
    return driver.current_window_handle


def test_chat_across_nodes_and_crash_button(demo: Demo, browser: Any) -> None:
    driver = browser
    first = driver.current_window_handle
    tab1 = open_tab(driver, demo.url, "demo1", "alice", "browsers")
    tab2 = open_tab(driver, demo.url, "demo2", "bob", "browsers")
    driver.switch_to.window(first)
    driver.close()

    # a message typed on demo1's tab appears in demo2's tab
    driver.switch_to.window(tab1)
    box = driver.find_element(By.ID, "chat-input")
    box.send_keys("hello from alice on demo1")
    click(driver, "#chat-send")
    wait(driver, lambda d: "hello from alice on demo1" in text_of(d, "#chat-log"), "own message echoed")
    driver.switch_to.window(tab2)
    wait(driver, lambda d: "hello from alice on demo1" in text_of(d, "#chat-log"), "message in the other tab")
    assert "via demo1" in read(driver, "#chat-log")
    box = driver.find_element(By.ID, "chat-input")
    box.send_keys("hi alice, bob here on demo2")
    click(driver, "#chat-send")
    driver.switch_to.window(tab1)
    wait(driver, lambda d: "hi alice, bob here on demo2" in text_of(d, "#chat-log"), "the answer in the first tab")

    # crash a remote child from the page: restart count goes up, pid changes
    row = 'tr[data-child="remote-A"]'
    wait(
        driver,
        lambda d: text_of(d, f"{row} .status") == "running" and text_of(d, f"{row} .pid") != "-",
        "remote-A running",
    )
    before_pid, before_restarts, node = wait(
        driver,
        lambda d: (text_of(d, f"{row} .pid"), int(text_of(d, f"{row} .restarts")), text_of(d, f"{row} .node")),
        "remote-A",
    )
    assert node == "demo2"
    click(driver, f"{row} button.crash")
    wait(
        driver,
        lambda d: (
            int(text_of(d, f"{row} .restarts")) == before_restarts + 1
            and text_of(d, f"{row} .pid") not in ("-", before_pid)
            and text_of(d, f"{row} .status") == "running"
        ),
        "remote-A restarted",
    )
    assert "restarted" in read(driver, "#events")

    shot = os.environ.get("SNOWG_DEMO_SCREENSHOT")
    if shot:
        driver.execute_script("window.scrollTo(0, 0)")
        for _ in range(3):  # the window's outer size is not the page's: converge on the page's height
            height = driver.execute_script("return document.documentElement.scrollHeight")
            inner = driver.execute_script("return window.innerHeight")
            if inner >= height:
                break
            size = driver.get_window_size()
            driver.set_window_size(size["width"], min(size["height"] + height - inner, 2000))
        wait(driver, lambda d: text_of(d, f"{row} .status") == "running", "steady page")
        driver.save_screenshot(shot)
