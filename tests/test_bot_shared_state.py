"""The bot with REDIS_URL (state shared with other processes): when Redis goes away it takes no
question without the shared counts, tells the user so in a sentence, keeps the question, and
answers again once Redis is back. Needs TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from redis.asyncio import Redis

from tests.support.bot_harness import BotFactory, RunningBot
from tests.support.tcp_proxy import TcpProxy

UNAVAILABLE = (
    "⚠️ I can't take questions for a moment (my shared state is unreachable). "
    "Please send this again in a minute."
)


async def _replies(bot: RunningBot, chat_id: int, count: int) -> list[str]:
    return await bot.fake.wait_for(
        lambda: texts if len(texts := bot.fake.visible_texts(chat_id)) >= count else None
    )


async def test_redis_lost_while_running_refuses_questions_clearly_and_keeps_them(
    make_bot: BotFactory, postgres_url: str, redis: Redis, redis_prefix: str
) -> None:
    target = urlsplit(os.environ["TEST_REDIS_URL"])
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        bot = await make_bot(
            database_url=postgres_url,
            redis={"url": f"redis://127.0.0.1:{proxy.port}{target.path}", "prefix": redis_prefix},
        )
        user = bot.driver.user()
        chat = bot.driver.private_chat(user)
        await bot.driver.send_text(chat, user, "[[answer:First.]] one")
        assert (await _replies(bot, chat.id, 1))[0] == "First."

        proxy.cut()
        await bot.driver.send_text(chat, user, "[[answer:Second.]] two")
        assert (await _replies(bot, chat.id, 2))[1] == UNAVAILABLE

        proxy.restore()
        await bot.driver.send_text(chat, user, "[[answer:Third.]] three")
        assert (await _replies(bot, chat.id, 3))[2] == "Third."
        assert bot.questions() == ["[[answer:First.]] one", "[[answer:Third.]] three"]
        stored = await bot.wait_stored(chat.id, 3)
        questions = [message.content for message in stored if message.role == "user"]
        assert questions == [
            "[[answer:First.]] one",
            "[[answer:Second.]] two",  # kept, marked unanswered
            "[[answer:Third.]] three",
        ]
        await bot.stop()
