"""``snowg epmd`` (run the port mapper) and ``snowg names`` (list a host's nodes).

``snowg epmd`` runs :class:`~._epmd_server.Mapper` in the foreground,
printing one line that says where it listens, until SIGTERM or SIGINT (exit
0), or a ``KILL_REQ`` (``epmd -kill``). With ``--daemon`` it binds the port,
then detaches as ``epmd -daemon`` does (double fork, new session, working
directory ``/``, stdio on ``/dev/null``); the command returns once the
daemon listens. A port already held by another mapper is an error in the
foreground (exit 1) and a quiet success with ``--daemon``, so that nodes
starting at once may each try to start one.

``snowg names [HOST]`` prints what ``epmd -names`` prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import List

from .._errors import NodeError
from ._epmd_client import epmd_port, names
from ._epmd_server import Mapper, PortTaken, listen_addresses, open_listeners

__all__ = ["epmd_main", "names_main"]

log = logging.getLogger("snowg")

#: Seconds a mapper that holds the port may take to answer before the port counts as taken by something else.
_ANSWER_WAIT = 3.0


def epmd_main(argv: List[str]) -> int:
    """Run ``snowg epmd [--port P] [--address A[,B]] [--daemon] [--relaxed-command-check] [--log-level L]``.

    Blocks until the mapper stops (in the foreground), or until the daemon
    listens (``--daemon``).

    Args:
        argv: the arguments after ``epmd``.

    Returns:
        The exit code: 0 when stopped by a signal or ``KILL_REQ`` (or, with
        ``--daemon``, when the daemon listens or another mapper answers
        already); 1 when the port is taken or cannot be bound; 2 on bad usage.
    """
    parser = argparse.ArgumentParser(
        prog="snowg epmd",
        description="Run the port mapper (Erlang's EPMD protocol): it maps this host's node names to their ports.",
    )
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: $ERL_EPMD_PORT or 4369)")
    parser.add_argument(
        "--address",
        default=None,
        help="comma-separated IP addresses to listen on (default: $ERL_EPMD_ADDRESS, else all; "
        "127.0.0.1 is always added)",
    )
    parser.add_argument("--daemon", action="store_true", help="detach and run in the background")
    parser.add_argument(
        "--relaxed-command-check",
        action="store_true",
        help="accept KILL_REQ while nodes are registered, and STOP_REQ (as epmd's -relaxed_command_check)",
    )
    parser.add_argument("--log-level", default="INFO", help="log level on stderr (default: INFO)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        port = epmd_port() if args.port is None else args.port
        if not 0 < port < 65536:
            raise NodeError(f"--port {port} is not a port number (1..65535)")
        addresses = listen_addresses(None if args.address is None else args.address.split(","))
        listeners = open_listeners(addresses, port)
    except PortTaken as exc:
        if _mapper_answers(port):
            if args.daemon:
                return 0
            print(f"snowg epmd: port {port} is taken: a port mapper already runs there", file=sys.stderr)
        else:
            print(f"snowg epmd: {exc}; what holds it does not answer as a port mapper", file=sys.stderr)
        return 1
    except NodeError as exc:
        print(f"snowg epmd: {exc}", file=sys.stderr)
        return 1
    if args.daemon:
        if _detach():
            for sock in listeners:
                sock.close()
            return 0
    else:
        _configure_logging(args.log_level)
    mapper = Mapper(listeners, relaxed=args.relaxed_command_check)
    import gevent

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, mapper.stop)
    mapper.start()
    if not args.daemon:
        where = ", ".join(f"[{a}]" if ":" in a else a for a in mapper.addresses)
        print(f"snowg epmd: listening on {where} port {mapper.port}", flush=True)
    mapper.wait()
    return 0


def _mapper_answers(port: int) -> bool:
    import time

    import gevent

    deadline = time.monotonic() + _ANSWER_WAIT
    while True:
        try:
            names("127.0.0.1", epmd_port=port, timeout=max(0.1, deadline - time.monotonic()))
            return True
        except NodeError:
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.05)


def _detach() -> bool:
    """Double fork into a new session; True in the original process (which should exit), False in the daemon."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the middle process exits at once
        return True
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return False


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO), handlers=[handler])


def names_main(argv: List[str]) -> int:
    """Run ``snowg names [HOST] [--port P]``: print the nodes HOST's port mapper knows, as ``epmd -names``.

    Blocks for at most a few seconds.

    Args:
        argv: the arguments after ``names``.

    Returns:
        0, or 1 when no mapper answers (with a message saying so), 2 on bad usage.
    """
    parser = argparse.ArgumentParser(prog="snowg names", description="List the nodes a host's port mapper knows.")
    parser.add_argument("host", nargs="?", default="127.0.0.1", help="the host to ask (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="its mapper's port (default: $ERL_EPMD_PORT or 4369)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default: 5)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        port = epmd_port() if args.port is None else args.port
        listed = names(args.host, epmd_port=port, timeout=args.timeout)
    except NodeError as exc:
        print(f"snowg names: {exc}", file=sys.stderr)
        return 1
    lines = [f"epmd: up and running on port {port} with data:"]
    lines += [f"name {name} at port {node_port}" for name, node_port in listed]
    print("\n".join(lines), flush=True)
    return 0
