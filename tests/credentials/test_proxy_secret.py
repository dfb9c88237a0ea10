"""Proxy Secrets in both modes' words, and the pieces of Flux v1.2 they rest on.

Pure functions: the Secret as the API returns it (base64 ``data``) in, a ``ProxyConfig``
or the mode's message out. What the proxy then does is in ``test_socks5`` and
``tests/controllers/test_proxy.py``.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from imagereflector.credentials.errors import CredentialsError
from imagereflector.credentials.proxy import (
    parse_go_url,
    proxy_from_secret,
    proxy_from_secret_latest,
    proxy_url,
    redact_userinfo,
)
from imagereflector.credentials.workload import (
    POLICY_GATE_MESSAGE,
    REPOSITORY_GATE_MESSAGE,
    WorkloadIdentity,
    policy_gate_error,
    repository_gate_error,
    service_account_for,
)
from imagereflector.registry.types import ProxyConfig

PLANTED = "Planted-Proxy-Pass-4c2a"


def secret(**data: str) -> dict[str, Any]:
    return {"metadata": {"name": "proxy"}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.mark.parametrize("address", ["http://127.0.0.1:3128", "https://proxy.example:8443",
                                     "socks5://127.0.0.1:1080"])
def test_every_scheme_is_accepted_in_both_modes(address: str) -> None:
    data = secret(address=address, username="u", password=PLANTED)
    expected = ProxyConfig(address=address, username="u", password=PLANTED)
    assert proxy_from_secret(data) == expected
    assert proxy_from_secret_latest(data, namespace="ns") == expected


@pytest.mark.parametrize(("data", "legacy", "latest"), [
    ({}, "invalid proxy secret 'proxy': key 'address' is missing",
     "secret 'ns/proxy': key 'address' not found"),
    ({"address": ""}, "invalid proxy secret 'proxy': key 'address' is missing",
     "secret 'ns/proxy': proxy address is empty"),
    ({"address": "ftp://127.0.0.1:21"},
     "invalid proxy secret 'proxy': 'address' must be an http://, https:// or socks5:// URL "
     "with a host",
     "secret 'ns/proxy': proxy URL must use one of the supported schemes (http, https, "
     "socks5), got 'ftp'"),
    ({"address": "127.0.0.1:3128"},
     "invalid proxy secret 'proxy': 'address' must be an http://, https:// or socks5:// URL "
     "with a host",
     "secret 'ns/proxy': failed to parse proxy address '127.0.0.1:3128': parse "
     '"127.0.0.1:3128": first path segment in URL cannot contain colon'),
    ({"address": "http://127.0.0.1:31x8"},
     "invalid proxy secret 'proxy': 'address' is not a valid URL",
     "secret 'ns/proxy': failed to parse proxy address 'http://127.0.0.1:31x8': parse "
     '"http://127.0.0.1:31x8": invalid port ":31x8" after host'),
], ids=["no-address", "empty", "scheme", "no-scheme", "port"])
def test_messages_per_mode(data: dict[str, str], legacy: str, latest: str) -> None:
    with pytest.raises(CredentialsError) as first:
        proxy_from_secret(secret(**data))
    with pytest.raises(CredentialsError) as second:
        proxy_from_secret_latest(secret(**data), namespace="ns")
    assert (str(first.value), str(second.value)) == (legacy, latest)


def test_only_v12_bounds_the_length() -> None:
    data = secret(address="http://" + "p" * 2048)
    assert proxy_from_secret(data).address == "http://" + "p" * 2048
    with pytest.raises(CredentialsError, match=r"^secret 'ns/proxy': proxy URL exceeds "
                       "maximum length of 2048 characters$"):
        proxy_from_secret_latest(data, namespace="ns")


def test_userinfo_in_the_address() -> None:
    data = secret(address=f"http://alice:{PLANTED}@127.0.0.1:3128")
    # v0.31 mode refuses it without echoing it; v1.2 takes it, and the keys replace it.
    with pytest.raises(CredentialsError) as info:
        proxy_from_secret(data)
    assert PLANTED not in str(info.value)
    assert proxy_from_secret_latest(data, namespace="ns") == ProxyConfig(
        address="http://127.0.0.1:3128", username="alice", password=PLANTED)
    only_user = secret(address=f"http://alice:{PLANTED}@127.0.0.1:3128", username="bob")
    assert proxy_from_secret_latest(only_user, namespace="ns") == ProxyConfig(
        address="http://127.0.0.1:3128", username="bob", password="")
    only_password = secret(address="socks5://127.0.0.1:1080", password=PLANTED)
    assert proxy_from_secret_latest(only_password, namespace="ns") == ProxyConfig(
        address="socks5://127.0.0.1:1080")


def test_a_bad_address_is_echoed_without_its_password() -> None:
    with pytest.raises(CredentialsError) as info:
        proxy_from_secret_latest(secret(address=f"http://u:{PLANTED}@h:bad"), namespace="ns")
    assert PLANTED not in str(info.value)
    assert "'http://<redacted>@h:bad'" in str(info.value)
    assert redact_userinfo("socks5://u:p@h:1") == "socks5://<redacted>@h:1"
    assert proxy_url(ProxyConfig("socks5://h:1", "u", "p")) == "socks5://u:p@h:1"


@pytest.mark.parametrize(("raw", "scheme", "host"), [
    ("HTTP://Proxy:80", "http", "Proxy:80"), ("proxy.internal:3128", "proxy.internal", ""),
    ("proxy.internal", "", ""), ("socks5://[::1]:1080", "socks5", "[::1]:1080"),
])
def test_go_url_parse(raw: str, scheme: str, host: str) -> None:
    parsed = parse_go_url(raw)
    assert (parsed.scheme, parsed.host) == (scheme, host)


def test_gate_messages_for_both_kinds() -> None:
    needing = {"provider": "aws", "serviceAccountName": "sa"}
    off, on = WorkloadIdentity(), WorkloadIdentity(enabled=True)
    assert repository_gate_error(needing, off) == REPOSITORY_GATE_MESSAGE
    assert policy_gate_error(needing, off) == POLICY_GATE_MESSAGE
    assert POLICY_GATE_MESSAGE == (
        "to use spec.serviceAccountName in the ImageRepository for provider authentication "
        "please enable the ObjectLevelWorkloadIdentity feature gate in the controller")
    for fine in ({"provider": "generic", "serviceAccountName": "sa"}, {"provider": "aws"}, {}):
        assert repository_gate_error(fine, off) is None
        assert policy_gate_error(fine, off) is None
    assert repository_gate_error(needing, on) is None


def test_whose_identity_a_login_uses() -> None:
    locked = WorkloadIdentity(enabled=True, default_service_account="tenant")

    def who(provider: str, name: str, settings: WorkloadIdentity) -> str | None:
        found = service_account_for(namespace="ns", provider=provider,
                                    service_account_name=name, settings=settings)
        return None if found is None else f"{found}{' (default)' if found.default else ''}"

    assert who("aws", "own", locked) == "ns/own"
    assert who("gcp", "", locked) == "ns/tenant (default)"
    assert who("generic", "", locked) is None  # pull secrets, never the default
    assert who("azure", "own", WorkloadIdentity()) is None  # gate off: the controller's
