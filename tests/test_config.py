"""Settings helpers: Go flag value parsing and derived names."""

from __future__ import annotations

import pytest

from imagereflector.api.compat import Compatibility
from imagereflector.cli import build_parser, settings_from_args
from imagereflector.config import Settings, parse_bool, parse_feature_gates


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("T", True),
                                             ("false", False), ("0", False), ("F", False)])
def test_parse_bool_like_go(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_parse_bool_rejects_words_go_rejects() -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        parse_bool("yes")


def test_feature_gates_known_and_unknown() -> None:
    off = {"CacheSecretsAndConfigMaps": False, "ObjectLevelWorkloadIdentity": False,
           "FluxStorage": False}
    assert parse_feature_gates("CacheSecretsAndConfigMaps=true") == {
        **off, "CacheSecretsAndConfigMaps": True}
    assert parse_feature_gates("") == off
    assert parse_feature_gates("ObjectLevelWorkloadIdentity=true,FluxStorage=true") == {
        **off, "ObjectLevelWorkloadIdentity": True, "FluxStorage": True}
    with pytest.raises(ValueError, match="unrecognized feature gate: Nope"):
        parse_feature_gates("Nope=true")
    with pytest.raises(ValueError, match="missing bool value"):
        parse_feature_gates("CacheSecretsAndConfigMaps")


def test_leader_election_id_hashes_label_selector() -> None:
    assert Settings().leader_election_id() == "image-reflector-controller-leader-election"
    sharded = Settings(watch_label_selector="sharding.fluxcd.io/key=shard1")
    suffix = sharded.leader_election_id().rsplit("-", 1)[1]
    assert len(suffix) == 8
    assert int(suffix, 16) >= 0


def test_watch_namespace() -> None:
    assert Settings().watch_namespace() is None
    single = Settings(watch_all_namespaces=False, runtime_namespace="flux")
    assert single.watch_namespace() == "flux"


def test_flux_v1_2_flags_parse_with_flux_defaults() -> None:
    args = build_parser().parse_args(["controller"])
    settings = settings_from_args(args)
    assert settings.flux_compatibility is Compatibility.V0_31
    assert (settings.requeue_dependency, settings.default_service_account) == (30.0, "")
    assert (settings.token_cache_max_size, settings.token_cache_max_duration) == (100, 3600.0)
    args = build_parser().parse_args([
        "controller", "--flux-compatibility=v1.2", "--requeue-dependency=1m",
        "--token-cache-max-duration=5h", "--token-cache-max-size=0", "--gc-interval=0",
        "--storage-compression-threshold=128",
        "--feature-gates=ObjectLevelWorkloadIdentity=true", "--default-service-account=sa"])
    settings = settings_from_args(args)
    assert settings.flux_compatibility.latest
    assert settings.requeue_dependency == 60.0
    assert settings.token_cache_max_duration == 3600.0  # capped at 1h, as Flux caps it
    assert settings.object_level_workload_identity
    settings.validate()


def test_a_default_service_account_needs_the_gate() -> None:
    with pytest.raises(ValueError, match="cannot set default service accounts when the feature "
                       "gate ObjectLevelWorkloadIdentity is not enabled"):
        Settings(default_service_account="sa").validate()


def test_compatibility_names_its_choices() -> None:
    assert Compatibility.parse("v1.2") is Compatibility.V1_2
    with pytest.raises(ValueError, match=r"use one of v0\.31, v1\.2"):
        Compatibility.parse("2.2")
