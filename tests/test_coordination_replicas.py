"""Which processes are alive (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from coordination.replicas import Replicas, new_replica_id


async def test_a_beating_replica_is_alive_and_a_silent_one_lapses(
    redis: Redis, redis_prefix: str
) -> None:
    replicas = Replicas(redis, redis_prefix)
    beating, silent = new_replica_id(), new_replica_id()
    assert beating != silent
    await replicas.announce(silent, ttl=0.1)
    async with replicas.heartbeat(beating, ttl=1.0):
        assert await replicas.alive([beating, silent, "never"]) == {beating, silent}
        async with asyncio.timeout(5):
            while silent in await replicas.alive([silent]):  # noqa: ASYNC110 - it lapses
                await asyncio.sleep(0.01)
        # The beating one's expiry is pushed back again and again, well past its first ttl.
        renewals, last = 0, await redis.pttl(replicas.key(beating))
        async with asyncio.timeout(5):
            while renewals < 4:
                now = await redis.pttl(replicas.key(beating))
                assert now > 0, "the heartbeat let the key lapse"
                renewals += now > last
                last = now
                await asyncio.sleep(0.005)
        assert await replicas.alive([beating, silent]) == {beating}
    assert await replicas.alive([beating]) == set()  # retired on the way out
