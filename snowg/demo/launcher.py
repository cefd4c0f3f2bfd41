"""The ``snowg demo`` launcher: three node processes, the page, and the control plane.

The launcher is itself a node, ``demo@127.0.0.1``, connected to the three
demo nodes (``demo1..3@127.0.0.1``, each an OS process running ``snowg node
... --import snowg.demo.node_app --exit-with-parent``). It owns those
processes, so it is the one that can ``kill -9`` and restart them.

It serves, on ``http://127.0.0.1:PORT``:

* ``/``, ``/app.js``, ``/style.css``: the page (plain files from ``static/``);
* ``/control`` (any path, really): a WebSocket on which it pushes the
  cluster's state as JSON every :data:`POLL_INTERVAL` seconds and receives
  the page's button actions (``crash``, ``kill``, ``restart``).

The state is gathered with ``snowg.rpc.call``: each node's
``snowg.observe:snapshot`` (the data ``snowg observer`` shows: connected
nodes, rooms, process count, crashes and restarts) and, on node 1,
:func:`snowg.demo.node_app.tree_state` (the tree with each child's restarts,
and whether the supervisor gave up: then it is not started again until the
page's "start again" button says so). The chat does not go through the launcher at all: each tab connects
to the WebSocket port of the node it chose.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

import gevent
from gevent.event import Event

import snowg
from snowg import ws
from snowg.cluster import make_certs as _make_certs

from .._peer import NodeProcess
from . import node_app

log = logging.getLogger("snowg.demo")

HOST = "127.0.0.1"
LAUNCHER_NAME = f"demo@{HOST}"
NODE_COUNT = 3
TICK = 1.0
POLL_INTERVAL = 0.5
RPC_TIMEOUT = 1.5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 3.0
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def _say(text: str) -> None:
    sys.stdout.write(f"snowg demo: {text}\n")
    sys.stdout.flush()


class DemoNode:
    """One demo node's OS process, as the launcher sees it."""

    def __init__(self, index: int, preferred_ws_port: int) -> None:
        self.index = index
        self.name = f"demo{index}@{HOST}"
        self.short = f"demo{index}"
        self.preferred_ws_port = preferred_ws_port
        self.proc: Optional[NodeProcess] = None
        self.ws_port = 0
        self.status = "stopped"  # starting | up | down | stopped
        self.launches = 0
        self.info: Dict[str, Any] = {}
        self.busy = False

    @property
    def address(self) -> str:
        """``'host:port'`` of its latest process (``''`` before one listened)."""
        return self.proc.address if self.proc is not None else ""

    @property
    def target(self) -> str:
        """``'name@host:port'`` of its latest process (``''`` before one listened)."""
        return self.proc.target if self.proc is not None else ""

    @property
    def os_pid(self) -> Optional[int]:
        """The OS pid of its process while that runs."""
        return self.proc.os_pid if self.proc is not None and self.proc.alive() else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


#: Sent with every page and file: no other site may frame the page (clickjacking).
FRAME_HEADERS = [("X-Frame-Options", "DENY"), ("Content-Security-Policy", "frame-ancestors 'none'")]


def static_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    """A tiny WSGI app serving the files of ``static/`` (GET/HEAD only, no sub-directories), never in a frame."""
    path = environ.get("PATH_INFO") or "/"
    method = environ.get("REQUEST_METHOD", "GET")
    name = "index.html" if path in ("", "/") else path.lstrip("/")
    full = os.path.join(STATIC_DIR, name)
    ok = "/" not in name and "\\" not in name and not name.startswith(".") and os.path.isfile(full)
    if method not in ("GET", "HEAD") or not ok:
        body = b"not found\n"
        status = "404 Not Found" if method in ("GET", "HEAD") else "405 Method Not Allowed"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *FRAME_HEADERS])
        return [body]
    with open(full, "rb") as f:
        body = f.read()
    ctype = CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
    start_response(
        "200 OK",
        [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"), *FRAME_HEADERS],
    )
    return [b""] if method == "HEAD" else [body]


class Launcher:
    """Runs the demo until SIGINT/SIGTERM; :meth:`run` returns the exit code."""

    def __init__(self, port: int = 8000, directory: Optional[str] = None) -> None:
        self.port = port
        self.own_dir = directory is None
        self.directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="snowg-demo-"))
        self.certs = os.path.join(self.directory, "certs")
        self.logs = os.path.join(self.directory, "logs")
        self.cookie = ""
        self.nodes = [DemoNode(i, port + i if port else 0) for i in range(1, NODE_COUNT + 1)]
        self.by_name = {n.name: n for n in self.nodes}
        self.server: Any = None
        self.controls: Set[ws.Connection] = set()
        self.events: Deque[Tuple[float, str]] = deque(maxlen=60)
        self.tree: Dict[str, Any] = {"supervisor": None, "children": [], "node": self.nodes[0].name}
        self.stop_event = Event()
        self.ready = False
        self.failed: Optional[str] = None
        self._last_children: Dict[str, Tuple[Any, Any]] = {}
        self._last_sup: Optional[str] = None
        self._tree_job: Any = None
        self._tree_started_at = 0.0
        self._gave_up_seen: Optional[float] = None
        self._greenlets: List[Any] = []

    # ------------------------------------------------------------ running

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, self.stop_event.set)
        try:
            self._prepare()
            self.server = ws.serve((HOST, self.port), self._control_handler, fallback_app=static_app)
        except (OSError, snowg.SnowgError) as exc:
            _say(f"cannot start on http://{HOST}:{self.port}/: {exc}")
            self._cleanup()
            return 1
        self.port = self.server.port
        boot = gevent.spawn(self._boot)
        self._greenlets.append(boot)
        self.stop_event.wait()
        _say("stopping...")
        self._cleanup()
        if self.failed:
            _say(f"failed: {self.failed} (logs kept in {self.logs})")
            return 1
        _say("stopped; no process left behind")
        return 0

    def _prepare(self) -> None:
        os.makedirs(self.logs, exist_ok=True)
        _make_certs(self.certs)
        cookie_file = os.path.join(self.directory, "cookie")
        if os.path.exists(cookie_file):
            with open(cookie_file, encoding="ascii") as f:
                self.cookie = f.read().strip()
        if not self.cookie:
            self.cookie = secrets.token_hex(16)
            fd = os.open(cookie_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(self.cookie + "\n")
        handler = logging.FileHandler(os.path.join(self.logs, "launcher.log"))
        handler.setFormatter(logging.Formatter(f"%(asctime)s {LAUNCHER_NAME} %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        # The demo's nodes dial each other by address: no names in the port mapper, so two demos may run at once.
        snowg.start_node(LAUNCHER_NAME, cookie=self.cookie, tls=self.certs, tick=TICK, epmd=False)

    def _boot(self) -> None:
        try:
            _say(f"cluster directory {self.directory} (node logs in {self.logs})")
            starters = [gevent.spawn(self._start_node, n, None) for n in self.nodes]
            self._greenlets += starters  # a stop while they wait kills them, and so their node process
            gevent.joinall(starters, raise_error=True)
            self._ensure_tree(force=True)
            for n in self.nodes:
                _say(f"{n.name:<18} OS pid {n.os_pid!s:<7} chat WebSocket ws://{HOST}:{n.ws_port}/")
            self.ready = True
            self._greenlets.append(gevent.spawn(self._poll_loop))
            _say(f"open http://{HOST}:{self.port}/   (Ctrl-C stops everything)")
        except Exception as exc:  # noqa: BLE001 - report and stop
            log.exception("demo boot failed")
            self.failed = f"{type(exc).__name__}: {exc}"
            self.stop_event.set()

    def _start_node(self, n: DemoNode, via: Optional[DemoNode]) -> None:
        """Start ``n``'s OS process (joining through ``via`` when given) and wait until it is in the cluster."""
        if self.stop_event.is_set():
            raise RuntimeError("the demo is stopping")
        n.status = "starting"
        n.launches += 1
        n.info = {}
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            n.proc = proc = NodeProcess.launch(
                n.name,
                certs=self.certs,
                cookie=self.cookie,
                log_path=os.path.join(self.logs, f"{n.short}.log"),
                tick=TICK,
                modules=[node_app.__name__],
                connect=[via.target] if via is not None and via.target else [],
                epmd=False,
                pythonpath=[pkg_root],
                timeout=START_TIMEOUT,
            )
        except BaseException:
            n.status = "down"
            raise
        self._greenlets.append(gevent.spawn(self._watch, n, proc))
        try:
            if not snowg.connect(proc.target):
                raise RuntimeError(f"cannot connect to {n.name} at {proc.address}; see {proc.log_path}")
            n.ws_port = snowg.rpc.call(n.name, node_app.start_web, n.preferred_ws_port, timeout=10)
        except BaseException:
            proc.kill()
            n.status = "down"
            raise
        n.status = "up"
        self._event(
            f"{n.short} is up (OS pid {proc.os_pid}, chat on port {n.ws_port})"
            + (f", joined the cluster through {via.short}" if via is not None else "")
        )

    def _watch(self, n: DemoNode, proc: NodeProcess) -> None:
        """Drain the node's stdout and notice when its process ends."""
        try:
            while proc.process.stdout.readline():
                pass
        except (OSError, ValueError):
            pass
        code = proc.process.wait()
        if n.proc is proc:
            n.status = "down"
            if not self.stop_event.is_set():
                how = "killed by SIGKILL" if code == -signal.SIGKILL else f"exited with {code}"
                self._event(f"{n.short} is down ({how})")

    def _cleanup(self) -> None:
        jobs = self._greenlets + ([self._tree_job] if self._tree_job is not None else [])
        gevent.killall([g for g in jobs if not g.dead], timeout=2)
        for conn in list(self.controls):
            conn.close(1001, "demo stopping")
        # SIGTERM to all at once, SIGKILL to those still there after STOP_TIMEOUT.
        gevent.joinall([gevent.spawn(n.proc.terminate, STOP_TIMEOUT) for n in self.nodes if n.proc is not None])
        if self.server is not None:
            self.server.stop(timeout=1)
        try:
            snowg.stop_node()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self.own_dir and not self.failed:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------ state

    def _event(self, text: str) -> None:
        self.events.append((time.time(), text))
        log.info("event: %s", text)

    def _wait_mesh(self, timeout: float = 10.0) -> bool:
        """Wait until every running demo node sees every other (peer lists travel after a connect)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [n for n in self.nodes if n.status == "up"]
            try:
                seen = {
                    n.name: set(snowg.rpc.call(n.name, node_app.node_info, timeout=RPC_TIMEOUT)["nodes"]) for n in up
                }
            except Exception:  # noqa: BLE001 - a node going away: try again
                seen = {}
            if seen and all({m.name for m in up if m is not n} <= seen[n.name] for n in up):
                return True
            gevent.sleep(0.05)
        return False

    def _ensure_tree(self, force: bool = False) -> None:
        first = self.nodes[0]
        if first.status != "up":
            return
        now = time.monotonic()
        if not force and now - self._tree_started_at < 3.0:
            return
        self._tree_started_at = now
        self._wait_mesh()
        others = [n.name for n in self.nodes[1:]]
        pid = snowg.rpc.call(first.name, node_app.start_tree, others, timeout=10)
        self._event(f"supervisor demo_sup {pid} running on {first.short}")

    def _ensure_tree_quietly(self) -> None:
        try:
            self._ensure_tree()
        except Exception as exc:  # noqa: BLE001 - tried again at the next poll
            log.warning("cannot start the supervision tree: %s", exc)

    def _gather(self) -> None:
        creations = {s["node"]: s["creation"] for s in snowg.cluster.session_stats()}

        def info(n: DemoNode) -> None:
            if n.status != "up":
                return
            try:
                snap = snowg.rpc.call(n.name, "snowg.observe:snapshot", limit=0, timeout=RPC_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - shown on the page
                n.info = {"error": f"{type(exc).__name__}: {exc}"}
                return
            n.info = {
                "nodes": snap["nodes"],
                "creation": creations.get(n.name),
                "rooms": {str(r["room"]): r["local_members"] for r in snap["rooms"]},
                "room_counts": {str(r["room"]): r["members"] for r in snap["rooms"]},
                "processes": snap["process_count"],
                "counts": snap["counts"],
            }

        def tree() -> None:
            first = self.nodes[0]
            if first.status != "up":
                self.tree = {"supervisor": None, "children": [], "node": first.name, "error": f"{first.short} is down"}
                return
            try:
                self.tree = snowg.rpc.call(first.name, node_app.tree_state, timeout=RPC_TIMEOUT)
            except Exception as exc:  # noqa: BLE001
                self.tree = {
                    "supervisor": None,
                    "children": [],
                    "node": first.name,
                    "error": f"{type(exc).__name__}: {exc}",
                }
                return
            gave_up = self.tree.get("gave_up")
            if gave_up is not None and gave_up.get("at") != self._gave_up_seen:
                self._gave_up_seen = gave_up.get("at")
                self._event(
                    f"supervisor demo_sup gave up: restart {gave_up.get('restarts')} within {gave_up.get('period')} s"
                    f" is over its intensity of {gave_up.get('intensity')} (crashes of {gave_up.get('child_id')});"
                    " it stopped its children and ended"
                )
            if self.tree.get("supervisor") is None and gave_up is None and not any(n.busy for n in self.nodes):
                if self._tree_job is None or self._tree_job.dead:
                    self._tree_job = gevent.spawn(self._ensure_tree_quietly)

        jobs = [gevent.spawn(info, n) for n in self.nodes] + [gevent.spawn(tree)]
        gevent.joinall(jobs, timeout=RPC_TIMEOUT + 1)
        for j in jobs:
            j.kill(block=False)
        self._diff_children()

    def _diff_children(self) -> None:
        sup = self.tree.get("supervisor")
        if sup is None:
            return
        if sup != self._last_sup:
            self._last_sup = sup
            self._last_children.clear()
        for child in self.tree.get("children", []):
            key = child["id"]
            now = (child.get("pid"), child.get("node"))
            before = self._last_children.get(key)
            if before is not None and child.get("pid") and before[0] != now[0]:
                where = (child.get("node") or "?").split("@")[0]
                self._event(
                    f"child {key} restarted on {where}: {before[0]} -> {now[0]} (restarts: {child.get('restarts')})"
                )
            if child.get("pid"):
                self._last_children[key] = now

    def state(self) -> Dict[str, Any]:
        names = [n.name for n in self.nodes]
        nodes = []
        for n in self.nodes:
            sees = [x for x in n.info.get("nodes", []) if x in names or x == LAUNCHER_NAME] if n.status == "up" else []
            nodes.append(
                {
                    "name": n.name,
                    "short": n.short,
                    "status": n.status,
                    "os_pid": n.os_pid,
                    "address": n.address,
                    "ws_port": n.ws_port,
                    "creation": n.info.get("creation"),
                    "sees": sees,
                    "rooms": n.info.get("rooms", {}),
                    "room_counts": n.info.get("room_counts", {}),
                    "launches": n.launches,
                    "processes": n.info.get("processes"),
                    "counts": n.info.get("counts"),
                    "error": n.info.get("error"),
                    "busy": n.busy,
                }
            )
        return {
            "type": "state",
            "ready": self.ready,
            "launcher": LAUNCHER_NAME,
            "launcher_sees": snowg.nodes(),
            "nodes": nodes,
            "tree": self.tree,
            "events": [{"t": t, "text": text} for t, text in self.events],
        }

    def _push(self) -> None:
        if not self.controls:
            return
        data = json.dumps(self.state(), separators=(",", ":"))
        for conn in list(self.controls):
            conn.send(data)

    def _poll_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self._gather()
                self._push()
            except Exception:  # noqa: BLE001 - keep polling
                log.exception("poll failed")
            gevent.sleep(max(0.05, POLL_INTERVAL - (time.monotonic() - started)))

    # ------------------------------------------------------------ control

    def _control_handler(self, conn: ws.Connection) -> None:
        # Browsers let any web page open a WebSocket to 127.0.0.1: only this page may press the buttons.
        origin = conn.environ.get("HTTP_ORIGIN")
        allowed = {f"http://{host}:{self.port}" for host in (HOST, "localhost", "[::1]")}
        if origin is not None and origin not in allowed:
            log.warning("control connection from origin %r refused", origin)
            conn.close(1008, "wrong origin")
            return
        self.controls.add(conn)
        try:
            conn.send(json.dumps(self.state(), separators=(",", ":")))
            while True:
                data = conn.receive()
                if data is None:
                    return
                try:
                    msg = json.loads(data)
                except (TypeError, ValueError):
                    continue
                if isinstance(msg, dict) and not self.stop_event.is_set():
                    self._greenlets = [g for g in self._greenlets if not g.dead]
                    self._greenlets.append(gevent.spawn(self._action, conn, msg))
        finally:
            self.controls.discard(conn)

    def _action(self, conn: ws.Connection, msg: Dict[str, Any]) -> None:
        action = msg.get("action")
        result: Dict[str, Any] = {"type": "result", "action": action, "ok": True}
        try:
            if not self.ready:
                raise RuntimeError("the cluster is still starting")
            if action == "crash":
                child_id = str(msg.get("child"))
                pid = snowg.rpc.call(self.nodes[0].name, node_app.crash_child, child_id, timeout=RPC_TIMEOUT)
                if pid is None:
                    raise RuntimeError(f"no running child {child_id}")
                self._event(f"crash sent to child {child_id} ({pid})")
                result["text"] = f"crashed {child_id} {pid}"
            elif action == "start_tree":
                self._ensure_tree(force=True)
                result["text"] = "demo_sup started again"
            elif action in ("kill", "restart"):
                n = self.by_name.get(str(msg.get("node")))
                if n is None:
                    raise RuntimeError(f"unknown node {msg.get('node')!r}")
                if n.busy:
                    raise RuntimeError(f"{n.short} is busy")
                n.busy = True
                try:
                    if action == "kill":
                        self._kill_node(n)
                    else:
                        self._restart_node(n)
                finally:
                    n.busy = False
                result["text"] = f"{action} {n.short} done"
            else:
                raise RuntimeError(f"unknown action {action!r}")
        except Exception as exc:  # noqa: BLE001 - told to the page
            result.update(ok=False, text=f"{action}: {exc}")
            self._event(f"{action} failed: {exc}")
        conn.send(json.dumps(result))
        self._push()

    def _kill_node(self, n: DemoNode) -> None:
        if n.proc is None or not n.alive():
            raise RuntimeError(f"{n.short} is not running")
        self._event(f"kill -9 {n.short} (OS pid {n.proc.os_pid})")
        n.proc.kill()
        n.status = "down"

    def _restart_node(self, n: DemoNode) -> None:
        if n.alive():
            self._kill_node(n)
        via = next((m for m in self.nodes if m is not n and m.status == "up"), None)
        self._event(f"restarting {n.short}" + (f" (--connect {via.short})" if via else ""))
        self._start_node(n, via)
        if n is self.nodes[0]:
            self._ensure_tree(force=True)
