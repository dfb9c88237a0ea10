"""WWW-Authenticate parsing, the secret-sending rule and the token cache (no network)."""

from __future__ import annotations

import base64

import pytest

from imagereflector.registry.auth import (
    Challenge,
    TokenCache,
    basic_authorization,
    header_safe,
    may_send_secrets,
    parse_www_authenticate,
    pick_challenge,
    pull_scope,
)
from imagereflector.registry.urls import parse_target
from tests.registry.fakeclock import FakeClock

CHALLENGES = [
    (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
        [Challenge("bearer", "https://auth.docker.io/token", "registry.docker.io")],
    ),
    (
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"',
        [Challenge("bearer", "https://ghcr.io/token", "ghcr.io", "repository:a/b:pull")],
    ),
    ('Basic realm="Registry Realm"', [Challenge("basic", "Registry Realm")]),
    ("BASIC REALM=unquoted", [Challenge("basic", "unquoted")]),
    ("Bearer", [Challenge("bearer")]),
    (
        'Bearer realm = "https://a/t" , service = "s"',
        [Challenge("bearer", "https://a/t", "s")],
    ),
    (
        r'Bearer realm="https://a/t?x=1,y=2",service="say \"hi\""',
        [Challenge("bearer", "https://a/t?x=1,y=2", 'say "hi"')],
    ),
    (
        'Basic realm="r", Bearer realm="https://a/t", service="s"',
        [Challenge("basic", "r"), Challenge("bearer", "https://a/t", "s")],
    ),
    (
        'Bearer realm="https://a/t",error="insufficient_scope",scope="repository:x:pull"',
        [Challenge("bearer", "https://a/t", "", "repository:x:pull")],
    ),
    ("", []),
    ('Bearer realm="unterminated', [Challenge("bearer", "unterminated")]),
]


@pytest.mark.parametrize(
    ("header", "expected"),
    CHALLENGES,
    ids=["hub", "ghcr-scope", "basic", "upper-unquoted", "bare", "spaces", "escapes-commas",
         "two-challenges", "error-param", "empty", "unterminated"],
)
def test_parse_www_authenticate(header: str, expected: list[Challenge]) -> None:
    assert list(parse_www_authenticate(header)) == expected


def test_bearer_is_preferred_to_basic() -> None:
    challenges = parse_www_authenticate('Basic realm="r", Bearer realm="https://a/t"')
    picked = pick_challenge(challenges)
    assert picked is not None
    assert picked.scheme == "bearer"
    assert pick_challenge(parse_www_authenticate('Negotiate abc')) is None


def test_basic_authorization_encodes_user_and_password() -> None:
    header = basic_authorization("user", "p:ss")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]) == b"user:p:ss"


@pytest.mark.parametrize(
    ("realm", "registry", "allowed"),
    [
        ("https://auth.example/token", "registry.example", True),
        ("http://registry.example:5001/token", "registry.example:5000", True),
        ("http://127.0.0.1:9000/token", "127.0.0.1:5000", True),
        ("http://auth.example/token", "registry.example", False),
        ("http://127.0.0.2/token", "127.0.0.1:5000", False),
    ],
    ids=["https", "same-host-other-port", "loopback-same-ip", "http-other-host",
         "http-other-ip"],
)
def test_secrets_go_only_to_https_or_the_registry_host(
    realm: str, registry: str, allowed: bool
) -> None:
    target = parse_target(realm, registry=registry, what="token realm")
    assert may_send_secrets(target, registry) is allowed


def test_pull_scope() -> None:
    assert pull_scope("library/alpine") == "repository:library/alpine:pull"


KEY = ("r.example", "repository:a:pull", "fp")


def test_token_is_cached_until_shortly_before_expiry() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock, max_entries=10)
    cache.put(KEY, "tok", expires_in=300)
    clock.now += 289
    assert cache.get(KEY) == "tok"
    clock.now += 1  # 300 s minus the 10 s margin
    assert cache.get(KEY) is None


def test_short_lived_token_keeps_a_tenth_as_margin() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock, max_entries=10)
    cache.put(KEY, "tok", expires_in=60)
    clock.now += 53.9
    assert cache.get(KEY) == "tok"
    clock.now += 0.2
    assert cache.get(KEY) is None


def test_keys_separate_scope_and_credentials() -> None:
    cache = TokenCache(clock=FakeClock(), max_entries=10)
    cache.put(KEY, "tok", expires_in=300)
    assert cache.get(("r.example", "repository:b:pull", "fp")) is None
    assert cache.get(("r.example", "repository:a:pull", "other")) is None


def test_cache_is_bounded_and_forgets_least_recently_used() -> None:
    cache = TokenCache(clock=FakeClock(), max_entries=2)
    cache.put(("r", "a", "f"), "A", expires_in=300)
    cache.put(("r", "b", "f"), "B", expires_in=300)
    assert cache.get(("r", "a", "f")) == "A"  # now most recently used
    cache.put(("r", "c", "f"), "C", expires_in=300)
    assert cache.get(("r", "b", "f")) is None
    assert cache.get(("r", "a", "f")) == "A"


def test_discard_forgets_a_refused_token() -> None:
    cache = TokenCache(clock=FakeClock(), max_entries=2)
    cache.put(KEY, "tok", expires_in=300)
    cache.discard(KEY)
    assert cache.get(KEY) is None


def test_token_cache_is_bounded_in_characters() -> None:
    cache = TokenCache(clock=FakeClock(), max_entries=100, max_chars=1000)
    for index in range(20):
        cache.put((f"r{index}", "s", "f"), "x" * 300, expires_in=600)
        assert cache.chars <= 1000
    assert len(cache) == 3
    assert cache.get(("r19", "s", "f")) == "x" * 300
    assert cache.get(("r0", "s", "f")) is None
    cache.put(("big", "s", "f"), "y" * 1001, expires_in=600)
    assert cache.get(("big", "s", "f")) is None
    cache.put(("r19", "s", "f"), "z", expires_in=600)
    assert cache.chars == 601


@pytest.mark.parametrize("token", ["a\r\nb", "a b", "a\x00", "\u00e9", ""])
def test_header_safe_refuses_what_could_split_a_header(token: str) -> None:
    assert not header_safe(token)


def test_header_safe_accepts_jwt_and_b64_tokens() -> None:
    assert header_safe("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig-_+/=~")
