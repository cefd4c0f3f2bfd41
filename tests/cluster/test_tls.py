"""Certificates, TLS contexts and the cookie (snowg.cluster._cert*, _tls, _cookie)."""

from __future__ import annotations

import datetime
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gevent
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gevent import socket as gsocket
from gevent import ssl as gssl

from snowg._errors import NodeError
from snowg.cluster import TLSConfig, client_context, load_tls, make_certs, server_context
from snowg.cluster._certcheck import validity
from snowg.cluster._certfiles import default_home
from snowg.cluster._certs_cli import certs_main
from snowg.cluster._cookie import resolve_cookie
from snowg.cluster._tls import is_node_certificate, names_peer, peer_certificate_names

ALICE = "alice@127.0.0.1"
BOB = "bob@127.0.0.1"
POSIX = os.name == "posix"
IO_TIMEOUT = 5.0


def peer_common_name(sslsock: Any) -> str | None:
    """The subject CN of the certificate the peer of ``sslsock`` presented (None if none)."""
    cert = sslsock.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cluster")
    make_certs(d, [ALICE, BOB])
    return d


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("other")
    make_certs(d, [ALICE])
    return d


@pytest.fixture
def certs(cluster: Path, tmp_path: Path) -> Path:
    """A private copy of the cluster directory that a test may damage."""
    return Path(shutil.copytree(cluster, tmp_path / "certs"))


def _read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --------------------------------------------------------------------------
# make_certs
# --------------------------------------------------------------------------


def test_make_certs_creates_files(tmp_path: Path) -> None:
    d = tmp_path / "c"
    made = make_certs(d, [ALICE])
    assert set(made) == {"ca", "node", ALICE}
    assert all(f.created for f in made.values())
    for stem in ("ca", "node", ALICE):
        assert (d / f"{stem}.pem").is_file()
        assert (d / f"{stem}.key").is_file()
        if POSIX:
            assert stat.S_IMODE((d / f"{stem}.key").stat().st_mode) == 0o600
    cert = _read_cert(d / f"{ALICE}.pem")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ALICE
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    # Every certificate made passes load_tls.
    load_tls(d, ALICE, default_dir=None)
    load_tls(d, BOB, default_dir=None)


def test_make_certs_san_for_dns_host(tmp_path: Path) -> None:
    make_certs(tmp_path, ["carol@db.example"])
    cert = _read_cert(tmp_path / "carol@db.example.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["db.example", "localhost"]


def test_make_certs_rerun_keeps_ca_and_adds_nodes(tmp_path: Path) -> None:
    make_certs(tmp_path, [ALICE])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    made = make_certs(tmp_path, [ALICE, BOB])
    assert not made["ca"].created and not made["node"].created and not made[ALICE].created
    assert made[BOB].created
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data, name
    assert _read_cert(tmp_path / f"{BOB}.pem").issuer == _read_cert(tmp_path / "ca.pem").subject
    load_tls(tmp_path, BOB, default_dir=None)


def test_make_certs_refuses_ca_without_key(tmp_path: Path) -> None:
    make_certs(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(NodeError, match=r"ca\.key is missing"):
        make_certs(tmp_path, [BOB])


def test_make_certs_overwrite_reissues_everything(tmp_path: Path) -> None:
    make_certs(tmp_path, [ALICE])
    old_ca = (tmp_path / "ca.pem").read_bytes()
    made = make_certs(tmp_path, overwrite=True)
    assert made["ca"].created and made[ALICE].created
    assert (tmp_path / "ca.pem").read_bytes() != old_ca
    load_tls(tmp_path, ALICE, default_dir=None)


def _sans(path: Path) -> tuple[list[str], list[str]]:
    """The IP and DNS SANs of the certificate in ``path``."""
    san = _read_cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)], san.get_values_for_type(x509.DNSName)


def test_make_certs_hosts_in_every_leaf(tmp_path: Path) -> None:
    made = make_certs(tmp_path, ["carol@db.example"], hosts=["10.0.0.5", "Web1.Example.", "[2001:db8::1]", "*.web.svc"])
    assert all(f.missing_hosts == () for f in made.values())
    assert _sans(tmp_path / "node.pem") == (
        ["10.0.0.5", "2001:db8::1", "127.0.0.1"],
        ["web1.example", "*.web.svc", "localhost"],
    )
    assert _sans(tmp_path / "carol@db.example.pem") == (
        ["10.0.0.5", "2001:db8::1", "127.0.0.1"],
        ["db.example", "web1.example", "*.web.svc", "localhost"],
    )
    assert make_certs(tmp_path / "one", hosts="10.9.9.9")["node"].created  # a str is one host
    assert _sans(tmp_path / "one" / "node.pem")[0] == ["10.9.9.9", "127.0.0.1"]


def test_make_certs_node_host_that_cannot_be_a_san(tmp_path: Path) -> None:
    made = make_certs(tmp_path, ["a@b\u00fccher.example", "b@host:9"])
    assert made["a@b\u00fccher.example"].created and made["b@host:9"].created
    for name in ("a@b\u00fccher.example", "b@host:9"):
        assert _sans(tmp_path / f"{name}.pem") == (["127.0.0.1"], ["localhost"])  # the CN names the node
        assert is_node_certificate(load_tls(tmp_path, name, default_dir=None), name)


@pytest.mark.parametrize("bad", ["", "two words", "a..b", "-a.example", "a@b", "x" * 64, "a.*.b", "host:9100"])
def test_make_certs_rejects_bad_hosts(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        make_certs(tmp_path, hosts=[bad])
    assert not (tmp_path / "ca.pem").exists()  # checked before anything is written


def test_make_certs_kept_certificate_reports_missing_hosts(tmp_path: Path) -> None:
    make_certs(tmp_path, [ALICE], hosts=["10.0.0.5"])
    before = (tmp_path / "node.pem").read_bytes()
    made = make_certs(tmp_path, [ALICE], hosts=["10.0.0.5", "10.0.0.6", "web2.example"])
    assert not made["node"].created and made["node"].missing_hosts == ("10.0.0.6", "web2.example")
    assert made[ALICE].missing_hosts == ("10.0.0.6", "web2.example")
    assert made["ca"].missing_hosts == ()
    assert (tmp_path / "node.pem").read_bytes() == before


def test_make_certs_reissue_keeps_ca_and_hosts(tmp_path: Path) -> None:
    make_certs(tmp_path, [ALICE], hosts=["10.0.0.5"])
    old = tmp_path / "old"
    old.mkdir()
    for name in ("ca.pem", "ca.key", "node.pem", "node.key", f"{ALICE}.pem", f"{ALICE}.key"):
        shutil.copy2(tmp_path / name, old / name)
    made = make_certs(tmp_path, hosts=["web2.example"], reissue=True)
    assert not made["ca"].created and made["node"].created and made[ALICE].created  # every NAME.pem in DIR
    assert (tmp_path / "ca.pem").read_bytes() == (old / "ca.pem").read_bytes()
    assert (tmp_path / "node.key").read_bytes() != (old / "node.key").read_bytes()  # a new key
    assert _sans(tmp_path / "node.pem") == (["10.0.0.5", "127.0.0.1"], ["web2.example", "localhost"])
    assert _sans(tmp_path / f"{ALICE}.pem") == (["127.0.0.1", "10.0.0.5"], ["web2.example", "localhost"])
    # Old and new certificates verify with the one CA: nodes can be switched one at a time.
    load_tls(tmp_path, ALICE, default_dir=None)
    load_tls((tmp_path / "ca.pem", old / "node.pem", old / "node.key"), ALICE, default_dir=None)
    new_server, _ = _ctx_pair(tmp_path, ALICE)
    old_client = client_context(load_tls(old, BOB, default_dir=None))
    server, client = _handshake(new_server, old_client)
    assert server[0] == "ok" and client[0] == "ok"


def test_ca_rollover_with_both_cas_trusted(cluster: Path, other: Path, tmp_path: Path) -> None:
    """Changing the CA without a split: every node trusts a ca.pem holding the old and the new CA."""
    both = tmp_path / "both.pem"
    both.write_bytes((cluster / "ca.pem").read_bytes() + (other / "ca.pem").read_bytes())
    old_side = load_tls((both, cluster / "node.pem", cluster / "node.key"), ALICE, default_dir=None)
    new_side = load_tls((both, other / f"{ALICE}.pem", other / f"{ALICE}.key"), ALICE, default_dir=None)
    for srv, cli in ((old_side, new_side), (new_side, old_side)):
        server, client = _handshake(server_context(srv), client_context(cli))
        assert server[0] == "ok" and client[0] == "ok" and client[2] == b"pong:hello", (server, client)


@pytest.mark.parametrize("bad", ["alice", "@host", "alice@", "../x@y", "a@b@c"])
def test_make_certs_rejects_bad_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        make_certs(tmp_path, [bad])


# --------------------------------------------------------------------------
# Real TLS over gevent sockets
# --------------------------------------------------------------------------


def _handshake(server_ctx: Any, client_ctx: Any) -> tuple[Any, Any]:
    """Run one server and one client greenlet; return what each got.

    Each result is either the tuple of the exchange or the exception raised.
    """
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> Any:
        conn, _ = listener.accept()
        conn.settimeout(IO_TIMEOUT)
        try:
            s = server_ctx.wrap_socket(conn, server_side=True)
            assert isinstance(s, gssl.SSLSocket)
            data = s.recv(5)
            s.sendall(b"pong:" + data)
            cn = peer_common_name(s)
            s.close()
            return ("ok", cn, data)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc
        finally:
            conn.close()

    def connect() -> Any:
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        try:
            c = client_ctx.wrap_socket(sock)
            assert isinstance(c, gssl.SSLSocket)
            c.sendall(b"hello")
            reply = b""
            while len(reply) < 10:
                chunk = c.recv(10 - len(reply))
                if not chunk:
                    break
                reply += chunk
            cn = peer_common_name(c)
            c.close()
            return ("ok", cn, reply)
        except Exception as exc:  # noqa: BLE001
            return exc
        finally:
            sock.close()

    try:
        with gevent.Timeout(2 * IO_TIMEOUT):
            server = gevent.spawn(serve)
            client = gevent.spawn(connect)
            gevent.joinall([server, client], raise_error=True)
    finally:
        listener.close()
    return server.value, client.value


def _ctx_pair(d: Path, name: str) -> tuple[Any, Any]:
    cfg = load_tls(d, name, default_dir=None)
    return server_context(cfg), client_context(cfg)


def _refused(result: Any) -> bool:
    """True if that side failed or never got the peer's reply.

    With TLS 1.3 the client's handshake completes before the server has
    checked the client certificate, so a refused client may only see the
    failure (an alert or EOF) when it reads.
    """
    return isinstance(result, BaseException) or result[2] != b"pong:hello"


def _foreign(trusted: Path, own: Path, name: str) -> TLSConfig:
    """Files that trust the CA in ``trusted`` but present a certificate from ``own``."""
    return TLSConfig(str(trusted / "ca.pem"), str(own / f"{name}.pem"), str(own / f"{name}.key"))


def test_contexts_are_gevent_and_strict(cluster: Path) -> None:
    import ssl

    srv, cli = _ctx_pair(cluster, ALICE)
    for ctx in (srv, cli):
        assert isinstance(ctx, gssl.SSLContext) and isinstance(ctx, ssl.SSLContext)
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.check_hostname is False


@pytest.mark.parametrize("max_version", [None, "TLSv1_2"])
def test_mutual_handshake(cluster: Path, max_version: str | None) -> None:
    import ssl

    srv, _ = _ctx_pair(cluster, BOB)
    _, cli = _ctx_pair(cluster, ALICE)
    if max_version:
        cli.maximum_version = getattr(ssl.TLSVersion, max_version)
    server, client = _handshake(srv, cli)
    assert server == ("ok", ALICE, b"hello")
    assert client == ("ok", BOB, b"pong:hello")


def test_generic_certificate_cn(cluster: Path) -> None:
    srv, cli = _ctx_pair(cluster, "carol@127.0.0.1")  # no own cert: node.pem
    server, client = _handshake(srv, cli)
    assert server == ("ok", "snowg node", b"hello")
    assert client[0] == "ok"


def test_client_from_other_ca_refused(cluster: Path, other: Path) -> None:
    srv, _ = _ctx_pair(cluster, BOB)
    # The client trusts the server, so only the server can refuse.
    cli = client_context(_foreign(cluster, other, ALICE))
    server, client = _handshake(srv, cli)
    assert isinstance(server, gssl.SSLError), server
    assert "unknown ca" in str(server) or "certificate verify failed" in str(server), server
    assert _refused(client), client


def test_server_from_other_ca_refused(cluster: Path, other: Path) -> None:
    # The server trusts the client, so only the client can refuse.
    srv = server_context(_foreign(cluster, other, ALICE))
    _, cli = _ctx_pair(cluster, BOB)
    server, client = _handshake(srv, cli)
    assert isinstance(client, gssl.SSLCertVerificationError), client
    assert _refused(server), server


def test_client_without_certificate_refused(cluster: Path) -> None:
    import ssl

    srv, _ = _ctx_pair(cluster, BOB)
    cli = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.check_hostname = False
    cli.load_verify_locations(cafile=str(cluster / "ca.pem"))
    server, client = _handshake(srv, cli)
    assert isinstance(server, gssl.SSLError), server
    assert _refused(client), client


def test_monkeypatched_program(cluster: Path) -> None:
    """In a patched program the stdlib names (ssl, socket) work with our contexts."""
    script = textwrap.dedent("""
        import warnings
        warnings.simplefilter('error')  # a MonkeyPatchWarning would fail here
        from gevent import monkey
        import snowg.cluster as tls   # imported before patching: must not import ssl
        monkey.patch_all()
        def peer_cn(s):
            return dict(x[0] for x in s.getpeercert()['subject'])['commonName']
        import socket, ssl, sys, gevent
        cfg = tls.load_tls(sys.argv[1], 'alice@127.0.0.1', default_dir=None)
        srv, cli = tls.server_context(cfg), tls.client_context(cfg)
        lst = socket.socket(); lst.bind(('127.0.0.1', 0)); lst.listen(1)
        def serve():
            conn, _ = lst.accept()
            s = srv.wrap_socket(conn, server_side=True)
            s.sendall(s.recv(5).upper())
            return peer_cn(s)
        with gevent.Timeout(5):
            g = gevent.spawn(serve)
            c = cli.wrap_socket(socket.create_connection(lst.getsockname()))
            c.sendall(b'hello')
            print(c.recv(5).decode(), peer_cn(c), g.get())
    """)
    out = subprocess.run([sys.executable, "-c", script, str(cluster)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["HELLO", ALICE, ALICE]


# --------------------------------------------------------------------------
# load_tls errors
# --------------------------------------------------------------------------


def test_load_tls_shapes(certs: Path) -> None:
    cfg = load_tls(None, ALICE, default_dir=certs)
    assert cfg == TLSConfig(str(certs / "ca.pem"), str(certs / f"{ALICE}.pem"), str(certs / f"{ALICE}.key"))
    assert load_tls(certs, "zed@127.0.0.1", default_dir=None).cert == str(certs / "node.pem")
    explicit = (certs / "ca.pem", certs / "node.pem", certs / "node.key")
    assert load_tls(explicit, ALICE, default_dir=None).cert == str(certs / "node.pem")
    as_dict = dict(zip(("ca", "cert", "key"), explicit))
    assert load_tls(as_dict, ALICE, default_dir=None) == load_tls(explicit, ALICE, default_dir=None)
    with pytest.raises(NodeError, match="keys 'ca', 'cert' and 'key'"):
        load_tls({"ca": "x"}, ALICE, default_dir=None)


def test_load_tls_default_home(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOWG_HOME", str(certs.parent))
    assert default_home() == certs.parent
    assert load_tls(None, BOB, default_dir=None).cert == str(certs / f"{BOB}.pem")


def test_load_tls_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(NodeError) as err:
        load_tls(None, ALICE, default_dir=missing)
    assert str(missing) in str(err.value) and "not found" in str(err.value)
    assert f"snowg certs {missing}" in str(err.value)


@pytest.mark.parametrize("name", ["ca.pem", "node.pem", "node.key"])
def test_load_tls_missing_file(certs: Path, name: str) -> None:
    (certs / name).unlink()
    with pytest.raises(NodeError, match=f"{certs / name}: file not found"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)


def test_load_tls_garbage_pem(certs: Path) -> None:
    (certs / "node.pem").write_text("hello, I am not a certificate\n")
    with pytest.raises(NodeError, match=r"node\.pem: not a PEM certificate"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)
    (certs / "node.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(NodeError, match=r"node\.pem: not a valid PEM certificate"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)
    shutil.copy(certs / "node.key", certs / "node.pem")
    with pytest.raises(NodeError, match=r"not a PEM certificate \(it holds a private key\)"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)


def test_load_tls_garbage_key(certs: Path) -> None:
    (certs / "node.key").write_text("garbage")
    with pytest.raises(NodeError, match=r"node\.key: not a PEM private key"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)


def _issue(
    certs: Path, cn: str, *, start: datetime.datetime, end: datetime.datetime, ca_dir: Path | None = None
) -> None:
    """Write certs/<cn>.pem/.key, signed by the CA of ca_dir (default: certs)."""
    ca_dir = ca_dir or certs
    ca_cert = _read_cert(ca_dir / "ca.pem")
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )
    (certs / f"{cn}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / f"{cn}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(certs / f"{cn}.key", 0o600)


def test_load_tls_expired(certs: Path) -> None:
    _issue(certs, "old@127.0.0.1", start=datetime.datetime(2020, 1, 1), end=datetime.datetime(2021, 1, 1))
    with pytest.raises(NodeError) as err:
        load_tls(certs, "old@127.0.0.1", default_dir=None)
    msg = str(err.value)
    assert "old@127.0.0.1.pem: expired on 2021-01-01 00:00:00 UTC" in msg
    assert "valid from 2020-01-01 00:00:00 UTC to 2021-01-01 00:00:00 UTC" in msg


def test_load_tls_not_yet_valid(certs: Path) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    _issue(certs, "new@127.0.0.1", start=now + datetime.timedelta(days=2), end=now + datetime.timedelta(days=3))
    with pytest.raises(NodeError, match=r"new@127\.0\.0\.1\.pem: not yet valid, valid from"):
        load_tls(certs, "new@127.0.0.1", default_dir=None)


def test_load_tls_other_ca(certs: Path, other: Path) -> None:
    shutil.copy(other / f"{ALICE}.pem", certs / f"{ALICE}.pem")
    shutil.copy(other / f"{ALICE}.key", certs / f"{ALICE}.key")
    with pytest.raises(NodeError) as err:
        load_tls(certs, ALICE, default_dir=None)
    assert f"{certs / (ALICE + '.pem')}: not signed by the CA in {certs / 'ca.pem'}" in str(err.value)


def test_load_tls_same_subject_other_ca_key(certs: Path, other: Path) -> None:
    # Both CAs have the same subject name; only the signature tells them apart.
    now = datetime.datetime.now(datetime.timezone.utc)
    _issue(
        certs,
        "eve@127.0.0.1",
        start=now - datetime.timedelta(hours=1),
        end=now + datetime.timedelta(days=1),
        ca_dir=other,
    )
    with pytest.raises(NodeError, match="not signed by the CA"):
        load_tls(certs, "eve@127.0.0.1", default_dir=None)


def test_load_tls_key_mismatch(certs: Path) -> None:
    shutil.copy(certs / f"{BOB}.key", certs / f"{ALICE}.key")
    with pytest.raises(NodeError, match=r"alice@127\.0\.0\.1\.key: does not match certificate"):
        load_tls(certs, ALICE, default_dir=None)


@pytest.mark.skipif(not POSIX, reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o601])
def test_load_tls_key_others_may_access_refused(certs: Path, mode: int) -> None:
    key = certs / "node.key"
    os.chmod(key, mode)
    with pytest.raises(NodeError) as err:
        load_tls(certs, "zed@127.0.0.1", default_dir=None)
    assert str(err.value) == (
        f"private key {key}: accessible to group or others (mode {mode:04o}); run `chmod 600 {key}`"
    )
    os.chmod(key, 0o400)  # owner-only modes are fine
    load_tls(certs, "zed@127.0.0.1", default_dir=None)


@pytest.mark.skipif(not POSIX, reason="POSIX permission bits")
def test_load_tls_key_through_symlink_checks_the_file(certs: Path, tmp_path: Path) -> None:
    """As a Kubernetes secret volume mounts it: a link (mode 0777) to the file, whose mode counts."""
    real = tmp_path / "secret.key"
    shutil.move(str(certs / "node.key"), real)
    (certs / "node.key").symlink_to(real)
    load_tls(certs, "zed@127.0.0.1", default_dir=None)
    os.chmod(real, 0o644)
    with pytest.raises(NodeError, match=r"node\.key: accessible to group or others \(mode 0644\)"):
        load_tls(certs, "zed@127.0.0.1", default_dir=None)


def test_load_tls_node_cert_as_ca(certs: Path) -> None:
    cfg = {"ca": certs / "node.pem", "cert": certs / "node.pem", "key": certs / "node.key"}
    with pytest.raises(NodeError, match=r"node\.pem: not a CA certificate"):
        load_tls(cfg, ALICE, default_dir=None)


# --------------------------------------------------------------------------
# resolve_cookie
# --------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SNOWG_COOKIE", raising=False)
    monkeypatch.setenv("SNOWG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cookie_precedence(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "cookie").write_text("FROMFILE\n")
    os.chmod(home / "cookie", 0o600)
    assert resolve_cookie() == "FROMFILE"
    monkeypatch.setenv("SNOWG_COOKIE", "fromenv")
    assert resolve_cookie() == "fromenv"
    assert resolve_cookie("fromarg") == "fromarg"


def test_cookie_file_created(home: Path) -> None:
    cookie = resolve_cookie()
    assert len(cookie) == 20 and cookie.isalpha() and cookie.isupper()
    path = home / "cookie"
    assert path.read_text() == cookie
    if POSIX:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_cookie() == cookie
    assert [p.name for p in home.iterdir()] == ["cookie"]  # no temporary left behind


def test_cookie_explicit_home(tmp_path: Path, home: Path) -> None:
    cookie = resolve_cookie(home=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "cookie").read_text() == cookie
    assert not home.exists()


@pytest.mark.skipif(not POSIX, reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_cookie_group_readable_refused(home: Path, mode: int) -> None:
    home.mkdir()
    path = home / "cookie"
    path.write_text("SECRET")
    os.chmod(path, mode)
    with pytest.raises(NodeError) as err:
        resolve_cookie()
    assert f"chmod 600 {path}" in str(err.value)
    assert f"{mode:04o}" in str(err.value)


def test_cookie_empty_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NodeError, match="cookie is empty"):
        resolve_cookie("")
    monkeypatch.setenv("SNOWG_COOKIE", "")
    with pytest.raises(NodeError, match=r"\$SNOWG_COOKIE is set but empty"):
        resolve_cookie()
    monkeypatch.delenv("SNOWG_COOKIE")
    home.mkdir()
    (home / "cookie").write_text("  \n")
    os.chmod(home / "cookie", 0o600)
    with pytest.raises(NodeError, match="cookie: empty"):
        resolve_cookie()


# --------------------------------------------------------------------------
# snowg certs
# --------------------------------------------------------------------------


def test_certs_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "cli"
    assert certs_main([str(d), "--node", ALICE, "--node", BOB, "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert out.count("created ") == 4 and "keep ca.key private" in out
    for stem in ("ca", "node", ALICE, BOB):
        assert (d / f"{stem}.pem").is_file() and (d / f"{stem}.key").is_file()
    after = validity(_read_cert(d / f"{ALICE}.pem"))[1]
    assert after - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=31)
    load_tls(d, BOB, default_dir=None)

    assert certs_main([str(d)]) == 0
    assert "created" not in capsys.readouterr().out


def test_certs_main_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "cli"
    assert certs_main([str(d), "--host", "10.0.0.5", "--host", "web1.example", "--node", "n1@10.0.0.7"]) == 0
    capsys.readouterr()
    assert _sans(d / "node.pem") == (["10.0.0.5", "127.0.0.1"], ["web1.example", "localhost"])
    assert _sans(d / "n1@10.0.0.7.pem") == (["10.0.0.7", "10.0.0.5", "127.0.0.1"], ["web1.example", "localhost"])

    # A new host on an existing directory: kept, and said so with the way out.
    assert certs_main([str(d), "--host", "10.0.0.6"]) == 0
    out = capsys.readouterr().out
    assert "node.pem was kept and does not name 10.0.0.6; run again with --reissue" in out
    assert "10.0.0.6" not in _sans(d / "node.pem")[0]

    ca = (d / "ca.pem").read_bytes()
    assert certs_main([str(d), "--host", "10.0.0.6", "--reissue"]) == 0
    out = capsys.readouterr().out
    assert "kept    " in out and "(cluster CA)" in out and "does not name" not in out
    assert (d / "ca.pem").read_bytes() == ca
    assert _sans(d / "node.pem")[0] == ["10.0.0.6", "10.0.0.5", "127.0.0.1"]
    assert _sans(d / "n1@10.0.0.7.pem")[0] == ["10.0.0.7", "10.0.0.6", "10.0.0.5", "127.0.0.1"]


@pytest.mark.skipif(not POSIX, reason="POSIX permission bits")
def test_certs_main_warns_about_shared_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs_main([str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
    os.chmod(tmp_path / "ca.key", 0o640)
    os.chmod(tmp_path / "node.key", 0o644)
    assert certs_main([str(tmp_path)]) == 0
    err = capsys.readouterr().err
    ca_key, node_key = tmp_path / "ca.key", tmp_path / "node.key"
    assert (
        f"snowg certs: warning: private key {ca_key}: accessible to group or others (mode 0640); "
        f"run `chmod 600 {ca_key}` (whoever can read it can make certificates for your cluster)\n"
    ) in err
    assert (
        f"snowg certs: warning: private key {node_key}: accessible to group or others (mode 0644); "
        f"run `chmod 600 {node_key}` (a node refuses to start with it)\n"
    ) in err


def test_certs_main_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs_main([str(tmp_path), "--days", "0"]) == 2
    assert certs_main([str(tmp_path), "--node", "noat"]) == 1
    assert "not of the form 'name@host'" in capsys.readouterr().err
    assert certs_main([str(tmp_path), "--host", "no such host"]) == 1
    assert "host 'no such host' is neither an IP address nor a DNS name" in capsys.readouterr().err
    assert certs_main([str(tmp_path), "--reissue", "--overwrite"]) == 2
    assert certs_main([]) == 2
    assert certs_main(["--help"]) == 0


# --------------------------------------------------------------------------
# Whose certificate: per-node certificates and the names a peer's certificate holds
# --------------------------------------------------------------------------


def test_is_node_certificate(cluster: Path) -> None:
    assert is_node_certificate(load_tls(cluster, ALICE, default_dir=None), ALICE)
    assert not is_node_certificate(load_tls(cluster, ALICE, default_dir=None), BOB)
    # The generic certificate is no node's own.
    assert not is_node_certificate(load_tls(cluster, "carol@127.0.0.1", default_dir=None), "carol@127.0.0.1")


@pytest.mark.parametrize("server_name", [BOB, "carol@127.0.0.1"], ids=["own", "generic"])
def test_peer_certificate_names_over_real_tls(cluster: Path, server_name: str) -> None:
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    srv, _ = _ctx_pair(cluster, server_name)
    _, cli = _ctx_pair(cluster, ALICE)
    seen: dict = {}

    def serve() -> None:
        conn, _ = listener.accept()
        s = srv.wrap_socket(conn, server_side=True)
        seen["server"] = peer_certificate_names(s)
        s.recv(1)
        s.close()

    try:
        with gevent.Timeout(2 * IO_TIMEOUT):
            server = gevent.spawn(serve)
            c = cli.wrap_socket(gsocket.create_connection(listener.getsockname(), timeout=IO_TIMEOUT))
            seen["client"] = peer_certificate_names(c)
            assert names_peer(c, server_name) is (server_name == BOB)
            c.sendall(b"x")
            server.get()
            c.close()
    finally:
        listener.close()
    assert seen["server"] == {ALICE, "127.0.0.1", "localhost"} - {"127.0.0.1"}  # CN and DNS SANs, not IPs
    expected_cn = BOB if server_name == BOB else "snowg node"
    assert expected_cn in seen["client"] and "localhost" in seen["client"]
    assert peer_certificate_names(object()) == frozenset()
