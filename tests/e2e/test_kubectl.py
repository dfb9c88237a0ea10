"""The controller process against the real API server, seen through kubectl v1.37.2.

What a user sees with kubectl: ``kubectl wait --for=condition=ready``, the printer
columns the CRDs define per version (``manifests/crds/``; v1beta2: ImageRepository
``LAST SCAN``, ``TAGS``, ``READY``, ``STATUS``, ``AGE``, ImagePolicy ``LATESTIMAGE``,
``READY``, ``STATUS``, ``AGE``; v1, which kubectl now prefers, Flux v1's: ``IMAGE``,
``TAGS``, ``READY``, ``STATUS``, ``AGE`` and ``LAST SCAN`` with ``-o wide``; ``IMAGE``,
``TAG``, ``READY``, ``STATUS``, ``AGE``), Flux v1's short names and categories,
``kubectl events --for`` with the controller's events, and a rescan requested with the
``reconcile.fluxcd.io/requestedAt`` annotation after a real push to a real
``docker-registry``. Repositories scan every 10m, so every scan after the first one here
is one a test asked for.
"""

from __future__ import annotations

import pytest

from tests.e2e.support import Cli, columns, headers, policy, repository
from tests.fakes.registry import RegistryProcess

pytestmark = pytest.mark.slow

REPO_HEADERS = ["NAME", "LAST SCAN", "TAGS", "READY", "STATUS", "AGE"]
POLICY_HEADERS = ["NAME", "LATESTIMAGE", "READY", "STATUS", "AGE"]
V1_REPO_HEADERS = ["NAME", "IMAGE", "TAGS", "READY", "STATUS", "AGE"]
V1_REPO_WIDE_HEADERS = ["NAME", "IMAGE", "TAGS", "READY", "STATUS", "LAST SCAN", "AGE"]
V1_POLICY_HEADERS = ["NAME", "IMAGE", "TAG", "READY", "STATUS", "AGE"]
# Fully qualified, kubectl reads a kind in the version named (it prefers v1 otherwise).
REPOS_V1BETA2 = "imagerepositories.v1beta2.image.toolkit.fluxcd.io"
POLICIES_V1BETA2 = "imagepolicies.v1beta2.image.toolkit.fluxcd.io"


def _create(e2e: Cli, ns: str, image: str) -> None:
    assert e2e.controller is not None
    labels = e2e.controller.label
    e2e.apply(repository("podinfo", ns, image, labels),
              policy("podinfo", ns, "podinfo", labels, ">=6.0.0 <7.0.0"))
    e2e.wait_for(ns, "imagerepository/podinfo", "condition=ready")
    e2e.wait_for(ns, "imagepolicy/podinfo", "condition=ready")


async def test_ready_columns_and_events(e2e: Cli, kube_namespace: str,
                                        registry: RegistryProcess) -> None:
    ns, image = kube_namespace, registry.ref("podinfo")
    await registry.push_tags("podinfo", ["6.0.0", "6.1.0", "6.2.0", "latest"])
    _create(e2e, ns, image)

    # v1beta2, Flux 2.2's version: this project's columns (contract A13).
    table = e2e.kubectl("get", REPOS_V1BETA2, "podinfo", "-n", ns).stdout
    assert headers(table) == REPO_HEADERS
    [row] = columns(table)
    scan_time = e2e.get("imagerepository", "podinfo", ns)["status"]["lastScanResult"]["scanTime"]
    assert row["NAME"] == "podinfo"
    assert row["LAST SCAN"] == scan_time
    assert row["TAGS"] == "4"
    assert row["READY"] == "True"
    assert row["STATUS"] == "successful scan: found 4 tags"

    table = e2e.kubectl("get", POLICIES_V1BETA2, "podinfo", "-n", ns).stdout
    assert headers(table) == POLICY_HEADERS
    [row] = columns(table)
    assert row["NAME"] == "podinfo"
    assert row["LATESTIMAGE"] == f"{image}:6.2.0"
    assert row["READY"] == "True"
    assert row["STATUS"] == f"Latest image tag for '{image}' resolved to 6.2.0"

    # v1, what kubectl shows by default now: Flux v1's columns, the same status.
    table = e2e.kubectl("get", "imagerepository", "podinfo", "-n", ns).stdout
    assert headers(table) == V1_REPO_HEADERS
    [row] = columns(table)
    assert (row["IMAGE"], row["TAGS"], row["READY"]) == (image, "4", "True")
    assert row["STATUS"] == "successful scan: found 4 tags"
    table = e2e.kubectl("get", "imagerepository", "podinfo", "-n", ns, "-o", "wide").stdout
    assert headers(table) == V1_REPO_WIDE_HEADERS
    assert next(columns(table))["LAST SCAN"] == scan_time
    table = e2e.kubectl("get", "imagepolicy", "podinfo", "-n", ns).stdout
    assert headers(table) == V1_POLICY_HEADERS
    [row] = columns(table)
    assert (row["IMAGE"], row["TAG"], row["READY"]) == (image, "6.2.0", "True")
    assert row["STATUS"] == f"Latest image tag for '{image}' resolved to 6.2.0"

    # Flux v1's short names and categories.
    for names in ("imgrepo,imgpol", "imagerepo,imagepol", "fluxcd-images", "fluxcd"):
        listed = e2e.kubectl("get", names, "-n", ns, "-o", "name").stdout.split()
        assert sorted(listed) == ["imagepolicy.image.toolkit.fluxcd.io/podinfo",
                                  "imagerepository.image.toolkit.fluxcd.io/podinfo"], names

    # The two kinds in one listing, as the README's first command shows them.
    both = e2e.kubectl("get", "imagerepositories,imagepolicies", "-n", ns).stdout
    assert "imagerepository.image.toolkit.fluxcd.io/podinfo" in both
    assert "imagepolicy.image.toolkit.fluxcd.io/podinfo" in both

    line = e2e.wait_for_event(ns, "imagerepository/podinfo", "successful scan: found 4 tags")
    assert line.split()[1:4] == ["Normal", "Succeeded", "ImageRepository/podinfo"]
    line = e2e.wait_for_event(ns, "imagepolicy/podinfo", "resolved to 6.2.0")
    assert line.split()[1:4] == ["Normal", "Succeeded", "ImagePolicy/podinfo"]
    events = e2e.kubectl("events", "-n", ns, "--for", "imagerepository/podinfo").stdout
    assert headers(events) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


async def test_annotation_rescans_and_a_pushed_tag_moves_the_policy(
        e2e: Cli, kube_namespace: str, registry: RegistryProcess) -> None:
    ns, image = kube_namespace, registry.ref("podinfo")
    await registry.push_tags("podinfo", ["6.0.0", "6.1.0"])
    _create(e2e, ns, image)
    assert e2e.get("imagepolicy", "podinfo", ns)["status"]["latestImage"] == f"{image}:6.1.0"

    # A release is pushed; the 10m interval is far off, so only the request rescans.
    await registry.push_tags("podinfo", ["6.2.0"])
    requested = "2026-01-02T03:04:05.000000006Z"
    e2e.kubectl("annotate", "--overwrite", "imagerepository/podinfo", "-n", ns,
                f"reconcile.fluxcd.io/requestedAt={requested}")
    e2e.wait_for(ns, "imagerepository/podinfo",
                 f"jsonpath={{.status.lastHandledReconcileAt}}={requested}")
    status = e2e.get("imagerepository", "podinfo", ns)["status"]
    assert status["lastScanResult"]["tagCount"] == 3
    assert status["lastScanResult"]["latestTags"][0] == "6.2.0"

    e2e.wait_for(ns, "imagepolicy/podinfo", f"jsonpath={{.status.latestImage}}={image}:6.2.0")
    e2e.wait_for_event(ns, "imagerepository/podinfo", "Normal", "successful scan: found 3 tags")
    line = e2e.wait_for_event(ns, "imagepolicy/podinfo", "Normal",
                              f"Latest image tag for '{image}' updated from 6.1.0 to 6.2.0")
    assert "Succeeded" in line


async def test_what_the_schema_accepts_and_the_controller_refuses(
        e2e: Cli, kube_namespace: str, registry: RegistryProcess) -> None:
    # The CRDs (like Flux's) require neither spec.image nor a policy kind; the controller
    # says what is wrong in Ready, and kubectl shows it in the STATUS column.
    ns = kube_namespace
    assert e2e.controller is not None
    labels = e2e.controller.label
    await registry.push_tags("podinfo", ["1.0.0"])
    no_image = repository("no-image", ns, "", labels)
    del no_image["spec"]["image"]
    no_choice = policy("no-choice", ns, "podinfo", labels, "1.x")
    no_choice["spec"]["policy"] = {}
    # The repository is scanned before the policy exists: a policy reconciled before
    # that would first be Ready=False DependencyNotReady, and, as in Flux v0.31, a later
    # InvalidPolicy only sets Stalled and leaves that older Ready=False in place.
    e2e.apply(repository("podinfo", ns, registry.ref("podinfo"), labels), no_image)
    e2e.wait_for(ns, "imagerepository/podinfo", "condition=ready")
    e2e.apply(no_choice)
    reason = 'jsonpath={.status.conditions[?(@.type=="%s")].reason}=%s'
    e2e.wait_for(ns, "imagerepository/no-image", reason % ("Ready", "ImageURLInvalid"))
    e2e.wait_for(ns, "imagepolicy/no-choice", reason % ("Stalled", "InvalidPolicy"))
    e2e.wait_for(ns, "imagepolicy/no-choice", reason % ("Ready", "InvalidPolicy"))
    [row] = columns(e2e.kubectl("get", "imagerepository", "no-image", "-n", ns).stdout)
    assert row["READY"] == "False"
    assert row["STATUS"].startswith("could not parse reference")
    [row] = columns(e2e.kubectl("get", "imagepolicy", "no-choice", "-n", ns).stdout)
    assert row["READY"] == "False"
    assert row["STATUS"] == "invalid policy: given ImagePolicyChoice object is invalid"
    e2e.wait_for_event(ns, "imagepolicy/no-choice", "Warning", "ImagePolicyChoice")
