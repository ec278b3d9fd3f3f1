"""Leases with fencing tokens: at most one holder of a name at a time, for a bounded time.

A holder takes the lease for ``ttl`` and keeps renewing it while it works; if it dies or
pauses longer than ``ttl``, the lease lapses and another process takes it. Every grant of a
name carries a *fencing token*, a number that only grows for that name, so that a holder
that was paused past its lease (and does not know it yet) can be told apart from the new
one: whatever it writes under its old token is refused by a store that remembers the newest
token it has seen (:meth:`Leases.holds` checks one here; durable writes check theirs).

Each operation is one Lua script, run atomically by Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1] lease, KEYS[2] its fence counter; ARGV holder, ttl ms. Returns the token, or nil.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local holder, token = string.match(current, '^(.*)|(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS[1] lease; ARGV holder|token, ttl ms. 1 when renewed, 0 when the lease is not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV holder|token. 1 when released, 0 when it was not ours any more.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """One holder's hold on one name, with the fencing token of this grant."""

    name: str
    holder: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.holder}|{self.token}"


class Leases:
    """Leases under ``prefix`` in one Redis database."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def key(self, name: str) -> str:
        """The Redis key of the lease on ``name`` (scripts that check it take it as a key)."""
        return f"{self._prefix}lease:{name}"

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | None:
        """The lease on ``name`` for ``ttl`` seconds, or None while another holds it. Taking
        a lease one already holds extends it and keeps its token."""
        key = self.key(name)
        token = await self._acquire(keys=[key, key + ":fence"], args=[holder, _ms(ttl)])
        if token is None:
            return None
        return Grant(name, holder, int(token))

    async def renew(self, grant: Grant, ttl: float) -> bool:
        """Extend ``grant`` by ``ttl`` seconds from now; False when it has lapsed (and may be
        someone else's now)."""
        renewed = await self._renew(keys=[self.key(grant.name)], args=[grant.value, _ms(ttl)])
        return bool(renewed)

    async def release(self, grant: Grant) -> bool:
        """Give ``grant`` up; False when it had lapsed already."""
        released = await self._release(keys=[self.key(grant.name)], args=[grant.value])
        return bool(released)

    async def holds(self, grant: Grant) -> bool:
        """Whether ``grant`` is still the lease on its name."""
        value = await self._redis.get(self.key(grant.name))
        return _text(value) == grant.value

    async def newest_token(self, name: str) -> int:
        """The token of the newest grant ever made on ``name`` (0 if none)."""
        value = await self._redis.get(self.key(name) + ":fence")
        return int(_text(value) or 0)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value
