"""The two controllers the fleet benchmarks compare, started as processes alike.

``OURS`` is ``python -m imagereflector controller``; ``FLUX`` is Flux's
image-reflector-controller v0.31.0 built by ``testbed.build`` (target ``flux-v2.2``).
Both get the flags they share with the same values (``--concurrent``,
``--storage-path``, ``--metrics-addr`` and ``--health-addr`` on loopback ports,
``--enable-leader-election=false``, ``--log-level=info``) and otherwise their defaults
(both default to ``--kube-api-qps=50 --kube-api-burst=300``, JSON logs, all namespaces).
Ours also gets ``--registry-qps=0``: its polite per-host limit (10/s by default) would
throttle a benchmark that scans one registry host thousands of times, and Flux has no
such limit. Ours reads its kubeconfig from ``--kubeconfig``, Flux's from
``KUBECONFIG`` (it has no flag), each a ServiceAccount token kubeconfig
(``bench.kube``).

``BENCH_OURS_TREE=DIR`` runs ours from another checkout (a directory holding the
``imagereflector`` package, e.g. ``git worktree add /tmp/before <commit>``) with the same
venv: how a change is measured before and after on the same machine, and how the bench
keeps running while the working tree is mid-edit.

Invariants: a controller's process is stopped (SIGTERM, then SIGKILL after 15 s) when
its context ends, also on errors, and is killed by the kernel if the bench process dies
(``setpriv --pdeathsig``); proxy variables are removed from its environment (everything is
on loopback); its output goes to a log file in the run directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import JSON, REPO_ROOT, ControllerProcess, free_port, stop_process
from testbed.build import bin_dir, ensure_built


@dataclass(frozen=True, slots=True)
class Peer:
    """One controller: ``key`` names it in results, ``title`` in the report."""

    key: str
    title: str
    version: str


OURS = Peer("ours", "imagereflector", "")
FLUX = Peer("flux", "Flux image-reflector-controller", "v0.31.0")
PEERS = (OURS, FLUX)


def flux_binary() -> Path:
    """Flux's controller v0.31.0 (built from ``tools/flux-v2.2`` when missing)."""
    return ensure_built("flux-v2.2") / "image-reflector-controller"


def ours_tree() -> Path:
    """Where ours runs from: ``BENCH_OURS_TREE`` or this checkout."""
    tree = os.environ.get("BENCH_OURS_TREE")
    return Path(tree).resolve() if tree else REPO_ROOT


def ours_version() -> str:
    """The commit the benchmark ran (``git describe``), with ``-dirty`` when edited."""
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ours_tree(),
                         capture_output=True, text=True, check=False).stdout.strip()
    suffix = "" if ours_tree() == REPO_ROOT else f" from {ours_tree()}"
    return (out or "unknown") + suffix


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "not built"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


def versions() -> JSON:
    """What the side-by-side ran: our commit, Flux's controller, Kubernetes and etcd
    (asked of the testbed binaries, which are not built here when missing)."""
    plane = bin_dir("controlplane")
    kube = _first_line([str(plane / "kube-apiserver"), "--version"]).split()[-1]
    etcd = _first_line([str(plane / "etcd"), "--version"]).split()[-1]
    return {"ours": ours_version(), "flux": FLUX.version, "kubernetes": kube, "etcd": etcd}


def command(peer: Peer, *, kubeconfig: Path, storage: Path, metrics_port: int,
            health_port: int, concurrent: int,
            extra: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of ``peer`` with the flags both controllers share."""
    shared = [f"--storage-path={storage}", f"--metrics-addr=127.0.0.1:{metrics_port}",
              f"--health-addr=127.0.0.1:{health_port}", "--enable-leader-election=false",
              "--log-level=info", f"--concurrent={concurrent}"]
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and k != "KUBECONFIG"}
    if peer.key == OURS.key:
        # ``-m`` puts the working directory first on sys.path: the tree's package wins
        # over whatever the venv has installed.
        env["PYTHONPATH"] = str(ours_tree())
        argv = [sys.executable, "-m", "imagereflector", "controller",
                f"--kubeconfig={kubeconfig}", *shared, "--registry-qps=0", *extra]
        return argv, env
    env["KUBECONFIG"] = str(kubeconfig)
    return [str(flux_binary()), *shared, *extra], env


def _with_parent_death(argv: list[str]) -> list[str]:
    """``argv`` run through ``setpriv --pdeathsig KILL`` when util-linux has it: the
    kernel kills the controller if the bench dies. ``setpriv`` execs, so the pid is the
    controller's; no ``preexec_fn`` (unsafe beside the bench's watch thread)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


@contextlib.contextmanager
def run_controller(peer: Peer, *, kubeconfig: Path, storage: Path, log: Path,
                   concurrent: int = 4,
                   extra: Sequence[str] = ()) -> Iterator[ControllerProcess]:
    """Start ``peer`` for the duration of the block (log appended to ``log``)."""
    metrics_port, health_port = free_port(), free_port()
    argv, env = command(peer, kubeconfig=kubeconfig, storage=storage,
                        metrics_port=metrics_port, health_port=health_port,
                        concurrent=concurrent, extra=extra)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(_with_parent_death(argv), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                cwd=ours_tree() if peer is OURS else REPO_ROOT, env=env)
    try:
        yield ControllerProcess(proc, metrics_port, health_port, log, started)
    finally:
        stop_process(proc)
