"""Settings helpers: Go flag value parsing and derived names."""

from __future__ import annotations

import pytest

from imagereflector.config import Settings, parse_bool, parse_feature_gates


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("T", True),
                                             ("false", False), ("0", False), ("F", False)])
def test_parse_bool_like_go(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_parse_bool_rejects_words_go_rejects() -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        parse_bool("yes")


def test_feature_gates_known_and_unknown() -> None:
    assert parse_feature_gates("CacheSecretsAndConfigMaps=true") == {
        "CacheSecretsAndConfigMaps": True}
    assert parse_feature_gates("") == {"CacheSecretsAndConfigMaps": False}
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
