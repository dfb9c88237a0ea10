"""Pieces shared by both kinds: the base model configuration and the ACL type.

Every model reads the camelCase JSON the API server returns and writes it back with
``dump()``; unknown fields are ignored on read so a newer CRD never breaks an older
controller.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

# Markers in ``json_schema_extra`` read by ``api.crd``: a default the API server applies
# (Flux's CRD defaults, not pydantic's); a field the schema requires even though the
# model has a default for reading older objects; a field only some API versions require
# (a list of version names: Flux v1 requires what v1beta2 never did); and CEL rules
# (``x-kubernetes-validations``) of an object.
CRD_DEFAULT: Final = "x-crd-default"
CRD_REQUIRED: Final = "x-crd-required"
CRD_REQUIRED_IN: Final = "x-crd-required-in"
CRD_VALIDATIONS: Final = "x-kubernetes-validations"


class ApiModel(BaseModel):
    """Base for API models: camelCase aliases accepted and emitted, unknown keys ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", validate_assignment=False)

    def dump(self) -> dict[str, Any]:
        """The JSON form the API server expects (camelCase, unset optionals omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def now_utc() -> datetime:
    """The current time as the API server keeps it: UTC, truncated to whole seconds."""
    return truncate(datetime.now(UTC))


def truncate(moment: datetime) -> datetime:
    """Truncate to seconds in UTC (``metav1.Time`` has second precision)."""
    return moment.astimezone(UTC).replace(microsecond=0)


class NamespaceSelector(ApiModel):
    """Selects namespaces by labels; an empty ``matchLabels`` matches every namespace."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")


class AccessFrom(ApiModel):
    """``spec.accessFrom``: which namespaces may reference this object (fluxcd/pkg acl)."""

    namespace_selectors: list[NamespaceSelector] = Field(alias="namespaceSelectors")
