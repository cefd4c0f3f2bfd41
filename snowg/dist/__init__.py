"""Distribution: nodes over mutually authenticated TLS (see DESIGN.md "Distribution")."""
from .node import (
    Node,
    connect,
    disconnect,
    monitor_node,
    monitor_nodes,
    node,
    nodes,
    start_node,
    stop_node,
)
from . import rpc
from .global_registry import (
    register_global,
    registered_global,
    send_global,
    unregister_global,
    whereis_global,
)
from .spawnable import spawnable

__all__ = [
    "Node", "connect", "rpc", "disconnect", "monitor_node", "monitor_nodes", "node", "nodes",
    "spawnable", "start_node", "stop_node", "register_global", "registered_global", "send_global",
    "unregister_global", "whereis_global",
]
