"""Credential semantics per ``--flux-compatibility`` mode: one test per row of the spec's
conflict table (R10 to R25), each showing what v0.31 mode and what v1.2 mode report.

Every test reconciles real ImageRepositories on the real API server (``Bench``), reading
Secrets and ServiceAccounts as the manifests' ServiceAccount, against real registries.
Success messages are checked by prefix: the v1.2 Ready message also carries a checksum.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from imagereflector.api.compat import Compatibility
from imagereflector.credentials.providers.classify import ECR_PATTERN, AutologinFlags
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.kube.client import KubeClient
from tests.credentials.bench import Bench, Outcome
from tests.credentials.cloudhost import ECR_HOST, cloud_registry
from tests.fakes.certs import make_ca
from tests.fakes.registry import TEST_CREDS, RegistryProcess, start_registry

V031, V12 = Compatibility.V0_31, Compatibility.V1_2
AUTH_FAILED = "AuthenticationFailed"
READ_FAILED = "ReadOperationFailed"
OPTIONS = "failed to configure authentication options: "


def scanned(outcome: Outcome, count: int) -> bool:
    status, reason, message = outcome.ready
    return (status, reason) == ("True", "Succeeded") and message.startswith(
        f"successful scan: found {count} tags")


def failed(outcome: Outcome, reason: str, message: str) -> bool:
    return outcome.ready == ("False", reason, message)


def clouds(kube: KubeClient) -> ProviderRegistry:
    return ProviderRegistry.default(autologin=AutologinFlags(), accounts=kube)


async def both(bench: Bench, name: str) -> tuple[Outcome, Outcome]:
    """The outcome in v0.31 mode, then (the status starting over) in v1.2 mode."""
    return await bench.both(name, clouds=clouds)


async def test_r10_provider_wins_over_secret_ref(bench: Bench,
                                                 basic_registry: RegistryProcess) -> None:
    basic_registry.write_tags("app", ["1.0.0"])
    secret = bench.pull_secret(bench.unique("creds"), {basic_registry.host: TEST_CREDS})
    name = bench.unique("r10")
    bench.repository(name, basic_registry.ref("app"), provider="aws",
                     secretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert scanned(legacy, 1)  # v0.31: secretRef used, the provider never consulted
    assert failed(latest, READ_FAILED, f"scan failed: invalid AWS registry: "
                  f"'{basic_registry.host}'. must match {ECR_PATTERN}")


async def test_r11_provider_of_another_cloud(bench: Bench, basic_registry: RegistryProcess,
                                             registry: RegistryProcess) -> None:
    basic_registry.write_tags("app", ["1.0.0"])
    registry.write_tags("app", ["1.0.0"])
    refused, open_ = bench.unique("r11-auth"), bench.unique("r11-open")
    bench.repository(refused, basic_registry.ref("app"), provider="aws")
    bench.repository(open_, registry.ref("app"), provider="aws")
    legacy, latest = await both(bench, refused)
    assert legacy.ready[:2] == ("False", READ_FAILED)  # anonymous, refused by the registry
    assert "UNAUTHORIZED" in legacy.ready[2]
    assert failed(latest, READ_FAILED, f"scan failed: invalid AWS registry: "
                  f"'{basic_registry.host}'. must match {ECR_PATTERN}")
    # A registry that never challenges: v0.31 scans anonymously; v1.2 asks its authenticator
    # for the first request anyway (Go's transport adds auth headers to every request) and
    # reports the failure as that request's, as Flux's controller v1.2.4 does (conformance
    # scenario repo-insecure).
    legacy, latest = await both(bench, open_)
    assert scanned(legacy, 1)
    assert failed(latest, READ_FAILED, f'scan failed: Get "http://{registry.host}/v2/app/'
                  f"tags/list?n=1000\": invalid AWS registry: '{registry.host}'. must match "
                  f"{ECR_PATTERN}")


async def test_r12_cloud_failure_eager_or_lazy(bench: Bench, tmp_path: Path, aws_env: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async with cloud_registry(tmp_path, monkeypatch,
                              htpasswd=("AWS", "123456789012-auth-token")) as cloud:
        cloud.registry.write_tags("app", ["1.0.0", "1.1.0"])
        ca = bench.secret(bench.unique("ca"), {"ca.crt": cloud.ca.cert_pem})
        name = bench.unique("r12")
        bench.repository(name, f"{ECR_HOST}/app", provider="aws", certSecretRef={"name": ca})
        legacy, latest = await both(bench, name)
        assert failed(legacy, AUTH_FAILED,
                      f"{OPTIONS}ECR authentication failed: Unable to locate credentials")
        assert failed(latest, READ_FAILED, "scan failed: failed to get access token for "
                      "artifact registry: failed to create provider access token for the "
                      "controller: Unable to locate credentials")
        # With keys, both log in to ECR (moto) and list the real registry.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        legacy, latest = await both(bench, name)
        assert scanned(legacy, 2)
        assert scanned(latest, 2)


async def test_r13_provider_with_service_account_needs_the_gate(
        bench: Bench, registry: RegistryProcess) -> None:
    account = bench.service_account(bench.unique("sa"))
    name = bench.unique("r13")
    bench.repository(name, registry.ref("app"), provider="aws", serviceAccountName=account)
    message = ("to use spec.serviceAccountName for provider authentication please enable the "
               "ObjectLevelWorkloadIdentity feature gate in the controller")
    for outcome in await both(bench, name):
        assert failed(outcome, "FeatureGateDisabled", message)
        stalled = outcome.condition("Stalled") or {}
        assert (stalled.get("reason"), stalled.get("message")) == ("FeatureGateDisabled",
                                                                   message)
        assert outcome.status["observedGeneration"] == 1
        assert outcome.error is None  # no retry
        assert ("Warning", "FeatureGateDisabled", message) in outcome.events


async def test_r14_secret_ref_of_another_type(bench: Bench, registry: RegistryProcess) -> None:
    registry.write_tags("app", ["1.0.0"])
    secret = bench.secret(bench.unique("opaque"), {"username": "u", "password": "p"})
    name = bench.unique("r14")
    bench.repository(name, registry.ref("app"), secretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f'{OPTIONS}unknown secret type "Opaque"')
    assert scanned(latest, 1)  # ignored: anonymous


async def test_r15_secret_ref_without_the_registry(bench: Bench,
                                                   registry: RegistryProcess) -> None:
    registry.write_tags("app", ["1.0.0"])
    secret = bench.pull_secret(bench.unique("other"), {"other.example.com": TEST_CREDS})
    name = bench.unique("r15")
    bench.repository(name, registry.ref("app"), secretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f'{OPTIONS}auth for "{registry.host}" not found in '
                  f"secret {bench.ns}/{secret}")
    assert scanned(latest, 1)


async def test_r16_keys_match_like_the_kubelet(bench: Bench,
                                               basic_registry: RegistryProcess) -> None:
    basic_registry.write_tags("team/app", ["1.0.0"])
    # A key with a path: v0.31 keeps only its host; the keyring also wants the path.
    secret = bench.pull_secret(bench.unique("path"),
                               {f"{basic_registry.host}/other": TEST_CREDS})
    name = bench.unique("r16")
    bench.repository(name, basic_registry.ref("team/app"), secretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert scanned(legacy, 1)
    assert latest.ready[:2] == ("False", READ_FAILED)  # the key does not match: anonymous
    assert "UNAUTHORIZED" in latest.ready[2]
    matching = bench.pull_secret(bench.unique("prefix"),
                                 {f"{basic_registry.host}/team": TEST_CREDS})
    other = bench.unique("r16-prefix")
    bench.repository(other, basic_registry.ref("team/app"), secretRef={"name": matching})
    for outcome in await both(bench, other):
        assert scanned(outcome, 1)


async def test_r17_secret_ref_and_service_account_together(
        bench: Bench, basic_registry: RegistryProcess) -> None:
    basic_registry.write_tags("app", ["1.0.0"])
    unrelated = bench.pull_secret(bench.unique("unrelated"), {"other.example.com": TEST_CREDS})
    pulls = bench.pull_secret(bench.unique("pull"), {basic_registry.host: TEST_CREDS})
    account = bench.service_account(bench.unique("sa"), pull_secrets=(pulls,))
    name = bench.unique("r17")
    bench.repository(name, basic_registry.ref("app"), secretRef={"name": unrelated},
                     serviceAccountName=account)
    for outcome in await both(bench, name):  # A5 in v0.31 mode; the merged keychain in v1.2
        assert scanned(outcome, 1)


async def test_r18_missing_service_account(bench: Bench, registry: RegistryProcess) -> None:
    name = bench.unique("r18")
    bench.repository(name, registry.ref("app"), serviceAccountName="absent")
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f'{OPTIONS}ServiceAccount "absent" not found')
    assert failed(latest, AUTH_FAILED, f"{OPTIONS}serviceaccount '{bench.ns}/absent' not found")


async def test_r19_missing_pull_secret(bench: Bench, registry: RegistryProcess) -> None:
    account = bench.service_account(bench.unique("sa"), pull_secrets=("gone",))
    name = bench.unique("r19")
    bench.repository(name, registry.ref("app"), serviceAccountName=account)
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f'{OPTIONS}secrets "gone" not found')
    assert failed(latest, AUTH_FAILED, f"{OPTIONS}failed to get image pull secret for "
                  f"serviceaccount '{bench.ns}/{account}': secret '{bench.ns}/gone' not found")


async def test_r20_cert_secret_of_another_type(bench: Bench, registry: RegistryProcess) -> None:
    secret = bench.pull_secret(bench.unique("docker"), {registry.host: TEST_CREDS})
    name = bench.unique("r20")
    bench.repository(name, registry.ref("app"), certSecretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f"{OPTIONS}cannot use secret '{secret}' to construct "
                  "TLS config: invalid secret type: 'kubernetes.io/dockerconfigjson'")
    assert failed(latest, AUTH_FAILED, f"{OPTIONS}secret '{bench.ns}/{secret}' must contain "
                  "either 'ca.crt' or both 'tls.crt' and 'tls.key'")


async def test_r21_certificate_without_key(bench: Bench, registry: RegistryProcess,
                                           tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    pair = ca.issue(tmp_path / "pki", "client", client=True)
    secret = bench.secret(bench.unique("half"), {"tls.crt": pair.cert_pem})
    name = bench.unique("r21")
    bench.repository(name, registry.ref("app"), certSecretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f"{OPTIONS}invalid '{secret}' secret data: both "
                  "certificate and private key need to be provided")
    assert failed(latest, AUTH_FAILED, f"{OPTIONS}secret '{bench.ns}/{secret}' contains "
                  "'tls.crt' but missing 'tls.key'")


async def test_r22_bad_ca(bench: Bench, registry: RegistryProcess) -> None:
    secret = bench.secret(bench.unique("bad-ca"), {"ca.crt": "not a certificate"})
    name = bench.unique("r22")
    bench.repository(name, registry.ref("app"), certSecretRef={"name": secret})
    legacy, latest = await both(bench, name)
    assert failed(legacy, AUTH_FAILED, f"{OPTIONS}cannot append certificate into certificate "
                  "pool: invalid CA certificate")
    assert failed(latest, AUTH_FAILED, f"{OPTIONS}failed to parse CA certificate")


async def test_r23_legacy_keys_per_key(bench: Bench, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    ca = make_ca(tmp_path / "pki")
    server = ca.issue(tmp_path / "pki", "server")
    client = ca.issue(tmp_path / "pki", "client", server=False, client=True)
    mtls = await start_registry(tmp_path / "mtls", tls=server, client_ca=ca.cert_file, ca=ca)
    try:
        mtls.write_tags("app", ["1.0.0"])
        # The CA under its new name, the client pair under the legacy ones.
        secret = bench.secret(bench.unique("mixed"), {
            "ca.crt": ca.cert_pem, "certFile": client.cert_pem, "keyFile": client.key_pem})
        name = bench.unique("r23")
        bench.repository(name, mtls.ref("app"), certSecretRef={"name": secret})
        caplog.set_level(logging.ERROR, logger="imagereflector.credentials")
        legacy, latest = await both(bench, name)
    finally:
        mtls.stop()
    # v0.31: new keys present, so the legacy ones are not read: no client certificate.
    assert legacy.ready[:2] == ("False", READ_FAILED)
    assert scanned(latest, 1)
    logged = [r for r in caplog.records if r.getMessage() == "using legacy key in secret data"]
    assert {(r.fields["key"], r.fields["preferred"]) for r in logged} == {  # type: ignore[attr-defined]
        ("certFile", "tls.crt"), ("keyFile", "tls.key")}
    assert all(r.fields["secret"] == f"{bench.ns}/{secret}" for r in logged)  # type: ignore[attr-defined]


async def test_r25_dot_local_hosts(bench: Bench, registry: RegistryProcess,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    registry.write_tags("app", ["1.0.0"])
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "registry.local" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    name = bench.unique("r25")
    bench.repository(name, f"registry.local:{registry.port}/app")
    legacy, latest = await both(bench, name)
    assert scanned(legacy, 1)  # plain http after https failed
    assert latest.ready[:2] == ("False", READ_FAILED)  # https only
    assert f"https://registry.local:{registry.port}/v2/" in latest.ready[2]


async def test_r5_one_secret_for_credentials_and_ca_is_not_broken(
        bench: Bench, tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    tls = await start_registry(tmp_path / "tls", htpasswd=TEST_CREDS,
                               tls=ca.issue(tmp_path / "pki", "server"), ca=ca)
    try:
        tls.write_tags("app", ["1.0.0"])
        secret = bench.secret(bench.unique("both"), {
            ".dockerconfigjson": _config(tls.host), "ca.crt": ca.cert_pem},
            type="kubernetes.io/dockerconfigjson")
        name = bench.unique("r5")
        bench.repository(name, tls.ref("app"), secretRef={"name": secret},
                         certSecretRef={"name": secret})
        latest = await bench.reconcile(name, mode=V12, clouds=clouds)
    finally:
        tls.stop()
    assert scanned(latest, 1)  # Flux v1.2.4 fails here ("failed to get secret '/'")


def _config(host: str) -> bytes:
    from tests.credentials.bench import docker_config

    return docker_config({host: TEST_CREDS})
