"""The fixtures' rule for binaries that cannot be built: skip locally, fail in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import pytest_plugin
from testbed.build import BuildError
from testbed.pytest_plugin import Installed


def _cannot_build(target: str, **_kwargs: object) -> Path:
    raise BuildError(f"no Go toolchain to build {target}")


def test_unbuildable_binaries_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_plugin, "ensure_built", _cannot_build)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no Go toolchain"):
        pytest_plugin.require_binaries("controlplane")


def test_unbuildable_binaries_skip_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_plugin, "ensure_built", _cannot_build)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Go toolchain"):
        pytest_plugin.require_binaries("controlplane")


@pytest.mark.parametrize(
    ("test_name", "expected_stem"),
    [
        ("test_something_simple", "test-something-simple"),
        ("test_param[Upper/Case:1]", "test-param-upper-case-1"),
        ("x" * 80, "x" * 40),
        ("___", "test"),
    ],
)
def test_namespace_names_are_dns_labels(test_name: str, expected_stem: str) -> None:
    name = pytest_plugin._namespace_name(test_name)
    stem, _, suffix = name.rpartition("-")
    assert stem == expected_stem
    assert len(suffix) == 8
    assert len(name) <= 63
    assert name == name.lower()


def test_installed_manifests_give_the_controller_its_roles_and_no_more(
        kube_installed: Installed) -> None:
    cluster, kubeconfig = kube_installed.cluster, kube_installed.controller_kubeconfig
    names = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/" \
        "imagerepositories.image.toolkit.fluxcd.io" in names

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig,
                               check=False).stdout.strip()

    assert can("patch", "imagerepositories.image.toolkit.fluxcd.io/status", "-A") == "yes"
    assert can("get", "secrets", "-n", "any") == "yes"
    assert can("delete", "secrets", "-n", "any") == "no"
    assert can("create", "imagerepositories.image.toolkit.fluxcd.io", "-A") == "no"
