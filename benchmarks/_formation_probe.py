"""The node side of the cluster-formation benchmark (cluster_formation.py): ``--import _formation_probe``.

Importing it spawns a greenlet that waits for the node to start (``snowg
node`` imports its modules first), then watches the node's connections with
``monitor_nodes`` and writes one line on stdout each time their number
changes, the first as soon as it watches::

    FORMATION_PEERS <len(nodes())> <time.monotonic_ns()>

CLOCK_MONOTONIC is system-wide on Linux, so the benchmark subtracts the time
it launched the nodes. The probe does nothing else: it takes no part in the
cluster, and once the mesh is formed it sleeps in ``receive`` (the idle CPU
the benchmark measures is the node's own).
"""

from __future__ import annotations

import sys
import time

import gevent

import snowg

PREFIX = "FORMATION_PEERS"
#: How often the probe looks whether the node has started (only until it has).
START_POLL = 0.001


def _report() -> None:
    sys.stdout.write(f"{PREFIX} {len(snowg.nodes())} {time.monotonic_ns()}\n")
    sys.stdout.flush()


def _watch() -> None:
    snowg.monitor_nodes(True)
    _report()
    while True:
        snowg.receive(lambda m: isinstance(m, (snowg.NodeUp, snowg.NodeDown)))
        _report()


def _wait_for_node() -> None:
    while snowg.node() == "nonode@nohost":
        gevent.sleep(START_POLL)
    snowg.spawn(_watch)


gevent.spawn(_wait_for_node)
