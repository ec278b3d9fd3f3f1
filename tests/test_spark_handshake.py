"""A Spark socket opened ahead of its request, against the simulator over real sockets."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import aiohttp
import pytest

from bot.spark.errors import SparkTransportError
from bot.spark.handshake import Handshake
from bot.spark.models import get_model
from bot.spark.retry import RetryPolicy
from bot.spark.simulator import SparkSimulator
from bot.spark.types import StreamEvent, TextDelta
from tests.test_spark_client import RecordingSleep, ask, make_client, wait_until

LITE = get_model("lite")
MAX = get_model("max")


async def _answer(client_stream: AsyncGenerator[StreamEvent, None]) -> str:
    async with aclosing(client_stream) as events:
        return "".join([e.text async for e in events if isinstance(e, TextDelta)])


async def test_the_request_goes_out_on_the_socket_opened_ahead(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    ahead = client.open_ahead(LITE)
    await wait_until(lambda: spark_simulator.open_streams == 1)
    asked = [r for r in spark_simulator.requests if r.question]
    assert asked == []  # open, nothing asked yet

    answer = await _answer(client.stream(ask("hello ahead"), "u", model=LITE, ahead=ahead))

    records = [r for r in spark_simulator.requests if r.question]
    assert [r.question for r in records] == ["hello ahead"]
    assert answer == records[0].answer_text
    assert len(spark_simulator.requests) == 1  # that one socket, no second handshake
    await ahead.aclose()  # nothing to do once the stream took it
    await wait_until(lambda: spark_simulator.open_streams == 0)


async def test_a_socket_opened_ahead_and_not_used_is_closed_without_a_request(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    ahead = client.open_ahead(LITE)
    await wait_until(lambda: spark_simulator.open_streams == 1)
    await ahead.aclose()
    await ahead.aclose()  # twice is harmless
    await wait_until(lambda: spark_simulator.open_streams == 0)
    assert [r for r in spark_simulator.requests if r.question] == []

    never_opened: Handshake = client.open_ahead(LITE)
    await never_opened.aclose()  # closed before its opening finished


async def test_a_socket_opened_for_another_model_is_closed_and_a_new_one_used(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    ahead = client.open_ahead(MAX)  # the chat switched to Lite meanwhile
    answer = await _answer(client.stream(ask("which model"), "u", model=LITE, ahead=ahead))

    records = [r for r in spark_simulator.requests if r.question]
    assert [r.path for r in records] == [LITE.path]
    assert answer == records[0].answer_text
    await wait_until(lambda: spark_simulator.open_streams == 0)


async def test_a_failed_opening_is_the_first_attempts_failure_and_is_retried(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=2), sleep=sleep
    )
    spark_simulator.inject("close-before-upgrade", times=2)
    ahead = client.open_ahead(LITE)
    answer = await _answer(client.stream(ask("second try"), "u", model=LITE, ahead=ahead))

    records = [r for r in spark_simulator.requests if r.question]
    assert answer == records[-1].answer_text
    assert len(sleep.delays) == 1  # one back-off: the opening ahead failed, the retry did not


async def test_a_failed_opening_fails_the_stream_when_no_retry_is_left(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    spark_simulator.inject("close-before-upgrade", times=2)
    ahead = client.open_ahead(LITE)
    with pytest.raises(SparkTransportError):
        await _answer(client.stream(ask("no luck"), "u", model=LITE, ahead=ahead))
