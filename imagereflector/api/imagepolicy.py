"""The ImagePolicy model, one for ``v1beta2`` and ``v1`` (contract §1.4, spec §1.5).

Both versions have the same fields (a superset of Flux v0.31's and Flux v1's), because the
API server converts between them by rewriting ``apiVersion`` only and prunes whatever the
storage version's schema lacks: ``latestImage`` (read by Flux 2.2's image automation) and
``latestRef`` (read by Flux 2.6+'s) must both survive every write.

The policy union is kept as Flux has it (first non-nil of semver, alphabetical,
numerical wins); translating it into a selection is the policy package's job.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import ConfigDict, Field, JsonValue, model_validator

from imagereflector.api.common import CRD_DEFAULT, CRD_REQUIRED, CRD_VALIDATIONS, ApiModel
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


# Flux v1's two CEL rules on the spec (api/v1/imagepolicy_types.go), in both versions:
# an interval only with digest reflection Always, and always with it. The API server
# defaults digestReflectionPolicy to Never before it runs them.
INTERVAL_RULES: Final[list[JsonValue]] = [
    {"message": "spec.interval is only accepted when spec.digestReflectionPolicy is set "
                "to 'Always'",
     "rule": "!has(self.interval) || (has(self.digestReflectionPolicy) && "
             "self.digestReflectionPolicy == 'Always')"},
    {"message": "spec.interval must be set when spec.digestReflectionPolicy is set to "
                "'Always'",
     "rule": "has(self.interval) || !has(self.digestReflectionPolicy) || "
             "self.digestReflectionPolicy != 'Always'"},
]


class ImagePolicySpec(ApiModel):
    """``spec`` of an ImagePolicy."""

    model_config = ConfigDict(json_schema_extra={CRD_VALIDATIONS: INTERVAL_RULES})

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
    # Flux v1: a suspended policy is not reconciled (only a requested reconcile is noted).
    suspend: bool = False

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

    def image(self) -> str:
        """``name:tag``: what ``latestImage`` holds for this ref."""
        return f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        """``name:tag[@digest]`` (Flux v1 ``ImageRef.String()``)."""
        return f"{self.image()}@{self.digest}" if self.digest else self.image()


class ImagePolicyStatus(ApiModel):
    """``status`` of an ImagePolicy: Flux v0.31's fields and Flux v1's side by side.

    ``latestImage`` is ``latestRef.name:latestRef.tag`` (no digest, as Flux v0.35 wrote
    it) and ``observedPreviousImage`` likewise of ``observedPreviousRef``.
    """

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int = Field(default=-1, alias="observedGeneration")
    latest_image: str | None = Field(default=None, alias="latestImage")
    latest_ref: ImageRef | None = Field(default=None, alias="latestRef")
    observed_previous_image: str | None = Field(default=None, alias="observedPreviousImage")
    observed_previous_ref: ImageRef | None = Field(default=None, alias="observedPreviousRef")
    last_handled_reconcile_at: str | None = Field(default=None, alias="lastHandledReconcileAt")


class ImagePolicy(ApiModel):
    """An ImagePolicy: the spec and status parts; metadata stays a raw dict."""

    spec: ImagePolicySpec
    status: ImagePolicyStatus = Field(default_factory=ImagePolicyStatus)
