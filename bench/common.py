"""Shared plumbing of the benchmarks: results, statistics, processes, /proc and /metrics.

Invariants:
* ``service`` always stops what it started (terminate, then kill after a grace period)
  when its ``with`` block ends, also on errors; controllers are started and stopped the
  same way by ``bench.peers.run_controller``.
* Waits poll with a deadline; a deadline passing raises ``BenchError`` with the
  process's log tail instead of hanging.
* Results carry raw numbers (``data``) for the report and one printable ``line``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a deadline passed)."""


@dataclass(slots=True)
class Result:
    """One benchmark's outcome: a summary line, raw numbers and target verdicts."""

    name: str
    line: str
    data: JSON = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Target:
    """A stated target and whether the measurement met it."""

    text: str
    met: bool
    measured: str


def median(values: Sequence[float]) -> float:
    """The median (of at least one value)."""
    return statistics.median(values)


def ms(seconds: float) -> str:
    """Seconds as a short millisecond figure."""
    return f"{seconds * 1000:.1f} ms"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine() -> JSON:
    """What the numbers were measured on: CPU, cores, memory, Python, OS."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    free = subprocess.run(["free", "-m"], capture_output=True, text=True, check=False).stdout
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout
    skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True,
                            check=False).stdout.strip()
    registry = subprocess.run(["/usr/bin/docker-registry", "--version"], capture_output=True,
                              text=True, check=False).stdout.strip()
    # Other work on a shared machine skews every figure; the load average shows it.
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cpu": cpu, "nproc": nproc.strip(), "free": free.strip(), "loadavg": " ".join(load),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "skopeo": skopeo, "registry": registry}


# --- /proc ------------------------------------------------------------------------------

def rss_kib(pid: int, field_name: str = "VmHWM") -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of ``pid`` in KiB from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"{field_name} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; fields restart after its ")".
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_wait_seconds(pid: int) -> float:
    """Seconds ``pid``'s threads spent runnable but waiting for a core (the second field
    of ``/proc/<pid>/task/<tid>/schedstat``, summed over the threads alive now): how much
    other work on the machine held the process back."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


# --- HTTP -------------------------------------------------------------------------------

def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? "
                     r"(?P<value>\S+)$")


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` in Prometheus text whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match["value"])
    return total


# --- processes --------------------------------------------------------------------------

def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; always reaps."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def service(args: list[str], log: Path, *, startup: float = 120.0) -> Iterator[JSON]:
    """Run ``python -m bench.servers ARGS``; yield the JSON line it announces.

    stdin is a pipe held open for the service's lifetime: if this process dies, the pipe
    closes and the service stops itself.
    """
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bench.servers", *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                cwd=REPO_ROOT)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + startup
        line = b""
        # readline blocks, but the service either announces or exits (EOF) quickly;
        # the deadline guards a service that is alive and silent.
        while not line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        if not line:
            raise BenchError(f"service {args[0]} did not start:\n{_tail(log)}")
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _tail(path: Path, size: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-size:]
    return ""


@dataclass(slots=True)
class ControllerProcess:
    """A controller (ours or Flux's, ``bench.peers``) as a child process on ephemeral
    loopback ports: its /metrics, /readyz and /proc figures."""

    proc: subprocess.Popen[bytes]
    metrics_port: int
    health_port: int
    log: Path
    started_at: float

    @property
    def pid(self) -> int:
        """The controller's process id (Python itself, or Flux's Go binary)."""
        return self.proc.pid

    def metrics(self) -> str:
        """The current /metrics text, asked for gzip-compressed as Prometheus asks."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.metrics_port}/metrics",
            headers={"Accept-Encoding": "gzip"})
        try:
            with urllib.request.urlopen(req, timeout=30.0) as resp:  # noqa: S310 - loopback
                raw = resp.read()
                gzipped = resp.headers.get("Content-Encoding") == "gzip"
        except (urllib.error.URLError, OSError) as err:
            raise BenchError(f"/metrics failed: {err}\n{_tail(self.log)}") from err
        return (gzip.decompress(raw) if gzipped else raw).decode()

    def ready(self) -> bool:
        """Whether /readyz answers 200."""
        return http_get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1.0)[0] == 200

    def wait_ready(self, within: float = 60.0) -> float:
        """Seconds from process start until /readyz answered 200 (polled every 5 ms)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"controller exited {self.proc.returncode}:\n{_tail(self.log)}")
            if self.ready():
                return time.perf_counter() - self.started_at
            time.sleep(0.005)
        raise BenchError(f"controller not ready in {within}s:\n{_tail(self.log)}")
