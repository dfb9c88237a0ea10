"""CustomResourceDefinitions generated from the pydantic models.

``make manifests`` writes ``manifests/crds/*.yaml`` from here and a test checks that the
committed files equal the generated ones, so the schema the API server enforces and the
models the controller parses can never drift apart.

The generated schema is structural (no ``$ref``, no ``anyOf``, every node typed), keeps
the validation of the models (patterns, enums, lengths, ``maxItems``, CEL rules) and
carries only the defaults Flux's CRDs carry (``CRD_DEFAULT`` markers), not pydantic's
Python defaults.

Versions (design note, spec §7): ``v1beta1``, ``v1beta2`` and ``v1`` are served, ``v1``
is the storage version, and there is no conversion webhook (strategy None: the API server
only rewrites ``apiVersion``). Every version therefore has the same fields: with strategy
None a field missing from the schema of the version an object is written through, or of
the storage version, is pruned on that write, and Flux 2.2's image automation reads
``status.latestImage`` through v1beta2 while Flux 2.6+'s reads ``status.latestRef``. The
versions differ only where nothing is stored: v1 has Flux v1's ``required`` lists
(``CRD_REQUIRED_IN``) and Flux v1's printer columns; v1beta1 and v1beta2 keep this
project's columns (contract A13).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from imagereflector.api import meta
from imagereflector.api.common import CRD_DEFAULT, CRD_REQUIRED, CRD_REQUIRED_IN, CRD_VALIDATIONS
from imagereflector.api.imagepolicy import ImagePolicy
from imagereflector.api.imagerepository import ImageRepository

# Model docstrings are written for developers, so descriptions are not copied.
_COPIED: Final = ("type", "format", "pattern", "maxLength", "minLength", "maxItems",
                  "minimum", "enum")
_READY_STATUS: Final = '.status.conditions[?(@.type=="Ready")].status'
_READY_MESSAGE: Final = '.status.conditions[?(@.type=="Ready")].message'


def _structural(node: dict[str, Any], defs: dict[str, Any], version: str) -> dict[str, Any]:
    """Inline references and optionals into a structural OpenAPI v3 node of ``version``."""
    default = node.get(CRD_DEFAULT)
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} structurally")
        inner = _structural(variants[0], defs, version)
        if default is not None:
            inner["default"] = default
        return inner
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: _structural(sub, defs, version)
                             for name, sub in node["properties"].items()}
        required = list(node.get("required", []))
        required += [name for name, sub in node["properties"].items()
                     if (sub.get(CRD_REQUIRED) or version in sub.get(CRD_REQUIRED_IN, ()))
                     and name not in required]
        if required:
            out["required"] = required
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(node["additionalProperties"], defs, version)
    if "items" in node:
        out["items"] = _structural(node["items"], defs, version)
    if default is not None:
        out["default"] = default
    if CRD_VALIDATIONS in node:
        out[CRD_VALIDATIONS] = copy.deepcopy(node[CRD_VALIDATIONS])
    return out


def openapi_schema(model: type[BaseModel], version: str = meta.V1BETA2) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one kind in ``version``: apiVersion, kind, metadata,
    spec, status."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    body = _structural(raw, defs, version)
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **body["properties"],
    }
    properties["status"]["default"] = {"observedGeneration": -1}
    return {"type": "object", "properties": properties}


def _columns(kind: str, version: str) -> list[dict[str, Any]]:
    """Printer columns: Flux v1's exactly for v1 (spec §1.3), contract A13's otherwise."""
    if version == meta.V1:
        return _v1_columns(kind)
    if kind == meta.IMAGE_REPOSITORY_KIND:
        specific = [
            {"name": "Last scan", "type": "string",
             "jsonPath": ".status.lastScanResult.scanTime"},
            {"name": "Tags", "type": "string", "jsonPath": ".status.lastScanResult.tagCount"},
        ]
    else:
        specific = [{"name": "LatestImage", "type": "string", "jsonPath": ".status.latestImage"}]
    return [
        *specific,
        {"name": "Ready", "type": "string", "jsonPath": _READY_STATUS},
        {"name": "Status", "type": "string", "jsonPath": _READY_MESSAGE},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _v1_columns(kind: str) -> list[dict[str, Any]]:
    ready = [{"name": "Ready", "type": "string", "jsonPath": _READY_STATUS},
             {"name": "Status", "type": "string", "jsonPath": _READY_MESSAGE}]
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    if kind == meta.IMAGE_REPOSITORY_KIND:
        return [
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
            {"name": "Tags", "type": "string", "jsonPath": ".status.lastScanResult.tagCount"},
            *ready,
            {"name": "Last scan", "type": "string",
             "jsonPath": ".status.lastScanResult.scanTime", "priority": 1},
            age,
        ]
    return [
        {"name": "Image", "type": "string", "jsonPath": ".status.latestRef.name"},
        {"name": "Tag", "type": "string", "jsonPath": ".status.latestRef.tag"},
        *ready,
        age,
    ]


# Flux v1's names (spec §1.2): kubectl get imgrepo, kubectl get fluxcd-images.
_SHORT_NAMES: Final = {meta.IMAGE_REPOSITORY_KIND: ["imgrepo", "imagerepo"],
                       meta.IMAGE_POLICY_KIND: ["imgpol", "imagepol"]}
_CATEGORIES: Final = ["all", "fluxcd", "fluxcd-images"]


def crd(model: type[BaseModel], *, kind: str, plural: str) -> dict[str, Any]:
    """The whole CustomResourceDefinition of one kind.

    ``v1beta1`` stays listed as served (not storage), as in Flux 2.2's CRDs, so replacing
    Flux's CRD on a cluster whose ``storedVersions`` still name ``v1beta1`` is accepted.
    """

    def version(name: str) -> dict[str, Any]:
        return {"name": name, "served": True, "storage": name == meta.STORAGE_VERSION,
                "schema": {"openAPIV3Schema": openapi_schema(model, name)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": _columns(kind, name)}

    singular = kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{meta.GROUP}"},
        "spec": {
            "group": meta.GROUP,
            "names": {"categories": list(_CATEGORIES), "kind": kind,
                      "listKind": f"{kind}List", "plural": plural,
                      "shortNames": list(_SHORT_NAMES[kind]), "singular": singular},
            "scope": "Namespaced",
            "versions": [version(name) for name in meta.SERVED_VERSIONS],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD for every kind this controller serves."""
    return {
        f"{meta.GROUP}_imagerepositories.yaml": crd(
            ImageRepository, kind=meta.IMAGE_REPOSITORY_KIND, plural="imagerepositories"),
        f"{meta.GROUP}_imagepolicies.yaml": crd(
            ImagePolicy, kind=meta.IMAGE_POLICY_KIND, plural="imagepolicies"),
    }


def render(document: dict[str, Any]) -> str:
    """Stable YAML text for a generated document."""
    return "---\n" + yaml.safe_dump(document, sort_keys=False, width=100)


def write_all(directory: Path) -> list[Path]:
    """Write every CRD into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in all_crds().items():
        path = directory / name
        path.write_text(render(document))
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "manifests/crds")):
        print(written_path)
