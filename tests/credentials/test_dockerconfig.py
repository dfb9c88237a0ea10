"""Docker config secrets: parsing, secretRef lookup (§2.5.1, A4), pull-secret keyring (§2.5.4)."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagereflector.credentials.dockerconfig import (
    DOCKER_CONFIG_JSON_KEY,
    DOCKER_CONFIG_JSON_TYPE,
    DOCKERCFG_KEY,
    DOCKERCFG_TYPE,
    AuthNotFoundError,
    DockerConfig,
    DockerConfigError,
    PullSecret,
    PullSecretKeyring,
    auth_not_found_message,
    credentials_from_secret,
    keyring_lookup,
    load_docker_config,
    parse_dockercfg,
    parse_dockerconfigjson,
    secret_key_host,
)
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.types import Credentials

SECRET = "s3cr3t-Pa55"  # every test below checks that this never reaches a message


def b64(text: str, *, padded: bool = True) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def config_json(auths: object, **extra: object) -> bytes:
    return json.dumps({"auths": auths, **extra}).encode()


def basic(username: str, password: str) -> Credentials:
    return Credentials(username=username, password=password)


# --- TestExtractAuthn / TestExtractAuthForURLs -----------------------------------------


def test_extract_authn_from_the_contract_secret() -> None:
    data = config_json({"https://index.docker.io/v1/": {
        "username": "fooser", "password": "foopass", "auth": b64("fooser:foopass"),
    }})
    ref = parse_image_reference("docker.io/stefan/podinfo")
    credentials = credentials_from_secret(
        secret_type=DOCKER_CONFIG_JSON_TYPE, data={DOCKER_CONFIG_JSON_KEY: data},
        registry=ref.registry,
    )
    assert credentials == basic("fooser", "foopass")


AUTH_FOR_URLS = [
    ("http-hub", "http://index.docker.io", "docker.io/stefan/podinfo"),
    ("bare-hub", "index.docker.io", "docker.io/stefan/podinfo"),
    ("v1-hub", "https://index.docker.io/v1/", "docker.io/stefan/podinfo"),
    ("bare-port", "registry.me:8082", "registry.me:8082/stefan/podinfo"),
    ("https-port", "https://registry.me:8082", "registry.me:8082/stefan/podinfo"),
    # Contract A4: Docker Hub aliases.
    ("alias-docker-io", "docker.io", "alpine"),
    ("alias-https-docker-io", "https://docker.io", "fluxcd/flux"),
    ("alias-registry-1", "registry-1.docker.io", "docker.io/library/alpine"),
    ("alias-registry-1-v2", "https://registry-1.docker.io/v2/", "alpine"),
    ("userinfo-in-key-ignored", "https://x:y@ghcr.io", "ghcr.io/a/b"),
    ("ipv6", "[::1]:5000", "[::1]:5000/foo"),
]


@pytest.mark.parametrize(("key", "image"), [c[1:] for c in AUTH_FOR_URLS],
                         ids=[c[0] for c in AUTH_FOR_URLS])
def test_extract_auth_for_urls(key: str, image: str) -> None:
    config = parse_dockerconfigjson(config_json({key: {"auth": b64("user:" + SECRET)}}))
    registry = parse_image_reference(image).registry
    assert config.lookup(registry) == basic("user", SECRET)


NOT_FOUND = [
    ("hub-key-other-host", "docker.io", "ghcr.io/a/b", "ghcr.io"),
    ("port-must-match", "example.com", "example.com:443/foo", "example.com:443"),
    ("no-port-vs-port", "example.com:5000", "example.com/foo", "example.com"),
    ("path-keys-are-hosts", "example.com/org", "example.org/foo", "example.org"),
    ("alias-only-for-hub", "index.docker.io", "registry-1.docker.io/library/x",
     "registry-1.docker.io"),
    ("no-glob-in-secretref", "*.example.com", "a.example.com/foo", "a.example.com"),
]


@pytest.mark.parametrize(("key", "image", "registry"), [c[1:] for c in NOT_FOUND],
                         ids=[c[0] for c in NOT_FOUND])
def test_lookup_not_found(key: str, image: str, registry: str) -> None:
    config = parse_dockerconfigjson(config_json({key: {"username": "u", "password": SECRET}}))
    assert config.lookup(parse_image_reference(image).registry) is None
    with pytest.raises(AuthNotFoundError) as caught:
        config.require(parse_image_reference(image).registry)
    assert caught.value.registry == registry
    assert str(caught.value) == f'auth for "{registry}" not found'
    assert caught.value.in_secret(namespace="apps", name="pull") == (
        f'auth for "{registry}" not found in secret apps/pull'
    )
    assert auth_not_found_message(registry, namespace="apps", name="pull") == (
        caught.value.in_secret(namespace="apps", name="pull")
    )


def test_exact_key_beats_hub_alias_whatever_the_order() -> None:
    config = parse_dockerconfigjson(config_json({
        "docker.io": {"username": "alias", "password": "a"},
        "https://index.docker.io/v1/": {"username": "exact", "password": "e"},
        "registry-1.docker.io": {"username": "alias2", "password": "b"},
    }))
    assert config.lookup("index.docker.io") == basic("exact", "e")


def test_first_alias_in_document_order_wins() -> None:
    config = parse_dockerconfigjson(config_json({
        "registry-1.docker.io": {"username": "first", "password": "a"},
        "docker.io": {"username": "second", "password": "b"},
    }))
    assert config.lookup("index.docker.io") == basic("first", "a")


def test_a_bad_key_fails_the_lookup_even_when_another_key_matches() -> None:
    config = parse_dockerconfigjson(config_json({"ghcr.io": {}, "https://": {}}))
    with pytest.raises(DockerConfigError, match=r"^empty url$"):
        config.lookup("ghcr.io")


EXPECTED = ("expected an HTTPS URL instead of '{}' (e.g. 'https://index.docker.io/v2/' or "
            "'https://index.docker.io'), or the same without 'https://' (e.g., "
            "'index.docker.io/v2/' or 'index.docker.io')")

KEY_HOSTS = [
    ("bare", "index.docker.io", "index.docker.io"),
    ("v1", "https://index.docker.io/v1/", "index.docker.io"),
    ("http", "http://index.docker.io", "index.docker.io"),
    ("port", "registry.me:8082", "registry.me:8082"),
    ("https-port-path", "https://registry.me:8082/v2/", "registry.me:8082"),
    ("path-dropped", "quay.io/org/repo", "quay.io"),
    ("query-dropped", "https://example.com?x=1", "example.com"),
    ("loopback", "127.0.0.1:5000", "127.0.0.1:5000"),
]


@pytest.mark.parametrize(("key", "host"), [c[1:] for c in KEY_HOSTS], ids=[c[0] for c in KEY_HOSTS])
def test_secret_key_host(key: str, host: str) -> None:
    assert secret_key_host(key) == host


KEY_ERRORS = [
    ("http-alone", "http://", "empty url"),
    ("https-alone", "https://", "empty url"),
    ("empty", "", EXPECTED.format("https:///")),
    ("path-only", "/v2/", EXPECTED.format("https:///v2//")),
    ("https-no-host", "https:///v2/", EXPECTED.format("https:///v2/")),
    ("userinfo-no-host", f"https://u:{SECRET}@/v2/", EXPECTED.format("https://<redacted>@/v2/")),
    ("space", "exa mple.com",
     "invalid auths key \"exa mple.com\": invalid character ' ' in host name"),
    ("bad-port", "example.com:http",
     "invalid auths key \"example.com:http\": invalid port ':http' after host"),
    ("bad-escape", "https://example.com/%zz",
     "invalid auths key \"https://example.com/%zz\": invalid URL escape"),
    ("bad-userinfo", f"https://u {SECRET}@example.com",
     "invalid auths key \"https://<redacted>@example.com\": invalid userinfo"),
    ("control-char", "example.com\n",
     "invalid auths key \"example.com\n\": control character in URL"),
]


@pytest.mark.parametrize(("key", "message"), [c[1:] for c in KEY_ERRORS],
                         ids=[c[0] for c in KEY_ERRORS])
def test_secret_key_host_errors(key: str, message: str) -> None:
    with pytest.raises(DockerConfigError) as caught:
        secret_key_host(key)
    assert str(caught.value) == message
    assert SECRET not in str(caught.value)


SECRET_TYPES = [
    ("opaque", "Opaque", {DOCKER_CONFIG_JSON_KEY: b"{}"}, 'unknown secret type "Opaque"'),
    ("dockercfg", DOCKERCFG_TYPE, {DOCKERCFG_KEY: b"{}"},
     'unknown secret type "kubernetes.io/dockercfg"'),
    ("empty-type", "", {}, 'unknown secret type ""'),
    ("missing-key", DOCKER_CONFIG_JSON_TYPE, {}, 'secret has no ".dockerconfigjson" key'),
    ("not-json", DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b"{"},
     ".dockerconfigjson is not valid JSON: Expecting property name enclosed in double quotes "
     "at line 1 column 2"),
    ("no-entry", DOCKER_CONFIG_JSON_TYPE, {DOCKER_CONFIG_JSON_KEY: b'{"auths": {}}'},
     'auth for "ghcr.io" not found'),
]


@pytest.mark.parametrize(("secret_type", "data", "message"), [c[1:] for c in SECRET_TYPES],
                         ids=[c[0] for c in SECRET_TYPES])
def test_credentials_from_secret_errors(
    secret_type: str, data: dict[str, bytes], message: str
) -> None:
    with pytest.raises(DockerConfigError) as caught:
        credentials_from_secret(secret_type=secret_type, data=data, registry="ghcr.io")
    assert str(caught.value) == message


# --- AuthConfig ------------------------------------------------------------------------

AUTH_CONFIGS = [
    ("username-password", {"username": "u", "password": SECRET}, basic("u", SECRET)),
    ("auth-padded", {"auth": b64("us:" + SECRET)}, basic("us", SECRET)),
    ("auth-unpadded", {"auth": b64("us:" + SECRET, padded=False)}, basic("us", SECRET)),
    ("auth-no-padding-needed", {"auth": b64("abc:def")}, basic("abc", "def")),
    ("auth-overrides", {"username": "x", "password": "y", "auth": b64("u:p")}, basic("u", "p")),
    ("empty-auth-ignored", {"username": "x", "password": "y", "auth": ""}, basic("x", "y")),
    ("password-with-colons", {"auth": b64("u:a:b:c")}, basic("u", "a:b:c")),
    ("empty-password", {"auth": b64("u:")}, basic("u", "")),
    ("auth-with-line-breaks", {"auth": "dTpw\r\nYXNz"}, basic("u", "pass")),
    ("identity-token", {"identitytoken": SECRET}, Credentials(identity_token=SECRET)),
    ("registry-token", {"registrytoken": SECRET}, Credentials(registry_token=SECRET)),
    ("tokens-and-basic", {"auth": b64("u:p"), "identitytoken": "i", "registrytoken": "r"},
     Credentials(username="u", password="p", identity_token="i", registry_token="r")),
    ("field-names-fold-case", {"Username": "u", "PASSWORD": "p", "identityToken": "i"},
     Credentials(username="u", password="p", identity_token="i")),
    ("nulls-ignored", {"username": None, "password": "p", "auth": None}, basic("", "p")),
    ("unknown-fields-ignored", {"email": 3, "serveraddress": ["x"], "username": "u"},
     basic("u", "")),
    ("lone-surrogate-replaced", {"username": "a\ud800"}, basic("a\ufffd", "")),
]


@pytest.mark.parametrize(("entry", "credentials"), [c[1:] for c in AUTH_CONFIGS],
                         ids=[c[0] for c in AUTH_CONFIGS])
def test_auth_config(entry: dict[str, object], credentials: Credentials) -> None:
    config = parse_dockerconfigjson(config_json({"ghcr.io": entry}))
    assert config.lookup("ghcr.io") == credentials


def test_null_entry_is_anonymous() -> None:
    found = parse_dockerconfigjson(b'{"auths": {"ghcr.io": null}}').require("ghcr.io")
    assert found.anonymous


DOCUMENTS = [
    ("other-top-level-keys", b'{"credsStore": "desktop", "auths": {"a.io": {}}}', ("a.io",)),
    ("auths-key-folds-case", b'{"Auths": {"a.io": {}}}', ("a.io",)),
    ("no-auths", b'{"credHelpers": {}}', ()),
    ("null-auths", b'{"auths": null}', ()),
    ("null-document", b"null", ()),
    ("document-order", b'{"auths": {"b.io": {}, "a.io": {}, "c.io": {}}}',
     ("b.io", "a.io", "c.io")),
]


@pytest.mark.parametrize(("data", "keys"), [c[1:] for c in DOCUMENTS],
                         ids=[c[0] for c in DOCUMENTS])
def test_dockerconfigjson_documents(data: bytes, keys: tuple[str, ...]) -> None:
    config = parse_dockerconfigjson(data)
    assert tuple(entry.key for entry in config.entries) == keys
    assert load_docker_config(data) == config


def test_legacy_dockercfg_has_the_auths_map_at_top_level() -> None:
    config = parse_dockercfg(json.dumps({"https://index.docker.io/v1/": {
        "auth": b64("u:" + SECRET), "email": "x@example.com"}}).encode())
    assert config.lookup("index.docker.io") == basic("u", SECRET)
    assert parse_dockercfg(b"null") == DockerConfig()


CONFIG_ERRORS = [
    ("not-json", b"not json", "Expecting value at line 1 column 1"),
    ("empty", b"", "Expecting value at line 1 column 1"),
    ("bom", b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
    ("document-array", b"[]", ".dockerconfigjson must be a JSON object, not an array"),
    ("document-string", b'"x"', ".dockerconfigjson must be a JSON object, not a string"),
    ("auths-array", b'{"auths": []}', '.dockerconfigjson: "auths" must be an object, not an array'),
    ("auths-number", b'{"auths": 1}', '.dockerconfigjson: "auths" must be an object, not a number'),
    ("entry-number", b'{"auths": {"a.io": 7}}',
     '.dockerconfigjson: entry "a.io" must be an object, not a number'),
    ("entry-userinfo-redacted", f'{{"auths": {{"https://u:{SECRET}@a.io": 7}}}}'.encode(),
     '.dockerconfigjson: entry "https://<redacted>@a.io" must be an object, not a number'),
    ("auth-number", b'{"auths": {"a.io": {"auth": 12}}}',
     '.dockerconfigjson: entry "a.io": field "auth" must be a string, not a number'),
    ("username-bool", b'{"auths": {"a.io": {"Username": true}}}',
     '.dockerconfigjson: entry "a.io": field "Username" must be a string, not a boolean'),
    ("password-object", f'{{"auths": {{"a.io": {{"username": "{SECRET}", "password": {{}}}}}}}}'
     .encode(),
     '.dockerconfigjson: entry "a.io": field "password" must be a string, not an object'),
    ("auth-bad-char", b'{"auths": {"a.io": {"auth": "dTpw!"}}}',
     'unable to decode auth field: '
     "illegal base64 data at input byte 4"),
    ("auth-secret-bad-char", f'{{"auths": {{"a.io": {{"auth": "{SECRET}"}}}}}}'.encode(),
     'unable to decode auth field: '
     "illegal base64 data at input byte 6"),
    ("auth-no-colon", f'{{"auths": {{"a.io": {{"auth": "{b64(SECRET)}"}}}}}}'.encode(),
     'unable to decode auth field: '
     "must be formatted as base64(username:password)"),
    ("auth-bad-length", b'{"auths": {"a.io": {"auth": "abcde"}}}',
     'unable to decode auth field: '
     "illegal base64 data at input byte 5"),
    ("auth-bad-padding", b'{"auths": {"a.io": {"auth": "YQ="}}}',
     'unable to decode auth field: '
     "illegal base64 data at input byte 2"),
    ("auth-data-after-padding", b'{"auths": {"a.io": {"auth": "YQ==YQ=="}}}',
     'unable to decode auth field: '
     "illegal base64 data at input byte 4"),
    ("auth-trailing-space", b'{"auths": {"a.io": {"auth": "dTpw "}}}',
     'unable to decode auth field: '
     "illegal base64 data at input byte 4"),
    ("deep-nesting", b"[" * 100000 + b"]" * 100000, "RecursionError"),
    ("huge-number", b'{"auths": ' + b"1" * 5000 + b"}", "ValueError"),
]


@pytest.mark.parametrize(("data", "fragment"), [c[1:] for c in CONFIG_ERRORS],
                         ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(DockerConfigError) as caught:
        parse_dockerconfigjson(data)
    assert fragment in str(caught.value)
    assert SECRET not in str(caught.value)
    assert b64(SECRET) not in str(caught.value)


def test_dockercfg_errors_name_the_format() -> None:
    with pytest.raises(DockerConfigError,
                       match=r"^\.dockercfg must be a JSON object, not an array$"):
        parse_dockercfg(b"[1]")
    with pytest.raises(DockerConfigError, match=r'^\.dockercfg: entry "a\.io" must be an object'):
        parse_dockercfg(b'{"a.io": "x"}')


def test_reprs_hide_secrets() -> None:
    config = parse_dockerconfigjson(config_json({"a.io": {"auth": b64("u:" + SECRET)}}))
    keyring = PullSecretKeyring.from_secrets([PullSecret(
        name="pull", type=DOCKER_CONFIG_JSON_TYPE,
        data={DOCKER_CONFIG_JSON_KEY: config_json({"a.io": {"password": SECRET}})})])
    for text in (repr(config), repr(keyring), repr(keyring.entries[0])):
        assert SECRET not in text


# --- pull-secret keyring -------------------------------------------------------------------


def json_secret(name: str, auths: dict[str, str]) -> PullSecret:
    """A dockerconfigjson pull secret whose entries have the given usernames."""
    entries = {key: {"username": user, "password": SECRET} for key, user in auths.items()}
    return PullSecret(name=name, type=DOCKER_CONFIG_JSON_TYPE,
                      data={DOCKER_CONFIG_JSON_KEY: config_json(entries)})


KEYRING = [
    # (keys → usernames, target canonical repository, expected username or None)
    ("hub-bare", {"index.docker.io": "u"}, "index.docker.io/library/alpine", "u"),
    ("hub-v1", {"https://index.docker.io/v1/": "u"}, "index.docker.io/library/alpine", "u"),
    ("hub-alias-docker-io", {"docker.io": "u"}, "index.docker.io/fluxcd/flux", "u"),
    ("hub-alias-registry-1", {"registry-1.docker.io": "u"}, "index.docker.io/library/x", "u"),
    ("hub-alias-with-path", {"docker.io/fluxcd": "u"}, "index.docker.io/fluxcd/flux", "u"),
    ("hub-alias-path-mismatch", {"docker.io/other": "u"}, "index.docker.io/fluxcd/flux", None),
    ("exact-host", {"ghcr.io": "u"}, "ghcr.io/a/b", "u"),
    ("other-host", {"ghcr.io": "u"}, "quay.io/a/b", None),
    ("glob-label", {"*.example.com": "u"}, "foo.example.com/x", "u"),
    ("glob-needs-same-label-count", {"*.example.com": "u"}, "a.b.example.com/x", None),
    ("glob-not-bare-domain", {"*.example.com": "u"}, "example.com/x", None),
    ("glob-tld", {"example.*": "u"}, "example.com/x", "u"),
    # As in Go, ``?`` starts the URL query, so the key is just ``registry-``.
    ("question-mark-starts-a-query", {"registry-?.example.com": "u"},
     "registry-1.example.com/x", None),
    ("glob-class", {"registry-[a-c].example.com": "u"}, "registry-b.example.com/x", "u"),
    ("glob-class-miss", {"registry-[a-c].example.com": "u"}, "registry-d.example.com/x", None),
    ("glob-bracket-first-in-class-malformed", {"a[]]b.example.com": "u"},
     "a]b.example.com/x", None),
    ("glob-malformed-never-matches", {"a[.example.com": "u"}, "a.example.com/x", None),
    ("glob-malformed-range", {"a[-z].example.com": "u"}, "ab.example.com/x", None),
    ("glob-star-alone", {"*": "u"}, "localhost:5000/x", None),
    ("glob-star-label", {"*:5000": "u"}, "localhost:5000/x", "u"),
    ("glob-partial", {"reg*try.example.com": "u"}, "registry.example.com/x", "u"),
    ("port-equal", {"example.com:5000": "u"}, "example.com:5000/x", "u"),
    ("port-differs", {"example.com:5000": "u"}, "example.com/x", None),
    ("port-missing-in-key", {"example.com": "u"}, "example.com:5000/x", None),
    ("loopback", {"127.0.0.1:5000": "u"}, "127.0.0.1:5000/foo", "u"),
    ("path-prefix", {"quay.io/coreos": "u"}, "quay.io/coreos/etcd", "u"),
    ("path-prefix-is-textual", {"quay.io/core": "u"}, "quay.io/coreos/etcd", "u"),
    ("path-mismatch", {"quay.io/coreos": "u"}, "quay.io/other/x", None),
    ("more-specific-first", {"quay.io": "host", "quay.io/coreos": "org"},
     "quay.io/coreos/etcd", "org"),
    ("less-specific-fallback", {"quay.io": "host", "quay.io/coreos": "org"},
     "quay.io/other/x", "host"),
    ("reverse-lexicographic", {"*.example.com": "glob", "a.example.com": "exact"},
     "a.example.com/x", "exact"),
    ("reverse-lexicographic-glob-last", {"*.example.com": "glob", "b.example.com": "exact"},
     "a.example.com/x", "glob"),
    ("exact-key-beats-alias", {"docker.io": "alias", "index.docker.io": "exact"},
     "index.docker.io/library/alpine", "exact"),
    ("v2-path-dropped", {"https://ghcr.io/v2/org": "u"}, "ghcr.io/org/x", "u"),
    ("http-scheme", {"http://ghcr.io": "u"}, "ghcr.io/org/x", "u"),
    ("empty-key", {"": "u"}, "ghcr.io/org/x", None),
]


@pytest.mark.parametrize(("auths", "target", "username"), [c[1:] for c in KEYRING],
                         ids=[c[0] for c in KEYRING])
def test_keyring(auths: dict[str, str], target: str, username: str | None) -> None:
    keyring = PullSecretKeyring.from_secrets([json_secret("pull", auths)])
    found = keyring.resolve(target)
    assert (found.username if found is not None else None) == username


def test_keyring_reads_legacy_dockercfg_and_skips_other_secrets() -> None:
    legacy = PullSecret(name="legacy", type=DOCKERCFG_TYPE, data={DOCKERCFG_KEY: json.dumps(
        {"https://index.docker.io/v1/": {"auth": b64("legacy:" + SECRET)}}).encode()})
    opaque = PullSecret(name="opaque", type="Opaque", data={DOCKER_CONFIG_JSON_KEY: config_json(
        {"ghcr.io": {"username": "opaque"}})})
    mistyped = PullSecret(name="mistyped", type=DOCKER_CONFIG_JSON_TYPE, data={
        DOCKERCFG_KEY: b'{"quay.io": {"username": "mistyped"}}'})
    empty = PullSecret(name="empty", type=DOCKER_CONFIG_JSON_TYPE,
                       data={DOCKER_CONFIG_JSON_KEY: b""})
    keyring = PullSecretKeyring.from_secrets([opaque, mistyped, empty, legacy])
    assert keyring.resolve("index.docker.io/library/alpine") == basic("legacy", SECRET)
    assert keyring.resolve("ghcr.io/a/b") is None
    assert keyring.resolve("quay.io/a/b") is None


def test_keyring_first_secret_wins_for_the_same_key() -> None:
    keyring = PullSecretKeyring.from_secrets([
        json_secret("one", {"ghcr.io": "first"}),
        json_secret("two", {"https://ghcr.io/v2/": "second"}),
    ])
    found = keyring.resolve("ghcr.io/a/b")
    assert found is not None
    assert found.username == "first"


def test_keyring_returns_matching_entry_even_when_empty() -> None:
    secret = PullSecret(name="p", type=DOCKER_CONFIG_JSON_TYPE,
                        data={DOCKER_CONFIG_JSON_KEY: b'{"auths": {"ghcr.io": {}}}'})
    found = PullSecretKeyring.from_secrets([secret]).resolve("ghcr.io/a/b")
    assert found is not None
    assert found.anonymous


def test_keyring_without_secrets_is_anonymous() -> None:
    assert PullSecretKeyring.from_secrets([]).resolve("index.docker.io/library/alpine") is None
    assert keyring_lookup([], "index.docker.io/library/alpine") is None


def test_keyring_lookup_over_parsed_configs_keeps_secret_order() -> None:
    first = parse_dockerconfigjson(config_json({"ghcr.io": {"username": "first"}}))
    second = parse_dockerconfigjson(config_json({
        "ghcr.io": {"username": "second"}, "ghcr.io/org": {"username": "org"}}))
    assert keyring_lookup([first, second], "ghcr.io/a/b") == basic("first", "")
    assert keyring_lookup([first, second], "ghcr.io/org/b") == basic("org", "")
    with pytest.raises(DockerConfigError, match="invalid character"):
        keyring_lookup([parse_dockerconfigjson(config_json({"a b": {}}))], "ghcr.io/a/b")


KEYRING_ERRORS = [
    ("bad-json", PullSecret(name="p1", type=DOCKER_CONFIG_JSON_TYPE,
                            data={DOCKER_CONFIG_JSON_KEY: b"{"}),
     ".dockerconfigjson is not valid JSON"),
    ("bad-auth", PullSecret(name="p2", type=DOCKERCFG_TYPE,
                            data={DOCKERCFG_KEY: f'{{"a.io": {{"auth": "{b64(SECRET)}"}}}}'
                                  .encode()}),
     "unable to decode auth field: "
     "must be formatted as base64(username:password)"),
    ("bad-key", json_secret("p3", {f"https://u:{SECRET}@exa mple.com": "u"}),
     'invalid auths key "https://<redacted>@exa mple.com": '
     "invalid character ' ' in host name"),
    # Go's url.Parse rejects these hosts too, so their globs can never be used.
    ("negated-class-key", json_secret("p4", {"r-[^a].example.com": "u"}),
     "invalid auths key \"r-[^a].example.com\": "
     "invalid character '^' in host name"),
    ("leading-bracket-key", json_secret("p5", {"[a].example.com": "u"}),
     "invalid auths key \"[a].example.com\": invalid port"),
]


@pytest.mark.parametrize(("secret", "message"), [c[1:] for c in KEYRING_ERRORS],
                         ids=[c[0] for c in KEYRING_ERRORS])
def test_keyring_errors(secret: PullSecret, message: str) -> None:
    with pytest.raises(DockerConfigError) as caught:
        PullSecretKeyring.from_secrets([secret])
    assert str(caught.value).startswith(message)
    assert SECRET not in str(caught.value)


def test_many_star_glob_key_stays_fast() -> None:
    # A backtracking glob would take exponential time here; the keyring must not.
    key = "*a" * 40 + "*b.example.com"
    keyring = PullSecretKeyring.from_secrets([json_secret("p", {key: "u"})])
    started = time.monotonic()
    assert keyring.resolve("a" * 2000 + ".example.com/x") is None
    assert time.monotonic() - started < 5


# --- properties -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
_auth_like = st.dictionaries(
    st.sampled_from(["username", "password", "auth", "identitytoken", "registrytoken", "Auth"]),
    st.none() | st.integers() | st.text(max_size=12) | st.text("ABCab01+/=:\n ", max_size=12),
    max_size=5,
)
_documents = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda doc: json.dumps(doc).encode()),
    st.dictionaries(st.text(max_size=20), _auth_like | _json, max_size=4).map(
        lambda auths: json.dumps({"auths": auths}).encode()),
    st.dictionaries(st.text(max_size=20), _auth_like, max_size=4).map(
        lambda auths: json.dumps(auths).encode()),
)


@given(_documents, st.text(max_size=30))
def test_arbitrary_content_only_raises_docker_config_error(data: bytes, registry: str) -> None:
    for parse in (parse_dockerconfigjson, parse_dockercfg):
        with contextlib.suppress(DockerConfigError):
            parse(data).lookup(registry)
    for secret_type, key in ((DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY),
                             (DOCKERCFG_TYPE, DOCKERCFG_KEY)):
        with contextlib.suppress(DockerConfigError):
            PullSecretKeyring.from_secrets(
                [PullSecret(name="p", type=secret_type, data={key: data})]
            ).resolve(registry + "/repo")


@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=12, max_size=20), st.sampled_from([
    '{{"auths": {{"a.io": {{"auth": "{b64}"}}}}}}',
    '{{"auths": {{"a.io": {{"auth": "{raw}!"}}}}}}',
    '{{"auths": {{"a.io": {{"username": "{raw}", "password": 1}}}}}}',
    '{{"auths": {{"https://u:{raw}@": {{"password": "{raw}"}}}}}}',
    '{{"auths": {{"https://u:{raw}@a b": {{"password": "{raw}"}}}}}}',
]))
def test_secret_values_never_reach_messages(secret: str, template: str) -> None:
    data = template.format(raw=secret, b64=b64(secret)).encode()
    message = ""
    try:
        parse_dockerconfigjson(data).lookup("a.io")
    except DockerConfigError as err:
        message = str(err)
    assert message
    assert secret not in message
    assert b64(secret) not in message
