"""Hostile clients before the WebSocket upgrade: slow requests, floods of connections, bad upgrades, other origins.

Real servers (``snowg.ws.serve``) on 127.0.0.1 and real clients: raw gevent
sockets for what no library would send, websocket-client for the clients that
must go on being served during each attack. Every wait is bounded (a
``gevent.Timeout`` over each test) and synchronised on what the client reads
or on the server's state, never on a sleep.
"""

import base64
import logging
import os

import ssl
import struct
import sys

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
import websocket
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler as LibraryHandler

import snowg.ws as ws
from snowg.cluster import make_certs
from snowg.testing import wait_for
from snowg.demo.launcher import static_app
from snowg.ws._handshake import FailureLog
from support import open_fds

TIME_LIMIT = 60


def echo(conn):
    while (data := conn.receive()) is not None:
        conn.send(data)


def room_member(conn):
    conn.join("lobby")
    conn.send("joined")
    while (data := conn.receive()) is not None:
        ws.broadcast("lobby", data)


def connect(port, origin=None, timeout=5):
    """A websocket-client connection over a gevent socket; ``origin``: None sends no Origin."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=timeout)
    kw = {"suppress_origin": True} if origin is None else {"origin": origin}
    return websocket.create_connection(f"ws://localhost:{port}/", socket=sock, timeout=timeout, **kw)


def assert_served(port):
    """A normal client connects and gets its echo: the server is serving others."""
    c = connect(port)
    c.send("still served")
    assert c.recv() == "still served"
    c.close()


def upgrade_request(port, version="HTTP/1.1", method="GET", key=None, extra=(), omit=()):
    key = base64.b64encode(os.urandom(16)).decode() if key is None else key
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for name in omit:
        headers.pop(name)
    lines = [f"{method} / {version}"] + [f"{k}: {v}" for k, v in headers.items()] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port, request):
    """Send ``request`` on a new connection; return (status code, headers dict, body) once the server closes."""
    s = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def warnings_of(caplog, text):
    return [r for r in caplog.records if r.name == "snowg" and r.levelno == logging.WARNING and text in r.getMessage()]


# ------------------------------------------------------ incomplete requests


def test_incomplete_requests_are_closed_at_the_handshake_timeout(ws_servers, caplog):
    """Attack: 1,100 incomplete HTTP requests (and 100 silent connections) to the WebSocket port.

    Before: held for ever, and at a 1,024 file-descriptor limit every new
    client was locked out. Now each is closed ``handshake_timeout`` after it
    began; an upgraded client is never subject to that deadline, and clients
    are served during the attack.
    """
    caplog.set_level(logging.DEBUG, logger="snowg")
    server = ws_servers(echo, handshake_timeout=0.5)
    port = server.port
    before = open_fds()
    staying = connect(port)  # upgraded before the attack: outlives every deadline
    attackers = []
    for i in range(1200):
        s = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
        if i < 1100:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # never ends
        attackers.append(s)
        if i % 50 == 0:
            gevent.sleep(0)  # let the server accept (the listen backlog is finite)
    assert_served(port)  # a new client during the attack
    for s in attackers:  # every attacking connection is closed by the server
        assert s.recv(4096) == b""
        s.close()
    assert wait_for(lambda: server.open_connections == 1, timeout=10)  # only `staying` is left
    staying.send("after the deadlines")
    assert staying.recv() == "after the deadlines"
    staying.close()
    assert wait_for(lambda: server.open_connections == 0, timeout=10)
    assert open_fds() <= before + 2  # nothing held (the listener and the hub's own at most)
    incomplete = warnings_of(caplog, "incomplete after 0.5 s")
    assert len(incomplete) == 1 and "127.0.0.1" in incomplete[0].getMessage()
    idle = [r for r in caplog.records if "idle for 0.5 s" in r.getMessage()]
    assert len(idle) == 100 and all(r.levelno == logging.DEBUG for r in idle)
    server.stop(timeout=1)
    summary = warnings_of(caplog, "1099 more refused WebSocket/HTTP requests from 127.0.0.1")
    assert len(summary) == 1


SERVER_AT_1024_FDS = """
import resource, sys
import gevent
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
import snowg.ws as ws

def echo(conn):
    while (data := conn.receive()) is not None:
        conn.send(data)

server = ws.serve(("127.0.0.1", 0), echo, handshake_timeout=float(sys.argv[1]))
print(server.port, server.app.max_connections, flush=True)
server.serve_forever()  # until the test kills it
"""


def test_incomplete_requests_at_a_1024_fd_limit_do_not_lock_clients_out(tmp_path):
    """Attack (as reported): 1,100 incomplete requests to a server process limited to 1,024 file descriptors.

    Before: every new client was locked out (the process out of descriptors).
    Now: the default cap (half the limit) holds at most 512 connections; the
    excess is refused with a 503 at once, the upgraded client goes on being
    served, and once the deadlines pass new clients get in.
    """
    err = open(tmp_path / "server.err", "wb")  # noqa: SIM115 - the child's stderr, closed below
    proc = gevent.subprocess.Popen(
        [sys.executable, "-c", SERVER_AT_1024_FDS, "5.0"], stdout=gevent.subprocess.PIPE, stderr=err
    )
    try:
        line = proc.stdout.readline()
        assert line, f"the server process did not start: {(tmp_path / 'server.err').read_text()[-2000:]}"
        port, cap = (int(x) for x in line.split())
        assert cap == 512
        staying = connect(port)
        attackers = []
        for i in range(1100):
            s = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
            attackers.append(s)
            if i % 50 == 0:
                gevent.sleep(0)
        server_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert server_fds <= cap + 16  # the connections it holds, its listener, its hub
        staying.send("served during the attack")
        assert staying.recv() == "served during the attack"
        refused = held = 0
        for s in attackers:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            if data.startswith(b"HTTP/1.1 503 "):
                refused += 1
            else:
                assert data == b""  # closed at the deadline, no answer
                held += 1
            s.close()
        assert refused + held == 1100 and refused >= 1  # (held: at most cap - 1 at a time, counted above)
        newcomer = connect(port)  # the deadlines have passed: a place for everyone
        newcomer.send("in")
        assert newcomer.recv() == "in"
        newcomer.close()
        staying.send("still here")
        assert staying.recv() == "still here"
        staying.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        err.close()


def test_a_request_trickled_byte_by_byte_is_bounded_as_a_whole(ws_servers, caplog):
    """Attack: slowloris, one header byte every 50 ms (each read succeeds). The deadline covers the whole head."""
    server = ws_servers(echo, handshake_timeout=0.5)
    s = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 400  # 20 s at this pace
    sent = 0
    with pytest.raises(OSError):  # EPIPE or ECONNRESET once the server has closed
        for byte in head:
            s.send(bytes([byte]))
            sent += 1
            gevent.sleep(0.05)  # the attacker's pace, not a synchronisation
    assert sent < len(head)
    s.close()
    assert_served(server.port)
    assert len(warnings_of(caplog, "incomplete after 0.5 s")) == 1


def test_tls_handshake_has_the_same_deadline(ws_servers, tmp_path, caplog):
    """Attack: TCP connections to a wss:// server that never start TLS. Closed at the handshake timeout."""
    caplog.set_level(logging.INFO, logger="snowg")
    certs = make_certs(tmp_path / "certs")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs["node"].cert, certs["node"].key)
    server = ws_servers(echo, ssl_context=server_ctx, handshake_timeout=0.5)
    silent = [gevent.socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    client_ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs["ca"].cert)
    sock = client_ctx.wrap_socket(
        gevent.socket.create_connection(("127.0.0.1", server.port), timeout=5), server_hostname="localhost"
    )
    good = websocket.create_connection(f"wss://localhost:{server.port}/", socket=sock, timeout=5)
    good.send("over tls")
    assert good.recv() == "over tls"
    for s in silent:
        assert s.recv(4096) == b""
        s.close()
    good.send("still here")
    assert good.recv() == "still here"
    good.close()
    failed = [
        r for r in caplog.records if "TLS handshake with 127.0.0.1 failed: not done within 0.5 s" in r.getMessage()
    ]
    assert len(failed) == 1


# ------------------------------------------------------ a cap on connections


def test_connections_over_the_cap_are_refused_at_once(ws_servers, caplog):
    """Attack: more connections than the server's cap. The excess gets a 503 at once; a place frees when one leaves."""
    server = ws_servers(room_member, max_connections=3)
    port = server.port
    clients = [connect(port) for _ in range(3)]
    for c in clients:
        assert c.recv() == "joined"
    for _ in range(2):
        status, headers, body = exchange(port, upgrade_request(port))
        assert status == 503 and headers["connection"] == "close" and body == b"too many connections, sorry\n"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(port)
    assert refused.value.status_code == 503
    clients[0].send("the members are served")  # meanwhile: a broadcast reaches every member
    for c in clients:
        assert c.recv() == "the members are served"
    assert server.open_connections == 3
    clients.pop(0).close()
    assert wait_for(lambda: server.open_connections == 2, timeout=10)
    newcomer = connect(port)
    assert newcomer.recv() == "joined"
    newcomer.send("a place was free")
    for c in [*clients, newcomer]:
        assert c.recv() == "a place was free"
    for c in [*clients, newcomer]:
        c.close()
    assert len(warnings_of(caplog, "refused with 503: 3 connections open (max_connections)")) == 1
    server.stop(timeout=1)
    assert len(warnings_of(caplog, "2 more refused WebSocket/HTTP requests from 127.0.0.1")) == 1


def test_the_default_cap_follows_the_file_descriptor_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    app = ws.WebSocketApp(echo)
    assert app.max_connections == min(10_000, soft // 2)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            ws.WebSocketApp(echo, max_connections=bad)
    for bad in (0, -1.0):
        with pytest.raises(ValueError):
            ws.WebSocketApp(echo, handshake_timeout=bad)


# ------------------------------------------------------ malformed upgrades

MALFORMED = [
    # (attack, request builder, status, extra header expected)
    ("a key that is not base64", lambda p: upgrade_request(p, key="!!not base64!!"), 400, None),
    ("a key of 15 bytes", lambda p: upgrade_request(p, key=base64.b64encode(b"x" * 15).decode()), 400, None),
    ("no key", lambda p: upgrade_request(p, omit=["Sec-WebSocket-Key"]), 400, None),
    ("an HTTP/1.0 upgrade", lambda p: upgrade_request(p, version="HTTP/1.0"), 400, None),
    ("a POST upgrade", lambda p: upgrade_request(p, method="POST"), 400, None),
    ("no Connection: Upgrade", lambda p: upgrade_request(p, omit=["Connection"]), 400, None),
    ("no Host", lambda p: upgrade_request(p, omit=["Host"]), 400, None),
    (
        "version 8",
        lambda p: upgrade_request(p, omit=["Sec-WebSocket-Version"], extra=["Sec-WebSocket-Version: 8"]),
        426,
        ("sec-websocket-version", "13"),
    ),
    ("no version", lambda p: upgrade_request(p, omit=["Sec-WebSocket-Version"]), 426, ("sec-websocket-version", "13")),
]


@pytest.mark.parametrize("attack,build,status,header", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_upgrade_gets_a_4xx_and_one_warning(ws_servers, caplog, capfd, attack, build, status, header):
    """Attack: a malformed upgrade. Before: a 500 or a made-up "402", with a traceback. Now: the right 4xx, one line."""
    server = ws_servers(echo)
    got, headers, _ = exchange(server.port, build(server.port))
    assert got == status, attack
    if header is not None:
        assert headers[header[0]] == header[1]
    assert_served(server.port)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and f"refused ({status})" in lines[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_garbage_instead_of_http_is_one_line_per_address(ws_servers, caplog, capfd):
    """Attack: request lines that are not HTTP, again and again. A 400 each, one line, then a summary."""
    server = ws_servers(echo)
    for _ in range(10):
        status, _, _ = exchange(server.port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert status == 400
    assert_served(server.port)
    assert len(warnings_of(caplog, "bad HTTP request from 127.0.0.1")) == 1
    server.stop(timeout=1)
    assert len(warnings_of(caplog, "9 more refused WebSocket/HTTP requests from 127.0.0.1")) == 1
    assert "Traceback" not in capfd.readouterr().err


def test_repeated_failures_from_one_address_are_summarised(ws_servers, caplog):
    """Attack: 50 bad upgrades from one address. One line for the first, one line "49 more" for the rest."""
    server = ws_servers(echo)
    for _ in range(50):
        status, _, _ = exchange(server.port, upgrade_request(server.port, key="bad"))
        assert status == 400
    assert_served(server.port)
    assert len(warnings_of(caplog, "Sec-WebSocket-Key")) == 1
    server.stop(timeout=1)
    assert len(warnings_of(caplog, "49 more refused WebSocket/HTTP requests from 127.0.0.1 in the last")) == 1
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def test_the_summary_comes_when_the_window_ends(caplog):
    """The summary line is written at the end of the window, without waiting for the server to stop."""
    said = gevent.event.Event()

    class Watch(logging.Handler):
        def emit(self, record):
            if "more refused" in record.getMessage():
                said.set()

    watch = Watch()
    logging.getLogger("snowg").addHandler(watch)
    try:
        failures = FailureLog(window=0.2)
        for i in range(5):
            failures.report("192.0.2.7", logging.WARNING, "failure %d from %s", i, "192.0.2.7")
        failures.report("192.0.2.8", logging.WARNING, "failure from %s", "192.0.2.8")
        assert said.wait(5)
    finally:
        logging.getLogger("snowg").removeHandler(watch)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == ["failure 0 from 192.0.2.7", "failure from 192.0.2.8"]
    assert len(messages) == 3 and messages[2].startswith("4 more refused WebSocket/HTTP requests from 192.0.2.7")


# ------------------------------------------------------------------ Origin


def test_another_sites_page_is_refused_with_403(ws_servers, caplog):
    """Attack: a page of http://evil.example opens a WebSocket to the node. Before: accepted. Now: 403, one line."""
    server = ws_servers(room_member)
    port = server.port
    member = connect(port, origin=f"http://localhost:{port}")  # the page's own origin: Host is localhost:PORT
    assert member.recv() == "joined"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(port, origin="http://evil.example")
    assert refused.value.status_code == 403
    lines = warnings_of(caplog, "'http://evil.example' not allowed")
    assert len(lines) == 1 and "refused (403)" in lines[0].getMessage()
    member.send("nothing for evil")  # the room goes on being served
    assert member.recv() == "nothing for evil"
    for allowed in (f"https://localhost:{port}", "http://localhost:1", "http://LOCALHOST"):  # host only, as Phoenix
        c = connect(port, origin=allowed)
        assert c.recv() == "joined"
        c.close()
    for refused_origin in ("null", "http://localhost.evil.example", "http://evil.example/localhost"):
        status, _, _ = exchange(port, upgrade_request(port, extra=[f"Origin: {refused_origin}"]))
        assert status == 403
    c = connect(port, origin=None)  # not a browser: no Origin, allowed
    assert c.recv() == "joined"
    c.close()
    member.close()


def test_a_list_of_allowed_origins(ws_servers):
    server = ws_servers(echo, check_origin=["https://example.com", "//chat.example.org", "//*.example.net"])
    port = server.port
    verdicts = {
        "https://example.com": 101,
        "https://example.com:443": 101,
        "http://example.com": 403,
        "https://example.com:8443": 403,
        "http://chat.example.org:8080": 101,
        "https://chat.example.org": 101,
        "https://a.b.example.net": 101,
        "https://example.net": 101,
        "https://badexample.net": 403,
        "http://evil.example": 403,
        f"http://127.0.0.1:{port}": 403,  # the Host is not enough when a list is given
    }
    for origin, expected in verdicts.items():
        s = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(upgrade_request(port, extra=[f"Origin: {origin}"]))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, origin
            head += chunk
        s.close()
        assert int(head.split()[1]) == expected, origin
    assert_served(port)


def test_check_origin_false_allows_any_page(ws_servers):
    server = ws_servers(echo, check_origin=False)
    c = connect(server.port, origin="http://evil.example")
    c.send("anyone")
    assert c.recv() == "anyone"
    c.close()


@pytest.mark.parametrize(
    "spec,error", [("https://example.com", TypeError), (["https://"], ValueError), ([1], TypeError)]
)
def test_check_origin_is_checked_when_made(spec, error):
    with pytest.raises(error):
        ws.WebSocketApp(echo, check_origin=spec)


def test_other_origins_are_closed_1008_behind_gevent_websockets_own_handler(caplog):
    """Behind gevent-websocket's own handler (which answers 101 itself) a refused page is closed 1008 at once."""
    ran = []

    def handler(conn):
        ran.append(conn)
        echo(conn)

    server = WSGIServer(("127.0.0.1", 0), ws.WebSocketApp(handler), handler_class=LibraryHandler, log=None)
    server.start()
    try:
        port = server.server_port
        evil = connect(port, origin="http://evil.example")
        opcode, frame = evil.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", frame.data[:2])[0] == 1008
        evil.close()
        assert_served(port)
        assert len(ran) == 1  # only the good client's handler ran
        assert len(warnings_of(caplog, "origin 'http://evil.example' not allowed")) == 1
    finally:
        server.stop()


def test_the_demo_page_cannot_be_framed(ws_servers):
    """Attack: another site frames the demo page (clickjacking). Every answer forbids framing."""
    server = ws_servers(echo, fallback_app=static_app)
    for path in ("/", "/app.js", "/missing"):
        s = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
        assert "\r\nX-Frame-Options: DENY\r\n" in head, path
        assert "\r\nContent-Security-Policy: frame-ancestors 'none'\r\n" in head, path
    assert_served(server.port)


def test_the_cap_counts_pending_requests_too(ws_servers):
    """Attack: silent connections up to the cap. They are refused beyond it, and freed at the deadline."""
    server = ws_servers(echo, max_connections=5, handshake_timeout=0.5)
    silent = [gevent.socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
    assert wait_for(lambda: server.open_connections == 5, timeout=10)
    status, _, _ = exchange(server.port, upgrade_request(server.port))
    assert status == 503
    for s in silent:
        assert s.recv(10) == b""
        s.close()
    assert wait_for(lambda: server.open_connections == 0, timeout=10)
    assert_served(server.port)


def test_stop_drops_requests_still_arriving(ws_servers):
    server = ws_servers(echo, handshake_timeout=30)
    pending = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=5)
    pending.sendall(b"GET / HTTP/1.1\r\n")
    assert wait_for(lambda: server.open_connections == 1, timeout=10)
    server.stop(timeout=1)
    try:
        assert pending.recv(10) == b""  # closed (or reset: what it had sent was never read)
    except ConnectionResetError:
        pass
    assert server.open_connections == 0
    pending.close()
