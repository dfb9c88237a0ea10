"""Today's Flux CLI (2.9.5) against this controller in ``--flux-compatibility=v1.2``.

Flux 2.6 and later read and patch ``image.toolkit.fluxcd.io/v1`` and have the ImagePolicy
commands Flux 2.2 lacks: ``flux reconcile image policy`` sets
``reconcile.fluxcd.io/requestedAt`` on the policy and waits until
``status.lastHandledReconcileAt`` matches and the policy is Ready for its generation;
``flux suspend``/``resume image policy`` set and clear ``spec.suspend``, ``resume``
waiting for the reconcile. These commands succeeding, and ``flux get`` printing the v1
columns (``latestRef``) and the v1.2 messages, show that the v1 status this controller
writes is the one today's Flux tooling waits for. The objects are written through v1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from testbed.build import ensure_built
from testbed.pytest_plugin import Installed
from tests.e2e.support import Cli, policy, repository, start_controller
from tests.e2e.test_flux import _rows, _single_row
from tests.fakes.registry import RegistryProcess

pytestmark = pytest.mark.slow

V1 = "image.toolkit.fluxcd.io/v1"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


@pytest.fixture(scope="module")
def latest(kube_installed: Installed, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Cli]:
    """The newest Flux CLI (built once, like the control plane), and a controller in
    v1.2 mode watching this module's objects."""
    flux = ensure_built("flux-latest", log=sys.__stderr__) / "flux"
    controller = start_controller(kube_installed, tmp_path_factory.mktemp("controller"),
                                  request.module.__name__, ["--flux-compatibility=v1.2"])
    cli = Cli(kube_installed.cluster, tmp_path_factory.mktemp("kubecache"),
              controller=controller, flux_binary=flux)
    try:
        yield cli
    finally:
        code = controller.stop()
    assert code == 0, f"controller exited {code}:\n{controller.tail()}"


def test_it_is_the_newest_flux(latest: Cli) -> None:
    assert latest.flux("version", "--client").stdout.strip() == "flux: v2.9.5"


async def test_reconcile_suspend_and_resume_policies(latest: Cli, kube_namespace: str,
                                                     registry: RegistryProcess) -> None:
    ns, image = kube_namespace, registry.ref("podinfo")
    assert latest.controller is not None
    labels = latest.controller.label
    await registry.push_tags("podinfo", ["6.0.0", "6.1.0"])
    latest.apply({**repository("podinfo", ns, image, labels), "apiVersion": V1},
                 {**policy("podinfo", ns, "podinfo", labels, ">=6.0.0 <7.0.0"),
                  "apiVersion": V1})
    latest.wait_for(ns, "imagepolicy/podinfo", "jsonpath={.status.latestRef.tag}=6.1.0")

    await registry.push_tags("podinfo", ["6.2.0"])
    done = latest.flux("reconcile", "image", "repository", "podinfo", "-n", ns)
    assert "✔ scan fetched 3 tags" in done.stderr

    # The policy's own reconcile request: handled, and reported with its ref.
    done = latest.flux("reconcile", "image", "policy", "podinfo", "-n", ns)
    assert f"annotating ImagePolicy podinfo in {ns} namespace" in done.stderr
    assert f"✔ selected ref {image}:6.2.0" in done.stderr
    obj = latest.get("imagepolicy", "podinfo", ns)
    assert obj["apiVersion"] == V1
    assert obj["status"]["lastHandledReconcileAt"] == obj["metadata"]["annotations"][
        REQUESTED_AT]
    assert obj["status"]["latestRef"] == {"name": image, "tag": "6.2.0"}
    assert obj["status"]["observedPreviousRef"] == {"name": image, "tag": "6.1.0"}

    # flux get: v1's columns (IMAGE and TAG from latestRef) and v1.2's messages.
    rows = _rows(latest.flux("get", "images", "all", "-A").stdout, ns)
    repo, pol = rows["imagerepository/podinfo"], rows["imagepolicy/podinfo"]
    assert repo["READY"] == "True"
    assert repo["MESSAGE"].startswith("successful scan: found 3 tags with checksum sha256:")
    assert (pol["IMAGE"], pol["TAG"], pol["READY"]) == (image, "6.2.0", "True")
    assert pol["MESSAGE"] == (f"Latest image tag for {image} resolved to 6.2.0 "
                              f"(previously {image}:6.1.0)")

    # Suspended: the policy keeps its choice, flux refuses to request a reconcile.
    done = latest.flux("suspend", "image", "policy", "podinfo", "-n", ns)
    assert "✔ image policy suspended" in done.stderr
    assert latest.get("imagepolicy", "podinfo", ns)["spec"]["suspend"] is True
    refused = latest.flux("reconcile", "image", "policy", "podinfo", "-n", ns, check=False)
    assert refused.returncode == 1
    assert "resource is suspended" in refused.stderr

    # A scan while the policy is suspended does not move it: a request made by hand after
    # the scan is noted (so the controller has looked at the policy since), nothing more.
    # Resuming moves it, and flux waits for that reconcile.
    await registry.push_tags("podinfo", ["6.3.0"])
    latest.flux("reconcile", "image", "repository", "podinfo", "-n", ns)
    latest.kubectl("annotate", "--overwrite", "imagepolicy/podinfo", "-n", ns,
                   f"{REQUESTED_AT}=after-the-scan")
    latest.wait_for(ns, "imagepolicy/podinfo",
                    "jsonpath={.status.lastHandledReconcileAt}=after-the-scan")
    assert latest.get("imagepolicy", "podinfo", ns)["status"]["latestRef"]["tag"] == "6.2.0"
    done = latest.flux("resume", "image", "policy", "podinfo", "-n", ns)
    assert "✗" not in done.stderr, done.stderr
    assert "✔ ImagePolicy podinfo reconciliation completed" in done.stderr
    assert f"✔ selected ref {image}:6.3.0" in done.stderr
    row = _single_row(latest.flux("get", "image", "policy", "podinfo", "-n", ns).stdout)
    assert (row["NAME"], row["TAG"], row["READY"]) == ("podinfo", "6.3.0", "True")
