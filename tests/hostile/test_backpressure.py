"""Backpressure: a peer that does not read cannot make this node's memory grow.

Each session holds at most ``dist_buffer_size`` bytes queued (1 MiB, Erlang's
``+zdbbl``). A process that sends a message over the bound is suspended until
the queue drains (semantics rule 30, Erlang's busy distribution port); the
runtime's own signals are queued over the bound, never dropped, never
suspending, and so are sends from code that must not block (the hub). A
session whose writes make no progress for ``4 * tick`` while data waits is
down with ``'net_tick_timeout'``, like a silent one.

Attacks, each against this test's node (so its memory can be read in
``/proc/self/status``) while a healthy peer node and local processes must go
on being served:

* a raw peer that passed the handshake and sends ticks but never reads
  (before this bound: the sender's queue grew to 911 MB in 90 s);
* a peer node stopped with SIGSTOP while a local process sends to it as
  fast as it can (before: 622 MB queued in 60 s).
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import weakref
from typing import Any, List

import gevent
import pytest

import snowg
from snowg import Pid
from snowg.cluster._connect import session_for
from snowg.cluster._frames import EXIT, EXIT2, LINK, MONITOR, MONITOR_EXIT, SEND, TICK
from snowg.cluster._framing import FrameDecoder, encode_frame
from snowg.cluster._session import DEFAULT_DIST_BUFFER_SIZE
from snowg.testing import wait_for

import distfuncs as df
from support import open_fds, raw_session, recv, rss, tagged, wait_down, wait_for_stop

pytest_plugins = ["snowg.testing"]

pytestmark = pytest.mark.timeout(90)

BOUND = DEFAULT_DIST_BUFFER_SIZE
BLOB = 64 * 1024
MB = 1024 * 1024
RAW_CREATION = 4244
_names = itertools.count(1)


# ------------------------------------------------------------------ helpers


class NonReader:
    """A raw peer: passes the real handshake, then sends ticks and reads only when told to.

    Its pids are ``Pid(name, n, RAW_CREATION)``; it can send frames of its own
    (:meth:`send_frame`) and, once :meth:`read` is called, read what the node
    sent it.
    """

    def __init__(self, config: Any, node: Any) -> None:
        self.name = f"nonreader{next(_names)}-{os.getpid()}@127.0.0.1"
        self.sock, hs = raw_session(
            config, node.port, self.name, RAW_CREATION, node.name, cert_name="raw@127.0.0.1", timeout=5
        )
        self.sock.settimeout(None)
        self.pending = hs.trailing_data
        self.decoder = FrameDecoder(1 << 30)
        self.ticker = gevent.spawn(self._tick)

    def pid(self, n: int) -> Pid:
        return Pid(self.name, n, RAW_CREATION)

    def _tick(self) -> None:
        frame = encode_frame([TICK])
        try:
            while True:
                self.sock.sendall(frame)
                gevent.sleep(0.2)  # the attacker's pace (the node's tick is 1 s)
        except OSError:
            pass  # the node closed the connection

    def send_frame(self, frame: List[Any]) -> None:
        self.sock.sendall(encode_frame(frame))

    def read_until(self, done: Any, timeout: float = 20.0) -> List[Any]:
        """Read and decode frames until ``done(frames)`` is true; returns them all."""
        frames = self.decoder.feed(self.pending)
        self.pending = b""
        with gevent.Timeout(timeout, AssertionError("the frames did not all come")):
            while not done(frames):
                data = self.sock.recv(256 * 1024)
                assert data, "the node closed the connection"
                frames.extend(self.decoder.feed(data))
        return frames

    def close(self) -> None:
        self.ticker.kill()
        self.sock.close()


def still_served(witness: Any) -> None:
    """The healthy peer answers an rpc, and a local process answers a message."""
    assert witness.rpc(df.ping, "still") == ("pong", witness.name, "still")
    me = snowg.self()
    echo = snowg.spawn(lambda: snowg.send(me, ("local", snowg.receive())))
    snowg.send(echo, "still")
    assert recv(tagged("local")) == ("local", "still")


class Flood:
    """A local process sending ``size``-byte messages to ``dest`` as fast as it can.

    It stops once ``dest``'s node is not connected and reports
    ``('flooded', count)``. Every 16 sends it samples this process's RSS.
    """

    def __init__(self, dest: Pid, parent: Pid, size: int = BLOB) -> None:
        self.peak = rss()
        self.sent = 0
        self.pid = snowg.spawn(self._run, dest, parent, size)

    def _run(self, dest: Pid, parent: Pid, size: int) -> None:
        blob = b"z" * size
        node = dest.node
        while node in snowg.nodes():
            snowg.send(dest, blob)
            self.sent += 1
            if self.sent % 16 == 0:
                self.peak = max(self.peak, rss())
        snowg.send(parent, ("flooded", self.sent))


def _down(node: str, timeout: float) -> Any:
    return recv(lambda m: type(m) is snowg.NodeDown and m.node == node, timeout=timeout)


# ------------------------------------------------------------------ attacks


def test_a_peer_that_ticks_but_never_reads(snowg_node, snowg_cluster_config, witness, me, log) -> None:
    """Attack: a peer sends ticks and never reads while a local process sends as fast as it can.

    The sender is suspended at the bound, this process's memory stays under
    the bound + 10 MB, the witness and local processes are served, and the
    session is declared down with 'net_tick_timeout' after 4 ticks without
    write progress; then the sender goes on, nothing is left behind.
    """
    fds = open_fds()
    raw = NonReader(snowg_cluster_config, snowg_node)
    try:
        assert wait_for(lambda: raw.name in snowg.nodes(), timeout=5)
        snowg.monitor_node(raw.name)
        sess = session_for(raw.name)
        assert sess is not None
        base = rss()
        flood = Flood(raw.pid(1), me)
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=10)
        # While the sender is suspended the node serves everybody else.
        assert not sess.closed and BOUND < sess.queued <= BOUND + BLOB + 64
        still_served(witness)
        assert not sess.closed  # the ticks keep it up: only the writes stall
        down = _down(raw.name, timeout=4 * snowg_node.tick + 10)
        assert down.reason == "net_tick_timeout"
        assert any("writes made no progress" in r.getMessage() and raw.name in r.getMessage() for r in log.records)
        _, sent = recv(tagged("flooded"))
        assert sent == flood.sent
        assert flood.peak - base < BOUND + 10 * MB
        # Nothing is left behind: no waiter, no queue, the sender ended, the socket closed.
        assert sess.suspended_senders == 0 and sess.queued == 0 and sess._out == []
        assert wait_for(lambda: not snowg.is_alive(flood.pid), timeout=5)
        still_served(witness)
        gone = weakref.ref(sess)
        sess = None  # the lambdas above hold the variable, not the session
    finally:
        raw.close()
    assert wait_for(lambda: open_fds() == fds, timeout=5)
    gc.collect()
    assert gone() is None  # the dropped session itself is freed


def test_sigstop_of_a_peer_while_a_process_sends_to_it(peers, witness, me, log) -> None:
    """Attack: a peer node is stopped (SIGSTOP) while a local process sends to it as fast as it can.

    Memory stays under the bound + 10 MB, the sender is suspended, the other
    peer and local processes are served, and the frozen peer is declared down
    with 'net_tick_timeout'; the sender then ends.
    """
    victim = peers.start(modules=["distfuncs"])
    target = snowg.spawn(wait_for_stop, node=victim.name)
    snowg.monitor_node(victim.name)
    sess = session_for(victim.name)
    assert sess is not None
    base = rss()
    victim.freeze()
    try:
        flood = Flood(target, me)
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=10)
        assert BOUND < sess.queued <= BOUND + BLOB + 64
        still_served(witness)
        down = _down(victim.name, timeout=4 * snowg.cluster.current().tick + 10)
        assert down.reason == "net_tick_timeout"
        recv(tagged("flooded"))
        assert flood.peak - base < BOUND + 10 * MB
        assert sess.suspended_senders == 0 and sess.queued == 0
        assert wait_for(lambda: not snowg.is_alive(flood.pid), timeout=5)
        still_served(witness)
    finally:
        victim.kill()


def test_the_runtimes_signals_pass_the_bound_and_a_suspended_sender_can_be_killed(
    snowg_node, snowg_cluster_config, witness, me
) -> None:
    """Over the bound, links, exits, monitors' Down and hub sends are queued (never dropped, never blocking).

    Two processes sending to the busy session are both suspended; one is
    killed while suspended and ends at once with 'killed'. When the peer reads
    again it gets every message and signal, in the order they were made.
    """
    raw = NonReader(snowg_cluster_config, snowg_node)
    try:
        assert wait_for(lambda: raw.name in snowg.nodes(), timeout=5)
        sess = session_for(raw.name)
        assert sess is not None
        first = Flood(raw.pid(1), me)
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=10)
        # The runtime's signals, made over the bound; none of them suspends its maker.
        local = snowg.spawn(wait_for_stop)
        raw.send_frame([MONITOR, raw.pid(7), local, snowg.make_ref()])  # the peer monitors a local process
        snowg.link(raw.pid(2))  # LINK
        snowg.exit(raw.pid(3), "bye")  # EXIT2
        linked = snowg.spawn(lambda: (snowg.link(raw.pid(4)), snowg.exit("boom")))  # LINK, then EXIT
        assert wait_down(linked) == "boom"
        snowg.send_after(0, raw.pid(5), "from a timer")  # the hub: queued over the bound
        assert wait_for(lambda: _monitored_by(local) == [raw.pid(7)], timeout=5)
        snowg.send(local, "stop")  # MONITOR_EXIT to the peer's watcher
        assert wait_down(local) == "normal"
        # A second sender waits too; killing it while suspended ends it at once.
        second = Flood(raw.pid(6), me, size=16)
        assert wait_for(lambda: sess.suspended_senders == 2, timeout=5)
        snowg.exit(second.pid, "kill")
        assert wait_down(second.pid) == "killed"
        assert wait_for(lambda: sess.suspended_senders == 1, timeout=5)  # the killed one is gone
        still_served(witness)

        # The peer reads again: everything arrives, in order.
        def complete(frames: List[Any]) -> bool:
            return any(f[0] == MONITOR_EXIT for f in frames)

        frames = raw.read_until(complete)
        signals = [
            (f[0], f[2] if f[0] != MONITOR_EXIT else None) for f in frames if f[0] in (LINK, EXIT, EXIT2, MONITOR_EXIT)
        ]
        assert signals == [
            (LINK, raw.pid(2)),
            (EXIT2, raw.pid(3)),
            (LINK, raw.pid(4)),
            (EXIT, raw.pid(4)),
            (MONITOR_EXIT, None),
        ]
        timer_sends = [f for f in frames if f[0] == SEND and f[1] == raw.pid(5)]
        assert [f[2] for f in timer_sends] == ["from a timer"]
        exits = {f[2]: f[3] for f in frames if f[0] in (EXIT, EXIT2)}
        assert exits == {raw.pid(3): "bye", raw.pid(4): "boom"}
        down = next(f for f in frames if f[0] == MONITOR_EXIT)
        assert down[1] == local and down[2] == raw.pid(7) and down[4] == "normal"
        # The flood's messages before the signals all came first, in one piece.
        first_signal = next(i for i, f in enumerate(frames) if f[0] in (LINK, EXIT2))
        flood_before = [f for f in frames[:first_signal] if f[0] == SEND and f[1] == raw.pid(1)]
        assert flood_before and all(f[2] == b"z" * BLOB for f in flood_before)
        snowg.unlink(raw.pid(2))
    finally:
        raw.close()
    assert _down_or_gone(raw.name)
    recv(tagged("flooded"))  # the first sender went on once the session closed
    assert wait_for(lambda: not snowg.is_alive(first.pid), timeout=5)


def _monitored_by(pid: Pid) -> List[Pid]:
    """The watchers of the local ``pid``."""
    info = snowg.process_info(pid)
    return list(info["monitored_by"]) if info is not None else []


def _down_or_gone(node: str) -> bool:
    return wait_for(lambda: node not in snowg.nodes(), timeout=5)


def test_dist_buffer_size_must_be_positive(snowg_cluster_config, tmp_path) -> None:
    """``start_node(dist_buffer_size=0)`` is refused with a NodeError that says why."""
    code = (
        "import snowg\n"
        "try:\n"
        f"    snowg.start_node('bad@127.0.0.1', cookie='c', tls={snowg_cluster_config.certs!r}, dist_buffer_size=0)\n"
        "except snowg.NodeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "refused: dist_buffer_size must be a positive number of bytes, not 0"
