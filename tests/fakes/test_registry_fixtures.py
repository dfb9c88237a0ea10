"""Proof that the registry fixtures are what they claim, checked with independent clients.

Every fixture is exercised with plain aiohttp and, where a behaviour is visible to it,
with ``skopeo list-tags`` (a Go client from another project), so the registry client
can trust them as a baseline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from yarl import URL

from tests.fakes.certs import make_ca, write_bundle, write_cert_dir
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.ports import process_listens
from tests.fakes.registry import (
    TEST_CREDS,
    RegistryProcess,
    RegistryStartError,
    start_registry,
)
from tests.fakes.tokenserver import TokenServer

OCI_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


# --- helpers -----------------------------------------------------------------------------


class Skopeo:
    """``skopeo list-tags`` in a sandboxed environment (no host auth files, no proxies)."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "HOME"}
        self.env |= {"HOME": str(home), "XDG_RUNTIME_DIR": str(home)}

    async def list_tags(
        self,
        ref: str,
        *,
        tls_verify: bool = True,
        creds: tuple[str, str] | None = None,
        cert_dir: Path | None = None,
    ) -> tuple[int, list[str], str]:
        """Exit code, tags (empty on failure) and stderr."""
        argv = ["skopeo", "list-tags"]
        if not tls_verify:
            argv.append("--tls-verify=false")
        if creds is not None:
            argv.append("--creds=" + ":".join(creds))
        if cert_dir is not None:
            argv.append(f"--cert-dir={cert_dir}")
        argv.append(f"docker://{ref}")
        # Async so fronts served by this test's loop can answer skopeo meanwhile.
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        code = proc.returncode
        assert code is not None
        tags = json.loads(out)["Tags"] if code == 0 else []
        return code, tags, err.decode(errors="replace")


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo-home")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(
    http: aiohttp.ClientSession, url: str, **kw: object
) -> tuple[int, dict[str, object], CIMultiDictProxy[str]]:
    async with http.get(url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.json(content_type=None), resp.headers


async def list_tags(http: aiohttp.ClientSession, url: str, **kw: object) -> list[str]:
    status, body, _ = await get_json(http, url, **kw)
    assert status == 200, body
    tags = body["tags"]
    assert isinstance(tags, list)
    return tags


async def manifest_digest(
    http: aiohttp.ClientSession, reg: RegistryProcess, repo: str, tag: str, **kw: object
) -> str:
    async with http.head(
        f"{reg.base_url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": OCI_ACCEPT},
        **kw,  # type: ignore[arg-type]
    ) as resp:
        assert resp.status == 200
        return resp.headers["Docker-Content-Digest"]


def basic(creds: Sequence[str]) -> dict[str, str]:
    """Basic auth headers, built by hand (``aiohttp.BasicAuth`` is deprecated)."""
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- plain registry ------------------------------------------------------------------------


async def test_pushed_tags_are_listed_with_distinct_digests(
    registry: RegistryProcess, http: aiohttp.ClientSession, skopeo: Skopeo
) -> None:
    digests = await registry.push_tags("team/app", ["v1.0.0", "v1.1.0", "latest"])

    assert sorted(await list_tags(http, f"{registry.base_url}/v2/team/app/tags/list")) == [
        "latest",
        "v1.0.0",
        "v1.1.0",
    ]
    assert len(set(digests.values())) == 3
    for tag, digest in digests.items():
        assert await manifest_digest(http, registry, "team/app", tag) == digest
    code, tags, err = await skopeo.list_tags(registry.ref("team/app"), tls_verify=False)
    assert code == 0, err
    assert sorted(tags) == ["latest", "v1.0.0", "v1.1.0"]


async def test_unknown_repository_is_name_unknown(
    registry: RegistryProcess, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await get_json(http, f"{registry.base_url}/v2/nope/tags/list")
    assert status == 404
    assert body["errors"][0]["code"] == "NAME_UNKNOWN"  # type: ignore[index]


async def test_write_tags_serves_ten_thousand_tags(
    registry: RegistryProcess, http: aiohttp.ClientSession, skopeo: Skopeo
) -> None:
    wanted = {f"1.{i // 100}.{i % 100}" for i in range(10_000)}
    registry.write_tags("big", wanted)

    assert set(await list_tags(http, f"{registry.base_url}/v2/big/tags/list")) == wanted
    digest = await manifest_digest(http, registry, "big", "1.0.0")
    assert digest == await manifest_digest(http, registry, "big", "1.99.99")
    code, tags, err = await skopeo.list_tags(registry.ref("big"), tls_verify=False)
    assert code == 0, err
    assert set(tags) == wanted


async def test_repush_changes_the_digest(
    registry: RegistryProcess, http: aiohttp.ClientSession
) -> None:
    first = (await registry.push_tags("app", ["latest"]))["latest"]
    second = await registry.repush("app", "latest")

    assert second != first
    assert await manifest_digest(http, registry, "app", "latest") == second


async def test_registry_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    server = ca.issue(tmp_path / "pki", "registry")
    server.cert_file.unlink()

    with pytest.raises(RegistryStartError, match=r"registry\.crt"):
        await start_registry(tmp_path, tls=server)


async def test_a_port_taken_by_another_process_is_not_mistaken_for_the_registry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race a parallel run hits: between free_port and the registry's bind another
    # worker listens there. A connect would succeed; start_registry must still see
    # that its registry is not the listener (here it cannot start at all).
    squatter = socket.create_server(("127.0.0.1", 0))
    try:
        port = squatter.getsockname()[1]
        monkeypatch.setattr("tests.fakes.registry.free_port", lambda: port)
        ca = make_ca(tmp_path / "pki")
        server = ca.issue(tmp_path / "pki", "registry")
        server.cert_file.unlink()

        with pytest.raises(RegistryStartError):
            await start_registry(tmp_path, tls=server)
        assert process_listens(os.getpid(), port)
    finally:
        squatter.close()


async def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    reg = await start_registry(tmp_path)
    reg.stop()
    reg.stop()

    assert reg.process.returncode is not None
    with pytest.raises(OSError):  # noqa: PT011 - any refusal proves nothing listens
        await asyncio.open_connection("127.0.0.1", reg.port)


# --- Basic auth ----------------------------------------------------------------------------


async def test_htpasswd_rejects_anonymous_and_wrong_credentials(
    basic_registry: RegistryProcess, http: aiohttp.ClientSession, skopeo: Skopeo
) -> None:
    url = f"{basic_registry.base_url}/v2/"
    async with http.get(url) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    async with http.get(url, headers=basic(("testuser", "wrong"))) as resp:
        assert resp.status == 401
    async with http.get(url, headers=basic(TEST_CREDS)) as resp:
        assert resp.status == 200

    await basic_registry.push_tags("secret", ["a", "b"], auth=TEST_CREDS)
    listed = await list_tags(
        http, f"{basic_registry.base_url}/v2/secret/tags/list", headers=basic(TEST_CREDS)
    )
    assert sorted(listed) == ["a", "b"]
    ref = basic_registry.ref("secret")
    code, tags, err = await skopeo.list_tags(ref, tls_verify=False, creds=TEST_CREDS)
    assert (code, sorted(tags)) == (0, ["a", "b"]), err
    code, _, _ = await skopeo.list_tags(ref, tls_verify=False, creds=("testuser", "wrong"))
    assert code != 0
    code, _, _ = await skopeo.list_tags(ref, tls_verify=False)
    assert code != 0


async def test_push_without_credentials_to_basic_registry_fails(
    basic_registry: RegistryProcess,
) -> None:
    with pytest.raises(RuntimeError, match="Basic"):
        await basic_registry.push_tags("secret", ["a"])


# --- Bearer token auth ---------------------------------------------------------------------


async def test_token_flow_end_to_end(
    token_registry: RegistryProcess,
    token_server: TokenServer,
    http: aiohttp.ClientSession,
    skopeo: Skopeo,
) -> None:
    await token_registry.push_tags("org/app", ["1.0", "2.0"], auth=TEST_CREDS)
    tags_url = f"{token_registry.base_url}/v2/org/app/tags/list"

    async with http.get(tags_url) as resp:
        assert resp.status == 401
        challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{token_server.realm}"' in challenge
    assert f'service="{token_server.service}"' in challenge
    assert 'scope="repository:org/app:pull"' in challenge

    params = {"service": token_server.service, "scope": "repository:org/app:pull"}
    status, body, _ = await get_json(
        http, token_server.realm, params=params, headers=basic(TEST_CREDS)
    )
    assert status == 200
    assert set(body) >= {"token", "access_token", "expires_in", "issued_at"}
    token = body["token"]
    assert isinstance(token, str)
    claims = token_server.decode(token)
    assert claims["aud"] == token_server.service
    assert claims["access"] == [{"type": "repository", "name": "org/app", "actions": ["pull"]}]
    listed = await list_tags(http, tags_url, headers={"Authorization": f"Bearer {token}"})
    assert sorted(listed) == ["1.0", "2.0"]

    status, _, _ = await get_json(
        http, token_server.realm, params=params, headers=basic(("testuser", "wrong"))
    )
    assert status == 401
    status, _, _ = await get_json(http, token_server.realm, params=params)
    assert status == 401
    recorded = token_server.requests[-3:]
    assert [r.authorization for r in recorded] == [True, True, False]
    assert all(r.scopes == ["repository:org/app:pull"] and r.scheme == "http" for r in recorded)

    code, tags, err = await skopeo.list_tags(
        token_registry.ref("org/app"), tls_verify=False, creds=TEST_CREDS
    )
    assert (code, sorted(tags)) == (0, ["1.0", "2.0"]), err


async def test_token_without_push_cannot_push(
    token_registry: RegistryProcess, token_server: TokenServer, http: aiohttp.ClientSession
) -> None:
    params = {"service": token_server.service, "scope": "repository:x:pull"}
    _, body, _ = await get_json(http, token_server.realm, params=params, headers=basic(TEST_CREDS))
    headers = {"Authorization": f"Bearer {body['token']}"}
    async with http.post(f"{token_registry.base_url}/v2/x/blobs/uploads/", headers=headers) as r:
        assert r.status == 401
        assert "insufficient_scope" in r.headers["WWW-Authenticate"]


async def test_oauth2_password_and_refresh_token_grants(
    token_registry: RegistryProcess, token_server: TokenServer, http: aiohttp.ClientSession
) -> None:
    await token_registry.push_tags("app", ["v1"], auth=TEST_CREDS)
    base = {"service": token_server.service, "scope": "repository:app:pull", "client_id": "t"}
    refresh = token_server.issue_refresh_token(TEST_CREDS[0])

    async with http.post(
        token_server.realm, data=base | {"grant_type": "refresh_token", "refresh_token": refresh}
    ) as resp:
        assert resp.status == 200
        token = (await resp.json())["access_token"]
    listed = await list_tags(
        http,
        f"{token_registry.base_url}/v2/app/tags/list",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert listed == ["v1"]

    password = {"grant_type": "password", "username": TEST_CREDS[0], "password": TEST_CREDS[1]}
    async with http.post(
        token_server.realm, data=base | password | {"access_type": "offline"}
    ) as resp:
        assert resp.status == 200
        assert "refresh_token" in await resp.json()
    async with http.post(
        token_server.realm, data=base | {"grant_type": "refresh_token", "refresh_token": "bad"}
    ) as resp:
        assert resp.status == 401
    async with http.post(token_server.realm, data=base | password | {"password": "wrong"}) as resp:
        assert resp.status == 401
    grants = [r.grant_type for r in token_server.requests if r.method == "POST"]
    assert grants == ["refresh_token", "password", "refresh_token", "password"]
    assert all(
        "password" not in dict(r.query) and "refresh_token" not in dict(r.query)
        for r in token_server.requests
    )


async def test_anonymous_token_grants_pull_only_when_allowed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server = TokenServer(tmp_path / "tok", allow_anonymous=True)
    await server.start()
    try:
        reg = await start_registry(tmp_path, token=server)
        try:
            await reg.push_tags("pub", ["v1"], auth=TEST_CREDS)
            params = {"service": server.service, "scope": "repository:pub:pull,push"}
            _, body, _ = await get_json(http, server.realm, params=params)
            token = body["token"]
            assert isinstance(token, str)
            assert server.decode(token)["access"][0]["actions"] == ["pull"]
            headers = {"Authorization": f"Bearer {token}"}
            assert await list_tags(http, f"{reg.base_url}/v2/pub/tags/list", headers=headers) == [
                "v1"
            ]
        finally:
            reg.stop()
    finally:
        await server.close()


async def test_https_token_server(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    ca = make_ca(tmp_path / "pki")
    server = TokenServer(tmp_path / "tok", tls=ca.issue(tmp_path / "pki", "token"))
    await server.start()
    try:
        assert server.realm.startswith("https://127.0.0.1:")
        reg = await start_registry(tmp_path, token=server)
        try:
            await reg.push_tags("a", ["1"], auth=TEST_CREDS, ssl_context=ca.ssl_context())
            assert server.requests
            assert all(r.scheme == "https" for r in server.requests)
        finally:
            reg.stop()
    finally:
        await server.close()


# --- TLS and mutual TLS --------------------------------------------------------------------


async def test_tls_registry_is_trusted_through_its_ca_only(
    tls_registry: RegistryProcess, http: aiohttp.ClientSession, skopeo: Skopeo, tmp_path: Path
) -> None:
    assert tls_registry.ca is not None
    assert tls_registry.base_url.startswith("https://")
    await tls_registry.push_tags("secure", ["v1"])
    url = f"{tls_registry.base_url}/v2/secure/tags/list"

    assert await list_tags(http, url, ssl=tls_registry.ca.ssl_context()) == ["v1"]
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await list_tags(http, url)
    bundle = write_bundle(tmp_path / "bundle.pem", tls_registry.ca.cert_pem)
    with_system = ssl.create_default_context(cafile=str(bundle))
    assert await list_tags(http, url, ssl=with_system) == ["v1"]

    cert_dir = write_cert_dir(tmp_path / "certs", tls_registry.ca)
    code, tags, err = await skopeo.list_tags(tls_registry.ref("secure"), cert_dir=cert_dir)
    assert (code, tags) == (0, ["v1"]), err
    code, _, _ = await skopeo.list_tags(tls_registry.ref("secure"))
    assert code != 0


async def test_mtls_registry_requires_a_client_certificate(
    mtls_registry: RegistryProcess, http: aiohttp.ClientSession, skopeo: Skopeo, tmp_path: Path
) -> None:
    ca, client = mtls_registry.ca, mtls_registry.client
    assert ca is not None
    assert client is not None
    await mtls_registry.push_tags("m", ["v1"])
    url = f"{mtls_registry.base_url}/v2/m/tags/list"

    assert await list_tags(http, url, ssl=ca.ssl_context(client=client)) == ["v1"]
    with pytest.raises(aiohttp.ClientError):
        await list_tags(http, url, ssl=ca.ssl_context())
    stranger_ca = make_ca(tmp_path / "other", "stranger")
    stranger = stranger_ca.issue(tmp_path / "other", "c", server=False, client=True, sans=())
    with pytest.raises(aiohttp.ClientError):
        await list_tags(http, url, ssl=ca.ssl_context(client=stranger))

    with_client = write_cert_dir(tmp_path / "with", ca, client=client)
    code, tags, err = await skopeo.list_tags(mtls_registry.ref("m"), cert_dir=with_client)
    assert (code, tags) == (0, ["v1"]), err
    without = write_cert_dir(tmp_path / "without", ca)
    code, _, _ = await skopeo.list_tags(mtls_registry.ref("m"), cert_dir=without)
    assert code != 0


# --- paginating front ----------------------------------------------------------------------


async def walk_pages(
    http: aiohttp.ClientSession, first: str, *, limit: int = 50, **kw: object
) -> tuple[list[list[str]], list[str]]:
    """Follow Link headers from ``first``; pages and the URLs requested."""
    pages: list[list[str]] = []
    urls = [first]
    for _ in range(limit):
        async with http.get(urls[-1], **kw) as resp:  # type: ignore[arg-type]
            assert resp.status == 200
            pages.append((await resp.json())["tags"])
            link = resp.links.get("next")
        if link is None:
            return pages, urls
        urls.append(str(resp.url.join(URL(str(link["url"])))))
    return pages, urls


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-links", "absolute-links"])
async def test_paginating_front_pages_sorted_tags(
    registry: RegistryProcess,
    http: aiohttp.ClientSession,
    skopeo: Skopeo,
    absolute: bool,
) -> None:
    tags = [f"t{i:02d}" for i in range(25)]
    registry.write_tags("paged", reversed(tags))
    async with PaginatingFront(registry, absolute_links=absolute, default_page_size=7) as front:
        pages, urls = await walk_pages(http, f"{front.url}/v2/paged/tags/list?n=10")
        assert pages == [tags[:10], tags[10:20], tags[20:]]
        assert urls[1].endswith("/v2/paged/tags/list?n=10&last=t09")
        link_headers = [r.path_qs for r in front.tag_list_requests]
        assert link_headers == [
            "/v2/paged/tags/list?n=10",
            "/v2/paged/tags/list?n=10&last=t09",
            "/v2/paged/tags/list?n=10&last=t19",
        ]

        code, listed, err = await skopeo.list_tags(front.ref("paged"), tls_verify=False)
        assert (code, listed) == (0, tags), err
        assert len(front.tag_list_requests) == 3 + 4


async def test_paginating_front_rejects_a_large_page(
    registry: RegistryProcess, http: aiohttp.ClientSession
) -> None:
    registry.write_tags("r", ["a", "b"])
    async with PaginatingFront(
        registry, max_page_size=100, reject_code="TOO_MANY_TAGS_REQUESTED"
    ) as front:
        status, body, _ = await get_json(http, f"{front.url}/v2/r/tags/list?n=1000")
        assert status == 400
        assert body["errors"][0]["code"] == "TOO_MANY_TAGS_REQUESTED"  # type: ignore[index]
        assert await list_tags(http, f"{front.url}/v2/r/tags/list?n=100") == ["a", "b"]


async def test_paginating_front_can_loop(
    registry: RegistryProcess, http: aiohttp.ClientSession
) -> None:
    registry.write_tags("loop", ["a", "b", "c"])
    async with PaginatingFront(registry, link_loop=True) as front:
        pages, urls = await walk_pages(http, f"{front.url}/v2/loop/tags/list?n=2", limit=5)
        assert pages == [["a", "b"]] * 5
        assert set(urls) == {f"{front.url}/v2/loop/tags/list?n=2"}


async def test_paginating_front_passes_auth_through(
    basic_registry: RegistryProcess, http: aiohttp.ClientSession
) -> None:
    await basic_registry.push_tags("p", ["x", "y"], auth=TEST_CREDS)
    async with PaginatingFront(basic_registry) as front:
        url = f"{front.url}/v2/p/tags/list?n=1"
        async with http.get(url) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic ")
        pages, _ = await walk_pages(http, url, headers=basic(TEST_CREDS))
        assert pages == [["x"], ["y"]]
        assert front.requests[-1].authorization is not None


# --- fault front ---------------------------------------------------------------------------


@pytest.fixture
async def faulty(registry: RegistryProcess) -> AsyncIterator[FaultFront]:
    await registry.push_tags("f", ["v1", "v2"])
    front = FaultFront(registry)
    await front.start()
    try:
        yield front
    finally:
        await front.close()


@pytest.mark.parametrize(
    ("status", "retry_after", "code"),
    [(429, "2", "TOOMANYREQUESTS"), (503, None, "UNAVAILABLE"), (500, None, "UNAVAILABLE")],
    ids=["429-retry-after", "503", "500"],
)
async def test_fault_front_fails_then_recovers(
    faulty: FaultFront,
    http: aiohttp.ClientSession,
    status: int,
    retry_after: str | None,
    code: str,
) -> None:
    url = f"{faulty.url}/v2/f/tags/list"
    faulty.fail_next(2, status=status, retry_after=retry_after, path="/tags/list$")

    async with http.get(f"{faulty.url}/v2/") as resp:
        assert resp.status == 200
    for _ in range(2):
        got, body, headers = await get_json(http, url)
        assert got == status
        assert body["errors"][0]["code"] == code  # type: ignore[index]
        assert headers.get("Retry-After") == retry_after
    assert sorted(await list_tags(http, url)) == ["v1", "v2"]
    assert faulty.pending == 0


async def test_fault_front_hangs_until_closed(
    faulty: FaultFront, http: aiohttp.ClientSession
) -> None:
    faulty.hang_next(1)
    request = asyncio.ensure_future(http.get(f"{faulty.url}/v2/f/tags/list"))
    done, _ = await asyncio.wait([request], timeout=0.3)
    assert not done
    assert faulty.requests[-1].path == "/v2/f/tags/list"
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await faulty.close()


async def test_fault_front_truncates_the_body(
    faulty: FaultFront, http: aiohttp.ClientSession
) -> None:
    faulty.truncate_next(1)
    async with http.get(f"{faulty.url}/v2/f/tags/list") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert sorted(await list_tags(http, f"{faulty.url}/v2/f/tags/list")) == ["v1", "v2"]


async def test_fault_front_sends_non_json(faulty: FaultFront, http: aiohttp.ClientSession) -> None:
    faulty.garbage_next(1)
    async with http.get(f"{faulty.url}/v2/f/tags/list") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await resp.read())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_fault_front_streams_a_huge_body_lazily(
    faulty: FaultFront, http: aiohttp.ClientSession, chunked: bool
) -> None:
    size = 1 << 30
    faulty.huge_body_next(1, size=size, chunked=chunked)
    async with http.get(f"{faulty.url}/v2/f/tags/list") as resp:
        assert resp.status == 200
        assert resp.content_length == (None if chunked else size)
        head = await resp.content.readexactly(1 << 20)
        assert head.startswith(b'{"name":"huge","tags":["aaaa')
        resp.close()
    assert faulty.huge_bytes_sent < size
    assert sorted(await list_tags(http, f"{faulty.url}/v2/f/tags/list")) == ["v1", "v2"]


@pytest.mark.parametrize(
    ("bind", "advertise"), [("127.0.0.2", None), ("127.0.0.1", "localhost")], ids=["ip", "name"]
)
async def test_fault_front_redirects_to_another_host(
    registry: RegistryProcess,
    faulty: FaultFront,
    http: aiohttp.ClientSession,
    bind: str,
    advertise: str | None,
) -> None:
    async with FaultFront(registry, bind=bind, advertise=advertise) as other:
        assert other.host.split(":")[0] == (advertise or bind)
        faulty.redirect_next(1, to=other, path="/tags/list$")
        url = f"{faulty.url}/v2/f/tags/list?n=5"
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == f"{other.url}/v2/f/tags/list?n=5"

        faulty.redirect_next(1, to=other, path="/tags/list$")
        listed = await list_tags(http, url, headers={"Authorization": "Bearer secret-token"})
        assert sorted(listed) == ["v1", "v2"]
        assert faulty.requests[-1].authorization == "Bearer secret-token"
        # aiohttp drops credentials across hosts; the target shows what arrived.
        assert [r.authorization for r in other.requests] == [None]
        assert other.requests[0].path_qs == "/v2/f/tags/list?n=5"


async def test_fault_front_proxies_pushes_and_heads(
    registry: RegistryProcess, faulty: FaultFront, http: aiohttp.ClientSession
) -> None:
    digest = await manifest_digest(http, registry, "f", "v1")
    async with http.head(f"{faulty.url}/v2/f/manifests/v1", headers={"Accept": OCI_ACCEPT}) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.content_length is not None
        assert resp.content_length > 0
