"""Redis fixtures: a client on TEST_REDIS_URL (skipped, visibly, where it is not set or does not
answer) and a key prefix of each test's own, whose keys are deleted afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

REDIS_SKIP_REASON = "TEST_REDIS_URL not set: Redis not tested"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    url = os.environ.get("TEST_REDIS_URL", "").strip()
    if not url:
        pytest.skip(REDIS_SKIP_REASON)
    client = Redis.from_url(url)
    try:
        await client.ping()
    except RedisConnectionError as exc:
        await client.aclose()
        pytest.skip(f"TEST_REDIS_URL does not answer: {exc}")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"test-{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
