"""Where our controller's CPU goes during a fleet wave on the real API server (py-spy).

``python -m bench.profile_fleet [--objects N] [--tags T] [--concurrent C]`` runs one wave
exactly as ``bench.fleet_bench`` does for ours (fresh testbed cluster, the registry with
its counter, ``--registry-qps=0``), with ``py-spy record --nonblocking`` attached to the
controller process from just before the first POST until the last object is Ready, and
prints a summary of the samples: the share of on-CPU samples by area (the leaf frame's
package: JSON, TLS, aiohttp, asyncio, logging, ours by module, ...) and the functions
with the most samples, inclusive and self. ``make bench`` runs it (1,000 x 100) when a
side-by-side fleet target was missed, and the report carries the summary.

py-spy is not a dependency (``.venv/bin/pip install py-spy``); without it ``profile``
returns None and the report says so. Sampling is non-blocking (the controller is never
paused), at 200 Hz. py-spy leaves out samples of threads it sees sleeping, but on a busy
machine a thread waiting for a core is not sleeping, and its idle test misses some
blocking waits: the samples are therefore shares of the time a thread was running or
ready to run, not CPU seconds (``utime+stime`` over the wave is printed beside them), and
the two known blocking waits (the event loop's ``epoll`` and the SQLite thread's queue)
are taken out. py-spy's own CPU is on the same cores, which slows the wave a little.

Invariants: every process (registry, cluster, controller, py-spy) is stopped when the
profile ends, also on errors; the raw collapsed stacks stay in the temporary directory
only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import VENV_BIN, BenchError, cpu_seconds, service
from bench.fleet_bench import Fleet, Registry, _objects, _registry_spec
from bench.kube import ReadyWatch, fresh_cluster
from bench.peers import OURS, run_controller

RATE = 200

# Leaf frames' files, most specific first: (substring of the path, area).
_AREAS: tuple[tuple[str, str], ...] = (
    ("json/", "JSON (stdlib json)"),
    ("ssl.py", "TLS (ssl)"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp (yarl, multidict)"),
    ("multidict/", "aiohttp (yarl, multidict)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("logging/", "logging"),
    ("pydantic", "pydantic"),
    ("prometheus_client/", "prometheus_client"),
    ("kubernetes_asyncio/", "kubernetes_asyncio"),
    ("aiosqlite/", "SQLite store (aiosqlite)"),
    ("sqlite3/", "SQLite store (sqlite3)"),
    ("copy.py", "copy.deepcopy"),
    ("re2", "re2"),
)


# Leaf frames that are a thread blocked waiting, whatever py-spy's idle test said.
_WAITS: tuple[str, ...] = (
    "EpollSelector.select (",  # the event loop waiting for I/O or a timer
    "_connection_worker_thread (aiosqlite/core.py:59)",  # the SQLite thread's queue get
    "_worker (concurrent/futures/thread.py:81)",  # an idle executor thread
)


def _waiting(frame: str) -> bool:
    short = _short(frame)
    return any(short.startswith(w) or w in short for w in _WAITS)


def _area(frame: str) -> str:
    """The area of a collapsed-stack frame ``func (path:line)``."""
    path = frame.rsplit("(", 1)[-1]
    marker = "imagereflector/"
    if marker in path:
        rest = path.split(marker, 1)[1]
        module = rest.split(":", 1)[0].removesuffix(".py").replace("/", ".")
        return f"ours: {module}"
    for needle, area in _AREAS:
        if needle in path:
            return area
    return "other (stdlib, C extensions)"


def _short(frame: str) -> str:
    """``func (imagereflector/kube/client.py:120)`` without the venv or repo prefix."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for cut in ("site-packages/", "/work/", "lib/python3.11/"):
        if cut in where:
            where = where.split(cut, 1)[1]
    return f"{func} ({where})"


def summarise(raw: str, top: int = 25, cpu_seconds: float | None = None) -> str:
    """The text summary of py-spy's ``--format raw`` (collapsed stacks) output;
    ``cpu_seconds`` (``utime+stime`` over the same window) is printed beside the
    samples' own estimate."""
    total = waits = 0
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        if _waiting(frames[-1]):
            waits += count
            continue
        total += count
        areas[_area(frames[-1])] += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    if total == 0:
        return "no samples"
    measured = "" if cpu_seconds is None else \
        f"; the process's utime+stime over the wave: {cpu_seconds:.1f} s"
    out = [f"{total} samples at {RATE} Hz of threads running or ready to run "
           f"({waits} more in known blocking waits left out){measured}.",
           "Shares, not seconds. A socket write counts with the kernel work it does (on",
           "loopback the sender's call also runs the receiving side of TCP) and often hands",
           "the core to the process it woke, so on a busy machine it is over-represented.",
           "",
           "By area (leaf frame):"]
    out += [f"  {n * 100 / total:5.1f}%  {a}" for a, n in areas.most_common(top)]
    out += ["", "Functions, inclusive (the function or anything it called):"]
    out += [f"  {n * 100 / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "Functions, self (the leaf frame):"]
    out += [f"  {n * 100 / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def py_spy() -> str | None:
    """The py-spy program of the venv or PATH, if installed."""
    found = VENV_BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile(tmp: Path, fleet: Fleet) -> str | None:
    """The summary of one profiled wave of ours, or None when py-spy is missing."""
    spy = py_spy()
    if spy is None:
        return None
    tmp.mkdir(parents=True, exist_ok=True)
    spec = tmp / "registry-spec.json"
    spec.write_text(json.dumps(_registry_spec(fleet)))
    raw = tmp / "stacks.txt"
    with service(["registry", "--tmp", str(tmp), "--spec", f"@{spec}", "--metrics"],
                 tmp / "registry.log") as info, fresh_cluster(tmp / "kube") as bed:
        reg = Registry(info)
        with run_controller(OURS, kubeconfig=bed.ours_kubeconfig, storage=tmp / "data",
                            log=tmp / "controller.log", concurrent=fleet.concurrent) as ctl:
            ctl.wait_ready(within=120.0)
            time.sleep(1.0)
            watch = ReadyWatch(bed).start()
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(ctl.pid), "--rate", str(RATE), "--nonblocking",
                 "--format", "raw", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=(tmp / "py-spy.log").open("wb"))
            try:
                time.sleep(1.0)  # py-spy attached
                watch.expect(fleet.objects)
                cpu0 = cpu_seconds(ctl.pid)
                started = time.perf_counter()
                bed.create_repositories(_objects(fleet, reg.host))
                done = watch.wait(started + fleet.within,
                                  alive=lambda: ctl.proc.poll() is None)
                cpu = cpu_seconds(ctl.pid) - cpu0
            finally:
                watch.stop()
                recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                try:
                    recorder.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    recorder.wait(timeout=10)
    if not raw.exists():
        raise BenchError(f"py-spy wrote nothing: {(tmp / 'py-spy.log').read_text()[-2000:]}")
    head = (f"ours, {fleet.objects} x {fleet.tags} tags, --concurrent {fleet.concurrent}: "
            f"all Ready {done - started:.1f} s after the first POST under py-spy.\n")
    return head + summarise(raw.read_text(), cpu_seconds=cpu)


def main(argv: list[str] | None = None) -> int:
    """Run one profiled wave and print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_fleet")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imagereflector-profile-") as work:
        text = profile(Path(work), Fleet(args.objects, args.tags, args.concurrent))
    sys.stdout.write((text or "py-spy is not installed: .venv/bin/pip install py-spy") + "\n")
    return 0 if text else 1


if __name__ == "__main__":
    sys.exit(main())
