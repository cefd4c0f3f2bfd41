"""``snowg node``: run this OS process as a node until SIGTERM or SIGINT, or until its application ends.

The node starts as :func:`snowg.start_node` would be called with the command
line's options (those not given keep ``start_node``'s defaults: a generated
name, ``$SNOWG_CLUSTER``, the port mapper...), imports the ``--import``
modules, connects to each ``--connect`` target, then prints its ready line.

An application as a node (``--app MODULE:FUNCTION``), as an OTP node runs a
permanent application: a process of the node, the *application process*,
calls the function, which starts the application's top supervisor with
``supervisor.start_link`` (so that it is linked to the caller, as an OTP
application's ``start/2`` does) and returns its pid. The node is ready once
it has returned. From then on:

* the supervisor ends (it gave up after too many restarts, or any other
  reason), or the application process is killed (the supervisor, linked to
  it, then stops its children and ends, within
  :data:`SUPERVISOR_END_TIMEOUT`): the node logs the reason at ERROR, stops,
  and the OS process exits with status :data:`EXIT_APP_ENDED` (1), so that
  systemd (``Restart=on-failure``) or Kubernetes starts it again;
* SIGTERM or SIGINT: the application process sends the supervisor the exit
  signal ``'shutdown'`` (it stops its children in reverse start order, each
  within its ``shutdown``), waits for its end, then the node stops
  (:func:`snowg.stop_node`) and the process exits with status 0.

Exit statuses: 0 after a requested stop; 1 when the node cannot start or its
application ended; 2 for a usage error (a bad argument, an ``--import``
module that fails, an ``--app`` that cannot be found or called, that raises,
or that does not return the pid of a supervisor it started linked).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any, Callable, Dict, Optional, Tuple

import gevent
from gevent.event import AsyncResult, Event

from . import cluster
from ._errors import Timeout
from ._core import Down, Pid, ProcessExit, is_alive, monitor, process_info, receive, send, spawn, trap_exit
from ._core import exit as exit_signal
from ._core import self as self_pid
from ._peer import ready_line

log = logging.getLogger("snowg")

EXIT_OK = 0
EXIT_FAILED = 1
#: The status of a node whose ``--app`` supervisor ended: the node went down, it should be started again.
EXIT_APP_ENDED = EXIT_FAILED
EXIT_USAGE = 2

#: Seconds a node whose application process was killed waits for the supervisor to stop its children.
SUPERVISOR_END_TIMEOUT = 60.0

_STOP = "snowg_node_stop"


class UsageError(Exception):
    """A bad ``--import`` or ``--app``: the message says what to fix."""


def run_node(args: argparse.Namespace) -> int:
    """Start the node described by ``args`` (see ``snowg.cli``) and block until told to stop.

    Prints ``SNOWG_NODE_READY <name> <host:port>`` on stdout once it listens,
    has connected to its ``--connect`` targets and its ``--app`` runs
    (:func:`snowg._peer.ready_line`, what the process that started it waits
    for); logs go to stderr.

    Returns:
        The exit status (see the module docstring): 0 after a requested stop,
        1 if the node could not start or its application ended, 2 for a bad
        ``--import`` or ``--app`` (the reason is on stderr).
    """
    _configure_logging(args)
    try:
        for module in args.modules:
            _import(module, f"--import {module}")
        app = _resolve_app(args.app) if args.app else None
        start_options = _start_options(args)
    except UsageError as exc:
        print(f"snowg node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        info = cluster.start_node(args.name, **start_options)
    except Exception as exc:  # noqa: BLE001 - NodeError and friends: say it and exit
        print(f"snowg node: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop_options: Dict[str, Any] = {}
    if args.flush_timeout is not None:
        stop_options["flush_timeout"] = args.flush_timeout
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    if args.exit_with_parent:
        gevent.spawn(_watch_parent, os.getppid(), stop)
    for target in args.connect:
        if not cluster.connect(target):
            log.warning("could not connect to %s", target)
    application: Optional[_Application] = None
    if app is not None:
        application = _Application(args.app, app, on_end=stop.set)
        try:
            application.start()
        except UsageError as exc:
            print(f"snowg node: {exc}", file=sys.stderr)
            cluster.stop_node(**stop_options)
            return EXIT_USAGE
    sys.stdout.write(ready_line(info.name, info.address))
    sys.stdout.flush()
    stop.wait()
    status = EXIT_OK
    if application is not None:
        if application.end is not None:
            what, reason = application.end
            log.error(
                "application %s: %s ended with reason %r; stopping the node (exit status %d)",
                args.app,
                what,
                reason,
                EXIT_APP_ENDED,
            )
            status = EXIT_APP_ENDED
            application.wait_supervisor(SUPERVISOR_END_TIMEOUT)
        else:
            log.info("stopping application %s", args.app)
            application.stop()
    log.info("stopping node %s", info.name)
    cluster.stop_node(**stop_options)
    return status


def _start_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``start_node``'s keywords: only what the command line set, the rest keeps its defaults."""
    options: Dict[str, Any] = {"cookie": args.cookie, "port": args.port, "tls": args.certs}
    given = {
        "tick": args.tick,
        "port_range": args.port_range,
        "listen_host": args.listen_host,
        "epmd": args.epmd,
        "max_handshakes": args.max_handshakes,
        "max_handshakes_per_address": args.max_handshakes_per_address,
        "check_peer_names": args.check_peer_names,
    }
    options.update((key, value) for key, value in given.items() if value is not None)
    if getattr(args, "hidden", False):
        options["hidden"] = True
    if args.cluster:
        options["cluster"] = [spec for text in args.cluster for spec in text.split()]
    erlang = getattr(args, "erlang", None)
    if erlang is not None:
        from .erlang import ErlangOptions  # registers the protocol with the cluster layer too

        options["erlang"] = ErlangOptions(
            transport=erlang,
            port=args.erlang_port or 0,
            cookie_file=bool(args.erlang_cookie_file),
        )
    elif getattr(args, "erlang_cookie_file", False) or getattr(args, "erlang_port", None) is not None:
        raise UsageError("--erlang-cookie-file and --erlang-port need --erlang")
    return options


def _configure_logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(snowg_node)s %(levelname)s %(message)s"))
    handler.addFilter(_NodeNameFilter(args.name or "-"))
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), handlers=[handler])


class _NodeNameFilter(logging.Filter):
    """Puts the node's name in each record (the full name once it started, the command line's before)."""

    def __init__(self, fallback: str) -> None:
        super().__init__()
        self.fallback = fallback

    def filter(self, record: logging.LogRecord) -> bool:
        node = cluster.current()
        if node is not None:
            self.fallback = node.name  # kept for the lines logged after it stopped
        record.snowg_node = self.fallback
        return True


def _import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - report any import failure clearly
        raise UsageError(f"{what}: cannot import {module!r}: {type(exc).__name__}: {exc}") from None


def _resolve_app(spec: str) -> Callable[[], Any]:
    """The function an ``--app MODULE:FUNCTION`` names (FUNCTION may be dotted: ``Class.method``)."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise UsageError(f"--app expects MODULE:FUNCTION (e.g. myapp.main:start), not {spec!r}")
    target: Any = _import(module_name, f"--app {spec}")
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--app {spec}: {module_name} has no attribute {attr!r}") from None
    if not callable(target):
        raise UsageError(f"--app {spec}: {attr} is {target!r:.80} (type {type(target).__name__}), not a function")
    fn: Callable[[], Any] = target
    return fn


class _Application:
    """The ``--app``'s application process: starts the top supervisor, watches it, stops it on request."""

    def __init__(self, spec: str, fn: Callable[[], Any], on_end: Callable[[], None]) -> None:
        self.spec = spec
        self.fn = fn
        self.on_end = on_end
        self.pid: Optional[Pid] = None
        self.started: "AsyncResult[Pid]" = AsyncResult()  # the supervisor's pid, or a UsageError
        # Once it ended by itself: ('its supervisor' or 'its application process', exit reason).
        self.end: Optional[Tuple[str, Any]] = None
        self.stopped = Event()  # the application process is gone
        self.stopping = False  # stop() was called

    def start(self) -> Pid:
        """Run the function in a new process; blocks until it returned.

        Raises:
            UsageError: it raised, or did not return the pid of a live process
                of this node that it started linked.
        """
        self.pid = spawn(self._run)
        sup = self.started.get()
        assert sup is not None  # set() is only called with a pid
        log.info("application %s started: its supervisor is %s", self.spec, sup)
        return sup

    def stop(self) -> None:
        """Stop the supervisor (exit signal ``'shutdown'``); blocks until it ended."""
        self.stopping = True
        if self.pid is not None:
            send(self.pid, _STOP)
        self.stopped.wait()

    def wait_supervisor(self, timeout: float) -> None:
        """Block until the supervisor has ended, at most ``timeout`` seconds (it may still be stopping its children)."""
        sup = self.started.get() if self.started.successful() else None
        if sup is None or not is_alive(sup):
            return
        ref = monitor(sup)
        try:
            receive(lambda m: type(m) is Down and m.ref == ref, timeout=timeout)
        except Timeout:
            log.warning("application %s: its supervisor %s did not end within %g s", self.spec, sup, timeout)

    def _run(self) -> None:
        reason: Any = "normal"
        try:
            trap_exit(True)
            sup = self._call()
            if sup is None:
                return
            ref = monitor(sup)
            self.started.set(sup)
            msg = receive(lambda m: (type(m) is Down and m.ref == ref) or m == _STOP)
            if type(msg) is Down:
                self.end = ("its supervisor", msg.reason)
                self.on_end()
                return
            exit_signal(sup, "shutdown")
            down = receive(lambda m: type(m) is Down and m.ref == ref)
            log.info("application %s stopped: its supervisor ended with reason %r", self.spec, down.reason)
        except BaseException as exc:
            reason = exc.reason if isinstance(exc, ProcessExit) else repr(exc)
            raise
        finally:
            if not self.started.ready():
                self.started.set_exception(UsageError(f"--app {self.spec}: its process ended before it returned"))
            elif self.end is None and not self.stopping:
                # Killed before its supervisor ended: the supervisor, linked to it, ends with it.
                self.end = ("its application process", reason)
                self.on_end()
            self.stopped.set()

    def _call(self) -> Optional[Pid]:
        """The function's supervisor; None (and ``started`` holds why) when it failed."""
        try:
            sup = self.fn()
        except Exception as exc:
            log.error("--app %s raised", self.spec, exc_info=True)
            self._fail(f"raised {type(exc).__name__}: {exc}")
            return None
        if type(sup) is not Pid:
            self._fail(
                f"returned {sup!r:.80} (type {type(sup).__name__}), not the pid of the application's top supervisor"
            )
            return None
        info = process_info(sup)
        if info is not None and self_pid() not in info["links"]:
            self._fail(
                f"returned {sup}, a process not linked to its caller: start the top supervisor with "
                "snowg.supervisor.start_link in the function, so that the node can stop it"
            )
            return None
        return sup

    def _fail(self, what: str) -> None:
        self.started.set_exception(UsageError(f"--app {self.spec} {what}"))


def _watch_parent(parent: int, stop: Event) -> None:
    while os.getppid() == parent:
        gevent.sleep(0.5)
    stop.set()
