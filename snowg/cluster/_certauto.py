"""Certificates with no set-up on one host: made by the first node that needs them.

Like the cookie file: when ``start_node`` is given no ``tls`` and the default
certificate directory (``$SNOWG_HOME/certs``, else ``~/.snowg/certs``) does
not exist, or exists empty, the node makes a private cluster CA and a generic
node certificate there (directory 0700, keys 0600) and says so once at INFO.
Every later node of this user on this host finds and uses them, so nodes on
one host form a cluster with nothing prepared. The certificate names this
host (the node's host, ``127.0.0.1``, ``localhost`` and the machine's host
name) and is valid for ten years; delete the directory to have new ones made.

Such a CA is this host's alone: nodes on other hosts, with CAs of their own,
are refused. A cluster over several hosts needs one CA made with
``snowg certs DIR --host ...`` and copied to each host (see
:mod:`snowg.cluster._certmaking`).

Many processes may start at once (gunicorn's workers do). Each makes the
files in a private temporary directory beside the target and renames it into
place. The rename is atomic and fails when another process got there first,
so a half-made directory is never visible, exactly one CA results, and a
process that lost discards its own files and uses the winner's.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path

from .._errors import NodeError
from ._certfiles import CA_CERT, CA_KEY, GENERIC, default_certs_dir

__all__ = ["AUTO_DAYS", "ensure_default_certs"]

logger = logging.getLogger("snowg")

#: Validity, in days, of the CA and certificate made here: they never leave
#: this user's account on this host, and a node must not stop starting one day.
AUTO_DAYS = 3650

_FILES = (CA_CERT, CA_KEY, f"{GENERIC}.pem", f"{GENERIC}.key")


def ensure_default_certs(host: str) -> bool:
    """Make the default certificate directory's CA and node certificate if there are none.

    Nothing is done when the directory holds files already (even a partial
    set: :func:`snowg.cluster.load_tls` then says what is missing) or is not
    a directory. Blocks while the keys are made (milliseconds; with
    ``cryptography`` imported on first use, in this case only).

    Args:
        host: the host of the node's name; it goes into the certificate's
            SANs with ``127.0.0.1``, ``localhost`` and this machine's host
            name (a host that cannot be a SAN is left out).

    Returns:
        True if this call made them; False if they were there already, or
        another process made them at the same moment (this call's own are
        then discarded).

    Raises:
        NodeError: the directory exists, holds none of the certificate files
            but holds other files (so it is not snowg's to fill); or it cannot
            be created or written (the message names it and why).
    """
    directory = default_certs_dir()
    if _has_certificates(directory) or (directory.exists() and not directory.is_dir()):
        return False
    if directory.exists() and any(directory.iterdir()):
        raise NodeError(
            f"certificate directory {directory}: holds none of {', '.join(_FILES)} but other files, "
            f"so no certificates are made there on start; run `snowg certs {directory}` to add them, "
            "or empty it"
        )
    import shutil
    import tempfile

    from ._certmaking import check_san_host, new_cluster_files  # needs cryptography

    sans: list[str] = []
    for candidate in (host, "127.0.0.1", "localhost", socket.gethostname()):
        try:
            name = check_san_host(candidate)
        except ValueError:
            continue
        if name not in sans:
            sans.append(name)
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=str(directory.parent)))
    except OSError as exc:
        raise NodeError(f"certificate directory {directory}: cannot create it ({exc.strerror or exc})") from exc
    try:
        new_cluster_files(tmp, sans, AUTO_DAYS)
        # Replaces the target only if it is missing or empty; anything else
        # means another process won the race.
        os.rename(str(tmp), str(directory))
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and _has_certificates(directory):
            logger.debug("certificates in %s were made by another process at the same time", directory)
            return False
        raise NodeError(f"certificate directory {directory}: cannot create it ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(str(tmp), ignore_errors=True)
    logger.info(
        "created a private cluster CA and node certificate in %s for the nodes on this host (%s); "
        "for nodes on several hosts, make certificates with `snowg certs DIR --host ...` instead",
        directory,
        ", ".join(sans),
    )
    return True


def _has_certificates(directory: Path) -> bool:
    return any((directory / name).exists() for name in _FILES)
