"""Two bot runtimes on one Redis (and one PostgreSQL) sending through the Bot API fake, which
enforces Telegram's global limit: the send budget they share keeps them both within it, where
a budget each would have sent twice as much. Real time: Redis counts on its own clock.
Needs TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL."""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from bot.telegram.app import BotRuntime, open_bot_runtime
from bot.telegram.budgeted_reply import send_budgeted
from tests.support.bot_harness import BotFactory
from tests.support.clocks import ScaledClock
from tests.support.fake_telegram import FloodLimits

PER_SECOND = 5
CHATS_EACH = 8


async def test_two_processes_keep_one_global_budget_together(
    make_bot: BotFactory, postgres_url: str, redis: Redis, redis_prefix: str
) -> None:
    bot = await make_bot(
        database_url=postgres_url,
        redis={"url": os.environ["TEST_REDIS_URL"], "prefix": redis_prefix},
        clock=ScaledClock(1.0),
        telegram={"send_global_per_second": PER_SECOND},
        # Telegram's limit at the bot's setting; one call to spare for the network's jitter
        # between a grant and the call's arrival. Each process on a budget of its own would
        # send ten in the first second here, and meet 429s.
        limits=FloodLimits(global_per_second=PER_SECOND, global_burst=PER_SECOND + 1),
    )
    chats = [bot.driver.private_chat(bot.driver.user()) for _ in range(2 * CHATS_EACH)]

    async def send_all(runtime: BotRuntime, number: int) -> list[bool]:
        mine = chats[number * CHATS_EACH : (number + 1) * CHATS_EACH]
        return await asyncio.gather(
            *(
                send_budgeted(
                    runtime.scheduler,
                    chat.id,
                    lambda chat_id=chat.id: runtime.application.bot.send_message(  # type: ignore[misc]
                        chat_id, f"note {chat_id}"
                    ),
                    is_group=False,
                )
                for chat in mine
            )
        )

    # A second process of the same bot (it takes no updates here: it only sends).
    async with open_bot_runtime(bot.settings, clock=bot.clock) as second:
        sent = await asyncio.gather(send_all(bot.runtime, 0), send_all(second, 1))
        # Counted under this bot's own id, so another bot on the same Redis has its own.
        keys = {key.decode() async for key in redis.scan_iter(match=f"{redis_prefix}send:*")}
        assert f"{redis_prefix}send:{bot.fake.bot_id}:w:global" in keys

    assert list(sent) == [[True] * CHATS_EACH, [True] * CHATS_EACH]
    for chat in chats:
        assert bot.fake.visible_texts(chat.id) == [f"note {chat.id}"]
    assert [call for call in bot.fake.calls if call.status == 429] == []
    assert bot.fake.violations == []
