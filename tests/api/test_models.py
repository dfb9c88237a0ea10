"""API models: camelCase round trips and Flux's defaulting accessors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from imagereflector.api.duration import SECOND
from imagereflector.api.imagepolicy import ImagePolicy
from imagereflector.api.imagerepository import ImageRepository, ImageRepositorySpec, ScanResult


def spec(**fields: Any) -> ImageRepositorySpec:
    return ImageRepositorySpec.model_validate({"image": "alpine", **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"interval": "1m"}, 60 * SECOND),
        ({"interval": "1m", "timeout": "30s"}, 30 * SECOND),
        ({"interval": "500ms"}, SECOND),
        ({"interval": "1m", "timeout": "100ms"}, SECOND),
        ({}, SECOND),
    ],
    ids=["interval", "timeout-wins", "floor-interval", "floor-timeout", "nothing"],
)
def test_timeout_accessor(fields: dict[str, Any], expected: int) -> None:
    assert spec(**fields).timeout_ns() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ["^.*\\.sig$"]), ([], ["^.*\\.sig$"]), (["^v"], ["^v"])],
    ids=["absent", "empty", "custom"],
)
def test_exclusion_list_accessor(value: list[str] | None, expected: list[str]) -> None:
    assert spec(exclusionList=value).effective_exclusion_list() == expected


def test_provider_defaults_to_generic() -> None:
    assert spec().effective_provider() == "generic"
    assert spec(provider="aws").effective_provider() == "aws"


@pytest.mark.parametrize(
    "fields",
    [{"interval": "1d"}, {"timeout": "1h"}, {"provider": "ibm"},
     {"exclusionList": [str(i) for i in range(26)]}, {"serviceAccountName": "x" * 254}],
    ids=["interval-unit", "timeout-no-hours", "provider-enum", "max-items", "sa-length"],
)
def test_schema_rules_enforced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(**fields)


def test_status_round_trip_keeps_flux_field_names() -> None:
    raw = {
        "spec": {"image": "ghcr.io/a/b", "interval": "5m", "secretRef": {"name": "s"},
                 "proxySecretRef": {"name": "p"}, "exclusionList": ["^x"]},
        "status": {
            "observedGeneration": 2,
            "canonicalImageName": "ghcr.io/a/b",
            "lastScanResult": {"tagCount": 2, "scanTime": "2024-01-02T03:04:05Z",
                               "latestTags": ["b", "a"], "revision": "sha256:ab"},
            "observedExclusionList": ["^x"],
            "lastHandledReconcileAt": "now",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                            "message": "m", "observedGeneration": 2,
                            "lastTransitionTime": "2024-01-02T03:04:05Z"}],
        },
    }
    model = ImageRepository.model_validate(raw)
    assert model.spec.secret_ref is not None
    assert model.spec.secret_ref.name == "s"
    assert model.dump()["status"] == raw["status"]


def test_scan_result_always_writes_tag_count_and_omits_empty_latest_tags() -> None:
    result = ScanResult(tag_count=0, scan_time=datetime(2024, 1, 1, 0, 0, 0, 999, tzinfo=UTC),
                        latest_tags=[])
    assert result.dump() == {"tagCount": 0, "scanTime": "2024-01-01T00:00:00Z"}


def test_new_object_status_defaults_observed_generation_to_minus_one() -> None:
    assert ImageRepository.model_validate({"spec": {}}).status.observed_generation == -1


def test_image_policy_parses_union_and_filter() -> None:
    policy = ImagePolicy.model_validate({
        "spec": {"imageRepositoryRef": {"name": "repo", "namespace": "other"},
                 "policy": {"semver": {"range": "1.0.x"}},
                 "filterTags": {"pattern": "^v(.*)", "extract": "$1"}},
    })
    assert policy.spec.policy.semver is not None
    assert policy.spec.policy.semver.range == "1.0.x"
    assert policy.spec.filter_tags is not None
    assert policy.spec.filter_tags.extract == "$1"
    assert policy.status.observed_generation == -1
