"""Which processes are alive: each keeps a key of its own with a short expiry and renews it.

A process that stops renewing (killed, frozen, cut off from Redis) is taken for dead once
its key lapses, and what it left behind (questions it took, answers it was writing) is
taken over by the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def new_replica_id() -> str:
    """A name for this process, unique across restarts: host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Replicas:
    """The live set of processes under ``prefix``."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, replica: str) -> str:
        return f"{self._prefix}replica:{replica}"

    async def announce(self, replica: str, ttl: float) -> None:
        """Say ``replica`` is alive for the next ``ttl`` seconds."""
        await self._redis.set(self.key(replica), "1", px=max(1, round(ttl * 1000)))

    async def retire(self, replica: str) -> None:
        """Say ``replica`` has stopped (a clean shutdown), without waiting for the lapse."""
        await self._redis.delete(self.key(replica))

    async def alive(self, replicas: Iterable[str]) -> set[str]:
        """Those of ``replicas`` that are alive now."""
        names = list(dict.fromkeys(replicas))
        if not names:
            return set()
        found = await self._redis.exists(*[self.key(name) for name in names])
        if found == len(names):
            return set(names)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self.key(name))
            flags = await pipe.execute()
        return {name for name, flag in zip(names, flags, strict=True) if flag}

    @contextlib.asynccontextmanager
    async def heartbeat(self, replica: str, ttl: float) -> AsyncIterator[None]:
        """Announce ``replica`` now and every ``ttl`` / 3 seconds while the block runs;
        retire it on the way out."""
        await self.announce(replica, ttl)

        async def beat() -> None:
            while True:
                await asyncio.sleep(ttl / 3)
                try:
                    await self.announce(replica, ttl)
                except RedisError as exc:
                    log.warning("replica %s: heartbeat not stored: %s", replica, exc)

        task = asyncio.create_task(beat(), name=f"heartbeat-{replica}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(RedisError):
                await self.retire(replica)
