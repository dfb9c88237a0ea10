"""``imagereflector policy``: which tag would a policy pick, and why did the others lose?

The tags come from a live scan (the same code path as ``imagereflector scan``) or from a
file; the policy from flags or from an ImagePolicy manifest. The selection is the
controller's (same policers, same filter, same messages); the explanation ranks every
candidate in policy order and says why each rejected tag lost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.api.imagepolicy import ImagePolicy
from imagereflector.app.scan import ScanOptions, run_scan
from imagereflector.controllers.imagepolicy import policy_choice
from imagereflector.controllers.shell import describe_validation_error
from imagereflector.policy import (
    Evaluation,
    InvalidFilterError,
    InvalidPolicyError,
    PolicyChoice,
    evaluate,
    rejections_best_first,
)


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """The flags of ``imagereflector policy``."""

    scan: ScanOptions | None = None
    tags_file: Path | None = None
    stdin_text: str = ""
    policy_file: Path | None = None
    semver: str | None = None
    alphabetical: str | None = None
    numerical: str | None = None
    pattern: str = ""
    extract: str = ""
    top: int = 10


@dataclass(frozen=True, slots=True)
class PolicyCommandOutcome:
    """An evaluation (possibly with a failed selection), or a (reason, message) error."""

    evaluation: Evaluation | None = None
    image: str = ""
    tag_count: int = 0
    error: tuple[str, str] | None = None

    def render(self, output: str, *, top: int) -> str:
        """JSON, or a readable account of the choice, the ranking and the rejections."""
        evaluation = self.evaluation
        assert evaluation is not None, "render is only called with an evaluation"
        if output == "json":
            return json.dumps(_as_json(self, top=top), indent=2)
        lines = [f"Policy:      {evaluation.policy}", f"Tags:        {self.tag_count}"]
        if evaluation.latest is not None:
            chosen = f"    ({self.image}:{evaluation.latest})" if self.image else ""
            lines.append(f"Latest:      {evaluation.latest}{chosen}")
        else:
            lines.append(f"Latest:      none: {evaluation.error}")
        shown = evaluation.candidates[:top]
        lines.append(f"Candidates, best first ({len(shown)} of {len(evaluation.candidates)}):")
        for rank, candidate in enumerate(shown, start=1):
            extracted = f"  (compared as {candidate.value})" if candidate.value != candidate.tag \
                else ""
            lines.append(f"  {rank:>3}. {candidate.tag}{extracted}")
        lines.append(f"Rejected ({len(evaluation.rejected)}):")
        width = max((len(r.tag) for r in evaluation.rejected[:top]), default=0)
        for rejection in evaluation.rejected[:top]:
            lines.append(f"  {rejection.tag:<{width}}  {rejection.reason}")
        if len(evaluation.rejected) > top:
            lines.append(f"  … {len(evaluation.rejected) - top} more (raise --top to see them)")
        return "\n".join(lines)


def _as_json(outcome: PolicyCommandOutcome, *, top: int) -> dict[str, Any]:
    evaluation = outcome.evaluation
    assert evaluation is not None
    return {
        "policy": evaluation.policy,
        "tagCount": outcome.tag_count,
        "latest": evaluation.latest,
        "latestImage": (f"{outcome.image}:{evaluation.latest}"
                        if outcome.image and evaluation.latest else None),
        "error": evaluation.error,
        "candidates": [{"tag": c.tag, "value": c.value} for c in evaluation.candidates[:top]],
        "rejected": [{"tag": r.tag, "value": r.value, "reason": r.reason}
                     for r in evaluation.rejected],
    }


def _failure(reason: str, message: str) -> PolicyCommandOutcome:
    return PolicyCommandOutcome(error=(reason, message))


def _choice(options: PolicyOptions) -> tuple[PolicyChoice, str, str]:
    """The policy and filter from a manifest or flags; flags override the manifest."""
    choice, pattern, extract = PolicyChoice(), options.pattern, options.extract
    if options.policy_file is not None:
        try:
            document = yaml.safe_load(options.policy_file.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InvalidPolicyError(f"cannot read {options.policy_file}: {err}") from err
        try:
            manifest = ImagePolicy.model_validate(document)
        except ValidationError as err:
            raise InvalidPolicyError(
                f"{options.policy_file}: {describe_validation_error(err)}") from err
        choice = policy_choice(manifest)
        if manifest.spec.filter_tags is not None:
            pattern = pattern or manifest.spec.filter_tags.pattern
            extract = extract or manifest.spec.filter_tags.extract
    if options.semver is not None or options.alphabetical is not None or (
            options.numerical is not None):
        choice = PolicyChoice(semver_range=options.semver,
                              alphabetical_order=options.alphabetical,
                              numerical_order=options.numerical)
    return choice, pattern, extract


def _read_tags(options: PolicyOptions) -> list[str]:
    assert options.tags_file is not None
    text = options.stdin_text if str(options.tags_file) == "-" else \
        options.tags_file.read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


async def run_policy(options: PolicyOptions) -> PolicyCommandOutcome:
    """Evaluate the policy; never raises for bad input, registry or policy errors."""
    try:
        choice, pattern, extract = _choice(options)
        if choice == PolicyChoice():
            raise InvalidPolicyError("given ImagePolicyChoice object is invalid")
    except InvalidPolicyError as err:
        return _failure(meta.INVALID_POLICY_REASON, f"invalid policy: {err}")
    image = ""
    if options.scan is not None:
        scanned = await run_scan(options.scan)
        if scanned.error is not None:
            return PolicyCommandOutcome(error=scanned.error)
        assert scanned.outcome is not None
        tags: Sequence[str] = scanned.outcome.tags
        image = options.scan.image
    else:
        try:
            tags = _read_tags(options)
        except OSError as err:
            return _failure(meta.FAILED_REASON, f"cannot read tags: {err}")
    try:
        evaluation = evaluate(tags, choice=choice, pattern=pattern, extract=extract)
    except InvalidFilterError as err:
        return _failure(meta.INVALID_POLICY_REASON, f"failed to filter tags: {err}")
    except InvalidPolicyError as err:
        return _failure(meta.INVALID_POLICY_REASON, f"invalid policy: {err}")
    # People read the rejections as they read the candidates: best first.
    evaluation = replace(evaluation, rejected=rejections_best_first(evaluation, choice))
    return PolicyCommandOutcome(evaluation=evaluation, image=image, tag_count=len(tags))
