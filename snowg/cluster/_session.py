"""One TLS connection to one peer node: a reader greenlet, a writer greenlet, ticks.

Senders never touch the socket. They append encoded frames to the session's
outbound list, and the writer sends everything queued in one write (this is
where remote throughput comes from); per-pair ordering follows from the single
list. Liveness (semantics rule 25) is a repeating hub timer: it queues a tick when
nothing was sent for ``tick`` seconds, and declares the peer down when nothing
was received for ``4 * tick`` -- it runs even while the writer waits on a
frozen peer. Time during which this node's own loop was held up does not
count as the peer's silence (``snowg._core.stall``).

Backpressure (semantics rule 30, Erlang's busy distribution port): the session
counts the bytes queued and not yet taken by the socket (one addition per
frame, one subtraction per write). A *process* that sends a message while more
than ``busy_limit`` bytes wait is suspended (the message is queued first, so
nothing is lost or reordered) until the writer has brought the queue back
under the bound; other processes run meanwhile. The runtime's
own signals (links, exits, monitors and their ``Down``, spawn requests and
replies, ticks) are never suspended nor dropped: they are queued even over the
bound. Nor is code that must not block: the hub (timers, e.g. ``send_after``
to a remote pid) and a session's reader, which runs the frame handlers; their
sends are queued over the bound too. A session whose writer has data waiting
and makes no progress for ``4 * tick`` is down with ``'net_tick_timeout'``, like
a silent peer, so what waits over the bound is bounded in time.

Both loops call the TLS object under gevent's cooperative ``SSLSocket``
(``sock._sslobj``: ``read``, ``write``, ``pending``) and wait on the socket's
own IO watchers (``sock._wait``), which is what the ``SSLSocket`` methods do
underneath; going around their Python layers took a fifth off a remote round
trip. The socket is still gevent's, so ``close()`` wakes a waiting loop as
usual, in patched and unpatched programs alike.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Union

from _ssl import SSLEOFError, SSLWantReadError, SSLWantWriteError

import gevent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError

from .._core import Task
from .._core.busy import BusyWaiters, may_suspend, never_suspend, suspend_again
from .._core import self as _self
from .._core.spin import after_write
from .._core.stall import LoopStall
from .._core import telemetry as _telemetry
from .._core.terms import Pid
from ._frames import TICK
from ._framing import FrameDecoder, MalformedFrame, ProtocolError, encode_frame

log = logging.getLogger("snowg")

_TICK_FRAME = encode_frame([TICK])
# A read returns one TLS record (at most 16 KiB of data); 32 KiB takes any whole.
_RECV_SIZE = 32 * 1024

#: Bytes a session may hold queued before senders are suspended (Erlang's ``+zdbbl``).
DEFAULT_DIST_BUFFER_SIZE = 1024 * 1024


class Session:
    """A live connection to ``peer_name`` (after a successful handshake).

    Args:
        sock: the TLS socket (gevent's cooperative SSLSocket).
        peer_name, peer_creation, peer_address: from the handshake.
        outgoing: True when this node opened the connection.
        tick: seconds; see the module docstring.
        max_frame_size: the largest frame accepted from the peer.
        busy_limit: queued bytes over which a sending process is suspended.
        on_frames: called with (session, frames) for each batch of decoded frames.
        on_closed: called once with (session, reason) when the session ends.
        initial_data: bytes that arrived right after the handshake.
        hidden: a hidden connection (either node is hidden): the peer is not
            in ``nodes()``, and the upper layers' node callbacks skip it.
    """

    def __init__(
        self,
        sock: Any,
        peer_name: str,
        peer_creation: int,
        peer_address: str,
        *,
        outgoing: bool,
        tick: float,
        max_frame_size: int,
        on_frames: Callable[["Session", List[Any]], None],
        on_closed: Callable[["Session", str], None],
        initial_data: bytes = b"",
        busy_limit: int = DEFAULT_DIST_BUFFER_SIZE,
        hidden: bool = False,
    ) -> None:
        self.sock = sock
        self.hidden = hidden
        self.peer_name = peer_name
        self.peer_creation = peer_creation
        self.peer_address = peer_address
        self.outgoing = outgoing
        self.tick = tick
        self.closed = False
        self.close_reason: Optional[str] = None
        self._out: List[bytes] = []
        #: Bytes queued (in the list or in the writer's hands) not yet taken by the socket.
        self.queued = 0
        self.busy_limit = busy_limit
        self._busy_waiters = BusyWaiters()
        self._writer_task = Task(None)
        # True while the writer holds a batch the socket has not taken yet.
        self._writer_busy = False
        # When the writer began waiting for the socket with no progress since (else None).
        self._write_stalled_since: Optional[float] = None
        # stop_node: send what is queued, then end our side of the stream.
        self._finishing = False
        self._closed_event = Event()
        # The TLS object under gevent's SSLSocket (see the module docstring).
        self._tls = sock._sslobj
        self._decoder = FrameDecoder(max_frame_size)
        self._on_frames = on_frames
        self._on_closed = on_closed
        self._initial = initial_data
        now = time.monotonic()
        self.last_recv = now
        self.last_sent = now
        #: Bytes read from and written to the TLS connection (for introspection).
        self.bytes_in = self.bytes_out = 0
        self._writer: Optional[gevent.Greenlet[[], None]] = None
        self._reader: Any = None
        self._ticker: Any = None
        self._stall: LoopStall  # made by start(), with the tick timer it watches
        try:
            peer = sock.getpeername()
            self.peer_socket = f"{peer[0]}:{peer[1]}"
        except OSError:
            self.peer_socket = "?"

    def __repr__(self) -> str:
        return f"<Session {self.peer_name} ({self.peer_socket})>"

    def check_from(self, pid: Pid) -> None:
        """Check that a signal the peer sent comes from one of its own processes.

        Raises:
            MalformedFrame: the peer claims to speak for another node's process.
        """
        if pid.node != self.peer_name:
            raise MalformedFrame(f"peer {self.peer_name} sent a signal claiming to come from {pid}")

    # ----------------------------------------------------------------- sending

    def send(self, frame: bytes) -> bool:
        """Queue an encoded frame; never blocks (even over the bound). False when the session is closed."""
        if self.closed:
            return False
        self._out.append(frame)
        self.queued += len(frame)
        task = self._writer_task
        if task.parked and not task.ready:
            # Through the ready queue: a sender that then waits in receive hands
            # the CPU straight to the writer, which takes everything queued.
            task.wake()
        return True

    def send_message(self, frame: bytes) -> None:
        """Queue a process's message; suspends the caller while the queue is over ``busy_limit``.

        See :meth:`wait_while_busy` for who is never suspended. Nothing
        happens when the session is closed.
        """
        if self.closed:
            return
        self._out.append(frame)
        queued = self.queued + len(frame)
        self.queued = queued
        task = self._writer_task
        if task.parked and not task.ready:
            task.wake()
        if queued > self.busy_limit:
            self.wait_while_busy()

    @property
    def suspended_senders(self) -> int:
        """How many senders wait for this session's queue to drain."""
        return len(self._busy_waiters)

    def wait_while_busy(self) -> None:
        """Suspend the caller while more than ``busy_limit`` bytes are queued (a process's send).

        Returns at once in the hub and in a connection's reader, which must not
        block, and when the session is closed. An exit signal ends a
        suspended process as usual (what it sent is already queued).
        """
        if not may_suspend():
            return
        if self.queued > self.busy_limit and not self.closed and _telemetry.SESSION_BUSY in _telemetry.attached:
            measures: Dict[str, float] = {"queued": self.queued, "busy_limit": self.busy_limit}
            _telemetry.execute(_telemetry.SESSION_BUSY, measures, {"node": self.peer_name, "pid": _self()})
        self._busy_waiters.wait(lambda: self.queued > self.busy_limit and not self.closed)

    def finish(self) -> None:
        """Send everything queued now, then end this side of the stream (``stop_node``).

        Never blocks. The peer reads to the end and closes; the reader sees
        that and closes the session (:meth:`wait_closed`). Frames queued after
        the writer's last batch are not sent.
        """
        if self.closed or self._finishing:
            return
        self._finishing = True
        task = self._writer_task
        if task.parked and not task.ready:
            task.wake()

    def wait_closed(self, timeout: Optional[float]) -> bool:
        """Block the caller until the session is closed, at most ``timeout`` s; True if it is."""
        return bool(self._closed_event.wait(timeout))

    def _write_loop(self) -> None:
        sock = self.sock
        write = self._tls.write
        task = self._writer_task
        task.glet = gevent.getcurrent()
        try:
            while not self.closed:
                if not self._out:
                    if self._finishing:
                        self._end_stream()
                        return
                    task.park()
                    continue
                last = self._finishing  # a batch taken while finishing is the last one
                batch, self._out = self._out, []
                data: Union[bytes, memoryview] = batch[0] if len(batch) == 1 else b"".join(batch)
                self._writer_busy = True
                while True:
                    try:
                        written = write(data)
                    except SSLWantWriteError:
                        if self._write_stalled_since is None:
                            self._write_stalled_since = time.monotonic()
                        sock._wait(sock._write_event)
                        continue
                    except SSLWantReadError:
                        # Only a renegotiation does this; the reader owns the read event.
                        gevent.sleep(0.001)
                        continue
                    self._write_stalled_since = None
                    self.queued -= written
                    self.bytes_out += written
                    if self._busy_waiters and self.queued <= self.busy_limit and not self._finishing:
                        # (While stop_node flushes, suspended senders stay so: what
                        # they would add could not be sent; close() wakes them.)
                        self._busy_waiters.wake_all()
                    if written == len(data):
                        break
                    data = memoryview(data)[written:]
                self._writer_busy = False
                self.last_sent = time.monotonic()
                after_write()  # the answer usually comes within the spin budget: poll, do not sleep
                if last:
                    self._end_stream()
                    return
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            self.close("connection_closed", f"write failed: {exc}")

    def _end_stream(self) -> None:
        """Everything queued is written: end our direction (the peer reads to the end, then closes)."""
        try:
            self.sock._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.close("disconnect", f"this node stopped ({exc})")

    # --------------------------------------------------------------- receiving

    def run_reader(self) -> None:
        """Read and dispatch frames until the connection ends (blocks this greenlet)."""
        self._reader = reader = gevent.getcurrent()
        never_suspend(reader)
        sock = self.sock
        tls = self._tls
        read = tls.read
        pending = tls.pending
        decoder = self._decoder
        on_frames = self._on_frames
        wait = sock._wait
        try:
            data = self._initial
            self._initial = b""
            while not self.closed:
                if data:
                    frames = decoder.feed(data)
                    if frames:
                        on_frames(self, frames)
                    if not pending():
                        # Wait for the socket instead of reading on until
                        # EAGAIN. The event loop is level-triggered, so bytes
                        # already there wake us at once; meanwhile the
                        # processes the frames woke, the writers and the
                        # timers run (under a steady stream too: a read
                        # returns one TLS record, 16 KiB at most). In
                        # request/response traffic this saves a failed read,
                        # and its exception, per message.
                        wait(sock._read_event)
                        if self.closed:  # close() ran while we waited
                            return  # type: ignore[unreachable]
                try:
                    data = read(_RECV_SIZE)
                except SSLWantReadError:
                    data = b""
                    wait(sock._read_event)
                    continue
                except SSLEOFError:
                    data = b""
                if not data:
                    self._close_on_end_of_stream(decoder, "the peer closed the connection")
                    return
                self.last_recv = time.monotonic()
                self.bytes_in += len(data)
        except ProtocolError as exc:
            self.close("protocol_error", f"protocol error from the peer: {exc}", level=logging.ERROR)
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            if not self.closed:
                # A peer that closes with our frames unread in its buffer resets the
                # connection: that is an end of stream too.
                self._close_on_end_of_stream(decoder, f"read failed: {exc}")
        finally:
            suspend_again(reader)

    def _close_on_end_of_stream(self, decoder: FrameDecoder, how: str) -> None:
        pending = decoder.buffered
        if self._finishing:
            # stop_node ended our side; the peer read to the end and closed its side.
            self.close("disconnect", "this node stopped")
        elif pending:
            self.close(
                "protocol_error",
                f"{how} in the middle of a frame ({pending} bytes of a truncated frame)",
                level=logging.WARNING,
            )
        else:
            self.close("connection_closed", how)

    # ------------------------------------------------------------------- life

    def start(self, *, reader_in_new_greenlet: bool) -> None:
        """Start the writer and the tick timer (and the reader, if asked)."""
        self._writer = gevent.spawn(self._write_loop)
        hub = gevent.get_hub()
        interval = max(self.tick / 4.0, 0.01)
        self._stall = LoopStall(interval, time.monotonic())
        self._ticker = hub.loop.timer(interval, interval)
        self._ticker.start(self._on_tick)
        if reader_in_new_greenlet:
            gevent.spawn(self.run_reader)
        else:
            # The calling greenlet reads next; node-up callbacks run in it first.
            never_suspend(gevent.getcurrent())

    def _on_tick(self) -> None:
        if self.closed:
            return
        now = time.monotonic()
        # Time this node's loop was held up is not the peer's silence (snowg._core.stall).
        self.last_recv, self._write_stalled_since = self._stall.excuse(now, self.last_recv, self._write_stalled_since)
        if now - self.last_recv > 4 * self.tick:
            # close() may switch greenlets (socket close wakes waiters): not from the hub's timer.
            gevent.spawn(self.close, "net_tick_timeout", f"nothing received for {now - self.last_recv:.1f} s")
            return
        stalled = self._write_stalled_since
        if stalled is not None and now - stalled > 4 * self.tick:
            # The peer sends (ticks, say) but does not read what we send.
            gevent.spawn(
                self.close,
                "net_tick_timeout",
                f"writes made no progress for {now - stalled:.1f} s with {self.queued} bytes queued",
            )
            return
        if now - self.last_sent >= self.tick and not self.queued:
            self.send(_TICK_FRAME)

    def close(self, reason: str, detail: str = "", level: int = logging.INFO) -> None:
        """Close the session once; the node is told through ``on_closed``."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.log(
            level,
            "session with %s (%s) closed: %s%s",
            self.peer_name,
            self.peer_socket,
            reason,
            f" ({detail})" if detail else "",
        )
        if self._ticker is not None:
            self._ticker.close()
        self._writer_task.wake()
        # What was queued is lost with the connection (as in Erlang).
        self._out = []
        self.queued = 0
        self._busy_waiters.wake_all()
        try:
            self._on_closed(self, reason)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            current = gevent.getcurrent()
            for glet in (self._writer, self._reader):
                if glet is not None and glet is not current and not glet.dead:
                    glet.kill(block=False)
            self._closed_event.set()
