"""Fixtures of the credential tests: a namespace of the session cluster to reconcile in."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.credentials.bench import Bench
from tests.credentials.providers.conftest import aws_env, clean_env, moto

__all__ = ["aws_env", "bench", "clean_env", "moto"]

if TYPE_CHECKING:
    from testbed.pytest_plugin import Installed


@pytest.fixture(scope="session")
def bench(kube_installed: Installed,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """One namespace of the real session cluster for the credential tests (unique object
    names per test), deleted with everything in it at the end of the session (deleting a
    namespace costs seconds; one is enough)."""
    testbed = kube_installed.cluster
    namespace = testbed.create_namespace(f"credentials-{secrets.token_hex(4)}")
    try:
        yield Bench(testbed, kube_installed.controller_kubeconfig,
                    tmp_path_factory.mktemp("bench"), namespace)
    finally:
        testbed.delete_namespace(namespace)
