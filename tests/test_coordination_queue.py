"""Questions of a conversation answered in order by whichever process holds it (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from coordination.conversation_queue import IDLE_KEYS_SECONDS, Claim, ConversationQueues


async def _claim(queues: ConversationQueues, holder: str, ttl: float = 10) -> Claim:
    claim = await queues.claim("chat-1", holder, ttl)
    assert claim is not None
    return claim


async def _drain(claim: Claim) -> list[str]:
    answered: list[str] = []
    while True:
        entry = await claim.next()
        if entry is None:
            released = await claim.release()
            assert released is not None, "the claim lapsed"
            if released:
                return answered
            continue
        assert not entry.started
        assert await claim.start(entry)
        answered.append(entry.fields["text"])
        assert await claim.done(entry)


async def test_questions_taken_on_any_process_are_answered_in_order_by_the_holder(
    redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    for number in range(3):
        await queues.enqueue("chat-1", {"text": f"question {number}"})
    holder = await _claim(queues, "replica-a")
    assert await queues.claim("chat-1", "replica-b", 10) is None
    assert await _drain(holder) == ["question 0", "question 1", "question 2"]
    assert await queues.waiting("chat-1") == 0  # done entries are trimmed
    assert await queues.orphaned() == []
    assert await queues.claim("chat-1", "replica-b", 10) is not None  # released


async def test_a_question_enqueued_while_another_holds_the_claim_is_not_stranded(
    redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"text": "first"})
    holder = await _claim(queues, "replica-a")
    entry = await holder.next()
    assert entry is not None
    assert await holder.start(entry)
    # Meanwhile replica B takes the next question and cannot claim the conversation.
    await queues.enqueue("chat-1", {"text": "second"})
    assert await queues.claim("chat-1", "replica-b", 10) is None
    assert await holder.done(entry)
    assert await holder.release() is False  # "second" waits: the holder keeps going
    assert await _drain(holder) == ["second"]


async def test_a_holder_that_died_mid_answer_leaves_it_interrupted_for_the_next(
    redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"text": "cut off"})
    await queues.enqueue("chat-1", {"text": "after"})
    dead = await _claim(queues, "replica-a", ttl=0.05)
    started = await dead.next()
    assert started is not None
    assert await dead.start(started)
    async with asyncio.timeout(5):
        while await queues.orphaned() != ["chat-1"]:  # noqa: ASYNC110 - the lease lapses
            await asyncio.sleep(0.01)
    taker = await _claim(queues, "replica-b")
    resumed = await taker.next()
    assert resumed == started.__class__(started.id, started.fields, started=True)
    # The old holder, paused rather than dead, can no longer move the marks.
    assert not await dead.done(started)
    assert await dead.release() is None
    assert await taker.done(resumed)
    assert await _drain(taker) == ["after"]
    assert taker.token > dead.token


async def test_conversations_are_independent(redis: Redis, redis_prefix: str) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"text": "one"})
    await queues.enqueue("chat-2", {"text": "two"})
    first = await queues.claim("chat-1", "replica-a", 10)
    second = await queues.claim("chat-2", "replica-b", 10)
    assert first is not None
    assert second is not None
    assert await _drain(second) == ["two"]
    assert await _drain(first) == ["one"]


async def test_handing_on_lets_the_next_entrys_owner_claim_it(
    redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"owner": "replica-a"})
    await queues.enqueue("chat-1", {"owner": "replica-b"})
    first = await _claim(queues, "replica-a")
    entry = await first.next()
    assert entry is not None
    assert entry.fields["owner"] == "replica-a"
    assert await first.start(entry)
    assert await first.done(entry)
    assert await first.hand_on() == 1  # replica B's entry waits
    assert await first.hand_on() is None  # handed on already
    second = await _claim(queues, "replica-b")
    mine = await second.next()
    assert mine is not None
    assert mine.fields["owner"] == "replica-b"
    assert await second.done(mine)
    assert await second.hand_on() == 0
    assert await queues.orphaned() == []


async def test_an_idle_conversations_keys_expire_and_a_new_question_keeps_them(
    redis: Redis, redis_prefix: str
) -> None:
    queues = ConversationQueues(redis, redis_prefix)
    await queues.enqueue("chat-1", {"owner": "replica-a"})
    holder = await _claim(queues, "replica-a")
    entry = await holder.next()
    assert entry is not None
    assert await holder.done(entry)
    assert await holder.hand_on() == 0
    stream, state = f"{redis_prefix}queue:chat-1", f"{redis_prefix}queue-state:chat-1"
    day = IDLE_KEYS_SECONDS
    assert day - 5 < await redis.ttl(stream) <= day
    assert day - 5 < await redis.ttl(state) <= day
    await queues.enqueue("chat-1", {"owner": "replica-b"})
    assert (await redis.ttl(stream), await redis.ttl(state)) == (-1, -1)  # kept while it waits
    first = await queues.first_pending("chat-1")
    assert first is not None
    assert first.fields["owner"] == "replica-b"
    assert not first.started
