"""``snowg certs DIR``: make a cluster CA and node certificates from the command line.

One host needs none of this (``start_node`` makes its own certificates on
first use, see :mod:`snowg.cluster._certauto`). For several hosts, run it once
on a trusted machine with every host's name or address (``--host``, or
``--node NAME`` per node), and copy ``ca.pem`` and a node certificate and key
to each host. Re-running keeps what exists and says which kept certificate
lacks a host asked for; ``--reissue`` re-issues the node certificates with
the kept CA.
"""

from __future__ import annotations

import argparse
import sys

from .._errors import NodeError
from ._certfiles import CA_CERT, CA_KEY, GENERIC

__all__ = ["certs_main"]


def certs_main(argv: list[str]) -> int:
    """Run ``snowg certs DIR [--host HOST ...] [--node NAME ...] [--days N] [--reissue | --overwrite]``.

    Prints each file created or kept, the hosts a kept certificate lacks, a
    warning for a key file others may read (above all ``ca.key``), and hints
    on distributing the files.

    Args:
        argv: the arguments after ``certs``.

    Returns:
        The exit code: 0 on success, 1 on an error making the files, 2 on bad
        usage (argparse's convention; ``--help`` returns 0).
    """
    parser = argparse.ArgumentParser(
        prog="snowg certs",
        description="Create a cluster CA and node certificates for snowg mutual TLS. "
        "Existing files are kept; only missing ones are added (see --reissue and --overwrite). "
        "One host needs none of this: a node makes its own on first start.",
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
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name or IP address the nodes run on, written into every node certificate made "
        "(as a DNS or IP SAN); repeatable",
    )
    parser.add_argument("--days", type=int, default=825, help="validity of new certificates in days (default: 825)")
    renew = parser.add_mutually_exclusive_group()
    renew.add_argument(
        "--reissue",
        action="store_true",
        help="re-issue every node certificate in DIR with a new key, signed by the kept CA, "
        "keeping its hosts and adding --host (certificates already handed out keep working)",
    )
    renew.add_argument(
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
        from ._certcheck import check_private_mode  # cryptography: only when certificates are made
        from ._certmaking import make_certs

        made = make_certs(
            args.dir, args.node, hosts=args.host, days=args.days, reissue=args.reissue, overwrite=args.overwrite
        )
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
        if files.missing_hosts:
            print(
                f"        {files.cert.name} was kept and does not name {', '.join(files.missing_hosts)}; "
                "run again with --reissue to re-issue the node certificates with the kept CA"
            )
    for files in made.values():
        try:
            check_private_mode(files.key, "private key")
        except NodeError as exc:
            why = (
                "whoever can read it can make certificates for your cluster"
                if files.key.name == CA_KEY
                else "a node refuses to start with it"
            )
            print(f"snowg certs: warning: {exc} ({why})", file=sys.stderr)
    print(
        f"Give every node {CA_CERT} and a certificate with its key; keep {CA_KEY} "
        "private (it can sign new node certificates)."
    )
    return 0
