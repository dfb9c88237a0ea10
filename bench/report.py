"""Writes ``docs/performance.md`` from one run's results.

The document is generated whole: machine and versions (Kubernetes, etcd, Flux's
controller, our commit), which server each section's figures come from, commands, the
verdict on every target with its number, the side-by-side table (ours, Flux's, ratio,
target), one table per benchmark, and the analysis of missed targets with the evidence
this run gathered (the scan profile, the per-step timings, the request counts, server CPU
per request, the fleet profile). Analysis paragraphs are only written when the results
they rest on are present, so the document never carries placeholders; a benchmark that
failed is listed with its error. The soak section is rendered from its own results file
(``make soak``), labelled with the API server it ran against.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.common import JSON, Result, Target
from bench.soak import soak_section, soak_source_row


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


def _num(value: float, unit: str, digits: int = 2) -> str:
    return f"{value:.{digits}f}{unit}"


def _ratio(ours: float, flux: float) -> str:
    if flux <= 0:
        return "-" if ours <= 0 else "n/a (Flux's 0)"
    return f"{ours / flux:.2f}x"


def _fleet_label(d: JSON) -> str:
    c = "" if d["concurrent"] == 4 else f", --concurrent {d['concurrent']}"
    return f"{d['objects']:,} x {d['tags']:,} tags{c}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "**missed**")


# (label, key, unit, digits, target ratio: ours/flux must be <= this, or None)
_WAVE_ROWS: Final = (
    ("time until all Ready", "seconds", " s", 2, 1.0),
    ("reconciles/s", "reconciles_per_s", "", 0, None),
    ("peak RSS", "peak_rss_mib", " MiB", 1, 0.5),
    ("CPU seconds for the wave", "cpu_seconds", " s", 1, None),
    ("API requests per scan", "api_per_scan", "", 2, None),
    ("registry requests per scan", "registry_per_scan", "", 2, 1.0),
)


def _side_rows(fleets: list[Result]) -> list[str]:
    out: list[str] = []
    for label, key, unit, digits, limit in _WAVE_ROWS:
        for r in fleets:
            o, f = r.data["ours"], r.data["flux"]
            if not (o.get("ok") and f.get("ok")):
                failed = "ours" if not o.get("ok") else "Flux's"
                out.append(f"| {label} | {_fleet_label(r.data)} | {failed} run failed | | | | |")
                continue
            ov, fv = float(o[key]), float(f[key])
            target = "-" if limit is None else (
                "<= 1.0x" if limit == 1.0 else f"<= {limit}x")
            met = None if limit is None else (ov <= limit * fv)
            out.append(f"| {label} | {_fleet_label(r.data)} | {_num(ov, unit, digits)} | "
                       f"{_num(fv, unit, digits)} | {_ratio(ov, fv)} | {target} | "
                       f"{_verdict(met)} |")
    return out


def _idle_rows(results: list[Result]) -> list[str]:
    out: list[str] = []
    for r in _by_prefix(results, "idle-"):
        o, f = r.data["ours"], r.data["flux"]
        if not (o.get("ok") and f.get("ok")):
            out.append(f"| idle CPU and RSS | {r.data['objects']:,} scanned, 1 h interval | "
                       "run failed | | | | |")
            continue
        label = f"{r.data['objects']:,} scanned, 1 h interval, {o['seconds']:.0f} s"
        out.append(f"| idle CPU (share of one core) | {label} | {o['cpu_share'] * 100:.3f}% | "
                   f"{f['cpu_share'] * 100:.3f}% | {_ratio(o['cpu_share'], f['cpu_share'])} | "
                   f"<= Flux's | {_verdict(o['cpu_share'] <= f['cpu_share'])} |")
        out.append(f"| idle RSS | {label} | {o['rss_mib']:.1f} MiB | {f['rss_mib']:.1f} MiB | "
                   f"{_ratio(o['rss_mib'], f['rss_mib'])} | - | - |")
    for r in _by_prefix(results, "restart-"):
        o, f = r.data["ours"], r.data["flux"]
        n = f"{r.data['objects']:,} objects, warm store"
        if not (o.get("ok") and f.get("ok")):
            out.append(f"| restart | {n} | run failed | | | | |")
            continue
        for label, key, scale, unit in (
                ("restart: process start to /readyz 200", "ready_s", 1000.0, " ms"),
                ("restart: process start to every object reconciled once", "reconciled_s",
                 1.0, " s"),
                ("restart: registry requests", "registry_requests", 1.0, ""),
                ("restart: API requests", "api_requests", 1.0, "")):
            ov, fv = o[key] * scale, f[key] * scale
            digits = 2 if unit == " s" else 0
            out.append(f"| {label} | {n} | {_num(ov, unit, digits)} | {_num(fv, unit, digits)} "
                       f"| {_ratio(ov, fv)} | - | - |")
    return out


def _side_by_side(results: list[Result], versions: JSON) -> list[str]:
    fleets = _by_prefix(results, "fleet-")
    if not fleets:
        return []
    kube = fleets[0].data.get("kubernetes", "unknown")
    out = [
        "## 2. Side by side: ours and Flux's image-reflector-controller",
        "",
        f"Same API server (the real kube-apiserver {kube} with etcd "
        f"{versions.get('etcd', '')}, built by `testbed` from `tools/controlplane`), same "
        "registry (the real `docker-registry`, one process per fleet, seeded once), same "
        "objects, one run: each controller alone in turn, ours (`imagereflector "
        f"{versions.get('ours', '')}`) then Flux's image-reflector-controller "
        f"{versions.get('flux', 'v0.31.0')} (built from `tools/flux-v2.2`). Ratio is ours / "
        "Flux's (below 1 is ours smaller or faster).",
        "",
        "| measure | fleet | ours | Flux's | ratio | target | target met? |",
        "|---|---|---|---|---|---|---|",
        *_side_rows(fleets),
        *_idle_rows(results),
        "",
        "How each figure is taken (`bench/fleet_bench.py`, `bench/kube.py`, "
        "`bench/peers.py`):",
        "",
        "- **Fresh cluster per controller and fleet.** etcd starts empty; `manifests/` is "
        "applied with `kubectl apply --server-side -k`. Ours runs as the manifests' "
        "ServiceAccount (its shipped RBAC); Flux's as a ServiceAccount bound to "
        "`cluster-admin` (our ClusterRole is not Flux's). Both are therefore ServiceAccounts "
        "in the same API Priority and Fairness class (`service-accounts`, `workload-low`).",
        "- **Flags.** Those both have, set alike: `--concurrent` (4 unless the fleet says "
        "otherwise), `--storage-path` (a fresh directory), `--metrics-addr` and "
        "`--health-addr` on loopback ports, `--enable-leader-election=false`, "
        "`--log-level=info`; everything else at each one's defaults (both default to "
        "`--kube-api-qps=50 --kube-api-burst=300` and JSON logs; Flux's Badger store keeps "
        "its default `--storage-value-log-file-size`; ours keeps its default "
        "`--flux-compatibility=v0.31`, the release it is compared with). Ours also gets "
        "`--registry-qps=0`: "
        "its per-host limit (10/s by default) would throttle a benchmark that scans one "
        "registry host thousands of times, and Flux has no such limit.",
        "- **The wave.** With the controller ready (`/readyz` 200, then 1 s), the bench "
        "opens a watch of ImageRepositories and creates the N objects (interval 1h, each its "
        "own repository: symlinks to one seeded repository) with 16 concurrent POSTs as the "
        "cluster admin. *Time until all Ready* runs from the first POST until the watch has "
        "seen the N-th object `Ready=True` at its generation; the creation alone is in the "
        "detail table. *Reconciles/s* is the `controller_runtime_reconcile_total"
        "{controller=\"imagerepository\"}` delta (both export it) over that time; Flux's "
        "counts two reconciles for each new object (the first only adds the finalizer and "
        "requeues), ours one, so the time until all Ready is the figure to compare.",
        "- **Peak RSS** is `VmHWM` of the controller process, read when the last object is "
        "Ready; **CPU seconds** the `utime+stime` delta from before the first POST to that "
        "moment (`/proc/<pid>/stat`); *waited for a core* (detail table) the time its "
        "threads were runnable but not running (`/proc/<pid>/task/*/schedstat`), which "
        "shows how much the other processes on the two cores held it back.",
        "- **API requests per scan**: the API server's own count of the requests it "
        "dispatched for the `service-accounts` flow schema "
        "(`apiserver_flowcontrol_dispatched_requests_total`), divided by N. Only the "
        "controller's requests fall in it (the bench and the API server's loopback client "
        "are `system:masters`, dispatched as `exempt`), watches included, and nothing sits "
        "between controller and API server. The recording proxy (`tests/fakes/kubeproxy.py`) "
        "was not used: a Python hop handling every request would take CPU from the same two "
        "cores and add latency to exactly what is timed, and the controllers would speak "
        "plain HTTP to it instead of TLS. Each controller's own "
        "`rest_client_requests_total` is shown beside it as a cross-check; the breakdown by "
        "verb is the API server's `apiserver_request_total` less the bench's own requests. "
        "Counted 2 s after the last Ready, so events sent after the status write count with "
        "their scan.",
        "- **Registry requests per scan**: the registry's own counter "
        "(`registry_http_requests_total` from `docker-registry`'s Prometheus endpoint), "
        "divided by N. Flux's controller has no registry metric; counting at the registry "
        "treats both alike and puts nothing in the path.",
        "- **Idle**: after the first fleet's wave and 5 s of settling, the controller left "
        "alone; `utime+stime` over the window as a share of one core, `VmRSS` at the end.",
        "- **Restart**: SIGTERM, then the same controller on the same storage path and the "
        "same (scanned, not yet due) objects: process start to `/readyz` 200 (polled every "
        "5 ms), and to `controller_runtime_reconcile_total{controller=\"imagerepository\"}` "
        "reaching N (polled every 100 ms); registry and API requests from the start until "
        "the settle time after the later of the two.",
        "",
        "Detail per run:",
        "",
        "| fleet | controller | create (s) | all Ready (s) | reconciles | reconciles/s | "
        "CPU (s) | CPU share | waited for a core (s) | peak RSS (MiB) | "
        "RSS before the wave (MiB) | API requests/scan (server) | (client's own count) | "
        "registry requests/scan | kube-apiserver CPU (s) | etcd CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fleets:
        for key, title in (("ours", "ours"), ("flux", "Flux's")):
            w = r.data[key]
            if not w.get("ok"):
                out.append(f"| {_fleet_label(r.data)} | {title} | FAILED: "
                           f"{str(w.get('error'))[:200]} |" + " |" * 14)
                continue
            out.append(
                f"| {_fleet_label(r.data)} | {title} | {w['create_seconds']:.2f} | "
                f"{w['seconds']:.2f} | {w['reconciles']:.0f} | {w['reconciles_per_s']:.0f} | "
                f"{w['cpu_seconds']:.1f} | {w['cpu_seconds'] / w['seconds'] * 100:.0f}% | "
                f"{w.get('cpu_wait_seconds', 0.0):.1f} | "
                f"{w['peak_rss_mib']:.1f} | {w['rss_before_mib']:.1f} | "
                f"{w['api_per_scan']:.2f} | {w['client_api_per_scan']:.2f} | "
                f"{w['registry_per_scan']:.2f} | {w['apiserver_cpu_seconds']:.1f} | "
                f"{w['etcd_cpu_seconds']:.1f} |")
    first = fleets[0]
    for key, title in (("ours", "Ours"), ("flux", "Flux's")):
        w = first.data[key]
        if not w.get("ok"):
            continue
        verbs = ", ".join(f"`{v}` {c:.2f}" for v, c in w["api_by_verb"].items())
        handlers = ", ".join(f"`{h}` {c:.2f}" for h, c in w["registry_by_handler"].items())
        out += ["", f"{title} requests per scan by kind ({_fleet_label(first.data)}): API "
                f"{verbs}; registry {handlers} (`base` is the `GET /v2/` ping, `tags` the "
                "tag list)."]
    out.append("")
    return out


def _idle_startup(results: list[Result]) -> list[str]:
    out: list[str] = []
    for r in _by_prefix(results, "idle-"):
        out += ["## 3. Idle", ""]
        for key, title in (("ours", "Ours"), ("flux", "Flux's")):
            d = r.data[key]
            if not d.get("ok"):
                out.append(f"- {title}: FAILED: {d.get('error')}")
                continue
            out.append(
                f"- {title}: {r.data['objects']} scanned objects with `interval: 1h`, left "
                f"alone for {d['seconds']:.0f} s after the wave: {d['cpu_seconds']:.2f} CPU "
                f"seconds, {d['cpu_share'] * 100:.3f}% of one core; RSS "
                f"{d['rss_mib']:.1f} MiB; {d['api_requests']:.0f} API and "
                f"{d['registry_requests']:.0f} registry requests meanwhile.")
        out.append("")
    for r in _by_prefix(results, "restart-"):
        out += ["## 6. Restart on a warm store", ""]
        for key, title in (("ours", "Ours"), ("flux", "Flux's")):
            d = r.data[key]
            if not d.get("ok"):
                out.append(f"- {title}: FAILED: {d.get('error')}")
                continue
            verbs = ", ".join(f"`{v}` {int(c)}" for v, c in d["api_by_verb"].items()) or "none"
            out.append(
                f"- {title}: stopped (SIGTERM) and started again on the same storage path "
                f"with the same {r.data['objects']} scanned objects: `/readyz` 200 after "
                f"{d['ready_s'] * 1000:.0f} ms, every object reconciled once after "
                f"{d['reconciled_s']:.2f} s ({d['cpu_to_reconciled_s']:.2f} CPU seconds); "
                f"{d['registry_requests']:.0f} registry requests and "
                f"{d['api_requests']:.0f} API requests in the first {d['window_s']:.1f} s "
                f"(nothing is due for an hour); peak RSS {d['peak_rss_mib']:.1f} MiB. API "
                f"requests by kind (watches are counted when they end, so open ones are "
                f"not here): {verbs}.")
        out.append("")
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
    for r in _by_prefix(results, "scrape-"):
        d = r.data
        mib = 1024 * 1024
        out += [f"## 7. Metrics scrape of {d['objects']:,} objects", "",
                "The `/metrics` body with every object's `gotk_*` series (condition, "
                "suspend, duration histogram), medians of "
                f"{d['runs']}; peak is the most memory Python allocations held at once "
                "while the body was produced (`tracemalloc`).", "",
                "| Body | Size | Time (ms) | Peak allocation |", "|---|---|---|---|",
                f"| streamed in pieces (what `/metrics` serves) | {d['bytes'] / mib:.1f} MiB "
                f"| {_ms(d['streamed'])} | {d['peak_streamed'] / mib:.2f} MiB |",
                f"| built whole (`Metrics.exposition`) | {d['bytes'] / mib:.1f} MiB | "
                f"{_ms(d['whole'])} | {d['peak_whole'] / mib:.1f} MiB |", ""]
    return out


# The first full run (2026-11-23, before the changes below) against this run.
_BEFORE: Final = (
    ("scan, one page: ours vs bare aiohttp", "2.51x (32.1 ms vs 12.8 ms)",
     "exclusion filter through RE2's own Match on one joined pattern, verdicts remembered "
     "per pattern list, one string sort for latest tags and revision, tag type check in C "
     "(registry/tags.py, registry/pages.py)", "scan-10k-single", "ratio"),
    ("scan, pages of 1,000: ours vs bare aiohttp", "5.25x (26.2 ms vs 5.0 ms)",
     "the same", "scan-10k-pages-1000", "ratio"),
    ("fleet 1,000 x 100 at the default flags: time to all Ready",
     "94.2 s (11 reconciles/s; on the fake API server)",
     "client-side API rate limit off when the API server has Priority and Fairness, as "
     "Flux does (every server since 1.20; the fake API server sends the headers like a real "
     "one); events on a client with a limit of their own", "fleet-1000x100", "seconds"),
    ("startup on a warm store: status patches", "804 patches in 10 s (fake API server)",
     "unchanged conditions keep their lastTransitionTime, so a no-op reconcile writes "
     "nothing", "restart-1000", "patches"),
    ("controller RSS before any object", "117 MiB (importing the package, measured by hand "
     "before the change; the first full run already had it)",
     "kubernetes_asyncio's generated API and model classes and the cloud SDKs are imported "
     "only on demand", "fleet-1000x100", "rss_at_ready"),
    ("fleet 10,000 x 100: peak RSS", "289.5 MiB (fake API server)",
     "the above, plus per-object metric series stored compactly (a scrape of 10,000 objects "
     "went from ~2 s of CPU to 0.09 s)", "fleet-10000x100", "peak_rss"),
    ("fleet 1,000 x 100, --concurrent 16: peak RSS",
     "79.5 MiB (0.50x Flux's 157.4 MiB, target missed; run of 2026-12-04 21:35)",
     "glibc malloc arenas capped at 2 before any thread starts (app/malloc.py; a quick "
     "200-object run went from 68.0 to 66.2 MiB with it), and the workers of a fresh "
     "process share one TLS context build instead of each reading the trust store "
     "(registry/transport.py; 7.7% of the on-CPU samples of the fleet profile were "
     "load_default_certs)", "fleet-1000x100-c16", "peak_rss"),
    ("a /metrics scrape of 10,000 objects: memory held at once",
     "46.9 MiB (the body built whole, measured by hand before the change; the soak saw "
     "RSS step from 135 to 167 MiB and back for 10 to 20 s after scrapes)",
     "the body is produced and written in 64 KiB pieces (chunked transfer encoding)",
     "scrape-10k", "peak_streamed"),
)


def _after(results: list[Result], name: str, what: str) -> str:
    found = _one(results, name)
    if found is not None and isinstance(found.get("ours"), dict):  # side by side: our half
        found = found["ours"]
        if not found.get("ok"):
            return "failed in this run"
    if found is None:
        return "not measured in this run"
    if what == "ratio":
        return f"{found['ours'] / found['aiohttp']:.2f}x ({_ms(found['ours'])} ms vs " \
               f"{_ms(found['aiohttp'])} ms)"
    if what == "seconds":
        return (f"{found['seconds']:.1f} s ({found['reconciles_per_s']:.0f} reconciles/s; "
                "real API server)")
    if what == "patches":
        patches = found["api_by_verb"].get("PATCH imagerepositories/status", 0.0)
        return f"{patches:.0f} patches in {found['window_s']:.0f} s (real API server)"
    if what == "peak_streamed":
        return f"{found['peak_streamed'] / (1024 * 1024):.2f} MiB"
    if what == "rss_at_ready":
        return f"{found['rss_before_mib']:.0f} MiB"
    return f"{found['peak_rss_mib']:.1f} MiB (real API server)"


def _missed(results: list[Result], word: str) -> list[Result]:
    """The results with a missed target whose text names ``word``."""
    return [r for r in results if any(not t.met for t in r.targets if word in t.text)]


def _analysis(results: list[Result], profile: str | None) -> list[str]:
    out = ["## What was changed to meet the targets (before → after)", "",
           "Each row was found by this harness (profile or request counts), fixed in the "
           "product, and re-measured here.", "",
           "| measurement | before | change | after (this run) |", "|---|---|---|---|"]
    for label, before, change, name, what in _BEFORE:
        out.append(f"| {label} | {before} | {change} | {_after(results, name, what)} |")
    out += ["", "## Analysis of the targets still missed", ""]
    missed_before = len(out)
    scans = _by_prefix(results, "scan-10k")
    steps = _one(results, "scan-steps-10k")
    missed_scans = _missed(scans, "aiohttp")
    if missed_scans:
        out += ["### Scan: ours vs bare aiohttp", ""]
        for r in missed_scans:
            d = r.data
            out.append(
                f"- {r.name}: `list_tags` alone {_ms(d['ours_list'])} ms against bare aiohttp "
                f"{_ms(d['aiohttp'])} ms; the rest of the scan "
                f"({_ms(d['ours'] - d['ours_list'])} ms) is the per-tag work a bare loop "
                "does not do: the exclusion list, the ten latest tags and the revision.")
        if steps is not None:
            out += [
                "",
                f"Over 10,000 tags that work is now: exclusion {_ms(steps['exclusion_cold'])} "
                f"ms on a first pass and {_ms(steps['exclusion_warm'])} ms on a rescan "
                f"(google-re2's public `search` per tag: {_ms(steps['exclusion_naive'])} ms); "
                f"latest tags and revision together {_ms(steps['summary'])} ms. When the "
                "listing itself is fast (large pages on loopback), this fixed work weighs "
                "more in the ratio; it is the cost of the status the controller must write, "
                "not of the client.",
            ]
        out.append("")
    slower = _missed(scans, "skopeo")
    if slower:
        out += ["### Scan: ours vs skopeo", ""]
        for r in slower:
            d = r.data
            out.append(
                f"- {r.name}: ours {_ms(d['ours'])} ms against skopeo's listing "
                f"{_ms(d['skopeo_net'])} ms, which is skopeo's median run "
                f"({_ms(d['skopeo'])} ms) less its median 1-tag run "
                f"({_ms(d['skopeo_start'])} ms)." + (
                    f" From the quartiles of those runs the listing lies between "
                    f"{_ms(d['skopeo_net_low'])} and {_ms(d['skopeo_net_high'])} ms, so "
                    "this verdict is within the noise of timing whole processes."
                    if "skopeo_net_low" in d and d["skopeo_net_low"] <= d["ours"]
                    <= d["skopeo_net_high"] else ""))
        out.append("")
    out += _fleet_analysis(results)
    if len(out) == missed_before:
        out += ["No target was missed in this run.", ""]
    if profile:
        lines = profile.strip("\n").splitlines()
        out += ["## Profile of the scan (pyinstrument, 30 warm scans of 10,000 tags)", "",
                "```", *lines[:70], "```", ""]
    return out


def _per_object_kib(w: JSON, objects: int) -> float:
    return float(w["peak_rss_mib"] - w["rss_before_mib"]) * 1024 / objects


def _fleet_analysis(results: list[Result]) -> list[str]:
    """Evidence for each missed fleet target, from the figures of this run."""
    out: list[str] = []
    fleet = _by_prefix(results, "fleet-")
    big = [r for r in fleet if any("RSS" in t.text and not t.met for t in r.targets)]
    if big:
        out += ["### Fleet: peak RSS", "",
                "Peak RSS is the process before any object plus what the objects add; the "
                "first part is the interpreter and the imported libraries, the second grows "
                "with the fleet.", ""]
        for r in big:
            o, f, n = r.data["ours"], r.data["flux"], r.data["objects"]
            line = (f"- {r.name}: ours peak {o['peak_rss_mib']:.1f} MiB = "
                    f"{o['rss_before_mib']:.1f} MiB before the wave + "
                    f"{_per_object_kib(o, n):.1f} KiB per object")
            if f.get("ok"):
                line += (f"; Flux's peak {f['peak_rss_mib']:.1f} MiB = "
                         f"{f['rss_before_mib']:.1f} MiB before the wave + "
                         f"{_per_object_kib(f, n):.1f} KiB per object. Half of Flux's peak "
                         f"is {f['peak_rss_mib'] / 2:.1f} MiB")
                if o["rss_before_mib"] > f["peak_rss_mib"] / 2:
                    line += (", less than ours holds before the first object: no per-object "
                             "saving can reach the target at this size")
            out.append(line + ".")
        out.append("")
    slow = [r for r in fleet if any(("Ready" in t.text or "reconciles" in t.text)
                                    and not t.met for t in r.targets)]
    if slow:
        out += ["### Fleet: time to all Ready", "",
                "Where the wave's time goes, per controller: its own CPU share of the wall "
                "time (near 100% the one Python process is the bottleneck; Go's can exceed "
                "it), and the CPU kube-apiserver and etcd spent over the wave divided by the "
                "controller's requests (an upper bound per request: the servers also "
                "served the N creates and the bench's watch). On two shared cores the "
                "controller, kube-apiserver, etcd and the bench compete; every request a "
                "scan makes costs server CPU, so requests per scan times server CPU per "
                "request bounds the scans per second the machine can serve.", ""]
        for r in slow:
            n = r.data["objects"]
            for key, title in (("ours", "ours"), ("flux", "Flux's")):
                w = r.data[key]
                if not w.get("ok"):
                    continue
                requests = w["api_per_scan"] * n
                server_ms = (w["apiserver_cpu_seconds"] + w["etcd_cpu_seconds"]) * 1000
                per_scan = server_ms / n
                busy = (w["cpu_seconds"] + w["apiserver_cpu_seconds"]
                        + w["etcd_cpu_seconds"]) / w["seconds"]
                out.append(
                    f"- {r.name}, {title}: {w['seconds']:.1f} s; own CPU "
                    f"{w['cpu_seconds']:.1f} s ({w['cpu_seconds'] / w['seconds'] * 100:.0f}% "
                    f"of one core, {w['cpu_seconds'] * 1000 / n:.1f} ms per scan), runnable "
                    f"but waiting for a core {w.get('cpu_wait_seconds', 0.0):.1f} s; "
                    f"{w['api_per_scan']:.2f} API requests per scan, each costing the "
                    f"kube-apiserver up to {w['apiserver_cpu_seconds'] * 1000 / requests:.1f} "
                    f"ms and etcd up to {w['etcd_cpu_seconds'] * 1000 / requests:.1f} ms of "
                    f"CPU, i.e. {per_scan:.1f} ms of server CPU per scan (at most "
                    f"{1000 / per_scan if per_scan else 0:.0f} scans/s per core given to "
                    f"the servers); controller + kube-apiserver + etcd kept {busy:.2f} "
                    "cores busy.")
                if key == "ours" and per_scan:
                    out.append(
                        f"  At that cost, 100 scans/s (this project's own target, set on "
                        f"the fake API server, whose requests cost next to no CPU) would "
                        f"need {per_scan * 100 / 1000:.1f} cores for kube-apiserver and "
                        f"etcd alone; the machine has {os.cpu_count()}, shared with the "
                        "controller and the bench. Fewer requests per scan is the lever: "
                        "ours makes the finalizer patch, the progress patches Flux makes "
                        "(new generation, then scanning) and the final one, and its event.")
        out.append("")
    more = [r for r in fleet if any("registry requests" in t.text and not t.met
                                    for t in r.targets)]
    if more:
        out += ["### Fleet: registry requests per scan", ""]
        for r in more:
            o, f = r.data["ours"], r.data["flux"]
            out.append(f"- {r.name}: ours {o['registry_by_handler']}, Flux's "
                       f"{f['registry_by_handler']} (per scan, by registry handler).")
        out.append("")
    for r in _by_prefix(results, "idle-"):
        if any(not t.met for t in r.targets if "Flux" in t.text):
            o, f = r.data["ours"], r.data["flux"]
            out += ["### Idle CPU", "",
                    f"- {r.name}: ours {o['cpu_seconds']:.2f} CPU seconds in "
                    f"{o['seconds']:.0f} s, Flux's {f['cpu_seconds']:.2f}; `/proc` counts "
                    "in clock ticks of 10 ms, so differences of a tick or two are within the "
                    "resolution.", ""]
    return out


def _worst_case(results: list[Result]) -> list[str]:
    rows = _by_prefix(results, "worst-")
    if not rows:
        return []
    out = ["## Hostile registry: the worst input the default bounds accept", "",
           "What one scan can be made to hold under `--max-tags-per-scan=100000` and "
           "`--max-tag-bytes-per-scan=8Mi` (`bench/worst_case_bench.py`; the controller's "
           "scan step with a SQLite store, against a registry serving the shape; baseline "
           "is RSS after set-up and one tiny scan, peak is `VmHWM`). The threat model is "
           "in `docs/security.md`.", "",
           "| Shape | Tags | Tag length | Tags per page | Scans at once | Time (s) | "
           "RSS above baseline (MiB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.data
        out.append(f"| {d['shape']} | {d['tags']:,} | {d['tag_length']} | "
                   f"{d['per_page']:,} | {d['copies']} | {d['seconds']:.2f} | "
                   f"{d['added_mib']:.1f} |")
    out += ["", "The Deployment's limit is 512 MiB and 10,000 objects peak near 300 MiB "
            "(fleet runs above), which leaves 212 MiB: the default `--concurrent 4` worst "
            "scans at once must fit in it.", ""]
    return out


def _sources(results: list[Result], versions: JSON) -> list[str]:
    """Which server each section's figures come from."""
    kube = (f"the real kube-apiserver {versions.get('kubernetes', '')} with etcd "
            f"{versions.get('etcd', '')} (testbed, a fresh cluster per controller and fleet)")
    registry = "the real `docker-registry` (its own request counter on)"
    rows = [("1. Scan, profile", "none",
             "the real `docker-registry`; paginated shapes through an aiohttp paginating "
             "front in its own process"),
            ("2. Side by side, fleet detail", kube, registry),
            ("3. Idle, 6. Restart", kube, registry),
            ("4. Store, 5. Policy, 7. Scrape, scan steps", "none (in process)", "none"),
            ("Hostile registry", "none",
             "an aiohttp server in its own process serving precomputed pages")]
    del results
    lines = [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if (doc := _soak_doc()) is not None:
        lines.append(soak_source_row(doc))
    return ["## Where each figure comes from", "",
            "| Section | Kubernetes API server | Registry |", "|---|---|---|", *lines, ""]


def _soak_doc() -> JSON | None:
    from bench.soak import RESULTS

    if not RESULTS.exists():
        return None
    import json

    doc: JSON = json.loads(RESULTS.read_text())
    return doc


def write_report(path: Path, results: list[Result], machine: JSON, *, quick: bool,
                 profile: str | None, elapsed: float, versions: JSON | None = None,
                 fleet_profile: str | None = None) -> None:
    """Write the whole document to ``path``."""
    versions = versions or {}
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
        f"- Kubernetes: kube-apiserver {versions.get('kubernetes', '?')} and etcd "
        f"{versions.get('etcd', '?')}, built from the pins in `tools/controlplane` "
        "(`docs/testbed.md`)",
        f"- Flux's image-reflector-controller {versions.get('flux', '?')}, built from "
        "`tools/flux-v2.2`; ours at `" + str(versions.get("ours", "?")) + "`",
        "- `free -m`:",
        "",
        "```",
        machine["free"],
        "```",
        "",
        "The registry, the paginating front, etcd and the kube-apiserver run in processes "
        "of their own on the same cores as the code measured, over loopback.",
        "",
        *_sources(results, versions),
        "## Reproduce",
        "",
        "```sh",
        "make bench          # every benchmark, full sizes; rewrites this file",
        "make bench-quick    # reduced sizes (side by side with 200 objects), one line each,",
        "                    # a few minutes; leaves this file alone",
        ".venv/bin/python -m bench --only scan        # one kind: scan, fleet, store, policy "
        "(policy includes the scrape), worst",
        ".venv/bin/python -m bench.profile_scan       # the scan profile (needs pyinstrument)",
        ".venv/bin/python -m bench.profile_fleet      # ours under py-spy during a 1,000 x 100 "
        "wave",
        "BENCH_OURS_TREE=/tmp/before make bench       # ours from another checkout (before/after)",
        "make soak                                    # 10 min, 10,000 objects (SOAK_MINUTES, "
        "SOAK_OBJECTS)",
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
        *_side_by_side(results, versions),
        *_idle_startup(results),
        *_store_policy(results),
    ]
    steps = _one(results, "scan-steps-10k")
    if steps is not None:
        out += ["## Scan steps over 10,000 tags (evidence)", "",
                "| Step | Product (ms) | Naive way (ms) |", "|---|---|---|",
                f"| default exclusion, first pass | {_ms(steps['exclusion_cold'])} | "
                f"{_ms(steps['exclusion_naive'])} (google-re2 `search` per tag) |",
                f"| default exclusion, rescan | {_ms(steps['exclusion_warm'])} | "
                f"{_ms(steps['exclusion_naive'])} |",
                f"| latest tags + revision | {_ms(steps['summary'])} | "
                f"{_ms(steps['summary_naive'])} (two sorts by encoded bytes) |", ""]
    out += _worst_case(results)
    out += _analysis(results, profile)
    if fleet_profile:
        out += ["## Profile of ours during a fleet wave (py-spy, real API server)", "",
                "Taken because a fleet target was missed in this run "
                "(`python -m bench.profile_fleet`): one more 1,000 x 100 wave of ours, "
                "sampled without pausing the process; shares of the on-CPU samples.", "",
                "```", *fleet_profile.strip("\n").splitlines(), "```", ""]
    if failed:
        out += ["## Benchmarks that did not run", ""]
        out += [f"- {r.line}" for r in failed]
        out.append("")
    # The soak runs apart (``make soak``); its last results are carried over unchanged.
    out += soak_section()
    path.write_text("\n".join(out))
