"""End to end in private chats: drafts, edits, fallback, formatting, long answers."""

from __future__ import annotations

import re

from bot.spark.simulator import SimulatorOptions
from bot.telegram.formatting import render_markdown
from tests.support.bot_harness import BotFactory
from tests.support.fake_telegram import BotApiError

# Long answers still stream over a few seconds (so parts freeze mid-stream), just not eight.
FAST_LONG_ANSWERS = SimulatorOptions(frame_interval=0.01, chars_per_frame=80)


async def test_private_answer_streams_as_drafts_then_lands_once(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user = bot.driver.user(first_name="Ann")
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "[[long:600]] tell me about tides")

    messages = await bot.wait_stored(chat.id, 1)
    answer = bot.spark.requests[-1].answer_text
    assert len(answer) == 600
    await bot.fake.wait_for(lambda: bot.fake.visible_messages(chat.id))

    visible = bot.fake.visible_texts(chat.id)
    assert visible == [answer.strip()]
    in_chat = [call for call in bot.fake.calls if call.ok and call.chat_id == chat.id]
    assert in_chat[0].method == "sendChatAction"  # "typing…" at once
    drafts = bot.fake.draft_history(chat.id)
    # The first text came before "typing…" faded: no "Thinking…" draft in between.
    assert drafts
    assert all(draft and answer.startswith(draft) for draft in drafts)
    assert not bot.fake.calls_to("editMessageText")
    assert bot.fake.violations == []

    question, stored_answer = messages
    assert (question.role, question.content) == ("user", "[[long:600]] tell me about tides")
    assert (stored_answer.role, stored_answer.status, stored_answer.content) == (
        "assistant",
        "complete",
        answer,
    )
    assert stored_answer.telegram_message_ids == (
        bot.fake.visible_messages(chat.id)[0].message_id,
    )
    (usage,) = await bot.ledger()
    assert (usage.user_id, usage.chat_id) == (user.id, chat.id)
    assert usage.total_tokens > 0
    assert usage.sid == stored_answer.sid
    assert usage.error_code is None


async def test_edit_transport_edits_one_message(make_bot: BotFactory) -> None:
    bot = await make_bot(telegram={"stream_transport": "edit"})
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "[[long:900]] explain")
    await bot.wait_stored(chat.id, 1)
    answer = bot.spark.requests[-1].answer_text
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [answer.strip()])
    assert not bot.fake.calls_to("sendMessageDraft")
    assert len(bot.fake.calls_to("sendMessage", chat_id=chat.id)) == 1
    assert bot.fake.violations == []


async def test_refused_drafts_fall_back_to_edits_for_that_chat(make_bot: BotFactory) -> None:
    bot = await make_bot(fake_options={"drafts_supported": False})
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "first question")
    await bot.wait_stored(chat.id, 1)
    first = bot.spark.requests[-1].answer_text
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [first.strip()])
    drafts_tried = len(bot.fake.calls_to("sendMessageDraft"))
    assert drafts_tried >= 1

    await bot.driver.send_text(chat, user, "second question")
    await bot.wait_stored(chat.id, 2)
    second = bot.spark.requests[-1].answer_text
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(chat.id)) == 2)
    assert bot.fake.visible_texts(chat.id)[1] == second.strip()
    assert len(bot.fake.calls_to("sendMessageDraft")) == drafts_tried  # never tried again


async def test_markdown_is_rendered_as_entities(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "[[markdown]] show formatting")
    await bot.wait_stored(chat.id, 1)
    answer = bot.spark.requests[-1].answer_text
    expected = render_markdown(answer)
    await bot.fake.wait_for(lambda: bot.fake.visible_messages(chat.id))
    (shown,) = bot.fake.visible_messages(chat.id)
    assert shown.text == expected.text
    kinds = {entity["type"] for entity in shown.entities}
    assert {"bold", "italic", "code", "pre", "text_link"} <= kinds


async def test_refused_formatting_falls_back_to_plain_text(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    bot.fake.fail_next("sendMessage", BotApiError.cant_parse_entities(), chat_id=chat.id)
    await bot.driver.send_text(chat, user, "[[markdown]] show formatting")
    stored = await bot.wait_stored(chat.id, 1)
    assert stored[-1].status == "complete"
    await bot.fake.wait_for(lambda: bot.fake.visible_messages(chat.id))
    (shown,) = bot.fake.visible_messages(chat.id)
    assert shown.entities == []
    # The plain fallback is the answer's own text: nothing hidden, link targets included.
    assert shown.text == stored[-1].content.strip()


async def test_ten_thousand_character_answer_is_split_never_truncated(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(simulator_options=FAST_LONG_ANSWERS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "[[long:10000]] write a lot")
    stored = await bot.wait_stored(chat.id, 1, timeout=30)
    answer = stored[-1].content
    assert len(answer) == 10000
    await bot.fake.wait_for(lambda: len(bot.fake.visible_messages(chat.id)) >= 3, timeout=15)
    visible = bot.fake.visible_texts(chat.id)
    assert all(len(text.encode("utf-16-le")) // 2 <= 4096 for text in visible)
    assert _squeeze("".join(visible)) == _squeeze(render_markdown(answer).text)
    assert bot.fake.violations == []


async def test_plain_long_answer_visible_text_equals_spark_text(make_bot: BotFactory) -> None:
    paragraph = "Tides rise and fall twice a day because the Moon pulls on the oceans. " * 12
    text = "\n\n".join(f"{n}. {paragraph.strip()}" for n in range(1, 12))
    bot = await make_bot(simulator_options=FAST_LONG_ANSWERS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, f"[[answer:{text}]]")
    stored = await bot.wait_stored(chat.id, 1, timeout=30)
    assert stored[-1].content == text
    await bot.fake.wait_for(lambda: len(bot.fake.visible_messages(chat.id)) >= 3, timeout=15)
    visible = bot.fake.visible_texts(chat.id)
    assert "\n\n".join(visible) == text


def _squeeze(text: str) -> str:
    """Without whitespace: Telegram trims each part, so only boundary whitespace may differ."""
    return re.sub(r"\s+", "", text)
