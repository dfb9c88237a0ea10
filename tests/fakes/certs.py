"""Private certificate authorities for TLS and mutual-TLS tests.

A test makes one ``CertAuthority`` in its tmp dir and issues server and client
certificates from it; files are written next to each other as PEM so they can be
handed to the real registry, to skopeo (``--cert-dir``) and to Python ``ssl``.

Invariants:
* Keys are ECDSA P-256: generation takes microseconds, so a fresh CA per test is
  cheap, and Go, OpenSSL and Python all accept it.
* Every certificate is valid from one hour ago (clock skew between processes) for
  seven days, and carries the SANs it is issued for, so hostname checks are real.
* Nothing here trusts the CA implicitly; callers decide by building contexts with
  ``ssl_context`` or bundles with ``write_bundle``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""Debian's system trust store, the base of every bundle that must still trust the world."""

_VALIDITY = dt.timedelta(days=7)
_SKEW = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, both as PEM bytes and as files on disk."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class CertAuthority:
    """A self-signed CA that issues leaf certificates into a directory."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes
    _cert: x509.Certificate
    _key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        dir: Path,
        name: str,
        *,
        server: bool = True,
        client: bool = False,
        sans: Sequence[str] = ("127.0.0.1", "localhost"),
    ) -> KeyPair:
        """Issue a leaf certificate ``name`` for ``sans`` and write ``dir/name.{crt,key}``.

        SANs that parse as IP addresses become IP SANs, the rest DNS SANs. ``server`` and
        ``client`` choose the extended key usages, because Go rejects a client certificate
        lacking clientAuth and a server certificate lacking serverAuth.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        dir.mkdir(parents=True, exist_ok=True)
        cert_file = dir / f"{name}.crt"
        key_file = dir / f"{name}.key"
        cert_file.write_bytes(cert_pem)
        _write_private(key_file, key_pem)
        return KeyPair(cert_file=cert_file, key_file=key_file, cert_pem=cert_pem, key_pem=key_pem)

    def ssl_context(self, *, client: KeyPair | None = None) -> ssl.SSLContext:
        """A client-side context that trusts only this CA, optionally presenting ``client``."""
        ctx = ssl.create_default_context(cadata=self.cert_pem.decode())
        if client is not None:
            ctx.load_cert_chain(client.cert_file, client.key_file)
        return ctx


def make_ca(dir: Path, name: str = "test-ca") -> CertAuthority:
    """Create a self-signed CA and write ``dir/name.{crt,key}``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    dir.mkdir(parents=True, exist_ok=True)
    cert_file = dir / f"{name}.crt"
    key_file = dir / f"{name}.key"
    cert_file.write_bytes(cert_pem)
    _write_private(key_file, _key_pem(key))
    return CertAuthority(
        cert_file=cert_file, key_file=key_file, cert_pem=cert_pem, _cert=cert, _key=key
    )


def write_bundle(path: Path, *pems: bytes, include_system: bool = True) -> Path:
    """Write a CA bundle of the system store (unless ``include_system`` is off) plus ``pems``.

    For components configured with a single CA file (``SSL_CERT_FILE``, azure-identity)
    that must trust a test CA without losing the public roots.
    """
    parts: list[bytes] = []
    if include_system:
        parts.append(SYSTEM_BUNDLE.read_bytes())
    parts.extend(pems)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(p.rstrip(b"\n") for p in parts) + b"\n")
    return path


def write_cert_dir(dir: Path, ca: CertAuthority, *, client: KeyPair | None = None) -> Path:
    """Lay out ``dir`` as skopeo's ``--cert-dir`` reads it: ``*.crt``, ``*.cert``/``*.key``."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "ca.crt").write_bytes(ca.cert_pem)
    if client is not None:
        (dir / "client.cert").write_bytes(client.cert_pem)
        _write_private(dir / "client.key", client.key_pem)
    return dir


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        return x509.DNSName(san)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    # Some tools (and the habit we want to model) refuse group/world-readable keys.
    path.write_bytes(data)
    path.chmod(0o600)
