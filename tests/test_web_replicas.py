"""Two gateways (``python -m bot web``'s runtime) on one PostgreSQL database and one Redis stand
for two processes behind a load balancer: a key's quota and rate are counted once for both,
a conversation's answers take turns and stop across them, and /healthz names Redis. Needs
TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import openai
import pytest
from redis.asyncio import Redis

from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.tcp_proxy import TcpProxy
from tests.support.web_client import Event, WebClient, answer_text


@pytest.fixture
async def two_gateways(
    tmp_path: Path, postgres_url: str, redis: Redis, redis_prefix: str
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    async with contextlib.AsyncExitStack() as resources:
        simulator = await resources.enter_async_context(
            SparkSimulator(Credentials.demo(), SimulatorOptions(frame_interval=0.005))
        )
        shared = {"url": os.environ["TEST_REDIS_URL"], "prefix": redis_prefix}
        first = await start_gateway(
            tmp_path, resources, simulator=simulator, database_url=postgres_url, redis=shared
        )
        second = await start_gateway(
            tmp_path, resources, simulator=simulator, database_url=postgres_url, redis=shared
        )
        yield first, second


@contextlib.asynccontextmanager
async def _behind_a_proxy(
    tmp_path: Path, postgres_url: str, redis_prefix: str
) -> AsyncIterator[tuple[RunningGateway, TcpProxy]]:
    """A gateway whose Redis is reached through a proxy the test can cut."""
    target = urlsplit(os.environ["TEST_REDIS_URL"])
    async with (
        contextlib.AsyncExitStack() as resources,
        TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy,
    ):
        shared = {"url": f"redis://127.0.0.1:{proxy.port}{target.path}", "prefix": redis_prefix}
        gateway = await start_gateway(tmp_path, resources, database_url=postgres_url, redis=shared)
        yield gateway, proxy


async def _ask(gateway: RunningGateway, key: str, text: str, max_tokens: int) -> str:
    client = gateway.client(key)
    try:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": text}], max_tokens=max_tokens
        )
    except openai.RateLimitError as exc:
        return str(exc.code)
    return "answered"


async def test_a_keys_quota_is_counted_once_for_every_process(
    two_gateways: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = two_gateways
    key = await first.create_key("shared", "--daily-tokens 1000")
    # Each reserves its max_tokens while Spark is slow to start: 0, 400 and 800 reserved are
    # below 1000, so three of six start, whichever process each reached.
    asks = [
        _ask(gateway, key, f"question {number} [[slow-first:1]]", 400)
        for number, gateway in enumerate([first, second] * 3)
    ]
    outcomes = await asyncio.gather(*asks)
    assert sorted(outcomes) == ["answered"] * 3 + ["insufficient_quota"] * 3
    assert len(first.spark.requests) == 3  # one simulator serves both: refusals cost nothing


async def test_a_keys_rate_is_counted_once_for_every_process(
    two_gateways: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = two_gateways
    key = await first.create_key("paced", "--rate 2")
    assert await _ask(first, key, "one", 50) == "answered"
    assert await _ask(second, key, "two", 50) == "answered"
    assert await _ask(first, key, "three", 50) == "rate_limit_exceeded"
    assert await _ask(second, key, "four", 50) == "rate_limit_exceeded"


async def test_healthz_reports_redis_lost_beside_the_database(
    tmp_path: Path, postgres_url: str, redis: Redis, redis_prefix: str
) -> None:
    async with (
        _behind_a_proxy(tmp_path, postgres_url, redis_prefix) as (gateway, proxy),
        aiohttp.ClientSession() as session,
    ):
        async with session.get(gateway.base_url + "/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok")
        proxy.cut()
        async with session.get(gateway.base_url + "/healthz") as response:
            assert response.status == 503
            assert (await response.text()).startswith("redis unavailable: ")
        proxy.restore()
        async with session.get(gateway.base_url + "/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok")


async def test_redis_lost_refuses_requests_clearly_and_they_resume_when_it_is_back(
    tmp_path: Path,
    postgres_url: str,
    redis: Redis,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _behind_a_proxy(tmp_path, postgres_url, redis_prefix) as (gateway, proxy):
        key = await gateway.create_key("app", "--daily-tokens 100000")
        client = gateway.client(key)
        proxy.cut()
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="max", messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.status_code == 503
        assert caught.value.code == "service_unavailable"
        assert int(caught.value.response.headers["retry-after"]) > 0
        assert gateway.spark.requests == []  # nothing admitted without the shared counts
        assert any(
            "is unavailable; no question is admitted" in record.getMessage()
            for record in caplog.records
        )
        proxy.restore()
        answer = await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Hi"}]
        )
        assert answer.choices[0].message.content
        assert len(gateway.spark.requests) == 1


async def test_a_conversations_answers_take_turns_and_stop_across_processes(
    two_gateways: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = two_gateways
    key = await first.create_key("chat")
    async with (
        WebClient(first.base_url, key) as on_first,
        WebClient(second.base_url, key) as on_second,
    ):
        number = (await on_first.create())["id"]

        async def ask(client: WebClient, text: str) -> list[Event]:
            return await client.ask_all(number, text)

        long = asyncio.create_task(ask(on_first, "[[long:4000]] tell me everything"))
        await _until_asked(first.spark, 1)
        # Asked on the other process while the first answer streams: it waits its turn.
        after = asyncio.create_task(ask(on_second, "[[answer:Second.]] and then?"))
        await asyncio.sleep(0.3)
        assert len(first.spark.requests) == 1
        stopped = await on_second.http.post(f"/v1/conversations/{number}/stop")
        assert stopped.json() == {"stopped": True}
        first_events, second_events = await asyncio.gather(long, after)
    assert first_events[-1].name == "done"
    assert first_events[-1].data["status"] == "cancelled"
    assert 0 < len(answer_text(first_events)) < 4000
    assert answer_text(second_events) == "Second."
    questions = [record.question for record in first.spark.requests]
    assert questions == ["[[long:4000]] tell me everything", "[[answer:Second.]] and then?"]


async def _until_asked(simulator: SparkSimulator, count: int) -> None:
    async with asyncio.timeout(10):
        while len(simulator.requests) < count:  # noqa: ASYNC110 - the simulator's own record
            await asyncio.sleep(0.02)
