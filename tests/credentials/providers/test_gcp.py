"""Google login against a fake GCE metadata server, in child processes.

google-auth reads ``GCE_METADATA_HOST`` when it is imported, and this process imported it
long ago (pointing at the real metadata host): reloading its modules in place would leave
other tests with half-patched globals. So each scenario runs ``child.py`` with
``GCE_METADATA_HOST``/``GCE_METADATA_IP`` set to the fake, a private ``HOME`` (no gcloud
application default credentials) and no ``GOOGLE_APPLICATION_CREDENTIALS``: google-auth
finds "GCE" and takes the metadata path, the one GKE workload identity uses too.

The registry's htpasswd user is ``oauth2accesstoken`` with the fake's access token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagereflector.credentials.providers.gcp import GCR_USERNAME, _cause, _epoch
from tests.credentials.providers.cloudfakes import Failure, GceMetadataFake
from tests.credentials.providers.conftest import ChildRun, clean_environ, run_child
from tests.fakes.registry import RegistryProcess, start_registry

AR_IMAGE = "europe-docker.pkg.dev/test-project/images/app"
AR_HOST = "europe-docker.pkg.dev"
PLANTED = "planted-gcp-secret-0d4e"


@pytest.fixture
async def metadata() -> AsyncIterator[GceMetadataFake]:
    fake = GceMetadataFake()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def gcr_registry(
    tmp_path: Path, metadata: GceMetadataFake
) -> AsyncIterator[RegistryProcess]:
    registry = await start_registry(tmp_path, htpasswd=(GCR_USERNAME, metadata.token))
    registry.write_tags("app", ["1.0", "2.0", "latest"])
    yield registry
    registry.stop()


async def _run(
    tmp_path: Path, metadata: GceMetadataFake, registry: RegistryProcess, **spec: object
) -> ChildRun:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = clean_environ(home) | {
        "GCE_METADATA_HOST": metadata.host,
        "GCE_METADATA_IP": metadata.host,
    }
    full = {
        "provider": "gcp",
        "image": AR_IMAGE,
        "registry": AR_HOST,
        "list": {"registry": registry.host, "repository": "app"},
        **spec,
    }
    return await run_child(full, env=env)


async def test_metadata_token_lists_real_registry_and_is_cached(
    tmp_path: Path, metadata: GceMetadataFake, gcr_registry: RegistryProcess
) -> None:
    run = await _run(tmp_path, metadata, gcr_registry, logins=3)
    assert run.answer["results"] == [{"anonymous": False, "username": GCR_USERNAME}] * 3
    assert run.answer["events"] == [["gcp", "miss"], ["gcp", "hit"], ["gcp", "hit"]]
    assert sorted(run.answer["tags"]) == ["1.0", "2.0", "latest"]
    assert metadata.token_requests == 1
    token_request = next(r for r in metadata.requests if r.path_qs.split("?")[0].endswith("/token"))
    assert token_request.headers.get("metadata-flavor") == "Google"
    assert metadata.token not in run.stdout
    assert metadata.token not in run.stderr
    assert f"logging in to GCP GCR for {AR_IMAGE}" in run.stderr


async def test_generic_provider_without_flag_is_anonymous(
    tmp_path: Path, metadata: GceMetadataFake, gcr_registry: RegistryProcess
) -> None:
    run = await _run(tmp_path, metadata, gcr_registry, provider="generic")
    assert run.answer["results"] == [{"anonymous": True}]
    assert run.answer["events"] == []
    assert metadata.requests == []
    assert run.answer["list_error"].startswith("AuthError")


async def test_generic_provider_with_gcp_flag_logs_in(
    tmp_path: Path, metadata: GceMetadataFake, gcr_registry: RegistryProcess
) -> None:
    run = await _run(
        tmp_path, metadata, gcr_registry, provider="generic", autologin={"gcp": True}
    )
    assert run.answer["results"] == [{"anonymous": False, "username": GCR_USERNAME}]
    assert sorted(run.answer["tags"]) == ["1.0", "2.0", "latest"]


async def test_metadata_error_is_a_gcr_error_without_the_body(
    tmp_path: Path, metadata: GceMetadataFake, gcr_registry: RegistryProcess
) -> None:
    # 403, not 5xx: google-auth retries server errors with backoff (5 tries), which only
    # slows the test; both formats are checked by test_cause_drops_the_response_body.
    metadata.fail_with(
        Failure(403, f"denied {PLANTED}".encode(), "text/plain"), match="/token"
    )
    run = await _run(tmp_path, metadata, gcr_registry, logins=2)
    first, second = run.answer["results"]
    assert first == second  # a failure is not cached: the second call tried again
    assert first["error"]["type"] == "ProviderError"
    message = first["error"]["message"]
    assert message.startswith("GCR authentication failed: ")
    assert message.endswith("from the Google Compute Engine metadata service. Status: 403")
    # The identity failed before any registry credentials were asked for: the
    # per-provider count (registry credential lookups) sees nothing.
    assert run.answer["events"] == []
    assert PLANTED not in run.stdout
    assert PLANTED not in run.stderr


@pytest.mark.parametrize(
    ("err", "cause"),
    [
        (
            Exception(
                "Failed to retrieve http://x/token from the Google Compute Engine metadata "
                f"service. Status: 403 Response:\nb'{PLANTED}'"
            ),
            "Failed to retrieve http://x/token from the Google Compute Engine metadata "
            "service. Status: 403",
        ),
        (
            Exception(
                "Failed to retrieve http://x/token from the Google Compute Engine metadata "
                "service. Compute Engine Metadata server unavailable. Response status: 500\n"
                f"Response details:\n{PLANTED}"
            ),
            "Failed to retrieve http://x/token from the Google Compute Engine metadata "
            "service. Compute Engine Metadata server unavailable. Response status: 500",
        ),
        (
            Exception(Exception(f"Status: 404 Response:\n{PLANTED}", object())),
            "Status: 404",
        ),
        (
            Exception(
                "Received invalid JSON from the Google Compute Engine metadata service: "
                + PLANTED[:20]
            ),
            "Received invalid JSON from the Google Compute Engine",
        ),
    ],
    ids=["status-response", "response-details", "wrapped-with-response", "invalid-json"],
)
def test_cause_drops_the_response_body(err: Exception, cause: str) -> None:
    assert _cause(err) == cause
    assert PLANTED[:20] not in _cause(err)


def test_expiry_is_utc() -> None:
    import datetime as dt

    naive = dt.datetime(2030, 1, 1, 0, 0, 0)
    assert _epoch(naive) == dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()
    assert _epoch(None) is None
