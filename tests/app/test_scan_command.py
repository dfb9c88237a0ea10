"""``imagereflector scan`` as a user runs it: a subprocess against the real registry.

Each failure prints the reason and message the controller would put in the Ready
condition and exits 1; success prints the status the controller would write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from imagereflector.registry.tags import tags_revision
from tests.fakes.registry import TEST_CREDS, RegistryProcess


async def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``python -m imagereflector`` with a clean proxy environment."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagereflector", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_json_output_is_the_status_the_controller_writes(registry: RegistryProcess) -> None:
    tags = ["1.0.0", "1.1.0", "2.0.0", "2.0.0.sig", "latest"]
    registry.write_tags("team/app", tags)
    code, out, err = await run_cli("scan", f"{registry.host}/team/app", "-o", "json")
    assert code == 0, err
    status = json.loads(out)
    assert status["canonicalImageName"] == f"{registry.host}/team/app"
    assert status["observedExclusionList"] == ["^.*\\.sig$"]
    result = status["lastScanResult"]
    assert result["tagCount"] == 4
    assert result["latestTags"] == ["latest", "2.0.0", "1.1.0", "1.0.0"]
    assert result["revision"] == tags_revision(["1.0.0", "1.1.0", "2.0.0", "latest"])
    assert result["scanTime"].endswith("Z")


async def test_text_output_reads_like_kubectl_describe(registry: RegistryProcess) -> None:
    registry.write_tags("app", [f"v{i}" for i in range(12)])
    code, out, _ = await run_cli("scan", f"{registry.host}/app", "--exclude", "^v1$")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Canonical Image Name:  {registry.host}/app"
    assert "  Tag Count:  11" in lines
    assert lines[lines.index("  Latest Tags:") + 1] == "    v9"
    assert lines[-1] == "  ^v1$"


async def test_invalid_reference_is_image_url_invalid() -> None:
    code, out, err = await run_cli("scan", "ghcr.io/app:1.0")
    assert code == 1
    assert out == ""
    assert err.strip() == ("ImageURLInvalid: .spec.image value should not contain a tag; "
                           "remove ':1.0'")


async def test_unknown_repository_is_read_operation_failed(registry: RegistryProcess) -> None:
    code, _, err = await run_cli("scan", f"{registry.host}/missing")
    assert code == 1
    assert err.startswith("ReadOperationFailed: scan failed: ")
    assert "NAME_UNKNOWN" in err


async def test_password_from_stdin_and_wrong_password(basic_registry: RegistryProcess,
                                                      tmp_path: Path) -> None:
    basic_registry.write_tags("private", ["x", "y"])
    user, password = TEST_CREDS
    image = f"{basic_registry.host}/private"
    code, out, err = await run_cli("scan", image, "--username", user, "--password-stdin",
                                   "-o", "json", stdin=password.encode() + b"\n")
    assert code == 0, err
    assert json.loads(out)["lastScanResult"]["tagCount"] == 2
    planted = "Planted-Secret-93f1"
    code, _, err = await run_cli("scan", image, "--username", user, "--password-stdin",
                                 stdin=planted.encode())
    assert code == 1
    assert "UNAUTHORIZED" in err
    assert planted not in err


async def test_docker_config_file(basic_registry: RegistryProcess, tmp_path: Path) -> None:
    basic_registry.write_tags("private", ["x"])
    auth = base64.b64encode(":".join(TEST_CREDS).encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    code, out, err = await run_cli("scan", f"{basic_registry.host}/private",
                                   "--docker-config", str(config), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["lastScanResult"]["tagCount"] == 1
    config.write_text("{not json")
    code, _, err = await run_cli("scan", f"{basic_registry.host}/private",
                                 "--docker-config", str(config))
    assert code == 1
    assert err.startswith("AuthenticationFailed: failed to configure authentication options: ")


async def test_mutual_tls_with_files(mtls_registry: RegistryProcess) -> None:
    await mtls_registry.push_tags("secure", ["1"])
    ca, client = mtls_registry.ca, mtls_registry.client
    assert ca is not None
    assert client is not None
    image = f"{mtls_registry.host}/secure"
    code, out, err = await run_cli("scan", image, "--ca-file", str(ca.cert_file),
                                   "--cert-file", str(client.cert_file),
                                   "--key-file", str(client.key_file), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["lastScanResult"]["tagCount"] == 1
    code, _, err = await run_cli("scan", image, "--ca-file", str(ca.cert_file))
    assert code == 1
    assert err.startswith("ReadOperationFailed: scan failed: ")


async def test_storage_path_keeps_the_result(registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("app", ["a", "b"])
    code, _, err = await run_cli("scan", f"{registry.host}/app", "--storage-path",
                                 str(tmp_path / "store"))
    assert code == 0, err
    assert (tmp_path / "store" / "tags.db").exists()


async def test_capitals_in_a_repository_name_get_a_hint() -> None:
    code, _, err = await run_cli("scan", "ghcr.io/Org/App")
    assert code == 1
    assert err.splitlines() == [
        "ImageURLInvalid: could not parse reference: ghcr.io/Org/App",
        "hint: repository names must be lower case (only the registry host may have "
        "capitals)"]
    code, _, err = await run_cli("scan", "Registry.Example:5000/app", "--timeout", "1ms")
    assert "hint:" not in err


async def test_a_bad_exclusion_pattern_is_a_usage_error() -> None:
    code, out, err = await run_cli("scan", "127.0.0.1:1/app", "--exclude", "(")
    assert code == 2
    assert out == ""
    assert err.splitlines()[0].startswith("usage: imagereflector scan ")
    assert err.splitlines()[-1] == (
        "imagereflector scan: error: --exclude: failed to compile regex (: "
        "error parsing regexp: missing closing ): `(`")


async def test_bad_bound_flags_are_usage_errors() -> None:
    for flag, value, why in (("--max-tags-per-scan", "0", "must be at least 1"),
                             ("--max-tag-bytes-per-scan", "8MB", "not a size: '8MB'")):
        code, _, err = await run_cli("scan", "127.0.0.1:1/app", flag, value)
        assert code == 2
        assert why in err.splitlines()[-1]
