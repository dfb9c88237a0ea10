"""Our controller against Flux's recorded outcomes, on the real API server.

``make conformance`` ran every scenario of ``conformance/scenarios.py`` against Flux's
image-reflector-controller (v0.31.0, and v1.2.4 once recorded) and kept its normalised
observations in ``conformance/expected/<peer>.json``. Here the same scenarios run against
our controller only (no Go build of Flux needed), once per ``--flux-compatibility`` mode
that has a recording, on the session's kube-apiserver; each must differ from that Flux
release's record only by the deliberate differences of ``conformance/deliberate.py``: a
regression in a message, a reason, a status field, an event or a ``kubectl get`` column
fails the scenario that shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from conformance import compare, deliberate, expected
from conformance.kube import Kube
from conformance.peers import PEERS, running
from conformance.runner import run_scenario
from conformance.scenarios import SCENARIOS
from conformance.world import start_world
from testbed.pytest_plugin import Installed

JSON = dict[str, Any]
# Every Flux release with a recording, and the mode of ours it is held against.
# Both are recorded; a missing file fails the test that reads it rather than going unnoticed.
REFERENCES = ["flux-v0.31", "flux-v1.2"]
PARALLEL = 8


@pytest.fixture(scope="module")
def recorded() -> dict[str, JSON]:
    """Flux's recorded outcomes (committed data, refreshed by ``make conformance``)."""
    return {peer: expected.read(peer) for peer in REFERENCES}


@pytest.fixture(scope="module")
def ours_outcomes(kube_installed: Installed, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[dict[str, dict[str, list[JSON]]]]:
    """Every scenario run once against our controller in each mode (real processes, the
    manifests' ServiceAccount): ``mode peer -> scenario -> checkpoints``."""
    tmp = tmp_path_factory.mktemp("conformance")
    cluster = kube_installed.cluster
    modes = [PEERS[reference].ours for reference in REFERENCES]
    with ExitStack() as stack:
        peers = [stack.enter_context(running(
            PEERS[mode], kubeconfig=kube_installed.controller_kubeconfig,
            admin_kubeconfig=cluster.kubeconfig, run_dir=tmp / mode)) for mode in modes]
        yield asyncio.run(_run_all(kube_installed, tmp, modes))
        for peer in peers:
            assert peer.alive(), peer.log.read_text()[-3000:]


async def _run_all(installed: Installed, tmp: Path,
                   modes: list[str]) -> dict[str, dict[str, list[JSON]]]:
    cluster = installed.cluster
    kubectl = [str(cluster.binary("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    world = await start_world(cluster, tmp / "world")
    gate = asyncio.Semaphore(PARALLEL)
    try:
        async with Kube(cluster) as kube:
            async def one(scenario: Any) -> tuple[str, dict[str, list[JSON]]]:
                async with gate:
                    result = await run_scenario(scenario, world, kube, modes, kubectl)
                    return scenario.name, {m: [c.dump() for c in cps]
                                           for m, cps in result.items()}
            by_scenario = dict(await asyncio.gather(*(one(s) for s in SCENARIOS)))
            return {mode: {name: outcome[mode] for name, outcome in by_scenario.items()}
                    for mode in modes}
    finally:
        await world.close()


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_scenario_matches_flux_but_for_deliberate_differences(
        name: str, reference: str, recorded: dict[str, JSON],
        ours_outcomes: dict[str, dict[str, list[JSON]]]) -> None:
    scenarios = recorded[reference]["scenarios"]
    assert name in scenarios, (
        f"no recorded outcome of {reference} for {name}: run `make conformance`")
    ours = ours_outcomes[PEERS[reference].ours][name]
    found = compare.differences(name, ours, scenarios[name])
    verdict = compare.judge(name, found, deliberate.explainer(reference))
    assert not verdict.unexplained, "\n".join(
        f"[{d.checkpoint}: {d.label}] {d.obj} {d.path}: ours={d.ours!r} flux={d.theirs!r}"
        for d in verdict.unexplained)
