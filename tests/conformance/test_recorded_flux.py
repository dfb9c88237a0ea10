"""Our controller against Flux's recorded outcomes, on the real API server.

``make conformance`` ran every scenario of ``conformance/scenarios.py`` against Flux's
image-reflector-controller v0.31.0 and recorded its normalised observations in
``conformance/expected/flux-v0.31.json``. Here the same scenarios run against our
controller only (no Go build of Flux needed), on the session's kube-apiserver, and each
one must differ from Flux's record only by the deliberate differences of
``conformance/deliberate.py``: a regression in a message, a reason, a status field, an
event or a ``kubectl get`` column fails the scenario that shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance import compare, deliberate, expected
from conformance.kube import Kube
from conformance.peers import OURS, running
from conformance.runner import run_scenario
from conformance.scenarios import SCENARIOS
from conformance.world import start_world
from testbed.pytest_plugin import Installed

JSON = dict[str, Any]
REFERENCE = "flux-v0.31"
PARALLEL = 8


@pytest.fixture(scope="module")
def recorded() -> JSON:
    """Flux's recorded outcomes (committed data, refreshed by ``make conformance``)."""
    return expected.read(REFERENCE)


@pytest.fixture(scope="module")
def ours_outcomes(kube_installed: Installed, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[dict[str, list[JSON]]]:
    """Every scenario run once against our controller (a real process, its own SA)."""
    tmp = tmp_path_factory.mktemp("conformance")
    cluster = kube_installed.cluster
    with running(OURS, kubeconfig=kube_installed.controller_kubeconfig,
                 admin_kubeconfig=cluster.kubeconfig, run_dir=tmp / "ours") as peer:
        yield asyncio.run(_run_all(kube_installed, tmp))
        assert peer.alive(), peer.log.read_text()[-3000:]


async def _run_all(installed: Installed, tmp: Path) -> dict[str, list[JSON]]:
    cluster = installed.cluster
    kubectl = [str(cluster.binary("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    world = await start_world(cluster, tmp / "world")
    gate = asyncio.Semaphore(PARALLEL)
    try:
        async with Kube(cluster) as kube:
            async def one(scenario: Any) -> tuple[str, list[JSON]]:
                async with gate:
                    result = await run_scenario(scenario, world, kube, ["ours"], kubectl)
                    return scenario.name, [c.dump() for c in result["ours"]]
            return dict(await asyncio.gather(*(one(s) for s in SCENARIOS)))
    finally:
        await world.close()


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_scenario_matches_flux_but_for_deliberate_differences(
        name: str, recorded: JSON, ours_outcomes: dict[str, list[JSON]]) -> None:
    assert name in recorded["scenarios"], (
        f"no recorded Flux outcome for {name}: run `make conformance`")
    found = compare.differences(name, ours_outcomes[name], recorded["scenarios"][name])
    verdict = compare.judge(name, found, deliberate.explain)
    assert not verdict.unexplained, "\n".join(
        f"[{d.checkpoint}: {d.label}] {d.obj} {d.path}: ours={d.ours!r} flux={d.theirs!r}"
        for d in verdict.unexplained)
