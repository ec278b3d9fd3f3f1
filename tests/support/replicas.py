"""Several ``python -m bot`` processes serving one bot in webhook mode, as behind a load
balancer: one PostgreSQL schema, one Redis prefix, one Bot API fake, one Spark simulator.

The test plays Telegram's part: it posts each update to the webhook of the replica it picks
(:meth:`BotReplicas.deliver`, round-robin by default) and, as Telegram does, posts a chat's
next update only once the replica answered the last one.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Sequence
from typing import Any

import aiohttp

from bot.spark.simulator import SparkSimulator
from tests.support.bot_harness import BotProcess, ProcessFactory, free_port
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_errors import JsonDict
from tests.support.spark_fixtures import spark_env

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
START_TIMEOUT = 40.0  # cold children import ptb, SQLAlchemy, run migrations, side by side
WEBHOOK_PATH = "/tg"


def replica_env(
    fake: FakeTelegram,
    simulator: SparkSimulator,
    *,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    port: int,
    secret: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE_URL": fake.root_url,
        # The balancer's address, the same for every replica; each listens on its own port.
        "WEBHOOK_URL": f"https://127.0.0.1:8443{WEBHOOK_PATH}",
        "WEBHOOK_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **spark_env(simulator.base_url),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "SHUTDOWN_GRACE_SECONDS": "2",
        "LOG_LEVEL": "INFO",
        **(extra or {}),
    }


class BotReplicas:
    """``count`` bot processes; start them with :meth:`start`, talk to them with
    :meth:`deliver`."""

    def __init__(
        self,
        bot_process: ProcessFactory,
        fake: FakeTelegram,
        simulator: SparkSimulator,
        *,
        count: int,
        database_url: str,
        redis_url: str,
        redis_prefix: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.fake = fake
        self.extra: dict[str, Any] = {}  # what a test keeps beside them
        self.secret = secrets.token_urlsafe(24)
        self._make = bot_process
        self._envs = [
            replica_env(
                fake,
                simulator,
                database_url=database_url,
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                port=free_port(),
                secret=self.secret,
                extra=extra,
            )
            for _ in range(count)
        ]
        self.processes: list[BotProcess] = []
        self._next = itertools.cycle(range(count))
        self._session: aiohttp.ClientSession | None = None
        self._generation = 0

    def port(self, index: int) -> int:
        return int(self._envs[index]["PORT"])

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={SECRET_HEADER: self.secret})
        self.processes = [
            self._make(env, name=f"replica{index}") for index, env in enumerate(self._envs)
        ]
        await asyncio.gather(*(process.start() for process in self.processes))
        await asyncio.gather(*(self._ready(index) for index in range(len(self.processes))))

    async def restart(self, index: int) -> None:
        """Start replica ``index`` again (after it stopped), as a new process."""
        self._generation += 1
        process = self._make(self._envs[index], name=f"replica{index}-{self._generation}")
        self.processes[index] = process
        await process.start()
        await self._ready(index)

    async def _ready(self, index: int) -> None:
        """Ready once its webhook answers (it says it is taking updates only after that)."""
        replica = self.processes[index]
        async with asyncio.timeout(START_TIMEOUT):
            while "taking updates by webhook" not in replica.stderr:
                child = replica.process
                if child is not None and child.returncode is not None:
                    raise AssertionError(f"replica {index} exited at start:\n{replica.stderr}")
                await asyncio.sleep(0.1)

    async def deliver(self, update: JsonDict, to: int | None = None) -> int:
        """Post ``update`` to replica ``to`` (else the next in turn) as Telegram does, and
        wait for its answer; the replica it went to."""
        assert self._session is not None, "start() first"
        index = next(self._next) if to is None else to
        url = f"http://127.0.0.1:{self.port(index)}{WEBHOOK_PATH}"
        async with self._session.post(url, json=update) as response:
            assert response.status == 200, await response.text()
        return index

    async def deliver_all(self, updates: Sequence[JsonDict]) -> list[int]:
        return [await self.deliver(update) for update in updates]

    def logs(self) -> str:
        return "\n".join(process.stderr for process in self.processes)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
