"""Pytest fixtures for the Spark simulator: a started server per test and an HTTP session.

Every simulator these fixtures start is stopped at teardown, so no socket or task outlives its
test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Protocol

import aiohttp
import pytest

from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator


class SimulatorFactory(Protocol):
    def __call__(
        self,
        credentials: Credentials | None = None,
        options: SimulatorOptions | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Awaitable[SparkSimulator]: ...


@pytest.fixture
async def make_spark_simulator() -> AsyncIterator[SimulatorFactory]:
    """A factory of started simulators (zero pacing unless ``options`` say otherwise)."""
    started: list[SparkSimulator] = []

    async def make(
        credentials: Credentials | None = None,
        options: SimulatorOptions | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> SparkSimulator:
        simulator = SparkSimulator(credentials, options, clock=clock)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in reversed(started):
        await simulator.stop()


@pytest.fixture
async def spark_simulator(make_spark_simulator: SimulatorFactory) -> SparkSimulator:
    """A started simulator with the demo credentials and no pacing."""
    return await make_spark_simulator()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
