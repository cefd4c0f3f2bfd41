"""Rooms as process groups: broadcasts routed to the nodes with members, ``ws.count`` across nodes.

The test process is node A; the others are ``snowg node`` OS processes
importing :mod:`wsfuncs` (a WebSocket server whose handler obeys text
commands) and :mod:`roomfuncs`. Clients are real WebSocket clients in the test
process, each connected to one node's server.

Frames are counted where they are queued: :func:`roomfuncs.counted_broadcast`
reads the broadcasting node's per-node count of room-broadcast frames
(``snowg.cluster.frames_sent``) just before and just after one
``ws.broadcast``, which never yields, so the difference is that broadcast's
frames, exactly. Membership is eventually consistent: a test waits until
every node counts the members its clients made (``ws.count``) before it
broadcasts. A client has a broadcast exactly once when, after it, a fence
from the same node has arrived too (one FIFO path per pair of nodes).
"""

pytest_plugins = ["snowg.testing"]

from collections import Counter  # noqa: E402

import pytest  # noqa: E402

import roomfuncs  # noqa: E402
import snowg  # noqa: E402
import snowg.ws as ws  # noqa: E402
import wsfuncs  # noqa: E402
from support import connected_nodes, recv, tagged  # noqa: E402
from snowg.testing import wait_for  # noqa: E402
from snowg.ws import _membership, _rooms  # noqa: E402
from test_ws_cluster import W, Client, RawClient  # noqa: E402

TIME_LIMIT = 120
MODULES = ["wsfuncs", "support", "roomfuncs"]


class Cluster:
    """This node and ``k`` peers in a full mesh; a node's functions are called by rpc (or here, for A)."""

    def __init__(self, peers, k):
        started = [peers.start(modules=MODULES) for _ in range(k)]
        self.me = snowg.node()
        self.peer_of = {p.name: p for p in started}
        self.nodes = [self.me] + [p.name for p in started]
        for p in started:
            others = sorted(n for n in self.nodes if n != p.name)
            assert wait_for(lambda p=p, others=others: p.rpc(connected_nodes) == others, timeout=30)

    def call(self, node, fn, *args, **kwargs):
        return fn(*args, **kwargs) if node == self.me else self.peer_of[node].rpc(fn, *args, **kwargs)

    def counts(self, room):
        return {n: self.call(n, roomfuncs.room_count, room) for n in self.nodes}

    def wait_count(self, room, want, nodes=None):
        """Wait until every node (of ``nodes``) counts ``want`` members in ``room``."""
        nodes = nodes or self.nodes
        ok = wait_for(lambda: all(self.call(n, roomfuncs.room_count, room) == want for n in nodes), timeout=W)
        assert ok, f"{room}: counts {self.counts(room)}, want {want} on {nodes}"

    def broadcast(self, node, room, data):
        """One broadcast from a plain process of ``node``: (local deliveries, frames queued per other node)."""
        others = [n for n in self.nodes if n != node]
        if node != self.me:
            return self.peer_of[node].rpc(roomfuncs.counted_broadcast, room, data, others)
        me = snowg.self()
        snowg.spawn(lambda: snowg.send(me, ("counted", roomfuncs.counted_broadcast(room, data, others))))
        return recv(tagged("counted"), W)[1]


def joined_client(node, port, name, *rooms):
    cl = Client(node, port, name)
    for room in rooms:
        assert cl.command(f"join {room}", "joined ") == f"joined {room}"
    return cl


def test_a_broadcast_puts_frames_only_on_the_sessions_to_the_nodes_with_members(peers):
    cl6 = Cluster(peers, 5)
    a, b, c, d, e, f = cl6.nodes
    ports = {n: cl6.call(n, wsfuncs.start_server) for n in (b, c)}
    # Members of 'r' on B (two) and C (one) only.
    clients = [
        joined_client(b, ports[b], "m0@B", "r"),
        joined_client(b, ports[b], "m1@B", "r"),
        joined_client(c, ports[c], "m0@C", "r"),
    ]
    cl6.wait_count("r", 3)
    for cl in clients:
        cl.start_reading()

    # From every node, members or not: one frame to each other node with members, none to the others.
    for n in cl6.nodes:
        delivered, frames = cl6.broadcast(n, "r", f"hello from {n}")
        assert delivered == {b: 2, c: 1}.get(n, 0)
        assert frames == {o: (1 if o in (b, c) else 0) for o in cl6.nodes if o != n}, f"from {n}"
    # Fences from every node (same paths): then each member has each broadcast exactly once.
    for n in cl6.nodes:
        cl6.broadcast(n, "r", f"fence {n}")
    want = Counter(f"hello from {n}" for n in cl6.nodes)
    for cl in clients:
        got = cl.wait(lambda got: {f"fence {n}" for n in cl6.nodes} <= set(got))
        assert Counter(m for m in got if m.startswith("hello ")) == want, cl.name

    # C's member leaves: frames go to B only; then B's members disconnect: no frames at all.
    clients[2].send_command("leave r")
    clients[2].wait(lambda got: "left r" in got)
    cl6.wait_count("r", 2)
    assert cl6.broadcast(d, "r", "to B only") == (0, {o: (1 if o == b else 0) for o in cl6.nodes if o != d})
    for cl in clients[:2]:
        cl.close()
    cl6.wait_count("r", 0)
    for n in (a, b, f):
        assert cl6.broadcast(n, "r", "to nobody") == (0, {o: 0 for o in cl6.nodes if o != n})
    clients[2].close()


def test_count_is_the_clusters_and_members_stay_local(peers, local_servers):
    me = snowg.self()
    cl3 = Cluster(peers, 2)
    a, b, c = cl3.nodes
    ports = {a: local_servers(report_to=me)}
    for n in (b, c):
        ports[n] = cl3.call(n, wsfuncs.start_server, report_to=me)
    assert cl3.counts("room") == {a: 0, b: 0, c: 0}

    # Joins: two on A, one on B, two on C (one through a raw client that will vanish).
    xs = [joined_client(a, ports[a], "x0@A", "room"), joined_client(a, ports[a], "x1@A", "room")]
    xs.append(joined_client(b, ports[b], "x0@B", "room", "other"))
    xs.append(joined_client(c, ports[c], "x0@C", "room"))
    x0c_id = int(xs[3].command("id", "id ").split()[1])
    raw = RawClient(ports[c])
    raw.send_text("join room")
    reports = [recv(tagged("joined"), W) for _ in range(6)]
    [raw_id] = [cid for _, node, cid, _ in reports if node == c and cid != x0c_id]
    cl3.wait_count("room", 5)
    cl3.wait_count("other", 1)
    # Joining again changes nothing (a connection is in a room once).
    assert xs[0].command("join room", "joined ") == "joined room"
    # members() and rooms() stay node-local.
    assert len(wsfuncs.member_ids("room")) == 2
    assert len(cl3.call(b, wsfuncs.member_ids, "room")) == 1
    assert len(cl3.call(c, wsfuncs.member_ids, "room")) == 2
    assert cl3.call(a, wsfuncs.room_names) == ["room"]
    assert cl3.call(b, wsfuncs.room_names) == ["other", "room"]
    cl3.wait_count("room", 5)

    # A leave, on A.
    assert xs[1].command("leave room", "left ") == "left room"
    cl3.wait_count("room", 4)
    # A client that vanishes without a close frame, on C.
    raw.close()
    _, node, cid, code = recv(tagged("gone", c, raw_id), W)
    assert (node, code) == (c, 1006)
    cl3.wait_count("room", 3)
    # A node killed: its member is gone from every count left, and its rooms with it.
    cl3.peer_of[b].kill()
    cl3.wait_count("room", 2, nodes=[a, c])
    cl3.wait_count("other", 0, nodes=[a, c])
    for cl in xs:
        cl.close()
    cl3.wait_count("room", 0, nodes=[a, c])


def test_a_node_that_reconnects_counts_and_gets_its_members_again(peers, local_servers):
    cl3 = Cluster(peers, 2)
    a, b, c = cl3.nodes
    ports = {n: cl3.call(n, wsfuncs.start_server) for n in (b, c)}
    members = [joined_client(b, ports[b], "y@B", "r"), joined_client(c, ports[c], "y@C", "r")]
    cl3.wait_count("r", 2)
    assert snowg.disconnect(b)
    # A forgets B's member (and B forgets C's); B and C still count each other's.
    assert wait_for(lambda: roomfuncs.room_count("r") == 1, timeout=W)
    assert cl3.broadcast(a, "r", "while apart") == (0, {b: 0, c: 1})
    assert snowg.connect(b)
    cl3.wait_count("r", 2)
    assert wait_for(lambda: b in snowg.nodes() and cl3.call(b, connected_nodes) == sorted([a, c]), timeout=W)
    assert cl3.broadcast(a, "r", "together") == (0, {b: 1, c: 1})
    for cl in members:
        cl.start_reading()
        cl.wait(lambda got: "together" in got)
        cl.close()


def test_the_groups_are_rebuilt_from_the_rooms_when_the_scope_process_ends(local_servers):
    port = local_servers()
    clients = [joined_client(snowg.node(), port, f"z{i}", "r", f"only{i}") for i in range(3)]
    assert wait_for(lambda: ws.count("r") == 3 and ws.count("only0") == 1)
    scope = snowg.whereis(_membership.SCOPE)
    assert scope is not None
    snowg.exit(scope, "kill")
    # The writer restarts the scope with every membership the rooms hold.
    assert wait_for(lambda: snowg.whereis(_membership.SCOPE) not in (None, scope) and ws.count("r") == 3)
    assert [ws.count(f"only{i}") for i in range(3)] == [1, 1, 1]
    assert clients[0].command("leave r", "left ") == "left r"
    assert wait_for(lambda: ws.count("r") == 2)
    for cl in clients:
        cl.close()
    assert wait_for(lambda: ws.count("r") == 0 and ws.count("only1") == 0)


def test_a_connection_closed_in_a_timer_leaves_its_groups():
    """A pong timeout closes the connection in a timer callback of the event loop, where nothing may block.

    The handler outlives its connection, so the count drops through the
    connection's leave, not through pg's clean-up of an ended process.
    """
    me = snowg.self()

    def handler(conn):
        conn.join("r")
        snowg.send(me, ("joined", conn.id))
        while conn.receive() is not None:
            pass
        snowg.send(me, ("gone", conn.id, conn.close_code, snowg.self()))
        snowg.receive(lambda m: m == "stop")

    server = ws.serve(("127.0.0.1", 0), handler, ping_interval=0.05, ping_timeout=0.2, close_timeout=0.5)
    try:
        raw = RawClient(server.port)  # never reads, so never answers a ping
        _, cid = recv(tagged("joined"), W)
        assert wait_for(lambda: ws.count("r") == 1)
        _, gone, code, pid = recv(tagged("gone"), W)
        assert (gone, code) == (cid, 1001)
        assert wait_for(lambda: ws.count("r") == 0) and snowg.is_alive(pid)
        snowg.send(pid, "stop")
        raw.close()
    finally:
        server.stop(timeout=1)


def test_a_new_writer_starts_from_the_rooms(local_servers):
    port = local_servers()
    first = joined_client(snowg.node(), port, "w0", "r")
    assert wait_for(lambda: ws.count("r") == 1)
    snowg.exit(_membership._writer, "kill")
    assert wait_for(lambda: not snowg.is_alive(_membership._writer))
    # The next change starts a writer, which makes pg's members the rooms' again.
    second = joined_client(snowg.node(), port, "w1", "r")
    assert wait_for(lambda: ws.count("r") == 2)
    first.close()
    assert wait_for(lambda: ws.count("r") == 1)
    second.close()
    assert wait_for(lambda: ws.count("r") == 0)


def test_a_room_name_is_bounded():
    class Conn:
        pid = None

    with pytest.raises(ValueError, match="at most 1024 characters"):
        _rooms.join(Conn(), "r" * 1025)
    with pytest.raises(TypeError):
        _rooms.join(Conn(), b"r")
    assert ws.count("r" * 5000) == 0  # a name nobody can join is merely empty
