"""Sliding windows of calls and "not before" deadlines that every process counts together.

A process that keeps to a rate on its own (at most ``limit`` calls in any ``seconds`` under a
key, nothing under a key before a deadline) stays within it; several processes keeping the
same rates each on their own spend it several times over. Here one Lua script checks a set of
windows and deadlines and, only if all of them allow it, counts the call in every window, in
one atomic step: either the call is taken everywhere, or nowhere and the caller learns how
long to wait and which key holds it longest. Time is Redis's own (``TIME``), so the
processes' clocks do not matter.

A window is a sorted set of call times (milliseconds) trimmed on every check and expiring one
window after its last call; a deadline is a string key holding its moment, expiring at it. So
keys of quiet subjects go by themselves.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from coordination.errors import CoordinationUnavailable

T = TypeVar("T")

# KEYS: the windows, then the deadlines. ARGV: the number of windows, the call's member, then
# each window's limit and length in ms. Returns {0, now} when the call was counted in every
# window, else {ms to wait, now, the 1-based index in KEYS of the key that holds longest}.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local windows = tonumber(ARGV[1])
local wait, holder = 0, 0
for i = 1, windows do
  local limit, span = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - span)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local nth = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local free = tonumber(nth[2]) + span - now
    if free > wait then wait, holder = free, i end
  end
end
for i = windows + 1, #KEYS do
  local left = tonumber(redis.call('GET', KEYS[i]) or '0') - now
  if left > wait then wait, holder = left, i end
end
if wait > 0 then return {wait, now, holder} end
for i = 1, windows do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 + 2 * i])
end
return {0, now}
"""

# KEYS[1] deadline; ARGV[1] ms from now. Keeps the later of the two; returns the ms it holds.
_HOLD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local deadline = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= deadline then return current - now end
redis.call('SET', KEYS[1], deadline, 'PX', ARGV[1])
return tonumber(ARGV[1])
"""

# KEYS[1] deadline. Returns the ms it still holds (0 when none).
_HELD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') - now)
"""


class RateWindow(NamedTuple):
    """At most ``limit`` calls in any ``seconds``, counted under ``key`` (below the prefix)."""

    key: str
    limit: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Taken:
    """The call was counted in every window, at ``at`` (Redis's time, seconds since 1970)."""

    at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing was counted: in ``seconds`` every window has room and no deadline holds, as
    far as is known now; ``key`` (a window's or a deadline's) is the one that holds longest."""

    seconds: float
    key: str


class SendWindows:
    """Windows and deadlines under ``prefix``. Every method raises
    :class:`CoordinationUnavailable` when Redis cannot be reached; what to do then is the
    caller's to decide (a sender may fall back to counting on its own)."""

    def __init__(self, redis: Redis, prefix: str, location: str = "Redis") -> None:
        self._redis = redis
        self._prefix = prefix
        self._location = location
        # Members of the sorted sets: unique across processes without a counter in Redis.
        self._member_prefix = secrets.token_hex(4)
        self._calls = itertools.count()
        self._take = redis.register_script(_TAKE)
        self._hold = redis.register_script(_HOLD)
        self._held = redis.register_script(_HELD)

    async def take(
        self, windows: Sequence[RateWindow], deadlines: Sequence[str] = ()
    ) -> Taken | Refused:
        """Count one call in every window if each has room and no deadline holds."""
        keys = [self._prefix + w.key for w in windows] + [self._prefix + d for d in deadlines]
        args: list[str | int] = [len(windows), f"{self._member_prefix}:{next(self._calls)}"]
        for window in windows:
            args += [window.limit, _ms(window.seconds)]
        answer = await self._checked(self._take(keys=keys, args=args))
        wait_ms, now_ms = int(answer[0]), int(answer[1])
        if not wait_ms:
            return Taken(now_ms / 1000)
        index = int(answer[2]) - 1
        key = windows[index].key if index < len(windows) else deadlines[index - len(windows)]
        return Refused(wait_ms / 1000, key)

    async def hold(self, deadline: str, seconds: float) -> float:
        """Nothing is taken past ``deadline`` for ``seconds`` from now (or longer, if it held
        longer already); the seconds it holds now."""
        held = await self._checked(self._hold(keys=[self._prefix + deadline], args=[_ms(seconds)]))
        return int(held) / 1000

    async def held_for(self, deadline: str) -> float:
        """The seconds ``deadline`` still holds (0 when it does not)."""
        return int(await self._checked(self._held(keys=[self._prefix + deadline]))) / 1000

    async def _checked(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise CoordinationUnavailable(self._location, str(exc)) from None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
