"""The web observer: a hidden node that serves a live page of its cluster (``snowg observer``).

:class:`Observer` runs on a node started with ``start_node(hidden=True)``
(the command does that), so the nodes it watches do not count it among
their ``nodes()``, sync no groups or names with it and never dial it. Every
``interval`` seconds it asks each node it is connected to for its
:func:`~snowg.observe.snapshot` over ``rpc.call``, all at once, each call
bounded by ``timeout`` (a node that does not answer in time is shown as
such). Only the nodes a page looks at send their process list (at most
``process_limit`` processes, the longest queues first); the others send
their summary (``limit=0``: counts, trees, groups, rooms, sessions). Crashes,
restarts and supervisors giving up arrive *as events*, not by diffing
snapshots: on each node it spawns :func:`~snowg.observe.forward_events`
(``"snowg.observe:forward_events"``), which attaches a telemetry handler
there and forwards to the observer until the observer goes.

It serves, on ``http://BIND:PORT`` (gevent's WSGI server through
:func:`snowg.ws.serve`):

* ``/`` and ``/static/...``: the page (``static/``: one HTML file, plain
  JavaScript and CSS, no build step, nothing fetched from elsewhere);
* ``/metrics``: every node's :func:`~snowg.observe.metrics_text` (asked over
  ``rpc.call``, in parallel) in one Prometheus text, each sample with a
  ``node`` label, plus ``snowg_observer_node_up{node}``;
* ``/ws``: the page's WebSocket (JSON text messages). The observer pushes
  ``{"type": "cluster", "nodes": [...], "ts": t}`` every interval,
  ``{"type": "node", "node": N, "snapshot": {...}}`` for the node the page
  watches, ``{"type": "event", ...}`` as events happen and
  ``{"type": "killed", ...}`` after a kill. The page sends
  ``{"cmd": "watch", "node": N}`` and ``{"cmd": "kill", "node": N, "pid":
  "<N.id.creation>"}`` (``exit(pid, 'kill')``, after its confirmation dialog).

Protections, as the demo's: a page of another site cannot use the WebSocket
(its ``Origin`` must be the page's own origin, ``http://`` and the request's
``Host``) nor read the pages (the ``Host`` must name this machine, an IP
address or ``localhost``: DNS rebinding gets 421); no page may frame it; a
client message is at most :data:`MAX_CLIENT_MESSAGE` bytes; each client has
its own bounded outbound queue, so a client that does not read is closed
(1008) and stalls nobody.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

import gevent

from .. import ws
from .._core import Down, Pid, monitor, receive, send, spawn
from .._core import exit as _exit
from .._errors import SnowgError
from ..cluster import connect, ensure_connected, node, nodes, rpc
from ._forward import EVENT_TAG

__all__ = [
    "CLIENT_QUEUE",
    "DEFAULT_BIND",
    "DEFAULT_PORT",
    "INTERVAL",
    "MAX_CLIENT_MESSAGE",
    "Observer",
    "merge_metrics",
    "parse_pid",
]

log = logging.getLogger("snowg")

DEFAULT_PORT = 8765
DEFAULT_BIND = "127.0.0.1"
#: Seconds between two gatherings (and pushes to the pages).
INTERVAL = 1.0
#: Processes a watched node sends at most, the longest queues first.
PROCESS_LIMIT = 5000
#: The largest message a page may send, in bytes (a larger one closes it with 1009).
MAX_CLIENT_MESSAGE = 4096
#: Messages that may wait for one page; one more closes it with 1008 (it does not read).
CLIENT_QUEUE = 64
#: Pages served at once.
MAX_CLIENTS = 64
#: Seconds a lost node stays on the page (shown down) before it is forgotten.
FORGET_AFTER = 300.0
#: Seconds between two attempts to reach a lost node again.
RECONNECT_EVERY = 5.0
#: Events kept for a page that opens later.
EVENTS_KEPT = 200
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Never in a frame (clickjacking), nothing from elsewhere.
_SECURITY_HEADERS = [
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


def parse_pid(text: str) -> Pid:
    """A pid from its text (``'<name@host.12.3>'``, as ``str(pid)`` and the snapshots write it).

    Raises:
        ValueError: not a pid's text.
    """
    if not isinstance(text, str) or len(text) > 300 or not (text.startswith("<") and text.endswith(">")):
        raise ValueError(f"not a pid: {text!r}")
    name, _, rest = text[1:-1].rpartition("@")
    host_id, dot1, creation = rest.rpartition(".")
    host, dot2, ident = host_id.rpartition(".")
    if not (name and host and dot1 and dot2 and ident.isdigit() and creation.isdigit()):
        raise ValueError(f"not a pid: {text!r}")
    return Pid(f"{name}@{host}", int(ident), int(creation))


def merge_metrics(texts: Dict[str, str], up: Dict[str, bool]) -> str:
    """Several nodes' Prometheus texts as one: each family once, each sample labelled with its ``node``.

    Args:
        texts: each node's :func:`~snowg.observe.metrics_text`.
        up: each known node, and whether it answered (``snowg_observer_node_up``).
    """
    families: Dict[str, Tuple[str, str, List[str]]] = {}  # name -> (help, type, samples)
    for name in sorted(texts):
        label = 'node="' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        family = ""
        for line in texts[name].splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    help_text, kind, samples = families.get(family, ("", "untyped", []))
                    if parts[1] == "HELP":
                        help_text = parts[3] if len(parts) > 3 else ""
                    else:
                        kind = parts[3] if len(parts) > 3 else "untyped"
                    families[family] = (help_text, kind, samples)
                continue
            brace = line.find("{")
            space = line.find(" ")
            if brace != -1 and (space == -1 or brace < space):
                sample = line[: brace + 1] + label + ("," if line[brace + 1] != "}" else "") + line[brace + 1 :]
            elif space != -1:
                sample = line[:space] + "{" + label + "}" + line[space:]
            else:
                continue
            key = family or line[: min(i for i in (brace, space) if i != -1)]
            families.setdefault(key, ("", "untyped", []))[2].append(sample)
    out: List[str] = []
    for fam, (help_text, kind, samples) in families.items():
        if help_text:
            out.append(f"# HELP {fam} {help_text}")
        out.append(f"# TYPE {fam} {kind}")
        out.extend(samples)
    out.append("# HELP snowg_observer_node_up Whether the node answered the observer's last request (1) or not (0).")
    out.append("# TYPE snowg_observer_node_up gauge")
    for name in sorted(up):
        esc = name.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'snowg_observer_node_up{{node="{esc}"}} {1 if up[name] else 0}')
    return "\n".join(out) + "\n"


class _NodeView:
    """What the observer knows of one node."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False  # connected
        self.answering = False  # answered the last request in time
        self.error: Optional[str] = None
        self.connected_to: List[str] = []
        self.summary: Dict[str, Any] = {}
        self.snapshot: Optional[Dict[str, Any]] = None
        self.last_seen = 0.0  # unix time of its last answer
        self.lost_at: Optional[float] = None  # monotonic, while not connected
        self.last_dial = 0.0
        self.forwarder: Optional[Pid] = None
        self.forwarding = "no"  # no | yes | unavailable

    def row(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "up": self.up,
            "answering": self.answering,
            "error": self.error,
            "connected_to": self.connected_to,
            "last_seen": self.last_seen,
            "events": self.forwarding,
            **self.summary,
        }


class _Client:
    def __init__(self, conn: ws.Connection) -> None:
        self.conn = conn
        self.watch: Optional[str] = None


class Observer:
    """The web observer of the cluster this (hidden) node is connected to.

    Args:
        port: the HTTP port (0: any free port; see :attr:`port`).
        bind: the address to listen on.
        interval: seconds between two gatherings.
        timeout: seconds each node has to answer (default: ``interval``).
        process_limit: processes a watched node sends at most.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        bind: str = DEFAULT_BIND,
        *,
        interval: float = INTERVAL,
        timeout: Optional[float] = None,
        process_limit: int = PROCESS_LIMIT,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.requested_port = port
        self.bind = bind
        self.interval = interval
        self.timeout = timeout if timeout is not None else interval
        self.process_limit = process_limit
        self.views: Dict[str, _NodeView] = {}
        self.clients: Set[_Client] = set()
        self.events: Deque[Dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.gave_up: List[Dict[str, Any]] = []
        self.ticks = 0
        self.server: Any = None
        self._loop: Optional[gevent.Greenlet[[], None]] = None
        self._events_pid: Optional[Pid] = None
        self._cluster_json = ""
        self._allowed_hosts = {"localhost", bind.lower(), socket.gethostname().lower()}
        try:
            self._allowed_hosts.add(socket.getfqdn().lower())
        except OSError:  # pragma: no cover - a machine without a name
            pass

    # ------------------------------------------------------------ running

    @property
    def port(self) -> int:
        """The HTTP port it listens on (once started)."""
        return int(self.server.port) if self.server is not None else self.requested_port

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.bind if self.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host if ':' not in host else '[' + host + ']'}:{self.port}/"

    def start(self) -> None:
        """Listen, and gather every ``interval`` seconds until :meth:`stop`. Never blocks.

        Raises:
            OSError: the address cannot be bound.
        """
        self.server = ws.serve(
            (self.bind, self.requested_port),
            self._client,
            fallback_app=self._http,
            max_message_size=MAX_CLIENT_MESSAGE,
            max_fragments=4,
            queue_size=CLIENT_QUEUE,
            check_origin=False,  # checked exactly (scheme, host and port) in _client
            max_connections=MAX_CLIENTS * 2,
            compression=False,
        )
        self._events_pid = spawn(self._event_loop)
        self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop gathering, close the pages and stop listening (blocks about a second at most)."""
        if self._loop is not None:
            self._loop.kill()
            self._loop = None
        if self._events_pid is not None:
            _exit(self._events_pid, "kill")  # the forwarders see it go and detach
            self._events_pid = None
        for client in list(self.clients):
            client.conn.close(1001, "observer stopping")
        if self.server is not None:
            self.server.stop(timeout=1)

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep observing
                log.exception("observer: gathering failed")
            gevent.sleep(max(0.01, self.interval - (time.monotonic() - started)))

    # ------------------------------------------------------------ gathering

    def tick(self) -> None:
        """Gather once from every node, then push to the pages.

        Blocks the caller at most ``timeout`` seconds and a little more.
        """
        self.ticks += 1
        now = time.monotonic()
        connected = set(nodes(hidden=True))
        for name in connected | {n for v in list(self.views.values()) if v.up for n in v.connected_to}:
            if name != node() and name not in self.views:
                self.views[name] = _NodeView(name)
        watched = {c.watch for c in self.clients if c.watch}
        jobs = []
        for name, view in list(self.views.items()):
            if name in connected:
                jobs.append(gevent.spawn(self._fetch, view, name in watched))
                continue
            if view.up:
                self._lost(view, now)
            if view.lost_at is None:  # named by a node, never reached
                view.lost_at = now
            if now - view.lost_at > FORGET_AFTER:
                del self.views[name]
            elif now - view.last_dial >= RECONNECT_EVERY:
                view.last_dial = now
                gevent.spawn(self._reach, view)
        gevent.joinall(jobs, timeout=self.timeout + 0.5)
        for job in jobs:
            job.kill(block=False)
        self._push()

    def _lost(self, view: _NodeView, now: float) -> None:
        view.up = view.answering = False
        view.lost_at = now
        view.forwarder, view.forwarding = None, "no"
        view.error = "not connected"
        view.connected_to = []
        self._event({"kind": "node_down", "node": view.name})

    def _reach(self, view: _NodeView) -> None:
        """Dial a node named by another (a peer list never names this hidden node), or lost."""
        address = None
        for other in self.views.values():
            for sess in other.summary.get("sessions", ()):
                if sess.get("node") == view.name and sess.get("address"):
                    address = sess["address"]
        try:
            if address:
                port = address.rsplit(":", 1)[1]
                connect(f"{view.name}:{port}")
            else:
                ensure_connected(view.name)
        except (SnowgError, ValueError, OSError) as exc:
            log.debug("observer: cannot reach %s: %s", view.name, exc)

    def _fetch(self, view: _NodeView, full: bool) -> None:
        limit = self.process_limit if full else 0
        try:
            snap = rpc.call(view.name, "snowg.observe:snapshot", limit=limit, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            view.answering = False
            view.error = f"{type(exc).__name__}: {exc}"
            view.up = view.name in nodes(hidden=True)
            return
        if not view.up:
            self._event({"kind": "node_up", "node": view.name})
        view.up = view.answering = True
        view.lost_at = None
        view.error = None
        view.last_seen = time.time()
        view.connected_to = [n for n in snap.get("nodes", []) if n != node()]
        view.summary = {
            "process_count": snap.get("process_count"),
            "counts": snap.get("counts"),
            "cpu_tracing": snap.get("cpu_tracing"),
            "supervisors": _count_trees(snap.get("supervisors", [])),
            "groups": len(snap.get("groups", [])),
            "rooms": len(snap.get("rooms", [])),
            "sessions": [
                {"node": s.get("node"), "address": s.get("address")}
                for s in snap.get("sessions", [])
                if s.get("node") != node()
            ],
        }
        snap["sessions"] = [s for s in snap.get("sessions", []) if s.get("node") != node()]
        if full:
            view.snapshot = snap
        if view.forwarding == "no" and self._events_pid is not None:
            view.forwarding = "starting"
            # In a greenlet of its own: a gathering cut short at its timeout must not cut it.
            gevent.spawn(self._start_forwarder, view, self._events_pid)

    def _start_forwarder(self, view: _NodeView, events_pid: Pid) -> None:
        try:
            pid = spawn("snowg.observe:forward_events", events_pid, node=view.name)
        except SnowgError as exc:  # an older snowg there (no events; the counts still show), or the node went
            view.forwarding = "unavailable" if view.up else "no"
            log.info("observer: no events from %s: %s", view.name, exc)
            return
        except Exception:  # noqa: BLE001 - tried again at the next answer
            view.forwarding = "no"
            log.exception("observer: cannot start the event forwarder on %s", view.name)
            return
        view.forwarder, view.forwarding = pid, "yes"
        send(events_pid, ("forwarder", view.name, pid))

    # ------------------------------------------------------------ events

    def _event_loop(self) -> None:
        """The process the nodes' forwarders send their events to."""
        watching: Dict[Any, Tuple[str, Pid]] = {}
        while True:
            msg = receive()
            if type(msg) is Down:
                name, pid = watching.pop(msg.ref, ("", None))
                view = self.views.get(name)
                if view is not None and view.forwarder == pid:
                    view.forwarder, view.forwarding = None, "no"  # started again at the next answer
                continue
            if type(msg) is not tuple or not msg:
                continue
            if msg[0] == "forwarder" and len(msg) == 3:
                watching[monitor(msg[2])] = (msg[1], msg[2])
            elif msg[0] == EVENT_TAG and len(msg) == 6:
                _tag, name, kind, measurements, metadata, ts = msg
                if not isinstance(metadata, dict) or not isinstance(measurements, dict):
                    continue
                event = {"kind": str(kind), "node": str(name), "ts": ts, "measurements": measurements, **metadata}
                if kind == "give_up":
                    self.gave_up.append(
                        {"node": name, "supervisor": metadata.get("supervisor"), "name": metadata.get("name"), "ts": ts}
                    )
                    del self.gave_up[:-50]
                self._event(event)

    def _event(self, event: Dict[str, Any]) -> None:
        event.setdefault("ts", time.time())
        event["type"] = "event"
        self.events.append(event)
        if self.clients:
            self._send_all(json.dumps(event, separators=(",", ":"), default=str))

    # ------------------------------------------------------------ pages

    def cluster_message(self) -> Dict[str, Any]:
        """What the pages get every interval: every known node, with its connections."""
        return {
            "type": "cluster",
            "observer": node(),
            "interval": self.interval,
            "nodes": [v.row() for _, v in sorted(self.views.items())],
            "gave_up": self.gave_up,
            "ts": time.time(),
        }

    def node_message(self, name: str) -> Dict[str, Any]:
        """The last full snapshot of ``name`` for a page watching it."""
        view = self.views.get(name)
        msg: Dict[str, Any] = {"type": "node", "node": name, "snapshot": None}
        if view is None:
            msg["error"] = "unknown node"
        else:
            msg["snapshot"] = view.snapshot if view.up else None
            msg["up"] = view.up
            msg["error"] = view.error
        return msg

    def _push(self) -> None:
        self._cluster_json = json.dumps(self.cluster_message(), separators=(",", ":"), default=str)
        if not self.clients:
            return
        self._send_all(self._cluster_json)
        by_node: Dict[str, str] = {}
        for client in list(self.clients):
            if client.watch:
                if client.watch not in by_node:
                    by_node[client.watch] = json.dumps(
                        self.node_message(client.watch), separators=(",", ":"), default=str
                    )
                client.conn.send(by_node[client.watch])

    def _send_all(self, text: str) -> None:
        for client in list(self.clients):
            client.conn.send(text)

    def _host_ok(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if not name:
            return False
        if name in self._allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _client(self, conn: ws.Connection) -> None:
        # Browsers let any web page open a WebSocket to 127.0.0.1: only this page may use it.
        host = conn.environ.get("HTTP_HOST", "")
        origin = conn.environ.get("HTTP_ORIGIN")
        if conn.path != "/ws":
            conn.close(1008, "not found")
            return
        if not self._host_ok(host) or (origin is not None and origin != f"http://{host}"):
            log.warning("observer: WebSocket from origin %r (host %r) refused", origin, host)
            conn.close(1008, "wrong origin")
            return
        if len(self.clients) >= MAX_CLIENTS:
            conn.close(1013, "too many pages")
            return
        client = _Client(conn)
        self.clients.add(client)
        try:
            hello = {"type": "hello", "observer": node(), "interval": self.interval, "events": list(self.events)}
            conn.send(json.dumps(hello, separators=(",", ":"), default=str))
            if self._cluster_json:
                conn.send(self._cluster_json)
            while True:
                data = conn.receive()
                if data is None:
                    return
                try:
                    msg = json.loads(data)
                except (TypeError, ValueError):
                    msg = None
                if not isinstance(msg, dict):
                    conn.send(json.dumps({"type": "error", "error": "expected a JSON object"}))
                    continue
                self._command(client, msg)
        finally:
            self.clients.discard(client)

    def _command(self, client: _Client, msg: Dict[str, Any]) -> None:
        cmd = msg.get("cmd")
        name = msg.get("node")
        if cmd == "watch" and isinstance(name, str):
            client.watch = name
            view = self.views.get(name)
            if view is not None and view.up and view.snapshot is None:
                gevent.spawn(self._fetch_and_send, client, view)
            else:
                client.conn.send(json.dumps(self.node_message(name), separators=(",", ":"), default=str))
        elif cmd == "kill" and isinstance(name, str):
            client.conn.send(json.dumps(self._kill(name, msg.get("pid")), default=str))
        else:
            client.conn.send(json.dumps({"type": "error", "error": f"unknown command {str(cmd)[:40]!r}"}))

    def _fetch_and_send(self, client: _Client, view: _NodeView) -> None:
        self._fetch(view, True)
        if client.watch == view.name:
            client.conn.send(json.dumps(self.node_message(view.name), separators=(",", ":"), default=str))

    def _kill(self, name: str, pid_text: Any) -> Dict[str, Any]:
        answer: Dict[str, Any] = {"type": "killed", "node": name, "pid": str(pid_text)[:300], "ok": False}
        view = self.views.get(name)
        try:
            pid = parse_pid(pid_text)
        except ValueError as exc:
            answer["error"] = str(exc)
            return answer
        if view is None or not view.up:
            answer["error"] = f"{name} is not connected"
        elif pid.node != name:
            answer["error"] = f"{pid_text} is not a process of {name}"
        else:
            _exit(pid, "kill")
            answer["ok"] = True
            log.info("observer: kill %s on %s, from a page", pid, name)
        return answer

    # ------------------------------------------------------------ HTTP

    def _http(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        host = environ.get("HTTP_HOST", "")
        if not self._host_ok(host):
            return _answer(start_response, "421 Misdirected Request", b"unknown host\n")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n", [("Allow", "GET, HEAD")])
        if path == "/metrics":
            body = self.metrics().encode("utf-8")
            return _answer(start_response, "200 OK", body, [("Content-Type", METRICS_CONTENT_TYPE)], method)
        if path in ("", "/", "/index.html"):
            name = "index.html"
        elif path.startswith("/static/"):
            name = path[len("/static/") :]
        else:
            return _answer(start_response, "404 Not Found", b"not found\n")
        full = os.path.join(STATIC_DIR, name)
        if "/" in name or "\\" in name or name.startswith(".") or not os.path.isfile(full):
            return _answer(start_response, "404 Not Found", b"not found\n")
        with open(full, "rb") as f:
            body = f.read()
        ctype = CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        headers = [
            ("Content-Type", ctype),
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", f"default-src 'self'; connect-src 'self' ws://{host}; frame-ancestors 'none'"),
        ]
        return _answer(start_response, "200 OK", body, headers, method)

    def metrics(self) -> str:
        """Every connected node's metrics in one Prometheus text (blocks at most ``timeout`` s)."""
        texts: Dict[str, str] = {}

        def one(name: str) -> None:
            try:
                texts[name] = rpc.call(name, "snowg.observe:metrics_text", timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - the node shows as not up
                log.debug("observer: no metrics from %s: %s", name, exc)

        connected = set(nodes(hidden=True))
        names = sorted(set(self.views) | connected)
        jobs = [gevent.spawn(one, n) for n in names if n in connected]
        gevent.joinall(jobs, timeout=self.timeout + 0.5)
        for job in jobs:
            job.kill(block=False)
        return merge_metrics(texts, {n: n in texts for n in names})


def _count_trees(trees: List[Dict[str, Any]]) -> int:
    count = 0
    stack = list(trees)
    while stack:
        tree = stack.pop()
        count += 1
        stack.extend(c["tree"] for c in tree.get("children", ()) if isinstance(c, dict) and "tree" in c)
    return count


def _answer(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    headers: Optional[List[Tuple[str, str]]] = None,
    method: str = "GET",
) -> List[bytes]:
    headers = list(headers or [("Content-Type", "text/plain; charset=utf-8")])
    headers += [("Content-Length", str(len(body))), *_SECURITY_HEADERS]
    start_response(status, headers)
    return [b""] if method == "HEAD" else [body]
