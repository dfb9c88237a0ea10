"""Flux v1.2's ``gotk_token_*`` metrics, exactly as Prometheus scrapes them, and this
project's ``imagereflector_token_cache_events_total`` beside them.

The cloud is a scripted plugin (the real ones are tested against their fakes); what is
under test is the cache behind ``ProviderRegistry`` and the exposition of ``Metrics``.
The last test runs the whole controller on the real API server.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from imagereflector.api.compat import Compatibility
from imagereflector.credentials.providers.base import Account, TokenOptions
from imagereflector.credentials.providers.cache import Expiring, InvolvedObject, TokenCache
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.metrics import Metrics
from imagereflector.registry.limiter import SystemClock
from imagereflector.registry.types import Credentials
from tests.controllers.harness import has_ready_reason, repository
from tests.controllers.realharness import REPOS, KubeTest, start_cluster

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
APP = InvolvedObject("ImageRepository", "app", "team-a")
POLICY = InvolvedObject("ImagePolicy", "app", "team-a")


class Scripted:
    """A cloud that always logs in, with tokens valid for an hour."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.logins = 0

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        return Expiring("access", time.time() + 3600)

    async def audiences(self, account: Account) -> list[str]:
        return []

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        raise AssertionError("not used")

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        self.logins += 1
        return Expiring(Credentials(username="AWS", password="secret"), time.time() + 3600)


def providers(metrics: Metrics, *, max_size: int = 100) -> ProviderRegistry:
    cache = TokenCache(clock=SystemClock(), observer=metrics, metrics=metrics,
                       max_size=max_size)
    return ProviderRegistry(plugins=[Scripted("aws"), Scripted("azure"), Scripted("gcp")],
                            autologin=AutologinFlags(), cache=cache)


def scrape(metrics: Metrics) -> str:
    return metrics.exposition().decode()


async def test_names_help_labels_and_counts() -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    clouds = providers(metrics)
    for involved in (APP, APP, POLICY):
        await clouds.artifact_credentials(provider="aws", image=f"{ECR}/app",
                                          involved=involved)
    text = scrape(metrics)
    labels = 'kind="{}",name="app",namespace="team-a",operation="reconcile"'
    assert ("# HELP gotk_token_cache_events_total Total number of cache retrieval events for "
            "a Gitops Toolkit resource reconciliation.\n"
            "# TYPE gotk_token_cache_events_total counter\n") in text
    # Two lookups per login (access token, then registry credentials), as pkg/auth makes.
    assert (f'gotk_token_cache_events_total{{event_type="cache_miss",'
            f'{labels.format("ImageRepository")}}} 2.0') in text
    assert (f'gotk_token_cache_events_total{{event_type="cache_hit",'
            f'{labels.format("ImageRepository")}}} 2.0') in text
    assert (f'gotk_token_cache_events_total{{event_type="cache_hit",'
            f'{labels.format("ImagePolicy")}}} 2.0') in text
    assert ("# HELP gotk_token_cached_items Total number of items in the cache.\n"
            "# TYPE gotk_token_cached_items gauge\ngotk_token_cached_items 2.0\n") in text
    assert ("# HELP gotk_token_cache_requests_total Total number of cache requests partioned "
            "by success or failure.\n# TYPE gotk_token_cache_requests_total counter\n"
            'gotk_token_cache_requests_total{status="success"} 6.0\n') in text
    assert ("# HELP gotk_token_cache_evictions_total Total number of cache evictions.\n"
            "# TYPE gotk_token_cache_evictions_total counter\n"
            "gotk_token_cache_evictions_total 0.0\n") in text
    # This project's per-provider count: one per registry credential lookup, as before.
    assert 'imagereflector_token_cache_events_total{event="miss",provider="aws"} 1.0' in text
    assert 'imagereflector_token_cache_events_total{event="hit",provider="aws"} 2.0' in text
    # A deleted object's event series go with it; the others stay.
    metrics.delete_object(kind="ImageRepository", name="app", namespace="team-a")
    text = scrape(metrics)
    assert 'kind="ImageRepository"' not in text.split("# HELP gotk_token_cached_items")[0]
    assert 'event_type="cache_hit",kind="ImagePolicy"' in text


async def test_size_evicts_and_zero_disables() -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    clouds = providers(metrics, max_size=1)
    await clouds.artifact_credentials(provider="aws", image=f"{ECR}/app", involved=APP)
    text = scrape(metrics)
    assert "gotk_token_cache_evictions_total 1.0" in text  # two entries, room for one
    assert "gotk_token_cached_items 1.0" in text
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    clouds = providers(metrics, max_size=0)
    await clouds.artifact_credentials(provider="aws", image=f"{ECR}/app", involved=APP)
    text = scrape(metrics)
    assert "gotk_token_cache_events_total{" not in text
    assert "gotk_token_cache_requests_total{" not in text


async def test_the_controller_exports_them_and_stalls_without_the_gate(kube: KubeTest) -> None:
    async with start_cluster(kube, flux_compatibility=Compatibility.V1_2,
                             token_cache_max_size=10, token_cache_max_duration=600.0
                             ) as cluster:
        kube.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "puller", "namespace": kube.ns}})
        kube.api.create(repository("app", f"{ECR}/app", provider="aws",
                                   serviceAccountName="puller"))
        await cluster.wait_for(REPOS, kube.ns, "app", has_ready_reason("FeatureGateDisabled"))
        text = await cluster.scrape()
    for name in ("gotk_token_cache_events_total", "gotk_token_cached_items",
                 "gotk_token_cache_requests_total", "gotk_token_cache_evictions_total"):
        assert f"# HELP {name} " in text
