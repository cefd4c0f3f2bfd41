"""The remote router: how ``send``, ``link``, ``monitor``, ``exit`` and ``spawn`` reach other nodes.

``_core`` calls the router installed by ``start_node`` whenever a pid's node
is not this node. Each method turns the signal into one frame queued on the
peer's session, and never blocks, with two exceptions: :meth:`Router.spawn`
waits for the spawn reply as Erlang's ``spawn`` does, and a process that sends
a message (``send``, ``send`` to ``(name, node)``) to a session holding more
than its ``dist_buffer_size`` is suspended until that queue drains (Erlang's
busy distribution port; see :meth:`Session.wait_while_busy`). Links, exits and
monitors are the runtime's own signals: queued even over the bound, never
suspending. A node with no snowg session may have a connection in another
protocol (a BEAM node, :mod:`snowg.cluster._foreign`): then the signal goes
to it. A signal for a node that is
not connected, or for a pid of an earlier run of a node (another creation),
is answered here as Erlang does: ``'noconnection'`` or ``'noproc'``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .._core import make_ref, receive
from .._core import remote as _remote
from .._core import self as _self
from .._core.terms import Pid, Ref
from .._errors import SpawnError
from ._frames import DEMONITOR, EXIT, EXIT2, LINK, MONITOR, MONITOR_EXIT, SEND, SEND_NAME, UNLINK
from ._foreign import ForeignPeer
from ._framing import FrameTooLarge, encode_frame
from ._framing import _LEN, _MAX_U32, _pack
from ._session import Session
from ._spawn import SpawnReply, send_request
from ._spawnable import wire_name

__all__ = ["Router"]

_enc = encode_frame


def _enc_exit(frame: List[Any]) -> bytes:
    """Encode a frame whose last field is an exit reason; a reason that cannot cross goes as its repr.

    An exit must never fail to be sent. The reason is encoded once (not
    checked alone first): a remote child's end, an rpc runner's outcome.
    """
    try:
        return _enc(frame)
    except (TypeError, ValueError):
        frame[-1] = repr(frame[-1])
        return _enc(frame)


class Router(_remote.RemoteRouter):
    """Carries signals for pids of other nodes over the node's sessions, or its foreign peers.

    Args:
        sessions: the running node's live sessions by node name (read, never changed).
        max_frame_size: the node's frame limit; a message whose frame is larger
            is refused in the sender (a peer with the same limit would close the
            session on it, and everything queued behind it would be lost).
        foreign: the node's connections in other protocols by node name (read,
            never changed): consulted only when no session has the node.
    """

    def __init__(
        self, sessions: Dict[str, Session], max_frame_size: int, foreign: Optional[Dict[str, Any]] = None
    ) -> None:
        self._sessions = sessions
        self._max_frame = max_frame_size + 4  # the limit is on the body; a frame has a 4-byte length
        self._max_body = min(max_frame_size, _MAX_U32)
        self._foreign: Dict[str, ForeignPeer] = foreign if foreign is not None else {}

    def _body_too_large(self, n: int) -> Exception:
        """The error encode_frame and then :meth:`_too_large` give for a body of ``n`` bytes."""
        if n > _MAX_U32:
            return FrameTooLarge(f"frame of {n} bytes is over the maximum frame size of {_MAX_U32} bytes")
        return ValueError(
            f"message of {n} bytes encoded is over max_frame_size ({self._max_frame - 4} bytes):"
            " send it in parts, or start every node with a larger max_frame_size"
        )

    def _too_large(self, frame: bytes) -> ValueError:
        return ValueError(
            f"message of {len(frame) - 4} bytes encoded is over max_frame_size ({self._max_frame - 4} bytes):"
            " send it in parts, or start every node with a larger max_frame_size"
        )

    def is_foreign(self, node: str) -> bool:
        return node not in self._sessions and node in self._foreign

    def send(self, pid: Pid, msg: Any) -> None:
        sess = self._sessions.get(pid.node)
        if sess is None:
            peer = self._foreign.get(pid.node)
            if peer is not None:
                peer.send(pid, msg)  # TypeError there, in the sender, for terms that cannot cross
                return
        # encode_frame([SEND, pid, msg]) spelled out (every remote message comes
        # this way): the same bytes, the same errors.
        try:
            body = _pack([SEND, pid, msg])  # TypeError here, in the sender, for terms that cannot cross
        except RecursionError as exc:  # msgpack's pure-Python fallback recurses
            raise ValueError("frame nested too deeply to encode") from exc
        n = len(body)
        if n > self._max_body:
            raise self._body_too_large(n)
        if sess is not None and sess.peer_creation == pid.creation:
            sess.send_message(_LEN.pack(n) + body)  # suspends the caller while the session is over its bound

    def send_name(self, name: str, node: str, msg: Any, from_pid: Optional[Pid]) -> None:
        sess = self._sessions.get(node)
        if sess is None:
            peer = self._foreign.get(node)
            if peer is not None:
                peer.send_name(name, msg, from_pid)
                return
        frame = _enc([SEND_NAME, from_pid, name, msg])
        if len(frame) > self._max_frame:
            raise self._too_large(frame)
        if sess is not None:
            sess.send_message(frame)

    def link(self, from_pid: Pid, to_pid: Pid) -> None:
        sess = self._sessions.get(to_pid.node)
        if sess is None:
            peer = self._foreign.get(to_pid.node)
            if peer is None:
                _remote.incoming_link_exit(to_pid, from_pid, "noconnection")
            elif peer.peer_creation != to_pid.creation:
                _remote.link_noproc(to_pid, from_pid)
            else:
                peer.link(from_pid, to_pid)
        elif sess.peer_creation != to_pid.creation:
            _remote.link_noproc(to_pid, from_pid)
        else:
            sess.send(_enc([LINK, from_pid, to_pid]))

    def unlink(self, from_pid: Pid, to_pid: Pid) -> None:
        sess = self._sessions.get(to_pid.node)
        if sess is not None:
            sess.send(_enc([UNLINK, from_pid, to_pid]))
            return
        peer = self._foreign.get(to_pid.node)
        if peer is not None:
            peer.unlink(from_pid, to_pid)

    def exit_link(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        sess = self._sessions.get(to_pid.node)
        if sess is not None:
            sess.send(_enc_exit([EXIT, from_pid, to_pid, reason]))
            return
        peer = self._foreign.get(to_pid.node)
        if peer is not None:
            peer.exit_link(from_pid, to_pid, reason)

    def exit2(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        sess = self._sessions.get(to_pid.node)
        if sess is None:
            peer = self._foreign.get(to_pid.node)
            if peer is not None:
                if peer.peer_creation == to_pid.creation:
                    peer.exit2(from_pid, to_pid, reason)
                return
        frame = _enc([EXIT2, from_pid, to_pid, reason])
        if sess is not None and sess.peer_creation == to_pid.creation:
            sess.send(frame)

    def monitor(self, from_pid: Pid, target: Union[Pid, Tuple[str, str]], ref: Ref) -> None:
        node_name, wire_target = _where(target)
        sess = self._sessions.get(node_name)
        if sess is None:
            peer = self._foreign.get(node_name)
            if peer is None:
                _remote.incoming_down(from_pid, ref, target, "noconnection")
            elif type(target) is Pid and peer.peer_creation != target.creation:
                _remote.incoming_down(from_pid, ref, target, "noproc")
            else:
                peer.monitor(from_pid, target, ref)  # a Pid, or (name, node) as _core gave it
        elif type(target) is Pid and sess.peer_creation != target.creation:
            _remote.incoming_down(from_pid, ref, target, "noproc")
        else:
            sess.send(_enc([MONITOR, from_pid, wire_target, ref]))

    def demonitor(self, from_pid: Pid, target: Union[Pid, Tuple[str, str]], ref: Ref) -> None:
        node_name, wire_target = _where(target)
        sess = self._sessions.get(node_name)
        if sess is not None:
            sess.send(_enc([DEMONITOR, from_pid, wire_target, ref]))
            return
        peer = self._foreign.get(node_name)
        if peer is not None:
            peer.demonitor(from_pid, target, ref)

    def monitor_exit(self, target: Any, watcher: Pid, ref: Ref, reason: Any) -> None:
        sess = self._sessions.get(watcher.node)
        if sess is not None:
            sess.send(_enc_exit([MONITOR_EXIT, target, watcher, ref, reason]))
            return
        peer = self._foreign.get(watcher.node)
        if peer is not None:
            peer.monitor_exit(target, watcher, ref, reason)

    def spawn(
        self,
        node: str,
        fn: Union[str, Tuple[str, str], Callable[..., Any]],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
        opts: Tuple[str, ...],
    ) -> Any:
        """Spawn on ``node``; blocks the caller until the node answers.

        Raises:
            SpawnError: the node refused (``fn`` is not spawnable there, or does not take those keyword arguments).
            TypeError: an argument cannot cross nodes, or ``fn`` is ``('mod', 'fun')``
                (a BEAM node's function) and ``node`` is a snowg node.
        """
        if node not in self._sessions:
            peer = self._foreign.get(node)
            if peer is not None:
                return peer.spawn(fn, args, kwargs, opts)
        caller = _self()
        req = make_ref()
        if isinstance(fn, tuple):  # ('mod', 'fun'): a function of a BEAM node
            if node in self._sessions:
                raise TypeError(
                    f"{fn!r} names a function of an Erlang node, but {node} is a snowg node:"
                    " give a @spawnable function or its registered name"
                )
            return _remote.fail_remote_spawn(Pid(node, 0, 0), req, opts)  # not connected: as below
        if send_request(node, caller, wire_name(fn), args, kwargs, opts, req) is None:
            # As Erlang: a pid that names the node, and at once a 'noconnection'
            # exit (spawn_link) or Down (spawn_monitor). It is never alive.
            return _remote.fail_remote_spawn(Pid(node, 0, 0), req, opts)
        reply = receive(lambda m: type(m) is SpawnReply and m.req == req)
        result = reply.result
        if type(result) is Pid:
            return (result, req) if "monitor" in opts else result
        if result == "noconnection":
            return _remote.fail_remote_spawn(Pid(node, 0, 0), req, opts)
        raise SpawnError(str(result))


def _where(target: Union[Pid, Tuple[str, str]]) -> Tuple[str, Any]:
    """The node of a monitor's target, and the target as the peer names it."""
    if isinstance(target, Pid):
        return target.node, target
    name, node = target
    return node, name
