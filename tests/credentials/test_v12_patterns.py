"""Flux v1.2's registry patterns and ServiceAccount annotations (pkg/auth), as pure rules.

Anchored where v0.31's were not, with Go's RE2 reading of ``$`` and ``\\w``.
"""

from __future__ import annotations

import pytest

from imagereflector.credentials.providers.classify import (
    ACR_PATTERN,
    ECR_PATTERN,
    GCR_PATTERN,
    IdentityError,
    RegistryMismatchError,
    aws_role_arn,
    azure_identity,
    classify_host,
    gcp_workload_identity_provider_audience,
    parse_artifact_repository,
)

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(("provider", "image", "found"), [
    ("aws", f"{ECR}/app", "us-east-1"),
    ("aws", "123456789012.dkr-ecr-fips.us-gov-west-1.amazonaws.com/app", "us-gov-west-1"),
    ("aws", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/a/b", "cn-north-1"),
    ("aws", "public.ecr.aws/team/app", "public.ecr.aws"),
    ("aws", "ecr-public.aws.com/team/app", "public.ecr.aws"),
    ("gcp", "gcr.io/project/app", "gcp"),
    ("gcp", "eu.gcr.io/project/app", "gcp"),
    ("gcp", "europe-docker.pkg.dev/project/repo/app", "gcp"),
    ("gcp", "docker.s3nsregistry.fr/project/app", "gcp"),
    ("azure", "reg.azurecr.io/app", "reg.azurecr.io"),
    ("azure", "reg.azurecr.cn", "reg.azurecr.cn"),
])
def test_registries_of_each_cloud(provider: str, image: str, found: str) -> None:
    assert parse_artifact_repository(provider, image) == found


@pytest.mark.parametrize(("provider", "image", "host", "pattern"), [
    ("aws", "ghcr.io/team/app", "ghcr.io", ECR_PATTERN),
    ("aws", f"{ECR}.evil.example/app", f"{ECR}.evil.example", ECR_PATTERN),
    ("aws", f"{ECR}:443/app", f"{ECR}:443", ECR_PATTERN),
    ("gcp", f"{ECR}/app", ECR, GCR_PATTERN),
    ("azure", "azurecr.io.example.com/app", "azurecr.io.example.com", ACR_PATTERN),
])
def test_hosts_of_another_cloud(provider: str, image: str, host: str, pattern: str) -> None:
    cloud = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}[provider]
    with pytest.raises(RegistryMismatchError) as info:
        parse_artifact_repository(provider, image)
    assert str(info.value) == f"invalid {cloud} registry: '{host}'. must match {pattern}"


def test_v031_classification_stays_unanchored() -> None:
    # v0.31 mode keeps fluxcd/pkg oci's unanchored search: this host counts as ECR there.
    assert classify_host(f"{ECR}.evil.example") == "aws"


def _account(**annotations: str) -> dict[str, object]:
    return {"metadata": {"name": "sa", "namespace": "ns", "annotations": annotations}}


def test_annotations() -> None:
    role = "arn:aws:iam::111122223333:role/team"
    assert aws_role_arn(_account(**{"eks.amazonaws.com/role-arn": role})) == role
    for bad in ("", f"{role}\n", "arn:aws:iam::12:user/x", "arn:awsé:iam::1:role/x"):
        with pytest.raises(IdentityError, match=r"invalid eks\.amazonaws\.com/role-arn"):
            aws_role_arn(_account(**{"eks.amazonaws.com/role-arn": bad}))
    with pytest.raises(IdentityError, match=r"^azure tenant ID is not set in the service "
                       r"account annotation azure\.workload\.identity/tenant-id$"):
        azure_identity(_account(**{"azure.workload.identity/client-id": "c"}))
    assert azure_identity(_account(**{"azure.workload.identity/tenant-id": "t",
                                      "azure.workload.identity/client-id": "c"})) == ("t", "c")
    provider = "projects/1/locations/global/workloadIdentityPools/p/providers/k"
    assert gcp_workload_identity_provider_audience(_account(**{
        "gcp.auth.fluxcd.io/workload-identity-provider": provider})) == (
        f"//iam.googleapis.com/{provider}")
    assert gcp_workload_identity_provider_audience(_account()) == ""
