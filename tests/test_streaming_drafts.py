"""A draft stays on screen while Spark is silent: the answer re-sends it before Telegram's ~30 s
expiry. TelegramAnswer against the Bot API fake over real HTTP, with a short refresh interval."""

from __future__ import annotations

import asyncio
import itertools

from telegram import Bot

from bot.service.events import Finished, TextDelta
from bot.telegram.flood import FloodControl
from bot.telegram.streaming import ChatTarget, DraftSupport, StreamTuning, TelegramAnswer
from storage.dto import MessageStatus
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_driver import TelegramDriver

REFRESH = 1.5  # above the bot's own 1 s private-chat floor, so each refresh is due, not deferred


async def test_a_silent_wait_keeps_the_draft_on_screen_until_the_answer_lands(
    fake_telegram: FakeTelegram, telegram_driver: TelegramDriver, ptb_bot: Bot
) -> None:
    chat = telegram_driver.private_chat(telegram_driver.user())
    answer = TelegramAnswer(
        ptb_bot,
        FloodControl(),
        ChatTarget(chat_id=chat.id, is_group=False, thread_id=None, reply_to_message_id=None),
        mode="draft",
        drafts=DraftSupport(),
        draft_id=7,
        tuning=StreamTuning(draft_refresh=REFRESH),
    )
    await answer.start()
    await asyncio.sleep(REFRESH * 2 + 0.75)  # Spark says nothing for a while
    thinking = fake_telegram.drafts(chat.id)
    assert [d.text for d in thinking] == ["", "", ""]  # "Thinking…", then two refreshes
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(thinking)]
    assert all(REFRESH - 0.05 < gap < REFRESH * 1.5 for gap in gaps), gaps  # due, never early

    answer.event(TextDelta("The first words"))
    await fake_telegram.wait_for(lambda: fake_telegram.current_draft(chat.id) == "The first words")
    await asyncio.sleep(REFRESH + 0.75)  # silent again: the text so far is re-sent, not lost
    texts = [d.text for d in fake_telegram.drafts(chat.id)]
    assert texts[3:] == ["The first words", "The first words"]

    delivery = await answer.finish(
        Finished("The first words, and the rest.", MessageStatus.COMPLETE)
    )
    assert delivery.complete
    assert fake_telegram.visible_texts(chat.id) == ["The first words, and the rest."]
    assert fake_telegram.current_draft(chat.id) is None
    count = len(fake_telegram.drafts(chat.id))
    await asyncio.sleep(REFRESH + 0.2)
    assert len(fake_telegram.drafts(chat.id)) == count  # no refresh after the answer landed
    assert fake_telegram.violations == []
