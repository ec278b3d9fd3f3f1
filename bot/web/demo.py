"""``python -m bot web --simulate``: the web front end over a built-in Spark simulator.

For trying the page on one's own machine without any credentials: the simulator runs in
the process, history goes to a throw-away SQLite file, the server listens on 127.0.0.1 only,
and a fresh demo key is made for this run and printed. Pages opened from this machine get it
by themselves (:mod:`bot.web.page`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Settings
from bot.simulated import simulated_settings
from bot.startup_failures import database_failures
from bot.web.keys import new_key
from storage.database import create_database
from storage.migrate import upgrade
from storage.repositories.api_keys import key_hash

DEMO_MODELS = ("lite", "pro", "max", "4.0-ultra", "x1")
DEMO_KEY_NAME = "demo"


@dataclass(frozen=True, slots=True)
class Demo:
    settings: Settings
    key: str


@asynccontextmanager
async def demo_settings(settings: Settings) -> AsyncIterator[Demo]:
    models = settings.spark.models or DEMO_MODELS
    async with simulated_settings(settings, name="web", models=models) as simulated:
        telegram = simulated.telegram.model_copy(update={"host": "127.0.0.1"})
        effective = simulated.model_copy(update={"telegram": telegram})
        key = await _demo_key(effective)
        yield Demo(effective, key)


async def _demo_key(settings: Settings) -> str:
    url = settings.database.url
    with database_failures(url):
        await upgrade(url)
        database = create_database(url)
    try:
        key = new_key()
        await database.api_keys.create(DEMO_KEY_NAME, key_hash(key))
        return key
    finally:
        await database.dispose()
