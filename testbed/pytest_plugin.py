"""pytest fixtures for the real control plane: ``kube_cluster`` and ``kube_namespace``.

Role: give tests a real kube-apiserver (with etcd) on loopback, one per test session,
a fresh namespace per test, and (``kube_installed``) the session cluster with
``manifests/`` applied and a kubeconfig of the controller's own ServiceAccount. Loaded
by ``tests/conftest.py`` through ``pytest_plugins``.

Invariants:

- The cluster lives in a session temp dir, its processes die with the session (also
  when pytest is killed: they get SIGKILL when their parent dies) and are stopped by
  PID at the end of the session.
- Missing binaries are built first (a one-time build of several minutes; ``make test``
  builds them before pytest starts, so this only happens for a bare ``pytest``). When a
  build is impossible the test is skipped on a developer machine and FAILS when
  ``CI=true``: CI must never pass by skipping the real cluster.
- Each ``kube_namespace`` is unique to its test and deleted, with everything in it,
  when the test ends.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.build import BuildError, ensure_built
from testbed.cluster import Cluster, ClusterError


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binaries(target: str = "controlplane") -> Path:
    """``target``'s bin dir, built if missing; skip (fail under CI) when it cannot be."""
    try:
        # The build's progress goes to the real stderr: pytest captures sys.stderr, and
        # several silent minutes would look like a hang.
        return ensure_built(target, log=sys.__stderr__)
    except BuildError as exc:
        message = f"cannot build the {target} binaries: {exc}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running etcd + kube-apiserver for the whole session (admin: ``.kubeconfig``)."""
    bin_dir = require_binaries("controlplane")
    cluster = Cluster(tmp_path_factory.mktemp("kube"), bin_dir, tie_to_parent=True)
    try:
        cluster.up()
    except ClusterError as exc:
        cluster.down()
        pytest.fail(f"the test cluster did not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.down()


def _namespace_name(test_name: str) -> str:
    # DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters.
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem or 'test'}-{secrets.token_hex(4)}"


@pytest.fixture
def kube_namespace(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount), deleted after the test."""
    name = kube_cluster.create_namespace(_namespace_name(request.node.name))
    try:
        yield name
    finally:
        kube_cluster.delete_namespace(name)


# The manifests' identity of the controller (manifests/rbac/service_account.yaml).
CONTROLLER_NAMESPACE = "image-reflector-system"
CONTROLLER_SERVICE_ACCOUNT = "image-reflector-controller"
_MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
_CRDS = ("imagerepositories.image.toolkit.fluxcd.io", "imagepolicies.image.toolkit.fluxcd.io")


@dataclass(frozen=True, slots=True)
class Installed:
    """The session cluster with ``manifests/`` applied.

    ``controller_kubeconfig`` logs in as the manifests' ServiceAccount, so a controller
    run with it has exactly the RBAC the manifests grant (a missing verb is a 403).
    """

    cluster: Cluster
    controller_kubeconfig: Path


@pytest.fixture(scope="session")
def kube_installed(kube_cluster: Cluster,
                   tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """``kubectl apply --server-side -k manifests/`` once per session, CRDs established,
    and a kubeconfig for the controller's ServiceAccount (valid for three hours)."""
    kube_cluster.kubectl("apply", "--server-side", "-k", str(_MANIFESTS), timeout=120)
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         *(f"crd/{name}" for name in _CRDS), timeout=90)
    path = tmp_path_factory.mktemp("controller") / "kubeconfig"
    kube_cluster.service_account_kubeconfig(
        CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, path, expiration_seconds=3 * 3600)
    return Installed(cluster=kube_cluster, controller_kubeconfig=path)
