"""permessage-deflate with a real browser: headless Chromium beside an uncompressed client, in one room.

Chromium always offers ``permessage-deflate; client_max_window_bits`` and
compresses what it sends with context takeover; websocket-client offers
nothing. Both join room ``r`` of a ``snowg.ws`` server (a separate Python
process, so that Selenium's blocking calls never stall it); every message
either sends is relayed to the room, by ``ws.broadcast`` or by each member's
``conn.send``, and both must receive the same messages in the same order
(the server counts the compressed messages it inflated: Chromium's).

A second test puts Chromium, a zlib client that keeps the server's context
(``test_deflate.DeflateClient``) and websocket-client in room ``r``, the
first two also in room ``s``, and interleaves broadcasts to both rooms,
each member's own ``conn.send`` and small uncompressed messages: each
receives exactly its rooms' messages (the room's shared compression context
decoded by a browser's own inflater).

Needs what ``tests/demo/test_demo_browser.py`` needs (Debian's ``chromium``
and ``chromium-driver``, the ``browser`` extra); without them it is SKIPPED,
saying why.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from typing import Any, Iterator, List

import pytest
import websocket
from browsersupport import headless_chromium, skip_unless_browser

TIME_LIMIT = 90
WAIT = 20.0


skip_unless_browser("compression")

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402 - only once the browser is known to be there

PAGE = """<!doctype html><meta charset="utf-8"><title>deflate</title><script>
window.got = []; window.ext = null; window.closeCode = null;
const sock = new WebSocket("ws://" + location.host + "/ws");
sock.binaryType = "arraybuffer";
sock.onopen = () => { window.ext = sock.extensions; };
sock.onmessage = (e) => {
  if (typeof e.data === "string") { window.got.push("T:" + e.data); return; }
  window.got.push("B:" + Array.from(new Uint8Array(e.data), b => b.toString(16).padStart(2, "0")).join(""));
};
sock.onclose = (e) => { window.closeCode = e.code; };
window.sock = sock;
</script>"""

SERVER = r"""
import sys
import snowg.ws as ws
from snowg.ws import _deflate

PAGE = sys.argv[1].encode()
inflated = [0]  # compressed messages received (whole)
_inflate = _deflate.Inflater.inflate


def counting(self, data, final, limit):
    out = _inflate(self, data, final, limit)
    inflated[0] += bool(final)
    return out


_deflate.Inflater.inflate = counting


def page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]


def member(conn):
    conn.join("r")
    conn.send("hello " + (conn.compression.header() if conn.compression else "none"))
    while (msg := conn.receive()) is not None:
        if msg == "stats":
            conn.send(f"inflated {inflated[0]}")
        elif msg == "join:s":
            conn.join("s")
            conn.send("joined s")
        elif isinstance(msg, str) and msg.startswith("s:"):
            ws.broadcast("s", msg)
        elif isinstance(msg, str) and msg.startswith("each:"):
            for m in ws.members("r"):  # each member's own send (its own compression)
                m.send(msg)
        else:
            ws.broadcast("r", msg)


server = ws.serve(("127.0.0.1", 0), member, fallback_app=page)
print(server.port, flush=True)
server.serve_forever()
"""

CHAT = json.dumps(
    {
        "event": "new_msg",
        "topic": "room:lobby",
        "payload": {"user": {"id": 42, "name": "alice"}, "body": "the quick brown fox jumps over the lazy dog " * 20},
    }
)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, PAGE], stdout=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the WebSocket server process did not start within 30 s"
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the server process said {line!r}"
        yield int(line)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as driver:
        yield driver


def wait(driver: Any, script: str, what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: d.execute_script(script))
    except Exception as exc:
        raise AssertionError(f"page: timed out waiting for {what} ({exc!r})") from None


def as_page(msg: Any) -> str:
    return "T:" + msg if isinstance(msg, str) else "B:" + msg.hex()


def test_browser_and_uncompressed_client_receive_identical_messages(server: int, browser: Any) -> None:
    driver = browser
    driver.get(f"http://127.0.0.1:{server}/")
    ext = wait(driver, "return window.ext", "the WebSocket to open")
    assert ext == "permessage-deflate"  # Chromium allows server context takeover: the room's context is shared
    wait(driver, "return window.got.length >= 1", "the greeting")
    greeting = driver.execute_script("return window.got[0]")
    assert greeting == "T:hello permessage-deflate"

    plain = websocket.create_connection(f"ws://127.0.0.1:{server}/ws", timeout=WAIT)
    assert plain.recv() == "hello none"

    # The browser compresses what it sends, keeping its context: similar messages refer to earlier ones.
    from_browser: List[Any] = [CHAT, CHAT.replace("alice", "bob"), "hi", "each:" + CHAT, "\u00e9t\u00e9 " * 2000]
    for m in from_browser:
        driver.execute_script("window.sock.send(arguments[0])", m)
    expected = []
    deadline = time.monotonic() + WAIT
    while len(expected) < len(from_browser):  # the relay order is the server's: read it from the plain client
        assert time.monotonic() < deadline
        expected.append(plain.recv())
    assert expected == from_browser
    plain.send("stats")  # the server inflated what the browser sent: it did compress
    reply = plain.recv()
    assert reply.startswith("inflated ") and int(reply.split()[1]) >= 4, reply
    # and from the uncompressed client, text and binary, by broadcast and by each member's send
    from_plain: List[Any] = [CHAT * 3, "each:" + CHAT, bytes(range(256)) * 40, "short"]
    for m in from_plain:
        if isinstance(m, bytes):
            plain.send_binary(m)
        else:
            plain.send(m)
    for m in from_plain:
        got = plain.recv()
        assert got == m
        expected.append(got)

    n = 1 + len(expected)
    wait(driver, f"return window.got.length >= {n}", f"{n} messages in the page")
    assert driver.execute_script("return window.got.slice(1)") == [as_page(m) for m in expected]
    assert driver.execute_script("return window.closeCode") is None
    plain.close()


def test_browser_zlib_and_plain_clients_share_a_rooms_context(server: int, browser: Any) -> None:
    from test_deflate import DeflateClient

    driver = browser
    driver.get(f"http://127.0.0.1:{server}/")
    assert wait(driver, "return window.ext", "the WebSocket to open") == "permessage-deflate"
    wait(driver, "return window.got.length >= 1", "the greeting")
    driver.execute_script("window.sock.send('join:s')")
    wait(driver, "return window.got.length >= 2", "the join's answer")
    assert driver.execute_script("return window.got.slice(0, 2)") == ["T:hello permessage-deflate", "T:joined s"]
    zc = DeflateClient(server, "permessage-deflate; client_max_window_bits")
    assert zc.extensions == "permessage-deflate" and zc.server_context
    assert zc.recv() == ("hello permessage-deflate", False)
    zc.send("join:s")
    assert zc.recv() == ("joined s", False)
    plain = websocket.create_connection(f"ws://127.0.0.1:{server}/ws", timeout=WAIT)
    assert plain.recv() == "hello none"

    sent: List[Any] = []
    for k in range(40):
        sent.append(CHAT.replace("alice", f"user{k}"))  # room r
        if k % 3 == 0:
            sent.append("s:" + CHAT.replace("fox", f"fox {k}"))  # room s: not the plain client's
        if k % 5 == 0:
            sent.append("each:" + CHAT.replace("dog", f"dog {k}"))  # each member's own compressed send
        if k % 4 == 0:
            sent.append(f"short {k}")  # under the threshold: uncompressed
        if k % 13 == 0:
            sent.append(bytes(range(256)) * 8)
    for m in sent:
        if isinstance(m, bytes):
            plain.send_binary(m)
        else:
            plain.send(m)
    everyone = [m for m in sent if not (isinstance(m, str) and m.startswith("s:"))]
    assert [plain.recv() for _ in everyone] == everyone
    got = []
    compressed = 0
    for _ in sent:
        data, was = zc.recv()
        got.append(data)
        compressed += was
    assert got == sent and compressed > len(sent) // 2
    n = 2 + len(sent)
    wait(driver, f"return window.got.length >= {n}", f"{n} messages in the page")
    assert driver.execute_script("return window.got.slice(2)") == [as_page(m) for m in sent]
    assert driver.execute_script("return window.closeCode") is None
    plain.close()
    zc.close()
