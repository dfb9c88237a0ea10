"""The ImageRepository model (``v1beta2`` and ``v1``) with Flux's defaulting accessors.

Defaults live in accessors, not in the stored object (as in Flux): ``timeout`` falls back
to ``interval`` with a one-second floor, an empty exclusion list means ``^.*\\.sig$``, and
an empty provider means ``generic``. Status fields keep Flux's names and omission rules,
plus ``lastScanResult.revision`` (contract A2) and ``spec.proxySecretRef`` (A10), which
Flux v1 has too: both versions share these fields; only v1 requires ``image`` and
``interval``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field, field_serializer

from imagereflector.api.common import (
    CRD_DEFAULT,
    CRD_REQUIRED,
    CRD_REQUIRED_IN,
    AccessFrom,
    ApiModel,
    truncate,
)
from imagereflector.api.duration import (
    INTERVAL_PATTERN,
    SECOND,
    TIMEOUT_PATTERN,
    parse_duration,
)
from imagereflector.api.meta import Condition, LocalObjectReference

DEFAULT_EXCLUSION_LIST: Final = ("^.*\\.sig$",)
MAX_EXCLUSIONS: Final = 25
PROVIDERS: Final = ("generic", "aws", "azure", "gcp")

Provider = Literal["generic", "aws", "azure", "gcp"]


# Flux v1 requires these; v1beta2 never did (v0.31's schema has no required list), so an
# object written without them through v1beta2 stays readable and gets a message instead.
_REQUIRED_IN_V1: Final[dict[str, Any]] = {CRD_REQUIRED_IN: ["v1"]}


class ImageRepositorySpec(ApiModel):
    """``spec`` of an ImageRepository (contract §1.2)."""

    image: str = Field(default="", json_schema_extra=_REQUIRED_IN_V1)
    interval: str = Field(default="", pattern=INTERVAL_PATTERN, json_schema_extra=_REQUIRED_IN_V1)
    timeout: str | None = Field(default=None, pattern=TIMEOUT_PATTERN)
    secret_ref: LocalObjectReference | None = Field(default=None, alias="secretRef")
    service_account_name: str | None = Field(
        default=None, alias="serviceAccountName", max_length=253
    )
    cert_secret_ref: LocalObjectReference | None = Field(default=None, alias="certSecretRef")
    proxy_secret_ref: LocalObjectReference | None = Field(default=None, alias="proxySecretRef")
    suspend: bool = False
    access_from: AccessFrom | None = Field(default=None, alias="accessFrom")
    exclusion_list: list[str] | None = Field(
        default=None, alias="exclusionList", max_length=MAX_EXCLUSIONS,
        json_schema_extra={CRD_DEFAULT: list(DEFAULT_EXCLUSION_LIST)},
    )
    provider: Provider | None = Field(default=None, json_schema_extra={CRD_DEFAULT: "generic"})
    insecure: bool = False

    def interval_ns(self) -> int:
        """The scan interval in nanoseconds (an empty interval is zero)."""
        return parse_duration(self.interval) if self.interval else 0

    def timeout_ns(self) -> int:
        """``timeout`` if set, else ``interval``; never below one second (``GetTimeout``)."""
        value = parse_duration(self.timeout) if self.timeout else self.interval_ns()
        return max(value, SECOND)

    def effective_exclusion_list(self) -> list[str]:
        """The exclusion list in force: an empty or absent list means ``^.*\\.sig$``."""
        return list(self.exclusion_list) if self.exclusion_list else list(DEFAULT_EXCLUSION_LIST)

    def effective_provider(self) -> Provider:
        """The cloud provider, ``generic`` when unset."""
        return self.provider or "generic"


class ScanResult(ApiModel):
    """``status.lastScanResult``: what the last successful scan found."""

    tag_count: int = Field(default=0, alias="tagCount",
                           json_schema_extra={CRD_REQUIRED: True})
    scan_time: datetime | None = Field(default=None, alias="scanTime")
    latest_tags: list[str] | None = Field(default=None, alias="latestTags")
    revision: str | None = None

    @field_serializer("scan_time")
    def _second_precision(self, value: datetime | None) -> str | None:
        return None if value is None else truncate(value).strftime("%Y-%m-%dT%H:%M:%SZ")

    def dump(self) -> dict[str, Any]:
        """Flux omits ``latestTags`` when empty but always writes ``tagCount``."""
        data = super().dump()
        if not self.latest_tags:
            data.pop("latestTags", None)
        return data


class ImageRepositoryStatus(ApiModel):
    """``status`` of an ImageRepository (contract §1.3)."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int = Field(default=-1, alias="observedGeneration")
    canonical_image_name: str | None = Field(default=None, alias="canonicalImageName")
    last_scan_result: ScanResult | None = Field(default=None, alias="lastScanResult")
    observed_exclusion_list: list[str] | None = Field(default=None, alias="observedExclusionList")
    last_handled_reconcile_at: str | None = Field(default=None, alias="lastHandledReconcileAt")


class ImageRepository(ApiModel):
    """An ImageRepository: the spec and status parts; metadata stays a raw dict."""

    spec: ImageRepositorySpec = Field(default_factory=ImageRepositorySpec)
    status: ImageRepositoryStatus = Field(default_factory=ImageRepositoryStatus)
