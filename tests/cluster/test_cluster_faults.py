"""Faults against real node OS processes: kill -9, SIGSTOP, a cut
connection through a loopback proxy, and a node restarted under the same name.

semantics rules 8, 10, 24-26.
"""

from __future__ import annotations

import time

import gevent
import pytest
from gevent import socket as gsocket
from gevent.server import StreamServer

import snowg
from snowg import Down, Exit, NodeDown, NodeUp, Pid
from snowg.cluster._connect import session_for
from snowg.testing import wait_for

import distfuncs as df
from support import forward_until_stop, recv, wait_for_stop

pytest_plugins = ["snowg.testing"]

NO_REFS = {"links": 0, "monitors": 0, "monitored_by": 0}


def start_waiter(peer) -> Pid:
    return snowg.spawn(wait_for_stop, node=peer.name)


def _local_trapper(parent: Pid) -> None:
    snowg.trap_exit(True)
    snowg.send(parent, ("ready", snowg.self()))
    forward_until_stop(parent, "local")


def set_up_both_ways(peer, me: Pid):
    """Links and monitors in both directions between this node and ``peer``.

    Returns (local process, [remote processes linked/monitoring it]).
    """
    local = snowg.spawn(_local_trapper, me)
    recv(lambda m: m == ("ready", local))
    remote_linker = snowg.spawn(df.linker, me, local, False, node=peer.name)
    recv(lambda m: m == ("linked", remote_linker))
    remote_monitorer = snowg.spawn(df.monitorer, me, local, node=peer.name)
    recv(lambda m: type(m) is tuple and m[:2] == ("monitoring", remote_monitorer))
    info = snowg.process_info(local)
    assert info["links"] == [remote_linker] and info["monitored_by"] == [remote_monitorer]
    return local, remote_linker, remote_monitorer


@pytest.mark.timeout(60)
def test_kill_9_breaks_links_then_monitors_then_node_monitors(peers, trapping_me) -> None:
    # semantics rules 8, 10, 26, all within 1 s of the kill.
    peer = peers.start(modules=["distfuncs"])
    other = peers.start(modules=["distfuncs"])
    w1, w2 = start_waiter(peer), start_waiter(peer)
    snowg.link(w1)
    ref = snowg.monitor(w2)
    snowg.monitor_node(peer.name)

    v, vref = snowg.spawn_monitor(df.linked_waiter, w1, trapping_me)
    assert recv() == "linked"
    local, _linker, _monitorer = set_up_both_ways(peer, trapping_me)
    assert wait_for(lambda: peer.rpc(df.info, w1)["links"] == sorted([trapping_me, v], key=repr))

    t0 = time.monotonic()
    peer.kill()
    assert recv(timeout=1.0) == Exit(w1, "noconnection")
    assert recv(timeout=1.0) == Down(ref, w2, "noconnection")
    nd = recv(timeout=1.0)
    assert type(nd) is NodeDown and nd.node == peer.name
    # The non-trapping process linked to w1 ended with 'noconnection' (it ends
    # when it next runs, so its Down may come after NodeDown).
    assert recv(lambda m: type(m) is Down and m.ref == vref, timeout=1.0) == Down(vref, v, "noconnection")
    assert time.monotonic() - t0 < 1.0
    assert peer.name not in snowg.nodes()
    # Our local process linked from and monitored by the dead node: it got the
    # exit (it traps) and holds nothing that names that node any more.
    assert recv(lambda m: type(m) is tuple and m[0] == "local") == ("local", local, Exit(_linker, "noconnection"))
    assert df.refs_to(peer.name) == NO_REFS
    # The rest of the cluster is unaffected.
    assert other.rpc(df.ping, 1) == ("pong", other.name, 1)


@pytest.mark.timeout(60)
def test_sigstop_is_detected_by_ticks_and_reconnects_cleanly(peers, snowg_cluster_config, trapping_me) -> None:
    tick = snowg_cluster_config.tick
    peer = peers.start(modules=["distfuncs"])
    watcher = snowg.spawn(df.watch_nodes, trapping_me, node=peer.name)
    recv(lambda m: m == ("watching", watcher))
    w = start_waiter(peer)
    snowg.link(w)
    ref = snowg.monitor(w)
    snowg.monitor_node(peer.name)
    local, linker, monitorer = set_up_both_ways(peer, trapping_me)

    t0 = time.monotonic()
    peer.freeze()
    try:
        assert recv(timeout=4 * tick + 3) == Exit(w, "noconnection")
        elapsed = time.monotonic() - t0
        assert recv(timeout=1) == Down(ref, w, "noconnection")
        nd = recv(timeout=1)
        assert type(nd) is NodeDown and nd.node == peer.name
        assert elapsed <= 4 * tick + 1.0, elapsed
        assert df.refs_to(peer.name) == NO_REFS
        assert snowg.process_info(local)["links"] == []
        assert snowg.process_info(local)["monitored_by"] == []
    finally:
        peer.thaw()

    assert snowg.connect(peer.target) is True
    assert peer.name in snowg.nodes()
    assert peer.rpc(df.ping, "back") == ("pong", peer.name, "back")
    # The peer's side: it saw us go down, and holds no link or monitor of ours.
    events = peer.rpc(df.get_events)
    assert any(type(e) is NodeDown and e.node == snowg.node() for e in events), events
    assert events[-1] == NodeUp(snowg.node())
    assert peer.rpc(df.peer_refs_to, snowg.node()) == NO_REFS
    assert peer.rpc(df.alive, linker) is False  # it did not trap: 'noconnection' ended it
    assert peer.rpc(df.alive, monitorer) is True
    assert peer.rpc(df.alive, w) is False  # linked to us, not trapping: also 'noconnection'
    # Only one session on each side.
    assert list(peer.rpc(df.local_sessions)) == [snowg.node()]
    # New links and monitors work over the new connection.
    w2 = start_waiter(peer)
    snowg.link(w2)
    ref2 = snowg.monitor(w2)
    snowg.exit(w2, "bye")
    assert recv(lambda m: type(m) is Exit) == Exit(w2, "bye")
    assert recv(lambda m: type(m) is Down) == Down(ref2, w2, "bye")
    assert recv() == ("local", local, Exit(linker, "noconnection"))


class Proxy:
    """A loopback TCP proxy to ``port`` that can cut every connection through it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pairs = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def listen_port(self) -> int:
        return self.server.server_port

    def _handle(self, client, _addr) -> None:
        upstream = gsocket.create_connection(("127.0.0.1", self.port))
        self.pairs.append((client, upstream))
        pumps = [gevent.spawn(self._pump, client, upstream), gevent.spawn(self._pump, upstream, client)]
        gevent.joinall(pumps)

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(gsocket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        for a, b in self.pairs:
            for s in (a, b):
                try:
                    s.shutdown(gsocket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.pairs.clear()

    def close(self) -> None:
        self.cut()
        self.server.stop()


@pytest.mark.timeout(60)
def test_a_node_whose_own_loop_was_held_up_does_not_blame_its_peer(peers, snowg_cluster_config, me) -> None:
    """This node's loop blocked for longer than its 4 ticks (a blocking call): the connection stays up.

    What the peer sent meanwhile waits unread in the socket, and the tick
    timer runs before the reader when the loop resumes; the time this node
    could not read is not the peer's silence (semantics rule 25). The peer
    ticks every 2 s, so by its own clock it is still within its window (8 s)
    when this node resumes.
    """
    tick = snowg_cluster_config.tick
    peer = peers.start(modules=["distfuncs"], tick=2.0)
    snowg.monitor_node(peer.name)
    sess = session_for(peer.name)
    assert sess is not None
    assert peer.rpc(df.ping, "before") == ("pong", peer.name, "before")  # both sides just heard each other
    time.sleep(4 * tick + 1.0)  # blocks the hub: no greenlet, timer or reader runs
    assert peer.rpc(df.ping, "after") == ("pong", peer.name, "after")
    assert session_for(peer.name) is sess and not sess.closed
    with pytest.raises(snowg.Timeout):  # the round trip ran the late tick: it found the peer alive
        snowg.receive(lambda m: type(m) is NodeDown, timeout=0)


@pytest.mark.timeout(60)
def test_cut_connection_through_a_proxy(peers, me) -> None:
    peer = peers.start(modules=["distfuncs"], connect=False)
    proxy = Proxy(int(peer.address.rsplit(":", 1)[1]))
    try:
        target = f"{peer.name}:{proxy.listen_port}"
        assert snowg.connect(target) is True
        watcher = snowg.spawn(df.watch_nodes, me, node=peer.name)
        recv(lambda m: m == ("watching", watcher))
        snowg.monitor_node(peer.name)
        sender = snowg.spawn(df.stream_sender, me, node=peer.name)
        got = []

        def take(n: int) -> None:
            for _ in range(n):
                msg = recv(lambda m: type(m) is tuple and m[0] == "s")
                got.append(msg[1])

        take(300)
        proxy.cut()
        nd = recv(lambda m: type(m) is NodeDown)
        assert nd.node == peer.name
        assert peer.name not in snowg.nodes()
        before = len(got)
        # Whatever was in flight may arrive up to the cut (already in our mailbox).
        got.extend(m[1] for m in snowg.flush_messages(lambda m: type(m) is tuple and m[0] == "s"))

        assert snowg.connect(target) is True
        take(300)
        snowg.send(sender, "stop")
        while True:
            msg = recv(lambda m: type(m) is tuple and m[0] in ("s", "done"))
            if msg[0] == "done":
                last = msg[1]
                break
            got.append(msg[1])
        # In order, none twice, the stream resumed after the reconnection.
        assert all(a < b for a, b in zip(got, got[1:])), "a message arrived twice or out of order"
        assert got[-1] == last - 1
        assert len(got) > before + 300
        events = peer.rpc(df.get_events)
        downs = [e for e in events if type(e) is NodeDown]
        assert [d.node for d in downs] == [snowg.node()]
        assert events[-1] == NodeUp(snowg.node())
    finally:
        proxy.close()


@pytest.mark.timeout(60)
def test_restarted_node_has_a_new_creation(peers, trapping_me) -> None:
    peer = peers.start(modules=["distfuncs"])
    name = peer.name
    old = snowg.spawn(df.forwarder, trapping_me, node=name)
    recv(lambda m: m == ("ready", old))
    snowg.monitor_node(name)
    peer.kill()
    assert type(recv()) is NodeDown
    peer2 = peers.start(name, modules=["distfuncs"])
    new = snowg.spawn(df.forwarder, trapping_me, node=name)
    recv(lambda m: m == ("ready", new))
    assert new.creation != old.creation
    # A pid of the earlier run that names a live process's id of the new run.
    stale = Pid(name, new.id, old.creation)
    assert stale != new
    snowg.send(stale, "dropped")
    snowg.exit(stale, "kill")
    snowg.send(new, "marker")
    assert recv() == ("fwd", new, "marker")
    snowg.link(stale)
    assert recv() == Exit(stale, "noproc")
    ref = snowg.monitor(stale)
    assert recv() == Down(ref, stale, "noproc")
    assert peer2.rpc(df.alive, new) is True
    assert peer2.rpc(df.info, new)["links"] == []
    assert peer2.rpc(df.info, new)["monitored_by"] == []
    assert snowg.process_info(trapping_me)["links"] == []
    assert df.refs_to(name) == NO_REFS  # (but the process-group scopes', semantics rule 37)
