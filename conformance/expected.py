"""Flux's recorded outcomes: what ``make test`` holds our controller to.

``make conformance`` runs the corpus against Flux's controller and writes each Flux peer's
normalised checkpoints to ``conformance/expected/<peer>.json`` with the versions they came
from. ``tests/conformance`` reads them back and compares our controller's outcome of the
same scenarios, so a regression shows without building Flux.

Invariant: the files hold only normalised observations (no ports, times, namespaces or
digests of one run), so they are stable across runs and machines.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from conformance.peers import PEERS

JSON = dict[str, Any]
DIRECTORY = Path(__file__).resolve().parent / "expected"


def path(peer: str) -> Path:
    """Where the outcomes of ``peer`` are kept."""
    return DIRECTORY / f"{peer}.json"


def versions(peer: str, bin_dir: Path) -> JSON:
    """The versions a recording came from: Flux's controller and Kubernetes."""
    kubectl = subprocess.run([str(bin_dir / "kubectl"), "version", "--client", "-o", "json"],
                             capture_output=True, text=True, check=False)
    try:
        kubernetes = json.loads(kubectl.stdout)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        kubernetes = "unknown"
    return {"controller": f"{PEERS[peer].title} {PEERS[peer].version}",
            "kubernetes": kubernetes}


def write(peer: str, scenarios: JSON, *, versions: JSON) -> Path:
    """Record ``peer``'s checkpoints per scenario."""
    DIRECTORY.mkdir(exist_ok=True)
    target = path(peer)
    target.write_text(json.dumps({"peer": peer, "versions": versions,
                                  "scenarios": scenarios}, indent=1, sort_keys=True) + "\n")
    return target


def read(peer: str) -> JSON:
    """The recorded file of ``peer`` (``peer``, ``versions``, ``scenarios``)."""
    loaded: JSON = json.loads(path(peer).read_text())
    return loaded
