"""The ``snowg`` command: ``certs``, ``node``, ``epmd``, ``names``, ``example`` (and ``demo``).

Only the standard library is imported at the top, so that ``snowg node
--monkeypatch`` can patch the standard library before snowg (and gevent's
users) import it.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``snowg`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"] and "--monkeypatch" in argv:
        from gevent import monkey

        monkey.patch_all()
    parser = argparse.ArgumentParser(prog="snowg", description="Erlang/OTP processes and clusters for gevent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("certs", help="make a cluster CA and node certificates", add_help=False)
    sub.add_parser("epmd", help="run the port mapper (EPMD's protocol) in the foreground", add_help=False)
    sub.add_parser("names", help="list the nodes a host's port mapper knows", add_help=False)
    p_node = sub.add_parser("node", help="run a node until SIGTERM/SIGINT")
    p_node.add_argument("name", help="node name, 'name@host'")
    p_node.add_argument("--cookie", help="cluster cookie (default: $SNOWG_COOKIE or the cookie file)")
    p_node.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    p_node.add_argument("--certs", help="certificate directory made by 'snowg certs' (default: ~/.snowg/certs)")
    p_node.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        help="a module to import (its @spawnable functions become startable); repeatable",
    )
    p_node.add_argument("--connect", action="append", default=[], help="'name@host:port' to join; repeatable")
    p_node.add_argument("--tick", type=float, default=None, help="liveness tick in seconds (default 15)")
    p_node.add_argument("--monkeypatch", action="store_true", help="gevent.monkey.patch_all() first")
    p_node.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process goes")
    p_node.add_argument("--log-level", default="INFO")
    p_ex = sub.add_parser("example", help="a short program showing processes, links and monitors")
    p_ex.add_argument("--quiet", action="store_true")
    p_demo = sub.add_parser("demo", help="a live 3-node cluster in the browser")
    p_demo.add_argument(
        "--port",
        type=int,
        default=8000,
        help="HTTP port of the page; the nodes' chat uses PORT+1..3 (0: any free port)",
    )
    p_demo.add_argument(
        "--dir",
        default=None,
        help="keep certificates, cookie and logs here (default: a temporary directory, removed at exit)",
    )
    if argv[:1] == ["certs"]:
        from .cluster import certs_main

        return certs_main(argv[1:])
    if argv[:1] == ["epmd"]:
        from .cluster import epmd_main

        return epmd_main(argv[1:])
    if argv[:1] == ["names"]:
        from .cluster import names_main

        return names_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "node":
        from ._node_main import run_node

        return run_node(args)
    if args.command == "example":
        from .example import run_example

        return run_example(quiet=args.quiet)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(port=args.port, directory=args.dir)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
