"""Fleet, idle and startup benchmarks: the real controller process on many objects.

One wave: the real ``docker-registry`` and the fake API server run in processes of their
own (``bench.servers``), ``imagereflector controller`` runs as a third process with
``--registry-qps=0`` (unlimited) and the given ``--concurrent``; once it is ready, N
ImageRepositories (interval 1h) are created at once inside the fake's process, and the
wave ends when all are Ready at their generation.

Measured per wave: time from the create to all Ready, reconciles/s
(``controller_runtime_reconcile_total`` delta over that time), Kubernetes API requests
per scan (the fake's request log), registry requests per scan
(``imagereflector_registry_requests_total``), and peak RSS (``VmHWM``).

After the main wave the same controller is left alone for the idle window (CPU from
``utime+stime``), then it is stopped and started again on the same storage path: the
startup figure is process start to ``/readyz`` 200, and the registry requests made in
the following seconds, which must be zero because nothing is due.

Invariants: repositories are ``alias`` symlinks to one seeded repository (see
``bench.servers``), so 10,000 distinct repositories cost one seeding; every wait has a
deadline; every process is stopped by the context managers in ``bench.common``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchError,
    ControllerProcess,
    Result,
    Target,
    controller,
    cpu_seconds,
    get_json,
    http_post_json,
    metric_sum,
    rss_kib,
    service,
)

REGISTRY_METRIC = "imagereflector_registry_requests_total"
RECONCILE_METRIC = "controller_runtime_reconcile_total"


@dataclass(slots=True)
class Wave:
    """What one wave measured."""

    objects: int
    tags: int
    concurrent: int
    flags: str
    seconds: float
    reconciles_per_s: float
    api_per_scan: float
    api_by_verb: dict[str, float]
    registry_per_scan: float
    peak_rss_mib: float
    create_seconds: float
    rss_at_ready_mib: float = 0.0

    def line(self, name: str) -> str:
        """The summary line."""
        flags = f" {self.flags}" if self.flags else ""
        return (f"{name}: {self.objects} objects x {self.tags} tags, --concurrent "
                f"{self.concurrent}{flags}: all Ready in {self.seconds:.2f} s, "
                f"{self.reconciles_per_s:.0f} reconciles/s, {self.api_per_scan:.2f} API "
                f"requests/scan, {self.registry_per_scan:.2f} registry requests/scan, peak RSS "
                f"{self.peak_rss_mib:.1f} MiB (RSS before the wave "
                f"{self.rss_at_ready_mib:.1f} MiB)")


def _registry_spec(objects: int, tags: int) -> list[dict[str, object]]:
    spec: list[dict[str, object]] = [{"name": "fleet/base", "tags": tags}]
    spec += [{"name": f"fleet/r{i:05d}", "alias": "fleet/base"} for i in range(objects)]
    return spec


def _wave(ctl: ControllerProcess, kube: dict[str, str], registry: str, objects: int,
          tags: int, concurrent: int, within: float, extra: Sequence[str]) -> Wave:
    control = kube["control"]
    before = get_json(f"{control}/stats")
    metrics_before = ctl.metrics()
    images = [f"{registry}/fleet/r{i:05d}" for i in range(objects)]
    started = time.perf_counter()
    created = http_post_json(f"{control}/create", {"count": objects, "images": images,
                                                   "interval": "1h"})
    deadline = started + within
    stats = before
    while time.perf_counter() < deadline:
        if ctl.proc.poll() is not None:
            raise BenchError(f"controller exited with {ctl.proc.returncode}")
        stats = get_json(f"{control}/stats")
        if stats["ready"] >= objects:
            break
        # /stats walks every object in the fake's process, which shares the two cores
        # with the controller: poll less often for large fleets.
        time.sleep(0.05 if objects <= 1000 else 0.5)
    else:
        raise BenchError(f"{stats['ready']}/{objects} Ready after {within}s")
    seconds = time.perf_counter() - started
    metrics_after = ctl.metrics()
    reconciles = (metric_sum(metrics_after, RECONCILE_METRIC)
                  - metric_sum(metrics_before, RECONCILE_METRIC))
    registry_requests = (metric_sum(metrics_after, REGISTRY_METRIC)
                         - metric_sum(metrics_before, REGISTRY_METRIC))
    api = stats["requests"] - before["requests"]
    by_verb = {verb: (count - before["by_verb"].get(verb, 0)) / objects
               for verb, count in stats["by_verb"].items()
               if count != before["by_verb"].get(verb, 0)}
    return Wave(objects=objects, tags=tags, concurrent=concurrent, flags=" ".join(extra),
                seconds=seconds,
                reconciles_per_s=reconciles / seconds, api_per_scan=api / objects,
                api_by_verb=by_verb, registry_per_scan=registry_requests / objects,
                peak_rss_mib=rss_kib(ctl.pid) / 1024, create_seconds=created["seconds"])


def _idle(ctl: ControllerProcess, seconds: float) -> tuple[float, float]:
    """Share of one core used over ``seconds`` and the RSS at the end (MiB)."""
    cpu_before, wall_before = cpu_seconds(ctl.pid), time.perf_counter()
    time.sleep(seconds)
    cpu = cpu_seconds(ctl.pid) - cpu_before
    return cpu / (time.perf_counter() - wall_before), rss_kib(ctl.pid, "VmRSS") / 1024


def _startup(kube: dict[str, str], storage: Path, log: Path, objects: int,
             settle: float, extra: Sequence[str]) -> tuple[float, float, dict[str, float], float]:
    """Restart on the same storage: seconds to ready, registry requests, API requests."""
    control = kube["control"]
    before = get_json(f"{control}/stats")
    with controller(kube["kubeconfig"], storage, log, extra=extra) as ctl:
        ready = ctl.wait_ready()
        time.sleep(settle)
        registry_requests = metric_sum(ctl.metrics(), REGISTRY_METRIC)
        stats = get_json(f"{control}/stats")
        rss = rss_kib(ctl.pid) / 1024
    if stats["ready"] != objects:
        raise BenchError(f"after restart {stats['ready']}/{objects} Ready")
    by_verb = {verb: float(count - before["by_verb"].get(verb, 0))
               for verb, count in stats["by_verb"].items()
               if count != before["by_verb"].get(verb, 0)}
    return ready, registry_requests, by_verb, rss


def fleet(tmp: Path, name: str, *, objects: int, tags: int, concurrent: int,
          within: float = 900.0, idle_seconds: float = 0.0,
          startup_settle: float = 0.0, extra: Sequence[str] = ()) -> list[Result]:
    """One wave in fresh servers and a fresh controller; optionally idle and startup."""
    work = tmp / name
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "registry-spec.json"
    spec.write_text(json.dumps(_registry_spec(objects, tags)))
    results: list[Result] = []
    with service(["registry", "--tmp", str(work), "--spec", f"@{spec}"],
                 work / "registry.log") as reg, \
            service(["kubeapi", "--tmp", str(work)], work / "kubeapi.log") as kube:
        storage = work / "data"
        log = work / "controller.log"
        with controller(kube["kubeconfig"], storage, log, concurrent=concurrent,
                        extra=extra) as ctl:
            ctl.wait_ready()
            at_ready = rss_kib(ctl.pid, "VmRSS") / 1024
            wave = _wave(ctl, kube, reg["registry"], objects, tags, concurrent, within, extra)
            wave.rss_at_ready_mib = at_ready
            results.append(_wave_result(name, wave))
            if idle_seconds > 0:
                share, rss = _idle(ctl, idle_seconds)
                results.append(Result(
                    f"idle-{objects}",
                    f"idle-{objects}: {objects} scanned objects, interval 1h, "
                    f"{share * 100:.2f}% of one core over {idle_seconds:.0f} s, "
                    f"RSS {rss:.1f} MiB",
                    {"cpu_share": share, "rss_mib": rss, "seconds": idle_seconds,
                     "objects": objects},
                    [Target(f"idle with {objects} objects < 1% of a core", share < 0.01,
                            f"{share * 100:.2f}%")]))
        if startup_settle > 0:
            ready, registry_requests, by_verb, rss = _startup(kube, storage, log, objects,
                                                              startup_settle, extra)
            verbs = ", ".join(f"{v} {int(c)}" for v, c in sorted(by_verb.items()))
            results.append(Result(
                f"startup-{objects}",
                f"startup-{objects}: warm store, {objects} scanned objects: /readyz 200 after "
                f"{ready * 1000:.0f} ms, {registry_requests:.0f} registry requests in the first "
                f"{startup_settle:.0f} s after ready; API requests: {verbs}",
                {"ready_seconds": ready, "registry_requests": registry_requests,
                 "api_by_verb": by_verb, "settle": startup_settle, "peak_rss_mib": rss,
                 "objects": objects},
                [Target("startup: zero registry requests when nothing is due",
                        registry_requests == 0, f"{registry_requests:.0f}")]))
    return results


def _wave_result(name: str, wave: Wave) -> Result:
    targets: list[Target] = []
    if wave.objects == 1000 and wave.tags == 100:
        targets.append(Target(f"{name}: 1,000 Ready within 15 s", wave.seconds <= 15.0,
                              f"{wave.seconds:.2f} s"))
        targets.append(Target(f"{name}: >= 100 reconciles/s", wave.reconciles_per_s >= 100,
                              f"{wave.reconciles_per_s:.0f}/s"))
    if wave.objects == 1000 and wave.tags == 1000:
        targets.append(Target(f"{name}: peak RSS <= 150 MiB (1,000 objects x 1,000 tags)",
                              wave.peak_rss_mib <= 150, f"{wave.peak_rss_mib:.1f} MiB"))
    if wave.objects >= 10000:
        targets.append(Target(f"{name}: peak RSS <= 300 MiB (10,000 objects)",
                              wave.peak_rss_mib <= 300, f"{wave.peak_rss_mib:.1f} MiB"))
    return Result(name, wave.line(name), {
        "objects": wave.objects, "tags": wave.tags, "concurrent": wave.concurrent,
        "seconds": wave.seconds, "reconciles_per_s": wave.reconciles_per_s,
        "api_per_scan": wave.api_per_scan, "api_by_verb": wave.api_by_verb,
        "registry_per_scan": wave.registry_per_scan, "peak_rss_mib": wave.peak_rss_mib,
        "create_seconds": wave.create_seconds, "flags": wave.flags,
        "rss_at_ready_mib": wave.rss_at_ready_mib}, targets)
