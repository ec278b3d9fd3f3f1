"""Pytest fixtures for the Spark simulator, and helpers to talk to it with a raw client.

Fixtures: ``spark_simulator`` (started, demo credentials, zero pacing), ``make_spark_simulator``
(a factory) and ``http_session``. Every simulator they start is stopped at teardown, so no
socket or task outlives its test. The helpers (:func:`ask`, :func:`exchange`,
:func:`signed_url`) speak the wire protocol directly, without the project's client.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp
import pytest

from bot.spark.auth import sign_url
from bot.spark.models import SparkModel, get_model
from bot.spark.protocol import Frame, build_request, parse_frame
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.spark.types import ChatMessage, GenerationOptions


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


# -- helpers for driving a simulator with a raw aiohttp client --------------------------------


@dataclass
class Exchange:
    """Everything a raw client saw on one connection."""

    raw: list[str]
    close_code: int | None
    clean_close: bool  # the server sent a close frame (False: the connection was dropped)

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.raw]

    @property
    def parsed(self) -> list[Frame]:
        return [parse_frame(text) for text in self.raw]

    @property
    def text(self) -> str:
        return "".join(frame.content for frame in self.parsed)

    @property
    def sid(self) -> str:
        return self.parsed[0].sid


_UIDS = itertools.count(1)


def signed_url(simulator: SparkSimulator, model: SparkModel, date: datetime | None = None) -> str:
    creds = simulator.credentials
    return sign_url(simulator.url_for(model), creds.api_key, creds.api_secret, date)


def chat_request(
    simulator: SparkSimulator,
    model: SparkModel,
    question: str,
    *,
    history: Sequence[ChatMessage] = (),
    options: GenerationOptions | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """A request frame; each gets its own uid unless one is given (Spark answers one question
    per uid at a time)."""
    messages = [*history, ChatMessage("user", question)]
    return build_request(
        model,
        app_id=simulator.credentials.app_id,
        uid=uid if uid is not None else f"tester{next(_UIDS)}",
        messages=messages,
        options=options or GenerationOptions(),
    )


async def exchange(
    session: aiohttp.ClientSession, url: str, request: dict[str, Any] | str, *, wait: float = 5.0
) -> Exchange:
    """Send one request frame and collect frames until the server ends the connection.

    ``wait`` bounds the wait for each frame, so a hung stream fails the test quickly.
    """
    raw: list[str] = []
    async with session.ws_connect(url, autoclose=True) as ws:
        await ws.send_str(request if isinstance(request, str) else json.dumps(request))
        while True:
            message = await ws.receive(timeout=wait)
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            raw.append(message.data)
        return Exchange(raw, ws.close_code, message.type is aiohttp.WSMsgType.CLOSE)


async def ask(
    session: aiohttp.ClientSession,
    simulator: SparkSimulator,
    question: str,
    model: SparkModel | None = None,
    **kwargs: Any,
) -> Exchange:
    """One signed request for ``question`` (Spark Max unless ``model`` says otherwise)."""
    model = model or get_model("max")
    request = chat_request(simulator, model, question, **kwargs)
    return await exchange(session, signed_url(simulator, model), request)


def spark_env(spark_url: str | None = None) -> dict[str, str]:
    """The Spark settings of a bot process (environment variables): the simulator's demo
    credentials, and with ``spark_url`` its address and no retries."""
    credentials = Credentials.demo()
    env = {
        "SPARK_APP_ID": credentials.app_id,
        "SPARK_API_KEY": credentials.api_key,
        "SPARK_API_SECRET": credentials.api_secret,
    }
    if spark_url is not None:
        env.update(SPARK_URL=spark_url, SPARK_MAX_RETRIES="0")
    return env
