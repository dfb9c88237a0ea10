"""Flux ``meta`` constants and the Kubernetes ``metav1.Condition`` model.

Condition types, reasons, the reconcile-request annotation and the finalizer are public
API shared with Flux: they are defined here once and only ever changed additively.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP: Final = "image.toolkit.fluxcd.io"
V1BETA1: Final = "v1beta1"
V1BETA2: Final = "v1beta2"
V1: Final = "v1"
# The version of Flux 2.2 (image-reflector-controller v0.31), the contract's version.
VERSION: Final = V1BETA2
API_VERSION: Final = f"{GROUP}/{VERSION}"
# Every version our CRDs serve, oldest first; ``STORAGE_VERSION`` is the one etcd keeps.
# v1 is storage, as in Flux 2.7+, so going to Flux 2.9 (v1 only) needs no migration.
SERVED_VERSIONS: Final = (V1BETA1, V1BETA2, V1)
STORAGE_VERSION: Final = V1
# What the controller reads and writes through, best first: v1 whenever the API server
# serves it (it is the storage version wherever it is served), else v1beta2 (Flux 2.2's
# and 2.6's CRDs, where v1beta2 is the storage version).
CONTROLLER_VERSIONS: Final = (V1, V1BETA2)

# Condition types (fluxcd/pkg apis/meta).
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
OWNED_CONDITIONS: Final = (READY, RECONCILING, STALLED)

# Generic reasons (fluxcd/pkg apis/meta).
SUCCEEDED_REASON: Final = "Succeeded"
FAILED_REASON: Final = "Failed"
PROGRESSING_REASON: Final = "Progressing"
PROGRESSING_WITH_RETRY_REASON: Final = "ProgressingWithRetry"
# metav1.StatusFailure: used when should_scan or a policy selection fails.
FAILURE_REASON: Final = "Failure"

# Reasons of the image API (api/v1beta2/condition_types.go).
IMAGE_URL_INVALID_REASON: Final = "ImageURLInvalid"
DEPENDENCY_NOT_READY_REASON: Final = "DependencyNotReady"
AUTHENTICATION_FAILED_REASON: Final = "AuthenticationFailed"
READ_OPERATION_FAILED_REASON: Final = "ReadOperationFailed"
# fluxcd/pkg apis/acl.
ACCESS_DENIED_REASON: Final = "AccessDenied"
# Literal of the policy controller.
INVALID_POLICY_REASON: Final = "InvalidPolicy"
# Flux v1 (api/v1/condition_types.go): digestReflectionPolicy Always without an interval.
INTERVAL_NOT_CONFIGURED_REASON: Final = "IntervalNotConfigured"

RECONCILE_REQUEST_ANNOTATION: Final = "reconcile.fluxcd.io/requestedAt"
FINALIZER: Final = "finalizers.fluxcd.io"

# Messages shared by both kinds.
PROGRESS_MESSAGE: Final = "reconciliation in progress"

IMAGE_REPOSITORY_KIND: Final = "ImageRepository"
IMAGE_POLICY_KIND: Final = "ImagePolicy"

# The controller name Flux uses as field manager, event source and reportingController.
CONTROLLER_NAME: Final = "image-reflector-controller"

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """A ``metav1.Condition`` as stored in ``status.conditions``.

    ``lastTransitionTime`` is kept as an aware UTC datetime truncated to seconds, which is
    the precision the API server keeps.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    observed_generation: int = Field(default=0, alias="observedGeneration", ge=0)
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)


class LocalObjectReference(BaseModel):
    """A reference to an object in the same namespace (``meta.LocalObjectReference``)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = Field(min_length=1)


class NamespacedObjectReference(BaseModel):
    """A reference to an object, optionally in another namespace."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = Field(min_length=1)
    namespace: str | None = None
