"""snowg.ws rooms across three nodes: real servers in real node OS processes, real clients.

The test process is node A; peers B and C are ``snowg node`` OS processes that
import :mod:`wsfuncs`. Each node runs a WebSocket server
(``wsfuncs.start_server``) whose handler obeys small text commands. All the
clients live in the test process (websocket-client over gevent sockets, or a
raw socket client) and are connected to the server of their node. Every client
has a reader greenlet that records what it gets and wakes waiters.

Membership is eventually consistent (a node learns of another node's members
a moment after they join, through snowg.pg): before a test broadcasts, it
waits until every node's ``ws.count`` of the room is what its clients made it.

Exactness without sleeps: every client is also in the room ``all``; when a
test's broadcasts are done, every node broadcasts a *fence* to ``all``. A
node's room broadcasts reach a given client in the order the node issued them
(one FIFO session per pair of nodes, one FIFO queue per connection), so once a
client has the fences of every sending node, it has everything those nodes
sent before them, and the counts can be compared exactly.
"""

pytest_plugins = ["snowg.testing"]

import os  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402
import gevent.socket  # noqa: E402
import websocket  # noqa: E402
from gevent.event import Event  # noqa: E402

import snowg  # noqa: E402
import snowg.ws as ws  # noqa: E402
import roomfuncs  # noqa: E402
import wsfuncs  # noqa: E402
from support import connected_nodes, recv, tagged, ws_upgrade  # noqa: E402
from snowg.testing import wait_for  # noqa: E402

TIME_LIMIT = 90
W = 20.0  # seconds any single expected message may take


# ----------------------------------------------------------------- clients


class Client:
    """A websocket-client connection (gevent socket) with a reader greenlet that records messages."""

    def __init__(self, node, port, name):
        self.node, self.name = node, name
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", socket=sock, timeout=None)
        self.got = []
        self.ended = False
        self._changed = Event()
        self._reader = None

    def command(self, text, answer_prefix):
        """Send a command and wait for its answer; used before :meth:`start_reading`."""
        self.ws.send(text)
        while True:
            msg = self.ws.recv()
            if msg.startswith(answer_prefix):
                return msg
            self.got.append(msg)

    def start_reading(self):
        self._reader = gevent.spawn(self._read)
        return self

    def _read(self):
        try:
            while True:
                msg = self.ws.recv()
                if msg in ("", None):  # websocket-client: the server closed
                    break
                self.got.append(msg)
                self._changed.set()
        except (websocket.WebSocketException, OSError):
            pass
        finally:
            self.ended = True
            self._changed.set()

    def send_command(self, text):
        """Send a command while the reader runs (its answer lands in ``got``)."""
        self.ws.send(text)

    def wait(self, predicate, timeout=20):
        """Block until ``predicate(self.got)`` is true; the reader wakes us on each message."""
        tail = [m[:40] for m in self.got[-10:]]
        with gevent.Timeout(timeout, AssertionError(f"{self.name}: timed out; last got {tail!r}")):
            while not predicate(self.got):
                self._changed.clear()
                if predicate(self.got):
                    break
                self._changed.wait()
        return self.got

    def close(self):
        # The reader first: websocket-client's close() reads the socket too (and
        # swallows every exception, gevent.Timeout included, with a bare except).
        if self._reader is not None:
            self._reader.kill(block=True, timeout=1)
        try:
            self.ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass


class RawClient:
    """A bare WebSocket client: sends masked text frames, reads nothing unless asked."""

    def __init__(self, port, rcvbuf=None):
        s = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        ws_upgrade(s, port)  # byte by byte: nothing after the head is consumed
        self.sock = s

    def send_text(self, text):
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def close(self):
        self.sock.close()


# ----------------------------------------------------------------- helpers


def three_nodes(peers, local_servers, me=None, **server_options):
    """Start peers B and C, wait for the full mesh, start a server on each node.

    Returns ``(nodes, ports, peer_of)``: node names ``[A, B, C]``, their
    servers' ports, and the Peer of each peer node.
    """
    b = peers.start(modules=["wsfuncs", "support", "roomfuncs"])
    c = peers.start(modules=["wsfuncs", "support", "roomfuncs"])
    a = snowg.node()
    names = [a, b.name, c.name]
    # The peer list exchange connects B and C to each other in the background.
    for p in (b, c):
        others = sorted(n for n in names if n != p.name)
        assert wait_for(lambda p=p, others=others: p.rpc(connected_nodes) == others, timeout=20)
    ports = {a: local_servers(report_to=me, **server_options)}
    for p in (b, c):
        ports[p.name] = p.rpc(wsfuncs.start_server, report_to=me, **server_options)
    return names, ports, {b.name: b, c.name: c}


def room_counts(nodes, peer_of, room):
    """``ws.count(room)`` as each node sees it."""
    here = snowg.node()
    return [roomfuncs.room_count(room) if n == here else peer_of[n].rpc(roomfuncs.room_count, room) for n in nodes]


def wait_counts(nodes, peer_of, want):
    """Wait until every node counts ``want[room]`` members in each room (the joins have spread)."""
    for room, n in want.items():
        assert wait_for(lambda room=room, n=n: room_counts(nodes, peer_of, room) == [n] * len(nodes), timeout=W), (
            f"{room}: counts {room_counts(nodes, peer_of, room)} on {nodes}, want {n} everywhere"
        )


def broadcast_from(node, room, data, peer_of):
    """``snowg.ws.broadcast`` from a plain process of ``node`` (not a connection handler)."""
    if node == snowg.node():
        return _local_broadcast(room, data)
    return peer_of[node].rpc(wsfuncs.node_broadcast, room, data)


def _local_broadcast(room, data):
    me = snowg.self()
    snowg.spawn(lambda: snowg.send(me, ("bcast-done", ws.broadcast(room, data))))
    return recv(tagged("bcast-done"), W)[1]


def fence_all(nodes, peer_of, clients, label="fence"):
    """Every node broadcasts ``'<label> <node>'`` to ``all``; wait until every client has all of them."""
    for n in nodes:
        broadcast_from(n, "all", f"{label} {n}", peer_of)
    want = {f"{label} {n}" for n in nodes}
    for cl in clients:
        cl.wait(lambda got: want <= set(got))


def payload(got, ignore=("sent ", "fence ", "joined ", "pong")):
    """The broadcast contents a client got (command answers and fences left out)."""
    return [m for m in got if not m.startswith(ignore)]


# ------------------------------------------------------------------- tests


def test_broadcast_reaches_every_member_on_every_node_exactly_once(peers, local_servers):
    nodes, ports, peer_of = three_nodes(peers, local_servers)
    clients = {}  # (node, role) -> Client; members m0, m1 in 'lobby'; n0 only in 'all'
    for n in nodes:
        for role in ("m0", "m1", "n0"):
            cl = Client(n, ports[n], f"{role}@{n}")
            if role != "n0":
                assert cl.command("join lobby", "joined ") == "joined lobby"
            assert cl.command("join all", "joined ") == "joined all"
            clients[n, role] = cl
    every = list(clients.values())
    # Membership is node-local: each node knows its own two members only.
    for n in nodes:
        ids = wsfuncs.member_ids("lobby") if n == nodes[0] else peer_of[n].rpc(wsfuncs.member_ids, "lobby")
        assert len(ids) == 2
        names = wsfuncs.room_names() if n == nodes[0] else peer_of[n].rpc(wsfuncs.room_names)
        assert names == ["all", "lobby"]
    # The count is the cluster's: 2 members of lobby and 3 of all on each of 3 nodes.
    wait_counts(nodes, peer_of, {"lobby": 6, "all": 9})
    for cl in every:
        cl.start_reading()

    expected_members, expected_excluded = Counter(), {}
    for n in nodes:
        # 1. From a client's command (the handler process broadcasts): 2 local deliveries.
        sender = clients[n, "m1"]
        mark = len(sender.got)
        sender.send_command(f"bcast lobby c-{n}")
        sender.wait(lambda got, mark=mark: any(m.startswith("sent ") for m in got[mark:]))
        assert [m for m in sender.got[mark:] if m.startswith("sent ")] == ["sent 2"]
        expected_members[f"c-{n}"] += 1
        # 2. From a plain process of that node.
        assert broadcast_from(n, "lobby", f"p-{n}", peer_of) == 2
        expected_members[f"p-{n}"] += 1
        # 3. broadcast_except from a member: everyone but that one connection.
        excl = clients[n, "m0"]
        mark = len(excl.got)
        excl.send_command(f"bexc lobby x-{n}")
        excl.wait(lambda got, mark=mark: any(m.startswith("sent ") for m in got[mark:]))
        assert [m for m in excl.got[mark:] if m.startswith("sent ")] == ["sent 1"]
        expected_excluded[f"x-{n}"] = excl

    fence_all(nodes, peer_of, every)

    for (_n, role), cl in clients.items():
        got = Counter(payload(cl.got))
        if role == "n0":
            assert got == Counter(), f"{cl.name} is in no such room but got {got}"
            continue
        want = Counter(expected_members)
        for text, excluded in expected_excluded.items():
            if excluded is not cl:
                want[text] += 1
        assert got == want, f"{cl.name}: got {got}, want {want}"
        # Each fence exactly once too (one room-broadcast frame per node, never forwarded).
        assert sorted(m for m in cl.got if m.startswith("fence ")) == sorted(f"fence {x}" for x in nodes)
    for cl in every:
        cl.close()


def test_killing_a_node_mid_stream_loses_nothing_between_the_survivors(peers, local_servers):
    me = snowg.self()
    nodes, ports, peer_of = three_nodes(peers, local_servers, queue_size=100000)
    a, b, c = nodes
    clients = []
    for n in nodes:
        for i in range(2):
            cl = Client(n, ports[n], f"s{i}@{n}")
            assert cl.command("join stream", "joined ") == "joined stream"
            assert cl.command("join all", "joined ") == "joined all"
            clients.append(cl.start_reading())
    survivors = [cl for cl in clients if cl.node != c]
    wait_counts(nodes, peer_of, {"stream": 6, "all": 6})

    # One streaming process per node, each numbering its own broadcasts.
    snowg.spawn(wsfuncs.streamer, me, "stream", f"n-{a}")
    for n in (b, c):
        snowg.spawn(wsfuncs.streamer, me, "stream", f"n-{n}", node=n)
    streamers = {}
    for _ in nodes:
        _, tag, pid = recv(tagged("streaming"), W)
        streamers[tag] = pid

    # Kill C while all three streams are flowing: once every survivor has
    # 100 numbers from C and 100 from each other node.
    def has_100_each(got):
        counts = Counter(m.rsplit(" ", 1)[0] for m in got if m.startswith("n-"))
        return all(counts[f"n-{n}"] >= 100 for n in nodes)

    for cl in survivors:
        cl.wait(has_100_each)
    peer_of[c].kill()
    # The survivors keep streaming through the node's loss, then finish.
    for cl in survivors:
        base = len(cl.got)
        cl.wait(lambda got, base=base: sum(1 for m in got[base:] if m.startswith("n-")) >= 100)
    totals = {}
    for n in (a, b):
        snowg.send(streamers[f"n-{n}"], "finish")
    for _ in (a, b):
        _, tag, count = recv(tagged("streamed"), W)
        totals[tag] = count
    assert wait_for(lambda: snowg.nodes() == [b] and peer_of[b].rpc(connected_nodes) == [a])
    fence_all([a, b], peer_of, survivors)

    for cl in survivors:
        by_sender = {}
        for m in cl.got:
            if m.startswith("n-"):
                tag, i = m.rsplit(" ", 1)
                by_sender.setdefault(tag, []).append(int(i))
        for n in (a, b):
            assert by_sender[f"n-{n}"] == list(range(totals[f"n-{n}"])), f"{cl.name} missed some of {n}'s"
        # What the dead node sent before dying arrived in order, without gaps (a prefix).
        from_c = by_sender[f"n-{c}"]
        assert from_c == list(range(len(from_c))) and len(from_c) >= 100
    for cl in clients:
        cl.close()


def test_a_client_that_never_reads_on_one_node_does_not_delay_the_others(peers, local_servers):
    """The cross-node version of test_ws's stalled-client test.

    The stalled client is on B; the broadcasts come from A (so they reach B as
    room-broadcast frames of the cluster session, whose reader must never wait
    for the stalled socket); readers on A, B and C get every message at once.
    """
    me = snowg.self()
    nodes, ports, peer_of = three_nodes(
        peers, local_servers, me=me, queue_size=8, close_timeout=0.5, ping_interval=None
    )
    a, b, c = nodes
    stalled = RawClient(ports[b], rcvbuf=4096)
    stalled.send_text("join feed")
    _, _, stalled_id, _ = recv(tagged("joined", b), W)
    readers = []
    for n in nodes:
        cl = Client(n, ports[n], f"r@{n}")
        assert cl.command("join feed", "joined ") == "joined feed"
        recv(tagged("joined", n), W)
        readers.append(cl.start_reading())
    wait_counts(nodes, peer_of, {"feed": 4})
    body = "x" * 65536

    sent, gone = 0, None
    # Broadcast until B closes the stalled client (its kernel buffers hold a few MB at most).
    while gone is None:
        assert sent < 500, "the stalled client was never closed"
        assert ws.broadcast("feed", f"{sent:05d}{body}") == 1
        for cl in readers:  # every reader has it before the next one is sent
            cl.wait(lambda got, k=sent: len(payload(got)) > k)
        sent += 1
        try:
            gone = recv(tagged("gone", b), timeout=0)
        except snowg.Timeout:
            pass
    _, _, cid, code = gone
    assert cid == stalled_id and code == ws.CLOSE_OVERFLOW == 1008
    assert stalled_id not in peer_of[b].rpc(wsfuncs.member_ids, "feed")
    assert len(peer_of[b].rpc(wsfuncs.member_ids, "feed")) == 1
    for _ in range(10):  # the others go on as before (one at a time: their queues hold 8)
        assert ws.broadcast("feed", f"{sent:05d}{body}") == 1
        for cl in readers:
            cl.wait(lambda got, k=sent: len(payload(got)) > k)
        sent += 1
    for cl in readers:
        got = cl.got
        assert [m[:5] for m in payload(got)] == [f"{i:05d}" for i in range(sent)]
        cl.close()
    stalled.close()


def test_an_abruptly_disconnected_client_leaves_its_rooms_on_its_node(peers, local_servers):
    me = snowg.self()
    nodes, ports, peer_of = three_nodes(peers, local_servers, me=me)
    a, b, c = nodes
    raw = RawClient(ports[b])
    raw.send_text("join r1")
    raw.send_text("join r2")
    joined = [recv(tagged("joined", b), W) for _ in range(2)]
    raw_id = joined[0][2]
    assert [j[3] for j in joined] == ["r1", "r2"]
    keeper = Client(b, ports[b], "keeper@b")
    assert keeper.command("join r1", "joined ") == "joined r1"
    _, _, keeper_id, _ = recv(tagged("joined", b), W)
    assert peer_of[b].rpc(wsfuncs.member_ids, "r1") == [raw_id, keeper_id]
    assert peer_of[b].rpc(wsfuncs.room_names) == ["r1", "r2"]

    raw.close()  # no close frame: the TCP connection just goes
    _, node, cid, code = recv(tagged("gone", b, raw_id), W)
    assert (node, code) == (b, 1006)
    assert peer_of[b].rpc(wsfuncs.member_ids, "r1") == [keeper_id]
    assert peer_of[b].rpc(wsfuncs.member_ids, "r2") == []
    assert peer_of[b].rpc(wsfuncs.room_names) == ["r1"]
    # Broadcasts from the other nodes still reach the remaining member, and only it.
    wait_counts(nodes, peer_of, {"r1": 1, "r2": 0})
    keeper.start_reading()
    assert broadcast_from(c, "r1", "after", peer_of) == 0
    assert ws.broadcast("r1", "after-a") == 0
    keeper.wait(lambda got: "after" in got and "after-a" in got)
    keeper.close()
