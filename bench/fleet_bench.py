"""Fleet, idle and restart benchmarks: ours and Flux's controller side by side.

For one fleet (N ImageRepositories of T tags each, interval 1h) the real
``docker-registry`` is started once (``bench.servers``, its own Prometheus counters on)
and seeded once: ``fleet/r00000`` .. are directory symlinks to one seeded repository, so
10,000 distinct repositories cost one seeding. Then each controller runs alone in turn,
ours first, then Flux's image-reflector-controller v0.31.0, each in a fresh testbed
cluster (etcd empty, ``manifests/`` applied; ``bench.kube``) and with the flags they
share set alike (``bench.peers``):

1. The controller starts; once ``/readyz`` answers (and one more second for its caches
   to fill) the bench starts a watch of ImageRepositories and reads its counters.
2. The wave: the N objects are created with concurrent POSTs as the cluster admin
   (``create_seconds``, reported apart); ``seconds`` runs from the first POST until the
   watch saw the N-th object Ready at its generation.
3. Measured over the wave: reconciles/s (``controller_runtime_reconcile_total``, both
   export it, delta over ``seconds``), peak RSS (``VmHWM`` of the controller process),
   CPU seconds (``utime+stime`` delta), API requests per scan (the API server's own
   count of requests it dispatched for the ``service-accounts`` flow schema, which only
   the controller's requests fall in; the controller's own ``rest_client_requests_total``
   is kept beside it as a cross-check), registry requests per scan (the registry's own
   ``registry_http_requests_total``; Flux has no registry metric), the API server's and
   etcd's CPU seconds (the load the controller puts on the cluster), and the seconds the
   controller was runnable but waiting for a core (``schedstat``: what the machine's
   other work cost it). CPU and RSS are
   read the moment the last object is Ready; request counts ``DRAIN_SECONDS`` later,
   so events sent after the status write are counted with their scan.
4. Optionally idle: after 5 s of settling, ``idle_seconds`` alone; CPU share of one core
   and RSS at the end, requests to the API server and the registry meanwhile.
5. Optionally restart: SIGTERM, then the same controller on the same storage path and
   the same objects. Time from process start to ``/readyz`` 200, and to every object
   reconciled once (``controller_runtime_reconcile_total{controller="imagerepository"}``
   reaching N, polled every 100 ms); registry and API requests from the start until
   ``restart_settle`` seconds after ready or after the last reconcile, whichever is later.

Invariants: every process (registry, cluster, controller) is stopped by its context
manager, also on errors; every wait has a deadline; a controller that fails is reported
as such and the other still runs; timings are recorded, never asserted.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    JSON,
    BenchError,
    ControllerProcess,
    Result,
    Target,
    cpu_seconds,
    cpu_wait_seconds,
    http_get,
    metric_sum,
    rss_kib,
    service,
)
from bench.kube import Bed, ReadyWatch, fresh_cluster
from bench.peers import FLUX, OURS, PEERS, Peer, flux_binary, run_controller
from testbed.build import ensure_built

RECONCILE_METRIC = "controller_runtime_reconcile_total"
REST_METRIC = "rest_client_requests_total"
REGISTRY_METRIC = "registry_http_requests_total"
QUEUE = "imagerepository"
MIB = 1024.0
DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Fleet:
    """One fleet to run with both controllers."""

    objects: int
    tags: int
    concurrent: int = 4
    idle_seconds: float = 0.0
    restart_settle: float = 0.0
    within: float = 1800.0

    @property
    def name(self) -> str:
        """``fleet-1000x100`` (``-c16`` when not the default concurrency)."""
        suffix = "" if self.concurrent == 4 else f"-c{self.concurrent}"
        return f"fleet-{self.objects}x{self.tags}{suffix}"


class Registry:
    """The registry service's address and its request counter."""

    def __init__(self, info: JSON) -> None:
        self.host: str = info["registry"]
        self.metrics_url: str = info["metrics"]

    def requests(self) -> dict[str, float]:
        """``registry_http_requests_total`` by handler (``base``, ``tags``, ...)."""
        status, text = http_get(self.metrics_url, timeout=30.0)
        if status != 200:
            raise BenchError(f"registry metrics: HTTP {status}")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(REGISTRY_METRIC + "{"):
                handler = line.split('handler="', 1)[1].split('"', 1)[0]
                out[handler] = out.get(handler, 0.0) + float(line.rsplit(" ", 1)[1])
        return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _reconciles(ctl: ControllerProcess) -> float:
    return metric_sum(ctl.metrics(), RECONCILE_METRIC, controller=QUEUE)


def _objects(fleet: Fleet, registry: str) -> list[tuple[str, str, str, str]]:
    return [("default", f"repo-{i:05d}", f"{registry}/fleet/r{i:05d}", "1h")
            for i in range(fleet.objects)]


def _wave(ctl: ControllerProcess, bed: Bed, reg: Registry, fleet: Fleet) -> JSON:
    ready_s = ctl.wait_ready(within=120.0)
    time.sleep(1.0)  # both: caches filled before the clock starts
    rss_before = rss_kib(ctl.pid, "VmRSS") / MIB
    watch = ReadyWatch(bed).start()
    try:
        watch.expect(fleet.objects)
        counters0, metrics0, registry0 = bed.counters(), ctl.metrics(), reg.requests()
        cpu0, wait0 = cpu_seconds(ctl.pid), cpu_wait_seconds(ctl.pid)
        started = time.perf_counter()
        create_s = bed.create_repositories(_objects(fleet, reg.host))
        done = watch.wait(started + fleet.within, alive=lambda: ctl.proc.poll() is None)
        cpu = cpu_seconds(ctl.pid) - cpu0
        cpu_wait = cpu_wait_seconds(ctl.pid) - wait0
        peak = rss_kib(ctl.pid) / MIB
        metrics1 = ctl.metrics()
        # Requests are counted after a short drain: events may be sent after the status
        # that made the object Ready (Flux's event broadcaster is asynchronous).
        time.sleep(DRAIN_SECONDS)
        counters = bed.counters().since(counters0)
        metrics2, registry1 = ctl.metrics(), reg.requests()
    finally:
        watch.stop()
    seconds = done - started
    n = float(fleet.objects)
    reconciles = (metric_sum(metrics1, RECONCILE_METRIC, controller=QUEUE)
                  - metric_sum(metrics0, RECONCILE_METRIC, controller=QUEUE))
    by_handler = _delta(registry1, registry0)
    return {
        "ok": True, "ready_after_start_s": ready_s, "seconds": seconds,
        "create_seconds": create_s, "reconciles": reconciles,
        "reconciles_per_s": reconciles / seconds, "peak_rss_mib": peak,
        "rss_before_mib": rss_before, "cpu_seconds": cpu, "cpu_wait_seconds": cpu_wait,
        "api_per_scan": counters.controller_requests / n,
        "api_by_verb": {k: v / n for k, v in sorted(counters.by_verb.items())},
        "client_api_per_scan": (metric_sum(metrics2, REST_METRIC)
                                - metric_sum(metrics0, REST_METRIC)) / n,
        "registry_per_scan": sum(by_handler.values()) / n,
        "registry_by_handler": {k: v / n for k, v in sorted(by_handler.items())},
        "apiserver_cpu_seconds": counters.apiserver_cpu, "etcd_cpu_seconds": counters.etcd_cpu,
        "watch_events": watch.events,
    }


def _idle(ctl: ControllerProcess, bed: Bed, reg: Registry, seconds: float) -> JSON:
    time.sleep(5.0)  # the wave's last status writes and events drain
    counters0, registry0 = bed.counters(), reg.requests()
    cpu0, wall0 = cpu_seconds(ctl.pid), time.perf_counter()
    time.sleep(seconds)
    cpu = cpu_seconds(ctl.pid) - cpu0
    wall = time.perf_counter() - wall0
    counters = bed.counters().since(counters0)
    return {"ok": True, "seconds": wall, "cpu_seconds": cpu, "cpu_share": cpu / wall,
            "rss_mib": rss_kib(ctl.pid, "VmRSS") / MIB,
            "api_requests": counters.controller_requests,
            "registry_requests": sum(_delta(reg.requests(), registry0).values())}


def _restart(peer: Peer, bed: Bed, reg: Registry, fleet: Fleet, storage: Path,
             log: Path) -> JSON:
    counters0, registry0 = bed.counters(), reg.requests()
    kubeconfig = bed.ours_kubeconfig if peer is OURS else bed.flux_kubeconfig
    with run_controller(peer, kubeconfig=kubeconfig, storage=storage, log=log,
                        concurrent=fleet.concurrent) as ctl:
        ready_s = ctl.wait_ready(within=120.0)
        deadline = time.perf_counter() + 300.0
        reconciled_s: float | None = None
        while time.perf_counter() < deadline:
            if ctl.proc.poll() is not None:
                raise BenchError(f"{peer.key} exited after restart")
            if _reconciles(ctl) >= fleet.objects:
                reconciled_s = time.perf_counter() - ctl.started_at
                break
            time.sleep(0.1)
        if reconciled_s is None:
            raise BenchError(f"{peer.key}: not every object reconciled within 300 s")
        cpu_to_reconciled = cpu_seconds(ctl.pid)
        window = max(ready_s, reconciled_s) + fleet.restart_settle
        time.sleep(max(0.0, ctl.started_at + window - time.perf_counter()))
        counters = bed.counters().since(counters0)
        registry = _delta(reg.requests(), registry0)
        peak = rss_kib(ctl.pid) / MIB
    return {"ok": True, "ready_s": ready_s, "reconciled_s": reconciled_s,
            "window_s": window, "settle": fleet.restart_settle,
            "registry_requests": sum(registry.values()), "registry_by_handler": registry,
            "api_requests": counters.controller_requests,
            "api_by_verb": dict(sorted(counters.by_verb.items())),
            "cpu_to_reconciled_s": cpu_to_reconciled, "peak_rss_mib": peak}


def _one_peer(peer: Peer, fleet: Fleet, reg: Registry, work: Path) -> JSON:
    """Wave (and idle, restart) of one controller in a fresh cluster."""
    out: JSON = {"peer": peer.key}
    with fresh_cluster(work) as bed:
        out["kubernetes"] = bed.kubernetes
        storage, log = work / "data", work / "controller.log"
        kubeconfig = bed.ours_kubeconfig if peer is OURS else bed.flux_kubeconfig
        with run_controller(peer, kubeconfig=kubeconfig, storage=storage, log=log,
                            concurrent=fleet.concurrent) as ctl:
            out["wave"] = _wave(ctl, bed, reg, fleet)
            if fleet.idle_seconds > 0:
                out["idle"] = _guarded(lambda: _idle(ctl, bed, reg, fleet.idle_seconds))
        if fleet.restart_settle > 0:
            out["restart"] = _guarded(lambda: _restart(peer, bed, reg, fleet, storage, log))
    return out


def _guarded(step: Callable[[], JSON]) -> JSON:
    try:
        return step()
    except Exception as err:
        traceback.print_exc()
        return {"ok": False, "error": str(err)}


def _registry_spec(fleet: Fleet) -> list[dict[str, object]]:
    spec: list[dict[str, object]] = [{"name": "fleet/base", "tags": fleet.tags}]
    spec += [{"name": f"fleet/r{i:05d}", "alias": "fleet/base"}
             for i in range(fleet.objects)]
    return spec


def side_by_side(tmp: Path, fleet: Fleet) -> list[Result]:
    """Both controllers on one fleet; the wave result, and idle/restart when asked."""
    work = tmp / fleet.name
    work.mkdir(parents=True, exist_ok=True)
    # Build what is missing before anything is started or timed (minutes, once). Without
    # Flux's binary ours still runs, and Flux's half is reported as failed.
    ensure_built("controlplane")
    unavailable: dict[str, str] = {}
    try:
        flux_binary()
    except Exception as err:
        unavailable[FLUX.key] = f"Flux's controller could not be built: {err}"
    spec = work / "registry-spec.json"
    spec.write_text(json.dumps(_registry_spec(fleet)))
    runs: dict[str, JSON] = {}
    with service(["registry", "--tmp", str(work), "--spec", f"@{spec}", "--metrics"],
                 work / "registry.log") as info:
        reg = Registry(info)
        for peer in PEERS:
            if peer.key in unavailable:
                runs[peer.key] = {"peer": peer.key,
                                  "wave": {"ok": False, "error": unavailable[peer.key]}}
                continue
            try:
                runs[peer.key] = _one_peer(peer, fleet, reg, work / peer.key)
            except Exception as err:
                traceback.print_exc()
                runs[peer.key] = {"peer": peer.key, "wave": {"ok": False, "error": str(err)}}
    return _results(fleet, runs)


# --- results ----------------------------------------------------------------------------


def _ratio(ours: float, flux: float) -> float | None:
    return ours / flux if flux > 0 else None


def _wave_line(key: str, wave: JSON) -> str:
    if not wave.get("ok"):
        return f"{key} FAILED: {wave.get('error')}"
    return (f"{key} all Ready {wave['seconds']:.2f} s (create {wave['create_seconds']:.2f} s), "
            f"{wave['reconciles_per_s']:.0f} reconciles/s, peak RSS {wave['peak_rss_mib']:.1f} "
            f"MiB, CPU {wave['cpu_seconds']:.1f} s, {wave['api_per_scan']:.2f} API and "
            f"{wave['registry_per_scan']:.2f} registry requests/scan")


def _results(fleet: Fleet, runs: dict[str, JSON]) -> list[Result]:
    ours, flux = runs[OURS.key], runs[FLUX.key]
    ow, fw = ours["wave"], flux["wave"]
    kube = ours.get("kubernetes") or flux.get("kubernetes") or "unknown"
    data: JSON = {"objects": fleet.objects, "tags": fleet.tags,
                  "concurrent": fleet.concurrent, "kubernetes": kube,
                  "ours": ow, "flux": fw}
    targets: list[Target] = []
    name = fleet.name
    if ow.get("ok"):
        targets += _absolute_targets(name, fleet, ow)
    if ow.get("ok") and fw.get("ok"):
        rss = ow["peak_rss_mib"] / fw["peak_rss_mib"]
        secs = ow["seconds"] / fw["seconds"]
        targets.append(Target(f"{name}: peak RSS <= 0.5x Flux's", rss <= 0.5,
                              f"{rss:.2f}x ({ow['peak_rss_mib']:.1f} vs "
                              f"{fw['peak_rss_mib']:.1f} MiB)"))
        targets.append(Target(f"{name}: time to all Ready <= 1.0x Flux's", secs <= 1.0,
                              f"{secs:.2f}x ({ow['seconds']:.2f} vs {fw['seconds']:.2f} s)"))
        targets.append(Target(
            f"{name}: registry requests per scan <= Flux's",
            ow["registry_per_scan"] <= fw["registry_per_scan"],
            f"{ow['registry_per_scan']:.2f} vs {fw['registry_per_scan']:.2f}"))
    line = (f"{name} (real kube-apiserver {kube}, --concurrent {fleet.concurrent}): "
            f"{_wave_line('ours', ow)}; {_wave_line('flux', fw)}")
    results = [Result(name, line, data, targets)]
    if fleet.idle_seconds > 0:
        results.append(_idle_result(fleet, ours.get("idle"), flux.get("idle")))
    if fleet.restart_settle > 0:
        results.append(_restart_result(fleet, ours.get("restart"), flux.get("restart")))
    return results


def _absolute_targets(name: str, fleet: Fleet, wave: JSON) -> list[Target]:
    """The targets on our own figures alone, as the first report stated them."""
    out: list[Target] = []
    if fleet.objects == 1000 and fleet.tags == 100:
        out.append(Target(f"{name}: 1,000 Ready within 15 s", wave["seconds"] <= 15.0,
                          f"{wave['seconds']:.2f} s"))
        out.append(Target(f"{name}: >= 100 reconciles/s", wave["reconciles_per_s"] >= 100,
                          f"{wave['reconciles_per_s']:.0f}/s"))
    if fleet.objects == 1000 and fleet.tags == 1000:
        out.append(Target(f"{name}: peak RSS <= 150 MiB (1,000 objects x 1,000 tags)",
                          wave["peak_rss_mib"] <= 150, f"{wave['peak_rss_mib']:.1f} MiB"))
    if fleet.objects >= 10000:
        out.append(Target(f"{name}: peak RSS <= 300 MiB (10,000 objects)",
                          wave["peak_rss_mib"] <= 300, f"{wave['peak_rss_mib']:.1f} MiB"))
    return out


def _idle_result(fleet: Fleet, ours: JSON | None, flux: JSON | None) -> Result:
    n = fleet.objects
    o, f = ours or {"ok": False, "error": "not run"}, flux or {"ok": False, "error": "not run"}
    targets: list[Target] = []

    def text(d: JSON) -> str:
        if not d.get("ok"):
            return f"FAILED: {d.get('error')}"
        return (f"{d['cpu_share'] * 100:.3f}% of one core over {d['seconds']:.0f} s, RSS "
                f"{d['rss_mib']:.1f} MiB, {d['api_requests']:.0f} API and "
                f"{d['registry_requests']:.0f} registry requests")

    if o.get("ok"):
        targets.append(Target(f"idle with {n} objects < 1% of a core", o["cpu_share"] < 0.01,
                              f"{o['cpu_share'] * 100:.2f}%"))
    if o.get("ok") and f.get("ok"):
        targets.append(Target(f"idle-{n}: idle CPU <= Flux's", o["cpu_share"] <= f["cpu_share"],
                              f"{o['cpu_share'] * 100:.3f}% vs {f['cpu_share'] * 100:.3f}% "
                              f"({o['cpu_seconds']:.2f} vs {f['cpu_seconds']:.2f} CPU s)"))
    return Result(f"idle-{n}", f"idle-{n}: {n} scanned objects, interval 1h: ours "
                  f"{text(o)}; flux {text(f)}",
                  {"objects": n, "ours": o, "flux": f}, targets)


def _restart_result(fleet: Fleet, ours: JSON | None, flux: JSON | None) -> Result:
    n = fleet.objects
    o, f = ours or {"ok": False, "error": "not run"}, flux or {"ok": False, "error": "not run"}
    targets: list[Target] = []

    def text(d: JSON) -> str:
        if not d.get("ok"):
            return f"FAILED: {d.get('error')}"
        return (f"/readyz 200 after {d['ready_s'] * 1000:.0f} ms, all {n} reconciled after "
                f"{d['reconciled_s']:.2f} s, {d['registry_requests']:.0f} registry and "
                f"{d['api_requests']:.0f} API requests in {d['window_s']:.1f} s")

    if o.get("ok"):
        targets.append(Target("restart: zero registry requests when nothing is due",
                              o["registry_requests"] == 0, f"{o['registry_requests']:.0f}"))
    return Result(f"restart-{n}", f"restart-{n}: warm store, {n} scanned objects: ours "
                  f"{text(o)}; flux {text(f)}",
                  {"objects": n, "ours": o, "flux": f}, targets)
