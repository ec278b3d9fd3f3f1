"""Signals heard by every listening process (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from coordination.signals import Signals, listening


async def test_every_listener_hears_a_signal_and_only_on_its_channel(
    redis: Redis, redis_prefix: str
) -> None:
    heard_a: asyncio.Queue[str] = asyncio.Queue()
    heard_b: list[str] = []
    other: list[str] = []
    signals = Signals(redis, redis_prefix)

    async def on_b(message: str) -> None:
        heard_b.append(message)

    async with (
        listening(signals, "stop", heard_a.put_nowait),
        listening(signals, "stop", on_b),
        listening(signals, "other", other.append),
    ):
        assert await signals.publish("stop", "chat-1") == 2
        assert await signals.publish("stop", "chat-2") == 2
        assert [await heard_a.get(), await heard_a.get()] == ["chat-1", "chat-2"]
        # A sentinel on the other channel, heard after the stops were handled everywhere.
        assert await signals.publish("other", "sentinel") == 1
        async with asyncio.timeout(5):
            while other != ["sentinel"] or len(heard_b) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert heard_b == ["chat-1", "chat-2"]
    assert await signals.publish("stop", "after") == 0  # nobody listens once the blocks end
