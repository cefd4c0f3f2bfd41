"""Room broadcasts take a short path per uncompressed member; it must do exactly what ``conn.send`` does.

A broadcast queues its frame for each uncompressed member without calling
``Connection.enqueue`` (open, room left in the queue) and the writer sends
with one non-blocking send before gevent's ``sendall``. These tests pin the
outcomes at the edges: a full queue (1008, exactly at ``queue_size``), a
closing member (skipped, not counted), a frame larger than the socket's
buffers (whole, in order). (Rooms mixing compressed and plain members:
test_deflate.py.)
"""

import struct

import snowg
import snowg.ws as ws
from snowg.ws import _frames as fr
from support import recv, tagged
from test_ws import RawClient, reporting

TIME_LIMIT = 20


def in_path_room(report_to):
    """A handler joining the room its path names (``/r``), reporting ('joined', conn.id)."""

    def body(conn):
        conn.join(conn.path.lstrip("/"))
        snowg.send(report_to, ("joined", conn.id))
        while conn.receive() is not None:
            pass

    return reporting(report_to, body)


def opened(srv, path, **kwargs):
    """A raw client at ``path``, and its server-side connection once it has joined."""
    client = RawClient(srv.port, path, **kwargs)
    _, conn = recv(tagged("conn"))
    recv(tagged("joined", conn.id))
    return client, conn


def test_a_full_queue_overflows_at_queue_size_exactly_as_send_does(ws_servers):
    me = snowg.self()
    srv = ws_servers(in_path_room(me), queue_size=4, ping_interval=None, close_timeout=0.5)
    by_room, room_conn = opened(srv, "/r")
    by_send, send_conn = opened(srv, "/s")
    # No yield between the calls: no writer runs, so the queues only fill.
    broadcasts = [ws.broadcast("r", f"m{i}") for i in range(6)]
    sends = [send_conn.send(f"m{i}") for i in range(6)]
    assert broadcasts == [1, 1, 1, 1, 0, 0]
    assert sends == [True, True, True, True, False, False]
    assert room_conn.closed and send_conn.closed
    assert ws.members("r") == [] and ws.members("s") == []
    # Both failed the same way: what was queued is dropped, only the close frame goes.
    for client, conn in ((by_room, room_conn), (by_send, send_conn)):
        op, payload = client.recv_frame()
        assert op == fr.OP_CLOSE and struct.unpack("!H", payload[:2])[0] == ws.CLOSE_OVERFLOW
        assert recv(tagged("gone", conn.id))[2] == ws.CLOSE_OVERFLOW
        client.close()


def test_a_closing_member_is_skipped_and_not_counted(ws_servers):
    me = snowg.self()
    srv = ws_servers(in_path_room(me), ping_interval=None)
    clients = [opened(srv, "/r") for _ in range(3)]
    (c0, conn0), others = clients[0], clients[1:]
    conn0.close(4000, "bye")
    assert conn0.closed and conn0 not in ws.members("r")
    assert ws.broadcast("r", "after") == 2
    assert c0.recv_frame() == (fr.OP_CLOSE, struct.pack("!H", 4000) + b"bye")  # nothing before it
    for client, _conn in others:
        assert client.recv_frame() == (fr.OP_TEXT, b"after")
    for client, _conn in clients:
        client.close()


def test_frames_larger_than_the_socket_buffers_arrive_whole_and_in_order(ws_servers):
    me = snowg.self()
    srv = ws_servers(in_path_room(me), ping_interval=None)
    client, _conn = opened(srv, "/r", rcvbuf=4096)
    big = bytes(range(256)) * 4096  # 1 MiB: the kernel takes part of it, the writer waits for the rest
    messages = [big, "small", big[::-1] + big, "last"]
    for m in messages:
        assert ws.broadcast("r", m) == 1
    got = []
    for _ in messages:
        op, payload = client.recv_frame()
        got.append(payload.decode() if op == fr.OP_TEXT else payload)
    assert got == messages
    client.close()
