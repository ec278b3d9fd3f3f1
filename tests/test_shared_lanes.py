"""Answers one at a time per conversation across processes (shared lanes on a real Redis):
order, /stop from another process, a process killed mid-answer, a clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from bot.service.lanes import interrupted
from bot.service.shared_lanes import SharedLanes
from coordination.conversation_queue import ConversationQueues, Entry
from coordination.replicas import Replicas, new_replica_id
from coordination.signals import Signals

LEASE = 1.0


@pytest.fixture
async def replica(redis: Redis, redis_prefix: str) -> AsyncIterator[Callable[..., SharedLanes]]:
    """Builds lanes, one per simulated process, all on one Redis; ``taken_over`` collects
    what that process takes over from dead ones."""
    async with AsyncExitStack() as stack:

        def build(taken_over: list[Entry] | None = None) -> SharedLanes:
            async def takeover(conversation: str, entry: Entry) -> None:
                if taken_over is None:
                    raise AssertionError(f"unexpected takeover of {entry}")
                taken_over.append(entry)

            lanes = SharedLanes(
                queues=ConversationQueues(redis, redis_prefix),
                signals=Signals(redis, redis_prefix),
                replicas=Replicas(redis, redis_prefix),
                replica_id=new_replica_id(),
                takeover=takeover,
                lease_seconds=LEASE,
                poll_seconds=0.05,
            )
            stack.push_async_callback(lanes.aclose)
            return lanes

        yield build


async def test_questions_taken_on_two_processes_are_answered_in_order_one_at_a_time(
    replica: Callable[..., SharedLanes],
) -> None:
    first, second = replica(), replica()
    await first.start()
    await second.start()
    order: list[str] = []
    release_first = asyncio.Event()
    done = asyncio.Event()

    async def answer_one() -> None:
        order.append("one starts")
        await release_first.wait()
        order.append("one ends")

    async def answer_two() -> None:
        order.append("two starts")
        done.set()

    assert await first.submit("chat-1", answer_one) == 0
    assert await second.submit("chat-1", answer_two) == 1  # one question ahead, elsewhere
    async with asyncio.timeout(5):
        while order != ["one starts"]:  # noqa: ASYNC110 - the first answer begins
            await asyncio.sleep(0.01)
    # A sentinel in another conversation runs at once on the second process, proving it works
    # while "two" waits its turn.
    sentinel = asyncio.Event()

    async def other_chat() -> None:
        sentinel.set()

    await second.submit("chat-2", other_chat)
    async with asyncio.timeout(5):
        await sentinel.wait()
    assert order == ["one starts"]
    release_first.set()
    async with asyncio.timeout(5):
        await done.wait()
    assert order == ["one starts", "one ends", "two starts"]


async def test_stop_on_one_process_stops_the_answer_streaming_on_another(
    replica: Callable[..., SharedLanes], redis: Redis, redis_prefix: str
) -> None:
    streaming, taking_stop = replica(), replica()
    await streaming.start()
    await taking_stop.start()
    began = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_answer() -> None:
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await streaming.submit("chat-1", long_answer)
    async with asyncio.timeout(5):
        await began.wait()
    assert await taking_stop.cancel_current("chat-1")
    async with asyncio.timeout(1):  # within a second, as a user expects of /stop
        await cancelled.wait()
    queues = ConversationQueues(redis, redis_prefix)
    async with asyncio.timeout(5):
        while await queues.first_pending("chat-1") is not None:  # noqa: ASYNC110 - marked done
            await asyncio.sleep(0.01)
    assert not await taking_stop.cancel_current("chat-1")  # nothing left to stop
    assert not await taking_stop.cancel_current("chat-9")


async def test_a_process_killed_mid_answer_is_taken_over_and_the_chat_goes_on(
    replica: Callable[..., SharedLanes], redis_prefix: str
) -> None:
    url = os.environ["TEST_REDIS_URL"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.lane_replica",
        url,
        redis_prefix,
        "chat-1",
        str(LEASE),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            assert (await process.stdout.readline()).strip() == b"answering"
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    taken_over: list[Entry] = []
    survivor = replica(taken_over)
    await survivor.start()
    answered = asyncio.Event()

    async def next_question() -> None:
        answered.set()

    assert await survivor.submit("chat-1", next_question) == 1  # the dead one's is ahead
    async with asyncio.timeout(LEASE * 5):
        await answered.wait()
    assert len(taken_over) == 1
    assert taken_over[0].started  # its answer was cut off: the user is told so
    assert taken_over[0].fields["text"] == "cut off"


async def test_the_sweeper_takes_over_without_a_new_question(
    replica: Callable[..., SharedLanes], redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"owner": "a-process-long-gone", "text": "lost"})
    taken_over: list[Entry] = []
    sweeper = replica(taken_over)
    assert await sweeper.sweep() == 1
    assert [entry.fields["text"] for entry in taken_over] == ["lost"]
    assert not taken_over[0].started  # never started: the front end answers or apologises
    assert await queues.orphaned() == []


async def test_a_clean_shutdown_passes_its_waiting_questions_on(
    replica: Callable[..., SharedLanes],
) -> None:
    leaving, staying = replica(), replica()
    await leaving.start()
    await staying.start()
    began = asyncio.Event()
    dropped: list[str] = []
    answered = asyncio.Event()

    async def running() -> None:
        began.set()
        await asyncio.Event().wait()

    async def never() -> None:
        raise AssertionError("a dropped question is not answered")

    async def on_drop() -> None:
        dropped.append("told the user")

    async def after() -> None:
        answered.set()

    await leaving.submit("chat-1", running)
    await leaving.submit("chat-1", never, on_drop=on_drop)
    await staying.submit("chat-1", after)
    async with asyncio.timeout(5):
        await began.wait()
    await leaving.shutdown(grace=0)
    async with asyncio.timeout(LEASE / 2):  # not after the leaving process's heartbeat lapses
        await answered.wait()
    assert dropped == ["told the user"]


async def test_an_answer_whose_lease_is_lost_is_interrupted_not_stopped(
    replica: Callable[..., SharedLanes], redis: Redis, redis_prefix: str
) -> None:
    paused = replica()
    await paused.start()
    began = asyncio.Event()
    reasons: list[bool] = []

    async def answer() -> None:
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            reasons.append(interrupted(exc))
            raise

    await paused.submit("chat-1", answer)
    async with asyncio.timeout(5):
        await began.wait()
    # As when this process was paused past its lease and another one took the conversation.
    await redis.delete(f"{redis_prefix}lease:chat-1")
    async with asyncio.timeout(LEASE * 2):
        while not reasons:  # noqa: ASYNC110 - the keeper renews every third of a lease
            await asyncio.sleep(0.02)
    assert reasons == [True]
