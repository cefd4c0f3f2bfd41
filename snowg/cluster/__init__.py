"""The cluster layer: nodes over mutually authenticated TLS (see docs/architecture).

This module is the layer's interface for the layers above it; its private
modules are not imported from outside the package.
"""
from . import rpc
from ._codec import check_term
from ._names import check_node_name, is_node_name
from ._spawnable import lookup_spawnable, spawnable, spawnable_name
from .global_registry import (
    register_global,
    registered_global,
    send_global,
    unregister_global,
    whereis_global,
)
from .node import (
    DIAL_TIMEOUT,
    Node,
    connect,
    disconnect,
    ensure_connected,
    monitor_node,
    monitor_nodes,
    node,
    nodes,
    start_node,
    stop_node,
)

__all__ = [
    "DIAL_TIMEOUT", "Node", "check_node_name", "check_term", "connect", "disconnect", "ensure_connected",
    "is_node_name", "lookup_spawnable", "monitor_node", "monitor_nodes", "node", "nodes", "register_global",
    "registered_global", "rpc", "send_global", "spawnable", "spawnable_name", "start_node", "stop_node",
    "unregister_global", "whereis_global",
]
