"""Registry faults at the controller level: each object fails clearly, alone, and recovers.

The client-level behaviour is proven in ``tests/registry/test_client_faults.py``; this
proves what the running controller makes of it. Each faulty object reaches its registry
through its own front (its own host, so a host pause is its own), next to healthy objects
on the plain registry and a controller with enough workers for all of them:

* 500, 503, 429 without and with ``Retry-After``, a server that accepts and never answers
  (bounded by the object's ``timeout: 2s``), truncated and non-JSON bodies, a 1 GiB
  chunked body (read only up to the bound), a ``Link`` loop, and a redirect to another
  host (which must not receive the credentials) each put the object at Ready=False
  ``ReadOperationFailed`` with a ``scan failed: …`` message naming the problem;
* the healthy objects never leave Ready=True and handle a reconcile request while the
  faults are active;
* once the fault stops, every faulty object rescans and is Ready with the right count.

Failures are read from the lossless status history (an admin watch on the real API
server), so a failure that is quickly recovered from cannot be missed by polling.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from imagereflector.api import meta
from tests.controllers.harness import has_ready_reason, ready, repository
from tests.controllers.realharness import REPOS, KubeTest, recorded_statuses, start_cluster
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.registry import TEST_CREDS, RegistryProcess
from tests.reliability.support import (
    JSON,
    annotate,
    ready_flipped,
    settled_with,
    status_of,
)

TAGS = ["1.0.0", "1.1.0", "2.0.0"]
TAGS_PATH = "/tags/list"
# The fragment of the Ready message that names each fault; the message also names the
# host the failing request went to.
EXPECTED = {
    "http-500": "UNAVAILABLE: scripted fault",
    "http-503": "UNAVAILABLE: scripted fault",
    "http-429": "TOOMANYREQUESTS: scripted fault",
    "http-429-retry-after": "TOOMANYREQUESTS: scripted fault (registry asks to retry after 1s)",
    "hang": "timed out after 2s",
    "truncated": "Response payload is not completed",
    "not-json": "not JSON",
    "huge": "passed 8388608 bytes; stopped (see --max-tag-bytes-per-scan)",
    "link-loop": "pagination loop",
    "redirect": "UNAUTHORIZED: authentication required",
}
HEALTHY = ["healthy-0", "healthy-1", "healthy-2"]


def dockerconfig_secret(name: str, host: str) -> JSON:
    auth = base64.b64encode(":".join(TEST_CREDS).encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name},
            "data": {".dockerconfigjson": base64.b64encode(config).decode()}}


@asynccontextmanager
async def fronts(registry: RegistryProcess,
                 private: RegistryProcess) -> AsyncIterator[dict[str, FaultFront]]:
    """One scripted front per fault; "redirect" goes to a second host of ``private``."""
    async with AsyncExitStack() as stack:
        made = {name: await stack.enter_async_context(FaultFront(registry))
                for name in EXPECTED if name not in ("link-loop", "redirect")}
        made["redirect"] = await stack.enter_async_context(FaultFront(private))
        made["elsewhere"] = await stack.enter_async_context(
            FaultFront(private, bind="127.0.0.2"))
        made["http-500"].fail_next(6, status=500, path=TAGS_PATH)
        made["http-503"].fail_next(6, status=503, path=TAGS_PATH)
        made["http-429"].fail_next(6, status=429, path=TAGS_PATH)
        made["http-429-retry-after"].fail_next(3, status=429, retry_after="1", path=TAGS_PATH)
        made["hang"].hang_next(1, path=TAGS_PATH)
        made["truncated"].truncate_next(6, path=TAGS_PATH)
        made["not-json"].garbage_next(2, path=TAGS_PATH)
        made["huge"].huge_body_next(1, size=1 << 30, chunked=True, path=TAGS_PATH)
        made["redirect"].redirect_next(2, to=made["elsewhere"], path=TAGS_PATH)
        yield made


async def test_each_registry_fault_fails_alone_and_recovers(
        registry: RegistryProcess, basic_registry: RegistryProcess, kube: KubeTest) -> None:
    registry.write_tags("app", TAGS)
    basic_registry.write_tags("app", TAGS)
    names = [*EXPECTED, *HEALTHY]
    async with fronts(registry, basic_registry) as front, \
            PaginatingFront(registry, default_page_size=1, link_loop=True) as looping, \
            start_cluster(kube, concurrent=len(names)) as cluster, \
            recorded_statuses(kube, REPOS) as log:
        api, ns = cluster.api, cluster.ns
        api.create(dockerconfig_secret("creds", front["redirect"].host))
        for name in EXPECTED:
            image = looping.ref("app") if name == "link-loop" else front[name].ref("app")
            spec: JSON = {"timeout": "2s"} if name == "hang" else {}
            if name == "redirect":
                spec["secretRef"] = {"name": "creds"}
            api.create(repository(name, image, **spec))
        for name in HEALTHY:
            api.create(repository(name, f"{registry.host}/app"))

        # Every faulty object reports its fault; the healthy ones are Ready meanwhile.
        def failed(name: str, _: JSON) -> bool:
            return any(has_ready_reason(meta.READ_OPERATION_FAILED_REASON)(o)
                       for o in log.history(name, ns))
        await cluster.wait_all(REPOS, list(EXPECTED), failed, within=30)
        for name in HEALTHY:
            annotate(api, REPOS, name, "during-faults", ns)
        await cluster.wait_all(REPOS, HEALTHY, lambda _, o: settled_with(
            len(TAGS), "during-faults")(o), within=20)
        looping.link_loop = False

        # Then everything recovers on its own retries.
        await cluster.wait_all(REPOS, names,
                               lambda _, o: settled_with(len(TAGS))(o), within=30)
        await log.sync()
        for name, fragment in EXPECTED.items():
            failures = [ready(o) for o in log.history(name, ns)
                        if has_ready_reason(meta.READ_OPERATION_FAILED_REASON)(o)]
            messages = {f.message for f in failures if f is not None}
            assert messages, name
            host = {"link-loop": looping.host, "redirect": front["elsewhere"].host}.get(
                name, front[name].host if name in front else "")
            assert all(m.startswith("scan failed: ") and fragment in m and host in m
                       for m in messages), (name, messages)
        for name in HEALTHY:
            assert not ready_flipped(log.history(name, ns)), name
        # Bounded: the 1 GiB body was abandoned early, never read whole.
        assert front["huge"].huge_bytes_sent < 1 << 28
        # The other host never saw the credentials meant for the first one.
        assert front["elsewhere"].requests
        assert all(r.authorization is None for r in front["elsewhere"].requests)
        assert all(status_of(api.get(REPOS, ns, n) or {}).get("lastScanResult")
                   for n in names)
