"""Moving between Flux's CRDs and this project's, as docs/operations.md tells an operator.

These tests replace CustomResourceDefinitions, which are cluster-wide, so they get an API
server of their own (a second etcd + kube-apiserver for this module, about 8 seconds)
and never touch the session cluster the other tests share. Flux's CRDs are the published
ones of image-reflector-controller v0.31.0 (Flux 2.2) and v1.2.4 (Flux 2.9), from the Go
module cache (``testbed.build.flux_crd_dir``).

1. From Flux 2.9 (v1 only): objects written through v1 with a Flux v1 status, then this
   project's CRDs applied over Flux's: every object reads the same through v1 and
   v1beta2, and Flux 2.9's CRDs can be applied back without any migration.
2. From Flux 2.2 and back: the controller against Flux 2.2's CRDs (it reads and writes
   v1beta2, and a pruned revision still moves policies), this project's CRDs applied over
   them (v1 from then on, refs seeded from ``latestImage``), then the documented
   downgrade: v1beta2 made the storage version, every object rewritten, ``storedVersions``
   cleaned, and Flux 2.2's CRDs applied successfully, with the status Flux 2.2 reads.

The downgrade commands run here are the documented ones, text for text
(``test_the_documented_commands_are_the_tested_ones``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.app.install import install_crds
from imagereflector.app.manager import Manager, build
from imagereflector.config import Settings
from imagereflector.metrics import Metrics
from testbed.build import REPO_ROOT, BuildError, flux_crd_dir
from testbed.cluster import ApiError, Cluster
from testbed.pytest_plugin import in_ci, require_binaries
from tests.fakes.registry import RegistryProcess

pytestmark = pytest.mark.slow

JSON = dict[str, Any]
GROUP = meta.GROUP
CRDS = [f"imagerepositories.{GROUP}", f"imagepolicies.{GROUP}"]
OURS = REPO_ROOT / "manifests" / "crds"
NS = "apps"

# docs/operations.md, "Going back to Flux 2.2 or 2.6": run as they are written there.
MAKE_V1BETA2_STORAGE = """\
for crd in imagerepositories imagepolicies; do
  kubectl patch crd "$crd.image.toolkit.fluxcd.io" --type=json -p '[
    {"op": "replace", "path": "/spec/versions/1/storage", "value": true},
    {"op": "replace", "path": "/spec/versions/2/storage", "value": false}]'
done"""
REWRITE_EVERY_OBJECT = """\
for kind in imagerepositories imagepolicies; do
  kubectl get "$kind.image.toolkit.fluxcd.io" -A \\
    -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name}{"\\n"}{end}' |
  while read -r ns name; do
    kubectl patch "$kind.image.toolkit.fluxcd.io" "$name" -n "$ns" --type=merge -p '{}'
  done
done"""
CLEAN_STORED_VERSIONS = """\
for crd in imagerepositories imagepolicies; do
  kubectl patch crd "$crd.image.toolkit.fluxcd.io" --subresource=status --type=merge \\
    -p '{"status":{"storedVersions":["v1beta2"]}}'
done"""


def test_the_documented_commands_are_the_tested_ones() -> None:
    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    for script in (MAKE_V1BETA2_STORAGE, REWRITE_EVERY_OBJECT, CLEAN_STORED_VERSIONS):
        assert script in text


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An API server of this module's own: CRDs here never reach the session cluster."""
    cluster = Cluster(tmp_path_factory.mktemp("spare"), require_binaries("controlplane"),
                      tie_to_parent=True)
    try:
        cluster.up()
        cluster.create_namespace(NS)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def flux_crds() -> dict[str, Path]:
    """Flux's CRD directories; skipped on a machine that cannot fetch them (failed in CI)."""
    try:
        return {"2.2": flux_crd_dir("flux-v2.2"), "2.9": flux_crd_dir("flux-latest")}
    except BuildError as exc:
        if in_ci():
            pytest.fail(f"cannot fetch Flux's CRDs: {exc}", pytrace=False)
        pytest.skip(f"cannot fetch Flux's CRDs: {exc}")


def kubectl(cluster: Cluster, *args: str) -> str:
    return cluster.kubectl(*args, timeout=90).stdout


def sh(cluster: Cluster, script: str) -> None:
    """A documented script, with the cluster's kubectl first on PATH."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = f"{cluster.bin_dir}:{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"


def apply_crds(cluster: Cluster, directory: Path) -> None:
    """What ``kubectl apply --server-side -k manifests/`` (or Flux's own install) does to
    the CRDs: replace them, conflicts forced, then wait until they serve."""
    for path in sorted(directory.glob("*.yaml")):
        if path.name.startswith("image.toolkit.fluxcd.io_"):
            kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl(cluster, "wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{name}" for name in CRDS))


def remove_crds(cluster: Cluster) -> None:
    """Start over: no image CRDs (and so no image objects) left."""
    for plural in ("imagerepositories", "imagepolicies"):
        with contextlib.suppress(subprocess.CalledProcessError):
            for name in kubectl(cluster, "get", f"{plural}.{GROUP}", "-n", NS, "-o",
                                "name").split():
                kubectl(cluster, "patch", name, "-n", NS, "--type=merge", "-p",
                        '{"metadata":{"finalizers":null}}')
    kubectl(cluster, "delete", "crd", "--ignore-not-found", "--wait=true", *CRDS)


def path(version: str, plural: str, name: str | None = None, sub: str | None = None) -> str:
    base = f"/apis/{GROUP}/{version}/namespaces/{NS}/{plural}"
    if name is not None:
        base += f"/{urllib.parse.quote(name)}"
    return base + (f"/{sub}" if sub else "")


async def served(cluster: Cluster, version: str, plural: str) -> None:
    """Wait until ``version`` of ``plural`` is answered (the cache warms after a CRD
    change: 404 or 429 for a moment)."""
    for _ in range(300):
        try:
            cluster.request("GET", path(version, plural) + "?limit=1")
            return
        except ApiError as err:
            if err.status not in (404, 429, 503):
                raise
        await asyncio.sleep(0.1)
    raise AssertionError(f"{version} {plural} never served")


def read(cluster: Cluster, version: str, plural: str, name: str) -> JSON:
    found: JSON = cluster.request("GET", path(version, plural, name))
    return found


def same_through(cluster: Cluster, versions: tuple[str, ...], plural: str, name: str) -> JSON:
    """The object through each version; asserts they differ only in ``apiVersion``."""
    objs = [read(cluster, v, plural, name) for v in versions]
    for version, obj in zip(versions, objs, strict=True):
        assert obj.pop("apiVersion") == f"{GROUP}/{version}"
    assert all(obj == objs[0] for obj in objs), (name, objs)
    return objs[0]


def stored_versions(cluster: Cluster, crd: str) -> list[str]:
    found = cluster.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                   f"{crd}")
    versions: list[str] = found["status"]["storedVersions"]
    return versions


@contextlib.asynccontextmanager
async def controller(cluster: Cluster, storage: Path, **overrides: Any
                     ) -> AsyncIterator[Manager]:
    """The controller in-process against ``cluster``, as its admin."""
    settings = Settings(**{
        "kubeconfig": str(cluster.kubeconfig), "storage_path": str(storage),
        "metrics_addr": "127.0.0.1:0", "health_addr": "127.0.0.1:0",
        "min_retry_delay": 0.05, "max_retry_delay": 1.0, "registry_qps": 0.0,
        **overrides})
    manager = await build(settings, metrics=Metrics(CollectorRegistry()))
    task = asyncio.create_task(manager.run(), name="manager-on-spare")
    try:
        yield manager
    finally:
        manager.stop.set()
        await asyncio.wait_for(task, timeout=20)


async def wait_for(cluster: Cluster, version: str, plural: str, name: str,
                   check: Callable[[JSON], bool], *, within: float = 30.0) -> JSON:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: JSON = {}
    while loop.time() < deadline:
        last = read(cluster, version, plural, name)
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting on {name}: {last}")


def served_versions(manager: Manager) -> list[str]:
    """The versions the controller's client addresses the two kinds at."""
    return [manager.kube.version_of(informer.ref)
            for informer in (manager.repositories, manager.policies)]


def ready_true(obj: JSON) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ref_tag(tag: str) -> Callable[[JSON], bool]:
    return lambda obj: ready_true(obj) and ((obj.get("status") or {}).get(
        "latestRef") or {}).get("tag") == tag


def image_is(image: str) -> Callable[[JSON], bool]:
    return lambda obj: ready_true(obj) and (obj.get("status") or {}).get("latestImage") == image


def manifests(version: str, image: str) -> tuple[JSON, JSON]:
    repo = {"apiVersion": f"{GROUP}/{version}", "kind": "ImageRepository",
            "metadata": {"name": "app", "namespace": NS},
            "spec": {"image": image, "interval": "1h"}}
    pol = {"apiVersion": f"{GROUP}/{version}", "kind": "ImagePolicy",
           "metadata": {"name": "app", "namespace": NS},
           "spec": {"imageRepositoryRef": {"name": "app"},
                    "policy": {"semver": {"range": ">=1.0.0"}}}}
    return repo, pol


async def test_from_flux_2_9_v1_only(spare: Cluster, flux_crds: dict[str, Path]) -> None:
    remove_crds(spare)
    apply_crds(spare, flux_crds["2.9"])
    await served(spare, "v1", "imagepolicies")
    image = "ghcr.io/org/app"
    for obj in manifests("v1", image):
        plural = "imagerepositories" if obj["kind"] == "ImageRepository" else "imagepolicies"
        spare.request("POST", path("v1", plural), obj)
    # The status Flux 2.9's controller writes.
    spare.request("PATCH", path("v1", "imagepolicies", "app", "status"), {"status": {
        "latestRef": {"name": image, "tag": "1.1.0", "digest": "sha256:" + "a" * 64},
        "observedPreviousRef": {"name": image, "tag": "1.0.0"},
        "lastHandledReconcileAt": "then", "observedGeneration": 1}},
        content_type="application/merge-patch+json")
    spare.request("PATCH", path("v1", "imagerepositories", "app", "status"), {"status": {
        "lastScanResult": {"tagCount": 2, "revision": "sha256:" + "b" * 64,
                           "scanTime": "2026-01-02T03:04:05Z", "latestTags": ["1.1.0"]},
        "canonicalImageName": image, "observedGeneration": 1}},
        content_type="application/merge-patch+json")
    before = {plural: read(spare, "v1", plural, "app")
              for plural in ("imagerepositories", "imagepolicies")}

    apply_crds(spare, OURS)  # this project's, over Flux 2.9's: no migration needed
    await served(spare, "v1beta2", "imagepolicies")
    for plural, old in before.items():
        now = same_through(spare, ("v1", "v1beta2", "v1beta1"), plural, "app")
        old.pop("apiVersion")
        assert now == old
    assert stored_versions(spare, f"imagepolicies.{GROUP}") == ["v1"]

    apply_crds(spare, flux_crds["2.9"])  # and back, as directly
    await served(spare, "v1", "imagepolicies")
    assert read(spare, "v1", "imagepolicies", "app")["status"]["latestRef"]["tag"] == "1.1.0"


async def test_from_flux_2_2_and_back(spare: Cluster, flux_crds: dict[str, Path],
                                      registry: RegistryProcess, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    remove_crds(spare)
    apply_crds(spare, flux_crds["2.2"])
    await served(spare, "v1beta2", "imagepolicies")
    # `make run`'s install-crds leaves Flux's CRDs as they are, and says what follows.
    assert await install_crds(kubeconfig=str(spare.kubeconfig)) == []
    assert sum("exists without version v1 and was left as it is; the controller will use "
               "v1beta2" in message for message in caplog.messages) == 2
    await registry.push_tags("app", ["1.0.0", "1.1.0"])
    image = registry.ref("app")
    repo, pol = manifests("v1beta2", image)
    spare.request("POST", path("v1beta2", "imagerepositories"), repo)
    spare.request("POST", path("v1beta2", "imagepolicies"), pol)
    # As Flux 2.2 left it: an image, no refs.
    spare.request("PATCH", path("v1beta2", "imagepolicies", "app", "status"), {"status": {
        "latestImage": f"{image}:1.0.0"}}, content_type="application/merge-patch+json")

    # Our controller on Flux 2.2's CRDs: v1beta2, and what the schema lacks is pruned.
    async with controller(spare, tmp_path / "data") as manager:
        assert served_versions(manager) == ["v1beta2", "v1beta2"]
        await wait_for(spare, "v1beta2", "imagepolicies", "app", image_is(f"{image}:1.1.0"))
        scanned = read(spare, "v1beta2", "imagerepositories", "app")["status"]
        assert "revision" not in scanned["lastScanResult"]
        assert "latestRef" not in read(spare, "v1beta2", "imagepolicies", "app")["status"]
        # Without a revision, a new scan still moves the policy.
        await registry.push_tags("app", ["1.2.0"])
        spare.request("PATCH", path("v1beta2", "imagerepositories", "app"), {"metadata": {
            "annotations": {meta.RECONCILE_REQUEST_ANNOTATION: "push"}}},
            content_type="application/merge-patch+json")
        await wait_for(spare, "v1beta2", "imagepolicies", "app", image_is(f"{image}:1.2.0"))

    # Upgrade: this project's CRDs over Flux 2.2's; the controller moves to v1.
    apply_crds(spare, OURS)
    await served(spare, "v1", "imagepolicies")
    assert same_through(spare, ("v1beta2", "v1"), "imagepolicies", "app")["status"][
        "latestImage"] == f"{image}:1.2.0"
    async with controller(spare, tmp_path / "data",
                          flux_compatibility=Compatibility.V1_2) as manager:
        assert served_versions(manager) == ["v1", "v1"]
        # The first reconcile seeds latestRef from latestImage; the result holds.
        obj = await wait_for(spare, "v1", "imagepolicies", "app", ref_tag("1.2.0"))
        assert obj["status"]["latestImage"] == f"{image}:1.2.0"
        # The next scan writes the revision v1beta2 could not keep.
        spare.request("PATCH", path("v1", "imagerepositories", "app"), {"metadata": {
            "annotations": {meta.RECONCILE_REQUEST_ANNOTATION: "upgraded"}}},
            content_type="application/merge-patch+json")
        await wait_for(spare, "v1", "imagerepositories", "app", lambda o: ready_true(o) and (
            o["status"]["lastScanResult"].get("revision") or "").startswith("sha256:"))
    assert stored_versions(spare, f"imagepolicies.{GROUP}") == ["v1beta2", "v1"]

    # Back to Flux 2.2, as documented: v1beta2 stored, every object rewritten, cleaned.
    sh(spare, MAKE_V1BETA2_STORAGE)
    sh(spare, REWRITE_EVERY_OBJECT)
    sh(spare, CLEAN_STORED_VERSIONS)
    apply_crds(spare, flux_crds["2.2"])
    await served(spare, "v1beta2", "imagepolicies")
    assert stored_versions(spare, f"imagepolicies.{GROUP}") == ["v1beta2"]
    status = read(spare, "v1beta2", "imagepolicies", "app")["status"]
    assert status["latestImage"] == f"{image}:1.2.0"  # what Flux 2.2's automation reads
    assert "latestRef" not in status  # Flux 2.2's schema has none: pruned on read
    repo_status = read(spare, "v1beta2", "imagerepositories", "app")["status"]
    assert repo_status["lastScanResult"]["tagCount"] == 3
