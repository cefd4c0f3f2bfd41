"""ErlangConnection over a real socket pair on 127.0.0.1, with the test playing the BEAM node.

Each test connects two gevent sockets (plain TCP, and TLS with the session's
certificates where it says ``wire``), gives one to an
:class:`~snowg.erlang._connection.ErlangConnection` and plays the BEAM peer
``beam@127.0.0.1`` on the other with part A's ``Encoder``/``parse`` and a
``TermMap`` of its own. What the peer sends must have its exact effect on
real snowg processes; what the connection's methods send must be the exact
packet. Nothing sleeps to synchronise: tests wait for messages, packets and
states, each bounded in time.

A few tests install a small forwarding router (:class:`_Forward`) so that
``_core``'s own outgoing signals (a process's death reaching a remote
monitor, ``snowg.monitor`` of a remote pid) reach the connection; the rest
call the ForeignPeer methods directly.
"""

from __future__ import annotations

import logging
import socket as stdsocket
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import gevent
import pytest
from gevent import socket
from gevent.event import Event
from support import T, recv, wait_down, wait_until

import snowg
from snowg import cluster
from snowg._core import remote as _remote
from snowg._errors import SpawnError
from snowg.erlang import _control, _flags
from snowg.erlang._connection import GROUP_LEADER_NAME, ErlangConnection
from snowg.erlang._dist_framing import CONNECTED_LENGTH, TICK, Deframer
from snowg.erlang._mapping import TermMap
from snowg.erlang._types import ImproperList

TIME_LIMIT = 60

ME = "snowg@127.0.0.1"
MY_CREATION = 0x5EED
PEER = "beam@127.0.0.1"
PEER_CREATION = 0x12345678
Atom = snowg.Atom


def peer_pid(n: int = 1, creation: int = PEER_CREATION) -> snowg.Pid:
    return snowg.Pid(PEER, n, creation)


def peer_ref(n: int = 1) -> snowg.Ref:
    return snowg.Ref(PEER, n, PEER_CREATION)


# ---------------------------------------------------------------- the peer


class FakeBeam:
    """The BEAM side of the socket: writes frames made by the Encoder, reads and parses our packets."""

    def __init__(self, sock: Any, our_flags: int = _flags.OFFERED) -> None:
        self.sock = sock
        self.tm = TermMap(PEER, PEER_CREATION)
        self.enc = _control.Encoder(self.tm, our_flags)
        self.deframer = Deframer(CONNECTED_LENGTH, 1 << 30)
        self.ticks = 0

    def write(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def packet(self, timeout: float = T) -> Optional[bytes]:
        """The next packet (``b""`` for a tick); None when the connection ended."""
        with gevent.Timeout(timeout, AssertionError("no packet from the connection in time")):
            while True:
                packet = self.deframer.next_message()
                if packet is not None:
                    return packet
                data = self.sock.recv(1 << 16)
                if not data:
                    return None
                self.deframer.receive_data(data)

    def event(self, timeout: float = T) -> Any:
        """The next control message, parsed (ticks counted and skipped)."""
        while True:
            packet = self.packet(timeout)
            assert packet is not None, "the connection ended"
            if packet:
                return _control.parse(packet, self.tm)
            self.ticks += 1

    def at_eof(self, timeout: float = T) -> List[Any]:
        """Everything sent until the end of the stream (parsed; ticks skipped)."""
        events = []
        while True:
            packet = self.packet(timeout)
            if packet is None:
                return events
            if packet:
                events.append(_control.parse(packet, self.tm))


class Closed:
    """Records ``on_closed`` calls."""

    def __init__(self) -> None:
        self.calls: List[Tuple[ErlangConnection, str]] = []
        self.event = Event()

    def __call__(self, conn: ErlangConnection, reason: str) -> None:
        self.calls.append((conn, reason))
        self.event.set()


class Pair:
    """One connection and its fake peer."""

    def __init__(self, conn: ErlangConnection, beam: FakeBeam, closed: Closed, spawn_requests: List[Any]) -> None:
        self.conn = conn
        self.beam = beam
        self.closed = closed
        self.spawn_requests = spawn_requests


@pytest.fixture
def named_node() -> Iterator[None]:
    """This process's pids named ``ME`` (creation ``MY_CREATION``), as on a running node; restored after."""
    old = (_remote.local_node(), snowg._core.runtime.rt.creation)
    _remote.rename_local_pids(ME, MY_CREATION)
    try:
        yield
    finally:
        _remote.rename_local_pids(*old)


@pytest.fixture(params=["tcp", "tls"])
def wire(request: Any) -> str:
    return str(request.param)


def _socket_pair(wire: str, config: Any, bufsize: Optional[int]) -> Tuple[Any, Any]:
    listener = socket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    if bufsize:
        for s in (listener, client):
            s.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, bufsize)
            s.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, bufsize)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    if wire == "tls":
        cfg = cluster.load_tls(config.certs, "node", default_dir=None)
        accepting = gevent.spawn(cluster.server_context(cfg).wrap_socket, server, server_side=True)
        client = cluster.client_context(cfg).wrap_socket(client, server_side=False)
        server = accepting.get(timeout=T)
    return server, client


@pytest.fixture
def pairs(named_node: None, snowg_cluster_config: Any) -> Iterator[Callable[..., Pair]]:
    """``pairs(wire="tcp", **options)``: a started connection and its peer; all closed after the test."""
    made: List[Pair] = []
    socks: List[Any] = []

    def make(
        wire: str = "tcp",
        *,
        peer_flags: int = _flags.OFFERED,
        bufsize: Optional[int] = None,
        on_spawn_request: Optional[Callable[[ErlangConnection, Any], None]] = None,
        **options: Any,
    ) -> Pair:
        ours, theirs = _socket_pair(wire, snowg_cluster_config, bufsize)
        socks.extend((ours, theirs))
        closed = Closed()
        requests: List[Any] = []

        def spawn_request(conn: ErlangConnection, req: Any) -> None:
            requests.append(req)
            if on_spawn_request is not None:
                on_spawn_request(conn, req)

        conn = ErlangConnection(
            ours,
            node=PEER,
            peer_creation=PEER_CREATION,
            peer_flags=peer_flags,
            tm=TermMap(ME, MY_CREATION),
            outgoing=False,
            on_closed=closed,
            on_spawn_request=spawn_request,
            **options,
        )
        conn.start()
        pair = Pair(conn, FakeBeam(theirs), closed, requests)
        made.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in made:
            pair.conn.close("test_over")
        for s in socks:
            s.close()


class _Forward(_remote.RemoteRouter):
    """A router sending every remote signal to one connection (the cluster seam's job, in the tests)."""

    def __init__(self, conn: ErlangConnection) -> None:
        self.conn = conn

    def send(self, pid: Any, msg: Any) -> None:
        self.conn.send(pid, msg)

    def send_name(self, name: str, node: str, msg: Any, from_pid: Any) -> None:
        self.conn.send_name(name, msg, from_pid)

    def link(self, from_pid: Any, to_pid: Any) -> None:
        self.conn.link(from_pid, to_pid)

    def unlink(self, from_pid: Any, to_pid: Any) -> None:
        self.conn.unlink(from_pid, to_pid)

    def exit_link(self, from_pid: Any, to_pid: Any, reason: Any) -> None:
        self.conn.exit_link(from_pid, to_pid, reason)

    def exit2(self, from_pid: Any, to_pid: Any, reason: Any) -> None:
        self.conn.exit2(from_pid, to_pid, reason)

    def monitor(self, from_pid: Any, target: Any, ref: Any) -> None:
        self.conn.monitor(from_pid, target, ref)

    def demonitor(self, from_pid: Any, target: Any, ref: Any) -> None:
        self.conn.demonitor(from_pid, target, ref)

    def monitor_exit(self, target: Any, watcher: Any, ref: Any, reason: Any) -> None:
        self.conn.monitor_exit(target, watcher, ref, reason)

    def spawn(self, node: str, fn: Any, args: Any, kwargs: Dict[str, Any], opts: Any) -> Any:
        return self.conn.spawn(fn, args, kwargs, opts)


@pytest.fixture
def forward() -> Iterator[Callable[[ErlangConnection], None]]:
    """``forward(conn)``: route remote signals to ``conn`` for the test; the node's own router is back after."""
    previous = snowg._core.runtime.rt.router

    def install(conn: ErlangConnection) -> None:
        _remote.install_router(_Forward(conn))

    try:
        yield install
    finally:
        _remote.install_router(previous)


def _waiter(parent: snowg.Pid, tag: str = "got") -> None:
    """A process that forwards its first message to ``parent`` as ``(tag, msg)``, trapping exits."""
    snowg.trap_exit(True)
    snowg.send(parent, (tag, snowg.receive()))


def _blocked() -> None:
    snowg.receive(lambda m: m == "never")


def _exit_with(reason: Any) -> None:
    snowg.receive(lambda m: m == "go")
    raise snowg.ProcessExit(reason)


# ------------------------------------------------------ incoming messages


def test_send_and_reg_send_deliver_the_exact_term(pairs: Callable[..., Pair], wire: str, me: snowg.Pid) -> None:
    pair = pairs(wire)
    beam = pair.beam
    term = (Atom("hello"), 1, -(2**70), 1.5, "t\u00e9xt", b"\xff\x00", [1, [2]], {Atom("k"): (me,)}, True, None)
    snowg.register("reg", me)
    beam.write(
        beam.enc.send(peer_pid(), me, ("pid", term)),
        beam.enc.reg_send(peer_pid(), "nobody_has_this", "dropped"),
        beam.enc.send(peer_pid(), peer_pid(2), "not ours: dropped"),
        beam.enc.reg_send(peer_pid(), "reg", ("name", term)),
    )
    got = recv()
    assert got == ("pid", term)
    assert type(got[1][0]) is Atom and got[1][-1] is None and type(got[1][4]) is str and type(got[1][5]) is bytes
    assert recv() == ("name", term)
    assert not pair.conn.closed


def test_send_from_the_node_itself_and_to_a_dead_pid(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    pair.beam.write(pair.beam.enc.send(peer_pid(), dead, "lost"), pair.beam.enc.send(None, me, "from pid 0"))
    assert recv() == "from pid 0"


def test_alias_send_is_dropped_and_the_connection_goes_on(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    pair.beam.write(
        pair.beam.enc.alias_send(peer_pid(), snowg.make_ref(), "to an alias"), pair.beam.enc.send(None, me, 2)
    )
    assert recv() == 2


# ------------------------------------------------------------------ links


def test_link_then_exit_reaches_the_linked_process_with_the_exact_reason(
    pairs: Callable[..., Pair], wire: str, trapping_me: snowg.Pid
) -> None:
    pair = pairs(wire)
    beam = pair.beam
    victim = snowg.spawn(_blocked)
    beam.write(
        beam.enc.link(peer_pid(), trapping_me),
        beam.enc.link(peer_pid(2), victim),
        beam.enc.send(None, trapping_me, "linked"),
    )
    assert recv() == "linked"
    assert peer_pid() in snowg.process_info(trapping_me)["links"]
    assert snowg.process_info(victim)["links"] == [peer_pid(2)]
    ref = snowg.monitor(victim)
    beam.write(
        beam.enc.exit(peer_pid(), trapping_me, ("shutdown", "bye")), beam.enc.exit(peer_pid(2), victim, Atom("boom"))
    )
    exit_msg = recv(lambda m: type(m) is snowg.Exit)
    assert exit_msg == snowg.Exit(peer_pid(), (Atom("shutdown"), "bye"))
    assert type(exit_msg.reason[0]) is Atom and type(exit_msg.reason[1]) is str
    down = recv(lambda m: type(m) is snowg.Down and m.ref == ref)
    assert down.reason == "boom" and type(down.reason) is Atom
    assert peer_pid() not in snowg.process_info(trapping_me)["links"]


def test_link_to_a_dead_process_is_answered_with_a_noproc_exit(pairs: Callable[..., Pair]) -> None:
    pair = pairs()
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    pair.beam.write(pair.beam.enc.link(peer_pid(), dead))
    ev = pair.beam.event()
    assert ev == _control.ExitSignal(dead, peer_pid(), "noproc")
    assert type(ev.reason) is Atom


def test_exit2_kill_and_trapped(pairs: Callable[..., Pair], trapping_me: snowg.Pid) -> None:
    pair = pairs()
    victim = snowg.spawn(_waiter, trapping_me)
    pair.beam.write(
        pair.beam.enc.exit2(peer_pid(), trapping_me, "stop"), pair.beam.enc.exit2(peer_pid(), victim, "kill")
    )
    assert recv(lambda m: type(m) is snowg.Exit) == snowg.Exit(peer_pid(), "stop")
    assert wait_down(victim) == "killed"


def test_unlink_id_is_acknowledged_before_anything_else_and_unlinks(
    pairs: Callable[..., Pair], forward: Any, trapping_me: snowg.Pid
) -> None:
    pair = pairs()
    beam = pair.beam
    echo = snowg.spawn(lambda: snowg.send(peer_pid(), ("echo", snowg.receive())))
    forward(pair.conn)
    beam.write(beam.enc.link(peer_pid(), trapping_me), beam.enc.send(None, trapping_me, "linked"))
    assert recv() == "linked"
    # The echo answers at once; the ack, queued by the reader, must still come first.
    beam.write(beam.enc.unlink_id(7, peer_pid(), trapping_me), beam.enc.send(peer_pid(), echo, "hi"))
    assert beam.event() == _control.UnlinkIdAck(7, trapping_me, peer_pid())
    assert beam.event() == _control.Send(echo, peer_pid(), ("echo", "hi"))
    assert peer_pid() not in snowg.process_info(trapping_me)["links"]
    beam.write(beam.enc.exit(peer_pid(), trapping_me, "late"), beam.enc.send(None, trapping_me, "after"))
    assert recv() == "after"  # the EXIT over the removed link did nothing


def test_old_unlink_removes_the_link(pairs: Callable[..., Pair], trapping_me: snowg.Pid) -> None:
    pair = pairs()
    beam = pair.beam
    beam.write(beam.enc.link(peer_pid(), trapping_me), beam.enc.send(None, trapping_me, "linked"))
    assert recv() == "linked"
    unlink = _control.Unlink(peer_pid(), trapping_me)
    beam.write(_old_unlink_frame(beam, unlink), beam.enc.send(None, trapping_me, "unlinked"))
    assert recv() == "unlinked"
    assert peer_pid() not in snowg.process_info(trapping_me)["links"]


def test_unlink_to_a_peer_without_unlink_id_is_the_old_unlink(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs(peer_flags=_flags.OFFERED & ~_flags.DFLAG_UNLINK_ID)
    pair.conn.unlink(me, peer_pid())
    assert pair.beam.event() == _control.Unlink(me, peer_pid())
    assert pair.conn.pending_unlinks == {}


def _old_unlink_frame(beam: FakeBeam, ev: Any) -> bytes:
    """An UNLINK (tag 4) control message, which the Encoder does not make (OTP 26 dropped it)."""
    payload = b"p" + beam.tm.encode((4, ev.from_, ev.to))
    return len(payload).to_bytes(4, "big") + payload


# ---------------------------------------------------------------- monitors


def test_monitor_by_pid_fires_monitor_p_exit_with_the_reason(pairs: Callable[..., Pair], forward: Any) -> None:
    pair = pairs()
    forward(pair.conn)
    beam = pair.beam
    target = snowg.spawn(_exit_with, Atom("normal"))
    ref = peer_ref(3)
    beam.write(beam.enc.monitor_p(peer_pid(), target, ref), beam.enc.send(peer_pid(), target, "go"))
    ev = beam.event()
    assert ev == _control.MonitorPExit(target, peer_pid(), ref, "normal")
    assert type(ev.reason) is Atom


def test_monitor_of_a_dead_pid_or_unknown_name_answers_noproc(pairs: Callable[..., Pair]) -> None:
    pair = pairs()
    beam = pair.beam
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    beam.write(beam.enc.monitor_p(peer_pid(), dead, peer_ref(1)), beam.enc.monitor_p(peer_pid(), "nobody", peer_ref(2)))
    assert beam.event() == _control.MonitorPExit(dead, peer_pid(), peer_ref(1), "noproc")
    ev = beam.event()
    assert ev == _control.MonitorPExit("nobody", peer_pid(), peer_ref(2), "noproc")
    assert type(ev.from_) is Atom and type(ev.reason) is Atom


def test_monitor_by_name_and_demonitor(pairs: Callable[..., Pair], forward: Any) -> None:
    pair = pairs()
    forward(pair.conn)
    beam = pair.beam
    named = snowg.spawn(_exit_with, "crashed")
    snowg.register("svc", named)
    other = snowg.spawn(_exit_with, "x")
    beam.write(
        beam.enc.monitor_p(peer_pid(), "svc", peer_ref(1)),
        beam.enc.monitor_p(peer_pid(), other, peer_ref(2)),
        beam.enc.demonitor_p(peer_pid(), other, peer_ref(2)),
        beam.enc.send(peer_pid(), other, "go"),
    )
    assert wait_down(other) == "x"
    snowg.send(named, "go")
    ev = beam.event()  # nothing for the demonitored one comes before it
    assert ev == _control.MonitorPExit("svc", peer_pid(), peer_ref(1), "crashed")
    assert type(ev.reason) is str  # a str reason is a binary, not an atom


def test_monitor_p_exit_delivers_down_by_pid_and_by_name(
    pairs: Callable[..., Pair], forward: Any, me: snowg.Pid
) -> None:
    pair = pairs()
    forward(pair.conn)
    beam = pair.beam
    by_pid = snowg.monitor(peer_pid(5))
    by_name = snowg.monitor(("reg", PEER))
    assert beam.event() == _control.MonitorP(me, peer_pid(5), by_pid)
    assert beam.event() == _control.MonitorP(me, "reg", by_name)
    beam.write(
        beam.enc.monitor_p_exit(peer_pid(5), me, by_pid, "kill"),
        beam.enc.monitor_p_exit("reg", me, by_name, "noproc"),
    )
    assert recv(lambda m: type(m) is snowg.Down and m.ref == by_pid) == snowg.Down(by_pid, peer_pid(5), "kill")
    assert recv(lambda m: type(m) is snowg.Down and m.ref == by_name) == snowg.Down(by_name, ("reg", PEER), "noproc")
    snowg.demonitor(snowg.monitor(peer_pid(6)))
    ref = beam.event().ref
    assert beam.event() == _control.DemonitorP(me, peer_pid(6), ref)


# ------------------------------------------------------ outgoing packets


def test_every_outgoing_method_makes_the_exact_packet(pairs: Callable[..., Pair], wire: str, me: snowg.Pid) -> None:
    pair = pairs(wire)
    conn, beam = pair.conn, pair.beam
    p = peer_pid(9)
    ref = snowg.make_ref()
    conn.send(p, ("normal", Atom("normal")))
    ev = beam.event()
    assert ev == _control.Send(me, p, ("normal", "normal"))
    assert type(ev.msg[0]) is str and type(ev.msg[1]) is Atom  # messages are not reason-converted
    conn.send_name("logger", [1], me)
    assert beam.event() == _control.RegSend(me, "logger", [1])
    conn.link(me, p)
    assert beam.event() == _control.Link(me, p)
    conn.unlink(me, p)
    assert beam.event() == _control.UnlinkId(1, me, p)
    assert conn.pending_unlinks == {1: (me, p)}
    beam.write(beam.enc.unlink_id_ack(1, p, me))
    wait_until(lambda: not conn.pending_unlinks, "the UNLINK_ID_ACK")
    conn.exit_link(me, p, "normal")
    ev = beam.event()
    assert ev == _control.ExitSignal(me, p, "normal") and type(ev.reason) is Atom
    conn.exit2(me, p, ("shutdown", "why"))
    ev = beam.event()
    assert ev == _control.Exit2Signal(me, p, (Atom("shutdown"), "why")) and type(ev.reason[1]) is str
    conn.monitor(me, p, ref)
    assert beam.event() == _control.MonitorP(me, p, ref)
    conn.monitor(me, ("name", PEER), ref)
    assert beam.event() == _control.MonitorP(me, "name", ref)
    conn.demonitor(me, ("name", PEER), ref)
    assert beam.event() == _control.DemonitorP(me, "name", ref)
    conn.monitor_exit(me, p, ref, "killed")
    assert beam.event() == _control.MonitorPExit(me, p, ref, "killed")
    conn.monitor_exit(("svc", ME), p, ref, "noproc")
    assert beam.event() == _control.MonitorPExit("svc", p, ref, "noproc")
    conn.send_spawn_reply(peer_ref(4), p, _control.SPAWN_FLAG_LINK, me)
    assert beam.event() == _control.SpawnReply(peer_ref(4), p, _control.SPAWN_FLAG_LINK, me)
    conn.send_spawn_reply(peer_ref(5), p, 0, Atom("badarg"))
    assert beam.event() == _control.SpawnReply(peer_ref(5), p, 0, "badarg")


def test_a_gen_call_alias_reply_goes_as_alias_send(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    alias = peer_ref(77)
    reply = (ImproperList((Atom("alias"),), alias), ("ok", 1))
    pair.conn.send(peer_pid(), reply)
    assert pair.beam.event() == _control.AliasSend(me, alias, reply)
    plain = (ImproperList((Atom("other"),), alias), 1)
    pair.conn.send(peer_pid(), plain)
    assert pair.beam.event() == _control.Send(me, peer_pid(), plain)


def test_unencodable_terms_raise_in_the_sender_and_queue_nothing(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    with pytest.raises(TypeError):
        pair.conn.send(peer_pid(), object())
    with pytest.raises(TypeError):
        pair.conn.send_name("x", {1, 2}, me)
    with pytest.raises(TypeError):
        pair.conn.exit2(me, peer_pid(), object())
    pair.conn.exit_link(me, peer_pid(), object())  # an exit must still go: as the reason's repr
    ev = pair.beam.event()
    assert type(ev) is _control.ExitSignal and ev.reason.startswith("<object object at")
    pair.conn.send(peer_pid(), "next")
    assert pair.beam.event() == _control.Send(me, peer_pid(), "next")


def test_signals_to_another_incarnation_or_over_a_closed_connection(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    conn = pair.conn
    old = peer_pid(1, creation=PEER_CREATION - 1)
    snowg.trap_exit(True)
    conn.send(old, "dropped")
    ref = snowg.make_ref()
    _remote.add_outgoing_monitor(me, old, ref)
    conn.monitor(me, old, ref)
    assert recv() == snowg.Down(ref, old, "noproc")
    _remote.add_outgoing_link(me, old)
    conn.link(me, old)
    assert recv() == snowg.Exit(old, "noproc")
    conn.send(peer_pid(), "first")
    assert pair.beam.event() == _control.Send(me, peer_pid(), "first")
    conn.close("test")
    ref2 = snowg.make_ref()
    _remote.add_outgoing_monitor(me, peer_pid(), ref2)
    conn.monitor(me, peer_pid(), ref2)
    assert recv() == snowg.Down(ref2, peer_pid(), "noconnection")
    conn.send(peer_pid(), "nothing happens")


# ------------------------------------------------------------------- ticks


def test_ticks_are_sent_while_only_receiving(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs(tick_time=0.4)
    beam = pair.beam
    # The peer sends a message each time it gets a tick, never a tick itself:
    # the connection receives all the time and must go on ticking.
    for i in range(6):
        assert beam.packet() == b""
        beam.write(beam.enc.send(None, me, i))
    assert [recv() for _ in range(6)] == list(range(6))
    assert not pair.conn.closed and not pair.closed.calls


def test_a_silent_peer_is_net_tick_timeout(pairs: Callable[..., Pair], log: Any) -> None:
    pair = pairs(tick_time=0.3)
    assert pair.closed.event.wait(T)
    assert pair.closed.calls == [(pair.conn, "net_tick_timeout")]
    assert pair.conn.close_reason == "net_tick_timeout" and pair.conn.closed
    assert pair.beam.packet() in (b"", None)  # ticks, then the end of the stream


def test_a_held_up_loop_is_not_the_peers_silence(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    """This node's loop blocked for longer than ``tick_time``: the peer's tick, unread meanwhile, still counts.

    When the loop resumes, the tick timer runs before the reader; the time
    the node could not read is not held against the peer.
    """
    pair = pairs(tick_time=0.4)
    beam = pair.beam
    beam.write(beam.enc.send(None, me, "before"))
    assert recv() == "before"
    assert beam.packet() == b""  # a tick: the timer has run since that read
    beam.write(TICK)  # waits unread in the socket while the loop is held up
    time.sleep(0.4 * 1.5)  # blocks the hub: no greenlet, timer or reader runs
    beam.write(beam.enc.send(None, me, "after"))
    assert recv() == "after"
    assert not pair.conn.closed and not pair.closed.calls


def test_a_peer_that_does_not_read_is_net_tick_timeout(pairs: Callable[..., Pair], log: Any) -> None:
    pair = pairs(tick_time=0.4, bufsize=4096, busy_limit=1 << 30)
    beam = pair.beam
    big = b"x" * (1 << 20)
    for _ in range(16):
        pair.conn.send(peer_pid(), big)

    def keep_ticking() -> None:
        # Paced by a bounded wait on the close: the peer stays audible, so only the stalled writer can end it.
        while not pair.conn.closed:
            beam.write(TICK)
            gevent.wait([pair.closed.event], timeout=0.05)

    ticker = gevent.spawn(keep_ticking)
    try:
        assert pair.closed.event.wait(T)
    finally:
        ticker.kill()
    assert pair.closed.calls == [(pair.conn, "net_tick_timeout")]
    assert [r for r in log.records if "writes made no progress" in r.getMessage()]


# --------------------------------------------------------------- bad input


def test_a_malformed_packet_closes_with_one_warning_and_others_go_on(
    pairs: Callable[..., Pair], wire: str, log: Any, me: snowg.Pid
) -> None:
    bad = pairs(wire)
    good = pairs(wire)
    bad.beam.write(b"\x00\x00\x00\x03xyz")
    assert bad.closed.event.wait(T)
    assert bad.closed.calls == [(bad.conn, "protocol_error")]
    warnings = [r for r in log.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert PEER in warnings[0].getMessage() and "protocol_error" in warnings[0].getMessage()
    assert bad.beam.packet() is None  # the socket is closed
    good.beam.write(good.beam.enc.send(None, me, "still served"))
    assert recv() == "still served"


def test_a_packet_over_max_packet_closes(pairs: Callable[..., Pair], log: Any) -> None:
    pair = pairs(max_packet=1000)
    pair.beam.write((2000).to_bytes(4, "big"))
    assert pair.closed.event.wait(T)
    assert pair.closed.calls[0][1] == "protocol_error"
    assert "2000" in [r for r in log.records if r.levelno >= logging.WARNING][0].getMessage()


def test_a_signal_claiming_another_nodes_pid_closes(pairs: Callable[..., Pair], trapping_me: snowg.Pid) -> None:
    pair = pairs()
    pair.beam.write(pair.beam.enc.link(snowg.Pid("other@host", 1, 1), trapping_me))
    assert pair.closed.event.wait(T)
    assert pair.closed.calls[0][1] == "protocol_error"
    assert snowg.process_info(trapping_me)["links"] == []


# ------------------------------------------------------------ backpressure


def test_a_busy_connection_suspends_a_sending_process_but_not_the_reader(
    pairs: Callable[..., Pair], wire: str, me: snowg.Pid
) -> None:
    over: List[bool] = []

    def answer(conn: ErlangConnection, req: Any) -> None:
        conn.send(req.from_, "a message from the reader")  # over the bound: must not suspend the reader
        over.append(conn.queued > conn.busy_limit)

    pair = pairs(wire, busy_limit=10_000, bufsize=16_384, on_spawn_request=answer)
    conn, beam = pair.conn, pair.beam
    chunk = b"y" * 4_000
    stop = Event()
    sent: List[int] = []

    def sender() -> None:
        for i in range(5_000):  # bounded: a send that never suspends must not spin for ever
            if stop.is_set() or conn.closed:
                break
            conn.send(peer_pid(), (i, chunk))
            sent.append(i)
        snowg.send(me, ("done", len(sent)))

    sender_pid = snowg.spawn(sender)
    wait_until(lambda: conn.suspended_senders == 1, "the sender to be suspended")
    # The reader is not suspended: a message and a link's noproc answer still go through.
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    req = peer_ref(8)
    beam.write(
        beam.enc.spawn_request(req, peer_pid(), peer_pid(), "m", "f", [], []),
        beam.enc.send(None, me, "reader works"),
        beam.enc.link(peer_pid(), dead),
    )
    assert recv() == "reader works"
    assert over == [True]  # the reader queued over the bound, and went on
    stop.set()
    # Now the peer reads: the queue drains, the sender resumes and ends.
    node_pid = snowg.Pid(ME, 0, MY_CREATION)
    events: List[Any] = []

    def seen(pred: Callable[[Any], bool]) -> bool:
        return any(pred(e) for e in events)

    while not (seen(lambda e: type(e) is _control.ExitSignal) and seen(lambda e: e.sender == node_pid)):
        events.append(beam.event())
    count = recv(lambda m: type(m) is tuple and m[0] == "done")[1]
    while len([e for e in events if type(e) is _control.Send and e.sender == sender_pid]) < count:
        events.append(beam.event())
    mine = [e.msg for e in events if type(e) is _control.Send and e.sender == sender_pid]
    assert count >= 1 and [m[0] for m in mine] == list(range(count))
    assert all(m[1] == chunk.decode() for m in mine)  # valid UTF-8: it arrives as a str
    rest = [e for e in events if not (type(e) is _control.Send and e.sender == sender_pid)]
    assert sorted(rest, key=lambda e: type(e).__name__) == [
        _control.ExitSignal(dead, peer_pid(), "noproc"),
        _control.Send(node_pid, peer_pid(), "a message from the reader"),
    ]


# ---------------------------------------------------------------- spawning


def test_an_incoming_spawn_request_and_our_reply(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    def answer(conn: ErlangConnection, req: Any) -> None:
        conn.send_spawn_reply(req.req_id, req.from_, _control.SPAWN_FLAG_MONITOR, me)

    pair = pairs(on_spawn_request=answer)
    beam = pair.beam
    req = peer_ref(11)
    beam.write(beam.enc.spawn_request(req, peer_pid(), peer_pid(2), "mymod", "run", [1, "two"], [Atom("monitor")]))
    assert beam.event() == _control.SpawnReply(req, peer_pid(), _control.SPAWN_FLAG_MONITOR, me)
    (got,) = pair.spawn_requests
    assert got == _control.SpawnRequest(req, peer_pid(), peer_pid(2), "mymod", "run", 2, [Atom("monitor")], [1, "two"])


def _spawner(conn: ErlangConnection, parent: snowg.Pid, fn: Any, args: Any, opts: Tuple[str, ...]) -> None:
    snowg.trap_exit(True)
    try:
        result = conn.spawn(fn, args, {}, opts)
    except SpawnError as exc:
        snowg.send(parent, ("error", str(exc)))
        return
    snowg.send(parent, ("spawned", result))
    snowg.send(parent, ("then", snowg.receive()))


def test_spawn_monitor_on_the_peer(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    beam = pair.beam
    caller = snowg.spawn(_spawner, pair.conn, me, ("lists", "seq"), (1, "a"), ("monitor",))
    req = beam.event()
    assert type(req) is _control.SpawnRequest
    assert req == _control.SpawnRequest(req.req_id, caller, caller, "lists", "seq", 2, [Atom("monitor")], [1, "a"])
    assert req.req_id.node == ME
    child = peer_pid(40)
    beam.write(
        beam.enc.spawn_reply(req.req_id, caller, _control.SPAWN_FLAG_MONITOR, child),
        beam.enc.monitor_p_exit(child, caller, req.req_id, "done"),
    )
    assert recv() == ("spawned", (child, req.req_id))
    assert recv() == ("then", snowg.Down(req.req_id, child, "done"))


def test_spawn_link_with_a_registered_group_leader(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    beam = pair.beam
    leader = snowg.spawn(_blocked)
    snowg.register(GROUP_LEADER_NAME, leader)
    caller = snowg.spawn(_spawner, pair.conn, me, "m:f", (), ("link",))
    req = beam.event()
    assert req == _control.SpawnRequest(req.req_id, caller, leader, "m", "f", 0, [Atom("link")], [])
    child = peer_pid(41)
    # The reply and the child's exit in one write: the link is in place before the EXIT is read.
    beam.write(
        beam.enc.spawn_reply(req.req_id, caller, _control.SPAWN_FLAG_LINK, child),
        beam.enc.exit(child, caller, "crash"),
    )
    assert recv() == ("spawned", child)
    assert recv() == ("then", snowg.Exit(child, "crash"))


def test_spawn_refused_and_bad_arguments(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    caller = snowg.spawn(_spawner, pair.conn, me, ("m", "f"), (1,), ())
    req = pair.beam.event()
    pair.beam.write(pair.beam.enc.spawn_reply(req.req_id, caller, 0, Atom("badarg")))
    tag, text = recv()
    assert tag == "error" and "badarg" in text
    with pytest.raises(TypeError, match="keyword"):
        pair.conn.spawn(("m", "f"), (), {"x": 1}, ())
    with pytest.raises(TypeError):
        pair.conn.spawn(len, (), {}, ())
    with pytest.raises(TypeError):
        pair.conn.spawn("m:f", (object(),), {}, ())
    pair.conn.send(peer_pid(), "nothing queued before")
    assert pair.beam.event() == _control.Send(me, peer_pid(), "nothing queued before")


def test_a_spawn_reply_for_a_dead_spawner_undoes_the_link_and_monitor(pairs: Callable[..., Pair]) -> None:
    pair = pairs()
    dead = snowg.spawn(lambda: None)
    wait_down(dead)
    req = snowg.make_ref()
    flags = _control.SPAWN_FLAG_LINK | _control.SPAWN_FLAG_MONITOR
    pair.beam.write(pair.beam.enc.spawn_reply(req, dead, flags, peer_pid(50)))
    assert pair.beam.event() == _control.ExitSignal(dead, peer_pid(50), "noproc")
    assert pair.beam.event() == _control.DemonitorP(dead, peer_pid(50), req)


def test_connection_lost_while_spawning_answers_noconnection(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs()
    caller = snowg.spawn(_spawner, pair.conn, me, ("m", "f"), (), ("monitor",))
    req = pair.beam.event()
    assert type(req) is _control.SpawnRequest and req.from_ == caller
    pair.beam.sock.close()
    tag, (pid, ref) = recv()
    assert tag == "spawned" and pid == snowg.Pid(PEER, 0, 0) and ref == req.req_id
    assert recv() == ("then", snowg.Down(ref, pid, "noconnection"))
    assert pair.closed.calls == [(pair.conn, "connection_closed")]


# ------------------------------------------------------------------- close


def test_finish_flushes_what_is_queued_then_closes(pairs: Callable[..., Pair], wire: str, me: snowg.Pid) -> None:
    pair = pairs(wire)
    for i in range(100):
        pair.conn.send(peer_pid(), i)
    done = gevent.spawn(pair.conn.finish, T)
    events = pair.beam.at_eof()
    assert events == [_control.Send(me, peer_pid(), i) for i in range(100)]
    pair.beam.sock.close()  # as the BEAM does at the end of the stream
    done.get(timeout=T)
    assert pair.closed.calls == [(pair.conn, "disconnect")]


def test_close_is_idempotent_and_wakes_suspended_senders(pairs: Callable[..., Pair], me: snowg.Pid) -> None:
    pair = pairs(busy_limit=1000, bufsize=4096)
    conn = pair.conn

    def sender() -> None:
        for _ in range(1000):
            conn.send(peer_pid(), b"z" * 100_000)
            if conn.closed:
                break
        snowg.send(me, "sender returned")

    snowg.spawn(sender)
    wait_until(lambda: conn.suspended_senders == 1, "the sender to be suspended")
    conn.close("test_close")
    conn.close("again")
    assert recv() == "sender returned"
    assert pair.closed.calls == [(conn, "test_close")] and conn.close_reason == "test_close"
    assert conn.queued == 0
