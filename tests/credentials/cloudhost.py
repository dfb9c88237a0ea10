"""A real registry under a cloud registry's host name, on loopback, port 443.

Flux v1.2 logs in to a cloud only when the registry challenges, and only for hosts that
match its cloud's pattern exactly (``123456789012.dkr.ecr.us-east-1.amazonaws.com``,
``myregistry.azurecr.io``, ``europe-docker.pkg.dev``: no port). To show that path without
the internet, a real ``docker-registry`` (TLS with a test CA, htpasswd with the token the
cloud fake or moto issues) is reached under such a name:

* a byte relay listens on port 443 of a random 127/8 address (nothing else on the machine
  uses it) and forwards to the registry's own port: TLS is end to end, between the
  controller and the registry;
* ``socket.getaddrinfo`` of this process answers that address for the cloud host names
  (test-scoped monkeypatch), so the controller's resolver, guard included, is used as is.

Objects trust the test CA through their ``certSecretRef`` (``ca.crt``), a real feature.
Binding port 443 needs root, which the test machines and CI run as; a failure to bind is
an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.certs import CertAuthority, make_ca
from tests.fakes.registry import RegistryProcess, start_registry

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ACR_HOST = "myregistry.azurecr.io"
GAR_HOST = "europe-docker.pkg.dev"
CLOUD_HOSTS = (ECR_HOST, ACR_HOST, GAR_HOST)


@dataclass(frozen=True, slots=True)
class CloudRegistry:
    """The registry, the loopback address its cloud names resolve to, and the CA."""

    registry: RegistryProcess
    address: str
    ca: CertAuthority


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def cloud_registry(tmp: Path, monkeypatch: pytest.MonkeyPatch, *,
                         htpasswd: tuple[str, str] | None = None,
                         hosts: Sequence[str] = CLOUD_HOSTS) -> AsyncIterator[CloudRegistry]:
    """A TLS registry reachable as ``https://<host>`` for each of ``hosts``."""
    ca = make_ca(tmp / "cloud-pki")
    pair = ca.issue(tmp / "cloud-pki", "cloud-registry", sans=list(hosts))
    registry = await start_registry(tmp / "cloud", htpasswd=htpasswd, tls=pair, ca=ca)
    rng = random.Random()
    address = f"127.{rng.randrange(100, 250)}.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", registry.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay, address, 443)
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in hosts:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     (address, int(port or 443)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        yield CloudRegistry(registry=registry, address=address, ca=ca)
    finally:
        monkeypatch.setattr(socket, "getaddrinfo", real)
        server.close()
        await server.wait_closed()
        registry.stop()
