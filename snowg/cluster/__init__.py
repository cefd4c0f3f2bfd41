"""Distribution: nodes over mutually authenticated TLS (see docs/architecture).

``snowg.cluster.node`` is the module; the function ``node()`` (this node's name)
is ``snowg.node``.
"""
from . import node, rpc
from .node import (
    Node,
    connect,
    disconnect,
    monitor_node,
    monitor_nodes,
    nodes,
    start_node,
    stop_node,
)
from .global_registry import (
    register_global,
    registered_global,
    send_global,
    unregister_global,
    whereis_global,
)
from .spawnable import spawnable

__all__ = [
    "Node", "connect", "rpc", "disconnect", "monitor_node", "monitor_nodes", "nodes",
    "spawnable", "start_node", "stop_node", "register_global", "registered_global", "send_global",
    "unregister_global", "whereis_global",
]
