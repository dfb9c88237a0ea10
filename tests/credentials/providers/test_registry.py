"""``ProviderRegistry``: wiring, anonymous fallbacks, dispatch through the cache, ``forget``.

The clouds' own flows end in real listings in ``test_aws``/``test_azure``/``test_gcp``;
here moto (ECR) is the cloud because it runs in process.
"""

from __future__ import annotations

import pytest

from imagereflector.credentials.providers.aws import AwsLogin
from imagereflector.credentials.providers.azure import AzureLogin
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.credentials.providers.cache import CacheEvent, TokenCache
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.gcp import GcpLogin
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.registry.limiter import SystemClock

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Events:
    """Cache events as a metrics binding would see them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, CacheEvent]] = []

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """Record one."""
        self.seen.append((provider, event))


class FutureClock:
    """A wall clock far before moto's 2015 expiry, so its ECR tokens count as fresh."""

    def wall(self) -> float:
        """2014-01-01."""
        return 1_388_534_400.0

    def monotonic(self) -> float:
        """Any steady value: the test does not move time."""
        return 100.0


def test_missing_plugin_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="no login plugin for provider\\(s\\): azure"):
        ProviderRegistry(
            plugins=(AwsLogin(), GcpLogin()),
            autologin=AutologinFlags(),
            cache=TokenCache(clock=SystemClock()),
        )


def test_default_wires_the_three_clouds() -> None:
    providers = ProviderRegistry.default(autologin=AutologinFlags(aws=True))
    assert sorted(providers._plugins) == ["aws", "azure", "gcp"]


@pytest.mark.parametrize(
    ("provider", "image", "registry", "flags"),
    [
        ("aws", "ghcr.io/org/app", "ghcr.io", AutologinFlags(aws=True)),
        ("aws", "gcr.io/p/app", "gcr.io", AutologinFlags()),
        ("generic", f"{ECR}/app", ECR, AutologinFlags(azure=True, gcp=True)),
        ("", f"{ECR}/app", ECR, AutologinFlags()),
        ("azure", f"{ECR}/app", ECR, AutologinFlags(aws=True)),
    ],
    ids=["generic-host", "aws-on-gcr", "generic-without-aws-flag", "empty-provider", "mismatch"],
)
async def test_anonymous_without_any_login(
    aws_env: str, provider: str, image: str, registry: str, flags: AutologinFlags
) -> None:
    # aws_env has no AWS credentials: had a login been attempted, it would have raised.
    events = Events()
    providers = ProviderRegistry(
        plugins=(AwsLogin(), AzureLogin(), GcpLogin()), autologin=flags,
        cache=TokenCache(clock=SystemClock(), observer=events),
    )
    assert await providers.credentials(provider=provider, image=image, registry=registry) is None
    assert events.seen == []


async def test_login_error_propagates(aws_env: str) -> None:
    providers = ProviderRegistry.default(autologin=AutologinFlags())
    with pytest.raises(ProviderError, match=r"^ECR authentication failed: Unable to locate"):
        await providers.credentials(provider="aws", image=f"{ECR}/app", registry=ECR)


async def test_cached_until_forgotten(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    events = Events()
    providers = ProviderRegistry.default(
        autologin=AutologinFlags(aws=True), observer=events, clock=FutureClock()
    )
    image = f"{ECR}/app"
    first = await providers.credentials(provider="generic", image=image, registry=ECR)
    assert first is not None
    assert first.username == "AWS"
    # Another repository on the same registry shares the token.
    other = await providers.credentials(provider="generic", image=f"{ECR}/other", registry=ECR)
    assert other == first
    providers.forget(provider="generic", image=image, registry=ECR)
    assert await providers.credentials(provider="generic", image=image, registry=ECR) == first
    assert events.seen == [("aws", "miss"), ("aws", "hit"), ("aws", "miss")]
