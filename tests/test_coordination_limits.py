"""Quota reservations and rate windows shared by every process (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from coordination.limits import SharedLimits


async def test_reservations_from_every_process_count_against_one_quota(
    redis: Redis, redis_prefix: str
) -> None:
    replica_a = SharedLimits(redis, redis_prefix)
    replica_b = SharedLimits(redis, redis_prefix)
    first = await replica_a.reserve(7, 400, used=500, quota=1000, ttl=60)
    assert first is not None
    # 500 used + 400 reserved < 1000: one more question may start, and overshoot by one.
    second = await replica_b.reserve(7, 400, used=500, quota=1000, ttl=60)
    assert second is not None
    assert await replica_a.reserved(7) == 800
    assert await replica_b.reserve(7, 400, used=500, quota=1000, ttl=60) is None
    await replica_a.release(first)
    assert await replica_b.reserved(7) == 400
    assert await replica_b.reserve(8, 400, used=0, quota=1000, ttl=60) is not None  # per user


async def test_many_processes_admitting_at_once_overshoot_by_at_most_one(
    redis: Redis, redis_prefix: str
) -> None:
    replicas = [SharedLimits(redis, redis_prefix) for _ in range(3)]
    attempts = [
        replicas[number % 3].reserve(7, 100, used=0, quota=450, ttl=60) for number in range(30)
    ]
    granted = [found for found in await asyncio.gather(*attempts) if found is not None]
    assert len(granted) == 5  # 0, 100, ..., 400 reserved are below 450: five questions


async def test_a_reservation_never_released_lapses(redis: Redis, redis_prefix: str) -> None:
    limits = SharedLimits(redis, redis_prefix)
    assert await limits.reserve(7, 900, used=0, quota=1000, ttl=0.05) is not None
    async with asyncio.timeout(5):
        while await limits.reserved(7):  # noqa: ASYNC110 - Redis's clock passes the lapse
            await asyncio.sleep(0.01)
    assert await limits.reserve(7, 900, used=0, quota=1000, ttl=60) is not None


async def test_the_rate_window_is_shared_and_says_how_long_to_wait(
    redis: Redis, redis_prefix: str
) -> None:
    replica_a = SharedLimits(redis, redis_prefix)
    replica_b = SharedLimits(redis, redis_prefix)
    assert await replica_a.take_rate("user:7", limit=2, window=60) is None
    assert await replica_b.take_rate("user:7", limit=2, window=60) is None
    wait = await replica_a.take_rate("user:7", limit=2, window=60)
    assert wait is not None
    assert 59 < wait <= 60
    assert await replica_b.take_rate("user:8", limit=2, window=60) is None


async def test_the_rate_window_forgets_old_questions(redis: Redis, redis_prefix: str) -> None:
    limits = SharedLimits(redis, redis_prefix)
    assert await limits.take_rate("user:7", limit=1, window=0.05) is None
    async with asyncio.timeout(5):
        while await limits.take_rate("user:7", limit=1, window=0.05) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
