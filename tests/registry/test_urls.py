"""Where a registry may send the client: parsing, schemes, metadata addresses, origins."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from imagereflector.registry.errors import InvalidResponseError
from imagereflector.registry.urls import (
    check_realm_strictly,
    display_url,
    is_metadata_address,
    parse_target,
    resolve_target,
    same_origin,
)


@pytest.mark.parametrize("host", [
    "169.254.169.254", "169.254.0.1", "[fd00:ec2::254]", "fd00:ec2::254", "fe80::1",
    "[fe80::1%eth0]", "::ffff:169.254.169.254", "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL.", "metadata", "instance-data"])
def test_metadata_addresses(host: str) -> None:
    assert is_metadata_address(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "::1", "ghcr.io", "fd00::1",
                                  "169.255.0.1", "metadata.example.com"])
def test_ordinary_addresses(host: str) -> None:
    assert not is_metadata_address(host)


@pytest.mark.parametrize(("url", "why"), [
    ("http://[::1/x", "not a valid URL"),
    ("http://h:99999/", "not a valid URL"),
    ("http://h:abc/", "not a valid URL"),
    ("ftp://h/x", "not an http or https URL"),
    ("javascript:alert(1)", "not an http or https URL"),
    ("http:///nohost", "not an http or https URL"),
    ("http://u:p@h/x", "with credentials in it"),
    ("http://h/a\r\nb", "spaces or control characters"),
    ("http://h/\udcff", "spaces or control characters"),
    ("http://169.254.169.254/latest", "link-local or cloud metadata"),
    ("http://" + "a" * 9000, "longer than"),
], ids=["bracket", "port-range", "port-word", "ftp", "javascript", "no-host", "userinfo",
        "crlf", "surrogate", "metadata", "long"])
def test_unusable_targets_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(InvalidResponseError, match=why) as info:
        parse_target(url, registry="r.example", what="redirect target")
    assert "u:p" not in str(info.value)


def test_a_registry_on_a_metadata_address_may_use_it() -> None:
    target = parse_target("http://169.254.1.1:5000/v2/", registry="169.254.1.1:5000",
                          what="redirect target")
    assert target.origin == ("http", "169.254.1.1", 5000)


def test_relative_targets_resolve_against_the_request() -> None:
    target = resolve_target("https://r.example/v2/a/tags/list?n=1", "/token?x=1",
                            registry="r.example", what="redirect target")
    assert target.url == "https://r.example/token?x=1"
    assert target.shown == "https://r.example/token"


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://h/x", "https://h:443/y", True),
    ("http://h/x", "https://h/x", False),
    ("http://h:5000/", "http://h:5001/", False),
    ("http://h/", "http://g/", False),
])
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(urlsplit(a), urlsplit(b)) is same


def test_display_url_never_raises() -> None:
    assert display_url("http://u:p@[::1/x?q#f") == "http://[::1/x"
    assert display_url("not a url?q") == "not a url"


@pytest.mark.parametrize(("realm", "registry", "insecure", "error"), [
    ("https://auth.example.com/token", "r.example.com", False, ""),
    ("https://10.0.0.5/token", "r.example.com", False,
     'realm host "10.0.0.5" is a private or link-local address'),
    ("http://127.0.0.1:5001/token", "127.0.0.1:5000", True,
     'realm host "127.0.0.1" is a private or link-local address'),
    ("http://127.0.0.1:5000/token", "127.0.0.1:5000", True, ""),
    ("https://[::1]/token", "r.example.com", False,
     'realm host "::1" is a private or link-local address'),
    ("https://[::ffff:192.168.1.1]/token", "r.example.com", False,
     'realm host "::ffff:192.168.1.1" is a private or link-local address'),
    ("https://100.64.0.1/token", "r.example.com", False, ""),
    ("http://auth.example.com/token", "r.example.com", False,
     'realm scheme "http" not allowed for a secure registry; use https'),
    ("http://auth.example.com/token", "r.example.com", True, ""),
    ("ftp://auth.example.com/token", "r.example.com", True,
     'realm scheme "ftp" not allowed; must be https (or http for insecure registries)'),
], ids=["https-name", "private-v4", "loopback-other-port", "same-host-port", "loopback-v6",
        "mapped-private", "shared-space-is-not-private-in-go", "http-for-https-registry",
        "http-for-http-registry", "odd-scheme"])
def test_flux_v12_realm_rule(realm: str, registry: str, insecure: bool, error: str) -> None:
    # Expected values from go-containerregistry v0.21.6's validateRealmURL (Flux v1.2.4).
    if not error:
        check_realm_strictly(realm, registry=registry, insecure=insecure)
        return
    with pytest.raises(InvalidResponseError) as caught:
        check_realm_strictly(realm, registry=registry, insecure=insecure)
    assert str(caught.value) == f"invalid realm in www-authenticate: {error}"
