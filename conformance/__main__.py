"""``python -m conformance``: run the corpus against our controller and Flux's, side by side.

One run starts a fresh API server (``testbed``), applies ``manifests/``, starts the
registries, starts every peer asked for (``--peers``), runs every scenario for all peers
at once, records Flux's outcomes as data (``conformance/expected/<peer>.json``, used by
``make test``), compares ours with each Flux peer and writes ``docs/conformance.md``.

``make conformance`` runs it with the defaults; ``--only NAME`` runs some scenarios
(then nothing is recorded or written unless asked).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from conformance import expected, report
from conformance.kube import JSON, Kube
from conformance.model import Scenario
from conformance.peers import PEERS, running
from conformance.runner import run_scenario
from conformance.scenarios import SCENARIOS
from conformance.world import install, start_world
from testbed.build import ensure_built
from testbed.cluster import Cluster

# Scenarios run this many at a time: enough to keep both controllers busy, few enough
# that settling is not slowed by the controllers' own queues.
PARALLEL = 6


async def _run(args: argparse.Namespace, tmp: Path) -> Outcome:
    peers = [p for p in args.peers.split(",") if p]
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    bin_dir = ensure_built("controlplane", log=sys.stderr)
    cluster = Cluster(tmp / "cluster", bin_dir, tie_to_parent=True)
    cluster.up()
    started = time.monotonic()
    try:
        install(cluster)
        controller_kubeconfig = cluster.service_account_kubeconfig(
            "image-reflector-system", "image-reflector-controller",
            tmp / "controller.kubeconfig", expiration_seconds=3 * 3600)
        world = await start_world(cluster, tmp / "world")
        try:
            with ExitStack() as stack:
                for key in peers:
                    stack.enter_context(running(
                        PEERS[key], kubeconfig=controller_kubeconfig,
                        admin_kubeconfig=cluster.kubeconfig, run_dir=tmp / key))
                kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
                gate = asyncio.Semaphore(PARALLEL)
                async with Kube(cluster) as kube:
                    async def one(scenario: Scenario) -> tuple[str, dict[str, list[JSON]]]:
                        async with gate:
                            try:
                                result = await run_scenario(scenario, world, kube, peers,
                                                            kubectl)
                            except Exception as err:  # one broken scenario is reported
                                print(f"conformance: {scenario.name} FAILED: {err}",
                                      file=sys.stderr)
                                return scenario.name, {p: [{"label": "error", "settled": False,
                                                            "error": str(err), "objects": {}}]
                                                       for p in peers}
                            print(f"conformance: {scenario.name} done", file=sys.stderr)
                            return scenario.name, {p: [c.dump() for c in cps]
                                                   for p, cps in result.items()}
                    outcomes = dict(await asyncio.gather(*(one(s) for s in scenarios)))
        finally:
            await world.close()
    finally:
        cluster.down()
    elapsed = time.monotonic() - started
    return Outcome({p: {name: outcome[p] for name, outcome in outcomes.items()} for p in peers},
                   elapsed, bin_dir)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The observations of a run, per peer and scenario, and what the report needs."""

    by_peer: dict[str, JSON]
    elapsed: float
    bin_dir: Path


def _finish(args: argparse.Namespace, outcome: Outcome) -> int:
    by_peer = outcome.by_peer
    if args.dump:
        Path(args.dump).write_text(json.dumps(by_peer, indent=1, sort_keys=True))
    if args.record:
        for peer in by_peer:
            if PEERS[peer].ours:
                expected.write(peer, by_peer[peer],
                               versions=expected.versions(peer, outcome.bin_dir))
    verdicts = report.judge_all(by_peer)
    for line in report.summary_lines(verdicts):
        print(line)
    if args.write_doc:
        report.write(verdicts, by_peer, elapsed=outcome.elapsed, bin_dir=outcome.bin_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(prog="python -m conformance")
    parser.add_argument("--peers", default="ours,flux-v0.31,ours-v1.2,flux-v1.2",
                        help="comma-separated: ours, flux-v0.31, ours-v1.2, flux-v1.2 (ours "
                        "in v1.2 mode is compared with Flux v1.2)")
    parser.add_argument("--only", action="append", default=[], help="scenario name")
    parser.add_argument("--record", action="store_true",
                        help="write Flux's outcomes to conformance/expected/")
    parser.add_argument("--write-doc", action="store_true", help="write docs/conformance.md")
    parser.add_argument("--dump", help="also write the raw observations to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imagereflector-conformance-") as tmp:
        return _finish(args, asyncio.run(_run(args, Path(tmp))))


if __name__ == "__main__":
    sys.exit(main())
