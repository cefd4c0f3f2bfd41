"""The port mapper's client: register a name, look one up, list a host's names (blocking, on gevent).

Each host runs one port mapper (Erlang's ``epmd`` or snowg's, they speak the
same protocol, :mod:`._epmd_proto`) on port 4369, or ``$ERL_EPMD_PORT``. A
node registers its alive name (the part before ``@``) and its port with the
mapper of its own host; whoever wants to dial ``bob@host`` asks that host's
mapper for ``bob``'s port.

* :func:`register` keeps its TCP connection open in the returned
  :class:`Registration`: the mapper releases the name when that connection
  closes, so a node that dies (even ``kill -9``) frees its name at once.
* :func:`port_please` and :func:`names` ask and return.
* :func:`ensure_mapper` makes sure a mapper answers on this host, starting
  snowg's own as a detached daemon (``python -m snowg epmd --daemon``) when
  none does, as ``erl`` starts ``epmd -daemon``; it outlives the node that
  started it. When several processes start at once, exactly one daemon
  binds the port and every caller waits for it.

Every call blocks the calling greenlet only, for at most its ``timeout``;
a mapper that does not answer, or answers what the protocol does not
allow, is a :class:`~snowg.NodeError` that names the mapper.
"""

from __future__ import annotations

import logging
import os
import socket as _stdsocket
import sys
import time
from typing import Any, Dict, List, Optional, Protocol, Tuple, TypeVar

import gevent
from gevent import socket

from .. import _errors
from .._errors import NodeError
from ._epmd_proto import (
    Alive2Reply,
    Alive2ReplyParser,
    Alive2Request,
    NamesReply,
    NamesReplyParser,
    NamesRequest,
    NodeEntry,
    Port2Reply,
    Port2ReplyParser,
    PortPlease2Request,
    Request,
    encode_request,
    snowg_extra,
)
from ._epmd_proto import NODE_TYPE_HIDDEN as NODE_TYPE_HIDDEN
from ._epmd_proto import NODE_TYPE_NORMAL as NODE_TYPE_NORMAL
from ._epmd_proto import PROTOCOL_TCP as PROTOCOL_TCP

__all__ = [
    "DEFAULT_EPMD_PORT",
    "NameTaken",
    "NodeEntry",
    "Registration",
    "ensure_mapper",
    "epmd_port",
    "names",
    "port_please",
    "register",
]

log = logging.getLogger("snowg")

DEFAULT_EPMD_PORT = 4369
#: The distribution versions a snowg node registers with (those of OTP 23 and later).
DIST_HIGHEST = 6
DIST_LOWEST = 5
_RECV = 4096


class NameTaken(NodeError, _errors.NameTaken):
    """The port mapper refused to register a name: another node holds it."""


def epmd_port() -> int:
    """The port mappers' port: ``$ERL_EPMD_PORT``, else 4369.

    Raises:
        NodeError: ``$ERL_EPMD_PORT`` is not a port number (the environment's fault).
    """
    raw = os.environ.get("ERL_EPMD_PORT", "").strip()
    if not raw:
        return DEFAULT_EPMD_PORT
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise NodeError(f"ERL_EPMD_PORT={raw!r:.40} is not a port number (1..65535)")
    return port


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Parser(Protocol):
    def feed(self, data: bytes) -> Any: ...

    def close(self) -> Any: ...


P = TypeVar("P", bound=_Parser)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise NodeError(f"no port mapper answers on {_where(host, port)}: {exc}") from None
    sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
    return sock


def _exchange(host: str, port: int, request: Request, parser: P, timeout: float, *, until_close: bool) -> Any:
    """Send ``request`` on a new connection and read the reply with ``parser``.

    Returns what the parser gives when the reply is complete (``until_close``:
    when the mapper closes).
    """
    where = _where(host, port)
    wire = encode_request(request)
    deadline = gevent.Timeout(timeout, NodeError(f"the port mapper on {where} did not answer within {timeout:g}s"))
    deadline.start()
    try:
        sock = _connect(host, port, timeout)
        try:
            sock.sendall(wire)
            while True:
                data = sock.recv(_RECV)
                if not data:
                    return parser.close()
                reply = parser.feed(data)
                if reply is not None and not until_close:
                    return reply
        except OSError as exc:
            raise NodeError(f"the port mapper on {where} failed: {exc}") from None
        finally:
            sock.close()
    finally:
        deadline.close()


class Registration:
    """A name registered with a port mapper; it stays registered while this object's connection is open.

    Attributes:
        creation: the number the mapper gave this registration (never 0; it
            changes each time the name is registered again).
    """

    def __init__(self, sock: socket.socket, creation: int, alive: str, where: str) -> None:
        self._sock: Optional[socket.socket] = sock
        self.creation = creation
        self.alive = alive
        self.where = where

    def close(self) -> None:
        """Release the name (close the connection). Never blocks; closing twice is harmless."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._sock is None

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Block until the registration ends: its mapper closed the connection, or :meth:`close` ran.

        The mapper closes it when it stops or dies; a node that wants to stay
        findable registers again then. Blocks for at most ``timeout``
        seconds (None: no bound).

        Returns:
            True when the registration has ended, False on timeout.
        """
        sock = self._sock
        if sock is None:
            return True
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            while sock.recv(_RECV):
                pass  # a mapper sends nothing after its reply; ignore what a broken one sends
            return True
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            return False
        except OSError:  # closed by close() in another greenlet, or reset
            return True
        finally:
            timer.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "open"
        return f"<Registration {self.alive!r} at {self.where} creation={self.creation} {state}>"


def register(
    alive: str,
    port: int,
    full_name: str,
    *,
    host: str = "127.0.0.1",
    epmd_port: Optional[int] = None,
    timeout: float = 5.0,
    node_type: int = NODE_TYPE_NORMAL,
    snowg_port: Optional[int] = None,
) -> Registration:
    """Register ``alive`` (listening on ``port``) with the mapper on ``host``.

    The registration carries ``b"snowg1 " + full_name`` as its extra, so
    discovery can tell snowg nodes and their full names. A node that speaks
    Erlang's distribution too registers its Erlang port as ``port``, as a
    hidden node (``node_type`` 72), and its snowg port as ``snowg_port``
    (added to the extra; see ``NodeEntry.snowg_port``). Blocks for at most
    ``timeout`` seconds.

    Raises:
        NameTaken: the mapper refused: another node holds the name.
        NodeError: no mapper answers, or it answered out of protocol.
        ValueError: ``alive`` or ``full_name`` cannot be carried (too long, NUL).
    """
    mapper_port = _epmd_port_or(epmd_port)
    where = _where(host, mapper_port)
    extra = snowg_extra(full_name, snowg_port)
    entry = NodeEntry(alive, port, node_type, PROTOCOL_TCP, DIST_HIGHEST, DIST_LOWEST, extra)
    request = encode_request(Alive2Request(entry))
    parser = Alive2ReplyParser()
    deadline = gevent.Timeout(timeout, NodeError(f"the port mapper on {where} did not answer within {timeout:g}s"))
    deadline.start()
    try:
        sock = _connect(host, mapper_port, timeout)
        try:
            sock.sendall(request)
            reply: Optional[Alive2Reply] = None
            while reply is None:
                data = sock.recv(_RECV)
                reply = parser.close() if not data else parser.feed(data)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise NodeError(f"the port mapper on {where} failed: {exc}") from None
            raise
    finally:
        deadline.close()
    if reply.result != 0:
        sock.close()
        raise NameTaken(
            f"the port mapper on {where} refused to register {alive!r} (result {reply.result}): "
            "another node holds that name (or the mapper is full; its log says which)"
        )
    sock.settimeout(None)
    log.debug("registered %r (port %d) with the port mapper on %s, creation %d", alive, port, where, reply.creation)
    return Registration(sock, reply.creation, alive, where)


def port_please(host: str, alive: str, *, epmd_port: Optional[int] = None, timeout: float = 5.0) -> Optional[NodeEntry]:
    """Ask ``host``'s mapper where ``alive`` listens: its registration, or None when it is not registered.

    Blocks for at most ``timeout`` seconds.

    Raises:
        NodeError: no mapper answers, or it answered out of protocol.
        ValueError: ``alive`` is not a name the protocol can carry.
    """
    mapper_port = _epmd_port_or(epmd_port)
    reply: Port2Reply = _exchange(
        host, mapper_port, PortPlease2Request(alive), Port2ReplyParser(), timeout, until_close=False
    )
    return reply.entry


def names(host: str, *, epmd_port: Optional[int] = None, timeout: float = 5.0) -> List[Tuple[str, int]]:
    """The ``(alive name, port)`` of every node registered with ``host``'s mapper.

    Blocks for at most ``timeout`` seconds.

    Raises:
        NodeError: no mapper answers, or it answered out of protocol.
    """
    mapper_port = _epmd_port_or(epmd_port)
    reply: NamesReply = _exchange(host, mapper_port, NamesRequest(), NamesReplyParser(), timeout, until_close=True)
    return list(reply.names)


def _answers(host: str, port: int, timeout: float) -> bool:
    try:
        names(host, epmd_port=port, timeout=timeout)
    except NodeError:
        return False
    return True


def ensure_mapper(*, host: str = "127.0.0.1", epmd_port: Optional[int] = None, timeout: float = 5.0) -> bool:
    """True if a port mapper answers on ``host``, after starting snowg's own when none did.

    The mapper started is ``python -m snowg epmd --daemon [--port P]``: it
    binds the port, then detaches (double fork, new session, stdio on
    ``/dev/null``) and outlives this process. Several processes may call this
    at once: one daemon binds, the others see the port taken by a mapper and
    exit quietly, and every caller waits until the mapper answers. Blocks for
    at most about ``timeout`` seconds.

    Returns:
        False when no mapper answered in time (a warning says why).

    Raises:
        NodeError: ``$ERL_EPMD_PORT`` is malformed.
    """
    mapper_port = _epmd_port_or(epmd_port)
    start = time.monotonic()
    if _answers(host, mapper_port, timeout):
        return True
    cmd = [sys.executable, "-m", "snowg", "epmd", "--daemon", "--port", str(mapper_port)]
    log.info("no port mapper answers on %s: starting snowg's (%s)", _where(host, mapper_port), " ".join(cmd[1:]))
    from gevent import subprocess  # only a node that finds no mapper starts one: not on every import

    try:
        # The first process exits as soon as the daemon has bound the port (or found it taken).
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            cwd="/",
            env=_daemon_env(),
        )
    except OSError as exc:
        log.warning("could not start snowg's port mapper: %s", exc)
        return False
    try:
        _, err = proc.communicate(timeout=max(0.1, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        err = b"(it did not detach in time)"
    if proc.returncode != 0:
        log.warning(
            "snowg's port mapper did not start on port %d: %s",
            mapper_port,
            err.decode("utf-8", "replace").strip()[-500:] or f"exit status {proc.returncode}",
        )
        return _answers(host, mapper_port, max(0.1, timeout - (time.monotonic() - start)))
    delay = 0.01
    while True:
        left = timeout - (time.monotonic() - start)
        if _answers(host, mapper_port, max(0.1, min(1.0, left))):
            return True
        if left <= 0:
            log.warning("no port mapper answers on %s after %gs", _where(host, mapper_port), timeout)
            return False
        gevent.sleep(min(delay, max(0.0, left)))
        delay = min(delay * 2, 0.2)


def _daemon_env() -> Dict[str, str]:
    """This environment, with this snowg's directory first on ``PYTHONPATH``: the daemon runs this same snowg."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


def _epmd_port_or(port: Optional[int]) -> int:
    return epmd_port() if port is None else port
