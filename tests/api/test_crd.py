"""The committed CRDs are the generated ones, structural, and accept what we write.

And the layout of versions the design asks for: v1beta1, v1beta2 and v1 served, v1
stored, the same fields in every version (a superset of Flux v0.31's v1beta2 and Flux
v1.2's v1, so no write through any version prunes what a Flux reader needs), Flux v1's
``required`` lists and printer columns on v1 only, Flux v1's names, and the two CEL
rules of the ImagePolicy spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from imagereflector.api.crd import all_crds, render

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "crds"
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_committed_crd_equals_generated(name: str) -> None:
    committed = (CRD_DIR / name).read_text()
    assert committed == render(all_crds()[name]), "run `make manifests` and commit the result"


def structural_violations(node: dict[str, Any], path: str = "") -> list[str]:
    """The structural-schema rules the API server enforces that a generator can break."""
    problems = [f"{path}: {key} not allowed" for key in ("$ref", "anyOf", "oneOf", "allOf")
                if key in node]
    if "type" not in node:
        problems.append(f"{path}: missing type")
    for name, sub in node.get("properties", {}).items():
        problems += structural_violations(sub, f"{path}.{name}")
    if "items" in node:
        problems += structural_violations(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_violations(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_schema_is_structural(name: str) -> None:
    for version in all_crds()[name]["spec"]["versions"]:
        assert structural_violations(version["schema"]["openAPIV3Schema"]) == []


def schema_for(kind: str) -> dict[str, Any]:
    for document in all_crds().values():
        if document["spec"]["names"]["kind"] == kind:
            versions = document["spec"]["versions"]
            storage = next(v for v in versions if v["storage"])
            schema: dict[str, Any] = storage["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(kind)


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, schema_for(document["kind"]),
                        format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_samples_validate(sample: Path) -> None:
    for document in yaml.safe_load_all(sample.read_text()):
        validate(document)


@pytest.mark.parametrize(
    ("spec", "what"),
    [({"image": "a", "interval": "1d"}, "interval unit"),
     ({"image": "a", "timeout": "1h"}, "timeout hours"),
     ({"image": "a", "provider": "ibm"}, "provider enum"),
     ({"image": "a", "exclusionList": ["x"] * 26}, "maxItems"),
     ({"image": "a", "secretRef": {}}, "secretRef name")],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_schema_rejects_what_flux_rejects(spec: dict[str, Any], what: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
                  "metadata": {"name": "x"}, "spec": spec})


def test_printer_columns_and_defaults() -> None:
    crds = {d["spec"]["names"]["kind"]: d for d in all_crds().values()}
    repo_columns = [c["name"] for c in crds["ImageRepository"]["spec"]["versions"][1]
                    ["additionalPrinterColumns"]]
    policy_columns = [c["name"] for c in crds["ImagePolicy"]["spec"]["versions"][1]
                      ["additionalPrinterColumns"]]
    assert repo_columns[:2] == ["Last scan", "Tags"]
    assert policy_columns[0] == "LatestImage"
    assert {"Ready", "Status"} <= set(repo_columns) & set(policy_columns)
    spec = schema_for("ImageRepository")["properties"]["spec"]["properties"]
    assert spec["exclusionList"]["default"] == ["^.*\\.sig$"]
    assert spec["provider"]["default"] == "generic"
    status = schema_for("ImageRepository")["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
    assert status["properties"]["lastScanResult"]["required"] == ["tagCount"]


def crd_of(kind: str) -> dict[str, Any]:
    return next(d for d in all_crds().values() if d["spec"]["names"]["kind"] == kind)


def versions_of(kind: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in crd_of(kind)["spec"]["versions"]}


def property_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
    """Every property path of a schema (``spec.secretRef.name``, ``a[].b``)."""
    found: set[str] = set()
    for name, sub in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        found |= {path, *property_paths(sub, path)}
        if "items" in sub:
            found |= property_paths(sub["items"], f"{path}[]")
    return found


def without_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_required(v) for k, v in node.items() if k != "required"}
    return node


# Read from Flux's CRDs (v0.31.0's v1beta2, v1.2.4's v1), conditions' inner fields left
# out: a field listed here and missing from ours would be pruned on every write.
FLUX_FIELDS = {
    "ImageRepository": {
        "spec.accessFrom.namespaceSelectors[].matchLabels", "spec.certSecretRef.name",
        "spec.exclusionList", "spec.image", "spec.insecure", "spec.interval",
        "spec.provider", "spec.proxySecretRef.name", "spec.secretRef.name",
        "spec.serviceAccountName", "spec.suspend", "spec.timeout",
        "status.canonicalImageName", "status.conditions", "status.lastHandledReconcileAt",
        "status.lastScanResult.latestTags", "status.lastScanResult.revision",
        "status.lastScanResult.scanTime", "status.lastScanResult.tagCount",
        "status.observedExclusionList", "status.observedGeneration"},
    "ImagePolicy": {
        "spec.digestReflectionPolicy", "spec.filterTags.extract", "spec.filterTags.pattern",
        "spec.imageRepositoryRef.name", "spec.imageRepositoryRef.namespace", "spec.interval",
        "spec.policy.alphabetical.order", "spec.policy.numerical.order",
        "spec.policy.semver.range", "spec.suspend", "status.conditions",
        "status.lastHandledReconcileAt", "status.latestImage", "status.latestRef.digest",
        "status.latestRef.name", "status.latestRef.tag", "status.observedGeneration",
        "status.observedPreviousImage", "status.observedPreviousRef.digest",
        "status.observedPreviousRef.name", "status.observedPreviousRef.tag"},
}


@pytest.mark.parametrize("kind", ["ImageRepository", "ImagePolicy"])
def test_three_versions_served_v1_stored_no_conversion(kind: str) -> None:
    document = crd_of(kind)
    assert [(v["name"], v["served"], v["storage"]) for v in document["spec"]["versions"]] == [
        ("v1beta1", True, False), ("v1beta2", True, False), ("v1", True, True)]
    assert "conversion" not in document["spec"]  # strategy None: apiVersion rewritten only
    for version in document["spec"]["versions"]:
        assert version["subresources"] == {"status": {}}
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["default"] == {"observedGeneration": -1}


@pytest.mark.parametrize("kind", ["ImageRepository", "ImagePolicy"])
def test_every_version_has_every_field_of_both_flux_releases(kind: str) -> None:
    versions = versions_of(kind)
    schemas = {name: v["schema"]["openAPIV3Schema"] for name, v in versions.items()}
    # The same fields everywhere; only v1's required lists differ.
    assert without_required(schemas["v1beta2"]) == without_required(schemas["v1"])
    assert schemas["v1beta1"] == schemas["v1beta2"]
    assert FLUX_FIELDS[kind] <= property_paths(schemas["v1"])


def test_required_lists_are_flux_v1s_on_v1_only() -> None:
    repo, pol = versions_of("ImageRepository"), versions_of("ImagePolicy")
    spec = "spec"
    assert repo["v1"]["schema"]["openAPIV3Schema"]["properties"][spec]["required"] == [
        "image", "interval"]
    assert "required" not in repo["v1beta2"]["schema"]["openAPIV3Schema"]["properties"][spec]
    for name in ("v1beta2", "v1"):
        assert pol[name]["schema"]["openAPIV3Schema"]["properties"][spec]["required"] == [
            "imageRepositoryRef", "policy"]


def test_policy_spec_carries_flux_v1s_cel_rules_in_every_version() -> None:
    for version in versions_of("ImagePolicy").values():
        rules = version["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "x-kubernetes-validations"]
        assert [rule["message"] for rule in rules] == [
            "spec.interval is only accepted when spec.digestReflectionPolicy is set to "
            "'Always'",
            "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'"]
        assert rules[0]["rule"] == ("!has(self.interval) || (has(self.digestReflectionPolicy)"
                                    " && self.digestReflectionPolicy == 'Always')")


READY = {"name": "Ready", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}
STATUS = {"name": "Status", "type": "string",
          "jsonPath": '.status.conditions[?(@.type=="Ready")].message'}
AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_v1_printer_columns_are_flux_v1s_exactly() -> None:
    assert versions_of("ImageRepository")["v1"]["additionalPrinterColumns"] == [
        {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
        {"name": "Tags", "type": "string", "jsonPath": ".status.lastScanResult.tagCount"},
        READY, STATUS,
        {"name": "Last scan", "type": "string", "jsonPath": ".status.lastScanResult.scanTime",
         "priority": 1},
        AGE]
    assert versions_of("ImagePolicy")["v1"]["additionalPrinterColumns"] == [
        {"name": "Image", "type": "string", "jsonPath": ".status.latestRef.name"},
        {"name": "Tag", "type": "string", "jsonPath": ".status.latestRef.tag"},
        READY, STATUS, AGE]
    for old in ("v1beta1", "v1beta2"):  # contract A13, as before
        assert versions_of("ImagePolicy")[old]["additionalPrinterColumns"] == [
            {"name": "LatestImage", "type": "string", "jsonPath": ".status.latestImage"},
            READY, STATUS, AGE]


def test_names_are_flux_v1s() -> None:
    repo, pol = crd_of("ImageRepository")["spec"]["names"], crd_of("ImagePolicy")["spec"]["names"]
    assert repo["shortNames"] == ["imgrepo", "imagerepo"]
    assert pol["shortNames"] == ["imgpol", "imagepol"]
    assert repo["categories"] == pol["categories"] == ["all", "fluxcd", "fluxcd-images"]
