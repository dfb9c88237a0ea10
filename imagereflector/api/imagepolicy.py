"""The ImagePolicy ``v1beta2`` model (contract §1.4).

The policy union is kept as Flux has it (first non-nil of semver, alphabetical,
numerical wins); translating it into a selection is the policy package's job.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, JsonValue, model_validator

from imagereflector.api.common import CRD_DEFAULT, CRD_REQUIRED, ApiModel
from imagereflector.api.duration import INTERVAL_PATTERN
from imagereflector.api.meta import Condition, NamespacedObjectReference

DigestReflectionPolicy = Literal["Never", "IfNotPresent", "Always"]
DIGEST_REFLECTION_POLICIES: Final = ("Never", "IfNotPresent", "Always")


class SemVerPolicy(ApiModel):
    """Select the highest version within a Masterminds semver range."""

    range: str


# The schema allows asc/desc; the controller upper-cases whatever arrives and judges it
# itself (contract §1.4), so an order written around the schema gets Flux's message.
_ORDER_SCHEMA: Final[dict[str, JsonValue]] = {CRD_DEFAULT: "asc", "enum": ["asc", "desc"]}


class AlphabeticalPolicy(ApiModel):
    """Select the last (``asc``) or first (``desc``) tag in byte-wise order."""

    order: str = Field(default="asc", json_schema_extra=_ORDER_SCHEMA)


class NumericalPolicy(ApiModel):
    """Select the largest (``asc``) or smallest (``desc``) numeric tag."""

    order: str = Field(default="asc", json_schema_extra=_ORDER_SCHEMA)


class ImagePolicyChoice(ApiModel):
    """The policy union; at most one member is expected to be set."""

    semver: SemVerPolicy | None = None
    alphabetical: AlphabeticalPolicy | None = None
    numerical: NumericalPolicy | None = None


class TagFilter(ApiModel):
    """Keep tags matching ``pattern`` and compare ``extract`` (a regex template) instead."""

    pattern: str = ""
    extract: str = ""


class ImagePolicySpec(ApiModel):
    """``spec`` of an ImagePolicy."""

    image_repository_ref: NamespacedObjectReference = Field(alias="imageRepositoryRef")
    # Required by the schema; a missing one is judged like an empty choice (contract §3.3).
    policy: ImagePolicyChoice = Field(default_factory=ImagePolicyChoice,
                                      json_schema_extra={CRD_REQUIRED: True})
    filter_tags: TagFilter | None = Field(default=None, alias="filterTags")
    # Digest reflection (Flux v0.35, additive): resolve the chosen tag's manifest digest.
    digest_reflection_policy: DigestReflectionPolicy | None = Field(
        default=None, alias="digestReflectionPolicy",
        json_schema_extra={CRD_DEFAULT: "Never"})
    interval: str | None = Field(default=None, pattern=INTERVAL_PATTERN)

    @model_validator(mode="after")
    def _interval_only_with_always(self) -> ImagePolicySpec:
        if self.interval and self.effective_digest_reflection_policy() != "Always":
            raise ValueError("spec.interval is only accepted with "
                             "spec.digestReflectionPolicy: Always")
        if self.effective_digest_reflection_policy() == "Always" and not self.interval:
            raise ValueError("spec.interval is required with spec.digestReflectionPolicy: Always")
        return self

    def effective_digest_reflection_policy(self) -> DigestReflectionPolicy:
        """``Never`` unless set."""
        return self.digest_reflection_policy or "Never"


class ImageRef(ApiModel):
    """``status.latestRef``: the chosen image split into name, tag and manifest digest."""

    name: str
    tag: str
    digest: str | None = None


class ImagePolicyStatus(ApiModel):
    """``status`` of an ImagePolicy."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int = Field(default=-1, alias="observedGeneration")
    latest_image: str | None = Field(default=None, alias="latestImage")
    latest_ref: ImageRef | None = Field(default=None, alias="latestRef")
    observed_previous_image: str | None = Field(default=None, alias="observedPreviousImage")


class ImagePolicy(ApiModel):
    """An ImagePolicy: the spec and status parts; metadata stays a raw dict."""

    spec: ImagePolicySpec
    status: ImagePolicyStatus = Field(default_factory=ImagePolicyStatus)
