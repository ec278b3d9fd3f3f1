"""End to end: bad input and access, as users and admins meet them.

Every update meets the access policy before any handler (groups not allowed are left, refused
users told once); every command argument is parsed strictly and a bad one gets the command's
usage line, never a traceback; a system prompt is bounded by the model's budget when it is set
or when the chat switches model, shown shortened when long, and named when it is what makes a
question too long.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from tests.support import db_rows
from tests.support.bot_harness import BotFactory, RunningBot, spark_messages
from tests.support.telegram_driver import TgChat, TgUser

ADMIN = 77
BOT = "spark_test_bot"
NOT_ALLOWED = "Sorry, this bot is private and not available to you."


async def _reply(bot: RunningBot, chat: TgChat, count: int) -> str:
    """The ``count``-th text the bot showed in ``chat`` (1-based), once it is there."""
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(chat.id)) >= count)
    return bot.fake.visible_texts(chat.id)[count - 1]


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


# -- access: one check in front of every handler ------------------------------------------------

Act = Callable[[RunningBot, TgChat, TgUser], Awaitable[object]]


def _command(body: str) -> Act:
    async def act(bot: RunningBot, group: TgChat, user: TgUser) -> object:
        return await bot.driver.send_command(group, user, body)

    return act


async def _mention(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_mention(group, user, f"@{BOT} what is a tide?")


async def _chatter(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_text(group, user, "hello everyone")


async def _sticker(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_sticker(group, user)


async def _caption(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_photo(group, user, caption=f"@{BOT} what is this?")


async def _edit(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    message = await bot.driver.send_text(group, user, "hello everyone")
    return await bot.driver.edit_text(message, f"@{BOT} hello")


async def _press(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    message = await bot.driver.send_text(group, user, "hello everyone")
    return await bot.driver.click(message, user, "anything")


LEAVE_TRIGGERS: dict[str, Act] = {
    "stats": _command(f"/stats@{BOT}"),
    "quota": _command(f"/quota@{BOT} 10001 off"),
    "usage": _command("/usage"),
    "usage@bot": _command(f"/usage@{BOT}"),
    "model": _command(f"/model@{BOT} pro"),
    "system": _command(f"/system@{BOT} be brief"),
    "start": _command(f"/start@{BOT}"),
    "help": _command(f"/help@{BOT}"),
    "new": _command(f"/new@{BOT}"),
    "retry": _command(f"/retry@{BOT}"),
    "stop": _command(f"/stop@{BOT}"),
    "ask": _command(f"/ask@{BOT} free answers?"),
    "mention": _mention,
    "chatter": _chatter,
    "sticker": _sticker,
    "caption": _caption,
    "edit": _edit,
    "button": _press,
}


async def test_a_group_not_allowed_is_left_whatever_reaches_the_bot(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(
        telegram={
            "allowed_chat_ids": [-999],
            "unauthorized_group_action": "leave",
            "admin_user_ids": [ADMIN],
        }
    )
    bot.fake.privacy_mode = False  # the bot sees everything said in the group
    user = bot.driver.user(first_name="Uninvited")
    groups = {name: bot.driver.group(f"Group {name}") for name in LEAVE_TRIGGERS}
    for name, act in LEAVE_TRIGGERS.items():
        await act(bot, groups[name], user)
    for name, group in groups.items():
        try:
            await bot.fake.wait_for_call("leaveChat", chat_id=group.id)
        except TimeoutError:
            pytest.fail(f"{name}: the bot stayed in a group that is not allowed")

    for name, group in groups.items():
        # Updates of a chat are handled in order: once a second one made the bot leave again,
        # the first was handled in full, and said nothing.
        await bot.driver.send_mention(group, user, f"@{BOT} still there?")
        await bot.fake.wait_for_call("leaveChat", chat_id=group.id, count=2)
        assert bot.fake.chat(group.id).bot_left, name
        assert bot.fake.visible_texts(group.id) == [], name
        assert not bot.fake.calls_to("answerCallbackQuery"), name
    assert bot.spark.requests == []
    assert await bot.ledger() == []
    for group in groups.values():
        assert await bot.stored(group.id) == []
    _no_errors_logged(caplog)


async def test_a_group_not_allowed_stays_silent_when_told_to(make_bot: BotFactory) -> None:
    bot = await make_bot(
        telegram={
            "allowed_chat_ids": [-999],
            "unauthorized_group_action": "silent",
            "admin_user_ids": [ADMIN],
        }
    )
    group = bot.driver.group("Quiet")
    user = bot.driver.user(first_name="Uninvited")
    admin = bot.driver.user(id=ADMIN, first_name="Operator")
    for body in (f"/stats@{BOT}", f"/quota@{BOT} 10001 off", "/usage", f"/model@{BOT} pro"):
        await bot.driver.send_command(group, user, body)
    await bot.driver.send_mention(group, user, f"@{BOT} anyone?")
    # The operator is allowed everywhere: their answer comes after everything above.
    await bot.driver.send_command(group, admin, f"/ask@{BOT} [[answer:Here.]] ping")
    await bot.wait_stored(group.id, 1)
    await bot.fake.wait_for(lambda: "Here." in bot.fake.visible_texts(group.id))

    assert bot.fake.visible_texts(group.id) == ["Here."]
    assert not bot.fake.calls_to("leaveChat")
    assert bot.questions() == ["[[answer:Here.]] ping"]


async def test_a_refused_user_is_told_once_whichever_command_they_use(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [ADMIN]})
    bot.fake.privacy_mode = False
    group = bot.driver.group("Mixed")
    stranger = bot.driver.user(first_name="Stranger")
    admin = bot.driver.user(id=ADMIN, first_name="Operator")
    await bot.driver.send_text(group, stranger, "just chatting, not to the bot")
    for body in (
        f"/stats@{BOT}",
        f"/quota@{BOT} 10001 off",
        f"/usage@{BOT}",
        f"/model@{BOT} pro",
        f"/system@{BOT} be brief",
        f"/new@{BOT}",
    ):
        await bot.driver.send_command(group, stranger, body)
    await bot.driver.send_mention(group, stranger, f"@{BOT} hello")
    await bot.driver.send_command(group, admin, f"/ask@{BOT} [[answer:Sure.]] ping")
    await bot.wait_stored(group.id, 1)
    await bot.fake.wait_for(lambda: "Sure." in bot.fake.visible_texts(group.id))

    assert bot.fake.visible_texts(group.id) == [NOT_ALLOWED, "Sure."]
    assert bot.questions() == ["[[answer:Sure.]] ping"]
    chat = await bot.database.chats.get(group.id)
    assert chat is not None
    assert (chat.model, chat.system_prompt) == (None, None)  # nothing the stranger set
    _no_errors_logged(caplog)


async def test_a_refused_user_asking_for_admin_commands_in_private_is_told_not_allowed(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [ADMIN]})
    stranger = bot.driver.user(first_name="Stranger")
    chat = bot.driver.private_chat(stranger)
    await bot.driver.send_command(chat, stranger, "/stats")
    assert await _reply(bot, chat, 1) == NOT_ALLOWED


# -- admin arguments: strict parsing, the usage line, no traceback -------------------------------

ADMINS = tuple(range(900_101, 900_140))
QUOTA_USAGE = "Usage: /quota <id|@name> <tokens per day|off|default>"
STATS_USAGE = "/stats: the whole bot\n/stats user <id|@name>"
HUGE = "99999999999999999999999"


async def _seed_alice(bot: RunningBot) -> None:
    await db_rows.upsert_user(bot.database, 11, username="alice", first_name="Alice")


async def _ask_each(bot: RunningBot, commands: list[str]) -> list[str]:
    """Each command from its own admin in their own private chat, all at once; the replies."""
    chats = []
    for admin_id, command in zip(ADMINS, commands, strict=False):
        admin = bot.driver.user(id=admin_id, first_name="Op")
        chat = bot.driver.private_chat(admin)
        chats.append(chat)
        await bot.driver.send_command(chat, admin, command)
    return [await _reply(bot, chat, 1) for chat in chats]


async def test_admin_commands_answer_bad_arguments_with_their_usage_line(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(telegram={"admin_user_ids": list(ADMINS)}, spark={"models": "lite,max"})
    await _seed_alice(bot)
    expected = {
        f"/quota {HUGE} off": QUOTA_USAGE,
        "/quota 9223372036854775808 off": QUOTA_USAGE,  # 2**63: one past SQLite's integers
        "/quota ² 5": QUOTA_USAGE,
        "/quota ١٢ 5": QUOTA_USAGE,  # Arabic-Indic digits: isdigit() says yes
        "/quota -11 off": QUOTA_USAGE,
        "/quota 0 off": QUOTA_USAGE,
        "/quota @alice ５": QUOTA_USAGE,  # a full-width 5, which int() would take
        f"/quota @alice {HUGE}": QUOTA_USAGE,
        "/quota @alice 2147483648": QUOTA_USAGE,
        "/quota @alice 5k5": QUOTA_USAGE,
        "/quota @alice 5 6": QUOTA_USAGE,
        "/quota @" + "a" * 5000 + " off": QUOTA_USAGE,
        "/quota " + "9" * 5000 + " off": QUOTA_USAGE,
        f"/stats user {HUGE}": STATS_USAGE,
        "/stats user ²": STATS_USAGE,
        "/stats user -11": STATS_USAGE,
        "/stats user @" + "a" * 5000: STATS_USAGE,
        f"/stats chat {HUGE}": STATS_USAGE,
        "/stats chat -9223372036854775809": STATS_USAGE,
        "/stats chat ²": STATS_USAGE,
        "/stats chat --5": STATS_USAGE,
        "/stats chat " + "7" * 5000: STATS_USAGE,
        "/stats " + "x" * 5000: STATS_USAGE,
        "/model " + "x" * 5000: "Unknown or unavailable model “"
        + "x" * 31
        + "…”. Available: lite, max",
        "/model ²": "Unknown or unavailable model “²”. Available: lite, max\nUsage: /model <name>",
        # Well-formed and within range, but nobody: said so, and nothing is stored.
        "/quota 9223372036854775807 off": "I don't know the user 9223372036854775807",
        "/stats user 4242": "I don't know the user 4242",
        "/stats chat -9223372036854775808": "I have no record of the chat -9223372036854775808.",
    }
    answers = await _ask_each(bot, list(expected))
    for (command, start), answer in zip(expected.items(), answers, strict=True):
        assert answer.startswith(start), (command[:60], answer[:200])

    alice = await db_rows.user(bot.database, 11)
    chats = [await bot.database.chats.get(admin_id) for admin_id in ADMINS[: len(expected)]]
    assert alice is not None
    assert alice.daily_token_quota is None
    assert [chat.model for chat in chats if chat is not None and chat.model] == []
    _no_errors_logged(caplog)


async def test_good_admin_arguments_still_work(make_bot: BotFactory) -> None:
    bot = await make_bot(telegram={"admin_user_ids": list(ADMINS)})
    await _seed_alice(bot)
    answers = await _ask_each(bot, ["/quota @ALICE 50,000", "/quota 11 off", "/stats user 11"])
    assert answers[0].startswith("✅ @alice: daily quota 50,000 tokens.")
    assert answers[1].startswith("✅ @alice: no daily quota.")
    assert answers[2].startswith("👤 Usage of @alice")
    alice = await db_rows.user(bot.database, 11)
    assert alice is not None
    assert alice.daily_token_quota in (0, 50_000)  # both ran; their order is not fixed


# -- the system prompt: bounded by the model's budget, shown shortened, named when too long ------

SYSTEM_MODELS = {"model": "pro", "models": "pro,max-32k,lite"}
TEN_THOUSAND = ("Be concise. " * 834).strip()  # 10,007 characters, about 3,700 tokens
PIRATE = ("Answer as a pirate. " * 265).strip()  # about 1,900 tokens: fits Pro's 2,048
LONG_FITTING = ("word " * 816).strip()  # 4,079 characters but only about 1,100 tokens
HANZI = "答" * 4000  # about 2,900 tokens: fits Max-32K, not Pro


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _chat_row(bot: RunningBot, chat_id: int) -> tuple[str | None, str | None]:
    chat = await bot.database.chats.get(chat_id)
    return (None, None) if chat is None else (chat.model, chat.system_prompt)


async def test_a_system_prompt_over_its_share_of_the_budget_is_refused_with_the_limit(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_command(chat, user, "/system " + TEN_THOUSAND)
    refusal = await _reply(bot, chat, 1)
    assert refusal.startswith("⚠️ This system prompt is too long for Spark Pro: about ")
    assert "a system prompt may take at most 2048 (about " in refusal
    assert "Nothing was changed" in refusal
    assert await _chat_row(bot, chat.id) == (None, None)

    chinese = bot.driver.user(language_code="zh-hans")
    chinese_chat = bot.driver.private_chat(chinese)
    await bot.driver.send_command(chinese_chat, chinese, "/system " + HANZI)
    refusal_zh = await _reply(bot, chinese_chat, 1)
    assert refusal_zh.startswith("⚠️ 这个系统提示对 Spark Pro 来说太长了：约 ")
    assert "系统提示最多 2048 个" in refusal_zh
    assert await _chat_row(bot, chinese_chat.id) == (None, None)

    # Nothing was set, so the chat goes on as before.
    await bot.driver.send_command(chat, user, "/system")
    assert await _reply(bot, chat, 2) == "No system prompt is set. Set one with /system <text>."
    await bot.driver.send_text(chat, user, "[[answer:Fine.]] hello")
    await bot.wait_stored(chat.id, 1)
    assert await _reply(bot, chat, 3) == "Fine."
    assert [m["role"] for m in spark_messages(bot.spark.requests[0])] == ["user"]
    _no_errors_logged(caplog)


async def test_a_long_system_prompt_is_shown_shortened_and_sent_whole(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_command(chat, user, "/system " + LONG_FITTING)
    assert await _reply(bot, chat, 1) == "✅ System prompt set."
    assert await _chat_row(bot, chat.id) == (None, LONG_FITTING)

    await bot.driver.send_command(chat, user, "/system")
    shown = await _reply(bot, chat, 2)
    assert shown.startswith(
        "System prompt for this chat (4,079 characters, the beginning shown):\nword word"
    )
    assert shown.endswith("\n…")
    assert _utf16(shown) <= 4096

    await bot.driver.send_text(chat, user, "[[answer:Word.]] hello")
    await bot.wait_stored(chat.id, 1)
    assert await _reply(bot, chat, 3) == "Word."
    assert spark_messages(bot.spark.requests[0])[0] == {"role": "system", "content": LONG_FITTING}


async def test_a_system_prompt_set_with_line_breaks_keeps_them(make_bot: BotFactory) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_command(chat, user, "/system\nBe brief.\nUse lists.")
    assert await _reply(bot, chat, 1) == "✅ System prompt set."
    assert await _chat_row(bot, chat.id) == (None, "Be brief.\nUse lists.")


async def test_switching_to_a_model_the_system_prompt_does_not_fit_is_refused(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_command(chat, user, "/model max-32k")
    assert await _reply(bot, chat, 1) == "✅ This chat now uses Spark Max-32K."
    await bot.driver.send_command(chat, user, "/system " + HANZI)
    assert await _reply(bot, chat, 2) == "✅ System prompt set."

    await bot.driver.send_command(chat, user, "/model pro")
    refusal = await _reply(bot, chat, 3)
    assert refusal.startswith("⚠️ This chat's system prompt (about ")
    assert "is too long for Spark Pro, which allows 2048 for it, so the chat keeps its model" in (
        refusal
    )
    assert "(/system clear)" in refusal
    assert await _chat_row(bot, chat.id) == ("max-32k", HANZI)

    # A model that sends no system prompt takes it; the way back to Pro is still refused.
    await bot.driver.send_command(chat, user, "/model lite")
    assert await _reply(bot, chat, 4) == "✅ This chat now uses Spark Lite."
    await bot.driver.send_command(chat, user, "/model pro")
    assert (await _reply(bot, chat, 5)).startswith("⚠️ This chat's system prompt (about ")
    assert await _chat_row(bot, chat.id) == ("lite", HANZI)

    # Shortened, it fits.
    await bot.driver.send_command(chat, user, "/model max-32k")
    assert await _reply(bot, chat, 6) == "✅ This chat now uses Spark Max-32K."
    await bot.driver.send_command(chat, user, "/system " + PIRATE)
    assert await _reply(bot, chat, 7) == "✅ System prompt set."
    await bot.driver.send_command(chat, user, "/model pro")
    assert await _reply(bot, chat, 8) == "✅ This chat now uses Spark Pro."
    assert bot.spark.requests == []


async def test_a_question_too_long_because_of_the_system_prompt_names_it(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await bot.driver.send_command(chat, user, "/system " + PIRATE)
    assert await _reply(bot, chat, 1) == "✅ System prompt set."
    question = "问" * 3500  # fits Pro on its own, not beside the prompt
    await bot.driver.send_text(chat, user, question)
    refusal = await _reply(bot, chat, 2)
    assert refusal.startswith("Your message is too long for Spark Pro: about ")
    assert re.search(r"Your system prompt takes \d+ of 4096 tokens", refusal), refusal
    assert "(/system)" in refusal
    assert bot.spark.requests == []
    stored = await bot.stored(chat.id)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", question, "complete"),
        ("assistant", "", "failed"),
    ]
    _no_errors_logged(caplog)


async def test_a_prompt_stored_before_the_bound_is_named_and_shown_shortened(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(spark=SYSTEM_MODELS)
    user = bot.driver.user(language_code="zh-hans")
    chat = bot.driver.private_chat(user)
    await db_rows.upsert_chat(bot.database, chat.id, type="private", title="Alice")
    await bot.database.chats.set_system_prompt(
        chat.id, "答" * 10_000, type="private", title="Alice"
    )  # 7,000 tokens

    await bot.driver.send_text(chat, user, "[[answer:Hi.]] hi")
    refusal = await _reply(bot, chat, 1)
    assert refusal.startswith("你的消息对 Spark Pro 来说太长了：加上本聊天的系统提示约 ")
    assert re.search(r"其中系统提示占 \d+/4096 个 token", refusal), refusal
    await bot.driver.send_command(chat, user, "/system")
    shown = await _reply(bot, chat, 2)
    assert shown.startswith("本聊天的系统提示（共 10,000 个字符，仅显示开头）：\n答答答")
    assert _utf16(shown) <= 4096
    await bot.driver.send_command(chat, user, "/system clear")
    assert await _reply(bot, chat, 3) == "✅ 系统提示已清除。"
    await bot.driver.send_text(chat, user, "[[answer:Hi.]] hi")
    await bot.wait_stored(chat.id, 2)
    assert await _reply(bot, chat, 4) == "Hi."
