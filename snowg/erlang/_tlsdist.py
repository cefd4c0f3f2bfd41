"""``inet_tls_dist`` on the Erlang side: the option file that lets ``erl`` join a snowg cluster's CA.

A snowg node with ``erlang='tls'`` speaks what ``erl -proto_dist inet_tls``
speaks: TLS from the first byte, mutual, then the handshake with 4-byte
lengths. The BEAM node needs the same certificates: :func:`write_ssl_dist_optfile`
writes the ``-ssl_dist_optfile`` for them (``snowg certs`` makes the files).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from .. import cluster

__all__ = ["write_ssl_dist_optfile"]


def _erl_string(text: str) -> str:
    """``text`` as an Erlang string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_ssl_dist_optfile(path: Union[str, "os.PathLike[str]"], tls: Any = None, *, node: Optional[str] = None) -> str:
    """Write the ``-ssl_dist_optfile`` for ``erl -proto_dist inet_tls`` from snowg certificates.

    Both roles present the certificate and key and verify the peer against
    the cluster's CA (``verify_peer``); the server requires the client's
    certificate (``fail_if_no_peer_cert``). The client does not match the
    server's certificate against the host it dialled: ``inet_tls_dist``
    checks the node name's host (``127.0.0.1``) as a DNS name, which a snowg
    certificate does not carry (snowg's generic node certificate names no
    node either); the peer is still held to the CA, and then to the cookie.

    Start erl with ``erl -name a@127.0.0.1 -proto_dist inet_tls
    -ssl_dist_optfile PATH -setcookie COOKIE``. Blocks while it writes the
    file (and, when ``tls`` is None, while it finds the default
    certificates); never starts anything.

    Args:
        path: where to write it (replaced if it exists).
        tls: the certificates, as ``start_node``'s ``tls`` (a directory, a
            ``(ca, cert, key)`` tuple or dict, a ``TLSConfig``); None: the
            default directory (``$SNOWG_HOME/certs``).
        node: the node the files are for, when the directory holds per-node
            certificates (``<node>.pem``); default: the generic ``node.pem``.

    Returns:
        ``path`` as an absolute path (``erl`` refuses a relative ``-ssl_dist_optfile``).

    Raises:
        NodeError: the certificate files are missing or bad (the message names the file).
        OSError: the file cannot be written.
    """
    cfg = cluster.load_tls(tls, node or "erl@127.0.0.1", default_dir=None)
    common = (
        f"{{certfile, {_erl_string(os.path.abspath(cfg.cert))}}}, "
        f"{{keyfile, {_erl_string(os.path.abspath(cfg.key))}}}, "
        f"{{cacertfile, {_erl_string(os.path.abspath(cfg.ca))}}}, "
        "{verify, verify_peer}, {secure_renegotiate, true}"
    )
    text = (
        "%% Written by snowg.erlang.write_ssl_dist_optfile: erl -proto_dist inet_tls -ssl_dist_optfile THIS.\n"
        f"[{{server, [{common}, {{fail_if_no_peer_cert, true}}]}},\n"
        f" {{client, [{common},\n"
        "   {customize_hostname_check, [{match_fun, fun(_, _) -> true end}]}]}].\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.path.abspath(os.fspath(path))
