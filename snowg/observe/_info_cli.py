"""``snowg info NODE``: what a running node is doing, as tables in the terminal (for a server with no browser).

The command becomes a node for a moment, as ``snowg node`` does (the same
cookie and certificates, from the options, ``$SNOWG_COOKIE`` and
``~/.snowg/certs`` by default), but registers with no port mapper and runs no
discovery, so no other node dials it. It connects to ``NODE`` (``name@host``,
the port from the host's port mapper, or ``name@host:port``), calls
``rpc.call(NODE, "snowg.observe:snapshot")`` and prints:

* a summary line: the node, its process count, its peers, its counts of
  crashes, restarts and supervisors that gave up;
* the top processes by message queue length (``--top``);
* its sessions: each peer's bytes in and out, bytes queued, when it was last
  heard;
* its supervision trees, each child under its supervisor, with restarts.

``--json`` prints the snapshot itself instead (plain terms, as JSON). The
node the command is connects to the target's cluster (peers pass their peer
lists), so the other nodes see it connect and leave (a node up, then down).

Exit statuses: 0 after printing; 1 when the node cannot start, ``NODE``
cannot be reached, or the call fails (the reason on stderr); 2 for a usage
error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, TextIO

__all__ = ["EXIT_FAILED", "EXIT_OK", "build_info_parser", "format_snapshot", "info_main"]

EXIT_OK = 0
EXIT_FAILED = 1


def build_info_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    """The options of ``snowg info`` (added to ``parser`` when given)."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="snowg info", description="Show what a running node is doing.")
    parser.add_argument("node", metavar="NODE", help="'name@host' (port from its port mapper) or 'name@host:port'")
    parser.add_argument("--cookie", metavar="C", help="cluster cookie (default: $SNOWG_COOKIE or the cookie file)")
    parser.add_argument(
        "--certs", metavar="DIR", help="certificate directory made by 'snowg certs' (default: ~/.snowg/certs)"
    )
    parser.add_argument("--top", type=int, default=20, metavar="N", help="processes to list (default 20)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="for connecting and for the answer (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON instead of tables")
    return parser


def info_main(argv: Sequence[str], out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run ``snowg info`` with ``argv`` (the words after ``info``); blocks until it has printed.

    ``out`` and ``err``: where the tables and the errors go (``sys.stdout``
    and ``sys.stderr`` by default).

    Returns:
        The exit status (see the module docstring).

    Raises:
        SystemExit: bad arguments (status 2, argparse's usage message), or ``--help``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args = build_info_parser().parse_args(list(argv))
    if args.top < 0 or not args.timeout > 0:
        print("snowg info: --top must be 0 or more and --timeout more than 0", file=err)
        return 2
    import gevent

    from ..cluster import connect, rpc, start_node, stop_node

    target = args.node if "@" in args.node else f"{args.node}@{os.environ.get('SNOWG_HOST', '127.0.0.1')}"
    name = target.split(":", 1)[0]
    try:
        start_node(cookie=args.cookie, tls=args.certs, epmd=False, cluster=[])
    except Exception as exc:  # noqa: BLE001 - NodeError and friends: say it and exit
        print(f"snowg info: {exc}", file=err)
        return EXIT_FAILED
    try:
        connected = False
        deadline = gevent.Timeout(args.timeout)
        try:
            with deadline:
                connected = connect(target)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
        if not connected:
            print(f"snowg info: cannot connect to {target} (is it running, with this cookie and CA?)", file=err)
            return EXIT_FAILED
        try:
            snap = rpc.call(name, "snowg.observe:snapshot", limit=args.top, timeout=args.timeout)
        except Exception as exc:  # noqa: BLE001 - RemoteError, SpawnError, CallTimeout, CallError
            print(f"snowg info: {name} did not answer: {type(exc).__name__}: {exc}", file=err)
            return EXIT_FAILED
    finally:
        stop_node(flush_timeout=1.0)
    if args.json:
        json.dump(snap, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    else:
        out.write(format_snapshot(snap, args.top))
    return EXIT_OK


# ------------------------------------------------------------------ formatting


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[int] = ()) -> List[str]:
    """Lines of a plain-text table: columns as wide as their widest cell, ``right`` (indexes) right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(parts).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return _cell(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover - the loop always returns


def _tree_lines(tree: Dict[str, Any], depth: int, rows: List[List[Any]], label: Any = None) -> None:
    """Rows of a supervision tree: the supervisor (``label``: its child id, under its parent), then its children."""
    indent = "  " * depth
    if label is None:
        label = tree.get("name") or tree.get("pid")
    restarts = f"{_cell(tree.get('restarts'))} ({_cell(tree.get('recent_restarts'))} recent)"
    status = tree.get("error") or tree.get("status")
    rows.append([f"{indent}{_cell(label)}", tree.get("pid"), "supervisor", tree.get("strategy"), status, restarts])
    for child in tree.get("children", ()):
        sub = child.get("tree")
        if sub is not None:
            _tree_lines(sub, depth + 1, rows, _cell(child.get("id")))
            continue
        where = child.get("node")
        pid = child.get("pid")
        rows.append([f"{indent}  {_cell(child.get('id'))}", pid, child.get("type"), where, "", ""])


def format_snapshot(snap: Dict[str, Any], top: int = 20) -> str:
    """The text ``snowg info`` prints for a snapshot (``snowg.observe.snapshot``'s answer)."""
    counts = snap.get("counts") or {}
    peers = snap.get("nodes") or []
    lines = [
        f"node {snap.get('node')}: {snap.get('process_count')} processes, "
        f"{len(peers)} connected node{'s' if len(peers) != 1 else ''}"
        + (f" ({', '.join(peers)})" if peers else "")
        + f"; crashes {counts.get('crashes', 0)}, restarts {counts.get('restarts', 0)}, "
        f"supervisors that gave up {counts.get('give_ups', 0)}",
        "",
    ]
    procs = sorted(snap.get("processes") or [], key=lambda p: (-p.get("message_queue_len", 0), str(p.get("pid"))))
    lines.append(f"Top processes by message queue length ({min(top, len(procs))} of {snap.get('process_count')})")
    lines += table(
        ["PID", "NAME", "STARTED WITH", "STATUS", "QUEUE", "SUPERVISOR"],
        (
            [
                p.get("pid"),
                p.get("name"),
                p.get("initial_call"),
                p.get("status"),
                p.get("message_queue_len"),
                p.get("supervisor"),
            ]
            for p in procs[:top]
        ),
        right=(4,),
    )
    lines.append("")
    sessions = snap.get("sessions") or []
    lines.append(f"Sessions ({len(sessions)})")
    lines += table(
        ["NODE", "ADDRESS", "BYTES IN", "BYTES OUT", "QUEUED", "SUSPENDED", "LAST HEARD (s)"],
        (
            [
                s.get("node"),
                s.get("address"),
                _bytes(s.get("bytes_in")),
                _bytes(s.get("bytes_out")),
                _bytes(s.get("queued")),
                s.get("suspended_senders"),
                s.get("last_heard"),
            ]
            for s in sessions
        ),
        right=(2, 3, 4, 5, 6),
    )
    lines.append("")
    trees = snap.get("supervisors") or []
    rows: List[List[Any]] = []
    for tree in trees:
        _tree_lines(tree, 0, rows)
    lines.append(f"Supervisors ({len(trees)} tree{'s' if len(trees) != 1 else ''})")
    lines += table(["SUPERVISOR / CHILD", "PID", "TYPE", "STRATEGY / NODE", "STATUS", "RESTARTS"], rows)
    return "\n".join(lines) + "\n"
