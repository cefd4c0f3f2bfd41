"""Who may say what: a peer speaks only for its own processes, and only the node asked may answer.

The node under test is this test process (node A). Node C is a real peer
node (an OS process started by :mod:`snowg.testing`) and the witness that A
keeps serving its peers. Node B is the attacker: a raw TLS session that
completed the real handshake (it holds a certificate of the cluster CA and
the cookie) and then writes frames by hand. Each test names the attack,
asserts its outcome exactly, and that C was served meanwhile.

Where an attack races an honest answer, C is frozen (SIGSTOP) so the forged
frame surely arrives first, and B's frames are followed by a marker message
to this process on the same session: frames are dispatched in order, so once
the marker is here the forged frame has been handled.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any, List, Tuple

import gevent
import pytest
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.server import StreamServer

import snowg
from snowg import Pid, Ref
from snowg._core.process import local_process
from snowg.cluster import _global, _nodestate
from snowg.cluster._frames import (
    DEMONITOR,
    EXIT2,
    LINK,
    MONITOR,
    MONITOR_EXIT,
    PEER_LIST,
    SEND,
    SPAWN_REPLY,
    TICK,
)
from snowg.cluster._framing import FrameDecoder, encode_frame
from snowg.testing import wait_for

import authfuncs as af
from support import log_lines, no_message, raw_session, recv, tagged, wait_for_stop

pytestmark = pytest.mark.timeout(120)

MODS = ["authfuncs", "support"]
CREATION = 4242
_serial = itertools.count(1)


# ------------------------------------------------------------------ node B


class RawPeer:
    """Node B: the real TLS and cookie handshake, then frames written by hand.

    It reads everything the node sends (so its session never backs up), sends
    a tick every 0.25 s (so it is never declared down), and answers the
    global lock requests the node sends it, granting them, as an honest node would.
    """

    def __init__(self, config: Any, node: Any) -> None:
        self.name = f"zzraw{next(_serial)}-{os.getpid()}@127.0.0.1"
        self.sock, hs = raw_session(config, node.port, self.name, CREATION, node.name)
        self.closed = Event()
        self.lock_requests: List[Tuple[Any, ...]] = []
        self._wlock = Semaphore()
        self._decoder = FrameDecoder()
        self._handle(self._decoder.feed(hs.trailing_data))
        self._glets = [gevent.spawn(self._reader), gevent.spawn(self._ticker)]
        assert wait_for(lambda: self.name in snowg.nodes(), timeout=10)

    def pid(self, id: int) -> Pid:
        return Pid(self.name, id, CREATION)

    def ref(self, id: int) -> Ref:
        return Ref(self.name, id, CREATION)

    def send(self, *frames: Any) -> None:
        data = b"".join(encode_frame(list(f)) for f in frames)
        with self._wlock:
            self.sock.sendall(data)

    def sync(self) -> None:
        """Return once the node has dispatched every frame sent before (a marker comes back)."""
        n = next(_serial)
        self.send([SEND, snowg.self(), ("marker", n)])
        recv(tagged("marker", n))

    def close(self) -> None:
        for g in self._glets:
            g.kill()
        self.sock.close()

    def _handle(self, frames: List[Any]) -> None:
        for f in frames:
            if f[0] == _global.GLOBAL_LOCK:
                _tag, _name, req, owner = f
                self.lock_requests.append(tuple(f))
                self.send([_global.GLOBAL_LOCK_REPLY, req, owner, True])

    def _reader(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self._handle(self._decoder.feed(data))
        except OSError:
            pass
        finally:
            self.closed.set()

    def _ticker(self) -> None:
        while True:
            try:
                self.send([TICK])
            except OSError:
                return
            gevent.sleep(0.25)


@pytest.fixture
def cnode(peers):
    """Node C: a real peer, and the witness that A keeps serving its peers."""
    return peers.start(modules=MODS)


@pytest.fixture
def attacker(snowg_cluster_config, snowg_node):
    b = RawPeer(snowg_cluster_config, snowg_node)
    yield b
    b.close()


def logged(caplog, *parts: str) -> List[str]:
    return [line for line in log_lines(caplog) if all(p in line for p in parts)]


def refusals(caplog, peer: str, kind: str) -> Tuple[int, int]:
    """(lines logging one refusal of ``kind`` from ``peer`` in full, refusals counted in summaries)."""
    full = len(logged(caplog, repr(peer), f"sent {kind}:"))
    summed = 0
    for line in logged(caplog, repr(peer), f" more {kind} frames"):
        m = re.search(r"sent (\d+) more", line)
        assert m is not None, line
        summed += int(m.group(1))
    return full, summed


def served(c) -> None:
    """C is still connected to A and A answers it."""
    assert c.name in snowg.nodes()
    assert c.rpc(af.give, "still") == ("given", c.name, "still")


def wait_closed(b: RawPeer) -> None:
    assert b.closed.wait(10), "the node did not close B's session"
    assert wait_for(lambda: b.name not in snowg.nodes(), timeout=10)


# ------------------------------------------------ replies from the wrong node


def test_monitor_exit_for_a_monitor_on_another_node_is_dropped(cnode, attacker, log) -> None:
    """Attack: B sends MONITOR_EXIT (a Down) for the monitor an rpc.call holds on its runner on C,
    with a forged result, before C answers. The call returns C's result, 10 times out of 10."""
    c, b, me = cnode, attacker, snowg.self()
    node_a = snowg.node()

    def caller() -> None:
        snowg.send(me, ("ref", snowg.make_ref()))  # what B guesses from: refs are sequential
        try:
            snowg.send(me, ("result", snowg.rpc.call(c.name, af.started_then_go, me, timeout=10)))
        except Exception as exc:  # noqa: BLE001 - reported to the test
            snowg.send(me, ("result", ("raised", repr(exc))))

    for _ in range(10):
        p = snowg.spawn(caller)
        r = recv(tagged("ref"))[1]
        runner = recv(tagged("started"))[1]  # after the spawn reply: the monitor is in place
        # The call's tag is an int from a counter (no ref): its request ref is the next ref.
        tag, req = 0, Ref(node_a, r.id + 1, r.creation)
        proc = local_process(p)
        assert proc is not None and proc.monitors is not None and proc.monitors.get(req) == runner  # guessed right
        b.send([MONITOR_EXIT, runner, p, req, (tag, "ok", "forged by B")])
        b.sync()
        assert proc.monitors.get(req) == runner  # the forged Down changed nothing
        snowg.send(runner, "go")
        assert recv(tagged("result")) == ("result", ("from", c.name))
    served(c)
    assert len(logged(log, repr(b.name), "sent MONITOR_EXIT:", repr(c.name))) == 1  # the first one, in full
    b.close()
    # The other nine summarised (at most every 10 s, and when B goes), not logged one by one.
    assert wait_for(lambda: refusals(log, b.name, "MONITOR_EXIT") == (1, 9), timeout=10)


def test_spawn_reply_from_another_node_is_dropped(cnode, attacker, log) -> None:
    """Attack: B answers the spawn request an rpc.call sent to C (a refusal, or a pid of B's)
    while C is frozen. The call returns C's result, 10 times out of 10."""
    c, b, me = cnode, attacker, snowg.self()
    node_a = snowg.node()
    st = _nodestate.current
    assert st is not None

    def caller(i: int) -> None:
        snowg.send(me, ("ref", snowg.make_ref()))
        try:
            snowg.send(me, ("result", snowg.rpc.call(c.name, af.give, i, timeout=30)))
        except Exception as exc:  # noqa: BLE001
            snowg.send(me, ("result", ("raised", repr(exc))))

    for i in range(10):
        c.freeze()
        try:
            p = snowg.spawn(caller, i)
            r = recv(tagged("ref"))[1]
            req = Ref(node_a, r.id + 1, r.creation)  # the call's tag is an int: its request ref is the next ref
            b.sync()  # p ran on meanwhile: its request to C is sent
            assert st.spawn_pending.get(req) == (p, ("monitor", "quiet"), c.name)
            forged = "not spawnable, says B" if i % 2 else b.pid(1)
            b.send([SPAWN_REPLY, req, p, forged])
            b.sync()
            assert st.spawn_pending.get(req) == (p, ("monitor", "quiet"), c.name)  # still waiting for C
        finally:
            c.thaw()
        assert recv(tagged("result")) == ("result", ("given", c.name, i))
    served(c)
    assert len(logged(log, repr(b.name), "sent SPAWN_REPLY:", repr(c.name))) == 1
    b.close()
    assert wait_for(lambda: refusals(log, b.name, "SPAWN_REPLY") == (1, 9), timeout=10)


def test_global_lock_reply_from_another_node_is_dropped(cnode, attacker, log) -> None:
    """Attack: B grants the lock request a register_global sent to C while C is frozen (C has not
    answered). The registration waits for C's own answer, 10 times out of 10."""
    c, b, me = cnode, attacker, snowg.self()
    node_a = snowg.node()
    assert sorted([c.name, node_a, b.name]) == [c.name, node_a, b.name]  # C is asked first, B last

    def registrar(name: str) -> None:
        snowg.send(me, ("ref", snowg.make_ref()))
        snowg.send(me, ("result", snowg.register_global(name, snowg.self())))
        snowg.receive(lambda m: m == "stop")

    for i in range(10):
        name = f"lockreply-{os.getpid()}-{i}"
        c.freeze()
        try:
            p = snowg.spawn(registrar, name)
            r = recv(tagged("ref"))[1]
            req = Ref(node_a, r.id + 1, r.creation)
            b.sync()
            assert _global._waiting.get(req) == (p, c.name)
            b.send([_global.GLOBAL_LOCK_REPLY, req, p, True])
            b.sync()
            assert _global._waiting.get(req) == (p, c.name)  # still waiting for C
            assert [f for f in b.lock_requests if f[1] == name] == []  # B is not asked before C answered
        finally:
            c.thaw()
        assert recv(tagged("result")) == ("result", True)
        assert c.rpc(af.whereis_global, name) == p
        assert len([f for f in b.lock_requests if f[1] == name]) == 1
        snowg.send(p, "stop")
    served(c)
    assert len(logged(log, repr(b.name), "sent GLOBAL_LOCK_REPLY:", repr(c.name))) == 1
    b.close()
    assert wait_for(lambda: refusals(log, b.name, "GLOBAL_LOCK_REPLY") == (1, 9), timeout=10)


# ------------------------------------------------------------ global names


def test_global_names_of_others_cannot_be_taken_removed_or_locked(cnode, attacker, log) -> None:
    """Attack: B registers names held by processes of A and of C to a pid of an invented node
    (whose name sorts first, so it would win) and to its own pid, unregisters them, locks a free
    name for a process of another node, unlocks a lock held by A, and sends a second GLOBAL_SYNC.
    Every holder lives, every name stays, and a legitimate register_global succeeds at once."""
    c, b, me = cnode, attacker, snowg.self()
    node_a = snowg.node()
    tag = f"{os.getpid()}-{next(_serial)}"
    on_a, on_c, free, free2 = (f"{x}-{tag}" for x in ("on-a", "on-c", "free", "free2"))
    holder_a = snowg.spawn(wait_for_stop)
    assert snowg.register_global(on_a, holder_a) is True
    snowg.spawn(af.global_holder, me, on_c, node=c.name)
    _h, _n, ok, holder_c = recv(tagged("holding", on_c))
    assert ok is True
    ref_a, ref_c = snowg.monitor(holder_a), snowg.monitor(holder_c)
    invented = Pid("aaa@invented", 1, 1)
    a_lock_req = snowg.make_ref()
    assert _global._local_lock(free2, a_lock_req, holder_a)  # a lock A's process holds here
    b.send(
        [_global.GLOBAL_SYNC, {}],  # its first: the names B's processes hold (none)
        [_global.GLOBAL_REGISTER, on_a, invented],
        [_global.GLOBAL_REGISTER, on_c, invented],
        [_global.GLOBAL_REGISTER, on_a, b.pid(7)],
        [_global.GLOBAL_REGISTER, free, invented],
        [_global.GLOBAL_UNREGISTER, on_a, holder_a],
        [_global.GLOBAL_UNREGISTER, on_c, holder_c],
        [_global.GLOBAL_LOCK, free, b.ref(1), holder_a],
        [_global.GLOBAL_LOCK, free, b.ref(2), holder_c],
        [_global.GLOBAL_UNLOCK, free2, a_lock_req],
        [_global.GLOBAL_SYNC, {on_a: b.pid(7), on_c: b.pid(7)}],  # a second one in the session
        [_global.GLOBAL_SYNC, {free: invented}],
    )
    b.sync()
    assert snowg.whereis_global(on_a) == holder_a
    assert snowg.whereis_global(on_c) == holder_c
    assert snowg.whereis_global(free) is None
    assert free not in _global._locks
    assert _global._locks[free2][:2] == (a_lock_req, holder_a)
    _global._local_unlock(free2, a_lock_req)
    no_message(lambda m: type(m) is snowg.Down and m.ref in (ref_a, ref_c))  # both holders live
    assert snowg.is_alive(holder_a)
    assert c.rpc(af.alive, holder_c) is True
    assert c.rpc(af.whereis_global, on_a) == holder_a
    assert c.rpc(af.whereis_global, on_c) == holder_c
    # A legitimate registration of the name B tried to lock: granted on the first attempt.
    asked_before = len(b.lock_requests)
    newcomer = snowg.spawn(wait_for_stop)
    assert snowg.register_global(free, newcomer) is True
    assert [f[1] for f in b.lock_requests[asked_before:]] == [free]  # one attempt, no retry
    assert c.rpc(af.whereis_global, free) == newcomer
    served(c)
    for kind in ("GLOBAL_REGISTER", "GLOBAL_UNREGISTER", "GLOBAL_LOCK", "GLOBAL_UNLOCK", "GLOBAL_SYNC"):
        assert len(logged(log, repr(b.name), f"sent {kind}:")) == 1, kind
    # B's own names are B's to give: its own process, registered under its lock or not, is accepted.
    mine = f"mine-{tag}"
    b.send([_global.GLOBAL_REGISTER, mine, b.pid(8)])
    b.sync()
    assert snowg.whereis_global(mine) == b.pid(8)
    b.send([_global.GLOBAL_UNREGISTER, mine, b.pid(8)])
    b.sync()
    assert snowg.whereis_global(mine) is None
    for pid in (holder_a, newcomer):
        snowg.send(pid, "stop")
    snowg.send(holder_c, "stop")
    assert snowg.node() == node_a


# ------------------------------------------------------------- peer lists


class Listener:
    """A TCP port that accepts and holds connections (a dial to it hangs in TLS) or drops them.

    It counts the connections accepted, and the most open at once (a held one
    is open until the dialler gives up or :meth:`release` closes it).
    """

    def __init__(self) -> None:
        self.held: List[Any] = []
        self.accepted = 0
        self.open_now = 0
        self.max_open = 0
        self.hold = True
        self.eighth = Event()
        self.all_done = Event()
        self.expected = -1
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, _addr: Any) -> None:
        self.accepted += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        if self.accepted == 8:
            self.eighth.set()
        if self.accepted == self.expected:
            self.all_done.set()
        try:
            if self.hold:
                self.held.append(sock)
                while sock.recv(4096):  # until the dialler gives up or release() closes it
                    pass
        except OSError:
            pass
        finally:
            self.open_now -= 1
            sock.close()

    def release(self) -> None:
        self.hold = False
        for s in self.held:
            s.close()
        self.held.clear()

    def stop(self) -> None:
        self.release()
        self.server.stop(timeout=1)


def test_peer_list_is_checked_bounded_and_dialled_eight_at_a_time(cnode, snowg_cluster_config, snowg_node, log) -> None:
    """Attack: B sends a PEER_LIST of 3,000 entries, then one of 50 nodes (and invalid entries)
    all at an address B chose. The first closes B's session and opens no socket; the second opens
    at most 8 connections at once, once per name, never to names connected or to this node."""
    c = cnode
    lis = Listener()
    try:
        target = f"127.0.0.1:{lis.port}"
        b = RawPeer(snowg_cluster_config, snowg_node)
        b.send([PEER_LIST, [[f"ghost{i}-{lis.port}@127.0.0.1", target] for i in range(3000)]])
        wait_closed(b)
        assert logged(log, b.name, "PEER_LIST of 3000 nodes")
        served(c)
        assert lis.accepted == 0

        b2 = RawPeer(snowg_cluster_config, snowg_node)
        try:
            names = [f"ghost{i}-{lis.port}@127.0.0.1" for i in range(50)]
            lis.expected = len(names)
            entries = [[n, target] for n in names]
            entries += [[n, target] for n in names[:10]]  # repeated: dialled once
            entries += [[c.name, target], [snowg.node(), target]]  # connected, and this node
            entries += [["evil\n@127.0.0.1", target], ["bad@x", "127.0.0.1:99999"], ["bad2@x", "no-port"]]
            b2.send([PEER_LIST, entries])
            assert lis.eighth.wait(20)
            b2.sync()
            served(c)
            assert lis.max_open == 8  # the dialers all wait: no 9th at once
            lis.release()  # the 8 dials fail; the next ones go through, one per name
            assert lis.all_done.wait(60)
            b2.sync()
            served(c)
            assert lis.accepted == 50 and lis.max_open == 8  # one per name, never more than 8 at once
            assert len(logged(log, repr(b2.name), "3 invalid entries")) == 1
        finally:
            b2.close()
    finally:
        lis.stop()


# ------------------------------------------------ signals for others' objects


def test_signals_claiming_another_nodes_process_close_the_session(cnode, attacker, log) -> None:
    """Attack: B sends LINK and EXIT2 claiming to come from a process of C. B's session is closed
    as a protocol error; the target is not linked, and lives."""
    c, b = cnode, attacker
    target = snowg.spawn(wait_for_stop)
    ref = snowg.monitor(target)
    c_pid = Pid(c.name, 1, 1)
    b.send([LINK, c_pid, target], [EXIT2, c_pid, target, "kill"])
    wait_closed(b)
    assert logged(log, b.name, "claiming to come from")
    info = snowg.process_info(target)
    assert info is not None and info["links"] == []
    no_message(lambda m: type(m) is snowg.Down and m.ref == ref)
    served(c)
    snowg.send(target, "stop")


def test_demonitor_flood_is_cheap_and_removes_only_the_senders_monitors(cnode, attacker, log) -> None:
    """Attack: with 3,000 local processes, B sends 20,000 DEMONITOR frames for unknown refs (by pid,
    of live and unknown processes, and by name), and DEMONITORs of C's monitor under its own pid.
    Each is O(1) (none scans the processes); C, watching through it all, is never declared down;
    C's monitor stays; B's own DEMONITOR still works."""
    c, b, me = cnode, attacker, snowg.self()
    node_a = snowg.node()
    crowd = [snowg.spawn(wait_for_stop) for _ in range(3000)]
    target = snowg.spawn(wait_for_stop)
    snowg.register(f"flood-target-{os.getpid()}", target)
    snowg.monitor_node(c.name)
    snowg.spawn(af.monitor_for, me, target, node=c.name)
    c_ref = recv(tagged("monitoring"))[1]
    b_ref = b.ref(1)
    b.send([MONITOR, b.pid(1), target, b_ref])
    b.sync()
    info = snowg.process_info(target)
    assert info is not None and sorted(p.node for p in info["monitored_by"]) == sorted([c.name, b.name])
    batch: List[Any] = []
    for i in range(20_000):
        kind = i % 4
        if kind == 0:
            batch.append([DEMONITOR, b.pid(1), target, b.ref(10_000 + i)])
        elif kind == 1:
            batch.append([DEMONITOR, b.pid(1), Pid(node_a, 10_000_000 + i, 1), b.ref(10_000 + i)])
        elif kind == 2:
            batch.append([DEMONITOR, b.pid(1), f"no-such-name-{i}", b.ref(10_000 + i)])
        else:
            batch.append([DEMONITOR, b.pid(2), target, c_ref])  # C's monitor, under B's pid
        if len(batch) == 2000:
            b.send(*batch)
            batch = []
    b.sync()
    served(c)
    no_message(lambda m: type(m) is snowg.NodeDown)
    info = snowg.process_info(target)
    assert info is not None and sorted(p.node for p in info["monitored_by"]) == sorted([c.name, b.name])
    b.send([DEMONITOR, b.pid(1), target, b_ref])
    b.sync()
    info = snowg.process_info(target)
    assert info is not None and [p.node for p in info["monitored_by"]] == [c.name]
    snowg.exit(target, "kill")
    assert recv(tagged("down seen"))[1].reason == "killed"  # C's monitor fired
    for pid in crowd:
        snowg.exit(pid, "kill")


def test_link_flood_with_equal_id_pids_is_cheap(cnode, attacker, log) -> None:
    """Attack: B sends 20,000 LINK frames to one process, from pids of its own that all have the
    same id (and differ in creation), which would all collide in a hash on the id. Each costs
    O(1): C is served and never declared down; the process holds exactly the 20,000 links."""
    c, b = cnode, attacker
    target = snowg.spawn(wait_for_stop)
    snowg.monitor_node(c.name)
    frames = [[LINK, Pid(b.name, 7, creation), target] for creation in range(1, 20_001)]
    for i in range(0, len(frames), 2000):
        b.send(*frames[i : i + 2000])
    b.sync()
    served(c)
    no_message(lambda m: type(m) is snowg.NodeDown)
    info = snowg.process_info(target)
    assert info is not None and len(info["links"]) == 20_000
    snowg.exit(target, "kill")
