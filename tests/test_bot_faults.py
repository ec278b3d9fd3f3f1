"""End to end when things go wrong: Spark errors, refusals, and Telegram faults mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator

import pytest

from tests.support.bot_harness import BotFactory, RunningBot, spark_pace
from tests.support.fake_telegram import BotApiError
from tests.support.telegram_driver import TgChat, TgUser

# Slow enough that a group answer is still streaming when its first edit is due.
SLOW_FRAMES = spark_pace(frame_interval=0.05, chars_per_frame=12)


def _private(bot: RunningBot, language_code: str = "en") -> tuple[TgUser, TgChat]:
    user = bot.driver.user(language_code=language_code)
    return user, bot.driver.private_chat(user)


async def _shown(bot: RunningBot, chat: TgChat, text: str) -> str:
    return await bot.fake.wait_for(
        lambda: next((t for t in bot.fake.visible_texts(chat.id) if text in t), None)
    )


def _no_handler_failures(caplog: pytest.LogCaptureFixture) -> None:
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert failures == []


# -- Spark errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "language", "expected", "code"),
    [
        (
            "[[error:10013]]",
            "en",
            "⚠️ Spark declined to answer this (content policy). Please rephrase your question.",
            10013,
        ),
        (
            "[[error:11201]]",
            "zh-hans",
            "⚠️ 该模型的星火 token 额度已用完，已通知管理员，请稍后再试。",
            11201,
        ),
        (
            "[[error:10110]]",
            "en",
            "⚠️ Spark is busy right now. Please try again in a minute.",
            10110,
        ),
    ],
    ids=["content", "quota-zh", "busy"],
)
async def test_spark_error_frames_become_friendly_messages(
    make_bot: BotFactory, marker: str, language: str, expected: str, code: int
) -> None:
    bot = await make_bot()  # SPARK_MAX_RETRIES=0: a busy Spark is not asked again
    user, chat = _private(bot, language)
    await bot.driver.send_text(chat, user, f"{marker} hello")
    stored = await bot.wait_stored(chat.id, 1)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [expected])

    answer = stored[-1]
    (request,) = bot.spark.requests
    assert (answer.status, answer.content, answer.error_code) == ("failed", "", code)
    assert answer.sid == request.sid
    (usage,) = await bot.ledger()
    assert (usage.error_code, usage.total_tokens, usage.message_id) == (code, 0, answer.id)


async def test_refused_handshake_is_a_configuration_error(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    # The client reads a refused handshake's reason back with a second signed request.
    bot.spark.inject("handshake-401", times=2)
    await bot.driver.send_text(chat, user, "hello")
    stored = await bot.wait_stored(chat.id, 1)
    await _shown(bot, chat, "The bot is misconfigured.")

    assert bot.fake.visible_texts(chat.id) == [
        "⚠️ The bot is misconfigured. The operator has been told."
    ]
    assert [r.handshake_status for r in bot.spark.requests] == [401, 401]
    assert (stored[-1].status, stored[-1].content) == ("failed", "")
    (usage,) = await bot.ledger()
    assert usage.error_code == -1


async def test_connection_lost_mid_answer_keeps_the_partial_text(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, "[[close-after:3]] [[long:600]] tell me a story")
    stored = await bot.wait_stored(chat.id, 1)
    note = "⚠️ Spark can't be reached right now. Please try again later."
    shown = await _shown(bot, chat, note)

    answer = stored[-1]
    (request,) = bot.spark.requests
    assert request.closed_abruptly
    assert answer.status == "partial"
    assert answer.content == request.answer_text
    assert 0 < len(answer.content) < 600
    assert shown == f"{answer.content.strip()}\n\n{note}"
    (usage,) = await bot.ledger()
    assert (usage.error_code, usage.message_id) == (-1, answer.id)


async def test_question_too_long_is_refused_before_spark(make_bot: BotFactory) -> None:
    bot = await make_bot()  # Spark Lite: a 4K-token context
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, "长" * 20_000)
    shown = await _shown(bot, chat, "Your message is too long for Spark Lite")
    assert shown.endswith("Please shorten it or split it up.")
    stored = await bot.wait_stored(chat.id, 1)
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "failed")]
    assert bot.spark.requests == []
    assert await bot.ledger() == []


# -- Telegram faults -----------------------------------------------------------------------------


async def test_flood_control_mid_stream_waits_out_the_deadline(make_bot: BotFactory) -> None:
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    group = bot.driver.group("Busy group")
    user = bot.driver.user()
    bot.fake.fail_next("editMessageText", BotApiError.too_many_requests(2), chat_id=group.id)
    # Still streaming a group floor after the first message: the 429 meets an edit mid-stream.
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[long:1800]] explain waves")
    stored = await bot.wait_stored(group.id, 1, timeout=20)
    answer = stored[-1].content
    assert len(answer) == 1800
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(group.id) == [answer.strip()])

    (refused,) = [c for c in bot.fake.calls_to("editMessageText") if c.status == 429]
    to_chat = [c for c in bot.fake.calls if c.chat_id == group.id and c is not refused]
    inside = [c.method for c in to_chat if refused.at < c.at < refused.at + 2]
    assert inside == []
    assert any(c.at >= refused.at + 2 for c in to_chat)  # the final text came after it
    assert bot.fake.violations == []
    assert stored[-1].status == "complete"


async def test_deleted_answer_message_ends_the_stream_quietly(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    group = bot.driver.group("Tidy group")
    user = bot.driver.user()
    # Long enough to be still streaming when the next edit, a group floor later, finds the
    # message gone.
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[long:3000]] go on")
    sent = await bot.fake.wait_for_call("sendMessage", chat_id=group.id)
    bot.fake.delete_message(group.id, int(sent.result["message_id"]))

    stored = await bot.wait_stored(group.id, 1, timeout=10)
    answer = stored[-1]
    assert answer.status in ("cancelled", "partial")
    assert 0 < len(answer.content) < 3000
    (request,) = bot.spark.requests
    assert request.client_closed_early  # Spark was not kept writing for nobody
    assert any(c.error == "Bad Request: message to edit not found" for c in bot.fake.calls)
    assert bot.fake.visible_texts(group.id) == []

    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[answer:Still here.]] hi")
    await bot.wait_stored(group.id, 2)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(group.id) == ["Still here."])
    _no_handler_failures(caplog)


async def test_blocked_bot_ends_the_stream_quietly(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, "[[long:1200]] keep talking")
    await bot.fake.wait_for(lambda: len(max(bot.fake.draft_history(chat.id), default="")) > 20)
    bot.fake.block_user(chat.id)

    stored = await bot.wait_stored(chat.id, 1)
    answer = stored[-1]
    assert answer.status in ("cancelled", "partial")
    assert 0 < len(answer.content) < 1200
    await bot.fake.wait_for(lambda: bot.spark.requests[0].client_closed_early)
    assert bot.fake.visible_texts(chat.id) == []
    assert any(c.error == "Forbidden: bot was blocked by the user" for c in bot.fake.calls)
    assert any(
        "bot blocked or removed" in r.getMessage() and str(chat.id) in r.getMessage()
        for r in caplog.records
    )
    (usage,) = await bot.ledger()
    assert usage.message_id == answer.id
    _no_handler_failures(caplog)


@contextlib.contextmanager
def _messages_table_away(bot: RunningBot) -> Iterator[None]:
    """The bot's SQLite file loses its messages table (renamed away) until the block ends."""
    path = bot.settings.database.url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE messages RENAME TO messages_away")
    try:
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("ALTER TABLE messages_away RENAME TO messages")


async def test_a_database_fault_gets_an_apology_and_a_log_line(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, "[[answer:First.]] hi")
    await bot.wait_stored(chat.id, 1)
    with _messages_table_away(bot):  # storing the next question fails
        await bot.driver.send_text(chat, user, "[[answer:Second.]] again")
        apology = await _shown(bot, chat, "went wrong")
    assert apology == (
        "⚠️ Something went wrong on my side and this message was not answered. "
        "Please try again in a moment."
    )
    logged = [r for r in caplog.records if r.getMessage() == f"handler failed for chat {chat.id}"]
    assert logged
    assert "no such table: messages" in str(logged[0].exc_info[1] if logged[0].exc_info else "")
    assert len(bot.spark.requests) == 1  # the failed question cost no Spark tokens

    # Once the database is back, the bot answers again.
    await bot.driver.send_text(chat, user, "[[answer:Third.]] and now")
    await _shown(bot, chat, "Third.")
    stored = await bot.wait_stored(chat.id, 2)  # the answer is stored just after it is shown
    assert [m.content for m in stored if m.role == "assistant"] == [
        "First.",
        "Third.",
    ]


async def test_a_database_fault_while_answering_is_logged_and_the_waiting_user_told(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, "[[slow-first:1]] [[answer:First.]] one")
    await bot.driver.send_text(chat, user, "[[answer:Second.]] two")
    await _shown(bot, chat, "Queued")

    async def first_answer_started() -> bool:
        return any(m.role == "assistant" for m in await bot.stored(chat.id))

    while not await first_answer_started():  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.02)
    # Both questions are stored; the table goes away while the first answer is being written.
    with _messages_table_away(bot):
        await _shown(bot, chat, "First.")  # delivered; only storing it fails
        apology = await _shown(bot, chat, "went wrong")  # the second never started
    assert apology.startswith("⚠️ Something went wrong on my side")
    assert bot.fake.visible_texts(chat.id)[1:] == ["First.", apology]
    failed = [r.getMessage() for r in caplog.records if r.getMessage().endswith("answer failed")]
    assert failed == [f"chat {chat.id}: answer failed"] * 2
    # One question asked; the second answer's socket may have opened ahead, unused.
    assert len([r for r in bot.spark.requests if r.request is not None]) == 1
