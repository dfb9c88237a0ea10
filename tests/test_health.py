"""The operator endpoints answer over real HTTP on loopback."""

from __future__ import annotations

import gzip

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from imagereflector.health import serve_health, serve_metrics, split_addr


@pytest.mark.parametrize(("addr", "parts"), [(":8080", ("0.0.0.0", 8080)),
                                             ("127.0.0.1:0", ("127.0.0.1", 0)),
                                             ("[::1]:9440", ("::1", 9440))])
def test_split_addr(addr: str, parts: tuple[str, int]) -> None:
    assert split_addr(addr) == parts


def test_split_addr_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid listen address"):
        split_addr("8080")


async def test_readyz_follows_checks_and_healthz_always_ok() -> None:
    state = {"synced": False}
    endpoint = await serve_health("127.0.0.1:0", {"informers": lambda: state["synced"],
                                                 "store": lambda: True})
    base = f"http://127.0.0.1:{endpoint.bound_port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/readyz") as response:
                assert response.status == 503
                assert "informers" in await response.text()
            state["synced"] = True
            async with session.get(base + "/readyz") as response:
                assert response.status == 200
            async with session.get(base + "/healthz") as response:
                assert response.status == 200
    finally:
        await endpoint.close()


async def test_metrics_endpoint_serves_registry() -> None:
    registry = CollectorRegistry()
    Counter("demo_total", "demo", registry=registry).inc()
    endpoint = await serve_metrics("127.0.0.1:0", lambda: [generate_latest(registry)])
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{endpoint.bound_port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "demo_total 1.0" in await response.text()
    finally:
        await endpoint.close()


async def test_metrics_endpoint_streams_every_piece_in_order() -> None:
    pieces = [f"# piece {i}\n".encode() * 1000 for i in range(40)]
    endpoint = await serve_metrics("127.0.0.1:0", lambda: iter(pieces))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # the source is asked afresh for every scrape
                async with session.get(
                        f"http://127.0.0.1:{endpoint.bound_port}/metrics") as response:
                    assert response.status == 200
                    assert await response.read() == b"".join(pieces)
    finally:
        await endpoint.close()


async def test_metrics_endpoint_gzips_only_when_the_scraper_accepts_it() -> None:
    pieces = [f"demo_series{{n=\"{i}\"}} 1.0\n".encode() for i in range(5000)]
    endpoint = await serve_metrics("127.0.0.1:0", lambda: iter(pieces))
    url = f"http://127.0.0.1:{endpoint.bound_port}/metrics"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                assert response.headers["Content-Encoding"] == "gzip"
                raw = await response.read()
            assert gzip.decompress(raw) == b"".join(pieces)
            assert len(raw) < len(b"".join(pieces)) // 5
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
                assert "Content-Encoding" not in response.headers
                assert await response.read() == b"".join(pieces)
    finally:
        await endpoint.close()
