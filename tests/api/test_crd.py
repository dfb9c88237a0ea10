"""The committed CRDs are the generated ones, structural, and accept what we write."""

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
