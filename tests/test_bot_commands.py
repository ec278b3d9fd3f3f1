"""End to end: commands, queueing, allow-lists and non-text messages, as users meet them."""

from __future__ import annotations

import logging

import pytest

from bot.spark.simulator import SimulatorOptions
from tests.support.bot_harness import BotFactory, RunningBot, spark_messages, spark_pace
from tests.support.telegram_driver import TgChat, TgUser

# An answer that takes half a minute to write: there is time to /stop it.
SLOW_ANSWER = SimulatorOptions(frame_interval=0.1, chars_per_frame=12)
# Writing for about 12 s of the bot's clock: a preview is due at every private-chat floor.
STREAMING = spark_pace(frame_interval=0.05, chars_per_frame=12)
EXPECTED_COMMANDS = {"new", "retry", "stop", "model", "system", "ask", "help"}


async def _private(bot: RunningBot, language_code: str = "en") -> tuple[TgUser, TgChat]:
    user = bot.driver.user(language_code=language_code)
    return user, bot.driver.private_chat(user)


async def _reply(bot: RunningBot, chat: TgChat, text: str) -> str:
    """Wait for a bot message in ``chat`` that contains ``text``; return it whole."""
    return await bot.fake.wait_for(
        lambda: next((t for t in bot.fake.visible_texts(chat.id) if text in t), None)
    )


async def _ask(bot: RunningBot, chat: TgChat, user: TgUser, question: str, number: int) -> str:
    """Ask in a private chat and wait until the ``number``-th answer is stored and shown."""
    await bot.driver.send_text(chat, user, question)
    stored = await bot.wait_stored(chat.id, number)
    answer = max((m for m in stored if m.role == "assistant"), key=lambda m: m.id)
    await bot.fake.wait_for(lambda: answer.content.strip() in bot.fake.visible_texts(chat.id))
    return answer.content


# -- /start, /help, command lists ---------------------------------------------------------------


async def test_start_and_help_speak_the_users_language(make_bot: BotFactory) -> None:
    bot = await make_bot()
    english, english_chat = await _private(bot, "en")
    chinese, chinese_chat = await _private(bot, "zh-hans")
    await bot.driver.send_command(english_chat, english, "/start")
    await bot.driver.send_command(english_chat, english, "/help")
    await bot.driver.send_command(chinese_chat, chinese, "/start")
    await bot.driver.send_command(chinese_chat, chinese, "/help")
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(english_chat.id)) == 2)
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(chinese_chat.id)) == 2)

    start, help_text = bot.fake.visible_texts(english_chat.id)
    assert start.startswith("Hello! I answer with iFlytek Spark (Spark Lite).")
    assert "/new: start a new conversation" in help_text
    assert "privacy mode" in help_text
    start_zh, help_zh = bot.fake.visible_texts(chinese_chat.id)
    assert start_zh.startswith("你好！我使用讯飞星火（Spark Lite）回答问题。")
    assert "/new：开始新对话" in help_zh
    assert bot.spark.requests == []


async def test_command_lists_are_published_in_english_and_chinese(make_bot: BotFactory) -> None:
    bot = await make_bot()
    default = {entry["command"]: entry["description"] for entry in bot.fake.commands()}
    chinese = {
        entry["command"]: entry["description"] for entry in bot.fake.commands(language_code="zh")
    }
    assert set(default) >= EXPECTED_COMMANDS
    assert set(chinese) == set(default)
    assert default["new"] == "Start a new conversation"
    assert chinese["new"] == "开始新对话"


# -- /new, /retry, /stop -------------------------------------------------------------------------


async def test_new_starts_without_history(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await _ask(bot, chat, user, "[[answer:Noted.]] my name is Ann", 1)
    await bot.driver.send_command(chat, user, "/new")
    await _reply(bot, chat, "New conversation")
    await _ask(bot, chat, user, "[[answer:I don't know.]] what is my name?", 2)

    assert spark_messages(bot.spark.requests[-1]) == [
        {"role": "user", "content": "[[answer:I don't know.]] what is my name?"}
    ]
    stored = await bot.stored(chat.id)
    assert len({m.conversation_id for m in stored}) == 2


async def test_retry_regenerates_and_supersedes_the_old_answer(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    first = await _ask(bot, chat, user, "[[long:300]] tell me about the Moon", 1)
    await bot.driver.send_command(chat, user, "/retry")
    stored = await bot.wait_stored(chat.id, 2)
    await bot.fake.wait_for(lambda: len(bot.fake.visible_messages(chat.id)) == 2)

    question, old, new = stored
    assert (question.role, question.content) == ("user", "[[long:300]] tell me about the Moon")
    assert (old.status, old.content) == ("superseded", first)
    assert new.status == "complete"
    assert new.content == bot.spark.requests[1].answer_text
    assert old.reply_to_id == new.reply_to_id == question.id
    # The regenerated answer is asked without the answer it replaces.
    assert spark_messages(bot.spark.requests[1]) == [
        {"role": "user", "content": "[[long:300]] tell me about the Moon"}
    ]
    assert bot.fake.visible_texts(chat.id) == [first.strip(), new.content.strip()]
    assert len(await bot.ledger()) == 2


async def test_retry_with_nothing_to_retry_says_so(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await bot.driver.send_command(chat, user, "/retry")
    await _reply(bot, chat, "There is no earlier question to answer again.")
    assert bot.spark.requests == []
    assert await bot.ledger() == []


async def test_stop_ends_a_slow_answer_and_keeps_what_was_written(make_bot: BotFactory) -> None:
    bot = await make_bot(simulator_options=SLOW_ANSWER)
    user, chat = await _private(bot)
    await bot.driver.send_text(chat, user, "[[long:3000]] write an essay")
    await bot.fake.wait_for(lambda: len(max(bot.fake.draft_history(chat.id), default="")) > 40)
    await bot.driver.send_command(chat, user, "/stop")

    stored = await bot.wait_stored(chat.id, 1)
    answer = stored[-1]
    (request,) = bot.spark.requests
    assert answer.status == "cancelled"
    assert 40 < len(answer.content) < 3000
    assert request.planned_answer.startswith(answer.content)
    text = await _reply(bot, chat, "⏹ Stopped.")
    assert text.endswith("⏹ Stopped.")
    assert text.startswith(answer.content.strip()[:40])
    await bot.fake.wait_for(lambda: request.client_closed_early)
    (usage,) = await bot.ledger()
    assert (usage.message_id, usage.user_id, usage.error_code) == (answer.id, user.id, None)
    assert answer.telegram_message_ids == (bot.fake.visible_messages(chat.id)[-1].message_id,)


async def test_stop_button_on_the_draft_stops_like_the_command(make_bot: BotFactory) -> None:
    bot = await make_bot(simulator_options=SLOW_ANSWER)
    user, chat = await _private(bot)
    await bot.driver.send_text(chat, user, "[[long:3000]] write an essay")
    await bot.fake.wait_for(lambda: len(max(bot.fake.draft_history(chat.id), default="")) > 40)
    drafts = bot.fake.drafts(chat.id)
    assert all(d.can_stop and d.keep_on_stop for d in drafts)
    await bot.driver.stop_generation(chat)

    stored = await bot.wait_stored(chat.id, 1)
    answer = stored[-1]
    (request,) = bot.spark.requests
    assert answer.status == "cancelled"
    assert 40 < len(answer.content) < 3000
    (shown,) = bot.fake.visible_texts(chat.id)
    assert shown.endswith("⏹ Stopped.")
    assert shown.startswith(answer.content.strip()[:40])
    await bot.fake.wait_for(lambda: request.client_closed_early)
    # Only a press on the draft being written counts: a late press changes nothing.
    await bot.driver.stop_generation(chat)
    await bot.driver.send_text(chat, user, "[[answer:Still here.]] next")
    await bot.fake.wait_for(lambda: "Still here." in bot.fake.visible_texts(chat.id))
    assert (await bot.wait_stored(chat.id, 2))[-1].status == "complete"


async def test_stop_with_nothing_running_says_so(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await bot.driver.send_command(chat, user, "/stop")
    assert await _reply(bot, chat, "Nothing is being written") == (
        "Nothing is being written right now."
    )


# -- /model and /system --------------------------------------------------------------------------


async def test_model_lists_switches_and_refuses_unknown_names(make_bot: BotFactory) -> None:
    bot = await make_bot(spark={"models": "lite,max"})
    user, chat = await _private(bot)
    await bot.driver.send_command(chat, user, "/model")
    listing = await _reply(bot, chat, "Model for this chat")
    assert listing.startswith("Model for this chat: Spark Lite.")
    assert "Available: lite, max" in listing
    await bot.driver.send_command(chat, user, "/model gpt-4")
    await _reply(bot, chat, "Unknown or unavailable model “gpt-4”. Available: lite, max")
    await bot.driver.send_command(chat, user, "/model pro")  # a real model, not enabled here
    await _reply(bot, chat, "Unknown or unavailable model “pro”")
    await bot.driver.send_command(chat, user, "/model max")
    await _reply(bot, chat, "✅ This chat now uses Spark Max.")

    await _ask(bot, chat, user, "[[answer:Hello from Max.]] hi", 1)
    (request,) = bot.spark.requests
    assert request.path == "/v3.5/chat"
    assert request.request is not None
    assert request.request["parameter"]["chat"]["domain"] == "generalv3.5"
    stored = await bot.stored(chat.id)
    assert stored[-1].model == "max"


async def test_system_prompt_set_show_clear(make_bot: BotFactory) -> None:
    bot = await make_bot(spark={"model": "max"})
    user, chat = await _private(bot)
    await bot.driver.send_command(chat, user, "/system")
    await _reply(bot, chat, "No system prompt is set.")
    await bot.driver.send_command(chat, user, "/system You are a patient physics tutor.")
    await _reply(bot, chat, "✅ System prompt set.")
    await bot.driver.send_command(chat, user, "/system")
    shown = await _reply(bot, chat, "System prompt for this chat:")
    assert shown == "System prompt for this chat:\nYou are a patient physics tutor."

    await _ask(bot, chat, user, "[[answer:Gravity.]] why do apples fall?", 1)
    assert spark_messages(bot.spark.requests[-1]) == [
        {"role": "system", "content": "You are a patient physics tutor."},
        {"role": "user", "content": "[[answer:Gravity.]] why do apples fall?"},
    ]
    await bot.driver.send_command(chat, user, "/system clear")
    await _reply(bot, chat, "✅ System prompt cleared.")
    await _ask(bot, chat, user, "[[answer:Mass.]] and why heavy?", 2)
    assert [m["role"] for m in spark_messages(bot.spark.requests[-1])] == [
        "user",
        "assistant",
        "user",
    ]


async def test_system_prompt_is_refused_for_a_model_without_it(make_bot: BotFactory) -> None:
    bot = await make_bot()  # Spark Lite takes no system prompt
    user, chat = await _private(bot)
    await bot.driver.send_command(chat, user, "/system Be brief.")
    await _reply(bot, chat, "Spark Lite does not support a system prompt.")
    await _ask(bot, chat, user, "[[answer:Ok.]] hello", 1)
    assert [m["role"] for m in spark_messages(bot.spark.requests[-1])] == ["user"]


async def test_only_group_admins_change_the_model(make_bot: BotFactory) -> None:
    bot = await make_bot(spark={"models": "lite,max"})
    group = bot.driver.group("Team")
    member = bot.driver.user(first_name="Member")
    admin = bot.driver.user(first_name="Admin")
    bot.driver.join(group, member)
    bot.driver.join(group, admin, "administrator")

    await bot.driver.send_command(group, member, "/model@spark_test_bot max")
    await _reply(bot, group, "This command is for the bot's administrators.")
    await bot.driver.send_command(group, admin, "/model@spark_test_bot max")
    await _reply(bot, group, "✅ This chat now uses Spark Max.")

    await bot.driver.send_command(group, member, "/ask@spark_test_bot [[answer:Yes.]] which?")
    await bot.wait_stored(group.id, 1)
    (request,) = bot.spark.requests
    assert request.path == "/v3.5/chat"
    assert [m["role"] for m in spark_messages(request)] == ["user"]  # no system prompt set
    assert bot.fake.violations == []


# -- queueing ------------------------------------------------------------------------------------


async def test_second_question_is_queued_and_answered_after_the_first(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await bot.driver.send_text(chat, user, "[[slow-first:1]] [[answer:First answer.]] one")
    await bot.driver.send_text(chat, user, "[[answer:Second answer.]] two")
    queued = await _reply(bot, chat, "Queued")
    assert queued == "⏳ Queued: I'll answer this after the current answer (1 ahead)."
    stored = await bot.wait_stored(chat.id, 2)
    await bot.fake.wait_for(lambda: "Second answer." in bot.fake.visible_texts(chat.id))

    assert bot.fake.visible_texts(chat.id) == [queued, "First answer.", "Second answer."]
    # Each answer is stored against its own question (rows interleave as they are written).
    questions = {m.id: m.content for m in stored if m.role == "user"}
    assert list(questions.values()) == [
        "[[slow-first:1]] [[answer:First answer.]] one",
        "[[answer:Second answer.]] two",
    ]
    assert [
        (questions[m.reply_to_id], m.content, m.status)
        for m in stored
        if m.role == "assistant" and m.reply_to_id is not None
    ] == [
        ("[[slow-first:1]] [[answer:First answer.]] one", "First answer.", "complete"),
        ("[[answer:Second answer.]] two", "Second answer.", "complete"),
    ]
    assert spark_messages(bot.spark.requests[1]) == [
        {"role": "user", "content": "[[slow-first:1]] [[answer:First answer.]] one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "[[answer:Second answer.]] two"},
    ]


async def test_a_queued_note_takes_the_next_free_slot_while_the_answer_streams(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(simulator_options=STREAMING)
    user, chat = await _private(bot)
    await bot.driver.send_text(chat, user, "[[long:3000]] write an essay")
    await bot.fake.wait_for(lambda: len(max(bot.fake.draft_history(chat.id), default="")) > 40)
    second = await bot.driver.send_text(chat, user, "[[answer:Later.]] and then?")
    update_id = int(bot.update_json(second)["update_id"])
    queued = await _reply(bot, chat, "Queued")
    await bot.fake.wait_for(lambda: "Later." in bot.fake.visible_texts(chat.id), timeout=15)

    fetched = bot.fake.delivered_at(update_id)
    assert fetched is not None
    (note,) = [
        c
        for c in bot.fake.calls_to("sendMessage", chat_id=chat.id)
        if c.result and c.result.get("text") == queued
    ]
    previews = [
        c
        for c in bot.fake.calls_to("sendMessageDraft", chat_id=chat.id)
        if fetched <= c.at < note.at
    ]
    # At most the preview already on its way; none of the ones after it takes the note's turn.
    assert len(previews) <= 1, [round(c.at - fetched, 2) for c in previews]
    assert bot.fake.violations == []


# -- allow-lists ---------------------------------------------------------------------------------


async def test_user_outside_the_allow_list_is_told_once(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.telegram.access_gate")
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [77]})
    stranger = bot.driver.user(first_name="Stranger")
    chat = bot.driver.private_chat(stranger)
    await bot.driver.send_text(chat, stranger, "hello?")
    await _reply(bot, chat, "Sorry, this bot is private and not available to you.")
    await bot.driver.send_text(chat, stranger, "anyone there?")
    await bot.driver.send_text(chat, stranger, "sentinel")
    await _refused(bot, caplog, chat, 3)

    assert bot.fake.visible_texts(chat.id) == [
        "Sorry, this bot is private and not available to you."
    ]
    assert bot.spark.requests == []
    assert await bot.ledger() == []

    # The operator is always allowed, even though not on ALLOWED_USER_IDS.
    admin = bot.driver.user(id=77, first_name="Operator")
    admin_chat = bot.driver.private_chat(admin)
    await _ask(bot, admin_chat, admin, "[[answer:Welcome.]] hi", 1)
    assert bot.questions() == ["[[answer:Welcome.]] hi"]


async def _refused(
    bot: RunningBot, caplog: pytest.LogCaptureFixture, chat: TgChat, count: int
) -> None:
    """Wait until the access gate has refused ``count`` updates of ``chat``.

    Nothing in a refused user's chat gets an answer, so the sentinel's answer is its line in
    the log. A chat's updates are handled one after the other: once the last one is refused,
    whatever the bot did about the ones before it has been done."""
    line = f"update refused by the access policy: chat {chat.id} "
    await bot.fake.wait_for(
        lambda: sum(r.getMessage().startswith(line) for r in caplog.records) >= count
    )


async def test_group_member_refused_once_while_admin_is_answered(make_bot: BotFactory) -> None:
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [77]})
    group = bot.driver.group("Mixed")
    stranger = bot.driver.user(first_name="Stranger")
    admin = bot.driver.user(id=77, first_name="Operator")
    await bot.driver.send_command(group, stranger, "/ask@spark_test_bot one")
    await bot.driver.send_command(group, stranger, "/ask@spark_test_bot two")
    await bot.driver.send_command(group, admin, "/ask@spark_test_bot [[answer:Sure.]] three")
    await bot.wait_stored(group.id, 1)
    await bot.fake.wait_for(lambda: "Sure." in bot.fake.visible_texts(group.id))

    assert bot.fake.visible_texts(group.id) == [
        "Sorry, this bot is private and not available to you.",
        "Sure.",
    ]
    assert bot.questions() == ["[[answer:Sure.]] three"]
    assert [row.user_id for row in await bot.ledger()] == [77]


async def test_group_not_on_the_allow_list_is_left(make_bot: BotFactory) -> None:
    bot = await make_bot(
        telegram={"allowed_chat_ids": [-999], "unauthorized_group_action": "leave"}
    )
    group = bot.driver.group("Uninvited")
    user = bot.driver.user()
    await bot.driver.send_command(group, user, "/ask@spark_test_bot free answers?")
    await bot.fake.wait_for_call("leaveChat", chat_id=group.id)
    assert bot.fake.chat(group.id).bot_left
    assert not bot.fake.calls_to("sendMessage", chat_id=group.id)
    assert bot.spark.requests == []
    assert await bot.ledger() == []


# -- what is not a question ----------------------------------------------------------------------


async def test_media_without_text_gets_a_text_only_reply(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await bot.driver.send_sticker(chat, user)
    await bot.driver.send_voice(chat, user)
    await bot.driver.send_photo(chat, user)
    text_only = "I can only read text. Please send your question as text or a caption."
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == [text_only] * 3)
    await bot.driver.send_photo(chat, user, caption="[[answer:A cat.]] what is this?")
    await bot.wait_stored(chat.id, 1)
    await bot.fake.wait_for(lambda: "A cat." in bot.fake.visible_texts(chat.id))
    assert bot.questions() == ["[[answer:A cat.]] what is this?"]


async def test_edited_question_is_not_answered_again(make_bot: BotFactory) -> None:
    bot = await make_bot()
    user, chat = await _private(bot)
    await bot.driver.send_text(chat, user, "[[answer:Four.]] two plus two")
    original = bot.fake.messages(chat.id)[-1]
    await bot.wait_stored(chat.id, 1)
    await bot.fake.wait_for(lambda: "Four." in bot.fake.visible_texts(chat.id))
    message_json = bot.fake.chat(chat.id).message_json(original)
    await bot.driver.edit_text(message_json, "[[answer:Five.]] two plus three")
    await _ask(bot, chat, user, "[[answer:Six.]] three plus three", 2)

    assert bot.questions() == ["[[answer:Four.]] two plus two", "[[answer:Six.]] three plus three"]
    assert bot.fake.visible_texts(chat.id) == ["Four.", "Six."]
