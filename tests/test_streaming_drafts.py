"""A draft stays on screen while Spark is silent: the answer re-sends it before Telegram's ~30 s
expiry. TelegramAnswer against the Bot API fake over real HTTP, with the production refresh
interval, on one clock shared with the fake that runs faster than real time; the call times
compared below are on that clock. After the question's early "typing…", "Thinking…" waits until
that fades."""

from __future__ import annotations

import itertools

from telegram import Bot

from bot.service.events import Finished, TextDelta
from bot.telegram.send_scheduler import SendScheduler
from bot.telegram.streaming import ChatTarget, DraftSupport, StreamTuning, TelegramAnswer
from storage.dto import MessageStatus
from tests.support.clocks import ScaledClock
from tests.support.fake_telegram import DRAFT_TTL, DraftFrame, FakeTelegram
from tests.support.telegram_driver import TelegramDriver
from tests.support.telegram_fixtures import FakeFactory, bot_for

REFRESH = StreamTuning().draft_refresh  # 20 s, due well before the draft's 30 s on screen
# A refresh every 20 s passes in a second; a draft that went missing for 10 s (half a second
# of real time) would still be caught.
FACTOR = 20.0
WAIT = 10.0  # real seconds: a few refresh intervals and then some


def _gaps(frames: list[DraftFrame]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(frames)]


async def _on_a_fast_clock(
    make_fake_telegram: FakeFactory,
) -> tuple[ScaledClock, FakeTelegram, TelegramDriver, SendScheduler]:
    """The fake and a send scheduler on one clock that runs FACTOR times real time."""
    clock = ScaledClock(FACTOR)
    fake = await make_fake_telegram(clock=clock.now)
    return clock, fake, TelegramDriver(fake), SendScheduler(clock=clock)


def _silent_answer(
    bot: Bot,
    scheduler: SendScheduler,
    chat_id: int,
    draft_id: int,
    typed_at: float | None = None,
) -> TelegramAnswer:
    return TelegramAnswer(
        bot,
        scheduler,
        ChatTarget(chat_id=chat_id, is_group=False, thread_id=None, reply_to_message_id=None),
        mode="draft",
        drafts=DraftSupport(),
        draft_id=draft_id,
        typed_at=typed_at,
    )


async def test_a_silent_wait_keeps_the_draft_on_screen_until_the_answer_lands(
    make_fake_telegram: FakeFactory,
) -> None:
    _clock, fake, driver, scheduler = await _on_a_fast_clock(make_fake_telegram)
    chat = driver.private_chat(driver.user())
    async with bot_for(fake) as bot:
        answer = _silent_answer(bot, scheduler, chat.id, draft_id=7)
        await answer.start()
        # Spark says nothing for a while: "Thinking…", then two refreshes.
        await fake.wait_for(lambda: len(fake.drafts(chat.id)) >= 3, WAIT)
        thinking = fake.drafts(chat.id)
        assert [d.text for d in thinking] == ["", "", ""]
        # Each refresh is due (never early) and comes while the one before is still on screen.
        assert all(REFRESH <= gap < DRAFT_TTL for gap in _gaps(thinking)), _gaps(thinking)

        answer.event(TextDelta("The first words"))
        await fake.wait_for(lambda: fake.current_draft(chat.id) == "The first words")
        # Silent again: the text so far is re-sent, not lost.
        await fake.wait_for(lambda: len(fake.drafts(chat.id)) >= 5, WAIT)
        texts = [d.text for d in fake.drafts(chat.id)]
        assert texts[3:] == ["The first words", "The first words"]
        shown = fake.drafts(chat.id)[3:]
        assert all(REFRESH <= gap < DRAFT_TTL for gap in _gaps(shown)), _gaps(shown)

        delivery = await answer.finish(
            Finished("The first words, and the rest.", MessageStatus.COMPLETE)
        )
        assert delivery.complete
        assert fake.visible_texts(chat.id) == ["The first words, and the rest."]
        assert fake.current_draft(chat.id) is None
        count = len(fake.drafts(chat.id))

        # The sentinel: a next silent answer in the chat, until its "Thinking…" is refreshed.
        # A refresh of the first answer would have been due before that one.
        sentinel = _silent_answer(bot, scheduler, chat.id, draft_id=8)
        await sentinel.start()
        await fake.wait_for(lambda: sum(d.draft_id == 8 for d in fake.drafts(chat.id)) >= 2, WAIT)
        await sentinel.aclose()
    assert [d.draft_id for d in fake.drafts(chat.id)[count:]] == [8, 8]
    assert fake.violations == []


async def test_after_typing_thinking_shows_only_once_typing_fades_without_text(
    make_fake_telegram: FakeFactory,
) -> None:
    clock, fake, driver, scheduler = await _on_a_fast_clock(make_fake_telegram)
    silent_chat = driver.private_chat(driver.user())
    quick_chat = driver.private_chat(driver.user())
    typing = StreamTuning().typing_interval
    async with bot_for(fake) as bot:
        typed_at = clock.now()  # the early "typing…" of both questions went out just now
        silent = _silent_answer(bot, scheduler, silent_chat.id, draft_id=1, typed_at=typed_at)
        quick = _silent_answer(bot, scheduler, quick_chat.id, draft_id=2, typed_at=typed_at)
        await silent.start()
        await quick.start()
        quick.event(TextDelta("Straight to the point"))

        # Spark silent: "Thinking…" once the typing fades, not before.
        await fake.wait_for(lambda: fake.drafts(silent_chat.id), WAIT)
        (thinking,) = fake.drafts(silent_chat.id)
        assert thinking.text == ""
        assert typing <= thinking.at - typed_at < typing + 1.0
        # Text before the typing faded: it is the first draft, and no "Thinking…" follows.
        assert [d.text for d in fake.drafts(quick_chat.id)] == ["Straight to the point"]

        await quick.finish(Finished("Straight to the point.", MessageStatus.COMPLETE))
        await silent.finish(Finished("At last.", MessageStatus.COMPLETE))
    assert [d.text for d in fake.drafts(quick_chat.id)] == ["Straight to the point"]
    assert fake.visible_texts(quick_chat.id) == ["Straight to the point."]
    assert fake.visible_texts(silent_chat.id) == ["At last."]
    assert fake.violations == []
