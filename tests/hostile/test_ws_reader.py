"""Hostile WebSocket clients against a node's frame reader: floods of tiny frames, endless fragments.

The node under attack is peer B, a ``snowg node`` OS process running a
WebSocket server (``wsfuncs.start_server``). B has a healthy cluster peer C;
both tick every 0.5 s, so a B that stops serving for 2 s is declared down by
C (and C by B). The test process, node A, holds 50 ordinary clients in a room
of B's server, and a streaming process on B broadcasts numbered messages to
that room during the attack. The attacker is a separate OS process (plain
blocking sockets, :data:`ATTACKER`) that sends as fast as the kernel lets it,
whatever B does.

Every test asserts the outcome for the attacker (close code, how much of its
flood was read, that its TCP connection was dropped) and that meanwhile
every one of the 50 clients got every broadcast, in order, and that no node
declared another down. Costs are counted, never timed: frames and bytes the
attacker managed to send, B's resident memory (``VmRSS``).
"""

pytest_plugins = ["snowg.testing"]

import json  # noqa: E402
import logging  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.socket  # noqa: E402
import pytest  # noqa: E402
from gevent import subprocess  # noqa: E402
from gevent.event import Event  # noqa: E402

import distfuncs  # noqa: E402
import snowg  # noqa: E402
import wsfuncs  # noqa: E402
from snowg.testing import PeerFactory, wait_for  # noqa: E402
from snowg.ws import _frames as fr  # noqa: E402
from support import connected_nodes, no_message, recv, rss, tagged, ws_upgrade  # noqa: E402

TIME_LIMIT = 150
W = 60.0  # seconds any single expected event may take (a loaded 2-core machine)
TICK = 0.5
CLIENTS = 50
ROOM = "feed"
MiB = 1 << 20


# ------------------------------------------------------------------ the cluster


class Cluster:
    """Peer B (runs the WebSocket server under attack) and its healthy peer C, both ticking every 0.5 s."""

    def __init__(self, factory):
        self.factory = factory
        modules = ["wsfuncs", "support", "distfuncs"]
        self.b = factory.start(modules=modules, tick=TICK)
        self.c = factory.start(modules=modules, tick=TICK)
        a = snowg.node()
        # The peer list exchange connects B and C to each other.
        for p, other in ((self.b, self.c), (self.c, self.b)):
            want = sorted([a, other.name])
            assert wait_for(lambda p=p, want=want: p.rpc(connected_nodes) == want, timeout=W)
        for p in (self.b, self.c):
            snowg.spawn(distfuncs.watch_nodes, snowg.self(), node=p.name)
            recv(tagged("watching"), W)

    def node_downs(self):
        """Every NodeDown B and C have seen since the module started."""
        return [e for p in (self.b, self.c) for e in p.rpc(distfuncs.get_events) if isinstance(e, snowg.NodeDown)]

    def b_log(self):
        with open(self.b.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def cluster(snowg_node, snowg_cluster_config):
    factory = PeerFactory(snowg_cluster_config)
    try:
        yield Cluster(factory)
    finally:
        factory.stop_all()


@pytest.fixture
def server(cluster):
    """A WebSocket server on B for one test (no server pings: the attackers' streams stay exact)."""
    me = snowg.self()
    port = cluster.b.rpc(wsfuncs.start_server, report_to=me, ping_interval=None)
    snowg.monitor_node(cluster.b.name)
    yield port
    cluster.b.rpc(wsfuncs.stop_server, port)


# --------------------------------------------------------------- the 50 clients


def upgrade(sock, port):
    ws_upgrade(sock, port, key="dGhlIHNhbXBsZSBub25jZQ==")  # byte by byte: nothing after the head is consumed


def text_frame(text):
    payload = text.encode()
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload  # a zero mask key


class Member:
    """An ordinary client in the room: a raw socket and a reader greenlet that records every text message."""

    def __init__(self, port, changed):
        self.sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=W)
        self.sock.settimeout(None)
        upgrade(self.sock, port)
        self.got = []
        self.closed = False
        self._changed = changed
        self._buf = b""
        self.sock.sendall(text_frame(f"join {ROOM}"))
        self._reader = gevent.spawn(self._read)

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2:
                    n = buf[1] & 0x7F
                    start = 2
                    if n == 126:
                        if len(buf) < 4:
                            break
                        (n,) = struct.unpack("!H", buf[2:4])
                        start = 4
                    if len(buf) < start + n:
                        break
                    op, payload = buf[0] & 0x0F, buf[start : start + n]
                    buf = buf[start + n :]
                    if op == fr.OP_TEXT:
                        self.got.append(payload.decode())
                        self._changed.set()
        except OSError:
            pass
        finally:
            self.closed = True
            self._changed.set()

    def numbers(self, tag):
        prefix = tag + " "
        return [int(m[len(prefix) :]) for m in self.got if m.startswith(prefix)]

    def close(self):
        self._reader.kill(block=True, timeout=1)
        self.sock.close()


def wait_all(members, changed, predicate, what):
    """Block until ``predicate(member)`` holds for every member (woken by their readers)."""
    with gevent.Timeout(W, AssertionError(f"timed out waiting until every client {what}")):
        while True:
            changed.clear()
            late = [m for m in members if not predicate(m)]
            if not late:
                return
            assert not any(m.closed for m in late), "an ordinary client was disconnected"
            changed.wait()


def join_members(port):
    changed = Event()
    members = [Member(port, changed) for _ in range(CLIENTS)]
    wait_all(members, changed, lambda m: f"joined {ROOM}" in m.got, f"joined {ROOM}")
    for _ in members:  # every handler told us too
        recv(tagged("joined"), W)
    return members, changed


class Stream:
    """A process on B broadcasting ``'<tag> <i>'`` to the room, 100 a second, until finished."""

    def __init__(self, cluster, members, changed, tag):
        self.cluster, self.members, self.changed, self.tag = cluster, members, changed, tag
        snowg.spawn(wsfuncs.streamer, snowg.self(), ROOM, tag, 20, 0.01, node=cluster.b.name)
        _, _, self.pid = recv(tagged("streaming", tag), W)

    def wait_each(self, count):
        """Block until every member has at least ``count`` of this stream's messages."""
        tag = self.tag
        wait_all(self.members, self.changed, lambda m: len(m.numbers(tag)) >= count, f"had {count} '{tag}'")

    def finish(self):
        """Stop the stream; assert that every member got every message of it, in order, exactly once."""
        snowg.send(self.pid, "finish")
        _, _, total = recv(tagged("streamed", self.tag), W)
        self.wait_each(total)
        for m in self.members:
            assert m.numbers(self.tag) == list(range(total))
        return total


# ------------------------------------------------------------------ the attacker

ATTACKER = r"""
import json, socket, struct, sys, threading

port, mode, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
MASK = b"\0\0\0\0"  # a zero mask key: payloads go as they are
s = socket.create_connection(("127.0.0.1", port))
s.sendall((
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % port).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head

# frame: what is sent over and over; first: sent once before; reading: the
# replies are read during the flood; parsing: they are parsed (up to a close frame).
if mode == "ping":            # empty pings; the pongs are read and counted
    frame, first, reading, parsing = b"\x89\x80" + MASK, b"", True, False
elif mode == "pong":          # unsolicited empty pongs
    frame, first, reading, parsing = b"\x8a\x80" + MASK, b"", True, False
elif mode == "ping-noread":   # pings of 125 bytes; nothing is read until sending fails
    frame, first, reading, parsing = b"\x89\xfd" + MASK + b"p" * 125, b"", False, True
elif mode == "cont":          # one text message in endless empty continuation frames
    frame, first, reading, parsing = b"\x00\x80" + MASK, b"\x01\x81" + MASK + b"x", True, True
elif mode == "text":          # small text messages "t"
    frame, first, reading, parsing = b"\x81\x81" + MASK + b"t", b"", True, True
elif mode == "bad-utf8":      # a text fragment with invalid UTF-8, then valid fragments for ever
    frame, first, reading, parsing = b"\x00\x81" + MASK + b"y", b"\x01\x82" + MASK + b"\xc3\x28", True, True
else:
    raise SystemExit("unknown mode " + mode)

ANSWER = b"\x81\x04pong"  # the server's answer to the command "ping" (after a flood)
state = {"sent_frames": 0, "sent_bytes": 0, "send_error": None, "received": 0,
         "close": None, "sent_bytes_at_close": None, "answered": False, "end": None}
stop = threading.Event()
done = threading.Event()
buf = bytearray()


def parse():
    # Server frames are unmasked; stop at the close frame.
    i = 0
    while len(buf) - i >= 2:
        n = buf[i + 1] & 0x7F
        start = i + 2
        if n == 126:
            if len(buf) - i < 4:
                break
            n = struct.unpack_from("!H", buf, i + 2)[0]
            start = i + 4
        elif n == 127:
            if len(buf) - i < 10:
                break
            n = struct.unpack_from("!Q", buf, i + 2)[0]
            start = i + 10
        if len(buf) < start + n:
            break
        if buf[i] & 0x0F == 0x8:
            payload = bytes(buf[start:start + n])
            code = struct.unpack("!H", payload[:2])[0] if payload else None
            state["close"] = [code, payload[2:].decode("utf-8", "replace")]
            state["sent_bytes_at_close"] = state["sent_bytes"]
            del buf[:]
            return
        i = start + n
    del buf[:i]


def read_until_end():
    tail = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                state["end"] = "eof"
                return
            state["received"] += len(chunk)
            if parsing and state["close"] is None:
                buf.extend(chunk)
                parse()
            if ANSWER in tail + chunk[:16] or ANSWER in chunk:
                state["answered"] = True
                done.set()
            tail = chunk[-8:]
    except OSError as e:
        state["end"] = type(e).__name__
    finally:
        done.set()


def watch_stdin():
    sys.stdin.read()
    stop.set()


def progress():
    while not done.wait(0.05):
        print(json.dumps({"sent_bytes": state["sent_bytes"]}), flush=True)


threading.Thread(target=watch_stdin, daemon=True).start()
threading.Thread(target=progress, daemon=True).start()
reader = threading.Thread(target=read_until_end, daemon=True)
if reading:
    reader.start()
per_chunk = 65536 // len(frame)
chunk = frame * per_chunk
try:
    if first:
        s.sendall(first)
        state["sent_frames"] += 1
        state["sent_bytes"] += len(first)
    while not stop.is_set() and (limit == 0 or state["sent_frames"] < limit):
        k = per_chunk if limit == 0 else min(per_chunk, limit - state["sent_frames"])
        s.sendall(chunk if k == per_chunk else frame * k)
        state["sent_frames"] += k
        state["sent_bytes"] += k * len(frame)
    if mode in ("ping", "pong"):
        s.sendall(b"\x81\x84" + MASK + b"ping")  # still served after its flood?
except OSError as e:
    state["send_error"] = type(e).__name__
if not reading:
    reader.start()
done.wait(30)
if state["end"] is None:
    try:
        s.shutdown(socket.SHUT_WR)  # the attacker leaves without a close frame
    except OSError:
        pass
reader.join(30)
print("RESULT " + json.dumps(state), flush=True)
"""


class Attacker:
    """The attacker's OS process (see :data:`ATTACKER` for the modes); ``limit``: frames to send (0: until stopped)."""

    def __init__(self, port, mode, limit=0):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, str(port), mode, str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.sent = 0
        self.result = None
        self._changed = Event()
        self._reader = gevent.spawn(self._read)

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                self.result = json.loads(line[len("RESULT ") :])
            else:
                self.sent = json.loads(line)["sent_bytes"]
            self._changed.set()
        self._changed.set()

    def wait_sent(self, nbytes):
        """Block until the attacker has sent at least ``nbytes``."""
        with gevent.Timeout(W, AssertionError(f"the attacker never sent {nbytes} bytes (sent {self.sent})")):
            while self.sent < nbytes:
                self._changed.clear()
                if self.sent >= nbytes or self.result is not None:
                    break
                self._changed.wait()

    def outcome(self, stop=False):
        """What the attacker saw, once it has ended (``stop``: end its flood first)."""
        if stop:
            self.proc.stdin.close()
        self._reader.join(timeout=W)
        self.proc.wait(timeout=W)
        assert self.result is not None, "the attacker reported nothing"
        return self.result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


@pytest.fixture
def attackers():
    started = []

    def start(*args, **kwargs):
        a = Attacker(*args, **kwargs)
        started.append(a)
        return a

    yield start
    for a in started:
        a.kill()


def assert_nobody_declared_down(cluster):
    """No node declared another down, and B logged no traceback."""
    no_message(lambda m: isinstance(m, snowg.NodeDown))
    assert cluster.node_downs() == []
    assert cluster.b.rpc(connected_nodes) == sorted([snowg.node(), cluster.c.name])
    assert "Traceback" not in cluster.b_log()


def log_lines(cluster, text):
    return [line for line in cluster.b_log().splitlines() if text in line]


# ------------------------------------------------------------------------ tests


@pytest.mark.parametrize("mode", ["ping", "pong"])
def test_control_frame_flood_gets_its_turn_and_no_more(cluster, server, attackers, mode):
    """Attack: one client sends empty pings (reading the pongs) or unsolicited pongs as fast as it can.

    Outcome: the flooder is served at its turn (pongs come back; its command
    is answered after the flood) and never closed; meanwhile the 50 others
    get every broadcast, in order; B's healthy peer never declares it down.
    """
    members, changed = join_members(server)
    attacker = attackers(server, mode)
    attacker.wait_sent(4 * MiB)  # the flood is on
    stream = Stream(cluster, members, changed, f"{mode}-flood")
    stream.wait_each(200)  # two seconds of broadcasts (four of B's ticks) under the flood
    during = attacker.sent
    stream.finish()
    result = attacker.outcome(stop=True)
    assert during >= 4 * MiB and result["sent_bytes"] > during  # it flooded all along
    assert result["send_error"] is None and result["close"] is None
    assert result["answered"]  # its command after the flood was answered: never closed
    if mode == "ping":
        assert result["received"] >= 2 * 1000  # a thousand pongs at least came back during the flood
    _, _, _, code = recv(tagged("gone"), W)  # the attacker's handler: its client left without a close frame
    assert code == 1006
    assert_nobody_declared_down(cluster)
    for m in members:
        m.close()


def test_ping_flood_that_never_reads_overflows_its_queue_1008_and_is_dropped(cluster, server, attackers):
    """Attack: pings as fast as the kernel takes them, never reading a pong.

    Outcome: the pongs fill its outbound queue, it is closed with 1008 (one
    WARNING), nothing more of its flood is read and its TCP connection is
    dropped (its sends fail); the 50 others get every broadcast meanwhile.
    """
    members, changed = join_members(server)
    stream = Stream(cluster, members, changed, "noread-flood")
    stream.wait_each(20)
    warned = len(log_lines(cluster, "outbound queue full"))
    attacker = attackers(server, "ping-noread")
    _, _, cid, code = recv(tagged("gone"), W)
    assert code == 1008
    result = attacker.outcome()
    assert result["send_error"] in ("ConnectionResetError", "BrokenPipeError"), result
    stream.wait_each(stream_count(members, stream) + 100)  # one more second of broadcasts after it
    stream.finish()
    assert len(log_lines(cluster, "outbound queue full")) == warned + 1
    assert_nobody_declared_down(cluster)
    for m in members:
        m.close()


def stream_count(members, stream):
    return min(len(m.numbers(stream.tag)) for m in members)


def test_six_million_empty_continuations_close_1009_at_the_fragment_limit(cluster, server, attackers):
    """Attack: one text message in 6 M empty continuation frames (36 MB), sent as fast as the kernel allows.

    Outcome: closed with 1009 at the 1,025th frame (the default limit is
    1,024 fragments), no byte of it kept; the close frame reaches the
    attacker, nothing more is read and its TCP connection is dropped (its
    sends fail long before the 6 M frames are out); B's memory does not grow
    by more than a few MB; the 50 others get every broadcast meanwhile.
    """
    members, changed = join_members(server)
    stream = Stream(cluster, members, changed, "cont-flood")
    stream.wait_each(20)
    rss_before = rss(cluster.b.process.pid)
    attacker = attackers(server, "cont", limit=6_000_000)
    _, _, cid, code = recv(tagged("gone"), W)
    assert code == 1009
    result = attacker.outcome()
    rss_after = rss(cluster.b.process.pid)
    assert result["close"] == [1009, f"message in more than {fr.MAX_FRAGMENTS} fragments"], result
    assert result["send_error"] in ("ConnectionResetError", "BrokenPipeError"), result
    assert result["end"] in ("eof", "ConnectionResetError"), result
    assert result["sent_frames"] < 6_000_000
    assert rss_after - rss_before < 8 * MiB
    stream.wait_each(stream_count(members, stream) + 100)
    stream.finish()
    lines = log_lines(cluster, f"closing with 1009: message in more than {fr.MAX_FRAGMENTS} fragments")
    assert len(lines) == 1
    assert_nobody_declared_down(cluster)
    for m in members:
        m.close()


def test_invalid_utf8_closes_1007_at_the_first_bad_fragment(cluster, server, attackers):
    """Attack: a text message whose first fragment is not UTF-8, then valid fragments for ever.

    Outcome: closed with 1007 on that first fragment (not at the end of a
    message that never ends), then dropped; the 50 others are served.
    """
    members, changed = join_members(server)
    stream = Stream(cluster, members, changed, "utf8")
    stream.wait_each(20)
    attacker = attackers(server, "bad-utf8")
    _, _, _, code = recv(tagged("gone"), W)
    assert code == 1007
    result = attacker.outcome()
    assert result["close"] == [1007, "text message is not valid UTF-8"], result
    assert result["send_error"] in ("ConnectionResetError", "BrokenPipeError"), result
    stream.wait_each(stream_count(members, stream) + 50)
    stream.finish()
    assert_nobody_declared_down(cluster)
    for m in members:
        m.close()


# ------------------------------------------- closing, on a server in this process


def closing_handler(report_to):
    """Joins the room; on the first client message, closes with 4000; reports what it got after."""

    def handler(conn):
        got = []
        try:
            while (msg := conn.receive()) is not None:
                if isinstance(msg, str) and msg.startswith("join "):
                    conn.join(msg[5:])
                    conn.send("joined " + msg[5:])
                elif not got:
                    got.append(msg)
                    conn.close(4000, "enough")
                else:
                    got.append(msg)
        finally:
            snowg.send(report_to, ("gone", conn.id, conn.close_code, len(got)))

    return handler


def test_a_client_flooding_after_the_servers_close_is_dropped_without_waiting_for_close_timeout(
    ws_servers, attackers, caplog
):
    """Attack: the server closes (4000) and the client never answers, sending small messages as fast as it can.

    Outcome: none of them is delivered after the close; the TCP
    connection is dropped about a second after the close frame, although
    ``close_timeout`` is 1,000 s; ten other clients in the room are served.
    """
    me = snowg.self()
    port = ws_servers(closing_handler(me), close_timeout=1000, ping_interval=None, recv_queue_size=4).port
    changed = Event()
    members = [Member(port, changed) for _ in range(10)]
    wait_all(members, changed, lambda m: f"joined {ROOM}" in m.got, f"joined {ROOM}")
    snowg.spawn(wsfuncs.streamer, me, ROOM, "local", 20, 0.01)
    _, _, streamer = recv(tagged("streaming", "local"), W)
    caplog.set_level(logging.INFO, logger="snowg")
    attacker = attackers(port, "text")
    with gevent.Timeout(20, AssertionError("the connection was not dropped")):
        _, _, code, after = recv(tagged("gone"), W)
        result = attacker.outcome()
    # Only what was in the handler's mailbox when it closed reached it (at
    # most recv_queue_size, its first message included); thousands were sent.
    assert code == 4000 and 1 <= after <= 4 < result["sent_frames"] // 1000
    assert result["close"] == [4000, "enough"], result
    assert result["end"] in ("eof", "ConnectionResetError"), result
    assert result["send_error"] in ("ConnectionResetError", "BrokenPipeError"), result
    assert [r.getMessage() for r in caplog.records if "close handshake not done in time" in r.getMessage()]
    snowg.send(streamer, "finish")
    _, _, total = recv(tagged("streamed", "local"), W)
    wait_all(members, changed, lambda m: len(m.numbers("local")) >= total, "had every broadcast")
    for m in members:
        assert m.numbers("local") == list(range(total))
        m.close()


def test_nothing_after_a_clients_close_frame_is_read(ws_servers):
    """Attack: a close frame followed by more messages in the same write.

    Outcome: the close is echoed, the messages after it never reach the
    handler, and the server drops the TCP connection (the client reads EOF).
    """
    me = snowg.self()
    port = ws_servers(closing_handler(me), ping_interval=None).port
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=W)
    upgrade(sock, port)
    close = struct.pack("!BB", 0x88, 0x82) + b"\0\0\0\0" + struct.pack("!H", 4321)
    sock.sendall(close + text_frame("after the close") * 100)
    data = b""
    with gevent.Timeout(W, AssertionError("no EOF")):
        while chunk := sock.recv(65536):
            data += chunk
    assert data == fr.encode_close(4321)  # the echo, then EOF
    _, _, code, got = recv(tagged("gone"), W)
    assert (code, got) == (4321, 0)
    sock.close()
