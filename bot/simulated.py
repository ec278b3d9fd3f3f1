"""Settings pointed at a Spark simulator running in this process, with a throw-away SQLite
file: what ``chat --simulate`` and ``web --simulate`` run on, so anyone can try the bot
without credentials. Nothing here is used by ``python -m bot`` (the Procfile's process never
falls back to the simulator)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import SecretStr

from bot.config import Settings
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator

# A pace a reader can watch: the answer grows visibly, as Spark's does.
DEMO_PACE = SimulatorOptions(first_frame_delay=0.3, frame_interval=0.05)


@asynccontextmanager
async def simulated_settings(
    settings: Settings, *, name: str, models: Sequence[str] | None = None
) -> AsyncIterator[Settings]:
    """``settings`` with Spark replaced by a simulator with demo credentials and the database
    by ``name``.sqlite3 in a temporary folder (both gone on the way out); ``models``, when
    given, replaces the list of extra models users may choose."""
    demo = Credentials.demo()
    async with SparkSimulator(demo, DEMO_PACE) as simulator:
        with tempfile.TemporaryDirectory(prefix=f"spark-{name}-") as folder:
            spark_update: dict[str, object] = {
                "app_id": demo.app_id,
                "api_key": SecretStr(demo.api_key),
                "api_secret": SecretStr(demo.api_secret),
                "url": simulator.base_url,
            }
            if models is not None:
                spark_update["models"] = list(models)
            spark = settings.spark.model_copy(update=spark_update)
            database = settings.database.model_copy(
                update={"url": f"sqlite+aiosqlite:///{Path(folder) / f'{name}.sqlite3'}"}
            )
            yield settings.model_copy(update={"spark": spark, "database": database})
