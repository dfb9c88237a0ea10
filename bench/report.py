"""Writes ``docs/performance.md`` from one run's results.

The document is generated whole: machine, commands, the verdict on every target with
its number, one table per benchmark, and the analysis of missed targets with the
evidence this run gathered (the scan profile, the per-step timings, the request counts).
Analysis paragraphs are only written when the results they rest on are present, so the
document never carries placeholders; a benchmark that failed is listed with its error.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import JSON, Result, Target
from bench.soak import soak_section

KUBE_QPS = 50
KUBE_BURST = 300


@dataclass(frozen=True, slots=True)
class Plan:
    """One benchmark to run: its kind (for ``--only``) and how to run it in a tmp dir."""

    kind: str
    run: Callable[[Path], list[Result]]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _by_prefix(results: list[Result], prefix: str) -> list[Result]:
    return [r for r in results if r.name.startswith(prefix) and not r.name.endswith("-failed")]


def _one(results: list[Result], name: str) -> JSON | None:
    return next((r.data for r in results if r.name == name), None)


def _targets(results: list[Result]) -> list[str]:
    lines = ["| Target | Measured | Verdict |", "|---|---|---|"]
    targets: list[Target] = [t for r in results for t in r.targets]
    for t in targets:
        lines.append(f"| {t.text} | {t.measured} | {'met' if t.met else '**missed**'} |")
    return lines


def _scan(results: list[Result]) -> list[str]:
    rows = _by_prefix(results, "scan-10k")
    if not rows:
        return []
    out = [
        "## 1. Scan: 10,000 tags",
        "",
        "One warm `RegistryClient` (as in the controller) listing `big` (10,000 tags). "
        "`ours` is `controllers.scan.scan` (list, default exclusion, revision, latest "
        "tags); `list_tags` is the client alone; `aiohttp` is a bare `ClientSession` loop "
        "doing the same GETs with `json.loads` (the floor); `skopeo` is `skopeo list-tags` "
        "as a subprocess, and `skopeo 1-tag` the same against a 1-tag repository (process "
        "start, ping, one GET), subtracted to give `skopeo net`. `imagereflector scan` "
        "rows are our CLI as a subprocess, the process-to-process comparison. Medians in "
        "ms; the paginated shapes go through a paginating front (own process, upstream "
        "list cached) that rejects larger `n` with 400, as Quay and ECR do, so our client "
        "falls back from `n=1000` to `n=100` once and remembers it (the cold run pays it).",
        "",
        "| Shape | ours | ours + SQLite store | ours cold | list_tags alone | aiohttp | "
        "ours/aiohttp | skopeo | skopeo 1-tag | skopeo net | imagereflector scan | "
        "its 1-tag | registry requests/scan (warm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.data
        out.append(
            f"| {r.name} | {_ms(d['ours'])} | {_ms(d['ours_store'])} | {_ms(d['ours_cold'])} | "
            f"{_ms(d['ours_list'])} | {_ms(d['aiohttp'])} | {d['ratio']:.2f}x | "
            f"{_ms(d['skopeo'])} | {_ms(d['skopeo_start'])} | {_ms(d['skopeo_net'])} | "
            f"{_ms(d['cli'])} | {_ms(d['cli_start'])} | {d['requests_per_scan']:.0f} |")
    out.append("")
    out.append(f"Runs per client and shape: {rows[0].data['runs']} (CLI: a third of that, "
               "at least 3), each after one discarded warm-up.")
    out.append("")
    return out


def _fleet(results: list[Result]) -> list[str]:
    rows = _by_prefix(results, "fleet-")
    if not rows:
        return []
    out = [
        "## 2. Fleet: many ImageRepositories created at once",
        "",
        "`imagereflector controller` as its own process (`--registry-qps=0`, i.e. "
        "unlimited; default `--kube-api-qps=50 --kube-api-burst=300` unless the flags "
        "column says otherwise), the fake API server and the registry each in their own "
        "process on the same 2 cores. Objects (interval 1h) are created inside the fake's "
        "process in one go; the time runs from that create to every object Ready at its "
        "generation. Repositories are distinct names that are symlinks to one seeded "
        "repository in the registry's storage. Reconciles/s is the "
        "`controller_runtime_reconcile_total` delta over that time; API requests per scan "
        "come from the fake's request log; registry requests per scan from "
        "`imagereflector_registry_requests_total`; peak RSS is `VmHWM`.",
        "",
        "| Run | Objects x tags | --concurrent | Extra flags | All Ready (s) | "
        "Reconciles/s | API requests/scan | Registry requests/scan | Peak RSS (MiB) | "
        "RSS before the wave (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.data
        out.append(
            f"| {r.name} | {d['objects']} x {d['tags']} | {d['concurrent']} | "
            f"{d['flags'] or '-'} | {d['seconds']:.2f} | {d['reconciles_per_s']:.0f} | "
            f"{d['api_per_scan']:.2f} | {d['registry_per_scan']:.2f} | "
            f"{d['peak_rss_mib']:.1f} | {d['rss_at_ready_mib']:.1f} |")
    first = rows[0].data
    verbs = ", ".join(f"`{v}` {c:.2f}" for v, c in sorted(first["api_by_verb"].items()))
    out += ["", f"API requests per scan by verb ({rows[0].name}): {verbs}.", ""]
    return out


def _idle_startup(results: list[Result]) -> list[str]:
    out: list[str] = []
    for r in _by_prefix(results, "idle-"):
        d = r.data
        out += ["## 3. Idle", "",
                f"{d['objects']} scanned objects with `interval: 1h`, controller left alone "
                f"for {d['seconds']:.0f} s right after the wave: "
                f"{d['cpu_share'] * 100:.2f}% of one core (utime+stime from "
                f"`/proc/<pid>/stat`), RSS {d['rss_mib']:.1f} MiB.", ""]
    for r in _by_prefix(results, "startup-"):
        d = r.data
        verbs = ", ".join(f"`{v}` {int(c)}" for v, c in sorted(d["api_by_verb"].items()))
        out += ["## 6. Startup on a warm store", "",
                f"The controller of the idle run is stopped (SIGTERM) and started again on "
                f"the same storage path with the same {d['objects']} scanned objects: "
                f"`/readyz` answered 200 after {d['ready_seconds'] * 1000:.0f} ms from process "
                f"start; {d['registry_requests']:.0f} registry requests in the "
                f"{d['settle']:.0f} s after ready (nothing is due for an hour); peak RSS "
                f"{d['peak_rss_mib']:.1f} MiB. Kubernetes API requests in that window: "
                f"{verbs}.", ""]
    return out


def _store_policy(results: list[Result]) -> list[str]:
    out: list[str] = []
    d = _one(results, "store")
    if d is not None:
        out += ["## 4. Store (SqliteTagStore)", "",
                "| Operation | Total | Each |", "|---|---|---|",
                f"| write {d['objects']} objects x {d['tags']} tags | "
                f"{d['write_total']:.2f} s | {_ms(d['write_each'])} ms |",
                f"| read them back | {d['read_total']:.2f} s | {_ms(d['read_each'])} ms |",
                f"| write one object of {d['big']} tags (median) | | {_ms(d['big_write'])} ms |",
                f"| read it back (median) | | {_ms(d['big_read'])} ms |",
                "",
                f"Database files after close: {d['file_mib']:.1f} MiB.", ""]
    for r in _by_prefix(results, "policy-"):
        d = r.data
        out += [f"## 5. Policy over {d['tags']} tags", "",
                "| Policy | Median (ms) |", "|---|---|",
                f"| semver `>=0.0.0` | {_ms(d['semver'])} |",
                f"| alphabetical asc | {_ms(d['alphabetical'])} |",
                f"| numerical asc | {_ms(d['numerical'])} |",
                f"| semver behind `filterTags` (pattern + extract) | "
                f"{_ms(d['semver_filtered'])} |", ""]
    return out


def _analysis(results: list[Result], profile: str | None) -> list[str]:
    out = ["## Analysis of the missed targets", ""]
    scans = _by_prefix(results, "scan-10k")
    steps = _one(results, "scan-steps-10k")
    if any(not t.met for r in scans for t in r.targets if "aiohttp" in t.text):
        single = scans[0].data
        out += [
            "### Scan: ours vs bare aiohttp",
            "",
            f"The client itself is close to the floor: `list_tags` alone takes "
            f"{_ms(single['ours_list'])} ms against {_ms(single['aiohttp'])} ms for bare "
            f"aiohttp on the single page. The rest of `scan` "
            f"({_ms(single['ours'] - single['ours_list'])} ms) is per-tag work after the "
            "listing.",
        ]
        if steps is not None:
            out += [
                "",
                f"Measured step by step over 10,000 tags (`scan-steps-10k` below): the "
                f"default exclusion `^.*\\.sig$` costs {_ms(steps['exclusion'])} ms through "
                f"`TagFilter.apply`, {_ms(steps['exclusion_low_level'])} ms when the same RE2 "
                "program is called through google-re2's low-level `Match` without building "
                f"a `_Match` per tag; `latest_tags` {_ms(steps['latest_tags'])} ms "
                f"(byte-wise key) vs {_ms(steps['latest_tags_str'])} ms with plain `str` "
                f"order; `tags_revision` {_ms(steps['revision'])} ms vs "
                f"{_ms(steps['revision_str'])} ms.",
            ]
        out += [
            "",
            "Cause: `registry/tags.py` calls the google-re2 Python wrapper once per tag per "
            "pattern (`TagFilter.excludes` → `_Regexp.search` → generator → `_Match`), "
            "and encodes every tag to UTF-8 three times (exclusion, `latest_tags` sort key, "
            "revision).",
            "",
            "Recommended product changes (not made here; `registry/tags.py` only):",
            "",
            "1. In `TagFilter.apply`, call the compiled program's low-level `Match` (or "
            "combine all patterns into one alternation) and encode each tag once.",
            "2. Memoise exclusion verdicts per (pattern list, tag) in a bounded map: a "
            "rescan sees mostly the same tags, so steady-state filtering becomes a dict "
            "lookup per tag.",
            "3. Sort and hash `str`s directly when no tag holds a lone surrogate (Python's "
            "code-point order equals UTF-8 byte order for every encodable string); keep the "
            "byte path only for the rare undecodable tags.",
            "",
        ]
    fleet = _by_prefix(results, "fleet-")
    default_api = [r for r in fleet if not r.data["flags"]]
    if any(not t.met for r in default_api for t in r.targets):
        d = default_api[0].data
        need = d["api_per_scan"] * d["objects"]
        floor = max(0.0, (need - KUBE_BURST) / KUBE_QPS)
        verbs = ", ".join(f"`{v}` {c:.0f}" for v, c in sorted(d["api_by_verb"].items()))
        out += [
            "### Fleet: time to Ready and reconciles/s at the default API rate limit",
            "",
            f"Each first scan costs {d['api_per_scan']:.0f} Kubernetes API requests "
            f"({verbs}). The controller's client-side limiter allows {KUBE_QPS} requests/s "
            f"after a burst of {KUBE_BURST} (`--kube-api-qps`/`--kube-api-burst`, Flux's "
            f"defaults), so {d['objects']} objects need at least ({need:.0f} - {KUBE_BURST})"
            f" / {KUBE_QPS} = {floor:.1f} s whatever the CPU does; measured "
            f"{d['seconds']:.1f} s. Raising `--concurrent` does not help (the c16 row). ",
        ]
        fast = [r for r in fleet if r.data["flags"] and r.data["tags"] == 100
                and r.data["objects"] == 1000]
        if fast:
            f = fast[0].data
            out += [
                "",
                f"With the limiter opened (`{f['flags']}`) the same wave is Ready in "
                f"{f['seconds']:.1f} s at {f['reconciles_per_s']:.0f} reconciles/s: the "
                "controller itself then runs at the CPU share left by the fake API server "
                "and the registry on the same two cores.",
            ]
        out += [
            "",
            "Recommended product changes: write fewer API requests per first scan. The "
            "finalizer patch and the progress patches (`Reconciling` at the start of a new "
            "generation, then again before listing) each cost one request under the "
            "limiter, where the final status patch carries everything a reader needs; "
            "sending at most one progress patch per reconcile, and none when the scan "
            "finishes quickly, would cut the floor by about half. Raising the default "
            "`--kube-api-qps` would also work but changes Flux's documented default.",
            "",
        ]
    big = [r for r in fleet if any("RSS" in t.text and not t.met for t in r.targets)]
    if big:
        base = min(r.data["rss_at_ready_mib"] for r in fleet)
        out += [
            "### Fleet: peak RSS",
            "",
            f"The controller is already at {base:.0f} MiB RSS with no objects (imports: "
            "kubernetes_asyncio, pydantic, aiohttp, boto3/botocore, azure-identity, "
            "google-auth, prometheus_client). "
            + "; ".join(f"{r.name}: peak {r.data['peak_rss_mib']:.0f} MiB, "
                        f"{(r.data['peak_rss_mib'] - r.data['rss_at_ready_mib']) * 1024 / r.data['objects']:.0f} KiB per object above that"  # noqa: E501
                        for r in big) + ".",
            "",
            "Recommended product changes: import the cloud SDKs lazily (only "
            "`credentials/providers/` needs them, and only when `spec.provider` is set); "
            "keep one raw dict per object in the informer (no second parsed copy); drop "
            "per-object metric series' memory by not keeping label sets for objects that "
            "have been deleted.",
            "",
        ]
    for r in _by_prefix(results, "startup-"):
        patches = r.data["api_by_verb"].get("patch:imagerepositories/status", 0.0)
        if patches:
            out += [
                "### Startup: no registry requests, but status writes (met, with a cost)",
                "",
                f"The restart made no registry request, yet sent {patches:.0f} status "
                f"patches for {r.data['objects']} objects in {r.data['settle']:.0f} s (the "
                f"client limiter, {KUBE_QPS}/s after a burst of {KUBE_BURST}, is what bounds "
                "that number). A no-op reconcile of an object whose scan is not due still "
                "sends a status patch, so every restart writes every object once (not "
                "examined here: which field differs). Recommendation: find that field in "
                "the no-op path of `controllers/imagerepository.py` and skip the patch "
                "when nothing a reader uses changed, which makes a restart free for the "
                "API server.",
                "",
            ]
    if profile:
        lines = profile.strip("\n").splitlines()
        out += ["### Profile of the scan (pyinstrument, 30 warm scans of 10,000 tags)", "",
                "```", *lines[:70], "```", ""]
    if len(out) == 2:
        out += ["No target was missed in this run.", ""]
    return out


def write_report(path: Path, results: list[Result], machine: JSON, *, quick: bool,
                 profile: str | None, elapsed: float) -> None:
    """Write the whole document to ``path``."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = [r for r in results if r.name.endswith("-failed")]
    out = [
        "# Performance",
        "",
        f"Generated by `{'make bench-quick' if quick else 'make bench'}` on {now} in "
        f"{elapsed:.0f} s; every number below comes from that run. Regenerate it rather "
        "than editing it.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, `nproc` = {machine['nproc']}",
        f"- Python {machine['python']} on {machine['platform']}",
        f"- load average when the report was written: {machine['loadavg']} (the machine "
        "may be shared with other work; medians and the fleet runs are sensitive to it)",
        f"- {machine['skopeo']}; {machine['registry']}",
        "- `free -m`:",
        "",
        "```",
        machine["free"],
        "```",
        "",
        "The registry, the paginating front and the fake API server run in processes of "
        "their own on the same cores as the code measured, over loopback.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench          # every benchmark, full sizes; rewrites this file",
        "make bench-quick    # reduced sizes, one line each, < 2 min; leaves this file alone",
        ".venv/bin/python -m bench --only scan        # one kind: scan, fleet, store, policy",
        ".venv/bin/python -m bench.profile_scan       # the scan profile (needs pyinstrument)",
        "```",
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
        "## Summary lines",
        "",
        "```",
        *[r.line for r in results],
        "```",
        "",
        *_scan(results),
        *_fleet(results),
        *_idle_startup(results),
        *_store_policy(results),
    ]
    steps = _one(results, "scan-steps-10k")
    if steps is not None:
        out += ["## Scan steps over 10,000 tags (evidence)", "",
                "| Step | Product (ms) | Cheaper equivalent (ms) |", "|---|---|---|",
                f"| default exclusion | {_ms(steps['exclusion'])} | "
                f"{_ms(steps['exclusion_low_level'])} (low-level RE2 `Match`) |",
                f"| latest_tags | {_ms(steps['latest_tags'])} | "
                f"{_ms(steps['latest_tags_str'])} (`str` order) |",
                f"| tags_revision | {_ms(steps['revision'])} | "
                f"{_ms(steps['revision_str'])} (`str` order) |", ""]
    out += _analysis(results, profile)
    if failed:
        out += ["## Benchmarks that did not run", ""]
        out += [f"- {r.line}" for r in failed]
        out.append("")
    # The soak runs apart (``make soak``); its last results are carried over unchanged.
    out += soak_section()
    path.write_text("\n".join(out))
