"""Signals every process hears at once: Redis publish/subscribe on one channel per kind.

Used for what must reach whichever process is doing the work, e.g. a ``/stop`` taken by one
process for an answer another is streaming. Delivery is at most once and only to processes
listening now, so a signal is a prompt, never the record: what must survive a missed message
(a lease, a queue mark) is kept elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None] | None]
RECONNECT_SECONDS = 0.5


class Signals:
    """Publish and hear messages on ``prefix`` + channel."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _channel(self, name: str) -> str:
        return f"{self._prefix}signal:{name}"

    async def publish(self, name: str, message: str) -> int:
        """Send ``message`` on ``name``; how many processes heard it."""
        return int(await self._redis.publish(self._channel(name), message))

    async def listen(
        self, name: str, handler: Handler, ready: asyncio.Event | None = None
    ) -> None:
        """Call ``handler`` with every message on ``name`` until cancelled; re-subscribes
        after a lost connection. ``ready`` is set once subscribed (each time)."""
        channel = self._channel(name)
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    if ready is not None:
                        ready.set()
                    async for message in pubsub.listen():
                        data = message.get("data")
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        outcome = handler(text)
                        if outcome is not None:
                            await outcome
            except RedisError as exc:
                if ready is not None:
                    ready.clear()
                log.warning("signal %s: lost Redis (%s); listening again shortly", name, exc)
                await asyncio.sleep(RECONNECT_SECONDS)


@contextlib.asynccontextmanager
async def listening(
    signals: Signals, name: str, handler: Handler
) -> AsyncIterator[asyncio.Task[None]]:
    """Listen on ``name`` in a task for the duration of the block (subscribed on entry)."""
    ready = asyncio.Event()
    task = asyncio.create_task(signals.listen(name, handler, ready), name=f"signal-{name}")
    try:
        await asyncio.wait_for(ready.wait(), 5)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
