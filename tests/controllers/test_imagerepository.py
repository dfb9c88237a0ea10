"""The ImageRepository controller end to end: real API server, real registry, real store.

Each test starts the manager as ``imagereflector controller`` would, as the manifests'
ServiceAccount against the session's kube-apiserver (through the recording proxy), and
drives it the way a user does (create, annotate, edit, delete), then checks the status,
events, store and metrics it leaves behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from imagereflector.api import meta
from imagereflector.api.crd import all_crds
from imagereflector.kube import conditions as cond
from imagereflector.registry.tags import tags_revision
from imagereflector.store.base import ObjectKey
from tests.controllers.harness import (
    conditions_of,
    failed_for_good,
    has_ready_reason,
    is_ready_with,
    kstatus_problems,
    ready,
    repository,
)
from tests.controllers.realharness import (
    REPOS,
    Cluster,
    KubeTest,
    events_of,
    reconciles,
    recorded_statuses,
    start_cluster,
)
from tests.fakes.fronts import FaultFront
from tests.fakes.registry import TEST_CREDS, RegistryProcess

JSON = dict[str, Any]


def crd_schema(kind: str) -> dict[str, Any]:
    """The storage version's schema of the generated CRD of ``kind``."""
    for document in all_crds().values():
        if document["spec"]["names"]["kind"] == kind:
            version = next(v for v in document["spec"]["versions"] if v["storage"])
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(kind)


def annotate(cluster: Cluster, name: str, value: str) -> None:
    cluster.api.patch(REPOS, cluster.ns, name, {"metadata": {"annotations": {
        meta.RECONCILE_REQUEST_ANNOTATION: value}}})


def scan_time(obj: JSON) -> str:
    return str(obj["status"]["lastScanResult"]["scanTime"])


def dockerconfig_secret(name: str, host: str, *,
                        creds: tuple[str, str] = TEST_CREDS) -> JSON:
    auth = base64.b64encode(":".join(creds).encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name},
            "data": {".dockerconfigjson": base64.b64encode(config).decode()}}


async def test_first_scan_reports_every_status_field(registry: RegistryProcess,
                                                     kube: KubeTest) -> None:
    tags = ["1.0.0", "1.1.0", "2.0.0", "2.0.0.sig"]
    registry.write_tags("team/app", tags)
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/team/app"))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     is_ready_with("successful scan: found 3 tags"))
        status = obj["status"]
        assert obj["metadata"]["finalizers"] == [meta.FINALIZER]
        assert status["canonicalImageName"] == f"{registry.host}/team/app"
        assert status["observedExclusionList"] == ["^.*\\.sig$"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        result = status["lastScanResult"]
        assert result["tagCount"] == 3
        assert result["latestTags"] == ["2.0.0", "1.1.0", "1.0.0"]
        assert result["revision"] == tags_revision(["1.0.0", "1.1.0", "2.0.0"])
        conditions = conditions_of(obj)
        assert [c.type for c in conditions] == ["Ready"]
        assert cond.kstatus_violations(conditions, generation=obj["metadata"]["generation"],
                                       observed_generation=status["observedGeneration"]) == []
        stored = await cluster.manager.store.tags(ObjectKey(cluster.ns, "app"))
        assert sorted(stored) == ["1.0.0", "1.1.0", "2.0.0"]
        await cluster.manager.events.flush()
        normal = [e for e in events_of(kube, "app") if e["type"] == "Normal"]
        assert [(e["reason"], e["message"]) for e in normal] == [
            ("Succeeded", "successful scan: found 3 tags")]


async def test_reconcile_request_rescans_and_is_recorded(registry: RegistryProcess,
                                                         kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        first = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        registry.write_tags("app", ["a", "b"])
        annotate(cluster, "app", "2026-11-23T10:00:00Z")
        obj = await cluster.wait_for(
            REPOS, cluster.ns, "app",
            lambda o: o["status"].get("lastHandledReconcileAt") == "2026-11-23T10:00:00Z"
            and is_ready_with("found 2 tags")(o))
        assert obj["status"]["lastScanResult"]["tagCount"] == 2
        assert scan_time(obj) >= scan_time(first)
        # An annotation is metadata: the API server does not bump the generation.
        assert obj["metadata"]["generation"] == first["metadata"]["generation"] == 1
        assert obj["status"]["observedGeneration"] == first["status"]["observedGeneration"]


async def test_interval_elapses_and_rescans(registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app", interval="1s"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        registry.write_tags("app", ["a", "b", "c"])
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 3 tags"))


async def test_spec_change_without_scan_reason_is_a_no_op(
        registry: RegistryProcess, kube: KubeTest, caplog: pytest.LogCaptureFixture) -> None:
    registry.write_tags("app", ["a"])
    caplog.set_level(logging.INFO, logger="imagereflector")
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        first = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        cluster.api.patch(REPOS, cluster.ns, "app", {"spec": {"timeout": "30s"}})
        obj = await cluster.wait_for(
            REPOS, cluster.ns, "app", lambda o: o["status"]["observedGeneration"] == 2)
        assert obj["metadata"]["generation"] == 2
        assert scan_time(obj) == scan_time(first)
        assert any(r.getMessage().startswith(
            "no change in repository configuration since last scan, next scan in 59m")
            for r in caplog.records)


async def test_suspend_and_resume(registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        cluster.api.patch(REPOS, cluster.ns, "app", {"spec": {"suspend": True}})
        suspended = (f'gotk_suspend_status{{kind="ImageRepository",name="app",'
                     f'namespace="{cluster.ns}"}} 1.0')
        text = await cluster.wait_metrics(lambda t: suspended in t)
        before = cluster.api.get(REPOS, cluster.ns, "app")
        registry.write_tags("app", ["a", "b"])
        seen = reconciles(text, "imagerepository")
        annotate(cluster, "app", "while-suspended")
        # The request was reconciled (and ignored): nothing about the object changed.
        await cluster.wait_metrics(lambda t: reconciles(t, "imagerepository") > seen)
        after = cluster.api.get(REPOS, cluster.ns, "app")
        assert before is not None
        assert after is not None
        assert after["status"] == before["status"]
        cluster.api.patch(REPOS, cluster.ns, "app", {"spec": {"suspend": False}})
        obj = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"))
        assert obj["status"]["lastHandledReconcileAt"] == "while-suspended"


async def test_invalid_image_stalls_without_retry(kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("bad", "ghcr.io/app:1.0"))
        obj = await cluster.wait_for(REPOS, cluster.ns, "bad",
                                     has_ready_reason(meta.IMAGE_URL_INVALID_REASON))
        conditions = conditions_of(obj)
        stalled = cond.get(conditions, meta.STALLED)
        assert stalled is not None
        assert stalled.reason == meta.IMAGE_URL_INVALID_REASON
        assert stalled.message == (".spec.image value should not contain a tag; "
                                   "remove ':1.0'")
        assert cond.get(conditions, meta.RECONCILING) is None
        assert obj["status"]["observedGeneration"] == 1
        text = await cluster.scrape()
        assert 'controller_runtime_reconcile_errors_total{controller="imagerepository"} 0.0' \
            in text


async def test_missing_secret_is_authentication_failed(registry: RegistryProcess,
                                                       kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      secretRef={"name": "nope"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     failed_for_good(meta.AUTHENTICATION_FAILED_REASON))
        found = ready(obj)
        assert found is not None
        # The API server's own 404 message, passed on as Flux does.
        assert found.message == ('failed to configure authentication options: '
                                 'secrets "nope" not found')
        reconciling = cond.get(conditions_of(obj), meta.RECONCILING)
        assert reconciling is not None
        assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON


async def test_registry_failure_backs_off_then_recovers(registry: RegistryProcess,
                                                        kube: KubeTest) -> None:
    registry.write_tags("app", ["a", "b"])
    async with FaultFront(registry) as front, start_cluster(kube) as cluster:
        front.fail_next(9, status=500, path="/tags/list")
        cluster.api.create(repository("app", f"{front.host}/app"))
        failed = await cluster.wait_for(REPOS, cluster.ns, "app",
                                        has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
        found = ready(failed)
        assert found is not None
        assert found.message.startswith("scan failed: ")
        obj = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"))
        assert obj["status"]["lastScanResult"]["tagCount"] == 2
        text = await cluster.scrape()
        assert 'controller_runtime_reconcile_total{controller="imagerepository",result="error"}' \
            in text
        await cluster.manager.events.flush()
        warnings = [e for e in events_of(kube, "app") if e["type"] == "Warning"]
        assert warnings
        assert all(e["reason"] == meta.READ_OPERATION_FAILED_REASON for e in warnings)


async def test_exclusion_list_change_rescans(registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", ["1.0", "1.0-rc", "2.0"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 3 tags"))
        cluster.api.patch(REPOS, cluster.ns, "app", {"spec": {"exclusionList": ["-rc$"]}})
        obj = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"))
        assert obj["status"]["observedExclusionList"] == ["-rc$"]


async def test_deleted_store_file_triggers_rescan(registry: RegistryProcess, kube: KubeTest,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        first = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        for suffix in ("", "-wal", "-shm"):
            path = Path(cluster.settings.storage_path) / f"tags.db{suffix}"
            path.unlink(missing_ok=True)
        registry.write_tags("app", ["a", "b"])
        await cluster.wait_for(REPOS, cluster.ns, "app",
                               lambda o: scan_time(o) > scan_time(first)
                               or is_ready_with("found 2 tags")(o))
        assert await cluster.manager.store.tags(ObjectKey(cluster.ns, "app"))
        recreated = [r for r in caplog.records if "tag store was missing" in r.getMessage()]
        assert len(recreated) == 1


async def test_delete_removes_finalizer_and_rows(registry: RegistryProcess,
                                                 kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        cluster.api.delete(REPOS, cluster.ns, "app")
        # The API server only marks it: the controller's finalizer holds it until done.
        marked = cluster.api.get(REPOS, cluster.ns, "app")
        assert marked is None or marked["metadata"].get("deletionTimestamp")
        await cluster.wait_gone(REPOS, cluster.ns, "app")
        assert await cluster.manager.store.scan(ObjectKey(cluster.ns, "app")) is None
        text = await cluster.scrape()
        assert 'name="app"' not in text
        removal = [c for c in cluster.api.calls(verb="patch", resource=REPOS, name="app")
                   if c.subresource == ""]
        assert removal  # the finalizer came off with a patch, as the ClusterRole allows


async def test_dropped_watch_and_410_miss_nothing(registry: RegistryProcess,
                                                  kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("one", f"{registry.host}/app"))
        await cluster.wait_for(REPOS, cluster.ns, "one", is_ready_with("found 1 tags"))
        assert cluster.proxy.cut_watches() > 0
        cluster.api.create(repository("two", f"{registry.host}/app"))
        # The next watch of ImageRepositories is told its version is too old (what the
        # API server says once etcd compacted it), so the informer must relist.
        cluster.proxy.gone_next_watch(r"/imagerepositories\?")
        cluster.proxy.cut_watches()
        annotate(cluster, "one", "after-410")
        cluster.api.create(repository("three", f"{registry.host}/app"))
        for name in ("two", "three"):
            await cluster.wait_for(REPOS, cluster.ns, name, is_ready_with("found 1 tags"))
        await cluster.wait_for(REPOS, cluster.ns, "one",
                               lambda o: o["status"].get("lastHandledReconcileAt") == "after-410")
        assert len(cluster.api.calls(verb="list", resource=REPOS)) == 2


async def test_pull_secret_via_service_account(basic_registry: RegistryProcess,
                                               kube: KubeTest) -> None:
    basic_registry.write_tags("private", ["x", "y"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(dockerconfig_secret("pull", basic_registry.host))
        cluster.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "scanner"},
                            "imagePullSecrets": [{"name": "pull"}]})
        cluster.api.create(repository("private", f"{basic_registry.host}/private",
                                      serviceAccountName="scanner"))
        await cluster.wait_for(REPOS, cluster.ns, "private", is_ready_with("found 2 tags"))


async def test_secret_ref_with_wrong_password_never_leaks(basic_registry: RegistryProcess,
                                                          kube: KubeTest,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    planted = "Planted-Password-7c1e"
    basic_registry.write_tags("private", ["x"])
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    async with start_cluster(kube) as cluster:
        cluster.api.create(dockerconfig_secret("creds", basic_registry.host,
                                               creds=(TEST_CREDS[0], planted)))
        cluster.api.create(repository("private", f"{basic_registry.host}/private",
                                      secretRef={"name": "creds"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "private",
                                     has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
        await cluster.manager.events.flush()
        visible = [json.dumps(obj), json.dumps(cluster.api.list("events", cluster.ns)),
                   await cluster.scrape(), caplog.text]
        assert all(planted not in text for text in visible)
        encoded = base64.b64encode(f"{TEST_CREDS[0]}:{planted}".encode()).decode()
        assert all(encoded not in text for text in visible)


async def test_mutual_tls_via_cert_secret(mtls_registry: RegistryProcess,
                                          kube: KubeTest) -> None:
    await mtls_registry.push_tags("secure", ["1", "2"])
    ca, client = mtls_registry.ca, mtls_registry.client
    assert ca is not None
    assert client is not None
    async with start_cluster(kube) as cluster:
        cluster.api.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                            "metadata": {"name": "tls"},
                            "data": {k: base64.b64encode(v).decode() for k, v in (
                                ("tls.crt", client.cert_pem), ("tls.key", client.key_pem),
                                ("ca.crt", ca.cert_pem))}})
        cluster.api.create(repository("secure", f"{mtls_registry.host}/secure",
                                      certSecretRef={"name": "tls"}))
        await cluster.wait_for(REPOS, cluster.ns, "secure", is_ready_with("found 2 tags"))


async def test_metrics_carry_flux_names_and_labels(registry: RegistryProcess,
                                                   kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
        text = await cluster.scrape()
        labels = f'kind="ImageRepository",name="app",namespace="{cluster.ns}"'
        for line in (f'gotk_reconcile_condition{{{labels},status="True",type="Ready"}} 1.0',
                     f'gotk_suspend_status{{{labels}}} 0.0',
                     f'gotk_reconcile_duration_seconds_count{{{labels}}}',
                     'controller_runtime_reconcile_total{controller="imagerepository",'
                     'result="requeue_after"}',
                     'controller_runtime_max_concurrent_reconciles{controller="imagerepository"}'
                     ' 4.0',
                     'workqueue_adds_total{name="imagerepository"}',
                     'rest_client_requests_total{code="200",host="127.0.0.1:',
                     f'imagereflector_registry_requests_total{{code="200",host="{registry.host}"'):
            assert line in text, line
        assert re.search(r'rest_client_requests_total\{code="200",host="[^"]+",method="PATCH"\}',
                         text)
        assert "_created" not in text


async def test_every_status_written_is_kstatus_compliant(registry: RegistryProcess,
                                                         kube: KubeTest) -> None:
    registry.write_tags("app", ["a", "b"])
    async with FaultFront(registry) as front, start_cluster(kube) as cluster, \
            recorded_statuses(kube) as log:
        front.fail_next(3, status=500, path="/tags/list")
        cluster.api.create(repository("flaky", f"{front.host}/app"))
        cluster.api.create(repository("good", f"{registry.host}/app"))
        cluster.api.create(repository("bad", "ghcr.io/app@sha256:" + "a" * 64))
        cluster.api.create(repository("nosecret", f"{registry.host}/app",
                                      secretRef={"name": "missing"}))
        await cluster.wait_for(REPOS, cluster.ns, "flaky", is_ready_with("found 2 tags"))
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 2 tags"))
        await cluster.wait_for(REPOS, cluster.ns, "bad",
                               has_ready_reason(meta.IMAGE_URL_INVALID_REASON))
        await cluster.wait_for(REPOS, cluster.ns, "nosecret",
                               has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        annotate(cluster, "good", "again")
        await cluster.wait_for(REPOS, cluster.ns, "good",
                               lambda o: o["status"].get("lastHandledReconcileAt") == "again")
        seen = await log.sync()
        assert len(seen) > 10
        assert kstatus_problems(seen) == []
        # What the API server stored (defaults applied, nothing pruned that mattered)
        # passes the schema the CRD was generated from.
        schema = crd_schema("ImageRepository")
        for obj in seen:
            jsonschema.validate(obj, schema, format_checker=jsonschema.FormatChecker())
        first_progress = next(o for o in seen if o["metadata"]["name"] == "good"
                              and (o.get("status") or {}).get("conditions"))
        reconciling = cond.get(conditions_of(first_progress), meta.RECONCILING)
        assert reconciling is not None
        # -1 is the CRD's default for status.observedGeneration, applied by the server.
        assert reconciling.message == "processing object: new generation -1 -> 1"


async def test_single_namespace_mode_watches_only_its_namespace(registry: RegistryProcess,
                                                                kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    team = kube.namespace("team")
    async with start_cluster(kube, watch_all_namespaces=False,
                             runtime_namespace=team) as cluster:
        cluster.api.create(repository("outside", f"{registry.host}/app"))
        cluster.api.create(repository("inside", f"{registry.host}/app", namespace=team))
        await cluster.wait_for(REPOS, team, "inside", is_ready_with("found 1 tags"))
        outside = cluster.api.get(REPOS, cluster.ns, "outside")
        assert outside is not None
        # Only the CRD's default status: nobody reconciled it.
        assert outside.get("status") == {"observedGeneration": -1}
        assert "finalizers" not in outside["metadata"]
        assert {c.namespace for c in cluster.api.calls(resource=REPOS)} == {team}


async def test_repeated_identical_warnings_are_counted_on_one_event(
        registry: RegistryProcess, kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      secretRef={"name": "missing"}))
        await cluster.wait_for(REPOS, cluster.ns, "app",
                               has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            await cluster.manager.events.flush()
            warnings = [e for e in events_of(kube, "app") if e["type"] == "Warning"]
            if (warnings and warnings[0].get("count", 1) >= 3) or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert len(warnings) == 1
        assert warnings[0]["count"] >= 3
        assert warnings[0]["reason"] == meta.AUTHENTICATION_FAILED_REASON


async def test_restart_with_a_warm_store_rescans_nothing_and_writes_nothing(
        registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", ["a", "b"])
    async with start_cluster(kube) as first:
        for name in ("one", "two", "three"):
            first.api.create(repository(name, f"{registry.host}/app"))
        for name in ("one", "two", "three"):
            await first.wait_for(REPOS, first.ns, name, is_ready_with("found 2 tags"))
    before = len(kube.proxy.calls(verb="patch", resource=REPOS))
    # Condition times have second precision: let the clock move past the first run's,
    # so a rewritten lastTransitionTime would show as a patch.
    await asyncio.sleep(1.1)
    async with start_cluster(kube) as second:
        reconciled = 'controller_runtime_reconcile_total{controller="imagerepository"'
        text = await second.wait_metrics(
            lambda t: f'{reconciled},result="requeue_after"}} 3.0' in t)
        assert len(kube.proxy.calls(verb="patch", resource=REPOS)) == before
        assert "imagereflector_registry_requests_total{" not in text
