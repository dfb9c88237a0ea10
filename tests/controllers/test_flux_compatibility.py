"""Flux v1's behaviours, and ``--flux-compatibility``, on the real API server.

Each test runs once per mode with several objects at once (one controller start, one
registry), and asserts per object what that mode shows: the always-on additions of Flux
v1 (ImagePolicy ``spec.suspend``, requested reconciles and ``lastHandledReconcileAt``,
``latestRef``/``observedPreviousRef``, refs seeded from a Flux 2.2 status, the
workload-identity gate, ``lastScanResult.revision``) the same in both, and the conflicts
of the design note (R1, R2, R4, R6, R7, R8, R9, R26; P2-P7, P11-P14) as each Flux
release has them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.credentials.workload import POLICY_GATE_MESSAGE
from imagereflector.store.base import ObjectKey
from tests.controllers import harness as fake
from tests.controllers.harness import failed_for_good, is_ready_with, ready, repository
from tests.controllers.realharness import (
    POLICIES,
    REPOS,
    RUN_LABEL,
    Cluster,
    KubeTest,
    recorded_statuses,
    start_cluster,
)
from tests.controllers.test_imagepolicy import policy
from tests.fakes.registry import RegistryProcess

JSON = dict[str, Any]
MODES = [Compatibility.V0_31, Compatibility.V1_2]


def annotate(cluster: Cluster, plural: str, name: str, value: str) -> None:
    cluster.api.patch(plural, cluster.ns, name, {"metadata": {"annotations": {
        meta.RECONCILE_REQUEST_ANNOTATION: value}}})


def status_of(obj: JSON) -> JSON:
    found: JSON = obj.get("status") or {}
    return found


def ready_message(obj: JSON) -> str:
    found = ready(obj)
    assert found is not None, obj
    return found.message


def latest_tag(tag: str) -> Any:
    def check(obj: JSON) -> bool:
        return is_ready_with("")(obj) and (status_of(obj).get("latestRef") or {}).get(
            "tag") == tag
    return check


def stalled_with(reason: str, message: str) -> Any:
    def check(obj: JSON) -> bool:
        found = [c for c in status_of(obj).get("conditions") or [] if c["type"] == "Stalled"]
        return bool(found) and (found[0]["status"], found[0]["reason"], found[0]["message"]) == (
            "True", reason, message)
    return check


def has_finalizer(obj: JSON) -> bool:
    return meta.FINALIZER in (obj["metadata"].get("finalizers") or [])


@pytest.mark.parametrize("mode", MODES)
async def test_policies(mode: Compatibility, registry: RegistryProcess, kube: KubeTest) -> None:
    latest = mode.latest
    await registry.push_tags("app", ["1.0.0", "1.5.0-rc.1"])
    image = registry.ref("app")
    api = kube.api
    api.create(repository("app", image))
    api.create(repository("empty", image, exclusionList=["."]))  # scanned, no tags left
    api.create(repository("never", image, suspend=True))  # never scanned
    api.create(repository("badimage", f"{image}:v1"))
    api.create(repository("wi", image, provider="aws", serviceAccountName="builder"))
    for name, choice in (("semver", {"semver": {"range": ">=1.0.0-0 <2.0.0"}}),
                         ("empty", {"semver": {"range": "*"}}),
                         ("never", {"semver": {"range": "*"}}),
                         ("badimage", {"semver": {"range": "*"}}),
                         ("wi", {"semver": {"range": "*"}}),
                         ("badrange", {"semver": {"range": "*-*"}})):
        api.create(policy(name, "app" if name in ("semver", "badrange") else name, choice))
    suspended = policy("suspended", "app", {"semver": {"range": "*"}}, suspend=True)
    suspended["metadata"]["annotations"] = {meta.RECONCILE_REQUEST_ANNOTATION: "asked"}
    api.create(suspended)
    # What Flux 2.2 left behind: a status with images only, on an object this controller
    # does not watch yet (another label); the label is moved once its repository is
    # scanned, so its first reconcile is one that resolves.
    seeded = policy("seeded", "app", {"semver": {"range": ">=1.0.0-0 <2.0.0"}})
    seeded["metadata"]["labels"] = {RUN_LABEL: "not-yet"}
    api.create(seeded)
    api.patch(POLICIES, kube.ns, "seeded", {"status": {
        "latestImage": f"{image}:1.0.0", "observedPreviousImage": f"{image}:0.9.0"}},
        subresource="status")

    async with start_cluster(kube, flux_compatibility=mode) as cluster:
        # P13/P14: Masterminds v3.5 lets the group's prerelease admit 1.5.0-rc.1.
        chosen = "1.5.0-rc.1" if latest else "1.0.0"
        obj = await cluster.wait_for(POLICIES, kube.ns, "semver", latest_tag(chosen))
        assert status_of(obj)["latestImage"] == f"{image}:{chosen}"
        assert status_of(obj)["latestRef"] == {"name": image, "tag": chosen}
        assert ready_message(obj) == (f"Latest image tag for {image} resolved to {chosen}"
                                      if latest else
                                      f"Latest image tag for '{image}' resolved to {chosen}")

        # P6/P7: no tags, and never scanned.
        no_tags = ("retrying in 30s error: no tags in database" if latest
                   else "no tags in database")
        await cluster.wait_for(POLICIES, kube.ns, "empty", failed_for_good(
            meta.DEPENDENCY_NOT_READY_REASON, no_tags))
        await cluster.wait_for(POLICIES, kube.ns, "never", failed_for_good(
            meta.DEPENDENCY_NOT_READY_REASON,
            no_tags if latest else "referenced ImageRepository has not been scanned yet",
            retried=latest))
        # P11: only Flux v1.2 stalls on the repository's image; v0.31 waits for a scan.
        if latest:
            await cluster.wait_for(POLICIES, kube.ns, "badimage", failed_for_good(
                meta.IMAGE_URL_INVALID_REASON,
                f"image '{image}:v1' should not include a tag; remove ':v1'", stalled=True))
        else:
            await cluster.wait_for(POLICIES, kube.ns, "badimage", failed_for_good(
                meta.DEPENDENCY_NOT_READY_REASON,
                "referenced ImageRepository has not been scanned yet", retried=False))
        # The workload identity gate, in both modes.
        await cluster.wait_for(POLICIES, kube.ns, "wi", failed_for_good(
            "FeatureGateDisabled", POLICY_GATE_MESSAGE, stalled=True))
        # P12: the constraint error, quoted by v3.5. (Ready may keep an earlier
        # "not scanned yet" in v0.31 mode, as Flux v0.31 does: Stalled tells.)
        await cluster.wait_for(POLICIES, kube.ns, "badrange", stalled_with(
            meta.INVALID_POLICY_REASON, 'invalid policy: improper constraint: "*-*"' if latest
            else "invalid policy: improper constraint: *-*"))

        # Suspended (both modes): a requested reconcile is noted, nothing else.
        obj = await cluster.wait_for(POLICIES, kube.ns, "suspended", lambda o: (
            status_of(o).get("lastHandledReconcileAt") == "asked"))
        assert "conditions" not in status_of(obj) or status_of(obj)["conditions"] == []
        assert "latestImage" not in status_of(obj)

        # Seeded refs: latestRef comes from the Flux 2.2 latestImage.
        api.patch(POLICIES, kube.ns, "seeded", {"metadata": {"labels": {
            RUN_LABEL: kube.run_id}}})
        obj = await cluster.wait_for(POLICIES, kube.ns, "seeded", latest_tag(chosen))
        status = status_of(obj)
        if latest:  # the result moved away from the seeded 1.0.0
            assert status["observedPreviousRef"] == {"name": image, "tag": "1.0.0"}
            assert status["observedPreviousImage"] == f"{image}:1.0.0"
            assert ready_message(obj) == (f"Latest image tag for {image} resolved to {chosen}"
                                          f" (previously {image}:1.0.0)")
        else:  # the same result: the seeded refs stay, v0.31's message quirk included
            assert status["observedPreviousRef"] == {"name": image, "tag": "0.9.0"}
            assert status["observedPreviousImage"] == f"{image}:0.9.0"
            assert ready_message(obj) == (f"Latest image tag for '{image}' updated from 0.9.0"
                                          " to 1.0.0")

        # A requested reconcile of a policy is handled and recorded (both modes).
        annotate(cluster, POLICIES, "semver", "now")
        await cluster.wait_for(POLICIES, kube.ns, "semver", lambda o: (
            status_of(o).get("lastHandledReconcileAt") == "now" and is_ready_with("")(o)))

        # P4: a failure clears latestImage in v0.31 mode only; latestRef always stays.
        api.patch(POLICIES, kube.ns, "semver", {"spec": {"imageRepositoryRef": {
            "name": "gone"}}})
        obj = await cluster.wait_for(POLICIES, kube.ns, "semver", failed_for_good(
            meta.DEPENDENCY_NOT_READY_REASON))
        assert status_of(obj)["latestRef"] == {"name": image, "tag": chosen}
        assert status_of(obj).get("latestImage") == (f"{image}:{chosen}" if latest else None)
        # P5: after recovery, v0.31 has no previous image (it was cleared); v1.2's refs
        # did not move, so neither did the previous one.
        api.patch(POLICIES, kube.ns, "semver", {"spec": {"imageRepositoryRef": {
            "name": "app"}}})
        obj = await cluster.wait_for(POLICIES, kube.ns, "semver", latest_tag(chosen))
        assert "observedPreviousImage" not in status_of(obj)
        assert "observedPreviousRef" not in status_of(obj)

        # Un-suspended, the suspended policy resolves ("*" admits no prerelease in either).
        api.patch(POLICIES, kube.ns, "suspended", {"spec": {"suspend": False}})
        await cluster.wait_for(POLICIES, kube.ns, "suspended", latest_tag("1.0.0"))


@pytest.mark.parametrize("mode", MODES)
async def test_repositories(mode: Compatibility, registry: RegistryProcess, kube: KubeTest,
                            caplog: pytest.LogCaptureFixture) -> None:
    latest = mode.latest
    tags = ["1.0.0", "b", "a"]
    await registry.push_tags("app", tags)
    image = registry.ref("app")
    api = kube.api
    api.create(repository("app", image))
    api.create(repository("scheme", f"https://{image}"))
    api.create(repository("tagged", f"{image}:v1"))
    parked = repository("parked", image, suspend=True)
    parked["metadata"]["annotations"] = {meta.RECONCILE_REQUEST_ANNOTATION: "asked"}
    api.create(parked)
    descending = sorted(tags, reverse=True)
    flux_revision = "sha256:" + hashlib.sha256(
        "".join(f"{t}\n" for t in descending).encode()).hexdigest()
    ours_revision = "sha256:" + hashlib.sha256("\n".join(sorted(tags)).encode()).hexdigest()

    async with start_cluster(kube, flux_compatibility=mode) as cluster:
        obj = await cluster.wait_for(REPOS, kube.ns, "app", is_ready_with("found 3 tags"))
        result = status_of(obj)["lastScanResult"]
        # R1, R4: the revision's formula, and the Ready message that shows it.
        assert result["revision"] == (flux_revision if latest else ours_revision)
        assert ready_message(obj) == ("successful scan: found 3 tags" + (
            f" with checksum {flux_revision}" if latest else ""))
        assert result["latestTags"] == descending  # the same in both
        # R6: the stored order, which policies iterate.
        stored = await cluster.manager.store.tags(ObjectKey(kube.ns, "app"))
        assert stored == (descending if latest else await listed_by(registry, "app"))
        # R7, R8: the image messages.
        await cluster.wait_for(REPOS, kube.ns, "scheme", failed_for_good(
            meta.IMAGE_URL_INVALID_REASON,
            f"image 'https://{image}' should not include URL scheme; remove 'https://'"
            if latest else ".spec.image value should not start with URL scheme; remove "
            "'https://'", stalled=True))
        await cluster.wait_for(REPOS, kube.ns, "tagged", failed_for_good(
            meta.IMAGE_URL_INVALID_REASON,
            f"image '{image}:v1' should not include a tag; remove ':v1'" if latest
            else ".spec.image value should not contain a tag; remove ':v1'", stalled=True))
        # R9: a suspended object records a requested reconcile in v1.2 only.
        obj = await cluster.wait_for(REPOS, kube.ns, "parked", has_finalizer)
        if latest:
            obj = await cluster.wait_for(REPOS, kube.ns, "parked", lambda o: (
                status_of(o).get("lastHandledReconcileAt") == "asked"))
        else:
            # Nothing to wait for: the pass that added the finalizer was the whole work.
            assert "lastHandledReconcileAt" not in status_of(obj)

    # R26 and R2: the tag store is gone (a new Pod): the rescan shows Ready Unknown while
    # it runs in v1.2 mode only, and its routine note compares revisions there.
    caplog.set_level(logging.INFO, logger="imagereflector.kube.events")
    note = ("tags did not change, next scan in 1h0m0s" if latest
            else "no new tags found, next scan in 1h0m0s")
    async with recorded_statuses(kube, REPOS) as log, start_cluster(
            kube, flux_compatibility=mode, storage=kube.tmp_path / "new-pod") as cluster:
        # The note is logged after the rescan's final patch (events are quiet, A6).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while note not in caplog.messages:
            assert loop.time() < deadline, caplog.messages
            await asyncio.sleep(0.02)
        assert is_ready_with("found 3 tags")(await cluster.wait_for(
            REPOS, kube.ns, "app", is_ready_with("")))
        seen = [ready(o) for o in (await log.sync()) if o["metadata"]["name"] == "app"]
        unknown = [c for c in seen if c is not None and c.status == "Unknown"]
        if latest:
            assert [(c.reason, c.message) for c in unknown] == [
                ("Progressing", "scanning: no tags in database")]
        else:
            assert unknown == []


async def listed_by(registry: RegistryProcess, name: str) -> list[str]:
    """The tags the registry lists, in its order."""
    async with aiohttp.ClientSession() as session, session.get(
            f"{registry.base_url}/v2/{name}/tags/list") as resp:
        listed: list[str] = (await resp.json())["tags"]
        return listed


@pytest.mark.parametrize("mode", MODES)
async def test_interval_rules_without_cel(mode: Compatibility, registry: RegistryProcess,
                                          tmp_path: Path) -> None:
    """What only a schema without Flux v1's CEL rules lets through (Flux 2.2's CRDs): on
    the fake API server, which validates nothing. Flux v1.2 stalls ``Always`` without an
    interval with its own reason and ignores an interval it would not use; v0.31 mode
    keeps this project's ``InvalidPolicy`` for both."""
    latest = mode.latest
    registry.write_tags("app", ["1.0.0"])
    async with fake.start_cluster(tmp_path, flux_compatibility=mode) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        cluster.api.create(policy("always", "app", {"semver": {"range": "*"}},
                                  namespace="default", digestReflectionPolicy="Always"))
        cluster.api.create(policy("unused", "app", {"semver": {"range": "*"}},
                                  namespace="default", interval="5m"))
        obj = await cluster.wait_for(fake.POLICIES, "default", "always", lambda o: any(
            c["type"] == "Stalled" and c["status"] == "True"
            for c in status_of(o).get("conditions") or []))
        found = ready(obj)
        assert found is not None
        if latest:
            assert (found.reason, found.message) == (
                meta.INTERVAL_NOT_CONFIGURED_REASON,
                "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'")
            await cluster.wait_for(fake.POLICIES, "default", "unused", latest_tag("1.0.0"))
        else:
            assert found.reason == meta.INVALID_POLICY_REASON
            assert "spec.interval is required" in found.message
            await cluster.wait_for(fake.POLICIES, "default", "unused", failed_for_good(
                meta.INVALID_POLICY_REASON, stalled=True))


def policy_reconciles(exposition: str) -> float:
    """Every ImagePolicy reconcile so far, whatever its result."""
    from prometheus_client.parser import text_string_to_metric_families
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples
               if sample.name == "controller_runtime_reconcile_total"
               and sample.labels.get("controller") == "imagepolicy")


@pytest.mark.parametrize("mode", MODES)
async def test_a_repository_without_tags_is_retried_after_requeue_dependency(
        mode: Compatibility, registry: RegistryProcess, kube: KubeTest) -> None:
    """``--requeue-dependency``, not the failure backoff, paces a policy whose repository
    has no tags: with the backoff an hour long, the policy is still reconciled again and
    again, every 0.2 s, with nothing else changing."""
    registry.write_tags("app", ["1.0.0"])
    kube.api.create(repository("empty", f"{registry.host}/app", exclusionList=["."]))
    kube.api.create(policy("waits", "empty", {"semver": {"range": "*"}}))
    async with start_cluster(kube, flux_compatibility=mode, requeue_dependency=0.2,
                             min_retry_delay=3600.0, max_retry_delay=3600.0) as cluster:
        await cluster.wait_for(POLICIES, kube.ns, "waits", lambda o: getattr(
            ready(o), "reason", None) == meta.DEPENDENCY_NOT_READY_REASON)
        first = policy_reconciles(await cluster.scrape())
        await cluster.wait_metrics(lambda text: policy_reconciles(text) >= first + 5)
