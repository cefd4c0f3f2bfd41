"""The cluster layer: nodes over mutually authenticated TLS, with msgpack frames.

This module is the layer's interface: the layers above import from here,
never from its private modules. It holds

* the node: :func:`start_node`, :func:`stop_node`, :func:`node`,
  :func:`nodes`, :func:`hidden_nodes`, :func:`session_stats`, :func:`connect`, :func:`ensure_connected`,
  :func:`disconnect`, :func:`monitor_node`, :func:`monitor_nodes`; names
  need no port: a node registers with its host's port mapper (EPMD's
  protocol: ``snowg epmd``, :func:`epmd_main`; ``snowg names``,
  :func:`names_main`) and ``connect('name@host')`` asks it;
* what may cross: :func:`spawnable`, :func:`lookup_spawnable`,
  :func:`spawnable_name`, :func:`check_term`, and node names
  (:func:`check_node_name`, :func:`is_node_name`);
* global names (:func:`register_global` ...) and :mod:`~snowg.cluster.rpc`;
* the one way upper layers plug in (:func:`register_frame_handler`,
  :func:`on_node_up`, :func:`on_node_down`, :func:`on_node_stop`,
  :func:`send_frame`, :func:`broadcast_frame`, :func:`frames_sent`);
* the seam for connections in other protocols (BEAM nodes, used by
  :mod:`snowg.erlang`): :class:`ForeignPeer`, :func:`attach_peer`,
  :func:`detach_peer`, :func:`foreign_peer`, :func:`foreign_nodes`,
  :func:`register_protocol`, :func:`foreign_service`, and the port mapper's
  :func:`port_please`;
* certificates: :func:`make_certs` and the ``snowg certs`` command
  (:func:`certs_main`), loaded on first use because they need
  ``cryptography``, which ``import snowg`` does not import.
"""

from typing import TYPE_CHECKING, Any

from . import rpc
from ._codec import check_term
from ._connect import DIAL_TIMEOUT, connect, disconnect, ensure_connected
from ._epmd_client import port_please
from ._extensions import (
    broadcast_frame,
    frames_sent,
    on_node_down,
    on_node_stop,
    on_node_up,
    register_frame_handler,
    send_frame,
)
from ._foreign import (
    ForeignContext,
    ForeignPeer,
    ForeignService,
    attach_peer,
    detach_peer,
    foreign_nodes,
    foreign_peer,
    foreign_service,
    protocol,
    register_protocol,
)
from ._frames import of_type
from ._global import register_global, registered_global, send_global, unregister_global, whereis_global
from ._lifecycle import current, hidden_nodes, node, nodes, start_node, stop_node
from ._names import check_node_name, is_node_name
from ._nodemon import monitor_node, monitor_nodes
from ._nodestate import Node
from ._sessioninfo import session_stats
from ._spawnable import lookup_spawnable, spawnable, spawnable_name
from ._tls import TLSConfig, client_context, load_tls, server_context

if TYPE_CHECKING:
    from ._certmaking import CertFiles, make_certs
    from ._certs_cli import certs_main
    from ._epmd_cli import epmd_main, names_main

__all__ = [
    "DIAL_TIMEOUT",
    "CertFiles",
    "ForeignContext",
    "ForeignPeer",
    "ForeignService",
    "Node",
    "TLSConfig",
    "attach_peer",
    "broadcast_frame",
    "certs_main",
    "check_node_name",
    "check_term",
    "client_context",
    "connect",
    "current",
    "detach_peer",
    "disconnect",
    "ensure_connected",
    "epmd_main",
    "foreign_nodes",
    "foreign_peer",
    "foreign_service",
    "frames_sent",
    "hidden_nodes",
    "is_node_name",
    "load_tls",
    "lookup_spawnable",
    "make_certs",
    "monitor_node",
    "monitor_nodes",
    "names_main",
    "node",
    "nodes",
    "of_type",
    "on_node_down",
    "on_node_stop",
    "on_node_up",
    "port_please",
    "register_frame_handler",
    "register_global",
    "protocol",
    "register_protocol",
    "registered_global",
    "rpc",
    "send_frame",
    "send_global",
    "server_context",
    "session_stats",
    "spawnable",
    "spawnable_name",
    "start_node",
    "stop_node",
    "unregister_global",
    "whereis_global",
]

# Names whose modules import cryptography (or argparse, for the CLIs): loaded on first use.
_LAZY = {
    "CertFiles": "_certmaking",
    "make_certs": "_certmaking",
    "certs_main": "_certs_cli",
    "epmd_main": "_epmd_cli",
    "names_main": "_epmd_cli",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
