"""Erlang interoperability: a snowg node as a node to real Erlang and Elixir clusters (in progress).

The package will let a snowg node speak Erlang's own distribution protocol
beside snowg's msgpack-over-TLS one: register with EPMD, run the version-6
handshake in both roles, and carry signals as terms in Erlang's external
term format. It is built bottom-up from sans-IO modules (bytes in, values
or events out, no sockets), each tested whole, one byte at a time, with
random input, and against a real ``erl``.

What exists now (all private; nothing is exported yet):

* ``_errors``: ``ErlangProtocolError``, raised for every malformed input.
* ``_types``: the Python side of Erlang terms that have no plain Python
  type (``Atom``, ``ImproperList``, ``ErlPid``, ``ErlRef``, ``ErlPort``,
  ``BitBinary``, ``OpaqueTerm``).
* ``_etf``: the external term format (version 131): ``encode``,
  ``decode``, and ``encode_dist``/``decode_dist`` for the terms of a
  distribution message; bounded, byte-exact with ``term_to_binary``.
* ``_flags``: the distribution flags (``DFLAG_*``), OTP 25's mandatory set.
* ``_dist_framing``: the length-prefixed framing of a distribution
  connection (handshake and connected phases, ticks).
* ``_dist_handshake``: the version-6 handshake, both roles.
"""

from __future__ import annotations

__all__: list[str] = []
