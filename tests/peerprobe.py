"""Imported by a test's node process (``--import peerprobe``): it logs the node's peers at each change.

Each time a node connects or is lost, the node's log (its stderr) gets the
line ``PEERS a@h,b@h`` (the sorted :func:`snowg.nodes`, empty for none), so
a test reads the exact peer set of a node it started without connecting to
it: a test node in the cluster would pass peer lists around and could join
nodes that discovery failed to join.
"""

from __future__ import annotations

import logging

from snowg.cluster import nodes, on_node_down, on_node_up

PREFIX = "PEERS"

log = logging.getLogger("snowg")


def _report(_name: str) -> None:
    log.info("%s %s", PREFIX, ",".join(nodes()))


on_node_up(_report)
on_node_down(_report)
