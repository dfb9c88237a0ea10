"""Leader election on a Lease of the real API server, with a fake clock, then as processes.

The candidates speak to the real kube-apiserver (resourceVersions, 409s on stale writes,
RBAC) as the manifests' ServiceAccount, through the recording proxy, which also injects
what a real server does not do on cue (a 409 or 500 on the next write, a 404 on the next
read, held requests, an outage). Each test has a Lease of its own in the controller's
namespace, where the leader-election Role grants exactly get, create and update. Only
time is faked. Each candidate's client is wrapped in a spy counting calls in flight, which
is how :meth:`Harness.settle` knows every candidate has finished reacting to a clock step
(an elector continues to its next wait in the same task step in which its call returns).
Nothing asserts on elapsed real time; the process test waits by polling the Lease.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imagereflector.kube.client import JSONObject, KubeClient
from imagereflector.kube.leader import (
    LeaderElectionRecord,
    LeaderElector,
    LeadershipLostError,
    default_identity,
    micro_time,
)
from tests.controllers.realharness import KubeTest
from tests.fakes.kubeproxy import Call
from tests.kube.fakeclock import FakeClock

NS = "image-reflector-system"  # the manifests' controller namespace and Role
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
START = 1000.0  # FakeClock's starting time
HANG_GUARD = 20.0  # real seconds; only turns a hang into a failure, never a timing check
REPO_ROOT = Path(__file__).resolve().parents[2]


def stamp(t: float) -> str:
    """The MicroTime a candidate on the test's wall clock writes at fake time ``t``."""
    return micro_time(EPOCH + timedelta(seconds=t))


def parse_micro(text: str) -> float:
    """Fake time of a MicroTime written by :func:`stamp`."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - EPOCH).total_seconds()


class SpyClient:
    """The real KubeClient's Lease calls, counted while in flight, with an update hook."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self.in_flight = 0
        self.calls = 0
        self.called = asyncio.Event()
        """Set by the first call."""
        self.idle = asyncio.Event()
        """Set whenever no call is in flight (in the step in which the last one returned)."""
        self.idle.set()
        self.before_update: Callable[[], None] | None = None

    def _begin(self) -> None:
        self.in_flight += 1
        self.calls += 1
        self.called.set()
        self.idle.clear()

    def _end(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()

    async def get_lease(self, namespace: str, name: str) -> JSONObject:
        self._begin()
        try:
            return await self._client.get_lease(namespace, name)
        finally:
            self._end()

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        self._begin()
        try:
            return await self._client.create_lease(namespace, lease)
        finally:
            self._end()

    async def update_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        self._begin()
        try:
            if self.before_update is not None:
                self.before_update()
            return await self._client.update_lease(namespace, lease)
        finally:
            self._end()


def leads(cand: Candidate) -> bool:
    """``is_leader`` read through a call, so mypy does not narrow it across awaits."""
    return cand.elector.is_leader


@dataclass
class Candidate:
    """One elector with what it reported."""

    elector: LeaderElector
    spy: SpyClient
    changes: list[bool] = field(default_factory=list)
    statuses: list[tuple[str, bool]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class ServerSide:
    """What the tests do to the API server: the admin's direct reads and writes of the
    Lease, and the proxy's records and faults on the candidates' path."""

    def __init__(self, kube: KubeTest) -> None:
        self._kube = kube
        self.proxy = kube.proxy

    def get(self, resource: str, namespace: str, name: str) -> JSONObject | None:
        return self._kube.api.get(resource, namespace, name)

    def create(self, obj: JSONObject) -> JSONObject:
        return self._kube.api.create(obj)

    def update(self, obj: JSONObject) -> JSONObject:
        return self._kube.api.update(obj)

    def patch(self, resource: str, namespace: str, name: str, patch: Any) -> JSONObject:
        return self._kube.api.patch(resource, namespace, name, patch)

    @property
    def requests(self) -> list[Call]:
        """Every request the candidates sent, in arrival order."""
        return self.proxy.calls()

    def calls(self, **filters: Any) -> list[Call]:
        return self.proxy.calls(**filters)

    async def wait_for_calls(self, count: int, **filters: Any) -> list[Call]:
        return await self.proxy.wait_for_calls(count, **filters)

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1) -> None:
        self.proxy.fail_next(method, path_regex, status, count)

    def pause(self) -> None:
        self.proxy.pause()

    def resume(self) -> None:
        self.proxy.resume()

    async def go_down(self) -> None:
        await self.proxy.go_down()

    async def come_up(self) -> None:
        await self.proxy.come_up()


class Harness:
    """The API server side, one fake clock shared by every candidate, and their run tasks."""

    def __init__(self, kube: KubeTest, client: KubeClient) -> None:
        self.api = ServerSide(kube)
        self.client = client
        self.clock = FakeClock(START)
        self.candidates: list[Candidate] = []
        # A Lease of this test's own: the namespace is shared by the session's tests.
        self.name = f"leader-{kube.run_id}"
        kube.on_teardown(lambda: kube.api.delete("leases", NS, self.name))

    def candidate(
        self,
        identity: str,
        *,
        wall_offset: float = 0.0,
        **options: Any,
    ) -> Candidate:
        spy = SpyClient(self.client)
        changes: list[bool] = []
        statuses: list[tuple[str, bool]] = []

        def wall() -> datetime:
            return EPOCH + timedelta(seconds=self.clock.now() + wall_offset)

        elector = LeaderElector(
            spy,
            namespace=NS,
            name=self.name,
            identity=identity,
            clock=self.clock,
            wall_clock=wall,
            on_change=changes.append,
            report_status=lambda name, leading: statuses.append((name, leading)),
            **options,
        )
        cand = Candidate(elector, spy, changes, statuses)
        self.candidates.append(cand)
        return cand

    async def start(self, cand: Candidate) -> None:
        """Run the candidate and let its first attempt finish."""
        cand.task = asyncio.create_task(
            cand.elector.run(cand.stop), name=f"test-elector {cand.elector.identity}"
        )
        # run() starts its campaign in a task of its own: wait for its first call.
        async with asyncio.timeout(HANG_GUARD):
            await cand.spy.called.wait()
        await self.settle()

    async def settle(self) -> None:
        """Wait until every candidate has finished reacting to the last clock step."""
        async with asyncio.timeout(HANG_GUARD):
            # Timers fired by advance() resume their tasks first; they start their calls.
            await asyncio.sleep(0)
            # A candidate's next call may start in the step its last one returned: re-check.
            while busy := [c for c in self.candidates if c.spy.in_flight]:
                await busy[0].spy.idle.wait()

    async def advance(self, seconds: float, *, step: float = 1.0) -> None:
        """Move fake time in steps, letting every candidate react after each."""
        remaining = seconds
        while remaining > 1e-9:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            await self.settle()

    async def advance_until(
        self, condition: Callable[[], bool], *, limit: float, step: float = 1.0
    ) -> float:
        """Step fake time until ``condition`` holds (at most ``limit`` seconds); return when."""
        waited = 0.0
        while not condition():
            assert waited < limit, f"condition not met within {limit} fake seconds"
            await self.advance(step)
            waited += step
        return self.clock.now()

    def spec(self) -> JSONObject:
        lease = self.api.get("leases", NS, self.name)
        assert lease is not None
        spec: JSONObject = lease["spec"]
        return spec

    async def close(self) -> None:
        tasks = [c.task for c in self.candidates if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def harness(
    kube: KubeTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    client = await KubeClient.connect(
        kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")), request_timeout=10.0
    )
    h = Harness(kube, client)
    try:
        yield h
    finally:
        await h.close()
        await client.close()


# -- one attempt at a time ----------------------------------------------------------------------


async def test_first_candidate_creates_the_lease(harness: Harness) -> None:
    a = harness.candidate("a")
    assert await a.elector.try_acquire_or_renew()
    assert harness.spec() == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 35,
        "acquireTime": stamp(START),
        "renewTime": stamp(START),
        "leaseTransitions": 0,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp(START))
    assert [c.verb for c in harness.api.calls(resource="leases")] == ["get", "create"]
    lease = harness.api.get("leases", NS, harness.name)
    assert lease is not None
    assert (lease["apiVersion"], lease["kind"]) == ("coordination.k8s.io/v1", "Lease")


async def test_second_candidate_waits_then_takes_over_an_expired_lease(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    assert await a.elector.try_acquire_or_renew()
    assert not await b.elector.try_acquire_or_renew()
    assert b.elector.get_leader() == "a"
    harness.clock.advance(34.5)
    assert not await b.elector.try_acquire_or_renew()
    harness.clock.advance(0.5)  # 35 s since b saw the record last change
    assert await b.elector.try_acquire_or_renew()
    assert harness.spec() == {
        "holderIdentity": "b",
        "leaseDurationSeconds": 35,
        "acquireTime": stamp(START + 35),
        "renewTime": stamp(START + 35),
        "leaseTransitions": 1,
    }
    # The old leader's blind update is refused (stale resourceVersion); it then reads b.
    assert not await a.elector.try_acquire_or_renew()
    assert a.elector.get_leader() == "b"
    assert harness.spec()["holderIdentity"] == "b"


async def test_expiry_counts_from_local_observation_not_record_timestamps(
    harness: Harness,
) -> None:
    # a's node clock is a year behind: its renewTime looks long expired to b's wall clock.
    a = harness.candidate("a", wall_offset=-365 * 86400.0)
    b = harness.candidate("b")
    assert await a.elector.try_acquire_or_renew()
    assert not await b.elector.try_acquire_or_renew()
    harness.clock.advance(20)
    assert await a.elector.try_acquire_or_renew()  # renewed: the record changes
    harness.clock.advance(10)
    assert not await b.elector.try_acquire_or_renew()  # b sees the change now, at +30
    harness.clock.advance(34)
    assert not await b.elector.try_acquire_or_renew()  # 34 s after b saw it change
    harness.clock.advance(1)
    assert await b.elector.try_acquire_or_renew()
    assert harness.spec()["leaseTransitions"] == 1


async def test_leader_renews_without_reading_and_keeps_acquire_time(harness: Harness) -> None:
    a = harness.candidate("a")
    assert await a.elector.try_acquire_or_renew()
    before = len(harness.api.requests)
    harness.clock.advance(5)
    assert await a.elector.try_acquire_or_renew()
    assert [c.verb for c in harness.api.requests[before:]] == ["update"]
    assert harness.spec() == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 35,
        "acquireTime": stamp(START),
        "renewTime": stamp(START + 5),
        "leaseTransitions": 0,
    }


async def test_injected_conflict_on_renew_falls_back_to_a_read(harness: Harness) -> None:
    a = harness.candidate("a")
    assert await a.elector.try_acquire_or_renew()
    harness.api.fail_next("PUT", "/leases/", 409)
    before = len(harness.api.requests)
    assert await a.elector.try_acquire_or_renew()
    assert [c.verb for c in harness.api.requests[before:]] == ["update", "get", "update"]
    # Both writes refused: this attempt fails, but the Lease is still a's to renew.
    harness.api.fail_next("PUT", "/leases/", 409, count=2)
    assert not await a.elector.try_acquire_or_renew()
    assert a.elector.get_leader() == "a"
    assert await a.elector.try_acquire_or_renew()
    assert harness.spec()["leaseTransitions"] == 0


async def test_racing_takeover_loses_on_a_real_conflict(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    assert await a.elector.try_acquire_or_renew()
    assert not await b.elector.try_acquire_or_renew()
    harness.clock.advance(35)

    def someone_writes_first() -> None:
        # Another writer changes the object between b's read and b's write.
        harness.api.patch("leases", NS, harness.name,
                          {"metadata": {"labels": {"touched": "yes"}}})

    b.spy.before_update = someone_writes_first
    assert not await b.elector.try_acquire_or_renew()
    assert harness.spec()["holderIdentity"] == "a"
    b.spy.before_update = None
    # Only metadata changed, so the record (and b's observation time) did not.
    assert await b.elector.try_acquire_or_renew()
    assert harness.spec()["holderIdentity"] == "b"
    assert harness.spec()["leaseTransitions"] == 1


async def test_create_race_is_not_leadership(harness: Harness) -> None:
    b = harness.candidate("b")

    def created_meanwhile() -> None:
        harness.api.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": harness.name, "namespace": NS},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 35},
            }
        )

    # The GET finds nothing; the Lease appears before b's create arrives.
    harness.api.fail_next("GET", "/leases/", 404)
    created_meanwhile()
    assert not await b.elector.try_acquire_or_renew()
    assert harness.spec()["holderIdentity"] == "a"
    assert not await b.elector.try_acquire_or_renew()  # now read: a's, unexpired


def test_record_reads_missing_fields_as_zero_values() -> None:
    record = LeaderElectionRecord.from_spec({"holderIdentity": "x", "leaseTransitions": "2"})
    assert record == LeaderElectionRecord("x", 0, None, None, 0)
    assert LeaderElectionRecord.from_spec(None) == LeaderElectionRecord("", 0, None, None, 0)


# -- the run loop -------------------------------------------------------------------------------


async def test_leader_runs_renews_and_standby_waits(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    assert await a.elector.wait_leading()
    assert leads(a)
    assert a.changes == [True]
    assert a.statuses == [(harness.name, False), (harness.name, True)]
    await harness.start(b)
    assert not leads(b)
    assert b.statuses == [(harness.name, False)]
    await harness.advance(60)
    assert leads(a)
    assert not leads(b)
    assert harness.spec() == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 35,
        "acquireTime": stamp(START),
        "renewTime": stamp(START + 60),  # every retry period, without jitter
        "leaseTransitions": 0,
    }


async def test_standby_takes_over_when_the_leader_task_dies(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    await harness.start(b)
    await harness.advance(10)
    assert a.task is not None
    a.task.cancel()  # like a crash: no release
    with pytest.raises(asyncio.CancelledError):
        await a.task
    assert not leads(a)
    assert harness.spec()["holderIdentity"] == "a"
    last_renew = parse_micro(harness.spec()["renewTime"])
    await harness.advance_until(lambda: b.elector.is_leader, limit=60)
    spec = harness.spec()
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    # b cannot have seen a's last renewal before it was written.
    assert parse_micro(spec["acquireTime"]) >= last_renew + 35
    assert b.changes == [True]


async def test_refused_renewals_lose_leadership_at_the_deadline(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    await harness.start(b)
    # The API refuses every write of a's from now on (one fault queued per request).
    a.spy.before_update = lambda: harness.api.fail_next("PUT", "/leases/", 500)
    await harness.advance(29)
    assert leads(a)
    assert a.changes == [True]
    await harness.advance(1)  # 30 s since the last renewal began
    assert not leads(a)
    assert a.changes == [True, False]
    assert a.statuses[-1] == (harness.name, False)
    assert a.task is not None
    with pytest.raises(LeadershipLostError, match="leader election lost"):
        await a.task
    assert not await a.elector.wait_leading()
    # Its release was refused too, so b waits out the lease from its own observation.
    assert harness.spec()["holderIdentity"] == "a"
    when = await harness.advance_until(lambda: b.elector.is_leader, limit=30)
    assert when >= START + 35
    assert harness.spec()["leaseTransitions"] == 1


async def test_another_holder_in_the_lease_ends_leadership_at_once(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.start(a)
    lease = harness.api.get("leases", NS, harness.name)
    assert lease is not None
    lease["spec"]["holderIdentity"] = "intruder"
    harness.api.update(lease)
    await harness.advance(5)  # the first renewal sees it: no waiting for the deadline
    assert a.changes == [True, False]
    assert a.task is not None
    with pytest.raises(LeadershipLostError, match="held by intruder"):
        await a.task
    assert harness.spec()["holderIdentity"] == "intruder"  # not released: not a's


@pytest.mark.parametrize("ending", ["release-times-out", "stop-during-release"])
async def test_renew_deadline_cuts_a_hanging_request(harness: Harness, ending: str) -> None:
    a = harness.candidate("a")
    await harness.start(a)
    harness.api.pause()
    try:
        updates = len(harness.api.calls(verb="update"))
        harness.clock.advance(5)
        await harness.api.wait_for_calls(updates + 1, verb="update")  # held by the server
        assert leads(a)
        harness.clock.advance(25)  # the deadline cancels the held renewal
        await harness.api.wait_for_calls(updates + 2, verb="update")  # the release, held too
        assert a.changes == [True, False]
        if ending == "release-times-out":
            harness.clock.advance(5)  # the release is bounded as well
        else:
            a.stop.set()  # a stop during the release does not hide the loss
        assert a.task is not None
        with pytest.raises(LeadershipLostError, match="timed out"):
            await a.task
    finally:
        harness.api.resume()


async def test_release_on_stop_hands_over_at_the_next_retry(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    await harness.start(b)
    await harness.advance(7)
    a.stop.set()
    assert a.task is not None
    await a.task  # a stop is not an error
    assert a.changes == [True, False]
    assert a.statuses[-1] == (harness.name, False)
    spec = harness.spec()
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("", 1)
    assert spec["leaseTransitions"] == 0
    # At b's next retry, well inside the 35 s a crashed leader would cost.
    when = await harness.advance_until(lambda: b.elector.is_leader, limit=12)
    assert when < START + 7 + 35
    assert harness.spec()["holderIdentity"] == "b"
    assert harness.spec()["leaseTransitions"] == 1


async def test_stop_without_release_keeps_the_lease(harness: Harness) -> None:
    a = harness.candidate("a", release_on_cancel=False)
    await harness.start(a)
    a.stop.set()
    assert a.task is not None
    await a.task
    assert a.changes == [True, False]
    assert harness.spec()["holderIdentity"] == "a"


async def test_stop_before_leading(harness: Harness) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    await harness.start(b)
    waiter = asyncio.create_task(b.elector.wait_leading(), name="test-wait-leading")
    b.stop.set()
    assert b.task is not None
    await b.task
    assert await waiter is False
    assert b.changes == []
    assert harness.spec()["holderIdentity"] == "a"  # a standby releases nothing
    with pytest.raises(RuntimeError, match="only once"):
        await b.elector.run(b.stop)


async def test_api_down_then_up_within_the_deadline_keeps_leadership(harness: Harness) -> None:
    a = harness.candidate("a")
    await harness.start(a)
    await harness.api.go_down()
    await harness.advance(20)
    assert leads(a)
    await harness.api.come_up()
    await harness.advance(5)
    assert a.changes == [True]
    assert harness.spec() == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 35,
        "acquireTime": stamp(START),
        "renewTime": stamp(START + 25),
        "leaseTransitions": 0,
    }


async def test_api_down_longer_than_the_deadline_loses_then_standby_leads(
    harness: Harness,
) -> None:
    a, b = harness.candidate("a"), harness.candidate("b")
    await harness.start(a)
    await harness.start(b)
    await harness.api.go_down()
    await harness.advance(30)
    assert a.changes == [True, False]
    assert a.task is not None
    with pytest.raises(LeadershipLostError):
        await a.task
    await harness.api.come_up()
    when = await harness.advance_until(lambda: b.elector.is_leader, limit=30)
    assert when >= START + 35
    assert harness.spec()["holderIdentity"] == "b"


async def test_candidate_campaigns_through_an_outage(harness: Harness) -> None:
    await harness.api.go_down()
    a = harness.candidate("a")
    await harness.start(a)
    await harness.advance(30)
    assert not leads(a)
    await harness.api.come_up()
    await harness.advance_until(lambda: a.elector.is_leader, limit=12)
    assert harness.spec()["leaseTransitions"] == 0


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_duration": 30.0, "renew_deadline": 30.0}, "leaseDuration must be greater"),
        ({"renew_deadline": 6.0, "retry_period": 5.0}, "retryPeriod\\*JitterFactor"),
        ({"retry_period": 0.0}, "retryPeriod must be greater than zero"),
        (
            {"lease_duration": 0.9, "renew_deadline": 0.5, "retry_period": 0.1},
            "at least one second",
        ),
        ({"identity": ""}, "identity"),
    ],
    ids=[
        "lease-not-above-renew",
        "renew-not-above-jittered-retry",
        "zero-retry",
        "sub-second-lease",
        "no-identity",
    ],
)
def test_invalid_timings_are_refused(options: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"identity": "a", **options}
    with pytest.raises(ValueError, match=message):
        LeaderElector(SpyClient.__new__(SpyClient), namespace=NS, name="leader", **kwargs)


def test_default_identity_is_hostname_and_a_fresh_uuid() -> None:
    first, second = default_identity(), default_identity()
    host = socket.gethostname()
    assert first.startswith(f"{host}_")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", first[len(host) + 1 :]
    )
    assert first != second


# -- two processes ------------------------------------------------------------------------------


async def _spawn(kubeconfig: Path, identity: str, lease: str) -> asyncio.subprocess.Process:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.kube.leader_child",
        str(kubeconfig),
        identity,
        NS,
        lease,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _holder_becomes(kube: KubeTest, lease_name: str, identity: str) -> JSONObject:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            lease = await kube.api.aget("leases", NS, lease_name)
            if lease is not None and lease["spec"].get("holderIdentity") == identity:
                spec: JSONObject = lease["spec"]
                return spec
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_standby_process_takes_over_from_a_killed_leader(kube: KubeTest) -> None:
    # Straight to the API server over https as the manifests' ServiceAccount.
    kubeconfig = kube.installed.controller_kubeconfig
    lease = f"leader-child-{kube.run_id}"
    kube.on_teardown(lambda: kube.api.delete("leases", NS, lease))
    first = await _spawn(kubeconfig, "first", lease)
    second: asyncio.subprocess.Process | None = None
    try:
        await _holder_becomes(kube, lease, "first")
        second = await _spawn(kubeconfig, "second", lease)
        assert first.stdout is not None
        assert second.stdout is not None
        assert await first.stdout.readline() == b"leading\n"
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        spec = await _holder_becomes(kube, lease, "second")
        assert spec["leaseTransitions"] == 1
        assert await second.stdout.readline() == b"leading\n"
        # A graceful stop releases the Lease for whoever comes next.
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
        released = await _holder_becomes(kube, lease, "")
        assert released["leaseDurationSeconds"] == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
