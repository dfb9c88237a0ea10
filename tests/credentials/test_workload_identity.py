"""Object-level workload identity, in both modes: an ImageRepository logs in to its cloud
as its own ServiceAccount (or the ``--default-service-account``).

The Kubernetes side is real: the ServiceAccounts live on the real API server, and the
token each login exchanges comes from its TokenRequest API, asked for as the manifests'
ServiceAccount (so ``serviceaccounts/token: create`` in ``manifests/rbac`` is what makes
it work). Only the cloud identity endpoints are fakes, and each checks that token's
signature (the cluster's signing key), audience and subject; ECR is moto. The registry is
a real ``docker-registry`` under the cloud's host name (``cloudhost``) whose only user is
the credential the cloud hands out, so a listing proves the whole chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from imagereflector.api.compat import Compatibility
from imagereflector.credentials.providers.aws import AwsLogin
from imagereflector.credentials.providers.azure import ACR_USERNAME, AzureLogin
from imagereflector.credentials.providers.cache import TokenCache
from imagereflector.credentials.providers.classify import AWS_ROLE_ARN_PATTERN, AutologinFlags
from imagereflector.credentials.providers.gcp import GcpLogin, GkeMetadata
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.kube.client import KubeClient
from imagereflector.registry.limiter import SystemClock
from tests.credentials.bench import Bench, Outcome
from tests.credentials.cloudhost import ACR_HOST, ECR_HOST, GAR_HOST, cloud_registry
from tests.credentials.kubetokens import token_check
from tests.credentials.providers.cloudfakes import (
    AcrExchangeFake,
    ArmTokens,
    AwsStsFront,
    EntraFake,
    GceMetadataFake,
    GoogleStsFake,
)
from tests.fakes.certs import make_ca, write_bundle

V031, V12 = Compatibility.V0_31, Compatibility.V1_2
ROLE = "arn:aws:iam::111122223333:role/team-a"
EMAIL = "puller@team-a.iam.gserviceaccount.com"
ACCESS = "failed to get access token for artifact registry: "


def scanned(outcome: Outcome, count: int) -> bool:
    status, reason, message = outcome.ready
    return (status, reason) == ("True", "Succeeded") and message.startswith(
        f"successful scan: found {count} tags")


def failure(outcome: Outcome, mode: Compatibility, message: str) -> bool:
    """v0.31 mode logs in eagerly (AuthenticationFailed), v1.2 when challenged."""
    if mode.latest:
        return outcome.ready == ("False", "ReadOperationFailed", f"scan failed: {message}")
    return outcome.ready == ("False", "AuthenticationFailed",
                             f"failed to configure authentication options: {message}")


def registry_with(plugins: tuple[object, ...]) -> Callable[[KubeClient], ProviderRegistry]:
    def build(kube: KubeClient) -> ProviderRegistry:
        return ProviderRegistry(plugins=plugins, autologin=AutologinFlags(),  # type: ignore[arg-type]
                                cache=TokenCache(clock=SystemClock()), accounts=kube)
    return build


def aws_clouds(kube: KubeClient) -> ProviderRegistry:
    return ProviderRegistry.default(autologin=AutologinFlags(), accounts=kube)


@pytest.fixture
async def sts(bench: Bench, aws_env: str, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[AwsStsFront]:
    """moto's STS behind a front that checks web identity tokens (none pass until a test
    says which ServiceAccount's may)."""
    front = AwsStsFront(moto=aws_env, check=lambda _token: False)
    await front.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", front.url)
    yield front
    await front.close()


async def test_aws_role_of_the_service_account(bench: Bench, sts: AwsStsFront, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    account = bench.service_account(bench.unique("puller"),
                                    annotations={"eks.amazonaws.com/role-arn": ROLE})
    sts.check = token_check(bench.testbed, audience="sts.amazonaws.com", namespace=bench.ns,
                            name=account)
    # moto's token is the assumed role's account's: only the role can list.
    async with cloud_registry(tmp_path, monkeypatch,
                              htpasswd=("AWS", "111122223333-auth-token")) as cloud:
        cloud.registry.write_tags("app", ["1.0.0", "2.0.0"])
        ca = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
        name = bench.unique("aws")
        bench.repository(name, f"{ECR_HOST}/app", provider="aws", serviceAccountName=account,
                         certSecretRef={"name": ca})
        for outcome in await bench.both(name, gate=True, clouds=aws_clouds):
            assert scanned(outcome, 2)
    assert [a["RoleArn"] for a in sts.assumed] == [ROLE, ROLE]
    assert {a["RoleSessionName"] for a in sts.assumed} == {
        f"{account}.{bench.ns}.us-east-1.fluxcd.io"}


async def test_aws_default_service_account_is_the_lockdown(
        bench: Bench, sts: AwsStsFront, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    default = bench.service_account(bench.unique("tenant"),
                                    annotations={"eks.amazonaws.com/role-arn": ROLE})
    sts.check = token_check(bench.testbed, audience="sts.amazonaws.com", namespace=bench.ns,
                            name=default)
    async with cloud_registry(tmp_path, monkeypatch,
                              htpasswd=("AWS", "111122223333-auth-token")) as cloud:
        cloud.registry.write_tags("app", ["1.0.0"])
        ca = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
        name = bench.unique("lockdown")
        bench.repository(name, f"{ECR_HOST}/app", provider="aws", certSecretRef={"name": ca})
        for outcome in await bench.both(name, gate=True, default_service_account=default,
                                        clouds=aws_clouds):
            assert scanned(outcome, 1)
        missing = await bench.both(name, gate=True, default_service_account="absent",
                                   clouds=aws_clouds)
    message = (f"{ACCESS}failed to get service account '{bench.ns}/absent': the specified "
               "default service account does not exist in the object namespace. your cluster "
               "is subject to multi-tenant workload identity lockdown, reach out to your "
               "cluster administrator for help")
    for mode, outcome in zip((V031, V12), missing, strict=True):
        assert failure(outcome, mode, message)


async def test_aws_token_refused_and_bad_annotations(bench: Bench, sts: AwsStsFront,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    refused = bench.service_account(bench.unique("refused"),
                                    annotations={"eks.amazonaws.com/role-arn": ROLE})
    unannotated = bench.service_account(bench.unique("plain"))
    async with cloud_registry(tmp_path, monkeypatch, htpasswd=("AWS", "nobody")) as cloud:
        ca = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
        cases = {}
        for account in (refused, unannotated, "ghost"):
            cases[account] = name = bench.unique("aws-bad")
            bench.repository(name, f"{ECR_HOST}/app", provider="aws",
                             serviceAccountName=account, certSecretRef={"name": ca})
        outcomes = {account: await bench.both(name, gate=True, clouds=aws_clouds)
                    for account, name in cases.items()}
    messages = {
        refused: (f"{ACCESS}failed to create provider access token for service account "
                  f"'{bench.ns}/{refused}': An error occurred (InvalidIdentityToken) when "
                  "calling the AssumeRoleWithWebIdentity operation: token refused"),
        unannotated: (f"{ACCESS}failed to get provider identity from service account "
                      f"'{bench.ns}/{unannotated}' annotations: invalid "
                      f"eks.amazonaws.com/role-arn annotation: ''. must match "
                      f"{AWS_ROLE_ARN_PATTERN}"),
        "ghost": (f"{ACCESS}failed to get service account '{bench.ns}/ghost': "
                  'ServiceAccount "ghost" not found'),
    }
    for account, message in messages.items():
        for mode, outcome in zip((V031, V12), outcomes[account], strict=True):
            assert failure(outcome, mode, message), (account, mode, outcome.ready)


async def test_azure_client_assertion(bench: Bench, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    account = bench.service_account(bench.unique("acr"), annotations={
        "azure.workload.identity/tenant-id": "tenant-1",
        "azure.workload.identity/client-id": "client-1"})
    pki = tmp_path / "entra-pki"
    ca = make_ca(pki)
    tokens = ArmTokens()
    entra = EntraFake(ca=ca, cert_dir=pki, tenant="tenant-1", client_id="client-1",
                      assertion=token_check(bench.testbed, audience="api://AzureADTokenExchange",
                                            namespace=bench.ns, name=account),
                      tokens=tokens)
    exchange = AcrExchangeFake(service=ACR_HOST, tokens=tokens)
    await entra.start()
    await exchange.start()
    bundle = write_bundle(tmp_path / "bundle.pem", ca.cert_pem)
    azure = AzureLogin(exchange_url=exchange.exchange_url,
                       assertion_options={"authority": entra.url,
                                          "connection_verify": str(bundle)})
    try:
        async with cloud_registry(tmp_path, monkeypatch,
                                  htpasswd=(ACR_USERNAME, exchange.refresh_token)) as cloud:
            cloud.registry.write_tags("app", ["1.0.0"])
            trust = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
            name = bench.unique("azure")
            bench.repository(name, f"{ACR_HOST}/app", provider="azure",
                             serviceAccountName=account, certSecretRef={"name": trust})
            outcomes = await bench.both(
                name, gate=True, clouds=registry_with((AwsLogin(), azure, GcpLogin())))
    finally:
        await exchange.close()
        await entra.close()
    for outcome in outcomes:
        assert scanned(outcome, 1)
    # v0.31 mode asks for ARM's scope (as its controller identity does), v1.2 for ACR's.
    scopes = [r.form.get("scope") for r in entra.requests if r.method == "POST"]
    assert scopes == ["https://management.azure.com/.default",
                      "https://containerregistry.azure.net/.default"]
    assert {r.form["service"] for r in exchange.requests} == {ACR_HOST}


async def _gcp(bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
               annotations: dict[str, str], audience: str, sts_audience: str,
               password: Callable[[GoogleStsFake], str]) -> tuple[tuple[Outcome, Outcome],
                                                                   GoogleStsFake]:
    account = bench.service_account(bench.unique("gar"), annotations=annotations)
    kube_check = token_check(bench.testbed, audience=audience, namespace=bench.ns,
                             name=account)
    google = GoogleStsFake(check=lambda token, aud: aud == sts_audience and kube_check(token),
                           email=EMAIL)
    metadata = GceMetadataFake()
    await google.start()
    await metadata.start()
    monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
    gcp = GcpLogin(sts_url=f"{google.url}/v1/token", iam_url=google.url,
                   metadata=GkeMetadata())
    try:
        async with cloud_registry(tmp_path, monkeypatch,
                                  htpasswd=("oauth2accesstoken", password(google))) as cloud:
            trust = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
            name = bench.unique("gcp")
            bench.repository(name, f"{GAR_HOST}/project/team/app", provider="gcp",
                             serviceAccountName=account, certSecretRef={"name": trust})
            cloud.registry.write_tags("project/team/app", ["1.0.0"])
            outcomes = await bench.both(
                name, gate=True, clouds=registry_with((AwsLogin(), AzureLogin(), gcp)))
    finally:
        await metadata.close()
        await google.close()
    return outcomes, google


async def test_gcp_on_gke_impersonates_the_annotated_service_account(
        bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = "test-project.svc.id.goog"
    cluster = ("https://container.googleapis.com/v1/projects/test-project/locations/"
               "europe-west1/clusters/fleet-1")
    outcomes, google = await _gcp(
        bench, tmp_path, monkeypatch,
        annotations={"iam.gke.io/gcp-service-account": EMAIL}, audience=pool,
        sts_audience=f"identitynamespace:{pool}:{cluster}",
        password=lambda fake: fake.impersonated)
    for outcome in outcomes:
        assert scanned(outcome, 1)
    assert len(google.exchanges) == 2


async def test_gcp_outside_gke_uses_the_federated_token(
        bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = "projects/123/locations/global/workloadIdentityPools/fleet/providers/k8s"
    outcomes, google = await _gcp(
        bench, tmp_path, monkeypatch,
        annotations={"gcp.auth.fluxcd.io/workload-identity-provider": provider},
        audience=f"//iam.googleapis.com/{provider}",
        sts_audience=f"//iam.googleapis.com/{provider}", password=lambda fake: fake.federated)
    for outcome in outcomes:
        assert scanned(outcome, 1)
    # v0.31 mode asks for cloud-platform (as its controller identity does), v1.2 for
    # Flux v1.2's two scopes.
    assert [e["scope"] for e in google.exchanges] == [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/"
        "userinfo.email"]


async def test_without_the_gate_nothing_is_asked(bench: Bench, sts: AwsStsFront,
                                                 tmp_path: Path) -> None:
    account = bench.service_account(bench.unique("nogate"),
                                    annotations={"eks.amazonaws.com/role-arn": ROLE})
    name = bench.unique("nogate")
    bench.repository(name, f"{ECR_HOST}/app", provider="aws", serviceAccountName=account)
    for outcome in await bench.both(name, gate=False, clouds=aws_clouds):
        assert outcome.ready[1] == "FeatureGateDisabled"
    assert sts.assumed == []

