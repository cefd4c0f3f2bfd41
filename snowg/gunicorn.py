"""gunicorn workers that are snowg nodes: ``gunicorn -k snowg.gunicorn.Worker -w 4 app:app``.

:class:`Worker` is gevent-websocket's gunicorn worker (gevent, monkey-patched,
WebSocket upgrades) in which each worker process is also a node of one
cluster, so a room broadcast from a client of one worker reaches the clients
of every worker. Nothing needs a name, a port, a certificate or a peer:

* **after the fork, never in the master.** The node starts in the worker
  process, once the application is loaded and before the worker serves its
  first request. With ``--preload`` the application is imported in the
  master; if it starts a node there itself, that node is stopped (with a
  warning) before the first worker is forked, so the master is never a node.
  An application that starts a node in the worker itself keeps it.
* **its name**: ``PREFIX-XXXXXX`` (six random hex digits; the host from
  ``$SNOWG_HOST``, else 127.0.0.1). PREFIX is ``$SNOWG_PREFIX``, else
  gunicorn's ``--name`` (``proc_name``) when set, else the application's
  module (``myproject.wsgi:app`` -> ``myproject_wsgi``), reduced to letters,
  digits, ``_`` and ``-``. Nodes with the same prefix form one cluster.
* **its cluster**: the ``local`` strategy (every node of this host with the
  same prefix: the sibling workers, and their replacements as they come),
  plus whatever ``$SNOWG_CLUSTER`` names, for workers on other hosts.
* **its log**: unless the application configured logging itself (handlers
  or a level on the ``snowg`` logger, or handlers on the root logger), the
  ``snowg`` logger writes to gunicorn's error log, with its handlers and
  level. Each worker says which node it is, at INFO.
* **its end**: on a graceful stop (``TERM``, a ``HUP`` reload, ``--reload``,
  ``max_requests``, which this worker counts, WebSocket upgrades included,
  where gevent-websocket's never does) the worker stops accepting, closes
  its WebSocket connections with 1001 (going away: a client that reconnects
  gets another worker), waits for its requests as gunicorn does
  (``graceful_timeout``), then stops the node, sending what its sessions
  hold queued first. A worker
  killed outright is noticed by the others when its connections close; its
  replacement is a new node with a new name, which they connect to.

Upgrades are checked by :class:`snowg.ws.WebSocketHandler` (the request
deadline, the Origin check) with gunicorn's access log. The WebSocket
connections closed at a graceful stop are those of the application when it
is a :class:`snowg.ws.WebSocketApp`, or when its ``wsgi_app`` is (Flask's
``app.wsgi_app = WebSocketApp(handler, fallback_app=app.wsgi_app)``); others
end with ``graceful_timeout``.

``import snowg`` never imports this module or gunicorn.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from typing import Any, List, Mapping, Optional

try:
    from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
    from gunicorn.workers.ggevent import PyWSGIHandler  # type: ignore[import-untyped]
except ImportError as exc:
    raise ImportError(
        f"snowg.gunicorn needs gunicorn and gevent-websocket ({exc}): pip install snowg[gunicorn]"
    ) from exc

from .cluster import current, start_node, stop_node
from .ws import WebSocketApp, WebSocketHandler

__all__ = ["Worker", "settings_prefix"]

log = logging.getLogger("snowg")

#: The prefix of the workers' node names when nothing else gives one.
FALLBACK_PREFIX = "snowg"
#: The longest prefix taken from gunicorn's settings (a node name has at most 255 characters).
MAX_PREFIX = 64

_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class _Handler(WebSocketHandler, PyWSGIHandler):  # type: ignore[misc]
    """snowg's upgrade checks, with gunicorn's environ (``gunicorn.sock``, ``RAW_URI``) and access log.

    Each request is counted by the process's worker, for ``max_requests``
    (gunicorn's own count is in its request loop, which a gevent WSGI
    server's worker does not run).
    """

    #: The worker of this process, set after the fork.
    worker: Optional[Worker] = None

    def run_application(self) -> None:
        if self.worker is not None:
            self.worker.count_request()
        super().run_application()

    def log_request(self) -> None:
        PyWSGIHandler.log_request(self)


class Worker(GeventWebSocketWorker):  # type: ignore[misc]
    """A gevent-websocket gunicorn worker that is a node of its siblings' cluster (see the module docstring).

    Use it with ``gunicorn -k snowg.gunicorn.Worker``. A node that cannot
    start (certificates others can read, a bad ``$SNOWG_CLUSTER``, no port
    mapper) stops the worker before it serves anything, and gunicorn with
    it: the error is in gunicorn's error log.
    """

    wsgi_handler = _Handler
    _closing = False
    # gunicorn's, set in its Worker.__init__: running, requests handled, requests before a restart.
    alive: bool
    nr: int
    max_requests: int

    @classmethod
    def check_config(cls, cfg: Any, glog: Any) -> None:
        """In the master, at start (after ``--preload`` imported the application): the master is no node."""
        info = current()
        if info is None:
            return
        glog.warning(
            "the application started node %s in gunicorn's master (--preload): stopped; "
            "with snowg.gunicorn.Worker each worker is a node, started after the fork",
            info.name,
        )
        stop_node(flush_timeout=0)

    def load_wsgi(self) -> None:
        """Load the application, then become a node (in the worker, after gevent's patching, before serving).

        Raises:
            NodeError: the node cannot start (the worker, and gunicorn, stop).
        """
        super().load_wsgi()
        _Handler.worker = self
        _log_to(getattr(self.log, "error_log", None))
        info = current()
        if info is not None:
            log.info("gunicorn worker %d is node %s (started by the application)", os.getpid(), info.name)
            return
        # With $SNOWG_PREFIX, start_node makes the name (and says what is wrong with a bad one).
        name = None if os.environ.get("SNOWG_PREFIX") else f"{settings_prefix(self.cfg)}-{secrets.token_hex(3)}"
        info = start_node(name, cluster=_strategies(os.environ))
        log.info("gunicorn worker %d is node %s", os.getpid(), info.name)

    def count_request(self) -> None:
        """One more request; at ``max_requests`` the worker stops gracefully (gunicorn replaces it)."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")  # gunicorn's own words
            self.alive = False

    def notify(self) -> None:
        """gunicorn's heartbeat; once the worker stops accepting, it also closes the WebSocket connections.

        gunicorn calls it every second while the worker runs, and while a
        stopping worker waits for its requests to end: the first call after
        ``alive`` went false asks every WebSocket client to go (1001), which
        ends those requests; without it they would last until
        ``graceful_timeout``.
        """
        super().notify()
        if self.alive or self._closing:
            return
        self._closing = True
        closing = sum(app.close_all(1001, "server shutting down") for app in _websocket_apps(self.wsgi))
        if closing:
            log.info("gunicorn worker %d stopping: %d WebSocket connections closed with 1001", os.getpid(), closing)

    def run(self) -> None:
        """Serve until gunicorn stops the worker, then leave the cluster (blocks until then)."""
        try:
            super().run()
        finally:
            stop_node()


def settings_prefix(cfg: Any) -> str:
    """The workers' name prefix that gunicorn's settings give, when ``$SNOWG_PREFIX`` is not set.

    gunicorn's ``proc_name`` when set, else the application's module
    (``myproject.wsgi:application`` -> ``myproject_wsgi``), reduced to
    letters, digits, ``_`` and ``-`` (others become ``_``), at most
    :data:`MAX_PREFIX` characters; ``snowg`` if nothing is left.

    Args:
        cfg: gunicorn's configuration.
    """
    proc_name: Optional[str] = cfg.settings["proc_name"].get()
    app_uri: Optional[str] = cfg.settings["default_proc_name"].get()
    source = proc_name or (app_uri or "").split(":", 1)[0]
    return _NOT_NAME.sub("_", source).strip("_-")[:MAX_PREFIX] or FALLBACK_PREFIX


def _strategies(env: Mapping[str, str]) -> List[str]:
    """``local``, then the strategies ``$SNOWG_CLUSTER`` names (whitespace-separated)."""
    return ["local", *(s for s in env.get("SNOWG_CLUSTER", "").split() if s != "local")]


def _log_to(error_log: Any) -> None:
    """Send the ``snowg`` logger to gunicorn's error log, unless logging was configured for it."""
    snowg_log = logging.getLogger("snowg")
    own = [h for h in snowg_log.handlers if not isinstance(h, logging.NullHandler)]  # snowg adds a NullHandler
    configured = own or snowg_log.level != logging.NOTSET or logging.getLogger().handlers
    if configured or not isinstance(error_log, logging.Logger):
        return
    for handler in error_log.handlers:
        snowg_log.addHandler(handler)
    snowg_log.setLevel(error_log.level)
    snowg_log.propagate = False  # as gunicorn's own logger: nothing twice through the root's handlers


def _websocket_apps(wsgi: Any) -> List[WebSocketApp]:
    """The :class:`WebSocketApp` the worker serves: the application, or its ``wsgi_app`` (Flask's)."""
    return [app for app in (wsgi, getattr(wsgi, "wsgi_app", None)) if isinstance(app, WebSocketApp)]
