"""The client-go workqueue invariants, one test each, on a fake clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagereflector.kube.ratelimit import ItemExponentialFailureRateLimiter
from imagereflector.kube.workqueue import (
    SHUT_DOWN,
    DelayingQueue,
    Queue,
    RateLimitingQueue,
    ShutDown,
    UnfinishedWork,
)
from tests.kube.fakeclock import FakeClock


async def settle() -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


async def get_item(queue: Queue[str]) -> str:
    item = await queue.get()
    assert not isinstance(item, ShutDown)
    return item


# --- Queue -------------------------------------------------------------------------------


async def test_fifo_among_distinct_items() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    for key in ["c", "a", "b"]:
        queue.add(key)
    assert [await get_item(queue) for _ in range(3)] == ["c", "a", "b"]


async def test_duplicates_collapse_before_processing() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    for key in ["a", "b", "a", "a", "b"]:
        queue.add(key)
    assert len(queue) == 2
    assert [await get_item(queue), await get_item(queue)] == ["a", "b"]
    assert len(queue) == 0


async def test_len_is_the_number_of_items_ready() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    assert len(queue) == 0
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    await get_item(queue)
    assert len(queue) == 1


async def test_item_being_processed_is_not_handed_to_another_worker() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    assert await get_item(queue) == "a"
    queue.add("a")
    second_worker = asyncio.create_task(queue.get(), name="second-worker")
    await settle()
    assert not second_worker.done()
    assert len(queue) == 0
    queue.done("a")
    assert await second_worker == "a"


async def test_item_added_while_processing_is_requeued_on_done() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    queue.add("b")
    assert await get_item(queue) == "a"
    queue.add("a")
    queue.add("a")
    queue.done("a")
    # "a" goes behind "b", once.
    assert [await get_item(queue), await get_item(queue)] == ["b", "a"]
    assert len(queue) == 0


async def test_done_without_new_add_does_not_requeue() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    await get_item(queue)
    queue.done("a")
    assert len(queue) == 0


async def test_second_done_cannot_duplicate_an_item() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    await get_item(queue)
    queue.add("a")
    queue.done("a")
    queue.done("a")
    assert len(queue) == 1


async def test_get_waits_and_wakes_on_add() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    worker = asyncio.create_task(queue.get(), name="worker")
    await settle()
    assert not worker.done()
    queue.add("a")
    assert await worker == "a"


async def test_cancelled_woken_getter_passes_the_item_on() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    first = asyncio.create_task(queue.get(), name="first")
    second = asyncio.create_task(queue.get(), name="second")
    await settle()
    queue.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    await settle()
    assert first.cancelled()
    assert await second == "a"


async def test_many_workers_never_hold_one_item_twice() -> None:
    queue: Queue[int] = Queue(clock=FakeClock())
    held: set[int] = set()
    overlaps: list[int] = []
    processed: list[int] = []
    rng = random.Random(7)

    async def worker() -> None:
        while (item := await queue.get()) is not SHUT_DOWN:
            assert not isinstance(item, ShutDown)
            if item in held:
                overlaps.append(item)
            held.add(item)
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
                queue.add(rng.randrange(5))  # re-adds while items are being processed
            held.discard(item)
            processed.append(item)
            queue.done(item)

    async with asyncio.TaskGroup() as group:
        for index in range(4):
            group.create_task(worker(), name=f"worker-{index}")
        for item in range(5):
            queue.add(item)
        await settle()
        await settle()
        await queue.shut_down_with_drain()
        queue.shut_down()
    assert overlaps == []
    assert set(processed) == set(range(5))


async def test_shut_down_hands_out_remaining_items_then_signals() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    queue.shut_down()
    queue.add("b")  # ignored while shutting down
    assert queue.shutting_down
    assert await queue.get() == "a"
    assert await queue.get() is SHUT_DOWN


async def test_shut_down_releases_blocked_getters() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    workers = [asyncio.create_task(queue.get(), name=f"w{i}") for i in range(3)]
    await settle()
    queue.shut_down()
    assert await asyncio.gather(*workers) == [SHUT_DOWN] * 3


async def test_shut_down_with_drain_waits_for_in_flight_items() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    queue.add("b")
    await get_item(queue)
    await get_item(queue)
    drain = asyncio.create_task(queue.shut_down_with_drain(), name="drain")
    await settle()
    assert not drain.done()
    queue.done("a")
    await settle()
    assert not drain.done()
    queue.done("b")
    await drain
    assert await queue.get() is SHUT_DOWN


async def test_shut_down_ends_a_pending_drain() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    queue.add("a")
    await get_item(queue)
    drain = asyncio.create_task(queue.shut_down_with_drain(), name="drain")
    await settle()
    assert not drain.done()
    queue.shut_down()
    await drain


async def test_shut_down_with_drain_returns_at_once_when_idle() -> None:
    queue: Queue[str] = Queue(clock=FakeClock())
    await queue.shut_down_with_drain()
    assert await queue.get() is SHUT_DOWN


# --- DelayingQueue -----------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, -1.0], ids=["zero", "negative"])
async def test_add_after_non_positive_delay_adds_at_once(delay: float) -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("a", delay)
    assert len(queue) == 1
    assert clock.pending() == 0


async def test_add_after_makes_item_ready_after_delay() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    worker = asyncio.create_task(queue.get(), name="worker")
    queue.add_after("a", 5.0)
    clock.advance(4.999)
    await settle()
    assert not worker.done()
    assert queue.waiting() == 1
    clock.advance(0.001)
    assert await worker == "a"
    assert queue.waiting() == 0


async def test_earlier_add_after_wins_over_a_later_one() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("a", 5.0)
    queue.add_after("a", 10.0)
    clock.advance(5.0)
    assert len(queue) == 1
    await get_item(queue)
    queue.done("a")
    clock.advance(10.0)
    assert len(queue) == 0  # the later request did not leave a second entry behind


async def test_later_add_after_moves_item_earlier() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("a", 10.0)
    queue.add_after("a", 2.0)
    clock.advance(2.0)
    assert len(queue) == 1
    await get_item(queue)
    queue.done("a")
    clock.advance(10.0)
    assert len(queue) == 0
    assert queue.waiting() == 0


async def test_delayed_items_become_ready_in_time_order() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("late", 3.0)
    queue.add_after("early", 1.0)
    queue.add_after("tie-1", 2.0)
    queue.add_after("tie-2", 2.0)
    clock.advance(3.0)
    assert [await get_item(queue) for _ in range(4)] == ["early", "tie-1", "tie-2", "late"]


async def test_add_after_while_processing_requeues_after_done() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add("a")
    await get_item(queue)
    queue.add_after("a", 1.0)  # a periodic requeue decided by the worker holding "a"
    clock.advance(1.0)
    assert len(queue) == 0
    queue.done("a")
    assert await get_item(queue) == "a"


async def test_shut_down_drops_pending_delays() -> None:
    clock = FakeClock()
    queue: DelayingQueue[str] = DelayingQueue(clock=clock)
    queue.add_after("a", 1.0)
    queue.shut_down()
    queue.add_after("b", 1.0)
    clock.advance(2.0)
    assert queue.waiting() == 0
    assert clock.pending() == 0
    assert await queue.get() is SHUT_DOWN


# --- RateLimitingQueue -------------------------------------------------------------------


async def test_add_rate_limited_uses_the_limiter_delay_and_forget_resets() -> None:
    clock = FakeClock()
    queue: RateLimitingQueue[str] = RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(0.75, 900.0), clock=clock
    )
    queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 1
    clock.advance(0.74)
    assert len(queue) == 0
    clock.advance(0.01)
    assert len(queue) == 1
    await get_item(queue)
    queue.done("a")

    queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 2
    clock.advance(1.49)
    assert len(queue) == 0
    clock.advance(0.01)
    assert len(queue) == 1
    await get_item(queue)
    queue.done("a")

    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    clock.advance(0.75)
    assert len(queue) == 1


# --- metrics hooks -----------------------------------------------------------------------


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.probe: Callable[[], UnfinishedWork] | None = None

    def add(self, *, depth: int) -> None:
        self.events.append(("add", depth))

    def get(self, *, depth: int, queue_latency: float) -> None:
        self.events.append(("depth", depth))
        self.events.append(("latency", queue_latency))

    def done(self, *, work_duration: float) -> None:
        self.events.append(("work", work_duration))

    def retry(self) -> None:
        self.events.append(("retry", 1))

    def track_unfinished(self, probe: Callable[[], UnfinishedWork]) -> None:
        self.probe = probe


async def test_metrics_hooks_receive_depth_latency_and_work_duration() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: RateLimitingQueue[str] = RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(1.0, 10.0), clock=clock, metrics=metrics
    )
    queue.add("a")
    queue.add("b")
    queue.add("a")  # deduplicated: not an add
    clock.advance(2.0)
    await get_item(queue)
    clock.advance(3.0)
    queue.done("a")
    queue.add_after("c", 0)
    assert metrics.events == [
        ("add", 1),
        ("add", 2),
        ("depth", 1),
        ("latency", 2.0),
        ("work", 3.0),
        ("retry", 1),
        ("add", 2),
    ]


async def test_unfinished_work_is_reported_on_demand() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: Queue[str] = Queue(clock=clock, metrics=metrics)
    assert metrics.probe is not None
    assert metrics.probe() == UnfinishedWork(total_seconds=0.0, longest_seconds=0.0)
    queue.add("a")
    queue.add("b")
    await get_item(queue)
    clock.advance(4.0)
    await get_item(queue)
    clock.advance(1.0)
    assert metrics.probe() == UnfinishedWork(total_seconds=6.0, longest_seconds=5.0)
    queue.done("a")
    assert metrics.probe() == UnfinishedWork(total_seconds=1.0, longest_seconds=1.0)


# --- a model check over random operation sequences ---------------------------------------

operations = st.lists(
    st.tuples(st.sampled_from(["add", "get", "done"]), st.integers(min_value=0, max_value=3)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_queue_matches_the_dirty_processing_model(ops: list[tuple[str, int]]) -> None:
    """Against a reference model: FIFO of dirty items not in processing, no duplicates."""

    async def run() -> None:
        queue: Queue[int] = Queue(clock=FakeClock())
        fifo: list[int] = []
        dirty: set[int] = set()
        processing: set[int] = set()
        for op, item in ops:
            if op == "add":
                queue.add(item)
                if item not in dirty:
                    dirty.add(item)
                    if item not in processing:
                        fifo.append(item)
            elif op == "get" and fifo:
                got = await queue.get()
                expected = fifo.pop(0)
                assert got == expected
                assert expected not in processing
                processing.add(expected)
                dirty.discard(expected)
            elif op == "done":
                queue.done(item)
                if item in processing:
                    processing.discard(item)
                    if item in dirty:
                        fifo.append(item)
            assert len(queue) == len(fifo) == len(set(fifo))

    asyncio.run(run())


async def test_default_clock_is_the_running_loop() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(0.001, 0.001)
    )
    queue.add_rate_limited("a")
    queue.add_after("b", 0.002)
    assert len(queue) == 0  # both wait on loop timers
    assert [await get_item(queue), await get_item(queue)] == ["a", "b"]
