"""Pagination and misbehaving registries: page limits, retries, pauses, bounds, redirects."""

from __future__ import annotations

import asyncio

import pytest

from imagereflector.registry.errors import (
    AuthError,
    InvalidResponseError,
    PaginationError,
    RegistryTimeoutError,
    RegistryUnavailable,
    ScanLimitError,
)
from imagereflector.registry.limiter import HostLimiter
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.types import Credentials
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.hostile import HostileRegistry, tags_reply
from tests.fakes.registry import TEST_CREDS, RegistryProcess
from tests.registry.conftest import MakeClient
from tests.registry.fakeclock import FakeClock
from tests.registry.recording import RecordingObserver

TAGS = sorted(f"t{i:03d}" for i in range(250))
TAGS_PATH = "/tags/list"


def ref_of(host: str, repo: str = "team/app") -> ImageReference:
    return ImageReference(registry=host, repository=repo)


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-links", "absolute-links"])
async def test_link_pagination_concatenates_pages_in_order(
    registry: RegistryProcess, make_client: MakeClient, absolute: bool
) -> None:
    registry.write_tags("team/app", TAGS)
    async with PaginatingFront(registry, absolute_links=absolute) as front:
        tags = await make_client(page_size=40).list_tags(ref_of(front.host), timeout=10)
        assert tags == TAGS
        requests = front.tag_list_requests
    assert len(requests) == 7
    assert requests[0].path_qs == "/v2/team/app/tags/list?n=40"
    assert requests[1].path_qs == "/v2/team/app/tags/list?n=40&last=t039"


@pytest.mark.parametrize(
    "code", ["PAGINATION_NUMBER_INVALID", "TOO_MANY_TAGS_REQUESTED"], ids=["distribution", "quay"]
)
async def test_rejected_page_size_falls_back_to_100_and_is_remembered(
    registry: RegistryProcess, make_client: MakeClient, code: str
) -> None:
    registry.write_tags("team/app", TAGS)
    async with PaginatingFront(registry, max_page_size=100, reject_code=code) as front:
        client = make_client()
        assert await client.list_tags(ref_of(front.host), timeout=10) == TAGS
        sizes = [r.path_qs.split("n=")[1].split("&")[0] for r in front.tag_list_requests]
        assert sizes == ["1000", "100", "100", "100"]
        front.requests.clear()
        assert await client.list_tags(ref_of(front.host), timeout=10) == TAGS
        assert front.tag_list_requests[0].path_qs.endswith("?n=100")
        assert len(front.tag_list_requests) == 3


async def test_fallback_page_size_rejected_too_is_an_error(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    async with PaginatingFront(registry, max_page_size=50) as front:
        with pytest.raises(Exception, match="PAGINATION_NUMBER_INVALID: page size 100 above 50"):
            await make_client().list_tags(ref_of(front.host), timeout=10)


async def test_link_loop_ends_the_scan(registry: RegistryProcess, make_client: MakeClient) -> None:
    registry.write_tags("team/app", TAGS)
    async with PaginatingFront(registry, link_loop=True) as front:
        with pytest.raises(PaginationError, match="pagination loop"):
            await make_client(page_size=10).list_tags(ref_of(front.host), timeout=10)
        # The first page links to itself: the loop is seen before a second request.
        assert len(front.tag_list_requests) == 1


async def test_more_than_max_pages_ends_the_scan(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    async with PaginatingFront(registry) as front:
        client = make_client(page_size=10, max_pages=5)
        with pytest.raises(PaginationError, match="more than 5 pages"):
            await client.list_tags(ref_of(front.host), timeout=10)
        assert len(front.tag_list_requests) == 5
        # Exactly max_pages pages is fine.
        assert len(await make_client(page_size=50, max_pages=5).list_tags(
            ref_of(front.host), timeout=10
        )) == 250


async def test_ten_thousand_tags_over_ten_pages(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    tags = sorted(f"2.{i // 100}.{i % 100}" for i in range(10_000))
    registry.write_tags("big/repo", tags)
    async with PaginatingFront(registry) as front:
        listed = await make_client().list_tags(ref_of(front.host, "big/repo"), timeout=30)
        assert len(front.tag_list_requests) == 10
    assert listed == tags


async def test_429_with_retry_after_is_waited_out_then_succeeds(
    registry: RegistryProcess, make_client: MakeClient, observer: RecordingObserver
) -> None:
    registry.write_tags("team/app", TAGS)
    clock = FakeClock(auto_advance=True)
    async with FaultFront(registry) as front:
        front.fail_next(2, status=429, retry_after="3", path=TAGS_PATH)
        client = make_client(clock=clock, max_retry_after=5)
        assert sorted(await client.list_tags(ref_of(front.host), timeout=60)) == TAGS
    assert clock.sleeps == [3.0, 3.0]
    assert observer.codes(front.host)[-3:] == ["429", "429", "200"]


async def test_retry_after_beyond_the_bound_fails_at_once_and_pauses_the_host(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=0, burst=0, clock=clock)
    async with FaultFront(registry) as front:
        front.fail_next(1, status=429, retry_after="3600", path=TAGS_PATH)
        client = make_client(limiter=limiter, max_retry_after=5)
        with pytest.raises(RegistryUnavailable, match=r"TOOMANYREQUESTS.*retry after 3600s"):
            await client.list_tags(ref_of(front.host), timeout=60)
        assert len(front.requests) == 2  # ping, one tags request: no retry
    assert clock.sleeps == []
    assert limiter.paused_until(front.host) == pytest.approx(clock.now + 5)


async def test_a_host_wide_pause_holds_back_a_second_caller(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    registry.write_tags("team/other", TAGS[:3])
    clock = FakeClock()
    client = make_client(clock=clock, max_retry_after=60)
    async with FaultFront(registry) as front:
        await client.list_tags(ref_of(front.host, "team/other"), timeout=600)  # warm up
        front.fail_next(1, status=503, retry_after="30", path="team/app")
        first = asyncio.create_task(client.list_tags(ref_of(front.host), timeout=600))
        await clock.until_sleeping(1)  # the first caller got its 503 and waits
        seen = len(front.requests)
        second = asyncio.create_task(
            client.list_tags(ref_of(front.host, "team/other"), timeout=600)
        )
        await clock.until_sleeping(2)
        assert len(front.requests) == seen  # the second caller sent nothing
        clock.advance(30)
        assert sorted(await first) == TAGS
        assert sorted(await second) == TAGS[:3]


async def test_server_errors_are_retried_with_backoff(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    clock = FakeClock(auto_advance=True)
    async with FaultFront(registry) as front:
        front.fail_next(2, status=502, path=TAGS_PATH)
        assert sorted(await make_client(clock=clock).list_tags(
            ref_of(front.host), timeout=60
        )) == TAGS
    assert clock.sleeps == [pytest.approx(0.1, rel=0.11), pytest.approx(0.3, rel=0.11)]


async def test_persistent_server_errors_give_up_after_three_attempts(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    clock = FakeClock(auto_advance=True)
    async with FaultFront(registry) as front:
        front.fail_next(5, status=500, path=TAGS_PATH)
        with pytest.raises(RegistryUnavailable, match="UNAVAILABLE: scripted fault"):
            await make_client(clock=clock).list_tags(ref_of(front.host), timeout=60)
        assert front.pending == 2


async def test_a_truncated_body_is_retried(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    async with FaultFront(registry) as front:
        front.truncate_next(1, path=TAGS_PATH)
        clock = FakeClock(auto_advance=True)
        assert sorted(await make_client(clock=clock).list_tags(
            ref_of(front.host), timeout=60
        )) == TAGS


async def test_a_non_json_page_is_an_invalid_response(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    async with FaultFront(registry) as front:
        front.garbage_next(1, path=TAGS_PATH)
        with pytest.raises(InvalidResponseError, match="tags response is not JSON"):
            await make_client().list_tags(ref_of(front.host), timeout=10)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_huge_body_is_refused_early(
    registry: RegistryProcess, make_client: MakeClient, chunked: bool
) -> None:
    async with FaultFront(registry) as front:
        front.huge_body_next(1, size=1 << 30, chunked=chunked, path=TAGS_PATH)
        with pytest.raises(ScanLimitError, match=r"passed 1048576 bytes; stopped \(see "
                           r"--max-tag-bytes-per-scan\)"):
            await make_client(max_scan_bytes=1 << 20).list_tags(ref_of(front.host), timeout=30)
        assert front.huge_bytes_sent < 1 << 28


async def test_a_hanging_registry_hits_the_call_timeout(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    async with FaultFront(registry) as front:
        front.hang_next(1, path=TAGS_PATH)
        with pytest.raises(RegistryTimeoutError, match="timed out"):
            await make_client().list_tags(ref_of(front.host), timeout=1)


async def test_redirect_to_another_host_drops_authorization(
    basic_registry: RegistryProcess, make_client: MakeClient
) -> None:
    creds = Credentials(*TEST_CREDS)
    async with (
        FaultFront(basic_registry) as front,
        FaultFront(basic_registry, bind="127.0.0.2") as elsewhere,
    ):
        front.redirect_next(1, to=elsewhere, path=TAGS_PATH)
        with pytest.raises(AuthError, match=r"127\.0\.0\.2"):
            await make_client().list_tags(ref_of(front.host), credentials=creds, timeout=10)
        assert front.requests[-1].authorization is not None
        assert [r.authorization for r in elsewhere.requests] == [None]


async def test_redirect_on_the_same_host_keeps_authorization(
    basic_registry: RegistryProcess, make_client: MakeClient
) -> None:
    basic_registry.write_tags("team/app", TAGS)
    creds = Credentials(*TEST_CREDS)
    async with FaultFront(basic_registry) as front:
        front.redirect_next(1, to=front, status=302, path=TAGS_PATH)
        tags = await make_client().list_tags(ref_of(front.host), credentials=creds, timeout=10)
        assert sorted(tags) == TAGS
        assert all(r.authorization for r in front.requests if TAGS_PATH in r.path)


async def test_endless_redirects_stop_after_five(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    async with FaultFront(registry) as front:
        front.redirect_next(20, to=front, path=TAGS_PATH)
        with pytest.raises(InvalidResponseError, match="more than 5 redirects"):
            await make_client().list_tags(ref_of(front.host), timeout=10)
        assert len([r for r in front.requests if TAGS_PATH in r.path]) == 6


async def test_invalid_tags_are_counted_per_scan_and_logged_once(
    make_client: MakeClient, observer: RecordingObserver, caplog: pytest.LogCaptureFixture
) -> None:
    async with HostileRegistry() as reg:
        reg.route("/v2/team/app/tags/list", tags_reply("team/app", ["ok", "a\nb", "-x", "v1"]))
        client = make_client()
        with caplog.at_level("WARNING", logger="imagereflector.registry"):
            for _ in range(2):
                assert await client.list_tags(ref_of(reg.host), timeout=10) == ["ok", "v1"]
    assert observer.invalid == [(reg.host, 2), (reg.host, 2)]
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert warnings == [
        f"skipped 2 tag(s) of {reg.host}/team/app that are not valid tag names (e.g. "
        "'a\\nb'); valid tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"]
