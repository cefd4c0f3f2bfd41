"""Checking certificate files before a node uses them (needs ``cryptography``).

A bad setup fails at ``start_node`` with a message naming the file and the
problem (missing, not PEM, expired, not signed by the CA, wrong key usage, a
key that does not match, a key that other users may read), instead of as an
opaque TLS error at the first connection. Only this module and the one that makes certificates import
``cryptography``; ``import snowg`` does not.
"""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from .._errors import NodeError
from ._certfiles import TLSConfig

__all__ = [
    "certificate_names",
    "check_private_mode",
    "check_tls_files",
    "fmt",
    "load_certs",
    "load_key",
    "utc_now",
    "same_public_key",
    "validity",
]


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc)


def validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """The (not before, not after) dates of ``cert``, timezone-aware."""
    # cryptography >= 42 has the *_utc properties; older ones return naive UTC.
    before = getattr(cert, "not_valid_before_utc", None)
    after = getattr(cert, "not_valid_after_utc", None)
    if before is None or after is None:
        before = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return before, after


def fmt(when: datetime.datetime) -> str:
    """A date as certificate messages show it."""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise NodeError(f"{what} {path}: file not found")
    if not path.is_file():
        raise NodeError(f"{what} {path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NodeError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from exc


def load_certs(path: Path, what: str) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (``what`` names the file in errors).

    Raises:
        NodeError: the file is missing, unreadable, or holds no valid PEM certificate.
    """
    data = _read(path, what)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        hint = " (it holds a private key)" if b"PRIVATE KEY-----" in data else ""
        raise NodeError(f"{what} {path}: not a PEM certificate{hint}")
    try:
        return list(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise NodeError(f"{what} {path}: not a valid PEM certificate ({exc})") from exc


def load_key(path: Path) -> Any:
    """The unencrypted PEM private key in ``path``.

    Raises:
        NodeError: the file is missing or unreadable, the key is encrypted, or not a supported PEM key.
    """
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise NodeError(
            f"private key {path}: it is encrypted; snowg needs an unencrypted key "
            "(protect it with file permissions, mode 0600)"
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise NodeError(f"private key {path}: unsupported key type ({exc})") from exc
    except ValueError as exc:
        raise NodeError(f"private key {path}: not a PEM private key") from exc


def check_private_mode(path: Path, what: str) -> None:
    """Refuse a secret file that users other than its owner may access.

    As ssh does with its keys: a key others can read is no longer this
    node's alone. POSIX only (Windows has no such mode bits); a missing file
    is left to the reader to report.

    Raises:
        NodeError: ``path`` has any group or other permission bit set; the
            message names the file, its mode and the ``chmod`` that fixes it.
    """
    if os.name != "posix":
        return
    try:
        mode = os.stat(path).st_mode  # follows a symlink: the file's own mode counts
    except OSError:
        return
    if mode & 0o077:
        raise NodeError(
            f"{what} {path}: accessible to group or others (mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )


def _spki(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def same_public_key(cert: x509.Certificate, key: Any) -> bool:
    """True when ``key`` is the private key of ``cert``."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_dates(cert: x509.Certificate, path: Path, what: str) -> None:
    before, after = validity(cert)
    now = utc_now()
    if now > after:
        raise NodeError(
            f"{what} {path}: expired on {fmt(after)} (valid from {fmt(before)} to {fmt(after)}; now {fmt(now)})"
        )
    if now < before:
        raise NodeError(
            f"{what} {path}: not yet valid, valid from {fmt(before)} to {fmt(after)} (now {fmt(now)}; check the clock)"
        )


def _describe(name: x509.Name) -> str:
    return name.rfc4514_string() or "<empty>"


def check_tls_files(cfg: TLSConfig, node_name: str) -> None:
    """Check that the files of ``cfg`` exist and work together as node ``node_name``'s.

    Raises:
        NodeError: with a message naming the file and the problem (see
            :func:`snowg.cluster.load_tls`).
    """
    ca_path, cert_path, key_path = Path(cfg.ca), Path(cfg.cert), Path(cfg.key)

    cas = load_certs(ca_path, "CA certificate")
    usable_cas = []
    for ca in cas:
        try:
            bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca:
            usable_cas.append(ca)
    if not usable_cas:
        raise NodeError(
            f"CA certificate {ca_path}: not a CA certificate "
            "(no basicConstraints CA:TRUE); did you pass a node certificate?"
        )
    for ca in usable_cas:
        _check_dates(ca, ca_path, "CA certificate")

    cert = load_certs(cert_path, "certificate")[0]
    _check_dates(cert, cert_path, "certificate")
    if not any(_signed_by(cert, ca) for ca in usable_cas):
        raise NodeError(
            f"certificate {cert_path}: not signed by the CA in {ca_path} "
            f"(certificate issuer: {_describe(cert.issuer)}; "
            f"CA: {', '.join(_describe(ca.subject) for ca in usable_cas)}); "
            "were they made by different `snowg certs` runs?"
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None:
        lacking = [
            label
            for oid, label in (
                (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
                (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
            )
            if oid not in eku
        ]
        if lacking:
            raise NodeError(
                f"certificate {cert_path}: extended key usage lacks {' and '.join(lacking)}; "
                "nodes act as both TLS server and client, so both are needed"
            )

    check_private_mode(key_path, "private key")
    key = load_key(key_path)
    if not same_public_key(cert, key):
        raise NodeError(f"private key {key_path}: does not match certificate {cert_path}")


def certificate_names(path: Path) -> list[str]:
    """The names the (first) certificate in ``path`` is issued to: its subject CNs, then its DNS and URI SANs.

    ``snowg certs --node NAME`` writes NAME as the CN.

    Raises:
        NodeError: the file is missing, unreadable, or holds no valid PEM certificate.
    """
    cert = load_certs(path, "certificate")[0]
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    return (
        names
        + [str(v) for v in san.get_values_for_type(x509.DNSName)]
        + [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
    )
