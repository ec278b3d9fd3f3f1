"""The HTTP API served by the bot itself (``HTTP_API_ENABLED=true``), beside Telegram in
polling mode: one process, one ledger, one set of quotas and one /stats for both."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from bot.__main__ import _parser
from bot.config import load_settings
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.telegram.app import BotRuntime, open_bot_runtime
from bot.web.app import build_gateway
from bot.web.keys_cli import run as run_keys
from tests.support import db_rows
from tests.support.bot_harness import free_port
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_errors import BotApiError
from tests.support.telegram_driver import TelegramDriver

ADMIN = 900_001
ALICE = 10_500


@dataclass(slots=True)
class BotWithApi:
    fake: FakeTelegram
    driver: TelegramDriver
    spark: SparkSimulator
    runtime: BotRuntime
    base_url: str

    async def create_key(self, *args: str) -> str:
        printed = io.StringIO()
        parsed = _parser().parse_args(["keys", "create", *args])
        assert await run_keys(self.runtime.settings, parsed, printed) == 0
        return next(
            line.removeprefix("key: ")
            for line in printed.getvalue().splitlines()
            if line.startswith("key: ")
        )

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=key, base_url=self.base_url + "/v1", max_retries=0)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[BotWithApi]:
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeTelegram())
        credentials = Credentials.demo()
        simulator = await stack.enter_async_context(
            SparkSimulator(credentials, SimulatorOptions(frame_interval=0.005))
        )
        port = free_port()
        settings = load_settings(
            None,
            spark={
                "app_id": credentials.app_id,
                "api_key": credentials.api_key,
                "api_secret": credentials.api_secret,
                "url": simulator.base_url,
                "max_retries": 0,
                "model": "max",
                "models": ["x1"],
            },
            telegram={
                "bot_token": fake.token,
                "api_base_url": fake.root_url,
                "shutdown_grace_seconds": 0.5,
                "host": "127.0.0.1",
                "port": port,
                "admin_user_ids": [ADMIN],
            },
            database={"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"},
            limits={"daily_token_quota": 300},
            http_api={"enabled": True},
        )
        runtime = await stack.enter_async_context(
            open_bot_runtime(settings, web_routes=build_gateway)
        )
        task = asyncio.create_task(runtime.serve())
        await fake.wait_for_call("deleteWebhook")  # polling: updates flow from now on
        try:
            yield BotWithApi(
                fake, TelegramDriver(fake), simulator, runtime, f"http://127.0.0.1:{port}"
            )
        finally:
            runtime.request_stop()
            await asyncio.wait_for(task, 15)


async def _ledger_rows(bot: BotWithApi, user_id: int, count: int) -> None:
    async def stored() -> bool:
        totals = await db_rows.usage_totals(
            bot.runtime.database, datetime(2000, 1, 1, tzinfo=UTC), user_id=user_id
        )
        return totals.requests >= count

    async with asyncio.timeout(10):
        while not await stored():  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.02)


async def _answer(bot: BotWithApi, chat_id: int, count: int) -> str:
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(chat_id)) >= count)
    return bot.fake.visible_texts(chat_id)[count - 1]


async def test_a_key_billed_to_a_telegram_user_shares_their_daily_quota(bot: BotWithApi) -> None:
    alice = bot.driver.user(ALICE, "Alice")
    chat = bot.driver.private_chat(alice)
    await bot.driver.send_text(chat, alice, "Spend my quota [[long:3000]]")
    await _ledger_rows(bot, ALICE, 1)  # her answer's usage is stored
    key = await bot.create_key("alice-laptop", "--user", str(ALICE))
    async with bot.client(key) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="max", messages=[{"role": "user", "content": "More"}]
            )
    assert len(bot.spark.requests) == 1  # refused before Spark
    assert caught.value.code == "insufficient_quota"
    assert int(caught.value.response.headers["retry-after"]) > 0
    # And the other way round: the API's spending counts in Telegram.
    bob = bot.driver.user(10_600, "Bob")
    bob_chat = bot.driver.private_chat(bob)
    bob_key = await bot.create_key("bob-script", "--user", str(bob.id))
    async with bot.client(bob_key) as client:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Spend it [[long:3000]]"}]
        )
    await bot.driver.send_text(bob_chat, bob, "Hello")
    assert "daily quota of 300 tokens" in await _answer(bot, bob.id, 1)


async def test_api_traffic_has_its_row_in_stats(bot: BotWithApi) -> None:
    key = await bot.create_key("reporting", "--daily-tokens", "100000")
    async with bot.client(key) as client:
        await client.chat.completions.create(
            model="x1", messages=[{"role": "user", "content": "Hi"}]
        )
    admin = bot.driver.user(ADMIN, "Admin")
    chat = bot.driver.private_chat(admin)
    bot.fake.fail_next("sendMessage", BotApiError.too_many_requests(1), chat_id=ADMIN)
    await bot.driver.send_command(chat, admin, "/stats")
    assert "key reporting" in await _answer(bot, ADMIN, 1)
    async with (
        aiohttp.ClientSession() as session,
        session.get(bot.base_url + "/metrics") as response,
    ):
        metrics = await response.text()
    # Telegram's calls, counted by method, the 429 among them.
    assert 'telegram_calls_total{method="getMe"} 1.0' in metrics
    assert 'telegram_429_total{method="sendMessage"} 1.0' in metrics
    assert 'telegram_calls_total{method="sendMessage"} 2.0' in metrics


async def test_models_metrics_and_healthz_beside_telegram(bot: BotWithApi) -> None:
    key = await bot.create_key("app", "--models", "max")
    async with bot.client(key) as client:
        models = await client.models.list()
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Hi"}]
        )
    listed: Any = [model.model_dump() for model in models.data]
    assert [model["id"] for model in listed] == ["max"]  # x1 is enabled, not for this key
    assert listed[0]["context_length"] == 8192
    assert listed[0]["max_output_tokens"] == 8192
    async with aiohttp.ClientSession() as session:
        async with session.get(bot.base_url + "/healthz") as response:
            assert response.status == 200
        async with session.get(bot.base_url + "/metrics") as response:
            assert response.status == 200
            metrics = await response.text()
        async with session.get(bot.base_url + "/v1/models") as response:
            assert response.status == 401
    assert 'http_requests_total{route="/v1/chat/completions",status="200"} 1.0' in metrics
    assert 'spark_requests_total{code="",front_end="api",model="max",outcome="ok"} 1.0' in metrics
    assert "spark_time_to_first_token_seconds_bucket" in metrics
    assert "http_streams_in_flight 0.0" in metrics


async def _metrics_when(bot: BotWithApi, *lines: str) -> str:
    """The bot's /metrics once it shows every line (the count follows the stored answer)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        while True:
            async with session.get(bot.base_url + "/metrics") as response:
                metrics = await response.text()
            if all(line in metrics for line in lines):
                return metrics
            await asyncio.sleep(0.02)


async def test_telegram_answers_are_counted_in_metrics_beside_the_api(bot: BotWithApi) -> None:
    alice = bot.driver.user(ALICE, "Alice")
    chat = bot.driver.private_chat(alice)
    await bot.driver.send_text(chat, alice, "Hello")
    await _answer(bot, ALICE, 1)
    await bot.driver.send_text(chat, alice, "Fail [[error:10013]]")
    assert "content policy" in await _answer(bot, ALICE, 2)
    key = await bot.create_key("app")
    async with bot.client(key) as client:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Hi"}]
        )
    metrics = await _metrics_when(
        bot,
        'spark_requests_total{code="",front_end="telegram",model="max",outcome="ok"} 1.0',
        'spark_requests_total{code="10013",front_end="telegram",model="max",outcome="error"} 1.0',
        'spark_requests_total{code="",front_end="api",model="max",outcome="ok"} 1.0',
    )
    completion = [
        line
        for line in metrics.splitlines()
        if line.startswith('spark_tokens_total{front_end="telegram",kind="completion"')
    ]
    assert len(completion) == 1
    assert float(completion[0].rsplit(" ", 1)[1]) > 0
    assert 'spark_request_duration_seconds_count{model="max"} 2.0' in metrics
