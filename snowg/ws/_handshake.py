"""Before the upgrade: the request deadline, the upgrade checks, the Origin check, the failure log.

gevent-websocket 0.10.1's ``WebSocketHandler`` validates an upgrade loosely
and answers faults badly: an undecodable ``Sec-WebSocket-Key`` raises out of
the handler (a 500 and a traceback), an HTTP/1.0 upgrade gets a made-up
``402 Bad Request``, an unknown version a 400, and the request itself may
take for ever to arrive. :class:`WebSocketHandler` (its subclass, the
``handler_class`` of :class:`~snowg.ws.WebSocketServer`) replaces that part:

* **deadline**: the request line and headers must arrive within
  ``handshake_timeout`` seconds of the first wait for them (also between
  keep-alive requests); otherwise the connection is closed with no answer;
* **checks**: a WebSocket upgrade (a ``GET`` naming ``websocket`` in
  ``Upgrade``) must be HTTP/1.1, name ``Upgrade`` in ``Connection``, carry a
  ``Host``, version 13 (else ``426`` with ``Sec-WebSocket-Version: 13``) and a
  key of 16 base64-encoded bytes; faults get ``400`` and the connection is
  closed;
* **Origin**: :class:`OriginCheck` (Phoenix's ``check_origin``), refused
  with ``403``;
* **compression**: a ``permessage-deflate`` offer in
  ``Sec-WebSocket-Extensions`` is answered in the ``101`` (see ``_deflate``
  for which one and how), and its parameters go to the connection in the
  environ (``_deflate.ENVIRON_KEY``);
* **log**: each refusal is one WARNING line; repeated ones from one address
  are summarised by :class:`FailureLog` (the first in full, then one line
  "N more from ADDR in the last 60 s").

The handler finds its settings as the ``upgrade_policy`` attribute of the
server's WSGI application (a :class:`~snowg.ws.WebSocketApp`); any other
application gets the defaults.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import gevent
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler as _LibraryHandler

from .._core import SummaryLog
from ._deflate import ENVIRON_KEY, DeflateConfig, negotiate

log = logging.getLogger("snowg")

#: The environ key a checked upgrade carries (the app then does not check again).
CHECKED = "snowg.ws.upgrade_checked"

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: The only WebSocket version spoken (RFC 6455).
VERSION = "13"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

OriginSpec = Union[bool, Sequence[str]]


# ------------------------------------------------------------------- Origin


def _host_of(host_header: str) -> Optional[str]:
    """The host name of a ``Host`` header (``"example.com:8000"``, ``"[::1]:80"``), lower case."""
    try:
        return urlsplit("//" + host_header).hostname or None
    except ValueError:
        return None


def _parse_origin(origin: str) -> Optional[Tuple[Optional[str], str, Optional[int]]]:
    """``(scheme or None, host, port or None)`` of an origin; None if it is not one.

    As Phoenix parses them: a scheme without an explicit port gets the
    scheme's default port; ``//host`` has neither scheme nor port.
    """
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    scheme = parts.scheme.lower() or None
    if port is None and scheme is not None:
        port = _DEFAULT_PORTS.get(scheme)
    return scheme, host, port


class OriginCheck:
    """Phoenix's ``check_origin`` for browser clients (who send ``Origin``).

    Args:
        spec: True: the origin's host name must be the request's ``Host``
            name (scheme and port are not compared, as Phoenix compares
            only hosts, so a proxy that terminates TLS or maps ports does not
            break it); a list of origins: one must match
            (``"https://example.com"`` its scheme, host and port,
            ``"//example.com"`` any scheme and port, ``"//*.example.com"``
            the domain and its subdomains); False: any origin.

    Raises:
        ValueError: a listed origin has no host.
        TypeError: ``spec`` is neither a bool nor a list of strings.
    """

    def __init__(self, spec: OriginSpec = True) -> None:
        self.spec = spec
        self.allowed: Optional[List[Tuple[Optional[str], str, Optional[int]]]] = None
        if isinstance(spec, bool):
            return
        if isinstance(spec, str) or not isinstance(spec, Iterable):
            raise TypeError("check_origin must be True, False or a list of origins")
        allowed = []
        for origin in spec:
            if not isinstance(origin, str):
                raise TypeError(f"check_origin: an origin must be a str, got {type(origin).__name__}")
            parsed = _parse_origin(origin if "//" in origin else "//" + origin)
            if parsed is None:
                raise ValueError(f"check_origin: invalid origin {origin!r} (expected 'https://host' or '//host')")
            allowed.append(parsed)
        self.allowed = allowed

    def allows(self, origin: Optional[str], host_header: Optional[str]) -> bool:
        """Whether a request with this ``Origin`` and ``Host`` may upgrade (no ``Origin``: yes)."""
        if origin is None or self.spec is False:
            return True
        parsed = _parse_origin(origin)
        if parsed is None:
            return False  # 'null' (sandboxed pages, files) and garbage
        scheme, host, port = parsed
        if self.allowed is None:
            return host_header is not None and _host_of(host_header) == host
        for a_scheme, a_host, a_port in self.allowed:
            if a_scheme is not None and a_scheme != scheme:
                continue
            if a_port is not None and a_port != port:
                continue
            if a_host == host or (a_host.startswith("*.") and (host == a_host[2:] or host.endswith(a_host[1:]))):
                return True
        return False


@dataclass(frozen=True)
class UpgradePolicy:
    """What a :class:`WebSocketHandler` checks before an upgrade (from the app's options)."""

    check_origin: OriginCheck
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    compression: Optional[DeflateConfig] = DeflateConfig()

    def __post_init__(self) -> None:
        if not self.handshake_timeout > 0:
            raise ValueError("handshake_timeout must be positive")


# For an application that is not a WebSocketApp: it could not speak a compressed stream.
DEFAULT_POLICY = UpgradePolicy(OriginCheck(True), compression=None)


# -------------------------------------------------------------- failure log


class FailureLog(SummaryLog):
    """One WARNING per refused client, and a summary for repeats from one address.

    The first failure from an address is logged in full; the next ones within
    ``window`` seconds are counted, and when the window ends (or at
    :meth:`flush`) one line says how many there were. At most
    ``max_addresses`` addresses are tracked; failures from others are
    counted together under ``"other addresses"``.
    """

    def __init__(self, window: float = 60.0, max_addresses: int = 1024) -> None:
        super().__init__(log, _failure_summary, window, max_addresses, "other addresses")

    @property
    def max_addresses(self) -> int:
        """The most addresses tracked one by one."""
        return self.max_keys


def _failure_summary(address: str, count: int, seconds: float) -> Tuple[str, Tuple[Any, ...]]:
    where = address if address == "other addresses" else f"from {address}"
    return "%d more refused WebSocket/HTTP requests %s in the last %.3g s", (count, where, seconds)


# ------------------------------------------------------------------ handler


class _RequestDeadline(BaseException):
    """The request did not arrive within the handshake timeout.

    A ``BaseException``, so that gevent's request parsing (which turns any
    ``Exception`` into a 400) lets it through to :meth:`handle_one_request`.
    """


class WebSocketHandler(_LibraryHandler):  # type: ignore[misc]
    """gevent-websocket's handler with a request deadline, strict upgrade checks and the Origin check.

    The ``handler_class`` of :class:`~snowg.ws.WebSocketServer`; give it to
    any gevent ``WSGIServer`` serving a :class:`~snowg.ws.WebSocketApp`
    (``handler_class=snowg.ws.WebSocketHandler``) to get them there too.
    """

    _deadline: Optional[gevent.Timeout] = None
    _idle = True

    # ----------------------------------------------------------- settings

    def _policy(self) -> UpgradePolicy:
        policy = getattr(self.server.application, "upgrade_policy", None)
        return policy if isinstance(policy, UpgradePolicy) else DEFAULT_POLICY

    def _failures(self) -> FailureLog:
        failures = getattr(self.server, "upgrade_failures", None)
        if not isinstance(failures, FailureLog):
            failures = FailureLog()
            self.server.upgrade_failures = failures
        return failures

    def _client_host(self) -> str:
        address = self.client_address
        if isinstance(address, tuple) and address:
            return str(address[0])
        return str(address or "?")

    # ----------------------------------------------------------- deadline

    def read_requestline(self) -> str:
        """Wait (within the handshake timeout) for the request line."""
        deadline = gevent.Timeout(self._policy().handshake_timeout, _RequestDeadline)
        deadline.start()
        self._deadline = deadline
        self._idle = True
        peek = getattr(self.rfile, "peek", None)
        if peek is not None:
            peek(1)  # the first byte: from now on the request is late, not idle
        self._idle = False
        line: str = WSGIHandler.read_requestline(self)
        return line

    def read_request(self, raw_requestline: str) -> bool:
        """Read the headers; the deadline ends with them."""
        try:
            ok: Any = WSGIHandler.read_request(self, raw_requestline)
            return bool(ok)
        finally:
            self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None:
            deadline.close()

    def handle_one_request(self) -> Any:
        """One request, whose head must arrive in time; a late one closes the connection."""
        try:
            return WSGIHandler.handle_one_request(self)
        except _RequestDeadline:
            timeout = self._policy().handshake_timeout
            if self._idle:
                log.debug("HTTP connection from %s idle for %.3g s, closed", self._client_host(), timeout)
            else:
                host = self._client_host()
                self._failures().report(
                    host,
                    logging.WARNING,
                    "HTTP request from %s incomplete after %.3g s (handshake_timeout): connection closed",
                    host,
                    timeout,
                )
            return None
        finally:
            self._cancel_deadline()

    # ------------------------------------------------------------ logging

    def log_error(self, msg: str, *args: Any) -> None:
        """gevent's complaints about a malformed request: summarised per address."""
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError):
            text = f"{msg!r} {args!r}"
        host = self._client_host()
        text = repr(text[:300])[1:-1]  # what the client sent, escaped: no forged log lines
        self._failures().report(host, logging.WARNING, "bad HTTP request from %s: %s", host, text)

    def log_request(self) -> None:
        """The server's access log (gevent-websocket's handler would log every request at INFO)."""
        WSGIHandler.log_request(self)

    # ------------------------------------------------------------ upgrade

    def _refuse(self, status: str, why: str, headers: Sequence[Tuple[str, str]] = ()) -> List[bytes]:
        host = self._client_host()
        path = self.environ.get("PATH_INFO", "")
        self._failures().report(
            host, logging.WARNING, "WebSocket upgrade from %s to %r refused (%s): %s", host, path, status[:3], why
        )
        body = (why + "\n").encode("utf-8", "backslashreplace")
        self.close_connection = True
        self.start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *headers,
            ],
        )
        return [body]

    def upgrade_websocket(self) -> Optional[List[bytes]]:
        """Check a WebSocket upgrade and answer it (101), or refuse it (4xx); None: not an upgrade."""
        environ = self.environ
        if "websocket" not in _tokens(environ.get("HTTP_UPGRADE", "")):
            return None  # plain HTTP: for the application
        method = environ.get("REQUEST_METHOD", "")
        if method != "GET":
            return self._refuse("400 Bad Request", f"a WebSocket upgrade must be a GET, not {method[:20]!r}")
        if self.request_version != "HTTP/1.1":
            return self._refuse(
                "400 Bad Request", f"a WebSocket upgrade needs HTTP/1.1, not {self.request_version[:20]!r}"
            )
        if "upgrade" not in _tokens(environ.get("HTTP_CONNECTION", "")):
            return self._refuse("400 Bad Request", "the Connection header does not name Upgrade")
        host_header = environ.get("HTTP_HOST")
        if not host_header:
            return self._refuse("400 Bad Request", "no Host header")
        version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
        if version != VERSION:
            return self._refuse(
                "426 Upgrade Required",
                f"unsupported Sec-WebSocket-Version {version[:20]!r} (this server speaks {VERSION})",
                [("Sec-WebSocket-Version", VERSION)],
            )
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            key_ok = False
        if not key_ok:
            return self._refuse("400 Bad Request", f"invalid Sec-WebSocket-Key {key[:40]!r} (16 bytes in base64)")
        origin = environ.get("HTTP_ORIGIN")
        if not self._policy().check_origin.allows(origin, host_header):
            return self._refuse(
                "403 Forbidden", f"origin {(origin or '')[:200]!r} not allowed (Host {host_header[:200]!r})"
            )
        environ[CHECKED] = True
        params = negotiate(environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"), self._policy().compression)
        if params is not None:
            environ[ENVIRON_KEY] = params
        result: Optional[List[bytes]] = self.upgrade_connection()
        return result

    def start_response(self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
        """The library's, plus the ``Sec-WebSocket-Extensions`` answer in a ``101``."""
        params = self.environ.get(ENVIRON_KEY) if status.startswith("101") else None
        if params is not None:
            headers = [*headers, ("Sec-WebSocket-Extensions", params.header())]
        return super().start_response(status, headers, exc_info)


def _tokens(header: str) -> List[str]:
    """The comma-separated tokens of a header, lower case."""
    return [t.strip().lower() for t in header.split(",")]
