"""One TLS connection to one peer node: a reader greenlet, a writer greenlet, ticks.

Senders never touch the socket. They append encoded frames to the session's
outbound list, and the writer sends everything queued in one write (this is
where remote throughput comes from); per-pair ordering follows from the single
list. Liveness (semantics rule 25) is a repeating hub timer: it queues a tick when
nothing was sent for ``tick`` seconds, and declares the peer down when nothing
was received for ``4 * tick`` -- it runs even while the writer waits on a
frozen peer.

Both loops call the TLS object under gevent's cooperative ``SSLSocket``
(``sock._sslobj``: ``read``, ``write``, ``pending``) and wait on the socket's
own IO watchers (``sock._wait``), which is what the ``SSLSocket`` methods do
underneath; going around their Python layers took a fifth off a remote round
trip. The socket is still gevent's, so ``close()`` wakes a waiting loop as
usual, in patched and unpatched programs alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, List, Optional, Union

from _ssl import SSLEOFError, SSLWantReadError, SSLWantWriteError

import gevent
from gevent.exceptions import ConcurrentObjectUseError

from .._core import Task
from .._core.terms import Pid
from ._frames import TICK
from ._framing import FrameDecoder, MalformedFrame, ProtocolError, encode_frame

log = logging.getLogger("snowg")

_TICK_FRAME = encode_frame([TICK])
# A read returns one TLS record (at most 16 KiB of data); 32 KiB takes any whole.
_RECV_SIZE = 32 * 1024


class Session:
    """A live connection to ``peer_name`` (after a successful handshake).

    Args:
        sock: the TLS socket (gevent's cooperative SSLSocket).
        peer_name, peer_creation, peer_address: from the handshake.
        outgoing: True when this node opened the connection.
        tick: seconds; see the module docstring.
        max_frame_size: the largest frame accepted from the peer.
        on_frames: called with (session, frames) for each batch of decoded frames.
        on_closed: called once with (session, reason) when the session ends.
        initial_data: bytes that arrived right after the handshake.
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
    ) -> None:
        self.sock = sock
        self.peer_name = peer_name
        self.peer_creation = peer_creation
        self.peer_address = peer_address
        self.outgoing = outgoing
        self.tick = tick
        self.closed = False
        self.close_reason: Optional[str] = None
        self._out: List[bytes] = []
        self._writer_task = Task(None)
        # True while the writer holds a batch the socket has not taken yet.
        self._writer_busy = False
        # The TLS object under gevent's SSLSocket (see the module docstring).
        self._tls = sock._sslobj
        self._decoder = FrameDecoder(max_frame_size)
        self._on_frames = on_frames
        self._on_closed = on_closed
        self._initial = initial_data
        now = time.monotonic()
        self.last_recv = now
        self.last_sent = now
        self._writer: Optional[gevent.Greenlet[[], None]] = None
        self._reader: Any = None
        self._ticker: Any = None
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
        """Queue an encoded frame; never blocks. False when the session is closed."""
        if self.closed:
            return False
        self._out.append(frame)
        task = self._writer_task
        if task.parked and not task.ready:
            # Through the ready queue: a sender that then waits in receive hands
            # the CPU straight to the writer, which takes everything queued.
            task.wake()
        return True

    def _write_loop(self) -> None:
        sock = self.sock
        write = self._tls.write
        task = self._writer_task
        task.glet = gevent.getcurrent()
        try:
            while not self.closed:
                if not self._out:
                    task.park()
                    continue
                batch, self._out = self._out, []
                data: Union[bytes, memoryview] = batch[0] if len(batch) == 1 else b"".join(batch)
                self._writer_busy = True
                while True:
                    try:
                        written = write(data)
                    except SSLWantWriteError:
                        sock._wait(sock._write_event)
                        continue
                    except SSLWantReadError:
                        # Only a renegotiation does this; the reader owns the read event.
                        gevent.sleep(0.001)
                        continue
                    if written == len(data):
                        break
                    data = memoryview(data)[written:]
                self._writer_busy = False
                self.last_sent = time.monotonic()
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            self.close("connection_closed", f"write failed: {exc}")

    # --------------------------------------------------------------- receiving

    def run_reader(self) -> None:
        """Read and dispatch frames until the connection ends (blocks this greenlet)."""
        self._reader = gevent.getcurrent()
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
        except ProtocolError as exc:
            self.close("protocol_error", f"protocol error from the peer: {exc}", level=logging.ERROR)
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            if not self.closed:
                # A peer that closes with our frames unread in its buffer resets the
                # connection: that is an end of stream too.
                self._close_on_end_of_stream(decoder, f"read failed: {exc}")

    def _close_on_end_of_stream(self, decoder: FrameDecoder, how: str) -> None:
        pending = decoder.buffered
        if pending:
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
        self._ticker = hub.loop.timer(interval, interval)
        self._ticker.start(self._on_tick)
        if reader_in_new_greenlet:
            gevent.spawn(self.run_reader)

    def _on_tick(self) -> None:
        if self.closed:
            return
        now = time.monotonic()
        if now - self.last_recv > 4 * self.tick:
            # close() may switch greenlets (socket close wakes waiters): not from the hub's timer.
            gevent.spawn(self.close, "net_tick_timeout", f"nothing received for {now - self.last_recv:.1f} s")
            return
        if now - self.last_sent >= self.tick and not self._out:
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
