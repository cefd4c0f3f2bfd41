"""One Erlang distribution connection in its connected phase: a reader, a writer, ticks.

An :class:`ErlangConnection` is what snowg's router talks to for the pids and
names of one BEAM node (it implements ``snowg.cluster``'s ``ForeignPeer``).
It has the shape of a snowg session (``snowg/cluster/_session.py``), over a
socket that is plain TCP (``inet_tcp_dist``) or TLS (``inet_tls_dist``); the
connected phase is 4-byte length-prefixed packets in both:

* **The writer.** Senders append whole frames (made by
  :class:`~snowg.erlang._control.Encoder`) to a list and wake the writer
  task, which takes everything queued and writes it at once. Ordering
  between two processes follows from the single list. One shortcut: when the
  writer is idle (parked, the list empty, not finishing), the first frame
  queued in a hub iteration is offered to the socket by the sender itself,
  without blocking, and only what the socket did not take is queued (nothing
  can be ahead of it); the frames after it in the same iteration are queued
  and go in the writer's next batch. A request/response round trip then
  costs no switch to the writer and back, and the request leaves one hub
  iteration earlier; a sender that streams keeps its batches.
* **Backpressure** (Erlang's busy distribution port): a *process* sending a
  message while more than ``busy_limit`` bytes wait is suspended (its
  message queued first) until the writer brings the queue back under the
  bound. Signals (links, exits, monitors, spawn requests and replies, ticks)
  are never suspended, nor is anything sent from the hub or from a
  connection's reader: those queue over the bound.
* **The reader** cuts packets out of the stream
  (:class:`~snowg.erlang._dist_framing.Deframer`), parses each
  (:func:`~snowg.erlang._control.parse`) and brings the signal in through
  ``snowg._core.remote``; it never blocks on anything but the socket. A
  malformed packet closes the connection with one WARNING naming the peer.
* **Ticks**: a repeating hub timer every ``tick_time / 4`` queues a tick
  when nothing was sent since its last run (even while receiving: a BEAM
  node that streams to us sends no ticks, and declares us down if we only
  listen), and closes the connection with ``'net_tick_timeout'`` when nothing
  was received for ``tick_time``, or when the writer made no progress on the
  socket for ``tick_time``. Time during which this node's own loop was held
  up does not count (``snowg._core.stall``).
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from ssl import SSLEOFError, SSLWantReadError, SSLWantWriteError
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import gevent
from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError
from greenlet import getcurrent

from .._core import Atom, Pid, Ref, Task, is_alive, make_ref, receive, whereis
from .._core import remote as _remote
from .._core.busy import BusyWaiters, may_suspend, never_suspend
from .._core.stall import LoopStall
from .._core import self as _self
from .._errors import SpawnError
from . import _control
from ._dist_framing import CONNECTED_LENGTH, TICK, Deframer
from ._dist_framing import frame as _packet
from ._errors import ErlangProtocolError
from ._flags import DFLAG_UNLINK_ID
from ._io import GROUP_LEADER
from ._mapping import TermMap
from ._types import ImproperList

__all__ = ["GROUP_LEADER_NAME", "ErlangConnection"]

log = logging.getLogger("snowg")

#: The local name whose pid is sent as the group leader of spawn requests (the process ``_io`` registers).
GROUP_LEADER_NAME = GROUP_LEADER

_RECV_SIZE = 64 * 1024
_ALIAS = Atom("alias")


def _nothing_pending() -> int:
    return 0


class _SpawnAnswer(NamedTuple):
    """What the reader (or close) delivers to a process waiting in :meth:`ErlangConnection.spawn`."""

    req: Ref
    flags: int
    result: Any


def _is_alias_reply(msg: Any) -> bool:
    """True for ``{[alias | Ref], Reply}``, the reply to an OTP 24+ ``gen:call``."""
    if type(msg) is not tuple or len(msg) != 2:
        return False
    tag = msg[0]
    return type(tag) is ImproperList and len(tag.items) == 1 and tag.items[0] == _ALIAS and type(tag.tail) is Ref


class ErlangConnection:
    """A live distribution connection to the BEAM node ``node`` (after the handshake).

    Args:
        sock: the connected gevent socket (plain, or gevent's ``SSLSocket``).
        node: the peer's node name.
        peer_creation: the peer's creation, from the handshake.
        peer_flags: the peer's distribution flags, from the handshake.
        tm: how terms cross to this peer.
        initial_data: bytes read right after the handshake (the first packets).
        tick_time: ``net_ticktime`` in seconds (see the module docstring).
        busy_limit: queued bytes over which a sending process is suspended.
        max_packet: the largest packet accepted from the peer.
        outgoing: True when this node dialled.
        on_closed: called once with ``(connection, reason)`` when it ends.
        on_spawn_request: called in the reader with each ``SpawnRequest``; must not block.
    """

    def __init__(
        self,
        sock: Any,
        *,
        node: str,
        peer_creation: int,
        peer_flags: int,
        tm: TermMap,
        initial_data: bytes = b"",
        tick_time: float = 60.0,
        busy_limit: int = 1 << 20,
        max_packet: int = 128 << 20,
        outgoing: bool,
        on_closed: Callable[["ErlangConnection", str], None],
        on_spawn_request: Callable[["ErlangConnection", "_control.SpawnRequest"], None],
    ) -> None:
        if tick_time <= 0:
            raise ValueError(f"tick_time must be positive, not {tick_time}")
        self.sock = sock
        self.node = node
        self.peer_creation = peer_creation
        self.peer_flags = peer_flags
        self.tm = tm
        self.tick_time = tick_time
        self.busy_limit = busy_limit
        self.max_packet = max_packet
        self.outgoing = outgoing
        self.closed = False
        self.close_reason: Optional[str] = None
        self._enc = _control.Encoder(tm, peer_flags)
        self._unlink_id = bool(peer_flags & DFLAG_UNLINK_ID)
        self._on_closed = on_closed
        self._on_spawn_request = on_spawn_request
        self._initial = initial_data
        self._deframer = Deframer(CONNECTED_LENGTH, max_packet, what=f"distribution connection of {node}")
        self._out: List[bytes] = []
        #: Bytes queued (in the list or in the writer's hands) not yet taken by the socket.
        self.queued = 0
        self._busy_waiters = BusyWaiters()
        self._writer_task = Task(None)
        # The non-blocking write of the object under gevent's socket (see _queue and _write_loop).
        tls = getattr(sock, "_sslobj", None)
        self._write_now: Callable[[Any], int] = tls.write if tls is not None else getattr(sock, "_sock", sock).send
        self._direct_ok = True
        self._loop = gevent.get_hub().loop
        self._finishing = False
        self._flushed = Event()
        self._closed_event = Event()
        # Activity counters the tick timer compares between its runs.
        self.writes = 0
        self.reads = 0
        self._writes_seen = 0
        self._reads_seen = 0
        self._last_recv = time.monotonic()
        self._stall: LoopStall  # made by start(), with the tick timer it watches
        # Since when the writer waits for the socket with no progress (None while it does not).
        self._write_stalled_since: Optional[float] = None
        self._unlink_ids = itertools.count(1)
        #: UNLINK_IDs sent and not yet acknowledged: id -> (local pid, remote pid).
        self.pending_unlinks: Dict[int, Tuple[Pid, Pid]] = {}
        # Processes waiting in spawn(): req_id -> the caller.
        self._spawners: Dict[Ref, Pid] = {}
        self._writer: Optional[gevent.Greenlet[[], None]] = None
        self._reader: Optional[gevent.Greenlet[[], None]] = None
        self._ticker: Any = None
        self._dispatch: Dict[type, Callable[[Any], None]] = {
            _control.Send: self._on_send,
            _control.RegSend: self._on_reg_send,
            _control.AliasSend: self._on_alias_send,
            _control.Link: self._on_link,
            _control.ExitSignal: self._on_exit,
            _control.Exit2Signal: self._on_exit2,
            _control.Unlink: self._on_unlink,
            _control.UnlinkId: self._on_unlink_id,
            _control.UnlinkIdAck: self._on_unlink_id_ack,
            _control.MonitorP: self._on_monitor,
            _control.DemonitorP: self._on_demonitor,
            _control.MonitorPExit: self._on_monitor_exit,
            _control.SpawnRequest: self._on_spawn_req,
            _control.SpawnReply: self._on_spawn_reply,
            _control.GroupLeader: self._on_group_leader,
        }
        try:
            peer = sock.getpeername()
            self.peer_socket = f"{peer[0]}:{peer[1]}"
        except (OSError, AttributeError, IndexError, TypeError):
            self.peer_socket = "?"

    def __repr__(self) -> str:
        return f"<ErlangConnection {self.node} ({self.peer_socket})>"

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Start the reader and writer greenlets and the tick timer; never blocks."""
        self._writer = gevent.spawn(self._write_loop)
        self._reader = gevent.spawn(self._read_loop)
        never_suspend(self._reader)
        interval = self.tick_time / 4.0
        self._stall = LoopStall(interval, time.monotonic())
        self._ticker = gevent.get_hub().loop.timer(interval, interval)
        self._ticker.start(self._on_tick)

    def close(self, reason: str, detail: str = "", level: int = logging.INFO) -> None:
        """Close the connection once (later calls do nothing); ``on_closed(self, reason)`` is called once.

        What is queued and not sent is lost, as in Erlang. Processes suspended
        on the busy queue are woken; processes waiting for a spawn reply get
        ``'noconnection'``. Never blocks.
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.log(
            level,
            "Erlang distribution connection with %s (%s) closed: %s%s",
            self.node,
            self.peer_socket,
            reason,
            f" ({detail})" if detail else "",
        )
        if self._ticker is not None:
            self._ticker.close()
        self._out = []
        self.queued = 0
        self._busy_waiters.wake_all()
        self._writer_task.wake()
        spawners, self._spawners = self._spawners, {}
        for req, caller in spawners.items():
            _remote.deliver_to(caller, _SpawnAnswer(req, 0, Atom("noconnection")))
        try:
            self._on_closed(self, reason)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            current = getcurrent()
            for glet in (self._writer, self._reader):
                if glet is not None and glet is not current and not glet.dead:
                    glet.kill(block=False)
            self._flushed.set()
            self._closed_event.set()

    def finish(self, timeout: float) -> None:
        """Send what is queued now, end our side of the stream, then close (``stop_node``).

        Blocks the caller until the peer has closed its side too or
        ``timeout`` seconds passed, then closes with ``'disconnect'``. Frames
        queued after the writer's last batch are not sent.
        """
        if self.closed:
            return
        deadline = time.monotonic() + timeout
        self._finishing = True
        self._writer_task.wake()
        self._flushed.wait(max(0.0, deadline - time.monotonic()))
        self._closed_event.wait(max(0.0, deadline - time.monotonic()))
        self.close("disconnect", "this node stopped")

    def wait_closed(self, timeout: Optional[float]) -> bool:
        """Block the caller until the connection is closed, at most ``timeout`` s; True if it is."""
        return bool(self._closed_event.wait(timeout))

    # --------------------------------------------------------------- queueing

    def _queue(self, frame: bytes) -> None:
        """Queue a whole frame; never blocks (even over the bound); nothing when closed.

        When the writer is idle (parked, nothing queued, not finishing), the
        frame is offered to the socket here, without blocking: what it does
        not take at once is queued for the writer as usual. Nothing can be
        ahead of it then, so ordering is that of the single list still.
        """
        if self.closed:
            return
        task = self._writer_task
        if self._direct_ok and task.parked and not task.ready and not self._out and not self._finishing:
            # One direct write per hub iteration: the frames that follow it before the
            # sender yields are queued, and the writer sends them at once (a sender
            # that streams keeps one write per batch, not one per frame).
            self._direct_ok = False
            self._loop.run_callback(self._reopen_direct)
            try:
                written = self._write_now(frame)
            except (SSLWantWriteError, SSLWantReadError, BlockingIOError):
                written = 0  # the writer retries it first, and waits for the socket
            except (OSError, ValueError):
                written = 0  # the writer meets the error again and closes the connection
            if written:
                self.writes += 1
                if written == len(frame):
                    return
                frame = frame[written:]  # plain TCP only: TLS writes whole or raises
        self._out.append(frame)
        self.queued += len(frame)
        if task.parked and not task.ready:
            task.wake()

    def _reopen_direct(self) -> None:
        self._direct_ok = True

    def _queue_message(self, frame: bytes) -> None:
        """Queue a process's message; suspends the caller while more than ``busy_limit`` bytes wait."""
        if self.closed:
            return
        self._queue(frame)
        if self.queued > self.busy_limit:
            self._wait_while_busy()

    @property
    def suspended_senders(self) -> int:
        """How many senders wait for this connection's queue to drain."""
        return len(self._busy_waiters)

    def _wait_while_busy(self) -> None:
        if may_suspend():
            self._busy_waiters.wait(lambda: self.queued > self.busy_limit and not self.closed)

    def _write_loop(self) -> None:
        sock = self.sock
        task = self._writer_task
        task.glet = getcurrent()
        # Through the object under gevent's socket, as the reader (see _read_loop).
        wait = sock._wait  # noqa: SLF001
        write_event = sock._write_event  # noqa: SLF001
        tls = getattr(sock, "_sslobj", None)
        write = tls.write if tls is not None else sock._sock.send  # noqa: SLF001
        try:
            while not self.closed:
                if not self._out:
                    if self._finishing:
                        self._end_stream()
                        return
                    task.park()
                    continue
                last = self._finishing
                batch, self._out = self._out, []
                data: Union[bytes, memoryview] = batch[0] if len(batch) == 1 else b"".join(batch)
                while True:
                    try:
                        written = write(data)
                    except (SSLWantWriteError, BlockingIOError):
                        if self._write_stalled_since is None:
                            self._write_stalled_since = time.monotonic()
                        wait(write_event)
                        continue
                    except SSLWantReadError:
                        # Only a TLS renegotiation does this; the reader owns the read watcher.
                        gevent.sleep(0.001)
                        continue
                    self._write_stalled_since = None
                    self.queued -= written
                    if self._busy_waiters and self.queued <= self.busy_limit and not self._finishing:
                        self._busy_waiters.wake_all()
                    if written == len(data):
                        break
                    data = memoryview(data)[written:]
                self.writes += 1
                if last:
                    self._end_stream()
                    return
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            self.close("connection_closed", f"write failed: {exc}")

    def _end_stream(self) -> None:
        """Everything queued is written: end our direction; the peer reads to the end and closes."""
        self._flushed.set()
        raw = getattr(self.sock, "_sock", self.sock)  # under TLS: the TCP socket (no TLS shutdown)
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.close("disconnect", f"this node stopped ({exc})")

    # -------------------------------------------------------------- receiving

    def _read_loop(self) -> None:
        sock = self.sock
        deframer = self._deframer
        parse = _control.parse
        tm = self.tm
        dispatch = self._dispatch
        # As snowg's sessions do: read through the object under gevent's socket
        # (the TLS object, or the plain non-blocking socket) and wait on the
        # socket's own read watcher, which is what gevent's recv does underneath;
        # after a batch, wait for the socket first instead of reading until
        # EAGAIN (a failed read, and its exception, saved per request/response).
        wait = sock._wait  # noqa: SLF001 - gevent's socket, driven as _session does
        read_event = sock._read_event  # noqa: SLF001
        tls = getattr(sock, "_sslobj", None)
        if tls is not None:
            read = tls.read
            pending = tls.pending
        else:
            read = sock._sock.recv  # noqa: SLF001
            pending = _nothing_pending
        try:
            data = self._initial
            self._initial = b""
            while not self.closed:
                if data:
                    deframer.receive_data(data)
                    while not self.closed:
                        packet = deframer.next_message()
                        if packet is None:
                            break
                        if not packet:
                            continue  # a tick
                        event = parse(packet, tm)
                        if event is not None:
                            dispatch[type(event)](event)
                    if not pending():
                        wait(read_event)
                        if self.closed:  # close() ran while we waited
                            return  # type: ignore[unreachable]
                try:
                    data = read(_RECV_SIZE)
                except (SSLWantReadError, BlockingIOError):
                    data = b""
                    wait(read_event)
                    continue
                except SSLEOFError:
                    data = b""
                if not data:
                    self._on_end_of_stream("the peer closed the connection")
                    return
                self.reads += 1
        except ErlangProtocolError as exc:
            self.close("protocol_error", f"malformed packet from {self.node}: {exc}", level=logging.WARNING)
        except (OSError, ValueError, ConcurrentObjectUseError) as exc:
            if not self.closed:
                self._on_end_of_stream(f"read failed: {exc}")
        except Exception:  # a bug here must not leave a connection that reads nothing
            log.exception("Erlang distribution connection with %s: reader failed", self.node)
            self.close("internal_error", "the reader failed (logged above)", level=logging.ERROR)

    def _on_end_of_stream(self, how: str) -> None:
        pending = len(self._deframer.pending)
        if self._finishing:
            self.close("disconnect", "this node stopped")
        elif pending:
            self.close(
                "protocol_error",
                f"{how} in the middle of a packet from {self.node} ({pending} bytes of a truncated packet)",
                level=logging.WARNING,
            )
        else:
            self.close("connection_closed", how)

    def _check_from(self, pid: Any, what: str) -> None:
        if type(pid) is not Pid or pid.node != self.node:
            raise ErlangProtocolError(f"{what} from {self.node} claims to come from {pid!r}, not one of its processes")

    def _on_send(self, ev: "_control.Send") -> None:
        _remote.deliver_to(ev.to, ev.msg)

    def _on_reg_send(self, ev: "_control.RegSend") -> None:
        _remote.deliver_to_name(ev.name, ev.msg)  # nobody has the name: dropped, as in Erlang

    def _on_alias_send(self, ev: "_control.AliasSend") -> None:
        log.debug("ALIAS_SEND from %s to alias %r dropped (snowg processes have no aliases)", self.node, ev.alias)

    def _on_link(self, ev: "_control.Link") -> None:
        self._check_from(ev.from_, "LINK")
        if not _remote.incoming_link(ev.from_, ev.to):
            self._queue(self._enc.exit(ev.to, ev.from_, "noproc"))

    def _on_exit(self, ev: "_control.ExitSignal") -> None:
        self._check_from(ev.from_, "EXIT")
        _remote.incoming_link_exit(ev.from_, ev.to, ev.reason)

    def _on_exit2(self, ev: "_control.Exit2Signal") -> None:
        self._check_from(ev.from_, "EXIT2")
        _remote.incoming_exit2(ev.from_, ev.to, ev.reason)

    def _on_unlink(self, ev: "_control.Unlink") -> None:
        self._check_from(ev.from_, "UNLINK")
        _remote.incoming_unlink(ev.from_, ev.to)

    def _on_unlink_id(self, ev: "_control.UnlinkId") -> None:
        self._check_from(ev.from_, "UNLINK_ID")
        _remote.incoming_unlink(ev.from_, ev.to)
        # Queued now, in the reader: it precedes anything else we send to that process.
        self._queue(self._enc.unlink_id_ack(ev.id, ev.to, ev.from_))

    def _on_unlink_id_ack(self, ev: "_control.UnlinkIdAck") -> None:
        self.pending_unlinks.pop(ev.id, None)

    def _on_monitor(self, ev: "_control.MonitorP") -> None:
        self._check_from(ev.from_, "MONITOR_P")
        # _core tells names from pids by type: a name must be a plain str, not an Atom.
        target = ev.target if type(ev.target) is Pid else str(ev.target)
        if _remote.incoming_monitor(ev.from_, target, ev.ref) is not None:
            self._queue(self._enc.monitor_p_exit(ev.target, ev.from_, ev.ref, "noproc"))

    def _on_demonitor(self, ev: "_control.DemonitorP") -> None:
        self._check_from(ev.from_, "DEMONITOR_P")
        _remote.incoming_demonitor(ev.from_, ev.target if type(ev.target) is Pid else str(ev.target), ev.ref)

    def _on_monitor_exit(self, ev: "_control.MonitorPExit") -> None:
        source = ev.from_
        if type(source) is Pid:
            self._check_from(source, "MONITOR_P_EXIT")
            reported: Any = source
        else:
            reported = (str(source), self.node)
        _remote.incoming_down(ev.to, ev.ref, reported, ev.reason)

    def _on_spawn_req(self, ev: "_control.SpawnRequest") -> None:
        self._check_from(ev.from_, "SPAWN_REQUEST")
        self._on_spawn_request(self, ev)

    def _on_spawn_reply(self, ev: "_control.SpawnReply") -> None:
        self._spawners.pop(ev.req_id, None)
        result = ev.result
        if type(result) is Pid:
            self._check_from(result, "SPAWN_REPLY")
            if is_alive(ev.to):
                # Here in the reader, before any later signal of the new process is handled.
                if ev.flags & _control.SPAWN_FLAG_LINK:
                    _remote.add_outgoing_link(ev.to, result)
                if ev.flags & _control.SPAWN_FLAG_MONITOR:
                    _remote.add_outgoing_monitor(ev.to, result, ev.req_id)
            else:
                # The spawner is gone: undo what the peer set up for it.
                if ev.flags & _control.SPAWN_FLAG_LINK:
                    self._queue(self._enc.exit(ev.to, result, "noproc"))
                if ev.flags & _control.SPAWN_FLAG_MONITOR:
                    self._queue(self._enc.demonitor_p(ev.to, result, ev.req_id))
                return
        _remote.deliver_to(ev.to, _SpawnAnswer(ev.req_id, ev.flags, result))

    def _on_group_leader(self, ev: "_control.GroupLeader") -> None:
        pass  # snowg processes have no group leaders

    # ----------------------------------------------------------------- ticks

    def _on_tick(self) -> None:
        if self.closed:
            return
        now = time.monotonic()
        # Time this node's loop was held up is not the peer's silence (snowg._core.stall).
        self._last_recv, self._write_stalled_since = self._stall.excuse(now, self._last_recv, self._write_stalled_since)
        if self.reads != self._reads_seen:
            self._reads_seen = self.reads
            self._last_recv = now
        elif now - self._last_recv >= self.tick_time:
            # close() may switch greenlets (closing the socket wakes waiters): not in the hub's timer.
            gevent.spawn(self.close, "net_tick_timeout", f"nothing received for {now - self._last_recv:.1f} s")
            return
        started = self._write_stalled_since
        if started is not None and now - started >= self.tick_time:
            gevent.spawn(
                self.close,
                "net_tick_timeout",
                f"writes made no progress for {now - started:.1f} s with {self.queued} bytes queued",
            )
            return
        if self.writes != self._writes_seen:
            self._writes_seen = self.writes
        elif not self.queued:
            before = self.writes
            self._queue(TICK)  # written at once when the writer is idle (see _queue), else by the writer
            # The tick's own write is not "something sent" for the next run.
            self._writes_seen = before + 1

    # --------------------------------------------------- ForeignPeer (router)

    def _ours(self, pid: Pid) -> bool:
        return pid.node == self.node and pid.creation == self.peer_creation

    def send(self, pid: Pid, msg: Any) -> None:
        """Send ``msg`` to the peer's process ``pid``.

        A ``{[alias | Ref], Reply}`` message (the reply to an OTP 24+
        ``gen:call``) goes to the alias ``Ref`` as ``gen:reply`` does. Blocks
        only a process that finds the connection busy (until it drains).
        Dropped when the connection is closed or ``pid`` is of another
        incarnation of the node.

        Raises:
            TypeError: ``msg`` has no Erlang form (nothing is sent).
        """
        if _is_alias_reply(msg):
            frame = self._enc.alias_send(self._sender(), msg[0].tail, msg)
        else:
            frame = self._enc.send(self._sender(), pid, msg)
        if self._ours(pid):
            self._queue_message(frame)

    def send_name(self, name: str, msg: Any, from_pid: Optional[Pid]) -> None:
        """Send ``msg`` to the process registered as ``name`` on the peer (REG_SEND); blocks as :meth:`send`.

        Raises:
            TypeError: ``msg`` has no Erlang form (nothing is sent).
        """
        self._queue_message(self._enc.reg_send(from_pid, name, msg))

    def link(self, from_pid: Pid, to_pid: Pid) -> None:
        """``from_pid`` (local) links to ``to_pid``; never blocks. The link is already recorded locally."""
        if self.closed:
            _remote.incoming_link_exit(to_pid, from_pid, "noconnection")
        elif to_pid.creation != self.peer_creation:
            _remote.link_noproc(to_pid, from_pid)
        else:
            self._queue(self._enc.link(from_pid, to_pid))

    def unlink(self, from_pid: Pid, to_pid: Pid) -> None:
        """``from_pid`` (local) unlinks ``to_pid`` (UNLINK_ID, or old UNLINK for old peers); never blocks."""
        if self.closed:
            return
        if self._unlink_id:
            uid = next(self._unlink_ids)
            self.pending_unlinks[uid] = (from_pid, to_pid)
            self._queue(self._enc.unlink_id(uid, from_pid, to_pid))
        else:
            # UNLINK {4, From, To}: OTP 26 dropped it, so the Encoder does not make it.
            self._queue(_packet(b"p" + self.tm.encode((4, from_pid, to_pid))))

    def exit_link(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        """``from_pid`` (local) ended with ``reason`` while linked to ``to_pid``; never blocks."""
        self._queue(self._exit_frame(self._enc.exit, from_pid, to_pid, reason))

    def exit2(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        """``exit(to_pid, reason)`` called by ``from_pid``; never blocks.

        Raises:
            TypeError: ``reason`` has no Erlang form.
        """
        frame = self._enc.exit2(from_pid, to_pid, reason)
        if self._ours(to_pid):
            self._queue(frame)

    def monitor(self, from_pid: Pid, target: Union[Pid, Tuple[str, str]], ref: Ref) -> None:
        """``from_pid`` (local) monitors ``target`` (a pid, or ``(name, node)``); never blocks."""
        if self.closed:
            _remote.incoming_down(from_pid, ref, target, "noconnection")
        elif isinstance(target, Pid):
            if target.creation != self.peer_creation:
                _remote.incoming_down(from_pid, ref, target, "noproc")
            else:
                self._queue(self._enc.monitor_p(from_pid, target, ref))
        else:
            self._queue(self._enc.monitor_p(from_pid, target[0], ref))

    def demonitor(self, from_pid: Pid, target: Union[Pid, Tuple[str, str]], ref: Ref) -> None:
        """``from_pid`` (local) drops its monitor ``ref`` on ``target``; never blocks."""
        wire = target if isinstance(target, Pid) else target[0]
        self._queue(self._enc.demonitor_p(from_pid, wire, ref))

    def monitor_exit(self, target: Any, watcher: Pid, ref: Ref, reason: Any) -> None:
        """A local process the peer's ``watcher`` monitored ended (MONITOR_P_EXIT); never blocks.

        ``target`` is what the watcher named: a pid, a name, or ``(name, node)``.
        """
        if type(target) is tuple:
            target = target[0]
        self._queue(self._exit_frame(self._enc.monitor_p_exit, target, watcher, ref, reason))

    def _exit_frame(self, make: Callable[..., bytes], *args: Any) -> bytes:
        """A frame whose last argument is a reason; a reason with no Erlang form goes as its repr."""
        try:
            return make(*args)
        except (TypeError, ValueError):
            return make(*args[:-1], repr(args[-1]))

    def _sender(self) -> Optional[Pid]:
        """The calling process's pid, or None (pid 0 on the wire) when no process calls.

        Read without adopting the greenlet as a process, as ``_core``'s ``send``
        does (the hub, a reader or a plain greenlet may send too).
        """
        proc = getattr(getcurrent(), "_snowg_proc", None)
        return None if proc is None else proc.pid

    def spawn(self, fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], opts: Tuple[str, ...]) -> Any:
        """Spawn ``fn(*args)`` on the peer; blocks the calling process until the peer answers.

        Args:
            fn: ``("mod", "fun")`` or ``"mod:fun"``.
            args: the arguments (an Erlang list).
            kwargs: must be empty (Erlang has no keyword arguments).
            opts: ``'link'`` and/or ``'monitor'``.

        Returns:
            The new pid, or ``(pid, ref)`` for a monitor (``ref`` is the monitor's).
            When the connection is lost, as snowg's router does for
            ``'noconnection'`` (a pid never alive, and the exit or ``Down``).

        Raises:
            TypeError: ``fn`` is not a module and function, ``kwargs`` is not
                empty, or an argument has no Erlang form (nothing is sent).
            SpawnError: the peer refused (the error atom, e.g. ``badarg``).
        """
        if kwargs:
            raise TypeError(f"spawn on the Erlang node {self.node}: Erlang has no keyword arguments ({sorted(kwargs)})")
        if isinstance(fn, str) and fn.count(":") == 1:
            module, function = fn.split(":")
        elif type(fn) is tuple and len(fn) == 2 and all(isinstance(x, str) for x in fn):
            module, function = fn
        else:
            raise TypeError(f"spawn on the Erlang node {self.node} takes ('mod', 'fun') or 'mod:fun', not {fn!r}")
        caller = _self()
        req = make_ref()
        leader = whereis(GROUP_LEADER_NAME) or caller
        wire_opts = [Atom(o) for o in ("link", "monitor") if o in opts]
        frame = self._enc.spawn_request(req, caller, leader, module, function, list(args), wire_opts)
        node_pid = Pid(self.node, 0, 0)
        if self.closed:
            return _remote.fail_remote_spawn(node_pid, req, opts)
        self._spawners[req] = caller
        self._queue(frame)
        answer = receive(lambda m: type(m) is _SpawnAnswer and m.req == req)
        result = answer.result
        if type(result) is Pid:
            return (result, req) if "monitor" in opts else result
        if result == "noconnection":
            return _remote.fail_remote_spawn(node_pid, req, opts)
        raise SpawnError(f"spawn of {module}:{function}/{len(args)} on {self.node} refused: {result}")

    def send_spawn_reply(self, req_id: Ref, to: Pid, flags: int, result: Any) -> None:
        """Answer the peer's spawn request ``req_id`` (SPAWN_REPLY); never blocks."""
        self._queue(self._enc.spawn_reply(req_id, to, flags, result))
