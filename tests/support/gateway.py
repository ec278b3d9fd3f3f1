"""The HTTP API for tests: ``python -m bot web``'s runtime on a free port, over the Spark
simulator and a migrated SQLite file, with keys made the way the operator makes them.

:func:`start_gateway` builds the production runtime (:func:`bot.web.app.open_web_runtime`)
from settings pointing at the simulator; :class:`RunningGateway` hands out ``openai`` SDK
clients for a key (no retries, so each error reaches the test as it came), reads the ledger
and creates or revokes keys through ``python -m bot keys``'s own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bot.__main__ import _parser
from bot.config import Settings, load_settings
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.web.app import WebRuntime, open_web_runtime
from bot.web.keys_cli import run as run_keys
from storage.database import Database, create_database
from tests.support import db_rows
from tests.support.bot_harness import free_port
from tests.support.db_rows import Record


@dataclass(slots=True)
class RunningGateway:
    spark: SparkSimulator
    settings: Settings
    runtime: WebRuntime
    task: asyncio.Task[None]
    database: Database
    closing: contextlib.AsyncExitStack
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.port}"

    def client(self, key: str) -> openai.AsyncOpenAI:
        """An SDK client for ``key`` (closed with the gateway)."""
        client = openai.AsyncOpenAI(api_key=key, base_url=self.base_url + "/v1", max_retries=0)
        self.clients.append(client)
        return client

    async def keys(self, command: str) -> str:
        """Run ``python -m bot keys COMMAND`` in process; returns what it printed."""
        args = _parser().parse_args(["keys", *shlex.split(command)])
        out = io.StringIO()
        assert await run_keys(self.settings, args, out) == 0
        return out.getvalue()

    async def create_key(self, name: str, options: str = "") -> str:
        printed = await self.keys(f"create {name} {options}")
        return next(
            line.removeprefix("key: ") for line in printed.splitlines() if line.startswith("key: ")
        )

    async def key_user(self, name: str) -> int:
        key = await db_rows.one(
            self.database, "SELECT user_id FROM api_keys WHERE name = :name", name=name
        )
        assert key is not None
        return int(key.user_id)

    async def ledger(self) -> list[Record]:
        return await db_rows.ledger(self.database)

    async def wait_ledger(self, count: int, timeout: float = 10.0) -> list[Record]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(rows := await self.ledger()) < count:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.02)
        return rows

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        self.runtime.request_stop()
        await self.task
        await self.closing.aclose()


def gateway_settings(
    simulator: SparkSimulator,
    database_url: str,
    *,
    spark: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    http_api: dict[str, Any] | None = None,
    telegram: dict[str, Any] | None = None,
    redis: dict[str, Any] | None = None,
) -> Settings:
    credentials = simulator.credentials
    return load_settings(
        None,
        spark={
            "app_id": credentials.app_id,
            "api_key": credentials.api_key,
            "api_secret": credentials.api_secret,
            "url": simulator.base_url,
            "max_retries": 0,
            "models": ["max", "x1", "pro"],
            **(spark or {}),
        },
        telegram={
            "host": "127.0.0.1",
            "port": free_port(),
            "shutdown_grace_seconds": 0.5,
            **(telegram or {}),
        },
        database={"url": database_url},
        limits=limits or {},
        http_api=http_api or {},
        redis=redis or {},
    )


async def start_gateway(
    tmp_path: Path,
    resources: contextlib.AsyncExitStack,
    *,
    simulator_options: SimulatorOptions | None = None,
    simulator: SparkSimulator | None = None,
    database_url: str | None = None,
    **groups: Any,
) -> RunningGateway:
    """A gateway on its own simulator and SQLite file, or on those given (several gateways on
    one database stand for several processes)."""
    if simulator is None:
        simulator = await resources.enter_async_context(
            SparkSimulator(
                Credentials.demo(),
                simulator_options or SimulatorOptions(frame_interval=0.005, chars_per_frame=12),
            )
        )
    database_url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'gateway.sqlite3'}"
    settings = gateway_settings(simulator, database_url, **groups)
    closing = contextlib.AsyncExitStack()
    runtime = await closing.enter_async_context(open_web_runtime(settings))
    task = asyncio.create_task(runtime.serve(), name="gateway")
    database = create_database(database_url)
    closing.push_async_callback(database.dispose)
    gateway = RunningGateway(simulator, settings, runtime, task, database, closing)
    resources.push_async_callback(gateway.close)
    return gateway
