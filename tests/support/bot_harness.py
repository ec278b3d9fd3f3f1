"""The whole bot, running for real against the Bot API fake, the Spark simulator and SQLite.

``make_bot(...)`` builds settings that point the production composition root
(:class:`bot.app.BotRuntime`) at the fakes, runs it in the background, and stops it gracefully
at teardown. Tests talk to it as users (``bot.driver``) and assert on what users see
(``bot.fake``), what Spark was asked (``bot.spark.requests``) and what was stored
(``await bot.stored(chat_id)``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import select

from bot.app import BotRuntime
from bot.config import Settings, load_settings
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from storage.database import Database, create_database
from storage.dto import StoredMessage
from storage.models import Conversation, UsageRecord
from tests.support.fake_telegram import FakeTelegram, FloodLimits
from tests.support.telegram_driver import TelegramDriver


@dataclass(slots=True)
class RunningBot:
    fake: FakeTelegram
    driver: TelegramDriver
    spark: SparkSimulator
    settings: Settings
    runtime: BotRuntime
    task: asyncio.Task[None]
    database: Database
    extra: dict[str, Any] = field(default_factory=dict)

    async def stored(self, chat_id: int) -> list[StoredMessage]:
        """Every stored message of every conversation of ``chat_id``, oldest first."""
        async with self.database.session(readonly=True) as session:
            ids = list(
                await session.scalars(
                    select(Conversation.id)
                    .where(Conversation.chat_id == chat_id)
                    .order_by(Conversation.id)
                )
            )
        messages: list[StoredMessage] = []
        async with self.database.repositories(readonly=True) as repos:
            for conversation_id in ids:
                messages.extend(await repos.messages.conversation_messages(conversation_id))
        return messages

    async def ledger(self) -> list[UsageRecord]:
        async with self.database.session(readonly=True) as session:
            rows = await session.scalars(select(UsageRecord).order_by(UsageRecord.id))
            return list(rows)

    async def wait_stored(
        self,
        chat_id: int,
        count: int,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - reads better in tests
    ) -> list[StoredMessage]:
        """Wait until ``count`` answers of ``chat_id`` have a final status."""

        async def done() -> list[StoredMessage] | None:
            messages = await self.stored(chat_id)
            final = [m for m in messages if m.role == "assistant" and m.status != "streaming"]
            return messages if len(final) >= count else None

        async with asyncio.timeout(timeout):
            while True:
                found = await done()
                if found is not None:
                    return found
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.runtime.request_stop()
        await self.task


class BotFactory(Protocol):
    async def __call__(
        self,
        *,
        telegram: dict[str, Any] | None = None,
        spark: dict[str, Any] | None = None,
        limits: FloodLimits | None = None,
        simulator_options: SimulatorOptions | None = None,
        fake_options: dict[str, Any] | None = None,
    ) -> RunningBot: ...


@pytest.fixture
async def make_bot(tmp_path: Path) -> AsyncIterator[BotFactory]:
    running: list[RunningBot] = []
    resources: contextlib.AsyncExitStack = contextlib.AsyncExitStack()

    async def make(
        *,
        telegram: dict[str, Any] | None = None,
        spark: dict[str, Any] | None = None,
        limits: FloodLimits | None = None,
        simulator_options: SimulatorOptions | None = None,
        fake_options: dict[str, Any] | None = None,
    ) -> RunningBot:
        fake = await resources.enter_async_context(
            FakeTelegram(limits=limits, **(fake_options or {}))
        )
        credentials = Credentials.demo()
        simulator = await resources.enter_async_context(
            SparkSimulator(
                credentials,
                simulator_options or SimulatorOptions(frame_interval=0.01, chars_per_frame=12),
            )
        )
        database_url = f"sqlite+aiosqlite:///{tmp_path / f'bot{len(running)}.sqlite3'}"
        settings = load_settings(
            None,
            spark={
                "app_id": credentials.app_id,
                "api_key": credentials.api_key,
                "api_secret": credentials.api_secret,
                "url": simulator.base_url,
                "max_retries": 0,
                **(spark or {}),
            },
            telegram={
                "bot_token": fake.token,
                "api_base_url": fake.root_url,
                "shutdown_grace_seconds": 0.5,
                **(telegram or {}),
            },
            database={"url": database_url},
        )
        runtime = BotRuntime(settings)
        await runtime.__aenter__()
        resources.push_async_exit(runtime.__aexit__)
        task = asyncio.create_task(runtime.serve(), name="bot")
        database = create_database(database_url)
        resources.push_async_callback(database.dispose)
        bot = RunningBot(fake, TelegramDriver(fake), simulator, settings, runtime, task, database)
        running.append(bot)
        # start_polling clears any webhook first; updates queued from now on are delivered.
        await fake.wait_for_call("deleteWebhook")
        return bot

    try:
        yield make
    finally:
        for bot in running:
            if not bot.task.done():
                bot.runtime.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(bot.task, 15)
        await resources.aclose()
