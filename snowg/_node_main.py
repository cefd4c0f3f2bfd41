"""``snowg node``: run this OS process as a node until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any, Dict

import gevent
from gevent.event import Event

from . import cluster
from ._peer import ready_line

log = logging.getLogger("snowg")


def run_node(args: argparse.Namespace) -> int:
    """Start the node described by ``args`` (see ``snowg.cli``) and block until told to stop.

    Prints ``SNOWG_NODE_READY <name> <host:port>`` on stdout once listening
    (:func:`snowg._peer.ready_line`, what the process that started it waits
    for); logs go to stderr.

    Returns:
        The exit status: 0 after a clean stop, 1 if the node could not start,
        2 if a module to import failed (the reason is on stderr).
    """
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s {args.name} %(levelname)s %(message)s",
    )
    for module in args.modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - report any import failure clearly
            print(f"snowg node: cannot import {module!r}: {exc}", file=sys.stderr)
            return 2
    options: Dict[str, Any] = {}  # only what the command line set: the rest keeps start_node's defaults
    if args.tick is not None:
        options["tick"] = args.tick
    try:
        info = cluster.start_node(args.name, cookie=args.cookie, port=args.port, tls=args.certs, **options)
    except Exception as exc:  # noqa: BLE001 - NodeError and friends: say it and exit
        print(f"snowg node: {exc}", file=sys.stderr)
        return 1
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    if args.exit_with_parent:
        gevent.spawn(_watch_parent, os.getppid(), stop)
    for target in args.connect:
        if not cluster.connect(target):
            log.warning("could not connect to %s", target)
    sys.stdout.write(ready_line(info.name, info.address))
    sys.stdout.flush()
    stop.wait()
    log.info("stopping node %s", info.name)
    cluster.stop_node()
    return 0


def _watch_parent(parent: int, stop: Event) -> None:
    while os.getppid() == parent:
        gevent.sleep(0.5)
    stop.set()
