"""``manifests/`` renders, validates against the Kubernetes schemas, and runs hardened.

Schema validation is offline, with the schemas bundled in the ``kubernetes-validate``
package (strict: unknown fields fail). The Deployment's command line is parsed by the
real ``imagereflector`` argument parser, so a renamed or removed flag fails here before
it crash-loops a pod.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from imagereflector.cli import build_parser, settings_from_args
from tests.deploy.conftest import MANIFESTS, NAME, NAMESPACE, ROOT, find, kustomize

# Flux v2.2 supports Kubernetes 1.26 and later; check an old and the newest schema set.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
EXPECTED = {
    ("Namespace", NAMESPACE),
    ("CustomResourceDefinition", "imagerepositories.image.toolkit.fluxcd.io"),
    ("CustomResourceDefinition", "imagepolicies.image.toolkit.fluxcd.io"),
    ("ServiceAccount", NAME),
    ("ClusterRole", NAME),
    ("ClusterRoleBinding", NAME),
    ("Role", f"{NAME}-leader-election"),
    ("RoleBinding", f"{NAME}-leader-election"),
    ("Deployment", NAME),
    ("Service", NAME),
}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(objects, "Deployment", NAME)["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"manager"}
    container: dict[str, Any] = containers["manager"]
    return container


def test_renders_exactly_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered} == EXPECTED


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(
        rendered: list[dict[str, Any]], version: str) -> None:
    problems = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {err.message}")
    assert problems == []


def test_schema_validation_rejects_a_broken_object(rendered: list[dict[str, Any]]) -> None:
    # The validator must be able to fail: a misspelt field in the Deployment is caught.
    broken = yaml.safe_load(yaml.safe_dump(find(rendered, "Deployment", NAME)))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_namespaced_objects_live_in_the_controller_namespace(
        rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, obj["kind"]
        else:
            assert namespace == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
    labels = find(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["control-plane"] == "controller"


def test_the_crds_are_the_generated_files(rendered: list[dict[str, Any]]) -> None:
    for path in sorted((MANIFESTS / "crds").glob("image.toolkit.fluxcd.io_*.yaml")):
        committed = yaml.safe_load(path.read_text())
        assert find(rendered, "CustomResourceDefinition",
                    committed["metadata"]["name"]) == committed


def test_deployment_identity_and_service_account(rendered: list[dict[str, Any]]) -> None:
    deployment = find(rendered, "Deployment", NAME)
    assert deployment["metadata"]["labels"] == {
        "app": NAME, "control-plane": "controller"}
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": NAME}
    assert template["metadata"]["labels"]["app"] == NAME
    assert template["spec"]["serviceAccountName"] == NAME
    assert template["spec"]["terminationGracePeriodSeconds"] == 10
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080"}


def test_pod_runs_hardened(rendered: list[dict[str, Any]]) -> None:
    pod = find(rendered, "Deployment", NAME)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"fsGroup": 1337, "runAsNonRoot": True}
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace)
    security = _container(rendered)["securityContext"]
    assert security == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_data_and_tmp_are_the_only_writable_mounts(rendered: list[dict[str, Any]]) -> None:
    pod = find(rendered, "Deployment", NAME)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes == {"data": {"name": "data", "emptyDir": {}},
                       "temp": {"name": "temp", "emptyDir": {}}}
    mounts = {m["name"]: m["mountPath"] for m in _container(rendered)["volumeMounts"]}
    assert mounts == {"data": "/data", "temp": "/tmp"}
    assert not any(m.get("readOnly") for m in _container(rendered)["volumeMounts"])


def test_ports_probes_env_and_resources(rendered: list[dict[str, Any]]) -> None:
    container = _container(rendered)
    assert {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]} == {
        "http-prom": (8080, "TCP"), "healthz": (9440, "TCP")}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    assert container["env"] == [{"name": "RUNTIME_NAMESPACE", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.namespace"}}}]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "1000m", "memory": "512Mi"}}
    assert container["image"] == "imagereflector:latest"
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_metrics_service_selects_the_pod_port(rendered: list[dict[str, Any]]) -> None:
    service = find(rendered, "Service", NAME)
    pod_labels = find(rendered, "Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http-prom", "port": 8080, "targetPort": "http-prom", "protocol": "TCP"}]


def _parse_controller(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:
        raise AssertionError(f"imagereflector rejects {argv}") from exit_


def test_deployment_command_line_is_accepted_by_the_cli(
        rendered: list[dict[str, Any]]) -> None:
    container = _container(rendered)
    assert container["command"] == ["imagereflector", "controller"]
    args = _parse_controller([*container["command"][1:], *container["args"]])
    assert args.command == "controller"
    settings = settings_from_args(args)
    assert settings.watch_all_namespaces is True
    assert settings.enable_leader_election is True
    assert settings.log_level == "info"
    assert settings.log_encoding == "json"
    assert settings.storage_path == "/data"
    # The ports the probes and the Service use are the CLI's defaults.
    assert settings.metrics_addr == ":8080"
    assert settings.health_addr == ":9440"


def test_cli_check_can_fail() -> None:
    with pytest.raises(AssertionError, match="rejects"):
        _parse_controller(["controller", "--no-such-flag"])


def test_deployment_command_is_the_image_entrypoint(rendered: list[dict[str, Any]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoints = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, flags=re.MULTILINE)
    assert entrypoints == ['["imagereflector", "controller"]']
    assert _container(rendered)["command"] == ["imagereflector", "controller"]


def test_users_can_set_the_image_with_kustomize(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize accepts only relative paths to other kustomizations.
        "resources": [os.path.relpath(MANIFESTS, overlay)],
        "images": [{"name": "imagereflector",
                    "newName": "registry.example.com/platform/imagereflector",
                    "newTag": "v0.1.0"}],
    }))
    assert _container(kustomize(overlay))["image"] == (
        "registry.example.com/platform/imagereflector:v0.1.0")


def test_samples_are_not_applied(rendered: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert not kinds & {"ImageRepository", "ImagePolicy"}
    assert sorted(p.name for p in (MANIFESTS / "samples").glob("*.yaml"))
