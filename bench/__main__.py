"""``python -m bench``: run every benchmark, print one line each, optionally write the doc.

``--quick`` runs reduced sizes (all benchmarks, well under two minutes) and never writes
``docs/performance.md`` unless ``--write-doc`` is given too; the full run (``make
bench``) passes ``--write-doc``. A benchmark that fails is reported as such (line and
document) and the others still run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import fleet_bench, micro_bench, profile_scan, scan_bench, worst_case_bench
from bench.common import REPO_ROOT, Result, machine
from bench.report import Plan, write_report


def plan(quick: bool) -> list[Plan]:
    """The benchmarks to run, in order, with their sizes."""
    if quick:
        return [
            Plan("scan", lambda tmp: scan_bench.run(tmp, runs=3, quick=True)),
            Plan("fleet", lambda tmp: fleet_bench.fleet(
                tmp, "fleet-200x100", objects=200, tags=100, concurrent=4,
                idle_seconds=10, startup_settle=3)),
            Plan("store", lambda tmp: [micro_bench.store(tmp, objects=100, repeats=3)]),
            Plan("policy", lambda _: [micro_bench.policy(runs=3),
                                      micro_bench.scan_steps(runs=3),
                                      micro_bench.scrape(runs=3)]),
            Plan("worst", worst_case_bench.run),
        ]
    return [
        Plan("scan", lambda tmp: scan_bench.run(tmp, runs=15, quick=False)),
        Plan("fleet", lambda tmp: fleet_bench.fleet(
            tmp, "fleet-1000x100", objects=1000, tags=100, concurrent=4,
            idle_seconds=60, startup_settle=10)),
        Plan("fleet", lambda tmp: fleet_bench.fleet(
            tmp, "fleet-1000x100-c16", objects=1000, tags=100, concurrent=16)),
        # Default flags throughout: the controller turns its client-side API limit off when
        # the API server has Priority and Fairness, as the fake one (like every real server
        # since 1.20) announces; the raised-limit runs of the first report are no longer
        # different runs.
        Plan("fleet", lambda tmp: fleet_bench.fleet(
            tmp, "fleet-1000x1000", objects=1000, tags=1000, concurrent=4)),
        Plan("fleet", lambda tmp: fleet_bench.fleet(
            tmp, "fleet-10000x100", objects=10000, tags=100, concurrent=4, within=1800)),
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
    parser.add_argument("--quick", action="store_true", help="reduced sizes, < 2 minutes")
    parser.add_argument("--write-doc", action="store_true",
                        help="write docs/performance.md from this run")
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
        elapsed = time.monotonic() - started
        print(f"bench: {len(results)} results in {elapsed:.0f} s", flush=True)
        if args.write_doc:
            out = REPO_ROOT / "docs" / "performance.md"
            write_report(out, results, machine(), quick=args.quick, profile=profile,
                         elapsed=elapsed)
            print(f"bench: wrote {out.relative_to(REPO_ROOT)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any(r.name.endswith("-failed") for r in results) else 0


def _profile(tmp: Path) -> str | None:
    try:
        return profile_scan.profile(tmp)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
