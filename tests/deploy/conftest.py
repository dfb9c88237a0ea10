"""Fixtures for the deployment tests: the manifests as ``kubectl kustomize`` renders them.

Rendering uses the real kubectl (with its built-in kustomize), the tool a user runs;
a missing kubectl fails these tests rather than skipping them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "image-reflector-system"
NAME = "image-reflector-controller"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render ``directory`` with ``kubectl kustomize``; fail loudly when that fails."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is not on PATH (make debs installs it)"
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


@pytest.fixture(scope="session")
def rendered() -> list[dict[str, Any]]:
    """Every object of ``kubectl kustomize manifests/``."""
    return kustomize(MANIFESTS)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one rendered object of ``kind`` named ``name``."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
