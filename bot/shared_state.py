"""The state several processes of one bot share through Redis (``REDIS_URL``), opened once at
start-up by whichever front end runs: the lanes' queues and leases, the processes' heartbeats,
signals, the limits' counts and the Telegram send budget's windows. Without ``REDIS_URL``
there is none and everything is counted in the process, as for a single process.

Start-up fails with a :class:`~bot.errors.StartupError` naming ``REDIS_URL`` when Redis does
not answer, rather than serving with counts that would silently diverge.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import RedisSettings
from bot.errors import StartupError
from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.shared_lanes import SharedLanes, Takeover
from coordination.conversation_queue import ConversationQueues
from coordination.errors import describe_location
from coordination.limits import SharedLimits
from coordination.replicas import Replicas, new_replica_id
from coordination.send_windows import SendWindows
from coordination.signals import Signals

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class SharedState:
    """Every shared part, over one Redis client."""

    redis: Redis
    location: str
    prefix: str
    replica_id: str
    lease_seconds: float
    replicas: Replicas
    limits: SharedLimits
    send_windows: SendWindows

    def lanes(
        self, front_end: str, takeover: Takeover, clock: Clock = SYSTEM_CLOCK
    ) -> SharedLanes:
        """The conversation lanes of one front end ("telegram", "web") for every process:
        each front end's queues and signals under a prefix of their own, so one takes over
        only its own questions; the processes' heartbeats are the same for all."""
        prefix = f"{self.prefix}{front_end}:"
        return SharedLanes(
            queues=ConversationQueues(self.redis, prefix),
            signals=Signals(self.redis, prefix),
            replicas=self.replicas,
            replica_id=self.replica_id,
            takeover=takeover,
            lease_seconds=self.lease_seconds,
            clock=clock,
        )

    async def health(self) -> str | None:
        """None while Redis answers, else the reason (for ``/healthz``)."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


@contextlib.asynccontextmanager
async def open_shared_state(settings: RedisSettings) -> AsyncIterator[SharedState | None]:
    """The shared state of ``settings.url``, or None when it is not set."""
    if not settings.url:
        yield None
        return
    location = describe_location(settings.url)
    redis = Redis.from_url(
        settings.url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=15,
    )
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise StartupError(
                f"REDIS_URL: Redis at {location} does not answer ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}); start it or fix REDIS_URL"
            ) from None
        prefix = settings.prefix
        state = SharedState(
            redis=redis,
            location=location,
            prefix=prefix,
            replica_id=new_replica_id(),
            lease_seconds=settings.lease_seconds,
            replicas=Replicas(redis, prefix),
            limits=SharedLimits(redis, prefix, location),
            send_windows=SendWindows(redis, prefix, location),
        )
        log.info("sharing state through Redis at %s as process %s", location, state.replica_id)
        yield state
    finally:
        await redis.aclose()
