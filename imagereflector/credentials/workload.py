"""Object-level workload identity: when an object may log in to a cloud as a ServiceAccount.

Flux v1.2 (pkg/auth) in both compatibility modes: an ImageRepository with a cloud
``spec.provider`` (``aws``, ``azure``, ``gcp``) and a ``spec.serviceAccountName`` logs
in as that ServiceAccount's cloud identity, but only with the
``ObjectLevelWorkloadIdentity`` feature gate on; without the gate the object is Stalled
with reason ``FeatureGateDisabled`` (and so is an ImagePolicy that references it). With
``--default-service-account`` (which requires the gate), an object with a cloud provider
and no ServiceAccount of its own logs in as that ServiceAccount of its namespace: the
multi-tenant lockdown.

Everything here is pure: the reconcilers ask, ``resolver`` acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from imagereflector.credentials.providers.classify import CLOUDS
from imagereflector.credentials.providers.registry import ServiceAccountRef

FEATURE_GATE: Final = "ObjectLevelWorkloadIdentity"
FEATURE_GATE_DISABLED_REASON: Final = "FeatureGateDisabled"
"""The condition reason of both kinds when the gate is needed but off."""
REPOSITORY_GATE_MESSAGE: Final = (
    "to use spec.serviceAccountName for provider authentication please enable the "
    f"{FEATURE_GATE} feature gate in the controller")
"""The ImageRepository's Stalled and Ready message (Flux v1.2)."""
POLICY_GATE_MESSAGE: Final = (
    "to use spec.serviceAccountName in the ImageRepository for provider authentication "
    f"please enable the {FEATURE_GATE} feature gate in the controller")
"""The ImagePolicy's Stalled and Ready message when its repository needs the gate."""


@dataclass(frozen=True, slots=True)
class WorkloadIdentity:
    """The controller's settings: the gate and ``--default-service-account``."""

    enabled: bool = False
    default_service_account: str = ""


def _provider(spec: Mapping[str, Any]) -> str:
    provider = spec.get("provider")
    return provider if isinstance(provider, str) and provider else "generic"


def _service_account_name(spec: Mapping[str, Any]) -> str:
    name = spec.get("serviceAccountName")
    return name if isinstance(name, str) else ""


def needs_gate(spec: Mapping[str, Any]) -> bool:
    """Whether an ImageRepository ``spec`` (as stored) asks for object-level workload
    identity: a provider other than ``generic`` and a ``serviceAccountName``."""
    return _provider(spec) != "generic" and bool(_service_account_name(spec))


def repository_gate_error(spec: Mapping[str, Any], settings: WorkloadIdentity) -> str | None:
    """The ImageRepository's ``FeatureGateDisabled`` message, or None when it may go on."""
    return REPOSITORY_GATE_MESSAGE if needs_gate(spec) and not settings.enabled else None


def policy_gate_error(repository_spec: Mapping[str, Any],
                      settings: WorkloadIdentity) -> str | None:
    """For the ImagePolicy reconciler: the ``FeatureGateDisabled`` message of a policy
    whose ImageRepository (its ``spec``, as stored) needs the gate, or None."""
    return POLICY_GATE_MESSAGE if needs_gate(repository_spec) and not settings.enabled else None


def service_account_for(*, namespace: str, provider: str, service_account_name: str,
                        settings: WorkloadIdentity) -> ServiceAccountRef | None:
    """Whose cloud identity a cloud login of this object uses: its own ServiceAccount, the
    default one, or None for the controller's own identity (pkg/auth
    ``ShouldGetServiceAccountToken``). Only for ``aws``/``azure``/``gcp`` providers."""
    if provider not in CLOUDS or not settings.enabled:
        return None
    if service_account_name:
        return ServiceAccountRef(namespace=namespace, name=service_account_name)
    if settings.default_service_account:
        return ServiceAccountRef(namespace=namespace, name=settings.default_service_account,
                                 default=True)
    return None
