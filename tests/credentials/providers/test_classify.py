"""Host classification and provider selection (contract §2.5.2, §6 "OCI auth unit tests")."""

from __future__ import annotations

import itertools

import pytest

from imagereflector.credentials.providers.classify import (
    AZURE_CHINA,
    AZURE_GOVERNMENT,
    AZURE_PUBLIC,
    AutologinFlags,
    EcrRegistry,
    azure_cloud,
    classify_host,
    is_acr_host,
    is_gcr_host,
    login_host,
    parse_ecr,
    select_provider,
)

ACCOUNT = "012345678901"
US_EAST = EcrRegistry(ACCOUNT, "us-east-1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("012345678901.dkr.ecr.us-east-1.amazonaws.com", US_EAST),
        ("012345678901.dkr.ecr.us-east-1.amazonaws.com/foo", US_EAST),
        ("012345678901.dkr.ecr.us-east-1.amazonaws.com/foo:v1",
         US_EAST),
        ("012345678901.dkr.ecr.cn-north-1.amazonaws.com.cn/foo",
         EcrRegistry(ACCOUNT, "cn-north-1")),
        # Unescaped dots in the pattern: any character stands in for them, as in Go.
        ("012345678901xdkrxecrxeu-west-1.amazonaws.com", EcrRegistry(ACCOUNT, "eu-west-1")),
        # Unanchored: an ECR host anywhere in the string counts.
        ("proxy/012345678901.dkr.ecr.us-east-1.amazonaws.com", US_EAST),
        ("gcr.io/foo/bar:baz", None),
        ("docker.io/library/alpine", None),
        ("012345678901.dkr.ecr.us-east-1.amazonaws.org", None),
    ],
    ids=["host", "repo", "tag", "china", "any-char-dots", "unanchored", "gcr", "hub", "not-aws"],
)
def test_parse_ecr(text: str, expected: EcrRegistry | None) -> None:
    assert parse_ecr(text) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("gcr.io", True), ("foo.gcr.io", True), ("foo-docker.pkg.dev", True),
     ("europe-docker.pkg.dev", True), ("docker.io", False), ("gcr.io.evil.com", False),
     ("pkg.dev", False)],
    ids=lambda v: str(v),
)
def test_gcr_hosts(host: str, expected: bool) -> None:
    assert is_gcr_host(host) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("foo.azurecr.io", True), ("foo.azurecr.cn", True), ("foo.azurecr.de", True),
     ("foo.azurecr.us", True), ("azurecr.io", False), ("foo.azurecr.com", False),
     ("docker.io", False)],
    ids=lambda v: str(v),
)
def test_acr_hosts(host: str, expected: bool) -> None:
    assert is_acr_host(host) is expected


@pytest.mark.parametrize(
    ("host", "cloud", "scope"),
    [
        ("foo.azurecr.cn", AZURE_CHINA, "https://management.chinacloudapi.cn/.default"),
        ("foo.azurecr.us", AZURE_GOVERNMENT, "https://management.usgovcloudapi.net/.default"),
        ("foo.azurecr.io", AZURE_PUBLIC, "https://management.azure.com/.default"),
        ("foo.azurecr.de", AZURE_PUBLIC, "https://management.azure.com/.default"),
    ],
    ids=["cn-china", "us-government", "io-public", "de-public"],
)
def test_azure_cloud_config(host: str, cloud: object, scope: str) -> None:
    assert azure_cloud(host) == cloud
    assert azure_cloud(host).arm_scope == scope


ECR_HOST = "012345678901.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("image", "registry", "host", "cloud"),
    [
        (f"{ECR_HOST}/foo", ECR_HOST, ECR_HOST, "aws"),
        (ECR_HOST, "index.docker.io", ECR_HOST, "aws"),
        ("gcr.io/foo/bar", "gcr.io", "gcr.io", "gcp"),
        ("foo.gcr.io/bar", "foo.gcr.io", "foo.gcr.io", "gcp"),
        ("europe-docker.pkg.dev/p/r/app", "europe-docker.pkg.dev", "europe-docker.pkg.dev", "gcp"),
        ("foo.azurecr.io/bar", "foo.azurecr.io", "foo.azurecr.io", "azure"),
        ("foo.azurecr.us/", "index.docker.io", "foo.azurecr.us", "azure"),
        ("foo/bar:v1", "index.docker.io", "index.docker.io", "generic"),
        ("docker.io", "index.docker.io", "docker.io", "generic"),
        ("alpine", "index.docker.io", "alpine", "generic"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "127.0.0.1:5000", "generic"),
    ],
    ids=["ecr-repo", "ecr-bare", "gcr", "gcr-sub", "artifact", "acr", "acr-trailing-slash",
         "hub-tag", "docker-io", "alpine", "local"],
)
def test_login_host_and_cloud(image: str, registry: str, host: str, cloud: str) -> None:
    got = login_host(image=image, registry=registry)
    assert got == host
    assert classify_host(got) == cloud


def test_login_host_prefers_registry_when_image_has_a_path() -> None:
    assert login_host(image="foo.azurecr.io/app", registry="foo.azurecr.io") == "foo.azurecr.io"
    assert login_host(image="foo.azurecr.io", registry="index.docker.io") == "foo.azurecr.io"
    assert login_host(image="foo.azurecr.io/", registry="index.docker.io") == "foo.azurecr.io"
    assert login_host(image="a/b/", registry="index.docker.io") == "index.docker.io"


HOSTS = {
    "aws": "012345678901.dkr.ecr.us-east-1.amazonaws.com",
    "gcp": "gcr.io",
    "azure": "foo.azurecr.io",
    "generic": "index.docker.io",
}
ALL_FLAGS = [
    AutologinFlags(aws=a, azure=z, gcp=g)
    for a, z, g in itertools.product([False, True], repeat=3)
]


def _flag_id(flags: AutologinFlags) -> str:
    on = [n for n in ("aws", "azure", "gcp") if getattr(flags, n)]
    return "flags=" + ("+".join(on) or "none")


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=_flag_id)
@pytest.mark.parametrize("cloud", list(HOSTS))
@pytest.mark.parametrize("spec_provider", ["aws", "azure", "gcp", "generic", "", "other"])
def test_select_provider_every_combination(
    spec_provider: str, cloud: str, flags: AutologinFlags
) -> None:
    got = select_provider(spec_provider=spec_provider, host=HOSTS[cloud], autologin=flags)
    if cloud == "generic":
        # Generic hosts are always anonymous, whatever the provider or flags.
        assert got is None
    elif spec_provider in ("aws", "azure", "gcp"):
        # An explicit provider switches on its own cloud only; the flags do not count.
        assert got == (cloud if spec_provider == cloud else None)
    else:
        # generic / empty / unknown: v0.31's default branch takes the deprecated flags.
        assert got == (cloud if getattr(flags, cloud) else None)


@pytest.mark.parametrize(
    ("spec_provider", "host", "flags", "expected"),
    [
        ("aws", HOSTS["aws"], AutologinFlags(), "aws"),
        ("aws", HOSTS["gcp"], AutologinFlags(gcp=True), None),
        ("aws", "index.docker.io", AutologinFlags(aws=True), None),
        ("generic", HOSTS["aws"], AutologinFlags(aws=True), "aws"),
        ("generic", HOSTS["aws"], AutologinFlags(azure=True, gcp=True), None),
        ("gcp", "europe-docker.pkg.dev", AutologinFlags(), "gcp"),
        ("azure", "foo.azurecr.cn", AutologinFlags(), "azure"),
    ],
    ids=["aws-own", "aws-on-gcr", "aws-on-hub", "flag-aws", "other-flags", "gcp-ar",
         "azure-cn"],
)
def test_select_provider_examples(
    spec_provider: str, host: str, flags: AutologinFlags, expected: str | None
) -> None:
    assert select_provider(spec_provider=spec_provider, host=host, autologin=flags) == expected
