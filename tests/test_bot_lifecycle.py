"""End to end over the bot's life: SIGTERM and SIGKILL mid-stream, webhook mode, log hygiene.

The shutdown tests run ``python -m bot`` as a child process, exactly as an operator does,
against the in-process Bot API fake and Spark simulator.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import pytest

from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from storage.dto import StoredMessage
from tests.support.bot_harness import (
    BotFactory,
    ProcessFactory,
    free_port,
    stored_answers,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.spark_fixtures import SimulatorFactory, spark_env
from tests.support.telegram_driver import TelegramDriver
from tests.support.telegram_fixtures import FakeFactory

# About 20 s of writing: still streaming whenever the test acts.
SLOW_ANSWER = SimulatorOptions(frame_interval=0.05, chars_per_frame=12)
INTERRUPTED = "⏹ Interrupted: the bot was restarting. Send /retry to continue."
START_TIMEOUT = 20.0  # a cold child imports ptb, SQLAlchemy and runs migrations


def _process_env(
    fake: FakeTelegram, simulator: SparkSimulator, database_url: str
) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE_URL": fake.root_url,
        **spark_env(simulator.base_url),
        "DATABASE_URL": database_url,
        "SHUTDOWN_GRACE_SECONDS": "1",
        "LOG_LEVEL": "DEBUG",
    }


def _secrets(fake: FakeTelegram) -> list[str]:
    credentials = Credentials.demo()
    return [fake.token, fake.token.split(":", 1)[1], credentials.api_key, credentials.api_secret]


def _leaks(text: str, secrets: Iterable[str]) -> list[str]:
    found = [secret for secret in secrets if secret in text]
    if "authorization=" in text.lower():
        found.append("authorization=")
    return found


async def test_sigterm_mid_stream_interrupts_the_answer_visibly_and_exits_cleanly(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    fake = await make_fake_telegram()
    simulator = await make_spark_simulator(options=SLOW_ANSWER)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    process = bot_process(_process_env(fake, simulator, database_url))
    await process.start()
    await fake.wait_for_call("deleteWebhook", timeout=START_TIMEOUT)

    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    await driver.send_text(chat, user, "[[long:5000]] tell me everything")
    await fake.wait_for(lambda: len(max(fake.draft_history(chat.id), default="")) > 60)
    await driver.send_text(chat, user, "and then?")  # waits behind the first answer
    await fake.wait_for(lambda: any("Queued" in t for t in fake.visible_texts(chat.id)))
    process.signal(signal.SIGTERM)
    assert await process.wait(timeout=8) == 0

    # The dropped question's note and the interrupted answer go out concurrently.
    queued_note, *rest = fake.visible_texts(chat.id)
    assert queued_note.startswith("⏳ Queued")
    (shown,) = [t for t in rest if t.endswith(INTERRUPTED)]
    assert [t for t in rest if t != shown] == [
        "⏹ The bot is restarting and did not get to this question. "
        "Please send it again in a minute."
    ]
    answer, unanswered = await stored_answers(database_url, chat.id)
    assert answer.status == "partial"
    assert 60 < len(answer.content) < 5000
    assert simulator.requests[0].planned_answer.startswith(answer.content)
    assert shown.startswith(answer.content.strip()[:60])
    (answer_message,) = [m for m in fake.visible_messages(chat.id) if m.text == shown]
    assert answer.telegram_message_ids == (answer_message.message_id,)
    assert (unanswered.status, unanswered.content) == ("failed", "")
    assert len(simulator.requests) == 1  # the dropped question cost no Spark tokens
    log = process.stderr
    assert "shutting down: 1 answers in flight, 1 queued" in log
    assert "queued question dropped at shutdown" in log
    assert _leaks(log, _secrets(fake)) == []


async def test_answer_cut_by_a_crash_is_marked_partial_at_the_next_start(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    fake = await make_fake_telegram()
    simulator = await make_spark_simulator(options=SLOW_ANSWER)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    env = _process_env(fake, simulator, database_url)
    first = bot_process(env, "first")
    await first.start()
    await fake.wait_for_call("deleteWebhook", timeout=START_TIMEOUT)

    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    await driver.send_text(chat, user, "[[long:5000]] tell me everything")
    # Wait for a checkpoint of the partial text (every 3 s), then die without a word.
    await fake.wait_for(lambda: fake.draft_history(chat.id), timeout=START_TIMEOUT)
    streamed: list[StoredMessage] = []
    async with asyncio.timeout(10):
        while not (streamed and streamed[0].content):
            await asyncio.sleep(0.2)
            streamed = await stored_answers(database_url, chat.id)
    assert streamed[0].status == "streaming"
    first.signal(signal.SIGKILL)
    assert await first.wait(timeout=5) == -signal.SIGKILL

    second = bot_process(env, "second")
    await second.start()
    await fake.wait_for_call("deleteWebhook", count=2, timeout=START_TIMEOUT)
    (recovered,) = await stored_answers(database_url, chat.id)
    assert recovered.status == "partial"
    assert recovered.content.startswith(streamed[0].content)
    assert recovered.content
    assert "marked 1 answers interrupted by the last shutdown as partial" in second.stderr

    second.signal(signal.SIGTERM)
    assert await second.wait(timeout=8) == 0
    assert _leaks(first.stderr + second.stderr, _secrets(fake)) == []


async def test_webhook_mode_checks_the_secret_token(make_bot: BotFactory) -> None:
    port = free_port()
    bot = await make_bot(
        telegram={
            # Telegram only posts to HTTPS; TLS ends at the proxy in front of PORT.
            "webhook_url": f"https://127.0.0.1:{port}/tg",
            "host": "127.0.0.1",
            "port": port,
        }
    )
    (registered,) = bot.fake.calls_to("setWebhook")
    assert registered.params["url"] == f"https://127.0.0.1:{port}/tg"
    # Telegram's most, not its 40: updates are answered once stored, so this bounds intake.
    assert registered.params["max_connections"] == 100
    secret = str(registered.params["secret_token"])
    assert 16 <= len(secret) <= 256
    assert not bot.fake.calls_to("getUpdates")

    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    update = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Hooked.]] hi"))
    local = f"http://127.0.0.1:{port}/tg"
    async with aiohttp.ClientSession() as session:
        async with session.post(local, json=update) as response:
            assert response.status == 403
        async with session.post(
            local, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret + "x"}
        ) as response:
            assert response.status == 403
        assert bot.spark.requests == []
        async with session.post(
            local, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        ) as response:
            assert response.status == 200

    await bot.wait_stored(chat.id, 1)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == ["Hooked."])
    assert bot.questions() == ["[[answer:Hooked.]] hi"]


async def test_no_secret_reaches_the_log(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As in production (bot.logs.configure_logging): httpx would print Bot API URLs, which
    # carry the token, so it is kept at WARNING. Every other logger is captured at DEBUG.
    caplog.set_level(logging.WARNING, logger="httpx")
    bot = await make_bot()
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    questions = [
        "[[answer:Fine.]] how are you?",
        "[[error:10013]] something rude",
        "[[close-after:2]] [[long:200]] a story",
        "handshake refused",
        "[[error:11200]] unauthorised",
    ]
    for number, question in enumerate(questions, start=1):
        if question == "handshake refused":
            bot.spark.inject("handshake-401", times=2)
        await bot.driver.send_text(chat, user, question)
        await bot.wait_stored(chat.id, number)
    statuses = [m.status for m in await bot.stored(chat.id) if m.role == "assistant"]
    assert statuses == ["complete", "failed", "partial", "failed", "failed"]

    captured = "\n".join([caplog.text, *(record.getMessage() for record in caplog.records)])
    assert "Spark failed" in captured  # the failures were logged, with their details
    assert _leaks(captured, [*_secrets(bot.fake)]) == []
