"""Mutual TLS for the cluster: the checked files of a node, and its SSL contexts.

Every node presents a certificate signed by the cluster's CA and requires the
same of its peer. :func:`load_tls` finds the files a node will use and checks
them (so a bad setup fails at start with a message naming the file, a
private key that other users may read included);
:func:`server_context` and :func:`client_context` build the SSL contexts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, FrozenSet

from .._errors import NodeError
from ._certfiles import PathLike, TLSConfig, TLSSpec, resolve_tls

if TYPE_CHECKING:
    import ssl

__all__ = [
    "TLSConfig",
    "client_context",
    "is_node_certificate",
    "load_tls",
    "names_peer",
    "peer_certificate_names",
    "server_context",
]

logger = logging.getLogger("snowg")


def load_tls(tls: TLSSpec, node_name: str, *, default_dir: PathLike | None) -> TLSConfig:
    """Find the TLS files of node ``node_name`` and check that they work together.

    Args:
        tls: ``None`` (use ``default_dir``), a certificate directory (its
            ``ca.pem``, and ``<node_name>.pem``/``.key`` if present, else
            ``node.pem``/``node.key``), a ``(ca, cert, key)`` tuple, a dict with
            keys ``'ca'``, ``'cert'``, ``'key'``, or a :class:`TLSConfig`.
        node_name: the node's name, ``'alice@127.0.0.1'``.
        default_dir: the directory used when ``tls`` is None; None means
            :func:`~snowg.cluster._certfiles.default_certs_dir`.

    Returns:
        The checked :class:`TLSConfig` (paths as strings).

    Raises:
        NodeError: with a message naming the file and the problem: directory or
            file not found or unreadable; not a PEM certificate or key; a
            certificate expired or not yet valid (with its dates); the CA is
            not a CA; the node certificate is not signed by the CA or lacks
            serverAuth/clientAuth usage; an encrypted key; a key that does not
            match the certificate; a key file that group or others may access
            (``chmod 600`` it); or ``tls`` of the wrong shape.
    """
    cfg = resolve_tls(tls, node_name, default_dir)
    # Checking certificates needs ``cryptography``, which is slow to import:
    # only a node that starts pays for it, not every ``import snowg``.
    from ._certcheck import check_tls_files

    check_tls_files(cfg, node_name)
    logger.debug("TLS for %s: ca=%s cert=%s key=%s", node_name, cfg.ca, cfg.cert, cfg.key)
    return cfg


def _context(cfg: TLSConfig, server: bool) -> ssl.SSLContext:
    # Imported here, not at module level: gevent warns (and older versions
    # broke) when ``ssl`` is already imported at monkey.patch_all() time, and
    # importing snowg before patching is a common program layout.
    import ssl

    from gevent import ssl as gssl

    # gevent.ssl.SSLContext subclasses ssl.SSLContext, and its wrap_socket
    # returns gevent's cooperative SSLSocket whether or not the program is
    # monkey-patched. A plain ssl.SSLContext in an unpatched program would
    # wrap into the stdlib SSLSocket and block the whole hub during IO.
    protocol = ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT
    ctx = gssl.SSLContext(protocol)
    # Hostname checking is off on purpose: peers are addressed by IP or
    # whatever host they advertise and may share the generic node
    # certificate. Identity is "holds a certificate from the cluster CA" plus
    # the cookie challenge run inside the TLS session.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=cfg.ca)
    except (ssl.SSLError, OSError) as exc:
        raise NodeError(f"CA certificate {cfg.ca}: cannot be loaded ({exc})") from exc
    try:
        ctx.load_cert_chain(certfile=cfg.cert, keyfile=cfg.key)
    except (ssl.SSLError, OSError) as exc:
        raise NodeError(f"certificate {cfg.cert} / private key {cfg.key}: cannot be loaded ({exc})") from exc
    return ctx


def server_context(cfg: TLSConfig) -> ssl.SSLContext:
    """Build the context for accepting connections from other nodes.

    The context requires a client certificate signed by the cluster CA and TLS
    1.2 or later. It is a ``gevent.ssl.SSLContext`` (a subclass of
    ``ssl.SSLContext``), so ``ctx.wrap_socket(sock, server_side=True)`` yields
    a cooperative socket in patched and unpatched programs alike.

    Args:
        cfg: the files, normally from :func:`load_tls`.

    Returns:
        The server-side context.

    Raises:
        NodeError: OpenSSL cannot load the CA, certificate or key.
    """
    return _context(cfg, server=True)


def client_context(cfg: TLSConfig) -> ssl.SSLContext:
    """Build the context for connecting to other nodes.

    The context presents this node's certificate, requires the server's to be
    signed by the cluster CA, needs TLS 1.2 or later and does not check host
    names (see the module's comments). A ``gevent.ssl.SSLContext``, like
    :func:`server_context`.

    Args:
        cfg: the files, normally from :func:`load_tls`.

    Returns:
        The client-side context.

    Raises:
        NodeError: OpenSSL cannot load the CA, certificate or key.
    """
    return _context(cfg, server=False)


def is_node_certificate(cfg: TLSConfig, node_name: str) -> bool:
    """True when ``cfg``'s certificate is issued to the node ``node_name`` (``snowg certs --node``).

    The generic certificate every node may use (CN ``snowg node``) is not.
    A node whose certificate is its own checks by default that each peer's
    names the node the peer claims to be (``start_node(check_peer_names=...)``).

    Raises:
        NodeError: the certificate cannot be read.
    """
    from ._certcheck import certificate_names

    return node_name in certificate_names(Path(cfg.cert))


def peer_certificate_names(sock: Any) -> FrozenSet[str]:
    """The names the peer's verified certificate on ``sock`` is issued to (CNs, DNS and URI SANs).

    Empty when there is none (no TLS, or no certificate).
    """
    try:
        cert = sock.getpeercert()
    except (AttributeError, ValueError, OSError):
        return frozenset()
    if not cert:
        return frozenset()
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    names += [value for key, value in cert.get("subjectAltName", ()) if key in ("DNS", "URI")]
    return frozenset(str(n) for n in names)


def names_peer(sock: Any, name: str) -> bool:
    """True when the certificate the peer on ``sock`` presented is issued to the node ``name``."""
    return name in peer_certificate_names(sock)
