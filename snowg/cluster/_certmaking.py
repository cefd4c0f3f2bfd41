"""Making a cluster CA and node certificates (``snowg certs``; needs ``cryptography``).

Every node of a cluster presents a certificate signed by the cluster's CA and
requires the same of its peer. :func:`make_certs` creates that CA and the
node certificates in a directory laid out as :mod:`snowg.cluster._certfiles`
describes. Keys are EC P-256, written atomically with mode 0600.

A node certificate's subject alternative names are what a peer could check
its host against: ``127.0.0.1`` and ``localhost`` always, the host of a named
node's name, and every host given with ``hosts=`` (``snowg certs --host``),
IP addresses as IP SANs and names as DNS SANs. snowg itself does not check
host names (see :mod:`snowg.cluster._tls`); the SANs make the certificates
usable by tools that do.

A kept certificate is never changed behind the user's back: re-running with
new hosts reports the hosts each kept certificate lacks, and ``reissue=True``
(``snowg certs --reissue``) re-issues the node certificates with new keys,
signed by the kept CA, so certificates already handed out keep verifying
while they are replaced one node at a time.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._errors import NodeError
from ._certcheck import fmt, load_certs, load_key, same_public_key, utc_now, validity
from ._certfiles import CA_CERT, CA_KEY, GENERIC, PathLike, check_file_node_name

__all__ = ["CertFiles", "check_san_host", "make_certs", "new_cluster_files"]

logger = logging.getLogger("snowg")

_ORG = "snowg"
_CA_CN = "snowg cluster CA"
_GENERIC_CN = "snowg node"
# Certificates start a little in the past so that a peer whose clock is
# slightly behind does not see a freshly made certificate as "not yet valid".
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertFiles:
    """One certificate and its key, as reported by :func:`make_certs`.

    Attributes:
        cert: path of the PEM certificate.
        key: path of the PEM private key (mode 0600).
        created: True if this call wrote the pair, False if it was kept.
        missing_hosts: of the hosts asked for, those a kept certificate does
            not name (re-issue it to add them); empty for a new one.
    """

    cert: Path
    key: Path
    created: bool
    missing_hosts: Tuple[str, ...] = ()


# One DNS label: letters, digits, '-' and '_' (which container and compose
# names use), not starting or ending with '-'.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def check_san_host(host: str) -> str:
    """Return ``host`` as it is written into a certificate's SANs.

    An IP address (IPv6 with or without brackets) comes back in its normal
    form; a DNS name in lower case, without a trailing dot. A ``*.`` in front
    (a wildcard, as for the pods behind a Kubernetes service) is allowed.

    Raises:
        ValueError: ``host`` is neither an IP address nor a DNS name (the
            caller's mistake; the message shows it).
    """
    if not isinstance(host, str):
        raise ValueError(f"host {host!r}: not a str")
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        pass
    name = h[:-1] if h.endswith(".") else h
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"host {host!r} is neither an IP address nor a DNS name (letters, digits, '-' and '_' "
            "between dots; '*.' only in front)"
        )
    return name.lower()


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _leaf_hosts(node_host: str | None, hosts: Sequence[str], kept: Sequence[str]) -> list[str]:
    """The SAN hosts of a leaf, in order and without repeats: the node's host, those given, those kept, loopback.

    ``hosts`` are checked already; a node name's host is only known to be
    printable, so one that is neither an IP address nor a DNS name (``bücher``
    in Unicode, ``host:9``) is left out.
    """
    out: list[str] = []
    seen: set[str] = set()
    candidates = ([node_host.strip("[]")] if node_host else []) + list(hosts) + list(kept) + ["127.0.0.1", "localhost"]
    for h in candidates:
        try:
            h = check_san_host(h)
        except ValueError:
            continue  # a node name's host that cannot be a SAN: the CN names the node anyway
        if h.lower() not in seen:
            seen.add(h.lower())
            out.append(h)
    return out


def _san_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS and IP SANs of ``cert``, as strings."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.IPAddress)] + [
        str(v).lower() for v in san.get_values_for_type(x509.DNSName)
    ]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _make_ca(days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = utc_now()
    name = _name(_CA_CN)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signatures (the TLS handshake); for the CA, signing certificates and CRLs too."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _make_leaf(
    cn: str, san_hosts: Sequence[str], ca_cert: x509.Certificate, ca_key: Any, days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = utc_now()
    not_after = now + datetime.timedelta(days=days)
    ca_after = validity(ca_cert)[1]
    if not_after > ca_after:
        # A certificate cannot verify after its issuer expires; say so rather
        # than hand out a date that will not hold. (A CA made moments ago with
        # the same ``days`` ends a few milliseconds earlier: not worth a word.)
        if not_after - ca_after > datetime.timedelta(days=1):
            logger.warning("certificate %s: validity cut to the CA expiry date %s", cn, fmt(ca_after))
        not_after = ca_after
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in san_hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file having ``mode`` from the start."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # os.open's mode is filtered by the umask; set it exactly.
        os.chmod(str(tmp), mode)
        os.replace(str(tmp), str(path))
    except BaseException:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: Any) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _read_existing_ca(directory: Path) -> tuple[x509.Certificate, Any]:
    ca_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not key_path.exists():
        raise NodeError(
            f"{ca_path} exists but {key_path} is missing: cannot sign new certificates "
            f"(restore {CA_KEY}, or pass overwrite=True / --overwrite to make a new CA, "
            "which invalidates every certificate made by the old one)"
        )
    if not ca_path.exists():
        raise NodeError(
            f"{key_path} exists but {ca_path} is missing (restore {CA_CERT}, or pass "
            "overwrite=True / --overwrite to make a new CA)"
        )
    certs = load_certs(ca_path, "CA certificate")
    ca_key = load_key(key_path)
    ca_cert = certs[0]
    if not same_public_key(ca_cert, ca_key):
        raise NodeError(f"CA private key {key_path} does not match CA certificate {ca_path}")
    before, after = validity(ca_cert)
    if after < utc_now():
        raise NodeError(
            f"CA certificate {ca_path} expired on {fmt(after)}: make a new CA with "
            "overwrite=True / --overwrite (all node certificates must then be replaced)"
        )
    return ca_cert, ca_key


def new_cluster_files(directory: Path, hosts: Sequence[str], days: int) -> None:
    """Write a new CA and a generic node certificate into ``directory``, saying nothing.

    Blocks while the keys are made (milliseconds). The caller says what was
    made, once it is in place (``start_node``'s certificates made on first
    use, see :mod:`snowg.cluster._certauto`).

    Args:
        directory: an existing, empty, private directory.
        hosts: the generic certificate's SAN hosts (besides loopback), each
            checked by :func:`check_san_host`.
        days: validity of both certificates, in days.

    Raises:
        ValueError: a host that is neither an IP address nor a DNS name.
        OSError: the files cannot be written.
    """
    names = [check_san_host(h) for h in hosts]
    ca_cert, ca_key = _make_ca(days)
    _write_pair(directory / CA_CERT, directory / CA_KEY, ca_cert, ca_key)
    cert, key = _make_leaf(_GENERIC_CN, _leaf_hosts(None, names, ()), ca_cert, ca_key, days)
    _write_pair(directory / f"{GENERIC}.pem", directory / f"{GENERIC}.key", cert, key)


def make_certs(
    directory: PathLike,
    nodes: Iterable[str] = (),
    *,
    hosts: Iterable[str] = (),
    days: int = 825,
    reissue: bool = False,
    overwrite: bool = False,
) -> dict[str, CertFiles]:
    """Create a cluster CA and node certificates in ``directory``.

    Creates, when missing, the CA (``ca.pem``/``ca.key``), a generic node
    certificate any node of the cluster may use (``node.pem``/``node.key``),
    and for each name in ``nodes`` a certificate ``<name>.pem``/``<name>.key``
    whose subject CN is the node name. Leaf certificates have SANs for
    ``127.0.0.1``, ``localhost``, every host in ``hosts`` and, for a named
    node, its host; they are good for both TLS server and client
    authentication. Keys are EC P-256, written with mode 0600.

    Re-running on an existing directory keeps the CA and the certificates
    already there and only adds what is missing: regenerating the CA would make
    every certificate it signed stop verifying. A kept certificate that lacks
    some of ``hosts`` is reported in :attr:`CertFiles.missing_hosts`.
    ``reissue=True`` re-issues the generic certificate, the named ones and
    every ``name@host.pem`` already in the directory, with new keys, signed
    by the kept CA; each keeps the hosts of the one it replaces and gains
    ``hosts`` (delete a pair and run again to drop hosts from it).
    ``overwrite=True`` does the same with a new CA (certificates copied
    elsewhere must then all be replaced by hand).

    Args:
        directory: where to write; created (mode 0700) if missing.
        nodes: node names (``'alice@127.0.0.1'``) to make certificates for;
            a single str is taken as one name.
        hosts: host names and IP addresses every node certificate made or
            re-issued here names in its SANs (``snowg certs --host``); a
            single str is taken as one host.
        days: validity of new certificates, in days. A node certificate never
            outlives the CA, so a kept CA bounds it.
        reissue: re-issue the node certificates with the kept CA (see above).
        overwrite: make everything anew (see above).

    Returns:
        A dict with keys ``'ca'``, ``'node'`` and each node name, mapping to
        :class:`CertFiles` (paths and whether this call created them).

    Raises:
        ValueError: ``days`` is not positive, a node name is not
            ``name@host`` or cannot be a file name, or a host is neither an
            IP address nor a DNS name.
        NodeError: the existing CA cannot be used (``ca.key`` or ``ca.pem``
            missing, unreadable, mismatched or expired), or a kept
            certificate cannot be read to compare its hosts.
        OSError: the directory or files cannot be written.
    """
    if not isinstance(days, int) or days <= 0:
        raise ValueError(f"days must be a positive integer, not {days!r}")
    if isinstance(nodes, str):
        nodes = [nodes]
    if isinstance(hosts, str):
        hosts = [hosts]
    san_hosts = list(dict.fromkeys(check_san_host(h) for h in hosts))
    names = list(dict.fromkeys(nodes))
    node_hosts = {name: check_file_node_name(name) for name in names}
    directory = Path(directory).expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    renew = overwrite or reissue

    if renew:
        for pem in sorted(directory.glob("*@*.pem")):
            if pem.stem in node_hosts:
                continue
            try:
                node_hosts[pem.stem] = check_file_node_name(pem.stem)
            except ValueError:
                continue
            names.append(pem.stem)

    result: dict[str, CertFiles] = {}
    ca_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    if overwrite or not (ca_path.exists() or ca_key_path.exists()):
        ca_cert, ca_key = _make_ca(days)
        _write_pair(ca_path, ca_key_path, ca_cert, ca_key)
        logger.info("created cluster CA %s", ca_path)
        result["ca"] = CertFiles(ca_path, ca_key_path, True)
    else:
        ca_cert, ca_key = _read_existing_ca(directory)
        result["ca"] = CertFiles(ca_path, ca_key_path, False)

    leaves: list[tuple[str, str, str | None]] = [(GENERIC, _GENERIC_CN, None)]
    leaves += [(name, name, node_hosts[name]) for name in names]
    for key_name, cn, node_host in leaves:
        cert_path, key_path = directory / f"{key_name}.pem", directory / f"{key_name}.key"
        if not renew and cert_path.exists() and key_path.exists():
            missing: Tuple[str, ...] = ()
            if san_hosts:
                have = set(_san_hosts(load_certs(cert_path, "certificate")[0]))
                missing = tuple(h for h in san_hosts if h not in have)
            result[key_name] = CertFiles(cert_path, key_path, False, missing)
            continue
        if not renew and (cert_path.exists() or key_path.exists()):
            logger.warning("%s: half of the pair is missing; making a new certificate and key", cert_path)
        kept = _readable_san_hosts(cert_path) if renew else []
        cert, key = _make_leaf(cn, _leaf_hosts(node_host, san_hosts, kept), ca_cert, ca_key, days)
        _write_pair(cert_path, key_path, cert, key)
        logger.info("created node certificate %s (CN=%s)", cert_path, cn)
        result[key_name] = CertFiles(cert_path, key_path, True)
    return result


def _readable_san_hosts(cert_path: Path) -> list[str]:
    """The SAN hosts of the certificate being replaced; none if it is missing or unreadable."""
    if not cert_path.exists():
        return []
    try:
        return _san_hosts(load_certs(cert_path, "certificate")[0])
    except NodeError:
        return []  # replacing a damaged certificate is what re-issuing is for
