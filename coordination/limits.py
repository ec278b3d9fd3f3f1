"""Quota reservations and rate windows that every process counts together.

One process's limits (``bot.service.limits``) check a user's daily quota against the ledger
plus the tokens its own questions in flight have reserved, and keep a sliding window of the
user's questions. With several processes those two counts must be shared, and checked and
changed in one step, or two processes would admit questions on the same last tokens. Here
each is one Lua script:

- a reservation is a member of the user's sorted set, scored by when it lapses (a process
  that dies holding one does not hold the tokens forever); admitting checks the ledger's
  figure (read by the caller just before) plus the live reservations against the quota and
  adds its own, atomically;
- the rate window is a sorted set of admission times on Redis's own clock (processes'
  clocks differ), trimmed to the window on every check.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from coordination.errors import CoordinationUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# KEYS[1] reservations. ARGV: id, tokens, used, quota, ttl ms. Returns 1 reserved, 0 refused.
_RESERVE = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local reserved = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  reserved = reserved + tonumber(string.match(member, ':(%d+)$'))
end
if tonumber(ARGV[3]) + reserved >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[5]), ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] reservations. Returns the tokens reserved by live reservations.
_RESERVED = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local reserved = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms, '+inf')) do
  reserved = reserved + tonumber(string.match(member, ':(%d+)$'))
end
return reserved
"""

# KEYS[1] window. ARGV: limit, window ms. Returns 0 admitted (and counted), else the ms to
# wait until the oldest admission leaves the window.
_TAKE_RATE = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now_ms)
end
redis.call('ZADD', KEYS[1], now_ms, now_ms .. '-' .. redis.call('INCR', KEYS[1] .. ':n'))
redis.call('PEXPIRE', KEYS[1], window)
redis.call('PEXPIRE', KEYS[1] .. ':n', window)
return 0
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held for one question in flight, until :meth:`SharedLimits.release`."""

    user_id: int
    member: str
    tokens: int


class SharedLimits:
    """Every process's reservations and rate windows, under ``prefix``. While Redis cannot be
    reached, every method raises :class:`CoordinationUnavailable` (nothing can be admitted
    without the shared counts); the loss and the return are logged once each."""

    def __init__(self, redis: Redis, prefix: str, location: str = "Redis") -> None:
        self._redis = redis
        self._prefix = prefix
        self._location = location
        self._down = False
        self._reserve = redis.register_script(_RESERVE)
        self._reserved = redis.register_script(_RESERVED)
        self._take_rate = redis.register_script(_TAKE_RATE)

    def _reservations(self, user_id: int) -> str:
        return f"{self._prefix}reserved:{user_id}"

    async def reserve(
        self, user_id: int, tokens: int, *, used: int, quota: int, ttl: float
    ) -> Reservation | None:
        """Reserve ``tokens`` if ``used`` (the ledger's figure for today) plus every live
        reservation is below ``quota``; None when it is not. A reservation lapses after
        ``ttl`` seconds if it is never released."""
        member = secrets.token_hex(8)
        reserved = await self._checked(
            self._reserve(
                keys=[self._reservations(user_id)],
                args=[member, max(0, tokens), used, quota, _ms(ttl)],
            )
        )
        if not reserved:
            return None
        return Reservation(user_id, f"{member}:{max(0, tokens)}", max(0, tokens))

    async def release(self, reservation: Reservation) -> None:
        await self._checked(
            self._redis.zrem(self._reservations(reservation.user_id), reservation.member)
        )

    async def reserved(self, user_id: int) -> int:
        """Tokens the user's live reservations hold, on every process."""
        return int(await self._checked(self._reserved(keys=[self._reservations(user_id)])))

    async def take_rate(self, subject: str, limit: int, window: float) -> float | None:
        """Count a request in ``subject``'s window of ``window`` seconds (a user's, an API
        key's: ``"user:7"``, ``"key:3"``) if fewer than ``limit`` are in it (None), else the
        seconds until one leaves it."""
        wait_ms = await self._checked(
            self._take_rate(keys=[f"{self._prefix}rate:{subject}"], args=[limit, _ms(window)])
        )
        return None if not wait_ms else int(wait_ms) / 1000

    async def _checked(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except (RedisError, OSError) as exc:
            if not self._down:
                self._down = True
                log.error(
                    "Redis at %s is unavailable; no question is admitted: %s", self._location, exc
                )
            raise CoordinationUnavailable(self._location, str(exc)) from None
        if self._down:
            self._down = False
            log.warning("Redis at %s answers again; questions are admitted", self._location)
        return result


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
