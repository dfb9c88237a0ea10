"""``kubectl apply -k manifests/`` on a real API server, and what the CRD schemas enforce.

The session cluster has ``manifests/`` applied server-side (the ``kube_installed``
fixture, exactly as docs/operations.md tells an operator). These tests check that every
object of the kustomization is there, that every file of ``manifests/samples/`` is
accepted by the server with strict field validation, and that the server itself refuses
what the CRDs' OpenAPI schemas forbid, with the field path in the message. The cases are
the schema's own rules (``manifests/crds/``), in v1beta2 and v1, Flux v1's two CEL rules
among them; what v1beta2 does not constrain (a missing ``spec.image``, an empty
``spec.policy``) is accepted, as with Flux's CRDs of v0.31, and left to the controller to
report, while v1 requires ``image`` and ``interval`` as Flux v1 does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.build import REPO_ROOT
from testbed.pytest_plugin import Installed
from tests.e2e.support import GROUP_VERSION, Cli

pytestmark = pytest.mark.slow

MANIFESTS = REPO_ROOT / "manifests"
SAMPLES = sorted((MANIFESTS / "samples").glob("*.yaml"))


@pytest.fixture(scope="module")
def namespace(kube_installed: Installed) -> Iterator[str]:
    """One namespace for the module: every request here is a dry run, nothing is stored."""
    cluster = kube_installed.cluster
    name = cluster.create_namespace()
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


def test_every_object_of_the_kustomization_is_installed(cli: Cli) -> None:
    rendered = cli.kubectl("kustomize", str(MANIFESTS)).stdout
    expected = {f"{doc['kind']}/{doc['metadata']['name']}"
                for doc in yaml.safe_load_all(rendered) if doc}
    listed = cli.kubectl("get", "-k", str(MANIFESTS), "-o",
                         "jsonpath={range .items[*]}{.kind}/{.metadata.name}{'\\n'}{end}")
    assert set(listed.stdout.split()) == expected
    assert expected >= {
        "Namespace/image-reflector-system",
        "CustomResourceDefinition/imagerepositories.image.toolkit.fluxcd.io",
        "CustomResourceDefinition/imagepolicies.image.toolkit.fluxcd.io",
        "ServiceAccount/image-reflector-controller",
        "ClusterRole/image-reflector-controller",
        "ClusterRoleBinding/image-reflector-controller",
        "Role/image-reflector-controller-leader-election",
        "RoleBinding/image-reflector-controller-leader-election",
        "Deployment/image-reflector-controller",
        "Service/image-reflector-controller",
    }
    versions = cli.kubectl(
        "get", "crd", "imagerepositories.image.toolkit.fluxcd.io", "-o",
        "jsonpath={range .spec.versions[*]}{.name}:{.served}:{.storage} {end}").stdout
    # Flux v1's layout beside Flux 2.2's versions: v1 is stored (design note).
    assert versions.split() == ["v1beta1:true:false", "v1beta2:true:false", "v1:true:true"]


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_every_sample_is_accepted_by_the_server(cli: Cli, namespace: str,
                                                sample: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(sample.read_text()) if doc]
    assert docs, f"{sample} is empty"
    for doc in docs:
        # Samples name namespaces of their story (flux-system, team-a); the module's
        # namespace stands in. Dry run: the server validates and stores nothing, so no
        # controller anywhere scans ghcr.io.
        doc["metadata"]["namespace"] = namespace
        done = cli.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                           input_text=yaml.safe_dump(doc))
        assert "(server dry run)" in done.stdout


V1 = "image.toolkit.fluxcd.io/v1"


def _repository(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": GROUP_VERSION, "kind": "ImageRepository",
            "metadata": {"name": "invalid"}, "spec": {"image": "example.com/app",
                                                      "interval": "5m", **spec}}


def _policy(spec: dict[str, Any], api_version: str = GROUP_VERSION) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "ImagePolicy",
            "metadata": {"name": "invalid"}, "spec": spec}


def _v1(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "apiVersion": V1}


def _without(obj: dict[str, Any], field: str) -> dict[str, Any]:
    return {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != field}}


# The CEL rules of Flux v1 (both versions), reported on spec as kube-apiserver v1.37 words it.
_CEL = "spec: Invalid value: "
_ONLY_WITH_ALWAYS = (f"{_CEL}spec.interval is only accepted when spec.digestReflectionPolicy "
                     "is set to 'Always'")
_NEEDS_INTERVAL = f"{_CEL}spec.interval must be set when spec.digestReflectionPolicy is set to "


_REF = {"imageRepositoryRef": {"name": "app"}}
_SEMVER = {"policy": {"semver": {"range": "1.x"}}}

REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("interval-pattern", _repository(interval="5 minutes"),
     "spec.interval: Invalid value: \"5 minutes\": spec.interval in body should match "
     "'^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'"),
    ("timeout-has-no-hours", _repository(timeout="1h"),
     "spec.timeout: Invalid value: \"1h\": spec.timeout in body should match "
     "'^([0-9]+(\\.[0-9]+)?(ms|s|m))+$'"),
    ("provider-enum", _repository(provider="docker"),
     "spec.provider: Unsupported value: \"docker\": supported values: "
     "\"generic\", \"aws\", \"azure\", \"gcp\""),
    ("secretRef-needs-name", _repository(secretRef={}), "spec.secretRef.name: Required value"),
    ("certSecretRef-name-not-empty", _repository(certSecretRef={"name": ""}),
     "spec.certSecretRef.name in body should be at least 1 chars long"),
    ("accessFrom-needs-selectors", _repository(accessFrom={}),
     "spec.accessFrom.namespaceSelectors: Required value"),
    ("exclusionList-at-most-25", _repository(exclusionList=[f"^x{i}$" for i in range(26)]),
     "spec.exclusionList: Too many: 26: must have at most 25 items"),
    ("serviceAccountName-length", _repository(serviceAccountName="a" * 254),
     "spec.serviceAccountName: Too long: may not be more than 253 bytes"),
    ("suspend-is-boolean", _repository(suspend="yes"),
     "spec.suspend in body must be of type boolean"),
    ("imageRepositoryRef-required", _policy(dict(_SEMVER)),
     "spec.imageRepositoryRef: Required value"),
    ("imageRepositoryRef-needs-name", _policy({"imageRepositoryRef": {}, **_SEMVER}),
     "spec.imageRepositoryRef.name: Required value"),
    ("policy-required", _policy(dict(_REF)), "spec.policy: Required value"),
    ("semver-needs-range", _policy({**_REF, "policy": {"semver": {}}}),
     "spec.policy.semver.range: Required value"),
    ("alphabetical-order-enum", _policy({**_REF, "policy": {"alphabetical": {"order": "up"}}}),
     "spec.policy.alphabetical.order: Unsupported value: \"up\": supported values: "
     "\"asc\", \"desc\""),
    ("numerical-order-enum", _policy({**_REF, "policy": {"numerical": {"order": "random"}}}),
     "spec.policy.numerical.order: Unsupported value: \"random\": supported values: "
     "\"asc\", \"desc\""),
    ("digestReflectionPolicy-enum",
     _policy({**_REF, **_SEMVER, "digestReflectionPolicy": "Sometimes"}),
     "spec.digestReflectionPolicy: Unsupported value: \"Sometimes\": supported values: "
     "\"Never\", \"IfNotPresent\", \"Always\""),
    ("policy-interval-pattern", _policy({**_REF, **_SEMVER, "interval": "1d"}),
     "spec.interval: Invalid value: \"1d\": spec.interval in body should match"),
    ("cel-interval-without-always",
     _policy({**_REF, **_SEMVER, "digestReflectionPolicy": "IfNotPresent", "interval": "5m"}),
     _ONLY_WITH_ALWAYS),
    ("cel-interval-defaulted-never", _policy({**_REF, **_SEMVER, "interval": "5m"}),
     _ONLY_WITH_ALWAYS),
    ("cel-always-needs-interval",
     _policy({**_REF, **_SEMVER, "digestReflectionPolicy": "Always"}), _NEEDS_INTERVAL),
    ("v1-cel-interval-without-always", _policy({**_REF, **_SEMVER, "interval": "5m"}, V1),
     _ONLY_WITH_ALWAYS),
    ("v1-cel-always-needs-interval",
     _policy({**_REF, **_SEMVER, "digestReflectionPolicy": "Always"}, V1), _NEEDS_INTERVAL),
    # Flux v1 requires what v0.31's schema never did; only v1 does here.
    ("v1-image-required", _without(_v1(_repository()), "image"), "spec.image: Required value"),
    ("v1-interval-required", _without(_v1(_repository()), "interval"),
     "spec.interval: Required value"),
    ("v1-provider-enum", _v1(_repository(provider="docker")),
     "spec.provider: Unsupported value: \"docker\""),
]


@pytest.mark.parametrize(("case", "obj", "message"), REJECTED,
                         ids=[case for case, _, _ in REJECTED])
def test_the_schema_rejects(cli: Cli, namespace: str, case: str, obj: dict[str, Any],
                            message: str) -> None:
    done = cli.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                       input_text=yaml.safe_dump(obj), check=False)
    assert done.returncode == 1, f"{case}: accepted: {done.stdout}"
    assert f'The {obj["kind"]} "invalid" is invalid' in done.stderr
    assert message in done.stderr


def test_strict_validation_rejects_unknown_fields(cli: Cli, namespace: str) -> None:
    # The schemas are structural without x-kubernetes-preserve-unknown-fields: a typo is
    # an error under strict validation (and silently pruned otherwise).
    obj = _repository(intervall="5m")
    done = cli.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace,
                       "-f", "-", input_text=yaml.safe_dump(obj), check=False)
    assert done.returncode == 1
    assert 'strict decoding error: unknown field "spec.intervall"' in done.stderr


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("no-spec-image", {**_repository(), "spec": {"interval": "5m"}}),
    ("no-interval", {**_repository(), "spec": {"image": "example.com/app"}}),
    ("empty-policy", _policy({**_REF, "policy": {}})),
    ("two-policy-kinds", _policy({**_REF, "policy": {"semver": {"range": "1.x"},
                                                     "alphabetical": {"order": "asc"}}})),
    ("v1-empty-policy", _policy({**_REF, "policy": {}}, V1)),
    ("always-with-interval", _policy({**_REF, **_SEMVER, "digestReflectionPolicy": "Always",
                                      "interval": "5m"})),
    ("v1-suspended-policy", _policy({**_REF, **_SEMVER, "suspend": True}, V1)),
]


@pytest.mark.parametrize(("case", "obj"), ACCEPTED, ids=[case for case, _ in ACCEPTED])
def test_what_the_schema_leaves_to_the_controller(cli: Cli, namespace: str, case: str,
                                                  obj: dict[str, Any]) -> None:
    # Flux v0.31's CRDs do not constrain these either; the controller reports them as
    # not Ready (tests/e2e/test_kubectl.py shows two of them).
    done = cli.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace,
                       "-f", "-", input_text=yaml.safe_dump(obj))
    assert "(server dry run)" in done.stdout, case
