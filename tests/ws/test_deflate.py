"""permessage-deflate (RFC 7692): the negotiation one header at a time, the codecs, and real servers.

websocket-client does not speak permessage-deflate, so :class:`DeflateClient`
is a small client written here with zlib over a real (gevent) socket: it
offers the extension, compresses what it sends (with or without context
takeover, in one frame or several) and inflates what it receives, each
independently of snowg's code. wsproto (an independent implementation, when
installed) talks to the server too.
"""

import os
import re
import struct
import zlib

import gevent
import gevent.socket
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snowg.ws as ws
from snowg.ws import _deflate as dfl
from snowg.ws import _frames as fr
from support import ws_handshake
from test_ws import connect
from test_ws_frames import client_frame

TIME_LIMIT = 30

CONFIG = dfl.DeflateConfig(shared_context=False)  # answers server_no_context_takeover, as before
TAIL = b"\x00\x00\xff\xff"


# ------------------------------------------------------------- negotiation


def answer(header, config=CONFIG):
    params = dfl.negotiate(header, config)
    return None if params is None else params.header()


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("", None),
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
        # Chromium's offer; client_max_window_bits without a value is never answered
        ("permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover"),
        ("Permessage-Deflate ;  Server_No_Context_Takeover", "permessage-deflate; server_no_context_takeover"),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        ),
        (
            'permessage-deflate; server_max_window_bits="12"',
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        ("permessage-deflate; client_max_window_bits=8", "permessage-deflate; server_no_context_takeover"),
        # other extensions are skipped; the first acceptable offer wins
        ("foo; bar=1, permessage-deflate, x", "permessage-deflate; server_no_context_takeover"),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        (", ,permessage-deflate,,", "permessage-deflate; server_no_context_takeover"),  # empty list elements
    ],
)
def test_negotiation_answers(header, expected):
    assert answer(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # a duplicate
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",  # no leading zeros
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=8",  # valid, but zlib cannot honour it
        "permessage-deflate; client_max_window_bits=0",
        'permessage-deflate; client_max_window_bits="1 0"',
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; mystery",
        # not valid syntax: nothing is offered
        "permessage-deflate;",
        "permessage-deflate;; server_no_context_takeover",
        "permessage-deflate; =1",
        'permessage-deflate; server_max_window_bits="10',
        "permessage-deflate server_no_context_takeover",
        '"permessage-deflate"',
        "permessage-deflate; server_max_window_bits=1\x000",
        "permessage-déflate",
    ],
)
def test_negotiation_refuses(header):
    assert answer(header) is None


def test_negotiation_off_and_with_server_context_takeover():
    assert answer("permessage-deflate", None) is None
    keep = dfl.DeflateConfig(context_takeover=True)
    assert answer("permessage-deflate", keep) == "permessage-deflate"
    # the client may still ask the server not to keep its context
    assert answer("permessage-deflate; server_no_context_takeover", keep) == (
        "permessage-deflate; server_no_context_takeover"
    )


def test_negotiation_by_default_keeps_the_servers_context_unless_asked():
    shared = dfl.DeflateConfig()
    assert answer("permessage-deflate; client_max_window_bits", shared) == "permessage-deflate"
    assert answer("permessage-deflate; server_no_context_takeover", shared) == (
        "permessage-deflate; server_no_context_takeover"
    )
    d = dfl.Deflater(dfl.negotiate("permessage-deflate", shared), shared)
    assert d.shared and d.key == (15, 6)
    asked = dfl.Deflater(dfl.negotiate("permessage-deflate; server_no_context_takeover", shared), shared)
    assert not asked.shared and asked.key == (15, 6)


def test_parse_extensions():
    assert dfl.parse_extensions('a; b=1 ; c="x\\"y", d') == [("a", [("b", "1"), ("c", 'x"y')]), ("d", [])]
    with pytest.raises(ValueError):
        dfl.parse_extensions("a; b=")


_PARAMS = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
]


@st.composite
def offers(draw):
    """A syntactically valid header of 1-3 offers, each with well- or ill-formed parameters."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["permessage-deflate", "permessage-deflate", "x-other"]))
        params = []
        for p in draw(st.lists(st.sampled_from([*_PARAMS, "junk"]), max_size=5)):
            value = draw(st.one_of(st.none(), st.integers(0, 20).map(str), st.just("09")))
            quote = draw(st.booleans())
            if value is None:
                params.append(p)
            else:
                params.append(f'{p}="{value}"' if quote else f"{p}={value}")
        out.append("; ".join([name, *params]))
    return ", ".join(out)


def _acceptable(params):
    names = [p.split("=")[0] for p in params]
    if len(set(names)) != len(names):
        return False
    for p in params:
        name, eq, value = p.partition("=")
        value = value.strip('"')
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if eq:
                return False
        elif name == "server_max_window_bits":
            if not eq or not re.fullmatch(r"9|1[0-5]", value):
                return False
        elif name == "client_max_window_bits":
            if eq and not re.fullmatch(r"[89]|1[0-5]", value):
                return False
        else:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(offers())
def test_negotiation_answers_the_first_acceptable_offer(header):
    """A model of RFC 7692 section 7.1 checked against negotiate(), on generated offers."""
    expected = None
    for offer in header.split(", "):
        name, *params = offer.split("; ")
        if name == "permessage-deflate" and _acceptable(params):
            expected = params
            break
    got = dfl.negotiate(header, CONFIG)
    if expected is None:
        assert got is None
        return
    assert got is not None and got.server_no_context_takeover
    assert got.client_no_context_takeover == ("client_no_context_takeover" in expected)
    bits = [p.partition("=")[2].strip('"') for p in expected if p.startswith("server_max_window_bits")]
    assert got.server_max_window_bits == (int(bits[0]) if bits else 15)
    # the answer is itself a valid, acceptable header naming the same parameters
    [(name, answered)] = dfl.parse_extensions(got.header())
    assert name == "permessage-deflate" and dfl.accept_offer(answered, CONFIG) == got


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_negotiation_never_raises_on_any_header(header):
    params = dfl.negotiate(header, CONFIG)
    assert params is None or params.header().startswith("permessage-deflate")


# ------------------------------------------------------------------ codecs


def inflate_alone(data):
    return zlib.decompressobj(-15).decompress(data + TAIL)


def test_shared_compression_depends_on_the_message_only():
    a, b = b"hello world " * 40, b"another message, " * 30
    first = dfl.compress_alone(a)
    dfl.compress_alone(b)
    assert dfl.compress_alone(a) == first  # nothing of b before it
    assert inflate_alone(first) == a and inflate_alone(dfl.compress_alone(b)) == b
    assert not first.endswith(TAIL)


def test_inflater_keeps_the_clients_context_unless_told_not_to():
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    msgs = [b"the same words again and again " * 10, b"the same words again and again " * 11, b"x"]
    wire = []
    for m in msgs:
        out = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        wire.append(out[:-4])
    assert len(wire[1]) < 20  # the second refers to the first
    keep = dfl.Inflater(dfl.DeflateParams())
    assert [keep.inflate(w, True, 1 << 20) for w in wire] == msgs
    alone = dfl.Inflater(dfl.DeflateParams(client_no_context_takeover=True))
    assert alone.inflate(wire[0], True, 1 << 20) == msgs[0]
    with pytest.raises(dfl.InflateError):
        alone.inflate(wire[1], True, 1 << 20)  # its context is gone


def bomb(size=10 << 20):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (c.compress(bytes(size)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_inflater_stops_one_byte_past_the_limit():
    data = bomb()
    assert len(data) < 12_000
    inf = dfl.Inflater(dfl.DeflateParams())
    with pytest.raises(dfl.InflateTooBig):
        inf.inflate(data, True, 1 << 20)
    assert inf.inflate(dfl.compress_alone(b"ok" * 200), True, 400) == b"ok" * 200  # started afresh
    with pytest.raises(dfl.InflateError):
        dfl.Inflater(dfl.DeflateParams()).inflate(b"\xff\xff\xff\xff", True, 100)


def test_message_frames_once_per_parameter_set(monkeypatch):
    calls = []
    real = dfl.compress_alone
    monkeypatch.setattr(dfl, "compress_alone", lambda p, w, lv: calls.append(w) or real(p, w, lv))
    shared = dfl.Deflater(dfl.DeflateParams(), CONFIG)
    shared2 = dfl.Deflater(dfl.DeflateParams(client_no_context_takeover=True), CONFIG)
    small = dfl.Deflater(dfl.DeflateParams(server_max_window_bits=10, server_window_asked=True), CONFIG)
    own = dfl.Deflater(dfl.DeflateParams(server_no_context_takeover=False), dfl.DeflateConfig(context_takeover=True))
    text = "a chat message, " * 40
    m = fr.MessageFrames(text)
    f1, f2, f3 = m.frame(shared), m.frame(shared2), m.frame(small)
    assert f1 is f2 and calls == [15, 10]  # one compression per window size
    assert f1[0] == 0xC1 and f3[0] == 0xC1  # FIN, RSV1, text
    plain = m.frame(None)
    assert plain == fr.encode_data(text) and m.frame(None) is plain
    mine1, mine2 = m.frame(own), m.frame(own)
    assert mine1[0] == 0xC1 and len(mine2) < len(mine1)  # its own context: the second refers to the first
    # under the threshold, and incompressible payloads: the plain frame
    assert fr.MessageFrames("short").frame(shared) == fr.encode_data("short")
    noise = os.urandom(2000)
    assert fr.MessageFrames(noise).frame(shared) == fr.encode_data(noise)
    assert fr.encode_message(text, shared) == f1 and fr.encode_message(text, None) == plain
    with pytest.raises(TypeError):
        fr.MessageFrames(3)


# ------------------------------------------------------------------ client


class DeflateClient:
    """A WebSocket client on a gevent socket, with permessage-deflate written here on zlib."""

    def __init__(self, port, offer="permessage-deflate; client_max_window_bits", *, context=True, timeout=10):
        s = gevent.socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = s
        extra = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
        head, self.buf = ws_handshake(s, port, headers=extra, read_size=4096)
        self.extensions = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                self.extensions = value.strip()
        answered = self.extensions or ""
        self.server_context = "server_no_context_takeover" not in answered
        self.context = context  # this client keeps its compression context across messages
        self._c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._d = zlib.decompressobj(-15)

    # sending
    def compress(self, payload):
        if not self.context:
            self._c = zlib.compressobj(6, zlib.DEFLATED, -15)
        out = self._c.compress(payload) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def send(self, data, compress=True, fragments=1, rsv_on_all=False):
        opcode = fr.OP_TEXT if isinstance(data, str) else fr.OP_BINARY
        payload = data.encode() if isinstance(data, str) else data
        if compress:
            payload = self.compress(payload)
        step = max(1, -(-len(payload) // fragments))
        parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        frames = b""
        for i, part in enumerate(parts):
            rsv = 0x40 if compress and (i == 0 or rsv_on_all) else 0
            frames += client_frame(opcode if i == 0 else fr.OP_CONT, part, fin=i == len(parts) - 1, rsv=rsv)
        self.sock.sendall(frames)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0):
        self.sock.sendall(client_frame(opcode, payload, fin, rsv))

    # receiving
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
        return b0, self._exact(n)

    def recv(self):
        """The next data message as (data, was it compressed); pings are answered."""
        while True:
            b0, payload = self.recv_frame()
            op = b0 & 0x0F
            assert b0 & 0x80, "the server never fragments"
            assert not b0 & 0x30
            if op == fr.OP_PING:
                self.send_frame(fr.OP_PONG, payload)
                continue
            if op == fr.OP_CLOSE:
                raise EOFError(struct.unpack("!H", payload[:2])[0] if payload else None)
            compressed = bool(b0 & 0x40)
            if compressed:
                if not self.server_context:
                    self._d = zlib.decompressobj(-15)
                payload = self._d.decompress(payload + TAIL)
            return (payload.decode() if op == fr.OP_TEXT else payload), compressed

    def close_code(self):
        while True:
            b0, payload = self.recv_frame()
            if b0 & 0x0F == fr.OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    def close(self):
        self.sock.close()


def echo(conn):
    while (msg := conn.receive()) is not None:
        conn.send(msg)


LONG = '{"user": "alice", "text": "' + "hello compressed world, " * 30 + '"}'


# ------------------------------------------------------------ real server


def test_offer_answered_and_messages_both_ways(ws_servers):
    srv = ws_servers(echo)
    c = DeflateClient(srv.port)
    assert c.extensions == "permessage-deflate" and c.server_context  # the server keeps its context (shared)
    [conn] = srv.app.connections()
    assert conn.compression == dfl.DeflateParams(server_no_context_takeover=False)
    c.send(LONG)
    assert c.recv() == (LONG, True)  # over the threshold: compressed back
    c.send("short")
    assert c.recv() == ("short", False)  # under it: plain
    c.send("short", compress=False)  # a client may send any message uncompressed
    assert c.recv() == ("short", False)
    blob = bytes(range(256)) * 20
    c.send(blob)
    assert c.recv() == (blob, True)
    c.close()


def test_client_context_takeover_decoded_across_messages(ws_servers):
    srv = ws_servers(echo)
    c = DeflateClient(srv.port)
    texts = [LONG, LONG + "!", "\u00e9t\u00e9 " + LONG, LONG]
    for t in texts:
        c.send(t)
    assert [c.recv()[0] for _ in texts] == texts
    # and a client without context takeover, which says so
    d = DeflateClient(srv.port, "permessage-deflate; client_no_context_takeover", context=False)
    assert d.extensions == "permessage-deflate; client_no_context_takeover"
    for t in texts:
        d.send(t)
    assert [d.recv()[0] for _ in texts] == texts
    c.close()
    d.close()


def test_compressed_fragments_rsv1_on_the_first_only(ws_servers):
    srv = ws_servers(echo)
    c = DeflateClient(srv.port)
    c.send(LONG, fragments=5)
    c.send(b"\x00\x01" * 3000, fragments=3)
    assert c.recv() == (LONG, True)
    assert c.recv() == (b"\x00\x01" * 3000, True)
    c.send(LONG, fragments=3, rsv_on_all=True)
    assert c.close_code() == fr.CLOSE_PROTOCOL_ERROR


@pytest.mark.parametrize(
    "offer, frame",
    [
        ("permessage-deflate", client_frame(fr.OP_PING, b"x", rsv=0x40)),  # control frames are never compressed
        ("permessage-deflate", client_frame(fr.OP_TEXT, b"x", rsv=0x20)),  # RSV2 means nothing here
        ("permessage-deflate", client_frame(fr.OP_TEXT, b"\xff\xff\xff\xff", rsv=0x40)),  # not DEFLATE
        (None, client_frame(fr.OP_TEXT, dfl.compress_alone(b"x" * 300), rsv=0x40)),  # not negotiated
    ],
)
def test_rsv1_out_of_place_closes_1002(ws_servers, offer, frame):
    srv = ws_servers(echo)
    c = DeflateClient(srv.port, offer)
    c.sock.sendall(frame)
    assert c.close_code() == fr.CLOSE_PROTOCOL_ERROR
    c.close()


def test_compressed_invalid_utf8_closes_1007(ws_servers):
    srv = ws_servers(echo)
    c = DeflateClient(srv.port)
    c.sock.sendall(client_frame(fr.OP_TEXT, dfl.compress_alone(b"ok \xff" * 100), rsv=0x40))
    assert c.close_code() == fr.CLOSE_INVALID_DATA


def test_compression_off(ws_servers):
    srv = ws_servers(echo, compression=False)
    c = DeflateClient(srv.port)
    assert c.extensions is None
    c.send(LONG, compress=False)
    assert c.recv() == (LONG, False)
    c.send(LONG)
    assert c.close_code() == fr.CLOSE_PROTOCOL_ERROR


def test_threshold_and_server_context_takeover_options(ws_servers):
    srv = ws_servers(echo, compression_threshold=0, compression_context_takeover=True)
    c = DeflateClient(srv.port, "permessage-deflate")
    assert c.extensions == "permessage-deflate" and c.server_context
    replies = []
    for _ in range(3):
        c.send("tiny tiny tiny")
        replies.append(c.recv())
    assert all(r == ("tiny tiny tiny", True) for r in replies)
    c.close()
    with pytest.raises(ValueError):
        ws.WebSocketApp(echo, compression_threshold=-1)


def _rss_peak_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM)
        return True
    except OSError:
        return False


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def test_deflate_bomb_closes_1009_and_memory_stays_bounded(ws_servers):
    srv = ws_servers(echo, max_message_size=1 << 20)
    other = connect(srv.port)  # an uncompressed client served meanwhile
    data = bomb(64 << 20)
    assert len(data) < 70_000  # 64 MiB of zeros
    bombers = [DeflateClient(srv.port) for _ in range(8)]
    peak_known = _rss_peak_reset()
    before = _status("VmRSS")
    for b in bombers:
        b.sock.sendall(client_frame(fr.OP_BINARY, data, rsv=0x40))
    fragmented = DeflateClient(srv.port)  # the same bomb in 10 frames
    step = len(data) // 10 + 1
    frames = b"".join(
        client_frame(
            fr.OP_BINARY if i == 0 else fr.OP_CONT, data[i : i + step], fin=i + step >= len(data), rsv=0x40 * (i == 0)
        )
        for i in range(0, len(data), step)
    )
    fragmented.sock.sendall(frames)
    for b in [*bombers, fragmented]:
        assert b.close_code() == fr.CLOSE_TOO_BIG
    grown = (_status("VmHWM") if peak_known else _status("VmRSS")) - before
    # one bomb inflated in full is 64 MiB; each stops at 1 MiB + 1 byte (measured: about 2 MiB in all)
    assert grown < 24 << 20, f"RSS grew by {grown >> 20} MiB"
    other.send("still served")
    assert other.recv() == "still served"
    # a message just under the limit still passes
    ok = DeflateClient(srv.port)
    ok.send(bytes((1 << 20) - 1))
    assert ok.recv() == (bytes((1 << 20) - 1), True)
    ok.close()
    other.close()


def room_member(conn):
    conn.join("r")
    conn.send("joined")
    while (msg := conn.receive()) is not None:
        ws.broadcast("r", msg)


def test_room_members_with_and_without_compression_receive_the_same(ws_servers):
    srv = ws_servers(room_member)
    plain = connect(srv.port)
    assert plain.recv() == "joined"
    comp = DeflateClient(srv.port)
    alone = DeflateClient(srv.port, "permessage-deflate; client_no_context_takeover", context=False)
    small = DeflateClient(srv.port, "permessage-deflate; server_max_window_bits=9")
    for c in (comp, alone, small):
        assert c.recv() == ("joined", False)
    sent = [LONG, "short", b"\x00" * 5000, "\u00e9" * 400, LONG]
    for m in sent:
        comp.send(m)
    for c in (comp, alone, small):
        assert [c.recv()[0] for _ in sent] == sent
    got = []
    for _ in sent:
        got.append(plain.recv())
    assert got == sent
    for c in (plain, comp, alone, small):
        c.close()


def test_interoperates_with_wsproto(ws_servers):
    """wsproto's own permessage-deflate (an independent implementation), over a real socket."""
    wsproto = pytest.importorskip("wsproto")
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    srv = ws_servers(echo)
    s = gevent.socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    s.sendall(conn.send(Request(host="127.0.0.1", target="/", extensions=[PerMessageDeflate()])))

    def events():
        while True:
            for ev in conn.events():
                yield ev
            data = s.recv(65536)
            assert data
            conn.receive_data(data)

    it = events()
    accepted = next(it)
    assert isinstance(accepted, AcceptConnection)
    assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
    sent = [LONG * 3, "short", LONG]
    for m in sent:
        s.sendall(conn.send(TextMessage(data=m)))
    got = []
    while len(got) < len(sent):
        ev = next(it)
        if isinstance(ev, (TextMessage, BytesMessage)):
            got.append(ev.data)
    assert got == sent
    s.close()


def test_room_broadcast_compresses_once_per_parameter_set(ws_servers, monkeypatch):
    srv = ws_servers(room_member, compression_shared_context=False)
    clients = [DeflateClient(srv.port) for _ in range(3)]
    clients.append(DeflateClient(srv.port, "permessage-deflate; server_max_window_bits=11"))
    plain = connect(srv.port)
    for c in clients:
        assert c.recv() == ("joined", False)
    assert plain.recv() == "joined"
    calls = []
    real = dfl.compress_alone
    monkeypatch.setattr(dfl, "compress_alone", lambda p, w, lv: calls.append(w) or real(p, w, lv))
    assert ws.broadcast("r", LONG) == 5
    assert sorted(calls) == [11, 15]
    frames = [c.recv_frame() for c in clients]
    assert frames[0] == frames[1] == frames[2] and frames[0][0] == 0xC1  # the same compressed bytes
    assert all(zlib.decompressobj(-15).decompress(f[1] + TAIL) == LONG.encode() for f in frames)
    assert plain.recv() == LONG
    for c in [*clients, plain]:
        c.close()


def _gevent_server(app, handler_class):
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", 0), app, handler_class=handler_class, log=None)
    server.start()
    return server


def test_only_snowgs_handler_for_a_websocket_app_answers_the_offer():
    from geventwebsocket.handler import WebSocketHandler as LibraryHandler

    # gevent-websocket's own handler answers the 101 itself: nothing offered is answered, nothing compressed
    server = _gevent_server(ws.WebSocketApp(echo), LibraryHandler)
    try:
        c = DeflateClient(server.server_port)
        assert c.extensions is None
        c.send(LONG, compress=False)
        assert c.recv() == (LONG, False)
        c.close()
    finally:
        server.stop()

    # snowg's handler in front of an application that is not a WebSocketApp: not answered either
    def other_app(environ, start_response):
        sock = environ["wsgi.websocket"]
        sock.send(LONG)
        return []

    server = _gevent_server(other_app, ws.WebSocketHandler)
    try:
        c = DeflateClient(server.server_port)
        assert c.extensions is None
        assert c.recv() == (LONG, False)
        c.close()
    finally:
        server.stop()


# ------------------------------------------------- a room's shared context


def chat(i, extra=""):
    return (
        '{"event": "new_msg", "id": %d, "user": "user%d", "body": "%s the quick brown fox jumps over the lazy dog"}'
        % (
            i,
            i % 7,
            extra + "hello room " * (20 + i % 5),
        )
    )


def test_shared_context_refers_back_and_its_resets_suit_any_window():
    ctx = dfl.SharedContext(15, 6)
    msgs = [chat(i).encode() for i in range(5)]
    body0, prev0, mark0 = ctx.compress(msgs[0])
    assert prev0 is None  # the first message is a reset
    ctx.in_step = 10
    body1, prev1, _ = ctx.compress(msgs[1])
    assert prev1 is mark0 and len(body1) * 3 < len(dfl.compress_alone(msgs[1]))  # it refers to the first
    kept = zlib.decompressobj(-15)
    assert kept.decompress(body0 + TAIL) == msgs[0] and kept.decompress(body1 + TAIL) == msgs[1]
    # fewer than 90% in step: a reset, which a client with any other history decodes
    ctx.in_step, ctx.out_of_step = 9, 2
    body2, prev2, mark2 = ctx.compress(msgs[2])
    assert prev2 is None
    other = zlib.decompressobj(-15)
    other.decompress(dfl.compress_alone(b"something else entirely " * 50) + TAIL)
    assert other.decompress(body2 + TAIL) == msgs[2] and kept.decompress(body2 + TAIL) == msgs[2]
    ctx.in_step, ctx.out_of_step = 9, 1  # 90%: no reset
    body3, prev3, _ = ctx.compress(msgs[3])
    assert prev3 is mark2
    assert other.decompress(body3 + TAIL) == msgs[3] and kept.decompress(body3 + TAIL) == msgs[3]
    m = fr.MessageFrames(chat(9))
    frame, prev, mark = m.in_context(ctx)
    assert frame[0] == 0xC1 and prev is not None and mark is not prev


def greeter(conn):
    conn.send("hi")
    while conn.receive() is not None:
        pass


KINDS = {
    "ctx": "permessage-deflate; client_max_window_bits",  # as Chromium offers: the server keeps its context
    "small": "permessage-deflate; server_max_window_bits=10",  # its context, in a 1 KiB window
    "alone": "permessage-deflate; server_no_context_takeover",
    "plain": None,  # websocket-client: no compression
}


class Member:
    """A client of a server in this test's process, with its server-side connection (joined and sent to from here)."""

    def __init__(self, srv, kind, known):
        self.kind = kind
        self.client = connect(srv.port) if kind == "plain" else DeflateClient(srv.port, KINDS[kind])
        assert self.recv() == "hi"
        [self.conn] = [c for c in srv.app.connections() if c not in known]
        known.add(self.conn)
        self.expected = []
        self.compressed_bytes = 0

    def recv(self):
        if self.kind == "plain":
            return self.client.recv()
        b0, payload = self.client.recv_frame()
        self.client.buf = struct.pack("!BB", b0, 126) + struct.pack("!H", len(payload)) + payload + self.client.buf
        if b0 & 0x40:
            self.compressed_bytes += len(payload)
        return self.client.recv()[0]

    def check(self):
        """Every message this member should have had, in order, decoded."""
        got = [self.recv() for _ in self.expected]
        assert got == self.expected, self.kind
        self.expected = []

    def close(self):
        self.client.close()


def members_of(srv, kinds):
    known = set(srv.app.connections())
    return [Member(srv, k, known) for k in kinds]


class RoomModel:
    """Room operations made from here (queued in this order) and what each member must receive."""

    def __init__(self, members):
        self.members = members
        self.rooms = {}

    def join(self, i, room):
        assert self.members[i].conn.join(room)
        self.rooms.setdefault(room, set()).add(i)

    def leave(self, i, room):
        self.members[i].conn.leave(room)
        self.rooms.get(room, set()).discard(i)

    def broadcast(self, room, msg):
        n = ws.broadcast(room, msg)
        assert n == len(self.rooms.get(room, ()))
        for i in self.rooms.get(room, ()):
            self.members[i].expected.append(msg)

    def send(self, i, msg):
        assert self.members[i].conn.send(msg)
        self.members[i].expected.append(msg)

    def check(self):
        for m in self.members:
            m.check()


def test_shared_context_across_many_broadcasts_sends_joins_and_rooms(ws_servers):
    srv = ws_servers(greeter)
    ms = members_of(srv, ["ctx", "ctx", "small", "alone", "plain"])
    model = RoomModel(ms)
    for i in range(4):
        model.join(i, "r")
    for k in range(300):  # far past the 32 KiB window
        model.broadcast("r", chat(k))
    model.check()
    # the in-step members' frames refer back: a fraction of compressing each alone
    assert ms[0].compressed_bytes * 3 < ms[3].compressed_bytes
    # individual compressed sends, small plain messages, a second room, joins mid-stream
    model.join(4, "r")
    model.join(0, "s")
    model.join(2, "s")
    for k in range(60):
        model.broadcast("r", chat(k, "again"))
        if k % 7 == 0:
            model.send(k % 5, chat(k, "to you alone"))
        if k % 5 == 0:
            model.broadcast("r", "short %d" % k)  # under the threshold: RSV1 clear
        if k % 4 == 0:
            model.broadcast("s", chat(k, "other room"))
        if k == 30:
            model.join(1, "s")
            model.leave(3, "r")
        if k % 11 == 0:
            model.broadcast("r", bytes(range(256)) * 8)
    model.check()
    for m in ms:
        m.close()


@pytest.mark.parametrize("size", [3, 12])
def test_a_broadcast_compresses_at_most_twice_per_parameter_set(ws_servers, monkeypatch, size):
    srv = ws_servers(greeter)
    ms = members_of(srv, ["ctx"] * size + ["small"] * size)
    model = RoomModel(ms)
    for i in range(2 * size):
        model.join(i, "r")
    calls = []
    real_alone, real_shared = dfl.compress_alone, dfl.SharedContext.compress
    monkeypatch.setattr(dfl, "compress_alone", lambda p, w, lv: calls.append(("alone", w)) or real_alone(p, w, lv))
    monkeypatch.setattr(
        dfl.SharedContext, "compress", lambda self, p: calls.append(("shared", self.wbits)) or real_shared(self, p)
    )
    per_broadcast = []
    for k in range(4):
        calls.clear()
        model.broadcast("r", chat(k))
        per_broadcast.append(sorted(calls))
        calls.clear()
        if k == 0:  # two members of each window size fall out of step
            for i in (0, 1, size, size + 1):
                model.send(i, chat(k, "individual"))
    # a reset; two out of step (compressed alone once for both, the rest in step); fewer than 90% were
    # in step: a reset; all in step
    assert per_broadcast == [
        [("shared", 10), ("shared", 15)],
        [("alone", 10), ("alone", 15), ("shared", 10), ("shared", 15)],
        [("shared", 10), ("shared", 15)],
        [("shared", 10), ("shared", 15)],
    ]
    model.check()
    for m in ms:
        m.close()


_example = [0]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("join"), st.integers(0, 4), st.sampled_from("ab")),
            st.tuples(st.just("leave"), st.integers(0, 4), st.sampled_from("ab")),
            st.tuples(st.just("broadcast"), st.sampled_from("ab"), st.integers(0, 40)),
            st.tuples(st.just("broadcast"), st.sampled_from("ab"), st.integers(0, 40)),
            st.tuples(st.just("send"), st.integers(0, 4), st.integers(0, 40)),
        ),
        max_size=60,
    )
)
def test_random_interleavings_every_client_decodes_exactly_what_was_sent(ws_servers, ops):
    _example[0] += 1
    srv = ws_servers(greeter)
    ms = members_of(srv, ["ctx", "ctx", "small", "alone", "plain"])
    model = RoomModel(ms)

    def message(k):  # long texts of one vocabulary in different orders, small ones under the threshold, binary
        if k % 4:
            return '{"id": %d, "body": "%s"}' % (k, " ".join(WORDS[(k * 7 + j * j) % len(WORDS)] for j in range(80)))
        return "tiny %d" % k if k % 8 else bytes([k]) * 600

    for op, x, y in ops:
        if op == "join":
            model.join(x, f"{y}{_example[0]}")
        elif op == "leave":
            model.leave(x, f"{y}{_example[0]}")
        elif op == "broadcast":
            model.broadcast(f"{x}{_example[0]}", message(y))
        else:
            model.send(x, message(y))
    model.check()
    for m in ms:
        m.close()
