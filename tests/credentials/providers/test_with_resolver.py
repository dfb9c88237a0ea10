"""Cloud login as the controller uses it: through the credential resolver.

Contract §2.5: with ``secretRef`` the provider is never consulted; without it the
registry host decides the cloud, and a host of another cloud falls back to anonymous.
ECR is served by moto, so the AWS path is real boto3 against a real HTTP endpoint.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from imagereflector.api.imagerepository import ImageRepositorySpec
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.credentials.resolver import CredentialResolver, CredentialsError
from imagereflector.kube.client import NotFoundError
from imagereflector.registry.reference import parse_image_reference

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/app"


class Secrets:
    """Secrets of one namespace, answering like the API server."""

    def __init__(self, *secrets: dict[str, Any]) -> None:
        self.secrets = {s["metadata"]["name"]: s for s in secrets}

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.secrets:
            raise NotFoundError(404, "NotFound", f'secrets "{name}" not found')
        return self.secrets[name]

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        raise NotFoundError(404, "NotFound", f'serviceaccounts "{name}" not found')


def pull_secret(host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(config).decode()}}


def resolver(*secrets: dict[str, Any]) -> CredentialResolver:
    return CredentialResolver(reader=Secrets(*secrets),
                              clouds=ProviderRegistry.default(autologin=AutologinFlags()))


async def resolve(res: CredentialResolver, image: str, **spec: Any) -> Any:
    model = ImageRepositorySpec.model_validate({"image": image, "interval": "1m", **spec})
    return await res.resolve(namespace="ns", spec=model,
                             ref=parse_image_reference(image))


@pytest.fixture
def moto_keys(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")


async def test_aws_provider_logs_in_to_ecr(moto_keys: None) -> None:
    access = await resolve(resolver(), ECR, provider="aws")
    assert access.credentials.username == "AWS"
    assert access.credentials.password == "123456789012-auth-token"


async def test_secret_ref_wins_over_the_provider(aws_env: str) -> None:
    # No AWS credentials exist here: consulting the provider would fail.
    access = await resolve(resolver(pull_secret(ECR.split("/")[0], "robot", "pw")), ECR,
                           provider="aws", secretRef={"name": "regcred"})
    assert (access.credentials.username, access.credentials.password) == ("robot", "pw")


@pytest.mark.parametrize("image", ["ghcr.io/team/app", "gcr.io/project/app", "alpine"],
                         ids=["ghcr", "gcr", "docker-hub"])
async def test_host_of_another_cloud_falls_back_to_anonymous(aws_env: str, image: str) -> None:
    access = await resolve(resolver(), image, provider="aws")
    assert access.credentials is None


async def test_generic_provider_never_logs_in(aws_env: str) -> None:
    access = await resolve(resolver(), ECR)
    assert access.credentials is None


async def test_login_failure_is_an_authentication_error(aws_env: str) -> None:
    with pytest.raises(CredentialsError) as info:
        await resolve(resolver(), ECR, provider="aws")
    assert str(info.value) == "ECR authentication failed: Unable to locate credentials"
