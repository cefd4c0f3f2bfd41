"""Erlang interoperability: a snowg node as a node to real Erlang and Elixir clusters.

A node started with ``start_node(..., erlang=True)`` (or ``'tls'``, ``'tcp'``,
an :class:`ErlangOptions`; ``snowg node NAME --erlang``) speaks Erlang's own
distribution protocol beside snowg's: it registers with EPMD (hidden, type
72), accepts and makes connections to BEAM nodes (the version-6 handshake,
the cookie, TLS compatible with ``-proto_dist inet_tls`` or plain TCP on
request), and carries signals as terms in Erlang's external term format.
BEAM pids then work as snowg pids do: ``send``, ``link``, ``monitor``,
``exit``; and BEAM nodes reach snowg processes the same way.

The public surface:

* :class:`ErlangOptions`, :func:`connect`, :func:`ping`, :func:`nodes`
  (the BEAM nodes; ``snowg.nodes()`` lists the snowg nodes);
  :func:`write_ssl_dist_optfile`, the ``-ssl_dist_optfile`` for ``erl``;
* :func:`call` and :func:`cast`, ``erpc:call``/``erpc:cast`` from Python into
  a BEAM node, and :class:`ErlangError`, an Erlang exception it raises;
* the terms with no plain Python type: :class:`Atom`, :class:`ImproperList`,
  :class:`ErlPort`, :class:`BitBinary`, :class:`OpaqueTerm`, :class:`ErlMap`;
* :class:`ErlangProtocolError`, raised for every malformed input from a peer.

Private modules, each sans-IO where it can be: ``_etf`` (the term format),
``_types``, ``_flags``, ``_dist_framing``, ``_dist_handshake``, ``_mapping``
(Python values to one peer's terms), ``_control`` (control messages),
``_connection`` (one live connection), ``_dist`` (the node side: listener,
handshakes, connects), ``_tlsdist`` (the option file), ``_services``
(``net_kernel``, started with the node's Erlang side), ``_io`` (the group
leader of what this node spawns on BEAM nodes), ``_erpc`` (spawn requests
from BEAM nodes, and :func:`call`/:func:`cast` into them).
"""

from __future__ import annotations

from .. import cluster as _cluster
from ._dist import ErlangOptions, check_options, connect, nodes, ping, start_service
from ._erpc import ErlangError, call, cast
from ._errors import ErlangProtocolError
from ._tlsdist import write_ssl_dist_optfile
from ._types import Atom, BitBinary, ErlMap, ErlPort, ImproperList, OpaqueTerm

__all__ = [
    "Atom",
    "BitBinary",
    "ErlMap",
    "ErlPort",
    "ErlangError",
    "ErlangOptions",
    "ErlangProtocolError",
    "ImproperList",
    "OpaqueTerm",
    "call",
    "cast",
    "connect",
    "nodes",
    "ping",
    "write_ssl_dist_optfile",
]

_cluster.register_protocol("erlang", start_service, check_options)
