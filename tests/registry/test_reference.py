"""Image reference parsing (contract §2.4) and the http/https rule (§2.4.6)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imagereflector.registry.reference import (
    DOCKER_HUB_REGISTRY,
    ImageReference,
    InvalidReferenceError,
    parse_image_reference,
    parse_url_host,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4

VALID = [
    # (image, registry, repository)
    ("example.com/foo/bar", "example.com", "foo/bar"),
    ("example.com:9999/foo/bar", "example.com:9999", "foo/bar"),
    ("alpine", DOCKER_HUB_REGISTRY, "library/alpine"),
    ("docker.io/library/alpine", DOCKER_HUB_REGISTRY, "library/alpine"),
    ("docker.io/alpine", DOCKER_HUB_REGISTRY, "library/alpine"),
    ("index.docker.io/alpine", DOCKER_HUB_REGISTRY, "library/alpine"),
    ("index.docker.io/library/alpine", DOCKER_HUB_REGISTRY, "library/alpine"),
    ("fluxcd/flux", DOCKER_HUB_REGISTRY, "fluxcd/flux"),
    ("docker.io/fluxcd/flux", DOCKER_HUB_REGISTRY, "fluxcd/flux"),
    ("ghcr.io/a/b", "ghcr.io", "a/b"),
    ("ghcr.io/ab", "ghcr.io", "ab"),
    ("localhost:5000/foo", "localhost:5000", "foo"),
    ("localhost/foo", DOCKER_HUB_REGISTRY, "localhost/foo"),
    ("127.0.0.1:5000/foo", "127.0.0.1:5000", "foo"),
    ("[::1]:5000/foo", "[::1]:5000", "foo"),
    ("Example.COM/foo", "Example.COM", "foo"),
    ("example.com", DOCKER_HUB_REGISTRY, "library/example.com"),
    ("ab", DOCKER_HUB_REGISTRY, "library/ab"),
    ("a" * 255, DOCKER_HUB_REGISTRY, "library/" + "a" * 255),
    ("registry.k8s.io/coredns/coredns", "registry.k8s.io", "coredns/coredns"),
    ("example.com/a__b/c-d/e.f", "example.com", "a__b/c-d/e.f"),
    ("example.com:/foo", "example.com:", "foo"),
]


@pytest.mark.parametrize(("image", "registry", "repository"), VALID, ids=[v[0][:40] for v in VALID])
def test_parse_valid(image: str, registry: str, repository: str) -> None:
    ref = parse_image_reference(image)
    assert ref == ImageReference(registry=registry, repository=repository)
    assert ref.canonical == f"{registry}/{repository}"


CANONICAL = [
    ("alpine", "index.docker.io/library/alpine"),
    ("docker.io/library/alpine", "index.docker.io/library/alpine"),
    ("fluxcd/flux", "index.docker.io/fluxcd/flux"),
    ("ghcr.io/a/b", "ghcr.io/a/b"),
    ("localhost:5000/foo", "localhost:5000/foo"),
    ("example.com:9999/foo/bar", "example.com:9999/foo/bar"),
]


@pytest.mark.parametrize(("image", "canonical"), CANONICAL, ids=[c[0] for c in CANONICAL])
def test_canonical_names_of_the_contract(image: str, canonical: str) -> None:
    assert parse_image_reference(image).canonical == canonical


SCHEME_MSG = ".spec.image value should not start with URL scheme; remove '{}://'"
TAG_MSG = ".spec.image value should not contain a tag; remove ':{}'"
PARSE_MSG = "could not parse reference: {}"

INVALID = [
    ("https", "https://example.com/foo/bar", SCHEME_MSG.format("https")),
    ("http", "http://localhost:5000/foo", SCHEME_MSG.format("http")),
    ("oci", "oci://ghcr.io/a/b", SCHEME_MSG.format("oci")),
    ("first-scheme-only", "a://b://c", SCHEME_MSG.format("a")),
    ("scheme-before-parse", "HTTPS://Bad Image", SCHEME_MSG.format("HTTPS")),
    ("tag", "example.com/foo/bar:baz", TAG_MSG.format("baz")),
    ("hub-tag", "alpine:3.18", TAG_MSG.format("3.18")),
    ("hub-alias-tag", "docker.io/alpine:latest", TAG_MSG.format("latest")),
    ("port-and-tag", "localhost:5000/foo:bar", TAG_MSG.format("bar")),
    ("port-only-is-a-tag", "localhost:5000", TAG_MSG.format("5000")),
    ("digest", f"alpine@{DIGEST}", TAG_MSG.format(DIGEST.removeprefix("sha256:"))),
    ("port-digest", f"example.com:5000/foo@{DIGEST}",
     TAG_MSG.format(DIGEST.removeprefix("sha256:"))),
    ("tag-and-digest", f"alpine:3@{DIGEST}", TAG_MSG.format("3@sha256")),
    ("longest-tag", "alpine:" + "t" * 128, TAG_MSG.format("t" * 128)),
    ("tag-leading-dot-weakly-valid", "alpine:.x", TAG_MSG.format(".x")),
    ("empty", "", PARSE_MSG.format("")),
    ("too-short", "a", PARSE_MSG.format("a")),
    ("too-long", "a" * 256, PARSE_MSG.format("a" * 256)),
    ("upper-case-repo", "Alpine", PARSE_MSG.format("Alpine")),
    ("upper-case-path", "ghcr.io/Foo/bar", PARSE_MSG.format("ghcr.io/Foo/bar")),
    ("empty-tag", "alpine:", PARSE_MSG.format("alpine:")),
    ("bad-tag-char", "alpine:bad!", PARSE_MSG.format("alpine:bad!")),
    ("tag-too-long", "alpine:" + "t" * 129, PARSE_MSG.format("alpine:" + "t" * 129)),
    ("short-digest", "alpine@sha256:abc", PARSE_MSG.format("alpine@sha256:abc")),
    ("upper-hex-digest", "alpine@sha256:" + "A" * 64,
     PARSE_MSG.format("alpine@sha256:" + "A" * 64)),
    ("other-algorithm", "alpine@sha512:" + "a" * 128,
     PARSE_MSG.format("alpine@sha512:" + "a" * 128)),
    ("two-ats", f"a@b@{DIGEST}", PARSE_MSG.format(f"<redacted>@b@{DIGEST}")),
    ("space-in-registry", "exa mple.com/foo", PARSE_MSG.format("exa mple.com/foo")),
    ("bad-port", "example.com:port/foo", PARSE_MSG.format("example.com:port/foo")),
    ("query-in-registry", "example.com?x=1/foo", PARSE_MSG.format("example.com?x=1/foo")),
    ("percent-in-registry", "ex%41mple.com/foo", PARSE_MSG.format("ex%41mple.com/foo")),
    ("colon-in-repo", "a:b:c", PARSE_MSG.format("a:b:c")),
    ("userinfo-redacted", "user:secret@example.com/foo",
     PARSE_MSG.format("<redacted>@example.com/foo")),
    ("userinfo-with-port-redacted", "user:secret@localhost:5000",
     PARSE_MSG.format("<redacted>@localhost:5000")),
]


@pytest.mark.parametrize(("image", "message"), [(i[1], i[2]) for i in INVALID],
                         ids=[i[0] for i in INVALID])
def test_parse_invalid(image: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_image_reference(image)
    assert str(caught.value) == message


def test_long_docker_hub_name_parses_but_its_canonical_form_does_not() -> None:
    # go-containerregistry checks the length before adding ``library/``; v0.31 inherits it.
    ref = parse_image_reference("a" * 250)
    assert ref.canonical == "index.docker.io/library/" + "a" * 250
    with pytest.raises(InvalidReferenceError, match="could not parse reference"):
        parse_image_reference(ref.canonical)


def test_insecure_is_kept_and_means_http() -> None:
    ref = parse_image_reference("example.com/foo/bar", insecure=True)
    assert ref.insecure
    assert ref.scheme == "http"
    assert parse_image_reference("example.com/foo/bar").scheme == "https"


SCHEMES = [
    ("public", "example.com", False, "https"),
    ("insecure", "example.com", True, "http"),
    ("docker-hub", DOCKER_HUB_REGISTRY, False, "https"),
    ("rfc1918-10", "10.1.2.3", False, "http"),
    ("rfc1918-10-port", "10.1.2.3:5000", False, "http"),
    ("rfc1918-172-16", "172.16.0.1", False, "http"),
    ("rfc1918-172-31", "172.31.255.255:443", False, "http"),
    ("not-rfc1918-172-32", "172.32.0.1", False, "https"),
    ("rfc1918-192-168", "192.168.1.1:5000", False, "http"),
    ("public-ip", "11.0.0.1", False, "https"),
    ("leading-zero-not-an-ip", "010.0.0.1", False, "https"),
    ("localhost-port", "localhost:5000", False, "http"),
    ("bare-localhost", "localhost", False, "https"),
    ("dot-local", "registry.local", False, "http"),
    ("dot-local-port", "registry.local:5000", False, "http"),
    ("dot-localhost-port", "registry.localhost:8080", False, "http"),
    ("dot-local-six-digit-port", "registry.local:123456", False, "https"),
    ("dot-local-not-last", "registry.local.example.com", False, "https"),
    ("localdomain", "registry.localdomain", False, "https"),
    ("non-ascii-digit-port", "registry.local:\u0661", False, "https"),
    ("loopback-v4", "127.0.0.1:5000", False, "http"),
    ("loopback-v4-substring", "x127.0.0.1y.example", False, "http"),
    ("loopback-v6", "[::1]:5000", False, "http"),
    ("other-v6", "[fe80::2]:5000", False, "https"),
]


@pytest.mark.parametrize(("registry", "insecure", "scheme"), [s[1:] for s in SCHEMES],
                         ids=[s[0] for s in SCHEMES])
def test_scheme(registry: str, insecure: bool, scheme: str) -> None:
    assert ImageReference(registry=registry, repository="foo", insecure=insecure).scheme == scheme


URL_HOSTS = [
    ("plain", "example.com", "example.com"),
    ("port", "example.com:5000", "example.com:5000"),
    ("empty-port", "example.com:", "example.com:"),
    ("ipv6", "[::1]:5000", "[::1]:5000"),
    ("non-ascii-escape", "h%C3%A9.example", "h\u00e9.example"),
    ("non-ascii-raw", "h\u00e9.example", "h\u00e9.example"),
]


@pytest.mark.parametrize(("text", "host"), [u[1:] for u in URL_HOSTS],
                         ids=[u[0] for u in URL_HOSTS])
def test_parse_url_host(text: str, host: str) -> None:
    assert parse_url_host(text) == host


BAD_URL_HOSTS = [
    ("space", "exa mple.com", "invalid character ' '"),
    ("letters-in-port", "example.com:http", "invalid port"),
    ("ascii-escape", "ex%41mple.com", "invalid URL escape"),
    ("short-escape", "example.com%4", "invalid URL escape"),
    ("unclosed-ipv6", "[::1", "missing ']'"),
    ("junk-after-ipv6", "[::1]x", "invalid port"),
]


@pytest.mark.parametrize(("text", "fragment"), [b[1:] for b in BAD_URL_HOSTS],
                         ids=[b[0] for b in BAD_URL_HOSTS])
def test_parse_url_host_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_url_host(text)


# --- properties -------------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", fullmatch=True)
_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_registries = st.one_of(
    st.just(""),
    st.just("docker.io"),
    st.just(DOCKER_HUB_REGISTRY),
    st.builds(lambda port: f"localhost:{port}", st.integers(0, 65535)),
    st.builds(
        lambda labels, port: ".".join(labels) + (f":{port}" if port is not None else ""),
        st.lists(_label, min_size=2, max_size=4),
        st.none() | st.integers(0, 65535),
    ),
)


@st.composite
def _valid_images(draw: st.DrawFn) -> str:
    registry = draw(_registries)
    path = "/".join(draw(st.lists(_component, min_size=1, max_size=4)))
    if registry == "" and ("." in path.split("/")[0] and "/" in path):
        # A bare first component with a dot would be read as a registry host.
        registry = "ghcr.io"
    image = f"{registry}/{path}" if registry else path
    repository = image.split("/", 1)[1] if registry else image
    # Docker Hub's implied ``library/`` must keep the canonical repository re-parsable.
    if not 2 <= len(repository) <= 255 - len("library/"):
        repository = "ab"
        image = f"{registry}/{repository}" if registry else repository
    return image


@given(_valid_images())
@example("alpine")
@example("localhost:5000/foo")
def test_valid_reference_canonical_form_reparses_to_itself(image: str) -> None:
    ref = parse_image_reference(image)
    again = parse_image_reference(ref.canonical)
    assert again == ref
    assert again.canonical == ref.canonical
    if not image.startswith(("docker.io/", DOCKER_HUB_REGISTRY)) and "/" in image:
        head = image.split("/", 1)[0]
        if "." in head or ":" in head:
            assert ref.canonical == image


@given(st.text(), st.text())
@example("https", "example.com/foo")
@example("", "")
def test_anything_with_a_scheme_separator_is_rejected_for_its_scheme(
    before: str, after: str
) -> None:
    image = f"{before}://{after}"
    scheme = image.split("://", 1)[0]
    with pytest.raises(InvalidReferenceError) as caught:
        parse_image_reference(image)
    assert str(caught.value) == SCHEME_MSG.format(scheme)


_reference_alphabet = st.sampled_from([*"ab0Z:/@.-_[]%?# \x00\u00e9\ud800", "sha256:"])


@given(st.one_of(st.text(), st.lists(_reference_alphabet).map("".join)), st.booleans())
@example("user:pass@host/repo", False)
@example("[", False)
@example("a.b:/" + "c" * 300, True)
def test_arbitrary_text_only_ever_raises_invalid_reference(image: str, insecure: bool) -> None:
    try:
        ref = parse_image_reference(image, insecure=insecure)
    except InvalidReferenceError:
        return
    # Whatever parses is a repository without tag or digest, and canonical is stable.
    assert "@" not in ref.canonical
    if len(ref.repository) <= 255:
        assert parse_image_reference(ref.canonical, insecure=insecure) == ref
    assert ref.scheme in ("http", "https")
