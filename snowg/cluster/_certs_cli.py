"""``snowg certs DIR``: make a cluster CA and node certificates from the command line."""

from __future__ import annotations

import argparse
import sys

from .._errors import NodeError
from ._certfiles import CA_CERT, CA_KEY, GENERIC

__all__ = ["certs_main"]


def certs_main(argv: list[str]) -> int:
    """Run ``snowg certs DIR [--node NAME ...] [--days N] [--overwrite]``.

    Prints each file created or kept, and hints on distributing them.

    Args:
        argv: the arguments after ``certs``.

    Returns:
        The exit code: 0 on success, 1 on an error making the files, 2 on bad
        usage (argparse's convention; ``--help`` returns 0).
    """
    parser = argparse.ArgumentParser(
        prog="snowg certs",
        description="Create a cluster CA and node certificates for snowg mutual TLS. "
        "Existing files are kept; only missing ones are added.",
    )
    parser.add_argument("dir", help="certificate directory (created if missing)")
    parser.add_argument(
        "--node",
        "-n",
        action="append",
        default=[],
        metavar="NAME",
        help="also make a certificate for node NAME ('alice@127.0.0.1'); repeatable",
    )
    parser.add_argument("--days", type=int, default=825, help="validity of new certificates in days (default: 825)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="make a NEW CA and re-issue every certificate in DIR (certificates from the old CA stop working)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.days <= 0:
        print("snowg certs: error: --days must be positive", file=sys.stderr)
        return 2
    try:
        from ._certmaking import make_certs  # cryptography: only when certificates are made

        made = make_certs(args.dir, args.node, days=args.days, overwrite=args.overwrite)
    except (NodeError, ValueError, OSError) as exc:
        print(f"snowg certs: error: {exc}", file=sys.stderr)
        return 1
    for label, files in made.items():
        what = (
            "cluster CA"
            if label == "ca"
            else ("generic node certificate" if label == GENERIC else f"certificate of {label}")
        )
        verb = "created" if files.created else "kept   "
        print(f"{verb} {files.cert}  {files.key}  ({what})")
    print(
        f"Give every node {CA_CERT} and a certificate with its key; keep {CA_KEY} "
        "private (it can sign new node certificates)."
    )
    return 0
