"""Soak: 10,000 ImageRepositories with mixed intervals against the real controller.

``python -m bench.soak`` (``make soak``; ``SOAK_MINUTES`` sets the length, default 10,
``SOAK_OBJECTS`` the fleet size, default 10,000, ``SOAK_RESULTS`` another file for the
JSON, which then leaves ``docs/performance.md`` alone). The API server is the real
kube-apiserver (v1.37.2, with etcd, in a fresh testbed cluster with ``manifests/``
applied; ``bench.kube``); the real ``docker-registry`` runs in a process of its own
with its Prometheus counters on (``bench.servers``); ``imagereflector controller``
runs as the manifests' ServiceAccount with default flags except ``--registry-qps=0``,
``--enable-leader-election=false``, loopback metrics and health ports and a
``--storage-path`` in a temporary directory (``bench.peers``).

Setup: 100 namespaces (``soak-00`` .. ``soak-99``) are created through the API as the
cluster admin, then the controller is started and, once ready, the objects are created
with concurrent POSTs (in a thread, so sampling starts on time; the creation time is
recorded apart). Object ``i`` lives in
namespace ``i % 100``, has interval ``INTERVALS[i % 6]`` (1m, 2m, 5m, 10m, 30m, 1h) and
image ``soak/rNNNNN``, a directory symlink in the registry's storage to one of five
seeded repositories of 3..7 tags (``TAG_COUNTS[(i // 300) % 5]``), so its expected
``status.lastScanResult.tagCount`` is known.

Every ``SAMPLE_SECONDS`` from the create on, one sample: controller ``VmRSS`` and
``utime+stime`` from /proc, ``workqueue_depth{name="imagerepository"}``, reconcile and
reconcile-error counts from the controller's /metrics, registry requests from the
registry's own counter (``registry_http_requests_total``), API requests from the API
server's own count of requests it dispatched for the controller's flow schema
(``service-accounts``; the bench is ``exempt``), and the Ready count from a watch of
ImageRepositories the bench keeps open (``bench.kube.ReadyWatch``). Between samples
``VmRSS`` is read every ``RSS_POLL_SECONDS`` and each sample keeps the period's maximum
(``rss_max_mib``), so a step that comes and goes between two samples is not missed.

Invariants, checked and printed at the end (any broken one makes the exit status 1;
timings never do):

* ``all_ready``: listing every ImageRepository through the API (a kubectl-like ``GET``
  of the collection, in pages) finds exactly the objects created, each ``Ready=True`` at its
  ``generation`` with ``lastScanResult.tagCount`` equal to its repository's tag count.
* ``queue_drained``: after the initial wave (the first sample at which every object was
  Ready), some sample saw ``workqueue_depth`` 0. The depth counts items waiting for a
  worker, not items parked until their interval is due.
* ``queue_end``: the last sample's depth is at most the number of 1m-interval objects
  that fall due within one sample period (``ceil(n_1m * SAMPLE_SECONDS / 60)``): the
  queue holds at most one period of fresh work, no backlog.
* ``rss_flat``: the maximum ``VmRSS`` (per-second reads) after the baseline window is at most
  the maximum within it plus ``RSS_TOLERANCE_MIB``. The baseline window is the minute
  from 60 s to 120 s after the create (the brief's "minute 1..2"), moved to the minute
  after the initial wave when the wave ends later than 60 s, because until every object
  has been scanned once the controller is still legitimately acquiring per-object state.
  The literal minute-1..2 comparison is recorded too, for information. With fewer than
  one minute of samples after the window the verdict is "not applicable" (passes).

Why +10 MiB: the object set is fixed, so the steady state should hold a flat heap; the
allocator still moves by a few MiB as concurrent reconciles peak at different moments.
10 MiB is about 7% of the ~135 MiB a 10,000-object controller holds, and a leak of 1 KiB
per reconcile at the ~42 reconciles/s this fleet needs in steady state would pass it
within about four minutes.

Output: the sample table and verdicts are printed, written to ``bench/results/soak.json``
and rendered as the "## Soak" section of ``docs/performance.md`` (replacing that section
only; ``bench.report`` renders the same section from the JSON when ``make bench``
regenerates the document).
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from bench.common import (
    JSON,
    REPO_ROOT,
    BenchError,
    ControllerProcess,
    cpu_seconds,
    machine,
    metric_sum,
    rss_kib,
    service,
)
from bench.fleet_bench import Registry
from bench.kube import Bed, ReadyWatch, fresh_cluster
from bench.peers import OURS, run_controller

INTERVALS: tuple[tuple[str, int], ...] = (
    ("1m", 60), ("2m", 120), ("5m", 300), ("10m", 600), ("30m", 1800), ("1h", 3600))
TAG_COUNTS = (3, 4, 5, 6, 7)
NAMESPACES = 100
SAMPLE_SECONDS = 10.0
RSS_POLL_SECONDS = 1.0
RSS_TOLERANCE_MIB = 10.0
QUEUE = "imagerepository"
RESULTS = REPO_ROOT / "bench" / "results" / "soak.json"
LONG_RESULTS = REPO_ROOT / "bench" / "results" / "soak-30min.json"
DOC = REPO_ROOT / "docs" / "performance.md"
HEADING = "## Soak"


def _namespace(i: int) -> str:
    return f"soak-{i % NAMESPACES:02d}"


def _tags_of(i: int) -> int:
    return TAG_COUNTS[(i // (NAMESPACES * len(INTERVALS))) % len(TAG_COUNTS)]


def _registry_spec(objects: int) -> list[JSON]:
    spec: list[JSON] = [{"name": f"soak/base-{n}", "tags": n} for n in TAG_COUNTS]
    spec += [{"name": f"soak/r{i:05d}", "alias": f"soak/base-{_tags_of(i)}"}
             for i in range(objects)]
    return spec


def _objects(registry: str, objects: int) -> tuple[list[tuple[str, str, str, str]],
                                                   dict[tuple[str, str], int]]:
    """The objects to create, grouped by (namespace, interval), and their tag counts."""
    expected: dict[tuple[str, str], int] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(objects):
        groups.setdefault((i % NAMESPACES, i % len(INTERVALS)), []).append(i)
    out: list[tuple[str, str, str, str]] = []
    for (ns, k), members in sorted(groups.items()):
        label = INTERVALS[k][0]
        for j, i in enumerate(members):
            name = f"r{label}-{j:05d}"
            out.append((_namespace(ns), name, f"{registry}/soak/r{i:05d}", label))
            expected[(_namespace(ns), name)] = _tags_of(i)
    return out, expected


class _Creator(threading.Thread):
    """Creates the objects in the background, so the first sample is on time."""

    def __init__(self, bed: Bed, objects: list[tuple[str, str, str, str]]) -> None:
        super().__init__(name="soak-create", daemon=True)
        self.bed, self.objects = bed, objects
        self.seconds: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.seconds = self.bed.create_repositories(self.objects)
        except Exception as err:  # reported by the main thread
            self.error = repr(err)


def _sample(ctl: ControllerProcess, probe: _Probe, t: float, base: JSON) -> JSON:
    metrics = ctl.metrics()
    return {
        "t": round(t, 1),
        "rss_mib": round(rss_kib(ctl.pid, "VmRSS") / 1024, 1),
        "cpu_s": round(cpu_seconds(ctl.pid) - base["cpu_s"], 2),
        "depth": _depth(metrics),
        "reconciles": int(metric_sum(metrics, "controller_runtime_reconcile_total",
                                     controller=QUEUE) - base["reconciles"]),
        "errors": int(metric_sum(metrics, "controller_runtime_reconcile_errors_total",
                                 controller=QUEUE) - base["errors"]),
        "registry": int(probe.registry_requests() - base["registry"]),
        "api": int(probe.bed.counters().controller_requests - base["api"]),
        "ready": probe.watch.ready,
    }


def _depth(metrics: str) -> int:
    """``workqueue_depth{name="imagerepository"}`` (``metric_sum`` takes ``name`` itself)."""
    prefix = f'workqueue_depth{{name="{QUEUE}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix):]))
    raise BenchError(f"no {prefix.strip()} in /metrics")


class _Probe:
    """What a sample reads besides the controller: the API server, registry and watch."""

    def __init__(self, bed: Bed, registry: Registry, watch: ReadyWatch) -> None:
        self.bed, self.registry, self.watch = bed, registry, watch

    def registry_requests(self) -> float:
        """Every request the registry answered so far."""
        return sum(self.registry.requests().values())


def _verify_objects(bed: Bed, expected: dict[tuple[str, str], int]) -> JSON:
    """List every ImageRepository through the API and compare with what was created."""
    items, _ = bed.list_repositories()
    seen: set[tuple[str, str]] = set()
    not_ready: list[str] = []
    wrong_tags: list[str] = []
    unexpected: list[str] = []
    for obj in items:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        ref = f"{key[0]}/{key[1]}"
        if key not in expected:
            unexpected.append(ref)
            continue
        seen.add(key)
        status = obj.get("status") or {}
        ready = status.get("observedGeneration") == meta.get("generation") and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or [])
        if not ready:
            not_ready.append(ref)
        count = (status.get("lastScanResult") or {}).get("tagCount")
        if count != expected[key]:
            wrong_tags.append(f"{ref}: {count} != {expected[key]}")
    missing = [f"{ns}/{name}" for ns, name in sorted(set(expected) - seen)]
    return {"listed": len(items), "expected": len(expected), "missing": missing[:20],
            "missing_count": len(missing), "unexpected": unexpected[:20],
            "not_ready": not_ready[:20], "not_ready_count": len(not_ready),
            "wrong_tags": wrong_tags[:20], "wrong_tags_count": len(wrong_tags)}


def _verdicts(samples: list[JSON], objects: int, check: JSON, n_1m: int) -> JSON:
    total_ok = (check["missing_count"] == 0 and not check["unexpected"]
                and check["listed"] == objects)
    all_ready = {"ok": total_ok and check["not_ready_count"] == 0
                 and check["wrong_tags_count"] == 0,
                 "detail": f"{check['listed']} listed of {objects}; "
                           f"{check['not_ready_count']} not Ready; "
                           f"{check['wrong_tags_count']} with a wrong tag count; "
                           f"{check['missing_count']} missing"}
    wave = next((s["t"] for s in samples if s["ready"] >= objects), None)
    zero_at = next((s["t"] for s in samples if wave is not None and s["t"] >= wave
                    and s["depth"] == 0), None)
    drained = {"ok": zero_at is not None, "wave_end_s": wave, "first_zero_after_wave_s": zero_at,
               "detail": ("initial wave never completed" if wave is None else
                          f"wave complete at {wave:.0f} s; depth 0 first at "
                          f"{zero_at:.0f} s" if zero_at is not None else
                          f"wave complete at {wave:.0f} s; depth never 0 after it")}
    bound = math.ceil(n_1m * SAMPLE_SECONDS / 60)
    last = samples[-1]["depth"] if samples else -1
    end = {"ok": 0 <= last <= bound, "last_depth": last, "bound": bound,
           "detail": f"last depth {last} <= {bound} (1m objects due in one "
                     f"{SAMPLE_SECONDS:.0f} s period)"}
    start = 60.0 if wave is None or wave <= 60.0 else wave
    return {"all_ready": all_ready, "queue_drained": drained, "queue_end": end,
            "rss_flat": _rss_verdict(samples, start),
            "rss_literal_minute_1_2": _rss_verdict(samples, 60.0)}


def _rss(sample: JSON) -> float:
    """A sample's RSS maximum over its period (MiB)."""
    # Results written before the per-second polling have the sample's value only.
    return float(sample["rss_max_mib"] if "rss_max_mib" in sample else sample["rss_mib"])


def _rss_verdict(samples: list[JSON], start: float) -> JSON:
    window = [_rss(s) for s in samples if start <= s["t"] < start + 60.0]
    later = [_rss(s) for s in samples if s["t"] >= start + 60.0]
    if not window or len(later) < int(60 / SAMPLE_SECONDS):
        return {"ok": True, "applicable": False, "window_start_s": start,
                "detail": f"not applicable: fewer than 60 s of samples after "
                          f"{start + 60:.0f} s"}
    base, peak = max(window), max(later)
    return {"ok": peak <= base + RSS_TOLERANCE_MIB, "applicable": True,
            "window_start_s": start, "baseline_mib": base, "later_max_mib": peak,
            "growth_mib": round(peak - base, 1),
            "detail": f"max {peak:.1f} MiB after {start + 60:.0f} s vs {base:.1f} MiB in "
                      f"[{start:.0f} s, {start + 60:.0f} s) (+{peak - base:.1f}, tolerance "
                      f"+{RSS_TOLERANCE_MIB:.0f} MiB)"}


def run(minutes: float, objects: int) -> JSON:
    """The whole soak in a fresh cluster, registry and controller; the results document."""
    tmp = Path(tempfile.mkdtemp(prefix="imagereflector-soak-"))
    spec = tmp / "registry-spec.json"
    spec.write_text(json.dumps(_registry_spec(objects)))
    n_1m = sum(1 for i in range(objects) if i % len(INTERVALS) == 0)
    try:
        with service(["registry", "--tmp", str(tmp), "--spec", f"@{spec}", "--metrics"],
                     tmp / "registry.log") as info, fresh_cluster(tmp / "kube") as bed:
            registry = Registry(info)
            bed.create_namespaces([_namespace(ns) for ns in range(NAMESPACES)])
            todo, expected = _objects(registry.host, objects)
            with run_controller(OURS, kubeconfig=bed.ours_kubeconfig, storage=tmp / "data",
                                log=tmp / "controller.log") as ctl:
                ready_s = ctl.wait_ready()
                time.sleep(1.0)  # caches filled, as in the fleet runs
                rss_idle = rss_kib(ctl.pid, "VmRSS") / 1024
                watch = ReadyWatch(bed).start()
                try:
                    probe = _Probe(bed, registry, watch)
                    metrics = ctl.metrics()
                    base = {"cpu_s": cpu_seconds(ctl.pid),
                            "reconciles": metric_sum(metrics,
                                                     "controller_runtime_reconcile_total",
                                                     controller=QUEUE),
                            "errors": metric_sum(metrics,
                                                 "controller_runtime_reconcile_errors_total",
                                                 controller=QUEUE),
                            "registry": probe.registry_requests(),
                            "api": bed.counters().controller_requests}
                    t0 = time.monotonic()
                    creator = _Creator(bed, todo)
                    creator.start()
                    samples = _loop(ctl, probe, t0, base, minutes, creator)
                    creator.join(timeout=600)
                    if creator.error is not None or creator.seconds is None:
                        raise BenchError(f"creating the objects failed: {creator.error}")
                    check = _verify_objects(bed, expected)
                    hwm = rss_kib(ctl.pid) / 1024
                finally:
                    watch.stop()
            kubernetes = bed.kubernetes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    verdicts = _verdicts(samples, objects, check, n_1m)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make soak" if minutes == 10 and objects == 10000 else
                   f"SOAK_MINUTES={minutes:g} SOAK_OBJECTS={objects} make soak",
        "machine": machine(), "minutes": minutes, "objects": objects,
        "namespaces": NAMESPACES, "intervals": [k for k, _ in INTERVALS],
        "tag_counts": list(TAG_COUNTS), "objects_1m": n_1m,
        "sample_seconds": SAMPLE_SECONDS, "rss_tolerance_mib": RSS_TOLERANCE_MIB,
        "controller_ready_s": round(ready_s, 2), "rss_before_create_mib": round(rss_idle, 1),
        "create_seconds": round(creator.seconds, 2), "peak_rss_mib": round(hwm, 1),
        "api_server": f"kube-apiserver {kubernetes}", "registry_counter": True,
        "samples": samples, "check": check, "verdicts": verdicts,
        "ok": all(v["ok"] for k, v in verdicts.items() if k != "rss_literal_minute_1_2"),
    }


def _loop(ctl: ControllerProcess, probe: _Probe, t0: float, base: JSON,
          minutes: float, creator: _Creator) -> list[JSON]:
    samples: list[JSON] = []
    count = int(minutes * 60 / SAMPLE_SECONDS)
    for k in range(1, count + 1):
        due = t0 + k * SAMPLE_SECONDS
        # VmRSS between samples too: a step that comes and goes within a period counts.
        rss_max = 0.0
        while (delay := due - time.monotonic()) > 0:
            time.sleep(min(delay, RSS_POLL_SECONDS))
            if ctl.proc.poll() is None:
                rss_max = max(rss_max, rss_kib(ctl.pid, "VmRSS") / 1024)
        if ctl.proc.poll() is not None:
            raise BenchError(f"controller exited with {ctl.proc.returncode}")
        if creator.error is not None:
            raise BenchError(f"creating the objects failed: {creator.error}")
        sample = _sample(ctl, probe, time.monotonic() - t0, base)
        sample["rss_max_mib"] = round(max(rss_max, sample["rss_mib"]), 1)
        samples.append(sample)
        print(_row(sample, samples[-2] if len(samples) > 1 else None), flush=True)
    return samples


def _row(s: JSON, prev: JSON | None) -> str:
    dt = s["t"] - (prev["t"] if prev else 0.0)
    cpu = (s["cpu_s"] - (prev["cpu_s"] if prev else 0.0)) / dt if dt > 0 else 0.0
    rec = (s["reconciles"] - (prev["reconciles"] if prev else 0)) / dt if dt > 0 else 0.0
    rss_max = f"{s['rss_max_mib']:.1f}" if "rss_max_mib" in s else "-"
    return (f"| {s['t']:.0f} | {s['rss_mib']:.1f} | {rss_max} | {s['cpu_s']:.1f} | "
            f"{cpu * 100:.0f}% | "
            f"{s['depth']} | {s['reconciles']} | {rec:.1f} | {s['errors']} | "
            f"{s['registry']} | {s['api']} | {s['ready']} |")


TABLE_HEAD = ("| t (s) | VmRSS (MiB) | VmRSS max in period | CPU (s) | CPU in period | "
              "queue depth | reconciles | reconciles/s in period | reconcile errors | "
              "registry requests | API requests | Ready |")


def soak_section(doc: JSON | None = None) -> list[str]:
    """The "## Soak" section from the results document (``RESULTS`` when not given)."""
    if doc is None:
        if not RESULTS.exists():
            return []
        doc = json.loads(RESULTS.read_text())
    v: JSON = doc["verdicts"]
    samples: list[JSON] = doc["samples"]
    steady = [s for s in samples if v["queue_drained"]["wave_end_s"] is not None
              and s["t"] >= v["queue_drained"]["wave_end_s"]]
    out = [HEADING, "", *_soak_text(doc)]
    if len(steady) >= 2:
        a, b = steady[0], steady[-1]
        dt = b["t"] - a["t"]
        if dt > 0:
            out += ["", f"After the initial wave ({a['t']:.0f} s to {b['t']:.0f} s): "
                    f"{(b['reconciles'] - a['reconciles']) / dt:.1f} reconciles/s, "
                    f"{(b['registry'] - a['registry']) / dt:.1f} registry requests/s, "
                    f"{(b['api'] - a['api']) / dt:.1f} API requests/s, "
                    f"{(b['cpu_s'] - a['cpu_s']) / dt * 100:.0f}% of one core; queue depth "
                    f"max {max(s['depth'] for s in steady)}, mean "
                    f"{sum(s['depth'] for s in steady) / len(steady):.0f}."]
    out += ["", "Invariants (a broken one fails the soak; timings never do):", "",
            "| Invariant | Verdict | Detail |", "|---|---|---|"]
    names = {"all_ready": "every object Ready at its generation with its tag count "
                          "(listed through the API at the end)",
             "queue_drained": "queue depth 0 at some sample after the initial wave",
             "queue_end": "queue depth at the end within one sample period of 1m work",
             "rss_flat": f"no RSS growth beyond +{doc['rss_tolerance_mib']:.0f} MiB after the "
                         "baseline minute (minute 1..2, or the minute after the wave)",
             "rss_literal_minute_1_2": "for information: the same against minute 1..2 "
                                       "regardless of the wave"}
    for key, text in names.items():
        verdict = v[key]
        word = "ok" if verdict["ok"] else "**broken**"
        if key == "rss_literal_minute_1_2":
            word = "within" if verdict["ok"] else "exceeded"
        out.append(f"| {text} | {word} | {verdict['detail']} |")
    out += _long_run()
    out += ["", "Samples:", "", TABLE_HEAD, "|" + "---|" * 12]
    prev: JSON | None = None
    for s in samples:
        out.append(_row(s, prev))
        prev = s
    out.append("")
    return out


def _servers(doc: JSON) -> tuple[str, str, str]:
    """Where this soak's figures came from: API server, how API requests and registry
    requests were counted. Results written before the move to the real API server say
    nothing about it, and came from the fake one."""
    if "api_server" in doc:
        return (f"the real {doc['api_server']} with etcd (a fresh testbed cluster, "
                "`manifests/` applied, the controller as the manifests' ServiceAccount)",
                "the API server's own count of requests dispatched for the controller's "
                "flow schema",
                "the registry's own `registry_http_requests_total`")
    return ("the fake API server (`tests/fakes/kubeapi`)", "the fake's request log",
            "`imagereflector_registry_requests_total`")


def _soak_text(doc: JSON) -> list[str]:
    m: JSON = doc["machine"]
    samples: list[JSON] = doc["samples"]
    last = samples[-1] if samples else {}
    span = last.get("t", 0.0)
    server, api_count, registry_count = _servers(doc)
    real = "api_server" in doc
    created = "with 16 concurrent POSTs as the cluster admin," if real else "at once"
    flags = (", `--enable-leader-election=false`, loopback `--metrics-addr` and "
             "`--health-addr`" if real else "")
    return [
        f"Written by `{doc['command']}` (`bench/soak.py`) on {doc['date']}; not part of "
        "`make test` and not regenerated by `make bench` (which re-renders this section "
        "from `bench/results/soak.json`). Machine: "
        f"{m['cpu']}, `nproc` = {m['nproc']}, Python {m['python']}, load average at the "
        f"end {m['loadavg']}.",
        "",
        f"{doc['objects']:,} ImageRepositories in {doc['namespaces']} namespaces, intervals "
        f"{', '.join(doc['intervals'])} round-robin ({doc['objects_1m']} at 1m), each on its "
        f"own registry repository (a symlink to one of five seeded repositories of "
        f"{min(doc['tag_counts'])}..{max(doc['tag_counts'])} tags), created "
        f"{created} after the controller was ready. `imagereflector controller` with "
        f"default flags except `--registry-qps=0`{flags} and a temporary `--storage-path`; "
        "API server: "
        f"{server}; the real `docker-registry` in a process of its own; all on the same "
        "cores. Run for "
        f"{doc['minutes']:g} min, sampled every {doc['sample_seconds']:.0f} s (t counts from "
        "the create): `VmRSS` (also read every second in between: the \"max in period\" "
        "column, which the RSS invariant judges), `utime+stime`, "
        "`workqueue_depth{name=\"imagerepository\"}`, "
        "and, counted from the create, reconciles and reconcile errors "
        "(`controller_runtime_*{controller=\"imagerepository\"}`), registry requests "
        f"({registry_count}), API requests ({api_count}) and the "
        "Ready count (at the object's generation).",
        "",
        f"Controller ready {doc['controller_ready_s']:.2f} s after start; RSS "
        f"{doc['rss_before_create_mib']:.1f} MiB before the create; the create took "
        f"{doc['create_seconds']:.1f} s; peak RSS (`VmHWM`) {doc['peak_rss_mib']:.1f} MiB; "
        f"over {span:.0f} s: {last.get('reconciles', 0)} reconciles, "
        f"{last.get('registry', 0)} registry requests, {last.get('api', 0)} API requests, "
        f"{last.get('cpu_s', 0.0):.0f} CPU seconds ({last.get('cpu_s', 0.0) / span * 100 if span else 0:.0f}% "  # noqa: E501
        "of one core).",
    ]


def _long_run(path: Path = LONG_RESULTS) -> list[str]:
    """A paragraph on the longer run kept in ``LONG_RESULTS``, when there is one."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    samples: list[JSON] = doc["samples"]

    def rss_near(seconds: float) -> float:
        """The per-period maximum of the last sample at or before ``seconds``."""
        near = [s for s in samples if s["t"] <= seconds] or samples[:1]
        return _rss(near[-1])

    # Growth per third of the run after minute 2: a leak grows alike in each third,
    # an allocator settling grows less in each.
    span = doc["minutes"] * 60 - 120
    edges = [120 + span * k / 3 for k in range(4)]
    thirds = [rss_near(b) - rss_near(a) for a, b in itertools.pairwise(edges)]
    marks = [m for m in (2, 5, 10, 15, 20, 25, 30, 45, 60) if m <= doc["minutes"]]
    broken = [k for k, v in doc["verdicts"].items()
              if not v["ok"] and k != "rss_literal_minute_1_2"]
    server = "the real API server" if "api_server" in doc else "the fake API server"
    return ["", f"A longer run, {doc['minutes']:g} min (`{doc['command']}` with "
            f"`SOAK_RESULTS={path.relative_to(REPO_ROOT)}`, {doc['date']}, on {server}), "
            "to tell slow drift from noise. RSS (max per period) at minute "
            + ", ".join(f"{m}: {rss_near(m * 60):.1f}" for m in marks)
            + " MiB; growth in each third of the run after minute 2: "
            + ", ".join(f"{g:+.1f}" for g in thirds)
            + f" MiB; {doc['verdicts']['rss_flat']['detail']}; "
            + ("every invariant holds" if not broken else
               "broken: " + ", ".join(broken)) + "."]


SOURCE_ROW_PREFIX: Final = "| Soak (from `bench/results/soak.json`) |"


def soak_source_row(doc: JSON) -> str:
    """The soak's row of the performance document's "Where each figure comes from"."""
    if "api_server" in doc:
        server = f"the real kube-apiserver ({doc['api_server']})"
        registry = "the real `docker-registry` (its own request counter on)"
    else:
        server = "the fake API server (`tests/fakes/kubeapi`), before the move"
        registry = "the real `docker-registry`"
    return f"{SOURCE_ROW_PREFIX} {server} | {registry} |"


def write_doc(lines: list[str], path: Path = DOC, doc: JSON | None = None) -> None:
    """Replace (or append) the "## Soak" section of the performance document, and the
    soak's row of its sources table when ``doc`` (this run's results) is given."""
    text = path.read_text() if path.exists() else "# Performance\n"
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith("## "):
            skipping = line.strip() == HEADING
        if doc is not None and line.startswith(SOURCE_ROW_PREFIX):
            line = soak_source_row(doc)
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    path.write_text("\n".join([*kept, "", *lines]))


def _print_verdicts(doc: JSON) -> None:
    for key, verdict in doc["verdicts"].items():
        state = "ok" if verdict["ok"] else "BROKEN"
        if key == "rss_literal_minute_1_2":
            state = "info"
        print(f"soak: {key}: {state}: {verdict['detail']}", flush=True)
    check: JSON = doc["check"]
    for field in ("missing", "not_ready", "wrong_tags", "unexpected"):
        if check[field]:
            print(f"soak: {field} (first 20): {', '.join(check[field])}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the samples and verdicts, write the JSON and the section."""
    del argv
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    objects = int(os.environ.get("SOAK_OBJECTS", "10000"))
    print(f"soak: {objects} objects, {minutes:g} min, a sample every "
          f"{SAMPLE_SECONDS:.0f} s", flush=True)
    print(TABLE_HEAD, flush=True)
    # SOAK_RESULTS: a longer or smaller run's JSON goes there and leaves the document's
    # section (the default 10-minute run) alone.
    out = Path(os.environ["SOAK_RESULTS"]) if os.environ.get("SOAK_RESULTS") else RESULTS
    doc: Any = run(minutes, objects)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    wrote = str(out)
    if out == RESULTS:
        write_doc(soak_section(doc), doc=doc)
        wrote = f"{RESULTS.relative_to(REPO_ROOT)} and the {HEADING!r} section of " \
                f"{DOC.relative_to(REPO_ROOT)}"
    _print_verdicts(doc)
    print(f"soak: wrote {wrote}; {'all invariants hold' if doc['ok'] else 'FAILED'}",
          flush=True)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
