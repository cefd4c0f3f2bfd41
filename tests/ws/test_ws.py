"""snowg.ws on one node: real servers on 127.0.0.1, real clients (websocket-client and raw sockets).

The clients use gevent sockets (websocket-client accepts a ready socket), so
server and clients share one hub without monkey-patching. Tests synchronise
with messages to the test process (the main greenlet, adopted by snowg) and
events, never with sleeps; each test runs under a gevent.Timeout.
"""

import logging
import socket
import ssl
import struct

import gevent
import gevent.socket
import gevent.ssl
import pytest
import websocket
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

import snowg
import snowg.ws as ws
from snowg.cluster import make_certs
from snowg.ws import _frames as fr
from support import recv, tagged, wait_until, ws_upgrade
from test_ws_frames import client_frame

TIME_LIMIT = 20


# ----------------------------------------------------------------- clients


def connect(port, path="/", tls=None, timeout=5):
    """A websocket-client connection over a gevent socket (cooperative)."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=timeout)
    scheme = "ws"
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="localhost")
        scheme = "wss"
    return websocket.create_connection(f"{scheme}://localhost:{port}{path}", socket=sock, timeout=timeout)


def wait_close(client):
    """Read until the server's close frame; return (code, reason)."""
    while True:
        opcode, frame = client.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            if not frame.data:
                return None, ""
            return struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode("utf-8")


class RawClient:
    """A bare WebSocket client on a gevent socket: sends any frame, answers nothing by itself."""

    def __init__(self, port, path="/", rcvbuf=None, timeout=5):
        s = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.local_port = s.getsockname()[1]
        self.buf = ws_upgrade(s, port, path, read_size=4096)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
        self.sock.sendall(client_frame(opcode, payload, fin, rsv, mask, length))

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_frame(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._exact(8))
        assert not b1 & 0x80, "server frames are never masked"
        return b0 & 0x0F, self._exact(n)

    def close_code(self):
        """Frames until the close frame; return its code (pings and data are skipped)."""
        while True:
            op, payload = self.recv_frame()
            if op == fr.OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- handlers


def echo(conn):
    while (msg := conn.receive()) is not None:
        conn.send(msg)


def reporting(report_to, body=None):
    """A handler that reports ('conn', conn) and, at the end, ('gone', conn.id, code)."""

    def handler(conn):
        snowg.send(report_to, ("conn", conn))
        try:
            if body is not None:
                body(conn)
            else:
                while conn.receive() is not None:
                    pass
        finally:
            snowg.send(report_to, ("gone", conn.id, conn.close_code))

    return handler


def command_handler(conn):
    """Text commands: 'join R', 'leave R', 'bcast R text', 'bexc R text', 'ping'."""
    while (msg := conn.receive()) is not None:
        cmd, _, arg = msg.partition(" ")
        if cmd == "join":
            conn.join(arg)
            conn.send("joined " + arg)
        elif cmd == "leave":
            conn.leave(arg)
            conn.send("left " + arg)
        elif cmd in ("bcast", "bexc"):
            room, _, text = arg.partition(" ")
            n = ws.broadcast(room, text) if cmd == "bcast" else ws.broadcast_except(room, text, conn)
            conn.send(f"sent {n}")
        elif cmd == "ping":
            conn.send("pong")


# ------------------------------------------------------------------- basic


def test_text_and_binary_round_trip(ws_servers):
    srv = ws_servers(echo)
    c = connect(srv.port)
    c.send("h\u00e9llo")
    assert c.recv() == "h\u00e9llo"
    c.send_binary(b"\x00\xff" * 1000)
    assert c.recv() == b"\x00\xff" * 1000
    c.close()


def test_plain_http_without_fallback_gets_400(ws_servers):
    srv = ws_servers(echo)
    s = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert data.endswith(b"WebSocket connections only.\n")


# ------------------------------------------------------------------- rooms


def test_join_leave_broadcast_exactly_once(ws_servers):
    srv = ws_servers(command_handler)
    a, b, c = (connect(srv.port) for _ in range(3))
    for cl in (a, b, c):
        cl.send("join lobby")
        assert cl.recv() == "joined lobby"
    b.send("join other")
    assert b.recv() == "joined other"
    assert sorted(ws.rooms()) == ["lobby", "other"]
    assert len(ws.members("lobby")) == 3 and len(ws.members("other")) == 1

    a.send("bcast lobby one")  # a is a member: it gets it too, before "sent 3"
    assert [a.recv(), a.recv()] == ["one", "sent 3"]
    assert b.recv() == "one" and c.recv() == "one"

    a.send("bexc lobby two")
    assert a.recv() == "sent 2"
    assert b.recv() == "two" and c.recv() == "two"

    c.send("leave lobby")
    assert c.recv() == "left lobby"
    b.send("bcast lobby three")
    assert a.recv() == "three"
    assert [b.recv(), b.recv()] == ["three", "sent 2"]

    # Nothing extra was delivered to anyone: the next message each gets is its pong.
    for cl in (a, b, c):
        cl.send("ping")
        assert cl.recv() == "pong"

    # Broadcast from a plain greenlet and from the test process (not handlers).
    assert gevent.spawn(ws.broadcast, "other", b"\x01").get() == 1
    assert b.recv() == b"\x01"
    assert ws.broadcast("nobody-here", "x") == 0
    for cl in (a, b, c):
        cl.close()


def test_broadcast_encodes_the_frame_once(ws_servers, monkeypatch):
    srv = ws_servers(command_handler)
    clients = [connect(srv.port) for _ in range(3)]
    for cl in clients:
        cl.send("join r")
        assert cl.recv() == "joined r"
    calls = []
    real = fr.encode_frame
    monkeypatch.setattr(fr, "encode_frame", lambda *a: calls.append(a) or real(*a))
    assert ws.broadcast("r", "once") == 3
    assert calls == [(fr.OP_TEXT, b"once")]
    for cl in clients:
        assert cl.recv() == "once"
        cl.close()


def test_abrupt_disconnect_leaves_rooms(ws_servers):
    me = snowg.self()

    def body(conn):
        conn.join("room")
        conn.join("room2")
        snowg.send(me, ("joined", conn.id))
        while conn.receive() is not None:
            pass

    srv = ws_servers(reporting(me, body))
    raw = RawClient(srv.port)
    _, conn = recv(tagged("conn"))
    recv(tagged("joined"))
    assert ws.members("room") == [conn] and conn.rooms == {"room", "room2"}
    raw.close()  # no close frame: the TCP connection just goes
    _, cid, code = recv(tagged("gone"))
    assert cid == conn.id and code == 1006
    assert ws.members("room") == [] and ws.rooms() == [] and conn.rooms == frozenset()


def test_rooms_reach_the_cluster_through_its_frames(ws_servers, monkeypatch):
    from snowg.cluster import _dispatch
    from snowg.ws import _rooms

    srv = ws_servers(command_handler)
    cl = connect(srv.port)
    cl.send("join r")
    assert cl.recv() == "joined r"
    forwarded = []
    monkeypatch.setattr(_rooms, "broadcast_frame", lambda frame, nodes: forwarded.append((frame, nodes)))
    # A broadcast from another node arrives as a ROOM_BROADCAST frame: delivered
    # locally, never forwarded again.
    frame = (_rooms.ROOM_BROADCAST, "r", "from afar")
    _dispatch.on_frames(FakeSession("peer@127.0.0.1"), [list(frame)])
    assert cl.recv() == "from afar"
    assert forwarded == []
    # A local broadcast with members here only: delivered, no frame for other nodes.
    assert ws.broadcast("r", "alone") == 1
    assert forwarded == [] and cl.recv() == "alone"
    # With members on another node too: one frame for the nodes with members.
    where = frozenset({snowg.node(), "peer@127.0.0.1"})
    monkeypatch.setattr(_rooms._membership, "member_nodes", lambda room: where)
    assert ws.broadcast("r", "here") == 1
    assert ws.broadcast_except("r", "not you", ws.members("r")[0]) == 0
    tag = _rooms.ROOM_BROADCAST
    assert forwarded == [([tag, "r", "here"], where), ([tag, "r", "not you"], where)]
    assert cl.recv() == "here"
    cl.close()


class FakeSession:
    """What a frame handler sees of the session a frame came on: its peer's name."""

    def __init__(self, peer_name: str) -> None:
        self.peer_name = peer_name


# ---------------------------------------------------- the handler is a process


def test_handler_is_a_process_that_can_be_messaged_monitored_and_linked(ws_servers):
    me = snowg.self()

    def body(conn):
        while True:
            msg = snowg.receive()
            if isinstance(msg, ws.WsMessage):
                conn.send("heard " + msg.data)
            elif isinstance(msg, ws.WsClosed):
                return
            elif msg[0] == "say":
                conn.send(msg[1])
            elif msg[0] == "stop":
                return

    srv = ws_servers(reporting(me, body))
    c1 = connect(srv.port)
    _, conn1 = recv(tagged("conn"))
    assert snowg.is_alive(conn1.pid)
    ref = snowg.monitor(conn1.pid)
    snowg.send(conn1.pid, ("say", "hello from a process"))
    assert c1.recv() == "hello from a process"
    c1.send("x")
    assert c1.recv() == "heard x"
    snowg.send(conn1.pid, ("stop",))
    assert wait_close(c1) == (1000, "")
    down = recv(lambda m: isinstance(m, snowg.Down) and m.ref == ref)
    assert down.reason == "normal"

    # Linked: killing the handler closes its client with 1011, and the exit reaches us.
    c2 = connect(srv.port)
    _, conn2 = recv(tagged("conn"))
    old = snowg.trap_exit(True)
    try:
        snowg.link(conn2.pid)
        snowg.exit(conn2.pid, "kill")
        ex = recv(lambda m: isinstance(m, snowg.Exit) and m.pid == conn2.pid)
        assert ex.reason == "killed"
        assert wait_close(c2)[0] == 1011
    finally:
        snowg.trap_exit(old)


def test_receive_timeout_and_foreign_caller(ws_servers):
    me = snowg.self()

    def body(conn):
        with pytest.raises(snowg.Timeout):
            conn.receive(timeout=0)
        snowg.send(me, ("timed out",))
        conn.receive()

    srv = ws_servers(reporting(me, body))
    c = connect(srv.port)
    _, conn = recv(tagged("conn"))
    recv(tagged("timed out"))
    with pytest.raises(RuntimeError):
        conn.receive(timeout=0)
    c.close()
    recv(tagged("gone"))


def test_inbound_flow_control_pauses_the_reader_and_loses_nothing(ws_servers):
    me = snowg.self()
    limit, total = 4, 60

    def is_frame(m):
        return isinstance(m, ws.WsMessage)

    def body(conn):
        snowg.receive(tagged("go"))
        queued = sum(1 for m in snowg.process_info(snowg.self())["messages"] if is_frame(m))
        half = [conn.receive() for _ in range(total // 2)]
        # The other half taken with snowg.receive: the reader notices by re-counting.
        rest = [snowg.receive(is_frame).data for _ in range(total - total // 2)]
        snowg.send(me, ("got", queued, half + rest))
        conn.receive()

    srv = ws_servers(reporting(me, body), recv_queue_size=limit)
    c = connect(srv.port)
    _, conn = recv(tagged("conn"))
    for i in range(total):
        c.send(f"m{i}")
    c.send("last")
    # White box: wait until the reader has stopped reading (its credit is used up).
    wait_until(lambda: conn._reader_waiting, "the reader to use up its credit")
    snowg.send(conn.pid, ("go",))
    _, queued, got = recv(tagged("got"))
    assert queued == limit  # only `limit` messages were taken off the socket meanwhile
    assert got == [f"m{i}" for i in range(total)]
    c.close()
    recv(tagged("gone"))


def test_closed_connection_refuses_sends_and_joins(ws_servers):
    me = snowg.self()

    def body(conn):
        conn.join("r")
        conn.close(4000, "done here")
        snowg.send(me, ("after close", conn.closed, conn.send("late"), conn.join("r2"), sorted(conn.rooms)))
        snowg.send(me, ("received", conn.receive(), conn.receive(), conn.close_code))

    srv = ws_servers(reporting(me, body))
    c = connect(srv.port)
    assert recv(tagged("after close"))[1:] == (True, False, False, [])
    assert wait_close(c) == (4000, "done here")
    assert recv(tagged("received")) == ("received", None, None, 4000)
    _, _, code = recv(tagged("gone"))
    assert code == 4000 and ws.rooms() == []


# -------------------------------------------------------------- close codes


def test_handler_return_closes_1000_and_raise_closes_1011(ws_servers, caplog):
    def returns(conn):
        conn.send("bye")

    def raises(conn):
        conn.send("oops")
        raise ValueError("handler bug")

    c = connect(ws_servers(returns).port)
    assert c.recv() == "bye"  # queued data is flushed before the close frame
    assert wait_close(c) == (1000, "")
    with caplog.at_level(logging.ERROR, logger="snowg"):
        c = connect(ws_servers(raises).port)
        assert c.recv() == "oops"
        assert wait_close(c) == (1011, "internal error")
    assert any("crashed" in r.getMessage() and "ValueError" in r.getMessage() for r in caplog.records)


def test_client_close_code_is_echoed(ws_servers):
    me = snowg.self()
    srv = ws_servers(reporting(me))
    c = connect(srv.port)
    recv(tagged("conn"))
    c.send_close(status=4001, reason=b"bye")
    # Read the server's answer ourselves (close_frame is not in every websocket-client).
    opcode, frame = c.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 4001
    _, _, code = recv(tagged("gone"))
    assert code == 4001


def test_too_big_message_closes_1009(ws_servers):
    srv = ws_servers(echo, max_message_size=1024)
    c = connect(srv.port)
    c.send("a" * 1024)
    assert c.recv() == "a" * 1024
    c.send("a" * 1025)
    assert wait_close(c)[0] == 1009


def test_announced_huge_frame_closes_1009_without_waiting_for_the_payload(ws_servers):
    srv = ws_servers(echo, max_message_size=1024)
    raw = RawClient(srv.port)
    raw.send_frame(fr.OP_BINARY, b"", length=1 << 40)  # header only: 1 TB announced
    assert raw.close_code() == 1009
    raw.close()


def test_invalid_utf8_closes_1007(ws_servers):
    raw = RawClient(ws_servers(echo).port)
    raw.send_frame(fr.OP_TEXT, b"ok")
    assert raw.recv_frame() == (fr.OP_TEXT, b"ok")
    raw.send_frame(fr.OP_TEXT, b"\xc3\x28")
    assert raw.close_code() == 1007
    raw.close()


@pytest.mark.parametrize(
    "frame",
    [
        dict(opcode=fr.OP_TEXT, payload=b"x", mask=False),
        dict(opcode=fr.OP_TEXT, payload=b"x", rsv=0x20),
        dict(opcode=0xB, payload=b"x"),
        dict(opcode=fr.OP_PING, payload=b"x", fin=False),
        dict(opcode=fr.OP_CONT, payload=b"x"),
    ],
    ids=["unmasked", "reserved-bit", "bad-opcode", "fragmented-control", "stray-continuation"],
)
def test_protocol_errors_close_1002(ws_servers, frame):
    me = snowg.self()
    raw = RawClient(ws_servers(reporting(me)).port)
    recv(tagged("conn"))
    raw.send_frame(**frame)
    assert raw.close_code() == 1002
    raw.close()
    _, _, code = recv(tagged("gone"))
    assert code == 1002


def test_missing_pong_closes_1001(ws_servers):
    srv = ws_servers(echo, ping_interval=0.05, ping_timeout=0.2, close_timeout=0.5)
    raw = RawClient(srv.port)
    op, payload = raw.recv_frame()
    assert op == fr.OP_PING and len(payload) == 8
    assert raw.close_code() == 1001  # we never answered
    raw.close()


def test_answered_pings_keep_the_connection(ws_servers):
    srv = ws_servers(echo, ping_interval=0.05, ping_timeout=0.5)
    raw = RawClient(srv.port)
    for _ in range(5):  # five ping rounds, each answered in time
        op, payload = raw.recv_frame()
        assert op == fr.OP_PING
        raw.send_frame(fr.OP_PONG, payload)
    raw.send_frame(fr.OP_TEXT, b"still here")
    while True:
        op, payload = raw.recv_frame()
        if op != fr.OP_PING:
            break
        raw.send_frame(fr.OP_PONG, payload)
    assert (op, payload) == (fr.OP_TEXT, b"still here")
    raw.close()


def test_client_ping_is_answered(ws_servers):
    c = connect(ws_servers(echo).port)
    c.ping("abc")
    opcode, frame = c.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"abc"
    c.close()


def test_server_stop_closes_connections_1001(ws_servers):
    srv = ws_servers(echo)
    c = connect(srv.port)
    c.send("x")
    assert c.recv() == "x"
    g = gevent.spawn(wait_close, c)
    srv.stop(timeout=2)
    assert g.get() == (1001, "server shutting down")


# ------------------------------------------------- slow clients and writers


def test_a_client_that_never_reads_does_not_delay_the_others(ws_servers, caplog):
    me = snowg.self()

    def body(conn):
        conn.join("feed")
        snowg.send(me, ("joined", conn.id))
        while conn.receive() is not None:
            pass

    srv = ws_servers(reporting(me, body), queue_size=8, close_timeout=0.5, ping_interval=None)
    stalled = RawClient(srv.port, rcvbuf=4096)
    _, slow = recv(tagged("conn"))
    recv(tagged("joined"))
    readers = []
    for _ in range(3):
        c = connect(srv.port)
        recv(tagged("conn"))
        recv(tagged("joined"))
        readers.append(c)
    got = [[] for _ in readers]
    payload = "x" * 65536

    def read_all(i, c, n):
        for _ in range(n):
            got[i].append(c.recv())

    caplog.set_level(logging.WARNING, logger="snowg")
    sent = 0
    # Broadcast until the stalled client overflows (its kernel buffers hold a few MB at most).
    while not slow.closed:
        assert sent < 500, "the stalled client was never closed"
        tag = f"{sent:05d}"
        queued = ws.broadcast("feed", tag + payload)
        assert queued == (4 if not slow.closed else 3)
        # The readers get each message while the stalled client does not read at all.
        gevent.joinall([gevent.spawn(read_all, i, c, 1) for i, c in enumerate(readers)], raise_error=True)
        sent += 1
    _, cid, code = recv(tagged("gone"))
    assert cid == slow.id and code == ws.CLOSE_OVERFLOW == 1008
    assert len(ws.members("feed")) == 3 and slow not in ws.members("feed")
    for _ in range(10):  # the others go on as before
        ws.broadcast("feed", f"{sent:05d}" + payload)
        gevent.joinall([gevent.spawn(read_all, i, c, 1) for i, c in enumerate(readers)], raise_error=True)
        sent += 1
    for g in got:
        assert [m[:5] for m in g] == [f"{i:05d}" for i in range(sent)]
        assert all(len(m) == 5 + len(payload) for m in g)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"connection {slow.id} " in w and f"127.0.0.1:{stalled.local_port}" in w and "1008" in w for w in warnings
    ), warnings
    stalled.close()
    for c in readers:
        c.close()


def test_one_writer_many_senders_every_message_intact_and_in_order(ws_servers):
    me = snowg.self()
    senders, per_sender, broadcasters = 20, 50, 10

    def body(conn):
        conn.join("r")
        snowg.send(me, ("joined",))
        while conn.receive() is not None:
            pass

    srv = ws_servers(reporting(me, body), queue_size=100000)
    c = connect(srv.port)
    _, conn = recv(tagged("conn"))
    recv(tagged("joined"))

    def sender(i):
        for j in range(per_sender):
            assert conn.send(f"s{i}:{j}:" + "y" * (j * 37 % 3000))
            if j % 3 == 0:
                gevent.sleep(0)

    def broadcaster(i):
        for j in range(per_sender):
            assert ws.broadcast("r", f"b{i}:{j}:" + "z" * (j * 53 % 5000)) == 1
            if j % 2 == 0:
                gevent.sleep(0)

    pids = [snowg.spawn(sender, i) for i in range(senders)]
    pids += [snowg.spawn(broadcaster, i) for i in range(broadcasters)]
    refs = [snowg.monitor(p) for p in pids]
    seen = {}
    for _ in range((senders + broadcasters) * per_sender):
        msg = c.recv()
        who, j, pad = msg.split(":")
        j = int(j)
        assert seen.get(who, -1) == j - 1, (who, j)
        assert pad == ("y" * (j * 37 % 3000) if who[0] == "s" else "z" * (j * 53 % 5000))
        seen[who] = j
    assert len(seen) == senders + broadcasters
    for ref in refs:
        assert recv(lambda m, ref=ref: isinstance(m, snowg.Down) and m.ref == ref).reason == "normal"
    c.close()


# --------------------------------------------------- drop-in and TLS serving


def plain_wsgi_app(environ, start_response):
    body = f"plain app saw {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def http_get(port, path):
    s = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def _drop_in(app):
    app = ws.WebSocketApp(echo, fallback_app=app)
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None)
    server.start()
    try:
        port = server.server_port
        yield port
    finally:
        server.stop()


def test_drop_in_in_front_of_a_plain_wsgi_app():
    for port in _drop_in(plain_wsgi_app):
        status, body = http_get(port, "/hello")
        assert status == b"HTTP/1.1 200 OK" and body == b"plain app saw /hello"
        c = connect(port, "/ws")
        c.send("to snowg")
        assert c.recv() == "to snowg"
        c.close()


def test_drop_in_in_front_of_a_flask_app():
    flask = pytest.importorskip("flask", reason="Flask is not installed (pip install flask to run this test)")
    fapp = flask.Flask("snowg-test")

    @fapp.route("/hello/<name>")
    def hello(name):
        return f"flask says hello to {name}"

    for port in _drop_in(fapp):
        status, body = http_get(port, "/hello/ws")
        assert status == b"HTTP/1.1 200 OK" and body == b"flask says hello to ws"
        status, _ = http_get(port, "/missing")
        assert status == b"HTTP/1.1 404 NOT FOUND"
        c = connect(port, "/socket")
        c.send("to snowg")
        assert c.recv() == "to snowg"
        c.close()


def test_wss_with_a_standard_library_ssl_context(ws_servers, tmp_path):
    # A cluster CA and node certificate (SANs 127.0.0.1 and localhost) serve as any server's.
    certs = make_certs(tmp_path / "certs")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # the stdlib's, not gevent's
    server_ctx.load_cert_chain(certs["node"].cert, certs["node"].key)
    client_ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(certs["ca"].cert)
    srv = ws_servers(command_handler, ssl_context=server_ctx)
    a, b = connect(srv.port, tls=client_ctx), connect(srv.port, tls=client_ctx)
    for cl in (a, b):
        cl.send("join secure")
        assert cl.recv() == "joined secure"
    a.send("bcast secure over tls " + "t" * 100000)
    assert a.recv() == "over tls " + "t" * 100000 and a.recv() == "sent 2"
    assert b.recv() == "over tls " + "t" * 100000
    a.close()
    b.close()


def test_snowg_handler_in_a_plain_gevent_server_checks_upgrades():
    """``handler_class=ws.WebSocketHandler`` in any gevent WSGIServer: upgrades checked, the rest as before."""
    app = ws.WebSocketApp(echo, fallback_app=plain_wsgi_app, handshake_timeout=5)
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=ws.WebSocketHandler, log=None)
    server.start()
    try:
        port = server.server_port
        status, body = http_get(port, "/hello")
        assert status == b"HTTP/1.1 200 OK" and body == b"plain app saw /hello"
        c = connect(port, "/ws")  # websocket-client's Origin is its Host: allowed
        c.send("to snowg")
        assert c.recv() == "to snowg"
        c.close()
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"ws://localhost:{port}/", socket=sock, origin="http://evil.example")
        assert refused.value.status_code == 403
    finally:
        server.stop()


def test_upgrade_options_are_checked():
    for bad in ({"handshake_timeout": 0}, {"max_connections": 0}, {"check_origin": ["//"]}):
        with pytest.raises(ValueError):
            ws.WebSocketApp(echo, **bad)
    with pytest.raises(TypeError):
        ws.WebSocketApp(echo, check_origin="https://example.com")  # a list of origins, not one
    assert ws.WebSocketApp(echo, check_origin=("https://example.com",)).upgrade_policy.check_origin.allowed
