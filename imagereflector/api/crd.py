"""CustomResourceDefinitions generated from the pydantic models.

``make manifests`` writes ``manifests/crds/*.yaml`` from here and a test checks that the
committed files equal the generated ones, so the schema the API server enforces and the
models the controller parses can never drift apart.

The generated schema is structural (no ``$ref``, no ``anyOf``, every node typed), keeps
the validation of the models (patterns, enums, lengths, ``maxItems``) and carries only
the defaults Flux's CRDs carry (``CRD_DEFAULT`` markers), not pydantic's Python defaults.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from imagereflector.api import meta
from imagereflector.api.common import CRD_DEFAULT, CRD_REQUIRED
from imagereflector.api.imagepolicy import ImagePolicy
from imagereflector.api.imagerepository import ImageRepository

# Model docstrings are written for developers, so descriptions are not copied.
_COPIED: Final = ("type", "format", "pattern", "maxLength", "minLength", "maxItems",
                  "minimum", "enum")
_READY_STATUS: Final = '.status.conditions[?(@.type=="Ready")].status'
_READY_MESSAGE: Final = '.status.conditions[?(@.type=="Ready")].message'


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline references and optionals into a structural OpenAPI v3 node."""
    default = node.get(CRD_DEFAULT)
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} structurally")
        inner = _structural(variants[0], defs)
        if default is not None:
            inner["default"] = default
        return inner
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: _structural(sub, defs)
                             for name, sub in node["properties"].items()}
        required = list(node.get("required", []))
        required += [name for name, sub in node["properties"].items()
                     if sub.get(CRD_REQUIRED) and name not in required]
        if required:
            out["required"] = required
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if "items" in node:
        out["items"] = _structural(node["items"], defs)
    if default is not None:
        out["default"] = default
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one kind: apiVersion, kind, metadata, spec, status."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    body = _structural(raw, defs)
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **body["properties"],
    }
    properties["status"]["default"] = {"observedGeneration": -1}
    return {"type": "object", "properties": properties}


def _columns(kind: str) -> list[dict[str, Any]]:
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


def crd(model: type[BaseModel], *, kind: str, plural: str) -> dict[str, Any]:
    """The whole CustomResourceDefinition of one kind.

    ``v1beta1`` stays listed as served (not storage) with the same schema, as in Flux's
    CRDs, so replacing Flux's CRD on a cluster whose ``storedVersions`` still name
    ``v1beta1`` is accepted; there is no conversion webhook (strategy None).
    """
    schema = openapi_schema(model)

    def version(name: str, *, storage: bool) -> dict[str, Any]:
        return {"name": name, "served": True, "storage": storage,
                # A copy per version: YAML would otherwise emit anchors and aliases.
                "schema": {"openAPIV3Schema": copy.deepcopy(schema)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": _columns(kind)}

    singular = kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{meta.GROUP}"},
        "spec": {
            "group": meta.GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": singular},
            "scope": "Namespaced",
            "versions": [version("v1beta1", storage=False),
                         version(meta.VERSION, storage=True)],
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
