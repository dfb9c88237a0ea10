"""Resource kinds and API errors of the fake Kubernetes API server.

Role: the vocabulary shared by the fake's store (``kubeapi_store``) and its HTTP front
(``kubeapi``): which resources exist, how each one behaves where real kinds differ, and
the ``Status`` objects errors are reported with.

Invariants:
* A :class:`ResourceType` is identified by ``(group, version, plural)``; all versions of
  one ``(group, plural)`` share one storage (no conversion: only ``apiVersion`` differs).
* Per-kind behaviour mirrors the real API server: custom resources (and CRDs) carry
  ``generation``; custom resources reject strategic merge patches (415), require
  ``metadata.resourceVersion`` on PUT and return the object from DELETE; built-in kinds
  allow unconditional PUT, answer DELETE with a ``Status`` and list items without
  ``apiVersion``/``kind`` (typed Go lists do not encode them).
* Error messages follow the real server's format (``imagerepositories.image.toolkit.fluxcd.io
  "x" not found``), so clients and tests that match on them behave as against a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
"""A decoded JSON object (a Kubernetes object, patch or Status)."""

ALL_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
"""Verbs every resource here serves (``deletecollection`` is not implemented)."""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource: where it lives in the REST API and how it behaves."""

    group: str
    """API group; ``""`` for the core group."""
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    """Writes to the main resource keep ``status``; ``/status`` writes change only it."""
    custom: bool = False
    """Served from a CustomResourceDefinition (apiextensions semantics)."""
    has_generation: bool = False
    """``metadata.generation`` starts at 1 and bumps on spec changes and on deletion marking."""
    create_on_update: bool = False
    """PUT of a missing object creates it (core Events, Leases); else 404."""
    extra_field_labels: tuple[str, ...] = ()
    """Field selector labels beyond ``metadata.name``/``metadata.namespace``."""

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group`` as error messages and kubectl name it (just ``plural`` for core)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> tuple[str, str]:
        """The storage shared by all versions of this resource."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        """Kind of a list response."""
        return f"{self.kind}List"

    @property
    def unconditional_update(self) -> bool:
        """Whether PUT without ``metadata.resourceVersion`` is allowed (not for CRs)."""
        return not self.custom

    @property
    def delete_returns_object(self) -> bool:
        """Whether an immediate DELETE answers with the object rather than a Status."""
        return self.custom or self.plural in ("namespaces", "customresourcedefinitions")

    def field_labels(self) -> tuple[str, ...]:
        """Every field selector label this resource accepts."""
        return ("metadata.name", "metadata.namespace", *self.extra_field_labels)


_CORE_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, singular="namespace",
                 short_names=("ns",), extra_field_labels=("status.phase",)),
    ResourceType("", "v1", "secrets", "Secret", singular="secret", extra_field_labels=("type",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", singular="serviceaccount",
                 short_names=("sa",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", singular="configmap", short_names=("cm",)),
    ResourceType("", "v1", "events", "Event", singular="event", short_names=("ev",),
                 create_on_update=True, extra_field_labels=_CORE_EVENT_FIELDS),
    ResourceType("events.k8s.io", "v1", "events", "Event", singular="event",
                 short_names=("ev",), create_on_update=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", singular="lease",
                 create_on_update=True),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", namespaced=False,
                 singular="customresourcedefinition", short_names=("crd", "crds"),
                 status_subresource=True, has_generation=True),
)
"""Built-in kinds served from the start."""

FLUX_IMAGE_GROUP = "image.toolkit.fluxcd.io"


def custom_type(group: str, version: str, names: JSON, *, namespaced: bool,
                status_subresource: bool) -> ResourceType:
    """The :class:`ResourceType` a CRD serves for one of its versions."""
    return ResourceType(
        group, version, str(names["plural"]), str(names["kind"]), namespaced=namespaced,
        singular=str(names.get("singular") or str(names["kind"]).lower()),
        short_names=tuple(str(s) for s in names.get("shortNames") or ()),
        status_subresource=status_subresource, custom=True, has_generation=True,
    )


FLUX_TYPES: tuple[ResourceType, ...] = tuple(
    custom_type(FLUX_IMAGE_GROUP, version, names, namespaced=True, status_subresource=True)
    for version in ("v1beta2", "v1beta1")
    for names in (
        {"plural": "imagerepositories", "kind": "ImageRepository"},
        {"plural": "imagepolicies", "kind": "ImagePolicy"},
    )
)
"""The image reflector's kinds, served from the start (v1beta2 preferred, v1beta1 too)."""


@dataclass(slots=True)
class ApiStatusError(Exception):
    """A failed request, reported to HTTP clients as a ``Status`` object."""

    code: int
    reason: str
    message: str
    details: JSON = field(default_factory=dict)
    retry_after: int | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> JSON:
        """The ``Status`` object the real server sends for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details = dict(self.details)
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def _details(rt: ResourceType, name: str) -> JSON:
    details: JSON = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiStatusError:
    """404 for a missing object."""
    return ApiStatusError(404, "NotFound", f'{rt.qualified} "{name}" not found',
                          _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiStatusError:
    """409 for a create of an existing name."""
    return ApiStatusError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                          _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiStatusError:
    """409 for a failed precondition (stale resourceVersion, wrong uid)."""
    return ApiStatusError(
        409, "Conflict", f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        _details(rt, name),
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
"""The real server's wording for an optimistic concurrency failure."""


def invalid(rt: ResourceType, name: str, message: str) -> ApiStatusError:
    """422 for an object that fails validation."""
    qualified_kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiStatusError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {message}',
                          {**_details(rt, name), "kind": rt.kind})


def bad_request(message: str) -> ApiStatusError:
    """400 for a malformed request."""
    return ApiStatusError(400, "BadRequest", message)


def no_such_resource() -> ApiStatusError:
    """404 for a path that names no served resource."""
    return ApiStatusError(404, "NotFound", "the server could not find the requested resource",
                          {})


def reason_for(code: int) -> str:
    """The ``reason`` the real server pairs with an HTTP status code."""
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        410: "Expired",
        415: "UnsupportedMediaType",
        422: "Invalid",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "Timeout",
    }.get(code, "Unknown")
