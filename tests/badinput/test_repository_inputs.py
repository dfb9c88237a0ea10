"""Bad ImageRepository input end to end: the running controller gives every malformed
object the contract's reason and an exact, clear message, and keeps serving the others.

Each test starts one controller against the real API server (as the manifests'
ServiceAccount) and one real registry, puts the whole corpus of one kind into that
cluster next to a known-good repository, and proves, per object:

* invalid ``spec.image`` values (schemes, tags, digests, case, unicode, length, blanks,
  ``@``, bad ports) end Stalled ``ImageURLInvalid`` with the §2.4 message and are never
  retried (the reconcile-error counter stays 0);
* invalid exclusion regexes fail the scan with ``failed to compile regex …`` (retried,
  not stalled); patterns that are exponential for a backtracking engine finish over
  long tags pushed to the registry and filter exactly as RE2 defines;
* durations at the edges of what the CRD's patterns allow never crash the controller or
  spin: the boundary values scan normally, an overflowing duration is a clear failure;
* broken ``secretRef``/``certSecretRef`` Secrets and ServiceAccounts end
  ``AuthenticationFailed`` with the exact message, naming Secret or key, never a value;
* the known-good repository in the same cluster ends Ready every time.

What the API server itself refuses (spec values outside the CRD's schema, Secret data
that is not base64, dockerconfigjson Secrets without a JSON object under their key,
``kubernetes.io/tls`` Secrets missing a key) is asserted as that refusal, the 400 or 422
a user sees. The controller's own messages for them, should a server without that
validation hand them over, are proven on the fake in ``test_schemaless_inputs.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imagereflector.api import meta
from tests.badinput import corpus
from tests.badinput.support import (
    RECONCILING,
    STALLED,
    b64,
    condition,
    k8s_name,
    ready_of,
    reconcile_count,
    secret,
    service_account,
)
from tests.controllers.harness import (
    failed_for_good,
    has_ready_reason,
    is_ready_with,
    repository,
)
from tests.controllers.realharness import REPOS, ApiError, KubeTest, start_cluster
from tests.fakes.certs import make_ca
from tests.fakes.registry import RegistryProcess

GOOD_TAGS = ["1.0.0", "1.1.0"]


async def test_invalid_images_stall_without_retry_and_others_are_served(
        registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("good", GOOD_TAGS)
    async with start_cluster(kube) as cluster:
        for case in corpus.IMAGE_CASES:
            cluster.api.create(repository(k8s_name(case.id), case.image))
        cluster.api.create(repository("good", f"{registry.host}/good"))
        for case in corpus.IMAGE_CASES:
            obj = await cluster.wait_for(REPOS, cluster.ns, k8s_name(case.id), has_ready_reason(
                meta.IMAGE_URL_INVALID_REASON))
            found = ready_of(obj)
            assert found.message == case.message.replace("<ns>", k8s_name(case.id)), case.id
            stalled = condition(obj, STALLED)
            assert stalled is not None, case.id
            assert (stalled.status, stalled.reason, stalled.message) == (
                "True", meta.IMAGE_URL_INVALID_REASON, case.message), case.id
            assert condition(obj, RECONCILING) is None, case.id
            assert obj["status"]["observedGeneration"] == 1, case.id
            assert "canonicalImageName" not in obj["status"], case.id
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))
        text = await cluster.scrape()
        assert 'controller_runtime_reconcile_errors_total{controller="imagerepository"} 0.0' \
            in text


async def test_out_of_range_ports_are_invalid_images(kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        for index, image in enumerate(corpus.OUT_OF_RANGE_PORTS):
            cluster.api.create(repository(f"port-{index}", image))
        for index, image in enumerate(corpus.OUT_OF_RANGE_PORTS):
            obj = await cluster.wait_for(REPOS, cluster.ns, f"port-{index}",
                                         lambda o: ready_of(o).status == "False"
                                         if o.get("status", {}).get("conditions") else False)
            found = ready_of(obj)
            assert found.reason == meta.IMAGE_URL_INVALID_REASON, found
            assert found.message == f"could not parse reference: {image}"
            stalled = condition(obj, STALLED)
            assert stalled is not None
            assert stalled.status == "True"


async def test_exclusion_regexes_compile_errors_and_pathological_patterns(
        registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("slow", corpus.PATHOLOGICAL_TAGS)
    registry.write_tags("good", GOOD_TAGS)
    image = f"{registry.host}/slow"
    async with start_cluster(kube) as cluster:
        for case in corpus.INVALID_EXCLUSIONS:
            cluster.api.create(repository(k8s_name(case.id), image, exclusionList=[case.pattern]))
        for index, pattern in enumerate(corpus.PATHOLOGICAL_EXCLUSIONS):
            cluster.api.create(repository(f"slow-{index}", image, exclusionList=[pattern]))
        cluster.api.create(repository("slow-all", image,
                                      exclusionList=list(corpus.PATHOLOGICAL_EXCLUSIONS)))
        cluster.api.create(repository("good", f"{registry.host}/good"))
        for case in corpus.INVALID_EXCLUSIONS:
            obj = await cluster.wait_for(REPOS, cluster.ns, k8s_name(case.id), failed_for_good(
                meta.READ_OPERATION_FAILED_REASON, case.message))
            assert condition(obj, STALLED) is None, case.id
            reconciling = condition(obj, RECONCILING)
            assert reconciling is not None, case.id
            assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON
        # (a+)+$ and (a|aa)+$ exclude the all-a tag only; (x+x+)+y excludes nothing.
        expected = [corpus.PATHOLOGICAL_KEPT, corpus.PATHOLOGICAL_KEPT,
                    len(corpus.PATHOLOGICAL_TAGS)]
        for index, count in enumerate(expected):
            await cluster.wait_for(REPOS, cluster.ns, f"slow-{index}",
                                   is_ready_with(f"found {count} tags"))
        obj = await cluster.wait_for(REPOS, cluster.ns, "slow-all",
                                     is_ready_with(f"found {corpus.PATHOLOGICAL_KEPT} tags"))
        assert "a" * 127 not in obj["status"]["lastScanResult"]["latestTags"]
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))


async def test_boundary_and_overflowing_durations(registry: RegistryProcess,
                                                  kube: KubeTest) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("zero", image, interval="0s"))
        absent = repository("no-interval", image)
        del absent["spec"]["interval"]
        cluster.api.create(absent)
        cluster.api.create(repository("longest", image, interval="2562047h"))
        cluster.api.create(repository("tiny-timeout", image, timeout="1ms"))
        cluster.api.create(repository("huge-interval", image, interval="99999999999h"))
        cluster.api.create(repository("huge-timeout", image, timeout="99999999999m"))
        for name in ("zero", "no-interval", "longest", "tiny-timeout"):
            await cluster.wait_for(REPOS, cluster.ns, name, is_ready_with("found 2 tags"))
        for name, value in (("huge-interval", "99999999999h"), ("huge-timeout", "99999999999m")):
            obj = await cluster.wait_for(REPOS, cluster.ns, name,
                                         has_ready_reason(meta.FAILED_REASON))
            assert ready_of(obj).message == f'time: invalid duration "{value}"'
        # A zero interval means "no periodic scan", not "scan in a loop": after more work
        # has gone through the controller, the object has been reconciled only a few times.
        cluster.api.create(repository("good", image))
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))
        text = await cluster.scrape()
        assert 1 <= reconcile_count(text, "zero", cluster.ns) <= 3
        assert 1 <= reconcile_count(text, "no-interval", cluster.ns) <= 3


SCHEMA_REFUSALS = {
    "interval-days": ({"interval": "1d"}, "spec.interval", 'Invalid value: "1d": spec.interval '
                      "in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'"),
    "interval-negative": ({"interval": "-1s"}, "spec.interval",
                          'Invalid value: "-1s": spec.interval in body should match '
                          "'^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'"),
    "timeout-hours": ({"timeout": "1h"}, "spec.timeout", 'Invalid value: "1h": spec.timeout '
                      "in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m))+$'"),
    "image-number": ({"image": 123}, "spec.image", 'Invalid value: "integer": spec.image in '
                     'body must be of type string: "integer"'),
}
"""Spec values outside the CRD's schema: what the API server says, field and reason."""


@pytest.mark.parametrize("name", list(SCHEMA_REFUSALS))
def test_the_schema_refuses_spec_values_outside_it(kube: KubeTest, name: str) -> None:
    spec, field, detail = SCHEMA_REFUSALS[name]
    obj = repository(name, "127.0.0.1:1/app")
    obj["spec"].update(spec)
    with pytest.raises(ApiError) as refused:
        kube.api.create(obj)
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        f'ImageRepository.image.toolkit.fluxcd.io "{name}" is invalid: {field}: {detail}')
    assert kube.api.get(REPOS, kube.ns, name) is None


def _refused_secrets() -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(id, type, data, status, message part) of every Secret the API server refuses."""
    refused = [(case.id, case.type, case.data, case.refused, "")
               for case in (*corpus.dockerconfig_cases(corpus.HOST), corpus.MISSING_DATA_KEY)
               if case.refused is not None]
    # A kubernetes.io/tls Secret must have both keys (the controller's own check of the
    # same pair is proven on an Opaque Secret in test_broken_cert_secrets).
    refused.append(("tls-without-cert", "kubernetes.io/tls", {"tls.key": b64("key")}, 422,
                    "data[tls.crt]: Required value"))
    return refused


@pytest.mark.parametrize(("type_", "data", "status", "part"),
                         [pytest.param(*c[1:], id=c[0]) for c in _refused_secrets()])
def test_the_api_server_refuses_secrets_no_controller_then_reads(
        kube: KubeTest, type_: str, data: dict[str, Any], status: int, part: str) -> None:
    with pytest.raises(ApiError) as refused:
        kube.api.create(secret("creds", type_, data))
    assert refused.value.status == status
    message = json.loads(refused.value.body)["message"]
    assert part in message
    # The API server redacts Secret data in what it says, as the controller does.
    assert corpus.PLANTED_PASSWORD not in message
    assert corpus.PLANTED_JSON_TEXT not in message
    assert kube.api.get("secrets", kube.ns, "creds") is None


async def test_broken_dockerconfig_secrets(registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    cases = [c for c in corpus.dockerconfig_cases(registry.host) if c.refused is None]
    async with start_cluster(kube) as cluster:
        namespaces = {case.id: cluster.namespace(k8s_name(case.id)) for case in cases}
        for case in cases:
            ns = namespaces[case.id]
            cluster.api.create(secret("creds", case.type, case.data, namespace=ns))
            cluster.api.create(repository("app", image, namespace=ns, secretRef={"name": "creds"}))
        cluster.api.create(repository("good", image))
        for case in cases:
            obj = await cluster.wait_for(REPOS, namespaces[case.id], "app", failed_for_good(
                meta.AUTHENTICATION_FAILED_REASON))
            found = ready_of(obj)
            assert found.message == case.message.replace("<ns>", namespaces[case.id]), case.id
            assert all(value not in found.message for value in case.planted), case.id
            reconciling = condition(obj, RECONCILING)
            assert reconciling is not None
            assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))


async def test_broken_cert_secrets(registry: RegistryProcess, tmp_path: Path,
                                   kube: KubeTest) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    ca = make_ca(tmp_path / "pki")
    client = ca.issue(tmp_path / "pki", "client", server=False, client=True, sans=())
    garbage_pem = b"-----BEGIN CERTIFICATE-----\nUGxhbnRlZA==\n-----END CERTIFICATE-----\n"
    use = corpus.AUTH_PREFIX + "invalid 'tls' secret data: cannot use client certificate and key"
    # Each Secret is one the API server stores: a dockerconfigjson one carries its key
    # (a pull secret named as certSecretRef by mistake), and a lone key is in an Opaque
    # Secret (a kubernetes.io/tls one without tls.crt is refused at create, see above).
    cases: dict[str, tuple[str, dict[str, bytes], str]] = {
        "dockerconfig-type": ("kubernetes.io/dockerconfigjson",
                              {".dockerconfigjson": b'{"auths": {}}', "ca.crt": ca.cert_pem},
                              corpus.AUTH_PREFIX + "cannot use secret 'tls' to construct TLS "
                              "config: invalid secret type: 'kubernetes.io/dockerconfigjson'"),
        "cert-without-key": ("Opaque", {"tls.crt": client.cert_pem},
                             corpus.AUTH_PREFIX + "invalid 'tls' secret data: both certificate "
                             "and private key need to be provided"),
        "key-without-cert": ("Opaque", {"tls.key": client.key_pem},
                             corpus.AUTH_PREFIX + "invalid 'tls' secret data: both certificate "
                             "and private key need to be provided"),
        "garbage-ca": ("Opaque", {"ca.crt": b"not a certificate at all"},
                       corpus.AUTH_PREFIX + "cannot append certificate into certificate pool: "
                       "invalid CA certificate"),
        "key-as-ca": ("", {"ca.crt": client.key_pem},
                      corpus.AUTH_PREFIX + "cannot append certificate into certificate pool: "
                      "invalid CA certificate"),
        "garbage-cert": ("Opaque", {"tls.crt": garbage_pem, "tls.key": client.key_pem}, use),
        "garbage-key": ("Opaque", {"tls.crt": client.cert_pem, "tls.key": bytes(range(256))},
                        use),
    }
    async with start_cluster(kube) as cluster:
        namespaces = {name: cluster.namespace(name) for name in cases}
        for name, (type_, data, _) in cases.items():
            cluster.api.create(secret("tls", type_, {k: b64(v) for k, v in data.items()},
                                      namespace=namespaces[name]))
            cluster.api.create(repository("app", image, namespace=namespaces[name],
                                          certSecretRef={"name": "tls"}))
        cluster.api.create(repository("good", image))
        for name, (_, _, message) in cases.items():
            obj = await cluster.wait_for(REPOS, namespaces[name], "app",
                                         has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
            assert ready_of(obj).message.startswith(message), (name, ready_of(obj).message)
            key_text = base64.b64encode(client.key_pem).decode()
            assert key_text not in ready_of(obj).message
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))


async def test_non_ascii_ca_is_an_invalid_ca(kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(secret("tls", "Opaque", {"ca.crt": b64("ünïcödé ca")}))
        cluster.api.create(repository("app", "127.0.0.1:1/app", certSecretRef={"name": "tls"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app", lambda o: bool(
            (o.get("status") or {}).get("conditions")) and ready_of(o).status == "False")
        assert ready_of(obj).reason == meta.AUTHENTICATION_FAILED_REASON
        assert ready_of(obj).message == (corpus.AUTH_PREFIX + "cannot append certificate into "
                                         "certificate pool: invalid CA certificate")


async def test_mismatched_key_pair_says_so(tmp_path: Path, kube: KubeTest) -> None:
    ca = make_ca(tmp_path / "pki")
    one = ca.issue(tmp_path / "pki", "one", server=False, client=True, sans=())
    two = ca.issue(tmp_path / "pki", "two", server=False, client=True, sans=())
    async with start_cluster(kube) as cluster:
        cluster.api.create(secret("tls", "kubernetes.io/tls",
                                  {"tls.crt": b64(one.cert_pem), "tls.key": b64(two.key_pem)}))
        cluster.api.create(repository("app", "127.0.0.1:1/app", certSecretRef={"name": "tls"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert "does not match" in ready_of(obj).message


async def test_service_accounts_that_cannot_be_used(registry: RegistryProcess,
                                                    kube: KubeTest) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    async with start_cluster(kube) as cluster:
        cluster.api.create(service_account("dangling", ["absent"]))
        cluster.api.create(repository("no-sa", image, serviceAccountName="nobody"))
        cluster.api.create(repository("no-secret", image, serviceAccountName="dangling"))
        cluster.api.create(repository("good", image))
        obj = await cluster.wait_for(REPOS, cluster.ns, "no-sa",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == (corpus.AUTH_PREFIX
                                         + 'ServiceAccount "nobody" not found')
        obj = await cluster.wait_for(REPOS, cluster.ns, "no-secret",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == corpus.AUTH_PREFIX + 'secrets "absent" not found'
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))


async def test_broken_pull_secret_is_named(kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        fine = {".dockerconfigjson": b64('{"auths": {}}')}
        cluster.api.create(secret("fine", "kubernetes.io/dockerconfigjson", fine))
        # A JSON object, as the API server requires of the type, that is still no config.
        cluster.api.create(secret("broken", "kubernetes.io/dockerconfigjson",
                                  {".dockerconfigjson": b64('{"auths": ["not", "a", "map"]}')}))
        cluster.api.create(service_account("puller", ["fine", "broken"]))
        cluster.api.create(repository("app", "127.0.0.1:1/app", serviceAccountName="puller"))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert "broken" in ready_of(obj).message
