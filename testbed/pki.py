"""Self-generated certificates and keys for one test-bed cluster.

Role: write, into ``<state>/pki``, everything etcd and kube-apiserver need to run with
TLS and client-certificate authentication, and nothing more:

- ``ca``: signs the serving certificates (etcd, kube-apiserver) and etcd's clients;
- ``client-ca``: the API server's ``--client-ca-file``; signs the admin identity
  (``CN=testbed-admin, O=system:masters``), so an admin kubeconfig needs no token;
- ``sa``: the service-account signing key pair (``--service-account-*-file``).

Invariants: every serving certificate names only loopback (IP 127.0.0.1, DNS
``localhost``) plus the in-cluster names of the ``kubernetes`` Service, so nothing here
can be presented for another host; private keys are written mode 0600. EC P-256 keys
throughout: generating them costs milliseconds, where RSA would add seconds per cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test session or a `make cluster` left running for weeks.
VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of everything ``write_pki`` created."""

    ca: Pair
    client_ca: Pair
    etcd_server: Pair
    etcd_client: Pair
    apiserver: Pair
    admin: Pair
    sa_private: Path
    sa_public: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _ca(directory: Path, stem: str, common_name: str) -> tuple[Pair, ec.EllipticCurvePrivateKey,
                                                               x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    pair = Pair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair, key, cert


def _leaf(
    directory: Path,
    stem: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> Pair:
    issuer_key, issuer_cert = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pair = Pair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def write_pki(directory: Path, *, service_ip: str) -> ClusterPKI:
    """Create a fresh PKI in ``directory`` (overwriting what is there).

    ``service_ip`` is the first address of ``--service-cluster-ip-range``, the
    ``kubernetes`` Service's ClusterIP, which in-cluster clients would dial.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_pair, ca_key, ca_cert = _ca(directory, "ca", "testbed-ca")
    client_pair, client_key, client_cert = _ca(directory, "client-ca", "testbed-client-ca")
    loopback_dns = ("localhost",)
    loopback_ip = ("127.0.0.1",)
    etcd_server = _leaf(
        directory, "etcd-server", (ca_key, ca_cert), "etcd",
        server=True, client=True,  # also the peer certificate of the one-member cluster
        dns=loopback_dns, ips=loopback_ip,
    )
    etcd_client = _leaf(
        directory, "etcd-client", (ca_key, ca_cert), "kube-apiserver-etcd-client", client=True
    )
    apiserver = _leaf(
        directory, "apiserver", (ca_key, ca_cert), "kube-apiserver",
        server=True,
        dns=(*loopback_dns, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"),
        ips=(*loopback_ip, service_ip),
    )
    admin = _leaf(
        directory, "admin", (client_key, client_cert), "testbed-admin",
        organizations=("system:masters",), client=True,
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    _write_key(sa_private, sa_key)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterPKI(
        ca=ca_pair,
        client_ca=client_pair,
        etcd_server=etcd_server,
        etcd_client=etcd_client,
        apiserver=apiserver,
        admin=admin,
        sa_private=sa_private,
        sa_public=sa_public,
    )
