"""``spec.certSecretRef``: TLS material (CA, client certificate and key) from a Secret, in
the words of either compatibility mode.

* v0.31 mode (Flux 2.2): the Secret's type must be ``Opaque``, ``kubernetes.io/tls`` or
  empty; the keys ``tls.crt``/``tls.key``/``ca.crt`` are read, and only when none of them
  is present the deprecated ``certFile``/``keyFile``/``caFile`` as a whole (one warning).
* v1.2 mode (fluxcd/pkg runtime ``TLSConfigFromSecret``): no type check; each key falls
  back to its legacy name on its own, logging an error ``using legacy key in secret
  data``; a Secret with neither a CA nor a key pair is an error.

The CA always adds to the system trust store. Messages never contain PEM text.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Final

from imagereflector.credentials.errors import CredentialsError, secret_value
from imagereflector.registry.errors import TLSError
from imagereflector.registry.transport import build_ssl_context
from imagereflector.registry.types import TLSConfig

TLS_SECRET_TYPES: Final = ("Opaque", "kubernetes.io/tls", "")
TLS_KEYS: Final = ("tls.crt", "tls.key", "ca.crt")
LEGACY_TLS_KEYS: Final = ("certFile", "keyFile", "caFile")
_CLIENT_PAIR_PREFIX: Final = "cannot use client certificate and key: "

log = logging.getLogger("imagereflector.credentials")


def _valid_ca(ca: bytes) -> bool:
    try:
        ssl.create_default_context(cadata=ca.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError, TypeError):
        # TypeError: ssl refuses non-ASCII text outright, which is no CA either.
        return False
    return True


def tls_from_secret(secret: dict[str, Any]) -> TLSConfig:
    """v0.31 mode: TLS material from a ``certSecretRef`` Secret (contract §2.5.3)."""
    name = secret.get("metadata", {}).get("name", "")
    kind = secret.get("type", "") or ""
    if kind not in TLS_SECRET_TYPES:
        raise CredentialsError(f"cannot use secret '{name}' to construct TLS config: "
                               f"invalid secret type: '{kind}'")
    cert, key, ca = (secret_value(secret, k) for k in TLS_KEYS)
    if cert is None and key is None and ca is None:
        cert, key, ca = (secret_value(secret, k) for k in LEGACY_TLS_KEYS)
        if cert is not None or key is not None or ca is not None:
            log.warning("warning: specifying TLS auth data via `certFile`/`keyFile`/`caFile` "
                        "is deprecated, please use `tls.crt`/`tls.key`/`ca.crt` instead")
    if (cert is None) != (key is None):
        raise CredentialsError(f"invalid '{name}' secret data: both certificate and private "
                               "key need to be provided")
    if ca is not None and not _valid_ca(ca):
        raise CredentialsError("cannot append certificate into certificate pool: "
                               "invalid CA certificate")
    tls = TLSConfig(ca_pem=ca, cert_pem=cert, key_pem=key)
    try:
        # Loading the material now turns a bad key pair into an authentication error
        # instead of a confusing failure in the middle of the scan.
        build_ssl_context(tls)
    except TLSError as err:
        raise CredentialsError(f"invalid '{name}' secret data: {err}") from err
    return tls


def _value_or_legacy(secret: dict[str, Any], key: str, legacy: str, ref: str) -> bytes:
    data = secret.get("data") or {}
    if isinstance(data, dict) and key in data:
        return secret_value(secret, key) or b""
    if isinstance(data, dict) and legacy in data:
        log.error("using legacy key in secret data",
                  extra={"fields": {"secret": ref, "key": legacy, "preferred": key}})
        return secret_value(secret, legacy) or b""
    return b""


def tls_from_secret_latest(secret: dict[str, Any], *, namespace: str) -> TLSConfig:
    """v1.2 mode: TLS material from a ``certSecretRef`` Secret, with Flux v1.2's rules."""
    ref = f"{namespace}/{secret.get('metadata', {}).get('name', '')}"
    cert, key, ca = (_value_or_legacy(secret, k, legacy, ref)
                     for k, legacy in zip(TLS_KEYS, LEGACY_TLS_KEYS, strict=True))
    if bool(cert) != bool(key):
        present, missing = ("tls.crt", "tls.key") if cert else ("tls.key", "tls.crt")
        raise CredentialsError(f"secret '{ref}' contains '{present}' but missing '{missing}'")
    if not cert and not ca:
        raise CredentialsError(f"secret '{ref}' must contain either 'ca.crt' or both "
                               "'tls.crt' and 'tls.key'")
    if cert:
        try:
            build_ssl_context(TLSConfig(cert_pem=cert, key_pem=key))
        except TLSError as err:
            reason = str(err).removeprefix(_CLIENT_PAIR_PREFIX)
            raise CredentialsError(f"failed to parse TLS certificate and key: {reason}"
                                   ) from None
    if ca and not _valid_ca(ca):
        raise CredentialsError("failed to parse CA certificate")
    return TLSConfig(ca_pem=ca or None, cert_pem=cert or None, key_pem=key or None)
