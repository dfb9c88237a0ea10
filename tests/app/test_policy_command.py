"""``imagereflector policy``: the choice, the ranking and why each tag lost."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.test_scan_command import run_cli
from tests.fakes.registry import RegistryProcess

TAGS = "1.0.0\n1.0.1\n1.1.0-rc.1\nlatest\nv1.2.0\n2.0.0\nfoo-1\n"


async def test_explains_a_semver_range_over_a_tags_file() -> None:
    code, out, err = await run_cli("policy", "--tags-file", "-", "--semver", ">=1.0.0 <2.0.0",
                                   stdin=TAGS.encode())
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Policy:      semver range '>=1.0.0 <2.0.0'"
    assert "Latest:      v1.2.0" in lines
    assert lines[lines.index("Candidates, best first (3 of 3):") + 1:][:3] == [
        "    1. v1.2.0", "    2. 1.0.1", "    3. 1.0.0"]
    rejected = {line.split()[0]: line.split(maxsplit=1)[1] for line in
                lines[lines.index("Rejected (4):") + 1:]}
    assert rejected == {
        "1.1.0-rc.1": "prerelease excluded by range '>=1.0.0 <2.0.0'",
        "latest": "not a strict semver version",
        "2.0.0": "outside range '>=1.0.0 <2.0.0'",
        "foo-1": "not a strict semver version",
    }


async def test_policy_manifest_with_filter_against_a_live_scan(registry: RegistryProcess,
                                                                tmp_path: Path) -> None:
    registry.write_tags("app", ["main-abc-100", "main-def-300", "main-aaa-200", "pr-9-999"])
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\n"
        "metadata: {name: p}\nspec:\n  imageRepositoryRef: {name: app}\n"
        "  filterTags: {pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)', extract: '$ts'}\n"
        "  policy: {numerical: {order: asc}}\n")
    image = f"{registry.host}/app"
    code, out, err = await run_cli("policy", image, "-f", str(manifest), "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["latest"] == "main-def-300"
    assert result["latestImage"] == f"{image}:main-def-300"
    assert [c["value"] for c in result["candidates"]] == ["300", "200", "100"]
    assert [r["tag"] for r in result["rejected"]] == ["pr-9-999"]


async def test_no_match_exits_one_with_fluxs_message() -> None:
    code, out, _ = await run_cli("policy", "--tags-file", "-", "--semver", ">=5.0.0",
                                 stdin=TAGS.encode())
    assert code == 1
    assert "Latest:      none: unable to determine latest version from provided list" in out


async def test_invalid_range_is_invalid_policy() -> None:
    code, _, err = await run_cli("policy", "--tags-file", "-", "--semver", "*-*",
                                 stdin=TAGS.encode())
    assert code == 1
    assert err.strip() == "InvalidPolicy: invalid policy: improper constraint: *-*"


async def test_bad_filter_and_numeric_failure() -> None:
    code, _, err = await run_cli("policy", "--tags-file", "-", "--numerical", "asc",
                                 "--filter-pattern", "^v(", stdin=TAGS.encode())
    assert code == 1
    assert err.startswith("InvalidPolicy: failed to filter tags: invalid regular expression "
                          "pattern '^v(': ")
    code, out, _ = await run_cli("policy", "--tags-file", "-", "--numerical", "asc",
                                 stdin=TAGS.encode())
    assert code == 1
    assert "failed to parse invalid numeric value" in out


async def test_a_policy_is_required_and_named() -> None:
    code, _, err = await run_cli("policy", "127.0.0.1:1/app")
    assert code == 2
    assert err.splitlines()[-1] == (
        "imagereflector policy: error: give a policy: --semver RANGE, --alphabetical "
        "asc|desc, --numerical asc|desc, or -f IMAGEPOLICY.yaml")


async def test_a_wildcard_major_is_accepted_as_masterminds_does() -> None:
    # Masterminds v3.2.1 reads ">=x" as ">=0.0.0" (x is a wildcard in ranges), and so does
    # Flux: every release version qualifies, prereleases do not.
    code, out, err = await run_cli("policy", "--tags-file", "-", "--semver", ">=x",
                                   stdin=b"0.1.0\n3.0.0\n4.0.0-rc.1\n")
    assert code == 0, err
    assert "Latest:      3.0.0" in out.splitlines()


async def test_rejected_tags_are_listed_best_first_like_the_candidates() -> None:
    tags = "0.9.0\nv3\n1.0.0\nlatest\n2.0.0-rc.1\n2.5.0\nabc\n"
    code, out, _ = await run_cli("policy", "--tags-file", "-", "--semver", ">=1.0.0 <2.0.0",
                                 stdin=tags.encode())
    assert code == 0
    lines = out.splitlines()
    rejected = [line.split()[0] for line in lines[lines.index("Rejected (6):") + 1:]]
    assert rejected == ["2.5.0", "2.0.0-rc.1", "0.9.0", "v3", "latest", "abc"]
    code, out, _ = await run_cli("policy", "--tags-file", "-", "--numerical", "asc",
                                 "--filter-pattern", "^[0-9]", stdin=b"3\n10\nx\n2\n")
    lines = out.splitlines()
    assert lines[lines.index("Rejected (1):") + 1].split()[0] == "x"
