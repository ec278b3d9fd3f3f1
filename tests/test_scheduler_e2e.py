"""The send scheduler end to end: the real bot against the Bot API fake, which enforces
Telegram's limits and records every call. Final texts in the order Spark finished under a
tight global budget; a draft limit lower than the bot's learnt from 429s."""

from __future__ import annotations

from tests.support.bot_harness import BotFactory, spark_pace
from tests.support.fake_telegram import FloodLimits


async def test_final_texts_go_in_the_order_spark_finished_under_a_tight_budget(
    make_bot: BotFactory,
) -> None:
    # Edits count toward the global budget: six streams' refreshes compete with the finals
    # for one call a second.
    bot = await make_bot(
        telegram={"stream_transport": "edit", "send_global_per_second": 1},
        simulator_options=spark_pace(frame_interval=0.1, chars_per_frame=20),
        # This server holds the bot to the same one a second (a burst of two leaves room for
        # the network's jitter between the bot's grant and the call's arrival): a bot that
        # kept to Telegram's default budget instead of the setting would get 429s here.
        limits=FloodLimits(global_per_second=1.0, global_burst=2),
    )
    lengths = [900, 300, 1200, 600, 1500, 450]  # Spark finishes the shortest first
    chats = []
    for length in lengths:
        user = bot.driver.user()
        chat = bot.driver.private_chat(user)
        chats.append(chat)
        await bot.driver.send_text(chat, user, f"[[long:{length}]] question of {length}")
    for chat in chats:
        await bot.wait_stored(chat.id, 1, timeout=60)
    answers = {
        chat.id: next(
            r.answer_text for r in bot.spark.requests if f"question of {length}" in str(r.question)
        )
        for chat, length in zip(chats, lengths, strict=True)
    }
    await bot.fake.wait_for(
        lambda: all(bot.fake.visible_texts(cid) == [a.strip()] for cid, a in answers.items()),
        timeout=30,
    )
    final_at = {
        cid: min(
            call.at
            for call in bot.fake.calls
            if call.ok
            and call.chat_id == cid
            and call.method in ("sendMessage", "editMessageText")
            and call.params.get("text") == answer.strip()
        )
        for cid, answer in answers.items()
    }
    by_finish = [chat.id for _, chat in sorted(zip(lengths, chats, strict=True))]
    assert sorted(final_at, key=final_at.__getitem__) == by_finish
    assert not [call for call in bot.fake.calls if call.status == 429]
    assert bot.fake.violations == []


async def test_a_draft_limit_lower_than_ours_is_learnt_from_429s(make_bot: BotFactory) -> None:
    # This server takes a draft only every 2.5 s per chat; the bot's budget is one a second.
    bot = await make_bot(
        limits=FloodLimits(draft_per_second=0.4, draft_burst=1),
        simulator_options=spark_pace(frame_interval=0.5, chars_per_frame=20),
    )
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "[[long:1200]] a long one")  # 30 s of streaming
    await bot.wait_stored(chat.id, 1, timeout=60)
    answer = bot.spark.requests[-1].answer_text
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [answer.strip()])

    drafts = bot.fake.calls_to("sendMessageDraft", chat_id=chat.id)
    refused = [call for call in drafts if call.status == 429]
    shown = [call for call in drafts if call.ok and call.params.get("text")]
    # Each 429 halves the draft rate: two teach it a rate under the server's, and the answer
    # keeps streaming at that rate instead of meeting a 429 every other draft.
    assert 1 <= len(refused) <= 2, [(c.at, c.status) for c in drafts]
    assert len(shown) >= 4
    assert all(c.at < shown[-1].at for c in refused)
    assert bot.fake.violations == []  # nothing was sent before a deadline


async def test_a_question_is_met_with_typing_at_once_and_only_once(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    group = bot.driver.group("Typing first")
    await bot.driver.send_text(chat, user, "[[answer:Private.]] hello")
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[answer:Group.]] hello")
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == ["Private."])
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(group.id) == ["Group."])

    for chat_id in (chat.id, group.id):
        calls = [c for c in bot.fake.calls if c.ok and c.chat_id == chat_id]
        assert calls[0].method == "sendChatAction"
        assert calls[0].params["action"] == "typing"
        # One typing action, not a second from the answer right after it.
        assert len(bot.fake.calls_to("sendChatAction", chat_id=chat_id)) == 1
    # The text came while "typing…" showed: no "Thinking…" draft before it.
    assert "" not in bot.fake.draft_history(chat.id)
    assert bot.fake.violations == []
