"""Opening the state shared through Redis: a clear start-up error, health, nothing without it."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from bot.config import RedisSettings
from bot.errors import StartupError
from bot.shared_state import open_shared_state
from tests.support.bot_harness import free_port
from tests.support.tcp_proxy import TcpProxy


async def test_a_redis_that_does_not_answer_stops_start_up_naming_the_setting() -> None:
    port = free_port()  # nothing listens there
    settings = RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(StartupError) as caught:
        async with open_shared_state(settings):
            raise AssertionError("opened a Redis that is not there")
    message = str(caught.value)
    assert message.startswith(f"REDIS_URL: Redis at redis://127.0.0.1:{port}/0 does not answer")
    assert "s3cret" not in message


async def test_without_redis_url_there_is_no_shared_state() -> None:
    async with open_shared_state(RedisSettings(url=None)) as state:
        assert state is None


async def test_shared_state_reports_redis_lost_and_back(redis: Redis, redis_prefix: str) -> None:
    target = urlsplit(os.environ["TEST_REDIS_URL"])
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        settings = RedisSettings(
            url=f"redis://127.0.0.1:{proxy.port}{target.path}", prefix=redis_prefix
        )
        async with open_shared_state(settings) as state:
            assert state is not None
            assert await state.health() is None
            proxy.cut()
            problem = await state.health()
            assert problem is not None
            assert "Connection" in problem
            proxy.restore()
            assert await state.health() is None
