"""The controllers compared: ours and Flux's image-reflector-controller, as processes.

Each peer is started with the flags a Flux user would give it, its own storage, metrics
and health endpoints on loopback (port 0), and ``--watch-label-selector`` on a label only its own
copies of the scenario objects carry, so several peers share one API server without
touching each other's objects (namespace events are cluster-wide; both controllers only
read them).

Identity: ours runs as the manifests' ServiceAccount (the RBAC it ships with); Flux's
runs as the cluster admin, because our manifests' ClusterRole is ours, not Flux's, and a
403 that only Flux would meet is not a behaviour to compare.

Invariants: a peer's process is stopped (SIGTERM, then SIGKILL after 10 s) when its
context exits, and killed with the run if the run itself is killed; its log is kept in
the run directory for the report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.build import ensure_built
from testbed.cluster import die_with_parent

PEER_LABEL = "conformance.imagereflector.io/peer"


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One controller to compare: ``key`` names it in namespaces and results.

    A Flux peer names the peer of ours it is compared with (``ours``): our controller in
    the ``--flux-compatibility`` mode of that Flux release.
    """

    key: str
    title: str
    kind: str  # "ours" or a testbed build target of Flux's controller
    version: str
    flags: tuple[str, ...] = ()
    ours: str = ""
    api_version: str = "v1beta2"


OURS = PeerSpec("ours", "imagereflector", "ours", "", ("--flux-compatibility=v0.31",))
OURS_V12 = PeerSpec("ours-v1.2", "imagereflector", "ours", "", ("--flux-compatibility=v1.2",),
                    api_version="v1")
FLUX_V031 = PeerSpec("flux-v0.31", "Flux image-reflector-controller", "flux-v2.2", "v0.31.0",
                     ours="ours")
# FluxStorage keys tags per object, as this project's store does (contract A1); Flux's
# default Badger store shares them per image and writes an adler32 revision instead.
FLUX_V12 = PeerSpec("flux-v1.2", "Flux image-reflector-controller", "flux-latest", "v1.2.4",
                    ("--feature-gates=FluxStorage=true",), ours="ours-v1.2", api_version="v1")
PEERS = {spec.key: spec for spec in (OURS, OURS_V12, FLUX_V031, FLUX_V12)}


@dataclass
class RunningPeer:
    """A started peer: its spec, process and log."""

    spec: PeerSpec
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None


def command(spec: PeerSpec, *, kubeconfig: Path, storage: Path, metrics: str,
            health: str) -> list[str]:
    """The command line of ``spec`` with the flags both controllers share."""
    shared = [f"--storage-path={storage}", f"--metrics-addr={metrics}",
              f"--health-addr={health}", "--enable-leader-election=false",
              f"--watch-label-selector={PEER_LABEL}={spec.key}", "--log-level=info"]
    if spec.kind == "ours":
        return [sys.executable, "-m", "imagereflector", "controller",
                f"--kubeconfig={kubeconfig}", *shared, *spec.flags]
    binary = ensure_built(spec.kind, log=sys.stderr) / "image-reflector-controller"
    return [str(binary), *shared, *spec.flags]


@contextlib.contextmanager
def running(spec: PeerSpec, *, kubeconfig: Path, admin_kubeconfig: Path,
            run_dir: Path) -> Iterator[RunningPeer]:
    """Start ``spec`` for the duration of the block."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Port 0: the kernel picks free ports at bind time. Choosing one first and handing it
    # over raced with every other server started meanwhile (the harness reads nothing
    # from these endpoints).
    argv = command(spec, kubeconfig=kubeconfig, storage=run_dir / "data",
                   metrics="127.0.0.1:0", health="127.0.0.1:0")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    if spec.kind != "ours":
        # controller-runtime reads KUBECONFIG (Flux has no --kubeconfig flag of its own).
        env["KUBECONFIG"] = str(admin_kubeconfig)
    log = run_dir / "controller.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True, preexec_fn=die_with_parent)
    peer = RunningPeer(spec=spec, process=process, log=log)
    try:
        yield peer
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
