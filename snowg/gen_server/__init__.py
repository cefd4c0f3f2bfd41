"""GenServer: OTP's ``gen_server`` behaviour on snowg processes.

A server is a process running a loop around a :class:`GenServer` subclass:
requests from :func:`call` go to ``handle_call``, messages from :func:`cast`
to ``handle_cast``, anything else to ``handle_info``; the state lives in the
loop and is threaded through the handlers (semantics rules 21-22). The
messages are plain terms, so a server and its clients may be on different
nodes.

Three parts, one module each:

* the server loop and the :class:`GenServer` base class (``_server``);
* the client API, :func:`call`, :func:`cast`, :func:`reply`, :func:`stop`
  (``_client``);
* the synchronous start protocol (``_start``): :func:`start_sync` starts a
  process and waits until it acknowledges its initialisation with
  :func:`ack_ok`, :func:`ack_fail` or :func:`ack_ignore`. GenServer starts
  through it, and so does the supervisor, whose runners start a server (or a
  supervisor) on another node with :func:`run_server`.
"""

from ._client import Dest, From, call, cast, is_remote, reply, stop
from ._server import Continue, GenServer, Result, run_server
from ._start import IGNORE, Starter, ack_fail, ack_ignore, ack_ok, start_sync
from ._system import SYSTEM

__all__ = [
    "Continue",
    "Dest",
    "From",
    "GenServer",
    "Result",
    "call",
    "cast",
    "reply",
    "stop",
    # the tag of snowg.sys's requests (a call of (SYSTEM, op, arg), answered by the server loop)
    "SYSTEM",
    # the start protocol and the server body, for behaviours built on GenServer (the supervisor)
    "IGNORE",
    "Starter",
    "ack_fail",
    "ack_ignore",
    "ack_ok",
    "is_remote",
    "run_server",
    "start_sync",
]
