"""ObjectKey: the per-object identity the store is keyed by (contract A1)."""

from __future__ import annotations

import pytest

from imagereflector.store import ObjectKey


def test_str_is_namespace_slash_name() -> None:
    assert str(ObjectKey(namespace="flux-system", name="podinfo")) == "flux-system/podinfo"


def test_parse_round_trips_str() -> None:
    key = ObjectKey(namespace="apps", name="web")
    assert ObjectKey.parse(str(key)) == key


@pytest.mark.parametrize(
    "text",
    ["", "noslash", "/name", "ns/", "a/b/c"],
    ids=["empty", "no-slash", "no-namespace", "no-name", "two-slashes"],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="namespace/name"):
        ObjectKey.parse(text)


def test_keys_are_hashable_and_ordered() -> None:
    keys = [ObjectKey("b", "a"), ObjectKey("a", "b"), ObjectKey("a", "a")]
    assert sorted(keys) == [ObjectKey("a", "a"), ObjectKey("a", "b"), ObjectKey("b", "a")]
    assert len({*keys, ObjectKey("a", "a")}) == 3
