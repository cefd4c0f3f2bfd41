"""The ``snowg`` command: ``certs``, ``node``, ``epmd``, ``names``, ``info``, ``observer``, ``example`` (and ``demo``).

Only the standard library is imported at the top, so that ``snowg node
--monkeypatch`` can patch the standard library before snowg (and gevent's
users) import it.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``snowg`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"] and "--monkeypatch" in argv:
        from gevent import monkey

        monkey.patch_all()
    if argv[:1] == ["certs"]:
        from .cluster import certs_main

        return certs_main(argv[1:])
    if argv[:1] == ["epmd"]:
        from .cluster import epmd_main

        return epmd_main(argv[1:])
    if argv[:1] == ["names"]:
        from .cluster import names_main

        return names_main(argv[1:])
    if argv[:1] == ["info"]:
        from .observe import info_main

        return info_main(argv[1:])
    if argv[:1] == ["observer"]:
        from .observe import observer_main

        return observer_main(argv[1:])
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
    """The ``snowg`` command's parser (``certs``, ``epmd``, ``names``, ``info`` and ``observer`` parse their own)."""
    parser = argparse.ArgumentParser(prog="snowg", description="Erlang/OTP processes and clusters for gevent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("certs", help="make a cluster CA and node certificates", add_help=False)
    sub.add_parser("epmd", help="run the port mapper (EPMD's protocol) in the foreground", add_help=False)
    sub.add_parser("names", help="list the nodes a host's port mapper knows", add_help=False)
    sub.add_parser("info", help="show what a running node is doing (processes, sessions, supervisors)", add_help=False)
    sub.add_parser("observer", help="a live web page of a cluster (joins it as a hidden node)", add_help=False)
    _add_node_parser(sub)
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
    return parser


def _add_node_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("node", help="run a node until SIGTERM/SIGINT (or until its --app ends)")
    p.add_argument(
        "name",
        nargs="?",
        default=None,
        help="node name, 'name' or 'name@host' (host: $SNOWG_HOST, else 127.0.0.1; default: a unique "
        "'PREFIX-XXXXXX' with PREFIX $SNOWG_PREFIX, else 'snowg')",
    )
    p.add_argument("--cookie", metavar="C", help="cluster cookie (default: $SNOWG_COOKIE or the cookie file)")
    p.add_argument("--port", type=int, default=0, metavar="P", help="port to listen on (default: any free port)")
    p.add_argument(
        "--port-range",
        type=_port_range,
        default=None,
        metavar="LO-HI",
        help="listen on the first free port of LO..HI (for firewalls)",
    )
    p.add_argument(
        "--listen-host", default=None, metavar="ADDR", help="address to listen on, when it is not the name's host"
    )
    p.add_argument("--no-epmd", dest="epmd", action="store_false", default=None, help="do not use the port mapper")
    p.add_argument(
        "--hidden",
        action="store_true",
        help="a hidden node: not in the others' nodes(), no group or name sync, not in the port mapper",
    )
    p.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="SPEC",
        help="discovery: local, hosts:H1,H2, dns:NAME, static:NAME@HOST[:PORT],... "
        "(repeatable, or several separated by spaces; default: $SNOWG_CLUSTER)",
    )
    p.add_argument(
        "--certs", metavar="DIR", help="certificate directory made by 'snowg certs' (default: ~/.snowg/certs)"
    )
    p.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module to import (its @spawnable functions become startable); repeatable",
    )
    p.add_argument(
        "--app",
        default=None,
        metavar="MODULE:FUNCTION",
        help="start the application: FUNCTION starts and returns its top supervisor's pid; "
        "the node exits with status 1 when that supervisor ends",
    )
    p.add_argument(
        "--connect", action="append", default=[], metavar="NODE", help="'name@host[:port]' to join; repeatable"
    )
    p.add_argument("--tick", type=float, default=None, metavar="SECONDS", help="liveness tick in seconds (default 15)")
    p.add_argument(
        "--flush-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds a stop spends sending what is queued to peers (default 5)",
    )
    p.add_argument(
        "--max-handshakes", type=int, default=None, metavar="N", help="incoming handshakes at once (default 64)"
    )
    p.add_argument(
        "--max-handshakes-per-address",
        type=int,
        default=None,
        metavar="N",
        help="of those, how many from one address (default 16)",
    )
    p.add_argument(
        "--check-peer-names",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refuse a peer whose certificate is not issued to its node name "
        "(default: on with a certificate issued to this node's name)",
    )
    p.add_argument(
        "--erlang",
        nargs="?",
        const="tls",
        default=None,
        choices=["tls", "tcp"],
        help="also speak Erlang's distribution, to and from Erlang/Elixir nodes: tls (default; as erl "
        "-proto_dist inet_tls, from the node's certificates) or tcp (plain TCP, the cookie only)",
    )
    p.add_argument(
        "--erlang-cookie-file",
        action="store_true",
        help="with --erlang: the Erlang cookie is ~/.erlang.cookie, as erl reads it (default: the node's cookie)",
    )
    p.add_argument(
        "--erlang-port", type=int, default=None, metavar="P", help="with --erlang: its port (default: any free port)"
    )
    p.add_argument("--monkeypatch", action="store_true", help="gevent.monkey.patch_all() first")
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process goes")
    p.add_argument("--log-level", default="INFO", metavar="LEVEL", help="DEBUG, INFO (default), WARNING or ERROR")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, not {text!r}")
    return value


def _port_range(text: str) -> Tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi)
    except ValueError:
        low = high = -1
    if not sep or not 0 < low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"expected LO-HI, two ports with LO <= HI (e.g. 9100-9155), not {text!r}")
    return low, high


if __name__ == "__main__":
    sys.exit(main())
