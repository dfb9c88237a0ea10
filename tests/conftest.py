"""Shared pytest fixtures.

``kube`` gives a test its share of the real session cluster (namespace, label, recording
proxy, admin client; ``tests/controllers/realharness.py``), all deleted after it.
Registry fixtures start a real ``docker-registry`` per test (well under a second) in the
test's tmp dir and always stop it at teardown; the token server and TLS material are per
test too, so no state leaks between tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.controllers.realharness import KubeTest, kube_test
from tests.fakes.certs import make_ca
from tests.fakes.registry import TEST_CREDS, RegistryProcess, start_registry
from tests.fakes.tokenserver import TokenServer

if TYPE_CHECKING:
    from testbed.pytest_plugin import Installed

# The real control plane (etcd + kube-apiserver built from tools/controlplane):
# `kube_cluster` (one per session) and `kube_namespace` (one per test).
pytest_plugins = ("testbed.pytest_plugin",)


@pytest.fixture
async def kube(kube_installed: Installed, tmp_path: Path,
               request: pytest.FixtureRequest) -> AsyncIterator[KubeTest]:
    """This test's share of the real session cluster (``manifests/`` applied): its own
    namespace (``kube.ns``) and label, a recording proxy in front of the API server
    (``kube.proxy``) and the admin client (``kube.api``); all deleted afterwards.
    ``tests.controllers.realharness.start_cluster(kube)`` runs the controller on it."""
    async with kube_test(kube_installed, tmp_path / "kube", request.node.name) as found:
        yield found


# --- real registry fixtures ------------------------------------------------------------


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    """An anonymous plain-http registry."""
    reg = await start_registry(tmp_path)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def basic_registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    """A plain-http registry behind htpasswd Basic auth accepting ``TEST_CREDS``."""
    reg = await start_registry(tmp_path, htpasswd=TEST_CREDS)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def token_server(tmp_path: Path) -> AsyncIterator[TokenServer]:
    """A plain-http token realm accepting ``TEST_CREDS``; anonymous callers get 401."""
    server = TokenServer(tmp_path / "token", users=dict([TEST_CREDS]))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def token_registry(
    tmp_path: Path, token_server: TokenServer
) -> AsyncIterator[RegistryProcess]:
    """A plain-http registry with Bearer token auth against ``token_server``."""
    reg = await start_registry(tmp_path, token=token_server)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def tls_registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    """An anonymous https registry; ``.ca`` is the private CA that signed its certificate."""
    ca = make_ca(tmp_path / "pki-tls")
    server = ca.issue(tmp_path / "pki-tls", "registry")
    reg = await start_registry(tmp_path, tls=server, ca=ca)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def mtls_registry(tmp_path: Path) -> AsyncIterator[RegistryProcess]:
    """An https registry that requires client certificates from ``.ca``.

    ``.client`` is a client key pair it accepts.
    """
    ca = make_ca(tmp_path / "pki-mtls")
    server = ca.issue(tmp_path / "pki-mtls", "registry")
    client = ca.issue(tmp_path / "pki-mtls", "client", server=False, client=True, sans=())
    reg = await start_registry(tmp_path, tls=server, client_ca=ca.cert_file, ca=ca, client=client)
    try:
        yield reg
    finally:
        reg.stop()
