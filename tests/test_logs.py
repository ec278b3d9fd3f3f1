"""Secrets never reach a log line: the redacting filter, and the Spark client at DEBUG level
across success and failure paths (real sockets, every logger captured)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import traceback
from collections.abc import Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot.logs import MASK, RedactingFilter, configure_logging
from bot.spark.auth import sign_url
from bot.spark.client import SparkClient
from bot.spark.errors import SparkError
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.simulator import Credentials, SparkSimulator
from bot.spark.types import GenerationOptions, TextDelta
from tests.support.spark_fixtures import SimulatorFactory
from tests.test_spark_client import RecordingSleep, ask, make_client

DEMO = Credentials.demo()
WRONG_SECRET = "wrong-secret-1111111111111111111"
# base64 of 'api_key="', the start of every decoded authorization parameter.
AUTHORIZATION_PREFIX = "YXBpX2tleT0i"
FORBIDDEN = (
    DEMO.api_key,
    DEMO.api_secret,
    WRONG_SECRET,
    AUTHORIZATION_PREFIX,
    "authorization=",
    "date=",
    "hmac-sha256",
)


def record_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    if record.exc_text:
        text += record.exc_text
    return text


def assert_no_secret(text: str) -> None:
    for secret in FORBIDDEN:
        assert secret not in text, f"{secret!r} leaked into: {text[:500]}"


# -- RedactingFilter ------------------------------------------------------------------------


def make_record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, message, args, None)


def test_filter_masks_known_secrets_in_message_and_args() -> None:
    redactor = RedactingFilter([DEMO.api_key, DEMO.api_secret, "abc"])
    record = make_record("key %s and secret %s", DEMO.api_key, DEMO.api_secret)
    assert redactor.filter(record)
    assert record.getMessage() == f"key {MASK} and secret {MASK}"
    # Values shorter than four characters would mask ordinary words.
    short = make_record("abc stays")
    redactor.filter(short)
    assert short.getMessage() == "abc stays"


def test_filter_masks_a_signed_spark_url() -> None:
    url = sign_url("wss://spark-api.xf-yun.com/v3.5/chat", DEMO.api_key, DEMO.api_secret)
    record = make_record("connecting to %s", url)
    RedactingFilter().filter(record)
    message = record.getMessage()
    assert f"authorization={MASK}" in message
    assert AUTHORIZATION_PREFIX not in message
    assert message.startswith("connecting to wss://spark-api.xf-yun.com/v3.5/chat?")


def test_filter_masks_bot_tokens_in_urls_and_tracebacks() -> None:
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    redactor = RedactingFilter()
    record = make_record("POST https://api.telegram.org/bot%s/sendMessage", token)
    redactor.filter(record)
    assert record.getMessage() == f"POST https://api.telegram.org/bot{MASK}/sendMessage"

    try:
        raise RuntimeError(f"failed: https://api.telegram.org/bot{token}/getMe")
    except RuntimeError:
        failure = logging.LogRecord(
            "test", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    redactor.filter(failure)
    assert failure.exc_text is not None
    assert token not in failure.exc_text
    assert "RuntimeError" in failure.exc_text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_redacts_every_line_and_quiets_httpx(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG", [DEMO.api_secret])
    logging.getLogger("bot.test").info("secret is %s", DEMO.api_secret)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    err = capsys.readouterr().err
    assert "secret is ***" in err
    assert DEMO.api_secret not in err


# -- the Spark client's own log lines --------------------------------------------------------


async def run_all_paths(
    simulator: SparkSimulator, skewed: SparkSimulator, session: aiohttp.ClientSession
) -> list[SparkError]:
    """Drive the client through success and each failure path; return the errors raised."""
    errors: list[SparkError] = []
    client = make_client(
        session,
        simulator,
        retry=RetryPolicy(max_attempts=2),
        sleep=RecordingSleep(),
        timeouts=SparkTimeouts(connect=0.5, first_frame=0.3, idle=0.3, total=5),
    )

    async def expect_error(
        target: SparkClient, question: str, options: GenerationOptions | None = None
    ) -> None:
        try:
            await target.complete(ask(question), "u", options=options)
        except SparkError as exc:
            errors.append(exc)
        else:
            raise AssertionError(f"{question!r} did not fail")

    await client.complete(ask("a plain question"), "u")
    simulator.inject("error:10110")
    await client.complete(ask("retried once"), "u")
    for question in (
        "[[error:10013]]",
        "[[error-after:10014:2]]",
        "[[close-after:2]]",
        "[[hang-after:1]]",
        "[[slow-first:2]]",
    ):
        await expect_error(client, f"fail {question}")
    await expect_error(client, "invalid", options=GenerationOptions(top_k=99))

    wrong = make_client(
        session, simulator, credentials=Credentials(DEMO.app_id, DEMO.api_key, WRONG_SECRET)
    )
    await expect_error(wrong, "wrong secret")
    await expect_error(make_client(session, skewed), "skewed clock")
    simulator.inject("handshake-403-ip", times=2)
    await expect_error(client, "ip denied")

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    await expect_error(make_client(session, None, url_override=f"ws://127.0.0.1:{port}"), "down")

    cancelled = make_client(session, simulator)
    started = asyncio.Event()

    async def consume() -> None:
        async with aclosing(cancelled.stream(ask("[[hang-after:1]]"), "u")) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return errors


async def test_client_logs_no_secret_at_debug_level(
    spark_simulator: SparkSimulator,
    make_spark_simulator: SimulatorFactory,
    http_session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    skewed = await make_spark_simulator(clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    caplog.set_level(logging.DEBUG)

    errors = await run_all_paths(spark_simulator, skewed, http_session)

    assert len(errors) == 10
    for record in caplog.records:
        assert_no_secret(record_text(record))
    assert_no_secret(caplog.text)
    # Errors are logged by callers too: their text and whole chain must be clean as well.
    for error in errors:
        assert_no_secret(str(error))
        assert_no_secret("".join(traceback.format_exception(error)))

    # The lines that must be there, so that silence cannot pass for safety.
    spark_lines = [r.getMessage() for r in caplog.records if r.name == "bot.spark"]
    assert any(
        line.startswith("spark answer: model=lite sid=cht") and "attempts=1" in line
        for line in spark_lines
    )
    assert any("attempts=2" in line for line in spark_lines)
    assert any(f"url={spark_simulator.base_url}/v1.1/chat " in line for line in spark_lines)
    assert any("spark stream cancelled" in line for line in spark_lines)
    assert any("HMAC signature does not match" in line for line in spark_lines)
    assert any("retrying in" in line for line in spark_lines)
