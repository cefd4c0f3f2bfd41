"""Certificates and TLS contexts for the distribution layer (mutual TLS).

Every node of a cluster presents a certificate signed by the cluster's CA and
requires the same of its peer. :func:`make_certs` (the ``snowg certs DIR``
command) creates that CA and the node certificates; :func:`load_tls` finds and
checks the files a node will use, so a bad setup fails at start with a message
naming the file instead of as an opaque handshake error later;
:func:`server_context` and :func:`client_context` build the SSL contexts.

Layout of a certificate directory::

    ca.pem, ca.key         the cluster CA (keep ca.key private)
    node.pem, node.key     a generic certificate any node of the cluster can use
    NAME.pem, NAME.key     a certificate for the node NAME (CN = NAME), optional
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._errors import NodeError
from ._names import check_node_name

if TYPE_CHECKING:
    import ssl

__all__ = [
    'CertFiles',
    'TLSConfig',
    'certs_main',
    'client_context',
    'default_certs_dir',
    'default_home',
    'load_tls',
    'make_certs',
    'peer_common_name',
    'server_context',
]

logger = logging.getLogger('snowg')

CA_CERT = 'ca.pem'
CA_KEY = 'ca.key'
GENERIC = 'node'
_ORG = 'snowg'
_CA_CN = 'snowg cluster CA'
_GENERIC_CN = 'snowg node'
# Certificates start a little in the past so that a peer whose clock is
# slightly behind does not see a freshly made certificate as "not yet valid".
_BACKDATE = datetime.timedelta(minutes=5)

PathLike = Union[str, 'os.PathLike[str]']
TLSSpec = Union[None, str, 'os.PathLike[str]', Mapping[str, Any], Sequence[Any], 'TLSConfig']


# --------------------------------------------------------------------------
# Default locations
# --------------------------------------------------------------------------

def default_home() -> Path:
    """Return snowg's home directory: ``$SNOWG_HOME`` if set, else ``~/.snowg``.

    The directory is not created here.

    Returns:
        The path (``~`` expanded).
    """
    env = os.environ.get('SNOWG_HOME')
    if env:
        return Path(env).expanduser()
    return Path.home() / '.snowg'


def default_certs_dir() -> Path:
    """Return the default certificate directory, ``<default_home()>/certs``."""
    return default_home() / 'certs'


# --------------------------------------------------------------------------
# Certificate creation
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class CertFiles:
    """One certificate and its key, as reported by :func:`make_certs`.

    Attributes:
        cert: path of the PEM certificate.
        key: path of the PEM private key (mode 0600).
        created: True if this call wrote the pair, False if it was kept.
    """

    cert: Path
    key: Path
    created: bool


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    # cryptography >= 42 has the *_utc properties; older ones return naive UTC.
    before = getattr(cert, 'not_valid_before_utc', None)
    after = getattr(cert, 'not_valid_after_utc', None)
    if before is None or after is None:
        before = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return before, after


def _fmt(when: datetime.datetime) -> str:
    return when.strftime('%Y-%m-%d %H:%M:%S UTC')


def _check_node_name(name: str) -> str:
    """Return the host part of ``name@host``; raise ValueError if unusable as a file name."""
    host = check_node_name(name)
    if '/' in name or '\\' in name or name.startswith('.'):
        raise ValueError(f'node name {name!r} cannot be used as a file name')
    return host


def _san_for(host: str | None) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for h in ([host] if host else []) + ['127.0.0.1', 'localhost']:
        h = h.strip('[]')
        if h.lower() in seen:
            continue
        seen.add(h.lower())
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            entries.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(entries)


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _make_ca(days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
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
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(cn: str, host: str | None, ca_cert: x509.Certificate,
               ca_key: Any, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
    not_after = now + datetime.timedelta(days=days)
    ca_after = _validity(ca_cert)[1]
    if not_after > ca_after:
        # A certificate cannot verify after its issuer expires; say so rather
        # than hand out a date that will not hold. (A CA made moments ago with
        # the same ``days`` ends a few milliseconds earlier: not worth a word.)
        if not_after - ca_after > datetime.timedelta(days=1):
            logger.warning('certificate %s: validity cut to the CA expiry date %s',
                           cn, _fmt(ca_after))
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
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .add_extension(_san_for(host), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file having ``mode`` from the start."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, 'wb') as f:
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
            f'{ca_path} exists but {key_path} is missing: cannot sign new certificates '
            f'(restore {CA_KEY}, or pass overwrite=True / --overwrite to make a new CA, '
            'which invalidates every certificate made by the old one)')
    if not ca_path.exists():
        raise NodeError(
            f'{key_path} exists but {ca_path} is missing (restore {CA_CERT}, or pass '
            'overwrite=True / --overwrite to make a new CA)')
    certs = _load_certs(ca_path, 'CA certificate')
    ca_key = _load_key(key_path)
    ca_cert = certs[0]
    if not _same_public_key(ca_cert, ca_key):
        raise NodeError(f'CA private key {key_path} does not match CA certificate {ca_path}')
    before, after = _validity(ca_cert)
    if after < _now():
        raise NodeError(
            f'CA certificate {ca_path} expired on {_fmt(after)}: make a new CA with '
            'overwrite=True / --overwrite (all node certificates must then be replaced)')
    return ca_cert, ca_key


def make_certs(directory: PathLike, nodes: Iterable[str] = (), *, days: int = 825,
               overwrite: bool = False) -> dict[str, CertFiles]:
    """Create a cluster CA and node certificates in ``directory``.

    Creates, when missing, the CA (``ca.pem``/``ca.key``), a generic node
    certificate any node of the cluster may use (``node.pem``/``node.key``),
    and for each name in ``nodes`` a certificate ``<name>.pem``/``<name>.key``
    whose subject CN is the node name. Leaf certificates have SANs for the
    node's host, ``127.0.0.1`` and ``localhost``, and are good for both TLS
    server and client authentication. Keys are EC P-256, written with mode
    0600.

    Re-running on an existing directory keeps the CA and the certificates
    already there and only adds what is missing: regenerating the CA would make
    every certificate it signed stop verifying. ``overwrite=True`` makes a new
    CA and re-issues the generic certificate, the named ones and every
    ``name@host.pem`` already in the directory, so the directory stays
    consistent (certificates copied elsewhere must be replaced by hand).

    Args:
        directory: where to write; created (mode 0700) if missing.
        nodes: node names (``'alice@127.0.0.1'``) to make certificates for;
            a single str is taken as one name.
        days: validity of new certificates, in days. A node certificate never
            outlives the CA, so a kept CA bounds it.
        overwrite: make everything anew (see above).

    Returns:
        A dict with keys ``'ca'``, ``'node'`` and each node name, mapping to
        :class:`CertFiles` (paths and whether this call created them).

    Raises:
        ValueError: ``days`` is not positive, or a node name is not
            ``name@host`` or cannot be a file name.
        NodeError: the existing CA cannot be used (``ca.key`` or ``ca.pem``
            missing, unreadable, mismatched or expired).
        OSError: the directory or files cannot be written.
    """
    if not isinstance(days, int) or days <= 0:
        raise ValueError(f'days must be a positive integer, not {days!r}')
    if isinstance(nodes, str):
        nodes = [nodes]
    names = list(dict.fromkeys(nodes))
    hosts = {name: _check_node_name(name) for name in names}
    directory = Path(directory).expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    if overwrite:
        for pem in sorted(directory.glob('*@*.pem')):
            if pem.stem in hosts:
                continue
            try:
                hosts[pem.stem] = _check_node_name(pem.stem)
            except ValueError:
                continue
            names.append(pem.stem)

    result: dict[str, CertFiles] = {}
    ca_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    if overwrite or not (ca_path.exists() or ca_key_path.exists()):
        ca_cert, ca_key = _make_ca(days)
        _write_pair(ca_path, ca_key_path, ca_cert, ca_key)
        logger.info('created cluster CA %s', ca_path)
        result['ca'] = CertFiles(ca_path, ca_key_path, True)
    else:
        ca_cert, ca_key = _read_existing_ca(directory)
        result['ca'] = CertFiles(ca_path, ca_key_path, False)

    leaves: list[tuple[str, str, str | None]] = [(GENERIC, _GENERIC_CN, None)]
    leaves += [(name, name, hosts[name]) for name in names]
    for key_name, cn, host in leaves:
        cert_path, key_path = directory / f'{key_name}.pem', directory / f'{key_name}.key'
        if not overwrite and cert_path.exists() and key_path.exists():
            result[key_name] = CertFiles(cert_path, key_path, False)
            continue
        if not overwrite and (cert_path.exists() or key_path.exists()):
            logger.warning('%s: half of the pair is missing; making a new certificate and key',
                           cert_path)
        cert, key = _make_leaf(cn, host, ca_cert, ca_key, days)
        _write_pair(cert_path, key_path, cert, key)
        logger.info('created node certificate %s (CN=%s)', cert_path, cn)
        result[key_name] = CertFiles(cert_path, key_path, True)
    return result


# --------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class TLSConfig:
    """The files a node uses for TLS, checked by :func:`load_tls`.

    Attributes:
        ca: PEM file of the cluster CA certificate(s) peers must be signed by.
        cert: PEM file of this node's certificate.
        key: PEM file of this node's private key (unencrypted).
    """

    ca: str
    cert: str
    key: str


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise NodeError(f'{what} {path}: file not found')
    if not path.is_file():
        raise NodeError(f'{what} {path}: not a regular file')
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NodeError(f'{what} {path}: cannot read it ({exc.strerror or exc})') from exc


def _load_certs(path: Path, what: str) -> list[x509.Certificate]:
    data = _read(path, what)
    if b'-----BEGIN CERTIFICATE-----' not in data:
        hint = ' (it holds a private key)' if b'PRIVATE KEY-----' in data else ''
        raise NodeError(f'{what} {path}: not a PEM certificate{hint}')
    try:
        if hasattr(x509, 'load_pem_x509_certificates'):
            return list(x509.load_pem_x509_certificates(data))
        return [x509.load_pem_x509_certificate(data)]
    except ValueError as exc:
        raise NodeError(f'{what} {path}: not a valid PEM certificate ({exc})') from exc


def _load_key(path: Path) -> Any:
    data = _read(path, 'private key')
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise NodeError(
            f'private key {path}: it is encrypted; snowg needs an unencrypted key '
            '(protect it with file permissions, mode 0600)') from exc
    except UnsupportedAlgorithm as exc:
        raise NodeError(f'private key {path}: unsupported key type ({exc})') from exc
    except ValueError as exc:
        raise NodeError(f'private key {path}: not a PEM private key') from exc


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _same_public_key(cert: x509.Certificate, key: Any) -> bool:
    return _spki(cert.public_key()) == _spki(key.public_key())


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    verify = getattr(cert, 'verify_directly_issued_by', None)
    if verify is not None:
        try:
            verify(issuer)
            return True
        except (ValueError, TypeError, InvalidSignature):
            return False
    # cryptography < 40 has no verify_directly_issued_by.
    pub = issuer.public_key()
    algo = cert.signature_hash_algorithm
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
        return True
    except (InvalidSignature, TypeError, ValueError):
        return False


def _check_dates(cert: x509.Certificate, path: Path, what: str) -> None:
    before, after = _validity(cert)
    now = _now()
    if now > after:
        raise NodeError(
            f'{what} {path}: expired on {_fmt(after)} (valid from {_fmt(before)} '
            f'to {_fmt(after)}; now {_fmt(now)})')
    if now < before:
        raise NodeError(
            f'{what} {path}: not yet valid, valid from {_fmt(before)} to {_fmt(after)} '
            f'(now {_fmt(now)}; check the clock)')


def _describe(name: x509.Name) -> str:
    return name.rfc4514_string() or '<empty>'


def _resolve(tls: TLSSpec, node_name: str, default_dir: PathLike | None) -> TLSConfig:
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
                f'TLS certificate directory {directory}: not found '
                f'(create it with `snowg certs {directory}`)')
        if not directory.is_dir():
            raise NodeError(
                f'TLS certificate directory {directory}: not a directory (to name files, '
                "pass a dict {'ca': ..., 'cert': ..., 'key': ...})")
        stem = GENERIC
        try:
            _check_node_name(node_name)
            if (directory / f'{node_name}.pem').exists():
                stem = node_name
        except ValueError:
            pass
        return TLSConfig(str(directory / CA_CERT), str(directory / f'{stem}.pem'),
                         str(directory / f'{stem}.key'))
    if isinstance(tls, Mapping):
        missing = [k for k in ('ca', 'cert', 'key') if k not in tls]
        extra = sorted(str(k) for k in tls if k not in ('ca', 'cert', 'key'))
        if missing or extra:
            raise NodeError(
                "tls must have exactly the keys 'ca', 'cert' and 'key' "
                f'(missing: {missing or "none"}; unknown: {extra or "none"})')
        ca, cert, key = tls['ca'], tls['cert'], tls['key']
    elif isinstance(tls, (tuple, list)) and len(tls) == 3:
        ca, cert, key = tls
    else:
        raise NodeError(
            'tls must be None, a certificate directory, a (ca, cert, key) tuple or a '
            f"dict with keys 'ca', 'cert', 'key'; got {tls!r}")
    return TLSConfig(*(str(Path(p).expanduser()) for p in (ca, cert, key)))


def load_tls(tls: TLSSpec, node_name: str, *, default_dir: PathLike | None) -> TLSConfig:
    """Find the TLS files of node ``node_name`` and check that they work together.

    Args:
        tls: ``None`` (use ``default_dir``), a certificate directory (its
            ``ca.pem``, and ``<node_name>.pem``/``.key`` if present, else
            ``node.pem``/``node.key``), a ``(ca, cert, key)`` tuple, a dict with
            keys ``'ca'``, ``'cert'``, ``'key'``, or a :class:`TLSConfig`.
        node_name: the node's name, ``'alice@127.0.0.1'``.
        default_dir: the directory used when ``tls`` is None; None means
            :func:`default_certs_dir`.

    Returns:
        The checked :class:`TLSConfig` (paths as strings).

    Raises:
        NodeError: with a message naming the file and the problem: directory or
            file not found or unreadable; not a PEM certificate or key; a
            certificate expired or not yet valid (with its dates); the CA is
            not a CA; the node certificate is not signed by the CA or lacks
            serverAuth/clientAuth usage; an encrypted key; a key that does not
            match the certificate; or ``tls`` of the wrong shape.
    """
    cfg = _resolve(tls, node_name, default_dir)
    ca_path, cert_path, key_path = Path(cfg.ca), Path(cfg.cert), Path(cfg.key)

    cas = _load_certs(ca_path, 'CA certificate')
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
        raise NodeError(f'CA certificate {ca_path}: not a CA certificate '
                        '(no basicConstraints CA:TRUE); did you pass a node certificate?')
    for ca in usable_cas:
        _check_dates(ca, ca_path, 'CA certificate')

    cert = _load_certs(cert_path, 'certificate')[0]
    _check_dates(cert, cert_path, 'certificate')
    if not any(_signed_by(cert, ca) for ca in usable_cas):
        raise NodeError(
            f'certificate {cert_path}: not signed by the CA in {ca_path} '
            f'(certificate issuer: {_describe(cert.issuer)}; '
            f'CA: {", ".join(_describe(ca.subject) for ca in usable_cas)}); '
            'were they made by different `snowg certs` runs?')
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None:
        lacking = [label for oid, label in ((ExtendedKeyUsageOID.SERVER_AUTH, 'serverAuth'),
                                            (ExtendedKeyUsageOID.CLIENT_AUTH, 'clientAuth'))
                   if oid not in eku]
        if lacking:
            raise NodeError(
                f'certificate {cert_path}: extended key usage lacks {" and ".join(lacking)}; '
                'nodes act as both TLS server and client, so both are needed')

    key = _load_key(key_path)
    if not _same_public_key(cert, key):
        raise NodeError(f'private key {key_path}: does not match certificate {cert_path}')
    logger.debug('TLS for %s: ca=%s cert=%s key=%s', node_name, cfg.ca, cfg.cert, cfg.key)
    return cfg


# --------------------------------------------------------------------------
# SSL contexts
# --------------------------------------------------------------------------

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
        raise NodeError(f'CA certificate {cfg.ca}: cannot be loaded ({exc})') from exc
    try:
        ctx.load_cert_chain(certfile=cfg.cert, keyfile=cfg.key)
    except (ssl.SSLError, OSError) as exc:
        raise NodeError(
            f'certificate {cfg.cert} / private key {cfg.key}: cannot be loaded ({exc})') from exc
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


def peer_common_name(sslsock: Any) -> str | None:
    """Return the subject CN of the verified peer certificate of ``sslsock``.

    Args:
        sslsock: an SSL socket (stdlib or gevent) whose handshake is done.

    Returns:
        The CN (for instance ``'alice@127.0.0.1'`` or ``'snowg node'``), or
        None if there is no peer certificate, no CN or no finished handshake.
    """
    try:
        cert = sslsock.getpeercert()
    except (ValueError, OSError):
        return None
    if not cert:
        return None
    for rdn in cert.get('subject', ()):
        for key, value in rdn:
            if key == 'commonName':
                return str(value)
    return None


# --------------------------------------------------------------------------
# `snowg certs`
# --------------------------------------------------------------------------

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
        prog='snowg certs',
        description='Create a cluster CA and node certificates for snowg mutual TLS. '
                    'Existing files are kept; only missing ones are added.')
    parser.add_argument('dir', help='certificate directory (created if missing)')
    parser.add_argument('--node', '-n', action='append', default=[], metavar='NAME',
                        help="also make a certificate for node NAME ('alice@127.0.0.1'); "
                             'repeatable')
    parser.add_argument('--days', type=int, default=825,
                        help='validity of new certificates in days (default: 825)')
    parser.add_argument('--overwrite', action='store_true',
                        help='make a NEW CA and re-issue every certificate in DIR '
                             '(certificates from the old CA stop working)')
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.days <= 0:
        print('snowg certs: error: --days must be positive', file=sys.stderr)
        return 2
    try:
        made = make_certs(args.dir, args.node, days=args.days, overwrite=args.overwrite)
    except (NodeError, ValueError, OSError) as exc:
        print(f'snowg certs: error: {exc}', file=sys.stderr)
        return 1
    for label, files in made.items():
        what = 'cluster CA' if label == 'ca' else (
            'generic node certificate' if label == GENERIC else f'certificate of {label}')
        verb = 'created' if files.created else 'kept   '
        print(f'{verb} {files.cert}  {files.key}  ({what})')
    print(f'Give every node {CA_CERT} and a certificate with its key; keep {CA_KEY} '
          'private (it can sign new node certificates).')
    return 0
