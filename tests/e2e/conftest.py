"""Fixtures of the end-to-end tests: the CLIs, and one controller process per module.

``cli`` needs only the session cluster with ``manifests/`` applied (``kube_installed``);
``e2e`` adds a running controller watching the objects labelled with ``e2e.label``.
Both are module-scoped: a controller starts in about a second, and one per module keeps
the modules independent of each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.pytest_plugin import Installed
from tests.e2e.support import Cli, Controller, start_controller


@pytest.fixture(scope="module")
def cli(kube_installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(kube_installed.cluster, tmp_path_factory.mktemp("kubecache"))


@pytest.fixture(scope="module")
def controller(kube_installed: Installed, tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> Iterator[Controller]:
    running = start_controller(kube_installed, tmp_path_factory.mktemp("controller"),
                               request.module.__name__)
    try:
        yield running
    finally:
        code = running.stop()
    # Checked after the yield: a controller that crashed or hung fails the module.
    assert code == 0, f"controller exited {code}:\n{running.tail()}"


@pytest.fixture(scope="module")
def e2e(cli: Cli, controller: Controller) -> Cli:
    """The CLIs, with the module's controller running (its log in failure messages)."""
    cli.controller = controller
    return cli
