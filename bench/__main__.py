"""``python -m bench``: run every benchmark, print one line each, optionally write the doc.

``--quick`` runs reduced sizes (all benchmarks, the side by side with 200 objects; about
a minute and a half on two quiet cores) and never writes ``docs/performance.md`` unless
``--write-doc`` is given too; the full run (``make bench``) passes ``--write-doc``.
``--out FILE`` writes the document elsewhere (to look at a quick run's rendering). A
benchmark that fails is reported as such (line and document) and the others still run.

The fleet benchmarks need the testbed binaries (kube-apiserver, etcd, kubectl and
Flux's controller v0.31.0): they are built on first use (``testbed.build``; minutes
once, then cached).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import (
    fleet_bench,
    micro_bench,
    profile_fleet,
    profile_scan,
    scan_bench,
    worst_case_bench,
)
from bench.common import REPO_ROOT, Result, machine
from bench.fleet_bench import Fleet
from bench.peers import versions
from bench.report import Plan, write_report


def plan(quick: bool) -> list[Plan]:
    """The benchmarks to run, in order, with their sizes."""
    if quick:
        return [
            Plan("scan", lambda tmp: scan_bench.run(tmp, runs=3, quick=True)),
            Plan("fleet", lambda tmp: fleet_bench.side_by_side(
                tmp, Fleet(200, 100, idle_seconds=10, restart_settle=3))),
            Plan("store", lambda tmp: [micro_bench.store(tmp, objects=100, repeats=3)]),
            Plan("policy", lambda _: [micro_bench.policy(runs=3),
                                      micro_bench.scan_steps(runs=3),
                                      micro_bench.scrape(runs=3)]),
            Plan("worst", worst_case_bench.run),
        ]
    return [
        Plan("scan", lambda tmp: scan_bench.run(tmp, runs=15, quick=False)),
        # Side by side on the real API server, ours then Flux's, each in a fresh cluster;
        # the first fleet also measures idle (2 min: Go forces a GC every 2 min, so a
        # shorter window could miss Flux's periodic work) and a restart on a warm store.
        Plan("fleet", lambda tmp: fleet_bench.side_by_side(
            tmp, Fleet(1000, 100, idle_seconds=120, restart_settle=10))),
        Plan("fleet", lambda tmp: fleet_bench.side_by_side(tmp, Fleet(1000, 100, concurrent=16))),
        Plan("fleet", lambda tmp: fleet_bench.side_by_side(tmp, Fleet(1000, 1000))),
        Plan("fleet", lambda tmp: fleet_bench.side_by_side(
            tmp, Fleet(10000, 100, within=3600))),
        Plan("store", lambda tmp: [micro_bench.store(tmp, objects=1000)]),
        Plan("policy", lambda _: [micro_bench.policy(runs=15),
                                  micro_bench.scan_steps(runs=15),
                                  micro_bench.scrape(runs=15)]),
        Plan("worst", worst_case_bench.run),
    ]


def _run_one(item: Plan, tmp: Path) -> list[Result]:
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return item.run(tmp)
    except Exception as err:
        traceback.print_exc(file=sys.stderr)
        return [Result(f"{item.kind}-failed", f"{item.kind}: FAILED: {err}",
                       {"error": str(err)})]


def main(argv: list[str] | None = None) -> int:
    """Run the plan; print lines; write the report when asked."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="reduced sizes, a few minutes")
    parser.add_argument("--write-doc", action="store_true",
                        help="write docs/performance.md from this run")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "performance.md",
                        help="where --write-doc writes (default docs/performance.md)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only these kinds (scan, fleet, store, policy, worst)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="imagereflector-bench-"))
    run_plan = [p for p in plan(args.quick) if not args.only or p.kind in args.only]
    try:
        for item in run_plan:
            for result in _run_one(item, tmp / item.kind):
                print(result.line, flush=True)
                results.append(result)
        profile: str | None = None
        if args.write_doc and not args.quick and (not args.only or "scan" in args.only):
            profile = _profile(tmp / "profile")
        fleet_profile: str | None = None
        if args.write_doc and not args.quick and _fleet_missed(results):
            fleet_profile = _profile_fleet(tmp / "fleet-profile")
        elapsed = time.monotonic() - started
        print(f"bench: {len(results)} results in {elapsed:.0f} s", flush=True)
        if args.write_doc:
            out = args.out.resolve()
            write_report(out, results, machine(), quick=args.quick, profile=profile,
                         elapsed=elapsed, versions=versions(), fleet_profile=fleet_profile)
            print(f"bench: wrote {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any(r.name.endswith("-failed") for r in results) else 0


def _fleet_missed(results: list[Result]) -> bool:
    """Whether a fleet target (side by side or our own) was missed in this run."""
    return any(not t.met for r in results if r.name.startswith("fleet-") for t in r.targets)


def _profile_fleet(tmp: Path) -> str | None:
    try:
        return profile_fleet.profile(tmp, Fleet(1000, 100)) or (
            "not taken: py-spy is not installed (.venv/bin/pip install py-spy)")
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return None


def _profile(tmp: Path) -> str | None:
    try:
        return profile_scan.profile(tmp)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
