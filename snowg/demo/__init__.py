"""``snowg demo``: a live 3-node cluster in the browser.

``run_demo(port, directory)`` starts three nodes (``demo1..3@127.0.0.1``, each
its own OS process) with certificates and a cookie made for the run, connects
to them as the node ``demo@127.0.0.1``, and serves a page on
``http://127.0.0.1:PORT`` with a chat whose rooms span the cluster, a live view
of the nodes and of a supervision tree with children on other nodes, and
buttons to crash children and to kill and restart nodes. Ctrl-C (SIGINT) or
SIGTERM stops everything it started. See :mod:`snowg.demo.launcher`.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["run_demo"]


def run_demo(port: int = 8000, directory: Optional[str] = None) -> int:
    """Run the demo until SIGINT/SIGTERM; return the exit code (0: stopped cleanly).

    Args:
        port: the page's HTTP port on 127.0.0.1 (0: any free port); the nodes'
            chat WebSockets use ``port + 1 .. port + 3`` when free.
        directory: where the certificates, cookie and node logs go; default a
            temporary directory, removed at the end.
    """
    # Imported here: the launcher makes certificates (cryptography), which the
    # demo nodes importing snowg.demo.node_app must not need.
    from .launcher import Launcher

    return Launcher(port, directory).run()
