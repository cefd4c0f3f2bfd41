"""Where a node's certificate files are, and which of them it uses.

Layout of a certificate directory (made by ``snowg certs DIR``)::

    ca.pem, ca.key         the cluster CA (keep ca.key private)
    node.pem, node.key     a generic certificate any node of the cluster can use
    NAME.pem, NAME.key     a certificate for the node NAME (CN = NAME), optional

The default directory is ``$SNOWG_HOME/certs`` (``~/.snowg/certs``); the
first node started without ``tls`` makes it, with a CA of this host's own,
when it does not exist (:mod:`snowg.cluster._certauto`). Key files must be
private to their owner (mode 0600). Nothing here reads a certificate:
:func:`resolve_tls` only turns what ``start_node`` was given into three paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from .._errors import NodeError
from ._names import check_node_name

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "GENERIC",
    "PathLike",
    "TLSConfig",
    "TLSSpec",
    "check_file_node_name",
    "default_certs_dir",
    "default_home",
    "resolve_tls",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
GENERIC = "node"

PathLike = Union[str, "os.PathLike[str]"]
TLSSpec = Union[None, str, "os.PathLike[str]", Mapping[str, Any], Sequence[Any], "TLSConfig"]


def default_home() -> Path:
    """Return snowg's home directory: ``$SNOWG_HOME`` if set, else ``~/.snowg``.

    The directory is not created here.

    Returns:
        The path (``~`` expanded).
    """
    env = os.environ.get("SNOWG_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".snowg"


def default_certs_dir() -> Path:
    """Return the default certificate directory, ``<default_home()>/certs``."""
    return default_home() / "certs"


@dataclass(frozen=True)
class TLSConfig:
    """The files a node uses for TLS, checked by :func:`snowg.cluster.load_tls`.

    Attributes:
        ca: PEM file of the cluster CA certificate(s) peers must be signed by.
        cert: PEM file of this node's certificate.
        key: PEM file of this node's private key (unencrypted).
    """

    ca: str
    cert: str
    key: str


def check_file_node_name(name: str) -> str:
    """Return the host part of a node name that also names its certificate files.

    Raises:
        ValueError: ``name`` is not ``'name@host'``, or cannot be a file name.
    """
    host = check_node_name(name)
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"node name {name!r} cannot be used as a file name")
    return host


def resolve_tls(tls: TLSSpec, node_name: str, default_dir: PathLike | None) -> TLSConfig:
    """The three files ``tls`` names (see :func:`snowg.cluster.load_tls`), not yet checked.

    Raises:
        NodeError: a directory that does not exist or is not one, or ``tls``
            of the wrong shape (the caller's mistake; the message says which).
    """
    if isinstance(tls, TLSConfig):
        return tls
    if tls is None or isinstance(tls, (str, os.PathLike)):
        if tls is None:
            directory = Path(default_dir) if default_dir is not None else default_certs_dir()
        else:
            directory = Path(tls)
        directory = directory.expanduser()
        if not directory.exists():
            raise NodeError(
                f"TLS certificate directory {directory}: not found (create it with `snowg certs {directory}`)"
            )
        if not directory.is_dir():
            raise NodeError(
                f"TLS certificate directory {directory}: not a directory (to name files, "
                "pass a dict {'ca': ..., 'cert': ..., 'key': ...})"
            )
        stem = GENERIC
        try:
            check_file_node_name(node_name)
            if (directory / f"{node_name}.pem").exists():
                stem = node_name
        except ValueError:
            pass
        return TLSConfig(str(directory / CA_CERT), str(directory / f"{stem}.pem"), str(directory / f"{stem}.key"))
    if isinstance(tls, Mapping):
        missing = [k for k in ("ca", "cert", "key") if k not in tls]
        extra = sorted(str(k) for k in tls if k not in ("ca", "cert", "key"))
        if missing or extra:
            raise NodeError(
                "tls must have exactly the keys 'ca', 'cert' and 'key' "
                f"(missing: {missing or 'none'}; unknown: {extra or 'none'})"
            )
        ca, cert, key = tls["ca"], tls["cert"], tls["key"]
    elif isinstance(tls, (tuple, list)) and len(tls) == 3:
        ca, cert, key = tls
    else:
        raise NodeError(
            "tls must be None, a certificate directory, a (ca, cert, key) tuple or a "
            f"dict with keys 'ca', 'cert', 'key'; got {tls!r}"
        )
    return TLSConfig(*(str(Path(p).expanduser()) for p in (ca, cert, key)))
