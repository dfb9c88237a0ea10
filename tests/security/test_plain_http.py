"""Plain http reaches a registry only when asked (``insecure: true``) or for the
contract's local hosts (§2.4.6), end to end.

The rule's local hosts include any registry string containing ``127.0.0.1``, so a
registry on the usual loopback address cannot stand for a remote one. ``127.0.0.2`` can:
Linux routes all of ``127.0.0.0/8`` to the loopback interface, and ``127.0.0.2`` is none
of the contract's local forms (not RFC 1918, not ``localhost:``, not ``.local``, no
``127.0.0.1`` or ``::1`` inside). A raw TCP listener there records the first bytes of
every connection the controller opens and answers nothing useful.

Proven with the real controller (its objects on the real API server): for an object
without ``insecure`` every connection starts with a TLS handshake record (0x16) and none
is a plain-http request, and the object fails with ``ReadOperationFailed`` instead of
being downgraded; the same listener sees a plain ``GET /v2/`` for an object with
``insecure: true``, so the recorder would have seen one had the client fallen back. A
known-good object on a real registry ends Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from imagereflector.api import meta
from imagereflector.registry.reference import parse_image_reference
from tests.badinput.support import ready_of
from tests.controllers.harness import has_ready_reason, is_ready_with, repository
from tests.controllers.realharness import REPOS, KubeTest, start_cluster
from tests.fakes.registry import RegistryProcess

REMOTE_LOOKING = "127.0.0.2"
TLS_HANDSHAKE = 0x16


class FirstBytes:
    """A TCP listener that records what each connection sends first, then hangs up."""

    def __init__(self) -> None:
        self.openings: list[bytes] = []
        self.port = 0
        self.arrived = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            async with asyncio.timeout(5):
                self.openings.append(await reader.read(16))
                self.arrived.set()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FirstBytes]:
        server = await asyncio.start_server(self._handle, REMOTE_LOOKING, 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


async def test_https_only_hosts_are_never_contacted_over_http(registry: RegistryProcess,
                                                               kube: KubeTest) -> None:
    registry.write_tags("app", ["1.0.0"])
    strict, insecure = FirstBytes(), FirstBytes()
    async with strict.running(), insecure.running(), start_cluster(kube) as cluster:
        strict_image = f"{REMOTE_LOOKING}:{strict.port}/app"
        assert parse_image_reference(strict_image).scheme == "https"
        cluster.api.create(repository("strict", strict_image))
        cluster.api.create(repository("insecure", f"{REMOTE_LOOKING}:{insecure.port}/app",
                                      insecure=True))
        cluster.api.create(repository("good", f"{registry.host}/app"))
        obj = await cluster.wait_for(REPOS, cluster.ns, "strict",
                                     has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
        assert ready_of(obj).message.startswith(f"scan failed: GET https://{strict_image[:-4]}")
        await cluster.wait_for(REPOS, cluster.ns, "insecure",
                               has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
        await cluster.wait_for(REPOS, cluster.ns, "good", is_ready_with("found 1 tags"))
        assert strict.openings
        assert all(opening[:1] == bytes([TLS_HANDSHAKE]) for opening in strict.openings), \
            strict.openings
        assert any(opening.startswith(b"GET /v2/") for opening in insecure.openings), \
            insecure.openings
