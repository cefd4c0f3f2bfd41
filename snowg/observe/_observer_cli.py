"""``snowg observer [--port P] [--bind ADDR] [NODE]``: the web observer as a command.

It starts a hidden node (``start_node(hidden=True)``: a unique
``PREFIX-observerXXXXXX`` name, PREFIX ``$SNOWG_PREFIX`` else ``snowg``, so
that discovery's prefix rule finds the nodes of its cluster; the cookie and certificates every node uses:
``--cookie``/``$SNOWG_COOKIE``/the cookie file, ``--certs``/``$SNOWG_HOME``),
joins the cluster through NODE (and so every node NODE is connected to),
or without NODE through discovery (``$SNOWG_CLUSTER``, else ``local``: the
nodes of this host's port mapper), serves the page with
:class:`~snowg.observe._observer.Observer` and runs until SIGINT or SIGTERM.
Its first line on stdout says where the page is.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
from typing import List, Optional

import gevent
from gevent.event import Event

from .._errors import SnowgError
from ..cluster import connect, start_node, stop_node
from ._observer import DEFAULT_BIND, DEFAULT_PORT, INTERVAL, Observer

__all__ = ["observer_main"]

log = logging.getLogger("snowg")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snowg observer",
        description="Join a cluster as a hidden node and serve a live web page of it (processes, "
        "supervision trees, groups, rooms, sessions), with Prometheus metrics at /metrics.",
    )
    p.add_argument(
        "node",
        nargs="?",
        default=None,
        metavar="NODE",
        help="a node of the cluster, 'name@host[:port]' (default: discovery, $SNOWG_CLUSTER, else 'local')",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port of the page (default {DEFAULT_PORT})")
    p.add_argument(
        "--bind", default=DEFAULT_BIND, metavar="ADDR", help=f"address the page listens on (default {DEFAULT_BIND})"
    )
    p.add_argument(
        "--interval", type=float, default=INTERVAL, metavar="SECONDS", help="seconds between refreshes (default 1)"
    )
    p.add_argument(
        "--name",
        default=None,
        help="this node's name (default: a unique 'PREFIX-observerXXXXXX', PREFIX $SNOWG_PREFIX else 'snowg', "
        "the prefix discovery looks for)",
    )
    p.add_argument("--cookie", default=None, help="cluster cookie (default: $SNOWG_COOKIE or the cookie file)")
    p.add_argument("--certs", default=None, metavar="DIR", help="certificate directory (default: ~/.snowg/certs)")
    p.add_argument("--tick", type=float, default=None, metavar="SECONDS", help="liveness tick (default 15)")
    p.add_argument("--log-level", default="WARNING", metavar="LEVEL", help="DEBUG, INFO, WARNING (default), ERROR")
    return p


def observer_main(argv: Optional[List[str]] = None) -> int:
    """Run ``snowg observer`` until SIGINT/SIGTERM; the exit code (0: stopped cleanly).

    Blocks until then. Returns 1 (with a line on stderr) when the node cannot
    start, NODE cannot be reached or the port cannot be bound.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s observer %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.interval <= 0:
        sys.stderr.write("snowg observer: --interval must be positive\n")
        return 2
    # Discovery joins the nodes of this name's prefix (up to its last '-'): the cluster's.
    name = args.name or f"{os.environ.get('SNOWG_PREFIX') or 'snowg'}-observer{secrets.token_hex(3)}"
    options = {"cookie": args.cookie, "tls": args.certs, "hidden": True}
    if args.tick is not None:
        options["tick"] = args.tick
    if args.node is None and not os.environ.get("SNOWG_CLUSTER", "").strip():
        options["cluster"] = "local"
    try:
        info = start_node(name, **options)
    except SnowgError as exc:
        sys.stderr.write(f"snowg observer: cannot start the node: {exc}\n")
        return 1
    observer = None
    try:
        if args.node is not None and not connect(args.node):
            sys.stderr.write(f"snowg observer: cannot connect to {args.node} (see the log above)\n")
            return 1
        observer = Observer(args.port, args.bind, interval=args.interval)
        try:
            observer.start()
        except OSError as exc:
            sys.stderr.write(f"snowg observer: cannot listen on {args.bind}:{args.port}: {exc}\n")
            return 1
        sys.stdout.write(f"snowg observer: {observer.url} (hidden node {info.name})\n")
        sys.stdout.flush()
        stop = Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, stop.set)
        stop.wait()
        return 0
    finally:
        if observer is not None:
            observer.stop()
        stop_node(flush_timeout=1)
