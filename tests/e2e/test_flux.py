"""The Flux 2.2.3 CLI against this controller, as a Flux user would drive it.

``flux`` reads and patches ``image.toolkit.fluxcd.io/v1beta2`` objects and then waits on
their status the Flux way: ``flux reconcile`` sets ``reconcile.fluxcd.io/requestedAt``
and waits until ``status.lastHandledReconcileAt`` changes and the object is Current
(observedGeneration caught up, Ready True); ``flux resume`` waits for Ready after
clearing ``spec.suspend``. So these commands returning success proves the status this
controller writes is the status Flux's tooling expects.

Flux 2.2.3 has no ``flux reconcile image policy`` (its ``reconcile image`` knows
``repository`` and ``update``; a policy follows its repository's scan), so the policy
is checked through ``flux get``; the last test pins that fact, so a Flux pin that adds
the command shows up here. Today's Flux CLI, which has it, is driven in
``test_flux_latest.py``.
"""

from __future__ import annotations

import pytest

from tests.e2e.support import Cli, policy, repository
from tests.fakes.registry import RegistryProcess

pytestmark = pytest.mark.slow


def _rows(table: str, namespace: str) -> dict[str, dict[str, str]]:
    """``flux get`` tables (tab-separated, one per kind) as name -> row, in one namespace."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("\t")]
        if cells[0] == "NAMESPACE":
            header = cells
        elif header and len(cells) >= len(header) and cells[0] == namespace:
            rows[cells[1]] = dict(zip(header, cells, strict=False))
    return rows


def _single_row(table: str) -> dict[str, str]:
    """A ``flux get`` table of one object (no NAMESPACE column with ``-n``) as a row."""
    header, row = (line.split("\t") for line in table.strip().splitlines())
    return dict(zip((h.strip() for h in header), (c.strip() for c in row), strict=True))


async def test_reconcile_get_suspend_and_resume(e2e: Cli, kube_namespace: str,
                                                registry: RegistryProcess) -> None:
    ns, image = kube_namespace, registry.ref("podinfo")
    assert e2e.controller is not None
    labels = e2e.controller.label
    await registry.push_tags("podinfo", ["6.0.0", "6.1.0"])
    e2e.apply(repository("podinfo", ns, image, labels),
              policy("podinfo", ns, "podinfo", labels, ">=6.0.0 <7.0.0"))
    e2e.wait_for(ns, "imagerepository/podinfo", "condition=ready")
    e2e.wait_for(ns, "imagepolicy/podinfo", f"jsonpath={{.status.latestImage}}={image}:6.1.0")

    # flux reconcile: annotate, wait for the controller to handle it, report the scan.
    await registry.push_tags("podinfo", ["6.2.0"])
    done = e2e.flux("reconcile", "image", "repository", "podinfo", "-n", ns)
    assert f"annotating ImageRepository podinfo in {ns} namespace" in done.stderr
    assert "scan fetched 3 tags" in done.stderr
    obj = e2e.get("imagerepository", "podinfo", ns)
    requested = obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    assert obj["status"]["lastHandledReconcileAt"] == requested
    e2e.wait_for(ns, "imagepolicy/podinfo", f"jsonpath={{.status.latestImage}}={image}:6.2.0")

    # flux get images all -A: both objects, Ready, with the controller's messages.
    rows = _rows(e2e.flux("get", "images", "all", "-A").stdout, ns)
    repo, pol = rows["imagerepository/podinfo"], rows["imagepolicy/podinfo"]
    assert repo["READY"] == "True"
    assert repo["SUSPENDED"] == "False"
    assert repo["MESSAGE"] == "successful scan: found 3 tags"
    assert repo["LAST SCAN"] == obj["status"]["lastScanResult"]["scanTime"]
    assert pol["READY"] == "True"
    assert pol["LATEST IMAGE"] == f"{image}:6.2.0"
    assert pol["MESSAGE"] == f"Latest image tag for '{image}' updated from 6.1.0 to 6.2.0"

    # Suspended: flux refuses to request a reconcile, and shows it.
    done = e2e.flux("suspend", "image", "repository", "podinfo", "-n", ns)
    assert "✔ image repository suspended" in done.stderr
    assert e2e.get("imagerepository", "podinfo", ns)["spec"]["suspend"] is True
    row = _single_row(e2e.flux("get", "image", "repository", "podinfo", "-n", ns).stdout)
    assert row["NAME"] == "podinfo"
    assert row["SUSPENDED"] == "True"
    refused = e2e.flux("reconcile", "image", "repository", "podinfo", "-n", ns, check=False)
    assert refused.returncode == 1
    assert "resource is suspended" in refused.stderr

    # Resumed: flux waits until the controller reports Ready for the new generation;
    # then a reconcile picks up what was pushed meanwhile.
    await registry.push_tags("podinfo", ["6.3.0"])
    done = e2e.flux("resume", "image", "repository", "podinfo", "-n", ns)
    assert "✗" not in done.stderr, done.stderr
    assert "ImageRepository podinfo reconciliation completed" in done.stderr
    obj = e2e.get("imagerepository", "podinfo", ns)
    assert "suspend" not in obj["spec"]  # Flux's types omit a false suspend
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    done = e2e.flux("reconcile", "image", "repository", "podinfo", "-n", ns)
    assert "scan fetched 4 tags" in done.stderr
    e2e.wait_for(ns, "imagepolicy/podinfo", f"jsonpath={{.status.latestImage}}={image}:6.3.0")
    table = e2e.flux("get", "image", "policy", "podinfo", "-n", ns).stdout
    assert f"{image}:6.3.0" in table
    assert "updated from 6.2.0 to 6.3.0" in table


def test_flux_2_2_reconciles_policies_through_their_repository(cli: Cli) -> None:
    listed = cli.flux("reconcile", "image", "--help").stdout
    commands = listed.split("Available Commands:")[1].split("Flags:")[0].split()
    assert "repository" in commands
    assert "policy" not in commands
