"""Runs cloud logins in a fresh interpreter: ``python -m tests.credentials.providers.child SPEC``.

Two SDK behaviours force a subprocess: google-auth reads ``GCE_METADATA_HOST`` when it
is imported, and aiohttp (under azure-identity's aio transport) builds its default TLS
context, and so reads ``SSL_CERT_FILE``, when it is imported. The parent test starts the
fakes and the real registry, sets the environment of this process and reads one JSON
line from stdout.

SPEC is JSON: ``provider``, ``image``, ``registry``, ``autologin`` (``{aws, azure, gcp}``),
``logins`` (how many times to ask), optional ``exchange_url`` (the ACR exchange fake) and
optional ``list`` (``{registry, repository}``: list tags with the credentials obtained).
The answer: ``results`` (per login: ``anonymous``, ``username`` or ``error`` with type and
message), ``events`` (cache events) and ``tags`` or ``list_error``. Passwords are never
printed; the imagereflector loggers write at DEBUG to stderr, so the parent can check
the logs for tokens too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from imagereflector.credentials.providers.aws import AwsLogin
from imagereflector.credentials.providers.azure import AzureLogin, acr_exchange_url
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.credentials.providers.cache import CacheEvent, TokenCache
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.gcp import GcpLogin
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.transport import NullObserver
from imagereflector.registry.types import Credentials


class _Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        self.events.append((provider, event))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Do what ``spec`` says; return the JSON-able answer."""
    exchange = spec.get("exchange_url")
    azure = AzureLogin(exchange_url=(lambda _host: exchange) if exchange else acr_exchange_url)
    events = _Events()
    providers = ProviderRegistry(
        plugins=(AwsLogin(), azure, GcpLogin()),
        autologin=AutologinFlags(**spec.get("autologin", {})),
        cache=TokenCache(clock=SystemClock(), observer=events),
    )
    results: list[dict[str, Any]] = []
    credentials: Credentials | None = None
    for _ in range(int(spec.get("logins", 1))):
        try:
            credentials = await providers.credentials(
                provider=spec["provider"], image=spec["image"], registry=spec["registry"]
            )
        except ProviderError as err:
            results.append({"error": {"type": type(err).__name__, "message": str(err)}})
            continue
        if credentials is None:
            results.append({"anonymous": True})
        else:
            results.append({"anonymous": False, "username": credentials.username})
    answer: dict[str, Any] = {"results": results, "events": events.events}
    target = spec.get("list")
    if target is not None:
        answer.update(await _list(target, credentials))
    return answer


async def _list(target: dict[str, str], credentials: Credentials | None) -> dict[str, Any]:
    client = RegistryClient(
        limiter=HostLimiter(qps=0, burst=0, clock=SystemClock()),
        observer=NullObserver(),
        settings=ClientSettings(),
    )
    try:
        ref = parse_image_reference(f"{target['registry']}/{target['repository']}")
        tags = await client.list_tags(ref, credentials=credentials, timeout=20)
    except Exception as err:  # the parent asserts on the type and text
        return {"list_error": f"{type(err).__name__}: {err}"}
    finally:
        await client.close()
    return {"tags": tags}


def main() -> None:
    """Entry point: one JSON spec in argv, one JSON answer on stdout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("imagereflector")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    answer = asyncio.run(run(json.loads(sys.argv[1])))
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
