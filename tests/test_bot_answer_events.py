"""End to end: what each kind of streamed event looks like to a Telegram user."""

from __future__ import annotations

from tests.support.bot_harness import BotFactory, spark_pace

# Reasoning streams for about two seconds: long enough for the 1 s private floor to show it.
SLOW_THINKER = spark_pace(frame_interval=0.05, chars_per_frame=4)


async def test_a_reasoning_model_previews_its_thinking_then_shows_only_the_answer(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(spark={"model": "x1"}, simulator_options=SLOW_THINKER)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "why is the sky blue?")

    _, stored = await bot.wait_stored(chat.id, 1)
    record = bot.spark.requests[-1]
    assert record.reasoning.startswith("The user asks: why is the sky blue?")
    await bot.fake.wait_for(lambda: bot.fake.visible_messages(chat.id))
    drafts = bot.fake.draft_history(chat.id)
    thinking = [draft for draft in drafts if draft.startswith("💭 ")]
    assert thinking, drafts
    assert all(record.reasoning.startswith(draft.removeprefix("💭 ")) for draft in thinking)
    # The answer replaces the preview; the reasoning is neither kept on screen nor stored.
    assert bot.fake.visible_texts(chat.id) == [record.answer_text.strip()]
    assert (stored.status, stored.content) == ("complete", record.answer_text)
