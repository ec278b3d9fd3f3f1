"""End to end: Telegram failing around an answer never loses, hides or misreports it.

A Bot API failure before or between updates costs nothing (the stream goes on and the final
text lands); a final text Telegram never took is stored ``undelivered`` and can be asked for
again; a blank answer is shown as a note; short replies wait their turn instead of vanishing;
a shutdown under a long 429 stays within its grace and stores what was written.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bot.spark.simulator import SimulatorOptions
from storage.dto import LEDGER_UNDELIVERED
from tests.support.bot_harness import (
    BotFactory,
    ProcessFactory,
    RunningBot,
    spark_pace,
    stored_answers,
)
from tests.support.fake_telegram import BotApiError
from tests.support.spark_fixtures import SimulatorFactory
from tests.support.telegram_driver import TelegramDriver, TgChat, TgUser
from tests.support.telegram_fixtures import FakeFactory
from tests.test_bot_lifecycle import START_TIMEOUT, _process_env

BAD_GATEWAY = BotApiError(502, "Bad Gateway")
SLOW_FRAMES = spark_pace(frame_interval=0.05, chars_per_frame=12)
# The same pace for a bot process, which lives in real time.
SLOW_FRAMES_REAL_TIME = SimulatorOptions(frame_interval=0.05, chars_per_frame=12)
EMPTY_NOTE = "(empty answer: Spark returned no text. Try /retry or rephrase.)"


def _private(bot: RunningBot) -> tuple[TgUser, TgChat]:
    user = bot.driver.user()
    return user, bot.driver.private_chat(user)


async def _shown(bot: RunningBot, chat: TgChat, text: str) -> str:
    return await bot.fake.wait_for(
        lambda: next((t for t in bot.fake.visible_texts(chat.id) if text in t), None)
    )


# -- a transient failure costs nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "times"),
    [("sendMessageDraft", 1), ("sendMessageDraft", 2)],
    ids=["first-draft", "first-drafts"],
)
async def test_bot_api_failure_on_the_first_drafts_does_not_cost_the_answer(
    make_bot: BotFactory, method: str, times: int
) -> None:
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    user, chat = _private(bot)
    bot.fake.fail_next(method, BAD_GATEWAY, times=times, chat_id=chat.id)
    await bot.driver.send_text(chat, user, "[[long:1200]] tell me")
    stored = await bot.wait_stored(chat.id, 1)

    answer = stored[-1]
    (request,) = bot.spark.requests
    assert (answer.status, answer.content) == ("complete", request.answer_text)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [answer.content.strip()])
    failed = [c for c in bot.fake.calls_to(method) if c.status == 502]
    assert len(failed) == times
    (usage,) = await bot.ledger()
    assert (usage.error_code, usage.message_id) == (None, answer.id)


@pytest.mark.parametrize(
    "method", ["sendChatAction", "sendMessage", "editMessageText"], ids=lambda m: m
)
async def test_bot_api_failure_between_group_updates_does_not_cost_the_answer(
    make_bot: BotFactory, method: str
) -> None:
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    group = bot.driver.group("Flaky group")
    user = bot.driver.user()
    bot.fake.fail_next(method, BAD_GATEWAY, chat_id=group.id)
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[long:700]] explain")
    stored = await bot.wait_stored(group.id, 1, timeout=20)

    answer = stored[-1]
    assert (answer.status, len(answer.content)) == ("complete", 700)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(group.id) == [answer.content.strip()])
    assert [c.status for c in bot.fake.calls_to(method) if c.status != 200] == [502]
    assert bot.fake.violations == []


# -- an answer the user never saw -------------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [BotApiError.blocked_by_user(), BotApiError(400, "Bad Request: message must be non-empty")],
    ids=["blocked-before-delivery", "final-refused"],
)
async def test_an_answer_that_never_reached_the_user_is_stored_undelivered(
    make_bot: BotFactory, refusal: BotApiError
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    bot.fake.fail_next("sendMessage", refusal, chat_id=chat.id)
    await bot.driver.send_text(chat, user, "[[answer:Lost on the way.]] hi")
    stored = await bot.wait_stored(chat.id, 1)

    answer = stored[-1]
    assert (answer.status, answer.content) == ("undelivered", "Lost on the way.")
    assert answer.telegram_message_ids == ()
    assert bot.fake.visible_texts(chat.id) == []
    (usage,) = await bot.ledger()
    assert (usage.error_code, usage.message_id) == (LEDGER_UNDELIVERED, answer.id)
    assert usage.total_tokens > 0  # Spark charged for it all the same

    # The user can have it again: /retry asks once more and this time it lands.
    await bot.driver.send_command(chat, user, "/retry")
    await _shown(bot, chat, "Lost on the way.")
    stored = await bot.wait_stored(chat.id, 2)
    assert [(m.role, m.status) for m in stored] == [
        ("user", "complete"),
        ("assistant", "superseded"),
        ("assistant", "complete"),
    ]
    assert len(bot.spark.requests) == 2


@pytest.mark.parametrize("blank", ["   ", "\u200b\u200b", " \u200d \ufeff "], ids=repr)
async def test_a_blank_answer_is_shown_as_a_note(make_bot: BotFactory, blank: str) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    await bot.driver.send_text(chat, user, f"[[answer:{blank}]] say nothing")
    stored = await bot.wait_stored(chat.id, 1)
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [EMPTY_NOTE])
    answer = stored[-1]
    assert (answer.status, answer.content) == ("complete", blank)


# -- short replies wait their turn -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [("/help", "/new"), ("/usage", "Your token usage"), ("/new", "New conversation")],
    ids=["help", "usage", "new"],
)
async def test_a_command_reply_meeting_a_429_waits_and_is_sent(
    make_bot: BotFactory, command: str, expected: str
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    bot.fake.fail_next("sendMessage", BotApiError.too_many_requests(1), chat_id=chat.id)
    await bot.driver.send_command(chat, user, command)
    shown = await _shown(bot, chat, expected)
    assert len(bot.fake.visible_texts(chat.id)) == 1, shown
    assert bot.fake.violations == []


async def test_a_burst_in_one_chat_gets_every_queued_note_and_every_answer(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    count = 8
    for n in range(count):
        # The first answer is slow to start, so every later question surely waits behind it.
        slow = "[[slow-first:1]]" if n == 0 else ""
        await bot.driver.send_text(chat, user, f"{slow}[[answer:Answer {n}.]] question {n}")
    await bot.wait_stored(chat.id, count, timeout=40)
    await bot.fake.wait_for(
        lambda: sum(t.startswith("Answer ") for t in bot.fake.visible_texts(chat.id)) == count,
        timeout=40,
    )
    texts = bot.fake.visible_texts(chat.id)
    assert [t for t in texts if t.startswith("Answer ")] == [f"Answer {n}." for n in range(count)]
    notes = [t for t in texts if t.startswith("⏳ Queued")]
    assert len(notes) == count - 1  # every question but the first waited behind another
    assert [c for c in bot.fake.calls if c.status == 429] == []
    assert bot.fake.violations == []


# -- shutdown under a long 429 --------------------------------------------------------------


async def test_shutdown_under_a_long_429_stays_within_its_grace_and_stores_the_answer(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    fake = await make_fake_telegram()
    simulator = await make_spark_simulator(options=SLOW_FRAMES_REAL_TIME)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    process = bot_process(_process_env(fake, simulator, database_url))  # grace: 1 s
    await process.start()
    await fake.wait_for_call("deleteWebhook", timeout=START_TIMEOUT)

    driver = TelegramDriver(fake)
    group = driver.group("Crowded group")
    user = driver.user()
    fake.fail_next("editMessageText", BotApiError.too_many_requests(25), chat_id=group.id)
    await driver.send_command(group, user, "/ask@spark_test_bot [[long:5000]] go on")
    refused = await fake.wait_for(
        lambda: next((c for c in fake.calls_to("editMessageText") if c.status == 429), None),
        timeout=20,
    )
    process.signal(signal.SIGTERM)
    # Grace (1 s) plus the fixed 3 s margin, and the interpreter's own exit: nowhere near the
    # chat's 25 s deadline. The bound leaves room for a machine busy with other tests.
    assert await process.wait(timeout=12) == 0

    (answer,) = await stored_answers(database_url, group.id)
    assert answer.status == "partial"  # marked before exit, not at the next start
    assert len(answer.content) > 0
    assert simulator.requests[0].planned_answer.startswith(answer.content)
    assert [c for c in fake.calls if c.chat_id == group.id and c.at > refused.at] == []
    assert fake.violations == []
    assert "interrupted by the last shutdown" not in process.stderr
