"""Bad ImageRepository input end to end: the running controller gives every malformed
object the contract's reason and an exact, clear message, and keeps serving the others.

Each test starts one controller against the fake API server and one real registry, puts
the whole corpus of one kind into that cluster next to a known-good repository, and
proves, per object:

* invalid ``spec.image`` values (schemes, tags, digests, case, unicode, length, blanks,
  ``@``, bad ports) end Stalled ``ImageURLInvalid`` with the §2.4 message and are never
  retried (the reconcile-error counter stays 0);
* invalid exclusion regexes fail the scan with ``failed to compile regex …`` (retried,
  not stalled); patterns that are exponential for a backtracking engine finish over
  long tags pushed to the registry and filter exactly as RE2 defines;
* intervals and timeouts the CRD schema would reject never crash the controller or spin:
  the boundary values scan normally, an overflowing duration is a clear failure;
* broken ``secretRef``/``certSecretRef`` Secrets and ServiceAccounts end
  ``AuthenticationFailed`` with the exact message, naming Secret or key, never a value;
* the known-good repository in the same cluster ends Ready every time.
"""

from __future__ import annotations

import base64
from pathlib import Path

from imagereflector.api import meta
from tests.badinput import corpus
from tests.badinput.support import (
    RECONCILING,
    STALLED,
    b64,
    condition,
    k8s_name,
    namespace,
    ready_of,
    reconcile_count,
    secret,
    service_account,
)
from tests.controllers.harness import (
    REPOS,
    failed_for_good,
    has_ready_reason,
    is_ready_with,
    repository,
    start_cluster,
)
from tests.fakes.certs import make_ca
from tests.fakes.registry import RegistryProcess

GOOD_TAGS = ["1.0.0", "1.1.0"]


async def test_invalid_images_stall_without_retry_and_others_are_served(
        registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("good", GOOD_TAGS)
    async with start_cluster(tmp_path) as cluster:
        for case in corpus.IMAGE_CASES:
            cluster.api.create(repository(k8s_name(case.id), case.image))
        cluster.api.create(repository("good", f"{registry.host}/good"))
        for case in corpus.IMAGE_CASES:
            obj = await cluster.wait_for(REPOS, "default", k8s_name(case.id), has_ready_reason(
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
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))
        text = await cluster.scrape()
        assert 'controller_runtime_reconcile_errors_total{controller="imagerepository"} 0.0' \
            in text


async def test_out_of_range_ports_are_invalid_images(tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        for index, image in enumerate(corpus.OUT_OF_RANGE_PORTS):
            cluster.api.create(repository(f"port-{index}", image))
        for index, image in enumerate(corpus.OUT_OF_RANGE_PORTS):
            obj = await cluster.wait_for(REPOS, "default", f"port-{index}",
                                         lambda o: ready_of(o).status == "False"
                                         if o.get("status", {}).get("conditions") else False)
            found = ready_of(obj)
            assert found.reason == meta.IMAGE_URL_INVALID_REASON, found
            assert found.message == f"could not parse reference: {image}"
            stalled = condition(obj, STALLED)
            assert stalled is not None
            assert stalled.status == "True"


async def test_exclusion_regexes_compile_errors_and_pathological_patterns(
        registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("slow", corpus.PATHOLOGICAL_TAGS)
    registry.write_tags("good", GOOD_TAGS)
    image = f"{registry.host}/slow"
    async with start_cluster(tmp_path) as cluster:
        for case in corpus.INVALID_EXCLUSIONS:
            cluster.api.create(repository(k8s_name(case.id), image, exclusionList=[case.pattern]))
        for index, pattern in enumerate(corpus.PATHOLOGICAL_EXCLUSIONS):
            cluster.api.create(repository(f"slow-{index}", image, exclusionList=[pattern]))
        cluster.api.create(repository("slow-all", image,
                                      exclusionList=list(corpus.PATHOLOGICAL_EXCLUSIONS)))
        cluster.api.create(repository("good", f"{registry.host}/good"))
        for case in corpus.INVALID_EXCLUSIONS:
            obj = await cluster.wait_for(REPOS, "default", k8s_name(case.id), failed_for_good(
                meta.READ_OPERATION_FAILED_REASON, case.message))
            assert condition(obj, STALLED) is None, case.id
            reconciling = condition(obj, RECONCILING)
            assert reconciling is not None, case.id
            assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON
        # (a+)+$ and (a|aa)+$ exclude the all-a tag only; (x+x+)+y excludes nothing.
        expected = [corpus.PATHOLOGICAL_KEPT, corpus.PATHOLOGICAL_KEPT,
                    len(corpus.PATHOLOGICAL_TAGS)]
        for index, count in enumerate(expected):
            await cluster.wait_for(REPOS, "default", f"slow-{index}",
                                   is_ready_with(f"found {count} tags"))
        obj = await cluster.wait_for(REPOS, "default", "slow-all",
                                     is_ready_with(f"found {corpus.PATHOLOGICAL_KEPT} tags"))
        assert "a" * 127 not in obj["status"]["lastScanResult"]["latestTags"]
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))


async def test_boundary_and_overflowing_durations(registry: RegistryProcess,
                                                  tmp_path: Path) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(repository("zero", image, interval="0s"))
        absent = repository("no-interval", image)
        del absent["spec"]["interval"]
        cluster.api.create(absent)
        cluster.api.create(repository("longest", image, interval="2562047h"))
        cluster.api.create(repository("tiny-timeout", image, timeout="1ms"))
        cluster.api.create(repository("huge-interval", image, interval="99999999999h"))
        cluster.api.create(repository("huge-timeout", image, timeout="99999999999m"))
        for name in ("zero", "no-interval", "longest", "tiny-timeout"):
            await cluster.wait_for(REPOS, "default", name, is_ready_with("found 2 tags"))
        for name, value in (("huge-interval", "99999999999h"), ("huge-timeout", "99999999999m")):
            obj = await cluster.wait_for(REPOS, "default", name,
                                         has_ready_reason(meta.FAILED_REASON))
            assert ready_of(obj).message == f'time: invalid duration "{value}"'
        # A zero interval means "no periodic scan", not "scan in a loop": after more work
        # has gone through the controller, the object has been reconciled only a few times.
        cluster.api.create(repository("good", image))
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))
        text = await cluster.scrape()
        assert 1 <= reconcile_count(text, "zero") <= 3
        assert 1 <= reconcile_count(text, "no-interval") <= 3


async def test_spec_values_the_schema_rejects_are_reported(tmp_path: Path) -> None:
    cases = {"interval-days": ({"interval": "1d"}, "invalid object: spec.interval"),
             "interval-negative": ({"interval": "-1s"}, "invalid object: spec.interval"),
             "timeout-hours": ({"timeout": "1h"}, "invalid object: spec.timeout"),
             "image-number": ({"image": 123}, "invalid object: spec.image")}
    async with start_cluster(tmp_path) as cluster:
        for name, (spec, _) in cases.items():
            obj = repository(name, "127.0.0.1:1/app")
            obj["spec"].update(spec)
            cluster.api.create(obj)
        for name, (_, prefix) in cases.items():
            obj = await cluster.wait_for(REPOS, "default", name,
                                         has_ready_reason(meta.FAILED_REASON), within=5)
            assert ready_of(obj).message.startswith(prefix), name


async def test_broken_dockerconfig_secrets(registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    cases = corpus.dockerconfig_cases(registry.host)
    async with start_cluster(tmp_path) as cluster:
        for case in cases:
            ns = k8s_name(case.id)
            cluster.api.create(namespace(ns))
            cluster.api.create(secret("creds", case.type, case.data, namespace=ns))
            cluster.api.create(repository("app", image, namespace=ns, secretRef={"name": "creds"}))
        cluster.api.create(repository("good", image))
        for case in cases:
            obj = await cluster.wait_for(REPOS, k8s_name(case.id), "app", failed_for_good(
                meta.AUTHENTICATION_FAILED_REASON))
            found = ready_of(obj)
            assert found.message == case.message.replace("<ns>", k8s_name(case.id)), case.id
            assert all(value not in found.message for value in case.planted), case.id
            reconciling = condition(obj, RECONCILING)
            assert reconciling is not None
            assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))


async def test_dockerconfig_secret_without_its_data_key(tmp_path: Path) -> None:
    case = corpus.MISSING_DATA_KEY
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(secret("creds", case.type, case.data))
        cluster.api.create(repository("app", "127.0.0.1:1/app", secretRef={"name": "creds"}))
        obj = await cluster.wait_for(REPOS, "default", "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        message = ready_of(obj).message
        assert message.startswith(corpus.AUTH_PREFIX)
        assert ".dockerconfigjson" in message
        assert "creds" in message
        assert "not valid JSON" not in message


async def test_broken_cert_secrets(registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    ca = make_ca(tmp_path / "pki")
    client = ca.issue(tmp_path / "pki", "client", server=False, client=True, sans=())
    garbage_pem = b"-----BEGIN CERTIFICATE-----\nUGxhbnRlZA==\n-----END CERTIFICATE-----\n"
    use = corpus.AUTH_PREFIX + "invalid 'tls' secret data: cannot use client certificate and key"
    cases: dict[str, tuple[str, dict[str, bytes], str]] = {
        "dockerconfig-type": ("kubernetes.io/dockerconfigjson", {"ca.crt": ca.cert_pem},
                              corpus.AUTH_PREFIX + "cannot use secret 'tls' to construct TLS "
                              "config: invalid secret type: 'kubernetes.io/dockerconfigjson'"),
        "cert-without-key": ("Opaque", {"tls.crt": client.cert_pem},
                             corpus.AUTH_PREFIX + "invalid 'tls' secret data: both certificate "
                             "and private key need to be provided"),
        "key-without-cert": ("kubernetes.io/tls", {"tls.key": client.key_pem},
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
    async with start_cluster(tmp_path) as cluster:
        for name, (type_, data, _) in cases.items():
            cluster.api.create(namespace(name))
            cluster.api.create(secret("tls", type_, {k: b64(v) for k, v in data.items()},
                                      namespace=name))
            cluster.api.create(repository("app", image, namespace=name,
                                          certSecretRef={"name": "tls"}))
        cluster.api.create(repository("good", image))
        for name, (_, _, message) in cases.items():
            obj = await cluster.wait_for(REPOS, name, "app",
                                         has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
            assert ready_of(obj).message.startswith(message), (name, ready_of(obj).message)
            key_text = base64.b64encode(client.key_pem).decode()
            assert key_text not in ready_of(obj).message
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))


async def test_non_ascii_ca_is_an_invalid_ca(tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(secret("tls", "Opaque", {"ca.crt": b64("ünïcödé ca")}))
        cluster.api.create(repository("app", "127.0.0.1:1/app", certSecretRef={"name": "tls"}))
        obj = await cluster.wait_for(REPOS, "default", "app", lambda o: bool(
            (o.get("status") or {}).get("conditions")) and ready_of(o).status == "False")
        assert ready_of(obj).reason == meta.AUTHENTICATION_FAILED_REASON
        assert ready_of(obj).message == (corpus.AUTH_PREFIX + "cannot append certificate into "
                                         "certificate pool: invalid CA certificate")


async def test_mismatched_key_pair_says_so(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    one = ca.issue(tmp_path / "pki", "one", server=False, client=True, sans=())
    two = ca.issue(tmp_path / "pki", "two", server=False, client=True, sans=())
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(secret("tls", "kubernetes.io/tls",
                                  {"tls.crt": b64(one.cert_pem), "tls.key": b64(two.key_pem)}))
        cluster.api.create(repository("app", "127.0.0.1:1/app", certSecretRef={"name": "tls"}))
        obj = await cluster.wait_for(REPOS, "default", "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert "does not match" in ready_of(obj).message


async def test_service_accounts_that_cannot_be_used(registry: RegistryProcess,
                                                    tmp_path: Path) -> None:
    registry.write_tags("app", GOOD_TAGS)
    image = f"{registry.host}/app"
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(service_account("dangling", ["absent"]))
        cluster.api.create(repository("no-sa", image, serviceAccountName="nobody"))
        cluster.api.create(repository("no-secret", image, serviceAccountName="dangling"))
        cluster.api.create(repository("good", image))
        obj = await cluster.wait_for(REPOS, "default", "no-sa",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == (corpus.AUTH_PREFIX
                                         + 'ServiceAccount "nobody" not found')
        obj = await cluster.wait_for(REPOS, "default", "no-secret",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == corpus.AUTH_PREFIX + 'secrets "absent" not found'
        await cluster.wait_for(REPOS, "default", "good", is_ready_with("found 2 tags"))


async def test_broken_pull_secret_is_named(tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        fine = {".dockerconfigjson": b64('{"auths": {}}')}
        cluster.api.create(secret("fine", "kubernetes.io/dockerconfigjson", fine))
        cluster.api.create(secret("broken", "kubernetes.io/dockerconfigjson",
                                  {".dockerconfigjson": b64("{not json")}))
        cluster.api.create(service_account("puller", ["fine", "broken"]))
        cluster.api.create(repository("app", "127.0.0.1:1/app", serviceAccountName="puller"))
        obj = await cluster.wait_for(REPOS, "default", "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert "broken" in ready_of(obj).message
