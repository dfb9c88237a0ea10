"""Small builders and checks shared by the bad-input tests (no assertions of their own)."""

from __future__ import annotations

import base64
import re
from typing import Any

from imagereflector.api import meta
from imagereflector.api.meta import Condition
from imagereflector.kube import conditions as cond
from tests.controllers.harness import conditions_of, ready

JSON = dict[str, Any]


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def namespace(name: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _metadata(name: str, namespace: str | None) -> JSON:
    # Without a namespace the API helper's default applies: "default" on the fake API
    # server, the test's own namespace on the real one.
    return {"name": name} if namespace is None else {"name": name, "namespace": namespace}


def secret(name: str, type_: str, data: dict[str, Any], *, namespace: str | None = None
           ) -> JSON:
    """A Secret with ``data`` as given (values already base64, or deliberately not)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": type_,
            "metadata": _metadata(name, namespace), "data": data}


def service_account(name: str, pull_secrets: list[str], *, namespace: str | None = None
                    ) -> JSON:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(name, namespace),
            "imagePullSecrets": [{"name": s} for s in pull_secrets]}


def image_policy(name: str, repo: str, choice: JSON | None, *, namespace: str | None = None,
                 **spec: Any) -> JSON:
    body: JSON = {"imageRepositoryRef": {"name": repo}, **spec}
    if choice is not None:
        body["policy"] = choice
    return {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
            "metadata": _metadata(name, namespace), "spec": body}


def k8s_name(case_id: str) -> str:
    """A DNS-1123 label made from a case id."""
    return re.sub(r"[^a-z0-9-]", "-", case_id.lower()).strip("-")[:63]


def ready_of(obj: JSON) -> Condition:
    found = ready(obj)
    assert found is not None, obj
    return found


def condition(obj: JSON, kind: str) -> Condition | None:
    return cond.get(conditions_of(obj), kind)


def ready_false_with(reason: str, message: str = "") -> Any:
    """A check: Ready=False with ``reason`` and (when given) exactly ``message``."""
    def check(obj: JSON) -> bool:
        found = ready(obj)
        return (found is not None and found.status == "False" and found.reason == reason
                and (not message or found.message == message))
    return check


def reconcile_count(metrics_text: str, name: str, namespace: str = "default") -> float:
    """How many reconciles of one object the duration histogram has counted."""
    pattern = (r"gotk_reconcile_duration_seconds_count\{kind=\"[A-Za-z]+\",name=\""
               + re.escape(name) + r"\",namespace=\"" + re.escape(namespace) + r"\"\} ([0-9.e+]+)")
    match = re.search(pattern, metrics_text)
    return float(match.group(1)) if match else 0.0


STALLED = meta.STALLED
RECONCILING = meta.RECONCILING
