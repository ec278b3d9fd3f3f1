"""Leases with fencing tokens on a real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from coordination.lease import Leases


async def _lapsed(leases: Leases, name: str, redis: Redis) -> None:
    async with asyncio.timeout(5):
        while await redis.exists(leases.key(name)):  # noqa: ASYNC110 - Redis expires it
            await asyncio.sleep(0.01)


async def test_one_holder_at_a_time_and_tokens_only_grow(redis: Redis, redis_prefix: str) -> None:
    leases = Leases(redis, redis_prefix)
    first = await leases.acquire("chat-1", "replica-a", ttl=10)
    assert first is not None
    assert await leases.acquire("chat-1", "replica-b", ttl=10) is None
    again = await leases.acquire("chat-1", "replica-a", ttl=10)
    assert again == first  # taking one's own lease again keeps its token
    assert await leases.release(first)
    second = await leases.acquire("chat-1", "replica-b", ttl=10)
    assert second is not None
    assert second.token > first.token
    assert await leases.newest_token("chat-1") == second.token
    other = await leases.acquire("chat-2", "replica-a", ttl=10)
    assert other is not None  # names are independent


async def test_a_lapsed_holder_can_neither_renew_nor_release(
    redis: Redis, redis_prefix: str
) -> None:
    leases = Leases(redis, redis_prefix)
    paused = await leases.acquire("chat-1", "replica-a", ttl=0.05)
    assert paused is not None
    await _lapsed(leases, "chat-1", redis)
    taker = await leases.acquire("chat-1", "replica-b", ttl=10)
    assert taker is not None
    assert taker.token > paused.token
    assert not await leases.renew(paused, ttl=10)
    assert not await leases.release(paused)
    assert not await leases.holds(paused)
    assert await leases.holds(taker)
    assert await leases.renew(taker, ttl=10)


async def test_renewing_keeps_a_lease_past_its_first_ttl(redis: Redis, redis_prefix: str) -> None:
    leases = Leases(redis, redis_prefix)
    grant = await leases.acquire("chat-1", "replica-a", ttl=0.3)
    assert grant is not None
    assert await leases.renew(grant, ttl=30)
    assert await redis.pttl(leases.key("chat-1")) > 1000
    assert await leases.acquire("chat-1", "replica-b", ttl=10) is None
