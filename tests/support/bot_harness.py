"""The whole bot, running for real against the Bot API fake, the Spark simulator and SQLite.

``make_bot(...)`` builds settings that point the production composition root
(:class:`bot.telegram.app.BotRuntime`) at the fakes, runs it in the background, and stops it
gracefully at teardown. Tests talk to it as users (``bot.driver``) and assert on what users see
(``bot.fake``), what Spark was asked (``bot.spark.requests``) and what was stored
(``await bot.stored(chat_id)``).

The bot and the fake share one clock (``bot.clock``), by default a :class:`ScaledClock` running
:data:`TIME_FACTOR` times faster than real time: every Telegram budget is kept by the bot and
checked by the fake as in production, in seconds that pass sooner. The fake's call times
(``RecordedCall.at``) are on that clock. Spark's simulator and the database keep real time;
:func:`spark_pace` gives the simulator a pace in the bot's seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from bot.config import Settings, load_settings
from bot.service.clock import Clock
from bot.spark.simulator import Credentials, RecordedRequest, SimulatorOptions, SparkSimulator
from bot.telegram.app import BotRuntime, open_bot_runtime
from storage.database import Database, create_database
from storage.dto import StoredMessage
from tests.support import db_rows
from tests.support.clocks import ScaledClock
from tests.support.db_rows import Record
from tests.support.fake_telegram import FakeTelegram, FloodLimits
from tests.support.fake_telegram_errors import JsonDict
from tests.support.telegram_driver import TelegramDriver

# How much faster than real time a bot under test lives: its 3 s group floor passes in 0.3 s.
TIME_FACTOR = 10.0


def spark_pace(frame_interval: float, chars_per_frame: int) -> SimulatorOptions:
    """Spark writing ``chars_per_frame`` characters every ``frame_interval`` seconds of the bot's
    clock: an answer lasts as long next to Telegram's budgets as it would in production."""
    return SimulatorOptions(
        frame_interval=frame_interval / TIME_FACTOR, chars_per_frame=chars_per_frame
    )


async def stored_messages(database: Database, chat_id: int) -> list[StoredMessage]:
    """Every stored message of every conversation of ``chat_id``, oldest first."""
    return await db_rows.chat_messages(database, chat_id)


async def stored_answers(database_url: str, chat_id: int) -> list[StoredMessage]:
    """The answers stored for ``chat_id``, oldest first, read through a database of their own
    (for a bot running in another process)."""
    database = create_database(database_url)
    try:
        messages = await stored_messages(database, chat_id)
    finally:
        await database.dispose()
    return [m for m in messages if m.role == "assistant"]


def spark_messages(record: RecordedRequest) -> list[dict[str, str]]:
    """The messages (role, content) of one request Spark received, history first."""
    assert record.request is not None, f"no request frame on {record.path}"
    return [
        {"role": str(m["role"]), "content": str(m["content"])}
        for m in record.request["payload"]["message"]["text"]
    ]


def spark_uid(record: RecordedRequest) -> str:
    """The ``header.uid`` Spark saw for one request."""
    assert record.request is not None, f"no request frame on {record.path}"
    return str(record.request["header"]["uid"])


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from below the ephemeral
    range: a port the kernel hands out itself could be taken as some outgoing connection's
    source port between this check and the bot's listening on it."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass(slots=True)
class RunningBot:
    fake: FakeTelegram
    driver: TelegramDriver
    spark: SparkSimulator
    settings: Settings
    runtime: BotRuntime
    task: asyncio.Task[None]
    database: Database
    closing: contextlib.AsyncExitStack
    clock: Clock  # the bot's and the fake's: pass it on to a runtime opened beside this one
    extra: dict[str, Any] = field(default_factory=dict)

    async def stored(self, chat_id: int) -> list[StoredMessage]:
        """Every stored message of every conversation of ``chat_id``, oldest first."""
        return await stored_messages(self.database, chat_id)

    async def ledger(self) -> list[Record]:
        return await db_rows.ledger(self.database)

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

    def replies(self, chat_id: int, thread_id: int | None = None) -> list[str]:
        """Texts of the bot's messages in ``chat_id`` (alias of the fake's visible texts)."""
        return self.fake.visible_texts(chat_id, thread_id)

    def questions(self) -> list[str | None]:
        """The last user message of every request Spark received, in order."""
        return [record.question for record in self.spark.requests]

    def update_json(self, message: JsonDict) -> JsonDict:
        """The update that carried ``message`` (what a webhook would receive), delivered or
        not."""
        for update in self.fake.state.sent_updates.values():
            if update.get("message") is message or update.get("message") == message:
                return dict(update)
        raise KeyError(f"no queued update for message {message.get('message_id')}")

    async def stop(self) -> None:
        self.runtime.request_stop()
        await self.task

    async def close(self) -> None:
        """Stop the bot and close everything it opened (its database engine included)."""
        await self.stop()
        await self.closing.aclose()


PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    """``python -m bot [args]`` as operators run it, in a child process with a clean
    environment.

    The child reads no ``.env`` (it runs in ``workdir``); its stderr (the log) goes to a file
    so a chatty DEBUG log can never fill a pipe and stall it.
    """

    def __init__(
        self, env: dict[str, str], workdir: Path, name: str = "bot", args: Sequence[str] = ()
    ) -> None:
        self.args = list(args)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.workdir = workdir
        self.log_path = workdir / f"{name}.stderr.log"
        self._log: IO[bytes] | None = None
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *self.args,
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 - reads better in tests
        assert self.process is not None
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    @property
    def stderr(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def close(self) -> None:
        """Make sure the child is gone (SIGKILL if it still runs) and its log file closed."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class ProcessFactory(Protocol):
    def __call__(
        self, env: dict[str, str], name: str = ..., args: Sequence[str] = ...
    ) -> BotProcess: ...


@pytest.fixture
async def bot_process(tmp_path: Path) -> AsyncIterator[ProcessFactory]:
    """A factory of (not yet started) bot processes; every one is reaped at teardown."""
    made: list[BotProcess] = []

    def make(env: dict[str, str], name: str = "bot", args: Sequence[str] = ()) -> BotProcess:
        process = BotProcess(env, tmp_path, name, args)
        made.append(process)
        return process

    try:
        yield make
    finally:
        for process in made:
            await process.close()


class BotFactory(Protocol):
    async def __call__(
        self,
        *,
        telegram: dict[str, Any] | None = None,
        spark: dict[str, Any] | None = None,
        limits: FloodLimits | None = None,
        simulator_options: SimulatorOptions | None = None,
        fake_options: dict[str, Any] | None = None,
        database_url: str | None = None,
        clock: Clock | None = None,
        redis: dict[str, Any] | None = None,
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
        database_url: str | None = None,
        clock: Clock | None = None,
        redis: dict[str, Any] | None = None,
    ) -> RunningBot:
        clock = clock or ScaledClock(TIME_FACTOR)
        fake = await resources.enter_async_context(
            FakeTelegram(limits=limits, clock=clock.now, **(fake_options or {}))
        )
        credentials = Credentials.demo()
        simulator = await resources.enter_async_context(
            SparkSimulator(
                credentials,
                simulator_options or SimulatorOptions(frame_interval=0.01, chars_per_frame=12),
            )
        )
        database_url = (
            database_url or f"sqlite+aiosqlite:///{tmp_path / f'bot{len(running)}.sqlite3'}"
        )
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
            redis=redis or {},
        )
        closing = contextlib.AsyncExitStack()
        resources.push_async_exit(closing)
        runtime = await closing.enter_async_context(open_bot_runtime(settings, clock=clock))
        task = asyncio.create_task(runtime.serve(), name="bot")
        database = create_database(database_url)
        resources.push_async_callback(database.dispose)
        bot = RunningBot(
            fake,
            TelegramDriver(fake),
            simulator,
            settings,
            runtime,
            task,
            database,
            closing,
            clock,
        )
        running.append(bot)
        if settings.telegram.webhook_url:
            # Webhook mode: ready once Telegram was told where to post updates.
            await fake.wait_for_call("setWebhook")
        else:
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
