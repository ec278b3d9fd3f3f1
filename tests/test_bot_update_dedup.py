"""End to end: an update Telegram delivers again is answered once, by webhook and by polling,
across a restart too; when the claim cannot be stored the update is still answered.

Every test ends with a sentinel question in the same chat: updates of a chat are handled in
order and its answers one at a time, so once the sentinel's answer is stored, any second
answer to the re-delivered update would have been written already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot.telegram.app import open_bot_runtime
from bot.telegram.dedup import UpdateDeduplicator
from storage.database import Database
from tests.support import db_rows
from tests.support.bot_harness import BotFactory, RunningBot, free_port
from tests.support.telegram_driver import TgChat, TgUser

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _private(bot: RunningBot) -> tuple[TgUser, TgChat]:
    user = bot.driver.user()
    return user, bot.driver.private_chat(user)


async def _settled(bot: RunningBot, chat: TgChat, sentinel_answers: int) -> list[str]:
    """Wait for the sentinel's answer to be shown and stored; the chat's texts and the
    (question, answer) contents stored."""
    await bot.fake.wait_for(lambda: "Sentinel." in bot.replies(chat.id))
    await bot.wait_stored(chat.id, sentinel_answers)
    return bot.replies(chat.id)


async def _turns(bot: RunningBot, chat: TgChat) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in await bot.stored(chat.id)]


def _skipped(caplog: pytest.LogCaptureFixture, update_id: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.telegram.dedup"
        and r.getMessage() == f"update {update_id} already handled, skipped"
    ]


async def test_the_same_update_posted_twice_to_the_webhook_is_answered_once(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.dedup")
    port = free_port()
    bot = await make_bot(
        telegram={"webhook_url": f"https://127.0.0.1:{port}/tg", "host": "127.0.0.1", "port": port}
    )
    secret = str(bot.fake.calls_to("setWebhook")[0].params["secret_token"])
    user, chat = _private(bot)
    update = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Hooked.]] hi"))
    sentinel = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Sentinel.]] ok"))

    async with aiohttp.ClientSession(headers={SECRET_HEADER: secret}) as session:

        async def post(body: dict[str, object]) -> None:
            async with session.post(f"http://127.0.0.1:{port}/tg", json=body) as response:
                assert response.status == 200

        # Telegram posts again after a failed or slow answer; both copies are taken (200).
        await post(update)
        await post(update)
        await bot.wait_stored(chat.id, 1)
        await post(sentinel)

    assert await _settled(bot, chat, 2) == ["Hooked.", "Sentinel."]
    assert bot.questions() == ["[[answer:Hooked.]] hi", "[[answer:Sentinel.]] ok"]
    assert await _turns(bot, chat) == [
        ("user", "[[answer:Hooked.]] hi"),
        ("assistant", "Hooked."),
        ("user", "[[answer:Sentinel.]] ok"),
        ("assistant", "Sentinel."),
    ]
    assert len(await bot.ledger()) == 2
    assert _skipped(caplog, int(update["update_id"])) == [
        f"update {update['update_id']} already handled, skipped"
    ]


async def test_an_update_polled_again_is_answered_once(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.dedup")
    bot = await make_bot()
    user, chat = _private(bot)
    update = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Once.]] hi"))
    await bot.wait_stored(chat.id, 1)

    bot.fake.redeliver(int(update["update_id"]))
    await bot.driver.send_text(chat, user, "[[answer:Sentinel.]] ok")

    assert await _settled(bot, chat, 2) == ["Once.", "Sentinel."]
    assert bot.questions() == ["[[answer:Once.]] hi", "[[answer:Sentinel.]] ok"]
    assert [content for role, content in await _turns(bot, chat) if role == "user"] == [
        "[[answer:Once.]] hi",
        "[[answer:Sentinel.]] ok",
    ]
    assert len(_skipped(caplog, int(update["update_id"]))) == 1


async def test_an_update_delivered_again_after_a_restart_is_answered_once(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    update = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Before.]] hi"))
    await bot.wait_stored(chat.id, 1)
    await bot.close()  # the first bot is gone, its database engine closed

    # A new bot on the same database (and the same Telegram and Spark).
    async with open_bot_runtime(bot.settings, clock=bot.clock) as second:
        serving = asyncio.create_task(second.serve(), name="second bot")
        try:
            await bot.fake.wait_for_call("deleteWebhook", count=2)
            bot.fake.redeliver(int(update["update_id"]))
            await bot.driver.send_text(chat, user, "[[answer:Sentinel.]] ok")
            assert await _settled(bot, chat, 2) == ["Before.", "Sentinel."]
        finally:
            second.request_stop()
            await serving

    assert bot.questions() == ["[[answer:Before.]] hi", "[[answer:Sentinel.]] ok"]
    assert await _turns(bot, chat) == [
        ("user", "[[answer:Before.]] hi"),
        ("assistant", "Before."),
        ("user", "[[answer:Sentinel.]] ok"),
        ("assistant", "Sentinel."),
    ]


@contextlib.contextmanager
def _claims_table_away(bot: RunningBot) -> Iterator[None]:
    """The bot's SQLite file loses its processed_updates table until the block ends."""
    path = bot.settings.database.url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE processed_updates RENAME TO processed_updates_away")
    try:
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("ALTER TABLE processed_updates_away RENAME TO processed_updates")


async def test_an_update_whose_claim_fails_is_answered_with_a_warning(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    user, chat = _private(bot)
    with _claims_table_away(bot):
        message = await bot.driver.send_text(chat, user, "[[answer:Still here.]] hi")
        await bot.fake.wait_for(lambda: bot.replies(chat.id) == ["Still here."])
    update_id = bot.update_json(message)["update_id"]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.telegram.dedup" and r.levelname == "WARNING"
    ]
    assert warnings == [
        f"update {update_id}: could not record it as handled "
        "(OperationalError: no such table: processed_updates); handling it anyway, "
        "a re-delivery of it would be answered again"
    ]
    # With the table back, claims work again.
    await bot.driver.send_text(chat, user, "[[answer:Sentinel.]] ok")
    assert await _settled(bot, chat, 2) == ["Still here.", "Sentinel."]
    assert len(bot.spark.requests) == 2


# -- pruning ---------------------------------------------------------------------------------

START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _claimed(database: Database) -> list[int]:
    found = await db_rows.rows(
        database, "SELECT update_id FROM processed_updates ORDER BY update_id"
    )
    return [row.update_id for row in found]


async def test_claims_older_than_a_day_are_forgotten_at_most_once_a_minute(
    sqlite_database: Database,
) -> None:
    clock = Clock(START)
    timed = Database(sqlite_database.engine, clock=clock)
    dedup = UpdateDeduplicator(timed, bot_id=42)
    try:
        assert await dedup.first_time(1)  # the first claim prunes: nothing yet
        clock.now = START + timedelta(seconds=10)
        assert await dedup.first_time(2)
        clock.now = START + timedelta(days=1, seconds=5)
        assert await dedup.first_time(3)  # due: update 1 is over a day old
        assert await _claimed(timed) == [2, 3]
        clock.now = START + timedelta(days=1, seconds=30)
        assert await dedup.first_time(4)  # update 2 is now old too, but a minute has not passed
        assert await _claimed(timed) == [2, 3, 4]
        clock.now = START + timedelta(days=1, seconds=66)
        assert not await dedup.first_time(3)  # a re-delivery prunes as well
        assert await _claimed(timed) == [3, 4]
    finally:
        await timed.runner.close()  # the engine is the fixture's
