"""Flux ``meta`` constants and the Kubernetes ``metav1.Condition`` model.

Condition types, reasons, the reconcile-request annotation and the finalizer are public
API shared with Flux: they are defined here once and only ever changed additively.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP: Final = "image.toolkit.fluxcd.io"
VERSION: Final = "v1beta2"
API_VERSION: Final = f"{GROUP}/{VERSION}"

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
