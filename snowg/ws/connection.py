"""One WebSocket connection: its reader, its writer, its queue, its close handshake.

Per connection there are three greenlets:

* the **handler process** (``handler(conn)``, spawned with snowg's ``spawn``):
  user code; ``conn.pid`` is its pid;
* the **reader** (a plain greenlet): reads frames, answers pings, and delivers
  each text/binary message to the handler's *mailbox* as
  ``WsMessage(conn, data)``; when the connection ends it delivers
  ``WsClosed(conn, code, reason)``. This is Erlang's "active socket"
  (``{tcp, Socket, Data}``) or cowboy's ``websocket_handle``/``websocket_info``
  split: one ``snowg.receive()`` loop can wait for frames and for process
  messages alike. ``conn.receive()`` is the selective receive of this
  connection's frames (process messages stay in the mailbox);
* the **writer** (a plain greenlet): the only code that ever writes the
  socket. ``conn.send`` and broadcasts append ready-made frames to a bounded
  deque and return; the writer joins whatever is queued into one write (a
  non-blocking send on a plain socket, then ``sendall`` for what is left).

Flow control: the reader stops reading the socket while ``recv_queue_size``
of its messages wait unread in the handler's mailbox (TCP then slows the
client down). A handler that takes ``WsMessage`` with ``snowg.receive``
instead of ``conn.receive`` is noticed too (the reader re-counts its mailbox
every 50 ms while it waits).

Fairness: a socket that always has bytes to read never blocks its reader, so
the reader gives way after a bounded amount of work (:data:`READ_TURN` bytes,
each frame counting ``_frames.FRAME_COST`` more: about a thousand empty
frames) and goes on after one turn of the event loop, in which every other
greenlet, the IO of every other socket and the timers run. A client sending
pings, pongs or empty fragments as fast as it can gets its turn, no more.

Overflow: when a connection's outbound queue already holds ``queue_size``
frames, the connection is closed with **1008** (policy violation: the client
does not read) and a WARNING names it and its peer; its queued frames are
dropped and nobody else waits. 1008 rather than 1013 ("try again later"),
because the fault is the client's, not the server's load.

Pings: every ``ping_interval`` seconds the server sends a ping; a client whose
pong does not come back within ``ping_timeout`` seconds is closed with 1001.
Client pings are answered with pongs through the outbound queue, so they
count against ``queue_size``: a client that pings and never reads overflows
it (1008) like any other.

Closing: a connection that *fails* (a protocol error, 1007, 1009, an overflow,
a ping timeout: RFC 6455 section 7.1.7) reads nothing more; its close frame is
sent and the TCP connection is dropped at once after it, or after
:data:`FAIL_TIMEOUT` if it cannot be written. When the client closes, nothing
after its close frame is read: the server echoes it and drops the TCP
connection (the server closes first, section 7.1.1). When the server closes
(``conn.close``, the handler's end, ``server.stop``), what was queued is sent
first (within ``close_timeout``), then the close frame; after it the reader
only looks for the client's close frame (data frames are discarded, pings not
answered) for at most :data:`FAIL_TIMEOUT`, then the TCP connection is
dropped.

Compression: when the upgrade negotiated permessage-deflate (``_deflate``),
``conn.compression`` holds its parameters; ``conn.send`` compresses a
message of at least the threshold's size, and the reader inflates the
client's compressed messages within ``max_message_size``.

Timers and state changes never block, so they run in hub callbacks.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    FrozenSet,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

import gevent
from gevent import socket as gsocket
from gevent.event import Event

from .._core import Down, Pid, Task, demonitor, process_info, receive, send, spawn_monitor
from .._core import self as _self
from .._core import telemetry as _telemetry
from .._errors import Timeout
from . import _frames as fr
from . import _rooms
from ._deflate import ENVIRON_KEY, DeflateConfig, Deflater, DeflateParams, Inflater

log = logging.getLogger("snowg")

Data = Union[str, bytes]

CLOSE_OVERFLOW = fr.CLOSE_POLICY_VIOLATION  # 1008

#: The work (bytes of payload, plus ``_frames.FRAME_COST`` per frame) a
#: connection's reader does before it gives way to the other greenlets.
READ_TURN = 65536

#: Seconds, at most, between a connection's close frame (or the decision to
#: fail it) and the end of its TCP connection (capped by ``close_timeout``).
FAIL_TIMEOUT = 1.0

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection

_OPEN, _CLOSING, _CLOSED = 0, 1, 2
assert _rooms.OPEN == _OPEN  # (_rooms cannot import this module: it is imported by it)
_STATE_NAMES = ("open", "closing", "closed")

_ids = itertools.count(1)


class WsMessage(NamedTuple):
    """A text (``str``) or binary (``bytes``) message from ``conn``'s client, in the handler's mailbox."""

    conn: "Connection"
    data: Data


class WsClosed(NamedTuple):
    """``conn`` has ended (last message of it in the handler's mailbox).

    ``code`` is the close code sent or received (1005: the client's close
    frame had no code; 1006: the TCP connection ended without a close
    handshake).
    """

    conn: "Connection"
    code: int
    reason: str


class _Done(NamedTuple):
    """To the connection's owner (the WSGI greenlet): the connection has ended."""

    conn: "Connection"


@dataclass(frozen=True)
class Options:
    """The per-connection limits of a :class:`~snowg.ws.WebSocketApp` (see there)."""

    max_message_size: int = 1 << 20
    max_fragments: int = fr.MAX_FRAGMENTS
    ping_interval: Optional[float] = 20.0
    ping_timeout: float = 20.0
    queue_size: int = 1024
    recv_queue_size: int = 256
    close_timeout: float = 5.0
    compression: Optional[DeflateConfig] = DeflateConfig()

    def __post_init__(self) -> None:
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be at least 1")
        if self.max_fragments < 1:
            raise ValueError("max_fragments must be at least 1")
        if self.queue_size < 1 or self.recv_queue_size < 1:
            raise ValueError("queue_size and recv_queue_size must be at least 1")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be positive (or None: no pings)")
        if self.ping_timeout <= 0 or self.close_timeout <= 0:
            raise ValueError("ping_timeout and close_timeout must be positive")


def _timer(seconds: float, fn: Callable[..., Any], *args: Any, repeat: float = 0.0) -> Any:
    t = gevent.get_hub().loop.timer(seconds, repeat)
    t.start(fn, *args)
    return t


def _give_way() -> None:
    """Block the caller for one turn of the event loop: everyone else, IO and timers run first.

    A zero timer fires after the loop has polled IO (``gevent.sleep(0)``
    would only run the callbacks already queued, possibly many times over,
    before any socket is looked at).
    """
    hub = gevent.get_hub()
    t = hub.loop.timer(0.0)
    try:
        hub.wait(t)
    finally:
        t.close()


class Connection:
    """A WebSocket connection, as its handler sees it.

    Made by :class:`~snowg.ws.WebSocketApp`; not instantiated by users.

    Attributes:
        id: a number unique among this node's connections.
        pid: the handler process's pid.
        peer: the client's ``(host, port)``.
        path: the request path (``PATH_INFO``).
        environ: the WSGI environ of the upgrade request (headers, query...).
        close_code: None while open; then the close code sent or received
            (1005: none in the client's frame; 1006: no close handshake).
        close_reason: the close reason (``''`` while open).
        finished: a ``gevent.event.Event`` set when the connection has ended.
        compression: the permessage-deflate parameters negotiated with the
            client, or None (messages go uncompressed).
        deflater: the sending side of the compression (None without it): what
            :meth:`snowg.ws._frames.MessageFrames.frame` takes.
    """

    def __init__(self, sock: Any, rfile: Any, environ: Dict[str, Any], options: Options) -> None:
        self.id: int = next(_ids)
        self.pid: Optional[Pid] = None
        self.environ = environ
        self.path: str = environ.get("PATH_INFO", "/")
        try:
            port = int(environ.get("REMOTE_PORT") or 0)
        except ValueError:
            port = 0
        self.peer: Tuple[str, int] = (environ.get("REMOTE_ADDR", "?"), port)
        self.close_code: Optional[int] = None
        self.close_reason: str = ""
        self.finished = Event()
        params = environ.get(ENVIRON_KEY)
        config = options.compression
        self.compression: Optional[DeflateParams] = None
        self.deflater: Optional[Deflater] = None
        self._inflater: Optional[Inflater] = None
        if type(params) is DeflateParams and config is not None:
            self.compression = params
            self.deflater = Deflater(params, config)
            self._inflater = Inflater(params)
        self._sock = sock
        self._rfile = rfile
        self._opts = options
        self._state = _OPEN
        self._out: Deque[bytes] = deque()
        self._queue_size = options.queue_size  # (read by room broadcasts, per member)
        # The writer parks as a runtime Task (like the cluster session writers):
        # waking it appends it to the ready queue, with no gevent Event, no
        # hub callback per connection and no allocation, so a broadcast to
        # many members hands the CPU from writer to writer directly.
        self._wtask = Task(None)
        self._close_queued = False
        self._close_written = False
        self._peer_closed = False
        self._failing = False  # failed (RFC 6455 7.1.7): drop the TCP connection right after the close frame
        self._reading = True  # the reader may read on (False once the connection fails or the client closed)
        self._inflight = 0
        self._credit = Event()
        self._reader_waiting = False
        self._closed_seen = False
        self._owner: Optional[Pid] = None
        self._reader: Optional[gevent.Greenlet[[], None]] = None
        self._writer: Optional[gevent.Greenlet[[], None]] = None
        self._ping_timer: Any = None
        self._pong_timer: Any = None
        self._close_timer: Any = None
        self._ping_seq = 0
        self._ping_payload = b""
        self._match = lambda m: (type(m) is WsMessage or type(m) is WsClosed) and m.conn is self
        self._opened_at = 0.0  # time.monotonic() when the handler started (the close event's duration)

    # ------------------------------------------------------------ public API

    def __repr__(self) -> str:
        host, port = self.peer
        return f"<snowg.ws.Connection {self.id} {host}:{port} {_STATE_NAMES[self._state]}>"

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed (sends are then dropped)."""
        return self._state != _OPEN

    @property
    def rooms(self) -> FrozenSet[str]:
        """The rooms this connection is in (a snapshot)."""
        return _rooms.rooms_of(self)

    def receive(self, timeout: Optional[float] = None) -> Optional[Data]:
        """The next message from the client: ``str`` (text) or ``bytes`` (binary).

        Takes this connection's next ``WsMessage`` from the calling process's
        mailbox (other messages stay there, in order). Blocks the handler
        process (only it) until a message arrives.

        Args:
            timeout: seconds to wait; None waits for ever, 0 only looks.

        Returns:
            The message, or None when the client has gone (the connection has
            ended; every later call returns None at once).

        Raises:
            snowg.Timeout: no message and no close within ``timeout``.
            RuntimeError: called by a process other than the handler.
        """
        if _self() != self.pid:
            raise RuntimeError("conn.receive() must be called by the connection's handler process")
        if self._closed_seen:
            return None
        ended = self._state == _CLOSED
        try:
            msg = receive(self._match, 0 if ended else timeout)
        except Timeout:
            if ended:
                self._closed_seen = True
                return None
            raise
        if type(msg) is WsClosed:
            self._closed_seen = True
            return None
        self._inflight -= 1
        if self._reader_waiting:
            self._credit.set()
        data: Data = msg.data
        return data

    def send(self, data: Data) -> bool:
        """Queue ``data`` for the client; never blocks.

        Compressed when the client negotiated permessage-deflate and the
        message has at least the app's ``compression_threshold`` bytes.

        Args:
            data: ``str`` (sent as a text message) or bytes-like (binary).

        Returns:
            True if queued; False if the connection is closing or closed, or
            its outbound queue was full (the connection is then closed with
            1008 and logged).

        Raises:
            TypeError: ``data`` is neither ``str`` nor bytes-like.
        """
        return self.enqueue(fr.encode_message(data, self.deflater))

    def close(self, code: int = fr.CLOSE_NORMAL, reason: str = "") -> None:
        """Start the close handshake; never blocks.

        Messages already queued are sent first, then the close frame; the
        connection ends when the client answers (or after ``close_timeout``).
        Closing a closed connection does nothing.

        Args:
            code: 1000-1003, 1007-1014 or 3000-4999.
            reason: at most 123 bytes of UTF-8.

        Raises:
            ValueError: an invalid code or a reason too long.
        """
        if not fr.is_valid_close_code(code):
            raise ValueError(f"invalid close code {code}")
        if len(reason.encode("utf-8")) > fr.MAX_CLOSE_REASON:
            raise ValueError(f"a close reason is at most {fr.MAX_CLOSE_REASON} bytes of UTF-8")
        self._begin_close(code, reason, code, reason, drop=False)

    def join(self, room: str) -> bool:
        """Join ``room`` (idempotent). Returns False (and does nothing) once closed.

        Raises:
            TypeError: ``room`` is not a ``str``.
        """
        if self._state != _OPEN:
            return False
        _rooms.join(self, room)
        return True

    def leave(self, room: str) -> None:
        """Leave ``room`` (nothing happens if not a member).

        Raises:
            TypeError: ``room`` is not a ``str``.
        """
        _rooms.leave(self, room)

    # ------------------------------------------------------------- lifecycle

    def _start(self, owner: Pid, pid: Pid) -> None:
        self._owner = owner
        self.pid = pid
        self._opened_at = time.monotonic()
        if _telemetry.WS_CONNECT in _telemetry.attached:
            _telemetry.execute(_telemetry.WS_CONNECT, {"count": 1}, self._event_metadata())
        self._writer = gevent.spawn(self._write_loop)
        self._reader = gevent.spawn(self._read_loop)
        interval = self._opts.ping_interval
        if interval is not None:
            self._ping_timer = _timer(interval, self._on_ping_tick, repeat=interval)

    def _handler_ended(self, reason: Any) -> None:
        """The handler process ended with ``reason``: close with 1000, 1001 or 1011."""
        if self._state != _OPEN:
            return
        if reason == "normal":
            code, why = fr.CLOSE_NORMAL, ""
        elif reason == "shutdown" or (type(reason) is tuple and reason and reason[0] == "shutdown"):
            code, why = fr.CLOSE_GOING_AWAY, "going away"
        else:
            code, why = fr.CLOSE_INTERNAL_ERROR, "internal error"
        self._begin_close(code, why, code, why, drop=False)

    def _wait_finished(self) -> None:
        """In the owner, after the end: let the writer flush, then stop both greenlets."""
        writer, reader = self._writer, self._reader
        if writer is not None and not writer.dead:
            writer.join(timeout=self._opts.close_timeout)
            if not writer.dead:
                self._shutdown_socket()
                writer.kill(block=True, timeout=1)
        self._shutdown_socket()
        if reader is not None and not reader.dead:
            reader.kill(block=True, timeout=1)

    def _shutdown_socket(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError):
            pass

    def _begin_close(self, code: int, reason: str, frame_code: Optional[int], frame_reason: str, drop: bool) -> None:
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self.close_code, self.close_reason = code, reason
        self._stop_pings()
        _rooms.leave_all(self)
        if drop:
            self._out.clear()
        self._out.append(fr.encode_close(frame_code, frame_reason))
        self._close_queued = True
        self._wtask.wake()
        if self._reader_waiting:
            self._credit.set()
        self._arm_close_timer(self._opts.close_timeout)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7); never blocks.

        Nothing more is read; the close frame goes out alone (what was queued
        is dropped) and the TCP connection is dropped right after it, or
        after ``FAIL_TIMEOUT`` if it cannot be written. On a connection
        already closing, only the reading stops and the time left shrinks.
        """
        self._stop_reading()
        if self._state == _CLOSED:
            return
        self._failing = True
        if self._state == _OPEN:
            self._begin_close(code, reason, code, reason, drop=True)
        if self._close_written:
            self.abort(reason)
        else:
            self._arm_close_timer(FAIL_TIMEOUT)

    def _stop_reading(self) -> None:
        """No frame is read after this; a reader waiting in the socket is stopped there."""
        self._reading = False
        reader = self._reader
        if reader is not None and not reader.dead and reader is not gevent.getcurrent():
            reader.kill(block=False)

    def _arm_close_timer(self, seconds: float) -> None:
        if self._close_timer is not None:
            self._close_timer.close()
        self._close_timer = _timer(min(seconds, self._opts.close_timeout), self._on_close_timeout)

    def _finish(self, code: int = fr.CLOSE_ABNORMAL, reason: str = "") -> None:
        """The connection has ended: leave rooms, tell the handler and the owner."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._reading = False
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._stop_pings()
        if self._close_timer is not None:
            self._close_timer.close()
            self._close_timer = None
        _rooms.leave_all(self)
        self._out.clear()
        self._wtask.wake()
        self._credit.set()
        if self.pid is not None:
            send(self.pid, WsClosed(self, self.close_code, self.close_reason))
        if self._owner is not None:
            send(self._owner, _Done(self))
        self.finished.set()
        if _telemetry.WS_CLOSE in _telemetry.attached and self._opened_at:  # (a connect event came first)
            meta = self._event_metadata()
            meta["code"], meta["reason"] = self.close_code, self.close_reason
            _telemetry.execute(_telemetry.WS_CLOSE, {"duration": time.monotonic() - self._opened_at}, meta)

    def _event_metadata(self) -> Dict[str, Any]:
        """The telemetry metadata of this connection's events."""
        return {"id": self.id, "pid": self.pid, "peer": self.peer, "path": self.path}

    def abort(self, why: str) -> None:
        """Drop the connection at once, without a close handshake (code 1006, reason ``why``); never blocks.

        Nothing more is read, and the TCP connection is reset when the server
        closes the socket (a client still sending is told at once, instead of
        waiting on a closed receive window).
        """
        self._stop_reading()
        self._drop_tcp()
        self._finish(fr.CLOSE_ABNORMAL, why)

    def _drop_tcp(self) -> None:
        """Shut the socket down now; its close (by the server, soon) resets the connection.

        A graceful close could leave a client that is still sending stuck on
        a receive window that never reopens until the kernel gives up.
        """
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except (OSError, ValueError, AttributeError):
            pass
        self._shutdown_socket()

    def _on_close_timeout(self) -> None:
        self._close_timer = None
        if self._state != _CLOSED:
            log.info("WebSocket %s: close handshake not done in time, connection dropped", self._label())
            self.abort("close handshake timed out")

    def _label(self) -> str:
        host, port = self.peer
        return f"connection {self.id} (peer {host}:{port}, handler {self.pid})"

    # ---------------------------------------------------------------- output

    def enqueue(self, frame: bytes, mark: Optional[object] = None) -> bool:
        """Queue an encoded frame (see ``_frames``); never blocks.

        For :meth:`send` and for room broadcasts, which encode a frame once
        for all the members (once per compression parameter set:
        ``_frames.MessageFrames(data).frame(conn.deflater)``). Returns False when closing or closed, or when
        the queue was full (the connection is then closed with 1008).

        A compressed frame (RSV1) sets ``deflater.last`` to ``mark`` (a room
        context's message; None: any other): here, in the same step as the
        append, so that the record follows the wire's order whichever
        greenlets queue frames.
        """
        if self._state != _OPEN:
            return False
        out = self._out
        if len(out) >= self._queue_size:
            self._overflow()
            return False
        out.append(frame)
        if frame[0] & 0x40:
            deflater = self.deflater
            if deflater is not None:
                deflater.last = mark
        self._wtask.wake()  # a no-op unless the writer is parked and not yet woken
        return True

    def _overflow(self) -> None:
        log.warning(
            "WebSocket %s: outbound queue full (%d frames), the client does not read; closing with %d",
            self._label(),
            self._opts.queue_size,
            CLOSE_OVERFLOW,
        )
        if _telemetry.WS_OVERFLOW in _telemetry.attached:
            _telemetry.execute(_telemetry.WS_OVERFLOW, {"queue_size": self._opts.queue_size}, self._event_metadata())
        self._fail(CLOSE_OVERFLOW, "outbound queue overflow")

    def _write_loop(self) -> None:
        out = self._out
        sock = self._sock
        sendall = sock.sendall
        # A plain (not TLS) gevent socket: one non-blocking send first, straight
        # to the OS socket gevent wraps (it is always non-blocking); gevent's
        # sendall (which waits for the socket, within its timeout) only for
        # what the kernel did not take. A broadcast wakes every member's
        # writer, and gevent's own layers cost more than the send itself.
        raw_send = sock._sock.send if type(sock) is gsocket.socket else None  # type: ignore[attr-defined]
        task = self._wtask
        task.glet = gevent.getcurrent()
        try:
            while self._state != _CLOSED:
                if not out:
                    task.park()
                    continue
                if len(out) == 1:
                    data = out.popleft()
                else:
                    data = b"".join(out)
                    out.clear()
                last = self._close_queued and not out  # nothing is queued after a close frame
                if raw_send is None:
                    sendall(data)
                else:
                    try:
                        sent = raw_send(data)
                    except BlockingIOError:  # the socket's buffer is full
                        sent = 0
                    if sent != len(data):
                        sendall(memoryview(data)[sent:])
                if last:
                    self._close_written = True
                    if self._peer_closed or self._failing:
                        # Our echo of the client's close (the handshake is
                        # complete), or a failed connection (RFC 6455 7.1.7):
                        # the TCP connection goes now, the server closing
                        # first. (Not reset: the client reads the close frame.)
                        self._shutdown_socket()
                        self._finish()
                    elif self._state == _CLOSING:
                        self._arm_close_timer(FAIL_TIMEOUT)  # for the client's close frame
                    return
        except gevent.GreenletExit:
            raise
        except Exception as e:  # noqa: BLE001 - any write failure ends the connection
            if self._state != _CLOSED:
                log.debug("WebSocket %s: write failed: %r", self._label(), e)
                self.abort(f"write failed: {e}")

    # ----------------------------------------------------------------- input

    def _read_loop(self) -> None:
        opts = self._opts
        reader = fr.FrameReader(self._rfile.read, opts.max_message_size, opts.max_fragments, READ_TURN, self._inflater)
        next_message = reader.next_message
        try:
            # Every way out of OPEN either clears _reading (failing, the
            # client's close) or leaves CLOSING, in which frames are read
            # only to find the client's close frame.
            while self._reading:
                if self._state == _OPEN and self._inflight >= opts.recv_queue_size:
                    self._wait_credit()
                    continue
                try:
                    op, value = next_message()
                except fr.FrameError as e:
                    if self._state == _OPEN:
                        log.info("WebSocket %s: closing with %d: %s", self._label(), e.code, e.reason)
                    self._fail(e.code, e.reason)
                    return
                if not self._reading:  # failed while this frame was being read
                    return  # type: ignore[unreachable]
                if op == fr.OP_TEXT or op == fr.OP_BINARY:
                    if self._state == _OPEN:
                        self._inflight += 1
                        send(self.pid, WsMessage(self, value))  # type: ignore[arg-type]
                elif op == fr.OP_YIELD:
                    _give_way()
                elif op == fr.OP_PING:
                    if self._state == _OPEN:
                        self.enqueue(fr.encode_frame(fr.OP_PONG, value))  # type: ignore[arg-type]
                elif op == fr.OP_PONG:
                    self._on_pong(value)  # type: ignore[arg-type]
                else:
                    self._reading = False  # nothing follows a close frame
                    self._on_peer_close(*value)  # type: ignore[misc]
                    return
        except gevent.GreenletExit:
            raise
        except Exception as e:  # noqa: BLE001 - EOF, reset, closed file: the client has gone
            if self._state != _CLOSED:
                log.debug("WebSocket %s: read ended: %r", self._label(), e)
                self.abort("connection lost")

    def _wait_credit(self) -> None:
        self._reader_waiting = True
        self._credit.clear()
        try:
            self._credit.wait(0.05)
        finally:
            self._reader_waiting = False
        if self._inflight >= self._opts.recv_queue_size and self._state == _OPEN:
            pid = self.pid
            info = None if pid is None else process_info(pid)
            if info is None:
                self._inflight = 0
            else:
                self._inflight = sum(1 for m in info["messages"] if type(m) is WsMessage and m.conn is self)

    def _on_peer_close(self, code: Optional[int], reason: str) -> None:
        self._peer_closed = True
        if self._state == _OPEN:
            # Echo the client's code (RFC 6455 5.5.1); what was still queued is dropped.
            recorded = fr.CLOSE_NO_STATUS if code is None else code
            self._begin_close(recorded, reason, code, "", drop=True)
            self._arm_close_timer(FAIL_TIMEOUT)
        elif self._state == _CLOSING and self._close_written:
            # The client's answer to our close frame: the handshake is complete.
            self._shutdown_socket()
            self._finish()
        # else: our close frame is still queued; the writer finishes after writing it.

    # ----------------------------------------------------------------- pings

    def _on_ping_tick(self) -> None:
        if self._state != _OPEN or self._pong_timer is not None:
            return
        self._ping_seq += 1
        self._ping_payload = struct.pack("!Q", self._ping_seq)
        if self.enqueue(fr.encode_frame(fr.OP_PING, self._ping_payload)):
            self._pong_timer = _timer(self._opts.ping_timeout, self._on_pong_timeout)

    def _on_pong(self, payload: bytes) -> None:
        if self._pong_timer is not None and payload == self._ping_payload:
            self._pong_timer.close()
            self._pong_timer = None

    def _on_pong_timeout(self) -> None:
        self._pong_timer = None
        if self._state == _OPEN:
            log.info("WebSocket %s: no pong within %.3g s, closing with 1001", self._label(), self._opts.ping_timeout)
            self._fail(fr.CLOSE_GOING_AWAY, "ping timeout")

    def _stop_pings(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.close()
            self._ping_timer = None
        if self._pong_timer is not None:
            self._pong_timer.close()
            self._pong_timer = None


def run_connection(conn: Connection, handler: Callable[[Connection], Any]) -> None:
    """Run ``conn`` in the calling greenlet, which becomes its owner process; return when it has ended.

    Spawns ``handler(conn)`` as a process (monitored), starts the reader and
    the writer, closes the connection when the handler ends (1000, 1001 or
    1011 by its reason) and waits for the close handshake, so that the
    server closes the socket only after it. Blocks the caller until the
    connection has ended; if the caller is killed meanwhile, the connection
    is dropped (1006) first.
    """
    ref = None
    try:
        owner = _self()
        pid, ref = spawn_monitor(handler, conn)
        conn._start(owner, pid)

        def mine(m: Any) -> bool:
            return (type(m) is Down and m.ref == ref) or (type(m) is _Done and m.conn is conn)

        while True:
            msg = receive(mine)
            if type(msg) is Down:
                ref = None
                conn._handler_ended(msg.reason)
            else:
                break
        conn._wait_finished()
    finally:
        if not conn.finished.is_set():
            conn.abort("server handler ended")
            conn._wait_finished()
        if ref is not None:
            demonitor(ref, flush=True)
